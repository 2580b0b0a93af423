"""Driving the planner against the cluster model (``..world.World``), shared by the planner's tests.

``drive`` runs one ClusterResync to its end. A "crash" is the adapter dying after it wrote the
planned status but before it carried out some or all of the actions; the next call must still
reach the same outcome, with no data lost. After every step it checks the invariants: the primary
is never touched, an old volume is never deleted before its replica is verified, at most
maxParallel replicas are out of service.
"""

from __future__ import annotations

import copy
from typing import Any

from clusterresync import planner
from clusterresync.models import ClusterResyncSpec
from clusterresync.state import Exec, HookOutcome

from ..world import World


def spec(**kw: Any) -> ClusterResyncSpec:
    base: dict[str, Any] = {
        "target": {"name": "db"},
        "primary": {"podName": "db-1"},
        "volumes": ["data"],
        "primaryStableSeconds": 60,
    }
    base.update(kw)
    return ClusterResyncSpec.model_validate(base)


def drive(
    w: World,
    s: ClusterResyncSpec,
    crashes: list[int] | None = None,
    max_steps: int = 400,
    on_step: Any = None,
) -> list[planner.Plan]:
    """Plan, write status, apply (all, or the first k actions when a crash is drawn), tick; until done."""
    crashes = list(crashes or [])
    primary = copy.deepcopy(
        (
            w.pods["db-1"]["metadata"]["uid"],
            w.claims["data-db-1"]["metadata"]["uid"],
            w.pvs["pv-1"]["spec"],
            w.data["pv-1"],
        )
    )
    old_pvs = {f"db-{i}": f"pv-{i}" for i in range(w.replicas) if i != w.primary}
    plans = []
    for _ in range(max_steps):
        hooks: dict[str, HookOutcome] = {}
        p = planner.plan(w.observed(s, hooks))
        while any(isinstance(a, Exec) for a in p.actions):
            for a in p.actions:
                if isinstance(a, Exec):
                    hooks[a.hook] = HookOutcome(True, 0, "ok")
            p = planner.plan(w.observed(s, hooks))
        plans.append(p)
        w.status = p.status
        actions = p.actions
        if crashes:
            k = crashes.pop(0)
            actions = actions[: k % (len(actions) + 1)]
        for a in actions:
            w.apply(a)
        w.tick()
        check_invariants(w, s, primary, old_pvs)
        if on_step:
            on_step(w, p)
        if w.status.phase in ("Completed", "Failed") and not p.actions and p.requeue_after is None:
            return plans
        if p.remove_finalizer:
            return plans
    raise AssertionError(
        f"no outcome after {max_steps} steps: {w.status.phase} {[(r.name, r.phase, r.message) for r in w.status.replicas]}"
    )


def check_invariants(w: World, s: ClusterResyncSpec, primary: Any, old_pvs: dict[str, str]) -> None:
    # 1. The primary's pod, claim and volume are never modified; its data never changes.
    assert w.pods["db-1"]["metadata"]["uid"] == primary[0], "primary pod recreated"
    assert w.claims["data-db-1"]["metadata"]["uid"] == primary[1], "primary claim recreated"
    assert w.pvs["pv-1"]["spec"] == primary[2], "primary volume modified"
    assert w.data["pv-1"] == primary[3]
    assert not w.pods["db-1"]["metadata"].get("deletionTimestamp")
    # 2. A replica's old volume is never deleted before the replica is verified on its new one.
    done = {r.name for r in w.status.replicas if r.phase in ("Finishing", "Completed")}  # verified
    for pod, pv in old_pvs.items():
        if pv in w.deleted_pvs:
            assert pod in done and s.old_volumes == "Delete", f"old volume {pv} of {pod} deleted early"
    # 3. At most maxParallel replicas out of service.
    out = [p for p in old_pvs if p not in w.pods or not planner.pod_ready(w.pods[p])]
    assert len(out) <= s.max_parallel, f"{out} out of service with maxParallel {s.max_parallel}"
    # 4. Swaps go in the order of spec.replicas: none before every replica ahead of it has swapped
    # (or left the run untouched).
    rs = w.status.replicas
    for i, r in enumerate(rs):
        if r.swap_started_at:
            ahead = [e.name for e in rs[:i] if not e.swap_started_at and e.phase not in ("Skipped", "Failed")]
            assert not ahead, f"{r.name} swapped before {ahead}"


def assert_success(w: World, s: ClusterResyncSpec) -> None:
    assert w.status.phase == "Completed", (
        w.status.conditions,
        [(r.name, r.phase, r.message) for r in w.status.replicas],
    )
    assert w.status.progress == "2/2"
    for pod in ("db-0", "db-2"):
        assert w.content_of(pod) == "primary-data", f"{pod} has {w.content_of(pod)!r}"
    if s.old_volumes == "Retain":
        for pv in ("pv-0", "pv-2"):
            assert pv in w.pvs and w.pvs[pv]["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
            assert w.data[pv].startswith("stale"), "old data kept"
            assert w.pvs[pv]["metadata"]["labels"]["clusterresync.io/resync"] == "rs"
    else:
        assert "pv-0" in w.deleted_pvs and "pv-2" in w.deleted_pvs
    # Temporary objects are gone; new volumes got their own reclaim policy back.
    assert not w.snapshots and not w.jobs
    assert not [c for c in w.claims if c.startswith("crs-")]
    for pod in ("db-0", "db-2"):
        pv = w.claims[f"data-{pod}"]["spec"]["volumeName"]
        assert w.pvs[pv]["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
        assert "clusterresync.io/original-reclaim-policy" not in w.pvs[pv]["metadata"]["annotations"]
    cond = {c.type: c for c in w.status.conditions}
    assert cond["Complete"].status == "True" and cond["Complete"].reason == "ResyncSucceeded"


def reasons(w: World) -> dict[str, str]:
    return {c.type: c.reason for c in w.status.conditions if c.status == "True"}


def policy(w: World, pv: str) -> str:
    return str(w.pvs[pv]["spec"]["persistentVolumeReclaimPolicy"])
