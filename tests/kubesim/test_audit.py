"""The audit log (``kubesim serve --audit-log``, ``KubeSim(audit_log=...)``): one ``audit.k8s.io/v1``
``Event`` per request at level Metadata, as ``staging/src/k8s.io/apiserver/pkg/audit/request.go``
and ``pkg/endpoints/filters/audit.go`` fill it, and the reader helpers in ``kubesim.audit``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from kubesim import audit
from kubesim.cluster import ADMIN_USER
from kubesim.testing import KubeSim, kubectl_binary, wait_for

NS = "audited"
MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
EVENT_KEYS = {
    "kind",
    "apiVersion",
    "level",
    "auditID",
    "stage",
    "requestURI",
    "verb",
    "user",
    "sourceIPs",
    "responseStatus",
    "requestReceivedTimestamp",
    "stageTimestamp",
}


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audit") / "audit.log"


@pytest.fixture(scope="module")
def kubesim(log_path: Path) -> Iterator[KubeSim]:
    with KubeSim(audit_log=log_path) as sim:
        sim.kubectl("create", "namespace", NS)
        sim.kubectl("create", "serviceaccount", "nobody", "-n", NS)
        yield sim


def _wait(path: Path, pred: Any, n: int = 1) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]] | None:
        evs = [e for e in audit.read(path) if pred(e)]
        return evs if len(evs) >= n else None

    return wait_for(found, what=f"{n} audit line(s)")


def by_uri(fragment: str) -> Any:
    return lambda e: fragment in e["requestURI"]


def check_shape(ev: dict[str, Any]) -> None:
    assert set(ev) >= EVENT_KEYS, ev
    assert ev["kind"] == "Event" and ev["apiVersion"] == "audit.k8s.io/v1" and ev["level"] == "Metadata"
    uuid.UUID(ev["auditID"])
    assert ev["stage"] in ("ResponseStarted", "ResponseComplete")
    assert MICRO.match(ev["requestReceivedTimestamp"]) and MICRO.match(ev["stageTimestamp"])
    assert ev["requestReceivedTimestamp"] <= ev["stageTimestamp"]
    assert ev["responseStatus"]["metadata"] == {}
    assert ev["sourceIPs"] == ["127.0.0.1"]


def test_python_client_verbs(kubesim: KubeSim, k8s_client: client.ApiClient, log_path: Path) -> None:
    core = client.CoreV1Api(k8s_client)
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm"), data={"a": "1"})
    core.create_namespaced_config_map(NS, cm, field_manager="py-audit")
    core.read_namespaced_config_map("py-cm", NS)
    core.list_namespaced_config_map(NS, label_selector="audit=py")
    core.list_config_map_for_all_namespaces(label_selector="audit=py-all")
    core.patch_namespaced_config_map("py-cm", NS, {"data": {"b": "2"}})
    list(
        watch.Watch().stream(
            core.list_namespaced_config_map, NS, timeout_seconds=1, label_selector="audit=pywatch"
        )
    )
    core.delete_namespaced_config_map("py-cm", NS)

    evs = _wait(
        log_path,
        lambda e: (
            "py-cm" in e["requestURI"]
            or "py-audit" in e["requestURI"]
            or re.search("audit%3Dpy(&|-all|$)", e["requestURI"])
        ),
        5,
    )
    evs += _wait(log_path, by_uri("audit%3Dpywatch"), 2)
    for ev in evs:
        check_shape(ev)
        assert ev["user"]["username"] == ADMIN_USER and "system:masters" in ev["user"]["groups"]
        assert ev["userAgent"].startswith("OpenAPI-Generator/")
        assert ev["annotations"]["authorization.k8s.io/decision"] == "allow"
        assert "impersonatedUser" not in ev
    complete = [e for e in evs if e["stage"] == "ResponseComplete"]
    got = {(e["verb"], e["responseStatus"]["code"]) for e in complete}
    assert got == {
        ("create", 201),
        ("get", 200),
        ("list", 200),
        ("patch", 200),
        ("watch", 200),
        ("delete", 200),
    }
    create = next(e for e in complete if e["verb"] == "create")
    assert create["requestURI"] == f"/api/v1/namespaces/{NS}/configmaps?fieldManager=py-audit"
    assert create["objectRef"] == {"resource": "configmaps", "namespace": NS, "apiVersion": "v1"}
    get = next(e for e in complete if e["verb"] == "get")
    assert get["objectRef"] == {
        "resource": "configmaps",
        "namespace": NS,
        "name": "py-cm",
        "apiVersion": "v1",
    }
    lists = [e for e in complete if e["verb"] == "list"]
    assert {e["objectRef"].get("namespace") for e in lists} == {NS, None}
    assert audit.cluster_wide_lists(evs) == [e for e in lists if "namespace" not in e["objectRef"]]
    # A watch: ResponseStarted when its headers go out, then ResponseComplete, one auditID.
    started, done = [e for e in evs if e["verb"] == "watch"]
    assert (started["stage"], done["stage"]) == ("ResponseStarted", "ResponseComplete")
    assert started["auditID"] == done["auditID"]
    assert started["stageTimestamp"] <= done["stageTimestamp"]
    assert audit.verbs(evs) == {"create": 1, "get": 1, "list": 2, "patch": 1, "watch": 1, "delete": 1}


def test_kubectl_requests_and_discovery(kubesim: KubeSim, log_path: Path) -> None:
    kubesim.kubectl("create", "configmap", "kc-cm", "-n", NS, "--from-literal=a=1")
    kubesim.kubectl("get", "configmap", "kc-cm", "-n", NS)
    kubesim.kubectl("get", "configmaps", "-A", "-l", "audit=kubectl-all")
    kubesim.kubectl("delete", "configmap", "kc-cm", "-n", NS)
    evs = [e for e in _wait(log_path, by_uri("kc-cm"), 2) if e["stage"] == "ResponseComplete"]
    for ev in evs:
        check_shape(ev)
        assert ev["userAgent"].startswith("kubectl")
    assert {e["verb"] for e in evs} >= {"get", "delete"}
    (wide,) = _wait(log_path, by_uri("audit%3Dkubectl-all"))
    assert wide["verb"] == "list" and wide["objectRef"] == {"resource": "configmaps", "apiVersion": "v1"}
    assert wide in audit.select(log_path, cluster_scoped_list=True, user=ADMIN_USER)
    # kubectl create sends the object without a name in the path: objectRef has no name.
    creates = audit.select(log_path, verb="create", resource="configmaps", namespace=NS)
    assert any(e["userAgent"].startswith("kubectl") for e in creates)


def test_non_resource_requests(kubesim: KubeSim, log_path: Path) -> None:
    for path in ("/healthz", "/version", "/api", "/apis", "/openapi/v3"):
        code, _, _ = kubesim.request("GET", path, decode=False)
        assert code == 200, path
    for path in ("/healthz", "/version", "/api", "/apis", "/openapi/v3"):
        ev = _wait(log_path, lambda e, p=path: e["requestURI"] == p)[-1]
        check_shape(ev)
        assert ev["verb"] == "get" and "objectRef" not in ev
        assert ev["responseStatus"] == {"metadata": {}, "code": 200}
        assert ev["annotations"]["authorization.k8s.io/decision"] == "allow"
        assert ev["userAgent"].startswith("Python-urllib/")


def test_not_found_and_invalid_carry_the_status(kubesim: KubeSim, log_path: Path) -> None:
    code, _, _ = kubesim.request("GET", f"/api/v1/namespaces/{NS}/configmaps/missing-cm")
    assert code == 404
    (ev,) = _wait(log_path, by_uri("missing-cm"))
    check_shape(ev)
    assert ev["responseStatus"] == {
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "missing-cm" not found',
        "reason": "NotFound",
        "details": {"name": "missing-cm", "kind": "configmaps"},
        "code": 404,
    }
    assert ev["objectRef"]["name"] == "missing-cm"
    # Rejected by validation: the line has the 422.
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not_Valid"}}
    code, _, _ = kubesim.request("POST", f"/api/v1/namespaces/{NS}/configmaps?audit=invalid", body=body)
    assert code == 422
    (ev,) = _wait(log_path, by_uri("audit=invalid"))
    assert ev["verb"] == "create" and ev["responseStatus"]["code"] == 422
    assert ev["responseStatus"]["reason"] == "Invalid"


def test_forbidden_service_account(kubesim: KubeSim, log_path: Path) -> None:
    kc = kubesim.service_account_kubeconfig(NS, "nobody")
    proc = kubesim.kubectl("get", "secrets", "-n", NS, "-l", "audit=sa", kubeconfig=kc, check=False)
    assert proc.returncode != 0 and "Forbidden" in proc.stderr
    ev = _wait(log_path, by_uri("audit%3Dsa"))[0]
    check_shape(ev)
    assert ev["user"]["username"] == f"system:serviceaccount:{NS}:nobody"
    assert ev["user"]["groups"] == [
        "system:serviceaccounts",
        f"system:serviceaccounts:{NS}",
        "system:authenticated",
    ]
    assert ev["verb"] == "list"
    assert ev["objectRef"] == {"resource": "secrets", "namespace": NS, "apiVersion": "v1"}
    assert ev["annotations"] == {"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""}
    status = ev["responseStatus"]
    assert (status["code"], status["status"], status["reason"]) == (403, "Failure", "Forbidden")
    assert status["message"].startswith(f'secrets is forbidden: User "system:serviceaccount:{NS}:nobody"')
    assert audit.count(log_path, user=f"system:serviceaccount:{NS}:nobody", verb="list", code=403) >= 1


def test_unauthenticated_token(kubesim: KubeSim, log_path: Path) -> None:
    code, _, _ = kubesim.request("GET", "/api/v1/namespaces?audit=badtoken", token="not-a-token")
    assert code == 401
    (ev,) = _wait(log_path, by_uri("audit=badtoken"))
    assert ev["user"] == {} and "annotations" not in ev
    assert ev["responseStatus"]["code"] == 401 and ev["responseStatus"]["reason"] == "Unauthorized"


def test_impersonation(kubesim: KubeSim, log_path: Path) -> None:
    code, _, _ = kubesim.request(
        "GET",
        f"/api/v1/namespaces/{NS}/configmaps?audit=imp-ok",
        headers=[("Impersonate-User", "alice"), ("Impersonate-Group", "system:masters")],
    )
    assert code == 200
    (ev,) = _wait(log_path, by_uri("audit=imp-ok"))
    check_shape(ev)
    assert ev["user"]["username"] == ADMIN_USER
    assert ev["impersonatedUser"] == {
        "username": "alice",
        "groups": ["system:masters", "system:authenticated"],
    }
    assert audit.effective_user(ev) == "alice"
    assert "userAgent" not in ev  # http.client sends none; the field is omitempty
    assert audit.count(log_path, user="alice", verb="list") >= 1
    # An impersonated user without RBAC: the request itself is forbidden.
    code, _, _ = kubesim.request(
        "GET", f"/api/v1/namespaces/{NS}/configmaps?audit=imp-denied", headers=[("Impersonate-User", "bob")]
    )
    assert code == 403
    (ev,) = _wait(log_path, by_uri("audit=imp-denied"))
    assert ev["impersonatedUser"]["username"] == "bob"
    assert ev["annotations"]["authorization.k8s.io/decision"] == "forbid"
    # A requestor who may not impersonate: refused before, no impersonatedUser.
    kc_token = kubesim.call(lambda c: c.service_account_token(NS, "nobody"))
    code, _, _ = kubesim.request(
        "GET",
        f"/api/v1/namespaces/{NS}/configmaps?audit=imp-refused",
        headers=[("Impersonate-User", "carol")],
        token=kc_token,
    )
    assert code == 403
    (ev,) = _wait(log_path, by_uri("audit=imp-refused"))
    assert "impersonatedUser" not in ev and ev["user"]["username"].endswith(":nobody")
    assert ev["responseStatus"]["reason"] == "Forbidden"


def test_fault_rejections_are_logged(kubesim: KubeSim, log_path: Path) -> None:
    kubesim.call(
        lambda c: c.faults.add_from_args(
            {"kind": "api", "match": {"verb": "get", "name": "faulty-cm"}, "code": 503, "count": 1}
        )
    )
    code, _, _ = kubesim.request("GET", f"/api/v1/namespaces/{NS}/configmaps/faulty-cm")
    assert code == 503
    (ev,) = _wait(log_path, by_uri("faulty-cm"))
    assert ev["responseStatus"]["code"] == 503 and ev["responseStatus"]["reason"] == "ServiceUnavailable"
    assert ev["annotations"]["authorization.k8s.io/decision"] == "allow"


def test_order_and_reading_while_serving(kubesim: KubeSim, log_path: Path) -> None:
    for i in range(20):
        code, _, _ = kubesim.request("GET", f"/api/v1/namespaces/{NS}/configmaps?audit=seq-{i}")
        assert code == 200
        # Flushed as written: the line is there as soon as the response is.
        assert any(e["requestURI"].endswith(f"audit=seq-{i}") for e in audit.read(log_path))
    evs = audit.read(log_path)
    stamps = [e["stageTimestamp"] for e in evs if e["stage"] == "ResponseComplete"]
    assert stamps == sorted(stamps)
    assert len({e["auditID"] for e in evs if e["stage"] == "ResponseComplete"}) == len(stamps)
    for e in evs:
        assert e["requestReceivedTimestamp"] <= e["stageTimestamp"]


def test_reader_helpers(tmp_path: Path) -> None:
    def ev(verb: str, ns: str | None, user: str = "op", stage: str = "ResponseComplete") -> dict[str, Any]:
        ref: dict[str, Any] = {"resource": "pods", "apiVersion": "v1"}
        if ns:
            ref["namespace"] = ns
        return {
            "verb": verb,
            "stage": stage,
            "user": {"username": user},
            "objectRef": ref,
            "responseStatus": {"code": 200},
        }

    events = [
        ev("list", None),
        ev("list", "a"),
        ev("watch", None, stage="ResponseStarted"),
        ev("watch", None),
        ev("get", "a", user="other"),
    ]
    path = tmp_path / "a.log"

    path.write_text("".join(json.dumps(e) + "\n" for e in events) + '{"partial": ')
    assert audit.read(path) == events  # a line still being written is left out
    assert audit.verbs(path, user="op") == {"list": 2, "watch": 1}
    assert audit.count(path, stage=None) == 5
    assert audit.count(path, cluster_scoped_list=True) == 1
    assert audit.count(path, cluster_wide=True) == 2
    assert audit.count(path, verb=("get", "watch"), namespace="a") == 1
    assert audit.cluster_wide_lists(path) == [events[0]]


def test_cli_serve_audit_log(tmp_path: Path) -> None:
    kc, log = tmp_path / "admin.kubeconfig", tmp_path / "logs" / "audit.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubesim.cli", "serve", "--kubeconfig", str(kc), "--audit-log", str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "kubesim ready" in proc.stdout.readline()
        env = dict(os.environ, KUBECONFIG=str(kc), KUBECACHEDIR=str(tmp_path / "cache"))
        out = subprocess.run(
            [kubectl_binary(), "get", "namespace", "default", "-o", "name"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.stdout.strip() == "namespace/default", out.stderr
        ev = wait_for(
            lambda: next(
                (e for e in audit.read(log) if e["requestURI"].startswith("/api/v1/namespaces/default")), None
            ),
            what="the kubectl get line",
        )
        check_shape(ev)
        assert ev["objectRef"] == {
            "resource": "namespaces",
            "namespace": "default",
            "name": "default",
            "apiVersion": "v1",
        }
        assert ev["verb"] == "get" and ev["user"]["username"] == ADMIN_USER
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_admin_endpoint_is_a_non_resource_line(kubesim: KubeSim, log_path: Path) -> None:
    code, _, _ = kubesim.request("POST", "/kubesim/controllers/list", body={})
    assert code == 200
    (ev,) = _wait(log_path, by_uri("/kubesim/controllers/list"))
    assert ev["verb"] == "post" and "objectRef" not in ev
    assert ev["annotations"]["authorization.k8s.io/decision"] == "allow"


def test_without_audit_log_nothing_is_written(tmp_path: Path) -> None:
    with KubeSim(workdir=tmp_path) as sim:
        assert sim.cluster is not None and sim.cluster.front.audit is None
        code, _, _ = sim.request("GET", "/api/v1/namespaces", headers=[("Impersonate-User", "dave")])
        assert code == 403
        assert sim.request("GET", "/api/v1/namespaces/default")[0] == 200
    assert not list(tmp_path.glob("**/*.log"))
