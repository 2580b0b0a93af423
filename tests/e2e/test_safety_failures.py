"""Nothing lost, whatever happens: a replica that fails, a rollback that cannot finish, a node
lost mid-swap, an API server that errs. Whatever the outcome, every replica runs on a volume
holding its own data or the primary's copy, and no volume holding a replica's only data can be
deleted by the PV controller.
"""

from __future__ import annotations

import contextlib

import pytest

from kubesim.testing import KubeSim

from .conftest import Operator, wait_for
from .safety_helpers import (
    OPERATOR_USER,
    add_fault,
    assert_kept_old_volumes,
    assert_never_swapped,
    assert_no_delete_unless_verified,
    assert_no_prebound,
    assert_no_temporaries,
    assert_runs_on_good_data,
    assert_untouched,
    conds,
    event_messages,
    failed,
    get_or_none,
    make_probed_db,
    record,
    remove_fault,
    replica_status,
    resync_uid,
    staging_pvs,
    status,
    summary,
    wait_end,
    wait_replica,
)
from .test_resync import assert_primary_untouched, get, make_db, pv_of, resync

pytestmark = pytest.mark.e2e


# -- ReplicaRolledBack -----------------------------------------------------------------------
def test_replica_not_ready_on_the_copy_is_rolled_back(cluster: KubeSim, operator: Operator, ns: str) -> None:
    """The pods are Ready only on their own volumes (a readiness probe looks for ok-<pod>): the
    first replica never becomes Ready on the copy, so it is put back on its old volume with its
    data, and the next replica is never started."""
    db = make_probed_db(cluster, ns, replicas=3, primary=1)
    before = record(cluster, db)
    resync(cluster, db, maxParallel=1, timeouts={"replicaSeconds": 10})
    out = wait_end(cluster, ns, timeout=150)
    st = out["status"]
    cond = failed(st)
    assert cond["reason"] == "ReplicaRolledBack", summary(st)
    assert "pg-0" in cond["message"]
    # pg-0 is back on its old volume, with its data, Ready.
    assert assert_runs_on_good_data(cluster, db, before, 0) == {"data": "own"}
    old = before[(0, "data")]
    assert pv_of(cluster, ns, "data-pg-0") == old.pv
    assert replica_status(st, "pg-0")["volumes"][0]["oldPv"] == old.pv
    # The copy: deleted, or kept and named in the status.
    new_pv = replica_status(st, "pg-0")["volumes"][0].get("newPv")
    if new_pv and get_or_none(cluster, "pv", new_pv) is not None:
        assert new_pv in str(st), f"the copy {new_pv} is kept but the status does not say so"
    # One failure stops the run: pg-2 was never swapped.
    assert_untouched(cluster, db, before, 2)
    assert_never_swapped(cluster, ns, "pg-2")
    assert_no_prebound(cluster, ns)
    assert_no_temporaries(cluster, ns)
    assert_primary_untouched(cluster, db)


