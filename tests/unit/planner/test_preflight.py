"""Preflight refuses early and touches nothing (safety rule 1: the primary is untouchable); the dry run."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import replace
from typing import Any

import pytest

from clusterresync import planner

from ..world import World
from .drive import drive, spec


# -- 1. the primary is untouchable -------------------------------------------------------------
def test_a_volume_every_pod_shares_is_refused_before_anything_is_touched() -> None:
    w = World()
    w._bind_new("shared-data", "pv-shared", content="shared")
    for p in w.pods.values():
        p["spec"]["volumes"].append({"name": "shared", "persistentVolumeClaim": {"claimName": "shared-data"}})
    p = planner.plan(w.observed(spec(volumes=["shared"], primaryStableSeconds=0)))
    assert p.status.phase == "Failed" and not p.actions
    failed = next(c for c in p.status.conditions if c.type == "Failed")
    assert failed.reason == "VolumeNotPerReplica"
    assert "shared" in failed.message and "db-0, db-1, db-2" in failed.message


def test_a_claim_another_pod_mounts_is_refused() -> None:
    w = World()
    obs = w.observed(spec(primaryStableSeconds=0))
    obs = replace(obs, claim_users={**obs.claim_users, "data-db-2": ["backup-7", "db-2"]})
    p = planner.plan(obs)
    failed = next(c for c in p.status.conditions if c.type == "Failed")
    assert (failed.reason, p.actions) == ("VolumeNotPerReplica", [])
    assert "backup-7" in failed.message


def test_dry_run_touches_nothing() -> None:
    w, s = World(), spec(dryRun=True)
    before = copy.deepcopy((w.pods, w.claims, w.pvs))
    plans = drive(w, s)
    assert all(not p.actions for p in plans)
    assert (w.pods, w.claims, w.pvs) == before
    assert w.status.phase == "Completed" and any("snapshot" in a.action for a in w.status.plan)
    assert {c.type: c.reason for c in w.status.conditions}["Complete"] == "DryRunComplete"


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"target": {"name": "nope"}}, "TargetNotFound"),
        ({"primary": {"podName": "db-9"}}, "PrimaryNotFound"),
        ({"primary": {"selector": {"matchLabels": {"app": "db"}}}}, "MultiplePrimaries"),
        ({"primary": {"selector": {"matchLabels": {"role": "leader"}}}}, "NoPrimary"),
        ({"replicas": ["db-7"]}, "ReplicaNotInTarget"),
        ({"volumes": ["logs"]}, "VolumeNotFound"),
        ({"volumeSnapshotClassName": "other"}, "NoSnapshotClass"),
    ],
)
def test_preflight_refusals_touch_nothing(kw: dict[str, Any], reason: str) -> None:
    w, s = World(), spec(**kw)
    if kw.get("target"):
        w_obs = w.observed(s)
        p = planner.plan(type(w_obs)(**{**w_obs.__dict__, "target": None}))
    else:
        p = planner.plan(w.observed(s))
    assert p.status.phase == "Failed"
    assert {c.type: c.reason for c in p.status.conditions}["Failed"] == reason
    assert not p.actions
    assert p.events and p.events[-1].reason == reason


def test_primary_not_stable_waits_then_refuses() -> None:
    w = World()
    w.pods["db-1"]["status"]["conditions"][0]["lastTransitionTime"] = planner.ts(w.now)
    s = spec(primaryStableSeconds=60, timeouts={"preflightSeconds": 30})
    p = planner.plan(w.observed(s))
    assert p.status.phase == "Preflight" and not p.actions
    assert {c.type: c.reason for c in p.status.conditions}["Progressing"] == "WaitingForPrimary"
    w.status = p.status
    w.now += dt.timedelta(seconds=31)
    p = planner.plan(w.observed(s))
    assert p.status.phase == "Failed"
    assert {c.type: c.reason for c in p.status.conditions}["Failed"] == "PrimaryNotStable"
