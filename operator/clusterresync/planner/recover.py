"""A lost status, rebuilt from the objects the resync labelled with its uid."""

from __future__ import annotations

from typing import Any

from ..conditions import Reason
from ..models import (
    ANNOTATION_OLD_CLAIM_UID,
    ANNOTATION_OLD_POD_UID,
    ANNOTATION_ORIGINAL_RECLAIM_POLICY,
    ANNOTATION_SWAPPED_AT,
    LABEL_REPLICA,
    LABEL_RESYNC_UID,
    LABEL_VOLUME,
    LABEL_VOLUME_ROLE,
    PrimaryStatus,
    ReplicaStatus,
    SnapshotStatus,
    VolumeStatus,
)
from ..state import Obj, Observed
from .naming import label_value, snapshot_name, staging_claim_name
from .objects import claim_of, meta, ordinal, policy_of, restart_count, ts, uid
from .preflight import find_primary
from .status import Builder


def recover(obs: Observed) -> Observed:
    """When the status is gone (removed by hand, or written back without it) but objects this
    resync labelled with its uid exist, rebuild what it must not forget from them: the primary
    (from the spec, as observed now), which replicas were staged, which were swapped (the old
    volume's ``swapped-at`` annotation, written before its claim is deleted), the old claims' and
    pods' uids and the original reclaim policies (annotations on the volumes). Otherwise the
    observation is returned as it is."""
    st = obs.resync.status
    if st.phase != "Pending" or st.started_at or st.replicas:
        return obs
    uid_ = obs.resync.uid

    def ours(o: Obj) -> bool:
        return (meta(o).get("labels") or {}).get(LABEL_RESYNC_UID) == uid_

    pvs = [p for p in obs.pvs.values() if ours(p)]
    staging = [c for c in obs.claims.values() if ours(c)]
    if not (pvs or staging or obs.snapshots or obs.jobs):
        return obs
    b = Builder(obs)
    spec = obs.resync.spec
    primary, _, _ = find_primary(b)
    if primary is None or obs.target is None:
        return obs  # preflight will say why; nothing can be resumed without a primary
    pname = meta(primary)["name"]
    pclaims = {v: claim_of(primary, v) or "" for v in spec.volumes}
    names = list(spec.replicas) if spec.replicas is not None else []
    for o in [*pvs, *staging]:
        n = (meta(o).get("labels") or {}).get(LABEL_REPLICA)
        if n and n not in names and n != pname:
            names.append(n)
    if spec.replicas is None:
        names += [n for n in obs.pods if n != pname and n not in names]
    replicas = [_recover_replica(obs, n, pvs, staging) for n in sorted(names, key=ordinal)]
    snaps = [
        SnapshotStatus(
            volume=v,
            name=snapshot_name(uid_, v),
            ready_to_use=bool(
                ((obs.snapshots.get(snapshot_name(uid_, v)) or {}).get("status") or {}).get("readyToUse")
            ),
        )
        for v in spec.volumes
        if spec.method == "Snapshot"
    ]
    started = any(r.phase != "Pending" for r in replicas)
    phase: Any = "Resyncing" if started or (all(s.ready_to_use for s in snaps) and snaps) else "Snapshotting"
    status = st.model_copy(
        update={
            "phase": phase,
            "started_at": ts(obs.now),
            "primary": PrimaryStatus(
                pod_name=pname,
                uid=uid(primary),
                node_name=str((primary.get("spec") or {}).get("nodeName", "")),
                restart_count=restart_count(primary),
                target_uid=uid(obs.target),
                claims=pclaims,
                volumes={
                    v: str(((obs.claims.get(c) or {}).get("spec") or {}).get("volumeName") or "")
                    for v, c in pclaims.items()
                },
            ),
            "snapshots": snaps,
            "replicas": replicas,
            "hooks_done": ["preSnapshot", "postSnapshot"] if phase == "Resyncing" else ["preSnapshot"],
        }
    )
    b = Builder(obs)
    b.status = status
    b.progressing(
        Reason.STATUS_REBUILT,
        f"the status was lost; rebuilt from the objects labelled {LABEL_RESYNC_UID}={uid_}: "
        + ", ".join(f"{r.name} {r.phase}" for r in replicas),
    )
    return _with_status(obs, b.status)


