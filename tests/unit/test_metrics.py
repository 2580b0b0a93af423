"""The metrics: what each status transition counts, the gauges computed from cached objects, the
endpoint, and the CLI flags. Values are read back as Prometheus exposes them."""

from __future__ import annotations

import datetime as dt
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clusterresync import cli, metrics
from clusterresync.kube import ErrorKind, KubeError
from clusterresync.models import (
    ClusterResyncStatus,
    Condition,
    ProbeResult,
    ReplicaStatus,
    ResyncPolicyStatus,
    SnapshotStatus,
)

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def ts(seconds_before: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds_before)).strftime("%Y-%m-%dT%H:%M:%SZ")


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def finished(phase: str, reason: str, **kw: Any) -> ClusterResyncStatus:
    cond = "Complete" if phase == "Completed" else "Failed"
    return ClusterResyncStatus(
        phase=phase,
        started_at=ts(100),
        completed_at=ts(0),
        conditions=[
            Condition(type=cond, status="True", reason=reason, message="", last_transition_time=ts(0))
        ],
        **kw,
    )


def test_a_finished_resync_is_counted_once_with_its_duration() -> None:
    ns = "m-finish"
    running = ClusterResyncStatus(phase="Resyncing", started_at=ts(100))
    done = finished("Completed", "ResyncSucceeded")
    metrics.record_resync(ns, running, done, NOW)
    # A later pass (or a restarted operator) that starts from the finished status counts nothing.
    metrics.record_resync(ns, done, done, NOW)
    assert (
        value(
            "clusterresync_resyncs_finished_total",
            namespace=ns,
            outcome="Completed",
            reason="ResyncSucceeded",
        )
        == 1
    )
    assert value("clusterresync_resync_duration_seconds_count", namespace=ns, outcome="Completed") == 1
    assert value("clusterresync_resync_duration_seconds_sum", namespace=ns, outcome="Completed") == 100
    assert (
        value("clusterresync_resync_duration_seconds_bucket", namespace=ns, outcome="Completed", le="120.0")
        == 1
    )
    assert (
        value("clusterresync_resync_duration_seconds_bucket", namespace=ns, outcome="Completed", le="60.0")
        == 0
    )


def test_a_failed_remediation_is_counted_under_its_policy() -> None:
    ns = "m-remediation"
    metrics.record_resync(
        ns,
        ClusterResyncStatus(phase="Preflight", started_at=ts(100)),
        finished("Failed", "ReplicaHasUnsyncedData"),
        NOW,
        policy="pg",
        mode="Auto",
    )
    assert (
        value(
            "clusterresync_resyncs_finished_total",
            namespace=ns,
            outcome="Failed",
            reason="ReplicaHasUnsyncedData",
        )
        == 1
    )
    assert (
        value(
            "clusterresync_policy_remediations_total",
            namespace=ns,
            policy="pg",
            mode="Auto",
            outcome="Failed",
        )
        == 1
    )
    metrics.record_remediation(ns, "pg", "Manual", created=True)
    metrics.record_remediation(ns, "pg", "Manual", created=False)
    assert (
        value(
            "clusterresync_policy_remediations_total",
            namespace=ns,
            policy="pg",
            mode="Manual",
            outcome="Created",
        )
        == 1
    )
    assert (
        value(
            "clusterresync_policy_remediations_total",
            namespace=ns,
            policy="pg",
            mode="Manual",
            outcome="CreateFailed",
        )
        == 1
    )


def test_swap_downtime_is_from_the_swap_to_the_verification() -> None:
    ns = "m-swap"
    verifying = ReplicaStatus(name="db-0", phase="Verifying", swap_started_at=ts(7))
    before = ClusterResyncStatus(phase="Resyncing", replicas=[verifying])
    after = ClusterResyncStatus(
        phase="Resyncing", replicas=[verifying.model_copy(update={"phase": "Finishing"})]
    )
    metrics.record_resync(ns, before, after, NOW)
    metrics.record_resync(ns, after, after, NOW)  # no transition: nothing more
    assert value("clusterresync_replica_swap_downtime_seconds_count", namespace=ns) == 1
    assert value("clusterresync_replica_swap_downtime_seconds_sum", namespace=ns) == 7


