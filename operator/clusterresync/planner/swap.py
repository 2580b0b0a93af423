"""Stages 2 to 4 of a replica: detach the copy and pre-bind it, retain the old volume, swap (delete
the old claims, then the pod), verify, finish.
"""

from __future__ import annotations

from ..conditions import EventReason, EventType, Reason
from ..models import (
    ANNOTATION_OLD_CLAIM_UID,
    ANNOTATION_OLD_POD_UID,
    ANNOTATION_ORIGINAL_RECLAIM_POLICY,
    ANNOTATION_SWAPPED_AT,
    ReplicaStatus,
)
from ..state import Create, Delete, Obj, job_ref, pod_ref, pvc_ref
from .naming import staging_job_name
from .objects import deleting, meta, parse_ts, pod_ready, policy_of, uid
from .probing import verified as probe_verified
from .status import Builder, fail_replica, set_vol
from .volumes import (
    foreign,
    name_conflict,
    owned,
    prebind_patch,
    pv_marked,
    pv_patch,
    replica_pod_template_claim,
)

# How long after a swap the operator waits for the StatefulSet controller to recreate a claim
# before it creates the claim itself.
CLAIM_RECREATE_GRACE_SECONDS = 30.0


def original_policy(pv: Obj) -> str | None:
    """A PV's own reclaim policy: the one recorded when the resync first changed it, else its
    current one (a crash between the change and the status write leaves only the annotation)."""
    recorded = (meta(pv).get("annotations") or {}).get(ANNOTATION_ORIGINAL_RECLAIM_POLICY)
    return str(recorded) if recorded else policy_of(pv)


def detach(b: Builder, r: ReplicaStatus) -> bool:
    """Stage 2: keep the restored volume (Retain), free it from the staging claim, pre-bind it."""
    obs = b.obs
    ns = obs.resync.namespace
    done = True
    job_name = staging_job_name(obs.resync.uid, r.name)
    for v in r.volumes:
        assert v.new_pv and v.staging_claim
        pv = obs.pvs.get(v.new_pv)
        if pv is None:
            fail_replica(
                b,
                r,
                Reason.RESTORE_FAILED,
                f"restored volume {v.new_pv} disappeared; the replica was not touched",
            )
            return False
        holder = foreign(b, pv)
        if holder:
            name_conflict(b, r, f"restored volume {v.new_pv} is held by ClusterResync {holder}")
            return False
        policy = policy_of(pv)
        original = v.new_pv_reclaim_policy
        if original is None:
            original = original_policy(pv)
            r = set_vol(b, r, v.volume, new_pv_reclaim_policy=original)
        if policy != "Retain" or not pv_marked(b, pv, "copy"):
            b.do(
                pv_patch(
                    b,
                    pv,
                    replica=r.name,
                    volume=v.volume,
                    role="copy",
                    policy="Retain",
                    annotations={ANNOTATION_ORIGINAL_RECLAIM_POLICY: original},
                )
            )
            done = False
            continue
        if job_name in obs.jobs and not deleting(obs.jobs[job_name]):
            b.do(Delete(job_ref(ns, job_name), uid=uid(obs.jobs[job_name])))
        staged = obs.claims.get(v.staging_claim)
        if staged is not None:
            if not deleting(staged):
                b.do(Delete(pvc_ref(ns, v.staging_claim), uid=uid(staged)))
            done = False
            continue
        phase = (pv.get("status") or {}).get("phase")
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        prebound = ref.get("name") == v.claim and ref.get("namespace") == ns and not ref.get("uid")
        if phase == "Released" or (ref and not prebound and ref.get("name") == v.staging_claim):
            b.do(prebind_patch(b, pv, ns, v.claim))
            done = False
        elif not prebound or phase != "Available":
            done = False
    return done