def _with_status(obs: Observed, status: Any) -> Observed:
    from dataclasses import replace as _replace

    return _replace(obs, resync=_replace(obs.resync, status=status))


def _recover_replica(obs: Observed, name: str, pvs: list[Obj], staging: list[Obj]) -> ReplicaStatus:
    spec = obs.resync.spec
    target = (obs.target or {}).get("metadata", {}).get("name", spec.target.name)
    pod = obs.pods.get(name)
    vols: list[VolumeStatus] = []
    swapped_at: str | None = None
    old_pod_uid: str | None = None
    any_old = any_copy = any_staged = False
    bound_to_copy = bound_to_old = True
    for v in spec.volumes:
        claim = (claim_of(pod, v) if pod else None) or f"{v}-{target}-{ordinal(name)}"

        def pick(role: str, v: str = v) -> Obj | None:
            for p in pvs:
                lb = meta(p).get("labels") or {}
                if (
                    lb.get(LABEL_REPLICA) == label_value(name)
                    and lb.get(LABEL_VOLUME) == label_value(v)
                    and lb.get(LABEL_VOLUME_ROLE) == role
                ):
                    return p
            return None

        old, copy = pick("old"), pick("copy")
        sname = staging_claim_name(obs.resync.uid, name, v)
        staged = next((c for c in staging if meta(c)["name"] == sname), None)
        c = obs.claims.get(claim)
        bound = ((c or {}).get("spec") or {}).get("volumeName")
        new_pv = meta(copy)["name"] if copy else ((staged or {}).get("spec") or {}).get("volumeName")
        notes_old = meta(old).get("annotations") or {} if old else {}
        notes_new = meta(copy).get("annotations") or {} if copy else {}
        if old is not None:
            any_old = True
            swapped_at = swapped_at or notes_old.get(ANNOTATION_SWAPPED_AT)
            old_pod_uid = old_pod_uid or notes_old.get(ANNOTATION_OLD_POD_UID)
            if swapped_at and not copy and bound and bound != meta(old)["name"]:
                new_pv = bound  # the copy was given back after verification
        any_copy = any_copy or copy is not None
        any_staged = any_staged or staged is not None
        bound_to_copy = bound_to_copy and bool(bound) and bound == new_pv
        bound_to_old = bound_to_old and old is not None and bound == meta(old)["name"]
        vols.append(
            VolumeStatus(
                volume=v,
                claim=claim,
                old_claim_uid=notes_old.get(ANNOTATION_OLD_CLAIM_UID),
                old_pv=meta(old)["name"] if old else None,
                old_pv_reclaim_policy=notes_old.get(ANNOTATION_ORIGINAL_RECLAIM_POLICY),
                staging_claim=sname,
                new_pv=new_pv,
                new_pv_reclaim_policy=notes_new.get(ANNOTATION_ORIGINAL_RECLAIM_POLICY)
                or (policy_of(copy) if copy else None),
            )
        )
    base = ReplicaStatus(
        name=name,
        volumes=vols,
        old_pod_uid=old_pod_uid,
        node_name=str(((pod or {}).get("spec") or {}).get("nodeName") or "") or None,
    )
    now = ts(obs.now)
    if swapped_at:
        if bound_to_copy and not any_copy:
            return base.model_copy(
                update={
                    "phase": "Completed",
                    "swap_started_at": swapped_at,
                    "completed_at": now,
                    "message": "verified on the copy (rebuilt)",
                }
            )
        phase = (
            "RollingBack"
            if bound_to_old
            and any(v.old_claim_uid and uid(obs.claims.get(v.claim)) != v.old_claim_uid for v in vols)
            else "Verifying"
        )
        return base.model_copy(
            update={
                "phase": phase,
                "swap_started_at": swapped_at,
                "started_at": swapped_at,
                "message": "swap in flight (rebuilt)",
            }
        )
    if any_old or any_copy:
        return base.model_copy(
            update={"phase": "Detaching", "started_at": now, "message": "staged (rebuilt)"}
        )
    if any_staged:
        return base.model_copy(
            update={"phase": "Restoring", "started_at": now, "message": "restoring (rebuilt)"}
        )
    return base
