"""What a resync observes: the target, its pods, the namespace's claims, the volumes, this resync's
snapshots and Jobs, the classes and nodes; through a ``Reader``, the live API (``Kube``) or the
watch caches (``cache.CachedReader``). From the caches, an object that another object or the
status names but a cache lacks is read live (``observe``); what decides an irreversible step is
read live altogether (``observe_live``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import replace
from typing import Protocol

import structlog

from .cache import PROVISIONING_FAILED, SNAPSHOT_API, CachedReader
from .kube import ErrorKind, KubeError
from .models import GROUP, LABEL_RESYNC_UID, PLURAL, VERSION
from .state import Obj, Observed, Ref, Resync, pv_ref

log = structlog.get_logger("clusterresync")

RESYNC_API = f"{GROUP}/{VERSION}"


class Reader(Protocol):
    """Where observations come from: the live API (``Kube``) or the watch caches
    (``cache.CachedReader``), with the same two methods."""

    def get(self, ref: Ref) -> Obj | None: ...

    def list_objects(
        self,
        api_version: str,
        plural: str,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> list[Obj]: ...


def target_pods(reader: Reader, ns: str, target: Obj | None) -> tuple[dict[str, Obj], dict[str, list[str]]]:
    """The target's pods by name, and for every claim the pods of the namespace that use it."""
    pods: dict[str, Obj] = {}
    claim_users: dict[str, list[str]] = {}
    tuid = (target.get("metadata") or {}).get("uid") if target is not None else None
    # Every pod of the namespace: the target's are those it controls; the others tell which
    # claims are shared (a claim used by another pod is never swapped).
    for p in reader.list_objects("v1", "pods", ns):
        pname = p["metadata"]["name"]
        for v in (p.get("spec") or {}).get("volumes") or []:
            if v.get("persistentVolumeClaim"):
                claim_users.setdefault(str(v["persistentVolumeClaim"].get("claimName")), []).append(pname)
        owners = (p.get("metadata") or {}).get("ownerReferences") or []
        if tuid and any(o.get("uid") == tuid and o.get("controller") for o in owners):
            pods[pname] = p
    return pods, claim_users


def target_ref(resync: Resync) -> Ref:
    return Ref("apps/v1", "StatefulSet", "statefulsets", resync.spec.target.name, resync.namespace)


def referenced_volumes(
    resync: Resync, claims: dict[str, Obj], replicas: Iterable[str] | None = None
) -> set[str]:
    """The PersistentVolumes a resync depends on by name: the primary's, the old and restored
    ones its status records (of ``replicas`` only, if given), and those its own claims and the
    target's claims it records are bound to."""
    status = resync.status
    names: set[str] = set(v for v in status.primary.volumes.values() if v) if status.primary else set()
    claim_names: set[str] = set(status.primary.claims.values()) if status.primary else set()
    for r in status.replicas:
        if replicas is None or r.name in replicas:
            for v in r.volumes:
                names.update(x for x in (v.old_pv, v.new_pv) if x)
                claim_names.update(x for x in (v.claim, v.staging_claim) if x)
    for name, c in claims.items():
        ours = ((c.get("metadata") or {}).get("labels") or {}).get(LABEL_RESYNC_UID) == resync.uid
        vol = (c.get("spec") or {}).get("volumeName")
        if vol and (name in claim_names or (ours and replicas is None)):
            names.add(str(vol))
    return names


