"""The one ``Builder`` of a planning call: the next status, its conditions, Events, actions and
requeue; the phase groups; and the one way a replica record fails (``fail_replica``) or is skipped
(``skip``).
"""

from __future__ import annotations

from typing import Any, Literal

from ..conditions import ConditionType, EventReason, EventType, Reason
from ..models import MAX_MESSAGE, Condition, ReplicaStatus
from ..state import Action, Event, Observed, Plan
from .objects import policy_of, ts

CondStatus = Literal["True", "False", "Unknown"]
ACTIVE_REPLICA_PHASES = ("Restoring", "Detaching", "Swapping", "Verifying", "Finishing", "RollingBack")
OUT_OF_SERVICE = ("Swapping", "Verifying", "RollingBack")
# From the deletion of the replica's claims to the end of its verification or rollback.
IN_FLIGHT = ("Swapping", "Verifying", "Finishing", "RollingBack")
NOT_SWAPPED = ("Pending", "Restoring", "Detaching")
FINISHED = ("Completed", "Failed")
REPLICA_DONE = ("Completed", "Failed", "Skipped")
POLL = 2.0
CUT = " ... [cut]"


def bounded(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` within the API's limit (characters, as the API server counts them): a longer one is
    cut and ends with a marker, so that a status write never fails validation."""
    return text if len(text) <= limit else text[: limit - len(CUT)] + CUT


class Builder:
    """Accumulates the next status, actions and events of one planning call."""

    def __init__(self, obs: Observed) -> None:
        self.obs = obs
        self.status = obs.resync.status
        self.actions: list[Action] = []
        self.events: list[Event] = []
        self.requeue: float | None = None
        self.delete_self_after: float | None = None

    @property
    def now(self) -> str:
        return ts(self.obs.now)

    def set(self, **changes: Any) -> None:
        self.status = self.status.model_copy(update=changes)

    def again(self, seconds: float = POLL) -> None:
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    def condition(self, type_: ConditionType, status: CondStatus, reason: Reason, message: str) -> None:
        gen = self.obs.resync.generation
        message = bounded(message)
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
            total = len(self.status.replicas)
            self.set(progress=f"{done}/{total}", completed=done, total=total)
        self._bound()
        return Plan(
            self.status, self.actions, self.events, self.requeue, remove_finalizer, self.delete_self_after
        )

    def _bound(self) -> None:
        """Messages within the API's limits, wherever they were written (model_copy does not validate)."""
        if any(len(r.message) > MAX_MESSAGE for r in self.status.replicas):
            self.set(
                replicas=[
                    r.model_copy(update={"message": bounded(r.message)})
                    if len(r.message) > MAX_MESSAGE
                    else r
                    for r in self.status.replicas
                ]
            )
        if any(len(a.action) > MAX_MESSAGE for a in self.status.plan):
            self.set(plan=[a.model_copy(update={"action": bounded(a.action)}) for a in self.status.plan])


def set_vol(b: Builder, r: ReplicaStatus, volume: str, **changes: Any) -> ReplicaStatus:
    vols = [v.model_copy(update=changes) if v.volume == volume else v for v in r.volumes]
    r = r.model_copy(update={"volumes": vols})
    b.put_replica(r)
    return r


def fail_replica(b: Builder, r: ReplicaStatus, reason: Reason, message: str) -> None:
    """The one way a replica fails: its record, and a Warning Event naming it."""
    b.put_replica(
        b.replica(r.name).model_copy(
            update={"phase": "Failed", "completed_at": b.now, "reason": str(reason), "message": message}
        )
    )
    b.event(EventType.WARNING, EventReason.REPLICA_FAILED, f"{r.name}: {reason}: {message}")


def skip(b: Builder, r: ReplicaStatus, reason: Reason, message: str) -> None:
    """A replica that was not swapped and will not be: untouched (its copy, if any, is discarded)."""
    b.put_replica(
        b.replica(r.name).model_copy(
            update={"phase": "Skipped", "completed_at": b.now, "reason": str(reason), "message": message}
        )
    )


def kept(b: Builder, r: ReplicaStatus) -> str:
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
