"""Server-side printing: ``meta.k8s.io/v1`` ``Table`` responses, which ``kubectl get`` asks for.

Built-in kinds follow ``pkg/printers/internalversion/printers.go`` (the columns ``kubectl get``
shows for pods, claims, volumes, ...); kinds without a printer get the default table of
``staging/src/k8s.io/apiserver/pkg/registry/rest/table.go`` (Name, Created At); custom resources
get their ``additionalPrinterColumns`` (``apiextensions-apiserver/pkg/registry/customresource/
tableconvertor/tableconvertor.go``), or Name and Age when they declare none.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from .jsonpath import JSONPathError, find
from .meta import parse_time
from .resources import ResourceType
from .store import JSON

Column = dict[str, Any]


def human_duration(seconds: float) -> str:
    """``duration.HumanDuration`` (apimachinery/pkg/util/duration)."""
    s = int(seconds)
    if s < 0:
        return "<invalid>"
    if s < 60 * 2:
        return f"{s}s"
    m = s // 60
    if m < 10:
        rem = s % 60
        return f"{m}m{rem}s" if rem else f"{m}m"
    if m < 60 * 3:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        rem = m % 60
        return f"{h}h{rem}m" if rem else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        rem = h % 24
        return f"{h // 24}d{rem}h" if rem else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        y = h // (24 * 365)
        d = (h // 24) % 365
        return f"{y}y{d}d" if d else f"{y}y"
    return f"{h // (24 * 365)}y"


def age(obj: JSON) -> str:
    ts = obj.get("metadata", {}).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    return human_duration((dt.datetime.now(dt.UTC) - parse_time(ts)).total_seconds())


def _col(name: str, type_: str = "string", description: str = "", priority: int = 0, fmt: str = "") -> Column:
    c: Column = {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}
    return c


NAME_COL = _col(
    "Name",
    "string",
    "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    fmt="name",
)
AGE_COL = _col(
    "Age",
    "string",
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
)


def _pod_row(p: JSON) -> list[Any]:
    # printers.go: printPod (simplified reason logic)
    spec = p.get("spec") or {}
    st = p.get("status") or {}
    cs = st.get("containerStatuses") or []
    ready = sum(1 for c in cs if c.get("ready"))
    total = len(spec.get("containers") or [])
    restarts = sum(int(c.get("restartCount") or 0) for c in cs)
    reason = st.get("reason") or st.get("phase") or "Unknown"
    for c in cs:
        state = c.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            reason = state["waiting"]["reason"]
        elif (
            "terminated" in state
            and state["terminated"].get("reason")
            and st.get("phase") not in ("Succeeded", "Failed")
        ):
            reason = state["terminated"]["reason"]
    if st.get("phase") == "Succeeded":
        reason = "Completed"
    elif st.get("phase") == "Failed":
        reason = st.get("reason") or "Error"
    if p["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return [
        p["metadata"]["name"],
        f"{ready}/{total}",
        reason,
        restarts,
        age(p),
        st.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        st.get("nominatedNodeName") or "<none>",
        "<none>",
    ]


def _pvc_row(c: JSON) -> list[Any]:
    spec = c.get("spec") or {}
    st = c.get("status") or {}
    phase = "Terminating" if c["metadata"].get("deletionTimestamp") else st.get("phase", "")
    cap = (st.get("capacity") or {}).get("storage", "")
    modes = _modes(st.get("accessModes") or [])
    return [
        c["metadata"]["name"],
        phase,
        spec.get("volumeName", ""),
        cap,
        modes,
        spec.get("storageClassName") or "<unset>",
        spec.get("volumeAttributesClassName") or "<unset>",
        age(c),
        spec.get("volumeMode", ""),
    ]


def _modes(modes: list[str]) -> str:
    short = {
        "ReadWriteOnce": "RWO",
        "ReadOnlyMany": "ROX",
        "ReadWriteMany": "RWX",
        "ReadWriteOncePod": "RWOP",
    }
    return ",".join(short.get(m, m) for m in modes)


def _pv_row(v: JSON) -> list[Any]:
    spec = v.get("spec") or {}
    st = v.get("status") or {}
    ref = spec.get("claimRef")
    claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""
    phase = "Terminating" if v["metadata"].get("deletionTimestamp") else st.get("phase", "")
    return [
        v["metadata"]["name"],
        (spec.get("capacity") or {}).get("storage", ""),
        _modes(spec.get("accessModes") or []),
        spec.get("persistentVolumeReclaimPolicy", ""),
        phase,
        claim,
        spec.get("storageClassName", ""),
        spec.get("volumeAttributesClassName") or "<unset>",
        st.get("reason", ""),
        age(v),
        spec.get("volumeMode", ""),
    ]


def _sts_row(s: JSON) -> list[Any]:
    st = s.get("status") or {}
    return [
        s["metadata"]["name"],
        f"{st.get('readyReplicas', 0)}/{(s.get('spec') or {}).get('replicas', 0)}",
        age(s),
    ]


def _deploy_row(d: JSON) -> list[Any]:
    st = d.get("status") or {}
    return [
        d["metadata"]["name"],
        f"{st.get('readyReplicas', 0)}/{(d.get('spec') or {}).get('replicas', 0)}",
        st.get("updatedReplicas", 0),
        st.get("availableReplicas", 0),
        age(d),
    ]


def _job_row(j: JSON) -> list[Any]:
    st = j.get("status") or {}
    spec = j.get("spec") or {}
    status = "Running"
    for c in st.get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed", "Suspended"):
            status = c["type"]
    completions = f"{st.get('succeeded', 0)}/{spec.get('completions', 1)}"
    duration = ""
    if st.get("startTime"):
        end = parse_time(st["completionTime"]) if st.get("completionTime") else dt.datetime.now(dt.UTC)
        duration = human_duration((end - parse_time(st["startTime"])).total_seconds())
    return [j["metadata"]["name"], status, completions, duration, age(j)]


def _ns_row(n: JSON) -> list[Any]:
    return [n["metadata"]["name"], (n.get("status") or {}).get("phase", ""), age(n)]


def _node_row(n: JSON) -> list[Any]:
    ready = "Unknown"
    for c in (n.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            ready = "Ready" if c.get("status") == "True" else "NotReady"
    if (n.get("spec") or {}).get("unschedulable"):
        ready += ",SchedulingDisabled"
    roles = [
        k.split("/", 1)[1]
        for k in (n["metadata"].get("labels") or {})
        if k.startswith("node-role.kubernetes.io/")
    ]
    version = ((n.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")
    return [n["metadata"]["name"], ready, ",".join(roles) or "<none>", age(n), version]


def _sc_row(s: JSON) -> list[Any]:
    name = s["metadata"]["name"]
    if (s["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true":
        name += " (default)"
    return [
        name,
        s.get("provisioner", ""),
        s.get("reclaimPolicy", ""),
        s.get("volumeBindingMode", ""),
        bool(s.get("allowVolumeExpansion", False)),
        age(s),
    ]


def _event_row(e: JSON) -> list[Any]:
    io = e.get("involvedObject") or {}
    last = e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp")
    last_seen = (
        human_duration((dt.datetime.now(dt.UTC) - parse_time(last)).total_seconds()) if last else "<unknown>"
    )
    obj = f"{(io.get('kind') or '').lower()}/{io.get('name', '')}"
    return [last_seen, e.get("type", ""), e.get("reason", ""), obj, e.get("message", "")]


def _crd_row(c: JSON) -> list[Any]:
    return [c["metadata"]["name"], c["metadata"].get("creationTimestamp", "")]


PRINTERS: dict[tuple[str, str], tuple[list[Column], Callable[[JSON], list[Any]]]] = {
    ("", "pods"): (
        [
            NAME_COL,
            _col("Ready"),
            _col("Status"),
            _col("Restarts", "string"),
            AGE_COL,
            _col("IP", priority=1),
            _col("Node", priority=1),
            _col("Nominated Node", priority=1),
            _col("Readiness Gates", priority=1),
        ],
        _pod_row,
    ),
    ("", "persistentvolumeclaims"): (
        [
            NAME_COL,
            _col("Status"),
            _col("Volume"),
            _col("Capacity"),
            _col("Access Modes"),
            _col("StorageClass"),
            _col("VolumeAttributesClass"),
            AGE_COL,
            _col("VolumeMode", priority=1),
        ],
        _pvc_row,
    ),
    ("", "persistentvolumes"): (
        [
            NAME_COL,
            _col("Capacity"),
            _col("Access Modes"),
            _col("Reclaim Policy"),
            _col("Status"),
            _col("Claim"),
            _col("StorageClass"),
            _col("VolumeAttributesClass"),
            _col("Reason"),
            AGE_COL,
            _col("VolumeMode", priority=1),
        ],
        _pv_row,
    ),
    ("apps", "statefulsets"): ([NAME_COL, _col("Ready"), AGE_COL], _sts_row),
    ("apps", "deployments"): (
        [NAME_COL, _col("Ready"), _col("Up-to-date", "string"), _col("Available", "string"), AGE_COL],
        _deploy_row,
    ),
    ("batch", "jobs"): ([NAME_COL, _col("Status"), _col("Completions"), _col("Duration"), AGE_COL], _job_row),
    ("", "namespaces"): ([NAME_COL, _col("Status"), AGE_COL], _ns_row),
    ("", "nodes"): ([NAME_COL, _col("Status"), _col("Roles"), AGE_COL, _col("Version")], _node_row),
    ("storage.k8s.io", "storageclasses"): (
        [
            NAME_COL,
            _col("Provisioner"),
            _col("ReclaimPolicy"),
            _col("VolumeBindingMode"),
            _col("AllowVolumeExpansion"),
            AGE_COL,
        ],
        _sc_row,
    ),
    ("", "events"): (
        [_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")],
        _event_row,
    ),
}


def _crd_columns(rt: ResourceType) -> tuple[list[Column], Callable[[JSON], list[Any]]]:
    cols = rt.printer_columns or []
    if not cols:
        return [NAME_COL, AGE_COL], lambda o: [o["metadata"]["name"], age(o)]
    columns = [NAME_COL] + [
        _col(
            c["name"],
            c.get("type", "string"),
            c.get("description", ""),
            int(c.get("priority", 0)),
            c.get("format", ""),
        )
        for c in cols
    ]

    def row(o: JSON) -> list[Any]:
        cells: list[Any] = [o["metadata"]["name"]]
        for c in cols:
            try:
                vals = find(o, c["jsonPath"])
            except JSONPathError:
                vals = []
            if not vals:
                cells.append(None)
                continue
            v = vals[0]
            if c.get("type") == "date" and isinstance(v, str):
                try:
                    v = human_duration((dt.datetime.now(dt.UTC) - parse_time(v)).total_seconds())
                except ValueError:
                    pass
            elif c.get("type") in ("string",) and isinstance(v, (dict, list)):
                import json

                v = json.dumps(v, separators=(",", ":"))
            cells.append(v)
        return cells

    return columns, row


def columns_for(rt: ResourceType) -> tuple[list[Column], Callable[[JSON], list[Any]]]:
    if rt.crd is not None:
        return _crd_columns(rt)
    printer = PRINTERS.get((rt.group, rt.plural))
    if printer is not None:
        return printer
    # rest/table.go: DefaultTableConvertor
    return [
        NAME_COL,
        _col(
            "Created At",
            "date",
            "CreationTimestamp is a timestamp representing the server time when this object was created.",
        ),
    ], lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp", "")]


def partial_metadata(obj: JSON) -> JSON:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def to_table(
    rt: ResourceType,
    objs: list[JSON],
    list_meta: JSON | None,
    include_object: str = "Metadata",
    with_headers: bool = True,
) -> JSON:
    columns, row = columns_for(rt)
    rows = []
    for o in objs:
        r: JSON = {"cells": row(o)}
        if include_object == "Object":
            r["object"] = o
        elif include_object != "None":
            r["object"] = partial_metadata(o)
        rows.append(r)
    table: JSON = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta or {}, "rows": rows}
    if with_headers:
        table["columnDefinitions"] = columns
    else:
        table["columnDefinitions"] = None
    return table
