"""Probes in the run (``planner.probing``): the guard before anything is touched, and the
verification after each swap, driven against the cluster model with the Command preset (its probe
document is the engines' common language: tests/unit/probes has each engine's own)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from clusterresync import planner
from clusterresync.models import ClusterResyncSpec
from clusterresync.state import Exec, HookOutcome

from ..world import World
from .drive import check_invariants, spec

Doc = Callable[[str, str], dict[str, Any]]  # (pod, stage) -> the probe document it prints
PROBE = {"preset": "Command", "command": ["cat", "/var/lib/data/probe.json"]}


def in_sync(pod: str, stage: str) -> dict[str, Any]:
    return {"role": "primary" if pod == "db-1" else "replica", "position": 100, "history": "1", "link": "up"}


def run(
    w: World,
    s: ClusterResyncSpec,
    doc: Doc,
    max_steps: int = 300,
    stop: Callable[[World], bool] | None = None,
) -> tuple[list[planner.Plan], list[Exec]]:
    """Plan, answer every probe Exec with ``doc``, apply the actions, tick; until the end."""
    primary = (
        w.pods["db-1"]["metadata"]["uid"],
        w.claims["data-db-1"]["metadata"]["uid"],
        dict(w.pvs["pv-1"]["spec"]),
        w.data["pv-1"],
    )
    old_pvs = {f"db-{i}": f"pv-{i}" for i in range(w.replicas) if i != w.primary}
    plans, execs = [], []
    for _ in range(max_steps):
        hooks: dict[str, HookOutcome] = {}
        p = planner.plan(w.observed(s, hooks))
        while any(isinstance(a, Exec) for a in p.actions):
            for a in p.actions:
                if isinstance(a, Exec):
                    execs.append(a)
                    stage = a.hook.split("/")[1] if a.hook.startswith("probe/") else ""
                    out = json.dumps(doc(a.pod, stage)) if stage else "ok"
                    hooks[a.hook] = HookOutcome(True, 0, out, stdout=out)
            p = planner.plan(w.observed(s, hooks))
        plans.append(p)
        w.status = p.status
        for a in p.actions:
            w.apply(a)
        w.tick()
        check_invariants(w, s, primary, old_pvs)
        if stop is not None and stop(w):
            return plans, execs
        if w.status.phase in ("Completed", "Failed") and not p.actions and p.requeue_after is None:
            return plans, execs
    raise AssertionError(
        f"no outcome: {w.status.phase} {[(r.name, r.phase, r.message) for r in w.status.replicas]}"
    )


def failed_reason(w: World) -> tuple[str, str]:
    c = next(c for c in w.status.conditions if c.type == "Failed")
    return c.reason, c.message


def touched(plans: list[planner.Plan]) -> list[Any]:
    """Every action of the run but the probes' Execs."""
    return [a for p in plans for a in p.actions if not isinstance(a, Exec)]


def test_in_sync_replicas_are_resynced_and_verified_by_the_probe() -> None:
    w = World()
    _, execs = run(w, spec(primaryStableSeconds=0, probe=PROBE), in_sync)
    assert w.status.phase == "Completed"
    before = {r.pod: r for r in w.status.probes if r.stage == "Before"}
    after = {r.pod: r for r in w.status.probes if r.stage == "After"}
    assert set(before) == {"db-0", "db-1", "db-2"} and set(after) == {"db-0", "db-2"}
    assert all(r.verdict == "InSync" for r in after.values())
    assert before["db-1"].role == "primary" and before["db-0"].role == "replica"
    # The guard reads the replicas before the primary (a replica read first is never ahead).
    first = [a.pod for a in execs if a.hook.startswith("probe/Before/")]
    assert first[-1] == "db-1" and sorted(first[:-1]) == ["db-0", "db-2"]


def test_a_diverged_replica_refuses_the_resync_and_nothing_is_touched() -> None:
    def doc(pod: str, stage: str) -> dict[str, Any]:
        if pod == "db-2":  # promoted during an outage and written to: another history
            return {"role": "replica", "position": 140, "history": "2", "link": "down"}
        return in_sync(pod, stage)

    w = World()
    plans, _ = run(w, spec(primaryStableSeconds=0, probe=PROBE), doc)
    reason, message = failed_reason(w)
    assert reason == "ReplicaHasUnsyncedData"
    assert "db-2" in message and "force: true" in message and "db-0" not in message
    assert touched(plans) == [], "nothing is created, patched or deleted"
    assert {(r.pod, r.verdict) for r in w.status.probes} >= {("db-2", "Diverged"), ("db-0", "InSync")}


