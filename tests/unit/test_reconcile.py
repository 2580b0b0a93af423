"""The pure parts of one reconciliation: the status patch and the primary's protected objects."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clusterresync.models import ClusterResyncStatus, PrimaryStatus
from clusterresync.reconcile import merge_diff, protected_of, status_body

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
