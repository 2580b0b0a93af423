"""The resync deleted mid-run: no replica is left without its volume (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterresync import planner

from ..world import World
from .drive import drive, spec


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delete_at=st.integers(min_value=1, max_value=40), crashes=st.lists(st.integers(0, 6), max_size=60))
def test_deletion_mid_run_leaves_no_replica_without_volume(delete_at: int, crashes: list[int]) -> None:
    w, s = World(), spec()
    step = {"n": 0}

    def maybe_delete(w: World, p: planner.Plan) -> None:
        step["n"] += 1
        if step["n"] == delete_at:
            w.deleting = True

    drive(w, s, crashes=crashes, on_step=maybe_delete, max_steps=800)
    for pod in ("db-0", "db-2"):
        content = w.content_of(pod)
        assert content in ("primary-data", f"stale-{pod[-1]}"), f"{pod} has {content!r}"
        assert pod in w.pods and planner.pod_ready(w.pods[pod])
    assert not w.snapshots and not w.jobs
    assert not [c for c in w.claims if c.startswith("crs-")]
    # Restored copies that were not swapped in are gone; nothing pre-bound lingers.
    in_use = {c["spec"].get("volumeName") for c in w.claims.values()}
    for name, pv in w.pvs.items():
        if name not in in_use:
            assert pv["status"]["phase"] == "Released" and name in ("pv-0", "pv-2"), f"leftover volume {name}"
