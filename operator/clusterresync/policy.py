"""ResyncPolicy decisions: observed state in, next status and actions out. Pure: no I/O.

A policy probes the target's pods (every ``intervalSeconds``, and a replica that recovered from a
restart or a recreation once it has been Ready for ``recoveryGraceSeconds``), records each pod's
verdict, and when a replica has drifted decides whether to remediate: a ClusterResync for the
drifted replicas, ready to run (``Auto``) or waiting for approval (``Manual``: ``suspend: true``).

Drift: a replica ``Diverged``, or ``Lagging`` beyond a threshold the policy sets
(``maxLagBytes``/``maxLagSeconds``; the presets judge a lag within every set threshold ``InSync``),
or ``Lagging`` with its replication link down. A lagging replica that streams is not drift: it
catches up by itself. ``Unknown`` is reported, never remediated.

Storm guards, in this order, each with a named reason in the ``RemediationSuppressed`` condition
and an Event when the decision changes: ``ModeOff``; ``ResyncInProgress`` (another ClusterResync
of the target runs or waits, whoever created it); ``PrimaryUnhealthy`` (not Ready, or not stable
for ``resyncTemplate.primaryStableSeconds``); ``CoolingDown``; ``DailyLimitReached``
(``maxPerDay`` in any 24 hours); ``DivergedNeedsForce`` (a Diverged replica's writes are only
discarded with ``resyncTemplate.force``). Identity is the uid label: only ClusterResyncs labelled
with the policy's uid count as its own (history limits).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .conditions import EventType, PolicyCondition, PolicyEventReason, PolicyReason
from .models import (
    GROUP,
    LABEL_POLICY,
    LABEL_POLICY_UID,
    MAX_MESSAGE,
    POLICY_KIND,
    VERSION,
    Condition,
    PodProbe,
    PodSeen,
    ProbeSpec,
    Remediation,
    ResyncPolicySpec,
    ResyncPolicyStatus,
)
from .planner import labels_match, parse_ts, pod_ready, ts
from .planner.naming import label_value
from .planner.objects import cond, last_restart, meta, ordinal, restart_count, uid
from .planner.probing import collect, thresholds
from .planner.status import bounded
from .probes import PRESETS, Judgement, Reading
from .state import Action, Create, Delete, Event, HookOutcome, Obj, Ref

RESYNC_API = f"{GROUP}/{VERSION}"
DAY = dt.timedelta(days=1)
# A remediation recorded in the status whose ClusterResync does not exist (a crash between the
# status write and the create) is created again within this long; after it, it is forgotten.
CREATE_RETRY = dt.timedelta(minutes=2)


@dataclass(frozen=True)
class Policy:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: ResyncPolicySpec
    status: ResyncPolicyStatus


@dataclass(frozen=True)
class PolicyObserved:
    now: dt.datetime
    policy: Policy
    target: Obj | None
    pods: dict[str, Obj]  # the target's pods, by name
    resyncs: list[Obj]  # the ClusterResyncs of the namespace
    probe_outcomes: Mapping[str, HookOutcome] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyPlan:
    status: ResyncPolicyStatus
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


class _Builder:
    def __init__(self, obs: PolicyObserved) -> None:
        self.obs = obs
        self.status = obs.policy.status
        self.actions: list[Action] = []
        self.events: list[Event] = []
        self.requeue: float | None = None

    def set(self, **changes: Any) -> None:
        self.status = self.status.model_copy(update=changes)

    def again(self, seconds: float) -> None:
        seconds = max(1.0, seconds)
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    def event(self, type_: EventType, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, bounded(message, 1024)))

    def condition(self, type_: PolicyCondition, status: str, reason: PolicyReason, message: str) -> bool:
        """Set a condition; True if its status or reason changed (an Event is due)."""
        now = ts(self.obs.now)
        conds = list(self.status.conditions)
        old = next((c for c in conds if c.type == type_), None)
        new = Condition(
            type=type_,
            status=status,  # type: ignore[arg-type]
            reason=reason,
            message=bounded(message),
            observed_generation=self.obs.policy.generation,
            last_transition_time=old.last_transition_time if old and old.status == status else now,
        )
        conds = [new if c.type == type_ else c for c in conds] if old else [*conds, new]
        self.set(conditions=conds)
        return old is None or (old.status, old.reason) != (status, reason)

    def plan(self) -> PolicyPlan:
        # Every pass decides with the current spec: the status describes this generation.
        status = self.status.model_copy(update={"observed_generation": self.obs.policy.generation})
        return PolicyPlan(status, self.actions, self.events, self.requeue)


def decide(obs: PolicyObserved) -> PolicyPlan:
    """The next step of one ResyncPolicy."""
    b = _Builder(obs)
    p = obs.policy
    spec = p.spec
    if spec.suspend:
        b.condition(
            PolicyCondition.REMEDIATION_SUPPRESSED,
            "True",
            PolicyReason.SUSPENDED,
            "spec.suspend: no probes, no remediation",
        )
        return b.plan()
    _history(b)
    primary, why = _primary(b)
    if primary is None:
        b.condition(PolicyCondition.IN_SYNC, "Unknown", why[0], why[1])
        b.again(spec.interval_seconds)
        return b.plan()
    replicas = sorted((n for n in obs.pods if n != primary), key=ordinal)
    recovered = _recoveries(b, replicas)
    # A changed spec (a probe, thresholds, a mode, an end of suspension) is acted on at once: every
    # pod is probed again and judged by it, instead of at the next interval.
    spec_changed = p.status.observed_generation not in (None, p.generation)
    due = _periodic_due(b) or bool(recovered) or spec_changed
    if not due:
        return b.plan()
    # Replicas first, the primary last (a replica read before the primary is never ahead).
    wanted = [(f"policy/{n}", n) for n in [*replicas, primary]]
    try:
        got, missing = collect(p.namespace, spec.probe, wanted, obs.probe_outcomes)
    except ValueError as e:  # ProbeConfigError
        b.condition(
            PolicyCondition.IN_SYNC,
            "Unknown",
            PolicyReason.PROBE_INVALID,
            f"spec.probe ({spec.probe.preset}): {e}",
        )
        b.again(spec.interval_seconds)
        return b.plan()
    if got is None:
        b.actions.extend(missing)
        return b.plan()
    _judge(b, primary, replicas, got)
    return b.plan()


def _primary(b: _Builder) -> tuple[str | None, tuple[PolicyReason, str]]:
    """The primary's name; or None, and why not."""
    spec, pods = b.obs.policy.spec, b.obs.pods
    if b.obs.target is None:
        return None, (PolicyReason.TARGET_NOT_FOUND, f"{spec.target.kind} {spec.target.name} not found")
    if spec.primary.pod_name:
        if spec.primary.pod_name in pods:
            return spec.primary.pod_name, (PolicyReason.IN_SYNC, "")
        return None, (PolicyReason.PRIMARY_NOT_FOUND, f"primary pod {spec.primary.pod_name} not found")
    assert spec.primary.selector is not None
    found = [
        n for n, pod in pods.items() if labels_match(spec.primary.selector, meta(pod).get("labels") or {})
    ]
    if len(found) == 1:
        return found[0], (PolicyReason.IN_SYNC, "")
    if not found:
        return None, (PolicyReason.NO_PRIMARY, "spec.primary.selector matches no pod of the target")
    return None, (
        PolicyReason.MULTIPLE_PRIMARIES,
        f"spec.primary.selector matches {', '.join(sorted(found))}",
    )


