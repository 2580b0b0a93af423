"""The planner against a model of the cluster: the safety invariants under crashes and orderings.

Each run drives one ClusterResync to its end in ``world.World``. A "crash" is the adapter dying
after it wrote the planned status but before it carried out some or all of the actions; the
next call must still reach the same outcome, with no data lost. Hypothesis chooses where.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterresync import planner
from clusterresync.models import ClusterResyncSpec
from clusterresync.state import Exec, HookOutcome

from .world import World


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
        _check_invariants(w, s, primary, old_pvs)
        if on_step:
            on_step(w, p)
        if w.status.phase in ("Completed", "Failed") and not p.actions and p.requeue_after is None:
            return plans
        if p.remove_finalizer:
            return plans
    raise AssertionError(
        f"no outcome after {max_steps} steps: {w.status.phase} {[(r.name, r.phase, r.message) for r in w.status.replicas]}"
    )


def _check_invariants(w: World, s: ClusterResyncSpec, primary: Any, old_pvs: dict[str, str]) -> None:
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


def _assert_success(w: World, s: ClusterResyncSpec) -> None:
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


def test_happy_path_primary_not_at_ordinal_zero() -> None:
    w, s = World(), spec()
    drive(w, s)
    _assert_success(w, s)


def test_old_volumes_delete() -> None:
    w, s = World(), spec(oldVolumes="Delete")
    drive(w, s)
    _assert_success(w, s)


@pytest.mark.parametrize("max_parallel", [1, 3])
def test_max_parallel(max_parallel: int) -> None:
    w = World(replicas=5, primary=1)
    s = spec(maxParallel=max_parallel)
    peak = [0]

    def watch(w: World, _: planner.Plan) -> None:
        active = sum(1 for r in w.status.replicas if r.phase in planner.ACTIVE_REPLICA_PHASES)
        peak[0] = max(peak[0], active)

    drive(w, s, on_step=watch)
    assert w.status.phase == "Completed"
    assert peak[0] == min(max_parallel, 4)


def test_clone_method() -> None:
    w, s = World(), spec(method="Clone")
    drive(w, s)
    _assert_success(w, s)


def test_dry_run_touches_nothing() -> None:
    w, s = World(), spec(dryRun=True)
    before = copy.deepcopy((w.pods, w.claims, w.pvs))
    plans = drive(w, s)
    assert all(not p.actions for p in plans)
    assert (w.pods, w.claims, w.pvs) == before
    assert w.status.phase == "Completed" and any("snapshot" in a.action for a in w.status.plan)
    assert {c.type: c.reason for c in w.status.conditions}["Complete"] == "DryRunComplete"


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"target": {"name": "nope"}}, "TargetNotFound"),
        ({"primary": {"podName": "db-9"}}, "PrimaryNotFound"),
        ({"primary": {"selector": {"matchLabels": {"app": "db"}}}}, "MultiplePrimaries"),
        ({"primary": {"selector": {"matchLabels": {"role": "leader"}}}}, "NoPrimary"),
        ({"replicas": ["db-7"]}, "ReplicaNotInTarget"),
        ({"volumes": ["logs"]}, "VolumeNotFound"),
        ({"volumeSnapshotClassName": "other"}, "NoSnapshotClass"),
    ],
)
def test_preflight_refusals_touch_nothing(kw: dict[str, Any], reason: str) -> None:
    w, s = World(), spec(**kw)
    if kw.get("target"):
        w_obs = w.observed(s)
        p = planner.plan(type(w_obs)(**{**w_obs.__dict__, "target": None}))
    else:
        p = planner.plan(w.observed(s))
    assert p.status.phase == "Failed"
    assert {c.type: c.reason for c in p.status.conditions}["Failed"] == reason
    assert not p.actions
    assert p.events and p.events[-1].reason == reason


def test_primary_not_stable_waits_then_refuses() -> None:
    w = World()
    w.pods["db-1"]["status"]["conditions"][0]["lastTransitionTime"] = planner.ts(w.now)
    s = spec(primaryStableSeconds=60, timeouts={"preflightSeconds": 30})
    p = planner.plan(w.observed(s))
    assert p.status.phase == "Preflight" and not p.actions
    assert {c.type: c.reason for c in p.status.conditions}["Progressing"] == "WaitingForPrimary"
    w.status = p.status
    w.now += planner.dt.timedelta(seconds=31)
    p = planner.plan(w.observed(s))
    assert p.status.phase == "Failed"
    assert {c.type: c.reason for c in p.status.conditions}["Failed"] == "PrimaryNotStable"


def test_primary_change_mid_run_stops_before_next_replica() -> None:
    w2, s2 = World(), spec()
    restarted = {"done": False}

    def restart(w: World, p: planner.Plan) -> None:
        if not restarted["done"] and any(r.phase == "Completed" for r in w.status.replicas):
            restarted["done"] = True
            w.pods["db-1"]["status"]["containerStatuses"][0]["restartCount"] = 1

    plans = []
    for _ in range(300):
        p = planner.plan(w2.observed(s2))
        plans.append(p)
        w2.status = p.status
        for a in p.actions:
            w2.apply(a)
        w2.tick()
        restart(w2, p)
        if w2.status.phase in ("Completed", "Failed") and not p.actions and p.requeue_after is None:
            break
    assert w2.status.phase == "Failed"
    assert {c.type: c.reason for c in w2.status.conditions}["Failed"] == "PrimaryChanged"
    phases = {r.name: r.phase for r in w2.status.replicas}
    assert sorted(phases.values()) == ["Completed", "Skipped"], phases
    untouched = next(n for n, ph in phases.items() if ph == "Skipped")
    assert w2.content_of(untouched) and w2.content_of(untouched).startswith("stale"), (
        "the next replica was not touched"
    )
    assert w2.pvs[f"pv-{untouched[-1]}"]["spec"]["persistentVolumeReclaimPolicy"] == "Delete", (
        "its old volume got its policy back"
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    crashes=st.lists(st.integers(min_value=0, max_value=6), min_size=0, max_size=120),
    max_parallel=st.integers(min_value=1, max_value=2),
    old_volumes=st.sampled_from(["Retain", "Delete"]),
)
def test_crash_anywhere_same_outcome(crashes: list[int], max_parallel: int, old_volumes: str) -> None:
    """Killing the operator between its status write and any of its actions changes nothing in the end."""
    w, s = World(), spec(maxParallel=max_parallel, oldVolumes=old_volumes)
    drive(w, s, crashes=crashes, max_steps=800)
    _assert_success(w, s)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delete_at=st.integers(min_value=1, max_value=40), crashes=st.lists(st.integers(0, 6), max_size=60))
def test_deletion_mid_run_leaves_no_replica_without_volume(delete_at: int, crashes: list[int]) -> None:
    w, s = World(), spec()
    step = {"n": 0}

    def maybe_delete(w: World, p: planner.Plan) -> None:
        step["n"] += 1
        if step["n"] == delete_at:
            w.deleting = True

    drive(w, s, crashes=crashes, on_step=maybe_delete, max_steps=800)
    for pod in ("db-0", "db-2"):
        content = w.content_of(pod)
        assert content in ("primary-data", f"stale-{pod[-1]}"), f"{pod} has {content!r}"
        assert pod in w.pods and planner.pod_ready(w.pods[pod])
    assert not w.snapshots and not w.jobs
    assert not [c for c in w.claims if c.startswith("crs-")]
    # Restored copies that were not swapped in are gone; nothing pre-bound lingers.
    in_use = {c["spec"].get("volumeName") for c in w.claims.values()}
    for name, pv in w.pvs.items():
        if name not in in_use:
            assert pv["status"]["phase"] == "Released" and name in ("pv-0", "pv-2"), f"leftover volume {name}"


def test_a_restore_that_never_finishes_is_abandoned_without_touching_the_replica() -> None:
    w, s = World(), spec(timeouts={"replicaSeconds": 20})
    real_bind = w._bind

    def stuck(name: str, c: dict[str, Any]) -> None:
        if not name.startswith("crs-"):
            real_bind(name, c)

    w._bind = stuck  # type: ignore[method-assign]
    drive(w, s)
    assert w.status.phase == "Failed"
    assert {c.type: c.reason for c in w.status.conditions}["Failed"] == "RestoreFailed"
    assert all("restore not finished" in r.message for r in w.status.replicas if r.phase == "Failed")
    for pod in ("db-0", "db-2"):
        assert w.content_of(pod) == f"stale-{pod[-1]}"
    assert not [c for c in w.claims if c.startswith("crs-")] and not w.snapshots
