"""The Helm chart (charts/clusterresync/): linted and rendered by Helm's own engine (Helm 4's Go
SDK through ``helm-python-sdk``, no helm binary), for the default values and each documented
option, and held to what ``manifests/`` installs:

- the RBAC it grants equals the kustomize installs' grants (rendered with the real
  ``kubectl kustomize``), rule for rule, in the cluster-wide and the namespaced mode;
- its Deployment runs the operator as manifests/ does (args, probes, env, security context,
  rollout), and its pods pass the ``restricted`` Pod Security profile;
- its crds/ are byte for byte the repository's crds/; appVersion is the project's version;
- values.schema.json refuses wrong types and unknown keys; docs/helm.md documents every value.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from kubesim import podsecurity

from .test_manifests import CLUSTER_SCOPED, OPERATOR_NS, WILDCARD, Grant, allowed, grants_of, of_kind, render

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "clusterresync"
RELEASE = "clusterresync"  # the release name whose objects are named as manifests/ names them
SA_NAME = "clusterresync-operator"


# -- rendering -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as c:
        yield c


def rendered(
    chart: helm.Chart, values: dict[str, Any] | None = None, name: str = RELEASE, namespace: str = OPERATOR_NS
) -> list[dict[str, Any]]:
    """The chart's objects as Helm renders them (NOTES.txt left out)."""
    out = chart.render(values=values, name=name, namespace=namespace, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def notes(chart: helm.Chart, values: dict[str, Any] | None = None) -> str:
    out = chart.render(values=values, name=RELEASE, namespace=OPERATOR_NS, is_install=True)
    return next(text for path, text in out.items() if path.endswith("NOTES.txt"))


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (d,) = [d for d in docs if d["kind"] == kind]
    return d


@cache
def kustomize_grants(path: str, served: tuple[str, ...] = ()) -> frozenset[Grant]:
    """What ``kubectl kustomize <path>`` grants the operator; for the namespaced overlay, its
    per-namespace Role (written for ``demo``) copied into each of ``served``, as its comments say."""
    docs = render(path)
    g = grants_of(docs, (OPERATOR_NS, SA_NAME))
    if not served:
        return frozenset(g)
    demo = {x for x in g if x[0] == "demo"}
    assert demo, "the overlay's example namespace changed: adapt this test"
    return frozenset((g - demo) | {(ns, *x[1:]) for x in demo for ns in served})


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = deployment(docs)["spec"]["template"]["spec"]["containers"]
    return c


# -- lint, metadata, CRDs ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "values",
    [
        None,
        {"watchNamespaces": ["team-a", "team-b"]},
        {"metrics": {"serviceMonitor": {"enabled": True}}},
    ],
    ids=["defaults", "namespaced", "servicemonitor"],
)
def test_helm_lint_passes_strictly(values: dict[str, Any] | None) -> None:
    report = helm.lint(CHART, values, strict=True, namespace=OPERATOR_NS)
    assert report["errors"] == [], report
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors
    assert problems == [], problems


def test_app_version_is_the_project_version(chart: helm.Chart) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    meta = chart.metadata
    assert meta["apiVersion"] == "v2"
    assert meta["appVersion"] == project
    image = container(rendered(chart))["image"]
    assert image == f"ghcr.io/clusterresync/clusterresync-operator:{project}"
    # and manifests/ runs the same image
    (dep,) = of_kind(render("manifests"), "Deployment")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == image


def test_the_charts_crds_are_the_repositorys_crds(chart: helm.Chart) -> None:
    """crds/ is generated (make manifests); the chart carries a copy (a symlink out of the chart
    breaks tools that copy the chart directory alone). Refresh it with
    ``cp crds/clusterresync.io_*.yaml charts/clusterresync/crds/``."""
    ours = {p.name: p.read_bytes() for p in (CHART / "crds").iterdir()}
    theirs = {
        p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml") if p.name != "kustomization.yaml"
    }
    assert sorted(ours) == sorted(theirs), "the chart's crds/ lists other files than crds/"
    for name, data in theirs.items():
        assert ours[name] == data, f"charts/clusterresync/crds/{name} differs from crds/{name}: copy it again"
    # Helm sees both as CRDs (crds/ is installed before the templates, once).
    kinds = {yaml.safe_load(c["data"])["spec"]["names"]["kind"] for c in chart.crds}
    assert kinds == {"ClusterResync", "ResyncPolicy"}


def test_the_packaged_chart_carries_crds_and_schema(tmp_path: Path) -> None:
    archive = helm.package(CHART, destination=tmp_path)
    with helm.Chart.load(archive) as packaged:
        assert len(packaged.crds) == 2
        assert packaged.schema is not None and packaged.schema["additionalProperties"] is False
        assert packaged.values["replicaCount"] == 2