def _recoveries(b: _Builder, replicas: list[str]) -> list[str]:
    """Track each replica's uid and restarts; the recovered ones whose grace is over (Ready)."""
    spec, now = b.obs.policy.spec, b.obs.now
    seen = {s.pod: s for s in b.status.seen}
    out, due = [], []
    for name in replicas:
        pod = b.obs.pods[name]
        prev = seen.get(name)
        after = prev.probe_after if prev else None
        changed = prev is not None and (prev.uid != uid(pod) or prev.restart_count != restart_count(pod))
        if changed and spec.triggers.on_pod_recovery:
            after = ts(now + dt.timedelta(seconds=spec.triggers.recovery_grace_seconds))
        if after is not None:
            ready_since = _ready_since(pod)
            wait_until = parse_ts(after)
            if ready_since is not None:
                # The grace counts from when it became Ready again.
                wait_until = max(
                    wait_until, ready_since + dt.timedelta(seconds=spec.triggers.recovery_grace_seconds)
                )
            if ready_since is not None and now >= wait_until:
                due.append(name)
            else:
                b.again(
                    (wait_until - now).total_seconds()
                    if ready_since
                    else spec.triggers.recovery_grace_seconds
                )
        out.append(PodSeen(pod=name, uid=uid(pod), restart_count=restart_count(pod), probe_after=after))
    # A replica whose pod is gone for the moment (deleted, evicted, not yet recreated by the
    # StatefulSet controller) keeps what was seen of it: its next pod has another uid, which is a
    # recreation. Forgetting it would make the new pod look like one never seen, and no recovery.
    # Replicas the target no longer has (scaled down) are forgotten.
    out.extend(s for n, s in seen.items() if n not in b.obs.pods and _still_wanted(b.obs.target, n))
    # The due ones keep their marker until their probe has run (cleared in _judge).
    b.set(seen=sorted(out, key=lambda s: ordinal(s.pod)))
    return due


