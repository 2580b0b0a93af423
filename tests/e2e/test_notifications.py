"""spec.notify end to end: the real operator process on kubesim tells a webhook (an aiohttp server
in the test) and an SMTP server (aiosmtpd in the test) that a resync ended, exactly once, across
a restart of the operator too; a failing webhook is retried, then reported."""

from __future__ import annotations

import asyncio
import base64
import socket
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

from kubesim.testing import KubeSim

from .conftest import Operator, apply, wait_for
from .test_resync import get, make_db, resync, wait_done

pytestmark = pytest.mark.e2e

TOKEN = "XXXXnotify-token-4f9a"  # what a Slack URL carries: must never be logged


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
def notifying_operator(
    cluster: KubeSim, tmp_path_factory: pytest.TempPathFactory, mailbox: tuple[Mailbox, int]
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
        },
    )
    op.start()
    yield op
    op.stop()


def webhook_secret(cluster: KubeSim, ns: str, name: str, url: str, *, grant: bool = True) -> None:
    """The Secret holding the URL and, as docs/observability.md says, a Role letting the operator
    get that one Secret."""
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "data": {"url": base64.b64encode(url.encode()).decode()},
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
