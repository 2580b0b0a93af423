"""The install manifests: least-privilege RBAC that matches the code, and a Deployment that passes
the ``restricted`` Pod Security profile.

Both installs are rendered with the real ``kubectl kustomize``:

- ``manifests/`` (cluster-wide) and ``manifests/overlays/namespaced/`` (Roles in the served
  namespaces only);
- every rule must be in ``ALLOWED`` below (the documented allow-list, one reason per verb), and
  ``ALLOWED`` must be exactly what the code calls (read from the source, AST-level) plus what
  Kopf needs (``KOPF``): a verb the code stops using fails here, and so does a call the RBAC
  does not allow;
- docs/usage.md's RBAC table lists the same verbs;
- the Deployment's pod template passes the ``restricted`` profile, as kubesim's PodSecurity
  admission (from k8s.io/pod-security-admission, ``policy/check_*.go``) evaluates it.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim import podsecurity
from kubesim.testing import kubectl_binary

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "clusterresync"
OPERATOR_NS = "clusterresync-system"
SA = ("clusterresync-system", "clusterresync-operator")
LEASE_NAME = "clusterresync-operator"

# (API group, resource) -> {verb: why}. The documented allow-list: docs/usage.md has the same.
ALLOWED: dict[tuple[str, str], dict[str, str]] = {
    ("clusterresync.io", "clusterresyncs"): {
        "get": "a live read of a resync: after gaining leadership, a conflict, and on deletion",
        "list": "the watch cache of resyncs (the others of a namespace: one per target); Kopf's watch",
        "watch": "the watch cache; Kopf's watch",
        "patch": "Kopf's finalizer and bookkeeping annotations",
        "delete": "a finished resync whose spec.ttlSecondsAfterFinished is up, or beyond a policy's history "
        "limits (uid precondition)",
        "create": "a ResyncPolicy's remediation",
    },
    ("clusterresync.io", "resyncpolicies"): {
        "get": "a live read of a policy: after gaining leadership, or a conflict",
        "list": "the watch cache of policies; Kopf's watch",
        "watch": "the watch cache; Kopf's watch",
        "patch": "Kopf's finalizer (its daemons need one)",
    },
    ("clusterresync.io", "resyncpolicies/status"): {"patch": "the policy's probe results and decisions"},
    ("clusterresync.io", "clusterresyncs/status"): {"patch": "the status is the operator's memory"},
    ("", "events"): {
        "create": "Events with named reasons",
        "list": "the watch cache of ProvisioningFailed Events of claims (staging claims' errors)",
        "watch": "the same watch cache",
    },
    ("apps", "statefulsets"): {
        "get": "the target, read live right before a swap; never modified",
        "list": "the watch cache of StatefulSets (the target)",
        "watch": "the same watch cache",
    },
    ("", "pods"): {
        "list": "the watch cache of pods (the target's, and who uses each claim); live before a swap",
        "watch": "the same watch cache",
        "delete": "a replica's pod, for the swap (uid precondition)",
    },
    ("", "pods/exec"): {
        "get": "the exec WebSocket is a GET",
        "create": "the API server also authorizes a WebSocket exec as create",
    },
    ("", "persistentvolumeclaims"): {
        "list": "the watch cache of claims; live before a swap",
        "watch": "the same watch cache",
        "create": "staging claims, and a replica claim the StatefulSet controller did not recreate",
        "delete": "staging claims, and a replica's claims for the swap (uid precondition)",
    },
    ("", "persistentvolumes"): {
        "get": "the volumes a swap depends on, read live right before it",
        "list": "the watch cache of volumes",
        "watch": "the same watch cache",
        "patch": "reclaim policy, claimRef (pre-binding), labels and an annotation",
    },
    ("", "nodes"): {
        "list": "the watch cache of nodes: the hostname label that pins a staging Job",
        "watch": "the same watch cache",
    },
    ("", "namespaces"): {"get": "whether the namespace is being deleted (deletion mode)"},
    ("storage.k8s.io", "storageclasses"): {
        "list": "the watch cache of classes (provisioner, binding mode)",
        "watch": "the same watch cache",
    },
    ("storage.k8s.io", "csidrivers"): {
        "list": "the watch cache of drivers: whether a driver can clone",
        "watch": "the same watch cache",
    },
    ("snapshot.storage.k8s.io", "volumesnapshotclasses"): {
        "list": "the watch cache of snapshot classes: choose the class",
        "watch": "the same watch cache",
    },
    ("snapshot.storage.k8s.io", "volumesnapshots"): {
        "list": "the watch cache of this operator's snapshots (label selector)",
        "watch": "the same watch cache",
        "create": "snapshots of the primary's volumes",
        "delete": "cleanup",
    },
    ("batch", "jobs"): {
        "list": "the watch cache of this operator's staging Jobs (label selector)",
        "watch": "the same watch cache",
        "create": "staging Jobs (restore hook, WaitForFirstConsumer)",
        "delete": "cleanup",
    },
    ("coordination.k8s.io", "leases"): {
        "get": "leader election: read the Lease",
        "create": "leader election: create the Lease the first time",
        "update": "leader election: renew or take over the Lease (PUT with its resourceVersion)",
    },
}

# Calls the install does not grant on purpose: the user grants them, narrowly, where they use
# the feature (docs/probes.md#credentials: a Role with get on the one Secret, by resourceNames).
OPT_IN: dict[tuple[str, str, str], str] = {
    ("", "secrets", "get"): "probe.passwordSecretRef: the password handed to the probe on stdin; "
    "notify.webhook.urlSecretRef: the webhook URL",
}

# What Kopf itself calls, with peering and scanning disabled (handlers.configure).
KOPF: dict[tuple[str, str], set[str]] = {
    ("clusterresync.io", "clusterresyncs"): {"list", "watch", "patch"},
    ("clusterresync.io", "resyncpolicies"): {"list", "watch", "patch"},
}

# Cluster-scoped resources that can only be granted cluster-wide. (Namespaces are cluster-scoped
# too, but RBAC evaluates a request for namespace X as in namespace X: a Role there grants it.)
CLUSTER_SCOPED = {
    "persistentvolumes",
    "nodes",
    "storageclasses",
    "csidrivers",
    "volumesnapshotclasses",
}
WILDCARD = "*"


# -- rendering -------------------------------------------------------------------------------------
@cache
def render(path: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [kubectl_binary(), "kustomize", str(ROOT / path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def deployment(path: str) -> dict[str, Any]:
    (dep,) = of_kind(render(path), "Deployment")
    return dep


Grant = tuple[str, str, str, str, tuple[str, ...]]


def grants_of(
    docs: list[dict[str, Any]] | tuple[dict[str, Any], ...], sa: tuple[str, str] = SA
) -> set[Grant]:
    """(scope, group, resource, verb, resourceNames) granted to ServiceAccount ``sa`` by rendered
    manifests (kustomize's or the Helm chart's); scope is "*" for cluster-wide or the namespace of
    a RoleBinding. Every binding must name a role the install defines."""
    roles = {("ClusterRole", d["metadata"]["name"], ""): d for d in docs if d["kind"] == "ClusterRole"}
    roles |= {
        ("Role", d["metadata"]["name"], d["metadata"].get("namespace", "")): d
        for d in docs
        if d["kind"] == "Role"
    }
    out: set[Grant] = set()
    for b in docs:
        if b["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if not any(
            s.get("kind") == "ServiceAccount" and (s.get("namespace"), s.get("name")) == sa
            for s in b.get("subjects") or []
        ):
            continue
        scope = WILDCARD if b["kind"] == "ClusterRoleBinding" else b["metadata"]["namespace"]
        ref = b["roleRef"]
        key = (ref["kind"], ref["name"], "" if ref["kind"] == "ClusterRole" else scope)
        assert key in roles, f"{b['metadata']['name']} binds {key}, which the install does not define"
        for rule in roles[key]["rules"]:
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    for v in rule["verbs"]:
                        out.add((scope, g, r, v, tuple(rule.get("resourceNames") or ())))
    return out


def grants(path: str) -> set[Grant]:
    """What ``kubectl kustomize path`` grants the operator's ServiceAccount (``grants_of``)."""
    return grants_of(render(path))


