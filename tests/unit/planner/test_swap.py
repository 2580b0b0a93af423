"""Detach, retain, swap, verify, finish: what happens to the old volumes (safety rule 3)."""

from __future__ import annotations

from ..world import World
from .drive import assert_success, drive, spec


def test_old_volumes_delete() -> None:
    w, s = World(), spec(oldVolumes="Delete")
    drive(w, s)
    assert_success(w, s)
