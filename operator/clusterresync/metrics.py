"""Prometheus metrics: what a platform team watches (docs/observability.md has the table).

Two kinds, so that the numbers are right after a restart of the operator:

- **Gauges are computed at scrape time** from the watch caches (``StateCollector``): resyncs by
  phase, drifted replicas of each ResyncPolicy, each probed pod's lag (the policy's last
  reading), whether this process leads. A new process shows
  the same values as soon as its caches have listed; nothing is carried over in memory.
- **Counters and histograms are process-lifetime**, as Prometheus expects (``rate()`` and
  ``increase()`` handle the reset of a restart). They count *transitions this process wrote*:
  ``record_resync`` compares the status a pass started from with the one it wrote, so a restarted
  operator that reads a resync already finished counts nothing again (``record_policy`` does the
  same for a ResyncPolicy). Only the leader writes, so a transition is counted once across the
  replicas (sum them in PromQL).

Label cardinality is bounded: ``namespace`` (the served namespaces), phases, outcomes and reasons
(fixed sets, ``conditions.py``), probe presets and verdicts (fixed), error kinds and verbs
(fixed); a name appears only on the per-ResyncPolicy series, as there are few policies (one per
database) and they are long-lived, unlike ClusterResyncs; a pod name only on the lag gauges, whose
pods are those of the StatefulSet a policy watches (its replicas: bounded by the policies and their
sizes, and a gauge, so a pod that goes away leaves no series behind at the next scrape).

The recording functions take plain values and are pure apart from the metric update, so that
they are unit-tested without a cluster (``tests/unit/test_metrics.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .conditions import PolicyCondition
from .models import ClusterResyncStatus, ResyncPolicyStatus

log = structlog.get_logger("clusterresync.metrics")

DEFAULT_PORT = 9090  # Kopf's health endpoint is on 8080 in manifests/ (--liveness)
PHASES = ("Pending", "Preflight", "Snapshotting", "Resyncing", "Completed", "Failed")
FINISHED = ("Completed", "Failed")
HOOKS = ("preSnapshot", "postSnapshot")  # Exec actions of a resync that are not probes

REGISTRY = CollectorRegistry()

RESYNCS_FINISHED = Counter(
    "clusterresync_resyncs_finished_total",
    "ClusterResyncs that reached Completed or Failed, by outcome (the phase) and reason (of the Complete "
    "or Failed condition).",
    ["namespace", "outcome", "reason"],
    registry=REGISTRY,
)
RESYNC_DURATION = Histogram(
    "clusterresync_resync_duration_seconds",
    "From status.startedAt (preflight) to status.completedAt of a finished ClusterResync.",
    ["namespace", "outcome"],
    buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400),
    registry=REGISTRY,
)
SWAP_DOWNTIME = Histogram(
    "clusterresync_replica_swap_downtime_seconds",
    "How long a replica was out of service: from the swap (its claims deleted) to its verification "
    "(pod Ready on the copy, probe InSync).",
    ["namespace"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
REPLICA_RESYNC_DURATION = Histogram(
    "clusterresync_replica_resync_duration_seconds",
    "One replica's whole resync: from its start (the copy restored into staging claims, while it still "
    "serves) to its verification on the copy.",
    ["namespace"],
    buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400),
    registry=REGISTRY,
)
SNAPSHOT_DURATION = Histogram(
    "clusterresync_snapshot_duration_seconds",
    "One VolumeSnapshot of the primary's volume: from the object's creation to readyToUse (as this "
    "process observed it).",
    ["namespace"],
    buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
    registry=REGISTRY,
)
REPLICAS_ROLLED_BACK = Counter(
    "clusterresync_replicas_rolled_back_total",
    "Replicas put back on their old volumes after a failed verification, by result (ReplicaRolledBack: "
    "back on the old data; RollbackFailed: both volumes kept for a person).",
    ["namespace", "result"],
    registry=REGISTRY,
)
REMEDIATIONS = Counter(
    "clusterresync_policy_remediations_total",
    "ClusterResyncs a ResyncPolicy created (outcome Created) or failed to create (CreateFailed), and "
    "how those ended (Completed, Failed).",
    ["namespace", "policy", "mode", "outcome"],
    registry=REGISTRY,
)
REMEDIATIONS_SUPPRESSED = Counter(
    "clusterresync_policy_remediations_suppressed_total",
    "A ResyncPolicy's RemediationSuppressed condition turning True, by its reason (ModeOff, Suspended, "
    "ResyncInProgress, PrimaryUnhealthy, CoolingDown, DailyLimitReached, DivergedNeedsForce).",
    ["namespace", "reason"],
    registry=REGISTRY,
)
PROBE_RUNS = Counter(
    "clusterresync_probe_runs_total",
    "Probe readings judged, by preset and verdict (InSync, Lagging, Diverged, Unknown).",
    ["preset", "verdict"],
    registry=REGISTRY,
)
PROBE_DURATION = Histogram(
    "clusterresync_probe_duration_seconds",
    "How long one probe took (the exec or HTTP GET in the pod).",
    ["preset"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
API_ERRORS = Counter(
    "clusterresync_api_errors_total",
    "Failed Kubernetes API requests (each attempt), by kind (kube.ErrorKind) and verb.",
    ["kind", "verb"],
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "clusterresync_notifications_total",
    "Notification deliveries, by channel (webhook, email) and outcome (Sent, Retrying, Failed).",
    ["channel", "outcome"],
    registry=REGISTRY,
)


# -- recording: counters and histograms ----------------------------------------------------------
def _parse(ts: str | None) -> dt.datetime | None:
    if not ts:
        return None
    try:
        return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


def _final_reason(status: ClusterResyncStatus) -> str:
    for c in status.conditions:
        if c.type in ("Complete", "Failed") and c.status == "True":
            return c.reason
    return ""


def record_resync(
    namespace: str,
    before: ClusterResyncStatus,
    after: ClusterResyncStatus,
    now: dt.datetime,
    *,
    policy: str = "",
    mode: str = "",
    snapshots: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Count what changed between the status a pass started from and the one it wrote.
    ``snapshots``: the VolumeSnapshots the pass observed, by name (their creationTimestamp starts
    the snapshot duration)."""
    if after.phase in FINISHED and before.phase not in FINISHED:
        RESYNCS_FINISHED.labels(namespace, after.phase, _final_reason(after)).inc()
        start, end = _parse(after.started_at), _parse(after.completed_at) or now
        if start is not None:
            RESYNC_DURATION.labels(namespace, after.phase).observe(max(0.0, (end - start).total_seconds()))
        if policy:
            REMEDIATIONS.labels(namespace, policy, mode, after.phase).inc()
    was = {r.name: r for r in before.replicas}
    for r in after.replicas:
        old = was.get(r.name)
        old_phase = old.phase if old is not None else None
        if r.phase == old_phase:
            continue
        if r.phase in ("Finishing", "Completed") and old_phase in ("Swapping", "Verifying"):
            # Verified on the copy: the end of its downtime and of its resync.
            swapped = _parse(r.swap_started_at)
            if swapped is not None:
                SWAP_DOWNTIME.labels(namespace).observe(max(0.0, (now - swapped).total_seconds()))
            started = _parse(r.started_at)
            if started is not None:
                REPLICA_RESYNC_DURATION.labels(namespace).observe(max(0.0, (now - started).total_seconds()))
        if (
            r.phase == "Failed"
            and r.reason in ("ReplicaRolledBack", "RollbackFailed")
            and old_phase == "RollingBack"
        ):
            REPLICAS_ROLLED_BACK.labels(namespace, r.reason).inc()
    _record_snapshots(namespace, before, after, now, snapshots or {})