def test_a_replicas_resync_duration_is_from_its_start_to_its_verification() -> None:
    ns = "m-replica"
    # Started (staging) 300 s ago, swapped 7 s ago, verified now.
    verifying = ReplicaStatus(name="db-0", phase="Verifying", started_at=ts(300), swap_started_at=ts(7))
    before = ClusterResyncStatus(phase="Resyncing", replicas=[verifying])
    after = ClusterResyncStatus(
        phase="Resyncing", replicas=[verifying.model_copy(update={"phase": "Finishing"})]
    )
    metrics.record_resync(ns, before, after, NOW)
    # Finishing -> Completed is not a second verification.
    done = ClusterResyncStatus(
        phase="Resyncing", replicas=[verifying.model_copy(update={"phase": "Completed"})]
    )
    metrics.record_resync(ns, after, done, NOW)
    assert value("clusterresync_replica_resync_duration_seconds_count", namespace=ns) == 1
    assert value("clusterresync_replica_resync_duration_seconds_sum", namespace=ns) == 300
    assert value("clusterresync_replica_resync_duration_seconds_bucket", namespace=ns, le="300.0") == 1
    assert value("clusterresync_replica_resync_duration_seconds_bucket", namespace=ns, le="120.0") == 0
    assert value("clusterresync_replica_swap_downtime_seconds_sum", namespace=ns) == 7
    # A replica that fails during staging was never verified: no sample.
    staging = ReplicaStatus(name="db-2", phase="Restoring", started_at=ts(50))
    metrics.record_resync(
        ns,
        ClusterResyncStatus(phase="Resyncing", replicas=[staging]),
        ClusterResyncStatus(
            phase="Resyncing",
            replicas=[staging.model_copy(update={"phase": "Failed", "reason": "RestoreFailed"})],
        ),
        NOW,
    )
    assert value("clusterresync_replica_resync_duration_seconds_count", namespace=ns) == 1


def snapshot_object(name: str, created_seconds_before: float) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": ts(created_seconds_before)},
        "status": {"readyToUse": True},
    }


def test_a_snapshot_is_timed_from_its_creation_to_ready_to_use() -> None:
    ns = "m-snapshot"
    taking = ClusterResyncStatus(
        phase="Snapshotting",
        snapshots=[
            SnapshotStatus(volume="data", name="snap-data"),
            SnapshotStatus(volume="wal", name="snap-wal"),
        ],
    )
    one_ready = ClusterResyncStatus(
        phase="Snapshotting",
        snapshots=[
            SnapshotStatus(volume="data", name="snap-data", ready_to_use=True),
            SnapshotStatus(volume="wal", name="snap-wal"),
        ],
    )
    both_ready = ClusterResyncStatus(
        phase="Resyncing",
        snapshots=[
            SnapshotStatus(volume="data", name="snap-data", ready_to_use=True),
            SnapshotStatus(volume="wal", name="snap-wal", ready_to_use=True),
        ],
    )
    seen = {"snap-data": snapshot_object("snap-data", 42), "snap-wal": snapshot_object("snap-wal", 90)}
    metrics.record_resync(ns, taking, one_ready, NOW, snapshots=seen)
    assert value("clusterresync_snapshot_duration_seconds_count", namespace=ns) == 1
    assert value("clusterresync_snapshot_duration_seconds_sum", namespace=ns) == 42
    metrics.record_resync(ns, one_ready, both_ready, NOW, snapshots=seen)
    metrics.record_resync(ns, both_ready, both_ready, NOW, snapshots=seen)  # no transition
    assert value("clusterresync_snapshot_duration_seconds_count", namespace=ns) == 2
    assert value("clusterresync_snapshot_duration_seconds_sum", namespace=ns) == 42 + 90
    assert value("clusterresync_snapshot_duration_seconds_bucket", namespace=ns, le="60.0") == 1

    # A Clone's source is ready when first recorded, and a status rebuilt after a restart records a
    # ready snapshot without a "not ready" before it: neither is a snapshot this process waited for.
    ns2 = "m-snapshot-clone"
    clone = ClusterResyncStatus(
        phase="Snapshotting", snapshots=[SnapshotStatus(volume="data", name="db-1-data", ready_to_use=True)]
    )
    metrics.record_resync(ns2, ClusterResyncStatus(phase="Preflight"), clone, NOW, snapshots=seen)
    # A snapshot whose object the pass did not see has no start: not counted.
    metrics.record_resync(ns2, taking, both_ready, NOW, snapshots={})
    assert value("clusterresync_snapshot_duration_seconds_count", namespace=ns2) == 0


