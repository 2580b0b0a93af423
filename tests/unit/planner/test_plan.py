"""The entry point against the cluster model: the same outcome whatever crashes, wherever (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..world import World
from .drive import assert_success, drive, spec


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    crashes=st.lists(st.integers(min_value=0, max_value=6), min_size=0, max_size=120),
    max_parallel=st.integers(min_value=1, max_value=2),
    old_volumes=st.sampled_from(["Retain", "Delete"]),
)
def test_crash_anywhere_same_outcome(crashes: list[int], max_parallel: int, old_volumes: str) -> None:
    """Killing the operator between its status write and any of its actions changes nothing in the end."""
    w, s = World(), spec(maxParallel=max_parallel, oldVolumes=old_volumes)
    drive(w, s, crashes=crashes, max_steps=800)
    assert_success(w, s)