def test_force_resyncs_a_diverged_replica_and_says_so() -> None:
    def doc(pod: str, stage: str) -> dict[str, Any]:
        if pod == "db-2" and stage == "Before":
            return {"role": "primary", "position": 140, "history": "2"}
        return in_sync(pod, stage)

    w = World()
    plans, _ = run(w, spec(primaryStableSeconds=0, probe=PROBE, force=True), doc)
    assert w.status.phase == "Completed"
    warned = [e for p in plans for e in p.events if e.reason == "ForcedDespiteDivergence"]
    assert len(warned) == 1 and warned[0].type == "Warning" and "db-2" in warned[0].message
    assert w.pvs["pv-2"]["spec"]["persistentVolumeReclaimPolicy"] == "Retain", "its old volume is kept"


def test_a_primary_that_reports_itself_a_replica_refuses_even_with_force() -> None:
    def doc(pod: str, stage: str) -> dict[str, Any]:
        return {"role": "replica", "position": 100, "history": "1"}

    w = World()
    plans, _ = run(w, spec(primaryStableSeconds=0, probe=PROBE, force=True), doc)
    assert failed_reason(w)[0] == "PrimaryRoleMismatch"
    assert touched(plans) == []


def test_a_replica_that_does_not_replicate_after_its_swap_is_rolled_back() -> None:
    def doc(pod: str, stage: str) -> dict[str, Any]:
        if pod == "db-0" and stage == "After":  # the copy came up on its own history
            return {"role": "replica", "position": 100, "history": "9", "link": "down"}
        return in_sync(pod, stage)

    w = World()
    s = spec(primaryStableSeconds=0, probe=PROBE, replicas=["db-0"], timeouts={"replicaSeconds": 60})
    run(w, s, doc)
    r = next(r for r in w.status.replicas if r.name == "db-0")
    assert r.phase == "Failed" and r.reason == "ReplicaRolledBack", (r.phase, r.message)
    assert "replication not verified" in r.message
    assert w.claims["data-db-0"]["spec"]["volumeName"] == "pv-0", "back on its old volume"
    after = next(p for p in w.status.probes if (p.stage, p.pod) == ("After", "db-0"))
    assert after.verdict == "Diverged"


def test_lagging_within_the_default_tolerance_verifies_a_busy_replica() -> None:
    def doc(pod: str, stage: str) -> dict[str, Any]:
        if pod == "db-1":
            return {"role": "primary", "position": 5000, "history": "1"}
        return {"role": "replica", "position": 4000, "history": "1", "lagBytes": 1000, "link": "up"}

    w = World()
    run(w, spec(primaryStableSeconds=0, probe=PROBE, replicas=["db-0"], force=True), doc)
    assert w.status.phase == "Completed"


def test_a_password_from_a_secret_goes_on_stdin_never_in_the_command() -> None:
    probe = {
        "preset": "Postgres",
        "user": "monitor",
        "passwordSecretRef": {"name": "pg-auth", "key": "password"},
    }
    w = World()
    p = planner.plan(w.observed(spec(primaryStableSeconds=0, probe=probe)))
    execs = [a for a in p.actions if isinstance(a, Exec)]
    assert execs and all(a.stdin_secret is not None and a.stdin_secret.name == "pg-auth" for a in execs)
    assert all("pg-auth" not in " ".join(a.command) for a in execs)


def test_options_no_probe_can_be_made_of_refuse_the_resync() -> None:
    w = World()
    bad = {"preset": "Postgres", "passwordEnv": "not a variable name"}
    p = planner.plan(w.observed(spec(primaryStableSeconds=0, probe=bad)))
    assert p.status.phase == "Failed"
    failed = next(c for c in p.status.conditions if c.type == "Failed")
    assert failed.reason == "ProbeInvalid" and "passwordEnv" in failed.message
    assert not p.actions


def test_a_probe_that_cannot_tell_refuses_unless_forced() -> None:
    def doc(pod: str, stage: str) -> dict[str, Any]:
        if pod == "db-0":
            return {"error": "password authentication failed for user monitor"}
        return in_sync(pod, stage)

    w = World()
    plans, _ = run(w, spec(primaryStableSeconds=0, probe=PROBE), doc)
    reason, message = failed_reason(w)
    assert reason == "ReplicaStateUnknown" and "db-0" in message and "authentication" in message
    assert touched(plans) == []
    w = World()
    run(w, spec(primaryStableSeconds=0, probe=PROBE, force=True, replicas=["db-2"]), doc)
    assert w.status.phase == "Completed"
