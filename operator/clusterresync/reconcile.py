"""One reconciliation: observe the cluster, ask the planner, write the status, act.

The status is written *before* the actions are carried out (the planner relies on it): a crash
between the two leaves the intent recorded, and the next reconciliation repeats the action,
which is idempotent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

import structlog

from . import planner
from .conditions import EventType, Reason
from .kube import Kube, KubeError
from .models import GROUP, LABEL_RESYNC, PLURAL, VERSION, ClusterResyncSpec, ClusterResyncStatus
from .state import Create, Delete, Exec, HookOutcome, Obj, Observed, Patch, Plan, Ref, Resync

log = structlog.get_logger("clusterresync")

RESYNC_API = f"{GROUP}/{VERSION}"


def resync_ref(namespace: str, name: str) -> Ref:
    return Ref(RESYNC_API, "ClusterResync", PLURAL, name, namespace)


def parse_resync(body: Obj) -> Resync:
    m = body.get("metadata") or {}
    created = (
        planner.parse_ts(m["creationTimestamp"]) if m.get("creationTimestamp") else dt.datetime.now(dt.UTC)
    )
    status_raw = {
        k: v
        for k, v in (body.get("status") or {}).items()
        if k in ClusterResyncStatus.model_fields or k in _status_aliases()
    }
    return Resync(
        name=str(m["name"]),
        namespace=str(m.get("namespace", "")),
        uid=str(m.get("uid", "")),
        generation=int(m.get("generation") or 1),
        created=created,
        deleting=bool(m.get("deletionTimestamp")),
        spec=ClusterResyncSpec.model_validate(body.get("spec") or {}),
        status=ClusterResyncStatus.model_validate(status_raw),
    )


def _status_aliases() -> set[str]:
    return {f.alias or n for n, f in ClusterResyncStatus.model_fields.items()}


def observe(kube: Kube, resync: Resync, now: dt.datetime | None = None) -> Observed:
    ns = resync.namespace
    target = kube.get(Ref("apps/v1", "StatefulSet", "statefulsets", resync.spec.target.name, ns))
    pods: dict[str, Obj] = {}
    if target is not None:
        tuid = (target.get("metadata") or {}).get("uid")
        sel = ((target.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(sel.items()))
        for p in kube.list_objects("v1", "pods", ns, label_selector=selector):
            owners = (p.get("metadata") or {}).get("ownerReferences") or []
            if any(o.get("uid") == tuid and o.get("controller") for o in owners):
                pods[p["metadata"]["name"]] = p
    claims = {c["metadata"]["name"]: c for c in kube.list_objects("v1", "persistentvolumeclaims", ns)}
    pvs = {p["metadata"]["name"]: p for p in kube.list_objects("v1", "persistentvolumes")}
    label = f"{LABEL_RESYNC}={planner.label_value(resync.name)}"
    snapshots = {
        s["metadata"]["name"]: s
        for s in kube.list_objects("snapshot.storage.k8s.io/v1", "volumesnapshots", ns, label_selector=label)
    }
    jobs = {j["metadata"]["name"]: j for j in kube.list_objects("batch/v1", "jobs", ns, label_selector=label)}
    staging = {
        c
        for c, o in claims.items()
        if ((o.get("metadata") or {}).get("labels") or {}).get(LABEL_RESYNC)
        == planner.label_value(resync.name)
    }
    warnings: dict[str, str] = {}
    if staging:
        events = kube.list_objects(
            "v1",
            "events",
            ns,
            field_selector="involvedObject.kind=PersistentVolumeClaim,reason=ProvisioningFailed",
        )
        events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
        for e in events:
            name = str((e.get("involvedObject") or {}).get("name", ""))
            if name in staging and (e.get("involvedObject") or {}).get("uid") == claims[name]["metadata"].get(
                "uid"
            ):
                warnings[name] = str(e.get("message", ""))
    return Observed(
        now=now or dt.datetime.now(dt.UTC),
        resync=resync,
        target=target,
        pods=pods,
        claims=claims,
        pvs=pvs,
        snapshots=snapshots,
        snapshot_classes=kube.list_objects("snapshot.storage.k8s.io/v1", "volumesnapshotclasses"),
        storage_classes={
            s["metadata"]["name"]: s for s in kube.list_objects("storage.k8s.io/v1", "storageclasses")
        },
        csi_drivers={d["metadata"]["name"] for d in kube.list_objects("storage.k8s.io/v1", "csidrivers")},
        nodes={n["metadata"]["name"]: n for n in kube.list_objects("v1", "nodes")},
        jobs=jobs,
        other_resyncs=kube.list_objects(RESYNC_API, PLURAL, ns),
        claim_warnings=warnings,
    )


@dataclass
class Outcome:
    plan: Plan
    status: ClusterResyncStatus


def status_body(status: ClusterResyncStatus) -> dict[str, Any]:
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


def reconcile(kube: Kube, body: Obj) -> Outcome:
    """Observe, plan, write status, act. Exec hooks are run and fed back in the same call."""
    resync = parse_resync(body)
    logger = log.bind(resync=resync.name, namespace=resync.namespace, target=resync.spec.target.name)
    try:
        obs = observe(kube, resync)
    except KubeError as e:
        return _forbidden_or_raise(kube, resync, e, logger)
    outcomes: dict[str, HookOutcome] = {}
    for _ in range(4):
        result = planner.plan(replace(obs, hook_outcomes=outcomes))
        execs = [a for a in result.actions if isinstance(a, Exec)]
        if not execs:
            break
        for a in execs:
            logger.info("running hook", hook=a.hook, pod=a.pod)
            outcomes[a.hook] = kube.exec(a.namespace, a.pod, a.container, list(a.command), a.timeout_seconds)
    ref = resync_ref(resync.namespace, resync.name)
    if result.status.phase != resync.status.phase:
        logger.info("phase", phase=result.status.phase, previous=resync.status.phase)
    before = {r.name: r.phase for r in resync.status.replicas}
    for r in result.status.replicas:
        if before.get(r.name) != r.phase:
            logger.info(
                "replica phase", replica=r.name, phase=r.phase, previous=before.get(r.name), message=r.message
            )
    if result.status != resync.status:
        kube.patch_status(ref, {"status": status_body(result.status)})
    for ev in result.events:
        post_event(kube, body, ev.type, ev.reason, ev.message)
        logger.info("event", reason=ev.reason, message=ev.message)
    try:
        for action in result.actions:
            apply(kube, action, logger)
    except KubeError as e:
        return _forbidden_or_raise(kube, replace(resync, status=result.status), e, logger)
    return Outcome(result, result.status)


def apply(kube: Kube, action: object, logger: Any) -> None:
    if isinstance(action, Create):
        created = kube.create(action.ref, action.body)
        logger.info("created" if created is not None else "already exists", object=str(action.ref))
    elif isinstance(action, Patch):
        kube.patch(action.ref, action.patch, action.content_type)
        logger.info("patched", object=str(action.ref))
    elif isinstance(action, Delete):
        gone = kube.delete(action.ref, action.uid, action.propagation)
        logger.info("deleted" if gone else "nothing to delete", object=str(action.ref))


def _forbidden_or_raise(kube: Kube, resync: Resync, e: KubeError, logger: Any) -> Outcome:
    """A 403 is a missing RBAC rule: say so in the status (Failed, reason Forbidden) unless a swap is in flight."""
    if e.code != 403:
        raise e
    status = resync.status
    in_flight = any(r.phase in ("Swapping", "Verifying", "Finishing", "RollingBack") for r in status.replicas)
    message = f"the operator is not allowed to {e.verb.lower()} {e.what}: {e.message}"
    logger.error("forbidden", error=message)
    obs_less = Observed(
        now=dt.datetime.now(dt.UTC),
        resync=resync,
        target=None,
        pods={},
        claims={},
        pvs={},
        snapshots={},
        snapshot_classes=[],
        storage_classes={},
        csi_drivers=set(),
        nodes={},
        jobs={},
        other_resyncs=[],
    )
    b = planner.Builder(obs_less)
    if in_flight:
        b.progressing(Reason.FORBIDDEN, message + " (a swap is in flight: retrying; grant the permission)")
        b.again(10.0)
    else:
        b.fail(Reason.FORBIDDEN, message)
        b.again(10.0)  # keep trying to clean up what was created before the refusal
    plan = b.plan()
    try:
        kube.patch_status(resync_ref(resync.namespace, resync.name), {"status": status_body(plan.status)})
        post_event(
            kube,
            {"metadata": {"name": resync.name, "namespace": resync.namespace, "uid": resync.uid}},
            str(EventType.WARNING),
            str(Reason.FORBIDDEN),
            message,
        )
    except KubeError as e2:
        logger.error("cannot report the failure", error=str(e2))
    return Outcome(plan, plan.status)


def post_event(kube: Kube, body: Obj, type_: str, reason: str, message: str) -> None:
    m = body.get("metadata") or {}
    now = dt.datetime.now(dt.UTC)
    ev = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{m.get('name')}.", "namespace": m.get("namespace")},
        "involvedObject": {
            "apiVersion": RESYNC_API,
            "kind": "ClusterResync",
            "name": m.get("name"),
            "namespace": m.get("namespace"),
            "uid": m.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "clusterresync-operator"},
        "reportingComponent": "clusterresync.io/operator",
        "reportingInstance": "clusterresync-operator",
        "firstTimestamp": planner.ts(now),
        "lastTimestamp": planner.ts(now),
        "count": 1,
    }
    try:
        kube.create(Ref("v1", "Event", "events", "", str(m.get("namespace", ""))), ev)
    except KubeError as e:
        log.warning("could not post an event", reason=reason, error=str(e))
