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


def test_429_fault_sends_retry_after_in_the_header_and_the_status(kubesim: KubeSim, ns: str) -> None:
    path = f"/api/v1/namespaces/{ns}/configmaps"
    # The admin endpoint takes the new field; 2.5 s go out as 3, the whole seconds HTTP carries.
    status, _, out = kubesim.request(
        "POST",
        "/kubesim/faults",
        body={
            "kind": "api",
            "match": {"verb": "list", "resource": "configmaps", "namespace": ns},
            "code": 429,
            "retry_after": 2.5,
            "count": 1,
            "message": "Too many requests: slow down",
        },
    )
    assert status == 200
    listed = kubesim.request("POST", "/kubesim/faults/list")[2]["faults"]
    assert [f["retry_after"] for f in listed if f["id"] == out["id"]] == [2.5]
    status, headers, body = kubesim.request("GET", path)
    assert status == 429 and headers["Retry-After"] == "3"
    assert body["reason"] == "TooManyRequests" and body["details"] == {"retryAfterSeconds": 3}
    assert body["message"] == "Too many requests: slow down"
    assert kubesim.request("GET", path)[0] == 200  # the count is used up


def test_retry_after_defaults_and_other_codes(kubesim: KubeSim, ns: str) -> None:
    path = f"/api/v1/namespaces/{ns}/secrets"
    match = {"verb": "list", "resource": "secrets", "namespace": ns}
    kubesim.call(lambda c: c.faults.add("api", match=match, code=503, count=1))
    status, headers, body = kubesim.request("GET", path)
    assert status == 503 and headers["Retry-After"] == "1" and body["details"] == {"retryAfterSeconds": 1}
    kubesim.call(lambda c: c.faults.add("api", match=match, code=500, count=1))
    status, headers, body = kubesim.request("GET", path)
    assert status == 500 and "Retry-After" not in headers and "details" not in body
    kubesim.call(lambda c: c.faults.add("api", match=match, code=500, retry_after=0, count=1))
    status, headers, body = kubesim.request("GET", path)
    assert status == 500 and headers["Retry-After"] == "0"


def test_403_fault_simulates_quota_and_admission_denials(kubesim: KubeSim, ns: str) -> None:
    """A 403 with a given message and details: what ResourceQuota, PodSecurity or NamespaceLifecycle
    would answer, on a cluster that does not run them."""
    message = (
        'persistentvolumeclaims "data" is forbidden: exceeded quota: storage, requested: '
        "requests.storage=1Gi, used: requests.storage=10Gi, limited: requests.storage=10Gi"
    )
    details = {
        "name": "data",
        "kind": "persistentvolumeclaims",
        "causes": [{"reason": "NamespaceTerminating", "message": "just an example"}],
    }
    kubesim.request(
        "POST",
        "/kubesim/faults",
        body={
            "kind": "api",
            "match": {"verb": "create", "resource": "persistentvolumeclaims", "namespace": ns},
            "code": 403,
            "message": message,
            "details": details,
            "count": 1,
        },
    )
    status, headers, body = kubesim.request(
        "POST", f"/api/v1/namespaces/{ns}/persistentvolumeclaims", body={"metadata": {"name": "data"}}
    )
    assert status == 403 and "Retry-After" not in headers
    assert (body["reason"], body["message"], body["details"]) == ("Forbidden", message, details)


def test_admin_endpoint_refuses_unknown_fault_fields(kubesim: KubeSim) -> None:
    before = kubesim.request("POST", "/kubesim/faults/list")[2]["faults"]
    status, _, body = kubesim.request(
        "POST", "/kubesim/faults", body={"kind": "api", "code": 429, "retryAfter": 1}
    )
    assert status == 400 and "retryAfter" in body["message"] and "retry_after" in body["message"]
    status, _, body = kubesim.request("POST", "/kubesim/faults", body={"kind": "api", "retry_after": -1})
    assert status == 400 and "retry_after" in body["message"]
    assert kubesim.request("POST", "/kubesim/faults/list")[2]["faults"] == before


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
