"""One pass of a ResyncPolicy: observe (from the watch caches), decide (``policy.decide``), run the
probes it asks for, decide again, write the status (conditional on the resourceVersion planned
from), post the Events, act (create a remediation, delete history beyond the limits).

The order that keeps remediations from repeating: the status records the remediation (its name,
not yet confirmed) before the ClusterResync is created; once the create has succeeded, the status
says so (``confirmed``). A crash between the two leaves a recorded, unconfirmed remediation: the
next pass creates it again (same name: idempotent) if it never appeared, and never once it has.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from . import metrics, notify
from .conditions import EventReason, EventType
from .execs import run_exec
from .kube import ErrorKind, Kube, KubeError, Written
from .models import LABEL_POLICY_UID, PLURAL, POLICY_PLURAL, ResyncPolicySpec, ResyncPolicyStatus
from .observe import Reader, target_pods
from .policy import RESYNC_API, Policy, PolicyObserved, confirmed, decide
from .reconcile import NameConflictError, apply, merge_diff, post_event
from .state import Create, Exec, HookOutcome, Obj, Ref

log = structlog.get_logger("clusterresync")

API_RETRY_SECONDS = 10.0


def policy_ref(namespace: str, name: str) -> Ref:
    return Ref(RESYNC_API, "ResyncPolicy", POLICY_PLURAL, name, namespace)


@dataclass
class PolicyOutcome:
    requeue_after: float | None
    replan_now: bool = False
    pause: float | None = None
    writes: list[Written] = field(default_factory=list)
    finished: bool = False  # a policy runs as long as it exists


def parse_policy(body: Obj) -> Policy:
    m = body.get("metadata") or {}
    return Policy(
        name=str(m["name"]),
        namespace=str(m.get("namespace", "")),
        uid=str(m.get("uid", "")),
        generation=int(m.get("generation") or 1),
        spec=ResyncPolicySpec.model_validate(body.get("spec") or {}),
        status=ResyncPolicyStatus.model_validate(
            {k: v for k, v in (body.get("status") or {}).items() if k in _STATUS_KEYS}
        ),
    )


_STATUS_KEYS = {f.alias or n for n, f in ResyncPolicyStatus.model_fields.items()}


def status_body(status: ResyncPolicyStatus) -> dict[str, Any]:
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


def reconcile_policy(kube: Kube, body: Obj, reader: Reader) -> PolicyOutcome:
    writes: list[Written] = []
    outcome = _reconcile(kube.recording(writes), body, reader)
    outcome.writes = writes
    return outcome


def _reconcile(kube: Kube, body: Obj, reader: Reader) -> PolicyOutcome:
    policy = parse_policy(body)
    ns = policy.namespace
    logger = log.bind(policy=policy.name, namespace=ns, target=policy.spec.target.name)
    rv = str((body.get("metadata") or {}).get("resourceVersion") or "") or None
    try:
        target = reader.get(Ref("apps/v1", "StatefulSet", "statefulsets", policy.spec.target.name, ns))
        pods, _ = target_pods(reader, ns, target)
        resyncs = reader.list_objects(RESYNC_API, PLURAL, ns)
    except KubeError as e:
        logger.warning("cannot observe", error=str(e))
        return PolicyOutcome(None, pause=max(e.retry_after or 0.0, API_RETRY_SECONDS))
    outcomes: dict[str, HookOutcome] = {}
    now = dt.datetime.now(dt.UTC)
    for _ in range(2):
        plan = decide(PolicyObserved(now, policy, target, pods, resyncs, outcomes))
        execs = [a for a in plan.actions if isinstance(a, Exec)]
        if not execs:
            break
        for a in execs:
            # A probe's output may hold secrets: it is never logged.
            began = time.monotonic()
            outcomes[a.hook] = run_exec(kube, pods, a)
            metrics.record_probe_duration(policy.spec.probe.preset, time.monotonic() - began)
        now = dt.datetime.now(dt.UTC)
    # The decisions spec.notify asks to be told of are recorded with the decision itself (the
    # same status write), before any delivery: a restart neither loses nor repeats them.
    plan = replace(
        plan,
        status=notify.policy_queue(
            policy.spec.notify, policy.uid, policy.status, plan.status, plan.events, now
        ),
    )
    written = dict(body.get("status") or {})
    written_status = policy.status

    def write(status: ResyncPolicyStatus) -> bool:
        nonlocal rv, written, written_status
        new = status_body(status)
        if new == written:
            return True
        try:
            out = kube.patch_status(
                policy_ref(ns, policy.name), {"status": merge_diff(written, new)}, resource_version=rv
            )
        except KubeError as e:
            if e.kind == ErrorKind.CONFLICT:
                return False
            raise
        rv = str((out.get("metadata") or {}).get("resourceVersion") or "") or rv
        metrics.record_policy(ns, policy.spec.probe.preset, written_status, status)
        written, written_status = new, status
        return True

    try:
        if not write(plan.status):
            return PolicyOutcome(None, replan_now=True)
    except KubeError as e:
        logger.error("cannot write the status", error=str(e))
        return PolicyOutcome(None, pause=max(e.retry_after or 0.0, API_RETRY_SECONDS))
    for ev in plan.events:
        post_event(kube, body, ev.type, ev.reason, ev.message)
        logger.info("event", reason=ev.reason, message=ev.message)
    status = plan.status
    for action in plan.actions:
        try:
            apply(kube, action, logger)
        except (KubeError, NameConflictError) as e:
            # Reported, and retried after a pause: the recorded remediation is created again
            # while it is not confirmed (see the module's docstring).
            logger.error("action failed", action=type(action).__name__, error=str(e))
            if _own_remediation(action, policy.uid):
                metrics.record_remediation(ns, policy.name, policy.spec.mode, created=False)
            post_event(kube, body, "Warning", "RemediationFailed", f"{type(action).__name__}: {e}")
            return PolicyOutcome(None, pause=API_RETRY_SECONDS)
        if _own_remediation(action, policy.uid):
            assert isinstance(action, Create)
            if not _was_confirmed(status, action.ref.name):
                metrics.record_remediation(ns, policy.name, policy.spec.mode, created=True)
            status = confirmed(status, action.ref.name)
    try:
        if not write(status):
            return PolicyOutcome(None, replan_now=True)
    except KubeError as e:
        logger.warning("cannot confirm the remediation in the status", error=str(e))
    return _notify(kube, body, replace(policy, status=status), write, logger, plan.requeue_after)


def _notify(
    kube: Kube, body: Obj, policy: Policy, write: Any, logger: Any, requeue_after: float | None
) -> PolicyOutcome:
    """Deliver the recorded notifications that are due, after the probes and the remediation
    (never before them, never failing them), record how it went, and come back for a retry."""
    spec = policy.spec.notify
    now = dt.datetime.now(dt.UTC)
    decision = notify.policy_due(spec, list(policy.status.notifications), now)
    if decision.due:
        done = notify.run_policy(kube, policy, decision, now)
        status = policy.status.model_copy(update={"notifications": done.notifications})
        try:
            if not write(status):
                return PolicyOutcome(None, replan_now=True)
        except KubeError as e:
            logger.warning("cannot record the notifications in the status", error=str(e))
            return PolicyOutcome(None, pause=API_RETRY_SECONDS)
        for rec, error in done.failed:
            post_event(
                kube,
                body,
                EventType.WARNING,
                EventReason.NOTIFICATION_FAILED,
                f"the {rec.channel.lower()} notification of {rec.event} ({rec.id}) was not delivered after "
                f"{notify.retry_policy().max_attempts} attempts: {error}",
            )
        for rec in done.sent:
            post_event(
                kube,
                body,
                EventType.NORMAL,
                EventReason.NOTIFICATION_SENT,
                f"{rec.channel} notification of {rec.event} sent",
            )
        decision = notify.policy_due(spec, list(status.notifications), dt.datetime.now(dt.UTC))
    wait = decision.requeue_after
    if wait is not None:
        requeue_after = max(1.0, wait) if requeue_after is None else min(max(1.0, wait), requeue_after)
    return PolicyOutcome(requeue_after)


def _own_remediation(action: object, uid: str) -> bool:
    """A create of a ClusterResync of this policy (a remediation)."""
    return (
        isinstance(action, Create)
        and (action.body.get("metadata") or {}).get("labels", {}).get(LABEL_POLICY_UID) == uid
    )


def _was_confirmed(status: ResyncPolicyStatus, name: str) -> bool:
    r = status.last_remediation
    return r is not None and r.name == name and r.confirmed
