"""Unit tests for kubesim.auth: request attributes, RBAC, the 403 body, reviews and tokens."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from kubesim.auth import (
    ANONYMOUS,
    Attributes,
    ImpersonationError,
    ImpersonationRequest,
    RBACAuthorizer,
    RequestInfoError,
    TokenAuthority,
    TokenInvalid,
    UserInfo,
    aggregate_cluster_roles,
    api_group_matches,
    bearer_token,
    bootstrap_policy,
    forbidden_error,
    go_quote,
    impersonated_user,
    impersonation_attributes,
    impersonation_requests,
    non_resource_url_matches,
    request_attributes,
    resource_matches,
    resource_name_matches,
    self_subject_access_review,
    self_subject_review_status,
    self_subject_rules_review,
    subject_access_review,
    verb_matches,
)
from kubesim.errors import StatusError

RBAC = "rbac.authorization.k8s.io"
BOB = UserInfo("bob", ("devs", "system:authenticated"))
SA = UserInfo(
    "system:serviceaccount:team-a:builder",
    ("system:serviceaccounts", "system:serviceaccounts:team-a", "system:authenticated"),
    "sa-uid-1",
)


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


class FakeStore:
    """What the server's lister hands the authorizer: stored dicts, by resource."""

    def __init__(self, objects: Iterable[dict[str, Any]] = ()) -> None:
        self.objects: dict[str, list[dict[str, Any]]] = {
            "roles": [],
            "rolebindings": [],
            "clusterroles": [],
            "clusterrolebindings": [],
        }
        for obj in objects:
            self.add(obj)

    def add(self, obj: dict[str, Any]) -> None:
        plural = {
            "Role": "roles",
            "RoleBinding": "rolebindings",
            "ClusterRole": "clusterroles",
            "ClusterRoleBinding": "clusterrolebindings",
        }[obj["kind"]]
        self.objects[plural].append(obj)

    def __call__(self, resource: str) -> list[dict[str, Any]]:
        return list(self.objects[resource])


def role(name: str, namespace: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": list(rules),
    }


def cluster_role(name: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": list(rules),
    }


def binding(
    name: str, namespace: str | None, ref_kind: str, ref_name: str, *subjects: dict[str, Any]
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "RoleBinding" if namespace is not None else "ClusterRoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": RBAC, "kind": ref_kind, "name": ref_name},
        "subjects": list(subjects),
    }


def user_subject(name: str) -> dict[str, Any]:
    return {"apiGroup": RBAC, "kind": "User", "name": name}


def group_subject(name: str) -> dict[str, Any]:
    return {"apiGroup": RBAC, "kind": "Group", "name": name}


def sa_subject(name: str, namespace: str | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"kind": "ServiceAccount", "name": name}
    if namespace is not None:
        s["namespace"] = namespace
    return s


def rule(
    verbs: list[str], groups: list[str], resources: list[str], names: list[str] | None = None
) -> dict[str, Any]:
    r: dict[str, Any] = {"verbs": verbs, "apiGroups": groups, "resources": resources}
    if names is not None:
        r["resourceNames"] = names
    return r


def req(
    user: UserInfo,
    verb: str,
    resource: str,
    namespace: str = "",
    group: str = "",
    name: str = "",
    sub: str = "",
) -> Attributes:
    return Attributes(
        user=user,
        verb=verb,
        namespace=namespace,
        api_group=group,
        api_version="v1",
        resource=resource,
        subresource=sub,
        name=name,
    )


def nonres(user: UserInfo, path: str, verb: str = "get") -> Attributes:
    return Attributes(user=user, verb=verb, resource_request=False, path=path)


def allowed(authz: RBACAuthorizer, attrs: Attributes) -> bool:
    return authz.authorize(attrs)[0]


# ------------------------------------------------------------------------------------------
# request_attributes
# ------------------------------------------------------------------------------------------

