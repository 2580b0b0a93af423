"""Figure 6's setting: a busy cluster (many pods, claims and PersistentVolumes the operator has no
business with), and the operator process's resident memory sampled from ``/proc``.

The crowd is created through kubesim's Python API (``KubeSim.call``: the API server's own create
path, admission and validation included, without HTTP), in batches so the event loop keeps
serving between them. Each of ``count`` items is a static PersistentVolume pre-bound to a claim
(``claimRef``, ``storageClassName: ""``), that claim (``volumeName``), and a pod using the claim
whose ``schedulerName`` no scheduler serves, so it stays Pending: kubesim's scheduler only takes
pods of ``default-scheduler`` and its kubelet only runs pods bound to its nodes. kubesim's
PersistentVolume controller binds the pairs as the upstream one does.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from kubesim.cluster import Cluster
from kubesim.testing import KubeSim

UNSERVED_SCHEDULER = "bench-unserved-scheduler"


def crowd_item(ns: str, i: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A PersistentVolume, the claim it is pre-bound to, and a Pending pod using the claim."""
    claim_name, pv_name = f"crowd-{i}", f"crowd-{ns}-{i}"
    labels = {"app": "crowd", "app.kubernetes.io/instance": f"crowd-{i % 50}"}
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": pv_name,
            "labels": {"bench.clusterresync.io/crowd": ns},
            "annotations": {"pv.kubernetes.io/provisioned-by": "csi.kubesim.io"},
        },
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "volumeMode": "Filesystem",
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": ns,
                "name": claim_name,
            },
            "csi": {
                "driver": "csi.kubesim.io",
                "volumeHandle": f"crowd-{ns}-{i}",
                "fsType": "ext4",
                "volumeAttributes": {"storage.kubernetes.io/csiProvisionerIdentity": "bench"},
            },
        },
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim_name, "namespace": ns, "labels": labels},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "",
            "volumeName": pv_name,
        },
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"crowd-{i}", "namespace": ns, "labels": labels},
        "spec": {
            "schedulerName": UNSERVED_SCHEDULER,
            "containers": [
                {
                    "name": "app",
                    "image": "example/app:1",
                    "env": [{"name": "INSTANCE", "value": str(i)}],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
        },
    }
    return pv, claim, pod


def create_crowd(sim: KubeSim, ns: str, count: int, batch: int = 100) -> None:
    """``count`` PVs, claims and pods in ``ns`` (which must exist)."""

    def create(c: Cluster, first: int, last: int) -> None:
        pv_rt = c.api.resource("", "v1", "persistentvolumes")
        claim_rt = c.api.resource("", "v1", "persistentvolumeclaims")
        pod_rt = c.api.resource("", "v1", "pods")
        for i in range(first, last):
            pv, claim, pod = crowd_item(ns, i)
            c.api.create(pv_rt, "", pv)
            c.api.create(claim_rt, ns, claim)
            c.api.create(pod_rt, ns, pod)

    for first in range(0, count, batch):
        last = min(count, first + batch)
        sim.call(lambda c, first=first, last=last: create(c, first, last))


def bound_claims(sim: KubeSim, ns: str) -> int:
    def count(c: Cluster) -> int:
        rt = c.api.resource("", "v1", "persistentvolumeclaims")
        return sum(
            1 for o in c.api.store.iter(rt.storage_key, ns) if (o.get("status") or {}).get("phase") == "Bound"
        )

    return int(sim.call(count))


def wait_bound(sim: KubeSim, ns: str, count: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bound_claims(sim, ns) >= count:
            return True
        time.sleep(0.5)
    return False


def rss_bytes(pid: int) -> int | None:
    """VmRSS of ``pid`` from /proc/<pid>/status (the kernel reports kB = KiB), or None if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


class RssSampler(threading.Thread):
    """Samples one process's RSS every ``interval`` seconds for as long as it runs."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (monotonic, bytes)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            rss = rss_bytes(self.pid)
            if rss is not None:
                self.samples.append((time.monotonic(), rss))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def now(self) -> int | None:
        return rss_bytes(self.pid)

    def peak(self, start: float, end: float) -> int | None:
        window = [rss for t, rss in self.samples if start <= t <= end]
        return max(window) if window else None

    def count(self, start: float, end: float) -> int:
        return sum(1 for t, _ in self.samples if start <= t <= end)


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process, in clock ticks (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_idle(pid: int, timeout: float, window: float = 0.5, busy: float = 0.05) -> float | None:
    """Until the process uses under ``busy`` of a CPU over ``window`` seconds (it has taken in a
    burst of watch events); the seconds that took, or None at ``timeout``."""
    hz = os.sysconf("SC_CLK_TCK")
    t0 = time.monotonic()
    last = cpu_ticks(pid)
    while time.monotonic() - t0 < timeout:
        time.sleep(window)
        now = cpu_ticks(pid)
        if (now - last) / hz < busy * window:
            return time.monotonic() - t0
        last = now
    return None