def _still_wanted(target: Obj | None, name: str) -> bool:
    """Whether the StatefulSet still has a pod ``name`` (its ordinals: start .. start+replicas-1)."""
    spec = (target or {}).get("spec") or {}
    start = int((spec.get("ordinals") or {}).get("start") or 0)
    return start <= ordinal(name) < start + int(spec.get("replicas", 1))


def _ready_since(pod: Obj) -> dt.datetime | None:
    if not pod_ready(pod):
        return None
    ready = cond(pod, "Ready") or {}
    since = parse_ts(ready["lastTransitionTime"]) if ready.get("lastTransitionTime") else None
    restarted = last_restart(pod)
    if since is None or (restarted is not None and restarted > since):
        since = restarted
    return since


def _periodic_due(b: _Builder) -> bool:
    spec, last = b.obs.policy.spec, b.status.last_probe_time
    if not spec.triggers.periodic:
        return False
    if last is None:
        return True
    left = (parse_ts(last) + dt.timedelta(seconds=spec.interval_seconds) - b.obs.now).total_seconds()
    if left <= 0:
        return True
    b.again(left)
    return False


def drifted(probe: ProbeSpec, reading: Reading, j: Judgement) -> bool:
    """Whether a replica needs a resync: Diverged, or Lagging beyond a threshold the probe sets
    (the presets judge a lag within every set threshold InSync), or Lagging with its replication
    link down. Without thresholds, a replica that streams catches up by itself."""
    if j.verdict == "Diverged":
        return True
    limited = probe.max_lag_bytes is not None or probe.max_lag_seconds is not None
    return j.verdict == "Lagging" and (limited or reading.link == "down")


def _judge(b: _Builder, primary: str, replicas: list[str], got: dict[str, Reading]) -> None:
    p = b.obs.policy
    spec, now = p.spec, b.obs.now
    pr = got[f"policy/{primary}"]
    results = [
        PodProbe(
            pod=primary,
            verdict="Unknown" if pr.error else "InSync",
            role=pr.role,
            position=bounded(pr.position, 1024) if pr.position else None,
            reason=bounded(pr.error or f"reports role {pr.role}", 1024),
            observed_at=ts(now),
        )
    ]
    bad: dict[str, Judgement] = {}
    unknown: list[str] = []
    for r in replicas:
        reading = got[f"policy/{r}"]
        j = PRESETS[spec.probe.preset].judge(pr, reading, thresholds(spec.probe))
        is_drift = drifted(spec.probe, reading, j)
        if is_drift:
            bad[r] = j
        if j.verdict == "Unknown":
            unknown.append(r)
        results.append(
            PodProbe(
                pod=r,
                verdict=j.verdict,  # type: ignore[arg-type]
                role=reading.role,
                position=bounded(reading.position, 1024) if reading.position else None,
                lag_bytes=j.lag_bytes,
                lag_seconds=int(j.lag_seconds) if j.lag_seconds is not None else None,
                drifted=is_drift,
                reason=bounded(j.reason, 1024),
                observed_at=ts(now),
            )
        )
    was = {x.pod for x in b.status.pods if x.drifted}
    in_sync = sum(1 for x in results[1:] if x.verdict == "InSync")
    b.set(
        pods=results,
        last_probe_time=ts(now),
        in_sync=f"{in_sync}/{len(replicas)}",
        seen=[s.model_copy(update={"probe_after": None}) for s in b.status.seen],
    )
    if spec.triggers.periodic:
        b.again(spec.interval_seconds)
    if pr.role == "replica":
        b.condition(
            PolicyCondition.IN_SYNC,
            "Unknown",
            PolicyReason.PRIMARY_ROLE_MISMATCH,
            f"{primary} reports it is a replica",
        )
        _suppress(
            b,
            PolicyReason.PRIMARY_ROLE_MISMATCH,
            f"{primary}, the primary by spec.primary, reports it is a replica",
        )
        return
    if bad:
        found = "; ".join(f"{r}: {j.verdict}: {j.reason}" for r, j in bad.items())
        b.condition(PolicyCondition.IN_SYNC, "False", PolicyReason.DRIFTED, found)
        if b.condition(PolicyCondition.DRIFTED, "True", PolicyReason.DRIFTED, found) or set(bad) != was:
            b.event(EventType.WARNING, PolicyEventReason.DRIFT_DETECTED, found)
        _remediate(b, primary, bad)
        return
    b.condition(PolicyCondition.DRIFTED, "False", PolicyReason.NO_DRIFT, "no replica needs a resync")
    if unknown:
        b.condition(
            PolicyCondition.IN_SYNC,
            "Unknown",
            PolicyReason.PROBE_UNKNOWN,
            f"the probe could not tell for {', '.join(unknown)}",
        )
    else:
        b.condition(
            PolicyCondition.IN_SYNC,
            "True",
            PolicyReason.IN_SYNC,
            f"{len(replicas)} replica(s) in sync with {primary}",
        )
    b.condition(
        PolicyCondition.REMEDIATION_SUPPRESSED, "False", PolicyReason.NOT_NEEDED, "no replica needs a resync"
    )


