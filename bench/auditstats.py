"""Figures from kubesim's audit log (``kubesim.audit``): one event per request, with the effective
user, verb, objectRef and two timestamps from kubesim's clock (``requestReceivedTimestamp`` and
``stageTimestamp``, both ``time.time()``-based, as the benchmark's own wall-clock readings are).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubesim import audit
from kubesim.cluster import ADMIN_USER

Event = dict[str, Any]


def ts(value: str) -> float:
    """A ``metav1.MicroTime`` (RFC 3339, UTC) as seconds since the epoch."""
    return datetime.fromisoformat(value).timestamp()


def received(ev: Event) -> float:
    return ts(ev["requestReceivedTimestamp"])


def completed(ev: Event) -> float:
    return ts(ev["stageTimestamp"])


def resource_of(ev: Event) -> str:
    """``resource`` or ``resource/subresource``; the path of a non-resource request."""
    ref = ev.get("objectRef")
    if not ref:
        return str(ev.get("requestURI", "?")).split("?", 1)[0]
    sub = ref.get("subresource")
    return f"{ref.get('resource', '?')}/{sub}" if sub else str(ref.get("resource", "?"))


def requests_of(events: Iterable[Event], user: str) -> list[Event]:
    """The user's requests, once each (one event per ``auditID``: a watch writes ResponseStarted and
    then ResponseComplete; a watch still open has only the first), in the order received."""
    by_id: dict[str, Event] = {}
    for ev in audit.select(events, user=user, stage=None):
        by_id.setdefault(ev["auditID"], ev)
    return sorted(by_id.values(), key=received)


@dataclass
class RequestStats:
    """The operator's requests received in a window, split into leader election and the rest."""

    start: float
    end: float
    work: Counter[tuple[str, str]] = field(default_factory=Counter)  # (verb, resource) -> requests
    leases: int = 0

    @property
    def total(self) -> int:
        return sum(self.work.values())


def request_stats(requests: list[Event], start: float, end: float) -> RequestStats:
    stats = RequestStats(start, end)
    for ev in requests:
        if not start <= received(ev) <= end:
            continue
        if (ev.get("objectRef") or {}).get("resource") == "leases":
            stats.leases += 1
        else:
            stats.work[(str(ev.get("verb")), resource_of(ev))] += 1
    return stats


def resync_created(events: list[Event], namespace: str) -> float | None:
    """When kubesim received the admin's (first) ``create clusterresyncs`` in ``namespace``: what
    ``kubectl apply`` sends for a new object, after its GET found none."""
    creates = audit.select(
        events, user=ADMIN_USER, verb="create", resource="clusterresyncs", namespace=namespace, code=201
    )
    return min(received(e) for e in creates) if creates else None


def apply_to_first_snapshot(events: list[Event], operator_user: str, namespace: str) -> float | None:
    """Seconds from :func:`resync_created` until the operator's first successful
    ``create volumesnapshots`` in ``namespace`` completed (the VolumeSnapshot exists)."""
    start = resync_created(events, namespace)
    snaps = audit.select(
        events, user=operator_user, verb="create", resource="volumesnapshots", namespace=namespace, code=201
    )
    if start is None or not snaps:
        return None
    return min(completed(e) for e in snaps) - start


def cluster_wide_lists_after(requests: list[Event], after: float) -> Counter[str]:
    """LISTs without a namespace (across all namespaces, or of a cluster-scoped resource) received
    after ``after``, counted per resource."""
    return Counter(
        resource_of(ev) for ev in audit.cluster_wide_lists(requests, stage=None) if received(ev) > after
    )


def users(events: Iterable[Event]) -> Counter[str]:
    """Requests per effective user (to find the operator's exact username in the log)."""
    return Counter(audit.effective_user(ev) for ev in audit.select(events))
