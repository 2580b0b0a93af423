"""Resyncing, replica by replica: maxParallel, what stops the run, a replica scaled away."""

from __future__ import annotations

from typing import Any

import pytest

from clusterresync import planner
from clusterresync.planner.status import OUT_OF_SERVICE

from ..world import World
from .drive import assert_success, drive, policy, reasons, spec


def test_happy_path_primary_not_at_ordinal_zero() -> None:
    w, s = World(), spec()
    drive(w, s)
    assert_success(w, s)


@pytest.mark.parametrize("max_parallel", [1, 3])
def test_max_parallel_bounds_the_replicas_out_of_service(max_parallel: int) -> None:
    w = World(replicas=5, primary=1)
    s = spec(maxParallel=max_parallel, maxParallelCopies=4)
    peak = [0]

    def watch(w: World, _: planner.Plan) -> None:
        out = sum(1 for r in w.status.replicas if r.phase in OUT_OF_SERVICE)
        peak[0] = max(peak[0], out)

    drive(w, s, on_step=watch)
    assert w.status.phase == "Completed"
    assert peak[0] == min(max_parallel, 4)


@pytest.mark.parametrize("copies", [1, 2, 4])
def test_copies_are_made_ahead_of_the_swaps_and_bounded(copies: int) -> None:
    w = World(replicas=5, primary=1)
    s = spec(maxParallel=1, maxParallelCopies=copies)
    peak_copies = [0]
    ahead = [False]

    def watch(w: World, _: planner.Plan) -> None:
        phases = [r.phase for r in w.status.replicas]
        staged = sum(1 for p in phases if p in ("Restoring", "Detaching"))
        peak_copies[0] = max(peak_copies[0], staged)
        # A copy is made while another replica is out of service: the swaps do not wait for copies.
        ahead[0] = ahead[0] or (staged > 0 and any(p in OUT_OF_SERVICE for p in phases))

    drive(w, s, on_step=watch)
    assert w.status.phase == "Completed" and w.status.progress == "4/4"
    assert peak_copies[0] == copies
    assert ahead[0]


@pytest.mark.parametrize("max_parallel", [1, 2])
def test_swaps_go_in_the_order_of_spec_replicas_whichever_copy_is_ready_first(max_parallel: int) -> None:
    # db-4's copy is quick, db-0's slow: db-4 still waits for db-0, as spec.replicas orders them.
    w = World(replicas=5, primary=1, slow_copies={"db-0": 15, "db-3": 8})
    s = spec(replicas=["db-0", "db-3", "db-4", "db-2"], maxParallel=max_parallel, maxParallelCopies=4)
    order: list[str] = []
    waited = [False]

    def watch(w: World, _: planner.Plan) -> None:
        for r in w.status.replicas:
            if r.swap_started_at and r.name not in order:
                order.append(r.name)
            waited[0] = waited[0] or "waiting to swap after db-0" in r.message

    drive(w, s, on_step=watch)
    assert w.status.phase == "Completed", [(r.name, r.phase, r.message) for r in w.status.replicas]
    assert order == ["db-0", "db-3", "db-4", "db-2"]
    assert waited[0], "no copy was staged ahead of db-0's: the test shows nothing"


def test_primary_change_mid_run_stops_before_next_replica() -> None:
    w2, s2 = World(), spec()
    restarted = {"done": False}

    def restart(w: World, p: planner.Plan) -> None:
        # While the first replica is out of service (the other's copy is made ahead and waits
        # for the swap slot of maxParallel 1), the primary restarts.
        if not restarted["done"] and any(r.phase == "Verifying" for r in w.status.replicas):
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


def test_a_failed_restore_stops_the_replica_staged_beside_it() -> None:
    w = World(fail_jobs={"db-0"})
    s = spec(
        primaryStableSeconds=0,
        maxParallel=2,
        hooks={"restore": {"image": "busybox", "command": ["true"]}},
    )
    drive(w, s)
    assert reasons(w)["Failed"] == "RestoreFailed"
    phases = {r.name: r.phase for r in w.status.replicas}
    assert phases == {"db-0": "Failed", "db-2": "Skipped"}
    assert w.content_of("db-0") == "stale-0" and w.content_of("db-2") == "stale-2"
    for pv in ("pv-0", "pv-2"):
        assert policy(w, pv) == "Delete" and not w.pvs[pv]["metadata"]["labels"]
    assert not [c for c in w.claims if c.startswith("crs-")]


# -- 6. the world may change: a scale-down during the swap ----------------------------------------
def test_a_replica_scaled_away_during_its_swap_keeps_both_volumes_and_its_claim() -> None:
    w = World()
    s = spec(primaryStableSeconds=0, replicas=["db-2", "db-0"])
    seen: dict[str, Any] = {}

    def scale(world: World, p: planner.Plan) -> None:
        r2 = next((r for r in world.status.replicas if r.name == "db-2"), None)
        if not seen and r2 is not None and r2.phase == "Verifying":
            world.replicas = 2  # kubectl scale --replicas=2: db-2 goes, its claim stays
            world.pods.pop("db-2", None)
            seen["claims"] = {c for c in world.claims if c == "data-db-2"}

    drive(w, s, on_step=scale)
    assert seen
    assert reasons(w)["Failed"] == "TargetScaledDown"
    r2 = next(r for r in w.status.replicas if r.name == "db-2")
    assert r2.phase == "Failed" and r2.reason == "TargetScaledDown"
    old, copy = r2.volumes[0].old_pv, r2.volumes[0].new_pv
    assert old in w.pvs and copy in w.pvs and (policy(w, old), policy(w, copy)) == ("Retain", "Retain")
    # db-0 was never started: the run stopped.
    assert next(r for r in w.status.replicas if r.name == "db-0").phase == "Skipped"