# (method, path, query) -> (verb, namespace, group, version, resource, subresource, name)
RESOURCE_CASES: list[tuple[str, str, dict[str, str], tuple[str, str, str, str, str, str, str]]] = [
    ("GET", "/api/v1/namespaces/ns/pods", {}, ("list", "ns", "", "v1", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods/", {}, ("list", "ns", "", "v1", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods", {"watch": "true"}, ("watch", "ns", "", "v1", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods", {"watch": "1"}, ("watch", "ns", "", "v1", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods", {"watch": ""}, ("watch", "ns", "", "v1", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods", {"watch": "False"}, ("list", "ns", "", "v1", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods", {"watch": "0"}, ("list", "ns", "", "v1", "pods", "", "")),
    ("GET", "/api/v1/watch/namespaces/ns/pods", {}, ("watch", "ns", "", "v1", "pods", "", "")),
    ("GET", "/api/v1/watch/namespaces/ns/pods/foo", {}, ("watch", "ns", "", "v1", "pods", "", "foo")),
    ("GET", "/api/v1/watch/pods", {}, ("watch", "", "", "v1", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods/foo", {}, ("get", "ns", "", "v1", "pods", "", "foo")),
    ("HEAD", "/api/v1/namespaces/ns/pods/foo", {}, ("get", "ns", "", "v1", "pods", "", "foo")),
    ("POST", "/api/v1/namespaces/ns/pods", {}, ("create", "ns", "", "v1", "pods", "", "")),
    ("PUT", "/api/v1/namespaces/ns/pods/foo", {}, ("update", "ns", "", "v1", "pods", "", "foo")),
    ("PATCH", "/api/v1/namespaces/ns/pods/foo", {}, ("patch", "ns", "", "v1", "pods", "", "foo")),
    ("DELETE", "/api/v1/namespaces/ns/pods/foo", {}, ("delete", "ns", "", "v1", "pods", "", "foo")),
    ("DELETE", "/api/v1/namespaces/ns/pods", {}, ("deletecollection", "ns", "", "v1", "pods", "", "")),
    ("OPTIONS", "/api/v1/namespaces/ns/pods/foo", {}, ("", "ns", "", "v1", "pods", "", "foo")),
    ("PUT", "/api/v1/namespaces/ns/pods/foo/status", {}, ("update", "ns", "", "v1", "pods", "status", "foo")),
    ("GET", "/api/v1/namespaces/ns/pods/foo/log", {}, ("get", "ns", "", "v1", "pods", "log", "foo")),
    (
        "POST",
        "/api/v1/namespaces/ns/pods/foo/exec",
        {"command": "sh"},
        ("create", "ns", "", "v1", "pods", "exec", "foo"),
    ),
    ("GET", "/api/v1/namespaces/ns/pods/foo/exec", {}, ("get", "ns", "", "v1", "pods", "exec", "foo")),
    (
        "PATCH",
        "/apis/apps/v1/namespaces/ns/deployments/web/scale",
        {},
        ("patch", "ns", "apps", "v1", "deployments", "scale", "web"),
    ),
    (
        "POST",
        "/api/v1/namespaces/ns/serviceaccounts/sa/token",
        {},
        ("create", "ns", "", "v1", "serviceaccounts", "token", "sa"),
    ),
    ("GET", "/api/v1/nodes", {}, ("list", "", "", "v1", "nodes", "", "")),
    ("GET", "/api/v1/nodes/n1", {}, ("get", "", "", "v1", "nodes", "", "n1")),
    ("GET", "/api/v1/pods", {}, ("list", "", "", "v1", "pods", "", "")),
    ("GET", "/api/v1/namespaces", {}, ("list", "", "", "v1", "namespaces", "", "")),
    ("POST", "/api/v1/namespaces", {}, ("create", "", "", "v1", "namespaces", "", "")),
    # a namespace is its own namespace, and status/finalize are its subresources
    ("GET", "/api/v1/namespaces/foo", {}, ("get", "foo", "", "v1", "namespaces", "", "foo")),
    ("DELETE", "/api/v1/namespaces/foo", {}, ("delete", "foo", "", "v1", "namespaces", "", "foo")),
    (
        "PUT",
        "/api/v1/namespaces/foo/finalize",
        {},
        ("update", "foo", "", "v1", "namespaces", "finalize", "foo"),
    ),
    ("PUT", "/api/v1/namespaces/foo/status", {}, ("update", "foo", "", "v1", "namespaces", "status", "foo")),
    # CRD groups, namespaced and cluster-scoped
    (
        "GET",
        "/apis/example.com/v1alpha1/namespaces/ns/widgets",
        {},
        ("list", "ns", "example.com", "v1alpha1", "widgets", "", ""),
    ),
    (
        "PUT",
        "/apis/example.com/v1alpha1/namespaces/ns/widgets/w1/status",
        {},
        ("update", "ns", "example.com", "v1alpha1", "widgets", "status", "w1"),
    ),
    (
        "GET",
        "/apis/example.com/v1/gadgets",
        {"watch": "true"},
        ("watch", "", "example.com", "v1", "gadgets", "", ""),
    ),
    (
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        {},
        ("get", "", "apiextensions.k8s.io", "v1", "customresourcedefinitions", "", "widgets.example.com"),
    ),
    (
        "DELETE",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        {},
        ("deletecollection", "", RBAC, "v1", "clusterroles", "", ""),
    ),
    # list/watch of one object by fieldSelector carries the name (requestinfo.go)
    (
        "GET",
        "/api/v1/namespaces/ns/configmaps",
        {"fieldSelector": "metadata.name=cfg"},
        ("list", "ns", "", "v1", "configmaps", "", "cfg"),
    ),
    (
        "GET",
        "/api/v1/namespaces/ns/configmaps",
        {"fieldSelector": "metadata.name==cfg", "watch": "1"},
        ("watch", "ns", "", "v1", "configmaps", "", "cfg"),
    ),
    (
        "GET",
        "/api/v1/namespaces/ns/pods",
        {"fieldSelector": "status.phase=Running,metadata.name=p1"},
        ("list", "ns", "", "v1", "pods", "", "p1"),
    ),
    (
        "GET",
        "/api/v1/namespaces/ns/configmaps",
        {"fieldSelector": "metadata.name!=cfg"},
        ("list", "ns", "", "v1", "configmaps", "", ""),
    ),
    (
        "GET",
        "/api/v1/namespaces/ns/configmaps",
        {"fieldSelector": "metadata.name=a/b"},
        ("list", "ns", "", "v1", "configmaps", "", ""),
    ),
    (
        "GET",
        "/api/v1/namespaces/ns/configmaps",
        {"fieldSelector": "nonsense"},
        ("list", "ns", "", "v1", "configmaps", "", ""),
    ),
    (
        "GET",
        "/api/v1/namespaces/ns/configmaps",
        {"fieldSelector": "metadata.name=cfg", "limit": "ten"},
        ("list", "ns", "", "v1", "configmaps", "", ""),
    ),
    (
        "GET",
        "/api/v1/namespaces/ns/configmaps",
        {"fieldSelector": "metadata.name=cfg", "limit": "10"},
        ("list", "ns", "", "v1", "configmaps", "", "cfg"),
    ),
    (
        "DELETE",
        "/api/v1/namespaces/ns/configmaps",
        {"fieldSelector": "metadata.name=cfg"},
        ("deletecollection", "ns", "", "v1", "configmaps", "", ""),
    ),
    # proxy takes no subresource
    ("GET", "/api/v1/proxy/namespaces/ns/pods/foo/bar", {}, ("proxy", "ns", "", "v1", "pods", "", "foo")),
]


@pytest.mark.parametrize(("method", "path", "query", "expected"), RESOURCE_CASES)
def test_request_attributes_resource_requests(
    method: str, path: str, query: dict[str, str], expected: tuple[str, ...]
) -> None:
    a = request_attributes(method, path, query, BOB)
    assert a.resource_request
    assert (a.verb, a.namespace, a.api_group, a.api_version, a.resource, a.subresource, a.name) == expected
    assert a.user == BOB
    assert a.path == path


@pytest.mark.parametrize(
    ("method", "path", "verb"),
    [
        ("GET", "/version", "get"),
        ("GET", "/version/", "get"),
        ("GET", "/api", "get"),
        ("GET", "/api/v1", "get"),
        ("GET", "/apis", "get"),
        ("GET", "/apis/apps", "get"),
        ("GET", "/apis/apps/v1", "get"),
        ("GET", "/openapi/v2", "get"),
        ("GET", "/openapi/v3/apis/apps/v1", "get"),
        ("GET", "/healthz", "get"),
        ("GET", "/", "get"),
        ("HEAD", "/readyz", "head"),
        ("POST", "/foo/bar/baz", "post"),
        ("GET", "/metrics/slis", "get"),
    ],
)
def test_request_attributes_non_resource(method: str, path: str, verb: str) -> None:
    a = request_attributes(method, path, {}, BOB)
    assert not a.resource_request
    assert a.verb == verb
    assert a.path == path
    assert (a.resource, a.namespace, a.api_group, a.name) == ("", "", "", "")


def test_request_attributes_special_verb_without_resource_fails() -> None:
    with pytest.raises(RequestInfoError, match="unable to determine kind and namespace"):
        request_attributes("GET", "/api/v1/watch", {}, BOB)


# ------------------------------------------------------------------------------------------
# rule matching (evaluation_helpers.go)
# ------------------------------------------------------------------------------------------


def test_verb_matches() -> None:
    assert verb_matches({"verbs": ["get", "list"]}, "list")
    assert not verb_matches({"verbs": ["get", "list"]}, "watch")
    assert verb_matches({"verbs": ["*"]}, "deletecollection")
    assert not verb_matches({}, "get")


def test_api_group_matches() -> None:
    assert api_group_matches({"apiGroups": [""]}, "")
    assert not api_group_matches({"apiGroups": [""]}, "apps")
    assert api_group_matches({"apiGroups": ["*"]}, "example.com")
    assert not api_group_matches({"apiGroups": ["apps"]}, "")


def test_resource_matches() -> None:
    assert resource_matches({"resources": ["*"]}, "pods/exec", "exec")
    assert resource_matches({"resources": ["pods"]}, "pods", "")
    assert not resource_matches({"resources": ["pods"]}, "pods/status", "status")
    assert resource_matches({"resources": ["pods/status"]}, "pods/status", "status")
    assert not resource_matches({"resources": ["pods/status"]}, "pods", "")
    assert resource_matches({"resources": ["*/scale"]}, "deployments/scale", "scale")
    assert not resource_matches({"resources": ["*/scale"]}, "deployments", "")
    assert not resource_matches({"resources": ["*/scale"]}, "deployments/status", "status")
    # upstream has no "resource/*" wildcard
    assert not resource_matches({"resources": ["pods/*"]}, "pods/exec", "exec")
    assert not resource_matches({"resources": ["pods/*"]}, "pods", "")


def test_resource_name_matches() -> None:
    assert resource_name_matches({}, "")
    assert resource_name_matches({"resourceNames": []}, "anything")
    assert resource_name_matches({"resourceNames": ["a", "b"]}, "b")
    assert not resource_name_matches({"resourceNames": ["a"]}, "b")
    assert not resource_name_matches({"resourceNames": ["a"]}, "")


def test_non_resource_url_matches() -> None:
    assert non_resource_url_matches({"nonResourceURLs": ["*"]}, "/anything")
    assert non_resource_url_matches({"nonResourceURLs": ["/version"]}, "/version")
    assert not non_resource_url_matches({"nonResourceURLs": ["/version"]}, "/version/")
    assert non_resource_url_matches({"nonResourceURLs": ["/apis/*"]}, "/apis/apps/v1")
    assert non_resource_url_matches({"nonResourceURLs": ["/apis/*"]}, "/apis/")
    assert not non_resource_url_matches({"nonResourceURLs": ["/apis/*"]}, "/apis")
    assert non_resource_url_matches({"nonResourceURLs": ["/healthz*"]}, "/healthz/etcd")
    assert not non_resource_url_matches({"resources": ["*"]}, "/version")


# ------------------------------------------------------------------------------------------
# RBAC authorizer
# ------------------------------------------------------------------------------------------


def test_role_binding_grants_in_its_namespace_only() -> None:
    store = FakeStore(
        [
            role("pod-reader", "team-a", rule(["get", "list"], [""], ["pods"])),
            binding("read-pods", "team-a", "Role", "pod-reader", user_subject("bob")),
        ]
    )
    authz = RBACAuthorizer(store)
    ok, reason = authz.authorize(req(BOB, "get", "pods", "team-a", name="p"))
    assert ok
    assert reason == 'RBAC: allowed by RoleBinding "read-pods/team-a" of Role "pod-reader" to User "bob"'
    assert allowed(authz, req(BOB, "list", "pods", "team-a"))
    assert not allowed(authz, req(BOB, "watch", "pods", "team-a"))
    assert not allowed(authz, req(BOB, "get", "pods", "team-b", name="p"))
    assert not allowed(authz, req(BOB, "list", "pods"))  # cluster scope
    assert not allowed(authz, req(BOB, "get", "services", "team-a", name="s"))
    assert not allowed(authz, req(BOB, "get", "pods", "team-a", group="apps", name="p"))
    assert not allowed(authz, req(UserInfo("alice", ("devs",)), "get", "pods", "team-a", name="p"))


def test_role_binding_refers_to_role_in_its_own_namespace() -> None:
    # a Role of the same name in another namespace is not what the binding refers to
    store = FakeStore(
        [
            role("pod-reader", "team-b", rule(["get"], [""], ["pods"])),
            binding("read-pods", "team-a", "Role", "pod-reader", user_subject("bob")),
        ]
    )
    authz = RBACAuthorizer(store)
    assert authz.authorize(req(BOB, "get", "pods", "team-a", name="p")) == (
        False,
        'RBAC: role.rbac.authorization.k8s.io "pod-reader" not found',
    )
    assert not allowed(authz, req(BOB, "get", "pods", "team-b", name="p"))


def test_role_binding_to_cluster_role_grants_only_in_binding_namespace() -> None:
    store = FakeStore(
        [
            cluster_role("secret-reader", rule(["get"], [""], ["secrets"])),
            binding("bob-secrets", "team-a", "ClusterRole", "secret-reader", user_subject("bob")),
        ]
    )
    authz = RBACAuthorizer(store)
    ok, reason = authz.authorize(req(BOB, "get", "secrets", "team-a", name="s"))
    assert ok
    assert (
        reason
        == 'RBAC: allowed by RoleBinding "bob-secrets/team-a" of ClusterRole "secret-reader" to User "bob"'
    )
    assert not allowed(authz, req(BOB, "get", "secrets", "team-b", name="s"))
    assert not allowed(authz, req(BOB, "get", "secrets", "", name="s"))


def test_cluster_role_binding_grants_everywhere() -> None:
    store = FakeStore(
        [
            cluster_role("node-and-pod-reader", rule(["get", "list"], [""], ["nodes", "pods"])),
            binding("devs-read", None, "ClusterRole", "node-and-pod-reader", group_subject("devs")),
        ]
    )
    authz = RBACAuthorizer(store)
    ok, reason = authz.authorize(req(BOB, "list", "nodes"))
    assert ok
    assert reason == (
        'RBAC: allowed by ClusterRoleBinding "devs-read" of ClusterRole "node-and-pod-reader" to Group "devs"'
    )
    assert allowed(authz, req(BOB, "list", "pods"))
    assert allowed(authz, req(BOB, "get", "pods", "any-ns", name="p"))
    assert not allowed(authz, req(BOB, "delete", "pods", "any-ns", name="p"))


def test_service_account_subjects() -> None:
    store = FakeStore(
        [
            cluster_role("cm-editor", rule(["*"], [""], ["configmaps"])),
            # no namespace on the subject: defaults to the RoleBinding's namespace
            binding("local", "team-a", "ClusterRole", "cm-editor", sa_subject("builder")),
            # explicit namespace in another namespace's binding
            binding("cross", "team-b", "ClusterRole", "cm-editor", sa_subject("builder", "team-a")),
            # no namespace on a ClusterRoleBinding subject: never matches
            binding("broken", None, "ClusterRole", "cm-editor", sa_subject("builder")),
        ]
    )
    authz = RBACAuthorizer(store)
    ok, reason = authz.authorize(req(SA, "update", "configmaps", "team-a", name="c"))
    assert ok
    assert reason == (
        'RBAC: allowed by RoleBinding "local/team-a" of ClusterRole "cm-editor" to ServiceAccount "builder/team-a"'
    )
    ok, reason = authz.authorize(req(SA, "create", "configmaps", "team-b"))
    assert ok
    assert reason.endswith('to ServiceAccount "builder/team-a"')
    assert not allowed(authz, req(SA, "create", "configmaps", "team-c"))
    assert not allowed(authz, req(SA, "list", "configmaps"))
    # the same name in another namespace is another service account: the "cross" binding in
    # team-b names team-a's builder explicitly, so team-b's builder gets nothing anywhere
    other = UserInfo("system:serviceaccount:team-b:builder", ("system:serviceaccounts",))
    assert not allowed(authz, req(other, "create", "configmaps", "team-a"))
    assert not allowed(authz, req(other, "create", "configmaps", "team-b"))


def test_service_account_group_subjects() -> None:
    store = FakeStore(
        [
            cluster_role("view-pods", rule(["list"], [""], ["pods"])),
            binding(
                "all-sas-in-team-a",
                None,
                "ClusterRole",
                "view-pods",
                group_subject("system:serviceaccounts:team-a"),
            ),
        ]
    )
    authz = RBACAuthorizer(store)
    assert allowed(authz, req(SA, "list", "pods", "anywhere"))
    assert not allowed(authz, req(BOB, "list", "pods", "anywhere"))


def test_subresources() -> None:
    store = FakeStore(
        [
            role(
                "r",
                "ns",
                rule(["get", "update"], [""], ["pods"]),
                rule(["create"], [""], ["pods/exec"]),
                rule(["get", "patch"], ["apps"], ["*/scale"]),
            ),
            binding("b", "ns", "Role", "r", user_subject("bob")),
        ]
    )
    authz = RBACAuthorizer(store)
    assert allowed(authz, req(BOB, "update", "pods", "ns", name="p"))
    assert not allowed(authz, req(BOB, "update", "pods", "ns", name="p", sub="status"))
    assert allowed(authz, req(BOB, "create", "pods", "ns", name="p", sub="exec"))
    assert not allowed(authz, req(BOB, "get", "pods", "ns", name="p", sub="exec"))
    assert not allowed(authz, req(BOB, "create", "pods", "ns", name="p", sub="attach"))
    assert allowed(authz, req(BOB, "patch", "deployments", "ns", group="apps", name="d", sub="scale"))
    assert allowed(authz, req(BOB, "get", "statefulsets", "ns", group="apps", name="s", sub="scale"))
    assert not allowed(authz, req(BOB, "get", "deployments", "ns", group="apps", name="d"))
    assert not allowed(authz, req(BOB, "get", "deployments", "ns", group="apps", name="d", sub="status"))


def test_resource_names() -> None:
    store = FakeStore(
        [
            role("r", "ns", rule(["get", "list", "watch", "update"], [""], ["configmaps"], ["leader"])),
            binding("b", "ns", "Role", "r", user_subject("bob")),
        ]
    )
    authz = RBACAuthorizer(store)
    assert allowed(authz, req(BOB, "get", "configmaps", "ns", name="leader"))
    assert allowed(authz, req(BOB, "update", "configmaps", "ns", name="leader"))
    assert not allowed(authz, req(BOB, "get", "configmaps", "ns", name="other"))
    # list/watch without a name cannot be restricted by resourceNames
    assert not allowed(authz, req(BOB, "list", "configmaps", "ns"))
    assert not allowed(authz, req(BOB, "create", "configmaps", "ns"))
    # ... unless the request names the object through fieldSelector=metadata.name=
    single = request_attributes(
        "GET",
        "/api/v1/namespaces/ns/configmaps",
        {"watch": "true", "fieldSelector": "metadata.name=leader"},
        BOB,
    )
    assert allowed(authz, single)


def test_non_resource_urls() -> None:
    store = FakeStore(
        [
            cluster_role("metrics", {"verbs": ["get"], "nonResourceURLs": ["/metrics", "/debug/*"]}),
            binding("bob-metrics", None, "ClusterRole", "metrics", user_subject("bob")),
            # a RoleBinding can reference the role, but non-resource URLs are never namespaced
            cluster_role("healthz", {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}),
            binding("local-healthz", "ns", "ClusterRole", "healthz", user_subject("bob")),
        ]
    )
    authz = RBACAuthorizer(store)
    assert allowed(authz, nonres(BOB, "/metrics"))
    assert allowed(authz, nonres(BOB, "/debug/pprof/heap"))
    assert not allowed(authz, nonres(BOB, "/metrics", verb="post"))
    assert not allowed(authz, nonres(BOB, "/metricsz"))
    assert not allowed(authz, nonres(BOB, "/healthz"))
    # non-resource rules never grant resources, nor resource rules paths
    assert not allowed(authz, req(BOB, "get", "metrics"))


def test_system_masters_always_allowed() -> None:
    authz = RBACAuthorizer(FakeStore())
    admin = TokenAuthority.admin_user()
    assert authz.authorize(req(admin, "delete", "nodes", name="n")) == (True, "")
    assert authz.authorize(nonres(admin, "/anything", "post")) == (True, "")
    assert not allowed(authz, req(BOB, "get", "pods", "ns", name="p"))


def test_unresolvable_bindings_give_the_reason_and_do_not_block_others() -> None:
    store = FakeStore(
        [
            binding("dangling-cr", None, "ClusterRole", "gone", user_subject("bob")),
            binding("dangling-role", "ns", "Role", "missing", group_subject("devs")),
            binding("weird", "ns", "Thing", "x", user_subject("bob")),
            binding("not-bob", None, "ClusterRole", "also-gone", user_subject("alice")),
        ]
    )
    authz = RBACAuthorizer(store)
    assert authz.authorize(req(BOB, "get", "pods", "ns", name="p")) == (
        False,
        'RBAC: [clusterrole.rbac.authorization.k8s.io "gone" not found, '
        'role.rbac.authorization.k8s.io "missing" not found, unsupported role reference kind: "Thing"]',
    )
    assert authz.authorize(req(BOB, "list", "nodes")) == (
        False,
        'RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found',
    )
    store.add(cluster_role("pods", rule(["get"], [""], ["pods"])))
    store.add(binding("good", "ns", "ClusterRole", "pods", user_subject("bob")))
    ok, reason = authz.authorize(req(BOB, "get", "pods", "ns", name="p"))
    assert ok
    assert reason.startswith('RBAC: allowed by RoleBinding "good/ns"')


def test_changes_apply_immediately() -> None:
    store = FakeStore()
    authz = RBACAuthorizer(store)
    attrs = req(BOB, "get", "pods", "ns", name="p")
    assert not allowed(authz, attrs)
    store.add(role("r", "ns", rule(["get"], [""], ["pods"])))
    store.add(binding("b", "ns", "Role", "r", user_subject("bob")))
    assert allowed(authz, attrs)
    store.objects["roles"].clear()
    assert not allowed(authz, attrs)


def test_malformed_objects_are_tolerated() -> None:
    store = FakeStore(
        [
            {"kind": "ClusterRoleBinding", "metadata": {"name": "x"}, "subjects": None, "roleRef": None},
            {"kind": "ClusterRole", "metadata": {"name": "empty"}, "rules": None},
            binding("b", None, "ClusterRole", "empty", user_subject("bob")),
        ]
    )
    assert RBACAuthorizer(store).authorize(req(BOB, "get", "pods", "ns", name="p")) == (False, "")


# ------------------------------------------------------------------------------------------
# bootstrap policy
# ------------------------------------------------------------------------------------------


def _by_name(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def test_bootstrap_policy_objects() -> None:
    policy = bootstrap_policy()
    roles = _by_name(policy, "ClusterRole")
    bindings = _by_name(policy, "ClusterRoleBinding")
    for name in ("cluster-admin", "admin", "edit", "view", "system:discovery", "system:basic-user",
                 "system:public-info-viewer"):  # fmt: skip
        assert name in roles
    for obj in policy:
        assert obj["apiVersion"] == "rbac.authorization.k8s.io/v1"
        assert obj["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
        assert obj["metadata"]["annotations"] == {"rbac.authorization.kubernetes.io/autoupdate": "true"}
        assert "namespace" not in obj["metadata"]
    subjects = {n: [(s["kind"], s["name"]) for s in b["subjects"]] for n, b in bindings.items()}
    assert subjects == {
        "cluster-admin": [("Group", "system:masters")],
        "system:basic-user": [("Group", "system:authenticated")],
        "system:discovery": [("Group", "system:authenticated")],
        "system:public-info-viewer": [("Group", "system:authenticated"), ("Group", "system:unauthenticated")],
    }
    for n, b in bindings.items():
        assert b["roleRef"] == {"apiGroup": RBAC, "kind": "ClusterRole", "name": n}
    assert roles["view"]["aggregationRule"] == {
        "clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]
    }
    assert roles["view"]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert roles["edit"]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    # aggregation: view = aggregate-to-view; edit = aggregate-to-edit + view; admin = edit + aggregate-to-admin
    assert roles["view"]["rules"] == roles["system:aggregate-to-view"]["rules"]
    assert roles["edit"]["rules"] == roles["system:aggregate-to-edit"]["rules"] + roles["view"]["rules"]
    assert roles["admin"]["rules"] == roles["edit"]["rules"] + roles["system:aggregate-to-admin"]["rules"]
    # fresh objects every call
    policy[0]["metadata"]["name"] = "changed"
    assert bootstrap_policy()[0]["metadata"]["name"] != "changed"


def test_bootstrap_policy_authorizes_like_a_fresh_cluster() -> None:
    store = FakeStore(bootstrap_policy())
    authz = RBACAuthorizer(store)
    # anonymous: public info only
    assert allowed(authz, nonres(ANONYMOUS, "/version"))
    assert allowed(authz, nonres(ANONYMOUS, "/healthz"))
    assert allowed(authz, nonres(ANONYMOUS, "/readyz"))
    assert not allowed(authz, nonres(ANONYMOUS, "/api"))
    assert not allowed(authz, nonres(ANONYMOUS, "/openapi/v2"))
    assert not allowed(authz, req(ANONYMOUS, "list", "namespaces"))
    # any authenticated user: discovery and self reviews, nothing else
    for path in ("/api", "/api/v1", "/apis", "/apis/apps/v1", "/openapi/v2", "/openapi/v3", "/version"):
        assert allowed(authz, nonres(SA, path)), path
    assert not allowed(authz, nonres(SA, "/metrics"))
    assert not allowed(authz, nonres(SA, "/api", "post"))
    assert allowed(authz, req(SA, "create", "selfsubjectaccessreviews", group="authorization.k8s.io"))
    assert allowed(authz, req(SA, "create", "selfsubjectrulesreviews", group="authorization.k8s.io"))
    assert allowed(authz, req(SA, "create", "selfsubjectreviews", group="authentication.k8s.io"))
    assert not allowed(authz, req(SA, "create", "subjectaccessreviews", group="authorization.k8s.io"))
    assert not allowed(authz, req(SA, "list", "pods", "team-a"))
    # cluster-admin is bound to system:masters (the privileged shortcut aside)
    root = UserInfo("root", ("system:masters",))
    assert authz.authorize(req(root, "delete", "nodes", name="n")) == (True, "")  # the privileged shortcut
    # ... and RBAC alone would allow it through the cluster-admin binding too
    sources = [item for item in authz.visit_rules_for(root, "") if not isinstance(item, str)]
    assert (
        sources[0][0]
        == 'ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" to Group "system:masters"'
    )


def test_bootstrap_view_edit_admin_through_role_bindings() -> None:
    store = FakeStore(bootstrap_policy())
    for name, role_name in (("viewer", "view"), ("editor", "edit"), ("boss", "admin")):
        store.add(binding(name, "team-a", "ClusterRole", role_name, user_subject(name)))
    authz = RBACAuthorizer(store)
    viewer, editor, boss = (UserInfo(n, ("system:authenticated",)) for n in ("viewer", "editor", "boss"))
    assert allowed(authz, req(viewer, "list", "pods", "team-a"))
    assert allowed(authz, req(viewer, "get", "statefulsets", "team-a", group="apps", name="s", sub="scale"))
    assert not allowed(authz, req(viewer, "get", "secrets", "team-a", name="s"))
    assert not allowed(authz, req(viewer, "create", "configmaps", "team-a"))
    assert not allowed(authz, req(viewer, "list", "pods", "team-b"))
    assert allowed(authz, req(editor, "get", "secrets", "team-a", name="s"))
    assert allowed(authz, req(editor, "create", "pods", "team-a", name="p", sub="exec"))
    assert allowed(authz, req(editor, "list", "pods", "team-a"))  # via the aggregated view rules
    assert allowed(authz, req(editor, "patch", "deployments", "team-a", group="apps", name="d", sub="scale"))
    assert not allowed(authz, req(editor, "create", "rolebindings", "team-a", group=RBAC))
    assert allowed(authz, req(boss, "create", "rolebindings", "team-a", group=RBAC))
    assert allowed(authz, req(boss, "delete", "secrets", "team-a", name="s"))
    assert not allowed(authz, req(boss, "list", "nodes"))
    assert not allowed(authz, req(boss, "create", "rolebindings", "team-b", group=RBAC))


def test_aggregation_picks_up_new_labelled_roles() -> None:
    policy = bootstrap_policy()
    crd_view = cluster_role("widgets-view", rule(["get", "list", "watch"], ["example.com"], ["widgets"]))
    crd_view["metadata"]["labels"] = {"rbac.authorization.k8s.io/aggregate-to-view": "true"}
    roles = [o for o in policy if o["kind"] == "ClusterRole"] + [crd_view]
    aggregated = aggregate_cluster_roles(roles)
    assert set(aggregated) == {"admin", "edit", "view"}
    for name in ("admin", "edit", "view"):
        assert crd_view["rules"][0] in aggregated[name]
    # duplicates are dropped, matchExpressions work, a role does not aggregate itself
    a = cluster_role("a", rule(["get"], [""], ["pods"]))
    a["metadata"]["labels"] = {"tier": "x"}
    b = cluster_role("b", rule(["get"], [""], ["pods"]), rule(["list"], [""], ["pods"]))
    b["metadata"]["labels"] = {"tier": "y"}
    c = cluster_role("c")
    c["metadata"]["labels"] = {"tier": "z"}
    c["aggregationRule"] = {
        "clusterRoleSelectors": [{"matchExpressions": [{"key": "tier", "operator": "Exists"}]}]
    }
    assert aggregate_cluster_roles([a, b, c]) == {
        "c": [rule(["get"], [""], ["pods"]), rule(["list"], [""], ["pods"])]
    }


# ------------------------------------------------------------------------------------------
# the 403 body
# ------------------------------------------------------------------------------------------


def test_forbidden_named_namespaced() -> None:
    err = forbidden_error(req(SA, "get", "pods", "team-a", name="foo"))
    assert isinstance(err, StatusError)
    assert err.to_status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "foo" is forbidden: User "system:serviceaccount:team-a:builder" cannot get resource '
        '"pods" in API group "" in the namespace "team-a"',
        "reason": "Forbidden",
        "details": {"name": "foo", "kind": "pods"},
        "code": 403,
    }


def test_forbidden_list_cluster_scope_with_group() -> None:
    err = forbidden_error(request_attributes("GET", "/apis/apps/v1/deployments", {}, BOB))
    assert err.message == (
        'deployments.apps is forbidden: User "bob" cannot list resource "deployments" in API group "apps" '
        "at the cluster scope"
    )
    assert err.details == {"group": "apps", "kind": "deployments"}


def test_forbidden_subresource() -> None:
    attrs = request_attributes("POST", "/api/v1/namespaces/ns/pods/web-0/exec", {}, BOB)
    assert forbidden_error(attrs).message == (
        'pods "web-0" is forbidden: User "bob" cannot create resource "pods/exec" in API group "" '
        'in the namespace "ns"'
    )
    attrs = request_attributes("PUT", "/apis/example.com/v1/namespaces/ns/widgets/w/status", {}, SA)
    assert forbidden_error(attrs).message == (
        'widgets.example.com "w" is forbidden: User "system:serviceaccount:team-a:builder" cannot update '
        'resource "widgets/status" in API group "example.com" in the namespace "ns"'
    )


def test_forbidden_watch_and_cluster_scoped_named() -> None:
    attrs = request_attributes("GET", "/api/v1/namespaces/ns/configmaps", {"watch": "true"}, BOB)
    assert forbidden_error(attrs).message == (
        'configmaps is forbidden: User "bob" cannot watch resource "configmaps" in API group "" in the namespace "ns"'
    )
    attrs = request_attributes("GET", "/api/v1/namespaces/kube-system", {}, BOB)
    assert forbidden_error(attrs).message == (
        'namespaces "kube-system" is forbidden: User "bob" cannot get resource "namespaces" in API group "" '
        'in the namespace "kube-system"'
    )
    attrs = request_attributes("DELETE", "/api/v1/nodes/n1", {}, BOB)
    assert forbidden_error(attrs).message == (
        'nodes "n1" is forbidden: User "bob" cannot delete resource "nodes" in API group "" at the cluster scope'
    )


def test_forbidden_non_resource() -> None:
    err = forbidden_error(request_attributes("GET", "/foo", {}, ANONYMOUS))
    assert err.code == 403
    assert err.reason == "Forbidden"
    assert err.message == 'forbidden: User "system:anonymous" cannot get path "/foo"'
    assert err.to_status()["details"] == {}


def test_forbidden_with_reason_and_sanitised() -> None:
    err = forbidden_error(
        req(BOB, "list", "pods", "ns"), 'RBAC: role.rbac.authorization.k8s.io "x" not found'
    )
    assert err.message == (
        'pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "ns": '
        'RBAC: role.rbac.authorization.k8s.io "x" not found'
    )
    evil = UserInfo('<b>"x"&', ())
    assert forbidden_error(nonres(evil, "/p")).message == (
        'forbidden: User "&lt;b&gt;\\"x\\"&amp;" cannot get path "/p"'
    )


def test_go_quote() -> None:
    assert go_quote("plain") == '"plain"'
    assert go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert go_quote("tab\tnl\n") == '"tab\\tnl\\n"'
    assert go_quote("\x01") == '"\\x01"'
    assert go_quote("héllo") == '"héllo"'


# ------------------------------------------------------------------------------------------
# reviews
# ------------------------------------------------------------------------------------------


def _review_store() -> FakeStore:
    return FakeStore(
        [
            *bootstrap_policy(),
            role(
                "r",
                "team-a",
                rule(["get", "list"], [""], ["pods"]),
                rule(["get"], [""], ["configmaps"], ["cfg"]),
            ),
            binding("b", "team-a", "Role", "r", sa_subject("builder")),
        ]
    )


def test_subject_access_review() -> None:
    authz = RBACAuthorizer(_review_store())
    spec = {
        "user": SA.name,
        "groups": list(SA.groups),
        "resourceAttributes": {"namespace": "team-a", "verb": "list", "resource": "pods"},
    }
    assert subject_access_review(authz, spec) == {
        "allowed": True,
        "reason": 'RBAC: allowed by RoleBinding "b/team-a" of Role "r" to ServiceAccount "builder/team-a"',
    }
    spec["resourceAttributes"] = {"namespace": "team-b", "verb": "list", "resource": "pods"}
    assert subject_access_review(authz, spec) == {"allowed": False}
    nonres_spec = {
        "groups": ["system:unauthenticated"],
        "nonResourceAttributes": {"path": "/version", "verb": "get"},
    }
    assert subject_access_review(authz, nonres_spec)["allowed"] is True
    masters = {
        "user": "x",
        "groups": ["system:masters"],
        "resourceAttributes": {"verb": "*", "resource": "*"},
    }
    assert subject_access_review(authz, masters) == {"allowed": True}


def test_subject_access_review_validation() -> None:
    authz = RBACAuthorizer(FakeStore())
    with pytest.raises(StatusError) as ei:
        subject_access_review(authz, {})
    err = ei.value
    assert err.code == 422
    assert err.reason == "Invalid"
    assert err.message == (
        'SubjectAccessReview.authorization.k8s.io "" is invalid: [spec.resourceAttributes: Invalid value: null: '
        "exactly one of nonResourceAttributes or resourceAttributes must be specified, spec.user: Invalid value: "
        '"": at least one of user or group must be specified]'
    )
    with pytest.raises(StatusError) as ei:
        subject_access_review(
            authz,
            {
                "user": "u",
                "resourceAttributes": {"verb": "get"},
                "nonResourceAttributes": {"path": "/", "verb": "get"},
            },
        )
    assert ei.value.details is not None
    assert [c["field"] for c in ei.value.details["causes"]] == ["spec.nonResourceAttributes"]


def test_self_subject_access_review_like_kubectl_auth_can_i() -> None:
    authz = RBACAuthorizer(_review_store())

    def can_i(spec: dict[str, Any]) -> bool:
        return bool(self_subject_access_review(authz, spec, SA)["allowed"])

    assert can_i(
        {"resourceAttributes": {"namespace": "team-a", "verb": "get", "resource": "pods", "name": "p"}}
    )
    assert not can_i({"resourceAttributes": {"namespace": "team-a", "verb": "delete", "resource": "pods"}})
    assert can_i(
        {
            "resourceAttributes": {
                "namespace": "team-a",
                "verb": "get",
                "resource": "configmaps",
                "name": "cfg",
            }
        }
    )
    assert not can_i({"resourceAttributes": {"namespace": "team-a", "verb": "get", "resource": "configmaps"}})
    assert can_i({"nonResourceAttributes": {"path": "/apis", "verb": "get"}})
    assert not can_i({"nonResourceAttributes": {"path": "/logs", "verb": "get"}})
    with pytest.raises(StatusError) as ei:
        self_subject_access_review(authz, {}, SA)
    assert ei.value.message.startswith('SelfSubjectAccessReview.authorization.k8s.io "" is invalid: ')


def test_self_subject_rules_review() -> None:
    store = _review_store()
    store.add(binding("dangling", "team-a", "Role", "nope", sa_subject("builder")))
    status = self_subject_rules_review(RBACAuthorizer(store), {"namespace": "team-a"}, SA)
    assert {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]} in status["resourceRules"]
    assert {
        "verbs": ["get"],
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["cfg"],
    } in status["resourceRules"]
    assert {
        "verbs": ["get"],
        "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
    } in status["nonResourceRules"]
    assert status["incomplete"] is False
    assert status["evaluationError"] == 'role.rbac.authorization.k8s.io "nope" not found'
    with pytest.raises(StatusError) as ei:
        self_subject_rules_review(RBACAuthorizer(store), {}, SA)
    assert (ei.value.code, ei.value.message) == (400, "no namespace on request")


def test_self_subject_review_status() -> None:
    assert self_subject_review_status(SA) == {
        "userInfo": {"username": SA.name, "uid": "sa-uid-1", "groups": list(SA.groups)}
    }
    assert self_subject_review_status(ANONYMOUS) == {
        "userInfo": {"username": "system:anonymous", "groups": ["system:unauthenticated"]}
    }


# ------------------------------------------------------------------------------------------
# tokens
# ------------------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ServiceAccounts:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def put(self, namespace: str, name: str, uid: str, **meta: Any) -> None:
        self.items[(namespace, name)] = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace, "uid": uid, **meta},
        }

    def __call__(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.items.get((namespace, name))


def _segments(token: str) -> list[dict[str, Any]]:
    h, p, _ = token.split(".")
    return [json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))) for s in (h, p)]


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sas() -> ServiceAccounts:
    s = ServiceAccounts()
    s.put("team-a", "builder", "sa-uid-1")
    return s


@pytest.fixture
def authority(clock: Clock) -> TokenAuthority:
    return TokenAuthority(b"test-secret", clock=clock)


def test_service_account_token_round_trip(
    authority: TokenAuthority, sas: ServiceAccounts, clock: Clock
) -> None:
    token = authority.issue_service_account_token("team-a", "builder", "sa-uid-1")
    assert token.count(".") == 2
    header, claims = _segments(token)
    assert header["alg"] == "HS256"
    assert claims["sub"] == "system:serviceaccount:team-a:builder"
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert claims["aud"] == ["https://kubernetes.default.svc.cluster.local"]
    assert claims["kubernetes.io"] == {
        "namespace": "team-a",
        "serviceaccount": {"name": "builder", "uid": "sa-uid-1"},
    }
    assert claims["iat"] == claims["nbf"] == int(clock.now)
    assert claims["exp"] == int(clock.now) + 3600
    assert claims["jti"]
    user = authority.authenticate(token, sas)
    assert user == SA
    # stateless: a second authority with the same secret accepts it
    assert TokenAuthority(b"test-secret", clock=clock).authenticate(token, sas) == SA
    # every token is distinct
    assert authority.issue_service_account_token("team-a", "builder", "sa-uid-1") != token


def test_expired_token(authority: TokenAuthority, sas: ServiceAccounts, clock: Clock) -> None:
    token = authority.issue_service_account_token("team-a", "builder", "sa-uid-1", expiration_seconds=600)
    clock.now += 600 + 60  # within jwt.DefaultLeeway
    assert authority.authenticate(token, sas) == SA
    clock.now += 1
    assert authority.authenticate(token, sas) is None
    with pytest.raises(TokenInvalid, match="service account token has expired"):
        authority.verify(token, sas)


def test_token_not_yet_valid(authority: TokenAuthority, sas: ServiceAccounts, clock: Clock) -> None:
    token = authority.issue_service_account_token("team-a", "builder", "sa-uid-1")
    clock.now -= 61
    with pytest.raises(TokenInvalid, match="not valid yet"):
        authority.verify(token, sas)


def test_tampered_tokens_rejected(authority: TokenAuthority, sas: ServiceAccounts) -> None:
    sas.put("team-a", "root", "sa-uid-2")
    token = authority.issue_service_account_token("team-a", "builder", "sa-uid-1")
    h, p, s = token.split(".")
    _, claims = _segments(token)
    claims["kubernetes.io"]["serviceaccount"] = {"name": "root", "uid": "sa-uid-2"}
    claims["sub"] = "system:serviceaccount:team-a:root"
    assert authority.authenticate(f"{h}.{_b64(claims)}.{s}", sas) is None
    # flip one signature character
    flipped = s[:-2] + ("A" if s[-2] != "A" else "B") + s[-1]
    assert authority.authenticate(f"{h}.{p}.{flipped}", sas) is None
    # alg=none and dropped signatures
    assert authority.authenticate(f"{_b64({'alg': 'none'})}.{p}.", sas) is None
    assert authority.authenticate(f"{h}.{p}.", sas) is None
    assert authority.authenticate(f"{h}.{p}", sas) is None
    # padding / non-base64url characters
    assert authority.authenticate(f"{h}.{p}.{s}=", sas) is None
    assert authority.authenticate(f"{h}.{p}+.{s}", sas) is None
    # another server's token
    other = TokenAuthority(b"other-secret").issue_service_account_token("team-a", "builder", "sa-uid-1")
    assert authority.authenticate(other, sas) is None
    for junk in ("", "x", "a.b.c", "...", "Bearer", "ü.ü.ü", "kubesim-admin"):
        assert authority.authenticate(junk, sas) is None
    with pytest.raises(TokenInvalid, match="invalid signature"):
        authority.verify(f"{h}.{_b64(claims)}.{s}", sas)


def test_deleted_and_recreated_service_account(authority: TokenAuthority, sas: ServiceAccounts) -> None:
    token = authority.issue_service_account_token("team-a", "builder", "sa-uid-1")
    assert authority.authenticate(token, sas) == SA
    del sas.items[("team-a", "builder")]
    assert authority.authenticate(token, sas) is None
    sas.put("team-a", "builder", "sa-uid-NEW")
    with pytest.raises(
        TokenInvalid, match=r"service account UID \(sa-uid-NEW\) does not match claim \(sa-uid-1\)"
    ):
        authority.verify(token, sas)
    new_token = authority.issue_service_account_token("team-a", "builder", "sa-uid-NEW")
    assert authority.authenticate(new_token, sas) == UserInfo(SA.name, SA.groups, "sa-uid-NEW")


def test_service_account_being_deleted(authority: TokenAuthority, sas: ServiceAccounts, clock: Clock) -> None:
    token = authority.issue_service_account_token("team-a", "builder", "sa-uid-1")
    sas.put("team-a", "builder", "sa-uid-1", deletionTimestamp="2027-01-15T08:00:00Z")
    clock.now = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    assert authority.authenticate(token, sas) == SA  # deleted less than the leeway ago
    clock.now += 61
    assert authority.authenticate(token, sas) is None


def test_token_audiences(authority: TokenAuthority, sas: ServiceAccounts) -> None:
    vault = authority.issue_service_account_token("team-a", "builder", "sa-uid-1", audiences=["vault"])
    assert authority.authenticate(vault, sas) is None
    both = authority.issue_service_account_token(
        "team-a", "builder", "sa-uid-1", audiences=["vault", authority.issuer]
    )
    assert authority.authenticate(both, sas) == SA
    other_issuer = TokenAuthority(b"test-secret", issuer="https://elsewhere").issue_service_account_token(
        "team-a", "builder", "sa-uid-1"
    )
    assert authority.authenticate(other_issuer, sas) is None


def test_issue_rejects_bad_arguments(authority: TokenAuthority) -> None:
    with pytest.raises(ValueError, match="required"):
        authority.issue_service_account_token("", "builder", "uid")
    with pytest.raises(ValueError, match="positive"):
        authority.issue_service_account_token("ns", "builder", "uid", expiration_seconds=0)
    with pytest.raises(ValueError, match="secret"):
        TokenAuthority(b"")


def test_admin_token(authority: TokenAuthority, sas: ServiceAccounts) -> None:
    token = authority.admin_token()
    assert token == authority.admin_token() == TokenAuthority(b"test-secret").admin_token()
    user = authority.authenticate(token, sas)
    assert user == UserInfo("kubesim-admin", ("system:masters", "system:authenticated"))
    assert TokenAuthority(b"another").authenticate(token, sas) is None
    assert authority.authenticate(token + "x", sas) is None
    assert token != TokenAuthority(b"another").admin_token()


def test_claims_requires_our_signature(authority: TokenAuthority) -> None:
    token = authority.issue_service_account_token("team-a", "builder", "sa-uid-1", expiration_seconds=7200)
    assert authority.claims(token)["exp"] - authority.claims(token)["iat"] == 7200
    with pytest.raises(TokenInvalid):
        TokenAuthority(b"x").claims(token)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer tok", "tok"),
        ("  BEARER tok  ", "tok"),
        ("Bearer tok extra", "tok"),
        (None, None),
        ("", None),
        ("Basic dXNlcjpwdw==", None),
        ("Bearer", None),
        ("Bearer  tok", None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


# ------------------------------------------------------------------------------------------
# Impersonation (endpoints/filters/impersonation.go)
# ------------------------------------------------------------------------------------------


def test_impersonation_requests_in_upstream_order() -> None:
    reqs = impersonation_requests(
        [
            ("Impersonate-Group", "devs"),
            ("Impersonate-User", "system:serviceaccount:team-a:builder"),
            ("impersonate-extra-Scopes", "view"),
            ("Impersonate-Extra-acme.com%2Fproject", "p1"),
            ("Impersonate-Group", "qa"),
            ("Impersonate-Uid", "u-1"),
            ("Authorization", "Bearer x"),
        ]
    )
    assert reqs == [
        ImpersonationRequest("ServiceAccount", "builder", namespace="team-a"),
        ImpersonationRequest("Group", "devs"),
        ImpersonationRequest("Group", "qa"),
        ImpersonationRequest(
            "UserExtra", "view", api_version="authentication.k8s.io/v1", field_path="scopes"
        ),
        ImpersonationRequest(
            "UserExtra", "p1", api_version="authentication.k8s.io/v1", field_path="acme.com/project"
        ),
        ImpersonationRequest("UID", "u-1", api_version="authentication.k8s.io/v1"),
    ]
    assert impersonation_requests([("Accept", "application/json")]) == []
    # a username that does not split into valid namespace and name is an ordinary user
    assert impersonation_requests([("Impersonate-User", "system:serviceaccount:Bad:x")]) == [
        ImpersonationRequest("User", "system:serviceaccount:Bad:x")
    ]


def test_impersonating_groups_without_a_user_is_an_error() -> None:
    with pytest.raises(ImpersonationError) as err:
        impersonation_requests([("Impersonate-Group", "devs")])
    assert str(err.value) == "requested [{Group  devs    }] without impersonating a user"


def test_impersonation_attributes() -> None:
    sa, group, extra, uid = impersonation_requests(
        [
            ("Impersonate-User", "system:serviceaccount:team-a:builder"),
            ("Impersonate-Group", "devs"),
            ("Impersonate-Extra-Scopes", "view"),
            ("Impersonate-Uid", "u-1"),
        ]
    )
    user = ImpersonationRequest("User", "alice")
    assert impersonation_attributes(BOB, sa) == Attributes(
        BOB, "impersonate", "team-a", "", "", "serviceaccounts", "", "builder"
    )
    assert forbidden_error(impersonation_attributes(BOB, user)).message == (
        'users "alice" is forbidden: User "bob" cannot impersonate resource "users" in API group "" at the cluster scope'
    )
    assert forbidden_error(impersonation_attributes(BOB, sa)).message == (
        'serviceaccounts "builder" is forbidden: User "bob" cannot impersonate resource "serviceaccounts" '
        'in API group "" in the namespace "team-a"'
    )
    assert forbidden_error(impersonation_attributes(BOB, group)).message == (
        'groups "devs" is forbidden: User "bob" cannot impersonate resource "groups" in API group "" at the cluster scope'
    )
    assert forbidden_error(impersonation_attributes(BOB, extra)).message == (
        'userextras.authentication.k8s.io "view" is forbidden: User "bob" cannot impersonate resource '
        '"userextras/scopes" in API group "authentication.k8s.io" at the cluster scope'
    )
    assert forbidden_error(impersonation_attributes(BOB, uid)).message == (
        'uids.authentication.k8s.io "u-1" is forbidden: User "bob" cannot impersonate resource "uids" '
        'in API group "authentication.k8s.io" at the cluster scope'
    )


def test_impersonated_user_groups() -> None:
    def user(headers: list[tuple[str, str]]) -> UserInfo:
        groups_specified = any(k == "Impersonate-Group" for k, _ in headers)
        return impersonated_user(impersonation_requests(headers), groups_specified)

    assert user([("Impersonate-User", "alice")]) == UserInfo("alice", ("system:authenticated",))
    assert user([("Impersonate-User", "system:serviceaccount:ns:sa")]) == UserInfo(
        "system:serviceaccount:ns:sa",
        ("system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"),
    )
    # explicit groups replace a service account's fixed groups
    assert user([("Impersonate-User", "system:serviceaccount:ns:sa"), ("Impersonate-Group", "g")]).groups == (
        "g",
        "system:authenticated",
    )
    assert user([("Impersonate-User", "alice"), ("Impersonate-Group", "system:unauthenticated")]).groups == (
        "system:unauthenticated",
    )
    assert user([("Impersonate-User", "system:anonymous")]).groups == ("system:unauthenticated",)
    extra = user(
        [("Impersonate-User", "alice"), ("Impersonate-Extra-Scopes", "a"), ("Impersonate-Extra-Scopes", "b")]
    )
    assert extra.extra == (("scopes", ("a", "b")),)
    assert self_subject_review_status(extra)["userInfo"]["extra"] == {"scopes": ["a", "b"]}
