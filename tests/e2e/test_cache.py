"""The operator's watch caches (``clusterresync.cache``) against kubesim: list then watch, the
objects kept current and slimmed, read-your-writes, a watch that expired, an optional API that
appears later, a refusal that surfaces with its verb, and the reader's live fallback."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config

from clusterresync import cache as caches
from clusterresync.cache import Cache, CachedReader, Reflector, Source
from clusterresync.kube import ErrorKind, Kube, KubeError, Written
from clusterresync.state import Ref
from kubesim.cluster import ClusterConfig
from kubesim.snapshot_crds import crds as snapshot_crds
from kubesim.testing import KubeSim, wait_for

PODS = Source("v1", "pods")
CLAIMS = Source("v1", "persistentvolumeclaims")
CLASSES = Source("snapshot.storage.k8s.io/v1", "volumesnapshotclasses", namespaced=False, optional=True)


@pytest.fixture(scope="module")
def sim() -> Iterator[KubeSim]:
    # A short watch history, so that a watch from an old version is answered 410 Expired.
    with KubeSim(config=ClusterConfig(watch_history=50, bookmark_interval=0.5)) as s:
        yield s


def admin(sim: KubeSim) -> Kube:
    return Kube(config.new_client_from_config(config_file=str(sim.kubeconfig)))


@pytest.fixture
def ns(sim: KubeSim) -> str:
    name = "c-" + uuid.uuid4().hex[:6]
    sim.kubectl("create", "namespace", name)
    return name


def pod(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "schedulerName": "nobody"},
    }


def started(c: Cache) -> Cache:
    c.start()
    assert c.wait_synced(15) == []
    return c


def test_lists_then_follows_changes_and_keeps_objects_slim(sim: KubeSim, ns: str) -> None:
    kube = admin(sim)
    kube.create(Ref("v1", "Pod", "pods", "", ns), pod("before"))
    c = started(Cache(kube, [ns], [PODS]))
    try:
        reader = CachedReader(c, kube)
        assert [p["metadata"]["name"] for p in reader.list_objects("v1", "pods", ns)] == ["before"]
        kube.create(Ref("v1", "Pod", "pods", "", ns), pod("after"))
        wait_for(lambda: reader.get(Ref("v1", "Pod", "pods", "after", ns)) is not None, 10, "the new pod")
        got = reader.get(Ref("v1", "Pod", "pods", "after", ns))
        assert got is not None and "managedFields" not in got["metadata"]
        kube.delete(Ref("v1", "Pod", "pods", "before", ns))
        wait_for(lambda: reader.get(Ref("v1", "Pod", "pods", "before", ns)) is None, 10, "the deletion")
        # Label selectors are evaluated on the cached objects.
        assert len(reader.list_objects("v1", "pods", ns, label_selector="app=x")) == 1
        assert reader.list_objects("v1", "pods", ns, label_selector="app!=x") == []
    finally:
        c.stop()


def test_wait_seen_returns_once_the_cache_reflects_the_writes(sim: KubeSim, ns: str) -> None:
    kube = admin(sim)
    c = started(Cache(kube, [ns], [PODS]))
    try:
        writes: list[Written] = []
        rec = kube.recording(writes)
        rec.create(Ref("v1", "Pod", "pods", "", ns), pod("p"))
        rec.patch(
            Ref("v1", "Pod", "pods", "p", ns),
            {"metadata": {"labels": {"v": "2"}}},
            "application/merge-patch+json",
        )
        assert [w.name for w in writes] == ["p", "p"] and all(w.resource_version for w in writes)
        assert c.wait_seen(writes, 10)
        got = CachedReader(c, kube).get(Ref("v1", "Pod", "pods", "p", ns))
        assert got is not None and got["metadata"]["labels"]["v"] == "2"
        rec.delete(Ref("v1", "Pod", "pods", "p", ns))
        assert writes[-1].deleted
        assert c.wait_seen(writes, 10)
        # A version no watch will deliver is not seen: wait_seen says so when its time is up.
        phantom = Written("v1", "pods", ns, "ghost", "999999999")
        assert not c.wait_seen([phantom], 0.3)
    finally:
        c.stop()


def test_a_watch_from_an_expired_version_lists_again(sim: KubeSim, ns: str) -> None:
    kube = admin(sim)
    r = Reflector(kube, PODS, ns, [])
    real_list = r._list
    calls = []

    def list_then_pretend_old() -> str:
        calls.append(real_list())
        # The first list pretends its version is the oldest one: the watch from it is 410 Expired.
        return "1" if len(calls) == 1 else calls[-1]

    for i in range(60):  # more changes than the watch history keeps
        kube.create(Ref("v1", "ConfigMap", "configmaps", "", ns), {"metadata": {"name": f"cm{i}"}})
    with pytest.raises(KubeError) as e:
        next(iter(kube.watch("v1", "pods", ns, resource_version="1")))
    assert e.value.code == 410, e.value
    r._list = list_then_pretend_old  # type: ignore[method-assign]
    r.start()
    try:
        wait_for(lambda: len(calls) >= 2, 15, "a second list after 410 Expired")
        kube.create(Ref("v1", "Pod", "pods", "", ns), pod("late"))
        wait_for(lambda: any(p["metadata"]["name"] == "late" for p in r.items(ns)), 10, "watching again")
    finally:
        r.stop()


def test_an_optional_api_absent_then_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caches, "ABSENT_PROBE_SECONDS", 0.2)
    with KubeSim() as s:
        for crd in snapshot_crds():
            s.kubectl("delete", "crd", crd["metadata"]["name"])
        kube = admin(s)
        c = Cache(kube, [], [CLASSES])
        c.start()
        try:
            assert c.wait_synced(15) == []  # absent counts as settled
            reader = CachedReader(c, kube)
            with pytest.raises(KubeError) as e:
                reader.list_objects("snapshot.storage.k8s.io/v1", "volumesnapshotclasses")
            assert e.value.kind == ErrorKind.MISSING_API
            for crd in snapshot_crds():
                s.kubectl("apply", "-f", "-", input=json.dumps(crd))
            wait_for(
                lambda: c.reflectors[("snapshot.storage.k8s.io/v1", "volumesnapshotclasses", "")].synced,
                20,
                "the API found and listed",
            )
            assert isinstance(
                reader.list_objects("snapshot.storage.k8s.io/v1", "volumesnapshotclasses"), list
            )
        finally:
            c.stop()


def test_a_refused_list_surfaces_with_its_verb(sim: KubeSim, ns: str, tmp_path: Path) -> None:
    sim.kubectl("create", "serviceaccount", "nobody", "-n", ns)
    kc = sim.service_account_kubeconfig(ns, "nobody", tmp_path / "kc")
    kube = Kube(config.new_client_from_config(config_file=str(kc)))
    c = Cache(kube, [ns], [PODS])
    c.start()
    try:
        assert c.wait_synced(2) != []
        with pytest.raises(KubeError) as e:
            CachedReader(c, kube).list_objects("v1", "pods", ns)
        assert e.value.kind == ErrorKind.FORBIDDEN and e.value.verb == "list"
    finally:
        c.stop()


def test_requests_the_caches_do_not_cover_are_read_live(sim: KubeSim, ns: str) -> None:
    kube = admin(sim)
    other = "c-" + uuid.uuid4().hex[:6]
    sim.kubectl("create", "namespace", other)
    kube.create(Ref("v1", "Pod", "pods", "", other), pod("elsewhere"))
    kube.create(
        Ref("v1", "PersistentVolumeClaim", "persistentvolumeclaims", "", ns),
        {
            "metadata": {"name": "claim"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
        },
    )
    c = started(Cache(kube, [ns], [PODS]))
    try:
        reader = CachedReader(c, kube)
        # Another namespace than the served one, a resource no source watches, a set-based selector.
        assert [p["metadata"]["name"] for p in reader.list_objects("v1", "pods", other)] == ["elsewhere"]
        assert (
            reader.get(Ref("v1", "PersistentVolumeClaim", "persistentvolumeclaims", "claim", ns)) is not None
        )
        assert reader.list_objects("v1", "pods", other, label_selector="app in (x)") != []
        assert reader.list_objects("v1", "pods", ns) == []
    finally:
        c.stop()
