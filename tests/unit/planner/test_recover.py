"""A lost status is rebuilt from the labelled objects (safety rule 4: one writer)."""

from __future__ import annotations

from clusterresync import planner
from clusterresync.models import ClusterResyncStatus

from ..world import World
from .drive import drive, spec


# -- 4. one writer: a lost status is rebuilt -----------------------------------------------------
def test_a_status_lost_during_verification_is_rebuilt_and_the_run_completes() -> None:
    w = World()
    s = spec(primaryStableSeconds=0)
    lost: dict[str, bool] = {}

    def lose(world: World, p: planner.Plan) -> None:
        if not lost and any(r.phase == "Verifying" for r in world.status.replicas):
            world.status = ClusterResyncStatus()
            lost["done"] = True

    drive(w, s, on_step=lose)
    assert lost
    assert w.status.phase == "Completed" and w.status.progress == "2/2"
    assert w.content_of("db-0") == w.content_of("db-2") == "primary-data"