def suppressed(reason: str, status: str = "True") -> ResyncPolicyStatus:
    return ResyncPolicyStatus(
        conditions=[
            Condition(
                type="RemediationSuppressed",
                status=status,
                reason=reason,
                message="",
                last_transition_time=ts(0),
            )
        ]
    )


def test_suppressed_remediations_are_counted_by_reason_when_the_condition_turns() -> None:
    ns = "m-suppressed"
    metrics.record_policy(ns, "Command", ResyncPolicyStatus(), suppressed("ModeOff"))
    metrics.record_policy(ns, "Command", suppressed("ModeOff"), suppressed("ModeOff"))  # still: once
    assert value("clusterresync_policy_remediations_suppressed_total", namespace=ns, reason="ModeOff") == 1
    # Another guard: counted under its reason.
    metrics.record_policy(ns, "Command", suppressed("ModeOff"), suppressed("CoolingDown"))
    assert (
        value("clusterresync_policy_remediations_suppressed_total", namespace=ns, reason="CoolingDown") == 1
    )
    # Not needed any more (False), then suppressed again: a new suppression.
    metrics.record_policy(ns, "Command", suppressed("CoolingDown"), suppressed("NotNeeded", "False"))
    metrics.record_policy(ns, "Command", suppressed("NotNeeded", "False"), suppressed("Remediating", "False"))
    metrics.record_policy(ns, "Command", suppressed("Remediating", "False"), suppressed("CoolingDown"))
    assert (
        value("clusterresync_policy_remediations_suppressed_total", namespace=ns, reason="CoolingDown") == 2
    )
    assert value("clusterresync_policy_remediations_suppressed_total", namespace=ns, reason="NotNeeded") == 0
    assert (
        value("clusterresync_policy_remediations_suppressed_total", namespace=ns, reason="Remediating") == 0
    )


def test_rollbacks_are_counted_by_result() -> None:
    ns = "m-rollback"
    rolling = ReplicaStatus(name="db-0", phase="RollingBack", swap_started_at=ts(50))
    before = ClusterResyncStatus(
        phase="Resyncing", replicas=[rolling, rolling.model_copy(update={"name": "db-2"})]
    )
    after = ClusterResyncStatus(
        phase="Resyncing",
        replicas=[
            rolling.model_copy(update={"phase": "Failed", "reason": "ReplicaRolledBack"}),
            rolling.model_copy(update={"name": "db-2", "phase": "Failed", "reason": "RollbackFailed"}),
        ],
    )
    metrics.record_resync(ns, before, after, NOW)
    assert value("clusterresync_replicas_rolled_back_total", namespace=ns, result="ReplicaRolledBack") == 1
    assert value("clusterresync_replicas_rolled_back_total", namespace=ns, result="RollbackFailed") == 1
    # A rolled-back replica was never verified: no downtime sample for it.
    assert value("clusterresync_replica_swap_downtime_seconds_count", namespace=ns) == 0