def _suppress(b: _Builder, reason: PolicyReason, message: str) -> None:
    b.set(last_decision=bounded(f"not remediated ({reason}): {message}", MAX_MESSAGE))
    if b.condition(PolicyCondition.REMEDIATION_SUPPRESSED, "True", reason, message):
        b.event(EventType.NORMAL, PolicyEventReason.REMEDIATION_SUPPRESSED, f"{reason}: {message}")


def _remediate(b: _Builder, primary: str, bad: dict[str, Judgement]) -> None:
    p = b.obs.policy
    spec, now = p.spec, b.obs.now
    if spec.mode == "Off":
        _suppress(b, PolicyReason.MODE_OFF, "mode Off: drift is reported, never remediated")
        return
    busy = [
        meta(r).get("name")
        for r in b.obs.resyncs
        if ((r.get("spec") or {}).get("target") or {}).get("name") == spec.target.name
        and ((r.get("status") or {}).get("phase") or "Pending") not in ("Completed", "Failed")
        and not (r.get("spec") or {}).get("dryRun")
    ]
    if busy:
        _suppress(
            b, PolicyReason.RESYNC_IN_PROGRESS, f"ClusterResync {busy[0]} of {spec.target.name} runs or waits"
        )
        return
    unhealthy = _primary_unhealthy(b, primary)
    if unhealthy:
        _suppress(b, PolicyReason.PRIMARY_UNHEALTHY, unhealthy)
        return
    last = b.status.last_remediation
    if last is not None:
        ends = parse_ts(last.created_at) + dt.timedelta(seconds=spec.cooldown_seconds)
        if now < ends:
            _suppress(
                b,
                PolicyReason.COOLING_DOWN,
                f"the last remediation ({last.name}) is under cooldownSeconds until {ts(ends)}",
            )
            b.again((ends - now).total_seconds())
            return
    recent = [t for t in b.status.remediations if now - parse_ts(t) < DAY]
    if len(recent) >= spec.max_per_day:
        _suppress(
            b,
            PolicyReason.DAILY_LIMIT_REACHED,
            f"{len(recent)} remediation(s) in the last 24 hours; maxPerDay is {spec.max_per_day}",
        )
        return
    diverged = sorted(r for r, j in bad.items() if j.verdict == "Diverged")
    if diverged and not spec.resync_template.force:
        _suppress(
            b,
            PolicyReason.DIVERGED_NEEDS_FORCE,
            f"{', '.join(diverged)} Diverged: resyncing would discard writes the primary lacks; set "
            "resyncTemplate.force to let the policy do it, or resync by hand",
        )
        return
    name = resync_name(p.name, now)
    replicas = sorted(bad, key=ordinal)
    why = "; ".join(f"{r}: {bad[r].verdict}: {bad[r].reason}" for r in replicas)
    b.actions.append(Create(resync_ref(p.namespace, name), resync_body(p, name, replicas)))
    b.set(
        last_remediation=Remediation(name=name, replicas=replicas, created_at=ts(now), reason=bounded(why)),
        remediations=[*recent, ts(now)],
        last_decision=bounded(f"created ClusterResync {name} for {', '.join(replicas)}: {why}"),
    )
    manual = spec.mode == "Manual"
    b.condition(
        PolicyCondition.REMEDIATION_SUPPRESSED,
        "False",
        PolicyReason.AWAITING_APPROVAL if manual else PolicyReason.REMEDIATING,
        f"ClusterResync {name}" + (" waits for approval (spec.suspend)" if manual else " runs"),
    )
    b.event(
        EventType.NORMAL,
        PolicyEventReason.REMEDIATION_STARTED,
        f"created ClusterResync {name} for {', '.join(replicas)}"
        + (", suspended for approval" if manual else ""),
    )


