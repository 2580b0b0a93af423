"""The Builder: the status it writes stays within the API's bounds; numeric progress."""

from __future__ import annotations

from clusterresync.conditions import Reason
from clusterresync.models import MAX_MESSAGE, ReplicaStatus
from clusterresync.planner.status import CUT, Builder, bounded

from ..world import World
from .drive import drive, spec


def test_bounded_cuts_with_a_marker() -> None:
    assert bounded("short") == "short"
    long = "x" * (MAX_MESSAGE + 10)
    out = bounded(long)
    assert len(out) == MAX_MESSAGE and out.endswith(CUT)
    assert bounded("y" * MAX_MESSAGE) == "y" * MAX_MESSAGE


def test_condition_and_replica_messages_are_bounded() -> None:
    w = World()
    b = Builder(w.observed(spec()))
    # A Condition is validated on construction: an unbounded message would raise here.
    b.fail(Reason.API_ERROR, "e" * 100_000)
    b.set(replicas=[ReplicaStatus(name="db-0")])
    b.put_replica(b.replica("db-0").model_copy(update={"message": "m" * 100_000}))
    p = b.plan()
    assert all(len(c.message) <= MAX_MESSAGE for c in p.status.conditions)
    assert p.status.conditions[0].message.endswith(CUT)
    assert len(p.status.replicas[0].message) == MAX_MESSAGE
    # What the operator writes parses again with the models (the CRD's bounds).
    type(p.status).model_validate(p.status.model_dump())


def test_numeric_progress() -> None:
    w = World()
    drive(w, spec(primaryStableSeconds=0))
    assert w.status.progress == "2/2" and (w.status.completed, w.status.total) == (2, 2)
