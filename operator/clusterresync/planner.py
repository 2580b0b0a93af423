"""The resync state machine: observed state in, next actions and status out. Pure: no I/O.

The sequence per replica is *stage, then swap* (docs/design.md explains it with its upstream
references): restore the copy into a temporary claim; detach its volume and pre-bind it to the
replica's claim name; keep the replica's old volume (reclaim policy Retain); delete the replica's
claim, then its pod, so that the StatefulSet controller recreates both and the PV binder gives the
new claim the pre-bound volume before it would provision anything; verify; finish.

Every decision is taken from what is observed now and what the status records. The adapter
writes the returned status *before* it performs the actions, so whatever a crash interrupts, the
next call sees either the recorded intent or its effect, and repeats or continues the step.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from typing import Any, Literal

from .conditions import ConditionType, EventType, Reason
from .models import (
    ANNOTATION_ORIGINAL_RECLAIM_POLICY,
    FINALIZER,
    LABEL_REPLICA,
    LABEL_RESYNC,
    LABEL_VOLUME,
    Condition,
    LabelSelector,
    PlannedAction,
    PrimaryStatus,
    ReplicaStatus,
    SnapshotStatus,
    VolumeStatus,
)
from .state import (
    JSON_PATCH,
    Action,
    Create,
    Delete,
    Event,
    Exec,
    Obj,
    Observed,
    Patch,
    Plan,
    job_ref,
    pod_ref,
    pv_ref,
    pvc_ref,
    snapshot_ref,
)

CondStatus = Literal["True", "False", "Unknown"]
ACTIVE_REPLICA_PHASES = ("Restoring", "Detaching", "Swapping", "Verifying", "Finishing", "RollingBack")
OUT_OF_SERVICE = ("Swapping", "Verifying", "RollingBack")
FINISHED = ("Completed", "Failed")
# How long after a swap the operator waits for the StatefulSet controller to recreate a claim
# before it creates the claim itself.
CLAIM_RECREATE_GRACE_SECONDS = 30.0
POLL = 2.0


# -- small helpers ---------------------------------------------------------------------------
def ts(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def dns_name(*parts: str, limit: int = 63) -> str:
    """A predictable DNS-1123 label from parts; long ones keep a hash of the whole."""
    raw = "-".join(p.lower() for p in parts if p)
    if len(raw) <= limit:
        return raw
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return raw[: limit - 9].rstrip("-") + "-" + digest


def label_value(v: str) -> str:
    return dns_name(v)


def snapshot_name(resync: str, volume: str) -> str:
    return dns_name("crs", resync, volume)


def staging_claim_name(resync: str, replica: str, volume: str) -> str:
    return dns_name("crs", resync, replica, volume)


def staging_job_name(resync: str, replica: str) -> str:
    return dns_name("crs", resync, replica)


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


# -- status helpers --------------------------------------------------------------------------
class Builder:
    """Accumulates the next status, actions and events of one planning call."""

    def __init__(self, obs: Observed) -> None:
        self.obs = obs
        self.status = obs.resync.status
        self.actions: list[Action] = []
        self.events: list[Event] = []
        self.requeue: float | None = None

    @property
    def now(self) -> str:
        return ts(self.obs.now)

    def set(self, **changes: Any) -> None:
        self.status = self.status.model_copy(update=changes)

    def again(self, seconds: float = POLL) -> None:
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    def condition(self, type_: ConditionType, status: CondStatus, reason: Reason, message: str) -> None:
        gen = self.obs.resync.generation
        conds = list(self.status.conditions)
        for i, c in enumerate(conds):
            if c.type == type_:
                ltt = c.last_transition_time if c.status == status else self.now
                conds[i] = Condition(
                    type=type_,
                    status=status,
                    reason=reason,
                    message=message,
                    observed_generation=gen,
                    last_transition_time=ltt,
                )
                break
        else:
            conds.append(
                Condition(
                    type=type_,
                    status=status,
                    reason=reason,
                    message=message,
                    observed_generation=gen,
                    last_transition_time=self.now,
                )
            )
        self.set(conditions=conds, observed_generation=gen)

    def progressing(self, reason: Reason, message: str) -> None:
        self.condition(ConditionType.PROGRESSING, "True", reason, message)

    def event(self, type_: EventType, reason: Reason | str, message: str) -> None:
        self.events.append(Event(str(type_), str(reason), message))

    def fail(self, reason: Reason, message: str) -> None:
        """The resync is over and failed: the Job-style Failed condition, an Event, phase Failed."""
        if self.status.phase == "Failed":
            return
        self.condition(ConditionType.FAILED, "True", reason, message)
        self.condition(ConditionType.PROGRESSING, "False", reason, message)
        self.set(phase="Failed", completed_at=self.now)
        self.event(EventType.WARNING, reason, message)

    def complete(self, reason: Reason, message: str) -> None:
        self.condition(ConditionType.COMPLETE, "True", reason, message)
        self.condition(ConditionType.PROGRESSING, "False", reason, message)
        self.set(phase="Completed", completed_at=self.now)
        self.event(EventType.NORMAL, reason, message)

    def replica(self, name: str) -> ReplicaStatus:
        for r in self.status.replicas:
            if r.name == name:
                return r
        raise KeyError(name)

    def put_replica(self, r: ReplicaStatus) -> None:
        self.set(replicas=[r if x.name == r.name else x for x in self.status.replicas])

    def do(self, *actions: Action) -> None:
        self.actions.extend(actions)

    def plan(self, remove_finalizer: bool = False) -> Plan:
        done = sum(1 for r in self.status.replicas if r.phase == "Completed")
        if self.status.replicas:
            self.set(progress=f"{done}/{len(self.status.replicas)}")
        return Plan(self.status, self.actions, self.events, self.requeue, remove_finalizer)


# -- entry point -----------------------------------------------------------------------------
def plan(obs: Observed) -> Plan:
    """The next step of one ClusterResync."""
    b = Builder(obs)
    phase = b.status.phase
    if obs.resync.deleting:
        return _deletion(b)
    if phase in FINISHED:
        _cleanup(b)
        return b.plan()
    if phase == "Pending":
        _pending(b)
    if b.status.phase == "Preflight":
        _preflight(b)
    if b.status.phase == "Snapshotting":
        _snapshotting(b)
    if b.status.phase == "Resyncing":
        _resyncing(b)
    if b.status.phase in FINISHED:
        _cleanup(b)
    return b.plan()


# -- Pending: one resync per target at a time ------------------------------------------------
def _pending(b: Builder) -> None:
    r = b.obs.resync
    ahead = []
    for other in b.obs.other_resyncs:
        m = meta(other)
        if (
            m.get("uid") == r.uid
            or ((other.get("spec") or {}).get("target") or {}).get("name") != r.spec.target.name
        ):
            continue
        phase = (other.get("status") or {}).get("phase") or "Pending"
        if phase in FINISHED or (other.get("spec") or {}).get("dryRun"):
            continue
        created = parse_ts(str(m.get("creationTimestamp")))
        # The older one goes first; a tie goes by name. A running one always goes first.
        if phase != "Pending" or (created, m.get("name", "")) < (r.created, r.name):
            ahead.append(str(m.get("name")))
    if ahead and not r.spec.dry_run:
        msg = f"waiting for ClusterResync {ahead[0]} on the same {r.spec.target.kind} {r.spec.target.name} to finish: one resync per target at a time"
        if b.status.waiting_for != ahead[0]:
            b.event(EventType.NORMAL, Reason.WAITING_FOR_OTHER_RESYNC, msg)
        b.set(waiting_for=ahead[0])
        b.progressing(Reason.WAITING_FOR_OTHER_RESYNC, msg)
        b.again(5.0)
        return
    b.set(phase="Preflight", waiting_for=None, started_at=b.status.started_at or b.now)
    b.progressing(Reason.ACCEPTED, "checking the target, the primary and the replicas")
    b.event(
        EventType.NORMAL, Reason.ACCEPTED, f"resync of {r.spec.target.kind} {r.spec.target.name} accepted"
    )


# -- Preflight: refuse early, touch nothing --------------------------------------------------
def _target_pods(b: Builder) -> dict[str, Obj]:
    return {n: p for n, p in b.obs.pods.items() if not deleting(p)}


def _find_primary(b: Builder) -> tuple[Obj | None, Reason | None, str]:
    spec = b.obs.resync.spec
    pods = b.obs.pods
    if spec.primary.pod_name:
        pod = pods.get(spec.primary.pod_name)
        if pod is None:
            return (
                None,
                Reason.PRIMARY_NOT_FOUND,
                f"primary pod {spec.primary.pod_name} is not a pod of {spec.target.kind} {spec.target.name}",
            )
        return pod, None, ""
    assert spec.primary.selector is not None
    matches = sorted(
        n for n, p in pods.items() if labels_match(spec.primary.selector, meta(p).get("labels") or {})
    )
    if not matches:
        return (
            None,
            Reason.NO_PRIMARY,
            f"no pod of {spec.target.kind} {spec.target.name} matches the primary selector",
        )
    if len(matches) > 1:
        return (
            None,
            Reason.MULTIPLE_PRIMARIES,
            f"{len(matches)} pods match the primary selector ({', '.join(matches)}); it must match exactly one",
        )
    return pods[matches[0]], None, ""


def _preflight(b: Builder) -> None:
    obs, spec = b.obs, b.obs.resync.spec
    if obs.target is None:
        b.fail(
            Reason.TARGET_NOT_FOUND, f"{spec.target.kind} {obs.resync.namespace}/{spec.target.name} not found"
        )
        return
    primary, reason, msg = _find_primary(b)
    if primary is None:
        assert reason is not None
        b.fail(reason, msg)
        return
    pname = meta(primary)["name"]
    pods = _target_pods(b)
    if spec.replicas is not None:
        missing = [n for n in spec.replicas if n not in obs.pods]
        if missing:
            b.fail(
                Reason.REPLICA_NOT_IN_TARGET,
                f"replica {', '.join(missing)} is not a pod of {spec.target.kind} {spec.target.name}",
            )
            return
        if pname in spec.replicas:
            b.fail(Reason.REPLICA_NOT_IN_TARGET, f"{pname} is the primary; it cannot also be a replica")
            return
        replicas = list(spec.replicas)
    else:
        replicas = sorted((n for n in pods if n != pname), key=ordinal)
    if not replicas:
        b.fail(
            Reason.NO_REPLICAS,
            f"{spec.target.kind} {spec.target.name} has no pod besides the primary {pname}",
        )
        return
    # Every named volume is a claim on the primary and on every replica, and those claims are Bound.
    claims: dict[str, dict[str, str]] = {}
    for pod_name in [pname, *replicas]:
        pod = obs.pods[pod_name]
        claims[pod_name] = {}
        for v in spec.volumes:
            cn = claim_of(pod, v)
            if cn is None:
                b.fail(
                    Reason.VOLUME_NOT_FOUND,
                    f"pod {pod_name} has no volume {v} backed by a PersistentVolumeClaim",
                )
                return
            c = obs.claims.get(cn)
            if c is None or (c.get("status") or {}).get("phase") != "Bound" or deleting(c):
                b.fail(Reason.CLAIM_NOT_BOUND, f"claim {cn} of pod {pod_name} (volume {v}) is not Bound")
                return
            claims[pod_name][v] = cn
    # A copy mechanism exists for the claims' driver.
    for v in spec.volumes:
        c = obs.claims[claims[pname][v]]
        sc_name = (c.get("spec") or {}).get("storageClassName") or ""
        sc = obs.storage_classes.get(sc_name)
        driver = str(sc.get("provisioner", "")) if sc else ""
        if spec.method == "Snapshot":
            if _snapshot_class(b, driver) is None:
                where = f"driver {driver}" if driver else f"claim {claims[pname][v]} (no StorageClass)"
                named = (
                    f"VolumeSnapshotClass {spec.volume_snapshot_class_name} for "
                    if spec.volume_snapshot_class_name
                    else "VolumeSnapshotClass for "
                )
                b.fail(
                    Reason.NO_SNAPSHOT_CLASS,
                    f"no {named}{where}: the primary's volume {v} cannot be snapshotted",
                )
                return
        elif not driver or driver not in obs.csi_drivers:
            b.fail(
                Reason.CLONE_NOT_SUPPORTED,
                f"claim {claims[pname][v]} is not provisioned by a CSI driver (StorageClass {sc_name or '<none>'}): CSI volume cloning is not available",
            )
            return
    # The primary is Ready and has been stable for primaryStableSeconds.
    started = parse_ts(b.status.started_at) if b.status.started_at else obs.now
    waited = (obs.now - started).total_seconds()
    problem = _primary_unstable(b, primary)
    if problem is not None:
        reason, msg = problem
        if waited >= spec.timeouts.preflight_seconds:
            b.fail(reason, f"{msg}; gave up after {int(waited)}s (timeouts.preflightSeconds)")
            return
        b.progressing(Reason.WAITING_FOR_PRIMARY, msg)
        b.again(min(5.0, max(1.0, spec.timeouts.preflight_seconds - waited)))
        return
    b.set(
        primary=PrimaryStatus(
            pod_name=pname,
            uid=uid(primary),
            node_name=str((primary.get("spec") or {}).get("nodeName", "")),
            restart_count=restart_count(primary),
            claims=claims[pname],
        ),
        replicas=[
            ReplicaStatus(name=n, volumes=[VolumeStatus(volume=v, claim=claims[n][v]) for v in spec.volumes])
            for n in replicas
        ],
    )
    if spec.dry_run:
        b.set(plan=_dry_run_plan(b, pname, replicas, claims))
        b.complete(
            Reason.DRY_RUN_COMPLETE,
            f"dry run: would resync {len(replicas)} replica(s) ({', '.join(replicas)}) from {pname}; nothing was changed",
        )
        return
    b.set(phase="Snapshotting")
    b.progressing(Reason.PREFLIGHT_PASSED, f"primary {pname} is Ready and stable; copying its volumes")
    b.event(EventType.NORMAL, Reason.PREFLIGHT_PASSED, f"primary {pname}; replicas {', '.join(replicas)}")


def _primary_unstable(b: Builder, primary: Obj) -> tuple[Reason, str] | None:
    spec = b.obs.resync.spec
    name = meta(primary)["name"]
    if not pod_ready(primary):
        return Reason.PRIMARY_NOT_READY, f"primary {name} is not Ready"
    ready = cond(primary, "Ready") or {}
    since = parse_ts(ready["lastTransitionTime"]) if ready.get("lastTransitionTime") else b.obs.now
    restarted = last_restart(primary)
    if restarted is not None and restarted > since:
        since = restarted
    stable_for = (b.obs.now - since).total_seconds()
    if stable_for < spec.primary_stable_seconds:
        return Reason.PRIMARY_NOT_STABLE, (
            f"primary {name} has been Ready without a restart for {int(stable_for)}s; primaryStableSeconds asks for {spec.primary_stable_seconds}s"
        )
    return None


def _snapshot_class(b: Builder, driver: str) -> Obj | None:
    spec = b.obs.resync.spec
    classes = b.obs.snapshot_classes
    if spec.volume_snapshot_class_name:
        for c in classes:
            if meta(c).get("name") == spec.volume_snapshot_class_name and c.get("driver") == driver:
                return c
        return None
    candidates = [c for c in classes if c.get("driver") == driver]
    defaults = [
        c
        for c in candidates
        if (meta(c).get("annotations") or {}).get("snapshot.storage.kubernetes.io/is-default-class") == "true"
    ]
    chosen = sorted(defaults or candidates, key=lambda c: str(meta(c).get("name")))
    return chosen[0] if chosen else None


def _dry_run_plan(
    b: Builder, primary: str, replicas: list[str], claims: dict[str, dict[str, str]]
) -> list[PlannedAction]:
    spec = b.obs.resync.spec
    name = b.obs.resync.name
    out = []
    if spec.hooks and spec.hooks.pre_snapshot:
        out.append(
            PlannedAction(
                action=f"run preSnapshot hook in {primary}: {' '.join(spec.hooks.pre_snapshot.command)}"
            )
        )
    for v in spec.volumes:
        if spec.method == "Snapshot":
            out.append(
                PlannedAction(
                    action=f"snapshot claim {claims[primary][v]} of {primary} as VolumeSnapshot {snapshot_name(name, v)}"
                )
            )
    if spec.hooks and spec.hooks.post_snapshot:
        out.append(PlannedAction(action=f"run postSnapshot hook in {primary}"))
    for r in replicas:
        for v in spec.volumes:
            how = "clone of" if spec.method == "Clone" else "restore of"
            out.append(
                PlannedAction(
                    replica=r,
                    action=f"stage a {how} {v} in claim {staging_claim_name(name, r, v)}, then pre-bind its volume to {claims[r][v]}",
                )
            )
        out.append(
            PlannedAction(
                replica=r,
                action=f"retain the old volumes of {r}, delete claims {', '.join(claims[r].values())} and pod {r}, verify the new pod on the copies",
            )
        )
        out.append(PlannedAction(replica=r, action=f"old volumes: {spec.old_volumes}"))
    return out


# -- Snapshotting ----------------------------------------------------------------------------
def _owner(b: Builder) -> list[Obj]:
    r = b.obs.resync
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


def _labels(b: Builder, replica: str = "", volume: str = "") -> dict[str, str]:
    out = {LABEL_RESYNC: label_value(b.obs.resync.name), "app.kubernetes.io/managed-by": "clusterresync"}
    if replica:
        out[LABEL_REPLICA] = label_value(replica)
    if volume:
        out[LABEL_VOLUME] = label_value(volume)
    return out


def _run_hook(b: Builder, hook_name: str, on_failure: Reason) -> bool:
    """Run an exec hook in the primary once; True once it has succeeded."""
    spec = b.obs.resync.spec
    if hook_name in b.status.hooks_done:
        return True
    hook = (
        getattr(spec.hooks, "pre_snapshot" if hook_name == "preSnapshot" else "post_snapshot", None)
        if spec.hooks
        else None
    )
    if hook is None:
        return True
    outcome = b.obs.hook_outcomes.get(hook_name)
    assert b.status.primary is not None
    if outcome is None:
        b.do(
            Exec(
                hook_name,
                b.status.primary.pod_name,
                b.obs.resync.namespace,
                hook.container,
                tuple(hook.command),
                hook.timeout_seconds,
            )
        )
        return False
    if not outcome.ok:
        tail = outcome.output.strip().splitlines()[-3:]
        b.fail(
            on_failure,
            f"{hook_name} hook in {b.status.primary.pod_name} failed (exit code {outcome.exit_code}): {' | '.join(tail)}",
        )
        return False
    b.set(hooks_done=[*b.status.hooks_done, hook_name])
    b.event(EventType.NORMAL, "HookSucceeded", f"{hook_name} hook in {b.status.primary.pod_name} succeeded")
    return True


def _primary_changed(b: Builder) -> str | None:
    """Why the primary is no longer the one the copy was taken from, or None."""
    p = b.status.primary
    if p is None:
        return None
    pod = b.obs.pods.get(p.pod_name)
    if pod is None:
        return f"primary pod {p.pod_name} is gone"
    if uid(pod) != p.uid:
        return f"primary pod {p.pod_name} was recreated (uid {p.uid} is now {uid(pod)})"
    if restart_count(pod) != p.restart_count:
        return (
            f"primary pod {p.pod_name} restarted (restartCount {p.restart_count} is now {restart_count(pod)})"
        )
    if deleting(pod):
        return f"primary pod {p.pod_name} is being deleted"
    sel = b.obs.resync.spec.primary.selector
    if sel is not None:
        matches = sorted(n for n, q in b.obs.pods.items() if labels_match(sel, meta(q).get("labels") or {}))
        if matches != [p.pod_name]:
            return (
                f"the primary selector now matches {', '.join(matches) or 'no pod'} instead of {p.pod_name}"
            )
    return None


def _snapshotting(b: Builder) -> None:
    spec, obs = b.obs.resync.spec, b.obs
    assert b.status.primary is not None
    changed = _primary_changed(b)
    if changed:
        b.fail(Reason.PRIMARY_CHANGED, f"{changed} before its volumes were copied; no replica was touched")
        return
    if not _run_hook(b, "preSnapshot", Reason.HOOK_FAILED):
        b.again(1.0)
        return
    started = parse_ts(b.status.started_at or b.now)
    elapsed = (obs.now - started).total_seconds()
    ready = True
    snaps: list[SnapshotStatus] = []
    if spec.method == "Snapshot":
        for v in spec.volumes:
            name = snapshot_name(obs.resync.name, v)
            claim = b.status.primary.claims[v]
            snap = obs.snapshots.get(name)
            if snap is None:
                c = obs.claims.get(claim) or {}
                sc = obs.storage_classes.get((c.get("spec") or {}).get("storageClassName") or "") or {}
                klass = _snapshot_class(b, str(sc.get("provisioner", "")))
                body = {
                    "apiVersion": "snapshot.storage.k8s.io/v1",
                    "kind": "VolumeSnapshot",
                    "metadata": {
                        "name": name,
                        "namespace": obs.resync.namespace,
                        "labels": _labels(b, volume=v),
                        "ownerReferences": _owner(b),
                    },
                    "spec": {
                        "source": {"persistentVolumeClaimName": claim},
                        **({"volumeSnapshotClassName": meta(klass)["name"]} if klass else {}),
                    },
                }
                b.do(Create(snapshot_ref(obs.resync.namespace, name), body))
                snaps.append(SnapshotStatus(volume=v, name=name))
                ready = False
                continue
            st = snap.get("status") or {}
            ok = bool(st.get("readyToUse"))
            snaps.append(
                SnapshotStatus(
                    volume=v,
                    name=name,
                    ready_to_use=ok,
                    restore_size=str(st["restoreSize"]) if st.get("restoreSize") is not None else None,
                )
            )
            if not ok:
                ready = False
                err = (st.get("error") or {}).get("message")
                if err and elapsed >= spec.timeouts.snapshot_seconds:
                    b.set(snapshots=snaps)
                    b.fail(
                        Reason.SNAPSHOT_FAILED,
                        f"VolumeSnapshot {name} of claim {claim} is not ready after {int(elapsed)}s: {err}",
                    )
                    return
    else:
        # Clone: every replica's copy is provisioned now, from the same instant, between the hooks.
        for v in spec.volumes:
            snaps.append(SnapshotStatus(volume=v, name=b.status.primary.claims[v], ready_to_use=True))
        for r in b.status.replicas:
            if not _ensure_staged(b, r, clone=True):
                ready = False
    b.set(snapshots=snaps)
    if b.status.phase == "Failed":
        return
    if not ready:
        if elapsed >= spec.timeouts.snapshot_seconds:
            b.fail(
                Reason.SNAPSHOT_FAILED,
                f"the copies of the primary's volumes are not ready after {int(elapsed)}s (timeouts.snapshotSeconds)",
            )
            return
        b.progressing(Reason.SNAPSHOTTING, f"copying the volumes of {b.status.primary.pod_name}")
        b.again(1.0)
        return
    if not _run_hook(b, "postSnapshot", Reason.HOOK_FAILED):
        b.again(1.0)
        return
    b.set(phase="Resyncing")
    b.progressing(
        Reason.RESYNCING,
        f"copies of {b.status.primary.pod_name} are ready; re-provisioning {len(b.status.replicas)} replica(s)",
    )
    b.event(
        EventType.NORMAL,
        "SnapshotsReady",
        f"copies of {', '.join(spec.volumes)} from {b.status.primary.pod_name} are ready",
    )


# -- Resyncing: the per-replica machine ------------------------------------------------------
def _resyncing(b: Builder) -> None:
    spec = b.obs.resync.spec
    changed = _primary_changed(b)
    failed = [r for r in b.status.replicas if r.phase == "Failed"]
    for r in list(b.status.replicas):
        r = b.replica(r.name)
        if r.phase in FINISHED:
            continue
        if r.phase == "Pending":
            active = sum(1 for x in b.status.replicas if x.phase in ACTIVE_REPLICA_PHASES)
            if changed or failed or active >= spec.max_parallel:
                continue
            pod = b.obs.pods.get(r.name)
            r = r.model_copy(
                update={
                    "phase": "Restoring",
                    "started_at": b.now,
                    "node_name": str((pod or {}).get("spec", {}).get("nodeName") or "") or None,
                    "message": "restoring the copy into staging claims",
                }
            )
            b.put_replica(r)
            b.event(EventType.NORMAL, "ReplicaStarted", f"re-provisioning {r.name}")
        _step_replica(b, r.name, changed)
    # The outcome once nothing is in flight.
    reps = b.status.replicas
    if any(r.phase in ACTIVE_REPLICA_PHASES for r in reps):
        b.again(1.0)
        return
    if changed and any(r.phase != "Completed" for r in reps):
        done = [r.name for r in reps if r.phase == "Completed"]
        b.fail(
            Reason.PRIMARY_CHANGED,
            f"{changed}; stopped before touching further replicas (done: {', '.join(done) or 'none'})",
        )
        return
    bad = [r for r in reps if r.phase == "Failed"]
    if bad:
        reason = (
            Reason.ROLLBACK_FAILED
            if any("rollback failed" in r.message for r in bad)
            else (
                Reason.RESTORE_FAILED
                if all(r.swap_started_at is None for r in bad)
                else Reason.REPLICA_ROLLED_BACK
            )
        )
        b.fail(reason, "; ".join(f"{r.name}: {r.message}" for r in bad))
        return
    if all(r.phase == "Completed" for r in reps):
        b.complete(
            Reason.RESYNC_SUCCEEDED,
            f"{len(reps)} replica(s) re-provisioned from {b.status.primary.pod_name if b.status.primary else 'the primary'} and verified",
        )
        return
    b.again(1.0)


def _replica_pod_template_claim(b: Builder, volume: str) -> Obj | None:
    for t in ((b.obs.target or {}).get("spec") or {}).get("volumeClaimTemplates") or []:
        if meta(t).get("name") == volume:
            return dict(t)
    return None


def _set_vol(b: Builder, r: ReplicaStatus, volume: str, **changes: Any) -> ReplicaStatus:
    vols = [v.model_copy(update=changes) if v.volume == volume else v for v in r.volumes]
    r = r.model_copy(update={"volumes": vols})
    b.put_replica(r)
    return r


def _staging_job(b: Builder, r: ReplicaStatus) -> Obj | None:
    """The staging Job, if this replica needs one: a restore hook, or a WaitForFirstConsumer class."""
    obs, spec = b.obs, b.obs.resync.spec
    pod = obs.pods.get(r.name)
    needs = spec.hooks is not None and spec.hooks.restore is not None
    for v in r.volumes:
        c = obs.claims.get(v.claim) or {}
        sc = obs.storage_classes.get((c.get("spec") or {}).get("storageClassName") or "") or {}
        if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
            needs = True
    if not needs or pod is None:
        return None
    pspec = pod.get("spec") or {}
    mounts: list[Obj] = []
    volumes: list[Obj] = []
    image = ""
    for ctr in pspec.get("containers") or []:
        image = image or str(ctr.get("image", ""))
        for m in ctr.get("volumeMounts") or []:
            if any(v.volume == m.get("name") for v in r.volumes) and all(
                x["name"] != m["name"] for x in mounts
            ):
                mounts.append({k: m[k] for k in ("name", "mountPath", "subPath") if k in m})
    for v in r.volumes:
        volumes.append(
            {
                "name": v.volume,
                "persistentVolumeClaim": {"claimName": staging_claim_name(obs.resync.name, r.name, v.volume)},
            }
        )
    hook = spec.hooks.restore if spec.hooks else None
    container: Obj = {
        "name": "restore",
        "image": hook.image if hook else image,
        "command": list(hook.command) if hook else ["sh", "-c", "exit 0"],
        "volumeMounts": mounts,
    }
    if hook and hook.args:
        container["args"] = list(hook.args)
    if hook and hook.env:
        container["env"] = [{"name": e.name, "value": e.value} for e in hook.env]
    node = obs.nodes.get(r.node_name or "") or {}
    hostname = (meta(node).get("labels") or {}).get("kubernetes.io/hostname", r.node_name or "")
    pod_spec: Obj = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        "nodeSelector": {"kubernetes.io/hostname": hostname} if hostname else {},
        "tolerations": list(pspec.get("tolerations") or []),
    }
    if pspec.get("securityContext"):
        pod_spec["securityContext"] = pspec["securityContext"]
    name = staging_job_name(obs.resync.name, r.name)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": obs.resync.namespace,
            "labels": _labels(b, r.name),
            "ownerReferences": _owner(b),
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": hook.timeout_seconds if hook else 600,
            "template": {"metadata": {"labels": _labels(b, r.name)}, "spec": pod_spec},
        },
    }


def _ensure_staged(b: Builder, r: ReplicaStatus, clone: bool) -> bool:
    """Create the staging claims (and Job); True once every staging claim is Bound and the Job done."""
    obs = b.obs
    ns = obs.resync.namespace
    all_bound = True
    for v in r.volumes:
        sname = staging_claim_name(obs.resync.name, r.name, v.volume)
        if v.staging_claim != sname:
            r = _set_vol(b, r, v.volume, staging_claim=sname)
        staged = obs.claims.get(sname)
        if staged is None:
            replica_claim = obs.claims.get(v.claim)
            if replica_claim is None:
                r = r.model_copy(
                    update={"phase": "Failed", "message": f"claim {v.claim} is gone", "completed_at": b.now}
                )
                b.put_replica(r)
                return False
            cspec = replica_claim.get("spec") or {}
            request = ((cspec.get("resources") or {}).get("requests") or {}).get("storage", "0")
            size = str(request)
            if clone:
                assert b.status.primary is not None
                source = {"kind": "PersistentVolumeClaim", "name": b.status.primary.claims[v.volume]}
                src_claim = obs.claims.get(b.status.primary.claims[v.volume]) or {}
                src_req = (((src_claim.get("spec") or {}).get("resources") or {}).get("requests") or {}).get(
                    "storage", "0"
                )
                if quantity_bytes(src_req) > quantity_bytes(size):
                    size = str(src_req)
            else:
                snap = next((s for s in b.status.snapshots if s.volume == v.volume), None)
                assert snap is not None
                source = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snap.name}
                if snap.restore_size and quantity_bytes(snap.restore_size) > quantity_bytes(size):
                    size = snap.restore_size
            body = {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {
                    "name": sname,
                    "namespace": ns,
                    "labels": _labels(b, r.name, v.volume),
                    "ownerReferences": _owner(b),
                },
                "spec": {
                    "accessModes": list(cspec.get("accessModes") or ["ReadWriteOnce"]),
                    "volumeMode": cspec.get("volumeMode", "Filesystem"),
                    "resources": {"requests": {"storage": size}},
                    "dataSource": source,
                    **(
                        {"storageClassName": cspec["storageClassName"]}
                        if cspec.get("storageClassName")
                        else {}
                    ),
                },
            }
            b.do(Create(pvc_ref(ns, sname), body))
            all_bound = False
            continue
        if (staged.get("status") or {}).get("phase") != "Bound":
            all_bound = False
            warn = obs.claim_warnings.get(sname)
            if warn:
                r = r.model_copy(update={"message": f"staging claim {sname}: {warn}"})
                b.put_replica(r)
                if clone and ("clon" in warn.lower() and "support" in warn.lower()):
                    b.fail(
                        Reason.CLONE_NOT_SUPPORTED,
                        f"the CSI driver refused to clone claim {b.status.primary.claims[v.volume] if b.status.primary else ''}: {warn}",
                    )
                    return False
        elif not v.new_pv:
            r = _set_vol(b, r, v.volume, new_pv=str((staged.get("spec") or {}).get("volumeName")))
    job = _staging_job(b, r)
    if job is not None:
        existing = obs.jobs.get(meta(job)["name"])
        if existing is None:
            # The Job is the restore hook's runner and, for WaitForFirstConsumer, the consumer
            # whose scheduling to the replica's node makes the volume land there.
            b.do(Create(job_ref(ns, meta(job)["name"]), job))
            return False
        jcond = {
            c.get("type"): c.get("status") for c in (existing.get("status") or {}).get("conditions") or []
        }
        if jcond.get("Failed") == "True" or jcond.get("FailureTarget") == "True":
            r = r.model_copy(
                update={
                    "phase": "Failed",
                    "completed_at": b.now,
                    "message": f"staging Job {meta(job)['name']} failed: the restore did not succeed; the replica was not touched",
                }
            )
            b.put_replica(r)
            return False
        if jcond.get("Complete") != "True":
            return False
    return all_bound


def _step_replica(b: Builder, name: str, primary_changed: str | None) -> None:
    r = b.replica(name)
    limit = b.obs.resync.spec.timeouts.replica_seconds
    # Staging has not touched the replica: past the limit it is abandoned (cleanup removes the copy).
    if (
        r.phase in ("Restoring", "Detaching")
        and r.started_at
        and (b.obs.now - parse_ts(r.started_at)).total_seconds() >= limit
    ):
        _abandon(
            b,
            r,
            f"restore not finished after {limit}s (timeouts.replicaSeconds): {r.message}; the replica was not touched",
        )
        return
    if (
        r.phase == "RollingBack"
        and r.swap_started_at
        and (b.obs.now - parse_ts(r.swap_started_at)).total_seconds() >= 2 * limit
    ):
        b.put_replica(
            r.model_copy(
                update={
                    "phase": "Failed",
                    "completed_at": b.now,
                    "message": f"rollback failed: not back on its old volume(s) {', '.join(v.old_pv or '' for v in r.volumes)} "
                    f"after {2 * limit}s; they are kept (reclaim policy Retain); see docs/troubleshooting.md#RollbackFailed",
                }
            )
        )
        b.event(
            EventType.WARNING,
            Reason.ROLLBACK_FAILED,
            f"{r.name}: rollback did not complete; manual action needed",
        )
        return
    if r.phase == "Restoring":
        if primary_changed:
            _abandon(b, r, f"not started: {primary_changed}")
            return
        if _ensure_staged(b, b.replica(name), clone=b.obs.resync.spec.method == "Clone"):
            r = b.replica(name).model_copy(
                update={
                    "phase": "Detaching",
                    "message": "detaching the restored volumes and pre-binding them",
                }
            )
            b.put_replica(r)
        else:
            return
    if b.replica(name).phase == "Detaching":
        if primary_changed:
            _abandon(b, b.replica(name), f"not swapped: {primary_changed}")
            return
        if not _detach(b, b.replica(name)):
            return
        if not _retain_old(b, b.replica(name)):
            return
        pod = b.obs.pods.get(name)
        r = b.replica(name).model_copy(
            update={
                "phase": "Swapping",
                "swap_started_at": b.now,
                "old_pod_uid": uid(pod) or None,
                "message": "swapping: deleting the old claims and pod",
            }
        )
        b.put_replica(r)
        b.event(EventType.NORMAL, "SwapStarted", f"{name} is out of service while its volumes are swapped")
    if b.replica(name).phase == "Swapping":
        if not _swap(b, b.replica(name)):
            return
        b.put_replica(
            b.replica(name).model_copy(
                update={
                    "phase": "Verifying",
                    "message": "waiting for the new claims to bind and the pod to be Ready",
                }
            )
        )
    if b.replica(name).phase == "Verifying":
        _verify(b, b.replica(name))
    if b.replica(name).phase == "Finishing":
        _finish(b, b.replica(name))
    if b.replica(name).phase == "RollingBack":
        _rollback(b, b.replica(name))


def _detach(b: Builder, r: ReplicaStatus) -> bool:
    """Stage 2: keep the restored volume (Retain), free it from the staging claim, pre-bind it."""
    obs = b.obs
    ns = obs.resync.namespace
    done = True
    job_name = staging_job_name(obs.resync.name, r.name)
    for v in r.volumes:
        assert v.new_pv and v.staging_claim
        pv = obs.pvs.get(v.new_pv)
        if pv is None:
            r = r.model_copy(
                update={
                    "phase": "Failed",
                    "completed_at": b.now,
                    "message": f"restored volume {v.new_pv} disappeared; the replica was not touched",
                }
            )
            b.put_replica(r)
            return False
        policy = (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy")
        original = v.new_pv_reclaim_policy
        if original is None:
            original = (meta(pv).get("annotations") or {}).get(ANNOTATION_ORIGINAL_RECLAIM_POLICY) or policy
            r = _set_vol(b, r, v.volume, new_pv_reclaim_policy=original)
        if policy != "Retain":
            b.do(
                Patch(
                    pv_ref(v.new_pv),
                    {
                        "metadata": {"annotations": {ANNOTATION_ORIGINAL_RECLAIM_POLICY: original}},
                        "spec": {"persistentVolumeReclaimPolicy": "Retain"},
                    },
                )
            )
            done = False
            continue
        if job_name in obs.jobs and not deleting(obs.jobs[job_name]):
            b.do(Delete(job_ref(ns, job_name), uid=uid(obs.jobs[job_name])))
        staged = obs.claims.get(v.staging_claim)
        if staged is not None:
            if not deleting(staged):
                b.do(Delete(pvc_ref(ns, v.staging_claim), uid=uid(staged)))
            done = False
            continue
        phase = (pv.get("status") or {}).get("phase")
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        prebound = ref.get("name") == v.claim and ref.get("namespace") == ns and not ref.get("uid")
        if phase == "Released" or (ref and not prebound and ref.get("name") == v.staging_claim):
            b.do(_prebind_patch(pv, ns, v.claim))
            done = False
        elif not prebound or phase != "Available":
            done = False
    return done


def _prebind_patch(pv: Obj, ns: str, claim: str) -> Patch:
    """Point claimRef at a claim name with no uid: the PV is pre-bound (pv_controller syncVolume)."""
    ops: list[Obj] = [{"op": "test", "path": "/metadata/uid", "value": uid(pv)}]
    ref = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": claim}
    ops.append(
        {
            "op": "add" if not (pv.get("spec") or {}).get("claimRef") else "replace",
            "path": "/spec/claimRef",
            "value": ref,
        }
    )
    return Patch(pv_ref(meta(pv)["name"]), ops, JSON_PATCH)


def _retain_old(b: Builder, r: ReplicaStatus) -> bool:
    """Stage 3: the replica's current volumes get reclaim policy Retain, their policy recorded first."""
    obs = b.obs
    done = True
    for v in r.volumes:
        claim = obs.claims.get(v.claim)
        if claim is None or deleting(claim):
            r = r.model_copy(
                update={
                    "phase": "Failed",
                    "completed_at": b.now,
                    "message": f"claim {v.claim} vanished before the swap; nothing was swapped",
                }
            )
            b.put_replica(r)
            return False
        pv_name = str((claim.get("spec") or {}).get("volumeName") or "")
        pv = obs.pvs.get(pv_name)
        if pv is None:
            done = False
            continue
        if v.old_pv is None:
            policy = (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy")
            original = (meta(pv).get("annotations") or {}).get(ANNOTATION_ORIGINAL_RECLAIM_POLICY) or policy
            r = _set_vol(
                b, r, v.volume, old_pv=pv_name, old_pv_reclaim_policy=original, old_claim_uid=uid(claim)
            )
            v = next(x for x in r.volumes if x.volume == v.volume)
        if (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") != "Retain":
            b.do(
                Patch(
                    pv_ref(pv_name),
                    {
                        "metadata": {
                            "annotations": {ANNOTATION_ORIGINAL_RECLAIM_POLICY: v.old_pv_reclaim_policy}
                        },
                        "spec": {"persistentVolumeReclaimPolicy": "Retain"},
                    },
                )
            )
            done = False
    return done


def _swap(b: Builder, r: ReplicaStatus) -> bool:
    """Stage 4: delete the replica's claims, then its pod; the StatefulSet controller recreates both."""
    obs = b.obs
    ns = obs.resync.namespace
    claims_going = True
    for v in r.volumes:
        c = obs.claims.get(v.claim)
        if c is not None and uid(c) == v.old_claim_uid and not deleting(c):
            b.do(Delete(pvc_ref(ns, v.claim), uid=v.old_claim_uid))
            claims_going = False
    if not claims_going:
        return False
    pod = obs.pods.get(r.name)
    if pod is not None and uid(pod) == r.old_pod_uid and not deleting(pod):
        b.do(Delete(pod_ref(ns, r.name), uid=r.old_pod_uid))
    return True


def _verify(b: Builder, r: ReplicaStatus) -> None:
    obs, spec = b.obs, b.obs.resync.spec
    ns = obs.resync.namespace
    started = parse_ts(r.swap_started_at or b.now)
    elapsed = (obs.now - started).total_seconds()
    # The swap's deletions are repeated until observed: a crash may have cut them short.
    _swap(b, r)
    ok = True
    problems: list[str] = []
    for v in r.volumes:
        c = obs.claims.get(v.claim)
        if c is None or uid(c) == v.old_claim_uid:
            ok = False
            problems.append(f"claim {v.claim} not recreated yet")
            if c is None and elapsed >= CLAIM_RECREATE_GRACE_SECONDS:
                body = _claim_for(b, r, v.volume, v.claim, v.new_pv or "")
                if body is not None:
                    b.do(Create(pvc_ref(ns, v.claim), body))
            continue
        bound_to = (c.get("spec") or {}).get("volumeName")
        if bound_to and bound_to != v.new_pv:
            # Another volume got the claim: never let the replica run on it.
            r = r.model_copy(
                update={
                    "phase": "RollingBack",
                    "message": f"claim {v.claim} bound to {bound_to}, not to the restored {v.new_pv}; rolling back",
                }
            )
            b.put_replica(r)
            b.event(EventType.WARNING, "RollingBack", f"{r.name}: {r.message}")
            return
        if (c.get("status") or {}).get("phase") != "Bound":
            ok = False
            problems.append(f"claim {v.claim} not Bound yet")
    pod = obs.pods.get(r.name)
    if pod is None or uid(pod) == r.old_pod_uid:
        ok = False
        problems.append(f"pod {r.name} not recreated yet")
    elif not pod_ready(pod):
        ok = False
        problems.append(f"pod {r.name} not Ready yet")
    if ok:
        b.put_replica(
            r.model_copy(update={"phase": "Finishing", "message": "verified; restoring reclaim policies"})
        )
        return
    if elapsed >= spec.timeouts.replica_seconds:
        r = r.model_copy(
            update={
                "phase": "RollingBack",
                "message": f"not verified after {int(elapsed)}s ({'; '.join(problems)}); rolling back to the old volumes",
            }
        )
        b.put_replica(r)
        b.event(EventType.WARNING, "RollingBack", f"{r.name}: {r.message}")
        return
    b.put_replica(r.model_copy(update={"message": "; ".join(problems)}))


def _claim_for(b: Builder, r: ReplicaStatus, volume: str, claim: str, pv_name: str) -> Obj | None:
    tmpl = _replica_pod_template_claim(b, volume)
    if tmpl is None:
        return None
    spec = dict(tmpl.get("spec") or {})
    spec["volumeName"] = pv_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": claim,
            "namespace": b.obs.resync.namespace,
            "labels": dict(meta(tmpl).get("labels") or {}),
        },
        "spec": spec,
    }