def _record_snapshots(
    namespace: str,
    before: ClusterResyncStatus,
    after: ClusterResyncStatus,
    now: dt.datetime,
    snapshots: Mapping[str, Mapping[str, Any]],
) -> None:
    """A snapshot the status recorded not ready and now records ready: from the VolumeSnapshot's
    creation to now. A Clone's sources are ready when first recorded, so they are not counted, nor
    is a snapshot whose object the pass did not see (no creation time to start from)."""
    waiting = {s.name for s in before.snapshots if not s.ready_to_use}
    for s in after.snapshots:
        if not s.ready_to_use or s.name not in waiting:
            continue
        seen = snapshots.get(s.name) or {}
        created = _parse(str((seen.get("metadata") or {}).get("creationTimestamp") or ""))
        if created is not None:
            SNAPSHOT_DURATION.labels(namespace).observe(max(0.0, (now - created).total_seconds()))


def record_resync_probes(preset: str, before: ClusterResyncStatus, after: ClusterResyncStatus) -> None:
    """Probe readings newly recorded in a resync's status.probes (stage Before or After)."""
    seen = {(p.pod, p.stage): p.observed_at for p in before.probes}
    for p in after.probes:
        if seen.get((p.pod, p.stage)) != p.observed_at:
            PROBE_RUNS.labels(preset, p.verdict).inc()


