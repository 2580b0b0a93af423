"""One reconciliation: observe the cluster, ask the planner, write the status, act.

The status is written *before* the actions are carried out (the planner relies on it): a crash
between the two leaves the intent recorded, and the next reconciliation repeats the action,
which is idempotent.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from . import metrics, notify, planner
from .conditions import EventReason, EventType, Reason
from .execs import run_exec
from .kube import ErrorKind, Kube, KubeError, Protected, ProtectedObjectError, Written
from .models import (
    GROUP,
    LABEL_RESYNC_UID,
    PLURAL,
    POLICY_KIND,
    POLICY_PLURAL,
    VERSION,
    ClusterResyncSpec,
    ClusterResyncStatus,
)
from .observe import Reader, observe, observe_live
from .state import (
    Create,
    Delete,
    Exec,
    HookOutcome,
    Obj,
    Observed,
    Patch,
    Plan,
    Ref,
    Resync,
)

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


@dataclass
class Outcome:
    plan: Plan
    status: ClusterResyncStatus
    # The status write met a newer version of the object (another writer, or a change by a
    # user): nothing was acted on; observe again and plan again at once.
    replan_now: bool = False
    # Every write the API accepted during the reconciliation (status, actions, Events): the
    # caller waits for its watch caches to reflect them before it plans again.
    writes: list[Written] = field(default_factory=list)
    # The pass met an API error or refusal: wait this long before the next one, whatever
    # changes meanwhile (retrying at once would hammer a failing API server).
    pause: float | None = None

    @property
    def requeue_after(self) -> float | None:
        return self.plan.requeue_after

    @property
    def finished(self) -> bool:
        """Completed or Failed, and nothing left to do: the daemon can end."""
        return self.plan.requeue_after is None and self.status.phase in ("Completed", "Failed")


def status_body(status: ClusterResyncStatus) -> dict[str, Any]:
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


def merge_diff(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: removed keys become null,
    so that a field the planner cleared is cleared on the server too."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    out: dict[str, Any] = {}
    for k, v in new.items():
        if k not in old:
            out[k] = v
        elif old[k] != v:
            out[k] = merge_diff(old[k], v) if isinstance(v, dict) and isinstance(old[k], dict) else v
    for k in old:
        if k not in new:
            out[k] = None
    return out


def protected_of(obs: Observed, status: ClusterResyncStatus) -> Protected:
    """The primary's objects, as recorded at preflight and as observed now (a pod the primary
    selector or podName points at, its claims and their volumes): the adapter refuses any write to them."""
    spec = obs.resync.spec
    pods: set[str] = set()
    claims: set[str] = set()
    pvs: set[str] = set()
    if status.primary is not None:
        pods.add(status.primary.pod_name)
        claims.update(status.primary.claims.values())
        pvs.update(v for v in status.primary.volumes.values() if v)
    for name, pod in obs.pods.items():
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if name == spec.primary.pod_name or (
            spec.primary.selector is not None and planner.labels_match(spec.primary.selector, labels)
        ):
            pods.add(name)
    for name in list(pods):
        for v in ((obs.pods.get(name) or {}).get("spec") or {}).get("volumes") or []:
            if v.get("persistentVolumeClaim"):
                claims.add(str(v["persistentVolumeClaim"].get("claimName")))
    for c in claims:
        vol = ((obs.claims.get(c) or {}).get("spec") or {}).get("volumeName")
        if vol:
            pvs.add(str(vol))
    return Protected(obs.resync.namespace, frozenset(pods), frozenset(claims), frozenset(pvs))


def decisions(before: ClusterResyncStatus, after: ClusterResyncStatus) -> list[str] | None:
    """The irreversible decisions of a plan, which are made again from a live read: the replicas
    it takes out of service (Swapping), fails, skips or rolls back, newly; all of them if it fails
    the resync. None if it decides nothing of the kind."""
    was = {r.name: r.phase for r in before.replicas}
    names = [
        r.name
        for r in after.replicas
        if r.phase in ("Swapping", "Failed", "Skipped", "RollingBack") and was.get(r.name) != r.phase
    ]
    if after.phase == "Failed" and before.phase != "Failed":
        return [r.name for r in after.replicas]
    return names or None


def reconcile(kube: Kube, body: Obj, reader: Reader | None = None) -> Outcome:
    """Observe (through ``reader``: the watch caches; by default the live API), plan, write the
    status (with the resourceVersion it was planned from), act. A plan that takes a replica out
    of service, or fails a replica or the resync, is made again from a live read of what decides
    it before anything is written (``decisions``, ``observe_live``)."""
    writes: list[Written] = []
    outcome = _reconcile(kube.recording(writes), body, reader)
    outcome.writes = writes
    return outcome


def _reconcile(kube: Kube, body: Obj, reader: Reader | None) -> Outcome:
    resync = parse_resync(body)
    rv = str((body.get("metadata") or {}).get("resourceVersion") or "") or None
    logger = log.bind(resync=resync.name, namespace=resync.namespace, target=resync.spec.target.name)
    try:
        obs = observe(reader if reader is not None else kube, resync)
    except KubeError as e:
        return _api_failure(kube, body, resync, rv, e, logger)
    ref = resync_ref(resync.namespace, resync.name)
    written_status = resync.status
    # What the server holds, as it holds it: a field the parsed status has only by default (the
    # phase Pending of a new resync) is written too.
    written_body: dict[str, Any] = dict(body.get("status") or {})

    def write(status: ClusterResyncStatus) -> bool:
        """The status, as a merge patch conditional on the resourceVersion planned from. False
        on a conflict: something else wrote meanwhile; nothing may be acted on."""
        nonlocal rv, written_status, written_body
        new_body = status_body(status)
        if new_body == written_body:
            written_status = status
            return True
        try:
            out = kube.patch_status(
                ref,
                {"status": merge_diff(written_body, new_body)},
                resource_version=rv,
            )
        except KubeError as e:
            if e.kind == ErrorKind.CONFLICT:
                logger.info("status changed meanwhile: planning again from a fresh observation")
                return False
            raise
        rv = str((out.get("metadata") or {}).get("resourceVersion") or "") or rv
        _record_metrics(reader, body, resync, written_status, status, obs.snapshots)
        written_status, written_body = status, new_body
        return True

    outcomes: dict[str, HookOutcome] = {}
    try:
        for _ in range(4):
            result = planner.plan(replace(obs, hook_outcomes=outcomes))
            execs = [a for a in result.actions if isinstance(a, Exec)]
            if not execs:
                break
            # A hook runs only under a status this writer could record: two writers, or a write
            # that lost a race, never run it twice.
            if not write(result.status):
                return Outcome(result, written_status, replan_now=True)
            for a in execs:
                # The hook's output may hold secrets: it is never logged.
                logger.info("running hook", hook=a.hook, pod=a.pod)
                began = time.monotonic()
                outcomes[a.hook] = run_exec(kube, obs.pods, a)
                if a.hook not in metrics.HOOKS and resync.spec.probe is not None:
                    metrics.record_probe_duration(resync.spec.probe.preset, time.monotonic() - began)
                logger.info(
                    "hook finished", hook=a.hook, ok=outcomes[a.hook].ok, exit_code=outcomes[a.hook].exit_code
                )
        decided = decisions(resync.status, result.status) if reader is not None else None
        if decided is not None:
            # Before replicas go out of service, or a replica or the resync fails: the caches
            # may lag, so what decides it is read live, and the plan made again from that.
            obs = observe_live(kube, obs, decided)
            result = planner.plan(replace(obs, hook_outcomes=outcomes))
            again = decisions(resync.status, result.status)
            if again != decided:
                logger.info("a live read changed the decision", planned=decided, decided=again)
        if not write(result.status):
            return Outcome(result, written_status, replan_now=True)
    except KubeError as e:
        return _api_failure(kube, body, replace(resync, status=written_status), rv, e, logger)
    # Logged once recorded: a pass whose status write was refused (fenced, a conflict) says nothing.
    if result.status.phase != resync.status.phase:
        logger.info("phase", phase=result.status.phase, previous=resync.status.phase)
    before = {r.name: r.phase for r in resync.status.replicas}
    for r in result.status.replicas:
        if before.get(r.name) != r.phase:
            logger.info(
                "replica phase",
                replica=r.name,
                phase=r.phase,
                previous=before.get(r.name),
                message=r.message,
            )
    for ev in result.events:
        post_event(kube, body, ev.type, ev.reason, ev.message)
        logger.info("event", reason=ev.reason, message=ev.message)
    guarded = kube.guarded(protected_of(obs, result.status))
    try:
        for action in result.actions:
            apply(guarded, action, logger)
    except NameConflictError as e:
        logger.error("name conflict", error=str(e))
        return _fail_now(
            kube, body, replace(resync, status=result.status), rv, Reason.NAME_CONFLICT, str(e), logger
        )
    except ProtectedObjectError as e:
        logger.error("refused a write to the primary", error=str(e))
        return _fail_now(
            kube,
            body,
            replace(resync, status=result.status),
            rv,
            Reason.PRIMARY_PROTECTED,
            f"{e}; the resync stopped: the primary is never written to (a bug: please report it)",
            logger,
        )
    except KubeError as e:
        if e.kind == ErrorKind.CONFLICT:
            logger.info("an object changed meanwhile: planning again from a fresh observation", object=e.what)
            return Outcome(result, result.status, replan_now=True)
        return _api_failure(kube, body, replace(resync, status=result.status), rv, e, logger)
    notified = _notify(kube, body, resync, result, write, logger)
    if notified is None:
        return Outcome(result, written_status, replan_now=True)
    result = notified
    pending = notify.decide(
        resync.spec.notify, result.status.phase, list(result.status.notifications), dt.datetime.now(dt.UTC)
    ).pending
    if result.delete_self_after is not None and result.delete_self_after <= 0 and not pending:
        # spec.ttlSecondsAfterFinished is up: this very object, and no other of the same name.
        try:
            kube.delete(resync_ref(resync.namespace, resync.name), resync.uid)
        except KubeError as e:
            logger.warning("could not delete the finished resync (ttlSecondsAfterFinished)", error=str(e))
            return Outcome(replace(result, requeue_after=TRANSIENT_RETRY_SECONDS), result.status)
        logger.info("deleted: ttlSecondsAfterFinished is up")
    return Outcome(result, result.status)


def _record_metrics(
    reader: Reader | None,
    body: Obj,
    resync: Resync,
    before: ClusterResyncStatus,
    after: ClusterResyncStatus,
    snapshots: Mapping[str, Obj] | None = None,
) -> None:
    """The metrics of a status transition this pass wrote (``metrics.record_resync``). A remediation
    is counted under its ResyncPolicy (its controller), whose mode is read from the caches."""
    policy, mode = "", ""
    if after.phase in planner.FINISHED and before.phase not in planner.FINISHED:
        for o in (body.get("metadata") or {}).get("ownerReferences") or []:
            if o.get("kind") == POLICY_KIND and o.get("controller"):
                policy = str(o.get("name") or "")
        if policy and reader is not None:
            try:
                found = reader.get(Ref(RESYNC_API, POLICY_KIND, POLICY_PLURAL, policy, resync.namespace))
                mode = str(((found or {}).get("spec") or {}).get("mode") or "")
            except KubeError:
                mode = ""
    metrics.record_resync(
        resync.namespace,
        before,
        after,
        dt.datetime.now(dt.UTC),
        policy=policy,
        mode=mode,
        snapshots=snapshots,
    )
    if resync.spec.probe is not None:
        metrics.record_resync_probes(resync.spec.probe.preset, before, after)


def _notify(kube: Kube, body: Obj, resync: Resync, result: Plan, write: Any, logger: Any) -> Plan | None:
    """Deliver the notifications due (``notify.decide``) once the resync has ended, record them in
    the status, and come back for a retry; None if that status write met a newer version. A
    notification never fails the pass: its errors go to status.notifications and an Event."""
    if resync.deleting or resync.spec.notify is None:
        return result
    now = dt.datetime.now(dt.UTC)
    decision = notify.decide(resync.spec.notify, result.status.phase, list(result.status.notifications), now)
    if decision.due:
        done = notify.run(kube, replace(resync, status=result.status), decision, now)
        status = result.status.model_copy(update={"notifications": done.notifications})
        try:
            if not write(status):
                return None
        except KubeError as e:
            logger.warning("cannot record the notifications in the status", error=str(e))
            return replace(result, requeue_after=TRANSIENT_RETRY_SECONDS)
        for channel, error in done.failed:
            post_event(
                kube,
                body,
                EventType.WARNING,
                EventReason.NOTIFICATION_FAILED,
                f"the {channel.lower()} notification of {status.phase} was not delivered after "
                f"{notify.retry_policy().max_attempts} attempts: {error}",
            )
        for channel in done.sent:
            post_event(
                kube,
                body,
                EventType.NORMAL,
                EventReason.NOTIFICATION_SENT,
                f"{channel} notification of {status.phase} sent",
            )
        result = replace(result, status=status)
        decision = notify.decide(
            resync.spec.notify, status.phase, list(status.notifications), dt.datetime.now(dt.UTC)
        )
    if decision.requeue_after is not None:
        wait = decision.requeue_after
        return replace(
            result, requeue_after=wait if result.requeue_after is None else min(wait, result.requeue_after)
        )
    return result


class NameConflictError(Exception):
    """A create met an object of the same name that is not this resync's: it is never adopted."""