def _finish(b: Builder, r: ReplicaStatus) -> None:
    """Stage 6: the new volume gets its own reclaim policy back; the old one is kept or deleted."""
    spec = b.obs.resync.spec
    done = True
    for v in r.volumes:
        new = b.obs.pvs.get(v.new_pv or "")
        if new is not None:
            want = v.new_pv_reclaim_policy or "Delete"
            if (new.get("spec") or {}).get(
                "persistentVolumeReclaimPolicy"
            ) != want or ANNOTATION_ORIGINAL_RECLAIM_POLICY in (meta(new).get("annotations") or {}):
                b.do(
                    Patch(
                        pv_ref(meta(new)["name"]),
                        {
                            "metadata": {"annotations": {ANNOTATION_ORIGINAL_RECLAIM_POLICY: None}},
                            "spec": {"persistentVolumeReclaimPolicy": want},
                        },
                    )
                )
                done = False
        old = b.obs.pvs.get(v.old_pv or "")
        if old is None:
            continue
        if spec.old_volumes == "Retain":
            labels = meta(old).get("labels") or {}
            want_labels = {
                LABEL_RESYNC: label_value(b.obs.resync.name),
                LABEL_REPLICA: label_value(r.name),
                LABEL_VOLUME: label_value(v.volume),
            }
            if any(labels.get(k) != val for k, val in want_labels.items()):
                b.do(Patch(pv_ref(meta(old)["name"]), {"metadata": {"labels": want_labels}}))
                done = False
        elif (old.get("spec") or {}).get("persistentVolumeReclaimPolicy") != "Delete":
            # Released with policy Delete: the PV controller deletes the volume and its data.
            b.do(Patch(pv_ref(meta(old)["name"]), {"spec": {"persistentVolumeReclaimPolicy": "Delete"}}))
            done = False
    if done:
        b.put_replica(
            r.model_copy(
                update={
                    "phase": "Completed",
                    "completed_at": b.now,
                    "message": f"running on the restored volume(s) {', '.join(v.new_pv or '' for v in r.volumes)}; old volume(s) {'retained' if spec.old_volumes == 'Retain' else 'deleted'}: {', '.join(v.old_pv or '' for v in r.volumes)}",
                }
            )
        )
        b.event(
            EventType.NORMAL,
            "ReplicaResynced",
            f"{r.name} runs on a copy of the primary; old volumes {', '.join(v.old_pv or '' for v in r.volumes)} {'retained' if spec.old_volumes == 'Retain' else 'deleted'}",
        )


