"""The resync state machine: observed state in, next actions and status out. Pure: no I/O.

The sequence per replica is *stage, then swap* (docs/design.md explains it with its upstream
references): restore the copy into a temporary claim; detach its volume and pre-bind it to the
replica's claim name; keep the replica's old volume (reclaim policy Retain); delete the replica's
claim, then its pod, so that the StatefulSet controller recreates both and the PV binder gives the
new claim the pre-bound volume before it would provision anything; verify; finish.

Every decision is taken from what is observed now and what the status records. The adapter
writes the returned status *before* it performs the actions, so whatever a crash interrupts, the
next call sees either the recorded intent or its effect, and repeats or continues the step.

The package is split by lifecycle concern (docs/design.md, "Shape of the code"): small readers and
generated names at the bottom (``objects``, ``naming``), the one status builder and the one way a
PV is changed above them (``status``, ``volumes``), then one module per phase of the run, and this
entry point on top. No module imports one above it.
"""

from __future__ import annotations

from ..models import FINALIZER
from ..state import Observed, Plan
from .cleanup import cleanup, expire
from .deletion import deletion
from .naming import snapshot_name, staging_claim_name, staging_job_name, uid_key
from .objects import labels_match, parse_ts, pod_ready, ts
from .pending import pending
from .preflight import preflight
from .recover import recover
from .replica import drive_in_flight, in_flight, resyncing, skip_not_swapped
from .snapshot import snapshotting
from .status import ACTIVE_REPLICA_PHASES, FINISHED, IN_FLIGHT, Builder

__all__ = [
    "ACTIVE_REPLICA_PHASES",
    "FINALIZER",
    "FINISHED",
    "IN_FLIGHT",
    "Builder",
    "Plan",
    "labels_match",
    "parse_ts",
    "plan",
    "pod_ready",
    "recover",
    "snapshot_name",
    "staging_claim_name",
    "staging_job_name",
    "ts",
    "uid_key",
]


def plan(obs: Observed) -> Plan:
    """The next step of one ClusterResync."""
    b = Builder(recover(obs))
    if obs.resync.deleting:
        return deletion(b)
    if b.status.phase in FINISHED:
        skip_not_swapped(b)
        drive_in_flight(b)
        if not in_flight(b) and cleanup(b):
            expire(b)
        return b.plan()
    if b.status.phase == "Pending":
        pending(b)
    if b.status.phase == "Preflight":
        preflight(b)
    if b.status.phase == "Snapshotting":
        snapshotting(b)
    if b.status.phase == "Resyncing":
        resyncing(b)
    if b.status.phase in FINISHED and not in_flight(b) and cleanup(b):
        expire(b)
    return b.plan()
