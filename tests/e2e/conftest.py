"""End-to-end fixtures: kubesim, the manifests applied with kubectl, the real operator process
running as its ServiceAccount (so the RBAC in manifests/ is what authorizes it)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim import testing
from kubesim.cluster import ClusterConfig
from kubesim.testing import KubeSim

ROOT = Path(__file__).resolve().parents[2]


# Short leader election timings for tests (client-go's defaults are 15/10/2 s): a takeover
# after a crash takes about LEASE_DURATION + a retry period.
LEASE_DURATION = 4
RENEW_DEADLINE = 3.0
RETRY_PERIOD = 0.5


class Operator:
    """The operator as a separate OS process (``clusterresync-operator``), in its own process group.

    ``identity`` is the leader election identity: a process restarted with the same identity
    resumes the lease at once (the previous one is dead), as a container restarted in its pod
    would if the identity were the pod's name alone.
    """

    def __init__(
        self,
        kubeconfig: Path,
        log: Path,
        *,
        identity: str = "e2e-operator",
        args: Sequence[str] = ("--all-namespaces",),
        env: Mapping[str, str] | None = None,
        lease_duration: int = LEASE_DURATION,
        renew_deadline: float = RENEW_DEADLINE,
        retry_period: float = RETRY_PERIOD,
        health_port: int | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        self.identity = identity
        self.args = list(args)
        self.health_port = health_port  # Kopf's health endpoint (--liveness) on 127.0.0.1
        if health_port is not None:
            self.args.append(f"--liveness=http://127.0.0.1:{health_port}/healthz")
        self.env = dict(env or {})
        self.lease_args = [
            f"--identity={identity}",
            f"--lease-duration={lease_duration}",
            f"--renew-deadline={renew_deadline}",
            f"--retry-period={retry_period}",
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    def start(self) -> None:
        env = dict(
            os.environ,
            KUBECONFIG=str(self.kubeconfig),
            CLUSTERRESYNC_LOG_FORMAT="json",
            POD_NAMESPACE="clusterresync-system",
            **self.env,
        )
        exe = Path(sys.executable).parent / "clusterresync-operator"
        self.logf = self.log.open("ab")
        self.proc = subprocess.Popen(
            [str(exe), *self.args, *self.lease_args],
            env=env,
            stdout=self.logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.paused = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            if self.paused:  # a stopped process handles SIGTERM only once continued
                os.killpg(self.proc.pid, signal.SIGCONT)
            self.proc.wait(30)
        self.proc = None
        self.paused = False

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def pause(self) -> None:
        """SIGSTOP the whole process group: frozen, sockets open, as a process starved or swapped out."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """The operator's structlog JSON lines (Kopf's own lines are not JSON and are skipped)."""
        out = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out


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


def free_port() -> int:
    """A TCP port nothing listens on now (0.0.0.0 and 127.0.0.1 alike)."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def wait_for(fn: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    return testing.wait_for(fn, timeout, what, interval=0.2)


def namespaced_install_docs(ns: str) -> list[dict[str, Any]]:
    """``manifests/overlays/namespaced`` as kustomize renders it, adapted to serve ``ns`` instead
    of the overlay's example namespace (``demo``): its Role, RoleBinding and --namespace flag."""
    out = subprocess.run(
        [testing.kubectl_binary(), "kustomize", str(ROOT / "manifests" / "overlays" / "namespaced")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    for d in docs:
        meta = d["metadata"]
        if meta.get("namespace") == "demo":
            meta["namespace"] = ns
        if d["kind"] == "Deployment":
            c = d["spec"]["template"]["spec"]["containers"][0]
            c["args"] = [f"--namespace={ns}" if a == "--namespace=demo" else a for a in c["args"]]
    return docs


@pytest.fixture
def namespaced_install(cluster: KubeSim, ns: str) -> Iterator[str]:
    """The namespaced install serving ``ns`` in place of the cluster-wide one: the cluster-wide
    ClusterRoleBinding goes, the overlay is applied; afterwards the cluster-wide install is back.
    Yields ``ns``."""
    cluster.kubectl("delete", "clusterrolebinding", "clusterresync-operator")
    docs = namespaced_install_docs(ns)
    try:
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
        yield ns
    finally:
        cluster.kubectl("delete", "rolebinding,role", "-n", ns, "clusterresync-operator", check=False)
        cluster.kubectl("apply", "-k", str(ROOT / "manifests"))
