"""Resyncing: which replicas go next, what stops the run, and each replica's steps, as a table of
phase -> step function (``STEPS``).
"""

from __future__ import annotations

from collections.abc import Callable

from ..conditions import ConditionType, EventReason, EventType, Reason
from ..models import ReplicaStatus
from .objects import deleting, meta, ordinal, parse_ts, ts, uid
from .rollback import rollback
from .snapshot import primary_changed
from .staging import ensure_staged
from .status import (
    ACTIVE_REPLICA_PHASES,
    IN_FLIGHT,
    NOT_SWAPPED,
    OUT_OF_SERVICE,
    REPLICA_DONE,
    Builder,
    fail_replica,
    kept,
    skip,
)
from .swap import detach, finish, retain_old, swap, verify


def in_flight(b: Builder) -> list[str]:
    """Replicas between the deletion of their claims and the end of their verification or rollback."""
    return [r.name for r in b.status.replicas if r.phase in IN_FLIGHT]


def skip_not_swapped(b: Builder) -> None:
    """Once the resync has failed, a replica not swapped yet never will be: Skipped, untouched,
    under the reason the resync failed with."""
    failed = next(
        (c for c in b.status.conditions if c.type == ConditionType.FAILED and c.status == "True"), None
    )
    if failed is None:
        return
    for r in b.status.replicas:
        if r.phase in NOT_SWAPPED:
            skip(
                b,
                r,
                Reason(failed.reason),
                f"not swapped: the resync failed ({failed.reason}); the replica was not touched",
            )


def drive_in_flight(b: Builder) -> None:
    """A swap in flight is always carried to its end (verified, or rolled back): a failure of the
    resync, for whatever reason, never leaves a replica half-swapped."""
    for name in in_flight(b):
        step_replica(b, name, None)
    if in_flight(b):
        b.again(1.0)


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
    changed = primary_changed(b)
    if changed:
        return Reason.PRIMARY_CHANGED, changed
    failed = sorted(
        (r for r in b.status.replicas if r.phase == "Failed"), key=lambda r: (r.completed_at or "", r.name)
    )
    if failed:
        r = failed[0]
        return Reason(r.reason or Reason.RESTORE_FAILED), f"replica {r.name} failed: {r.message}"
    return None


