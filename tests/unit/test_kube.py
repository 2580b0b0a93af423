"""The adapter (clusterresync.kube) against kubesim: error classification, retries, optimistic
concurrency on status writes, Kubernetes verb names, and the primary guard."""

from __future__ import annotations

import copy
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from clusterresync.kube import (
    ErrorKind,
    Kube,
    KubeError,
    Protected,
    ProtectedObjectError,
    classify,
    kube_verb,
    parse_path,
)
from clusterresync.state import (
    JSON_PATCH,
    MERGE_PATCH,
    Action,
    Create,
    Delete,
    Obj,
    Patch,
    Ref,
    pod_ref,
    pv_ref,
    pvc_ref,
)
from kubesim.testing import KubeSim, wait_for

GROUP = "test.clusterresync.io"
WIDGETS = Ref(f"{GROUP}/v1", "Widget", "widgets", "")
WIDGET_CRD: Obj = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
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
                            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}


def fast(api_client: client.ApiClient, **kw: float) -> Kube:
    """A Kube with short backoffs so that retry tests take fractions of a second."""
    opts: dict[str, float] = {"initial_backoff": 0.02, "max_backoff": 0.1, "retry_budget": 3.0}
    opts.update(kw)
    return Kube(api_client, **opts)


@pytest.fixture
def kube(k8s_client: client.ApiClient) -> Kube:
    return fast(k8s_client)


@pytest.fixture(autouse=True)
def no_faults(kubesim: KubeSim) -> Iterator[None]:
    yield
    kubesim.call(lambda c: c.faults.clear())


@pytest.fixture
def ns(kube: Kube) -> str:
    name = "k-" + uuid.uuid4().hex[:6]
    kube.create(Ref("v1", "Namespace", "namespaces", name), {"metadata": {"name": name}})
    return name


