"""The default scheduler (``pkg/scheduler``), with the plugins that matter to stateful workloads.

One scheduling cycle per pending pod (``schedule_one.go``: ``ScheduleOne`` -> ``schedulePod`` ->
``findNodesThatFitPod``), with these plugins in the upstream default order
(``pkg/scheduler/apis/config/v1/default_plugins.go``):

- PreFilter: VolumeRestrictions (claims exist, ReadWriteOncePod), VolumeBinding (claims exist,
  are not being deleted, immediate claims are bound).
- Filter: NodeUnschedulable, TaintToleration, NodeAffinity (nodeSelector and required node
  affinity), NodeResourcesFit (cpu, memory, pods), VolumeBinding (bound PVs' node affinity;
  static PVs or dynamic provisioning for WaitForFirstConsumer claims), VolumeZone.
- PostFilter: the DynamicResources and DefaultPreemption messages (nothing is ever preempted:
  every pod has the same priority in the flows kubesim runs).
- Score: spreading (the system-default PodTopologySpread constraints and least-allocated,
  approximated as "fewest pods of the same owner, then fewest pods"), ties broken at random
  as ``selectHost`` does.
- Reserve/PreBind (VolumeBinding ``AssumePodVolumes``/``BindPodVolumes``): prebind static PVs,
  set ``volume.kubernetes.io/selected-node`` on claims to provision, then wait until the PV
  controller and the provisioner have bound them.
- Bind (DefaultBinder): the ``pods/binding`` subresource (``pkg/registry/core/pod/storage``:
  ``BindingREST.setPodHostAndAnnotations``), also served over HTTP.

Failures are reported as upstream does (``schedule_one.go``: ``handleSchedulingFailure``): a
``FailedScheduling`` event and a ``PodScheduled=False`` condition carrying the ``FitError`` text.
Unschedulable pods are retried when a node, claim, volume, storage class or pod changes
(``EventsToRegister``), after a per-pod backoff (``podInitialBackoffSeconds``/``podMaxBackoffSeconds``,
scaled down by ``ClusterConfig.scheduler_backoff``).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web

from .. import events
from ..apiserver import WriteOptions
from ..errors import StatusError, bad_request, conflict, not_found
from ..meta import now
from ..store import Change, deep_copy
from ..strategies import parse_quantity
from .base import Controller
from .nodes import TAINT_UNSCHEDULABLE, find_untolerated_taint, tolerates

if TYPE_CHECKING:
    from .. import auth
    from ..cluster import Cluster
    from ..resources import ResourceType

SCHEDULER_NAME = "default-scheduler"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
NOT_SUPPORTED_PROVISIONER = "kubernetes.io/no-provisioner"

# Filter reasons, worded as the plugins word them.
REASON_UNSCHEDULABLE = "node(s) were unschedulable"  # nodeunschedulable.ErrReasonUnschedulable
REASON_TAINT = "node(s) had untolerated taint(s)"  # tainttoleration.Filter
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"  # nodeaffinity.ErrReasonPod
REASON_BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"  # volumebinding
REASON_NODE_CONFLICT = "node(s) didn't match PersistentVolume's node affinity"  # volumebinding
REASON_PV_NOT_EXIST = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
REASON_ZONE = "node(s) had no available volume zone"  # volumezone.ErrReasonConflict
REASON_RWOP = "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"

ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")

# schedutil.DefaultMilliCPURequest / DefaultMemoryRequest: what a container without requests counts as
# for scoring (not for fit).
_CPU_UNITS = 1000.0


# -- helpers shared with the kubelet -------------------------------------------------------------
def _match_expression(expr: dict[str, Any], value: str | None) -> bool:
    op = expr.get("operator")
    values = [str(v) for v in expr.get("values") or []]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        if value is None or len(values) != 1:
            return False
        try:
            a, b = int(value), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def node_selector_term_matches(term: dict[str, Any], node: dict[str, Any]) -> bool:
    """component-helpers/scheduling/corev1/nodeaffinity: a term matches when all its requirements do;
    a term with no requirement matches nothing."""
    exprs = term.get("matchExpressions") or []
    fields_ = term.get("matchFields") or []
    if not exprs and not fields_:
        return False
    labels = node["metadata"].get("labels") or {}
    for e in exprs:
        if not _match_expression(e, labels.get(e.get("key", ""))):
            return False
    for f in fields_:
        value = node["metadata"]["name"] if f.get("key") == "metadata.name" else None
        if not _match_expression(f, value):
            return False
    return True


def node_selector_matches(selector: dict[str, Any] | None, node: dict[str, Any]) -> bool:
    """NodeSelector terms are ORed."""
    if not selector:
        return True
    return any(node_selector_term_matches(t, node) for t in selector.get("nodeSelectorTerms") or [])


def pod_matches_node_affinity(pod: dict[str, Any], node: dict[str, Any]) -> bool:
    """nodeaffinity.GetRequiredNodeAffinity(pod).Match(node): nodeSelector AND required affinity."""
    spec = pod.get("spec") or {}
    labels = node["metadata"].get("labels") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    return required is None or node_selector_matches(required, node)


def pv_node_affinity_matches(pv: dict[str, Any], node: dict[str, Any]) -> bool:
    """component-helpers/storage/volume: CheckNodeAffinity (a PV without node affinity fits anywhere)."""
    required = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required")
    if required is None:
        return True
    return node_selector_matches(required, node)


def claim_class(pvc: dict[str, Any]) -> str:
    """storagehelpers.GetPersistentVolumeClaimClass (the beta annotation wins over the field)."""
    ann = (pvc["metadata"].get("annotations") or {}).get("volume.beta.kubernetes.io/storage-class")
    if ann is not None:
        return str(ann)
    return str((pvc.get("spec") or {}).get("storageClassName") or "")


def pod_claim_names(pod: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(volume name, claim name, ephemeral) of each PVC-backed volume of the pod."""
    out = []
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if isinstance(v.get("persistentVolumeClaim"), dict):
            out.append((v.get("name", ""), str(v["persistentVolumeClaim"].get("claimName", "")), False))
        elif isinstance(v.get("ephemeral"), dict):
            # component-helpers/storage/ephemeral: VolumeClaimName
            out.append((v.get("name", ""), f"{pod['metadata']['name']}-{v.get('name', '')}", True))
    return out


