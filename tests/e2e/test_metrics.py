"""/metrics of the real operator process on kubesim: scraped during and after a resync, and after
a restart of the operator (the gauges come back from the watch caches; counters start again); and
after a ResyncPolicy in mode "Off" found drift: each pod's lag, and the suppressed remediation."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubesim.testing import KubeSim

from .conftest import Operator, apply, free_port, wait_for
from .test_policy import cond, history, status
from .test_resync import make_db, resync, wait_done

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def metrics_operator(cluster: KubeSim, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    sa_kubeconfig = cluster.service_account_kubeconfig("clusterresync-system", "clusterresync-operator")
    port = free_port()
    op = Operator(
        sa_kubeconfig,
        tmp_path_factory.mktemp("operator") / "operator.log",
        args=("--all-namespaces", f"--metrics-port={port}", "--metrics-address=127.0.0.1"),
    )
    op.metrics_port = port  # type: ignore[attr-defined]
    op.start()
    yield op
    op.stop()


def scrape(op: Operator) -> Samples:
    port = op.metrics_port  # type: ignore[attr-defined]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def scraped(op: Operator) -> Samples | None:
    try:
        return scrape(op)
    except OSError:
        return None


def test_metrics_during_and_after_a_resync_and_after_a_restart(
    cluster: KubeSim, metrics_operator: Operator, ns: str
) -> None:
    op = metrics_operator
    wait_for(lambda: (s := scraped(op)) is not None and sample(s, "clusterresync_leader") == 1, 60, "leading")
    db = make_db(cluster, ns, name="db", replicas=3, primary=1)
    resync(cluster, db, name="rs")

    # During the run: the resync is counted in a phase that is not finished.
    def in_flight() -> bool:
        s = scrape(op)
        return any(
            (sample(s, "clusterresync_resyncs", namespace=ns, phase=p) or 0) == 1
            for p in ("Pending", "Preflight", "Snapshotting", "Resyncing")
        )

    wait_for(in_flight, 60, "the resync in flight in the gauge")
    out = wait_done(cluster, ns, "rs")
    assert out["status"]["phase"] == "Completed", op.output()[-3000:]

    def counted() -> Samples | None:
        s = scrape(op)
        done = sample(
            s,
            "clusterresync_resyncs_finished_total",
            namespace=ns,
            outcome="Completed",
            reason="ResyncSucceeded",
        )
        return s if done == 1 else None

    s = wait_for(counted, 30, "the finished resync counted")
    assert sample(s, "clusterresync_resyncs", namespace=ns, phase="Completed") == 1
    assert sample(s, "clusterresync_resyncs", namespace=ns, phase="Resyncing") == 0
    assert sample(s, "clusterresync_resync_duration_seconds_count", namespace=ns, outcome="Completed") == 1
    assert (
        sample(s, "clusterresync_resync_duration_seconds_sum", namespace=ns, outcome="Completed") or 0
    ) >= 0
    # Two replicas swapped and verified: two downtime samples, each within the whole run.
    assert sample(s, "clusterresync_replica_swap_downtime_seconds_count", namespace=ns) == 2
    downtime = sample(s, "clusterresync_replica_swap_downtime_seconds_sum", namespace=ns) or 0
    duration = sample(s, "clusterresync_resync_duration_seconds_sum", namespace=ns, outcome="Completed") or 0
    assert 0 < downtime <= 2 * (duration + 1)  # timestamps are to the second
    assert (
        sample(s, "clusterresync_replicas_rolled_back_total", namespace=ns, result="ReplicaRolledBack")
        is None
    )
    # Each replica's whole resync, from staging to verified: two samples, each at least its downtime
    # and within the run.
    assert sample(s, "clusterresync_replica_resync_duration_seconds_count", namespace=ns) == 2
    replica_total = sample(s, "clusterresync_replica_resync_duration_seconds_sum", namespace=ns) or 0
    assert downtime <= replica_total + 2 and replica_total <= 2 * (duration + 1)
    # One volume: one VolumeSnapshot, from its creation to readyToUse, within the run.
    assert sample(s, "clusterresync_snapshot_duration_seconds_count", namespace=ns) == 1
    snap = sample(s, "clusterresync_snapshot_duration_seconds_sum", namespace=ns)
    assert snap is not None and 0 <= snap <= duration + 1

    # A restart: gauges come back from the caches; counters are the new process's (nothing recounted).
    op.stop()
    op.start()

    def after_restart() -> Samples | None:
        s2 = scraped(op)
        if s2 is None or sample(s2, "clusterresync_leader") != 1:
            return None
        return s2 if sample(s2, "clusterresync_resyncs", namespace=ns, phase="Completed") == 1 else None

    s2 = wait_for(after_restart, 60, "the restarted operator's gauges")
    assert (
        sample(
            s2,
            "clusterresync_resyncs_finished_total",
            namespace=ns,
            outcome="Completed",
            reason="ResyncSucceeded",
        )
        is None
    )


def test_a_refused_resync_is_counted_failed_with_its_reason(
    cluster: KubeSim, metrics_operator: Operator, ns: str
) -> None:
    apply(
        cluster,
        ns,
        {
            "apiVersion": "clusterresync.io/v1alpha1",
            "kind": "ClusterResync",
            "metadata": {"name": "refused"},
            "spec": {"target": {"name": "nothing"}, "primary": {"podName": "nothing-0"}, "volumes": ["data"]},
        },
    )
    assert wait_done(cluster, ns, "refused")["status"]["phase"] == "Failed"

    def counted() -> Samples | None:
        s = scrape(metrics_operator)
        n = sample(
            s, "clusterresync_resyncs_finished_total", namespace=ns, outcome="Failed", reason="TargetNotFound"
        )
        return s if n == 1 else None

    s = wait_for(counted, 30, "the refusal counted")
    assert sample(s, "clusterresync_resyncs", namespace=ns, phase="Failed") == 1
    assert sample(s, "clusterresync_resync_duration_seconds_count", namespace=ns, outcome="Failed") == 1


# The Command probe of tests/e2e/test_probe.py, with the lag a replica measures: the primary is at
# position 100; a replica at 90, 4096 bytes and 7 seconds behind (Lagging, not drifted: there are
# no thresholds), unless its history differs (pg-2: Diverged, drifted).
LAG_SCRIPT = (
    "h=$(cat /proc/sys/kernel/hostname); hist=$(cat /var/lib/data/history); "
    'if [ "$h" = pg-1 ]; then printf \'{"role":"primary","position":100,"history":"%s"}\' "$hist"; '
    'else printf \'{"role":"replica","position":90,"history":"%s","lagBytes":4096,'
    '"lagSeconds":7,"link":"up"}\' "$hist"; fi'
)


def test_a_policy_in_mode_off_reports_lag_per_pod_and_its_suppressed_remediation(
    cluster: KubeSim, metrics_operator: Operator, ns: str
) -> None:
    op = metrics_operator
    db = make_db(cluster, ns, replicas=3, primary=1)
    for i in range(3):
        history(cluster, db, i, "2" if i == 2 else "1")  # pg-2 followed another history
    body: dict[str, Any] = {
        "apiVersion": "clusterresync.io/v1alpha1",
        "kind": "ResyncPolicy",
        "metadata": {"name": "pol"},
        "spec": {
            "target": {"name": db.name},
            "primary": {"podName": db.pod(db.primary)},
            "volumes": ["data"],
            "probe": {"preset": "Command", "command": ["sh", "-c", LAG_SCRIPT], "timeoutSeconds": 20},
            "intervalSeconds": 10,
            "mode": "Off",
        },
    }
    apply(cluster, ns, body)

    def off() -> dict[str, Any] | None:
        st = status(cluster, ns)
        return st if cond(st, "RemediationSuppressed").get("reason") == "ModeOff" else None

    st = wait_for(off, 60, "RemediationSuppressed/ModeOff")
    pods = {p["pod"]: p for p in st["pods"]}
    assert pods["pg-0"]["verdict"] == "Lagging" and not pods["pg-0"]["drifted"], pods
    assert pods["pg-2"]["verdict"] == "Diverged" and pods["pg-2"]["drifted"], pods

    def reported() -> Samples | None:
        s = scrape(op)
        n = sample(s, "clusterresync_policy_remediations_suppressed_total", namespace=ns, reason="ModeOff")
        return s if n == 1 else None

    s = wait_for(reported, 30, "the suppression counted")
    pg0 = {"namespace": ns, "policy": "pol", "pod": "pg-0"}
    assert sample(s, "clusterresync_policy_replica_lag_bytes", **pg0) == 4096
    assert sample(s, "clusterresync_policy_replica_lag_seconds", **pg0) == 7
    # pg-2 is Diverged (no lag to tell) and pg-1 is the primary: no lag series for either.
    for pod in ("pg-1", "pg-2"):
        labels = {"namespace": ns, "policy": "pol", "pod": pod}
        assert sample(s, "clusterresync_policy_replica_lag_bytes", **labels) is None
        assert sample(s, "clusterresync_policy_replica_lag_seconds", **labels) is None
    assert sample(s, "clusterresync_policy_drifted_replicas", namespace=ns, policy="pol") == 1
    assert (sample(s, "clusterresync_probe_runs_total", preset="Command", verdict="Lagging") or 0) >= 1

    # Probed again (intervalSeconds 10), still ModeOff: the same suppression is not counted again.
    first = st["lastProbeTime"]
    wait_for(lambda: status(cluster, ns).get("lastProbeTime") != first, 30, "a second probe round")
    s = scrape(op)
    assert (
        sample(s, "clusterresync_policy_remediations_suppressed_total", namespace=ns, reason="ModeOff") == 1
    )