def retain_old(b: Builder, r: ReplicaStatus) -> bool:
    """Stage 3: the replica's current volumes get reclaim policy Retain, their policy recorded first."""
    obs = b.obs
    done = True
    for v in r.volumes:
        claim = obs.claims.get(v.claim)
        if claim is None or deleting(claim):
            fail_replica(
                b, r, Reason.RESTORE_FAILED, f"claim {v.claim} vanished before the swap; nothing was swapped"
            )
            return False
        pv_name = str((claim.get("spec") or {}).get("volumeName") or "")
        pv = obs.pvs.get(pv_name)
        if pv is None:
            done = False
            continue
        holder = foreign(b, pv)
        if holder:
            name_conflict(
                b,
                r,
                f"volume {pv_name} of claim {v.claim} is held by ClusterResync {holder} (a volume it kept); "
                f"delete ClusterResync {holder} first -- its volumes stay, and are then free",
            )
            return False
        if v.old_pv is None:
            r = set_vol(
                b,
                r,
                v.volume,
                old_pv=pv_name,
                old_pv_reclaim_policy=original_policy(pv),
                old_claim_uid=uid(claim),
            )
            v = next(x for x in r.volumes if x.volume == v.volume)
        if policy_of(pv) != "Retain" or not pv_marked(b, pv, "old"):
            pod = obs.pods.get(r.name)
            b.do(
                pv_patch(
                    b,
                    pv,
                    replica=r.name,
                    volume=v.volume,
                    role="old",
                    policy="Retain",
                    annotations={
                        ANNOTATION_ORIGINAL_RECLAIM_POLICY: v.old_pv_reclaim_policy,
                        ANNOTATION_OLD_CLAIM_UID: v.old_claim_uid,
                        ANNOTATION_OLD_POD_UID: uid(pod) or None,
                    },
                )
            )
            done = False
    return done


def swap(b: Builder, r: ReplicaStatus) -> bool:
    """Stage 4: delete the replica's claims, then its pod; the StatefulSet controller recreates both."""
    obs = b.obs
    ns = obs.resync.namespace
    claims_going = True
    for v in r.volumes:
        c = obs.claims.get(v.claim)
        if c is not None and uid(c) == v.old_claim_uid and not deleting(c):
            # The old volume says it was swapped before its claim goes, so that a status lost
            # from here on can be rebuilt from the volumes (``recover``).
            old = obs.pvs.get(v.old_pv or "")
            if old is not None and ANNOTATION_SWAPPED_AT not in (meta(old).get("annotations") or {}):
                b.do(
                    pv_patch(
                        b,
                        old,
                        replica=r.name,
                        volume=v.volume,
                        role="old",
                        annotations={ANNOTATION_SWAPPED_AT: r.swap_started_at or b.now},
                    )
                )
            b.do(Delete(pvc_ref(ns, v.claim), uid=v.old_claim_uid))
            claims_going = False
    if not claims_going:
        return False
    pod = obs.pods.get(r.name)
    if pod is not None and uid(pod) == r.old_pod_uid and not deleting(pod):
        b.do(Delete(pod_ref(ns, r.name), uid=r.old_pod_uid))
    return True