def test_probe_readings_are_counted_when_new() -> None:
    preset = "Redis"
    before = ClusterResyncStatus(
        probes=[ProbeResult(pod="db-1", stage="Before", verdict="InSync", observed_at=ts(5))]
    )
    after = ClusterResyncStatus(
        probes=[
            ProbeResult(pod="db-1", stage="Before", verdict="InSync", observed_at=ts(5)),  # already counted
            ProbeResult(pod="db-2", stage="Before", verdict="Diverged", observed_at=ts(0)),
            ProbeResult(pod="db-1", stage="After", verdict="InSync", observed_at=ts(0)),
        ]
    )
    metrics.record_resync_probes(preset, before, after)
    assert value("clusterresync_probe_runs_total", preset=preset, verdict="InSync") == 1
    assert value("clusterresync_probe_runs_total", preset=preset, verdict="Diverged") == 1
    p0 = ResyncPolicyStatus()
    p1 = ResyncPolicyStatus.model_validate(
        {"pods": [{"pod": "db-1", "verdict": "Lagging", "observedAt": ts(0)}]}
    )
    metrics.record_policy("ns", preset, p0, p1)
    metrics.record_policy("ns", preset, p1, p1)
    assert value("clusterresync_probe_runs_total", preset=preset, verdict="Lagging") == 1
    metrics.record_probe_duration(preset, 0.3)
    assert value("clusterresync_probe_duration_seconds_count", preset=preset) == 1
    assert value("clusterresync_probe_duration_seconds_bucket", preset=preset, le="0.5") == 1


def test_gauges_come_from_the_cached_objects_and_the_elector() -> None:
    resyncs = [
        {"metadata": {"namespace": "a", "name": "r1"}, "status": {"phase": "Resyncing"}},
        {"metadata": {"namespace": "a", "name": "r2"}, "status": {"phase": "Completed"}},
        {"metadata": {"namespace": "a", "name": "r3"}, "status": {"phase": "Completed"}},
        {"metadata": {"namespace": "b", "name": "new"}},  # no status yet: Pending
    ]
    policies = [
        {
            "metadata": {"namespace": "a", "name": "pg"},
            "status": {
                "pods": [
                    {"pod": "db-0", "role": "primary"},  # the primary: no lag reported
                    {"pod": "db-1", "drifted": True, "lagBytes": 4096, "lagSeconds": 7},
                    {"pod": "db-2", "drifted": False, "lagBytes": 0},  # bytes only
                ]
            },
        }
    ]
    collector = metrics.StateCollector()
    collector.resyncs = lambda: resyncs
    collector.policies = lambda: policies
    collector.leading = lambda: True
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for fam in collector.collect() for s in fam.samples
    }
    assert samples[("clusterresync_resyncs", (("namespace", "a"), ("phase", "Completed")))] == 2
    assert samples[("clusterresync_resyncs", (("namespace", "a"), ("phase", "Resyncing")))] == 1
    assert samples[("clusterresync_resyncs", (("namespace", "a"), ("phase", "Failed")))] == 0
    assert samples[("clusterresync_resyncs", (("namespace", "b"), ("phase", "Pending")))] == 1
    assert samples[("clusterresync_policy_drifted_replicas", (("namespace", "a"), ("policy", "pg")))] == 1
    assert samples[("clusterresync_leader", ())] == 1
    lag = (("namespace", "a"), ("pod", "db-1"), ("policy", "pg"))
    assert samples[("clusterresync_policy_replica_lag_bytes", lag)] == 4096
    assert samples[("clusterresync_policy_replica_lag_seconds", lag)] == 7
    db2 = (("namespace", "a"), ("pod", "db-2"), ("policy", "pg"))
    assert samples[("clusterresync_policy_replica_lag_bytes", db2)] == 0
    assert ("clusterresync_policy_replica_lag_seconds", db2) not in samples  # unknown is not 0
    assert not [k for k in samples if k[0].endswith("_lag_bytes") and ("pod", "db-0") in k[1]]
    # A pod the policy no longer reports leaves no series (gauges come from the cache only).
    policies[0]["status"]["pods"] = [{"pod": "db-1", "lagBytes": 10}]
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for fam in collector.collect() for s in fam.samples
    }
    assert [k for k in samples if k[0] == "clusterresync_policy_replica_lag_bytes"] == [
        ("clusterresync_policy_replica_lag_bytes", lag)
    ]
    assert samples[("clusterresync_policy_replica_lag_bytes", lag)] == 10

    def broken() -> list[dict[str, Any]]:
        raise KubeError(403, "Forbidden", "no", "list", "clusterresyncs")

    collector.resyncs = broken
    collector.leading = lambda: False
    samples = {(s.name, tuple(s.labels.items())): s.value for fam in collector.collect() for s in fam.samples}
    assert not [k for k in samples if k[0] == "clusterresync_resyncs"]  # a scrape never fails
    assert samples[("clusterresync_leader", ())] == 0


