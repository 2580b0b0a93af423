"""ttlSecondsAfterFinished: a finished, cleaned-up resync asks for its own deletion when due."""

from __future__ import annotations

import datetime as dt

from clusterresync import planner

from ..world import World
from .drive import drive, spec


def test_no_ttl_no_deletion() -> None:
    w = World()
    s = spec(primaryStableSeconds=0)
    drive(w, s)
    p = planner.plan(w.observed(s))
    assert p.delete_self_after is None and p.requeue_after is None


def test_ttl_requeues_until_due_then_asks_for_deletion() -> None:
    w = World()
    drive(w, spec(primaryStableSeconds=0))
    assert w.status.phase == "Completed" and w.status.completed_at
    s = spec(primaryStableSeconds=0, ttlSecondsAfterFinished=30)
    done = planner.parse_ts(w.status.completed_at)
    w.now = done + dt.timedelta(seconds=10)
    p = planner.plan(w.observed(s))
    # Not due: the daemon must keep running until then (requeue), nothing is deleted yet.
    assert p.delete_self_after == 20.0 and p.requeue_after == 20.0
    w.now = done + dt.timedelta(seconds=31)
    p = planner.plan(w.observed(s))
    assert p.delete_self_after == 0.0 and p.requeue_after is not None


def test_ttl_applies_to_a_failed_resync_too() -> None:
    w = World(unready_on_copy={"db-0"})
    drive(w, spec(primaryStableSeconds=0, timeouts={"replicaSeconds": 20}))
    assert w.status.phase == "Failed"
    s = spec(primaryStableSeconds=0, timeouts={"replicaSeconds": 20}, ttlSecondsAfterFinished=0)
    p = planner.plan(w.observed(s))
    assert p.delete_self_after == 0.0


def test_ttl_of_a_dry_run() -> None:
    w = World()
    s = spec(primaryStableSeconds=0, dryRun=True, ttlSecondsAfterFinished=0)
    p = planner.plan(w.observed(s))
    for _ in range(20):
        if p.status.phase in ("Completed", "Failed"):
            break
        w.status = p.status
        w.tick()
        p = planner.plan(w.observed(s))
    assert p.status.phase == "Completed" and p.delete_self_after == 0.0


def test_ttl_waits_for_cleanup() -> None:
    """While temporary objects remain, the resync is not deleted (the finalizer would do it, but
    the TTL counts only once it is cleaned up)."""
    w = World()
    s = spec(primaryStableSeconds=0, ttlSecondsAfterFinished=0)
    seen = []

    def step(w: World, p: planner.Plan) -> None:
        if p.delete_self_after is not None:
            seen.append((w.status.phase, bool(w.snapshots or w.jobs), p.actions))

    try:
        drive(w, s, max_steps=120, on_step=step)
    except AssertionError:
        pass  # with a TTL the plan keeps requeueing: drive never sees a final "no requeue"
    assert seen and all(phase == "Completed" and not actions for phase, _, actions in seen)