def record_policy(namespace: str, preset: str, before: ResyncPolicyStatus, after: ResyncPolicyStatus) -> None:
    """Probe readings newly recorded in a ResyncPolicy's status.pods, and a remediation newly
    suppressed: the RemediationSuppressed condition turning True, or True with another reason (as
    the policy posts its RemediationSuppressed Event)."""
    seen = {p.pod: p.observed_at for p in before.pods}
    for p in after.pods:
        if seen.get(p.pod) != p.observed_at:
            PROBE_RUNS.labels(preset, p.verdict).inc()
    was, now = _suppressed(before), _suppressed(after)
    if now is not None and now != was:
        REMEDIATIONS_SUPPRESSED.labels(namespace, now).inc()


def _suppressed(status: ResyncPolicyStatus) -> str | None:
    """The reason of a True RemediationSuppressed condition, else None."""
    for c in status.conditions:
        if c.type == PolicyCondition.REMEDIATION_SUPPRESSED and c.status == "True":
            return c.reason
    return None


def record_remediation(namespace: str, policy: str, mode: str, created: bool) -> None:
    REMEDIATIONS.labels(namespace, policy, mode, "Created" if created else "CreateFailed").inc()


def record_probe_duration(preset: str, seconds: float) -> None:
    PROBE_DURATION.labels(preset).observe(max(0.0, seconds))


def record_api_error(kind: str, verb: str) -> None:
    API_ERRORS.labels(kind, verb or "unknown").inc()


def record_notification(channel: str, outcome: str) -> None:
    NOTIFICATIONS.labels(channel, outcome).inc()


# -- gauges, at scrape time ------------------------------------------------------------------------
Objects = Callable[[], Iterable[dict[str, Any]]]


class StateCollector(Collector):
    """Gauges computed from the watch caches on every scrape (right after a restart too)."""

    def __init__(self) -> None:
        self.resyncs: Objects | None = None
        self.policies: Objects | None = None
        self.leading: Callable[[], bool] | None = None

    def collect(self) -> Iterator[Metric]:
        phases = GaugeMetricFamily(
            "clusterresync_resyncs",
            "ClusterResyncs by namespace and phase (every phase is reported for a namespace that has one).",
            labels=["namespace", "phase"],
        )
        for (ns, phase), n in sorted(resyncs_by_phase(_safe(self.resyncs)).items()):
            phases.add_metric([ns, phase], n)
        yield phases
        drifted = GaugeMetricFamily(
            "clusterresync_policy_drifted_replicas",
            "Replicas a ResyncPolicy's last probes found drifted (status.pods[].drifted).",
            labels=["namespace", "policy"],
        )
        policies = _safe(self.policies)
        for (ns, name), n in sorted(drifted_by_policy(policies).items()):
            drifted.add_metric([ns, name], n)
        yield drifted
        lag_bytes = GaugeMetricFamily(
            "clusterresync_policy_replica_lag_bytes",
            "Bytes behind the primary at a ResyncPolicy's last probe of the pod (status.pods[].lagBytes), "
            "when the engine can tell.",
            labels=["namespace", "policy", "pod"],
        )
        lag_seconds = GaugeMetricFamily(
            "clusterresync_policy_replica_lag_seconds",
            "Seconds behind the primary at a ResyncPolicy's last probe of the pod (status.pods[].lagSeconds), "
            "when the engine can tell.",
            labels=["namespace", "policy", "pod"],
        )
        for (ns, name, pod), (nbytes, nseconds) in sorted(lag_by_pod(policies).items()):
            if nbytes is not None:
                lag_bytes.add_metric([ns, name, pod], nbytes)
            if nseconds is not None:
                lag_seconds.add_metric([ns, name, pod], nseconds)
        yield lag_bytes
        yield lag_seconds
        leader = GaugeMetricFamily(
            "clusterresync_leader", "1 if this operator process holds the leader Lease and acts, else 0."
        )
        leading = False
        if self.leading is not None:
            try:
                leading = self.leading()
            except Exception:
                leading = False
        leader.add_metric([], 1.0 if leading else 0.0)
        yield leader


