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

from .conditions import ConditionType, EventReason, EventType, Reason
from .models import (
    ANNOTATION_OLD_CLAIM_UID,
    ANNOTATION_OLD_POD_UID,
    ANNOTATION_ORIGINAL_RECLAIM_POLICY,
    ANNOTATION_SWAPPED_AT,
    FINALIZER,
    LABEL_REPLICA,
    LABEL_RESYNC,
    LABEL_RESYNC_UID,
    LABEL_VOLUME,
    LABEL_VOLUME_ROLE,
    Condition,
    LabelSelector,
    PlannedAction,
    PrimaryStatus,
    ReplicaStatus,
    SnapshotStatus,
    VolumeStatus,
)
from .state import (
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
# From the deletion of the replica's claims to the end of its verification or rollback.
IN_FLIGHT = ("Swapping", "Verifying", "Finishing", "RollingBack")
NOT_SWAPPED = ("Pending", "Restoring", "Detaching")
FINISHED = ("Completed", "Failed")
REPLICA_DONE = ("Completed", "Failed", "Skipped")
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
    b = Builder(recover(obs))
    if obs.resync.deleting:
        return _deletion(b)
    if b.status.phase in FINISHED:
        _skip_not_swapped(b)
        _drive_in_flight(b)
        if not _in_flight(b):
            _cleanup(b)
        return b.plan()
    if b.status.phase == "Pending":
        _pending(b)
    if b.status.phase == "Preflight":
        _preflight(b)
    if b.status.phase == "Snapshotting":
        _snapshotting(b)
    if b.status.phase == "Resyncing":
        _resyncing(b)
    if b.status.phase in FINISHED and not _in_flight(b):
        _cleanup(b)
    return b.plan()


def _in_flight(b: Builder) -> list[str]:
    """Replicas between the deletion of their claims and the end of their verification or rollback."""
    return [r.name for r in b.status.replicas if r.phase in IN_FLIGHT]


def _skip_not_swapped(b: Builder) -> None:
    """Once the resync has failed, a replica not swapped yet never will be: Skipped, untouched,
    under the reason the resync failed with."""
    failed = next(
        (c for c in b.status.conditions if c.type == ConditionType.FAILED and c.status == "True"), None
    )
    if failed is None:
        return
    for r in b.status.replicas:
        if r.phase in NOT_SWAPPED:
            _skip(
                b,
                r,
                Reason(failed.reason),
                f"not swapped: the resync failed ({failed.reason}); the replica was not touched",
            )


def _drive_in_flight(b: Builder) -> None:
    """A swap in flight is always carried to its end (verified, or rolled back): a failure of the
    resync, for whatever reason, never leaves a replica half-swapped."""
    for name in _in_flight(b):
        _step_replica(b, name, None)
    if _in_flight(b):
        b.again(1.0)


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
    # Every named volume is one of the target's volumeClaimTemplates: each pod has a claim of its
    # own. A volume every pod shares (a plain persistentVolumeClaim volume in the pod template) is
    # the primary's too: swapping it would delete the primary's data.
    templates = {
        str(meta(t).get("name")) for t in ((obs.target.get("spec") or {}).get("volumeClaimTemplates") or [])
    }
    for v in spec.volumes:
        if v not in templates and claim_of(primary, v) is not None:
            users = sorted(
                {
                    u
                    for p in [pname, *replicas]
                    for u in obs.claim_users.get(claim_of(obs.pods[p], v) or "", [])
                }
            )
            b.fail(
                Reason.VOLUME_NOT_PER_REPLICA,
                f"volume {v} is not a volumeClaimTemplate of {spec.target.kind} {spec.target.name} "
                f"(templates: {', '.join(sorted(templates)) or 'none'})"
                + (f"; its claim is used by pods {', '.join(users)}" if users else "")
                + ": only a volume each pod has its own claim for can be resynced; nothing was touched",
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
            users = sorted(set(obs.claim_users.get(cn, [])) | {pod_name})
            if len(users) > 1:
                b.fail(
                    Reason.VOLUME_NOT_PER_REPLICA,
                    f"claim {cn} (volume {v} of pod {pod_name}) is used by pods {', '.join(users)}: "
                    "a claim shared by several pods cannot be swapped without taking it from the others; "
                    "nothing was touched",
                )
                return
            claims[pod_name][v] = cn
    # A copy mechanism exists for the claims' driver.
    for v in spec.volumes:
        c = obs.claims[claims[pname][v]]
        sc_name = (c.get("spec") or {}).get("storageClassName") or ""
        sc = obs.storage_classes.get(sc_name)
        driver = str(sc.get("provisioner", "")) if sc else ""
        if spec.method == "Snapshot":
            if not obs.snapshot_api:
                b.fail(
                    Reason.MISSING_API,
                    "the server does not serve snapshot.storage.k8s.io/v1 (no VolumeSnapshot CRDs): install the "
                    "CSI snapshot CRDs and snapshot controller, or use method: Clone; nothing was touched",
                )
                return
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
            target_uid=uid(obs.target),
            claims=claims[pname],
            volumes={
                v: str((obs.claims[cn].get("spec") or {}).get("volumeName") or "")
                for v, cn in claims[pname].items()
            },
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
                    action=f"snapshot claim {claims[primary][v]} of {primary} as VolumeSnapshot {snapshot_name(b.obs.resync.uid, v)}"
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
                    action=f"stage a {how} {v} in claim {staging_claim_name(b.obs.resync.uid, r, v)}, then pre-bind its volume to {claims[r][v]}",
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
    out = {
        LABEL_RESYNC: label_value(b.obs.resync.name),
        LABEL_RESYNC_UID: b.obs.resync.uid,
        "app.kubernetes.io/managed-by": "clusterresync",
    }
    if replica:
        out[LABEL_REPLICA] = label_value(replica)
    if volume:
        out[LABEL_VOLUME] = label_value(volume)
    return out


def owned(b: Builder, o: Obj | None) -> bool:
    """Whether an object carries this resync's uid: the only test for adopting, changing, deleting."""
    return bool(o) and (meta(o).get("labels") or {}).get(LABEL_RESYNC_UID) == b.obs.resync.uid  # type: ignore[arg-type]


def foreign(b: Builder, o: Obj | None) -> str | None:
    """The name of another, existing ClusterResync that holds this object, or None.

    A uid label of a resync that no longer exists is stale: it holds nothing.
    """
    held_by = (meta(o).get("labels") or {}).get(LABEL_RESYNC_UID) if o else None
    if not held_by or held_by == b.obs.resync.uid:
        return None
    for other in b.obs.other_resyncs:
        if meta(other).get("uid") == held_by:
            return str(meta(other).get("name"))
    return None


def _pv_patch(
    b: Builder,
    pv: Obj,
    *,
    replica: str,
    volume: str,
    role: Literal["old", "copy"] | None,
    policy: str | None = None,
    annotations: dict[str, str | None] | None = None,
) -> Patch:
    """The one way the operator changes a PersistentVolume: a merge patch that carries the
    resourceVersion it was planned from (the server refuses it with 409 if the PV changed since:
    the reconcile then starts again from a fresh observation) and marks the PV with this resync's
    uid (``role``) or, with ``role=None``, gives it back (its labels and annotations removed)."""
    m = meta(pv)
    if role is None:
        labels: dict[str, str | None] = {
            k: None
            for k in (LABEL_RESYNC, LABEL_RESYNC_UID, LABEL_REPLICA, LABEL_VOLUME, LABEL_VOLUME_ROLE)
            if k in (m.get("labels") or {})
        }
        notes: dict[str, str | None] = {
            k: None
            for k in (
                ANNOTATION_ORIGINAL_RECLAIM_POLICY,
                ANNOTATION_OLD_CLAIM_UID,
                ANNOTATION_OLD_POD_UID,
                ANNOTATION_SWAPPED_AT,
            )
            if k in (m.get("annotations") or {})
        }
    else:
        labels = {**_labels(b, replica, volume), LABEL_VOLUME_ROLE: role}
        labels.pop("app.kubernetes.io/managed-by", None)
        notes = {}
    notes.update(annotations or {})
    body: Obj = {"metadata": {"resourceVersion": m.get("resourceVersion")}}
    if labels:
        body["metadata"]["labels"] = labels
    if notes:
        body["metadata"]["annotations"] = notes
    if policy is not None:
        body["spec"] = {"persistentVolumeReclaimPolicy": policy}
    return Patch(pv_ref(str(m["name"])), body)


def _pv_marked(b: Builder, pv: Obj, role: str) -> bool:
    labels = meta(pv).get("labels") or {}
    return owned(b, pv) and labels.get(LABEL_VOLUME_ROLE) == role


def policy_of(pv: Obj | None) -> str | None:
    return (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") if pv else None


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
        # The output may hold secrets: only the exit code, unless the spec opts into an excerpt.
        why = f"exit code {outcome.exit_code}" if outcome.exit_code is not None else outcome.error
        msg = f"{hook_name} hook in {b.status.primary.pod_name} failed ({why})"
        if hook.output_excerpt_bytes and outcome.output:
            excerpt = outcome.output.encode()[-hook.output_excerpt_bytes :].decode(errors="replace")
            msg += f"; last {hook.output_excerpt_bytes} bytes of its output: {excerpt.strip()}"
        b.fail(on_failure, msg)
        return False
    b.set(hooks_done=[*b.status.hooks_done, hook_name])
    b.event(
        EventType.NORMAL,
        EventReason.HOOK_SUCCEEDED,
        f"{hook_name} hook in {b.status.primary.pod_name} succeeded",
    )
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
            name = snapshot_name(obs.resync.uid, v)
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
        EventReason.SNAPSHOTS_READY,
        f"copies of {', '.join(spec.volumes)} from {b.status.primary.pod_name} are ready",
    )


# -- Resyncing: the per-replica machine ------------------------------------------------------
def _target_gone(b: Builder) -> str | None:
    t = b.obs.target
    spec = b.obs.resync.spec
    if t is None:
        return f"{spec.target.kind} {spec.target.name} was deleted"
    if deleting(t):
        return f"{spec.target.kind} {spec.target.name} is being deleted"
    if b.status.primary and uid(t) and b.status.primary.target_uid and uid(t) != b.status.primary.target_uid:
        return f"{spec.target.kind} {spec.target.name} was deleted and created again"
    return None


def _scaled_away(b: Builder, name: str) -> str | None:
    """Why a replica is no longer part of the target (a scale-down), or None."""
    t = b.obs.target
    if t is None:
        return None
    tspec = t.get("spec") or {}
    start = int((tspec.get("ordinals") or {}).get("start") or 0)
    replicas = tspec.get("replicas")
    count = int(replicas) if replicas is not None else 1
    if start <= ordinal(name) < start + count:
        return None
    return f"{b.obs.resync.spec.target.kind} {b.obs.resync.spec.target.name} was scaled to {count} replica(s): {name} was removed"


def _stop_cause(b: Builder) -> tuple[Reason, str] | None:
    """Why no further replica may be started or swapped, or None. Recomputed after every replica
    step: a replica that fails stops the next one in the same pass."""
    gone = _target_gone(b)
    if gone:
        return Reason.TARGET_DELETED, gone
    changed = _primary_changed(b)
    if changed:
        return Reason.PRIMARY_CHANGED, changed
    failed = sorted(
        (r for r in b.status.replicas if r.phase == "Failed"), key=lambda r: (r.completed_at or "", r.name)
    )
    if failed:
        r = failed[0]
        return Reason(r.reason or Reason.RESTORE_FAILED), f"replica {r.name} failed: {r.message}"
    return None


def _resyncing(b: Builder) -> None:
    spec = b.obs.resync.spec
    for name in [r.name for r in b.status.replicas]:
        r = b.replica(name)
        if r.phase in REPLICA_DONE:
            continue
        stop = _stop_cause(b)
        if r.phase == "Pending":
            active = sum(1 for x in b.status.replicas if x.phase in ACTIVE_REPLICA_PHASES)
            if stop or active >= spec.max_parallel:
                continue
            away = _scaled_away(b, name)
            if away:
                _skip(b, r, Reason.TARGET_SCALED_DOWN, f"not started: {away}")
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
            b.event(EventType.NORMAL, EventReason.REPLICA_STARTED, f"re-provisioning {r.name}")
        _step_replica(b, name, stop)
    # The outcome, once nothing is in flight.
    reps = b.status.replicas
    if any(r.phase in ACTIVE_REPLICA_PHASES for r in reps):
        # Said on every pass, so that a reason of a passing trouble (Retrying, StatusRebuilt, a
        # refusal during a swap) gives way once the run moves again.
        moving = [f"{r.name} {r.phase}" for r in reps if r.phase in ACTIVE_REPLICA_PHASES]
        done_n = sum(1 for r in reps if r.phase == "Completed")
        b.progressing(
            Reason.RESYNCING, f"{done_n}/{len(reps)} replica(s) done; in progress: {', '.join(moving)}"
        )
        b.again(1.0)
        return
    stop = _stop_cause(b)
    bad = [r for r in reps if r.phase in ("Failed", "Skipped")]
    if stop or bad:
        for r in reps:
            if r.phase == "Pending":
                _skip(
                    b,
                    r,
                    stop[0] if stop else Reason.RESTORE_FAILED,
                    f"not started: {stop[1] if stop else ''}",
                )
        reps = b.status.replicas
        done = [r.name for r in reps if r.phase == "Completed"]
        first = sorted(bad, key=lambda r: (r.completed_at or "", r.name))
        reason = stop[0] if stop else Reason(first[0].reason or Reason.RESTORE_FAILED)
        details = "; ".join(f"{r.name}: {r.message}" for r in reps if r.phase in ("Failed", "Skipped"))
        b.fail(reason, f"{stop[1] + '; ' if stop else ''}done: {', '.join(done) or 'none'}; {details}")
        return
    if all(r.phase == "Completed" for r in reps):
        primary = b.status.primary.pod_name if b.status.primary else "the primary"
        msg = f"{len(reps)} replica(s) re-provisioned from {primary} and verified"
        known = {r.name for r in reps} | {primary}
        since = parse_ts(b.status.started_at) if b.status.started_at else b.obs.now
        new = sorted(
            (
                n
                for n, p in b.obs.pods.items()
                if n not in known
                and spec.replicas is None
                and not deleting(p)
                and parse_ts(str(meta(p).get("creationTimestamp") or ts(b.obs.now))) >= since
            ),
            key=ordinal,
        )
        if new:
            b.complete(
                Reason.NEW_PODS_NOT_RESYNCED,
                f"{msg}; {', '.join(new)} joined the {spec.target.kind} after preflight and {'were' if len(new) > 1 else 'was'} "
                "not resynced: apply another ClusterResync for them",
            )
            return
        b.complete(Reason.RESYNC_SUCCEEDED, msg)
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
                "persistentVolumeClaim": {"claimName": staging_claim_name(obs.resync.uid, r.name, v.volume)},
            }
        )
    hook = spec.hooks.restore if spec.hooks else None
    # The Job runs as the replica runs (its pod securityContext, and its container's user and
    # group), so the restored files are read and written as the replica's own -- and a namespace
    # that admits the replica admits the Job. On top, what the restricted Pod Security profile asks
    # that does not change who the process is (pod-security-admission policy/check_*.go: no
    # privilege escalation, every capability dropped, the RuntimeDefault seccomp profile).
    pod_sc = dict(pspec.get("securityContext") or {})
    pod_sc.setdefault("seccompProfile", {"type": "RuntimeDefault"})
    replica_ctr: Obj = next(iter(pspec.get("containers") or []), {})
    ctr_sc = {
        k: v
        for k, v in (replica_ctr.get("securityContext") or {}).items()
        if k in ("runAsUser", "runAsGroup", "runAsNonRoot")
    }
    container: Obj = {
        "name": "restore",
        "image": hook.image if hook else image,
        "command": list(hook.command) if hook else ["sh", "-c", "exit 0"],
        "volumeMounts": mounts,
        "securityContext": {
            **ctr_sc,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
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
    pod_spec["securityContext"] = pod_sc
    pod_spec["automountServiceAccountToken"] = False
    name = staging_job_name(obs.resync.uid, r.name)
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
    obs, spec = b.obs, b.obs.resync.spec
    ns = obs.resync.namespace
    all_bound = True
    for v in r.volumes:
        sname = staging_claim_name(obs.resync.uid, r.name, v.volume)
        if v.staging_claim != sname:
            r = _set_vol(b, r, v.volume, staging_claim=sname)
        staged = obs.claims.get(sname)
        if staged is None:
            replica_claim = obs.claims.get(v.claim)
            if replica_claim is None:
                _fail_replica(
                    b, r, Reason.RESTORE_FAILED, f"claim {v.claim} is gone; the replica was not touched"
                )
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
        if not owned(b, staged):
            _name_conflict(b, r, f"claim {sname} exists")
            return False
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
            what = "the restore hook" if spec.hooks and spec.hooks.restore else "the staging Job"
            _fail_replica(
                b,
                r,
                Reason.RESTORE_FAILED,
                f"staging Job {meta(job)['name']} failed ({what}; see kubectl describe job and its pod's logs); "
                "the replica was not touched",
            )
            return False
        if jcond.get("Complete") != "True":
            return False
    return all_bound


def _fail_replica(b: Builder, r: ReplicaStatus, reason: Reason, message: str) -> None:
    """The one way a replica fails: its record, and a Warning Event naming it."""
    b.put_replica(
        b.replica(r.name).model_copy(
            update={"phase": "Failed", "completed_at": b.now, "reason": str(reason), "message": message}
        )
    )
    b.event(EventType.WARNING, EventReason.REPLICA_FAILED, f"{r.name}: {reason}: {message}")


def _skip(b: Builder, r: ReplicaStatus, reason: Reason, message: str) -> None:
    """A replica that was not swapped and will not be: untouched (its copy, if any, is discarded)."""
    b.put_replica(
        b.replica(r.name).model_copy(
            update={"phase": "Skipped", "completed_at": b.now, "reason": str(reason), "message": message}
        )
    )


def _kept(b: Builder, r: ReplicaStatus) -> str:
    """Where the volumes of a swapped replica are, as observed, for a message."""

    def where(name: str | None, what: str) -> str:
        pv = b.obs.pvs.get(name or "")
        if pv is None:
            return f"{what} {name or '(none)'} is gone"
        phase = (pv.get("status") or {}).get("phase", "")
        return f"{what} {name} is kept ({phase}, reclaim policy {policy_of(pv)})"

    parts = []
    for v in r.volumes:
        c = b.obs.claims.get(v.claim)
        bound = (c.get("spec") or {}).get("volumeName") if c else None
        on = f"claim {v.claim} is bound to {bound}" if bound else f"claim {v.claim} is not bound"
        parts.append(f"{v.volume}: {where(v.old_pv, 'old volume')}, {where(v.new_pv, 'copy')}, {on}")
    return "; ".join(parts)


def _step_replica(b: Builder, name: str, stop: tuple[Reason, str] | None) -> None:
    """One replica's next step. ``stop``: why no replica may be swapped any more (the ones in
    flight are carried to their end; the ones not swapped yet are skipped)."""
    r = b.replica(name)
    spec = b.obs.resync.spec
    limit = spec.timeouts.replica_seconds
    if r.phase in NOT_SWAPPED and r.phase != "Pending":
        away = _scaled_away(b, name)
        if away or stop:
            _skip(
                b,
                r,
                Reason.TARGET_SCALED_DOWN if away else stop[0] if stop else Reason.RESTORE_FAILED,
                f"not swapped: {away or (stop[1] if stop else '')}; the replica was not touched",
            )
            return
        # Staging may take replicaSeconds, plus the restore hook's own time limit when there is one.
        hook = spec.hooks.restore if spec.hooks else None
        staging_limit = limit + (hook.timeout_seconds if hook else 0)
        if r.started_at and (b.obs.now - parse_ts(r.started_at)).total_seconds() >= staging_limit:
            _fail_replica(
                b,
                r,
                Reason.RESTORE_FAILED,
                f"restore not finished after {staging_limit}s (timeouts.replicaSeconds"
                + (" + hooks.restore.timeoutSeconds" if hook else "")
                + f"): {r.message}; the replica was not touched",
            )
            return
    if r.phase in ("Swapping", "Verifying", "RollingBack"):
        # Without a target (deleted, or this replica scaled away) nothing will recreate the pod:
        # stop here, touch nothing more, keep both volumes.
        gone = _target_gone(b)
        away = _scaled_away(b, name)
        if gone or away:
            _fail_replica(
                b,
                r,
                Reason.TARGET_DELETED if gone else Reason.TARGET_SCALED_DOWN,
                f"{gone or away} during its swap; {_kept(b, r)}; see docs/troubleshooting.md#"
                + ("targetdeleted" if gone else "targetscaleddown"),
            )
            return
    if (
        r.phase == "RollingBack"
        and r.swap_started_at
        and (b.obs.now - parse_ts(r.swap_started_at)).total_seconds() >= 2 * limit
    ):
        _fail_replica(
            b,
            r,
            Reason.ROLLBACK_FAILED,
            f"rollback failed: not back on its old volume(s) after {2 * limit}s; {_kept(b, r)}; "
            "see docs/troubleshooting.md#rollbackfailed",
        )
        return
    if r.phase == "Restoring":
        if not _ensure_staged(b, b.replica(name), clone=spec.method == "Clone"):
            return
        if b.replica(name).phase != "Restoring":
            return
        b.put_replica(
            b.replica(name).model_copy(
                update={
                    "phase": "Detaching",
                    "message": "detaching the restored volumes and pre-binding them",
                }
            )
        )
    if b.replica(name).phase == "Detaching":
        if not _detach(b, b.replica(name)):
            return
        if b.replica(name).phase != "Detaching" or not _retain_old(b, b.replica(name)):
            return
        if b.replica(name).phase != "Detaching":
            return
        # The last check before the replica goes out of service: nothing has stopped the run.
        stop = _stop_cause(b)
        if stop:
            _skip(b, b.replica(name), stop[0], f"not swapped: {stop[1]}; the replica was not touched")
            return
        pod = b.obs.pods.get(name)
        b.put_replica(
            b.replica(name).model_copy(
                update={
                    "phase": "Swapping",
                    "swap_started_at": b.now,
                    "old_pod_uid": uid(pod) or None,
                    "message": "swapping: deleting the old claims and pod",
                }
            )
        )
        b.event(
            EventType.NORMAL,
            EventReason.SWAP_STARTED,
            f"{name} is out of service while its volumes are swapped",
        )
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
    job_name = staging_job_name(obs.resync.uid, r.name)
    for v in r.volumes:
        assert v.new_pv and v.staging_claim
        pv = obs.pvs.get(v.new_pv)
        if pv is None:
            _fail_replica(
                b,
                r,
                Reason.RESTORE_FAILED,
                f"restored volume {v.new_pv} disappeared; the replica was not touched",
            )
            return False
        holder = foreign(b, pv)
        if holder:
            _name_conflict(b, r, f"restored volume {v.new_pv} is held by ClusterResync {holder}")
            return False
        policy = policy_of(pv)
        original = v.new_pv_reclaim_policy
        if original is None:
            original = (meta(pv).get("annotations") or {}).get(ANNOTATION_ORIGINAL_RECLAIM_POLICY) or policy
            r = _set_vol(b, r, v.volume, new_pv_reclaim_policy=original)
        if policy != "Retain" or not _pv_marked(b, pv, "copy"):
            b.do(
                _pv_patch(
                    b,
                    pv,
                    replica=r.name,
                    volume=v.volume,
                    role="copy",
                    policy="Retain",
                    annotations={ANNOTATION_ORIGINAL_RECLAIM_POLICY: original},
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
            b.do(_prebind_patch(b, pv, ns, v.claim))
            done = False
        elif not prebound or phase != "Available":
            done = False
    return done


def _prebind_patch(b: Builder, pv: Obj, ns: str, claim: str) -> Patch:
    """Point claimRef at a claim name with no uid: the PV is pre-bound (pv_controller syncVolume).

    A merge patch with the observed resourceVersion: if the binder moved the PV on meanwhile, the
    server answers 409 and the step is planned again from what is there now. Only a PV of this
    resync is ever pre-bound.
    """
    assert owned(b, pv), f"pre-binding {meta(pv).get('name')}, which this resync does not hold"
    ref = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "namespace": ns,
        "name": claim,
        "uid": None,
        "resourceVersion": None,
        "fieldPath": None,
    }
    body = {"metadata": {"resourceVersion": meta(pv).get("resourceVersion")}, "spec": {"claimRef": ref}}
    return Patch(pv_ref(meta(pv)["name"]), body)


def _retain_old(b: Builder, r: ReplicaStatus) -> bool:
    """Stage 3: the replica's current volumes get reclaim policy Retain, their policy recorded first."""
    obs = b.obs
    done = True
    for v in r.volumes:
        claim = obs.claims.get(v.claim)
        if claim is None or deleting(claim):
            _fail_replica(
                b, r, Reason.RESTORE_FAILED, f"claim {v.claim} vanished before the swap; nothing was swapped"
            )
            return False
        pv_name = str((claim.get("spec") or {}).get("volumeName") or "")
        pv = obs.pvs.get(pv_name)
        if pv is None:
            done = False
            continue
        holder = foreign(b, pv)
        if holder:
            _name_conflict(
                b,
                r,
                f"volume {pv_name} of claim {v.claim} is held by ClusterResync {holder} (a volume it kept); "
                f"delete ClusterResync {holder} first -- its volumes stay, and are then free",
            )
            return False
        if v.old_pv is None:
            policy = policy_of(pv)
            original = (meta(pv).get("annotations") or {}).get(ANNOTATION_ORIGINAL_RECLAIM_POLICY) or policy
            r = _set_vol(
                b, r, v.volume, old_pv=pv_name, old_pv_reclaim_policy=original, old_claim_uid=uid(claim)
            )
            v = next(x for x in r.volumes if x.volume == v.volume)
        if policy_of(pv) != "Retain" or not _pv_marked(b, pv, "old"):
            pod = obs.pods.get(r.name)
            b.do(
                _pv_patch(
                    b,
                    pv,
                    replica=r.name,
                    volume=v.volume,
                    role="old",
                    policy="Retain",
                    annotations={
                        ANNOTATION_ORIGINAL_RECLAIM_POLICY: v.old_pv_reclaim_policy,
                        ANNOTATION_OLD_CLAIM_UID: v.old_claim_uid,
                        ANNOTATION_OLD_POD_UID: uid(pod) or None,
                    },
                )
            )
            done = False
    return done


def _name_conflict(b: Builder, r: ReplicaStatus, why: str) -> None:
    """An object this replica's resync would adopt or change belongs to something else: hands off.
    (Only replicas not yet swapped get here: the replica is not touched and the run stops.)"""
    _fail_replica(
        b,
        r,
        Reason.NAME_CONFLICT,
        f"{why}: it is not this resync's (uid {b.obs.resync.uid}); it was not touched",
    )


def _swap(b: Builder, r: ReplicaStatus) -> bool:
    """Stage 4: delete the replica's claims, then its pod; the StatefulSet controller recreates both."""
    obs = b.obs
    ns = obs.resync.namespace
    claims_going = True
    for v in r.volumes:
        c = obs.claims.get(v.claim)
        if c is not None and uid(c) == v.old_claim_uid and not deleting(c):
            # The old volume says it was swapped before its claim goes, so that a status lost
            # from here on can be rebuilt from the volumes (``recover``).
            old = obs.pvs.get(v.old_pv or "")
            if old is not None and ANNOTATION_SWAPPED_AT not in (meta(old).get("annotations") or {}):
                b.do(
                    _pv_patch(
                        b,
                        old,
                        replica=r.name,
                        volume=v.volume,
                        role="old",
                        annotations={ANNOTATION_SWAPPED_AT: r.swap_started_at or b.now},
                    )
                )
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
            b.event(EventType.WARNING, EventReason.ROLLING_BACK, f"{r.name}: {r.message}")
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
        b.event(EventType.WARNING, EventReason.ROLLING_BACK, f"{r.name}: {r.message}")
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
    """Stage 6: the replica is verified on the copy. The copy gets its own reclaim policy back and
    is given back (an ordinary volume again); the old volume is kept, or only now given Delete."""
    spec = b.obs.resync.spec
    done = True
    for v in r.volumes:
        new = b.obs.pvs.get(v.new_pv or "")
        if new is not None and owned(b, new):
            b.do(
                _pv_patch(
                    b,
                    new,
                    replica=r.name,
                    volume=v.volume,
                    role=None,
                    policy=v.new_pv_reclaim_policy or "Delete",
                )
            )
            done = False
        old = b.obs.pvs.get(v.old_pv or "")
        if old is None or not owned(b, old):
            continue
        if spec.old_volumes == "Delete" and policy_of(old) != "Delete":
            # The only place an old volume is given Delete: its replica was verified on the copy.
            # Released with policy Delete, the PV controller deletes the volume and its data.
            b.do(_pv_patch(b, old, replica=r.name, volume=v.volume, role="old", policy="Delete"))
            done = False
    if done:
        kept = "retained" if spec.old_volumes == "Retain" else "deleted"
        olds = ", ".join(v.old_pv or "" for v in r.volumes)
        b.put_replica(
            r.model_copy(
                update={
                    "phase": "Completed",
                    "completed_at": b.now,
                    "message": f"running on the restored volume(s) {', '.join(v.new_pv or '' for v in r.volumes)}; old volume(s) {kept}: {olds}",
                }
            )
        )
        b.event(
            EventType.NORMAL,
            EventReason.REPLICA_RESYNCED,
            f"{r.name} runs on a copy of the primary; old volumes {olds} {kept}",
        )


def _rollback(b: Builder, r: ReplicaStatus) -> None:
    """Put the replica back on its old volumes with the same primitive: pre-bind, then swap.

    Both volumes stay with reclaim policy Retain whatever happens: the replica was not verified on
    the copy, so the old volume keeps its data; the copy's claim was deleted, so the copy is kept.
    """
    obs = b.obs
    ns = obs.resync.namespace
    settled = True
    for v in r.volumes:
        old = obs.pvs.get(v.old_pv or "")
        if old is None or not owned(b, old):
            _fail_replica(
                b,
                r,
                Reason.ROLLBACK_FAILED,
                f"rollback failed: old volume {v.old_pv} is gone or no longer this resync's; {_kept(b, r)}; "
                "see docs/troubleshooting.md#rollbackfailed",
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
        if ref.get("uid") or ref.get("name") != v.claim or ref.get("namespace") != ns:
            b.do(_prebind_patch(b, old, ns, v.claim))
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
    olds = ", ".join(v.old_pv or "" for v in r.volumes)
    news = ", ".join(v.new_pv or "" for v in r.volumes)
    _fail_replica(
        b,
        r,
        Reason.REPLICA_ROLLED_BACK,
        f"rolled back: {r.name} runs on its old volume(s) {olds} again (kept with reclaim policy Retain); "
        f"the copy {news} is kept (Retain) too; why: {r.message}",
    )


# -- cleanup: temporary objects go on completion, failure and deletion ------------------------
def _cleanup(b: Builder) -> bool:
    """Remove what the resync created and give back what it changed on replicas it did not swap.

    A volume's fate is decided once, here and in ``_finish``: a replica that was never swapped
    (its claims never deleted) gets its old volume back as it was and its copy discarded; a
    replica verified on the copy keeps the copy (``_finish``); any other swapped replica keeps
    both volumes, with reclaim policy Retain. Returns True once nothing is left to do.
    """
    obs = b.obs
    ns = obs.resync.namespace
    clean = True
    for name, job in obs.jobs.items():
        clean = False
        if not deleting(job):
            b.do(Delete(job_ref(ns, name), uid=uid(job)))
    for r in b.status.replicas:
        if r.phase in IN_FLIGHT:
            clean = False  # never cleaned under a swap in flight
            continue
        if r.swap_started_at is not None:
            continue  # swapped: verified (the copy is the replica's), or both volumes kept
        for v in r.volumes:
            staged = obs.claims.get(v.staging_claim or "")
            staged = staged if owned(b, staged) else None
            # The old volume of a swap that never happened gets its own policy back -- only once
            # it is Bound again to its claim (a Released old volume keeps Retain, with its data).
            old = obs.pvs.get(v.old_pv or "")
            if (
                old is not None
                and owned(b, old)
                and (old.get("status") or {}).get("phase") == "Bound"
                and ((old.get("spec") or {}).get("claimRef") or {}).get("uid") == v.old_claim_uid
            ):
                b.do(
                    _pv_patch(
                        b, old, replica=r.name, volume=v.volume, role=None, policy=v.old_pv_reclaim_policy
                    )
                )
                clean = False
            # A restored copy that was not swapped in is deleted with its data.
            new = obs.pvs.get(v.new_pv or "")
            if new is not None and (owned(b, new) or staged is not None):
                clean = False
                _discard_copy(
                    b,
                    r,
                    v.volume,
                    v.staging_claim or staging_claim_name(obs.resync.uid, r.name, v.volume),
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
        if owned(b, c) and cname not in known:
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
    Only called for a replica whose claims were never deleted.
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
            b.do(_pv_patch(b, pv, replica=r.name, volume=volume, role="copy", policy="Delete"))
        elif not deleting(staged):
            b.do(Delete(pvc_ref(ns, staging), uid=uid(staged)))
        return
    if staged is not None:
        if not deleting(staged) and (staged.get("status") or {}).get("phase") == "Bound":
            b.do(Delete(pvc_ref(ns, staging), uid=uid(staged)))
        return
    if not owned(b, pv):
        return
    if ref.get("name") != staging or ref.get("uid"):
        if (pv.get("status") or {}).get("phase") in ("Available", "Released"):
            b.do(_prebind_patch(b, pv, ns, staging))
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
    """Deleting a ClusterResync: finish or roll back the swap in flight, clean up, then let it go.

    When the namespace itself is being deleted, nothing will recreate a replica's pod or claim and
    nothing can be created there: swaps in flight stop where they are with both volumes kept, no
    volume is left pre-bound to a claim of the dying namespace, and the finalizer goes at once so
    that the namespace is not blocked.
    """
    terminating = b.obs.namespace_terminating
    for r in list(b.status.replicas):
        if r.phase in IN_FLIGHT:
            if terminating:
                _fail_replica(
                    b,
                    r,
                    Reason.NAMESPACE_TERMINATING,
                    f"namespace {b.obs.resync.namespace} deleted during its swap; {_kept(b, r)}",
                )
            else:
                _step_replica(b, r.name, None)
        elif r.phase in NOT_SWAPPED:
            _skip(b, r, Reason.DELETED, "not swapped: the ClusterResync was deleted")
    if _in_flight(b):
        b.progressing(Reason.CLEANING_UP, "deleted: finishing the swap in flight before cleaning up")
        b.again(1.0)
        return b.plan()
    if b.status.phase not in FINISHED:
        if terminating:
            b.fail(
                Reason.NAMESPACE_TERMINATING,
                f"namespace {b.obs.resync.namespace} is being deleted; volumes this resync changed are kept "
                f"with reclaim policy Retain (kubectl get pv -l {LABEL_RESYNC_UID}={b.obs.resync.uid})",
            )
        else:
            b.fail(
                Reason.DELETED,
                "the ClusterResync was deleted before it finished; swaps in flight were completed or rolled back",
            )
    if terminating:
        return b.plan(remove_finalizer=_unbind_from_namespace(b))
    if not _cleanup(b):
        return b.plan()
    return b.plan(remove_finalizer=True)


def _unbind_from_namespace(b: Builder) -> bool:
    """No volume of this resync stays pre-bound to a claim of a namespace being deleted (the
    namespace controller deletes the claims and objects themselves). Its claimRef gets a uid no
    claim has (this resync's): the PV controller sees the claim gone and the volume Released,
    and with reclaim policy Retain it stays so, data kept, bindable by no claim until an admin
    decides (pv_controller.go syncVolume: a claimRef whose claim is not found is released).
    Removing the claimRef instead would make the copy Available to any matching claim of any
    namespace. True once no such volume is left."""
    ns = b.obs.resync.namespace
    done = True
    for pv in b.obs.pvs.values():
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if owned(b, pv) and ref.get("namespace") == ns and not ref.get("uid"):
            body = {
                "metadata": {"resourceVersion": meta(pv).get("resourceVersion")},
                "spec": {"claimRef": {"uid": b.obs.resync.uid}, "persistentVolumeReclaimPolicy": "Retain"},
            }
            b.do(Patch(pv_ref(meta(pv)["name"]), body))
            done = False
    return done


def finalizers_of(obj: Obj) -> Iterable[str]:
    return meta(obj).get("finalizers") or []


__all__ = ["FINALIZER", "plan"]


# -- a lost status, rebuilt from the objects the resync labelled --------------------------------
def recover(obs: Observed) -> Observed:
    """When the status is gone (removed by hand, or written back without it) but objects this
    resync labelled with its uid exist, rebuild what it must not forget from them: the primary
    (from the spec, as observed now), which replicas were staged, which were swapped (the old
    volume's ``swapped-at`` annotation, written before its claim is deleted), the old claims' and
    pods' uids and the original reclaim policies (annotations on the volumes). Otherwise the
    observation is returned as it is."""
    st = obs.resync.status
    if st.phase != "Pending" or st.started_at or st.replicas:
        return obs
    uid_ = obs.resync.uid

    def ours(o: Obj) -> bool:
        return (meta(o).get("labels") or {}).get(LABEL_RESYNC_UID) == uid_

    pvs = [p for p in obs.pvs.values() if ours(p)]
    staging = [c for c in obs.claims.values() if ours(c)]
    if not (pvs or staging or obs.snapshots or obs.jobs):
        return obs
    b = Builder(obs)
    spec = obs.resync.spec
    primary, _, _ = _find_primary(b)
    if primary is None or obs.target is None:
        return obs  # preflight will say why; nothing can be resumed without a primary
    pname = meta(primary)["name"]
    pclaims = {v: claim_of(primary, v) or "" for v in spec.volumes}
    names = list(spec.replicas) if spec.replicas is not None else []
    for o in [*pvs, *staging]:
        n = (meta(o).get("labels") or {}).get(LABEL_REPLICA)
        if n and n not in names and n != pname:
            names.append(n)
    if spec.replicas is None:
        names += [n for n in obs.pods if n != pname and n not in names]
    replicas = [_recover_replica(obs, n, pvs, staging) for n in sorted(names, key=ordinal)]
    snaps = [
        SnapshotStatus(
            volume=v,
            name=snapshot_name(uid_, v),
            ready_to_use=bool(
                ((obs.snapshots.get(snapshot_name(uid_, v)) or {}).get("status") or {}).get("readyToUse")
            ),
        )
        for v in spec.volumes
        if spec.method == "Snapshot"
    ]
    started = any(r.phase != "Pending" for r in replicas)
    phase: Any = "Resyncing" if started or (all(s.ready_to_use for s in snaps) and snaps) else "Snapshotting"
    status = st.model_copy(
        update={
            "phase": phase,
            "started_at": ts(obs.now),
            "primary": PrimaryStatus(
                pod_name=pname,
                uid=uid(primary),
                node_name=str((primary.get("spec") or {}).get("nodeName", "")),
                restart_count=restart_count(primary),
                target_uid=uid(obs.target),
                claims=pclaims,
                volumes={
                    v: str(((obs.claims.get(c) or {}).get("spec") or {}).get("volumeName") or "")
                    for v, c in pclaims.items()
                },
            ),
            "snapshots": snaps,
            "replicas": replicas,
            "hooks_done": ["preSnapshot", "postSnapshot"] if phase == "Resyncing" else ["preSnapshot"],
        }
    )
    b = Builder(obs)
    b.status = status
    b.progressing(
        Reason.STATUS_REBUILT,
        f"the status was lost; rebuilt from the objects labelled {LABEL_RESYNC_UID}={uid_}: "
        + ", ".join(f"{r.name} {r.phase}" for r in replicas),
    )
    return _with_status(obs, b.status)


def _with_status(obs: Observed, status: Any) -> Observed:
    from dataclasses import replace as _replace

    return _replace(obs, resync=_replace(obs.resync, status=status))


def _recover_replica(obs: Observed, name: str, pvs: list[Obj], staging: list[Obj]) -> ReplicaStatus:
    spec = obs.resync.spec
    target = (obs.target or {}).get("metadata", {}).get("name", spec.target.name)
    pod = obs.pods.get(name)
    vols: list[VolumeStatus] = []
    swapped_at: str | None = None
    old_pod_uid: str | None = None
    any_old = any_copy = any_staged = False
    bound_to_copy = bound_to_old = True
    for v in spec.volumes:
        claim = (claim_of(pod, v) if pod else None) or f"{v}-{target}-{ordinal(name)}"

        def pick(role: str, v: str = v) -> Obj | None:
            for p in pvs:
                lb = meta(p).get("labels") or {}
                if (
                    lb.get(LABEL_REPLICA) == label_value(name)
                    and lb.get(LABEL_VOLUME) == label_value(v)
                    and lb.get(LABEL_VOLUME_ROLE) == role
                ):
                    return p
            return None

        old, copy = pick("old"), pick("copy")
        sname = staging_claim_name(obs.resync.uid, name, v)
        staged = next((c for c in staging if meta(c)["name"] == sname), None)
        c = obs.claims.get(claim)
        bound = ((c or {}).get("spec") or {}).get("volumeName")
        new_pv = meta(copy)["name"] if copy else ((staged or {}).get("spec") or {}).get("volumeName")
        notes_old = meta(old).get("annotations") or {} if old else {}
        notes_new = meta(copy).get("annotations") or {} if copy else {}
        if old is not None:
            any_old = True
            swapped_at = swapped_at or notes_old.get(ANNOTATION_SWAPPED_AT)
            old_pod_uid = old_pod_uid or notes_old.get(ANNOTATION_OLD_POD_UID)
            if swapped_at and not copy and bound and bound != meta(old)["name"]:
                new_pv = bound  # the copy was given back after verification
        any_copy = any_copy or copy is not None
        any_staged = any_staged or staged is not None
        bound_to_copy = bound_to_copy and bool(bound) and bound == new_pv
        bound_to_old = bound_to_old and old is not None and bound == meta(old)["name"]
        vols.append(
            VolumeStatus(
                volume=v,
                claim=claim,
                old_claim_uid=notes_old.get(ANNOTATION_OLD_CLAIM_UID),
                old_pv=meta(old)["name"] if old else None,
                old_pv_reclaim_policy=notes_old.get(ANNOTATION_ORIGINAL_RECLAIM_POLICY),
                staging_claim=sname,
                new_pv=new_pv,
                new_pv_reclaim_policy=notes_new.get(ANNOTATION_ORIGINAL_RECLAIM_POLICY)
                or (policy_of(copy) if copy else None),
            )
        )
    base = ReplicaStatus(
        name=name,
        volumes=vols,
        old_pod_uid=old_pod_uid,
        node_name=str(((pod or {}).get("spec") or {}).get("nodeName") or "") or None,
    )
    now = ts(obs.now)
    if swapped_at:
        if bound_to_copy and not any_copy:
            return base.model_copy(
                update={
                    "phase": "Completed",
                    "swap_started_at": swapped_at,
                    "completed_at": now,
                    "message": "verified on the copy (rebuilt)",
                }
            )
        phase = (
            "RollingBack"
            if bound_to_old
            and any(v.old_claim_uid and uid(obs.claims.get(v.claim)) != v.old_claim_uid for v in vols)
            else "Verifying"
        )
        return base.model_copy(
            update={
                "phase": phase,
                "swap_started_at": swapped_at,
                "started_at": swapped_at,
                "message": "swap in flight (rebuilt)",
            }
        )
    if any_old or any_copy:
        return base.model_copy(
            update={"phase": "Detaching", "started_at": now, "message": "staged (rebuilt)"}
        )
    if any_staged:
        return base.model_copy(
            update={"phase": "Restoring", "started_at": now, "message": "restoring (rebuilt)"}
        )
    return base
