"""Woken by events, reading from watch caches: what a resync costs the API server, counted in
kubesim's audit log (by the operator's user, after start-up). No timings: request counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubesim import audit
from kubesim.cluster import ClusterConfig
from kubesim.testing import KubeSim

from .conftest import ROOT, Operator, wait_for
from .test_resync import OPERATOR_USER, assert_primary_untouched, make_db, resync, wait_done

REPLICAS = 3


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KubeSim, Operator, Path]]:
    work = tmp_path_factory.mktemp("wakeups")
    log = work / "audit.log"
    with KubeSim(config=ClusterConfig(), audit_log=log) as sim:
        sim.kubectl("apply", "-k", str(ROOT / "manifests"))
        op = Operator(
            sim.service_account_kubeconfig("clusterresync-system", "clusterresync-operator"),
            work / "operator.log",
        )
        op.start()
        try:
            wait_for(lambda: "watch caches listed" in op.output(), 60, "the operator's caches")
            yield sim, op, log
        finally:
            op.stop()


def test_a_resync_lists_nothing_cluster_wide_and_costs_few_requests(
    audited: tuple[KubeSim, Operator, Path],
) -> None:
    sim, op, log = audited
    sim.kubectl("create", "namespace", "w1")
    db = make_db(sim, "w1", replicas=REPLICAS + 1, primary=0)
    start = len(audit.read(log))
    resync(sim, db)
    out = wait_done(sim, "w1")
    assert out["status"]["phase"] == "Completed", (out["status"], op.output()[-2000:])
    assert_primary_untouched(sim, db)
    events = [e for e in audit.read(log)[start:] if e.get("stage") == "ResponseComplete"]
    mine = audit.select(events, user=OPERATOR_USER)
    wide = audit.cluster_wide_lists(mine)
    assert wide == [], [e["requestURI"] for e in wide]
    # Leader election renews its Lease on a clock, whatever the work: counted apart.
    work = [e for e in mine if (e.get("objectRef") or {}).get("resource") != "leases"]
    per_replica = len(work) / REPLICAS
    by = Counter(
        f"{e['verb']} {(e.get('objectRef') or {}).get('resource')}"
        + (f"/{e['objectRef']['subresource']}" if (e.get("objectRef") or {}).get("subresource") else "")
        for e in work
    )
    print(
        f"\n{len(work)} requests for {REPLICAS} replicas ({per_replica:.1f} each): {dict(by.most_common())}"
    )
    assert per_replica <= 40, dict(by.most_common())
    # No reads of the objects it watches, other than the live reads that decide a swap.
    lists = [e for e in work if e["verb"] == "list"]
    assert {(e.get("objectRef") or {}).get("resource") for e in lists} <= {
        "pods",
        "persistentvolumeclaims",
        "jobs",
        "volumesnapshots",
    }
    assert len(lists) <= 4 * REPLICAS, [e["requestURI"] for e in lists]