@pytest.fixture(scope="module")
def widgets(k8s_client: client.ApiClient) -> Ref:
    kube = Kube(k8s_client)
    crd = Ref("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", "")
    kube.create(crd, WIDGET_CRD)

    def established() -> bool:
        got = kube.get(Ref(crd.api_version, crd.kind, crd.plural, f"widgets.{GROUP}"))
        conds = ((got or {}).get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True" for c in conds)

    wait_for(established, what="the Widget CRD to be established")
    wait_for(lambda: _served(kube), what="widgets to be served")
    return WIDGETS


def _served(kube: Kube) -> bool:
    try:
        kube.list_objects(WIDGETS.api_version, WIDGETS.plural, "default")
        return True
    except KubeError:
        return False


def widget(ns: str, name: str) -> Ref:
    return Ref(WIDGETS.api_version, WIDGETS.kind, WIDGETS.plural, name, ns)


def cm(ns: str, name: str) -> Ref:
    return Ref("v1", "ConfigMap", "configmaps", name, ns)


def add_fault(kubesim: KubeSim, kind: str = "api", **kw: Any) -> str:
    fid: str = kubesim.call(lambda c: c.faults.add(kind, **kw))
    return fid


def raises(fn: Any, *args: Any, **kw: Any) -> KubeError:
    with pytest.raises(KubeError) as e:
        fn(*args, **kw)
    return e.value


# ------------------------------------------------------------------------------------------------
# Classification: pure, on upstream-shaped Status bodies
# ------------------------------------------------------------------------------------------------

RBAC_MSG = (
    'pods "db-0" is forbidden: User "system:serviceaccount:ops:op" cannot delete resource "pods" '
    'in API group "" in the namespace "db"'
)


@pytest.mark.parametrize(
    ("code", "reason", "message", "details", "kind"),
    [
        (404, "NotFound", 'pods "x" not found', {"name": "x", "kind": "pods"}, ErrorKind.NOT_FOUND),
        (
            404,
            "NotFound",
            'namespaces "gone" not found',
            {"name": "gone", "kind": "namespaces"},
            ErrorKind.NOT_FOUND,
        ),
        (404, "NotFound", "the server could not find the requested resource", {}, ErrorKind.MISSING_API),
        (404, "NotFound", "the server could not find the requested resource", None, ErrorKind.MISSING_API),
        (404, "", "404 page not found", None, ErrorKind.MISSING_API),
        (409, "AlreadyExists", 'pods "x" already exists', {"name": "x"}, ErrorKind.ALREADY_EXISTS),
        (
            409,
            "Conflict",
            'Operation cannot be fulfilled on pods "x": the object has been modified; please apply your '
            "changes to the latest version and try again",
            {"name": "x"},
            ErrorKind.CONFLICT,
        ),
        (
            409,
            "Conflict",
            'Operation cannot be fulfilled on persistentvolumeclaims "x": Precondition failed: UID in '
            "precondition: a, UID in object meta: b",
            {"name": "x"},
            ErrorKind.CONFLICT,
        ),
        (403, "Forbidden", RBAC_MSG, {"name": "db-0", "kind": "pods"}, ErrorKind.FORBIDDEN),
        (
            403,
            "Forbidden",
            'persistentvolumes is forbidden: User "op" cannot list resource "persistentvolumes" in API '
            'group "" at the cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io "x" not found',
            {"kind": "persistentvolumes"},
            ErrorKind.FORBIDDEN,
        ),
        (403, "Forbidden", 'forbidden: User "op" cannot get path "/metrics"', {}, ErrorKind.FORBIDDEN),
        (
            403,
            "Forbidden",
            'persistentvolumeclaims "d" is forbidden: exceeded quota: storage, requested: '
            "requests.storage=1Gi, used: requests.storage=10Gi, limited: requests.storage=10Gi",
            {"name": "d", "kind": "persistentvolumeclaims"},
            ErrorKind.QUOTA,
        ),
        (
            403,
            "Forbidden",
            'pods "p" is forbidden: failed quota: compute: must specify limits.cpu for: c',
            {"name": "p", "kind": "pods"},
            ErrorKind.QUOTA,
        ),
        (
            403,
            "Forbidden",
            'pods "p" is forbidden: status unknown for quota: compute, resources: pods',
            {"name": "p", "kind": "pods"},
            ErrorKind.QUOTA,
        ),
        (
            403,
            "Forbidden",
            'pods "p" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation '
            '!= false (container "c" must set securityContext.allowPrivilegeEscalation=false)',
            {"name": "p", "kind": "pods"},
            ErrorKind.ADMISSION,
        ),
        (
            403,
            "Forbidden",
            'admission webhook "deny.example.com" denied the request: no',
            {},
            ErrorKind.ADMISSION,
        ),
        (
            403,
            "Forbidden",
            'namespaces "default" is forbidden: this namespace may not be deleted',
            {"name": "default", "kind": "namespaces"},
            ErrorKind.ADMISSION,
        ),
        (
            403,
            "Forbidden",
            'configmaps "c" is forbidden: unable to create new content in namespace db because it is '
            "being terminated",
            {
                "name": "c",
                "kind": "configmaps",
                "causes": [
                    {
                        "reason": "NamespaceTerminating",
                        "message": "namespace db is being terminated",
                        "field": "metadata.namespace",
                    }
                ],
            },
            ErrorKind.NAMESPACE_TERMINATING,
        ),
        (  # the cause alone is enough
            403,
            "Forbidden",
            "refused",
            {"causes": [{"reason": "NamespaceTerminating", "message": "namespace db is being terminated"}]},
            ErrorKind.NAMESPACE_TERMINATING,
        ),
        (  # a user name that looks like a quota message is still RBAC
            403,
            "Forbidden",
            'pods is forbidden: User "exceeded quota: x" cannot list resource "pods" in API group "" '
            'in the namespace "db"',
            {"kind": "pods"},
            ErrorKind.FORBIDDEN,
        ),
        (422, "Invalid", 'PersistentVolumeClaim "x" is invalid: spec: Required value', {}, ErrorKind.INVALID),
        (400, "BadRequest", "the body of the request was in an unknown format", None, ErrorKind.INVALID),
        (
            429,
            "TooManyRequests",
            "Too many requests: slow down",
            {"retryAfterSeconds": 1},
            ErrorKind.TRANSIENT,
        ),
        (
            500,
            "InternalError",
            "Internal error occurred: etcdserver: leader changed",
            None,
            ErrorKind.TRANSIENT,
        ),
        (
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
            None,
            ErrorKind.TRANSIENT,
        ),
        (504, "Timeout", "Too large resource version: 9, current: 8", None, ErrorKind.TRANSIENT),
        (0, "", "NewConnectionError: connection refused", None, ErrorKind.TRANSIENT),
        (401, "Unauthorized", "Unauthorized", None, ErrorKind.OTHER),
        (410, "Expired", "too old resource version: 1 (5)", None, ErrorKind.OTHER),
        (405, "MethodNotAllowed", "the server does not allow this method", None, ErrorKind.OTHER),
    ],
)
def test_classify_upstream_shaped_statuses(
    code: int, reason: str, message: str, details: dict[str, Any] | None, kind: ErrorKind
) -> None:
    assert classify(code, reason, message, details) is kind
    assert KubeError(code, reason, message, details=details).kind is kind


def test_kube_error_keeps_its_attributes() -> None:
    details = {
        "name": "x",
        "causes": [{"reason": "FieldValueRequired", "message": "Required value", "field": "spec"}],
    }
    e = KubeError(422, "Invalid", 'x "x" is invalid', "create", "Pod ns/x", details=details)
    assert (e.code, e.reason, e.verb, e.what, e.kind) == (
        422,
        "Invalid",
        "create",
        "Pod ns/x",
        ErrorKind.INVALID,
    )
    assert e.causes == details["causes"] and e.retry_after is None
    assert str(e) == 'create Pod ns/x: 422 Invalid: x "x" is invalid'


@pytest.mark.parametrize(
    ("method", "path", "query", "verb"),
    [
        ("GET", "/api/v1/namespaces/ns/pods/p", None, "get"),
        ("GET", "/api/v1/namespaces/ns/pods", None, "list"),
        ("GET", "/api/v1/persistentvolumes", None, "list"),
        ("GET", "/api/v1/namespaces/ns/pods", [("watch", "true")], "watch"),
        ("GET", "/api/v1/namespaces/ns", None, "get"),
        ("GET", "/api/v1/namespaces", None, "list"),
        ("POST", "/apis/snapshot.storage.k8s.io/v1/namespaces/ns/volumesnapshots", None, "create"),
        ("POST", "/api/v1/namespaces/ns/pods/p/eviction", None, "create"),
        ("PUT", "/api/v1/persistentvolumes/pv", None, "update"),
        ("PATCH", "/api/v1/namespaces/ns/persistentvolumeclaims/c/status", None, "patch"),
        ("DELETE", "/api/v1/namespaces/ns/pods/p", None, "delete"),
        ("DELETE", "/api/v1/namespaces/ns/pods", None, "deletecollection"),
        ("DELETE", "/api/v1/namespaces/ns", None, "delete"),
        ("PUT", "/api/v1/namespaces/ns/finalize", None, "update"),
    ],
)
def test_kube_verb_is_the_kubernetes_verb(
    method: str, path: str, query: list[tuple[str, str]] | None, verb: str
) -> None:
    assert kube_verb(method, path, query) == verb


def test_parse_path() -> None:
    p = parse_path("/api/v1/namespaces/db/persistentvolumeclaims/data-db-0/status")
    assert p is not None and (p.api_version, p.plural, p.namespace, p.name, p.sub) == (
        "v1",
        "persistentvolumeclaims",
        "db",
        "data-db-0",
        "status",
    )
    ns = parse_path("/api/v1/namespaces/db/finalize")
    assert ns is not None and (ns.plural, ns.namespace, ns.name, ns.sub) == (
        "namespaces",
        "",
        "db",
        "finalize",
    )
    assert parse_path("/apis/snapshot.storage.k8s.io/v1") is None
    assert parse_path("/version") is None


# ------------------------------------------------------------------------------------------------
# Classification against kubesim's real answers
# ------------------------------------------------------------------------------------------------


def test_not_found_already_exists_and_invalid(kube: Kube, ns: str) -> None:
    assert kube.get(cm(ns, "nope")) is None
    assert kube.patch(cm(ns, "nope"), {"data": {"a": "b"}}, MERGE_PATCH) is None
    assert kube.delete(cm(ns, "nope")) is False
    e = raises(kube.request, "GET", f"/api/v1/namespaces/{ns}/configmaps/nope")
    assert (e.kind, e.code, e.verb, e.what) == (ErrorKind.NOT_FOUND, 404, "get", f"configmaps {ns}/nope")
    e = raises(kube.patch_status, pvc_ref(ns, "nope"), {"phase": "Bound"})
    assert (e.kind, e.verb, e.what) == (
        ErrorKind.NOT_FOUND,
        "patch",
        f"PersistentVolumeClaim {ns}/nope status",
    )

    assert kube.create(cm(ns, "a"), {"metadata": {"name": "a"}}) is not None
    assert kube.create(cm(ns, "a"), {"metadata": {"name": "a"}}) is None  # AlreadyExists is fine
    e = raises(kube.request, "POST", f"/api/v1/namespaces/{ns}/configmaps", body={"metadata": {"name": "a"}})
    assert (e.kind, e.verb) == (ErrorKind.ALREADY_EXISTS, "create")

    e = raises(kube.create, cm(ns, "Bad_Name"), {"metadata": {"name": "Bad_Name"}})
    assert (e.kind, e.code, e.verb, e.what) == (ErrorKind.INVALID, 422, "create", f"ConfigMap {ns}/Bad_Name")
    assert e.causes and e.causes[0]["field"] == "metadata.name"


def test_rbac_denial_is_forbidden_with_the_kubernetes_verb(kubesim: KubeSim, kube: Kube, ns: str) -> None:
    kube.create(Ref("v1", "ServiceAccount", "serviceaccounts", "robot", ns), {"metadata": {"name": "robot"}})
    kube.create(cm(ns, "c"), {"metadata": {"name": "c"}})
    sa_client = config.new_client_from_config(
        config_file=str(kubesim.service_account_kubeconfig(ns, "robot"))
    )
    try:
        robot = fast(sa_client)
        calls: list[tuple[str, str, Any]] = [
            ("get", f"ConfigMap {ns}/c", lambda: robot.get(cm(ns, "c"))),
            ("list", f"pods in {ns}", lambda: robot.list_objects("v1", "pods", ns)),
            (
                "list",
                "persistentvolumes in the cluster",
                lambda: robot.list_objects("v1", "persistentvolumes"),
            ),
            ("create", f"ConfigMap {ns}/d", lambda: robot.create(cm(ns, "d"), {"metadata": {"name": "d"}})),
            (
                "patch",
                f"ConfigMap {ns}/c",
                lambda: robot.patch(cm(ns, "c"), {"data": {"a": "b"}}, MERGE_PATCH),
            ),
            (
                "patch",
                f"PersistentVolumeClaim {ns}/c status",
                lambda: robot.patch_status(pvc_ref(ns, "c"), {}),
            ),
            ("delete", f"ConfigMap {ns}/c", lambda: robot.delete(cm(ns, "c"))),
            (
                "update",
                f"configmaps {ns}/c",
                lambda: robot.request(
                    "PUT", f"/api/v1/namespaces/{ns}/configmaps/c", body={"metadata": {"name": "c"}}
                ),
            ),
            (
                "deletecollection",
                f"configmaps in {ns}",
                lambda: robot.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps"),
            ),
            (
                "watch",
                f"configmaps in {ns}",
                lambda: robot.request(
                    "GET", f"/api/v1/namespaces/{ns}/configmaps", query=[("watch", "true")]
                ),
            ),
        ]
        for verb, what, call in calls:
            e = raises(call)
            assert (e.kind, e.code, e.verb, e.what) == (ErrorKind.FORBIDDEN, 403, verb, what), str(e)
            assert f"cannot {verb} resource" in e.message
        assert robot.retries == 0
    finally:
        sa_client.close()


def test_quota_denial(kubesim: KubeSim, kube: Kube, ns: str) -> None:
    message = (
        'persistentvolumeclaims "data" is forbidden: exceeded quota: storage, requested: '
        "requests.storage=1Gi, used: requests.storage=10Gi, limited: requests.storage=10Gi"
    )
    add_fault(
        kubesim,
        match={"verb": "create", "resource": "persistentvolumeclaims", "namespace": ns},
        code=403,
        message=message,
        details={"name": "data", "kind": "persistentvolumeclaims"},
    )
    body = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    e = raises(kube.create, pvc_ref(ns, "data"), body)
    assert (e.kind, e.reason, e.verb, e.message) == (ErrorKind.QUOTA, "Forbidden", "create", message)
    assert kube.retries == 0


def test_admission_denial(kubesim: KubeSim, kube: Kube, ns: str) -> None:
    add_fault(
        kubesim,
        match={"verb": "create", "resource": "pods", "namespace": ns},
        code=403,
        message='pods "p" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true '
        '(pod or container "c" must set securityContext.runAsNonRoot=true)',
    )
    body = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "example/db:1"}]}}
    e = raises(kube.create, pod_ref(ns, "p"), body)
    assert (e.kind, e.verb, e.what) == (ErrorKind.ADMISSION, "create", f"Pod {ns}/p")
    assert kube.retries == 0