def apply(kube: Kube, action: object, logger: Any) -> None:
    if isinstance(action, Create):
        created = kube.create(action.ref, action.body)
        if created is None:
            # Idempotent only if what exists is ours (a crash between create and status write):
            # identity is the uid label, never the name.
            want = ((action.body.get("metadata") or {}).get("labels") or {}).get(LABEL_RESYNC_UID)
            # A list by name, not a get: the operator lists what it creates anyway (least privilege).
            found = kube.list_objects(
                action.ref.api_version,
                action.ref.plural,
                action.ref.namespace,
                field_selector=f"metadata.name={action.ref.name}",
            )
            existing = found[0] if found else None
            has = (((existing or {}).get("metadata") or {}).get("labels") or {}).get(LABEL_RESYNC_UID)
            if want and existing is not None and has != want:
                raise NameConflictError(
                    f"{action.ref} exists and is not this resync's (its {LABEL_RESYNC_UID} label is "
                    f"{has or 'absent'}): it was not adopted, nor changed"
                )
        logger.info("created" if created is not None else "already exists", object=str(action.ref))
    elif isinstance(action, Patch):
        kube.patch(action.ref, action.patch, action.content_type)
        logger.info("patched", object=str(action.ref))
    elif isinstance(action, Delete):
        gone = kube.delete(action.ref, action.uid, action.propagation)
        logger.info("deleted" if gone else "nothing to delete", object=str(action.ref))


