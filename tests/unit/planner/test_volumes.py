"""Whose an object is: a generated name is never trusted alone (safety rule 2)."""

from __future__ import annotations

from typing import Any

from clusterresync import planner

from ..world import World
from .drive import drive, policy, reasons, spec


def test_a_staging_claim_of_another_resync_is_never_adopted() -> None:
    w = World()
    s = spec(primaryStableSeconds=0)
    stolen: dict[str, Any] = {}

    def plant(world: World, p: planner.Plan) -> None:
        # As soon as db-0 starts restoring, a claim with its staging name appears, owned by someone else.
        if stolen or not any(r.phase == "Restoring" for r in world.status.replicas):
            return
        name = planner.staging_claim_name(world.resync_uid, "db-0", "data")
        world.claims.pop(name, None)
        world._bind_new(
            name,
            "pv-foreign",
            content="main-db primary data",
            extra_labels={"clusterresync.io/resync-uid": "another-uid"},
        )
        stolen["pv"] = "pv-foreign"

    drive(w, s, on_step=plant)
    assert w.status.phase == "Failed" and reasons(w)["Failed"] == "NameConflict"
    assert w.content_of("db-0") == "stale-0" and w.data["pv-foreign"] == "main-db primary data"
    assert "pv-foreign" in w.pvs and policy(w, "pv-foreign") == "Delete"  # not touched