def test_api_errors_are_counted_by_kind_in_the_adapter() -> None:
    from clusterresync.kube import Kube

    before = value("clusterresync_api_errors_total", kind="Forbidden", verb="get")

    class Refusing(Kube):
        def _send(self, *args: Any, **kwargs: Any) -> Any:
            raise KubeError(403, "Forbidden", 'User "x" cannot get resource "pods"', "get", "pod a/b")

    with pytest.raises(KubeError) as e:
        Refusing(None).request("GET", "/api/v1/namespaces/a/pods/b")
    assert e.value.kind == ErrorKind.FORBIDDEN
    assert value("clusterresync_api_errors_total", kind="Forbidden", verb="get") == before + 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_endpoint_serves_prometheus_text_and_a_busy_port_is_not_fatal() -> None:
    port = free_port()
    metrics.configure("127.0.0.1", port)
    metrics._server = None
    try:
        assert metrics.serve()
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        names = {f.name for f in text_string_to_metric_families(body)}
        assert {"clusterresync_resyncs_finished", "clusterresync_leader", "clusterresync_api_errors"} <= names
        server = metrics._server
        metrics._server = None
        assert not metrics.serve()  # the port is taken (by the first): logged, False
        metrics._server = server
    finally:
        if metrics._server is not None:
            metrics._server.shutdown()
        metrics._server = None


def test_cli_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLUSTERRESYNC_METRICS_PORT", raising=False)
    assert cli.metrics_config([])[0] == ("0.0.0.0", 9090)
    monkeypatch.setenv("CLUSTERRESYNC_METRICS_PORT", "9100")
    assert cli.metrics_config([])[0] == ("0.0.0.0", 9100)
    (addr, port), _rest = cli.metrics_config(["--metrics-port=0", "--metrics-address", "127.0.0.1", "-v"])
    assert (addr, port) == ("127.0.0.1", 0)
    # The flags are the operator's, not Kopf's.
    _, kopf_args = cli.leader_config(["--metrics-port=0", "--verbose"])
    assert kopf_args == ["--verbose"]
    with pytest.raises(ValueError):
        cli.metrics_config(["--metrics-port=70000"])


def test_the_documented_table_is_exactly_the_registry() -> None:
    """docs/observability.md's table of series names every metric the registry exposes, with its
    type, and nothing else."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "observability.md").read_text()
    section = text[text.index("### The series") : text.index("### Alerts")]
    documented: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`"):
            for name in cells[0].replace("`", "").split(","):
                documented[name.strip()] = cells[1]
    exposed = {}
    for fam in metrics.REGISTRY.collect():
        name = fam.name + ("_total" if fam.type == "counter" else "")
        exposed[name] = fam.type
    assert documented == exposed
