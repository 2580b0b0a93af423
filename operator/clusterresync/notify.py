"""Notifications: when a ClusterResync ends (``spec.notify``), and a ResyncPolicy's decisions
(its ``spec.notify``): a webhook POST (a generic JSON document, or a Slack incoming-webhook
message) and/or an email (through the operator's SMTP server, or one of the spec's).

The decisions are pure (``decide``, ``attempted``, ``payload``, ``slack_payload``,
``email_message``; for policies ``policy_queue``, ``policy_due``, ``policy_attempted`` and their
payloads): which deliveries are due, when a failed one is tried again, when the attempts run out.
The delivery itself (``deliver``, ``deliver_policy``) is the only I/O: it reads the webhook's URL
and the SMTP credentials of a spec from their Secrets through the adapter (live, never cached),
POSTs, or talks SMTP (certificates always verified).

Delivery is at least once, and recorded in ``status.notifications`` (a ClusterResync: one record
per channel and event; a policy: one per decision and channel, queued in the same status write
as the decision): a delivered record has ``sentAt`` and is never sent again, by this process or a
restarted one. A failure records ``lastError`` and ``nextAttemptAt`` (backoff doubling from
``RetryPolicy.backoff_seconds``); after ``max_attempts`` the record ``gaveUp`` and a Warning Event
``NotificationFailed`` is posted. A crash (or a lost status write) between a delivery and its
record sends it again: receivers deduplicate by the ``id`` of the payload (also the
``X-ClusterResync-Delivery`` header).

Notifications never delay or fail the resync, nor a policy's probes and remediations: they are
delivered after them, and their errors only ever reach ``status.notifications`` and the Event.
The URL (it often carries a token) and the SMTP passwords are never logged, recorded or put in
an error.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal, TypeVar

import structlog

from . import metrics
from .conditions import PolicyCondition, PolicyEventReason, PolicyReason
from .kube import ErrorKind, Kube, KubeError
from .models import (
    GROUP,
    MAX_POLICY_NOTIFICATIONS,
    MAX_REASON,
    EmailNotify,
    NotificationStatus,
    NotifySpec,
    PolicyNotificationStatus,
    PolicyNotifySpec,
    ResyncPolicyStatus,
    WebhookNotify,
)
from .policy import Policy
from .state import Event, Ref, Resync

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
    """An SMTP server: the operator's (flags or environment), or a spec's ``email.smtp`` with its
    credentials read from a Secret (``smtp_config``)."""

    host: str = ""
    port: int = 587
    security: Security = "starttls"  # STARTTLS on a plain connection; "tls": implicit TLS (465)
    sender: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    ca_file: str = ""  # CAs trusted besides the system's, for every SMTP server (also a spec's)

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
        ca_file: str | None = None,
    ) -> SmtpConfig:
        """Flags first, then ``CLUSTERRESYNC_SMTP_HOST``, ``_PORT``, ``_SECURITY``, ``_FROM``,
        ``_USERNAME``, ``_CA_FILE``; the password only from ``CLUSTERRESYNC_SMTP_PASSWORD`` or the file named by
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
            ca_file=ca_file or e.get("CLUSTERRESYNC_SMTP_CA_FILE") or "",
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


def channels(spec: NotifySpec | PolicyNotifySpec) -> list[Channel]:
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
        left = _left(r, now)
        if left is None:
            continue
        if left <= 0:
            due.append(channel)
        else:
            wait = left if wait is None else min(wait, left)
    return Decision(tuple(due), wait)


def _left(r: NotificationStatus | PolicyNotificationStatus, now: dt.datetime) -> float | None:
    """Seconds until a record's next attempt (0 or less: now); None once sent or given up."""
    if r.sent_at or r.gave_up:
        return None
    at = _parse(r.next_attempt_at)
    return 0.0 if at is None else (at - now).total_seconds()


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
    new, gave_up = _after_attempt(old, now, error, retry)
    out = [n for n in notifications if not (n.channel == channel and n.event == event)] + [new]
    return out, gave_up