def is_fully_bound(pvc: dict[str, Any]) -> bool:
    """volumeBinder.isPVCFullyBound: volumeName set and the bind-completed annotation present."""
    return bool((pvc.get("spec") or {}).get("volumeName")) and ANN_BIND_COMPLETED in (
        pvc["metadata"].get("annotations") or {}
    )


def pod_requests(pod: dict[str, Any]) -> dict[str, float]:
    """resource.PodRequests: the sum of the containers' requests, or the largest init container's."""
    spec = pod.get("spec") or {}

    def req(c: dict[str, Any], name: str) -> float:
        v = ((c.get("resources") or {}).get("requests") or {}).get(name)
        return parse_quantity(v) if v is not None else 0.0

    out: dict[str, float] = {}
    for name in ("cpu", "memory"):
        total = sum(req(c, name) for c in spec.get("containers") or [])
        init = max((req(c, name) for c in spec.get("initContainers") or []), default=0.0)
        out[name] = max(total, init)
    return out


def go_duration(seconds: float) -> str:
    """time.Duration.String() for the durations kubesim prints (e.g. 10s, 1m20s, 200ms)."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms" if ms == int(ms) else f"{ms:.3g}ms"
    whole = int(seconds)
    frac = seconds - whole
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    sec = f"{s + frac:g}s" if frac else f"{s}s"
    if h:
        return f"{h}h{m}m{sec}"
    if m:
        return f"{m}m{sec}"
    return sec


# -- scheduler state -----------------------------------------------------------------------------
@dataclass
class Binding:
    """A pod assumed on a node while VolumeBinding's PreBind waits for its claims."""

    uid: str
    node: str
    static: list[tuple[str, str]]  # (pv name, claim name) prebound by the scheduler
    provision: list[str]  # claim names given the selected-node annotation
    deadline: float
    pv_versions: dict[str, str] = field(default_factory=dict)


@dataclass
class _Status:
    """A plugin status (framework.Status): code and reasons."""

    code: str  # "Unschedulable" or "UnschedulableAndUnresolvable"
    reasons: list[str]