INSTALLS = ["manifests", "manifests/overlays/namespaced"]


# -- what the code calls ---------------------------------------------------------------------------
def group_of(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


class Calls:
    """The (group, resource, verb) the operator's code calls, read from its source.

    Recognised: ``Source(api, plural)`` (a watch cache: list and watch), ``kube.list_objects(api, plural)``, ``kube.get/create/patch/delete(ref)``
    (also through ``asyncio.to_thread(kube.get, ref)``), the planner's ``Create/Patch/Delete(ref)``
    actions, ``kube.patch_status(ref)``, ``kube.exec(...)`` and
    ``kube.request(METHOD, path_for(api, plural, ...))``, where a ref is a ``Ref(api, kind,
    plural, ...)`` literal or a helper returning one (``pvc_ref``, ``resync_ref``, ...) and
    names are resolved in their module (the planner's package included). ``kube.py`` itself (the generic adapter) is not read.
    """

    METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}

    def __init__(self) -> None:
        self.found: set[tuple[str, str, str]] = set()
        self.modules = {
            mod: (ast.parse(p.read_text()), importlib.import_module(f"clusterresync.{mod}"))
            for p in sorted(PACKAGE.rglob("*.py"))
            if p.stem not in ("kube", "__init__", "__main__")
            # The kubectl plugin runs as the person who types `kubectl resync`, with their RBAC,
            # never as the operator: its calls are not the operator's.
            and p.relative_to(PACKAGE).parts[0] != "plugin"
            for mod in [".".join(p.relative_to(PACKAGE).with_suffix("").parts)]
        }
        self.ref_helpers: dict[str, tuple[ast.Call, Any]] = {}
        for tree, mod in self.modules.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef):
                    for sub in ast.walk(node):
                        if isinstance(sub, ast.Return) and self._is_ref_literal(sub.value):
                            assert isinstance(sub.value, ast.Call)
                            self.ref_helpers[node.name] = (sub.value, mod)
        for tree, mod in self.modules.values():
            self.paths = self._attribute_paths(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    self._call(node, mod)

    @staticmethod
    def _name(f: ast.expr) -> str:
        return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""

    def _is_ref_literal(self, e: ast.expr | None) -> bool:
        return isinstance(e, ast.Call) and self._name(e.func) == "Ref"

    def _value(self, e: ast.expr, mod: Any) -> Any:
        if isinstance(e, ast.Constant):
            return e.value
        if isinstance(e, ast.Name) and hasattr(mod, e.id):
            return getattr(mod, e.id)
        return None

    def _ref(self, e: ast.expr, mod: Any) -> tuple[str, str] | None:
        """(group, plural) of a ref expression, if it can be told statically."""
        if not isinstance(e, ast.Call):
            return None
        name = self._name(e.func)
        if name == "Ref" and len(e.args) >= 3:
            api, plural = self._value(e.args[0], mod), self._value(e.args[2], mod)
            if isinstance(api, str) and isinstance(plural, str):
                return group_of(api), plural
        if name in self.ref_helpers:
            literal, helper_mod = self.ref_helpers[name]
            return self._ref(literal, helper_mod)
        return None

    def _attribute_paths(self, tree: ast.AST) -> dict[str, ast.Call]:
        """``self.X = path_for(...)`` assignments, to resolve ``request(M, self.X)``."""
        out = {}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and self._name(node.value.func) == "path_for"
            ):
                for t in node.targets:
                    if isinstance(t, ast.Attribute):
                        out[t.attr] = node.value
        return out

    def _path(self, e: ast.expr) -> ast.Call | None:
        if isinstance(e, ast.Call) and self._name(e.func) == "path_for":
            return e
        if isinstance(e, ast.Attribute):
            return self.paths.get(e.attr)
        return None

    def _call(self, node: ast.Call, mod: Any) -> None:
        f = node.func
        name = self._name(f)
        args = node.args
        if name == "to_thread" and args and isinstance(args[0], ast.Attribute):
            self._call(ast.Call(func=args[0], args=args[1:], keywords=[]), mod)
            return
        if name == "Source" and isinstance(f, ast.Name) and len(args) >= 2:
            # A watch cache (cache.SOURCES): it lists, then watches.
            api, plural = self._value(args[0], mod), self._value(args[1], mod)
            if isinstance(api, str) and isinstance(plural, str):
                self.found |= {(group_of(api), plural, "list"), (group_of(api), plural, "watch")}
        elif name == "list_objects" and len(args) >= 2:
            api, plural = self._value(args[0], mod), self._value(args[1], mod)
            if isinstance(api, str) and isinstance(plural, str):
                self.found.add((group_of(api), plural, "list"))
        elif isinstance(f, ast.Attribute) and name in ("get", "create", "patch", "delete") and args:
            ref = self._ref(args[0], mod)
            if ref:
                self.found.add((*ref, name))
        elif isinstance(f, ast.Name) and name in ("Create", "Patch", "Delete") and args:
            ref = self._ref(args[0], mod)
            if ref:
                self.found.add((*ref, name.lower()))
        elif name == "patch_status":
            ref = self._ref(args[0], mod) if args else None
            group, plural = ref or ("clusterresync.io", "clusterresyncs")
            self.found.add((group, f"{plural}/status", "patch"))
        elif name == "exec" and isinstance(f, ast.Attribute) and len(args) >= 4:
            self.found |= {("", "pods/exec", "get"), ("", "pods/exec", "create")}
        elif name == "request" and len(args) >= 2:
            method, path = self._value(args[0], mod), self._path(args[1])
            if isinstance(method, str) and path is not None and len(path.args) >= 2:
                api, plural = self._value(path.args[0], mod), self._value(path.args[1], mod)
                named = len(path.args) >= 4
                verb = ("get" if named else "list") if method == "GET" else self.METHOD_VERBS.get(method)
                if isinstance(api, str) and isinstance(plural, str) and verb:
                    self.found.add((group_of(api), plural, verb))


