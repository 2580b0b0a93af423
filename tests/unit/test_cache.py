"""The pure parts of the watch caches and of the wake-ups: selectors evaluated on cached objects,
which requests a cache may answer, slimming, and which resyncs an event wakes."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterresync import cache
from clusterresync.cache import SOURCES, Source, _covers, labels_match, slim
from clusterresync.handlers import Wakeups
from clusterresync.models import LABEL_RESYNC_UID

keys = st.sampled_from(["a", "b", "c"])
labelsets = st.dictionaries(keys, st.sampled_from(["1", "2"]), max_size=3)


@given(labelsets, keys, st.sampled_from(["1", "2"]))
def test_equality_selectors_match_as_the_api_server_does(labels: dict[str, str], k: str, v: str) -> None:
    assert labels_match(f"{k}={v}", labels) is (labels.get(k) == v)
    assert labels_match(f"{k}=={v}", labels) is (labels.get(k) == v)
    assert labels_match(f"{k}!={v}", labels) is (labels.get(k) != v)
    assert labels_match(k, labels) is (k in labels)
    assert labels_match(f"!{k}", labels) is (k not in labels)
    assert labels_match(f"{k}={v},{k}", labels) is (labels.get(k) == v)


def test_set_based_selectors_are_not_evaluated_here() -> None:
    assert labels_match("a in (1,2)", {"a": "1"}) is None
    assert not _covers(Source("v1", "pods"), "a notin (1)", "")


def test_a_labelled_source_answers_only_requests_that_require_its_label() -> None:
    jobs = next(s for s in SOURCES if s.plural == "jobs")
    assert _covers(jobs, f"{LABEL_RESYNC_UID}=u1", "")
    assert _covers(jobs, f"app=x,{LABEL_RESYNC_UID}==u1", "")
    assert not _covers(jobs, "", "")
    assert not _covers(jobs, f"{LABEL_RESYNC_UID}!=u1", "")
    events = next(s for s in SOURCES if s.plural == "events")
    assert _covers(events, "", cache.PROVISIONING_FAILED)
    assert not _covers(events, "", "")
    assert not _covers(Source("v1", "pods"), "", "metadata.name=x")


def test_slim_drops_managed_fields_and_the_last_applied_annotation_only() -> None:
    obj = {
        "metadata": {
            "name": "x",
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}", "keep": "me"},
        },
        "spec": {"a": 1},
    }
    out = slim(obj)
    assert out == {"metadata": {"name": "x", "annotations": {"keep": "me"}}, "spec": {"a": 1}}
    assert "managedFields" in obj["metadata"], "the original is not changed"


def test_every_source_that_wakes_says_how() -> None:
    assert {s.wakes for s in SOURCES} <= {"namespace", "volume", "all", "none"}
    assert all(s.namespaced == (s.wakes == "namespace") for s in SOURCES)


@pytest.mark.parametrize("namespaces", [["a", "b"], ["team-*"], []])
def test_served_namespaces_with_a_pattern_mean_all(namespaces: list[str]) -> None:
    cache.configure(namespaces)
    try:
        assert cache.configured() == (() if any("*" in n for n in namespaces) else tuple(namespaces))
    finally:
        cache.configure([])


def test_wakeups_route_each_event_to_the_resyncs_it_concerns() -> None:
    async def main() -> None:
        w = Wakeups()
        w.register("u1", "ns1")
        w.register("u2", "ns2")
        by = {s.plural: s for s in SOURCES}
        pod = {"metadata": {"namespace": "ns1", "name": "p"}}
        assert w.concerned(by["pods"], "MODIFIED", pod) == {"u1"}
        pv_bound = {"metadata": {"name": "pv"}, "spec": {"claimRef": {"namespace": "ns2"}}}
        assert w.concerned(by["persistentvolumes"], "MODIFIED", pv_bound) == {"u2"}
        pv_ours = {"metadata": {"name": "pv", "labels": {LABEL_RESYNC_UID: "u1"}}, "spec": {}}
        assert w.concerned(by["persistentvolumes"], "MODIFIED", pv_ours) == {"u1"}
        assert w.concerned(by["nodes"], "MODIFIED", {"metadata": {"name": "n"}}) == set()
        assert w.concerned(by["storageclasses"], "ADDED", {"metadata": {"name": "c"}}) == {"u1", "u2"}
        assert w.concerned(by["pods"], "LIST", None) == {"u1", "u2"}
        w.unregister("u1")
        assert w.concerned(by["pods"], "MODIFIED", pod) == set()

    asyncio.run(main())


def test_a_notification_from_another_thread_sets_the_daemons_event() -> None:
    async def main() -> None:
        w = Wakeups()
        event = w.register("u1", "ns1")
        pods = next(s for s in SOURCES if s.plural == "pods")
        await asyncio.to_thread(w.notify, pods, "ADDED", {"metadata": {"namespace": "ns1"}})
        await asyncio.wait_for(event.wait(), 5)

    asyncio.run(main())