# -- RBAC: exactly what manifests/ grants ------------------------------------------------------------
def test_cluster_wide_rbac_is_exactly_the_kustomize_install(chart: helm.Chart) -> None:
    got = grants_of(rendered(chart), (OPERATOR_NS, SA_NAME))
    want = kustomize_grants("manifests")
    assert got == want, f"only in the chart: {sorted(got - want)}; only in manifests/: {sorted(want - got)}"


def test_namespaced_rbac_is_exactly_the_overlay_in_each_listed_namespace(chart: helm.Chart) -> None:
    docs = rendered(chart, {"watchNamespaces": ["team-a", "team-b"]})
    got = grants_of(docs, (OPERATOR_NS, SA_NAME))
    want = kustomize_grants("manifests/overlays/namespaced", ("team-a", "team-b"))
    assert got == want, f"only in the chart: {sorted(got - want)}; only in the overlay: {sorted(want - got)}"
    # No cluster-wide grant of a namespaced resource, and a Role in each listed namespace only.
    for scope, _g, r, _v, _n in got:
        if r.split("/")[0] not in CLUSTER_SCOPED:
            assert scope != WILDCARD, f"{r} is granted cluster-wide in the namespaced mode"
    assert {d["metadata"]["namespace"] for d in docs if d["kind"] == "Role"} == {
        "team-a",
        "team-b",
        OPERATOR_NS,
    }
    assert not [d for d in docs if d["kind"] == "ClusterRoleBinding" and d["metadata"]["name"] == SA_NAME]
    # ... and the operator serves exactly those namespaces.
    args = container(docs)["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]
    assert "--all-namespaces" not in args
    (overlay,) = of_kind(render("manifests/overlays/namespaced"), "Deployment")
    overlay_args = overlay["spec"]["template"]["spec"]["containers"][0]["args"]
    assert overlay_args[0] == "--namespace=demo"
    assert args == [
        "--namespace=team-a",
        "--namespace=team-b",
        *overlay_args[1:],
        "--lease-name=clusterresync-operator",
    ]


def test_every_grant_is_in_the_allow_list_and_none_is_a_wildcard(chart: helm.Chart) -> None:
    for values in (None, {"watchNamespaces": ["team-a"]}):
        docs = rendered(chart, values)
        granted = {(g, r, v) for (_s, g, r, v, _n) in grants_of(docs, (OPERATOR_NS, SA_NAME))}
        assert granted == allowed()
        for d in docs:
            for rule in d.get("rules") or []:
                for key in ("verbs", "apiGroups", "resources", "resourceNames"):
                    assert WILDCARD not in str(rule.get(key) or []), (d["metadata"]["name"], rule)


def test_another_release_name_and_namespace_grants_the_same_to_its_own_account(chart: helm.Chart) -> None:
    """Release "crs" in "ops": objects named crs-operator..., the same rules for ops/crs-operator,
    and the Lease the operator is told to use (--lease-name) is the one its RBAC names."""
    docs = rendered(chart, name="crs", namespace="ops")
    got = grants_of(docs, ("ops", "crs-operator"))
    want = {
        ("ops" if s == OPERATOR_NS else s, g, r, v, tuple("crs-operator" for _ in n))
        for (s, g, r, v, n) in kustomize_grants("manifests")
    }
    assert got == want
    c = container(docs)
    assert "--lease-name=crs-operator" in c["args"]
    assert deployment(docs)["spec"]["template"]["spec"]["serviceAccountName"] == "crs-operator"
    assert grants_of(docs, (OPERATOR_NS, SA_NAME)) == set()


# -- the Deployment --------------------------------------------------------------------------------
def test_the_default_deployment_runs_the_operator_as_manifests_does(chart: helm.Chart) -> None:
    ours = deployment(rendered(chart))
    (theirs,) = of_kind(render("manifests"), "Deployment")
    assert ours["metadata"]["name"] == theirs["metadata"]["name"]
    assert ours["metadata"]["namespace"] == OPERATOR_NS
    assert ours["spec"]["replicas"] == theirs["spec"]["replicas"] == 2
    assert ours["spec"]["strategy"] == theirs["spec"]["strategy"]
    pod, their_pod = ours["spec"]["template"]["spec"], theirs["spec"]["template"]["spec"]
    for key in ("securityContext", "terminationGracePeriodSeconds", "serviceAccountName"):
        assert pod[key] == their_pod[key], key
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert anti["podAffinityTerm"]["labelSelector"]["matchLabels"] == ours["spec"]["selector"]["matchLabels"]
    (c,), (tc,) = pod["containers"], their_pod["containers"]
    for key in ("securityContext", "readinessProbe", "livenessProbe", "resources", "env", "ports"):
        assert c[key] == tc[key], key
    # The same arguments, plus the Lease's name said explicitly (the default, for this release name).
    assert c["args"] == [*tc["args"], "--lease-name=clusterresync-operator"]
    assert "--standalone" not in c["args"]


def test_the_security_context_fields(chart: helm.Chart) -> None:
    docs = rendered(chart)
    pod = deployment(docs)["spec"]["template"]["spec"]
    sc = container(docs)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # A read-only root and no writable volume at all: the operator writes no file (in-cluster it
    # authenticates with the mounted token and CA; Python writes no bytecode: Dockerfile).
    assert "volumeMounts" not in container(docs) and "volumes" not in pod


@pytest.mark.parametrize(
    "values",
    [None, {"watchNamespaces": ["team-a", "team-b"]}, {"replicaCount": 3, "metrics": {"enabled": False}}],
    ids=["defaults", "namespaced", "no-metrics"],
)
def test_the_pods_pass_the_restricted_profile(chart: helm.Chart, values: dict[str, Any] | None) -> None:
    tpl = deployment(rendered(chart, values))["spec"]["template"]
    verdict = podsecurity.evaluate(
        podsecurity.LevelVersion("restricted"), tpl.get("metadata") or {}, tpl["spec"]
    )
    assert verdict.allowed, verdict.forbidden_detail()


def test_health_probes_use_kopfs_endpoint_on_the_configured_port(chart: helm.Chart) -> None:
    c = container(rendered(chart, {"healthPort": 9808}))
    assert "--liveness=http://0.0.0.0:9808/healthz" in c["args"]
    assert {"name": "health", "containerPort": 9808} in c["ports"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_replica_count_and_leader_election(chart: helm.Chart) -> None:
    for n in (1, 2, 3):
        docs = rendered(chart, {"replicaCount": n})
        assert deployment(docs)["spec"]["replicas"] == n
        c = container(docs)
        env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in c["env"]}
        assert env["POD_NAME"] == "metadata.name" and env["POD_NAMESPACE"] == "metadata.namespace"
        lease_role = next(
            d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("leader-election")
        )
        assert lease_role["metadata"]["namespace"] == OPERATOR_NS


def test_image_resources_scheduling_and_pod_metadata(chart: helm.Chart) -> None:
    values = {
        "image": {"repository": "registry.example/crs", "tag": "0.2.0-rc1", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "200Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "podAnnotations": {"example.com/team": "storage"},
        "podLabels": {"team": "storage"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "ops", "operator": "Exists"}]}]
                }
            }
        },
        "priorityClassName": "system-cluster-critical",
        "logFormat": "console",
        "extraArgs": ["--verbose", "--lease-duration=20"],
        "serviceAccount": {"annotations": {"example.com/role": "x"}},
    }
    chart.validate_schema(values)
    docs = rendered(chart, copy.deepcopy(values))
    pod = deployment(docs)["spec"]["template"]
    c = container(docs)
    assert c["image"] == "registry.example/crs:0.2.0-rc1" and c["imagePullPolicy"] == "Always"
    assert c["resources"] == values["resources"]
    assert pod["metadata"]["annotations"] == {"example.com/team": "storage"}
    assert pod["metadata"]["labels"]["team"] == "storage"
    spec = pod["spec"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["nodeSelector"] == values["nodeSelector"]
    assert spec["tolerations"] == values["tolerations"]
    assert spec["affinity"] == values["affinity"], "a given affinity replaces the default anti-affinity"
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert {"name": "CLUSTERRESYNC_LOG_FORMAT", "value": "console"} in c["env"]
    assert c["args"][-2:] == ["--verbose", "--lease-duration=20"]
    assert one(docs, "ServiceAccount")["metadata"]["annotations"] == {"example.com/role": "x"}


# -- metrics ---------------------------------------------------------------------------------------
def test_the_metrics_service_is_the_kustomize_installs(chart: helm.Chart) -> None:
    docs = rendered(chart)
    assert {d["kind"] for d in docs} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    }, "no ServiceMonitor by default"
    svc = one(docs, "Service")
    (theirs,) = of_kind(render("manifests"), "Service")
    assert svc["metadata"]["name"] == theirs["metadata"]["name"]
    assert svc["metadata"]["namespace"] == OPERATOR_NS
    assert svc["spec"]["ports"] == theirs["spec"]["ports"]
    assert svc["spec"]["selector"] == deployment(docs)["spec"]["selector"]["matchLabels"]
    assert "--metrics-port=9090" in container(docs)["args"]


