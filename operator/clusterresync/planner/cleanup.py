"""Temporary objects go on completion, failure and deletion: snapshots, staging claims and Jobs,
copies not used.
"""

from __future__ import annotations

import datetime as dt

from ..models import ReplicaStatus
from ..state import Create, Delete, Obj, job_ref, pvc_ref, snapshot_ref
from .naming import owner_references, resync_labels, staging_claim_name
from .objects import deleting, meta, parse_ts, uid
from .status import IN_FLIGHT, Builder
from .volumes import owned, prebind_patch, pv_patch


def cleanup(b: Builder) -> bool:
    """Remove what the resync created and give back what it changed on replicas it did not swap.

    A volume's fate is decided once, here and in ``finish``: a replica that was never swapped
    (its claims never deleted) gets its old volume back as it was and its copy discarded; a
    replica verified on the copy keeps the copy (``finish``); any other swapped replica keeps
    both volumes, with reclaim policy Retain. Returns True once nothing is left to do.
    """
    obs = b.obs
    ns = obs.resync.namespace
    clean = True
    for name, job in obs.jobs.items():
        clean = False
        if not deleting(job):
            b.do(Delete(job_ref(ns, name), uid=uid(job)))
    for r in b.status.replicas:
        if r.phase in IN_FLIGHT:
            clean = False  # never cleaned under a swap in flight
            continue
        if r.swap_started_at is not None:
            continue  # swapped: verified (the copy is the replica's), or both volumes kept
        for v in r.volumes:
            staged = obs.claims.get(v.staging_claim or "")
            staged = staged if owned(b, staged) else None
            # The old volume of a swap that never happened gets its own policy back -- only once
            # it is Bound again to its claim (a Released old volume keeps Retain, with its data).
            old = obs.pvs.get(v.old_pv or "")
            if (
                old is not None
                and owned(b, old)
                and (old.get("status") or {}).get("phase") == "Bound"
                and ((old.get("spec") or {}).get("claimRef") or {}).get("uid") == v.old_claim_uid
            ):
                b.do(
                    pv_patch(
                        b, old, replica=r.name, volume=v.volume, role=None, policy=v.old_pv_reclaim_policy
                    )
                )
                clean = False
            # A restored copy that was not swapped in is deleted with its data.
            new = obs.pvs.get(v.new_pv or "")
            if new is not None and (owned(b, new) or staged is not None):
                clean = False
                _discard_copy(
                    b,
                    r,
                    v.volume,
                    v.staging_claim or staging_claim_name(obs.resync.uid, r.name, v.volume),
                    new,
                    staged,
                )
            elif staged is not None:
                clean = False
                if not deleting(staged):
                    b.do(Delete(pvc_ref(ns, meta(staged)["name"]), uid=uid(staged)))
    # Staging claims of replicas the status does not know yet (a crash before it was written).
    known = {v.staging_claim for r in b.status.replicas for v in r.volumes}
    for cname, c in obs.claims.items():
        if owned(b, c) and cname not in known:
            clean = False
            if not deleting(c):
                b.do(Delete(pvc_ref(ns, cname), uid=uid(c)))
    # No restore needs the snapshots any more (a claim still being restored from one is protected
    # by the snapshotter's volumesnapshot-as-source-protection finalizer).
    for sname, snap in obs.snapshots.items():
        clean = False
        if not deleting(snap):
            b.do(Delete(snapshot_ref(ns, sname), uid=uid(snap)))
    if not clean:
        b.again(1.0)
    return clean


def expire(b: Builder) -> None:
    """spec.ttlSecondsAfterFinished, for a finished resync that is cleaned up: ask for the
    resync's own deletion once the time is up, and come back then (the daemon keeps running)."""
    ttl = b.obs.resync.spec.ttl_seconds_after_finished
    if ttl is None:
        return
    finished = parse_ts(b.status.completed_at) if b.status.completed_at else b.obs.now
    left = max(0.0, (finished + dt.timedelta(seconds=ttl) - b.obs.now).total_seconds())
    b.delete_self_after = left
    # Requeued until it is due; once due, again shortly, in case the deletion did not happen.
    b.again(left if left > 0 else 5.0)


def _discard_copy(
    b: Builder, r: ReplicaStatus, volume: str, staging: str, pv: Obj, staged: Obj | None
) -> None:
    """Delete a restored volume that was never swapped in, through a claim, so its data goes too.

    A pre-bound or Released volume is bound again to its staging claim name, that claim is made
    (it binds to the volume, never provisions), the volume's reclaim policy becomes Delete, and the
    claim is deleted: the PV controller then deletes the volume and its data (``reclaimVolume``).
    Only called for a replica whose claims were never deleted.
    """
    ns = b.obs.resync.namespace
    spec = pv.get("spec") or {}
    ref = spec.get("claimRef") or {}
    name = meta(pv)["name"]
    if (
        staged is not None
        and (staged.get("spec") or {}).get("volumeName") == name
        and (staged.get("status") or {}).get("phase") == "Bound"
    ):
        if spec.get("persistentVolumeReclaimPolicy") != "Delete":
            b.do(pv_patch(b, pv, replica=r.name, volume=volume, role="copy", policy="Delete"))
        elif not deleting(staged):
            b.do(Delete(pvc_ref(ns, staging), uid=uid(staged)))
        return
    if staged is not None:
        if not deleting(staged) and (staged.get("status") or {}).get("phase") == "Bound":
            b.do(Delete(pvc_ref(ns, staging), uid=uid(staged)))
        return
    if not owned(b, pv):
        return
    if ref.get("name") != staging or ref.get("uid"):
        if (pv.get("status") or {}).get("phase") in ("Available", "Released"):
            b.do(prebind_patch(b, pv, ns, staging))
        return
    body = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": staging,
            "namespace": ns,
            "labels": resync_labels(b.obs.resync, r.name, volume),
            "ownerReferences": owner_references(b.obs.resync),
        },
        "spec": {
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "resources": {"requests": {"storage": str((spec.get("capacity") or {}).get("storage", "1"))}},
            "volumeName": name,
            "storageClassName": spec.get("storageClassName", ""),
        },
    }
    b.do(Create(pvc_ref(ns, staging), body))
