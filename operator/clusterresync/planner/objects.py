"""Small readers of Kubernetes objects (plain dicts): metadata, conditions, readiness, claims,
quantities, selectors. No decisions here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from ..models import LabelSelector
from ..state import Obj


def ts(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def meta(o: Obj) -> Obj:
    m: Obj = o.get("metadata") or {}
    return m


def uid(o: Obj | None) -> str:
    return str(meta(o).get("uid", "")) if o else ""


def deleting(o: Obj | None) -> bool:
    return bool(o and meta(o).get("deletionTimestamp"))


def cond(o: Obj, type_: str) -> Obj | None:
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def pod_ready(pod: Obj | None) -> bool:
    if not pod or deleting(pod):
        return False
    c = cond(pod, "Ready")
    return bool(c and c.get("status") == "True") and (pod.get("status") or {}).get("phase") == "Running"


def restart_count(pod: Obj) -> int:
    return sum(
        int(c.get("restartCount") or 0) for c in (pod.get("status") or {}).get("containerStatuses") or []
    )


def last_restart(pod: Obj) -> dt.datetime | None:
    """When a container of the pod last (re)started, from its running state."""
    latest: dt.datetime | None = None
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        started = ((c.get("state") or {}).get("running") or {}).get("startedAt")
        if started and int(c.get("restartCount") or 0) > 0:
            t = parse_ts(started)
            latest = t if latest is None or t > latest else latest
    return latest


def claim_of(pod: Obj, volume: str) -> str | None:
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if v.get("name") == volume and v.get("persistentVolumeClaim"):
            return str(v["persistentVolumeClaim"].get("claimName"))
    return None


def quantity_bytes(q: Any) -> float:
    units = {
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "Pi": 2**50,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "P": 1e15,
        "m": 1e-3,
    }
    s = str(q)
    for u in sorted(units, key=len, reverse=True):
        if s.endswith(u):
            return float(s[: -len(u)]) * units[u]
    return float(s)


def labels_match(selector: LabelSelector, labels: dict[str, str]) -> bool:
    for k, v in (selector.match_labels or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.match_expressions or []:
        has = e.key in labels
        values = e.values or []
        if e.operator == "In" and not (has and labels[e.key] in values):
            return False
        if e.operator == "NotIn" and has and labels[e.key] in values:
            return False
        if e.operator == "Exists" and not has:
            return False
        if e.operator == "DoesNotExist" and has:
            return False
    return True


def ordinal(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 1 << 30


def policy_of(pv: Obj | None) -> str | None:
    return (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") if pv else None


def finalizers_of(obj: Obj) -> Iterable[str]:
    return meta(obj).get("finalizers") or []
