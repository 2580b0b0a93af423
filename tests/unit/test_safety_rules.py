"""The safety rules of the planner, one by one, against the cluster model (``world.World``).

Each test makes one failure happen and checks what a user would check: where each replica's
data is, which volumes are kept and with which reclaim policy, and the reason reported.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from clusterresync import planner
from clusterresync.models import ClusterResyncStatus
from clusterresync.state import Exec, HookOutcome

from .test_planner import drive, spec
from .world import World


def reasons(w: World) -> dict[str, str]:
    return {c.type: c.reason for c in w.status.conditions if c.status == "True"}


def policy(w: World, pv: str) -> str:
    return str(w.pvs[pv]["spec"]["persistentVolumeReclaimPolicy"])


# -- 1. the primary is untouchable -------------------------------------------------------------
def test_a_volume_every_pod_shares_is_refused_before_anything_is_touched() -> None:
    w = World()
    w._bind_new("shared-data", "pv-shared", content="shared")
    for p in w.pods.values():
        p["spec"]["volumes"].append({"name": "shared", "persistentVolumeClaim": {"claimName": "shared-data"}})
    p = planner.plan(w.observed(spec(volumes=["shared"], primaryStableSeconds=0)))
    assert p.status.phase == "Failed" and not p.actions
    failed = next(c for c in p.status.conditions if c.type == "Failed")
    assert failed.reason == "VolumeNotPerReplica"
    assert "shared" in failed.message and "db-0, db-1, db-2" in failed.message


def test_a_claim_another_pod_mounts_is_refused() -> None:
    w = World()
    obs = w.observed(spec(primaryStableSeconds=0))
    obs = replace(obs, claim_users={**obs.claim_users, "data-db-2": ["backup-7", "db-2"]})
    p = planner.plan(obs)
    failed = next(c for c in p.status.conditions if c.type == "Failed")
    assert (failed.reason, p.actions) == ("VolumeNotPerReplica", [])
    assert "backup-7" in failed.message


# -- 2. identity, not names ----------------------------------------------------------------------
def test_generated_names_come_from_the_uid_not_from_names_that_concatenate() -> None:
    # "pg" + "main-db" and "pg-main" + "db" named the same claim when names were concatenated.
    a = planner.staging_claim_name("0b9e2f7c-1111-4a3b-9a55-000000000001", "main-db-0", "data")
    b = planner.staging_claim_name("0b9e2f7c-2222-4a3b-9a55-000000000002", "db-0", "data")
    assert a != b
    assert planner.staging_claim_name("u1", "db-0", "data") != planner.staging_claim_name(
        "u2", "db-0", "data"
    )


def test_a_staging_claim_of_another_resync_is_never_adopted() -> None:
    w = World()
    s = spec(primaryStableSeconds=0)
    stolen: dict[str, Any] = {}

    def plant(world: World, p: planner.Plan) -> None:
        # As soon as db-0 starts restoring, a claim with its staging name appears, owned by someone else.
        if stolen or not any(r.phase == "Restoring" for r in world.status.replicas):
            return
        name = planner.staging_claim_name(world.resync_uid, "db-0", "data")
        world.claims.pop(name, None)
        world._bind_new(
            name,
            "pv-foreign",
            content="main-db primary data",
            extra_labels={"clusterresync.io/resync-uid": "another-uid"},
        )
        stolen["pv"] = "pv-foreign"

    drive(w, s, on_step=plant)
    assert w.status.phase == "Failed" and reasons(w)["Failed"] == "NameConflict"
    assert w.content_of("db-0") == "stale-0" and w.data["pv-foreign"] == "main-db primary data"
    assert "pv-foreign" in w.pvs and policy(w, "pv-foreign") == "Delete"  # not touched


# -- 3. a volume's fate is decided once ----------------------------------------------------------
def test_rollback_puts_the_replica_back_on_its_data_and_keeps_both_volumes() -> None:
    w = World(unready_on_copy={"db-0"})
    s = spec(primaryStableSeconds=0, timeouts={"replicaSeconds": 20})
    drive(w, s)
    assert w.status.phase == "Failed" and reasons(w)["Failed"] == "ReplicaRolledBack"
    assert w.content_of("db-0") == "stale-0"
    r0 = next(r for r in w.status.replicas if r.name == "db-0")
    old, copy = r0.volumes[0].old_pv, r0.volumes[0].new_pv
    assert old and copy and old in w.pvs and copy in w.pvs
    assert policy(w, old) == "Retain" and policy(w, copy) == "Retain"
    assert w.data[copy] == "primary-data"
    # One failure stops the run: db-2 was never swapped, and got everything back as it was.
    r2 = next(r for r in w.status.replicas if r.name == "db-2")
    assert r2.phase == "Skipped" and w.content_of("db-2") == "stale-2"
    assert policy(w, "pv-2") == "Delete" and not w.pvs["pv-2"]["metadata"]["labels"]


def test_a_rollback_that_cannot_finish_keeps_both_volumes_retained() -> None:
    w = World(never_ready={"db-0"})
    s = spec(primaryStableSeconds=0, timeouts={"replicaSeconds": 10})
    drive(w, s, max_steps=600)
    assert w.status.phase == "Failed" and reasons(w)["Failed"] == "RollbackFailed"
    r0 = next(r for r in w.status.replicas if r.name == "db-0")
    old, copy = r0.volumes[0].old_pv, r0.volumes[0].new_pv
    assert old and copy
    assert (policy(w, old), policy(w, copy)) == ("Retain", "Retain")
    assert w.data[old] == "stale-0" and w.data[copy] == "primary-data"
    assert old in r0.message and copy in r0.message and "Retain" in r0.message
    assert not w.deleted_pvs


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


# -- 4. one writer: a lost status is rebuilt -----------------------------------------------------
def test_a_status_lost_during_verification_is_rebuilt_and_the_run_completes() -> None:
    w = World()
    s = spec(primaryStableSeconds=0)
    lost: dict[str, bool] = {}

    def lose(world: World, p: planner.Plan) -> None:
        if not lost and any(r.phase == "Verifying" for r in world.status.replicas):
            world.status = ClusterResyncStatus()
            lost["done"] = True

    drive(w, s, on_step=lose)
    assert lost
    assert w.status.phase == "Completed" and w.status.progress == "2/2"
    assert w.content_of("db-0") == w.content_of("db-2") == "primary-data"


# -- hooks: their output stays out of the status ---------------------------------------------------
def _hook_status(excerpt: int) -> str:
    w = World()
    s = spec(
        primaryStableSeconds=0,
        hooks={"preSnapshot": {"command": ["sh", "-c", "x"], "outputExcerptBytes": excerpt}},
    )
    for _ in range(5):
        obs = w.observed(s)
        p = planner.plan(obs)
        if any(isinstance(a, Exec) for a in p.actions):
            p = planner.plan(
                w.observed(s, {"preSnapshot": HookOutcome(False, 3, "PGPASSWORD=hunter2\nboom\n")})
            )
        w.status = p.status
        if p.status.phase == "Failed":
            failed = next(c for c in p.status.conditions if c.type == "Failed")
            assert failed.reason == "HookFailed"
            assert all(e.message == failed.message for e in p.events if e.reason == "HookFailed")
            return failed.message
    raise AssertionError("the hook did not fail")


def test_a_failing_hook_reports_its_exit_code_and_not_its_output() -> None:
    msg = _hook_status(0)
    assert "exit code 3" in msg and "hunter2" not in msg and "boom" not in msg


def test_a_hook_output_excerpt_is_only_there_when_the_spec_asks_for_it() -> None:
    assert "boom" in _hook_status(5) and "hunter2" not in _hook_status(5)


# -- the restore Job passes the restricted Pod Security profile ---------------------------------
def test_the_restore_job_is_restricted() -> None:
    w = World()
    for p in w.pods.values():
        p["spec"]["securityContext"] = {"runAsNonRoot": True, "runAsUser": 999, "fsGroup": 999}
    s = spec(primaryStableSeconds=0, hooks={"restore": {"image": "busybox", "command": ["true"]}})
    jobs: list[Any] = []

    def grab(world: World, p: planner.Plan) -> None:
        jobs.extend(world.jobs.values())

    drive(w, s, on_step=grab)
    pod = jobs[0]["spec"]["template"]["spec"]
    ctr = pod["containers"][0]["securityContext"]
    assert ctr["allowPrivilegeEscalation"] is False and ctr["capabilities"] == {"drop": ["ALL"]}
    # As the replica runs: its user and group.
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 999
    assert pod["securityContext"]["fsGroup"] == 999
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False


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