def test_namespace_terminating(kubesim: KubeSim, kube: Kube, ns: str) -> None:
    # A finalizer-held object keeps the namespace Terminating: creating into it is refused.
    kube.create(cm(ns, "held"), {"metadata": {"name": "held", "finalizers": ["test.clusterresync.io/hold"]}})
    assert kube.delete(Ref("v1", "Namespace", "namespaces", ns))
    try:
        e = raises(kube.create, cm(ns, "new"), {"metadata": {"name": "new"}})
        assert (e.kind, e.code, e.verb, e.what) == (
            ErrorKind.NAMESPACE_TERMINATING,
            403,
            "create",
            f"ConfigMap {ns}/new",
        )
        assert "being terminated" in e.message
        # Upstream's answer also carries the NamespaceTerminating cause; a fault reproduces it.
        add_fault(
            kubesim,
            match={"verb": "create", "resource": "secrets", "namespace": ns},
            code=403,
            message=f'secrets "s" is forbidden: unable to create new content in namespace {ns} because it is being terminated',
            details={
                "name": "s",
                "kind": "secrets",
                "causes": [
                    {
                        "reason": "NamespaceTerminating",
                        "message": f"namespace {ns} is being terminated",
                        "field": "metadata.namespace",
                    }
                ],
            },
        )
        e = raises(kube.create, Ref("v1", "Secret", "secrets", "s", ns), {"metadata": {"name": "s"}})
        assert e.kind is ErrorKind.NAMESPACE_TERMINATING
        assert e.causes[0]["reason"] == "NamespaceTerminating"
    finally:
        kube.patch(cm(ns, "held"), {"metadata": {"finalizers": None}}, MERGE_PATCH)