# Refusals of the API server, by kind, and the reason the resync reports them with.
_REASONS: dict[ErrorKind, Reason] = {
    ErrorKind.FORBIDDEN: Reason.FORBIDDEN,
    ErrorKind.QUOTA: Reason.QUOTA_EXCEEDED,
    ErrorKind.ADMISSION: Reason.ADMISSION_DENIED,
    ErrorKind.NAMESPACE_TERMINATING: Reason.NAMESPACE_TERMINATING,
    ErrorKind.MISSING_API: Reason.MISSING_API,
}
TRANSIENT_RETRY_SECONDS = 5.0


def _api_failure(kube: Kube, body: Obj, resync: Resync, rv: str | None, e: KubeError, logger: Any) -> Outcome:
    """An error the adapter did not absorb. Transient ones (the adapter already retried) and
    conflicts keep the resync's place and are retried; a refusal fails the resync with a named
    reason and the server's message -- unless a swap is in flight, which is never abandoned: then
    the refusal is shown in Progressing and retried until it is lifted."""
    if e.kind == ErrorKind.CONFLICT:
        return Outcome(Plan(resync.status), resync.status, replan_now=True)
    b = planner.Builder(_empty_observation(resync))
    in_flight = any(r.phase in planner.IN_FLIGHT for r in resync.status.replicas)
    if e.kind == ErrorKind.FORBIDDEN:
        message = f"the operator is not allowed to {e.verb} {e.what} (RBAC): {e.message}"
    else:
        message = f"could not {e.verb} {e.what}: {e.message}"
    if e.kind == ErrorKind.TRANSIENT or (in_flight and resync.status.phase not in planner.FINISHED):
        delay = max(e.retry_after or 0.0, TRANSIENT_RETRY_SECONDS)
        reason = Reason.RETRYING if e.kind == ErrorKind.TRANSIENT else _REASONS.get(e.kind, Reason.API_ERROR)
        what = (
            "a swap is in flight: retrying until it is allowed"
            if e.kind != ErrorKind.TRANSIENT
            else "retrying"
        )
        logger.warning("api error", kind=str(e.kind), error=message, retry_in=delay)
        if resync.status.phase not in planner.FINISHED:
            b.progressing(reason, f"{message} ({what} in {delay:.0f}s)")
        b.again(delay)
    else:
        reason = _REASONS.get(e.kind, Reason.API_ERROR)
        logger.error("api refusal", kind=str(e.kind), error=message)
        b.fail(reason, message)
        b.again(TRANSIENT_RETRY_SECONDS)  # keep cleaning up what was created before the refusal
    return _write_fallback(kube, body, resync, rv, b, logger)


