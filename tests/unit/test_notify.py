"""Notifications: what is sent, when, how often (the pure decisions), the payload and the email,
and the delivery against a real HTTP server and a real SMTP server on localhost."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from clusterresync import notify
from clusterresync.kube import KubeError
from clusterresync.models import (
    ClusterResyncSpec,
    ClusterResyncStatus,
    Condition,
    NotificationStatus,
    NotifySpec,
    ReplicaStatus,
)
from clusterresync.reconcile import reconcile
from clusterresync.state import Ref, Resync

from .planner.drive import drive
from .planner.drive import spec as drive_spec
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
            "resyncTemplate": {"notify": {"email": {"to": ["dba@example.com"]}, "events": ["Failed"]}},
        }
    )
    body = resync_body(Policy("pol", "db-ns", "uid-p", 1, s, ResyncPolicyStatus()), "pol-1", ["db-0"])
    created = ClusterResyncSpec.model_validate(body["spec"])
    assert created.notify == NotifySpec.model_validate(
        {"email": {"to": ["dba@example.com"]}, "events": ["Failed"]}
    )


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