class Scheduler(Controller):
    name = "scheduler"

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.pod_rt = self.api.resource("", "v1", "pods")
        self.pvc_rt = self.api.resource("", "v1", "persistentvolumeclaims")
        self.pv_rt = self.api.resource("", "v1", "persistentvolumes")
        self.rng = random.Random()
        # uid -> (attempts, not-before monotonic time): the backoff queue.
        self._backoff: dict[str, tuple[int, float]] = {}
        # (ns, name) of pods that failed a cycle and wait for a cluster event.
        self._unschedulable: set[tuple[str, str]] = set()
        # uid -> binding in progress (assumed pods).
        self._binding: dict[str, Binding] = {}
        self._binding_keys: dict[str, tuple[str, str]] = {}
        self._wakes: dict[Hashable, float] = {}

    def start(self) -> None:
        super().start()
        self.cluster.front.extra_handlers.setdefault("/pods/binding", self._binding_handler)

    # -- queueing ----------------------------------------------------------------------------
    @staticmethod
    def _wants(pod: dict[str, Any]) -> bool:
        spec = pod.get("spec") or {}
        return (
            not spec.get("nodeName")
            and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME
            and not pod["metadata"].get("deletionTimestamp")
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        )

    def keys_for(self, change: Change) -> Iterable[Hashable]:
        obj = change.obj
        if change.key == "/pods":
            meta = obj["metadata"]
            key = (meta["namespace"], meta["name"])
            if change.type != "DELETED" and self._wants(obj):
                yield key
            elif meta["uid"] in self._binding:
                yield key  # the binding cycle notices the pod is gone
            if change.type == "DELETED" or meta.get("deletionTimestamp"):
                # A pod going frees resources and ReadWriteOncePod claims.
                yield from self._waiting()
            return
        if change.key in (
            "/nodes",
            "/persistentvolumeclaims",
            "/persistentvolumes",
            "storage.k8s.io/storageclasses",
            "storage.k8s.io/csidrivers",
        ):
            ns = obj["metadata"].get("namespace")
            for k in self._waiting():
                if ns and k[0] != ns and change.key == "/persistentvolumeclaims":
                    continue
                yield k

    def _waiting(self) -> list[tuple[str, str]]:
        return [*self._unschedulable, *self._binding_keys.values()]

    def initial_keys(self) -> Iterable[Hashable]:
        for pod in self.store.iter("/pods"):
            if self._wants(pod):
                yield (pod["metadata"]["namespace"], pod["metadata"]["name"])

    def _backoff_delay(self, attempts: int) -> float:
        # scheduling_queue.go: calculateBackoffDuration: initial * 2^(attempts-1), capped.
        base = self.cluster.config.scheduler_backoff
        return float(min(base * (2.0 ** min(max(0, attempts - 1), 64)), base * 10))  # never overflows

    # -- the cycle ---------------------------------------------------------------------------
    async def reconcile(self, key: Hashable) -> float | None:
        delay = self._reconcile(key)
        if delay is None:
            return None
        # One pending wake-up per pod: a later one is redundant when an earlier one is due.
        mono = time.monotonic()
        due = self._wakes.get(key)
        if due is not None and mono < due <= mono + delay:
            return None
        self._wakes[key] = mono + delay
        return delay

    def _reconcile(self, key: Hashable) -> float | None:
        ns, name = cast("tuple[str, str]", key)
        pod = self.store.peek("/pods", ns, name)
        # Forget bindings of pods that went away or were bound by someone else.
        for uid, k in list(self._binding_keys.items()):
            if k == (ns, name) and (pod is None or pod["metadata"]["uid"] != uid or not self._wants(pod)):
                self._forget(uid)
        if pod is None or not self._wants(pod):
            self._unschedulable.discard((ns, name))
            self._wakes.pop(key, None)
            if pod is None:
                self._backoff = {u: b for u, b in self._backoff.items() if u in self._live_uids()}
            return None
        uid = pod["metadata"]["uid"]
        if uid in self._binding:
            return self._check_binding(pod, self._binding[uid])
        attempts, not_before = self._backoff.get(uid, (0, 0.0))
        mono = time.monotonic()
        if mono < not_before:
            return not_before - mono
        gates = (pod.get("spec") or {}).get("schedulingGates") or []
        if gates:
            # schedulinggates.PreEnqueue: the pod waits outside the queue.
            self._set_unschedulable(
                pod, "SchedulingGated", "Scheduling is blocked due to non-empty scheduling gates", event=False
            )
            return None
        return self._schedule(pod, attempts)

    def _live_uids(self) -> set[str]:
        return {p["metadata"]["uid"] for p in self.store.iter("/pods")}

    def _fail(self, pod: dict[str, Any], attempts: int, reason: str, message: str) -> float:
        uid = pod["metadata"]["uid"]
        attempts += 1
        delay = self._backoff_delay(attempts)
        self._backoff[uid] = (attempts, time.monotonic() + delay)
        self._unschedulable.add((pod["metadata"]["namespace"], pod["metadata"]["name"]))
        self._set_unschedulable(pod, reason, message)
        # Unschedulable pods wait for an event; errors are retried after the backoff. Either
        # way an unschedulable pod is flushed again after a while (flushUnschedulablePodsLeftover).
        return delay if reason != "Unschedulable" else max(delay, 30.0)

    def _schedule(self, pod: dict[str, Any], attempts: int) -> float | None:
        nodes = [n for n in self.store.iter("/nodes") if not n["metadata"].get("deletionTimestamp")]
        if not nodes:
            # schedule_one.go: ErrNoNodesAvailable
            return self._fail(pod, attempts, "Unschedulable", "no nodes available to schedule pods")
        n_nodes = len(nodes)
        pre = self._prefilter(pod)
        if pre is not None:
            helpful = NO_VICTIMS if pre.code == "Unschedulable" else NOT_HELPFUL
            msg = (
                f"0/{n_nodes} nodes are available: {', '.join(pre.reasons)}."
                f" preemption: 0/{n_nodes} nodes are available: {n_nodes} {helpful}."
            )
            return self._fail(pod, attempts, "Unschedulable", msg)
        claims = self._claims(pod)
        statuses: dict[str, _Status] = {}
        feasible: list[dict[str, Any]] = []
        plans: dict[str, tuple[list[tuple[str, str]], list[str]]] = {}
        for node in nodes:
            st, plan = self._filter(pod, node, claims)
            if st is None:
                feasible.append(node)
                plans[node["metadata"]["name"]] = plan
            else:
                statuses[node["metadata"]["name"]] = st
        if not feasible:
            hist: dict[str, int] = {}
            pre_hist: dict[str, int] = {}
            for st in statuses.values():
                for r in st.reasons:
                    hist[r] = hist.get(r, 0) + 1
                k = NO_VICTIMS if st.code == "Unschedulable" else NOT_HELPFUL
                pre_hist[k] = pre_hist.get(k, 0) + 1
            reasons = ", ".join(sorted(f"{v} {k}" for k, v in hist.items()))
            pre_msg = ", ".join(sorted(f"{v} {k}" for k, v in pre_hist.items()))
            # FitError.Error(); PostFilter statuses merged: DynamicResources first, then
            # DefaultPreemption ("preemption: " + its own FitError).
            msg = (
                f"0/{n_nodes} nodes are available: {reasons}. no new claims to deallocate,"
                f" preemption: 0/{n_nodes} nodes are available: {pre_msg}."
            )
            return self._fail(pod, attempts, "Unschedulable", msg)
        node = self._select(pod, feasible)
        node_name = node["metadata"]["name"]
        static, provision = plans[node_name]
        self._unschedulable.discard((pod["metadata"]["namespace"], pod["metadata"]["name"]))
        if not static and not provision:
            self._bind_and_record(pod, node_name)
            return None
        return self._assume_volumes(pod, node_name, static, provision, attempts)

    # -- PreFilter ---------------------------------------------------------------------------
    def _claims(self, pod: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
        ns = pod["metadata"]["namespace"]
        return {c: self.store.peek("/persistentvolumeclaims", ns, c) for _, c, _ in pod_claim_names(pod)}

    def _prefilter(self, pod: dict[str, Any]) -> _Status | None:
        ns = pod["metadata"]["namespace"]
        vols = pod_claim_names(pod)
        # volumerestrictions.PreFilter: the claims must exist; ReadWriteOncePod conflicts.
        for _, claim, ephemeral in vols:
            if ephemeral:
                continue
            pvc = self.store.peek("/persistentvolumeclaims", ns, claim)
            if pvc is None:
                return _Status("UnschedulableAndUnresolvable", [f'persistentvolumeclaim "{claim}" not found'])
        for _, claim, _eph in vols:
            pvc = self.store.peek("/persistentvolumeclaims", ns, claim)
            if pvc is None or "ReadWriteOncePod" not in ((pvc.get("spec") or {}).get("accessModes") or []):
                continue
            if self._rwop_in_use(pod, claim):
                return _Status("Unschedulable", [REASON_RWOP])
        # volumebinding.PreFilter: podHasPVCs, then unbound immediate claims.
        unbound_immediate = False
        for _, claim, ephemeral in vols:
            pvc = self.store.peek("/persistentvolumeclaims", ns, claim)
            if pvc is None:
                msg = (
                    f'waiting for ephemeral volume controller to create the persistentvolumeclaim "{claim}"'
                    if ephemeral
                    else f'persistentvolumeclaim "{claim}" not found'
                )
                return _Status("UnschedulableAndUnresolvable", [msg])
            if (pvc.get("status") or {}).get("phase") == "Lost":
                return _Status(
                    "UnschedulableAndUnresolvable",
                    [
                        f'persistentvolumeclaim "{claim}" bound to non-existent persistentvolume '
                        f'"{(pvc.get("spec") or {}).get("volumeName", "")}"'
                    ],
                )
            if pvc["metadata"].get("deletionTimestamp"):
                return _Status(
                    "UnschedulableAndUnresolvable", [f'persistentvolumeclaim "{claim}" is being deleted']
                )
            if ephemeral and not any(
                r.get("uid") == pod["metadata"]["uid"] and r.get("controller")
                for r in pvc["metadata"].get("ownerReferences") or []
            ):
                return _Status(
                    "UnschedulableAndUnresolvable",
                    [
                        f"PVC {ns}/{claim} was not created for pod {ns}/{pod['metadata']['name']} (pod is not owner)"
                    ],
                )
            # GetPodVolumeClaims: an unbound claim is immediate unless WaitForFirstConsumer;
            # a prebound claim (volumeName set, binding not complete) counts as immediate.
            if not is_fully_bound(pvc) and (
                not self._delay_binding(pvc) or (pvc.get("spec") or {}).get("volumeName")
            ):
                unbound_immediate = True
        if unbound_immediate:
            return _Status(
                "UnschedulableAndUnresolvable", ["pod has unbound immediate PersistentVolumeClaims"]
            )
        return None

    def _rwop_in_use(self, pod: dict[str, Any], claim: str) -> bool:
        ns = pod["metadata"]["namespace"]
        for other in self.store.iter("/pods", ns):
            if other["metadata"]["uid"] == pod["metadata"]["uid"]:
                continue
            if (
                not (other.get("spec") or {}).get("nodeName")
                and other["metadata"]["uid"] not in self._binding
            ):
                continue
            if (other.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            if any(c == claim for _, c, _ in pod_claim_names(other)):
                return True
        return False

    def _delay_binding(self, pvc: dict[str, Any]) -> bool:
        """storagehelpers.IsDelayBindingMode."""
        cls = claim_class(pvc)
        if not cls:
            return False
        sc = self.store.peek("storage.k8s.io/storageclasses", "", cls)
        if sc is None:
            return False
        return bool(sc.get("volumeBindingMode") == "WaitForFirstConsumer")

    # -- Filter ------------------------------------------------------------------------------
    def _filter(
        self, pod: dict[str, Any], node: dict[str, Any], claims: dict[str, dict[str, Any] | None]
    ) -> tuple[_Status | None, tuple[list[tuple[str, str]], list[str]]]:
        spec = pod.get("spec") or {}
        nspec = node.get("spec") or {}
        tolerations = spec.get("tolerations") or []
        empty: tuple[list[tuple[str, str]], list[str]] = ([], [])
        # nodeunschedulable.Filter
        if nspec.get("unschedulable") and not any(
            tolerates(t, {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}) for t in tolerations
        ):
            return _Status("UnschedulableAndUnresolvable", [REASON_UNSCHEDULABLE]), empty
        # tainttoleration.Filter: NoSchedule and NoExecute taints.
        if find_untolerated_taint(nspec.get("taints") or [], tolerations, ("NoSchedule", "NoExecute")):
            return _Status("UnschedulableAndUnresolvable", [REASON_TAINT]), empty
        # nodeaffinity.Filter
        if not pod_matches_node_affinity(pod, node):
            return _Status("UnschedulableAndUnresolvable", [REASON_AFFINITY]), empty
        # noderesources.Fit: requests against allocatable minus the requests of the node's pods.
        fit = self._fit(pod, node)
        if fit:
            return _Status("Unschedulable", fit), empty
        # volumebinding.Filter (FindPodVolumes)
        st, plan = self._find_pod_volumes(pod, node, claims)
        if st is not None:
            return st, empty
        # volumezone.Filter
        if not self._zone_ok(node, claims):
            return _Status("UnschedulableAndUnresolvable", [REASON_ZONE]), empty
        return None, plan

    def _node_pods(self, node_name: str) -> list[dict[str, Any]]:
        out = []
        for p in self.store.iter("/pods"):
            if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            n = (p.get("spec") or {}).get("nodeName")
            b = self._binding.get(p["metadata"]["uid"])
            if n == node_name or (not n and b is not None and b.node == node_name):
                out.append(p)
        return out

    def _fit(self, pod: dict[str, Any], node: dict[str, Any]) -> list[str]:
        alloc = (node.get("status") or {}).get("allocatable") or {}
        pods = self._node_pods(node["metadata"]["name"])
        reasons = []
        if alloc.get("pods") is not None and len(pods) + 1 > parse_quantity(alloc["pods"]):
            reasons.append("Too many pods")
        want = pod_requests(pod)
        used: dict[str, float] = {"cpu": 0.0, "memory": 0.0}
        for p in pods:
            for k, v in pod_requests(p).items():
                used[k] += v
        for res in ("cpu", "memory"):
            if want[res] <= 0 or alloc.get(res) is None:
                continue
            if want[res] > parse_quantity(alloc[res]) - used[res] + 1e-9:
                reasons.append(f"Insufficient {res}")
        return reasons

    def _find_pod_volumes(
        self, pod: dict[str, Any], node: dict[str, Any], claims: dict[str, dict[str, Any] | None]
    ) -> tuple[_Status | None, tuple[list[tuple[str, str]], list[str]]]:
        """volumeBinder.FindPodVolumes: checkBoundClaims, findMatchingVolumes, checkVolumeProvisions."""
        node_name = node["metadata"]["name"]
        reasons: list[str] = []
        static: list[tuple[str, str]] = []
        provision: list[str] = []
        bound_ok, pvs_found, unbound_ok = True, True, True
        to_match: list[dict[str, Any]] = []
        for claim, pvc in claims.items():
            if pvc is None:
                continue
            if is_fully_bound(pvc):
                pv = self.store.peek("/persistentvolumes", "", pvc["spec"]["volumeName"])
                if pv is None:
                    pvs_found = False
                elif not pv_node_affinity_matches(pv, node):
                    bound_ok = False
                continue
            selected = (pvc["metadata"].get("annotations") or {}).get(ANN_SELECTED_NODE)
            if selected is not None:
                if selected != node_name:
                    unbound_ok = False
                    break
                provision.append(claim)
            else:
                to_match.append(pvc)
        if unbound_ok and to_match:
            # findMatchingVolumes: smallest claims first, each PV used once.
            chosen: set[str] = set()
            for pvc in sorted(to_match, key=_claim_size):
                pv = self._find_matching_volume(pvc, node, chosen)
                if pv is not None:
                    chosen.add(pv["metadata"]["name"])
                    static.append((pv["metadata"]["name"], pvc["metadata"]["name"]))
                else:
                    provision.append(pvc["metadata"]["name"])
        if unbound_ok and provision:
            for claim in provision:
                pvc = claims.get(claim)
                if pvc is None:
                    continue
                if (pvc["metadata"].get("annotations") or {}).get(ANN_SELECTED_NODE) == node_name:
                    continue
                # checkVolumeProvisions: a class with a provisioner whose allowed topologies fit.
                cls = claim_class(pvc)
                sc = self.store.peek("storage.k8s.io/storageclasses", "", cls) if cls else None
                if (
                    sc is None
                    or not sc.get("provisioner")
                    or sc.get("provisioner") == NOT_SUPPORTED_PROVISIONER
                ):
                    unbound_ok = False
                    break
                if not _topology_matches(sc.get("allowedTopologies") or [], node):
                    unbound_ok = False
                    break
        if not bound_ok:
            reasons.append(REASON_NODE_CONFLICT)
        if not unbound_ok:
            reasons.append(REASON_BIND_CONFLICT)
        if not pvs_found:
            reasons.append(REASON_PV_NOT_EXIST)
        if reasons:
            return _Status("UnschedulableAndUnresolvable", reasons), ([], [])
        return None, (static, provision)

    def _find_matching_volume(
        self, pvc: dict[str, Any], node: dict[str, Any], chosen: set[str]
    ) -> dict[str, Any] | None:
        """storagehelpers.FindMatchingVolume with delayBinding=true: the smallest fitting PV."""
        spec = pvc.get("spec") or {}
        want = _claim_size(pvc)
        modes = set(spec.get("accessModes") or [])
        cls = claim_class(pvc)
        mode = spec.get("volumeMode") or "Filesystem"
        selector = spec.get("selector")
        best: dict[str, Any] | None = None
        best_size = 0.0
        for pv in self.store.iter("/persistentvolumes"):
            pspec = pv.get("spec") or {}
            name = pv["metadata"]["name"]
            if name in chosen or pv["metadata"].get("deletionTimestamp"):
                continue
            if (pspec.get("storageClassName") or "") != cls:
                continue
            if (pspec.get("volumeMode") or "Filesystem") != mode:
                continue
            ref = pspec.get("claimRef")
            if ref is not None:
                if (
                    ref.get("namespace") != pvc["metadata"]["namespace"]
                    or ref.get("name") != pvc["metadata"]["name"]
                ):
                    continue
                if ref.get("uid") and ref.get("uid") != pvc["metadata"]["uid"]:
                    continue
            elif (pv.get("status") or {}).get("phase") not in (None, "Available", "Pending"):
                continue
            if not modes <= set(pspec.get("accessModes") or []):
                continue
            size = parse_quantity((pspec.get("capacity") or {}).get("storage", "0"))
            if size < want:
                continue
            if selector and not _label_selector_matches(selector, pv["metadata"].get("labels") or {}):
                continue
            if not pv_node_affinity_matches(pv, node):
                continue
            if ref is not None:
                return pv  # a PV pre-bound to this claim wins
            if best is None or size < best_size:
                best, best_size = pv, size
        return best

    def _zone_ok(self, node: dict[str, Any], claims: dict[str, dict[str, Any] | None]) -> bool:
        """volumezone.Filter: bound PVs' zone/region labels must match the node's."""
        labels = node["metadata"].get("labels") or {}
        for pvc in claims.values():
            if pvc is None or not is_fully_bound(pvc):
                continue
            pv = self.store.peek("/persistentvolumes", "", pvc["spec"]["volumeName"])
            if pv is None:
                continue
            pv_labels = pv["metadata"].get("labels") or {}
            for key in (*ZONE_LABELS, *REGION_LABELS):
                value = pv_labels.get(key)
                if value is None:
                    continue
                # volumehelpers.LabelZonesToSet: "a__b" is a set of zones.
                allowed = set(value.split("__"))
                node_value = labels.get(key)
                if node_value is None:
                    # Fall back to the other spelling of the same topology key.
                    alt = {
                        ZONE_LABELS[0]: ZONE_LABELS[1],
                        ZONE_LABELS[1]: ZONE_LABELS[0],
                        REGION_LABELS[0]: REGION_LABELS[1],
                        REGION_LABELS[1]: REGION_LABELS[0],
                    }[key]
                    node_value = labels.get(alt)
                if node_value not in allowed:
                    return False
        return True

    # -- Score and select --------------------------------------------------------------------
    def _select(self, pod: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, Any]:
        owner = next(
            (r.get("uid") for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None
        )
        zone_counts: dict[str, int] = {}
        per_node: dict[str, tuple[int, int]] = {}
        for n in nodes:
            pods = self._node_pods(n["metadata"]["name"])
            same = sum(
                1
                for p in pods
                if owner and any(r.get("uid") == owner for r in p["metadata"].get("ownerReferences") or [])
            )
            per_node[n["metadata"]["name"]] = (same, len(pods))
            zone = (n["metadata"].get("labels") or {}).get(ZONE_LABELS[0], "")
            zone_counts[zone] = zone_counts.get(zone, 0) + same

        def score(n: dict[str, Any]) -> tuple[int, int, int]:
            same, total = per_node[n["metadata"]["name"]]
            zone = (n["metadata"].get("labels") or {}).get(ZONE_LABELS[0], "")
            return (same, zone_counts.get(zone, 0), total)

        best = min(score(n) for n in nodes)
        # schedule_one.go: selectHost picks at random among the best-scored nodes.
        return self.rng.choice([n for n in nodes if score(n) == best])

    # -- Reserve / PreBind (VolumeBinding) ---------------------------------------------------
    def _assume_volumes(
        self,
        pod: dict[str, Any],
        node: str,
        static: list[tuple[str, str]],
        provision: list[str],
        attempts: int,
    ) -> float | None:
        ns = pod["metadata"]["namespace"]
        uid = pod["metadata"]["uid"]
        binding = Binding(
            uid, node, static, provision, time.monotonic() + self.cluster.config.volume_bind_timeout
        )
        try:
            # bindAPIUpdate: prebind static PVs (GetBindVolumeToClaim), annotate claims to provision.
            for pv_name, claim in static:
                pv = self.api.get(self.pv_rt, "", pv_name)
                pvc = self.api.get(self.pvc_rt, ns, claim)
                ref = (pv.get("spec") or {}).get("claimRef") or {}
                if ref.get("uid") != pvc["metadata"]["uid"]:
                    pv["spec"]["claimRef"] = {
                        "kind": "PersistentVolumeClaim",
                        "namespace": ns,
                        "name": claim,
                        "uid": pvc["metadata"]["uid"],
                        "apiVersion": "v1",
                        "resourceVersion": pvc["metadata"]["resourceVersion"],
                    }
                    pv["metadata"].setdefault("annotations", {})[ANN_BOUND_BY_CONTROLLER] = "yes"
                    res = self.api.update(self.pv_rt, "", pv_name, pv, WriteOptions.scheduler())
                    binding.pv_versions[pv_name] = res.obj["metadata"]["resourceVersion"]
            for claim in provision:
                pvc = self.api.get(self.pvc_rt, ns, claim)
                anns = pvc["metadata"].setdefault("annotations", {})
                if anns.get(ANN_SELECTED_NODE) != node:
                    anns[ANN_SELECTED_NODE] = node
                    self.api.update(self.pvc_rt, ns, claim, pvc, WriteOptions.scheduler())
        except StatusError as e:
            return self._prebind_failed(pod, attempts, e.message)
        self._binding[uid] = binding
        self._binding_keys[uid] = (ns, pod["metadata"]["name"])
        return self._check_binding(pod, binding)

    def _check_binding(self, pod: dict[str, Any], b: Binding) -> float | None:
        """volumeBinder.checkBindings: all done, still waiting, or a reason to reschedule."""
        ns = pod["metadata"]["namespace"]
        node = self.store.peek("/nodes", "", b.node)
        err: str | None = None
        done = True
        if node is None:
            err = f'failed to get node "{b.node}": node "{b.node}" not found'
        for pv_name, claim in b.static if err is None else []:
            pv = self.store.peek("/persistentvolumes", "", pv_name)
            pvc = self.store.peek("/persistentvolumeclaims", ns, claim)
            if pv is None or pvc is None:
                err = f"failed to check binding: {'pv' if pv is None else 'pvc'} not found"
                break
            assert node is not None
            if not pv_node_affinity_matches(pv, node):
                err = f'pv "{pv_name}" node affinity doesn\'t match node "{b.node}": no matching NodeSelectorTerms'
                break
            ref = (pv.get("spec") or {}).get("claimRef") or {}
            if not ref.get("uid"):
                err = f'ClaimRef got reset for pv "{pv_name}"'
                break
            if not is_fully_bound(pvc):
                done = False
        for claim in b.provision if err is None else []:
            pvc = self.store.peek("/persistentvolumeclaims", ns, claim)
            if pvc is None:
                err = f'failed to check provisioning pvc: pvc "{ns}/{claim}" not found'
                break
            if (pvc["metadata"].get("annotations") or {}).get(ANN_SELECTED_NODE) != b.node:
                # The provisioner removes the annotation when provisioning fails for good.
                err = f'provisioning failed for PVC "{claim}"'
                break
            vol = (pvc.get("spec") or {}).get("volumeName")
            if vol:
                pv = self.store.peek("/persistentvolumes", "", vol)
                if pv is None:
                    done = False
                    continue
                assert node is not None
                if not pv_node_affinity_matches(pv, node):
                    err = f'pv "{vol}" node affinity doesn\'t match node "{b.node}": no matching NodeSelectorTerms'
                    break
            if not is_fully_bound(pvc):
                done = False
        if err is None and not done and time.monotonic() > b.deadline:
            err = "context deadline exceeded"
        if err is not None:
            self._forget(b.uid)
            attempts, _ = self._backoff.get(b.uid, (0, 0.0))
            return self._prebind_failed(pod, attempts, f"binding volumes: {err}")
        if not done:
            # BindPodVolumes polls every second; kubesim also wakes up on claim and volume changes.
            return 1.0
        self._forget(b.uid)
        self._bind_and_record(pod, b.node)
        return None

    def _prebind_failed(self, pod: dict[str, Any], attempts: int, err: str) -> float:
        # runPreBindPlugins: an error status; handleSchedulingFailure with reason SchedulerError.
        return self._fail(pod, attempts, "SchedulerError", f'running PreBind plugin "VolumeBinding": {err}')

    def _forget(self, uid: str) -> None:
        self._binding.pop(uid, None)
        self._binding_keys.pop(uid, None)

    # -- Bind --------------------------------------------------------------------------------
    def _bind_and_record(self, pod: dict[str, Any], node: str) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        try:
            bound = bind_pod(self.cluster, ns, name, node, uid=pod["metadata"]["uid"])
        except StatusError as e:
            attempts, _ = self._backoff.get(pod["metadata"]["uid"], (0, 0.0))
            self._fail(pod, attempts, "SchedulerError", f'running Bind plugin "DefaultBinder": {e.message}')
            return
        self._backoff.pop(pod["metadata"]["uid"], None)
        self._unschedulable.discard((ns, name))
        # schedule_one.go: bindingCycle -> "Successfully assigned %v/%v to %v"
        events.record(
            self.api,
            bound,
            "Normal",
            "Scheduled",
            f"Successfully assigned {ns}/{name} to {node}",
            SCHEDULER_NAME,
        )

    def _set_unschedulable(self, pod: dict[str, Any], reason: str, message: str, event: bool = True) -> None:
        """handleSchedulingFailure: the FailedScheduling event and the PodScheduled=False condition."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        cur = self.api.get_or_none(self.pod_rt, ns, name)
        if cur is None or cur["metadata"]["uid"] != pod["metadata"]["uid"]:
            return
        if event:
            events.record(self.api, cur, "Warning", "FailedScheduling", message, SCHEDULER_NAME)
        status = cur.setdefault("status", {})
        conds = status.setdefault("conditions", [])
        old = next((c for c in conds if c.get("type") == "PodScheduled"), None)
        new = {
            "type": "PodScheduled",
            "status": "False",
            "lastProbeTime": None,
            "lastTransitionTime": old["lastTransitionTime"]
            if old is not None and old.get("status") == "False" and old.get("lastTransitionTime")
            else now(),
            "reason": reason,
            "message": message,
        }
        if old is not None and all(old.get(k) == new[k] for k in ("status", "reason", "message")):
            return
        status["conditions"] = [c for c in conds if c.get("type") != "PodScheduled"] + [new]
        status.pop("nominatedNodeName", None)
        try:
            self.api.update(
                self.pod_rt,
                ns,
                name,
                cur,
                WriteOptions.scheduler(),
                subresource="status",
                internal_patch=True,
            )
        except StatusError as e:
            if e.code not in (404, 409):
                raise

    # -- pods/binding over HTTP --------------------------------------------------------------
    async def _binding_handler(
        self, request: web.Request, rt: ResourceType, ns: str, name: str, user: auth.UserInfo
    ) -> web.StreamResponse:
        if request.method != "POST":
            raise StatusError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError as e:
            raise bad_request(f"invalid Binding: {e}") from None
        target = (body or {}).get("target") or {}
        if not target.get("name"):
            raise StatusError(
                422, "Invalid", f'Binding.core "{name}" is invalid: target.name: Required value', {}
            )
        anns = ((body or {}).get("metadata") or {}).get("annotations") or {}
        bind_pod(self.cluster, ns, name, str(target["name"]), annotations=anns)
        return web.json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
            status=201,
        )


def bind_pod(
    cluster: Cluster,
    ns: str,
    name: str,
    node: str,
    *,
    uid: str | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """pkg/registry/core/pod/storage/storage.go: BindingREST.assignPod / setPodHostAndAnnotations.

    One write of the stored pod (no strategy, as the Binding REST storage does): spec.nodeName,
    the binding's annotations, and the PodScheduled=True condition.
    """
    store = cluster.api.store
    pod = store.get("/pods", ns, name)
    if pod is None:
        raise not_found("pods", "", name)
    if uid is not None and pod["metadata"]["uid"] != uid:
        raise conflict("pods/binding", "", name, f"Precondition failed: UID in precondition: {uid}")
    if pod["metadata"].get("deletionTimestamp"):
        raise conflict("pods/binding", "", name, f"pod {name} is being deleted, cannot be assigned to a host")
    current = (pod.get("spec") or {}).get("nodeName")
    if current:
        raise conflict("pods/binding", "", name, f'pod {name} is already assigned to node "{current}"')
    pod["spec"]["nodeName"] = node
    if annotations:
        pod["metadata"].setdefault("annotations", {}).update(annotations)
    status = pod.setdefault("status", {})
    conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
    conds.append(
        {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now()}
    )
    status["conditions"] = conds
    status.pop("nominatedNodeName", None)
    stored = store.put("/pods", pod)
    out: dict[str, Any] = deep_copy(stored)
    out["apiVersion"], out["kind"] = "v1", "Pod"
    return out


def _claim_size(pvc: dict[str, Any]) -> float:
    req = (((pvc.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
    return parse_quantity(req) if req is not None else 0.0


def _topology_matches(terms: list[dict[str, Any]], node: dict[str, Any]) -> bool:
    """v1helper.MatchTopologySelectorTerms: no terms match everything; terms are ORed."""
    if not terms:
        return True
    labels = node["metadata"].get("labels") or {}
    for term in terms:
        exprs = term.get("matchLabelExpressions") or []
        if exprs and all(labels.get(e.get("key", "")) in (e.get("values") or []) for e in exprs):
            return True
    return False


def _label_selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    from ..selectors import labels_match, selector_from_label_selector

    reqs = selector_from_label_selector(selector)
    return reqs is None or labels_match(reqs, labels)


__all__ = [
    "ANN_BIND_COMPLETED",
    "ANN_SELECTED_NODE",
    "Scheduler",
    "bind_pod",
    "go_duration",
    "node_selector_matches",
    "pod_claim_names",
    "pod_matches_node_affinity",
    "pv_node_affinity_matches",
]