def _safe(source: Objects | None) -> list[dict[str, Any]]:
    """The objects, or none when the caches have not listed (or cannot): a scrape never fails."""
    if source is None:
        return []
    try:
        return list(source())
    except Exception as e:
        log.warning("metrics: cannot read the watch caches", error=str(e))
        return []


def resyncs_by_phase(resyncs: Iterable[dict[str, Any]]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for r in resyncs:
        ns = str((r.get("metadata") or {}).get("namespace") or "")
        for p in PHASES:
            counts.setdefault((ns, p), 0)
        phase = str((r.get("status") or {}).get("phase") or "Pending")
        counts[(ns, phase)] = counts.get((ns, phase), 0) + 1
    return counts


def drifted_by_policy(policies: Iterable[dict[str, Any]]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for p in policies:
        m = p.get("metadata") or {}
        pods = (p.get("status") or {}).get("pods") or []
        out[(str(m.get("namespace") or ""), str(m.get("name") or ""))] = sum(
            1 for x in pods if isinstance(x, dict) and x.get("drifted")
        )
    return out


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def lag_by_pod(
    policies: Iterable[dict[str, Any]],
) -> dict[tuple[str, str, str], tuple[float | None, float | None]]:
    """(namespace, policy, pod) -> (lagBytes, lagSeconds) of each pod's last probe, when known."""
    out: dict[tuple[str, str, str], tuple[float | None, float | None]] = {}
    for p in policies:
        m = p.get("metadata") or {}
        key = (str(m.get("namespace") or ""), str(m.get("name") or ""))
        for x in (p.get("status") or {}).get("pods") or []:
            if not isinstance(x, dict) or not x.get("pod"):
                continue
            nbytes, nseconds = _number(x.get("lagBytes")), _number(x.get("lagSeconds"))
            if nbytes is not None or nseconds is not None:
                out[(*key, str(x["pod"]))] = (nbytes, nseconds)
    return out


STATE = StateCollector()
REGISTRY.register(STATE)


# -- the endpoint ----------------------------------------------------------------------------------
_config: tuple[str, int] = ("0.0.0.0", DEFAULT_PORT)
_server: Any = None


def configure(address: str, port: int) -> None:
    global _config
    _config = (address, port)


def serve() -> bool:
    """Serve ``/metrics`` on the configured address and port (0: off), in a thread of its own. A
    port in use is logged, not fatal: metrics never stop the operator."""
    global _server
    address, port = _config
    if port == 0 or _server is not None:
        return _server is not None
    try:
        _server, _thread = start_http_server(port, addr=address, registry=REGISTRY)
    except OSError as e:
        log.error("cannot serve metrics", address=address, port=port, error=str(e))
        return False
    log.info("serving metrics", address=address, port=port, path="/metrics")
    return True


def sample(name: str, labels: Sequence[tuple[str, str]] = ()) -> float | None:
    """A sample's current value (tests and debugging)."""
    return REGISTRY.get_sample_value(name, dict(labels))