def test_missing_api(kube: Kube, ns: str) -> None:
    e = raises(kube.list_objects, "nothing.clusterresync.io/v1", "gadgets", ns)
    assert (e.kind, e.code, e.verb, e.what) == (ErrorKind.MISSING_API, 404, "list", f"gadgets in {ns}")
    # get, patch and delete do not mistake a missing API for a missing object.
    gadget = Ref("nothing.clusterresync.io/v1", "Gadget", "gadgets", "g", ns)
    assert raises(kube.get, gadget).kind is ErrorKind.MISSING_API
    assert raises(kube.delete, gadget).kind is ErrorKind.MISSING_API
    assert raises(kube.patch, gadget, {"spec": {}}, MERGE_PATCH).kind is ErrorKind.MISSING_API
    # A resource kubesim does not serve in a group it does serve, and a missing discovery document.
    assert raises(kube.list_objects, "v1", "gadgets", ns).kind is ErrorKind.MISSING_API
    e = raises(kube.request, "GET", "/apis/nothing.clusterresync.io/v1")
    assert (e.kind, e.verb) == (ErrorKind.MISSING_API, "get")


# ------------------------------------------------------------------------------------------------
# Retries
# ------------------------------------------------------------------------------------------------


def test_a_burst_of_5xx_is_retried_until_it_succeeds(kubesim: KubeSim, kube: Kube, ns: str) -> None:
    kube.create(cm(ns, "c"), {"metadata": {"name": "c"}})
    add_fault(kubesim, match={"verb": "get", "resource": "configmaps", "namespace": ns}, code=500, count=2)
    add_fault(kubesim, match={"verb": "get", "resource": "configmaps", "namespace": ns}, code=504, count=1)
    got = kube.get(cm(ns, "c"))
    assert got is not None and got["metadata"]["name"] == "c"
    assert kube.retries == 3