def test_metrics_disabled_turns_the_endpoint_off(chart: helm.Chart) -> None:
    docs = rendered(chart, {"metrics": {"enabled": False}})
    assert "Service" not in {d["kind"] for d in docs}
    c = container(docs)
    assert [p["name"] for p in c["ports"]] == ["health"]
    assert "--metrics-port=0" in c["args"], "the operator serves metrics unless told not to"


def test_metrics_port_and_service_monitor(chart: helm.Chart) -> None:
    values = {
        "metrics": {
            "port": 9191,
            "service": {"port": 8443},
            "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}, "interval": "15s"},
        }
    }
    docs = rendered(chart, values)
    c = container(docs)
    assert {"name": "metrics", "containerPort": 9191} in c["ports"]
    assert "--metrics-port=9191" in c["args"]
    svc = one(docs, "Service")
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 8443, "targetPort": "metrics", "protocol": "TCP"}
    ]
    sm = one(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["namespace"] == OPERATOR_NS
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    ]
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [OPERATOR_NS]}
    # The ServiceMonitor selects the metrics Service.
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()


def test_a_service_monitor_without_metrics_is_refused(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError, match=r"metrics\.enabled"):
        rendered(chart, {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}})


# -- NOTES.txt -------------------------------------------------------------------------------------
def test_notes_say_how_to_check_it_and_what_helm_does_not_do_with_crds(chart: helm.Chart) -> None:
    text = notes(chart)
    assert "rollout status deployment/clusterresync-operator" in text
    assert "get lease clusterresync-operator" in text
    assert "never upgrades or deletes" in text
    assert "every namespace" in text
    assert "team-a, team-b" in notes(chart, {"watchNamespaces": ["team-a", "team-b"]})


