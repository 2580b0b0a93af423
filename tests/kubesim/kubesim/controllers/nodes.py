"""Nodes: the Node objects and their Leases, the node lifecycle controller and taint-based eviction.

kubesim has ``ClusterConfig.nodes`` nodes, ``kubesim-node-1..N``, all served by the one kubelet in
``kubesim/kubelet.py``. What this module emulates:

- The kubelet's node registration and status (``pkg/kubelet/kubelet_node_status.go``:
  ``registerWithAPIServer``, ``initialNode``, ``setNodeStatus`` with the ``nodestatus`` setters
  ``ReadyCondition``, ``MemoryPressureCondition``, ``DiskPressureCondition``,
  ``PIDPressureCondition``, ``NodeAddress``, ``MachineInfo``, ``VersionInfo``).
- The node lease heartbeat (``pkg/kubelet/nodelease`` -> ``component-helpers/apimachinery/lease``:
  ``controller.sync`` renews ``kube-node-lease/<node>`` every ``leaseDuration / 4``).
- A node that stops heartbeating, as the node lifecycle controller sees it
  (``pkg/controller/nodelifecycle/node_lifecycle_controller.go``: ``tryUpdateNodeHealth`` sets
  every condition to ``Unknown``/``NodeStatusUnknown``; ``doNoScheduleTaintingPass`` and
  ``doNoExecuteTaintingPass`` add the ``node.kubernetes.io/unreachable`` taints;
  ``MarkPodsNotReady`` in ``pkg/controller/util/node/controller_utils.go`` sets the pods' Ready
  condition to False). The grace period (``nodeMonitorGracePeriod``, 40 s upstream) is elapsed
  at once when the fault is injected.
- Taint-based eviction (``pkg/controller/tainteviction/taint_eviction.go``: ``processPodOnNode``,
  ``addConditionAndDeletePod``): pods that do not tolerate a NoExecute taint are deleted, pods
  that tolerate it for ``tolerationSeconds`` are deleted that long after the taint appeared.
"""

from __future__ import annotations

import hashlib
import platform
import time
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any, cast

from .. import events
from ..apiserver import WriteOptions
from ..errors import StatusError
from ..meta import now, now_micro, parse_time
from ..store import Change, deep_copy
from .base import Controller

if TYPE_CHECKING:
    from ..cluster import Cluster

KUBELET_VERSION = "v1.37.0"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
ZONES = ("zone-a", "zone-b", "zone-c")
REGION = "kubesim"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"

# nodestatus setters (pkg/kubelet/nodestatus/setters.go): the reasons and messages of a healthy node.
HEALTHY_CONDITIONS: tuple[tuple[str, str, str, str], ...] = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)


def node_names(count: int) -> list[str]:
    return [f"kubesim-node-{i}" for i in range(1, count + 1)]


def node_ip(name: str) -> str:
    """The InternalIP of a kubesim node: 127.0.1.<index> (the whole of 127/8 is the loopback)."""
    return f"127.0.1.{int(name.rsplit('-', 1)[1])}"


def _arch() -> str:
    m = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m or "amd64")


def _capacity() -> dict[str, str]:
    # A fixed, generous machine, the same on every host, so that scheduling is reproducible.
    return {
        "cpu": "16",
        "memory": "65842896Ki",
        "ephemeral-storage": "104857600Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "pods": "110",
    }


def _allocatable(capacity: dict[str, str]) -> dict[str, str]:
    # kubelet_node_status.go: allocatable = capacity - reserved - hard eviction threshold (100Mi memory).
    out = dict(capacity)
    out["memory"] = f"{max(0, int(capacity['memory'][:-2]) - 102400)}Ki"
    out["ephemeral-storage"] = "96635884974"
    return out