def test_writes_are_retried_too(kubesim: KubeSim, kube: Kube, ns: str) -> None:
    for verb in ("create", "patch", "delete"):
        add_fault(
            kubesim,
            match={"verb": verb, "resource": "configmaps", "namespace": ns},
            code=503,
            retry_after=0,
            count=1,
        )
    assert kube.create(cm(ns, "c"), {"metadata": {"name": "c"}}) is not None
    patched = kube.patch(cm(ns, "c"), {"data": {"a": "1"}}, MERGE_PATCH)
    assert patched is not None and patched["data"] == {"a": "1"}
    assert kube.delete(cm(ns, "c")) is True
    assert kube.retries == 3


def test_429_waits_at_least_retry_after(kubesim: KubeSim, kube: Kube, ns: str) -> None:
    add_fault(
        kubesim,
        match={"verb": "list", "resource": "configmaps", "namespace": ns},
        code=429,
        retry_after=1,
        count=1,
    )
    started = time.monotonic()
    kube.list_objects("v1", "configmaps", ns)
    assert time.monotonic() - started >= 1.0
    assert kube.retries == 1


def test_a_retry_after_beyond_the_budget_gives_up_at_once(
    kubesim: KubeSim, k8s_client: client.ApiClient, ns: str
) -> None:
    kube = fast(k8s_client, retry_budget=1.0)
    add_fault(
        kubesim, match={"verb": "list", "resource": "configmaps", "namespace": ns}, code=429, retry_after=30
    )
    e = raises(kube.list_objects, "v1", "configmaps", ns)
    assert (e.kind, e.code, e.retry_after, e.attempts) == (ErrorKind.TRANSIENT, 429, 30.0, 1)
    assert kube.retries == 0


def test_the_budget_runs_out_on_persistent_5xx(
    kubesim: KubeSim, k8s_client: client.ApiClient, ns: str
) -> None:
    kube = fast(k8s_client, retry_budget=0.5)
    add_fault(
        kubesim,
        match={"verb": "get", "resource": "configmaps", "namespace": ns},
        code=500,
        message="etcd is sad",
    )
    e = raises(kube.get, cm(ns, "c"))
    assert (e.kind, e.code, e.verb, e.message) == (ErrorKind.TRANSIENT, 500, "get", "etcd is sad")
    assert e.attempts > 2 and kube.retries == e.attempts - 1


def test_timeouts_are_retried(kubesim: KubeSim, k8s_client: client.ApiClient, ns: str) -> None:
    kube = fast(k8s_client, request_timeout=0.3)
    add_fault(
        kubesim, "latency", match={"verb": "list", "resource": "secrets", "namespace": ns}, delay=1.0, count=1
    )
    assert kube.list_objects("v1", "secrets", ns) == []
    assert kube.retries == 1


def test_connection_errors_are_transient(k8s_client: client.ApiClient) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = copy.copy(k8s_client.configuration)
    cfg.host = f"https://127.0.0.1:{port}"
    cfg.refresh_api_key_hook = None  # the kubeconfig loader's hook would set the host back
    dead = client.ApiClient(cfg)
    try:
        kube = fast(dead, retry_budget=0.3)
        e = raises(kube.list_objects, "v1", "pods", "default")
        assert (e.kind, e.code, e.verb) == (ErrorKind.TRANSIENT, 0, "list")
        assert kube.retries >= 1
    finally:
        dead.close()


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (409, ErrorKind.CONFLICT),
        (403, ErrorKind.ADMISSION),
        (400, ErrorKind.INVALID),
        (404, ErrorKind.MISSING_API),
    ],
)
def test_4xx_are_not_retried(kubesim: KubeSim, kube: Kube, ns: str, code: int, kind: ErrorKind) -> None:
    add_fault(kubesim, match={"verb": "list", "resource": "configmaps", "namespace": ns}, code=code, count=1)
    e = raises(kube.list_objects, "v1", "configmaps", ns)
    assert (e.code, e.kind, e.attempts) == (code, kind, 1)
    assert kube.retries == 0