@cache
def code_calls() -> frozenset[tuple[str, str, str]]:
    return frozenset(Calls().found)


def expected() -> set[tuple[str, str, str]]:
    return (set(code_calls()) - set(OPT_IN)) | {(g, r, v) for (g, r), vs in KOPF.items() for v in vs}


def test_opt_in_calls_are_made_and_not_granted() -> None:
    assert set(OPT_IN) <= code_calls(), "an opt-in call the code no longer makes"
    assert not set(OPT_IN) & allowed()


def allowed() -> set[tuple[str, str, str]]:
    return {(g, r, v) for (g, r), vs in ALLOWED.items() for v in vs}


# -- RBAC tests ------------------------------------------------------------------------------------
def test_the_code_reader_finds_the_known_calls() -> None:
    calls = code_calls()
    for known in [
        ("", "pods", "list"),
        ("", "pods", "delete"),
        ("", "persistentvolumes", "patch"),
        ("apps", "statefulsets", "get"),
        ("clusterresync.io", "clusterresyncs", "get"),
        ("clusterresync.io", "clusterresyncs/status", "patch"),
        ("", "pods/exec", "create"),
        ("", "events", "create"),
        ("coordination.k8s.io", "leases", "update"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "get"),
    ]:
        assert known in calls, f"the code reader missed {known}: found {sorted(calls)}"


