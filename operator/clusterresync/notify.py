"""Notifications when a ClusterResync ends (``spec.notify``): a webhook POST and/or an email.

The decisions are pure (``decide``, ``attempted``, ``payload``, ``email_message``): which deliveries
are due, when a failed one is tried again, when the attempts run out. The delivery itself
(``deliver``) is the only I/O: it reads the webhook's URL from its Secret through the adapter
(live, never cached), POSTs, or talks SMTP.

Delivery is at least once, and recorded in ``status.notifications`` (one record per channel and
event): a delivered record has ``sentAt`` and is never sent again, by this process or a restarted
one. A failure records ``lastError`` and ``nextAttemptAt`` (backoff doubling from
``RetryPolicy.backoff_seconds``); after ``max_attempts`` the record ``gaveUp`` and a Warning Event
``NotificationFailed`` is posted. A crash (or a lost status write) between a delivery and its
record sends it again: receivers deduplicate by the ``id`` of the payload (also the
``X-ClusterResync-Delivery`` header).

Notifications never delay or fail the resync: they are decided only once it is Completed or
Failed, and their errors only ever reach ``status.notifications`` and the Event. The URL (it
often carries a token) and the SMTP password are never logged, recorded or put in an error.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal

import structlog

from . import metrics
from .kube import ErrorKind, Kube, KubeError
from .models import GROUP, MAX_REASON, NotificationStatus, NotifySpec
from .state import Ref, Resync

log = structlog.get_logger("clusterresync.notify")

Channel = Literal["Webhook", "Email"]
FINISHED = ("Completed", "Failed")
TIMEOUT_SECONDS = 10.0  # one delivery attempt


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failed delivery is tried again: ``max_attempts`` in all, waiting
    ``backoff_seconds`` after the first failure, doubling, at most ``max_backoff_seconds``."""

    max_attempts: int = 5
    backoff_seconds: float = 30.0
    max_backoff_seconds: float = 600.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> RetryPolicy:
        e = os.environ if env is None else env
        return cls(
            max_attempts=max(1, int(e.get("CLUSTERRESYNC_NOTIFY_MAX_ATTEMPTS") or cls.max_attempts)),
            backoff_seconds=max(
                0.1, float(e.get("CLUSTERRESYNC_NOTIFY_BACKOFF_SECONDS") or cls.backoff_seconds)
            ),
        )

    def delay(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failed attempt."""
        return float(min(self.max_backoff_seconds, self.backoff_seconds * 2 ** max(0, attempts - 1)))


Security = Literal["starttls", "tls", "none"]


@dataclass(frozen=True)
class SmtpConfig:
    """The operator's SMTP server (flags or environment; never in a ClusterResync)."""

    host: str = ""
    port: int = 587
    security: Security = "starttls"  # STARTTLS on a plain connection; "tls": implicit TLS (465)
    sender: str = ""
    username: str = ""
    password: str = field(default="", repr=False)

    @property
    def configured(self) -> bool:
        return bool(self.host and self.sender)

    @classmethod
    def from_env(
        cls,
        env: dict[str, str] | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        security: str | None = None,
        sender: str | None = None,
        username: str | None = None,
    ) -> SmtpConfig:
        """Flags first, then ``CLUSTERRESYNC_SMTP_HOST``, ``_PORT``, ``_SECURITY``, ``_FROM``,
        ``_USERNAME``; the password only from ``CLUSTERRESYNC_SMTP_PASSWORD`` or the file named by
        ``CLUSTERRESYNC_SMTP_PASSWORD_FILE`` (a mounted Secret): a flag would show in ``ps``."""
        e = os.environ if env is None else env
        sec = (security or e.get("CLUSTERRESYNC_SMTP_SECURITY") or "starttls").lower()
        if sec not in ("starttls", "tls", "none"):
            raise ValueError(f"SMTP security must be starttls, tls or none, not {sec!r}")
        password = e.get("CLUSTERRESYNC_SMTP_PASSWORD") or ""
        if not password and e.get("CLUSTERRESYNC_SMTP_PASSWORD_FILE"):
            with open(e["CLUSTERRESYNC_SMTP_PASSWORD_FILE"], encoding="utf-8") as f:
                password = f.read().strip()
        default_port = 465 if sec == "tls" else 587
        return cls(
            host=host or e.get("CLUSTERRESYNC_SMTP_HOST") or "",
            port=int(port or e.get("CLUSTERRESYNC_SMTP_PORT") or default_port),
            security=sec,  # type: ignore[arg-type]
            sender=sender or e.get("CLUSTERRESYNC_SMTP_FROM") or "",
            username=username or e.get("CLUSTERRESYNC_SMTP_USERNAME") or "",
            password=password,
        )


_smtp = SmtpConfig()
_retry = RetryPolicy()


def configure(smtp: SmtpConfig, retry: RetryPolicy) -> None:
    global _smtp, _retry
    _smtp, _retry = smtp, retry


def retry_policy() -> RetryPolicy:
    return _retry


# -- decisions (pure) ------------------------------------------------------------------------------
def _ts(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(s: str | None) -> dt.datetime | None:
    if not s:
        return None
    try:
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None


def channels(spec: NotifySpec) -> list[Channel]:
    out: list[Channel] = []
    if spec.webhook is not None:
        out.append("Webhook")
    if spec.email is not None:
        out.append("Email")
    return out


@dataclass(frozen=True)
class Decision:
    due: tuple[Channel, ...] = ()  # deliver now
    requeue_after: float | None = None  # a retry is waiting: come back then

    @property
    def pending(self) -> bool:
        return bool(self.due) or self.requeue_after is not None


def record_of(notifications: list[NotificationStatus], channel: str, event: str) -> NotificationStatus | None:
    for n in notifications:
        if n.channel == channel and n.event == event:
            return n
    return None


def decide(
    spec: NotifySpec | None, phase: str, notifications: list[NotificationStatus], now: dt.datetime
) -> Decision:
    """What to deliver now, and when to come back for a retry. Nothing before the resync has
    ended, nothing for an end not in ``events``, never again once sent or given up."""
    if spec is None or phase not in FINISHED or phase not in spec.events:
        return Decision()
    due: list[Channel] = []
    wait: float | None = None
    for channel in channels(spec):
        r = record_of(notifications, channel, phase)
        if r is None:
            due.append(channel)
            continue
        if r.sent_at or r.gave_up:
            continue
        at = _parse(r.next_attempt_at)
        left = 0.0 if at is None else (at - now).total_seconds()
        if left <= 0:
            due.append(channel)
        else:
            wait = left if wait is None else min(wait, left)
    return Decision(tuple(due), wait)


def attempted(
    notifications: list[NotificationStatus],
    channel: Channel,
    event: str,
    now: dt.datetime,
    error: str | None,
    retry: RetryPolicy,
) -> tuple[list[NotificationStatus], bool]:
    """The records after one attempt (``error`` None: delivered), and whether it just gave up."""
    old = record_of(notifications, channel, event) or NotificationStatus(channel=channel, event=event)  # type: ignore[arg-type]
    attempts = old.attempts + 1
    if error is None:
        new = old.model_copy(
            update={
                "attempts": attempts,
                "sent_at": _ts(now),
                "last_attempt_at": _ts(now),
                "next_attempt_at": None,
            }
        )
        gave_up = False
    else:
        gave_up = attempts >= retry.max_attempts
        nxt = None if gave_up else _ts(now + dt.timedelta(seconds=retry.delay(attempts)))
        new = old.model_copy(
            update={
                "attempts": attempts,
                "last_attempt_at": _ts(now),
                "next_attempt_at": nxt,
                "last_error": error[:MAX_REASON],
                "gave_up": gave_up,
            }
        )
    out = [n for n in notifications if not (n.channel == channel and n.event == event)] + [new]
    return out, gave_up


def _final(resync: Resync) -> tuple[str, str]:
    for c in resync.status.conditions:
        if c.type in ("Complete", "Failed") and c.status == "True":
            return c.reason, c.message
    return "", ""


def delivery_id(resync: Resync, channel: str, event: str) -> str:
    return f"{resync.uid}/{event}/{channel.lower()}"


def payload(resync: Resync, channel: Channel = "Webhook") -> dict[str, Any]:
    """The JSON document POSTed to a webhook (docs/observability.md#payload)."""
    s = resync.status
    reason, message = _final(resync)
    started, completed = _parse(s.started_at), _parse(s.completed_at)
    ns, name = resync.namespace, resync.name
    replicas = []
    for r in s.replicas:
        swap, done = _parse(r.swap_started_at), _parse(r.completed_at)
        replicas.append(
            {
                "name": r.name,
                "phase": r.phase,
                "reason": r.reason or "",
                "message": r.message,
                "swapStartedAt": r.swap_started_at,
                "completedAt": r.completed_at,
                "downtimeSeconds": (done - swap).total_seconds()
                if swap and done and r.phase == "Completed"
                else None,
            }
        )
    summary = f"ClusterResync {ns}/{name} {s.phase}: {reason}" + (f" ({s.progress})" if s.progress else "")
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "ClusterResyncNotification",
        "id": delivery_id(resync, channel, s.phase),
        "event": s.phase,
        "resync": name,
        "namespace": ns,
        "uid": resync.uid,
        "target": {"kind": resync.spec.target.kind, "name": resync.spec.target.name},
        "primary": s.primary.pod_name if s.primary is not None else None,
        "outcome": s.phase,
        "reason": reason,
        "message": message,
        "dryRun": resync.spec.dry_run,
        "progress": s.progress,
        "replicas": replicas,
        "startedAt": s.started_at,
        "completedAt": s.completed_at,
        "durationSeconds": (completed - started).total_seconds() if started and completed else None,
        "commands": {
            "status": f"kubectl get clusterresync {name} -n {ns} -o yaml",
            "describe": f"kubectl describe clusterresync {name} -n {ns}",
            "events": f"kubectl get events -n {ns} --field-selector involvedObject.name={name}",
            "oldVolumes": f"kubectl get pv -l clusterresync.io/resync-uid={resync.uid}",
        },
        # Slack and Mattermost incoming webhooks show `text`; Teams' connectors show `text` too.
        "text": summary + (f"\n{message}" if message else ""),
    }


def email_message(resync: Resync, smtp: SmtpConfig, to: list[str]) -> EmailMessage:
    """The email: the outcome and reason in the subject, the payload's facts in the body."""
    p = payload(resync, "Email")
    msg = EmailMessage()
    msg["Subject"] = f"[ClusterResync] {p['namespace']}/{p['resync']} {p['outcome']}: {p['reason']}"
    msg["From"] = smtp.sender
    msg["To"] = ", ".join(to)
    msg["X-ClusterResync-Delivery"] = p["id"]
    lines = [
        f"ClusterResync {p['namespace']}/{p['resync']} of {p['target']['kind']} {p['target']['name']}: "
        f"{p['outcome']} ({p['reason']}).",
        "",
        p["message"],
        "",
        f"Progress: {p['progress'] or '-'}; started {p['startedAt'] or '-'}, ended {p['completedAt'] or '-'}"
        + (f" ({p['durationSeconds']:.0f} s)." if p["durationSeconds"] is not None else "."),
        "",
        "Replicas:",
        *[
            f"  {r['name']}: {r['phase']}"
            + (f" ({r['reason']})" if r["reason"] else "")
            + (f", out of service {r['downtimeSeconds']:.0f} s" if r["downtimeSeconds"] is not None else "")
            for r in p["replicas"]
        ],
        "",
        "To look further:",
        *[f"  {c}" for c in p["commands"].values()],
    ]
    msg.set_content("\n".join(lines) + "\n")
    return msg


# -- delivery (I/O) --------------------------------------------------------------------------------
class DeliveryError(Exception):
    """A delivery that failed; its message names no URL and no credential."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is a failure: the token would be sent on to another host


def webhook_url(kube: Kube, namespace: str, spec: NotifySpec) -> str:
    assert spec.webhook is not None
    ref = spec.webhook.url_secret_ref
    what = f"Secret {namespace}/{ref.name}"
    try:
        secret = kube.get(Ref("v1", "Secret", "secrets", ref.name, namespace))
    except KubeError as e:
        if e.kind == ErrorKind.FORBIDDEN:
            raise DeliveryError(
                f"the operator may not read {what} (RBAC): grant it get on that Secret "
                "(docs/observability.md#notifications)"
            ) from None
        raise DeliveryError(f"cannot read {what}: {e.kind}") from None
    raw = ((secret or {}).get("data") or {}).get(ref.key)
    if secret is None or raw is None:
        raise DeliveryError(f"{what} not found" if secret is None else f"{what} has no key {ref.key}")
    url = base64.b64decode(raw).decode("utf-8", "replace").strip()
    if not url.startswith(("https://", "http://")):
        raise DeliveryError(f"the value of {what}, key {ref.key}, is not an http(s) URL")
    return url


def post_webhook(url: str, document: dict[str, Any], timeout: float = TIMEOUT_SECONDS) -> None:
    req = urllib.request.Request(
        url,
        data=json.dumps(document).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "clusterresync-operator",
            "X-ClusterResync-Delivery": str(document.get("id", "")),
        },
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=timeout) as resp:
            code = resp.status
    except urllib.error.HTTPError as e:
        raise DeliveryError(f"the webhook answered HTTP {e.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise DeliveryError(
            f"cannot reach the webhook: {type(reason).__name__}: {_scrub(str(reason), url)}"
        ) from None
    if not 200 <= code < 300:
        raise DeliveryError(f"the webhook answered HTTP {code}")


def send_email(smtp: SmtpConfig, msg: EmailMessage, timeout: float = TIMEOUT_SECONDS) -> None:
    if not smtp.configured:
        raise DeliveryError("no SMTP server is configured on the operator (--smtp-host and --smtp-from)")
    try:
        server: smtplib.SMTP
        if smtp.security == "tls":
            server = smtplib.SMTP_SSL(
                smtp.host, smtp.port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            server = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
        with server:
            if smtp.security == "starttls":
                server.starttls(context=ssl.create_default_context())
            if smtp.username:
                server.login(smtp.username, smtp.password)
            server.send_message(msg)
    except (smtplib.SMTPException, OSError) as e:
        raise DeliveryError(
            f"SMTP {smtp.host}:{smtp.port}: {type(e).__name__}: {_scrub(str(e), smtp.password)}"
        ) from None


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def deliver(kube: Kube, resync: Resync, channel: Channel) -> None:
    """One attempt; raises DeliveryError."""
    spec = resync.spec.notify
    assert spec is not None
    if channel == "Webhook":
        post_webhook(webhook_url(kube, resync.namespace, spec), payload(resync, channel))
    else:
        assert spec.email is not None
        send_email(_smtp, email_message(resync, _smtp, list(spec.email.to)))


@dataclass
class Delivered:
    notifications: list[NotificationStatus]
    failed: list[tuple[Channel, str]] = field(default_factory=list)  # gave up now, with the last error
    sent: list[Channel] = field(default_factory=list)


def run(kube: Kube, resync: Resync, decision: Decision, now: dt.datetime) -> Delivered:
    """Deliver what ``decision`` says is due (each once), and the records that say how it went."""
    event = resync.status.phase
    out = Delivered(list(resync.status.notifications))
    for channel in decision.due:
        try:
            deliver(kube, resync, channel)
            error = None
        except DeliveryError as e:
            error = str(e)
        except Exception as e:  # a notification never fails the resync's pass
            error = f"{type(e).__name__}"
        out.notifications, gave_up = attempted(out.notifications, channel, event, now, error, _retry)
        logger = log.bind(resync=resync.name, namespace=resync.namespace, channel=channel, notify_event=event)
        if error is None:
            out.sent.append(channel)
            metrics.record_notification(channel.lower(), "Sent")
            logger.info("notification sent")
        else:
            metrics.record_notification(channel.lower(), "Failed" if gave_up else "Retrying")
            logger.warning("notification failed", error=error, gave_up=gave_up)
            if gave_up:
                out.failed.append((channel, error))
    return out