# -- RollbackFailed --------------------------------------------------------------------------
def test_rollback_that_cannot_finish_keeps_both_volumes(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    """The replica is not Ready on the copy, and (its ok file gone) not on its old volume either:
    the rollback cannot finish. Both the old and the new volume are kept with reclaim policy
    Retain, never Delete, and the message names both."""
    db = make_probed_db(cluster, ns, replicas=3, primary=1)
    before = record(cluster, db)
    old = before[(0, "data")]
    resync(cluster, db, replicas=["pg-0"], timeouts={"replicaSeconds": 8})
    wait_replica(cluster, ns, "pg-0", ("Verifying",))
    (cluster.volume_path(old.pv) / "ok-pg-0").unlink()
    out = wait_end(cluster, ns, timeout=180)
    st = out["status"]
    cond = failed(st)
    assert cond["reason"] == "RollbackFailed", summary(st)
    new_pv = replica_status(st, "pg-0")["volumes"][0]["newPv"]
    assert old.pv in cond["message"] and new_pv in cond["message"], cond["message"]
    for pv in (old.pv, new_pv):
        obj = get_or_none(cluster, "pv", pv)
        assert obj is not None, f"{pv} is gone"
        assert obj["spec"]["persistentVolumeReclaimPolicy"] == "Retain", (pv, obj["spec"])
    assert cluster.read_volume_file(old.pv, "state").decode() == "stale data of replica 0\n"
    assert cluster.volume_digest(new_pv) == db.primary_state["data"]["digest"]
    assert_untouched(cluster, db, before, 2)
    assert_primary_untouched(cluster, db)


# -- RestoreFailed ---------------------------------------------------------------------------
def test_restore_failure_leaves_the_replica_untouched_and_stops_the_run(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    db = make_db(cluster, ns, replicas=3, primary=1)
    before = record(cluster, db)
    resync(
        cluster,
        db,
        maxParallel=1,
        hooks={"restore": {"image": "busybox:1.36", "command": ["sh", "-c", "exit 4"]}},
    )
    out = wait_end(cluster, ns, timeout=120)
    cond = failed(out["status"])
    assert cond["reason"] == "RestoreFailed", summary(out["status"])
    assert "pg-0" in cond["message"]
    assert_untouched(cluster, db, before, 0)
    assert_untouched(cluster, db, before, 2)
    assert_never_swapped(cluster, ns, "pg-2")
    assert_no_prebound(cluster, ns)
    assert_no_temporaries(cluster, ns)
    assert [
        p
        for p in get(cluster, "pv")["items"]
        if p["status"].get("phase") in ("Available", "Released")
        and (p["spec"].get("claimRef") or {}).get("namespace") == ns
    ] == []
    assert_primary_untouched(cluster, db)


GATED_RESTORE = (
    # The restore waits for the test's verdict, written into the restored volume.
    "while [ ! -e /var/lib/data/verdict ]; do sleep 0.1; done; "
    'v=$(cat /var/lib/data/verdict); rm -f /var/lib/data/verdict; test "$v" = ok'
)


def job_failed(cluster: KubeSim, ns: str, pod: str) -> bool:
    for job in get(cluster, "job", "-n", ns, "-l", f"clusterresync.io/replica={pod}")["items"]:
        if any(
            c["type"] in ("Failed", "FailureTarget") and c["status"] == "True"
            for c in (job.get("status") or {}).get("conditions") or []
        ):
            return True
    return False


def test_one_failure_stops_the_run_in_the_same_pass(cluster: KubeSim, operator: Operator, ns: str) -> None:
    """maxParallel 2: pg-0's restore fails while pg-2's succeeds. Once pg-0 has failed, pg-2 must
    never be swapped, even though it is staged and ready to go."""
    db = make_db(cluster, ns, replicas=3, primary=1)
    before = record(cluster, db)
    resync(
        cluster,
        db,
        maxParallel=2,
        hooks={
            "restore": {
                "image": "busybox:1.36",
                "command": ["sh", "-c", GATED_RESTORE],
                "timeoutSeconds": 300,
            }
        },
    )
    staged = wait_for(
        lambda: (lambda a, b: (a, b) if a and b else None)(
            staging_pvs(cluster, ns, "pg-0"), staging_pvs(cluster, ns, "pg-2")
        ),
        90,
        "both replicas staged",
    )
    cluster.write_volume_file(staged[0][0], "verdict", "fail")
    # The Job is seen Failed, or the operator already acted on it (and deleted it).
    wait_for(
        lambda: (
            job_failed(cluster, ns, "pg-0")
            or any(
                r["name"] == "pg-0" and r["phase"] == "Failed"
                for r in status(cluster, ns).get("replicas", [])
            )
        ),
        60,
        "pg-0's restore Job to fail",
    )
    # pg-2's copy may already be gone (abandoned, its PV deleted: KeyError from kubesim) or going.
    with contextlib.suppress(OSError, KeyError):
        cluster.write_volume_file(staged[1][0], "verdict", "ok")
    out = wait_end(cluster, ns, timeout=120)
    cond = failed(out["status"])
    assert cond["reason"] == "RestoreFailed", summary(out["status"])
    assert_untouched(cluster, db, before, 0)
    assert_untouched(cluster, db, before, 2)
    assert event_messages(cluster, ns, "SwapStarted") == []
    assert_no_prebound(cluster, ns)
    assert_no_temporaries(cluster, ns)
    assert_primary_untouched(cluster, db)


# -- a node lost mid-swap --------------------------------------------------------------------
def test_node_not_ready_during_the_swap_never_leaves_an_empty_volume(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    """The replica's node goes NotReady as its pod is deleted for the swap (the pod stays
    Terminating, its claim with it). Once the node is back, the replica runs on its old data or
    the copy (never on an empty volume), its old data still exists, and no PV of the replica has
    reclaim policy Delete unless the replica was verified on the new one."""
    db = make_db(cluster, ns, replicas=3, primary=1)
    before = record(cluster, db)
    primary_node = get(cluster, "pod", "-n", ns, "pg-1")["spec"]["nodeName"]
    i = next(
        (i for i in (0, 2) if get(cluster, "pod", "-n", ns, db.pod(i))["spec"]["nodeName"] != primary_node),
        None,
    )
    assert i is not None, "every replica shares the primary's node"
    node = get(cluster, "pod", "-n", ns, db.pod(i))["spec"]["nodeName"]
    # Hold the deletion of the replica's pod a moment, so that the node is gone when it lands.
    fid = add_fault(
        cluster,
        "latency",
        match={
            "verb": "delete",
            "resource": "pods",
            "namespace": ns,
            "name": db.pod(i),
            "user": OPERATOR_USER,
        },
        delay=3.0,
        count=1,
    )
    resync(cluster, db, replicas=[db.pod(i)], timeouts={"replicaSeconds": 10})
    try:
        wait_replica(cluster, ns, db.pod(i), ("Swapping", "Verifying"))
        cluster.call(lambda c: c.set_node_ready(node, False))
        # Let the operator face it: past replicaSeconds, a rollback is due and cannot finish yet.
        with contextlib.suppress(AssertionError):
            wait_for(lambda: status(cluster, ns).get("phase") in ("Completed", "Failed"), 30, "the end")
    finally:
        cluster.call(lambda c: c.set_node_ready(node, True))
        remove_fault(cluster, fid)
    out = wait_end(cluster, ns, timeout=180)
    st = out["status"]
    assert_runs_on_good_data(cluster, db, before, i)
    assert_no_delete_unless_verified(cluster, db, before, i, st)
    assert (
        cluster.read_volume_file(before[(i, "data")].pv, "state").decode() == f"stale data of replica {i}\n"
    )
    assert_no_prebound(cluster, ns)
    assert_no_temporaries(cluster, ns)
    assert_primary_untouched(cluster, db)


# -- transient API errors ---------------------------------------------------------------------
def test_transient_api_errors_are_retried_and_shown(cluster: KubeSim, operator: Operator, ns: str) -> None:
    """503s on a create the operator needs (its snapshot): Progressing/Retrying, not Failed. Then 5% of its
    requests fail with 500 and a burst of 429s (Retry-After) hits it: the resync still ends
    Completed with every replica equal to the primary."""
    db = make_db(cluster, ns, replicas=3, primary=1)
    down = add_fault(
        cluster,
        "api",
        match={"verb": "create", "resource": "volumesnapshots", "namespace": ns, "user": OPERATOR_USER},
        code=503,
        message="etcdserver: leader changed",
    )
    resync(cluster, db)
    noise: list[str] = []
    try:

        def retrying() -> bool:
            st = status(cluster, ns)
            assert st.get("phase") != "Failed", summary(st)
            p = conds(st).get("Progressing") or {}
            return p.get("status") == "True" and p.get("reason") == "Retrying"

        wait_for(retrying, 60, "Progressing/Retrying")
        msg = conds(status(cluster, ns))["Progressing"]["message"]
        assert "503" in msg or "leader changed" in msg or "ServiceUnavailable" in msg, msg
        remove_fault(cluster, down)
        noise.append(add_fault(cluster, "api", match={"user": OPERATOR_USER}, code=500, probability=0.05))
        noise.append(add_fault(cluster, "api", match={"user": OPERATOR_USER}, code=429, count=12))
        out = wait_end(cluster, ns, timeout=240)
    finally:
        for fid in [down, *noise]:
            remove_fault(cluster, fid)
    st = out["status"]
    assert st["phase"] == "Completed", summary(st)
    assert conds(st)["Complete"]["reason"] == "ResyncSucceeded"
    assert st["progress"] == "2/2"
    for i in (0, 2):
        pv = pv_of(cluster, ns, db.claim("data", i))
        assert cluster.volume_digest(pv) == db.primary_state["data"]["digest"], f"{db.pod(i)} differs"
    assert_kept_old_volumes(cluster, db, resync_uid(cluster, ns), [0, 2])
    assert_no_prebound(cluster, ns)
    assert_no_temporaries(cluster, ns)
    assert_primary_untouched(cluster, db)
