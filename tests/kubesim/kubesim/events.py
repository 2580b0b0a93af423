"""Events as the controllers record them (``client-go/tools/record``: ``EventRecorder.Eventf``).

Repeated events for the same object, reason and message are folded into one whose ``count``
grows and ``lastTimestamp`` moves, as the recorder's ``EventCorrelator`` does.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from .errors import StatusError
from .meta import now

if TYPE_CHECKING:
    from .apiserver import APIServer


def record(
    api: APIServer, obj: dict[str, Any], type_: str, reason: str, message: str, component: str, host: str = ""
) -> None:
    """Record an Event about ``obj`` (a full object with apiVersion, kind and metadata)."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or "default"
    involved = {
        "apiVersion": obj.get("apiVersion", ""),
        "kind": obj.get("kind", ""),
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
        "uid": meta.get("uid", ""),
        "resourceVersion": meta.get("resourceVersion", ""),
    }
    digest = hashlib.sha1(f"{involved['uid']}|{reason}|{message}|{component}".encode()).hexdigest()[:10]
    name = f"{meta.get('name', 'unknown')}.{digest}"
    rt = api.resource("", "v1", "events")
    t = now()
    existing = api.get_or_none(rt, ns, name)
    if existing is not None:
        existing["count"] = int(existing.get("count") or 1) + 1
        existing["lastTimestamp"] = t
        try:
            api.update(rt, ns, name, existing, internal_patch=True)
        except StatusError:
            pass
        return
    ev = {
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": component, **({"host": host} if host else {})},
        "firstTimestamp": t,
        "lastTimestamp": t,
        "count": 1,
        "reportingComponent": component,
        "reportingInstance": host,
    }
    try:
        api.create(rt, ns, ev)
    except StatusError as e:
        # The namespace may be going away; events are best effort, as in the recorder.
        if e.code not in (403, 404, 409):
            raise
