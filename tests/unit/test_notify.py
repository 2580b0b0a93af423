"""Notifications: what is sent, when, how often (the pure decisions), the payload and the email,
and the delivery against a real HTTP server and a real SMTP server on localhost."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from clusterresync import notify
from clusterresync.kube import ErrorKind, KubeError
from clusterresync.models import (
    MAX_POLICY_NOTIFICATIONS,
    ClusterResyncSpec,
    ClusterResyncStatus,
    Condition,
    EmailNotify,
    NotificationStatus,
    NotifySpec,
    PodProbe,
    PolicyNotifySpec,
    Remediation,
    ReplicaStatus,
    ResyncPolicySpec,
    ResyncPolicyStatus,
)
from clusterresync.policy import Policy
from clusterresync.reconcile import reconcile
from clusterresync.state import Event, Ref, Resync

from .planner.drive import drive
from .planner.drive import spec as drive_spec
from .smtpd import PASSWORD, USER, SecureMailbox
from .test_reconcile import LiveWorld, ObservedReader, body_of
from .world import World

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
RETRY = notify.RetryPolicy(max_attempts=3, backoff_seconds=10, max_backoff_seconds=15)


def ts(seconds_before: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds_before)).strftime("%Y-%m-%dT%H:%M:%SZ")


def spec(**notify_spec: Any) -> NotifySpec:
    return NotifySpec.model_validate(notify_spec)


BOTH = spec(webhook={"urlSecretRef": {"name": "hook", "key": "url"}}, email={"to": ["dba@example.com"]})


def test_nothing_is_sent_before_the_end_nor_for_an_end_not_asked_for() -> None:
    assert not notify.decide(BOTH, "Resyncing", [], NOW).pending
    assert not notify.decide(None, "Completed", [], NOW).pending
    only_failed = spec(webhook={"urlSecretRef": {"name": "h", "key": "u"}}, events=["Failed"])
    assert not notify.decide(only_failed, "Completed", [], NOW).pending
    assert notify.decide(only_failed, "Failed", [], NOW).due == ("Webhook",)
    assert notify.decide(BOTH, "Completed", [], NOW).due == ("Webhook", "Email")


def test_a_delivered_notification_is_never_sent_again() -> None:
    records, gave_up = notify.attempted([], "Webhook", "Completed", NOW, None, RETRY)
    assert not gave_up
    assert records[0].sent_at == ts(0) and records[0].attempts == 1
    # Any later pass, or a restarted operator reading the status: nothing due for the webhook.
    assert notify.decide(BOTH, "Completed", records, NOW + dt.timedelta(hours=1)).due == ("Email",)


def test_a_failed_delivery_is_retried_with_backoff_then_given_up() -> None:
    records: list[NotificationStatus] = []
    now = NOW
    waits = []
    for attempt in range(1, RETRY.max_attempts + 1):
        d = notify.decide(spec(webhook={"urlSecretRef": {"name": "h", "key": "u"}}), "Failed", records, now)
        assert d.due == ("Webhook",), attempt
        records, gave_up = notify.attempted(
            records, "Webhook", "Failed", now, "the webhook answered HTTP 500", RETRY
        )
        assert records[0].attempts == attempt
        assert records[0].last_error == "the webhook answered HTTP 500"
        assert gave_up == (attempt == RETRY.max_attempts)
        d = notify.decide(spec(webhook={"urlSecretRef": {"name": "h", "key": "u"}}), "Failed", records, now)
        if gave_up:
            assert not d.pending and records[0].gave_up and records[0].next_attempt_at is None
            break
        assert d.due == () and d.requeue_after is not None
        waits.append(d.requeue_after)
        now += dt.timedelta(seconds=d.requeue_after)
    assert waits == [10, 15]  # doubling, capped


def resync(phase: str = "Completed", reason: str = "ResyncSucceeded", **kw: Any) -> Resync:
    s = ClusterResyncStatus(
        phase=phase,
        started_at=ts(90),
        completed_at=ts(0),
        progress="1/1",
        conditions=[
            Condition(
                type="Complete" if phase == "Completed" else "Failed",
                status="True",
                reason=reason,
                message="every replica was resynced",
                last_transition_time=ts(0),
            )
        ],
        replicas=[
            ReplicaStatus(name="db-0", phase="Completed", swap_started_at=ts(12), completed_at=ts(5)),
        ],
        **kw,
    )
    sp = ClusterResyncSpec.model_validate(
        {
            "target": {"name": "db"},
            "primary": {"podName": "db-1"},
            "volumes": ["data"],
            "notify": BOTH.model_dump(by_alias=True),
        }
    )
    return Resync("rs", "prod", "uid-1", 1, NOW, False, sp, s)


def test_the_payload_says_what_happened_and_how_to_look() -> None:
    p = notify.payload(resync())
    assert p["kind"] == "ClusterResyncNotification"
    assert (p["resync"], p["namespace"], p["outcome"], p["reason"]) == (
        "rs",
        "prod",
        "Completed",
        "ResyncSucceeded",
    )
    assert p["target"] == {"kind": "StatefulSet", "name": "db"}
    assert p["durationSeconds"] == 90
    assert p["replicas"][0]["downtimeSeconds"] == 7
    assert p["commands"]["status"] == "kubectl get clusterresync rs -n prod -o yaml"
    assert p["id"] == "uid-1/Completed/webhook"
    assert p["text"].startswith("ClusterResync prod/rs Completed: ResyncSucceeded")
    json.dumps(p)  # serializable


def test_the_email_has_the_outcome_in_its_subject() -> None:
    smtp = notify.SmtpConfig(host="h", sender="ops@example.com")
    msg = notify.email_message(
        resync("Failed", "ReplicaRolledBack"), smtp, ["a@example.com", "b@example.com"]
    )
    assert msg["Subject"] == "[ClusterResync] prod/rs Failed: ReplicaRolledBack"
    assert msg["To"] == "a@example.com, b@example.com"
    assert "kubectl describe clusterresync rs -n prod" in msg.get_content()


def test_smtp_configuration_from_flags_and_environment(tmp_path: Any) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    c = notify.SmtpConfig.from_env(
        {"CLUSTERRESYNC_SMTP_HOST": "mail", "CLUSTERRESYNC_SMTP_PASSWORD_FILE": str(pw)},
        sender="ops@example.com",
    )
    assert (c.host, c.port, c.security, c.sender, c.password) == (
        "mail",
        587,
        "starttls",
        "ops@example.com",
        "s3cret",
    )
    assert "s3cret" not in repr(c)
    assert notify.SmtpConfig.from_env({}, host="m", security="tls").port == 465
    with pytest.raises(ValueError):
        notify.SmtpConfig.from_env({"CLUSTERRESYNC_SMTP_SECURITY": "ssl3"})
    assert notify.RetryPolicy.from_env({"CLUSTERRESYNC_NOTIFY_MAX_ATTEMPTS": "2"}).max_attempts == 2


# -- delivery against real servers ------------------------------------------------------------------
class Hook(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], dict[str, Any]]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
        self.send_response(Hook.status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook_url() -> Iterator[str]:
    Hook.received, Hook.status = [], 200
    server = HTTPServer(("127.0.0.1", 0), Hook)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/XXXXsecrettoken"
    server.shutdown()


def test_post_webhook_delivers_json_and_reports_failures_without_the_url(hook_url: str) -> None:
    notify.post_webhook(hook_url, {"id": "x/Completed/webhook", "a": 1})
    headers, body = Hook.received[0]
    assert body == {"id": "x/Completed/webhook", "a": 1}
    assert headers["content-type"] == "application/json"
    assert headers["x-clusterresync-delivery"] == "x/Completed/webhook"
    Hook.status = 500
    with pytest.raises(notify.DeliveryError) as e:
        notify.post_webhook(hook_url, {"id": "y"})
    assert str(e.value) == "the webhook answered HTTP 500"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/XXXXsecrettoken"
    with pytest.raises(notify.DeliveryError) as e:
        notify.post_webhook(closed, {"id": "z"}, timeout=2)
    assert "secrettoken" not in str(e.value) and "cannot reach the webhook" in str(e.value)


class Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def test_send_email_through_a_real_smtp_server() -> None:
    sink = Sink()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        smtp = notify.SmtpConfig(host="127.0.0.1", port=port, security="none", sender="ops@example.com")
        notify.send_email(smtp, notify.email_message(resync(), smtp, ["dba@example.com"]))
    finally:
        controller.stop()
    (sender, rcpts, content) = sink.messages[0]
    assert (sender, rcpts) == ("ops@example.com", ["dba@example.com"])
    assert message_from_bytes(content)["Subject"] == "[ClusterResync] prod/rs Completed: ResyncSucceeded"
    with pytest.raises(notify.DeliveryError) as e:
        notify.send_email(notify.SmtpConfig(), notify.email_message(resync(), smtp, ["dba@example.com"]))
    assert "no SMTP server" in str(e.value)


# -- one reconciliation: delivered once, recorded, and not sent again ------------------------------
class Notified(LiveWorld):
    """The live API over a finished ``World``: a Secret with the webhook URL, status patches kept."""

    def __init__(self, w: World, s: Any, url: str, conflict: bool = False) -> None:
        super().__init__(w, s)
        self.url, self.conflict = url, conflict
        self.patches: list[dict[str, Any]] = []

    def get(self, ref: Ref) -> dict[str, Any] | None:
        if ref.kind == "Secret":
            assert (ref.namespace, ref.name) == ("db-ns", "hook")
            return {"data": {"url": base64.b64encode(self.url.encode()).decode()}}
        return super().get(ref)

    def patch_status(self, ref: Ref, patch: Any, resource_version: str | None = None) -> dict[str, Any]:
        if self.conflict and "notifications" in patch["status"]:
            raise KubeError(409, "Conflict", "the object has been modified", "patch", str(ref))
        self.patches.append(patch)
        return super().patch_status(ref, patch, resource_version)


def finished_world() -> tuple[World, ClusterResyncSpec]:
    s = drive_spec(
        primaryStableSeconds=0, notify={"webhook": {"urlSecretRef": {"name": "hook", "key": "url"}}}
    )
    w = World()
    drive(w, s)
    assert w.status.phase == "Completed"
    return w, s


def test_a_reconciliation_delivers_once_and_records_it(hook_url: str) -> None:
    w, s = finished_world()
    live = Notified(w, s, hook_url)
    out = reconcile(live, body_of(w, s), reader=ObservedReader(w.observed(s)))  # type: ignore[arg-type]
    assert len(Hook.received) == 1 and Hook.received[0][1]["outcome"] == "Completed"
    (record,) = out.status.notifications
    assert (record.channel, record.event, record.attempts) == ("Webhook", "Completed", 1) and record.sent_at
    assert live.patches[-1]["status"]["notifications"][0]["sentAt"] == record.sent_at
    assert out.finished  # nothing pending: the daemon may end
    # The next pass, or a restarted operator, reads the recorded delivery: nothing is sent again.
    w.status = out.status
    again = reconcile(Notified(w, s, hook_url), body_of(w, s), reader=ObservedReader(w.observed(s)))  # type: ignore[arg-type]
    assert len(Hook.received) == 1 and again.finished


def test_a_failed_delivery_keeps_the_daemon_for_its_retry_and_never_fails_the_resync(hook_url: str) -> None:
    w, s = finished_world()
    Hook.status = 503
    out = reconcile(Notified(w, s, hook_url), body_of(w, s), reader=ObservedReader(w.observed(s)))  # type: ignore[arg-type]
    (record,) = out.status.notifications
    assert (
        record.attempts == 1 and record.last_error == "the webhook answered HTTP 503" and not record.sent_at
    )
    assert out.status.phase == "Completed"
    assert not out.finished and out.requeue_after is not None  # it comes back for the retry


def test_an_unrecorded_delivery_is_sent_again_at_least_once(hook_url: str) -> None:
    w, s = finished_world()
    out = reconcile(
        Notified(w, s, hook_url, conflict=True), body_of(w, s), reader=ObservedReader(w.observed(s))
    )  # type: ignore[arg-type]
    assert out.replan_now and len(Hook.received) == 1
    reconcile(Notified(w, s, hook_url), body_of(w, s), reader=ObservedReader(w.observed(s)))  # type: ignore[arg-type]
    assert len(Hook.received) == 2  # the same id: the receiver deduplicates
    assert Hook.received[0][1]["id"] == Hook.received[1][1]["id"]


def test_a_policy_s_remediations_notify_as_its_template_says() -> None:
    from clusterresync.models import ResyncPolicySpec, ResyncPolicyStatus
    from clusterresync.policy import Policy, resync_body

    s = ResyncPolicySpec.model_validate(
        {
            "target": {"name": "db"},
            "primary": {"podName": "db-1"},
            "volumes": ["data"],
            "probe": {"preset": "Redis"},
            "resyncTemplate": {
                "notify": {
                    "email": {
                        "to": ["dba@example.com"],
                        "smtp": {"host": "smtp.example.com", "from": "t@example.com"},
                    },
                    "events": ["Failed"],
                }
            },
        }
    )
    body = resync_body(Policy("pol", "db-ns", "uid-p", 1, s, ResyncPolicyStatus()), "pol-1", ["db-0"])
    created = ClusterResyncSpec.model_validate(body["spec"])
    assert created.notify == NotifySpec.model_validate(
        {
            "email": {
                "to": ["dba@example.com"],
                "smtp": {"host": "smtp.example.com", "from": "t@example.com"},
            },
            "events": ["Failed"],
        }
    )
    assert body["spec"]["notify"]["email"]["smtp"]["from"] == "t@example.com"  # the API's name


def test_the_operator_s_smtp_flags_win_over_the_environment_and_stay_away_from_kopf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clusterresync import cli

    monkeypatch.setenv("CLUSTERRESYNC_SMTP_HOST", "env-host")
    monkeypatch.setenv("CLUSTERRESYNC_SMTP_PASSWORD", "pw")
    monkeypatch.setenv("CLUSTERRESYNC_NOTIFY_BACKOFF_SECONDS", "2")
    args = ["--smtp-host=flag-host", "--smtp-security", "tls", "--smtp-from=ops@example.com", "--verbose"]
    smtp, retry = cli.notify_config(args)
    assert (smtp.host, smtp.port, smtp.security, smtp.sender, smtp.password) == (
        "flag-host",
        465,
        "tls",
        "ops@example.com",
        "pw",
    )
    assert retry.backoff_seconds == 2
    assert cli.leader_config(args)[1] == ["--verbose"]


# -- Slack-compatible webhooks ---------------------------------------------------------------------
def test_the_slack_message_has_a_text_summary_and_blocks_within_slack_s_limits() -> None:
    r = resync(reason="ResyncSucceeded")
    r = replace(
        r,
        status=r.status.model_copy(
            update={
                "conditions": [
                    Condition(
                        type="Complete",
                        status="True",
                        reason="ResyncSucceeded",
                        message="<!channel> & " + "x" * 4000,
                        last_transition_time=ts(0),
                    )
                ]
            }
        ),
    )
    m = notify.slack_payload(r)
    assert set(m) == {"text", "blocks"}
    assert m["text"] == "ClusterResync prod/rs Completed: ResyncSucceeded (1/1)" or m["text"].startswith(
        "ClusterResync prod/rs Completed: ResyncSucceeded"
    )
    head, facts, context = m["blocks"]
    assert head["type"] == "section" and head["text"]["type"] == "mrkdwn"
    assert head["text"]["text"].startswith(
        "*ClusterResync prod/rs Completed: ResyncSucceeded*\n&lt;!channel&gt; &amp; x"
    )
    assert len(head["text"]["text"]) <= 3000  # Slack's limit for a section's text
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in facts["fields"]}
    assert fields["*Target*"] == "StatefulSet db" and fields["*Outcome*"] == "Completed"
    assert fields["*Reason*"] == "ResyncSucceeded" and len(facts["fields"]) <= 10
    assert all(f["type"] == "mrkdwn" and len(f["text"]) <= 2000 for f in facts["fields"])
    assert context == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "`kubectl describe clusterresync rs -n prod`"}],
    }


class SecretKube:
    """The adapter as far as notifications use it: Secrets (or refusals), nothing else."""

    def __init__(self, secrets: dict[str, dict[str, str]], forbidden: bool = False) -> None:
        self.secrets, self.forbidden = secrets, forbidden
        self.reads: list[str] = []

    def get(self, ref: Ref) -> dict[str, Any] | None:
        assert ref.kind == "Secret"
        self.reads.append(f"{ref.namespace}/{ref.name}")
        if self.forbidden:
            raise KubeError(
                403, "Forbidden", "forbidden: no get on secrets", "get", str(ref), kind=ErrorKind.FORBIDDEN
            )
        data = self.secrets.get(ref.name)
        if data is None:
            return None
        return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def test_a_slack_webhook_gets_the_slack_message_and_the_delivery_header(hook_url: str) -> None:
    r = resync()
    r = replace(
        r,
        spec=r.spec.model_copy(
            update={
                "notify": NotifySpec.model_validate(
                    {"webhook": {"urlSecretRef": {"name": "hook", "key": "url"}, "format": "Slack"}}
                )
            }
        ),
    )
    notify.deliver(SecretKube({"hook": {"url": hook_url}}), r, "Webhook")  # type: ignore[arg-type]
    headers, body = Hook.received[0]
    assert set(body) == {"text", "blocks"} and body["text"].startswith("ClusterResync prod/rs Completed")
    assert headers["x-clusterresync-delivery"] == "uid-1/Completed/webhook"
    generic = NotifySpec.model_validate({"webhook": {"urlSecretRef": {"name": "hook", "key": "url"}}})
    assert generic.webhook is not None and generic.webhook.format == "Generic"


# -- SMTP from the spec ----------------------------------------------------------------------------
def email_spec(**smtp: Any) -> EmailNotify:
    return EmailNotify.model_validate({"to": ["dba@example.com"], **({"smtp": smtp} if smtp else {})})


def test_the_spec_s_smtp_server_and_its_credentials_from_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    operator = notify.SmtpConfig(host="relay", sender="ops@example.com", ca_file="/etc/ca.pem")
    monkeypatch.setattr(notify, "_smtp", operator)
    kube = SecretKube({"mail": {"user": "mailer", "pass": PASSWORD}})
    assert notify.smtp_config(kube, "prod", email_spec()) is operator  # type: ignore[arg-type]
    got = notify.smtp_config(
        kube,  # type: ignore[arg-type]
        "prod",
        email_spec(
            host="smtp.example.com",
            security="TLS",
            **{"from": "team@example.com"},
            credentialsSecretRef={"name": "mail", "usernameKey": "user", "passwordKey": "pass"},
        ),
    )
    assert (got.host, got.port, got.security, got.sender, got.username, got.password, got.ca_file) == (
        "smtp.example.com",
        465,
        "tls",
        "team@example.com",
        "mailer",
        PASSWORD,
        "/etc/ca.pem",
    )
    assert PASSWORD not in repr(got) and kube.reads == ["prod/mail", "prod/mail"]
    plain = notify.smtp_config(kube, "prod", email_spec(host="h", **{"from": "a@example.com"}))  # type: ignore[arg-type]
    assert (plain.port, plain.security, plain.username) == (587, "starttls", "")
    with pytest.raises(notify.DeliveryError) as e:
        notify.smtp_config(
            SecretKube({}, forbidden=True),  # type: ignore[arg-type]
            "prod",
            email_spec(host="h", **{"from": "a@example.com"}, credentialsSecretRef={"name": "mail"}),
        )
    assert "may not read Secret prod/mail" in str(e.value)
    with pytest.raises(notify.DeliveryError) as e:
        notify.smtp_config(
            SecretKube({"mail": {"username": "u"}}),  # type: ignore[arg-type]
            "prod",
            email_spec(host="h", **{"from": "a@example.com"}, credentialsSecretRef={"name": "mail"}),
        )
    assert str(e.value) == "Secret prod/mail has no key password"


def test_starttls_and_auth_against_a_server_whose_certificate_is_verified(tmp_path: Any) -> None:
    box = SecureMailbox(tmp_path).start()
    try:
        smtp = notify.SmtpConfig(
            host="127.0.0.1", port=box.port, sender="team@example.com", username=USER, password=PASSWORD
        )
        msg = notify.email_message(resync(), smtp, ["dba@example.com"])
        with pytest.raises(notify.DeliveryError) as e:  # the test CA is not trusted yet
            notify.send_email(smtp, msg)
        assert "CERTIFICATE_VERIFY_FAILED" in str(e.value) and box.messages == []
        trusted = replace(smtp, ca_file=str(box.ca))
        with pytest.raises(notify.DeliveryError) as e:
            notify.send_email(replace(trusted, password="XXXXwrong-password"), msg)
        assert "SMTPAuthenticationError" in str(e.value) and "XXXXwrong-password" not in str(e.value)
        notify.send_email(trusted, msg)
        (sender, rcpts, mail) = box.messages[0]
        assert (sender, rcpts) == ("team@example.com", ["dba@example.com"])
        assert mail["Subject"] == "[ClusterResync] prod/rs Completed: ResyncSucceeded"
        # smtplib tries PLAIN, then LOGIN, with the wrong password; then logs in once.
        assert box.logins[-1] == (USER, True) and not any(ok for _, ok in box.logins[:-1])
        logins = len(box.logins)
        # Credentials never go over a plain connection: refused before connecting.
        with pytest.raises(notify.DeliveryError) as e:
            notify.send_email(replace(trusted, security="none"), msg)
        assert "never sent unencrypted" in str(e.value) and PASSWORD not in str(e.value)
        assert len(box.logins) == logins
    finally:
        box.stop()


def test_the_ca_file_comes_from_the_environment() -> None:
    smtp = notify.SmtpConfig.from_env({"CLUSTERRESYNC_SMTP_CA_FILE": "/etc/clusterresync/ca.pem"})
    assert smtp.ca_file == "/etc/clusterresync/ca.pem"


# -- ResyncPolicy notifications: what is due (pure) ------------------------------------------------
POLICY_SPEC = {
    "target": {"name": "db"},
    "primary": {"podName": "db-1"},
    "volumes": ["data"],
    "probe": {"preset": "Redis"},
    "mode": "Auto",
}


def policy_notify(**kw: Any) -> PolicyNotifySpec:
    return PolicyNotifySpec.model_validate(
        {
            "webhook": {"urlSecretRef": {"name": "hook", "key": "url"}},
            "email": {"to": ["dba@example.com"]},
            **kw,
        }
    )


def pstatus(drifted: str = "", suppressed: tuple[str, str] | None = None, **kw: Any) -> ResyncPolicyStatus:
    conds = []
    if drifted:
        conds.append(
            Condition(
                type="Drifted",
                status=drifted,
                reason="Drifted" if drifted == "True" else "NoDrift",
                message="",
                last_transition_time=ts(0),
            )
        )  # type: ignore[arg-type]
    if suppressed:
        conds.append(
            Condition(
                type="RemediationSuppressed",
                status=suppressed[0],
                reason=suppressed[1],  # type: ignore[arg-type]
                message="",
                last_transition_time=ts(0),
            )
        )
    pods = [
        PodProbe(pod="db-0", verdict="Diverged", drifted=True, observed_at=ts(0)),
        PodProbe(pod="db-2", verdict="InSync", observed_at=ts(0)),
    ]
    return ResyncPolicyStatus(conditions=conds, pods=pods if drifted == "True" else [], **kw)


STARTED = [
    Event("Warning", "DriftDetected", "db-0: Diverged: another history"),
    Event("Normal", "RemediationStarted", "created ClusterResync pol-1 for db-0"),
]


def test_each_decision_event_queues_one_record_per_channel_with_its_facts() -> None:
    after = pstatus(
        "True",
        ("False", "Remediating"),
        last_remediation=Remediation(name="pol-1", replicas=["db-0"], created_at=ts(0)),
    )
    out = notify.policy_queue(policy_notify(), "uid-p", ResyncPolicyStatus(), after, STARTED, NOW)
    got = [(r.event, r.channel, r.reason, r.replicas, r.resync, r.sent_at) for r in out.notifications]
    assert got == [
        ("DriftDetected", "Webhook", "Drifted", ["db-0"], None, None),
        ("DriftDetected", "Email", "Drifted", ["db-0"], None, None),
        ("RemediationStarted", "Webhook", "Remediating", ["db-0"], "pol-1", None),
        ("RemediationStarted", "Email", "Remediating", ["db-0"], "pol-1", None),
    ]
    assert out.notifications[0].id == "uid-p/DriftDetected/20260102T030405Z"
    assert out.notifications[0].message == "db-0: Diverged: another history"
    # A pass without a decision Event (a later probe of the same drift) queues nothing; no spec, nothing.
    assert notify.policy_queue(policy_notify(), "uid-p", out, out, [], NOW) is out
    assert notify.policy_queue(None, "uid-p", ResyncPolicyStatus(), after, STARTED, NOW) is after
    # Only the events asked for.
    only = notify.policy_queue(
        policy_notify(events=["RemediationStarted"]), "uid-p", ResyncPolicyStatus(), after, STARTED, NOW
    )
    assert {r.event for r in only.notifications} == {"RemediationStarted"}


def conditions(**by_type: tuple[str, float]) -> list[Condition]:
    """Conditions by type: (status, seconds before NOW it took that status)."""
    return [
        Condition(type=t, status=st, reason="R", message="", last_transition_time=ts(ago))  # type: ignore[arg-type]
        for t, (st, ago) in by_type.items()
    ]


def test_a_suppression_and_the_return_to_sync_are_told_when_asked() -> None:
    spec = policy_notify(events=["RemediationSuppressed", "InSyncAgain"])
    after = pstatus("True", ("True", "CoolingDown"))
    ev = [Event("Normal", "RemediationSuppressed", "CoolingDown: the last remediation ...")]
    out = notify.policy_queue(spec, "uid-p", pstatus("True"), after, ev, NOW)
    assert [(r.event, r.reason, r.replicas) for r in out.notifications][::2] == [
        ("RemediationSuppressed", "CoolingDown", ["db-0"])
    ]

    def again(before: list[Condition], after: list[Condition]) -> list[tuple[str, str, str]]:
        b = ResyncPolicyStatus(conditions=before)
        a = ResyncPolicyStatus(conditions=after, in_sync="2/2")
        return [
            (r.event, r.reason, r.message)
            for r in notify.policy_queue(spec, "u", b, a, [], NOW).notifications
        ]

    in_sync = conditions(InSync=("True", 0), Drifted=("False", 0))
    told = [("InSyncAgain", "InSync", "every replica is in sync again (2/2)")] * 2  # webhook and email
    # Drifted, then in sync.
    assert again(conditions(InSync=("False", 60), Drifted=("True", 60)), in_sync) == told
    # Drifted, then Unknown for a while (the drifted replica being resynced), then in sync.
    assert again(conditions(InSync=("Unknown", 30), Drifted=("False", 30)), in_sync) == told
    # Not after a probe that could not tell, with no drift since InSync was last True.
    assert again(conditions(InSync=("Unknown", 30), Drifted=("False", 3600)), in_sync) == []
    # Nor in sync after in sync, nor at the first probe, nor while a drift is still Unknown.
    assert again(in_sync, in_sync) == []
    assert again([], in_sync) == []
    assert (
        again(conditions(InSync=("False", 60), Drifted=("True", 60)), conditions(InSync=("Unknown", 0))) == []
    )


def test_two_decisions_of_one_kind_in_one_second_get_distinct_ids() -> None:
    spec = policy_notify(events=["DriftDetected"])
    once = notify.policy_queue(spec, "u", ResyncPolicyStatus(), pstatus("True"), STARTED[:1], NOW)
    twice = notify.policy_queue(spec, "u", once, once, STARTED[:1], NOW)
    assert [r.id for r in twice.notifications] == ["u/DriftDetected/20260102T030405Z"] * 2 + [
        "u/DriftDetected/20260102T030405Z-2"
    ] * 2


def test_the_records_are_bounded_the_delivered_going_first() -> None:
    spec = policy_notify(events=["DriftDetected"])
    status = ResyncPolicyStatus()
    for i in range(15):
        status = notify.policy_queue(spec, "u", status, status, STARTED[:1], NOW + dt.timedelta(seconds=i))
        if i == 0:  # the very first stays pending
            continue
        status = status.model_copy(
            update={
                "notifications": [
                    r.model_copy(update={"sent_at": ts(0)}) if r.id.endswith(f"{5 + i:02d}Z") else r
                    for r in status.notifications
                ]
            }
        )
    recs = status.notifications
    assert len(recs) == MAX_POLICY_NOTIFICATIONS
    assert recs[0].id == "u/DriftDetected/20260102T030405Z" and not recs[0].sent_at  # pending: kept
    assert recs[-1].id == "u/DriftDetected/20260102T030419Z"


def test_a_policy_s_failed_delivery_is_retried_with_backoff_then_given_up() -> None:
    spec = policy_notify(events=["DriftDetected"])
    recs = list(
        notify.policy_queue(spec, "u", ResyncPolicyStatus(), pstatus("True"), STARTED[:1], NOW).notifications
    )
    d = notify.policy_due(spec, recs, NOW)
    assert d.due == (
        ("u/DriftDetected/20260102T030405Z", "Webhook"),
        ("u/DriftDetected/20260102T030405Z", "Email"),
    )
    rid = recs[0].id
    recs, gave_up = notify.policy_attempted(recs, rid, "Webhook", NOW, None, RETRY)
    recs, gave_up = notify.policy_attempted(recs, rid, "Email", NOW, "SMTP h:587: refused", RETRY)
    assert not gave_up
    d = notify.policy_due(spec, recs, NOW + dt.timedelta(seconds=1))
    assert d.due == () and d.requeue_after == 9.0  # the email in 10 s; the webhook is done
    recs, _ = notify.policy_attempted(recs, rid, "Email", NOW + dt.timedelta(seconds=10), "again", RETRY)
    recs, gave_up = notify.policy_attempted(
        recs, rid, "Email", NOW + dt.timedelta(seconds=30), "again", RETRY
    )
    assert gave_up and recs[1].gave_up and recs[1].attempts == 3 and recs[0].attempts == 1
    assert notify.policy_due(spec, recs, NOW + dt.timedelta(hours=1)) == notify.PolicyDecision()
    # A channel removed from the spec is no longer tried.
    webhook_only = PolicyNotifySpec.model_validate({"webhook": {"urlSecretRef": {"name": "h", "key": "u"}}})
    fresh = list(
        notify.policy_queue(spec, "u", ResyncPolicyStatus(), pstatus("True"), STARTED[:1], NOW).notifications
    )
    assert [c for _, c in notify.policy_due(webhook_only, fresh, NOW).due] == ["Webhook"]


def test_the_policy_payloads_say_what_was_decided_and_how_to_look(hook_url: str) -> None:
    p = Policy(
        "pol",
        "prod",
        "uid-p",
        1,
        ResyncPolicySpec.model_validate(
            {**POLICY_SPEC, "notify": {"webhook": {"urlSecretRef": {"name": "hook", "key": "url"}}}}
        ),
        ResyncPolicyStatus(),
    )
    after = pstatus(
        "True",
        ("False", "Remediating"),
        last_remediation=Remediation(name="pol-1", replicas=["db-0"], created_at=ts(0)),
    )
    rec = notify.policy_queue(p.spec.notify, p.uid, ResyncPolicyStatus(), after, STARTED, NOW).notifications[
        1
    ]
    doc = notify.policy_payload(p, rec)
    assert {
        k: doc[k]
        for k in ("kind", "id", "event", "policy", "namespace", "mode", "reason", "replicas", "resync")
    } == {
        "kind": "ResyncPolicyNotification",
        "id": "uid-p/RemediationStarted/20260102T030405Z",
        "event": "RemediationStarted",
        "policy": "pol",
        "namespace": "prod",
        "mode": "Auto",
        "reason": "Remediating",
        "replicas": ["db-0"],
        "resync": "pol-1",
    }
    assert doc["target"] == {"kind": "StatefulSet", "name": "db"} and doc["decidedAt"] == ts(0)
    assert doc["commands"]["resync"] == "kubectl get clusterresync pol-1 -n prod"
    slack = notify.policy_slack_payload(p, rec)
    assert slack["text"] == "ResyncPolicy prod/pol RemediationStarted: Remediating"
    assert "*ClusterResync*\npol-1" in [f["text"] for f in slack["blocks"][1]["fields"]]
    mail = notify.policy_email_message(
        p, rec, notify.SmtpConfig(sender="ops@example.com"), ["dba@example.com"]
    )
    assert mail["Subject"] == "[ResyncPolicy] prod/pol RemediationStarted: Remediating"
    assert mail["X-ClusterResync-Delivery"] == "uid-p/RemediationStarted/20260102T030405Z/email"
    # Delivered: the webhook gets the generic document, with its delivery id.
    done = notify.run_policy(
        SecretKube({"hook": {"url": hook_url}}),  # type: ignore[arg-type]
        replace(p, status=ResyncPolicyStatus(notifications=[rec])),
        notify.policy_due(p.spec.notify, [rec], NOW),
        NOW,
    )
    assert [r.id for r in done.sent] == [rec.id] and done.notifications[0].sent_at == "2026-01-02T03:04:05Z"
    headers, body = Hook.received[0]
    assert body == doc and headers["x-clusterresync-delivery"] == f"{rec.id}/webhook"