# ------------------------------------------------------------------------------------------------
# Optimistic concurrency
# ------------------------------------------------------------------------------------------------


def test_patch_status_with_a_stale_resource_version_conflicts(widgets: Ref, kube: Kube, ns: str) -> None:
    created = kube.create(
        widget(ns, "w"),
        {"apiVersion": widgets.api_version, "kind": "Widget", "metadata": {"name": "w"}, "spec": {}},
    )
    assert created is not None
    rv0 = created["metadata"]["resourceVersion"]
    out = kube.patch_status(widget(ns, "w"), {"phase": "One"}, rv0)
    assert out["status"] == {"phase": "One"}
    rv1 = out["metadata"]["resourceVersion"]
    assert rv1 != rv0
    e = raises(kube.patch_status, widget(ns, "w"), {"phase": "Stale"}, rv0)
    assert (e.kind, e.code, e.verb, e.what) == (ErrorKind.CONFLICT, 409, "patch", f"Widget {ns}/w status")
    assert "the object has been modified" in e.message
    assert kube.retries == 0
    got = kube.get(widget(ns, "w"))
    assert got is not None and got["status"] == {"phase": "One"}
    # Without a resourceVersion the write is unconditional; the old {"status": ...} form still works.
    assert kube.patch_status(widget(ns, "w"), {"phase": "Two"})["status"] == {"phase": "Two"}
    assert kube.patch_status(widget(ns, "w"), {"status": {"phase": "Three"}})["status"] == {"phase": "Three"}


def test_patch_with_a_resource_version_precondition(kube: Kube, ns: str) -> None:
    created = kube.create(cm(ns, "c"), {"metadata": {"name": "c"}, "data": {"a": "0"}})
    assert created is not None
    rv0 = created["metadata"]["resourceVersion"]
    merged = kube.patch(cm(ns, "c"), {"data": {"a": "1"}}, MERGE_PATCH, resource_version=rv0)
    assert merged is not None and merged["data"] == {"a": "1"}
    e = raises(kube.patch, cm(ns, "c"), {"data": {"a": "2"}}, MERGE_PATCH, resource_version=rv0)
    assert (e.kind, e.verb) == (ErrorKind.CONFLICT, "patch")
    ops = [{"op": "replace", "path": "/data/a", "value": "3"}]
    e = raises(kube.patch, cm(ns, "c"), ops, JSON_PATCH, resource_version=rv0)
    assert (e.kind, e.verb) == (ErrorKind.CONFLICT, "patch")
    rv1 = merged["metadata"]["resourceVersion"]
    jsoned = kube.patch(cm(ns, "c"), ops, JSON_PATCH, resource_version=rv1)
    assert jsoned is not None and jsoned["data"] == {"a": "3"}
    assert ops == [{"op": "replace", "path": "/data/a", "value": "3"}]  # the caller's patch is not modified
    assert kube.retries == 0


def test_delete_with_a_stale_uid_deletes_nothing(kube: Kube, ns: str) -> None:
    kube.create(cm(ns, "c"), {"metadata": {"name": "c"}})
    assert kube.delete(cm(ns, "c"), uid="not-its-uid") is False
    assert kube.get(cm(ns, "c")) is not None


# ------------------------------------------------------------------------------------------------
# The primary guard
# ------------------------------------------------------------------------------------------------


def _pv(name: str, claim_ns: str, claim: str) -> Obj:
    return {
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Mi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "manual",
            "hostPath": {"path": f"/tmp/{name}"},
            "claimRef": {"namespace": claim_ns, "name": claim},
        },
    }


def _pvc(name: str, volume: str | None = None) -> Obj:
    spec: Obj = {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "manual",
        "resources": {"requests": {"storage": "1Mi"}},
    }
    if volume:
        spec["volumeName"] = volume
    return {"metadata": {"name": name}, "spec": spec}


def _pod(name: str) -> Obj:
    return {
        "metadata": {"name": name, "labels": {"app": "db"}},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "db", "image": "example/db:1"}]},
    }


def _apply(kube: Kube, action: Action) -> Any:
    if isinstance(action, Create):
        return kube.create(action.ref, action.body)
    if isinstance(action, Patch):
        return kube.patch(action.ref, action.patch, action.content_type)
    if isinstance(action, Delete):
        return kube.delete(action.ref, action.uid, action.propagation)
    raise AssertionError(f"unexpected action {action!r}")