R = TypeVar("R", NotificationStatus, PolicyNotificationStatus)


def _after_attempt(old: R, now: dt.datetime, error: str | None, retry: RetryPolicy) -> tuple[R, bool]:
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
    return new, gave_up


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


# -- Slack-compatible messages (pure) --------------------------------------------------------------
# Slack's incoming webhooks take {"text": ..., "blocks": [...]}: with blocks, ``text`` is the
# fallback shown in notifications. A section's text is at most 3000 characters, a field's 2000,
# at most 10 fields; &, < and > are escaped (Slack reads <...> as links and mentions).
SLACK_TEXT_MAX = 3000
SLACK_FIELD_MAX = 2000
SLACK_FIELDS_MAX = 10


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_message(summary: str, details: str, fields: list[tuple[str, str]], command: str) -> dict[str, Any]:
    """A Slack incoming-webhook message: the summary as its text, and blocks with the details,
    the facts as fields and the command to look further."""
    head = f"*{_esc(summary)}*" + (f"\n{_esc(details)}" if details else "")
    return {
        "text": _cut(_esc(summary), SLACK_TEXT_MAX),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": _cut(head, SLACK_TEXT_MAX)}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": _cut(f"*{_esc(k)}*\n{_esc(v or '-')}", SLACK_FIELD_MAX)}
                    for k, v in fields[:SLACK_FIELDS_MAX]
                ],
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _cut(f"`{command}`", SLACK_TEXT_MAX)}],
            },
        ],
    }


def slack_payload(resync: Resync) -> dict[str, Any]:
    """A ClusterResync's end as a Slack message (``webhook.format: Slack``)."""
    p = payload(resync)
    duration = p["durationSeconds"]
    return slack_message(
        f"ClusterResync {p['namespace']}/{p['resync']} {p['outcome']}: {p['reason']}",
        p["message"],
        [
            ("Target", f"{p['target']['kind']} {p['target']['name']}"),
            ("Outcome", p["outcome"]),
            ("Reason", p["reason"]),
            ("Progress", p["progress"]),
            ("Primary", p["primary"] or ""),
            ("Duration", f"{duration:.0f} s" if duration is not None else ""),
        ],
        p["commands"]["describe"],
    )


# -- ResyncPolicy decisions (pure) -----------------------------------------------------------------
# A policy notifies its decisions as it posts their Events: once per change (of the drifted set,
# of the suppression reason, a remediation created), never per probe. ``policy_queue`` turns the
# Events of one pass into records in status.notifications, written with the decision itself (the
# conditions), before any delivery: a restarted operator finds them there, delivered or not, and
# the unchanged conditions post no new Event, so nothing is queued or sent twice.
def _condition(status: ResyncPolicyStatus, type_: str) -> tuple[str, str]:
    c = next((c for c in status.conditions if c.type == type_), None)
    return (c.status, c.reason) if c is not None else ("", "")


def _in_sync_again(before: ResyncPolicyStatus, after: ResyncPolicyStatus) -> bool:
    """InSync turns True after a drift: Drifted was True, or it turned False (a drifted replica
    judged Unknown for a while, as during its resync) since InSync was last True."""
    b = next((c for c in before.conditions if c.type == PolicyCondition.IN_SYNC), None)
    if _condition(after, PolicyCondition.IN_SYNC)[0] != "True" or b is None or b.status == "True":
        return False
    d = next((c for c in before.conditions if c.type == PolicyCondition.DRIFTED), None)
    if d is None:
        return False
    if d.status == "True":
        return True
    since, lost = _parse(d.last_transition_time), _parse(b.last_transition_time)
    return d.status == "False" and since is not None and lost is not None and since >= lost


