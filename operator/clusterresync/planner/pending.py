"""Pending: one resync per target at a time; the older goes first."""

from __future__ import annotations

from ..conditions import EventType, Reason
from .objects import meta, parse_ts
from .status import FINISHED, Builder


def pending(b: Builder) -> None:
    r = b.obs.resync
    if r.spec.suspend:
        # Waiting for a person's approval (a ResyncPolicy in Manual mode creates them so): nothing
        # is read or touched; setting spec.suspend to false wakes the daemon (a watch event).
        b.progressing(
            Reason.SUSPENDED,
            f"suspended: waiting for approval; approve with: kubectl -n {r.namespace} patch crsync {r.name} "
            """--type merge -p '{"spec":{"suspend":false}}'""",
        )
        return
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
