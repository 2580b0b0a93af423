"""Snapshotting and its hooks: a hook's output stays out of the status."""

from __future__ import annotations

from clusterresync import planner
from clusterresync.state import Exec, HookOutcome

from ..world import World
from .drive import spec


# -- hooks: their output stays out of the status ---------------------------------------------------
def _hook_status(excerpt: int) -> str:
    w = World()
    s = spec(
        primaryStableSeconds=0,
        hooks={"preSnapshot": {"command": ["sh", "-c", "x"], "outputExcerptBytes": excerpt}},
    )
    for _ in range(5):
        obs = w.observed(s)
        p = planner.plan(obs)
        if any(isinstance(a, Exec) for a in p.actions):
            p = planner.plan(
                w.observed(s, {"preSnapshot": HookOutcome(False, 3, "PGPASSWORD=hunter2\nboom\n")})
            )
        w.status = p.status
        if p.status.phase == "Failed":
            failed = next(c for c in p.status.conditions if c.type == "Failed")
            assert failed.reason == "HookFailed"
            assert all(e.message == failed.message for e in p.events if e.reason == "HookFailed")
            return failed.message
    raise AssertionError("the hook did not fail")


def test_a_failing_hook_reports_its_exit_code_and_not_its_output() -> None:
    msg = _hook_status(0)
    assert "exit code 3" in msg and "hunter2" not in msg and "boom" not in msg


def test_a_hook_output_excerpt_is_only_there_when_the_spec_asks_for_it() -> None:
    assert "boom" in _hook_status(5) and "hunter2" not in _hook_status(5)