def test_the_allow_list_is_exactly_what_the_code_and_kopf_call() -> None:
    missing = expected() - allowed()
    unused = allowed() - expected()
    assert not missing, f"the code calls verbs the allow-list (and so the RBAC) lacks: {sorted(missing)}"
    assert not unused, f"allowed but never called (drop them from the RBAC and the docs): {sorted(unused)}"


@pytest.mark.kubectl
@pytest.mark.parametrize("install", INSTALLS)
def test_no_wildcards(install: str) -> None:
    for d in render(install):
        if d["kind"] not in ("ClusterRole", "Role"):
            continue
        for rule in d.get("rules") or []:
            for key in ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"):
                assert not any(WILDCARD in str(x) for x in rule.get(key) or []), (d["metadata"]["name"], rule)


@pytest.mark.kubectl
@pytest.mark.parametrize("install", INSTALLS)
def test_every_grant_is_in_the_allow_list_and_every_need_is_granted(install: str) -> None:
    granted = {(g, r, v) for (_s, g, r, v, _n) in grants(install)}
    assert granted <= allowed(), f"not in the allow-list: {sorted(granted - allowed())}"
    assert allowed() <= granted, f"needed but not granted: {sorted(allowed() - granted)}"


@pytest.mark.kubectl
def test_cluster_wide_install_scopes() -> None:
    for scope, _g, r, v, names in grants("manifests"):
        if r == "leases":
            assert scope == OPERATOR_NS, "leader election is granted in the operator's namespace only"
            assert names == ((LEASE_NAME,) if v in ("get", "update") else ()), (v, names)
        else:
            assert scope == WILDCARD and names == ()


