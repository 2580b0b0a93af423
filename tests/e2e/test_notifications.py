"""spec.notify end to end: the real operator process on kubesim tells a webhook (an aiohttp server
in the test) and an SMTP server (aiosmtpd in the test) that a resync ended, exactly once, across
a restart of the operator too; a failing webhook is retried, then reported. A Slack-format
webhook and an SMTP server of the spec (STARTTLS, a certificate the operator verifies, AUTH with
credentials from a Secret). A ResyncPolicy tells of its decisions once each, across a restart."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiosmtpd.controller import Controller
from unit.smtpd import PASSWORD, USER, SecureMailbox

from kubesim.testing import KubeSim

from .conftest import Operator, apply, free_port, wait_for
from .test_policy import policy, setup, status
from .test_resync import get, make_db, resync, wait_done

pytestmark = pytest.mark.e2e

TOKEN = "XXXXnotify-token-4f9a"  # what a Slack URL carries: must never be logged


@dataclass
class Receiver:
    """A webhook: records every POST; answers 500 to the first ``fail`` of them."""

    port: int = field(default_factory=free_port)
    posts: list[dict[str, Any]] = field(default_factory=list)
    fail: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{path}/{TOKEN}"

    def for_path(self, path: str, ok: bool = True) -> list[dict[str, Any]]:
        return [p for p in self.posts if p["path"].startswith(f"/hooks/{path}/") and p["ok"] == ok]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        ok = self.fail <= 0
        self.fail -= 1
        self.posts.append({"path": request.path, "headers": dict(request.headers), "body": body, "ok": ok})
        return web.Response(status=200 if ok else 500)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/hooks/{tail:.*}", r.handle)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", r.port).start())
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    yield r
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)
    loop.run_until_complete(runner.cleanup())
    loop.close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture(scope="module")
def secure_mailbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureMailbox]:
    box = SecureMailbox(tmp_path_factory.mktemp("smtp-tls")).start()
    yield box
    box.stop()


@pytest.fixture(scope="module")
def notifying_operator(
    cluster: KubeSim,
    tmp_path_factory: pytest.TempPathFactory,
    mailbox: tuple[Mailbox, int],
    secure_mailbox: SecureMailbox,
) -> Iterator[Operator]:
    sa_kubeconfig = cluster.service_account_kubeconfig("clusterresync-system", "clusterresync-operator")
    op = Operator(
        sa_kubeconfig,
        tmp_path_factory.mktemp("operator") / "operator.log",
        args=("--all-namespaces", "--metrics-port=0", "--smtp-host=127.0.0.1", "--smtp-security=none"),
        env={
            "CLUSTERRESYNC_SMTP_PORT": str(mailbox[1]),
            "CLUSTERRESYNC_SMTP_FROM": "clusterresync@example.com",
            "CLUSTERRESYNC_SMTP_PASSWORD": "smtp-pass-never-logged",
            "CLUSTERRESYNC_NOTIFY_MAX_ATTEMPTS": "3",
            "CLUSTERRESYNC_NOTIFY_BACKOFF_SECONDS": "1",
            # The platform's CA, trusted besides the system's for every SMTP server.
            "CLUSTERRESYNC_SMTP_CA_FILE": str(secure_mailbox.ca),
        },
    )
    op.start()
    yield op
    op.stop()


def webhook_secret(cluster: KubeSim, ns: str, name: str, url: str, *, grant: bool = True) -> None:
    """The Secret holding the URL and, as docs/observability.md says, a Role letting the operator
    get that one Secret."""
    secret(cluster, ns, name, {"url": url}, grant=grant)


def secret(cluster: KubeSim, ns: str, name: str, data: dict[str, str], *, grant: bool = True) -> None:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
    ]
    if grant:
        docs += [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": f"clusterresync-{name}", "namespace": ns},
                "rules": [
                    {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [name], "verbs": ["get"]}
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": f"clusterresync-{name}", "namespace": ns},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": f"clusterresync-{name}",
                },
                "subjects": [
                    {
                        "kind": "ServiceAccount",
                        "name": "clusterresync-operator",
                        "namespace": "clusterresync-system",
                    }
                ],
            },
        ]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def notifications(cluster: KubeSim, ns: str, name: str) -> dict[str, dict[str, Any]]:
    obj = get(cluster, "crsync", "-n", ns, name)
    return {n["channel"]: n for n in (obj.get("status") or {}).get("notifications") or []}


def test_one_webhook_post_and_one_email_per_finished_resync_across_a_restart(
    cluster: KubeSim,
    notifying_operator: Operator,
    receiver: Receiver,
    mailbox: tuple[Mailbox, int],
    ns: str,
) -> None:
    op = notifying_operator
    webhook_secret(cluster, ns, "hook", receiver.url(ns))
    db = make_db(cluster, ns, name="db", replicas=2, primary=1)
    resync(
        cluster,
        db,
        name="rs",
        notify={
            "webhook": {"urlSecretRef": {"name": "hook", "key": "url"}},
            "email": {"to": ["dba@example.com", "oncall@example.com"]},
        },
    )
    out = wait_done(cluster, ns, "rs")
    assert out["status"]["phase"] == "Completed", op.output()[-3000:]
    wait_for(lambda: len(receiver.for_path(ns)) == 1, 30, "the webhook POST")
    wait_for(lambda: any("dba@example.com" in to for to, _ in mailbox[0].messages), 30, "the email")

    post = receiver.for_path(ns)[0]
    p = post["body"]
    assert (p["kind"], p["event"], p["resync"], p["namespace"]) == (
        "ClusterResyncNotification",
        "Completed",
        "rs",
        ns,
    )
    assert (p["outcome"], p["reason"]) == ("Completed", "ResyncSucceeded")
    assert p["target"] == {"kind": "StatefulSet", "name": "db"}
    assert p["progress"] == "1/1"
    assert [r["name"] for r in p["replicas"]] == ["db-0"]
    assert p["replicas"][0]["phase"] == "Completed"
    assert p["durationSeconds"] is not None and p["durationSeconds"] >= 0
    assert p["commands"]["status"] == f"kubectl get clusterresync rs -n {ns} -o yaml"
    assert (
        post["headers"]["X-Clusterresync-Delivery"]
        == p["id"]
        == f"{out['metadata']['uid']}/Completed/webhook"
    )
    mails = [(to, m) for to, m in mailbox[0].messages if "dba@example.com" in to and ns in m["Subject"]]
    assert len(mails) == 1
    to, mail = mails[0]
    assert sorted(to) == ["dba@example.com", "oncall@example.com"]
    assert mail["Subject"] == f"[ClusterResync] {ns}/rs Completed: ResyncSucceeded"
    assert mail["From"] == "clusterresync@example.com"

    def recorded() -> dict[str, dict[str, Any]] | None:
        n = notifications(cluster, ns, "rs")
        return n if all(n.get(c, {}).get("sentAt") for c in ("Webhook", "Email")) else None

    n = wait_for(recorded, 30, "the deliveries recorded in the status")
    assert n["Webhook"]["attempts"] == 1 and n["Email"]["attempts"] == 1
    events = get(cluster, "events", "-n", ns, "--field-selector", "involvedObject.name=rs")["items"]
    assert sum(1 for e in events if e["reason"] == "NotificationSent") == 2

    # A restart (SIGKILL): the new process reads the finished resync and sends nothing again.
    started = op.output().count("watch caches listed")
    op.kill()
    op.start()
    wait_for(lambda: op.output().count("watch caches listed") > started, 60, "the restarted operator")
    time.sleep(8)  # its daemons have long planned the finished resync again
    assert len(receiver.for_path(ns)) == 1
    assert len([1 for to, m in mailbox[0].messages if ns in m["Subject"]]) == 1
    # Neither the URL's token nor the SMTP password reaches the logs, the status or an Event.
    assert TOKEN not in op.output() and "smtp-pass-never-logged" not in op.output()
    assert TOKEN not in str(get(cluster, "crsync", "-n", ns, "rs"))
    assert TOKEN not in str(events)


def test_a_failing_webhook_is_retried_then_a_missing_secret_is_reported(
    cluster: KubeSim, notifying_operator: Operator, receiver: Receiver, ns: str
) -> None:
    op = notifying_operator
    webhook_secret(cluster, ns, "hook", receiver.url(ns))
    db = make_db(cluster, ns, name="db", replicas=2, primary=1)
    receiver.fail = 2  # the first two POSTs get a 500
    resync(cluster, db, name="flaky", notify={"webhook": {"urlSecretRef": {"name": "hook", "key": "url"}}})

    def sent() -> dict[str, Any] | None:
        w = notifications(cluster, ns, "flaky").get("Webhook") or {}
        return w if w.get("sentAt") else None

    w = wait_for(sent, 90, "the webhook delivered on its third attempt")
    assert w["attempts"] == 3 and w["lastError"] == "the webhook answered HTTP 500", w
    assert len(receiver.for_path(ns, ok=True)) == 1 and len(receiver.for_path(ns, ok=False)) == 2

    # A Secret the operator may not read: retried 3 times, then a Warning Event; the resync stays Completed.
    webhook_secret(cluster, ns, "private", receiver.url(ns + "-private"), grant=False)
    resync(
        cluster, db, name="denied", notify={"webhook": {"urlSecretRef": {"name": "private", "key": "url"}}}
    )

    def gave_up() -> dict[str, Any] | None:
        w = notifications(cluster, ns, "denied").get("Webhook") or {}
        return w if w.get("gaveUp") else None

    w = wait_for(gave_up, 120, "the webhook given up")
    assert w["attempts"] == 3 and "may not read Secret" in w["lastError"] and not w.get("sentAt")
    assert get(cluster, "crsync", "-n", ns, "denied")["status"]["phase"] == "Completed"
    events = get(cluster, "events", "-n", ns, "--field-selector", "involvedObject.name=denied")["items"]
    failed = [e for e in events if e["reason"] == "NotificationFailed"]
    assert len(failed) == 1 and failed[0]["type"] == "Warning", events
    assert receiver.for_path(ns + "-private") == [] and receiver.for_path(ns + "-private", ok=False) == []
    assert TOKEN not in op.output()


def test_a_retry_pending_across_a_restart_is_delivered_once(
    cluster: KubeSim, notifying_operator: Operator, receiver: Receiver, ns: str
) -> None:
    op = notifying_operator
    webhook_secret(cluster, ns, "hook", receiver.url(ns))
    db = make_db(cluster, ns, name="db", replicas=2, primary=1)
    receiver.fail = 1
    op.kill()  # the first attempt fails, then the operator dies before its retry
    op.start()
    resync(cluster, db, name="rs", notify={"webhook": {"urlSecretRef": {"name": "hook", "key": "url"}}})
    wait_for(lambda: len(receiver.for_path(ns, ok=False)) == 1, 90, "the first, failed, attempt")
    op.kill()
    op.start()

    def sent() -> dict[str, Any] | None:
        w = notifications(cluster, ns, "rs").get("Webhook") or {}
        return w if w.get("sentAt") else None

    w = wait_for(sent, 90, "the retry by the restarted operator")
    assert w["attempts"] == 2, w
    time.sleep(3)
    assert len(receiver.for_path(ns, ok=True)) == 1


def test_a_refused_resync_notifies_failed_only_where_asked(
    cluster: KubeSim, notifying_operator: Operator, receiver: Receiver, ns: str
) -> None:
    webhook_secret(cluster, ns, "hook", receiver.url(ns))
    for name, events in (("failed-asked", ["Failed"]), ("completed-only", ["Completed"])):
        apply(
            cluster,
            ns,
            {
                "apiVersion": "clusterresync.io/v1alpha1",
                "kind": "ClusterResync",
                "metadata": {"name": name},
                "spec": {
                    "target": {"name": "no-such-db"},
                    "primary": {"podName": "no-such-db-0"},
                    "volumes": ["data"],
                    "notify": {"webhook": {"urlSecretRef": {"name": "hook", "key": "url"}}, "events": events},
                },
            },
        )
    for name in ("failed-asked", "completed-only"):
        assert wait_done(cluster, ns, name)["status"]["phase"] == "Failed"
    wait_for(lambda: len(receiver.for_path(ns)) == 1, 30, "the Failed notification")
    time.sleep(3)
    (post,) = receiver.for_path(ns)
    assert (post["body"]["resync"], post["body"]["outcome"], post["body"]["reason"]) == (
        "failed-asked",
        "Failed",
        "TargetNotFound",
    )
    assert "no-such-db" in post["body"]["message"]
    assert notifications(cluster, ns, "completed-only") == {}


def test_a_slack_webhook_and_an_email_through_the_spec_s_smtp_server_with_starttls_and_auth(
    cluster: KubeSim,
    notifying_operator: Operator,
    receiver: Receiver,
    secure_mailbox: SecureMailbox,
    ns: str,
) -> None:
    op = notifying_operator
    webhook_secret(cluster, ns, "slack", receiver.url(ns))
    secret(cluster, ns, "mailer", {"user": USER, "pass": PASSWORD})
    db = make_db(cluster, ns, name="db", replicas=2, primary=1)
    resync(
        cluster,
        db,
        name="rs",
        notify={
            "webhook": {"urlSecretRef": {"name": "slack", "key": "url"}, "format": "Slack"},
            "email": {
                "to": ["team@example.com"],
                "smtp": {
                    "host": "127.0.0.1",
                    "port": secure_mailbox.port,
                    "security": "StartTLS",
                    "from": "db-team@example.com",
                    "credentialsSecretRef": {"name": "mailer", "usernameKey": "user", "passwordKey": "pass"},
                },
            },
        },
    )
    out = wait_done(cluster, ns, "rs")
    assert out["status"]["phase"] == "Completed", op.output()[-3000:]
    wait_for(lambda: len(receiver.for_path(ns)) == 1, 30, "the Slack POST")
    wait_for(lambda: any(ns in m["Subject"] for _, _, m in secure_mailbox.messages), 30, "the email")

    slack = receiver.for_path(ns)[0]
    assert set(slack["body"]) == {"text", "blocks"}, slack["body"]
    assert slack["body"]["text"] == f"ClusterResync {ns}/rs Completed: ResyncSucceeded"
    assert [b["type"] for b in slack["body"]["blocks"]] == ["section", "section", "context"]
    assert "*Outcome*\nCompleted" in [f["text"] for f in slack["body"]["blocks"][1]["fields"]]
    assert slack["headers"]["X-Clusterresync-Delivery"] == f"{out['metadata']['uid']}/Completed/webhook"

    (sender, to, mail) = next(m for m in secure_mailbox.messages if ns in m[2]["Subject"])
    assert (sender, to, mail["From"]) == ("db-team@example.com", ["team@example.com"], "db-team@example.com")
    assert mail["Subject"] == f"[ClusterResync] {ns}/rs Completed: ResyncSucceeded"
    assert (USER, True) in secure_mailbox.logins  # after STARTTLS, which aiosmtpd requires for AUTH
    n = wait_for(
        lambda: (x := notifications(cluster, ns, "rs")) and all(x.get(c, {}).get("sentAt") for c in x) and x,
        30,
        "the deliveries recorded",
    )
    assert set(n) == {"Webhook", "Email"}
    events = get(cluster, "events", "-n", ns, "--field-selector", "involvedObject.name=rs")["items"]
    assert PASSWORD not in op.output() and PASSWORD not in str(get(cluster, "crsync", "-n", ns, "rs"))
    assert PASSWORD not in str(events) and TOKEN not in op.output()


def policy_posts(receiver: Receiver, ns: str) -> list[dict[str, Any]]:
    return [p["body"] for p in receiver.for_path(ns)]


def test_a_policy_tells_of_each_decision_once_across_later_probes_and_a_restart(
    cluster: KubeSim, notifying_operator: Operator, receiver: Receiver, ns: str
) -> None:
    op = notifying_operator
    webhook_secret(cluster, ns, "hook", receiver.url(ns))
    db = setup(cluster, ns)  # pg-2 followed another history: Diverged
    policy(
        cluster,
        db,
        mode="Auto",
        cooldownSeconds=3600,
        notify={
            "webhook": {"urlSecretRef": {"name": "hook", "key": "url"}},
            "events": ["DriftDetected", "RemediationStarted", "InSyncAgain"],
        },
    )
    wait_for(lambda: len(policy_posts(receiver, ns)) >= 2, 60, "DriftDetected and RemediationStarted")
    drift, started = policy_posts(receiver, ns)[:2]
    pol = get(cluster, "rspolicy", "-n", ns, "pol")
    uid = pol["metadata"]["uid"]
    assert (drift["kind"], drift["event"], drift["policy"], drift["reason"]) == (
        "ResyncPolicyNotification",
        "DriftDetected",
        "pol",
        "Drifted",
    )
    assert drift["replicas"] == ["pg-2"] and "pg-2: Diverged" in drift["message"]
    assert drift["id"].startswith(f"{uid}/DriftDetected/") and drift["target"] == {
        "kind": "StatefulSet",
        "name": db.name,
    }
    made = get(cluster, "crsync", "-n", ns)["items"]
    assert len(made) == 1
    assert (started["event"], started["reason"], started["mode"], started["replicas"], started["resync"]) == (
        "RemediationStarted",
        "Remediating",
        "Auto",
        ["pg-2"],
        made[0]["metadata"]["name"],
    )
    # The remediation runs and ends; the next probes find every replica in sync: told once.
    assert wait_done(cluster, ns, made[0]["metadata"]["name"])["status"]["phase"] == "Completed"
    wait_for(lambda: len(policy_posts(receiver, ns)) >= 3, 60, "InSyncAgain")
    assert [p["event"] for p in policy_posts(receiver, ns)] == [
        "DriftDetected",
        "RemediationStarted",
        "InSyncAgain",
    ]
    assert policy_posts(receiver, ns)[2]["message"] == "every replica is in sync again (2/2)"
    recorded = status(cluster, ns)["notifications"]
    assert [(r["event"], r["channel"], r["attempts"]) for r in recorded] == [
        ("DriftDetected", "Webhook", 1),
        ("RemediationStarted", "Webhook", 1),
        ("InSyncAgain", "Webhook", 1),
    ] and all(r.get("sentAt") for r in recorded)
    events = get(cluster, "events", "-n", ns, "--field-selector", "involvedObject.name=pol")["items"]
    assert sum(1 for e in events if e["reason"] == "NotificationSent") == 3
    # Later probes (every 10 s) and a restarted operator find the same decisions: nothing again.
    probed = status(cluster, ns)["lastProbeTime"]
    wait_for(lambda: status(cluster, ns)["lastProbeTime"] != probed, 30, "a later probe")
    started_count = op.output().count("watch caches listed")
    op.kill()
    op.start()
    wait_for(lambda: op.output().count("watch caches listed") > started_count, 60, "the restarted operator")
    probed = status(cluster, ns)["lastProbeTime"]
    wait_for(lambda: status(cluster, ns)["lastProbeTime"] != probed, 30, "a probe by the restarted operator")
    time.sleep(2)
    assert [p["event"] for p in policy_posts(receiver, ns)] == [
        "DriftDetected",
        "RemediationStarted",
        "InSyncAgain",
    ]
    assert TOKEN not in op.output()


def test_a_policy_s_failing_notification_never_holds_its_remediation(
    cluster: KubeSim, notifying_operator: Operator, receiver: Receiver, ns: str
) -> None:
    # A Secret the operator may not read: every attempt fails; the remediation goes ahead anyway.
    webhook_secret(cluster, ns, "private", receiver.url(ns), grant=False)
    db = setup(cluster, ns)
    policy(
        cluster,
        db,
        mode="Auto",
        notify={
            "webhook": {"urlSecretRef": {"name": "private", "key": "url"}},
            "events": ["RemediationStarted"],
        },
    )
    made = wait_for(lambda: get(cluster, "crsync", "-n", ns)["items"], 30, "the remediation")
    assert made[0]["spec"]["replicas"] == ["pg-2"]

    def gave_up() -> list[dict[str, Any]] | None:
        recs = status(cluster, ns).get("notifications") or []
        return recs if recs and all(r.get("gaveUp") for r in recs) else None

    (rec,) = wait_for(gave_up, 60, "the notification given up")
    assert (rec["event"], rec["attempts"]) == ("RemediationStarted", 3) and not rec.get("sentAt")
    assert "may not read Secret" in rec["lastError"]
    events = get(cluster, "events", "-n", ns, "--field-selector", "involvedObject.name=pol")["items"]
    assert [e["type"] for e in events if e["reason"] == "NotificationFailed"] == ["Warning"]
    assert wait_done(cluster, ns, made[0]["metadata"]["name"])["status"]["phase"] == "Completed"
    assert receiver.for_path(ns) == [] and receiver.for_path(ns, ok=False) == []
