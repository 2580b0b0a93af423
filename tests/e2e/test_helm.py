"""The Helm chart, end to end on kubesim: installed, upgraded and uninstalled by Helm's own engine
(Helm 4's Go SDK through ``helm-python-sdk``), then the real operator run as the chart's
ServiceAccount (so the chart's RBAC is what authorizes it), with the arguments of the chart's
Deployment, resyncing a StatefulSet to Completed, in the cluster-wide and the namespaced mode.
``test_helm_pod.py`` runs the chart's own pod instead (the image's entrypoint, in-cluster login).

Helm 4 applies with server-side apply by default (``helm install``, ``Config.install``): the main
flow does so (kubesim implements server-side apply). ``helm install --server-side=false`` applies
client-side (and its upgrades then patch with three-way strategic merge patches):
``test_client_side_apply_install_and_upgrade`` covers it, through the C ABI's install option
``server_side_apply`` that ``Config.install`` does not expose.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
from helm_python import _native

from kubesim.testing import KubeSim

from .conftest import Operator, wait_for
from .test_resync import (
    assert_primary_untouched,
    assert_resynced,
    conditions,
    get,
    make_db,
    resync,
    wait_done,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "clusterresync"
RELEASE = "clusterresync"
NS = "clusterresync-system"
NAME = "clusterresync-operator"  # the chart's objects for the release "clusterresync"
SA = f"system:serviceaccount:{NS}:{NAME}"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def install_client_side(
    cfg: helm.Config, chart: helm.Chart, values: dict[str, Any], namespace: str
) -> dict[str, Any]:
    """``helm install --server-side=false RELEASE``."""
    opts = {"namespace": namespace, "server_side_apply": False, "timeout_seconds": 120}
    payload = _native.call_string(
        "helm_install",
        cfg._raw(),
        _native.HANDLE(0),  # no cancellation context
        chart._raw(),
        None,  # the chart is the loaded one, not a reference
        RELEASE,
        json.dumps(values),
        json.dumps(opts),
    )
    release: dict[str, Any] = json.loads(payload)
    return release


@pytest.fixture(scope="module")
def cluster() -> Iterator[KubeSim]:
    """A cluster without manifests/: the chart installs everything."""
    with KubeSim() as sim:
        sim.kubectl("create", "namespace", NS)
        sim.kubectl("label", "namespace", NS, *(f"{k}={v}" for k, v in RESTRICTED.items()))
        yield sim


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as c:
        yield c


@pytest.fixture(scope="module")
def cfg(cluster: KubeSim) -> Iterator[helm.Config]:
    with helm.Config(kubeconfig_path=cluster.kubeconfig, namespace=NS) as c:
        yield c


@pytest.fixture(scope="module")
def released(cluster: KubeSim, cfg: helm.Config, chart: helm.Chart) -> dict[str, Any]:
    """``helm install clusterresync charts/clusterresync -n clusterresync-system``."""
    return cfg.install(chart, RELEASE, timeout=120)


def namespace(cluster: KubeSim, name: str) -> str:
    cluster.kubectl("create", "namespace", name)
    return name


def can(cluster: KubeSim, *args: str) -> str:
    return cluster.kubectl("auth", "can-i", *args, "--as", SA, check=False).stdout.strip()


def chart_operator(cluster: KubeSim, log: Path, identity: str) -> Operator:
    """The operator process as the chart's ServiceAccount, with the installed Deployment's
    arguments, except the two listening ones: Kopf's health endpoint (probes are not run here;
    a fixed port would collide with other test files) and metrics (off)."""
    dep = get(cluster, "deployment", "-n", NS, NAME)
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    args = [a for a in c["args"] if not a.startswith(("--liveness=", "--metrics-port="))]
    assert len(args) == len(c["args"]) - 2, c["args"]
    # Its environment: the JSON logs Operator sets too, and POD_NAMESPACE (= NS) from the pod.
    assert {"name": "CLUSTERRESYNC_LOG_FORMAT", "value": "json"} in c["env"]
    kubeconfig = cluster.service_account_kubeconfig(NS, dep["spec"]["template"]["spec"]["serviceAccountName"])
    return Operator(kubeconfig, log, identity=identity, args=[*args, "--metrics-port=0"])


def lease(cluster: KubeSim) -> dict[str, Any] | None:
    out = cluster.kubectl("get", "lease", "-n", NS, NAME, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def run_resync(cluster: KubeSim, op: Operator, ns: str) -> None:
    db = make_db(cluster, ns, replicas=3, primary=1)
    resync(cluster, db)
    out = wait_done(cluster, ns)
    assert out["status"]["phase"] == "Completed", (out["status"], op.output()[-3000:])
    assert conditions(out)["Complete"]["reason"] == "ResyncSucceeded"
    assert out["status"]["progress"] == "2/2"
    assert_resynced(cluster, db, [0, 2])
    assert_primary_untouched(cluster, db)
    assert "forbidden" not in op.output().lower(), op.output()[-3000:]


# -- install ---------------------------------------------------------------------------------------
def test_install_deploys_the_operator_in_the_restricted_namespace(
    cluster: KubeSim, cfg: helm.Config, released: dict[str, Any]
) -> None:
    assert released["status"] == "deployed" and released["revision"] == 1
    assert released["app_version"] == released["chart_version"] == "0.1.0"
    assert "rollout status deployment/clusterresync-operator" in released["notes"]
    (listed,) = cfg.list()
    assert (listed["name"], listed["namespace"]) == (RELEASE, NS)
    # The CRDs from crds/, served.
    for crd in ("clusterresyncs.clusterresync.io", "resyncpolicies.clusterresync.io"):
        obj = get(cluster, "crd", crd)
        assert {c["type"]: c["status"] for c in obj["status"]["conditions"]}["Established"] == "True"
    # The Deployment's two pods, admitted under enforce=restricted (a pod failing the profile is
    # refused there: checked below), become available.
    bad = cluster.kubectl("run", "not-restricted", "-n", NS, "--image=x", "--dry-run=server", check=False)
    assert "violates PodSecurity" in bad.stderr, bad.stderr

    def available() -> bool:
        st = get(cluster, "deployment", "-n", NS, NAME).get("status", {})
        return st.get("availableReplicas") == 2

    wait_for(available, 60, "the chart's Deployment available with 2 replicas")
    svc = get(cluster, "service", "-n", NS, f"{NAME}-metrics")
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    # What its ServiceAccount may do, as the API server's RBAC sees it.
    assert can(cluster, "create", "jobs", "-n", "kube-system") == "yes"  # cluster-wide mode
    assert can(cluster, "patch", "persistentvolumes") == "yes"
    assert can(cluster, "delete", "persistentvolumes") == "no"
    assert can(cluster, "update", f"lease/{NAME}", "-n", NS) == "yes"
    assert can(cluster, "update", "lease/other", "-n", NS) == "no"
    assert can(cluster, "get", "secrets", "-n", "default") == "no"


def test_the_operator_as_the_charts_service_account_resyncs(
    cluster: KubeSim, released: dict[str, Any], tmp_path: Path
) -> None:
    ns = namespace(cluster, "helm-wide")
    op = chart_operator(cluster, tmp_path / "operator.log", "helm-op")
    assert "--all-namespaces" in op.args and f"--lease-name={NAME}" in op.args
    op.start()
    try:
        run_resync(cluster, op, ns)
        held = lease(cluster)
        assert held is not None and held["spec"]["holderIdentity"] == "helm-op"
    finally:
        op.stop()


# -- upgrade ---------------------------------------------------------------------------------------
def test_upgrade_to_the_namespaced_mode_serves_only_the_listed_namespaces(
    cluster: KubeSim, cfg: helm.Config, chart: helm.Chart, released: dict[str, Any], tmp_path: Path
) -> None:
    a, b = namespace(cluster, "helm-team-a"), namespace(cluster, "helm-team-b")
    other = namespace(cluster, "helm-other")
    upgraded = cfg.upgrade(chart, RELEASE, {"watchNamespaces": [a, b], "replicaCount": 1}, timeout=120)
    assert upgraded["status"] == "deployed" and upgraded["revision"] == 2
    assert cfg.get_values(RELEASE) == {"watchNamespaces": [a, b], "replicaCount": 1}
    # The cluster-wide grant is gone (Helm deleted it), Roles are in the two namespaces only.
    assert cluster.kubectl("get", "clusterrolebinding", NAME, check=False).returncode != 0
    assert can(cluster, "create", "jobs", "-n", a) == "yes"
    assert can(cluster, "create", "pods", "--subresource=exec", "-n", b) == "yes"
    assert can(cluster, "create", "jobs", "-n", other) == "no"
    assert can(cluster, "delete", "pods", "-n", "kube-system") == "no"
    assert can(cluster, "patch", "persistentvolumes") == "yes"  # cluster-scoped: cluster-wide in both modes
    wait_for(
        lambda: get(cluster, "deployment", "-n", NS, NAME)["spec"]["replicas"] == 1,
        30,
        "the Deployment scaled to 1",
    )
    op = chart_operator(cluster, tmp_path / "operator.log", "helm-op-ns")
    assert [x for x in op.args if x.startswith("--namespace")] == [f"--namespace={a}", f"--namespace={b}"]
    # A ClusterResync in a namespace it does not serve, there before the operator starts.
    resync(cluster, make_db(cluster, other, name="ignored", replicas=2, primary=0))
    op.start()
    try:
        run_resync(cluster, op, b)
        # ... is left alone, while the one in a served namespace ran to completion.
        obj = get(cluster, "crsync", "-n", other, "rs")
        assert not obj.get("status", {}).get("phase"), obj.get("status")
        assert not obj["metadata"].get("finalizers"), obj["metadata"]
    finally:
        op.stop()


# -- uninstall -------------------------------------------------------------------------------------
def test_uninstall_removes_the_operator_and_keeps_the_crds_and_resyncs(
    cluster: KubeSim, cfg: helm.Config, released: dict[str, Any]
) -> None:
    out = cfg.uninstall(RELEASE, timeout=120)
    assert out["release"]["name"] == RELEASE
    assert cfg.list() == []
    for kind, name in [
        ("deployment", NAME),
        ("serviceaccount", NAME),
        ("role", f"{NAME}-leader-election"),
        ("service", f"{NAME}-metrics"),
    ]:
        assert cluster.kubectl("get", kind, "-n", NS, name, check=False).returncode != 0, kind
    assert cluster.kubectl("get", "clusterrole", f"{NAME}-cluster", check=False).returncode != 0
    assert cluster.kubectl("get", "role", "-n", "helm-team-a", NAME, check=False).returncode != 0
    # Helm never deletes CRDs (nor, so, the ClusterResyncs): they and the objects stay.
    get(cluster, "crd", "clusterresyncs.clusterresync.io")
    get(cluster, "crd", "resyncpolicies.clusterresync.io")
    assert get(cluster, "crsync", "-n", "helm-wide", "rs")["status"]["phase"] == "Completed"


# -- client-side apply ----------------------------------------------------------------------------
def test_client_side_apply_install_and_upgrade(chart: helm.Chart) -> None:
    """``helm install --server-side=false``, then ``helm upgrade`` (which keeps the release's
    client-side apply: three-way strategic merge patches), on a cluster of its own."""
    with KubeSim() as sim, helm.Config(kubeconfig_path=sim.kubeconfig, namespace="crs") as c:
        for ns in ("crs", "crs-team"):
            sim.kubectl("create", "namespace", ns)
        release = install_client_side(c, chart, {"replicaCount": 1}, "crs")
        assert release["status"] == "deployed"
        assert get(sim, "deployment", "-n", "crs", NAME)["spec"]["replicas"] == 1
        get(sim, "crd", "clusterresyncs.clusterresync.io")
        get(sim, "clusterrolebinding", NAME)
        upgraded = c.upgrade(chart, RELEASE, {"watchNamespaces": ["crs-team"]}, timeout=120)
        assert upgraded["status"] == "deployed" and upgraded["revision"] == 2
        dep = get(sim, "deployment", "-n", "crs", NAME)
        assert dep["spec"]["replicas"] == 2
        assert dep["spec"]["template"]["spec"]["containers"][0]["args"][0] == "--namespace=crs-team"
        get(sim, "rolebinding", "-n", "crs-team", NAME)
        assert sim.kubectl("get", "clusterrolebinding", NAME, check=False).returncode != 0
        c.uninstall(RELEASE, timeout=120)
        assert sim.kubectl("get", "deployment", "-n", "crs", NAME, check=False).returncode != 0