@pytest.fixture
def cluster_db(kube: Kube, ns: str) -> dict[str, Any]:
    """A primary db-0 and a replica db-1, each with a claim bound to its own PV, and a staged PV."""
    sfx = ns[2:]
    names = {"pv0": f"pv-primary-{sfx}", "pv1": f"pv-replica-{sfx}", "staged": f"pv-staged-{sfx}"}
    uids: dict[str, str] = {}
    for key, pv_name, claim in (("pv0", names["pv0"], "data-db-0"), ("pv1", names["pv1"], "data-db-1")):
        uids[key] = kube.create(pv_ref(pv_name), _pv(pv_name, ns, claim))["metadata"]["uid"]  # type: ignore[index]
    staged = _pv(names["staged"], ns, "crs-r-db-1-data")
    uids["staged"] = kube.create(pv_ref(names["staged"]), staged)["metadata"]["uid"]  # type: ignore[index]
    for i in (0, 1):
        uids[f"claim{i}"] = kube.create(pvc_ref(ns, f"data-db-{i}"), _pvc(f"data-db-{i}", names[f"pv{i}"]))[
            "metadata"
        ]["uid"]  # type: ignore[index]
        uids[f"pod{i}"] = kube.create(pod_ref(ns, f"db-{i}"), _pod(f"db-{i}"))["metadata"]["uid"]  # type: ignore[index]

    def ready(pod: str) -> bool:
        got = kube.get(pod_ref(ns, pod)) or {}
        conds = (got.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)

    # Settled: the scheduler and the kubelet have written what they write about a new pod, so
    # that any later change of the pods is the test's doing.
    wait_for(lambda: ready("db-0") and ready("db-1"), what="db-0 and db-1 Ready")
    return {"ns": ns, **names, "uids": uids}


