"""Whose an object is (``owned``/``foreign``) and the only places a change to a PersistentVolume is
built (``pv_patch``, ``prebind_patch``).
"""

from __future__ import annotations

from typing import Literal

from ..conditions import Reason
from ..models import (
    ANNOTATION_OLD_CLAIM_UID,
    ANNOTATION_OLD_POD_UID,
    ANNOTATION_ORIGINAL_RECLAIM_POLICY,
    ANNOTATION_SWAPPED_AT,
    LABEL_REPLICA,
    LABEL_RESYNC,
    LABEL_RESYNC_UID,
    LABEL_VOLUME,
    LABEL_VOLUME_ROLE,
    ReplicaStatus,
)
from ..state import Obj, Patch, pv_ref
from .naming import resync_labels
from .objects import meta
from .status import Builder, fail_replica


def owned(b: Builder, o: Obj | None) -> bool:
    """Whether an object carries this resync's uid: the only test for adopting, changing, deleting."""
    return bool(o) and (meta(o).get("labels") or {}).get(LABEL_RESYNC_UID) == b.obs.resync.uid  # type: ignore[arg-type]


def foreign(b: Builder, o: Obj | None) -> str | None:
    """The name of another, existing ClusterResync that holds this object, or None.

    A uid label of a resync that no longer exists is stale: it holds nothing.
    """
    held_by = (meta(o).get("labels") or {}).get(LABEL_RESYNC_UID) if o else None
    if not held_by or held_by == b.obs.resync.uid:
        return None
    for other in b.obs.other_resyncs:
        if meta(other).get("uid") == held_by:
            return str(meta(other).get("name"))
    return None


def pv_patch(
    b: Builder,
    pv: Obj,
    *,
    replica: str,
    volume: str,
    role: Literal["old", "copy"] | None,
    policy: str | None = None,
    annotations: dict[str, str | None] | None = None,
) -> Patch:
    """The one way the operator changes a PersistentVolume: a merge patch that carries the
    resourceVersion it was planned from (the server refuses it with 409 if the PV changed since:
    the reconcile then starts again from a fresh observation) and marks the PV with this resync's
    uid (``role``) or, with ``role=None``, gives it back (its labels and annotations removed)."""
    m = meta(pv)
    if role is None:
        labels: dict[str, str | None] = {
            k: None
            for k in (LABEL_RESYNC, LABEL_RESYNC_UID, LABEL_REPLICA, LABEL_VOLUME, LABEL_VOLUME_ROLE)
            if k in (m.get("labels") or {})
        }
        notes: dict[str, str | None] = {
            k: None
            for k in (
                ANNOTATION_ORIGINAL_RECLAIM_POLICY,
                ANNOTATION_OLD_CLAIM_UID,
                ANNOTATION_OLD_POD_UID,
                ANNOTATION_SWAPPED_AT,
            )
            if k in (m.get("annotations") or {})
        }
    else:
        labels = {**resync_labels(b.obs.resync, replica, volume), LABEL_VOLUME_ROLE: role}
        labels.pop("app.kubernetes.io/managed-by", None)
        notes = {}
    notes.update(annotations or {})
    body: Obj = {"metadata": {"resourceVersion": m.get("resourceVersion")}}
    if labels:
        body["metadata"]["labels"] = labels
    if notes:
        body["metadata"]["annotations"] = notes
    if policy is not None:
        body["spec"] = {"persistentVolumeReclaimPolicy": policy}
    return Patch(pv_ref(str(m["name"])), body)


def pv_marked(b: Builder, pv: Obj, role: str) -> bool:
    labels = meta(pv).get("labels") or {}
    return owned(b, pv) and labels.get(LABEL_VOLUME_ROLE) == role


def replica_pod_template_claim(b: Builder, volume: str) -> Obj | None:
    for t in ((b.obs.target or {}).get("spec") or {}).get("volumeClaimTemplates") or []:
        if meta(t).get("name") == volume:
            return dict(t)
    return None


def prebind_patch(b: Builder, pv: Obj, ns: str, claim: str) -> Patch:
    """Point claimRef at a claim name with no uid: the PV is pre-bound (pv_controller syncVolume).

    A merge patch with the observed resourceVersion: if the binder moved the PV on meanwhile, the
    server answers 409 and the step is planned again from what is there now. Only a PV of this
    resync is ever pre-bound.
    """
    assert owned(b, pv), f"pre-binding {meta(pv).get('name')}, which this resync does not hold"
    ref = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": ns,
        "name": claim,
        "uid": None,
        "resourceVersion": None,
        "fieldPath": None,
    }
    body = {"metadata": {"resourceVersion": meta(pv).get("resourceVersion")}, "spec": {"claimRef": ref}}
    return Patch(pv_ref(meta(pv)["name"]), body)


def name_conflict(b: Builder, r: ReplicaStatus, why: str) -> None:
    """An object this replica's resync would adopt or change belongs to something else: hands off.
    (Only replicas not yet swapped get here: the replica is not touched and the run stops.)"""
    fail_replica(
        b,
        r,
        Reason.NAME_CONFLICT,
        f"{why}: it is not this resync's (uid {b.obs.resync.uid}); it was not touched",
    )