# -- values.schema.json ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": "two"}, "replicaCount"),
        ({"replicaCount": -1}, "replicaCount"),
        ({"replicas": 2}, "replicas"),
        ({"image": {"repository": "x", "digest": "sha256:0"}}, "digest"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"watchNamespaces": "team-a"}, "watchNamespaces"),
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
        ({"watchNamespaces": ["a", "a"]}, "watchNamespaces"),
        ({"metrics": {"enabled": "yes"}}, "enabled"),
        ({"metrics": {"port": 70000}}, "port"),
        ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "interval"),
        ({"logFormat": "xml"}, "logFormat"),
        ({"resources": {"requests": {"cpu": "1"}, "limit": {}}}, "limit"),
    ],
)
def test_the_schema_refuses_bad_values(chart: helm.Chart, values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(complaint)):
        chart.validate_schema(values)
    # helm lint, as `helm install` would, refuses them too.
    report = helm.lint(CHART, values, namespace=OPERATOR_NS)
    assert report["errors"] or any(m["severity"] == 3 for m in report["messages"]), report


def test_the_schema_accepts_the_defaults_and_the_documented_options(chart: helm.Chart) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    for values in (
        {},
        {"watchNamespaces": ["team-a", "team-b"]},
        {"replicaCount": 2},
        {"metrics": {"enabled": True, "serviceMonitor": {"enabled": True}}},
        {"resources": {"requests": {"cpu": "100m", "memory": "200Mi"}, "limits": {"memory": "1Gi"}}},
    ):
        chart.validate_schema(chart.merge_values(values))


# -- docs/helm.md ----------------------------------------------------------------------------------
def value_paths(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of the values, down to the leaves; a map of user keys (annotations, labels,
    nodeSelector, ...) or an object passed through to Kubernetes is a leaf."""
    for k, v in values.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v and k not in PASSTHROUGH:
            yield from value_paths(v, path + ".")
        else:
            yield path


PASSTHROUGH = {"resources", "podSecurityContext", "securityContext", "affinity", "requests", "limits"}


def test_docs_helm_md_documents_every_value(chart: helm.Chart) -> None:
    text = (ROOT / "docs" / "helm.md").read_text()
    documented = set(re.findall(r"^\| `([A-Za-z0-9_.]+)`", text, flags=re.MULTILINE))
    values = set(value_paths(chart.values))
    assert values - documented == set(), "values missing from docs/helm.md's table"
    assert documented - values == set(), "docs/helm.md documents values the chart does not have"


def test_the_schema_and_values_yaml_have_the_same_keys(chart: helm.Chart) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def keys(node: dict[str, Any], values: dict[str, Any], prefix: str = "") -> Iterator[str]:
        props = node.get("properties") or {}
        for k in props.keys() | values.keys():
            if k == "global":  # Helm's own
                continue
            yield f"{prefix}{k}:{k in props}:{k in values}"
            if k in props and isinstance(values.get(k), dict) and "properties" in props[k]:
                yield from keys(props[k], values[k], f"{prefix}{k}.")

    mismatched = [k for k in keys(schema, chart.values) if not k.endswith(":True:True")]
    assert mismatched == [], "key:in the schema:in values.yaml"