def _primary_unhealthy(b: _Builder, primary: str) -> str | None:
    pod = b.obs.pods[primary]
    if not pod_ready(pod):
        return f"primary {primary} is not Ready"
    since = _ready_since(pod)
    stable = b.obs.policy.spec.resync_template.primary_stable_seconds
    if since is not None and (b.obs.now - since).total_seconds() < stable:
        return f"primary {primary} has been Ready without a restart for less than {stable}s"
    return None


def _history(b: _Builder) -> None:
    """Delete this policy's finished ClusterResyncs beyond the history limits, oldest first; and
    create again a remediation recorded but lost (a crash between the status write and the create)."""
    p = b.obs.policy
    own = [r for r in b.obs.resyncs if (meta(r).get("labels") or {}).get(LABEL_POLICY_UID) == p.uid]
    for phase, keep in (
        ("Completed", p.spec.successful_history_limit),
        ("Failed", p.spec.failed_history_limit),
    ):
        done = sorted(
            (
                r
                for r in own
                if (r.get("status") or {}).get("phase") == phase and not meta(r).get("deletionTimestamp")
            ),
            key=lambda r: (str((r.get("status") or {}).get("completedAt") or ""), str(meta(r).get("name"))),
        )
        for r in done[: max(0, len(done) - keep)]:
            b.actions.append(Delete(resync_ref(p.namespace, str(meta(r)["name"])), uid=uid(r)))
    last = b.status.last_remediation
    if last is None or last.confirmed:
        return
    if any(meta(r).get("name") == last.name for r in b.obs.resyncs):
        b.set(last_remediation=last.model_copy(update={"confirmed": True}))
    elif b.obs.now - parse_ts(last.created_at) < CREATE_RETRY:
        # Never seen: a crash between the status write and the create. Once seen, a resync that
        # is gone (finished and deleted) is never created again.
        b.actions.append(
            Create(resync_ref(p.namespace, last.name), resync_body(p, last.name, list(last.replicas)))
        )


def confirmed(status: ResyncPolicyStatus, created: str) -> ResyncPolicyStatus:
    """The status once the adapter has created ClusterResync ``created``: its remediation is
    confirmed, and never created again even if it is gone by the next pass."""
    last = status.last_remediation
    if last is None or last.name != created or last.confirmed:
        return status
    return status.model_copy(update={"last_remediation": last.model_copy(update={"confirmed": True})})


def resync_name(policy: str, now: dt.datetime) -> str:
    return f"{policy[:240]}-{int(now.timestamp())}"


def resync_ref(namespace: str, name: str) -> Ref:
    return Ref(RESYNC_API, "ClusterResync", "clusterresyncs", name, namespace)


def resync_body(p: Policy, name: str, replicas: list[str]) -> Obj:
    spec = p.spec
    t = spec.resync_template.model_dump(by_alias=True, exclude_none=True, mode="json")
    return {
        "apiVersion": RESYNC_API,
        "kind": "ClusterResync",
        "metadata": {
            "name": name,
            "namespace": p.namespace,
            "labels": {LABEL_POLICY: label_value(p.name), LABEL_POLICY_UID: p.uid},
            "ownerReferences": [
                {
                    "apiVersion": RESYNC_API,
                    "kind": POLICY_KIND,
                    "name": p.name,
                    "uid": p.uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": {
            **t,
            "target": spec.target.model_dump(by_alias=True, exclude_none=True, mode="json"),
            "primary": spec.primary.model_dump(by_alias=True, exclude_none=True, mode="json"),
            "volumes": list(spec.volumes),
            "replicas": replicas,
            "probe": spec.probe.model_dump(by_alias=True, exclude_none=True, mode="json"),
            "suspend": spec.mode == "Manual",
        },
    }