def _fail_now(
    kube: Kube, body: Obj, resync: Resync, rv: str | None, reason: Reason, message: str, logger: Any
) -> Outcome:
    b = planner.Builder(_empty_observation(resync))
    b.fail(reason, message)
    b.again(TRANSIENT_RETRY_SECONDS)
    return _write_fallback(kube, body, resync, rv, b, logger)


def _write_fallback(
    kube: Kube, body: Obj, resync: Resync, rv: str | None, b: planner.Builder, logger: Any
) -> Outcome:
    plan = b.plan()
    if plan.status == resync.status:
        return Outcome(plan, plan.status, pause=plan.requeue_after)
    try:
        kube.patch_status(
            resync_ref(resync.namespace, resync.name),
            {"status": merge_diff(status_body(resync.status), status_body(plan.status))},
            resource_version=rv,
        )
    except KubeError as e2:
        if e2.kind == ErrorKind.CONFLICT:
            return Outcome(plan, resync.status, replan_now=True)
        logger.error("cannot report the error in the status", error=str(e2))
        return Outcome(plan, resync.status, pause=plan.requeue_after)
    _record_metrics(None, body, resync, resync.status, plan.status)
    for ev in plan.events:
        post_event(kube, body, ev.type, ev.reason, ev.message)
    return Outcome(plan, plan.status, pause=plan.requeue_after)


def _empty_observation(resync: Resync) -> Observed:
    return Observed(
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


def post_event(kube: Kube, body: Obj, type_: str, reason: str, message: str) -> None:
    """An Event about ``body`` (a ClusterResync or a ResyncPolicy)."""
    m = body.get("metadata") or {}
    now = dt.datetime.now(dt.UTC)
    ev = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{m.get('name')}.", "namespace": m.get("namespace")},
        "involvedObject": {
            "apiVersion": RESYNC_API,
            "kind": str(body.get("kind") or "ClusterResync"),
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
