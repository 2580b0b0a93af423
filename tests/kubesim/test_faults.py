"""API-level fault injection (kinds ``api`` and ``latency``), dropped watches and paused controllers,
through the Python API and the admin HTTP endpoint scripts use (``POST /kubesim/<action>``)."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim.testing import KubeSim


@pytest.fixture
def ns(kubesim: KubeSim) -> str:
    name = "f-" + uuid.uuid4().hex[:6]
    kubesim.kubectl("create", "namespace", name)
    return name


def test_api_fault_fails_matching_requests_a_counted_number_of_times(
    kubesim: KubeSim, k8s_client: client.ApiClient, ns: str
) -> None:
    core = client.CoreV1Api(k8s_client)
    status, _, out = kubesim.request(
        "POST",
        "/kubesim/faults",
        body={
            "kind": "api",
            "match": {"verb": "create", "resource": "configmaps", "namespace": ns},
            "code": 503,
            "count": 2,
            "message": "etcd is sad",
        },
    )
    assert status == 200 and out["id"]
    for _ in range(2):
        with pytest.raises(ApiException) as e:
            core.create_namespaced_config_map(ns, {"metadata": {"name": "x"}})
        assert e.value.status == 503 and json.loads(e.value.body)["message"] == "etcd is sad"
    core.create_namespaced_config_map(ns, {"metadata": {"name": "x"}})  # the count is used up
    # Other verbs and resources were never affected.
    assert core.read_namespaced_config_map("x", ns).metadata.name == "x"


def test_api_fault_by_name_and_removal(kubesim: KubeSim, k8s_client: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(k8s_client)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "a"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "b"}})
    fid = kubesim.call(
        lambda c: c.faults.add("api", match={"verb": "get", "name": "a", "namespace": ns}, code=500)
    )
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("a", ns)
    assert e.value.status == 500
    assert core.read_namespaced_config_map("b", ns).metadata.name == "b"
    listed = kubesim.request("POST", "/kubesim/faults/list")[2]["faults"]
    assert [f["id"] for f in listed] == [fid]
    assert kubesim.request("POST", "/kubesim/faults/delete", body={"id": fid})[2] == {"deleted": True}
    assert core.read_namespaced_config_map("a", ns).metadata.name == "a"


def test_probability_fault_fires_sometimes(kubesim: KubeSim, k8s_client: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(k8s_client)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "p"}})
    kubesim.call(
        lambda c: c.faults.add(
            "api", match={"verb": "get", "name": "p", "namespace": ns}, probability=0.5, code=500
        )
    )
    failures = 0
    for _ in range(60):
        try:
            core.read_namespaced_config_map("p", ns)
        except ApiException:
            failures += 1
    kubesim.call(lambda c: c.faults.clear())
    assert 5 < failures < 55


def test_latency_fault_delays_requests(kubesim: KubeSim, k8s_client: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(k8s_client)
    kubesim.call(
        lambda c: c.faults.add(
            "latency", match={"verb": "list", "resource": "secrets", "namespace": ns}, delay=0.5, count=1
        )
    )
    started = time.monotonic()
    core.list_namespaced_secret(ns)
    assert time.monotonic() - started >= 0.45


def test_dropped_watches_end_their_streams(kubesim: KubeSim, ns: str) -> None:
    result: dict[str, float] = {}

    def watch() -> None:
        started = time.monotonic()
        kubesim.request(
            "GET",
            f"/api/v1/namespaces/{ns}/configmaps",
            query={"watch": "true", "timeoutSeconds": "30"},
            decode=False,
        )
        result["took"] = time.monotonic() - started

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.5)
    out = kubesim.request("POST", "/kubesim/watches/drop", body={"resource": "configmaps"})[2]
    assert out["dropped"] >= 1
    t.join(10)
    assert result["took"] < 10, "the watch ended when it was dropped, not at its timeout"


def test_paused_controller_does_nothing_until_resumed(
    kubesim: KubeSim, k8s_client: client.ApiClient, ns: str
) -> None:
    core = client.CoreV1Api(k8s_client)
    assert "garbagecollector" in kubesim.request("POST", "/kubesim/controllers/list")[2]["controllers"]
    kubesim.request("POST", "/kubesim/controllers/pause", body={"name": "garbagecollector"})
    try:
        owner = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner"}})
        ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
        core.create_namespaced_config_map(ns, {"metadata": {"name": "child", "ownerReferences": [ref]}})
        core.delete_namespaced_config_map("owner", ns)
        time.sleep(0.5)
        assert core.read_namespaced_config_map("child", ns).metadata.name == "child"
    finally:
        kubesim.request("POST", "/kubesim/controllers/resume", body={"name": "garbagecollector"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_config_map("child", ns)
        except ApiException as e:
            if e.status == 404:
                return
            raise
        time.sleep(0.05)
    raise AssertionError("the resumed garbage collector did not delete the orphan")


def test_admin_endpoint_is_for_admins_only(kubesim: KubeSim, ns: str) -> None:
    kubesim.kubectl("create", "serviceaccount", "-n", ns, "intruder")
    token = kubesim.call(lambda c: c.service_account_token(ns, "intruder"))
    status, _, body = kubesim.request("POST", "/kubesim/faults/clear", token=token)
    assert status == 403 and body["reason"] == "Forbidden"