def _compact(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def policy_queue(
    spec: PolicyNotifySpec | None,
    uid: str,
    before: ResyncPolicyStatus,
    after: ResyncPolicyStatus,
    events: list[Event],
    now: dt.datetime,
) -> ResyncPolicyStatus:
    """``after`` with a pending record per channel for each decision of this pass that ``spec``
    asks to be told of: the Events DriftDetected, RemediationStarted, RemediationSuppressed, and
    InSyncAgain when every replica is in sync again after a drift (``_in_sync_again``)."""
    if spec is None or not channels(spec):
        return after
    drifted = [p.pod for p in after.pods if p.drifted]
    # (event, reason, message, replicas, resync)
    decided: list[tuple[str, str, str, list[str], str | None]] = []
    for ev in events:
        if ev.reason == PolicyEventReason.DRIFT_DETECTED:
            decided.append((ev.reason, PolicyReason.DRIFTED, ev.message, drifted, None))
        elif ev.reason == PolicyEventReason.REMEDIATION_STARTED:
            last = after.last_remediation
            why = _condition(after, PolicyCondition.REMEDIATION_SUPPRESSED)[1]
            decided.append(
                (
                    ev.reason,
                    why,
                    ev.message,
                    list(last.replicas) if last else drifted,
                    last.name if last else None,
                )
            )
        elif ev.reason == PolicyEventReason.REMEDIATION_SUPPRESSED:
            why = _condition(after, PolicyCondition.REMEDIATION_SUPPRESSED)[1]
            decided.append((ev.reason, why, ev.message, drifted, None))
    if _in_sync_again(before, after):
        decided.append(
            (
                "InSyncAgain",
                PolicyReason.IN_SYNC,
                f"every replica is in sync again ({after.in_sync})",
                [],
                None,
            )
        )
    records = list(after.notifications)
    ids = {r.id for r in records}
    for event, reason, message, replicas, resync in decided:
        if event not in spec.events:
            continue
        base = f"{uid}/{event}/{_compact(now)}"
        rid, n = base, 1
        while rid in ids:
            n += 1
            rid = f"{base}-{n}"
        ids.add(rid)
        for channel in channels(spec):
            records.append(
                PolicyNotificationStatus(
                    id=rid,
                    channel=channel,
                    event=event,
                    reason=str(reason)[:128],
                    message=message[:MAX_REASON],
                    replicas=replicas,
                    resync=resync,
                    created_at=_ts(now),
                )
            )
    if len(records) == len(after.notifications):
        return after
    return after.model_copy(update={"notifications": _keep(records)})


def _keep(records: list[PolicyNotificationStatus]) -> list[PolicyNotificationStatus]:
    """At most MAX_POLICY_NOTIFICATIONS records: the oldest finished (sent or given up) go first,
    then, if need be, the oldest pending."""
    out = list(records)
    while len(out) > MAX_POLICY_NOTIFICATIONS:
        done = next((i for i, r in enumerate(out) if r.sent_at or r.gave_up), 0)
        del out[done]
    return out


@dataclass(frozen=True)
class PolicyDecision:
    due: tuple[tuple[str, Channel], ...] = ()  # (id, channel) to deliver now, oldest first
    requeue_after: float | None = None


def policy_due(
    spec: PolicyNotifySpec | None, records: list[PolicyNotificationStatus], now: dt.datetime
) -> PolicyDecision:
    """The policy's records to deliver now, and when to come back for a retry. A record of a
    channel the spec no longer has is left alone."""
    if spec is None:
        return PolicyDecision()
    have = channels(spec)
    due: list[tuple[str, Channel]] = []
    wait: float | None = None
    for r in records:
        left = _left(r, now)
        if left is None or r.channel not in have:
            continue
        if left <= 0:
            due.append((r.id, r.channel))
        else:
            wait = left if wait is None else min(wait, left)
    return PolicyDecision(tuple(due), wait)


def policy_attempted(
    records: list[PolicyNotificationStatus],
    rid: str,
    channel: Channel,
    now: dt.datetime,
    error: str | None,
    retry: RetryPolicy,
) -> tuple[list[PolicyNotificationStatus], bool]:
    """The records after one attempt at (``rid``, ``channel``), and whether it just gave up."""
    out, gave_up = [], False
    for r in records:
        if r.id == rid and r.channel == channel:
            r, gave_up = _after_attempt(r, now, error, retry)
        out.append(r)
    return out, gave_up


def policy_payload(policy: Policy, record: PolicyNotificationStatus) -> dict[str, Any]:
    """The JSON document POSTed for a policy's decision (docs/policies.md#notifications)."""
    ns, name, t = policy.namespace, policy.name, policy.spec.target
    summary = f"ResyncPolicy {ns}/{name} {record.event}: {record.reason}"
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "ResyncPolicyNotification",
        "id": record.id,
        "event": record.event,
        "policy": name,
        "namespace": ns,
        "uid": policy.uid,
        "target": {"kind": t.kind, "name": t.name},
        "mode": policy.spec.mode,
        "reason": record.reason,
        "message": record.message,
        "replicas": list(record.replicas),
        "resync": record.resync,
        "decidedAt": record.created_at,
        "commands": {
            "status": f"kubectl get resyncpolicy {name} -n {ns} -o yaml",
            "describe": f"kubectl describe resyncpolicy {name} -n {ns}",
            "events": f"kubectl get events -n {ns} --field-selector involvedObject.name={name}",
            **({"resync": f"kubectl get clusterresync {record.resync} -n {ns}"} if record.resync else {}),
        },
        "text": summary + (f"\n{record.message}" if record.message else ""),
    }


