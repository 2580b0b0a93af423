"""Conformance of kubesim's API semantics, driven with the official kubernetes Python client."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from kubesim.testing import KubeSim

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "size": {"type": "integer", "default": 1, "minimum": 0},
                                    "color": {"type": "string", "enum": ["red", "blue"]},
                                },
                            },
                            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                        },
                    }
                },
            }
        ],
    },
}


def _status(e: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(e.body)
    return body


@pytest.fixture
def ns(k8s_client: client.ApiClient) -> str:
    name = "t-" + uuid.uuid4().hex[:8]
    client.CoreV1Api(k8s_client).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture(scope="module")
def widgets(k8s_client: client.ApiClient) -> client.CustomObjectsApi:
    ext = client.ApiextensionsV1Api(k8s_client)
    ext.create_custom_resource_definition(CRD)
    return client.CustomObjectsApi(k8s_client)


def test_discovery_lists_core_groups_and_snapshot_api(k8s_client: client.ApiClient) -> None:
    groups = {g.name: g for g in client.ApisApi(k8s_client).get_api_versions().groups}
    for g in (
        "apps",
        "batch",
        "storage.k8s.io",
        "rbac.authorization.k8s.io",
        "coordination.k8s.io",
        "apiextensions.k8s.io",
        "events.k8s.io",
        "snapshot.storage.k8s.io",
    ):
        assert g in groups, g
    core = client.CoreV1Api(k8s_client).get_api_resources()
    pods = next(r for r in core.resources if r.name == "pods")
    assert pods.namespaced and pods.kind == "Pod" and "watch" in pods.verbs and pods.short_names == ["po"]
    assert {r.name for r in core.resources} >= {
        "pods/status",
        "pods/exec",
        "pods/log",
        "persistentvolumeclaims/status",
    }
    assert client.VersionApi(k8s_client).get_code().major == "1"


def test_metadata_uid_rv_and_conflicts(k8s_client: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(k8s_client)
    cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    assert cm.metadata.uid and cm.metadata.creation_timestamp and int(cm.metadata.resource_version) > 0
    cm2 = core.create_namespaced_config_map(ns, {"metadata": {"name": "b"}})
    assert int(cm2.metadata.resource_version) > int(cm.metadata.resource_version)
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "a"}})
    assert e.value.status == 409 and _status(e.value)["reason"] == "AlreadyExists"
    stale = {"metadata": {"name": "a", "resourceVersion": cm.metadata.resource_version}, "data": {"k": "1"}}
    core.replace_namespaced_config_map("a", ns, stale)
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map("a", ns, stale)
    assert e.value.status == 409 and _status(e.value)["reason"] == "Conflict"
    assert "the object has been modified" in _status(e.value)["message"]
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("nope", ns)
    assert e.value.status == 404 and _status(e.value)["message"] == 'configmaps "nope" not found'


def test_invalid_object_is_422_with_causes(k8s_client: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(k8s_client)
    with pytest.raises(ApiException) as e:
        core.create_namespaced_persistent_volume_claim(
            ns, {"metadata": {"name": "c"}, "spec": {"resources": {"requests": {"storage": "1Mi"}}}}
        )
    st = _status(e.value)
    assert e.value.status == 422 and st["reason"] == "Invalid"
    assert any(c["field"] == "spec.accessModes" for c in st["details"]["causes"])
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "Bad_Name"}})
    assert e.value.status == 422 and "metadata.name" in _status(e.value)["message"]


def test_unknown_and_mistyped_fields_of_builtins(
    kubesim: KubeSim, k8s_client: client.ApiClient, ns: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "bogus": 1},
    }
    path = f"/api/v1/namespaces/{ns}/pods"
    # Strict (what kubectl asks for): rejected.
    status, _, body = kubesim.request("POST", path, query={"fieldValidation": "Strict"}, body=pod)
    assert status == 400 and 'unknown field "spec.bogus"' in body["message"]
    # Default (Warn): dropped, with a Warning header.
    status, headers, body = kubesim.request("POST", path, body=pod)
    assert status == 201 and "bogus" not in body["spec"]
    assert "unknown field" in headers.get("Warning", "")
    bad_type = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"}, "spec": {"containers": "nope"}}
    status, _, body = kubesim.request("POST", path, body=bad_type)
    assert status == 400 and "cannot be handled as a Pod" in body["message"]


def test_generation_and_status_subresource(widgets: client.CustomObjectsApi, ns: str) -> None:
    w = widgets.create_namespaced_custom_object(
        "example.com",
        "v1",
        ns,
        "widgets",
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"color": "red"},
            "status": {"phase": "ignored"},
        },
    )
    assert w["metadata"]["generation"] == 1
    assert w["spec"]["size"] == 1, "defaulted from the schema"
    assert "status" not in w, "status is ignored on create with a status subresource"
    w = widgets.patch_namespaced_custom_object_status(
        "example.com", "v1", ns, "widgets", "w", {"status": {"phase": "Ready"}, "spec": {"size": 9}}
    )
    assert w["status"]["phase"] == "Ready" and w["spec"]["size"] == 1 and w["metadata"]["generation"] == 1
    w = widgets.patch_namespaced_custom_object(
        "example.com", "v1", ns, "widgets", "w", {"spec": {"size": 3}, "status": {"phase": "ignored"}}
    )
    assert w["spec"]["size"] == 3 and w["status"]["phase"] == "Ready" and w["metadata"]["generation"] == 2
    w2 = widgets.patch_namespaced_custom_object(
        "example.com", "v1", ns, "widgets", "w", {"metadata": {"labels": {"a": "b"}}}
    )
    assert w2["metadata"]["generation"] == 2, "metadata changes do not bump generation"
    same = widgets.patch_namespaced_custom_object(
        "example.com", "v1", ns, "widgets", "w", {"spec": {"size": 3}}
    )
    assert same["metadata"]["resourceVersion"] == w2["metadata"]["resourceVersion"], (
        "a no-op write is not a write"
    )
    with pytest.raises(ApiException) as e:
        widgets.patch_namespaced_custom_object(
            "example.com", "v1", ns, "widgets", "w", {"spec": {"color": "green"}}
        )
    assert e.value.status == 422 and "spec.color" in _status(e.value)["message"]


def test_selectors(k8s_client: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(k8s_client)
    for name, labels in (
        ("a", {"app": "db", "tier": "1"}),
        ("b", {"app": "db", "tier": "2"}),
        ("c", {"app": "web"}),
    ):
        core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": labels}})

    def names(**kw: Any) -> list[str]:
        # Every namespace holds the ConfigMap kube-root-ca.crt (the root CA publisher's, no labels).
        items = core.list_namespaced_config_map(ns, **kw).items
        return [i.metadata.name for i in items if i.metadata.name != "kube-root-ca.crt"]

    assert names(label_selector="app=db") == ["a", "b"]
    assert names(label_selector="app!=db") == ["c"]
    assert names(label_selector="tier in (2,3)") == ["b"]
    assert names(label_selector="tier notin (2),app") == ["a", "c"]
    assert names(label_selector="!tier") == ["c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b,metadata.namespace=" + ns) == ["a", "c"]
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map(ns, field_selector="data.k=v")
    assert e.value.status == 400
    # No scheduler serves this schedulerName, so the pod stays Pending.
    pod = {
        "metadata": {"name": "p"},
        "spec": {"schedulerName": "none", "containers": [{"name": "c", "image": "x"}]},
    }
    core.create_namespaced_pod(ns, pod)
    assert [
        p.metadata.name for p in core.list_namespaced_pod(ns, field_selector="status.phase=Pending").items
    ] == ["p"]
    assert core.list_namespaced_pod(ns, field_selector="spec.nodeName=n1").items == []


def test_pagination(k8s_client: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(k8s_client)
    for i in range(5):
        core.create_namespaced_config_map(ns, {"metadata": {"name": f"cm{i}"}})
    # Six in all: the namespace's own kube-root-ca.crt comes last in name order.
    first = core.list_namespaced_config_map(ns, limit=2)
    assert len(first.items) == 2 and first.metadata._continue and first.metadata.remaining_item_count == 4
    seen = [i.metadata.name for i in first.items]
    tok = first.metadata._continue
    while tok:
        page = core.list_namespaced_config_map(ns, limit=2, _continue=tok)
        seen += [i.metadata.name for i in page.items]
        tok = page.metadata._continue
    assert seen == [*(f"cm{i}" for i in range(5)), "kube-root-ca.crt"]


def test_watch_order_resume_and_gone(kubesim: KubeSim, k8s_client: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(k8s_client)
    listed = core.list_namespaced_config_map(ns)
    rv0 = listed.metadata.resource_version
    for i in range(3):
        core.create_namespaced_config_map(ns, {"metadata": {"name": f"w{i}"}})
    core.patch_namespaced_config_map("w1", ns, {"data": {"x": "y"}})
    core.delete_namespaced_config_map("w0", ns)
    w = watch.Watch()
    events = []
    for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv0, timeout_seconds=1):
        events.append((ev["type"], ev["object"].metadata.name))
    assert events == [
        ("ADDED", "w0"),
        ("ADDED", "w1"),
        ("ADDED", "w2"),
        ("MODIFIED", "w1"),
        ("DELETED", "w0"),
    ]
    # Compacting the history makes the old version expire: the watch answers 410 Gone.
    kubesim.call(lambda c: c.api.store.compact())
    status, _, text = kubesim.request(
        "GET",
        f"/api/v1/namespaces/{ns}/configmaps",
        query={"watch": "true", "resourceVersion": rv0, "timeoutSeconds": "1"},
        decode=False,
    )
    lines = [json.loads(x) for x in str(text).splitlines() if x.strip()]
    assert status == 200
    assert (
        lines[0]["type"] == "ERROR"
        and lines[0]["object"]["code"] == 410
        and lines[0]["object"]["reason"] == "Expired"
    )


def test_watch_sees_every_change_live_with_bookmarks(
    kubesim: KubeSim, k8s_client: client.ApiClient, ns: str
) -> None:
    core = client.CoreV1Api(k8s_client)
    kubesim.call(lambda c: setattr(c.front, "bookmark_interval", 0.2))
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    got: list[tuple[str, str]] = []

    def run() -> None:
        _, _, text = kubesim.request(
            "GET",
            f"/api/v1/namespaces/{ns}/configmaps",
            query={
                "watch": "true",
                "resourceVersion": rv,
                "timeoutSeconds": "2",
                "allowWatchBookmarks": "true",
            },
            decode=False,
        )
        for piece in str(text).splitlines():
            if piece.strip():
                ev = json.loads(piece)
                got.append((ev["type"], ev["object"]["metadata"].get("name", "")))

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)
    for i in range(20):
        core.create_namespaced_config_map(ns, {"metadata": {"name": f"live{i}"}})
    t.join(10)
    added = [n for typ, n in got if typ == "ADDED"]
    assert added == [f"live{i}" for i in range(20)]
    assert any(typ == "BOOKMARK" for typ, _ in got)


def test_finalizers_and_deletion(k8s_client: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(k8s_client)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "f", "finalizers": ["example.com/hold"]}})
    core.delete_namespaced_config_map("f", ns)
    cm = core.read_namespaced_config_map("f", ns)
    assert cm.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_config_map(
            "f", ns, {"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}}
        )
    assert e.value.status == 422
    core.patch_namespaced_config_map("f", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("f", ns)
    assert e.value.status == 404


def _wait(pred: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _exists(fn: Any, *args: Any) -> bool:
    try:
        fn(*args)
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise


@pytest.mark.parametrize("policy", ["Background", "Foreground", "Orphan"])
def test_owner_references_and_propagation(k8s_client: client.ApiClient, ns: str, policy: str) -> None:
    core = client.CoreV1Api(k8s_client)
    owner = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner"}})
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
        "blockOwnerDeletion": True,
    }
    core.create_namespaced_config_map(ns, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    core.delete_namespaced_config_map("owner", ns, propagation_policy=policy)
    if policy == "Orphan":
        _wait(lambda: not _exists(core.read_namespaced_config_map, "owner", ns))
        child = core.read_namespaced_config_map("child", ns)
        assert not child.metadata.owner_references
    else:
        _wait(lambda: not _exists(core.read_namespaced_config_map, "child", ns))
        _wait(lambda: not _exists(core.read_namespaced_config_map, "owner", ns))


def test_namespace_deletion_removes_content(k8s_client: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s_client)
    name = "gone-" + uuid.uuid4().hex[:6]
    core.create_namespace({"metadata": {"name": name}})
    assert core.read_namespaced_service_account("default", name).metadata.name == "default"
    core.create_namespaced_config_map(name, {"metadata": {"name": "x", "finalizers": ["example.com/slow"]}})
    core.delete_namespace(name)
    assert core.read_namespace(name).status.phase == "Terminating"
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(name, {"metadata": {"name": "y"}})
    assert e.value.status == 403 and "being terminated" in _status(e.value)["message"]
    time.sleep(0.3)
    assert _exists(core.read_namespace, name), "a finalizer of content holds the namespace"
    core.patch_namespaced_config_map("x", name, {"metadata": {"finalizers": None}})
    _wait(lambda: not _exists(core.read_namespace, name))


def test_patch_types(kubesim: KubeSim, k8s_client: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(k8s_client)
    sts = {
        "metadata": {"name": "db"},
        "spec": {
            "selector": {"matchLabels": {"app": "db"}},
            "serviceName": "db",
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "containers": [
                        {"name": "db", "image": "postgres:16", "env": [{"name": "A", "value": "1"}]},
                        {"name": "side", "image": "busybox:1"},
                    ]
                },
            },
        },
    }
    apps.create_namespaced_stateful_set(ns, sts)
    # Strategic merge: containers merge by name.
    out = apps.patch_namespaced_stateful_set(
        "db", ns, {"spec": {"template": {"spec": {"containers": [{"name": "db", "image": "postgres:17"}]}}}}
    )
    cs = out.spec.template.spec.containers
    assert (
        [c.name for c in cs] == ["db", "side"] and cs[0].image == "postgres:17" and cs[0].env[0].name == "A"
    )
    # JSON patch.
    path = f"/apis/apps/v1/namespaces/{ns}/statefulsets/db"
    status, _, raw = kubesim.request(
        "PATCH",
        path,
        content_type="application/json-patch+json",
        body=[{"op": "replace", "path": "/spec/replicas", "value": 3}],
    )
    assert status == 200 and raw["spec"]["replicas"] == 3
    # JSON merge patch replaces lists whole.
    status, _, raw = kubesim.request(
        "PATCH",
        path,
        content_type="application/merge-patch+json",
        body={"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x:1"}]}}}},
    )
    assert [c["name"] for c in raw["spec"]["template"]["spec"]["containers"]] == ["only"]
    # A body that does not fit its content type is a 400.
    status, _, raw = kubesim.request(
        "PATCH", path, content_type="application/json-patch+json", body={"spec": {}}
    )
    assert status == 400 and raw["reason"] == "BadRequest"
    # Immutable StatefulSet fields are refused.
    with pytest.raises(ApiException) as e:
        apps.patch_namespaced_stateful_set("db", ns, {"spec": {"serviceName": "other"}})
    assert e.value.status == 422 and "updates to statefulset spec" in _status(e.value)["message"]


def test_scale_subresource(k8s_client: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(k8s_client)
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
                },
            },
        },
    )
    scale = apps.read_namespaced_deployment_scale("web", ns)
    assert scale.spec.replicas == 1 and scale.status.selector == "app=web"
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 4


def test_dry_run_creates_nothing(k8s_client: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(k8s_client)
    out = core.create_namespaced_config_map(ns, {"metadata": {"name": "dry"}}, dry_run="All")
    assert out.metadata.name == "dry"
    assert not _exists(core.read_namespaced_config_map, "dry", ns)


def test_events_in_both_groups(k8s_client: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(k8s_client)
    core.create_namespaced_event(
        ns,
        {
            "metadata": {"name": "e1"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": ns},
            "reason": "Tested",
            "message": "hello",
            "type": "Normal",
            "source": {"component": "pytest"},
        },
    )
    listed = core.list_namespaced_event(ns, field_selector="involvedObject.name=p,reason=Tested")
    assert [e.metadata.name for e in listed.items] == ["e1"]
    # An events.k8s.io/v1 Event is the same object seen through the other group.
    client.EventsV1Api(k8s_client).create_namespaced_event(
        ns,
        {
            "metadata": {"name": "e2"},
            "regarding": {"kind": "Pod", "name": "p", "namespace": ns},
            "reason": "Tested2",
            "note": "hi",
            "type": "Normal",
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "example.com/pytest",
            "reportingInstance": "pytest-1",
            "action": "Testing",
        },
    )
    ev = core.read_namespaced_event("e2", ns)
    assert (
        ev.message == "hi"
        and ev.involved_object.name == "p"
        and ev.reporting_component == "example.com/pytest"
    )
    ev2 = client.EventsV1Api(k8s_client).read_namespaced_event("e2", ns)
    assert ev2.note == "hi" and ev2.regarding.name == "p"
