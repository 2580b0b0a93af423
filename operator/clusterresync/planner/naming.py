"""Generated names (from the resync's uid, never its name), label values, and the labels and
ownerReferences of every object the resync creates.
"""

from __future__ import annotations

import hashlib

from ..models import LABEL_REPLICA, LABEL_RESYNC, LABEL_RESYNC_UID, LABEL_VOLUME
from ..state import Obj, Resync


def dns_name(*parts: str, limit: int = 63) -> str:
    """A predictable DNS-1123 label from parts; long ones keep a hash of the whole."""
    raw = "-".join(p.lower() for p in parts if p)
    if len(raw) <= limit:
        return raw
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return raw[: limit - 9].rstrip("-") + "-" + digest


def label_value(v: str) -> str:
    return dns_name(v)


def uid_key(resync_uid: str) -> str:
    """The part of generated names that identifies the resync: 16 hex digits (64 bits) of its uid.

    Names are derived from the uid, never from the resync's name, so two resyncs cannot generate
    the same name by the way their names and targets concatenate. Identity is still checked by the
    uid label before anything is adopted (``owned``): a name is never trusted alone.
    """
    return resync_uid.replace("-", "").lower()[:16] or "nouid"


def snapshot_name(resync_uid: str, volume: str) -> str:
    return dns_name("crs", uid_key(resync_uid), volume)


def staging_claim_name(resync_uid: str, replica: str, volume: str) -> str:
    return dns_name("crs", uid_key(resync_uid), replica, volume)


def staging_job_name(resync_uid: str, replica: str) -> str:
    return dns_name("crs", uid_key(resync_uid), replica)


def owner_references(r: Resync) -> list[Obj]:
    """The ownerReferences of every object the resync creates: the resync, as controller."""
    return [
        {
            "apiVersion": "clusterresync.io/v1alpha1",
            "kind": "ClusterResync",
            "name": r.name,
            "uid": r.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def resync_labels(resync: Resync, replica: str = "", volume: str = "") -> dict[str, str]:
    """The labels of every object the resync creates or marks; the uid label is its identity."""
    out = {
        LABEL_RESYNC: label_value(resync.name),
        LABEL_RESYNC_UID: resync.uid,
        "app.kubernetes.io/managed-by": "clusterresync",
    }
    if replica:
        out[LABEL_REPLICA] = label_value(replica)
    if volume:
        out[LABEL_VOLUME] = label_value(volume)
    return out
