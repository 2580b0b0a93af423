"""Nothing lost, whatever happens: ``kubectl delete crsync`` at every phase of a resync.

The resync is held in the phase by a paused kubesim controller or a slowed request of the
operator, deleted there, then released. Whatever the phase, the ClusterResync goes away; every
replica runs on a volume holding its own data or the primary's copy; a replica that was never
swapped is untouched (its own claim, volume, data and reclaim policy); a replica left on a copy
keeps its old volume (Released, Retain); no snapshot, staging claim, Job or copy is left behind,
no PV is left pre-bound; the primary is untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from kubesim.testing import KubeSim

from .conftest import Operator, wait_for
from .safety_helpers import (
    LABEL_ROLE,
    OPERATOR_USER,
    add_fault,
    assert_no_prebound,
    assert_no_temporaries,
    assert_old_data_kept,
    assert_runs_on_good_data,
    assert_temporaries_labelled,
    assert_untouched,
    get_or_none,
    pause,
    pvs_of_namespace,
    record,
    remove_fault,
    replica_status,
    resume,
    resync_uid,
    settles,
    status,
    wait_gone,
    wait_replica,
)
from .test_resync import Db, assert_primary_untouched, get, make_db, pv_of, resync

pytestmark = pytest.mark.e2e


@dataclass
class Hold:
    """How to keep a resync in a phase long enough to delete it there."""

    spec: dict[str, Any] = field(default_factory=dict)
    paused: tuple[str, ...] = ()  # kubesim controllers paused before the resync is applied
    latency: dict[str, str] | None = None  # a request of the operator slowed (once) before it is applied
    wait_in: Callable[[KubeSim, str], Any] = lambda cluster, ns: None  # waits until the resync is there
    swapped: bool = False  # whether pg-0 has gone out of service by then


def phase_is(phase: str) -> Callable[[KubeSim, str], Any]:
    return lambda cluster, ns: wait_for(
        lambda: status(cluster, ns).get("phase") == phase, 90, f"the resync in {phase}"
    )


def replica_in(phase: str) -> Callable[[KubeSim, str], Any]:
    return lambda cluster, ns: wait_replica(cluster, ns, "pg-0", (phase,))


def snapshot_taken(cluster: KubeSim, ns: str) -> Any:
    return wait_for(
        lambda: (
            status(cluster, ns).get("phase") == "Snapshotting"
            and get(cluster, "volumesnapshot", "-n", ns)["items"]
        ),
        90,
        "the resync in Snapshotting, its snapshot created",
    )


HOLDS = {
    # Waiting for the primary to be stable for an hour.
    "Preflight": Hold(
        spec={"primaryStableSeconds": 3600, "timeouts": {"preflightSeconds": 7200}},
        wait_in=phase_is("Preflight"),
    ),
    # The snapshot is never cut.
    "Snapshotting": Hold(paused=("csi-snapshotter",), wait_in=snapshot_taken),
    # The staging claim is never provisioned.
    "Restoring": Hold(paused=("csi-provisioner",), wait_in=replica_in("Restoring")),
    # The staging claim, deleted to free the restored volume, keeps its finalizer.
    "Detaching": Hold(paused=("pvc-protection",), wait_in=replica_in("Detaching")),
    # The deletion of the replica's claim, the swap's first step, is slow.
    "Swapping": Hold(
        latency={"verb": "delete", "resource": "persistentvolumeclaims", "name": "data-pg-0"},
        wait_in=replica_in("Swapping"),
        swapped=True,
    ),
    # The replica's pod is not recreated.
    "Verifying": Hold(paused=("statefulset",), wait_in=replica_in("Verifying"), swapped=True),
    # Set up below: Verifying held, then the first PV patch after it slowed.
    "Finishing": Hold(paused=("statefulset",), swapped=True),
}


@settles
def assert_no_leaked_copies(cluster: KubeSim, ns: str) -> None:
    """Every PV of the namespace that no claim holds is an old volume kept on purpose."""
    loose = [
        f"{p['metadata']['name']} ({p['status'].get('phase')}, {(p['metadata'].get('labels') or {}).get(LABEL_ROLE)})"
        for p in pvs_of_namespace(cluster, ns)
        if p["status"].get("phase") != "Bound"
        and (p["metadata"].get("labels") or {}).get(LABEL_ROLE) != "old"
    ]
    assert loose == [], f"volumes left behind: {loose}"


@pytest.mark.parametrize("phase", list(HOLDS))
def test_delete_at_every_phase_loses_nothing(
    cluster: KubeSim, operator: Operator, ns: str, phase: str
) -> None:
    hold = HOLDS[phase]
    db: Db = make_db(cluster, ns, replicas=3, primary=1)
    before = record(cluster, db)
    fids: list[str] = []
    paused = list(hold.paused)
    pause(cluster, *paused)
    try:
        if hold.latency:
            fids.append(
                add_fault(
                    cluster,
                    "latency",
                    match={**hold.latency, "namespace": ns, "user": OPERATOR_USER},
                    delay=6.0,
                    count=1,
                )
            )
        resync(cluster, db, maxParallel=1, **hold.spec)
        if phase == "Finishing":
            st = wait_replica(cluster, ns, "pg-0", ("Verifying",))
            # Finishing's first step patches pg-0's new PV: slow that patch, not another replica's
            # (pg-2's copy is being staged meanwhile, with PV patches of its own).
            (vol,) = replica_status(st, "pg-0")["volumes"]
            fids.append(
                add_fault(
                    cluster,
                    "latency",
                    match={
                        "verb": "patch",
                        "resource": "persistentvolumes",
                        "name": vol["newPv"],
                        "user": OPERATOR_USER,
                    },
                    delay=6.0,
                    count=1,
                )
            )
            resume(cluster, *paused)
            paused = []
            wait_replica(cluster, ns, "pg-0", ("Finishing",))
        else:
            hold.wait_in(cluster, ns)
        assert_temporaries_labelled(cluster, ns, resync_uid(cluster, ns))
        cluster.kubectl("delete", "crsync", "-n", ns, "rs", "--wait=false")
        wait_for(
            lambda: (
                get_or_none(cluster, "crsync", "-n", ns, "rs") or {"metadata": {"deletionTimestamp": 1}}
            )["metadata"].get("deletionTimestamp"),
            30,
            "the deletion to be accepted",
        )
    finally:
        resume(cluster, *paused)
        for fid in fids:
            remove_fault(cluster, fid)
    wait_gone(cluster, ns, timeout=150)
    for i in (0, 2):
        on = assert_runs_on_good_data(cluster, db, before, i)
        if on == {"data": "copy"}:
            # Copies are made ahead: once pg-0 is verified (Finishing: back in service), pg-2's
            # staged copy may be swapped in the same pass, before the deletion is seen; a swap
            # in flight is then carried to its end.
            may_swap = {0} | ({2} if phase == "Finishing" else set())
            assert hold.swapped and i in may_swap, f"{db.pod(i)} was swapped, though deleted in {phase}"
            assert_old_data_kept(cluster, db, before, i, verified=True)
        elif i == 0 and hold.swapped:  # rolled back onto its old volume, its policy back
            old = before[(i, "data")]
            assert pv_of(cluster, ns, old.claim) == old.pv
            assert get(cluster, "pv", old.pv)["spec"]["persistentVolumeReclaimPolicy"] == old.policy
        else:
            assert_untouched(cluster, db, before, i)
    assert_no_temporaries(cluster, ns)
    assert_no_prebound(cluster, ns)
    assert_no_leaked_copies(cluster, ns)
    assert_primary_untouched(cluster, db)