def policy_slack_payload(policy: Policy, record: PolicyNotificationStatus) -> dict[str, Any]:
    p = policy_payload(policy, record)
    return slack_message(
        f"ResyncPolicy {p['namespace']}/{p['policy']} {p['event']}: {p['reason']}",
        p["message"],
        [
            ("Target", f"{p['target']['kind']} {p['target']['name']}"),
            ("Event", p["event"]),
            ("Reason", p["reason"]),
            ("Mode", p["mode"]),
            ("Replicas", ", ".join(p["replicas"])),
            ("ClusterResync", p["resync"] or ""),
        ],
        p["commands"]["describe"],
    )


def policy_email_message(
    policy: Policy, record: PolicyNotificationStatus, smtp: SmtpConfig, to: list[str]
) -> EmailMessage:
    p = policy_payload(policy, record)
    msg = EmailMessage()
    msg["Subject"] = f"[ResyncPolicy] {p['namespace']}/{p['policy']} {p['event']}: {p['reason']}"
    msg["From"] = smtp.sender
    msg["To"] = ", ".join(to)
    msg["X-ClusterResync-Delivery"] = f"{record.id}/email"
    lines = [
        f"ResyncPolicy {p['namespace']}/{p['policy']} of {p['target']['kind']} {p['target']['name']} "
        f"(mode {p['mode']}): {p['event']} ({p['reason']}), decided at {p['decidedAt']}.",
        "",
        p["message"],
        "",
        f"Replicas: {', '.join(p['replicas']) or '-'}",
        *([f"ClusterResync: {p['resync']}"] if p["resync"] else []),
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


def secret_value(kube: Kube, namespace: str, name: str, key: str) -> str:
    """One key of a Secret, read live through the adapter (never cached); raises DeliveryError,
    whose message names the Secret and the key, never the value."""
    what = f"Secret {namespace}/{name}"
    try:
        secret = kube.get(Ref("v1", "Secret", "secrets", name, namespace))
    except KubeError as e:
        if e.kind == ErrorKind.FORBIDDEN:
            raise DeliveryError(
                f"the operator may not read {what} (RBAC): grant it get on that Secret "
                "(docs/observability.md#notifications)"
            ) from None
        raise DeliveryError(f"cannot read {what}: {e.kind}") from None
    raw = ((secret or {}).get("data") or {}).get(key)
    if secret is None or raw is None:
        raise DeliveryError(f"{what} not found" if secret is None else f"{what} has no key {key}")
    return base64.b64decode(raw).decode("utf-8", "replace").strip()


def webhook_url(kube: Kube, namespace: str, spec: NotifySpec | PolicyNotifySpec) -> str:
    assert spec.webhook is not None
    ref = spec.webhook.url_secret_ref
    url = secret_value(kube, namespace, ref.name, ref.key)
    if not url.startswith(("https://", "http://")):
        raise DeliveryError(
            f"the value of Secret {namespace}/{ref.name}, key {ref.key}, is not an http(s) URL"
        )
    return url


def smtp_config(kube: Kube, namespace: str, email: EmailNotify) -> SmtpConfig:
    """The SMTP server of ``email``: its ``smtp`` (credentials from its Secret), else the
    operator's. The operator's extra CAs (``CLUSTERRESYNC_SMTP_CA_FILE``) are trusted for both."""
    s = email.smtp
    if s is None:
        return _smtp
    security: Security = {"StartTLS": "starttls", "TLS": "tls", "None": "none"}[s.security]  # type: ignore[assignment]
    username = password = ""
    if s.credentials_secret_ref is not None:
        ref = s.credentials_secret_ref
        username = secret_value(kube, namespace, ref.name, ref.username_key)
        password = secret_value(kube, namespace, ref.name, ref.password_key)
    return SmtpConfig(
        host=s.host,
        port=s.port or (465 if security == "tls" else 587),
        security=security,
        sender=s.sender,
        username=username,
        password=password,
        ca_file=_smtp.ca_file,
    )


def post_webhook(
    url: str, document: dict[str, Any], timeout: float = TIMEOUT_SECONDS, *, delivery: str | None = None
) -> None:
    req = urllib.request.Request(
        url,
        data=json.dumps(document).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "clusterresync-operator",
            "X-ClusterResync-Delivery": delivery if delivery is not None else str(document.get("id", "")),
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


def _tls(smtp: SmtpConfig) -> ssl.SSLContext:
    """Certificates verified, host names checked: the system's CAs, and the operator's CA file."""
    ctx = ssl.create_default_context()
    if smtp.ca_file:
        ctx.load_verify_locations(cafile=smtp.ca_file)
    return ctx


def send_email(smtp: SmtpConfig, msg: EmailMessage, timeout: float = TIMEOUT_SECONDS) -> None:
    if not smtp.configured:
        raise DeliveryError(
            "no SMTP server: set spec email.smtp, or configure the operator's (--smtp-host and --smtp-from)"
        )
    if smtp.username and smtp.security == "none":
        raise DeliveryError(
            f"SMTP {smtp.host}:{smtp.port}: credentials are never sent unencrypted: use security StartTLS or TLS"
        )
    try:
        server: smtplib.SMTP
        if smtp.security == "tls":
            server = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=timeout, context=_tls(smtp))
        else:
            server = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
        with server:
            if smtp.security == "starttls":
                server.starttls(context=_tls(smtp))
            if smtp.username:
                server.login(smtp.username, smtp.password)
            server.send_message(msg)
    except (smtplib.SMTPException, OSError) as e:
        raise DeliveryError(
            f"SMTP {smtp.host}:{smtp.port}: {type(e).__name__}: {_scrub(str(e), smtp.password)}"
        ) from None


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _send(
    kube: Kube,
    namespace: str,
    spec: NotifySpec | PolicyNotifySpec,
    channel: Channel,
    delivery: str,
    generic: Callable[[], dict[str, Any]],
    slack: Callable[[], dict[str, Any]],
    mail: Callable[[SmtpConfig, list[str]], EmailMessage],
) -> None:
    """One attempt on one channel, in the format the spec asks for; raises DeliveryError."""
    if channel == "Webhook":
        hook: WebhookNotify | None = spec.webhook
        assert hook is not None
        document = slack() if hook.format == "Slack" else generic()
        post_webhook(webhook_url(kube, namespace, spec), document, delivery=delivery)
    else:
        assert spec.email is not None
        smtp = smtp_config(kube, namespace, spec.email)
        send_email(smtp, mail(smtp, list(spec.email.to)))


def deliver(kube: Kube, resync: Resync, channel: Channel) -> None:
    """One attempt; raises DeliveryError."""
    spec = resync.spec.notify
    assert spec is not None
    _send(
        kube,
        resync.namespace,
        spec,
        channel,
        delivery_id(resync, channel, resync.status.phase),
        lambda: payload(resync, channel),
        lambda: slack_payload(resync),
        lambda smtp, to: email_message(resync, smtp, to),
    )


def _attempt(send: Callable[[], None]) -> str | None:
    """The error of one attempt, None if it was delivered; a notification never fails a pass."""
    try:
        send()
    except DeliveryError as e:
        return str(e)
    except Exception as e:
        return f"{type(e).__name__}"
    return None


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
        error = _attempt(lambda: deliver(kube, resync, channel))  # noqa: B023 (called at once)
        out.notifications, gave_up = attempted(out.notifications, channel, event, now, error, _retry)
        logger = log.bind(resync=resync.name, namespace=resync.namespace, channel=channel, notify_event=event)
        _count(logger, channel, error, gave_up)
        if error is None:
            out.sent.append(channel)
        elif gave_up:
            out.failed.append((channel, error))
    return out


def _count(logger: Any, channel: Channel, error: str | None, gave_up: bool) -> None:
    if error is None:
        metrics.record_notification(channel.lower(), "Sent")
        logger.info("notification sent")
    else:
        metrics.record_notification(channel.lower(), "Failed" if gave_up else "Retrying")
        logger.warning("notification failed", error=error, gave_up=gave_up)


@dataclass
class PolicyDelivered:
    notifications: list[PolicyNotificationStatus]
    failed: list[tuple[PolicyNotificationStatus, str]] = field(default_factory=list)  # gave up now
    sent: list[PolicyNotificationStatus] = field(default_factory=list)


def deliver_policy(kube: Kube, policy: Policy, spec: PolicyNotifySpec, rec: PolicyNotificationStatus) -> None:
    """One attempt at one of a policy's records; raises DeliveryError."""
    _send(
        kube,
        policy.namespace,
        spec,
        rec.channel,
        f"{rec.id}/{rec.channel.lower()}",
        lambda: policy_payload(policy, rec),
        lambda: policy_slack_payload(policy, rec),
        lambda smtp, to: policy_email_message(policy, rec, smtp, to),
    )


def run_policy(kube: Kube, policy: Policy, decision: PolicyDecision, now: dt.datetime) -> PolicyDelivered:
    """Deliver the policy's records ``decision`` says are due (each once), oldest first."""
    spec = policy.spec.notify
    out = PolicyDelivered(list(policy.status.notifications))
    if spec is None:
        return out
    for rid, channel in decision.due:
        record = next((r for r in out.notifications if r.id == rid and r.channel == channel), None)
        if record is None:
            continue
        rec = record
        error = _attempt(lambda: deliver_policy(kube, policy, spec, rec))  # noqa: B023 (called at once)
        out.notifications, gave_up = policy_attempted(out.notifications, rid, channel, now, error, _retry)
        logger = log.bind(
            policy=policy.name, namespace=policy.namespace, channel=channel, notify_event=rec.event
        )
        _count(logger, channel, error, gave_up)
        if error is None:
            out.sent.append(rec)
        elif gave_up:
            out.failed.append((rec, error))
    return out