def observe(reader: Reader, resync: Resync, now: dt.datetime | None = None) -> Observed:
    """What the planner sees. From watch caches (``reader`` a ``CachedReader``), an object that a
    cache lacks but another object or the status names is read live: caches of different
    resources are not in step (a claim is seen bound before its new volume is seen), and absence
    is never concluded from a lag."""
    ns = resync.namespace
    live = reader.live if isinstance(reader, CachedReader) else None
    target = reader.get(target_ref(resync))
    if target is None and live is not None:
        target = live.get(target_ref(resync))
    pods, claim_users = target_pods(reader, ns, target)
    claims = {c["metadata"]["name"]: c for c in reader.list_objects("v1", "persistentvolumeclaims", ns)}
    pvs = {p["metadata"]["name"]: p for p in reader.list_objects("v1", "persistentvolumes")}
    if live is not None:
        for name in sorted(referenced_volumes(resync, claims) - pvs.keys()):
            pv = live.get(pv_ref(name))
            if pv is not None:
                pvs[name] = pv
    label = f"{LABEL_RESYNC_UID}={resync.uid}"
    # The snapshot API is optional (method: Clone does without it): its absence is observed,
    # and refused by preflight only where a snapshot is needed.
    snapshot_api = True
    try:
        snapshots = {
            s["metadata"]["name"]: s
            for s in reader.list_objects(
                "snapshot.storage.k8s.io/v1", "volumesnapshots", ns, label_selector=label
            )
        }
        snapshot_classes = reader.list_objects("snapshot.storage.k8s.io/v1", "volumesnapshotclasses")
    except KubeError as e:
        if e.kind != ErrorKind.MISSING_API:
            raise
        snapshot_api, snapshots, snapshot_classes = False, {}, []
    jobs = {
        j["metadata"]["name"]: j for j in reader.list_objects("batch/v1", "jobs", ns, label_selector=label)
    }
    staging = {
        c
        for c, o in claims.items()
        if ((o.get("metadata") or {}).get("labels") or {}).get(LABEL_RESYNC_UID) == resync.uid
    }
    warnings: dict[str, str] = {}
    if staging:
        events = reader.list_objects(
            "v1",
            "events",
            ns,
            field_selector=PROVISIONING_FAILED,
        )
        events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
        for ev in events:
            name = str((ev.get("involvedObject") or {}).get("name", ""))
            if name in staging and (ev.get("involvedObject") or {}).get("uid") == claims[name][
                "metadata"
            ].get("uid"):
                warnings[name] = str(ev.get("message", ""))
    return Observed(
        now=now or dt.datetime.now(dt.UTC),
        resync=resync,
        target=target,
        pods=pods,
        claims=claims,
        pvs=pvs,
        snapshots=snapshots,
        snapshot_classes=snapshot_classes,
        snapshot_api=snapshot_api,
        storage_classes={
            s["metadata"]["name"]: s for s in reader.list_objects("storage.k8s.io/v1", "storageclasses")
        },
        csi_drivers={d["metadata"]["name"] for d in reader.list_objects("storage.k8s.io/v1", "csidrivers")},
        nodes={n["metadata"]["name"]: n for n in reader.list_objects("v1", "nodes")},
        jobs=jobs,
        other_resyncs=[
            r
            for r in reader.list_objects(RESYNC_API, PLURAL, ns)
            if (r.get("metadata") or {}).get("uid") != resync.uid
        ],
        claim_warnings=warnings,
        claim_users=claim_users,
        namespace_terminating=_namespace_terminating(reader, ns) if resync.deleting else False,
    )


def _namespace_terminating(kube: Reader, ns: str) -> bool:
    try:
        obj = kube.get(Ref("v1", "Namespace", "namespaces", ns))
    except KubeError as e:
        log.warning("cannot tell whether the namespace is being deleted", namespace=ns, error=str(e))
        return False
    return obj is None or bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def observe_live(kube: Reader, obs: Observed, names: list[str]) -> Observed:
    """``obs`` with what decides the fate of replicas ``names`` read live: the target, the
    namespace's pods (the primary among them, and who uses each claim) and claims, this resync's
    snapshots and Jobs, and the volumes of the primary and of those replicas (current, old and
    restored). Namespaced lists and GETs: never a cluster-wide list."""
    resync = obs.resync
    ns = resync.namespace
    target = kube.get(target_ref(resync))
    pods, claim_users = target_pods(kube, ns, target)
    claims = {c["metadata"]["name"]: c for c in kube.list_objects("v1", "persistentvolumeclaims", ns)}
    label = f"{LABEL_RESYNC_UID}={resync.uid}"
    jobs = {j["metadata"]["name"]: j for j in kube.list_objects("batch/v1", "jobs", ns, label_selector=label)}
    snapshots = obs.snapshots
    if obs.snapshot_api:
        snapshots = {
            x["metadata"]["name"]: x
            for x in kube.list_objects(SNAPSHOT_API, "volumesnapshots", ns, label_selector=label)
        }
    pvs = dict(obs.pvs)
    # Those of the replicas decided on, and any other the live claims name that the cache lacks.
    wanted = referenced_volumes(resync, claims, names) | (referenced_volumes(resync, claims) - pvs.keys())
    for name in sorted(wanted):
        pv = kube.get(pv_ref(name))
        if pv is None:
            pvs.pop(name, None)
        else:
            pvs[name] = pv
    return replace(
        obs,
        now=dt.datetime.now(dt.UTC),
        target=target,
        pods=pods,
        claim_users=claim_users,
        claims=claims,
        pvs=pvs,
        jobs=jobs,
        snapshots=snapshots,
    )
