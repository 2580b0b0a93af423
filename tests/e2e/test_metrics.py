"""/metrics of the real operator process on kubesim: scraped during and after a resync, and after
a restart of the operator (the gauges come back from the watch caches; counters start again)."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubesim.testing import KubeSim

from .conftest import Operator, apply, wait_for
from .test_resync import make_db, resync, wait_done

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