def _rollback(b: Builder, r: ReplicaStatus) -> None:
    """Put the replica back on its old volumes with the same primitive: pre-bind, then swap."""
    obs = b.obs
    ns = obs.resync.namespace
    settled = True
    for v in r.volumes:
        old = obs.pvs.get(v.old_pv or "")
        if old is None:
            b.put_replica(
                r.model_copy(
                    update={
                        "phase": "Failed",
                        "completed_at": b.now,
                        "message": f"rollback failed: old volume {v.old_pv} is gone",
                    }
                )
            )
            return
        c = obs.claims.get(v.claim)
        bound_to_old = c is not None and (c.get("spec") or {}).get("volumeName") == v.old_pv
        if bound_to_old:
            assert c is not None
            if (c.get("status") or {}).get("phase") != "Bound":
                settled = False
            continue
        settled = False
        ref = (old.get("spec") or {}).get("claimRef") or {}
        if ref.get("uid") or ref.get("name") != v.claim:
            b.do(_prebind_patch(old, ns, v.claim))
            continue
        if c is not None and not deleting(c):
            b.do(Delete(pvc_ref(ns, v.claim), uid=uid(c)))
    pod = obs.pods.get(r.name)
    if not settled:
        if (
            pod is not None
            and not deleting(pod)
            and any((obs.claims.get(v.claim) is None or deleting(obs.claims.get(v.claim))) for v in r.volumes)
        ):
            b.do(Delete(pod_ref(ns, r.name), uid=uid(pod)))
        return
    if not pod_ready(pod):
        return
    b.put_replica(
        r.model_copy(
            update={
                "phase": "Failed",
                "completed_at": b.now,
                "message": f"rolled back: {r.name} runs on its old volume(s) {', '.join(v.old_pv or '' for v in r.volumes)} again; {r.message}",
            }
        )
    )
    b.event(EventType.WARNING, Reason.REPLICA_ROLLED_BACK, f"{r.name} rolled back to its old volumes")