def initial_node(name: str, index: int) -> dict[str, Any]:
    """kubelet_node_status.go: initialNode: labels, annotations and an empty spec."""
    arch = _arch()
    return {
        "metadata": {
            "name": name,
            "labels": {
                "beta.kubernetes.io/arch": arch,
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch,
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "topology.kubernetes.io/zone": ZONES[(index - 1) % len(ZONES)],
                "topology.kubernetes.io/region": REGION,
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {"podCIDR": f"10.244.{index}.0/24", "podCIDRs": [f"10.244.{index}.0/24"]},
    }


def _machine_id(name: str) -> str:
    return hashlib.sha256(f"kubesim-machine/{name}".encode()).hexdigest()[:32]


def node_status(name: str, conditions: list[dict[str, Any]]) -> dict[str, Any]:
    capacity = _capacity()
    mid = _machine_id(name)
    return {
        "capacity": capacity,
        "allocatable": _allocatable(capacity),
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": node_ip(name)},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": mid,
            "systemUUID": f"{mid[:8]}-{mid[8:12]}-{mid[12:16]}-{mid[16:20]}-{mid[20:32]}",
            "bootID": hashlib.sha256(f"boot/{name}/{time.time()}".encode()).hexdigest()[:32],
            "kernelVersion": platform.release(),
            "osImage": "kubesim (processes run on the host)",
            "containerRuntimeVersion": "kubesim://1.0.0",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": _arch(),
        },
    }


def healthy_conditions(previous: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The kubelet's conditions for a healthy node; transition times move only when the status does."""
    t = now()
    prev = {c.get("type"): c for c in previous or []}
    out = []
    for type_, status, reason, message in HEALTHY_CONDITIONS:
        old = prev.get(type_)
        out.append(
            {
                "type": type_,
                "status": status,
                "lastHeartbeatTime": t,
                "lastTransitionTime": old["lastTransitionTime"]
                if old and old.get("status") == status and old.get("lastTransitionTime")
                else t,
                "reason": reason,
                "message": message,
            }
        )
    return out


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """core/v1 helper: Toleration.ToleratesTaint (operators Exists and Equal; empty effect matches all)."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    op = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if op == "Exists":
        # An empty key with Exists tolerates everything.
        return True
    if op == "Equal":
        if not key:
            return False
        return (toleration.get("value") or "") == (taint.get("value") or "")
    if op in ("Lt", "Gt"):
        # TaintTolerationComparisonOperators: numeric comparison of the taint's value.
        try:
            tv, ov = int(taint.get("value") or ""), int(toleration.get("value") or "")
        except ValueError:
            return False
        return tv < ov if op == "Lt" else tv > ov
    return False


def find_untolerated_taint(
    taints: list[dict[str, Any]], tolerations: list[dict[str, Any]], effects: tuple[str, ...]
) -> dict[str, Any] | None:
    """v1helper.FindMatchingUntoleratedTaint restricted to ``effects``."""
    for taint in taints:
        if taint.get("effect") not in effects:
            continue
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


class NodeController(Controller):
    """Node registration, heartbeats, the NotReady fault, and NoExecute taint eviction."""

    name = "nodes"

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.node_rt = self.api.resource("", "v1", "nodes")
        self.lease_rt = self.api.resource("coordination.k8s.io", "v1", "leases")
        self.pod_rt = self.api.resource("", "v1", "pods")
        # Nodes whose kubelet is "down" (the NotReady fault): no heartbeat, no pod syncs.
        self.down: set[str] = set()
        # taint_eviction.go: pods whose deletion is scheduled, by uid -> trigger time (epoch seconds).
        self._eviction_due: dict[str, float] = {}

    # -- registration ------------------------------------------------------------------------
    @staticmethod
    def bootstrap(cluster: Cluster) -> None:
        """Register the nodes and their leases (kubelet registerWithAPIServer, nodelease)."""
        api = cluster.api
        node_rt = api.resource("", "v1", "nodes")
        for i, name in enumerate(node_names(cluster.config.nodes), start=1):
            api.create(node_rt, "", initial_node(name, i), WriteOptions.kubelet())
            cur = api.get(node_rt, "", name)
            cur["status"] = node_status(name, healthy_conditions())
            api.update(
                node_rt, "", name, cur, WriteOptions.kubelet(), subresource="status", internal_patch=True
            )
            _renew_lease(cluster, name, api.get(node_rt, "", name)["metadata"]["uid"])

    def start(self) -> None:
        super().start()
        self.cluster.front.admin_actions["nodes/ready"] = self._admin_ready
        self.enqueue_after(("lease",), self.cluster.config.node_lease_renew_interval)

    def _admin_ready(self, args: dict[str, Any]) -> dict[str, Any]:
        ready = args.get("ready", True)
        if isinstance(ready, str):
            ready = ready.lower() in ("1", "true", "yes")
        self.set_ready(str(args["name"]), bool(ready))
        return {"name": args["name"], "ready": bool(ready)}

    def kubelet_running(self, node: str) -> bool:
        return node not in self.down

    # -- the NotReady fault ------------------------------------------------------------------
    def set_ready(self, name: str, ready: bool) -> None:
        """Stop (ready=False) or restart (ready=True) the kubelet of ``name``, with the consequences
        the node lifecycle controller draws from it."""
        node = self.api.get_or_none(self.node_rt, "", name)
        if node is None:
            raise KeyError(f'node "{name}" not found')
        if not ready:
            if name in self.down:
                return
            self.down.add(name)
            self._mark_unknown(name)
        else:
            if name not in self.down:
                return
            self.down.discard(name)
            self._mark_ready(name)
        self.enqueue(("evict", name))

    def _mark_unknown(self, name: str) -> None:
        node = self.api.get(self.node_rt, "", name)
        t = now()
        # node_lifecycle_controller.go: tryUpdateNodeHealth: "Kubelet stopped posting node status."
        conds = []
        for c in (node.get("status") or {}).get("conditions") or []:
            c = dict(c)
            if c.get("status") != "Unknown":
                c["lastTransitionTime"] = t
            c["status"] = "Unknown"
            c["reason"] = "NodeStatusUnknown"
            c["message"] = "Kubelet stopped posting node status."
            conds.append(c)
        node.setdefault("status", {})["conditions"] = conds
        self.api.update(self.node_rt, "", name, node, subresource="status", internal_patch=True)
        events.record(
            self.api,
            node,
            "Normal",
            "NodeNotReady",
            f"Node {name} status is now: NodeNotReady",
            "node-controller",
        )
        # doNoScheduleTaintingPass / doNoExecuteTaintingPass: the unreachable taints.
        node = self.api.get(self.node_rt, "", name)
        taints = [
            t_
            for t_ in (node.get("spec") or {}).get("taints") or []
            if t_.get("key") not in (TAINT_UNREACHABLE, TAINT_NOT_READY)
        ]
        taints.append({"key": TAINT_UNREACHABLE, "effect": "NoSchedule", "timeAdded": t})
        taints.append({"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": t})
        node.setdefault("spec", {})["taints"] = taints
        self.api.update(self.node_rt, "", name, node, internal_patch=True)
        # controller_utils.go: MarkPodsNotReady.
        for pod in list(self.store.iter("/pods")):
            if (pod.get("spec") or {}).get("nodeName") != name:
                continue
            self._mark_pod_not_ready(pod)

    def _mark_pod_not_ready(self, pod: dict[str, Any]) -> None:
        ns, pname = pod["metadata"]["namespace"], pod["metadata"]["name"]
        cur = self.api.get_or_none(self.pod_rt, ns, pname)
        if cur is None:
            return
        changed = False
        for c in (cur.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready" and c.get("status") != "False":
                c["status"] = "False"
                c["lastTransitionTime"] = now()
                changed = True
        if not changed:
            return
        try:
            self.api.update(self.pod_rt, ns, pname, cur, subresource="status", internal_patch=True)
        except StatusError as e:
            if e.code != 404:
                raise
            return
        events.record(self.api, cur, "Warning", "NodeNotReady", "Node is not ready", "node-controller")

    def _mark_ready(self, name: str) -> None:
        node = self.api.get(self.node_rt, "", name)
        # The kubelet is back: it posts its conditions again (setNodeStatus) and renews its lease.
        node.setdefault("status", {})["conditions"] = healthy_conditions(
            (node.get("status") or {}).get("conditions")
        )
        self.api.update(
            self.node_rt, "", name, node, WriteOptions.kubelet(), subresource="status", internal_patch=True
        )
        _renew_lease(self.cluster, name, node["metadata"]["uid"])
        events.record(
            self.api, node, "Normal", "NodeReady", f"Node {name} status is now: NodeReady", "kubelet", name
        )
        # The lifecycle controller removes the unreachable taints once the node is healthy.
        node = self.api.get(self.node_rt, "", name)
        spec = node.setdefault("spec", {})
        spec["taints"] = [t for t in spec.get("taints") or [] if t.get("key") != TAINT_UNREACHABLE]
        if not spec["taints"]:
            spec.pop("taints")
        self.api.update(self.node_rt, "", name, node, internal_patch=True)

    # -- wiring ------------------------------------------------------------------------------
    def keys_for(self, change: Change) -> Iterable[Hashable]:
        if change.key == "/nodes" and change.type != "DELETED":
            taints = (change.obj.get("spec") or {}).get("taints") or []
            old_taints = ((change.old or {}).get("spec") or {}).get("taints") or []
            if any(t.get("effect") == "NoExecute" for t in taints) or taints != old_taints:
                yield ("evict", change.obj["metadata"]["name"])
        elif change.key == "/pods" and change.type != "DELETED":
            node = (change.obj.get("spec") or {}).get("nodeName")
            old_node = ((change.old or {}).get("spec") or {}).get("nodeName")
            if node and node != old_node:
                yield ("evict", node)

    def initial_keys(self) -> Iterable[Hashable]:
        for name in node_names(self.cluster.config.nodes):
            yield ("evict", name)

    async def reconcile(self, key: Hashable) -> float | None:
        k = cast("tuple[str, ...]", key)
        if k[0] == "lease":
            for name in node_names(self.cluster.config.nodes):
                if name in self.down:
                    continue
                node = self.store.peek("/nodes", "", name)
                if node is not None:
                    _renew_lease(self.cluster, name, node["metadata"]["uid"])
            return self.cluster.config.node_lease_renew_interval
        return self._evict(k[1])

    # -- taint-based eviction ------------------------------------------------------------------
    def _evict(self, node_name: str) -> float | None:
        """taint_eviction.go: processPodOnNode for every pod on the node; the delay to the next check."""
        node = self.store.peek("/nodes", "", node_name)
        taints = [
            t for t in ((node or {}).get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"
        ]
        wall = time.time()
        next_check: float | None = None
        for pod in list(self.store.iter("/pods")):
            spec = pod.get("spec") or {}
            if spec.get("nodeName") != node_name:
                continue
            uid = pod["metadata"]["uid"]
            if pod["metadata"].get("deletionTimestamp"):
                self._eviction_due.pop(uid, None)
                continue
            if not taints:
                if self._eviction_due.pop(uid, None) is not None:
                    # cancelWorkWithEvent: "Cancelling deletion of Pod %s"
                    events.record(
                        self.api,
                        _with_kind(pod),
                        "Normal",
                        "TaintManagerEviction",
                        f"Cancelling deletion of Pod {pod['metadata']['namespace']}/{pod['metadata']['name']}",
                        "taint-eviction-controller",
                    )
                continue
            # v1helper.GetMatchingTolerations: the first toleration matching each taint; a taint
            # that none tolerates means deletion now.
            used: list[tuple[dict[str, Any], dict[str, Any]]] = []
            for taint in taints:
                match = next((t for t in spec.get("tolerations") or [] if tolerates(t, taint)), None)
                if match is None:
                    used = []
                    break
                used.append((taint, match))
            if not used:
                self._delete_for_taint(pod)
                continue
            # getMinTolerationTime: the smallest tolerationSeconds (<= 0 means now); none set means
            # the pod tolerates the taints forever. The clock starts when the taint appeared.
            due: float | None = None
            for taint, tol in used:
                secs = tol.get("tolerationSeconds")
                if secs is None:
                    continue
                added = taint.get("timeAdded")
                start = parse_time(added).timestamp() if added else wall
                at = start + max(0.0, float(secs))
                due = at if due is None else min(due, at)
            if due is None:
                continue
            if due <= wall:
                self._eviction_due.pop(uid, None)
                self._delete_for_taint(pod)
            else:
                self._eviction_due[uid] = due
                next_check = due - wall if next_check is None else min(next_check, due - wall)
        return next_check

    def _delete_for_taint(self, pod: dict[str, Any]) -> None:
        """taint_eviction.go: addConditionAndDeletePod (DisruptionTarget condition, then delete)."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        cur = self.api.get_or_none(self.pod_rt, ns, name)
        if cur is None or cur["metadata"].get("deletionTimestamp"):
            return
        events.record(
            self.api,
            cur,
            "Normal",
            "TaintManagerEviction",
            f"Marking for deletion Pod {ns}/{name}",
            "taint-eviction-controller",
        )
        status = cur.setdefault("status", {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionTarget"]
        conds.append(
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": now(),
            }
        )
        status["conditions"] = conds
        try:
            self.api.update(self.pod_rt, ns, name, cur, subresource="status", internal_patch=True)
            self.api.delete(self.pod_rt, ns, name, {"preconditions": {"uid": cur["metadata"]["uid"]}})
        except StatusError as e:
            if e.code not in (404, 409):
                raise


def _with_kind(pod: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = deep_copy(pod)
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Pod")
    return out


def _renew_lease(cluster: Cluster, node: str, node_uid: str) -> None:
    """component-helpers/apimachinery/lease/controller.go: ensureLease / retryUpdateLease."""
    api = cluster.api
    rt = api.resource("coordination.k8s.io", "v1", "leases")
    cur = api.get_or_none(rt, LEASE_NAMESPACE, node)
    if cur is None:
        body = {
            "metadata": {
                "name": node,
                "namespace": LEASE_NAMESPACE,
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}],
            },
            "spec": {
                "holderIdentity": node,
                "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                "renewTime": now_micro(),
            },
        }
        try:
            api.create(rt, LEASE_NAMESPACE, body, WriteOptions.kubelet())
        except StatusError as e:
            if e.code != 409:
                raise
        return
    cur.setdefault("spec", {})["renewTime"] = now_micro()
    api.update(rt, LEASE_NAMESPACE, node, cur, WriteOptions.kubelet(), internal_patch=True)


__all__ = [
    "KUBELET_VERSION",
    "NodeController",
    "find_untolerated_taint",
    "node_ip",
    "node_names",
    "tolerates",
]