def resyncing(b: Builder) -> None:
    spec = b.obs.resync.spec
    for name in [r.name for r in b.status.replicas]:
        r = b.replica(name)
        if r.phase in REPLICA_DONE:
            continue
        stop = _stop_cause(b)
        if r.phase == "Pending":
            # Copies are made ahead, while the replicas serve: maxParallelCopies bounds them (space
            # and bandwidth); maxParallel bounds the swaps (downtime), in ``_detaching``.
            copies = sum(1 for x in b.status.replicas if x.phase in ("Restoring", "Detaching"))
            if stop or copies >= spec.max_parallel_copies:
                continue
            away = _scaled_away(b, name)
            if away:
                skip(b, r, Reason.TARGET_SCALED_DOWN, f"not started: {away}")
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
        step_replica(b, name, stop)
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
                skip(
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


def step_replica(b: Builder, name: str, stop: tuple[Reason, str] | None) -> None:
    """One replica's next step. ``stop``: why no replica may be swapped any more (the ones in
    flight are carried to their end; the ones not swapped yet are skipped)."""
    r = b.replica(name)
    spec = b.obs.resync.spec
    limit = spec.timeouts.replica_seconds
    if r.phase in NOT_SWAPPED and r.phase != "Pending":
        away = _scaled_away(b, name)
        if away or stop:
            skip(
                b,
                r,
                Reason.TARGET_SCALED_DOWN if away else stop[0] if stop else Reason.RESTORE_FAILED,
                f"not swapped: {away or (stop[1] if stop else '')}; the replica was not touched",
            )
            return
        if r.phase == "Restoring" and _staging_timed_out(b, r):
            return
    if r.phase in ("Swapping", "Verifying", "RollingBack"):
        # Without a target (deleted, or this replica scaled away) nothing will recreate the pod:
        # stop here, touch nothing more, keep both volumes.
        gone = _target_gone(b)
        away = _scaled_away(b, name)
        if gone or away:
            fail_replica(
                b,
                r,
                Reason.TARGET_DELETED if gone else Reason.TARGET_SCALED_DOWN,
                f"{gone or away} during its swap; {kept(b, r)}; see docs/troubleshooting.md#"
                + ("targetdeleted" if gone else "targetscaleddown"),
            )
            return
    if (
        r.phase == "RollingBack"
        and r.swap_started_at
        and (b.obs.now - parse_ts(r.swap_started_at)).total_seconds() >= 2 * limit
    ):
        fail_replica(
            b,
            r,
            Reason.ROLLBACK_FAILED,
            f"rollback failed: not back on its old volume(s) after {2 * limit}s; {kept(b, r)}; "
            "see docs/troubleshooting.md#rollbackfailed",
        )
        return
    # The steps run in the order of the table: one that moves the replica on lets the next one
    # run in the same call; one that returns False (waiting, or failed) ends the call.
    for phase, step in STEPS.items():
        if b.replica(name).phase == phase and not step(b, name):
            return


# -- the per-replica steps: phase -> step ------------------------------------------------------
Step = Callable[[Builder, str], bool]


def _restoring(b: Builder, name: str) -> bool:
    """Stage 1: the copy restored into the staging claims; then Detaching."""
    if not ensure_staged(b, b.replica(name), clone=b.obs.resync.spec.method == "Clone"):
        return False
    if b.replica(name).phase != "Restoring":
        return False
    b.put_replica(
        b.replica(name).model_copy(
            update={
                "phase": "Detaching",
                "message": "detaching the restored volumes and pre-binding them",
            }
        )
    )
    return True


def _staging_timed_out(b: Builder, r: ReplicaStatus) -> bool:
    """Staging (the copy made, detached, pre-bound) may take replicaSeconds, plus the restore
    hook's own time limit when there is one; then the replica fails, untouched. Waiting for a
    swap slot once staged is not staging: it has no limit of its own."""
    spec = b.obs.resync.spec
    hook = spec.hooks.restore if spec.hooks else None
    limit = spec.timeouts.replica_seconds + (hook.timeout_seconds if hook else 0)
    if not r.started_at or (b.obs.now - parse_ts(r.started_at)).total_seconds() < limit:
        return False
    fail_replica(
        b,
        r,
        Reason.RESTORE_FAILED,
        f"restore not finished after {limit}s (timeouts.replicaSeconds"
        + (" + hooks.restore.timeoutSeconds" if hook else "")
        + f"): {r.message}; the replica was not touched",
    )
    return True


def _detaching(b: Builder, name: str) -> bool:
    """Stage 2: the copy detached and pre-bound, the old volume kept; then, unless the run has
    stopped, the replica goes out of service (Swapping) as soon as maxParallel allows."""
    if not detach(b, b.replica(name)):
        if b.replica(name).phase == "Detaching":
            _staging_timed_out(b, b.replica(name))
        return False
    if b.replica(name).phase != "Detaching" or not retain_old(b, b.replica(name)):
        if b.replica(name).phase == "Detaching":
            _staging_timed_out(b, b.replica(name))
        return False
    if b.replica(name).phase != "Detaching":
        return False
    # The last check before the replica goes out of service: nothing has stopped the run.
    stop = _stop_cause(b)
    if stop:
        skip(b, b.replica(name), stop[0], f"not swapped: {stop[1]}; the replica was not touched")
        return False
    # Swaps go in the order of spec.replicas (docs/usage.md, maxParallel): a copy staged first
    # still waits for the replicas before it, so the order a user chose holds whatever the
    # storage's speed.
    names = [x.name for x in b.status.replicas]
    before = [x.name for x in b.status.replicas[: names.index(name)] if x.phase in NOT_SWAPPED]
    if before:
        msg = (
            f"copy staged; waiting to swap after {', '.join(before)} (swaps go in the order of spec.replicas)"
        )
        if b.replica(name).message != msg:
            b.put_replica(b.replica(name).model_copy(update={"message": msg}))
        return False
    # maxParallel bounds the replicas out of service: a staged copy waits for a slot.
    spec = b.obs.resync.spec
    out = [x.name for x in b.status.replicas if x.phase in OUT_OF_SERVICE]
    if len(out) >= spec.max_parallel:
        msg = (
            f"copy staged; waiting to swap: {', '.join(out)} out of service (maxParallel {spec.max_parallel})"
        )
        if b.replica(name).message != msg:
            b.put_replica(b.replica(name).model_copy(update={"message": msg}))
        return False
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
    return True


def _swapping(b: Builder, name: str) -> bool:
    """Stage 3: the old claims and pod deleted; then Verifying."""
    if not swap(b, b.replica(name)):
        return False
    b.put_replica(
        b.replica(name).model_copy(
            update={
                "phase": "Verifying",
                "message": "waiting for the new claims to bind and the pod to be Ready",
            }
        )
    )
    return True


def _verifying(b: Builder, name: str) -> bool:
    """Stage 4: bound and Ready, or rolled back (Finishing or RollingBack)."""
    verify(b, b.replica(name))
    return True


def _finishing(b: Builder, name: str) -> bool:
    finish(b, b.replica(name))
    return True


def _rolling_back(b: Builder, name: str) -> bool:
    rollback(b, b.replica(name))
    return True


# In the order of the run: a replica moved on by one step is taken by the next in the same call.
STEPS: dict[str, Step] = {
    "Restoring": _restoring,
    "Detaching": _detaching,
    "Swapping": _swapping,
    "Verifying": _verifying,
    "Finishing": _finishing,
    "RollingBack": _rolling_back,
}
