"""A tiny, deterministic model of the cluster behaviours a resync depends on, for planner tests.

It is not kubesim: it applies the planner's actions to plain dicts and advances the controllers
one tick at a time, following the rules that matter for data safety (the StatefulSet controller
recreates a deleted claim from its template before the pod, or binds a pre-bound volume; a claim
in use by a pod waits for it; a Released volume with reclaim policy Delete is deleted). The
end-to-end tests exercise the same planner on kubesim, whose controllers follow upstream
closely; this model lets hypothesis explore crash points and orderings exhaustively and fast.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from dataclasses import dataclass, field
from typing import Any

from clusterresync import planner
from clusterresync.models import ClusterResyncSpec, ClusterResyncStatus
from clusterresync.state import Create, Delete, Exec, HookOutcome, Observed, Patch, Resync

NS = "db-ns"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_uids = itertools.count(1)


def new_uid() -> str:
    return f"uid-{next(_uids)}"


def merge(dst: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            dst.pop(k, None)
        elif isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)


@dataclass
class World:
    replicas: int = 3
    primary: int = 1
    now: dt.datetime = T0
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    claims: dict[str, dict[str, Any]] = field(default_factory=dict)
    pvs: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)  # PV name -> content
    snapshot_data: dict[str, str] = field(default_factory=dict)
    deleted_pvs: list[str] = field(default_factory=list)
    status: ClusterResyncStatus = field(default_factory=ClusterResyncStatus)
    sts_uid: str = field(default_factory=new_uid)
    resync_uid: str = field(default_factory=new_uid)
    deleting: bool = False
    # Knobs for failures: replica pods that never become Ready on a copy of the primary (or never
    # at all), and replicas whose staging Job fails.
    unready_on_copy: set[str] = field(default_factory=set)
    never_ready: set[str] = field(default_factory=set)
    fail_jobs: set[str] = field(default_factory=set)
    # Replicas whose copy (the staging claim restored from the snapshot) takes this many ticks
    # more to provision: a slow copy.
    slow_copies: dict[str, int] = field(default_factory=dict)
    pv_seq: itertools.count = field(default_factory=lambda: itertools.count(100))  # type: ignore[type-arg]

    def __post_init__(self) -> None:
        for i in range(self.replicas):
            pv = f"pv-{i}"
            self._bind_new(f"data-db-{i}", pv, content="primary-data" if i == self.primary else f"stale-{i}")
            self._make_pod(f"db-{i}", ready_since=T0 - dt.timedelta(hours=1))

    # -- building blocks -------------------------------------------------------------------
    def _bind_new(
        self,
        claim: str,
        pv: str,
        content: str,
        extra_labels: dict[str, str] | None = None,
        spec_extra: dict[str, Any] | None = None,
    ) -> None:
        cuid = new_uid()
        self.claims[claim] = {
            "metadata": {
                "name": claim,
                "namespace": NS,
                "uid": cuid,
                "labels": dict(extra_labels or {"app": "db"}),
            },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "volumeMode": "Filesystem",
                "storageClassName": "standard",
                "resources": {"requests": {"storage": "1Gi"}},
                "volumeName": pv,
                **(spec_extra or {}),
            },
            "status": {"phase": "Bound"},
        }
        self.pvs[pv] = {
            "metadata": {"name": pv, "uid": new_uid(), "annotations": {}, "labels": {}},
            "spec": {
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": "standard",
                "accessModes": ["ReadWriteOnce"],
                "capacity": {"storage": "1Gi"},
                "volumeMode": "Filesystem",
                "claimRef": {"namespace": NS, "name": claim, "uid": cuid},
            },
            "status": {"phase": "Bound"},
        }
        self.data[pv] = content

    def _make_pod(self, name: str, ready_since: dt.datetime) -> None:
        i = int(name.rsplit("-", 1)[1])
        ready = name not in self.never_ready
        if name in self.unready_on_copy:
            pv = self.claims.get(f"data-{name}", {}).get("spec", {}).get("volumeName")
            ready = ready and self.data.get(pv or "") != "primary-data"
        self.pods[name] = {
            "metadata": {
                "name": name,
                "namespace": NS,
                "uid": new_uid(),
                "labels": {"app": "db", "role": "primary" if i == self.primary else "replica"},
                "ownerReferences": [{"uid": self.sts_uid, "controller": True}],
            },
            "spec": {
                "nodeName": f"node-{i % 3}",
                "containers": [
                    {"name": "db", "image": "db:1", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
                ],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": f"data-{name}"}}],
            },
            "status": {
                "phase": "Running",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if ready else "False",
                        "lastTransitionTime": planner.ts(ready_since),
                    }
                ],
                "containerStatuses": [
                    {
                        "name": "db",
                        "restartCount": 0,
                        "state": {"running": {"startedAt": planner.ts(ready_since)}},
                    }
                ],
            },
        }

    def pod_uses(self, claim: str) -> bool:
        return any(
            v.get("persistentVolumeClaim", {}).get("claimName") == claim
            for p in self.pods.values()
            for v in p["spec"]["volumes"]
        )

    # -- observation -------------------------------------------------------------------------
    def observed(self, spec: ClusterResyncSpec, hooks: dict[str, HookOutcome] | None = None) -> Observed:
        resync = Resync("rs", NS, self.resync_uid, 1, T0, self.deleting, spec, self.status)
        target = {
            "metadata": {"name": "db", "namespace": NS, "uid": self.sts_uid},
            "spec": {
                "replicas": self.replicas,
                "selector": {"matchLabels": {"app": "db"}},
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data", "labels": {"app": "db"}},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "storageClassName": "standard",
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    }
                ],
            },
        }
        return Observed(
            now=self.now,
            resync=resync,
            target=target,
            pods=copy.deepcopy(self.pods),
            claims=copy.deepcopy(self.claims),
            pvs=copy.deepcopy(self.pvs),
            snapshots=copy.deepcopy(self.snapshots),
            snapshot_classes=[
                {
                    "metadata": {
                        "name": "snapclass",
                        "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"},
                    },
                    "driver": "csi.test",
                }
            ],
            storage_classes={
                "standard": {
                    "metadata": {"name": "standard"},
                    "provisioner": "csi.test",
                    "volumeBindingMode": "Immediate",
                }
            },
            csi_drivers={"csi.test"},
            nodes={
                f"node-{i}": {
                    "metadata": {"name": f"node-{i}", "labels": {"kubernetes.io/hostname": f"node-{i}"}}
                }
                for i in range(3)
            },
            jobs=copy.deepcopy(self.jobs),
            other_resyncs=[],
            hook_outcomes=hooks or {},
            claim_users={
                c: [
                    n
                    for n, p in self.pods.items()
                    if any(
                        v.get("persistentVolumeClaim", {}).get("claimName") == c for v in p["spec"]["volumes"]
                    )
                ]
                for c in self.claims
            },
        )

    # -- actions -----------------------------------------------------------------------------
    def apply(self, action: Any) -> None:
        if isinstance(action, Exec):
            return
        kind = action.ref.kind
        store = {
            "PersistentVolumeClaim": self.claims,
            "PersistentVolume": self.pvs,
            "Pod": self.pods,
            "VolumeSnapshot": self.snapshots,
            "Job": self.jobs,
        }[kind]
        name = action.ref.name
        if isinstance(action, Create):
            if name in store:
                return
            body = copy.deepcopy(action.body)
            body["metadata"]["uid"] = new_uid()
            if kind == "PersistentVolumeClaim":
                body["status"] = {"phase": "Pending"}
            store[name] = body
        elif isinstance(action, Delete):
            obj = store.get(name)
            if obj is None or (action.uid and obj["metadata"]["uid"] != action.uid):
                return
            obj["metadata"]["deletionTimestamp"] = planner.ts(self.now)
        elif isinstance(action, Patch):
            obj = store.get(name)
            if obj is None:
                return
            if action.content_type == "application/json-patch+json":
                for op in action.patch:
                    if op["op"] == "test":
                        parts = op["path"].strip("/").split("/")
                        cur: Any = obj
                        for p in parts:
                            cur = cur.get(p) if isinstance(cur, dict) else None
                        if cur != op["value"]:
                            return
                    else:
                        obj["spec"]["claimRef"] = copy.deepcopy(op["value"])
            else:
                merge(obj, action.patch)

    # -- controllers -------------------------------------------------------------------------
    def tick(self) -> None:
        self.now += dt.timedelta(seconds=1)
        for name, s in self.snapshots.items():
            src = self.claims.get(s["spec"]["source"]["persistentVolumeClaimName"])
            if "status" not in s and src is not None:
                self.snapshot_data[name] = self.data[src["spec"]["volumeName"]]
                s["status"] = {"readyToUse": True, "restoreSize": "1Gi"}
        for j in self.jobs.values():
            failed = j["metadata"].get("labels", {}).get("clusterresync.io/replica") in self.fail_jobs
            j.setdefault(
                "status", {"conditions": [{"type": "Failed" if failed else "Complete", "status": "True"}]}
            )
        for name in [n for n, j in self.jobs.items() if j["metadata"].get("deletionTimestamp")]:
            del self.jobs[name]
        for name in [n for n, p in self.pods.items() if p["metadata"].get("deletionTimestamp")]:
            del self.pods[name]
        for name in [n for n, s in self.snapshots.items() if s["metadata"].get("deletionTimestamp")]:
            del self.snapshots[name]
        # Claims: deletion waits for users (pvc-protection); binding; provisioning.
        for name, c in list(self.claims.items()):
            if c["metadata"].get("deletionTimestamp"):
                if not any(
                    v.get("persistentVolumeClaim", {}).get("claimName") == name
                    for p in self.pods.values()
                    for v in p["spec"]["volumes"]
                ) and not any(
                    v.get("persistentVolumeClaim", {}).get("claimName") == name
                    for j in self.jobs.values()
                    for v in j["spec"]["template"]["spec"]["volumes"]
                ):
                    del self.claims[name]
                    pv = self.pvs.get(c["spec"].get("volumeName", ""))
                    if pv is not None:
                        pv["status"]["phase"] = "Released"
                continue
            if c["status"]["phase"] == "Pending":
                self._bind(name, c)
        # PVs: Released + Delete goes; a Released PV whose claimRef lost its uid becomes Available.
        for name, pv in list(self.pvs.items()):
            ref = pv["spec"].get("claimRef") or {}
            if (
                pv["status"]["phase"] == "Released"
                and pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
            ):
                del self.pvs[name]
                self.deleted_pvs.append(name)
            elif pv["status"]["phase"] == "Released" and ref and not ref.get("uid"):
                pv["status"]["phase"] = "Available"
        # StatefulSet controller: claims from the template before the pod; never past a deleting claim.
        for i in range(self.replicas):
            pod, claim = f"db-{i}", f"data-db-{i}"
            if pod in self.pods:
                continue
            c = self.claims.get(claim)
            if c is None:
                self.claims[claim] = {
                    "metadata": {"name": claim, "namespace": NS, "uid": new_uid(), "labels": {"app": "db"}},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "volumeMode": "Filesystem",
                        "storageClassName": "standard",
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                    "status": {"phase": "Pending"},
                }
                self._bind(claim, self.claims[claim])
                continue
            if c["metadata"].get("deletionTimestamp"):
                continue
            self._make_pod(pod, ready_since=self.now)

    def _bind(self, name: str, c: dict[str, Any]) -> None:
        # Pre-bound volumes first (FindMatchingVolume), then the named volume, then provisioning.
        for pv_name, pv in self.pvs.items():
            ref = pv["spec"].get("claimRef") or {}
            if ref.get("name") == name and not ref.get("uid") and pv["status"]["phase"] == "Available":
                self._finish_bind(name, c, pv_name)
                return
        if c["spec"].get("volumeName"):
            pv = self.pvs.get(c["spec"]["volumeName"])
            if pv is not None:
                self._finish_bind(name, c, c["spec"]["volumeName"])
            return
        pv_name = f"pv-{next(self.pv_seq)}"
        src = c["spec"].get("dataSource")
        content = ""
        if src and src["kind"] == "VolumeSnapshot":
            if src["name"] not in self.snapshot_data:
                return
            replica = (c["metadata"].get("labels") or {}).get("clusterresync.io/replica", "")
            if self.slow_copies.get(replica, 0) > 0:
                self.slow_copies[replica] -= 1
                return
            content = self.snapshot_data[src["name"]]
        elif src and src["kind"] == "PersistentVolumeClaim":
            content = self.data[self.claims[src["name"]]["spec"]["volumeName"]]
        self.pvs[pv_name] = {
            "metadata": {"name": pv_name, "uid": new_uid(), "annotations": {}, "labels": {}},
            "spec": {
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": "standard",
                "accessModes": ["ReadWriteOnce"],
                "capacity": {"storage": "1Gi"},
                "volumeMode": "Filesystem",
            },
            "status": {"phase": "Pending"},
        }
        self.data[pv_name] = content
        self._finish_bind(name, c, pv_name)

    def _finish_bind(self, name: str, c: dict[str, Any], pv_name: str) -> None:
        pv = self.pvs[pv_name]
        pv["spec"]["claimRef"] = {"namespace": NS, "name": name, "uid": c["metadata"]["uid"]}
        pv["status"]["phase"] = "Bound"
        c["spec"]["volumeName"] = pv_name
        c["status"]["phase"] = "Bound"

    # -- helpers for assertions --------------------------------------------------------------
    def content_of(self, pod: str) -> str | None:
        c = self.claims.get(f"data-{pod}")
        if c is None or c["status"]["phase"] != "Bound":
            return None
        return self.data.get(c["spec"]["volumeName"])
