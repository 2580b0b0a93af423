"""End-to-end fixtures: kubesim, the manifests applied with kubectl, the real operator process
running as its ServiceAccount (so the RBAC in manifests/ is what authorizes it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim import testing
from kubesim.cluster import ClusterConfig
from kubesim.testing import KubeSim

ROOT = Path(__file__).resolve().parents[2]


class Operator:
    """The operator as a separate OS process (``clusterresync-operator``)."""

    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), CLUSTERRESYNC_LOG_FORMAT="json")
        exe = Path(sys.executable).parent / "clusterresync-operator"
        self.logf = self.log.open("ab")
        self.proc = subprocess.Popen(
            [str(exe), "--all-namespaces", "--standalone"],
            env=env,
            stdout=self.logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSim]:
    cfg = ClusterConfig()
    with KubeSim(config=cfg) as sim:
        sim.kubectl("apply", "-k", str(ROOT / "manifests"))
        yield sim


@pytest.fixture(scope="module")
def operator(cluster: KubeSim, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    sa_kubeconfig = cluster.service_account_kubeconfig("clusterresync-system", "clusterresync-operator")
    op = Operator(sa_kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
    op.start()
    yield op
    op.stop()


@pytest.fixture
def ns(cluster: KubeSim) -> str:
    name = "e2e-" + uuid.uuid4().hex[:6]
    cluster.kubectl("create", "namespace", name)
    return name


def statefulset(
    name: str,
    replicas: int = 3,
    volumes: tuple[str, ...] = ("data",),
    storage_class: str | None = None,
    size: str = "1Mi",
) -> dict[str, Any]:
    templates = []
    for v in volumes:
        spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
        }
        if storage_class:
            spec["storageClassName"] = storage_class
        templates.append({"metadata": {"name": v}, "spec": spec})
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "db",
                            "image": "example/db:1",
                            "volumeMounts": [{"name": v, "mountPath": f"/var/lib/{v}"} for v in volumes],
                        }
                    ]
                },
            },
            "volumeClaimTemplates": templates,
        },
    }


def apply(cluster: KubeSim, ns: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(obj))


def wait_for(fn: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    return testing.wait_for(fn, timeout, what, interval=0.2)