def _versions(kube: Kube, refs: list[Ref]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for r in refs:
        got = kube.get(r)
        out[str(r)] = None if got is None else got["metadata"]["resourceVersion"]
    return out


def test_the_guard_refuses_a_wrong_plan_before_anything_is_sent(
    kubesim: KubeSim, kube: Kube, cluster_db: dict[str, Any]
) -> None:
    ns, pv0, staged, uids = cluster_db["ns"], cluster_db["pv0"], cluster_db["staged"], cluster_db["uids"]
    protected = Protected(ns, frozenset({"db-0"}), frozenset({"data-db-0"}), frozenset({pv0}))
    guarded = kube.guarded(protected)
    primary = [pod_ref(ns, "db-0"), pvc_ref(ns, "data-db-0"), pv_ref(pv0), pv_ref(staged)]
    before = _versions(kube, primary)
    # Any write that reaches the API server fails loudly and is counted.
    for verb in ("create", "update", "patch", "delete", "deletecollection"):
        add_fault(kubesim, match={"verb": verb}, code=500, message="a write reached the server")

    wrong_plan: list[Action] = [
        Delete(pod_ref(ns, "db-0"), uid=uids["pod0"]),
        Delete(pvc_ref(ns, "data-db-0"), uid=uids["claim0"]),
        Delete(pv_ref(pv0)),
        Patch(pv_ref(pv0), {"spec": {"persistentVolumeReclaimPolicy": "Delete"}}),
        Patch(
            pv_ref(pv0),
            [
                {"op": "test", "path": "/metadata/uid", "value": uids["pv0"]},
                {"op": "remove", "path": "/spec/claimRef"},
            ],
            JSON_PATCH,
        ),
        Patch(pvc_ref(ns, "data-db-0"), {"metadata": {"labels": {"clusterresync.io/resync": "r"}}}),
        Patch(pod_ref(ns, "db-0"), {"metadata": {"labels": {"role": "replica"}}}),
        # Pre-binding any volume to the primary's claim, in every patch form.
        Patch(pv_ref(staged), {"spec": {"claimRef": {"namespace": ns, "name": "data-db-0"}}}),
        Patch(
            pv_ref(staged),
            {"spec": {"claimRef": {"name": "data-db-0"}}},
            "application/strategic-merge-patch+json",
        ),
        Patch(
            pv_ref(staged),
            [
                {"op": "test", "path": "/metadata/uid", "value": uids["staged"]},
                {"op": "replace", "path": "/spec/claimRef", "value": {"namespace": ns, "name": "data-db-0"}},
            ],
            JSON_PATCH,
        ),
        Patch(
            pv_ref(staged),
            [{"op": "replace", "path": "/spec/claimRef/name", "value": "data-db-0"}],
            JSON_PATCH,
        ),
        Patch(
            pv_ref(staged),
            [{"op": "copy", "from": "/metadata/name", "path": "/spec/claimRef/name"}],
            JSON_PATCH,
        ),
        # Creating objects under the primary's names, or claiming its volume.
        Create(pvc_ref(ns, "data-db-0"), _pvc("data-db-0")),
        Create(pod_ref(ns, "db-0"), _pod("db-0")),
        Create(pod_ref(ns, ""), _pod("db-0")),
        Create(pv_ref(pv0), _pv(pv0, ns, "data-db-1")),
        Create(pv_ref(f"{pv0}-x"), _pv(f"{pv0}-x", ns, "data-db-0")),
        Create(pvc_ref(ns, "data-db-9"), _pvc("data-db-9", pv0)),
    ]
    for action in wrong_plan:
        with pytest.raises(ProtectedObjectError) as e:
            _apply(guarded, action)
        assert e.value.verb == {Create: "create", Patch: "patch", Delete: "delete"}[type(action)]
        assert "primary" in str(e.value) and str(e.value.ref) in str(e.value), str(e.value)

    others: list[tuple[str, Any]] = [
        ("patch", lambda: guarded.patch_status(pvc_ref(ns, "data-db-0"), {"phase": "Lost"})),
        ("patch", lambda: guarded.patch_status(pod_ref(ns, "db-0"), {"phase": "Failed"})),
        ("create", lambda: guarded.request("POST", f"/api/v1/namespaces/{ns}/pods/db-0/eviction", body={})),
        (
            "update",
            lambda: guarded.request("PUT", f"/api/v1/persistentvolumes/{pv0}", body=_pv(pv0, ns, "x")),
        ),
        ("deletecollection", lambda: guarded.request("DELETE", f"/api/v1/namespaces/{ns}/pods")),
        (
            "deletecollection",
            lambda: guarded.request("DELETE", f"/api/v1/namespaces/{ns}/persistentvolumeclaims"),
        ),
        ("deletecollection", lambda: guarded.request("DELETE", "/api/v1/persistentvolumes")),
        ("delete", lambda: guarded.delete(Ref("v1", "Namespace", "namespaces", ns))),
    ]
    for verb, call in others:
        with pytest.raises(ProtectedObjectError) as e:
            call()
        assert e.value.verb == verb

    fired = kubesim.call(lambda c: [f.fired for f in c.faults.list()])
    assert fired == [0] * 5, "a refused write reached the server"
    assert kube.retries == 0
    assert _versions(kube, primary) == before
    # Reads and the unguarded adapter are not restricted.
    assert guarded.get(pod_ref(ns, "db-0")) is not None
    assert guarded.list_objects("v1", "persistentvolumeclaims", ns)


def test_the_guard_lets_the_same_plan_through_for_a_replica(kube: Kube, cluster_db: dict[str, Any]) -> None:
    ns, pv0, pv1, staged, uids = (cluster_db[k] for k in ("ns", "pv0", "pv1", "staged", "uids"))
    guarded = kube.guarded(Protected(ns, frozenset({"db-0"}), frozenset({"data-db-0"}), frozenset({pv0})))
    plan: list[Action] = [
        Patch(pv_ref(pv1), {"spec": {"persistentVolumeReclaimPolicy": "Delete"}}),
        Patch(pvc_ref(ns, "data-db-1"), {"metadata": {"labels": {"clusterresync.io/resync": "r"}}}),
        Patch(pod_ref(ns, "db-1"), {"metadata": {"labels": {"checked": "yes"}}}),
        Patch(
            pv_ref(staged),
            [
                {"op": "test", "path": "/metadata/uid", "value": uids["staged"]},
                {"op": "replace", "path": "/spec/claimRef", "value": {"namespace": ns, "name": "data-db-1"}},
            ],
            JSON_PATCH,
        ),
        Create(pvc_ref(ns, "data-db-2"), _pvc("data-db-2")),
        Create(pod_ref(ns, "db-2"), _pod("db-2")),
        Delete(pod_ref(ns, "db-1"), uid=uids["pod1"]),
        Delete(pvc_ref(ns, "data-db-1"), uid=uids["claim1"]),
    ]
    for action in plan:
        assert _apply(guarded, action) not in (None, False), action
    pv = kube.get(pv_ref(pv1))
    assert pv is not None and pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    st = kube.get(pv_ref(staged))
    assert st is not None and st["spec"]["claimRef"]["name"] == "data-db-1"
    assert kube.get(pvc_ref(ns, "data-db-2")) is not None
    for r in (pod_ref(ns, "db-1"), pvc_ref(ns, "data-db-1")):
        got = kube.get(r)
        assert got is None or got["metadata"].get("deletionTimestamp"), r
    assert guarded.patch_status(pvc_ref(ns, "data-db-2"), {"phase": "Pending"}) is not None
    # A guarded view shares the client and the retry counter.
    assert guarded.api_client is kube.api_client and guarded.retries == kube.retries
    assert kube.protected == () and len(guarded.protected) == 1


def test_guarding_twice_adds_protection(kube: Kube) -> None:
    a = Protected("a", frozenset({"p"}), frozenset(), frozenset())
    b = Protected("b", frozenset(), frozenset(), frozenset({"pv"}))
    both = kube.guarded(a).guarded(b)
    with pytest.raises(ProtectedObjectError):
        both.delete(pod_ref("a", "p"))
    with pytest.raises(ProtectedObjectError):
        both.delete(pv_ref("pv"))