@pytest.mark.kubectl
def test_namespaced_install_grants_namespaced_resources_only_in_served_namespaces() -> None:
    g = grants("manifests/overlays/namespaced")
    args = deployment("manifests/overlays/namespaced")["spec"]["template"]["spec"]["containers"][0]["args"]
    served = {a.split("=", 1)[1] for a in args if a.startswith("--namespace=")}
    assert served and "--all-namespaces" not in args
    role_namespaces = set()
    for scope, _grp, r, _v, _names in g:
        base = r.split("/")[0]
        if r == "leases":
            assert scope == OPERATOR_NS
        elif base in CLUSTER_SCOPED:
            assert scope == WILDCARD, f"{r} is cluster-scoped: it can only be granted cluster-wide"
        else:
            assert scope != WILDCARD, f"{r} is granted cluster-wide in the namespaced install"
            role_namespaces.add(scope)
    assert role_namespaces == served, "a Role for every served namespace, and only for those"
    # the same namespaced rules as the cluster-wide install, just scoped
    per_ns = {(grp, r, v) for (s, grp, r, v, _n) in g if s in served}
    cluster_wide = {(grp, r, v) for (s, grp, r, v, _n) in grants("manifests") if s == WILDCARD}
    assert per_ns == {x for x in cluster_wide if x[1].split("/")[0] not in CLUSTER_SCOPED}


def usage_rbac_table() -> dict[str, set[str]]:
    """docs/usage.md's RBAC table: resource -> verbs (first two columns, backquoted names)."""
    text = (ROOT / "docs" / "usage.md").read_text()
    section = text[text.index("## RBAC") :]
    section = section[: section.index("\n## ", 4)]
    out: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        verbs = {v.strip("* ") for v in cells[1].split(",")}
        for res in re.findall(r"`([^`]+)`", cells[0]):
            out.setdefault(res, set()).update(verbs)
    return out


def test_the_documented_table_matches_the_allow_list() -> None:
    table = usage_rbac_table()
    want: dict[str, set[str]] = {}
    for (_g, r), verbs in ALLOWED.items():
        want.setdefault(r, set()).update(verbs)
    assert table == want


# -- the restricted Pod Security profile -------------------------------------------------------------
# One implementation of the profile: kubesim's PodSecurity admission (kubesim/podsecurity.py,
# from upstream's pod-security-admission policy checks, tested in tests/kubesim/test_podsecurity.py).
@pytest.mark.kubectl
@pytest.mark.parametrize("install", INSTALLS)
def test_the_deployment_passes_the_restricted_profile(install: str) -> None:
    tpl = deployment(install)["spec"]["template"]
    verdict = podsecurity.evaluate(
        podsecurity.LevelVersion("restricted"), tpl.get("metadata") or {}, tpl["spec"]
    )
    assert verdict.allowed, verdict.forbidden_detail()


@pytest.mark.kubectl
def test_the_operators_namespace_enforces_the_restricted_profile() -> None:
    (ns,) = of_kind(render("manifests"), "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.kubectl
@pytest.mark.parametrize("install", INSTALLS)
def test_the_deployment_runs_highly_available_with_the_lease(install: str) -> None:
    dep = deployment(install)
    spec = dep["spec"]
    (c,) = spec["template"]["spec"]["containers"]
    assert "--standalone" not in (c.get("args") or []) + (c.get("command") or [])
    assert any(a.startswith("--liveness=http://0.0.0.0:8080/") for a in c["args"])
    assert c["readinessProbe"]["httpGet"]["port"] == c["livenessProbe"]["httpGet"]["port"] == "health"
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in c["env"]}
    assert env["POD_NAME"] == "metadata.name" and env["POD_NAMESPACE"] == "metadata.namespace"
    assert spec["replicas"] >= 2 and spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