def _abandon(b: Builder, r: ReplicaStatus, why: str) -> None:
    """A replica that was not swapped: mark it failed; cleanup removes what was staged for it."""
    b.put_replica(r.model_copy(update={"phase": "Failed", "completed_at": b.now, "message": why}))


# -- cleanup: temporary objects go on completion, failure and deletion ------------------------
def _cleanup(b: Builder) -> bool:
    """Remove what the resync created and undo what it changed on volumes it did not swap in.

    Returns True once nothing is left to do.
    """
    obs = b.obs
    ns = obs.resync.namespace
    clean = True
    for name, job in obs.jobs.items():
        clean = False
        if not deleting(job):
            b.do(Delete(job_ref(ns, name), uid=uid(job)))
    for r in b.status.replicas:
        if r.phase in ("Swapping", "Verifying", "Finishing", "RollingBack"):
            clean = False  # never cleaned under a swap in flight
            continue
        swapped = r.phase == "Completed"
        for v in r.volumes:
            staged = obs.claims.get(v.staging_claim or "")
            # An old volume kept for a swap that never happened, or that the replica was rolled back
            # onto, gets its own policy back -- only once it is Bound again: a Released old volume
            # (a failed rollback) keeps Retain, or its data would go with it.
            old = obs.pvs.get(v.old_pv or "")
            if (
                not swapped
                and old is not None
                and v.old_pv_reclaim_policy
                and (old.get("status") or {}).get("phase") == "Bound"
                and (old.get("spec") or {}).get("persistentVolumeReclaimPolicy") != v.old_pv_reclaim_policy
            ):
                b.do(
                    Patch(
                        pv_ref(meta(old)["name"]),
                        {
                            "metadata": {"annotations": {ANNOTATION_ORIGINAL_RECLAIM_POLICY: None}},
                            "spec": {"persistentVolumeReclaimPolicy": v.old_pv_reclaim_policy},
                        },
                    )
                )
                clean = False
            if swapped:
                continue
            # A restored copy that was not swapped in is deleted with its data.
            new = obs.pvs.get(v.new_pv or "")
            if new is not None:
                clean = False
                _discard_copy(
                    b,
                    r,
                    v.volume,
                    v.staging_claim or staging_claim_name(obs.resync.name, r.name, v.volume),
                    new,
                    staged,
                )
            elif staged is not None:
                clean = False
                if not deleting(staged):
                    b.do(Delete(pvc_ref(ns, meta(staged)["name"]), uid=uid(staged)))
    # Staging claims of replicas the status does not know yet (a crash before it was written).
    known = {v.staging_claim for r in b.status.replicas for v in r.volumes}
    for cname, c in obs.claims.items():
        if (meta(c).get("labels") or {}).get(LABEL_RESYNC) == label_value(
            obs.resync.name
        ) and cname not in known:
            clean = False
            if not deleting(c):
                b.do(Delete(pvc_ref(ns, cname), uid=uid(c)))
    # No restore needs the snapshots any more (a claim still being restored from one is protected
    # by the snapshotter's volumesnapshot-as-source-protection finalizer).
    for sname, snap in obs.snapshots.items():
        clean = False
        if not deleting(snap):
            b.do(Delete(snapshot_ref(ns, sname), uid=uid(snap)))
    if not clean:
        b.again(1.0)
    return clean