def verify(b: Builder, r: ReplicaStatus) -> None:
    obs, spec = b.obs, b.obs.resync.spec
    ns = obs.resync.namespace
    started = parse_ts(r.swap_started_at or b.now)
    elapsed = (obs.now - started).total_seconds()
    # The swap's deletions are repeated until observed: a crash may have cut them short.
    swap(b, r)
    ok = True
    problems: list[str] = []
    for v in r.volumes:
        c = obs.claims.get(v.claim)
        if c is None or uid(c) == v.old_claim_uid:
            ok = False
            problems.append(f"claim {v.claim} not recreated yet")
            if c is None and elapsed >= CLAIM_RECREATE_GRACE_SECONDS:
                body = _claim_for(b, r, v.volume, v.claim, v.new_pv or "")
                if body is not None:
                    b.do(Create(pvc_ref(ns, v.claim), body))
            continue
        bound_to = (c.get("spec") or {}).get("volumeName")
        if bound_to and bound_to != v.new_pv:
            # Another volume got the claim: never let the replica run on it.
            _start_rollback(
                b, r, f"claim {v.claim} bound to {bound_to}, not to the restored {v.new_pv}; rolling back"
            )
            return
        if (c.get("status") or {}).get("phase") != "Bound":
            ok = False
            problems.append(f"claim {v.claim} not Bound yet")
    pod = obs.pods.get(r.name)
    if pod is None or uid(pod) == r.old_pod_uid:
        ok = False
        problems.append(f"pod {r.name} not recreated yet")
    elif not pod_ready(pod):
        ok = False
        problems.append(f"pod {r.name} not Ready yet")
    if ok:
        # With a probe, Ready is not enough: the replica must replicate from the primary again.
        checked = probe_verified(b, r)
        if checked is None:
            b.put_replica(r.model_copy(update={"message": "Ready; probing its replication"}))
            return
        ok, why = checked
        if not ok:
            problems.append(why)
    if ok:
        b.put_replica(
            r.model_copy(update={"phase": "Finishing", "message": "verified; restoring reclaim policies"})
        )
        return
    if elapsed >= spec.timeouts.replica_seconds:
        _start_rollback(
            b,
            r,
            f"not verified after {int(elapsed)}s ({'; '.join(problems)}); rolling back to the old volumes",
        )
        return
    b.put_replica(r.model_copy(update={"message": "; ".join(problems)}))


def _start_rollback(b: Builder, r: ReplicaStatus, why: str) -> None:
    """The replica was not verified on the copy: it goes back to its old volumes (``rollback``)."""
    b.put_replica(r.model_copy(update={"phase": "RollingBack", "message": why}))
    b.event(EventType.WARNING, EventReason.ROLLING_BACK, f"{r.name}: {why}")


def _claim_for(b: Builder, r: ReplicaStatus, volume: str, claim: str, pv_name: str) -> Obj | None:
    tmpl = replica_pod_template_claim(b, volume)
    if tmpl is None:
        return None
    spec = dict(tmpl.get("spec") or {})
    spec["volumeName"] = pv_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": claim,
            "namespace": b.obs.resync.namespace,
            "labels": dict(meta(tmpl).get("labels") or {}),
        },
        "spec": spec,
    }


def finish(b: Builder, r: ReplicaStatus) -> None:
    """Stage 6: the replica is verified on the copy. The copy gets its own reclaim policy back and
    is given back (an ordinary volume again); the old volume is kept, or only now given Delete."""
    spec = b.obs.resync.spec
    done = True
    for v in r.volumes:
        new = b.obs.pvs.get(v.new_pv or "")
        if new is not None and owned(b, new):
            b.do(
                pv_patch(
                    b,
                    new,
                    replica=r.name,
                    volume=v.volume,
                    role=None,
                    policy=v.new_pv_reclaim_policy or "Delete",
                )
            )
            done = False
        old = b.obs.pvs.get(v.old_pv or "")
        if old is None or not owned(b, old):
            continue
        if spec.old_volumes == "Delete" and policy_of(old) != "Delete":
            # The only place an old volume is given Delete: its replica was verified on the copy.
            # Released with policy Delete, the PV controller deletes the volume and its data.
            b.do(pv_patch(b, old, replica=r.name, volume=v.volume, role="old", policy="Delete"))
            done = False
    if done:
        kept = "retained" if spec.old_volumes == "Retain" else "deleted"
        olds = ", ".join(v.old_pv or "" for v in r.volumes)
        b.put_replica(
            r.model_copy(
                update={
                    "phase": "Completed",
                    "completed_at": b.now,
                    "message": f"running on the restored volume(s) {', '.join(v.new_pv or '' for v in r.volumes)}; old volume(s) {kept}: {olds}",
                }
            )
        )
        b.event(
            EventType.NORMAL,
            EventReason.REPLICA_RESYNCED,
            f"{r.name} runs on a copy of the primary; old volumes {olds} {kept}",
        )
