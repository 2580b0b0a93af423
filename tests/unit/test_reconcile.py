"""The pure parts of one reconciliation: the status patch and the primary's protected objects."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clusterresync import planner
from clusterresync.cache import CachedReader
from clusterresync.models import ClusterResyncStatus, PrimaryStatus, ReplicaStatus
from clusterresync.observe import observe
from clusterresync.reconcile import (
    decisions,
    merge_diff,
    parse_resync,
    protected_of,
    reconcile,
    status_body,
)
from clusterresync.state import Observed, Ref

from .planner.drive import spec
from .world import World

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
json_obj = st.recursive(
    st.dictionaries(st.text("abc", min_size=1, max_size=2), json_leaf, max_size=4),
    lambda inner: st.dictionaries(
        st.text("abc", min_size=1, max_size=2), st.one_of(json_leaf, inner, st.lists(json_leaf)), max_size=4
    ),
    max_leaves=12,
)


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies it."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = apply_merge_patch(out.get(k), v)
    return out


def _no_nulls(o: Any) -> Any:
    if isinstance(o, dict):
        return {k: _no_nulls(v) for k, v in o.items() if v is not None}
    return o


@settings(deadline=None)  # the machine is shared: no per-example time limit
@given(json_obj, json_obj)
def test_the_status_patch_turns_the_old_status_into_the_new_one(old: Any, new: Any) -> None:
    # Statuses never hold nulls (exclude_none): a null in a merge patch means "remove".
    old, new = _no_nulls(old), _no_nulls(new)
    assert apply_merge_patch(old, merge_diff(old, new)) == new


def test_a_cleared_field_is_cleared_on_the_server() -> None:
    before = status_body(ClusterResyncStatus(waiting_for="other", phase="Pending"))
    after = status_body(ClusterResyncStatus(phase="Preflight"))
    assert merge_diff(before, after) == {"waitingFor": None, "phase": "Preflight"}


def test_the_primary_is_protected_as_recorded_and_as_observed() -> None:
    w = World()
    obs = w.observed(spec(primary={"selector": {"matchLabels": {"role": "primary"}}}))
    # Recorded: db-1. Observed now: a failover moved the label to db-0.
    w.pods["db-0"]["metadata"]["labels"]["role"] = "primary"
    w.pods["db-1"]["metadata"]["labels"]["role"] = "replica"
    obs = w.observed(spec(primary={"selector": {"matchLabels": {"role": "primary"}}}))
    status = ClusterResyncStatus(
        primary=PrimaryStatus(
            pod_name="db-1", uid="u", claims={"data": "data-db-1"}, volumes={"data": "pv-1"}
        )
    )
    p = protected_of(obs, status)
    assert p.pods == {"db-0", "db-1"}
    assert p.claims == {"data-db-0", "data-db-1"}
    assert p.pvs == {"pv-0", "pv-1"}
    assert "db-2" not in p.pods and "pv-2" not in p.pvs


# -- caches that lag: what decides a swap or a failure is read live ---------------------------------
class ObservedReader:
    """``get``/``list_objects`` answered from an ``Observed``: a watch cache frozen at some moment."""

    def __init__(self, obs: Observed) -> None:
        self.obs = obs

    def get(self, ref: Ref) -> dict[str, Any] | None:
        if ref.kind == "StatefulSet":
            return copy.deepcopy(self.obs.target)
        if ref.kind == "PersistentVolume":
            return copy.deepcopy(self.obs.pvs.get(ref.name))
        raise AssertionError(f"unexpected get {ref}")

    def list_objects(
        self,
        api_version: str,
        plural: str,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> list[dict[str, Any]]:
        o = self.obs
        by_plural: dict[str, Any] = {
            "pods": o.pods.values(),
            "persistentvolumeclaims": o.claims.values(),
            "persistentvolumes": o.pvs.values(),
            "volumesnapshots": o.snapshots.values(),
            "volumesnapshotclasses": o.snapshot_classes,
            "jobs": o.jobs.values(),
            "storageclasses": o.storage_classes.values(),
            "csidrivers": [{"metadata": {"name": d}} for d in o.csi_drivers],
            "nodes": o.nodes.values(),
            "clusterresyncs": [],
            "events": [],
        }
        return copy.deepcopy(list(by_plural[plural]))


class LiveWorld(ObservedReader):
    """The live API over a ``World``: reads its current state, records every write (none applied)."""

    def __init__(self, w: World, s: Any) -> None:
        self.w, self.s = w, s
        self.writes: list[tuple[str, str]] = []
        self.reads = 0

    @property  # type: ignore[override]
    def obs(self) -> Observed:
        self.reads += 1
        return self.w.observed(self.s)

    def recording(self, writes: list[Any]) -> LiveWorld:
        return self

    def guarded(self, protected: Any) -> LiveWorld:
        return self

    def patch_status(self, ref: Ref, patch: Any, resource_version: str | None = None) -> dict[str, Any]:
        self.writes.append(("patch_status", ref.name))
        return {"metadata": {"resourceVersion": "2"}}

    def create(self, ref: Ref, body: Any) -> dict[str, Any]:
        self.writes.append(("create", str(ref)))
        return {"metadata": {"resourceVersion": "3"}}

    def patch(self, ref: Ref, patch: Any, content_type: str) -> dict[str, Any]:
        self.writes.append(("patch", str(ref)))
        return {"metadata": {"resourceVersion": "4"}}

    def delete(self, ref: Ref, uid: str | None = None, propagation: str = "Background") -> bool:
        self.writes.append(("delete", str(ref)))
        return True


def staged_for_a_swap(s: Any) -> World:
    """A world driven until the next plan would take a replica out of service."""
    w = World()
    for _ in range(300):
        p = planner.plan(w.observed(s))
        if decisions(w.status, p.status):
            assert [r.phase for r in p.status.replicas if r.phase == "Swapping"], "a swap, not a failure"
            return w
        w.status = p.status
        for a in p.actions:
            w.apply(a)
        w.tick()
    raise AssertionError("never reached a swap")


def body_of(w: World, s: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "rs",
            "namespace": "db-ns",
            "uid": w.resync_uid,
            "resourceVersion": "1",
            "generation": 1,
        },
        "spec": s.model_dump(by_alias=True, exclude_none=True, mode="json"),
        "status": status_body(w.status),
    }


def test_a_swap_planned_from_a_lagging_cache_is_decided_again_from_a_live_read() -> None:
    s = spec(primaryStableSeconds=0)
    w = staged_for_a_swap(s)
    stale = ObservedReader(w.observed(s))
    # Meanwhile the primary pod was replaced (a restart, a failover): the caches have not seen it.
    w.pods["db-1"]["metadata"]["uid"] = "a-new-pod"
    live = LiveWorld(w, s)
    out = reconcile(live, body_of(w, s), reader=stale)  # type: ignore[arg-type]
    assert live.reads > 0, "the live state was read"
    assert not [r for r in out.status.replicas if r.phase == "Swapping"]
    assert not [x for x in live.writes if x[0] == "delete" and ("data-db" in x[1] or "Pod" in x[1])], (
        live.writes
    )
    assert out.status.phase == "Failed" and any(c.reason == "PrimaryChanged" for c in out.status.conditions)


def test_the_same_swap_goes_ahead_when_the_live_read_agrees() -> None:
    s = spec(primaryStableSeconds=0)
    w = staged_for_a_swap(s)
    live = LiveWorld(w, s)
    out = reconcile(live, body_of(w, s), reader=ObservedReader(w.observed(s)))  # type: ignore[arg-type]
    assert [r.name for r in out.status.replicas if r.phase == "Swapping"]
    assert ("delete", "PersistentVolumeClaim db-ns/data-db-0") in live.writes


def test_a_volume_a_lagging_cache_lacks_is_read_live_not_taken_for_gone() -> None:
    s = spec(primaryStableSeconds=0)
    w = staged_for_a_swap(s)
    obs = w.observed(s)
    r = next(r for r in w.status.replicas if r.phase == "Detaching")
    lagging = ObservedReader(replace(obs, pvs={k: v for k, v in obs.pvs.items() if k != r.volumes[0].new_pv}))
    live = LiveWorld(w, s)
    seen = observe(CachedReaderOver(lagging, live), parse_resync(body_of(w, s)))
    assert r.volumes[0].new_pv in seen.pvs


class CachedReaderOver(CachedReader):
    """A ``CachedReader`` whose caches are ``reader``, and whose live API is ``live``."""

    def __init__(self, reader: ObservedReader, live: Any) -> None:
        self.reader, self.live = reader, live

    def get(self, ref: Ref) -> dict[str, Any] | None:
        return self.reader.get(ref)

    def list_objects(self, *args: Any, **kw: Any) -> list[dict[str, Any]]:
        return self.reader.list_objects(*args, **kw)


def test_decisions_are_swaps_failures_skips_and_rollbacks_newly_made() -> None:
    before = ClusterResyncStatus(
        phase="Resyncing",
        replicas=[ReplicaStatus(name="a", phase="Detaching"), ReplicaStatus(name="b", phase="Swapping")],
    )
    same = before.model_copy()
    assert decisions(before, same) is None
    swap = before.model_copy(
        update={"replicas": [ReplicaStatus(name="a", phase="Swapping"), before.replicas[1]]}
    )
    assert decisions(before, swap) == ["a"]
    failed = before.model_copy(update={"phase": "Failed"})
    assert decisions(before, failed) == ["a", "b"]