def _discard_copy(
    b: Builder, r: ReplicaStatus, volume: str, staging: str, pv: Obj, staged: Obj | None
) -> None:
    """Delete a restored volume that was never swapped in, through a claim, so its data goes too.

    A pre-bound or Released volume is bound again to its staging claim name, that claim is made
    (it binds to the volume, never provisions), the volume's reclaim policy becomes Delete, and the
    claim is deleted: the PV controller then deletes the volume and its data (``reclaimVolume``).
    """
    ns = b.obs.resync.namespace
    spec = pv.get("spec") or {}
    ref = spec.get("claimRef") or {}
    name = meta(pv)["name"]
    if (
        staged is not None
        and (staged.get("spec") or {}).get("volumeName") == name
        and (staged.get("status") or {}).get("phase") == "Bound"
    ):
        if spec.get("persistentVolumeReclaimPolicy") != "Delete":
            b.do(
                Patch(
                    pv_ref(name),
                    {
                        "metadata": {"annotations": {ANNOTATION_ORIGINAL_RECLAIM_POLICY: None}},
                        "spec": {"persistentVolumeReclaimPolicy": "Delete"},
                    },
                )
            )
        elif not deleting(staged):
            b.do(Delete(pvc_ref(ns, staging), uid=uid(staged)))
        return
    if staged is not None:
        if not deleting(staged) and (staged.get("status") or {}).get("phase") == "Bound":
            b.do(Delete(pvc_ref(ns, staging), uid=uid(staged)))
        return
    if ref.get("name") != staging or ref.get("uid"):
        if (pv.get("status") or {}).get("phase") in ("Available", "Released"):
            b.do(_prebind_patch(pv, ns, staging))
        return
    body = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": staging,
            "namespace": ns,
            "labels": _labels(b, r.name, volume),
            "ownerReferences": _owner(b),
        },
        "spec": {
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "resources": {"requests": {"storage": str((spec.get("capacity") or {}).get("storage", "1"))}},
            "volumeName": name,
            "storageClassName": spec.get("storageClassName", ""),
        },
    }
    b.do(Create(pvc_ref(ns, staging), body))


# -- deletion mid-run ------------------------------------------------------------------------
def _deletion(b: Builder) -> Plan:
    """Deleting a ClusterResync: finish or roll back the swap in flight, clean up, then let it go."""
    in_flight = False
    for r in list(b.status.replicas):
        if r.phase in ("Swapping", "Verifying", "Finishing", "RollingBack"):
            in_flight = True
            _step_replica(b, r.name, None)
        elif r.phase in ("Pending", "Restoring", "Detaching"):
            _abandon(b, r, "not swapped: the ClusterResync was deleted")
    if in_flight or any(
        r.phase in ("Swapping", "Verifying", "Finishing", "RollingBack") for r in b.status.replicas
    ):
        b.progressing(Reason.CLEANING_UP, "deleted: finishing the swap in flight before cleaning up")
        b.again(1.0)
        return b.plan()
    if b.status.phase not in FINISHED:
        b.fail(
            Reason.DELETED,
            "the ClusterResync was deleted before it finished; swaps in flight were completed or rolled back",
        )
    if not _cleanup(b):
        return b.plan()
    return b.plan(remove_finalizer=True)


def finalizers_of(obj: Obj) -> Iterable[str]:
    return meta(obj).get("finalizers") or []


__all__ = ["FINALIZER", "plan"]
