"""The ReplicaSet and Deployment controllers, and the helpers the workload controllers share.

- ``ReplicaSetController`` follows ``pkg/controller/replicaset/replica_set.go``: claim the pods
  (``ClaimPods``), ``manageReplicas`` (create pods ``<rs>-<5 chars>`` in slow-start batches, or
  delete the lowest-ranked ones), ``calculateStatus`` and ``updateReplicaSetStatus``.
- ``DeploymentController`` follows ``pkg/controller/deployment``: ``syncDeployment``
  (``deployment_controller.go``), ``getNewReplicaSet``/``scale``/``syncDeploymentStatus``
  (``sync.go``), ``rolloutRolling`` (``rolling.go``), ``rolloutRecreate`` (``recreate.go``),
  ``syncRolloutStatus`` (``progress.go``) and ``deployment/util/deployment_util.go``.
- The helpers at the top are those of ``pkg/controller/controller_utils.go``,
  ``pkg/controller/controller_ref_manager.go`` and ``pkg/api/v1/pod/util.go``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any, cast

from ..errors import StatusError
from ..events import record
from ..meta import now, parse_time
from ..selectors import Requirement, labels_match, selector_from_label_selector
from ..store import JSON, Change, deep_copy
from .base import Controller

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..resources import ResourceType

POD_TEMPLATE_HASH = "pod-template-hash"  # apps.DefaultDeploymentUniqueLabelKey
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


# == pkg/controller/controller_utils.go and friends ============================================
class SyncError(Exception):
    """A sync that failed part-way; the key is retried with the workqueue's exponential backoff."""


class RetryBackoff:
    """client-go ``workqueue.ItemExponentialFailureRateLimiter`` (5 ms doubling, upstream up to 1000 s)."""

    def __init__(self, start: float, cap: float) -> None:
        self.start = start
        self.cap = cap
        self._failures: dict[Hashable, int] = {}

    def failed(self, key: Hashable) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        # default_rate_limiters.go: the exponent is capped so the delay never overflows
        return float(min(self.cap, self.start * (2.0 ** min(n, 64))))

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)


_FAULT_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def inject_fault(
    cluster: Cluster, controller: str, verb: str, resource: str, namespace: str, name: str, owner: str
) -> None:
    """Fault kind ``workload``: fail one write of a workload controller as the API server would
    (match ``controller``, ``verb`` create/delete, ``resource`` pods/persistentvolumeclaims/
    replicasets, ``namespace``, ``name`` — the generateName prefix for generated names — and
    ``owner``, the controller object's name). The controller handles it like any API error."""
    f = cluster.faults.check(
        "workload",
        controller=controller,
        verb=verb,
        resource=resource,
        namespace=namespace,
        name=name,
        owner=owner,
    )
    if f is not None:
        raise StatusError(
            f.code,
            _FAULT_REASONS.get(f.code, "InternalError"),
            f.message or f"kubesim: injected failure of {verb} {resource} {namespace}/{name}",
        )


def error_text(e: BaseException) -> str:
    """What Go's ``err.Error()`` prints for an API error: the Status message."""
    if isinstance(e, StatusError):
        return e.message
    return str(e)


def aggregate(errors: list[str]) -> str:
    """``utilerrors.NewAggregate(errs).Error()``: one message alone, several as ``[a, b]``."""
    if len(errors) == 1:
        return errors[0]
    return "[" + ", ".join(errors) + "]"


def fnv32(data: bytes, variant_a: bool = False) -> int:
    """``hash/fnv`` New32 (FNV-1) or New32a (FNV-1a)."""
    h = 0x811C9DC5
    for b in data:
        if variant_a:
            h ^= b
            h = (h * 0x01000193) & 0xFFFFFFFF
        else:
            h = (h * 0x01000193) & 0xFFFFFFFF
            h ^= b
    return h


def safe_encode(s: str) -> str:
    """``k8s.io/apimachinery/pkg/util/rand.SafeEncodeString``."""
    return "".join(_SAFE_ALPHANUMS[ord(c) % len(_SAFE_ALPHANUMS)] for c in s)


def go_json(obj: Any) -> bytes:
    """``json.Marshal`` of a ``map[string]interface{}``: sorted keys, compact, HTML characters escaped."""
    s = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def compute_hash(template: JSON, collision_count: int | None) -> str:
    """``controller.ComputeHash``: FNV-1a of the template (JSON here, spew upstream) and the collision count."""
    data = go_json(template)
    if collision_count is not None:
        data += int(collision_count & 0xFFFFFFFF).to_bytes(8, "little")
    return safe_encode(str(fnv32(data, variant_a=True)))


def controller_ref(obj: JSON) -> JSON | None:
    """``metav1.GetControllerOf``."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def new_controller_ref(owner: JSON, api_version: str, kind: str) -> JSON:
    """``metav1.NewControllerRef``: controller and blockOwnerDeletion set."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def selector_reqs(sel: JSON | None) -> list[Requirement] | None:
    """``metav1.LabelSelectorAsSelector``; None for a nil or unparsable selector (matches nothing)."""
    try:
        return selector_from_label_selector(sel)
    except StatusError:
        return None


def selector_matches(reqs: list[Requirement] | None, obj: JSON) -> bool:
    if reqs is None:
        return False
    return labels_match(reqs, (obj.get("metadata") or {}).get("labels"))


def pod_condition(pod: JSON, type_: str) -> JSON | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def is_pod_ready(pod: JSON) -> bool:
    """``podutil.IsPodReady``."""
    c = pod_condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def is_pod_available(pod: JSON, min_ready_seconds: int, at: float | None = None) -> bool:
    """``podutil.IsPodAvailable``: Ready for longer than minReadySeconds."""
    if not is_pod_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    c = pod_condition(pod, "Ready") or {}
    ltt = c.get("lastTransitionTime")
    if not ltt:
        return False
    t = parse_time(ltt).timestamp()
    return t + min_ready_seconds < (time.time() if at is None else at)


def available_in(pod: JSON, min_ready_seconds: int) -> float | None:
    """Seconds until a Ready pod becomes available (None when it is not Ready)."""
    c = pod_condition(pod, "Ready")
    if c is None or c.get("status") != "True" or not c.get("lastTransitionTime"):
        return None
    t = parse_time(c["lastTransitionTime"]).timestamp()
    return max(0.0, t + min_ready_seconds - time.time())


def phase(pod: JSON) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def is_pod_active(pod: JSON) -> bool:
    """``controller.IsPodActive`` (``FilterActivePods``)."""
    return phase(pod) not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def is_pod_terminating(pod: JSON) -> bool:
    """``controller.IsPodTerminating`` (``CountTerminatingPods``)."""
    return phase(pod) not in ("Succeeded", "Failed") and bool(pod["metadata"].get("deletionTimestamp"))


def pod_from_template(template: JSON, parent_name: str, owner_ref: JSON | None) -> JSON:
    """``controller.GetPodFromTemplate``: labels, annotations and finalizers of the template,
    ``generateName`` ``<parent>-``, the controller reference and a copy of the template's spec."""
    tmeta = template.get("metadata") or {}
    meta: JSON = {"generateName": f"{parent_name}-"}
    if tmeta.get("labels"):
        meta["labels"] = dict(tmeta["labels"])
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    if owner_ref is not None:
        meta["ownerReferences"] = [owner_ref]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": deep_copy(template.get("spec") or {}),
    }


def _ready_time(pod: JSON) -> float:
    c = pod_condition(pod, "Ready")
    if c is None or c.get("status") != "True" or not c.get("lastTransitionTime"):
        return 0.0
    return parse_time(c["lastTransitionTime"]).timestamp()


def _restarts(pod: JSON) -> int:
    st = pod.get("status") or {}
    return max(
        [int(c.get("restartCount") or 0) for c in (st.get("containerStatuses") or [])] or [0],
    )


def _deletion_cost(pod: JSON) -> int:
    try:
        return int(((pod["metadata"].get("annotations") or {}).get(POD_DELETION_COST)) or 0)
    except ValueError:
        return 0


def active_pods_order(pods: list[JSON], ranks: dict[str, int] | None = None) -> list[JSON]:
    """``controller.ActivePodsWithRanks.Less``: the pods to delete first come first — unassigned,
    then Pending < Unknown < Running, not ready, lower deletion cost, more pods of the owner on
    the same node, ready for less time, more restarts, newer."""
    order = {"Pending": 0, "Unknown": 1, "Running": 2}

    def key(p: JSON) -> tuple[Any, ...]:
        created = p["metadata"].get("creationTimestamp")
        ts = parse_time(created).timestamp() if created else -math.inf
        return (
            1 if (p.get("spec") or {}).get("nodeName") else 0,
            order.get(phase(p), 0),
            1 if is_pod_ready(p) else 0,
            _deletion_cost(p),
            -(ranks or {}).get(p["metadata"]["name"], 0),
            -_ready_time(p) if is_pod_ready(p) else 0,
            -_restarts(p),
            -ts,
        )

    return sorted(pods, key=key)


class RefManager:
    """``controller.ControllerRefManager.ClaimObject``: keep owned objects that still match, adopt
    matching orphans (``AdoptPod``/``AdoptReplicaSet``: a patch adding the controller reference,
    and for Jobs the tracking finalizer), release owned objects that no longer match."""

    def __init__(
        self,
        api: Any,
        rt: ResourceType,
        owner: JSON,
        owner_api_version: str,
        owner_kind: str,
        reqs: list[Requirement] | None,
        match_filter: Callable[[JSON], bool] | None = None,
        finalizers: tuple[str, ...] = (),
    ) -> None:
        self.api = api
        self.rt = rt
        self.owner = owner
        self.api_version = owner_api_version
        self.kind = owner_kind
        self.reqs = reqs
        self.filter = match_filter
        self.finalizers = finalizers

    def _match(self, obj: JSON) -> bool:
        return selector_matches(self.reqs, obj) and (self.filter is None or self.filter(obj))

    def claim(self, objs: Iterable[JSON]) -> list[JSON]:
        out: list[JSON] = []
        owner_uid = self.owner["metadata"]["uid"]
        owner_deleting = bool(self.owner["metadata"].get("deletionTimestamp"))
        for obj in objs:
            ref = controller_ref(obj)
            if ref is not None:
                if ref.get("uid") != owner_uid:
                    continue  # owned by someone else
                if self._match(obj):
                    out.append(obj)
                    continue
                if owner_deleting:
                    continue
                self._release(obj)
                continue
            if owner_deleting or not self._match(obj) or obj["metadata"].get("deletionTimestamp"):
                continue
            fresh = self.api.store.peek(
                self.owner_storage_key, self.owner["metadata"]["namespace"], self.owner["metadata"]["name"]
            )
            # RecheckDeletionTimestamp: adopt only while the owner is live and the same object.
            if (
                fresh is None
                or fresh["metadata"]["uid"] != owner_uid
                or fresh["metadata"].get("deletionTimestamp")
            ):
                continue
            adopted = self._adopt(obj)
            if adopted is not None:
                out.append(adopted)
        return out

    @property
    def owner_storage_key(self) -> str:
        group = self.api_version.rpartition("/")[0]
        plural = {
            "StatefulSet": "statefulsets",
            "ReplicaSet": "replicasets",
            "Deployment": "deployments",
        }.get(self.kind, "jobs")
        return f"{group}/{plural}"

    def _adopt(self, obj: JSON) -> JSON | None:
        meta = obj["metadata"]
        cur = self.api.get_or_none(self.rt, meta.get("namespace", ""), meta["name"])
        if cur is None or cur["metadata"]["uid"] != meta["uid"]:
            return None
        refs = list(cur["metadata"].get("ownerReferences") or [])
        refs.append(new_controller_ref(self.owner, self.api_version, self.kind))
        cur["metadata"]["ownerReferences"] = refs
        fins = list(cur["metadata"].get("finalizers") or [])
        for f in self.finalizers:
            if f not in fins:
                fins.append(f)
        if fins:
            cur["metadata"]["finalizers"] = fins
        try:
            return dict(
                self.api.update(
                    self.rt, meta.get("namespace", ""), meta["name"], cur, internal_patch=True
                ).obj
            )
        except StatusError as e:
            if e.code in (404, 409, 422):
                return None
            raise

    def _release(self, obj: JSON) -> None:
        meta = obj["metadata"]
        cur = self.api.get_or_none(self.rt, meta.get("namespace", ""), meta["name"])
        if cur is None or cur["metadata"]["uid"] != meta["uid"]:
            return
        uid = self.owner["metadata"]["uid"]
        refs = [r for r in cur["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
        if refs:
            cur["metadata"]["ownerReferences"] = refs
        else:
            cur["metadata"].pop("ownerReferences", None)
        try:
            self.api.update(self.rt, meta.get("namespace", ""), meta["name"], cur, internal_patch=True)
        except StatusError as e:
            if e.code not in (404, 409, 422):
                raise


def owners_for(change: Change, kind: str) -> set[tuple[str, str]]:
    """(namespace, name) of the controllers of ``kind`` owning the changed object, old or new."""
    out: set[tuple[str, str]] = set()
    for obj in (change.obj, change.old):
        if obj is None:
            continue
        ref = controller_ref(obj)
        if ref is not None and ref.get("kind") == kind:
            out.add((obj["metadata"].get("namespace", ""), str(ref.get("name"))))
    return out


def slow_start_batch(count: int, fn: Callable[[int], str | None]) -> tuple[int, list[str]]:
    """``controller.slowStartBatch``: batches of 1, 2, 4, ...; a batch with errors ends the run.
    ``fn`` returns an error message or None. Returns (successes, errors)."""
    successes = 0
    errors: list[str] = []
    remaining = count
    batch = min(remaining, 1)
    i = 0
    while batch > 0:
        batch_errors: list[str] = []
        for _ in range(batch):
            err = fn(i)
            i += 1
            if err is None:
                successes += 1
            else:
                batch_errors.append(err)
        errors.extend(batch_errors)
        if batch_errors:
            break
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, errors


def set_condition(conditions: list[JSON], cond: JSON, keep_same: bool = True) -> list[JSON]:
    """``SetDeploymentCondition``/``SetCondition``: same status and reason → unchanged; same status →
    the transition time is kept; the condition replaces any other of its type."""
    out = []
    current = next((c for c in conditions if c.get("type") == cond["type"]), None)
    if current is not None and keep_same:
        if current.get("status") == cond["status"] and current.get("reason") == cond.get("reason"):
            return conditions
        if current.get("status") == cond["status"]:
            cond = dict(cond, lastTransitionTime=current.get("lastTransitionTime"))
    for c in conditions:
        if c.get("type") != cond["type"]:
            out.append(c)
    out.append(cond)
    return out


def _int_or_percent(v: Any, total: int, round_up: bool) -> int:
    """``intstr.GetScaledValueFromIntOrPercent``."""
    if v is None:
        return 0
    if isinstance(v, int):
        return v
    s = str(v)
    if s.endswith("%"):
        pct = int(s[:-1])
        val = pct * total / 100
        return math.ceil(val) if round_up else math.floor(val)
    return int(s)


# == pkg/controller/replicaset =================================================================
class ReplicaSetController(Controller):
    name = "replicaset"
    component = "replicaset-controller"
    BURST_REPLICAS = 500  # replicaset.BurstReplicas

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.rs_rt = self.api.resource("apps", "v1", "replicasets")
        self.pod_rt = self.api.resource("", "v1", "pods")
        cfg = cluster.config
        self.backoff = RetryBackoff(cfg.workload_retry_start, cfg.workload_retry_max)

    # -- wiring (addPod/updatePod/deletePod, addRS/updateRS) --------------------------------
    def keys_for(self, change: Change) -> Iterable[Hashable]:
        if change.key == "apps/replicasets":
            if change.type != "DELETED":
                yield (change.obj["metadata"]["namespace"], change.obj["metadata"]["name"])
        elif change.key == "/pods":
            owners = owners_for(change, "ReplicaSet")
            yield from owners
            if not owners and change.type != "DELETED":
                # An orphan: every ReplicaSet whose selector matches it (getPodReplicaSets).
                ns = change.obj["metadata"].get("namespace", "")
                for rs in self.store.iter("apps/replicasets", ns):
                    if selector_matches(selector_reqs((rs.get("spec") or {}).get("selector")), change.obj):
                        yield (ns, rs["metadata"]["name"])

    def initial_keys(self) -> Iterable[Hashable]:
        for rs in self.store.iter("apps/replicasets"):
            yield (rs["metadata"]["namespace"], rs["metadata"]["name"])

    async def reconcile(self, key: Hashable) -> float | None:
        ns, name = cast(tuple[str, str], key)
        try:
            again = self.sync_replica_set(ns, name)
        except SyncError:
            return self.backoff.failed(key)
        self.backoff.forget(key)
        return again

    # -- replica_set.go: syncReplicaSet ------------------------------------------------------
    def sync_replica_set(self, ns: str, name: str) -> float | None:
        rs = self.api.get_or_none(self.rs_rt, ns, name)
        if rs is None:
            return None
        spec = rs.get("spec") or {}
        reqs = selector_reqs(spec.get("selector"))
        if reqs is None:
            return None  # "error converting pod selector to selector": not retried
        pods = [p for p in self.store.iter("/pods", ns) if is_pod_active(p)]
        manager = RefManager(self.api, self.pod_rt, rs, "apps/v1", "ReplicaSet", reqs)
        filtered = manager.claim(pods)
        manage_err: tuple[str, str] | None = None
        if not rs["metadata"].get("deletionTimestamp"):
            manage_err = self.manage_replicas(filtered, rs)
        # calculateStatus over the pods as they were listed (the informer has not seen our writes).
        status = self.calculate_status(rs, filtered, manage_err)
        updated = self.update_status(rs, status)
        if manage_err is not None:
            raise SyncError(manage_err[1])
        min_ready = int(spec.get("minReadySeconds") or 0)
        want = int(spec.get("replicas", 1))
        st = updated.get("status") or {}
        if (
            min_ready > 0
            and int(st.get("readyReplicas") or 0) == want
            and int(st.get("availableReplicas") or 0) != want
        ):
            return float(min_ready)
        return None

    def manage_replicas(self, filtered: list[JSON], rs: JSON) -> tuple[str, str] | None:
        """``manageReplicas``; returns (condition reason, error) on failure."""
        want = int((rs.get("spec") or {}).get("replicas", 1))
        diff = len(filtered) - want
        ns = rs["metadata"]["namespace"]
        if diff < 0:
            count = min(-diff, self.BURST_REPLICAS)
            template = (rs.get("spec") or {}).get("template") or {}
            ref = new_controller_ref(rs, "apps/v1", "ReplicaSet")

            def create(_i: int) -> str | None:
                pod = pod_from_template(template, rs["metadata"]["name"], ref)
                try:
                    inject_fault(
                        self.cluster,
                        self.name,
                        "create",
                        "pods",
                        ns,
                        pod["metadata"]["generateName"],
                        rs["metadata"]["name"],
                    )
                    created = self.api.create(self.pod_rt, ns, pod).obj
                except StatusError as e:
                    # controller_utils.go RealPodControl.createPods: FailedCreate "Error creating: ..."
                    record(
                        self.api,
                        rs,
                        "Warning",
                        "FailedCreate",
                        f"Error creating: {error_text(e)}",
                        self.component,
                    )
                    return error_text(e)
                record(
                    self.api,
                    rs,
                    "Normal",
                    "SuccessfulCreate",
                    f"Created pod: {created['metadata']['name']}",
                    self.component,
                )
                return None

            _, errors = slow_start_batch(count, create)
            if errors:
                return ("FailedCreate", aggregate(errors))
        elif diff > 0:
            count = min(diff, self.BURST_REPLICAS)
            # getPodsToDelete: rank by the number of the set's pods on the same node.
            per_node: dict[str, int] = {}
            for p in filtered:
                node = (p.get("spec") or {}).get("nodeName") or ""
                per_node[node] = per_node.get(node, 0) + 1
            ranks = {
                p["metadata"]["name"]: per_node.get((p.get("spec") or {}).get("nodeName") or "", 0)
                for p in filtered
            }
            victims = active_pods_order(filtered, ranks)[:count]
            errors = []
            for p in victims:
                try:
                    inject_fault(
                        self.cluster,
                        self.name,
                        "delete",
                        "pods",
                        ns,
                        p["metadata"]["name"],
                        rs["metadata"]["name"],
                    )
                    self.api.delete(self.pod_rt, ns, p["metadata"]["name"])
                except StatusError as e:
                    if e.code == 404:
                        continue
                    record(
                        self.api,
                        rs,
                        "Warning",
                        "FailedDelete",
                        f"Error deleting: {error_text(e)}",
                        self.component,
                    )
                    errors.append(error_text(e))
                    continue
                record(
                    self.api,
                    rs,
                    "Normal",
                    "SuccessfulDelete",
                    f"Deleted pod: {p['metadata']['name']}",
                    self.component,
                )
            if errors:
                return ("FailedDelete", aggregate(errors))
        return None

    def calculate_status(self, rs: JSON, filtered: list[JSON], manage_err: tuple[str, str] | None) -> JSON:
        """``replica_set_utils.go: calculateStatus``."""
        spec = rs.get("spec") or {}
        tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        status: JSON = deep_copy(rs.get("status") or {})
        fully = sum(
            1
            for p in filtered
            if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in tlabels.items())
        )
        status["replicas"] = len(filtered)
        status["fullyLabeledReplicas"] = fully
        status["readyReplicas"] = sum(1 for p in filtered if is_pod_ready(p))
        status["availableReplicas"] = sum(1 for p in filtered if is_pod_available(p, min_ready))
        # replica_set_utils.go: calculateStatus sets ReplicaFailure only when there is none
        # (`manageReplicasErr != nil && failureCond == nil`: later errors leave it, message and all,
        # so a failing retry writes no status) and removes it once a sync succeeds.
        conds = list(status.get("conditions") or [])
        failure = next((c for c in conds if c.get("type") == "ReplicaFailure"), None)
        if manage_err is None:
            conds = [c for c in conds if c.get("type") != "ReplicaFailure"]
        elif failure is None:
            conds.append(
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "lastTransitionTime": now(),
                    "reason": manage_err[0],
                    "message": manage_err[1],
                }
            )
        if conds:
            status["conditions"] = conds
        else:
            status.pop("conditions", None)
        return status

    def update_status(self, rs: JSON, status: JSON) -> JSON:
        """``updateReplicaSetStatus``: observedGeneration follows the spec's generation."""
        status = {k: v for k, v in status.items() if v not in (0, None) or k == "replicas"}
        status["observedGeneration"] = rs["metadata"].get("generation", 1)
        if status == (rs.get("status") or {}):
            return rs
        cur = deep_copy(rs)
        cur["status"] = status
        cur["metadata"].pop("resourceVersion", None)
        try:
            return dict(
                self.api.update(
                    self.rs_rt,
                    rs["metadata"]["namespace"],
                    rs["metadata"]["name"],
                    cur,
                    subresource="status",
                    internal_patch=True,
                ).obj
            )
        except StatusError as e:
            if e.code == 404:
                return rs
            raise SyncError(error_text(e)) from None


# == pkg/controller/deployment =================================================================
def _replicas(obj: JSON | None) -> int:
    if obj is None:
        return 0
    return int((obj.get("spec") or {}).get("replicas", 1))


def _status_int(obj: JSON | None, field: str) -> int:
    if obj is None:
        return 0
    return int((obj.get("status") or {}).get(field) or 0)


def _created(obj: JSON) -> tuple[str, str]:
    return (obj["metadata"].get("creationTimestamp") or "", obj["metadata"]["name"])


def _revision(rs: JSON) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION) or 0)
    except ValueError:
        return 0


def _template_without_hash(template: JSON) -> JSON:
    t: JSON = deep_copy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH, None)
        if not labels:
            t["metadata"].pop("labels", None)
    if isinstance(t.get("metadata"), dict) and not t["metadata"]:
        t.pop("metadata")
    return t


def equal_ignore_hash(a: JSON, b: JSON) -> bool:
    """``deploymentutil.EqualIgnoreHash``."""
    return go_json(_template_without_hash(a)) == go_json(_template_without_hash(b))


def is_rolling(d: JSON) -> bool:
    return bool(((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate")


def resolve_fenceposts(d: JSON) -> tuple[int, int]:
    """``deploymentutil.ResolveFenceposts``: surge rounds up, unavailability down; never both 0."""
    ru = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    desired = _replicas(d)
    surge = _int_or_percent(ru.get("maxSurge", "25%"), desired, True)
    unavailable = _int_or_percent(ru.get("maxUnavailable", "25%"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: JSON) -> int:
    if not is_rolling(d):
        return 0
    return resolve_fenceposts(d)[0]


def max_unavailable(d: JSON) -> int:
    if not is_rolling(d) or _replicas(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], _replicas(d))


def filter_active(rss: list[JSON | None]) -> list[JSON]:
    """``controller.FilterActiveReplicaSets``: replicas > 0."""
    return [rs for rs in rss if rs is not None and _replicas(rs) > 0]


def replica_count(rss: Iterable[JSON | None]) -> int:
    return sum(_replicas(rs) for rs in rss if rs is not None)


def new_rs_new_replicas(d: JSON, all_rss: list[JSON | None], new_rs: JSON) -> int:
    """``deploymentutil.NewRSNewReplicas``."""
    if not is_rolling(d):
        return _replicas(d)
    if _replicas(new_rs) == _replicas(d):
        return _replicas(new_rs)
    surge = max_surge(d)
    current = replica_count(all_rss)
    max_total = _replicas(d) + surge
    if current >= max_total:
        return _replicas(new_rs)
    scale_up = max_total - current
    scale_up = min(scale_up, _replicas(d) - _replicas(new_rs))
    return _replicas(new_rs) + scale_up


def deployment_complete(d: JSON, status: JSON) -> bool:
    """``deploymentutil.DeploymentComplete``."""
    want = _replicas(d)
    return (
        int(status.get("updatedReplicas") or 0) == want
        and int(status.get("replicas") or 0) == want
        and int(status.get("availableReplicas") or 0) == want
        and int(status.get("observedGeneration") or 0) >= int(d["metadata"].get("generation") or 0)
    )


def deployment_progressing(d: JSON, new_status: JSON) -> bool:
    """``deploymentutil.DeploymentProgressing``."""
    old = d.get("status") or {}
    old_old = int(old.get("replicas") or 0) - int(old.get("updatedReplicas") or 0)
    new_old = int(new_status.get("replicas") or 0) - int(new_status.get("updatedReplicas") or 0)
    return (
        int(new_status.get("updatedReplicas") or 0) > int(old.get("updatedReplicas") or 0)
        or new_old < old_old
        or int(new_status.get("readyReplicas") or 0) > int(old.get("readyReplicas") or 0)
        or int(new_status.get("availableReplicas") or 0) > int(old.get("availableReplicas") or 0)
    )


def _condition(type_: str, status: str, reason: str, message: str) -> JSON:
    t = now()
    return {
        "type": type_,
        "status": status,
        "lastUpdateTime": t,
        "lastTransitionTime": t,
        "reason": reason,
        "message": message,
    }


class DeploymentController(Controller):
    name = "deployment"
    component = "deployment-controller"

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.d_rt = self.api.resource("apps", "v1", "deployments")
        self.rs_rt = self.api.resource("apps", "v1", "replicasets")
        cfg = cluster.config
        self.backoff = RetryBackoff(cfg.workload_retry_start, cfg.workload_retry_max)

    # -- wiring (deployment_controller.go: addReplicaSet, updateReplicaSet, deletePod) ------------
    def keys_for(self, change: Change) -> Iterable[Hashable]:
        if change.key == "apps/deployments":
            if change.type != "DELETED":
                yield (change.obj["metadata"]["namespace"], change.obj["metadata"]["name"])
        elif change.key == "apps/replicasets":
            owners = owners_for(change, "Deployment")
            yield from owners
            if not owners and change.type != "DELETED":
                ns = change.obj["metadata"]["namespace"]
                for d in self.store.iter("apps/deployments", ns):
                    if selector_matches(selector_reqs((d.get("spec") or {}).get("selector")), change.obj):
                        yield (ns, d["metadata"]["name"])
        elif change.key == "/pods" and change.type == "DELETED":
            # deletePod: a Recreate deployment waits for its old pods to go.
            for ns, rs_name in owners_for(change, "ReplicaSet"):
                rs = self.store.peek("apps/replicasets", ns, rs_name)
                ref = controller_ref(rs) if rs is not None else None
                if ref is not None and ref.get("kind") == "Deployment":
                    dep = self.store.peek("apps/deployments", ns, str(ref.get("name")))
                    if dep is not None and not is_rolling(dep):
                        yield (ns, dep["metadata"]["name"])

    def initial_keys(self) -> Iterable[Hashable]:
        for d in self.store.iter("apps/deployments"):
            yield (d["metadata"]["namespace"], d["metadata"]["name"])

    async def reconcile(self, key: Hashable) -> float | None:
        ns, name = cast(tuple[str, str], key)
        try:
            again = self.sync_deployment(ns, name)
        except SyncError:
            return self.backoff.failed(key)
        except StatusError as e:
            if e.code in (404, 409):
                return self.backoff.failed(key)
            raise
        self.backoff.forget(key)
        return again

    def _get(self, ns: str, name: str) -> JSON | None:
        return self.api.get_or_none(self.d_rt, ns, name)

    # -- deployment_controller.go: syncDeployment ---------------------------------------------
    def sync_deployment(self, ns: str, name: str) -> float | None:
        d = self._get(ns, name)
        if d is None:
            return None
        spec = d.get("spec") or {}
        if spec.get("selector") == {}:
            record(
                self.api,
                d,
                "Warning",
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
                self.component,
            )
            if int((d.get("status") or {}).get("observedGeneration") or 0) < int(
                d["metadata"].get("generation") or 0
            ):
                st = deep_copy(d.get("status") or {})
                st["observedGeneration"] = d["metadata"].get("generation")
                self._update_status(d, st)
            return None
        reqs = selector_reqs(spec.get("selector"))
        if reqs is None:
            return None
        rs_list = self._replica_sets_for(d, reqs)
        if d["metadata"].get("deletionTimestamp"):
            new_rs, old_rss = self._all_replica_sets(d, rs_list, False)
            return self._sync_status(d, [*old_rss, new_rs], new_rs)
        d = self._check_paused_conditions(d)
        if spec.get("paused"):
            return self._sync(d, rs_list)
        if self._is_scaling_event(d, rs_list):
            return self._sync(d, rs_list)
        if is_rolling(d):
            return self._rollout_rolling(d, rs_list)
        return self._rollout_recreate(d, rs_list)

    def _replica_sets_for(self, d: JSON, reqs: list[Requirement]) -> list[JSON]:
        """``getReplicaSetsForDeployment`` (``ClaimReplicaSets``)."""
        ns = d["metadata"]["namespace"]
        rss = [deep_copy(rs) for rs in self.store.iter("apps/replicasets", ns)]
        for rs in rss:
            rs["apiVersion"], rs["kind"] = "apps/v1", "ReplicaSet"
        return RefManager(self.api, self.rs_rt, d, "apps/v1", "Deployment", reqs).claim(rss)

    def _check_paused_conditions(self, d: JSON) -> JSON:
        """``checkPausedConditions``."""
        spec = d.get("spec") or {}
        if spec.get("progressDeadlineSeconds") is None:
            return d
        conds = list((d.get("status") or {}).get("conditions") or [])
        cond = next((c for c in conds if c.get("type") == "Progressing"), None)
        if cond is not None and cond.get("reason") == "ProgressDeadlineExceeded":
            return d
        paused_exists = cond is not None and cond.get("reason") == "DeploymentPaused"
        if spec.get("paused") and not paused_exists:
            new = _condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
        elif not spec.get("paused") and paused_exists:
            new = _condition("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed")
        else:
            return d
        st = deep_copy(d.get("status") or {})
        st["conditions"] = set_condition(conds, new)
        return self._update_status(d, st)

    def _update_status(self, d: JSON, status: JSON) -> JSON:
        """``UpdateStatus``; ``d`` becomes the written object, as the Go code keeps using the
        deployment whose status it changed in place."""
        cur = deep_copy(d)
        cur["status"] = status
        cur["metadata"].pop("resourceVersion", None)
        try:
            out = self.api.update(
                self.d_rt,
                d["metadata"]["namespace"],
                d["metadata"]["name"],
                cur,
                subresource="status",
                internal_patch=True,
            ).obj
        except StatusError as e:
            raise SyncError(error_text(e)) from None
        d.clear()
        d.update(out)
        return d

    def _set_revision_annotation(self, d: JSON, revision: str) -> JSON:
        """``SetDeploymentRevision``; upstream the status update carries the annotation."""
        ann = d["metadata"].get("annotations") or {}
        if ann.get(REVISION_ANNOTATION) == revision:
            return d
        cur = deep_copy(d)
        cur["metadata"].setdefault("annotations", {})[REVISION_ANNOTATION] = revision
        cur["metadata"].pop("resourceVersion", None)
        try:
            out = self.api.update(
                self.d_rt, d["metadata"]["namespace"], d["metadata"]["name"], cur, internal_patch=True
            ).obj
        except StatusError as e:
            raise SyncError(error_text(e)) from None
        d.clear()
        d.update(out)
        return d

    # -- sync.go -------------------------------------------------------------------------------
    def _all_replica_sets(self, d: JSON, rs_list: list[JSON], create: bool) -> tuple[JSON | None, list[JSON]]:
        """``getAllReplicaSetsAndSyncRevision``."""
        new_rs = self._find_new(d, rs_list)
        old = [rs for rs in rs_list if new_rs is None or rs["metadata"]["uid"] != new_rs["metadata"]["uid"]]
        new_rs = self._get_new_replica_set(d, rs_list, old, create)
        return new_rs, old

    @staticmethod
    def _find_new(d: JSON, rs_list: list[JSON]) -> JSON | None:
        """``FindNewReplicaSet``: the oldest ReplicaSet whose template equals the deployment's."""
        template = (d.get("spec") or {}).get("template") or {}
        for rs in sorted(rs_list, key=_created):
            if equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, template):
                return rs
        return None

    def _new_rs_annotations(self, d: JSON, rs: JSON, new_revision: str, exists: bool) -> bool:
        """``SetNewReplicaSetAnnotations`` (revision-history is not kept)."""
        ann = rs["metadata"].setdefault("annotations", {})
        before = dict(ann)
        skip = {
            "kubectl.kubernetes.io/last-applied-configuration",
            REVISION_ANNOTATION,
            REVISION_HISTORY_ANNOTATION,
            DESIRED_REPLICAS_ANNOTATION,
            MAX_REPLICAS_ANNOTATION,
            "deprecated.deployment.rollback.to",
        }
        for k, v in (d["metadata"].get("annotations") or {}).items():
            if k not in skip:
                ann[k] = v
        old_rev = (
            int(ann.get(REVISION_ANNOTATION) or 0)
            if str(ann.get(REVISION_ANNOTATION) or "0").isdigit()
            else 0
        )
        if old_rev < int(new_revision):
            ann[REVISION_ANNOTATION] = new_revision
        if not exists:
            ann[DESIRED_REPLICAS_ANNOTATION] = str(_replicas(d))
            ann[MAX_REPLICAS_ANNOTATION] = str(_replicas(d) + max_surge(d))
        return bool(ann != before)

    def _get_new_replica_set(
        self, d: JSON, rs_list: list[JSON], old_rss: list[JSON], create: bool
    ) -> JSON | None:
        """``getNewReplicaSet``."""
        ns = d["metadata"]["namespace"]
        existing = self._find_new(d, rs_list)
        max_old = max([_revision(rs) for rs in old_rss] or [0])
        new_revision = str(max_old + 1)
        spec = d.get("spec") or {}
        has_deadline = spec.get("progressDeadlineSeconds") is not None
        if existing is not None:
            rs_copy: JSON = deep_copy(existing)
            changed = self._new_rs_annotations(d, rs_copy, new_revision, True)
            min_ready_changed = int((rs_copy.get("spec") or {}).get("minReadySeconds") or 0) != int(
                spec.get("minReadySeconds") or 0
            )
            if changed or min_ready_changed:
                rs_copy["spec"]["minReadySeconds"] = int(spec.get("minReadySeconds") or 0)
                rs_copy["metadata"].pop("resourceVersion", None)
                try:
                    return dict(
                        self.api.update(
                            self.rs_rt, ns, rs_copy["metadata"]["name"], rs_copy, internal_patch=True
                        ).obj
                    )
                except StatusError as e:
                    raise SyncError(error_text(e)) from None
            rev = (rs_copy["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION)
            if rev:
                self._set_revision_annotation(d, rev)
            conds = list((d.get("status") or {}).get("conditions") or [])
            if has_deadline and not any(c.get("type") == "Progressing" for c in conds):
                st = deep_copy(d.get("status") or {})
                st["conditions"] = set_condition(
                    conds,
                    _condition(
                        "Progressing",
                        "True",
                        "FoundNewReplicaSet",
                        f'Found new replica set "{rs_copy["metadata"]["name"]}"',
                    ),
                )
                self._update_status(d, st)
            return rs_copy
        if not create:
            return None
        template = deep_copy(spec.get("template") or {})
        collision = (d.get("status") or {}).get("collisionCount")
        pod_hash = compute_hash(template, collision)
        template.setdefault("metadata", {}).setdefault("labels", {})[POD_TEMPLATE_HASH] = pod_hash
        selector = deep_copy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH] = pod_hash
        new_rs: JSON = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{d['metadata']['name']}-{pod_hash}",
                "namespace": ns,
                "ownerReferences": [new_controller_ref(d, "apps/v1", "Deployment")],
                "labels": dict(template["metadata"]["labels"]),
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                "selector": selector,
                "template": template,
            },
        }
        count = new_rs_new_replicas(d, [*old_rss, new_rs], new_rs)
        new_rs["spec"]["replicas"] = count
        self._new_rs_annotations(d, new_rs, new_revision, False)
        already_exists = False
        try:
            inject_fault(
                self.cluster,
                self.name,
                "create",
                "replicasets",
                ns,
                new_rs["metadata"]["name"],
                d["metadata"]["name"],
            )
            created = dict(self.api.create(self.rs_rt, ns, new_rs).obj)
        except StatusError as e:
            if e.code == 409 and e.reason == "AlreadyExists":
                already_exists = True
                cur = self.api.get_or_none(self.rs_rt, ns, new_rs["metadata"]["name"])
                ref = controller_ref(cur) if cur is not None else None
                if (
                    cur is not None
                    and ref is not None
                    and ref.get("uid") == d["metadata"]["uid"]
                    and equal_ignore_hash(
                        spec.get("template") or {}, (cur.get("spec") or {}).get("template") or {}
                    )
                ):
                    created = cur
                else:
                    # A hash collision: bump collisionCount and requeue.
                    st = deep_copy(d.get("status") or {})
                    st["collisionCount"] = int(st.get("collisionCount") or 0) + 1
                    self._update_status(d, st)
                    raise SyncError(error_text(e)) from None
            else:
                msg = f'Failed to create new replica set "{new_rs["metadata"]["name"]}": {error_text(e)}'
                if has_deadline:
                    st = deep_copy(d.get("status") or {})
                    st["conditions"] = set_condition(
                        list(st.get("conditions") or []),
                        _condition("Progressing", "False", "ReplicaSetCreateError", msg),
                    )
                    try:
                        self._update_status(d, st)
                    except SyncError:
                        pass
                record(self.api, d, "Warning", "ReplicaSetCreateError", msg, self.component)
                raise SyncError(msg) from None
        if not already_exists and count > 0:
            record(
                self.api,
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled up replica set {created['metadata']['name']} to {count}",
                self.component,
            )
        d = self._set_revision_annotation(d, new_revision)
        if not already_exists and has_deadline:
            st = deep_copy(d.get("status") or {})
            st["conditions"] = set_condition(
                list(st.get("conditions") or []),
                _condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    f'Created new replica set "{created["metadata"]["name"]}"',
                ),
            )
            self._update_status(d, st)
        return created

    def _is_scaling_event(self, d: JSON, rs_list: list[JSON]) -> bool:
        """``isScalingEvent``: an active ReplicaSet's desired-replicas annotation differs."""
        new_rs, old = self._all_replica_sets(d, rs_list, False)
        for rs in filter_active([*old, new_rs]):
            desired = (rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS_ANNOTATION)
            if desired is None or not desired.isdigit():
                continue
            if int(desired) != _replicas(d):
                return True
        return False

    def _sync(self, d: JSON, rs_list: list[JSON]) -> float | None:
        """``sync``: scaling events and paused deployments."""
        new_rs, old = self._all_replica_sets(d, rs_list, False)
        self._scale(d, new_rs, old)
        if (d.get("spec") or {}).get("paused"):
            self._cleanup(d, old)
        return self._sync_status(d, [*old, new_rs], new_rs)

    def _scale(self, d: JSON, new_rs: JSON | None, old_rss: list[JSON]) -> None:
        """``scale``: proportional scaling."""
        active_or_latest = self._find_active_or_latest(new_rs, old_rss)
        if active_or_latest is not None:
            if _replicas(active_or_latest) == _replicas(d):
                return
            self._scale_rs(active_or_latest, _replicas(d), d)
            return
        if self._is_saturated(d, new_rs):
            for old in filter_active(list(old_rss)):
                self._scale_rs(old, 0, d)
            return
        if is_rolling(d):
            all_rss = filter_active([*old_rss, new_rs])
            all_replicas = replica_count(all_rss)
            allowed = _replicas(d) + max_surge(d) if _replicas(d) > 0 else 0
            to_add = allowed - all_replicas
            op = ""
            if to_add > 0:
                # ReplicaSetsBySizeNewer: larger first, then newer first.
                all_rss.sort(key=_created, reverse=True)
                all_rss.sort(key=lambda rs: -_replicas(rs))
                op = "up"
            elif to_add < 0:
                # ReplicaSetsBySizeOlder: larger first, then older first.
                all_rss.sort(key=_created)
                all_rss.sort(key=lambda rs: -_replicas(rs))
                op = "down"
            added = 0
            sizes: dict[str, int] = {}
            for rs in all_rss:
                if to_add != 0:
                    prop = self._proportion(rs, d, to_add, added)
                    sizes[rs["metadata"]["name"]] = _replicas(rs) + prop
                    added += prop
                else:
                    sizes[rs["metadata"]["name"]] = _replicas(rs)
            for i, rs in enumerate(all_rss):
                n = rs["metadata"]["name"]
                if i == 0 and to_add != 0:
                    sizes[n] = max(0, sizes[n] + to_add - added)
                self._scale_rs(rs, sizes[n], d, op)

    @staticmethod
    def _find_active_or_latest(new_rs: JSON | None, old_rss: list[JSON]) -> JSON | None:
        if new_rs is None and not old_rss:
            return None
        olds = sorted(old_rss, key=_created, reverse=True)
        active = filter_active([*olds, new_rs])
        if not active:
            return new_rs if new_rs is not None else olds[0]
        if len(active) == 1:
            return active[0]
        return None

    @staticmethod
    def _is_saturated(d: JSON, rs: JSON | None) -> bool:
        if rs is None:
            return False
        desired = (rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS_ANNOTATION)
        return (
            desired is not None
            and desired.isdigit()
            and int(desired) == _replicas(d)
            and _replicas(rs) == _replicas(d)
            and _status_int(rs, "availableReplicas") == _replicas(d)
        )

    @staticmethod
    def _proportion(rs: JSON, d: JSON, to_add: int, added: int) -> int:
        """``GetProportion`` / ``getReplicaSetFraction``."""
        if _replicas(rs) == 0 or to_add == 0 or to_add == added:
            return 0
        if _replicas(d) == 0:
            fraction = -_replicas(rs)
        else:
            d_replicas = _replicas(d) + max_surge(d)
            ann = (rs["metadata"].get("annotations") or {}).get(MAX_REPLICAS_ANNOTATION)
            annotated = int(ann) if ann and ann.isdigit() else _status_int(d, "replicas")
            new_size = _replicas(rs) * d_replicas / annotated if annotated else 0
            fraction = math.floor(new_size + 0.5) - _replicas(rs)
        allowed = to_add - added
        return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)

    def _scale_rs(self, rs: JSON, new_scale: int, d: JSON, op: str = "") -> bool:
        """``scaleReplicaSetAndRecordEvent`` / ``scaleReplicaSet``."""
        old_scale = _replicas(rs)
        if not op:
            if old_scale == new_scale:
                return False
            op = "up" if old_scale < new_scale else "down"
        ann = rs["metadata"].get("annotations") or {}
        want_desired = str(_replicas(d))
        want_max = str(_replicas(d) + max_surge(d))
        size_changed = old_scale != new_scale
        ann_changed = (
            ann.get(DESIRED_REPLICAS_ANNOTATION) != want_desired
            or ann.get(MAX_REPLICAS_ANNOTATION) != want_max
        )
        if not (size_changed or ann_changed):
            return False
        cur = deep_copy(rs)
        cur["spec"]["replicas"] = new_scale
        cur["metadata"].setdefault("annotations", {})[DESIRED_REPLICAS_ANNOTATION] = want_desired
        cur["metadata"]["annotations"][MAX_REPLICAS_ANNOTATION] = want_max
        cur["metadata"].pop("resourceVersion", None)
        try:
            updated = self.api.update(
                self.rs_rt, rs["metadata"]["namespace"], rs["metadata"]["name"], cur, internal_patch=True
            ).obj
        except StatusError as e:
            raise SyncError(error_text(e)) from None
        rs.clear()
        rs.update(updated)
        if size_changed:
            record(
                self.api,
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {op} replica set {rs['metadata']['name']} to {new_scale} from {old_scale}",
                self.component,
            )
        return size_changed

    def _cleanup(self, d: JSON, old_rss: list[JSON]) -> None:
        """``cleanupDeployment``: keep revisionHistoryLimit old ReplicaSets."""
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in old_rss if not rs["metadata"].get("deletionTimestamp")]
        diff = len(alive) - int(limit)
        if diff <= 0:
            return
        alive.sort(key=lambda rs: (_revision(rs), _created(rs)))
        for rs in alive[:diff]:
            st = rs.get("status") or {}
            if (
                int(st.get("replicas") or 0) != 0
                or _replicas(rs) != 0
                or int(rs["metadata"].get("generation") or 0) > int(st.get("observedGeneration") or 0)
            ):
                continue
            try:
                self.api.delete(self.rs_rt, rs["metadata"]["namespace"], rs["metadata"]["name"])
            except StatusError as e:
                if e.code != 404:
                    raise SyncError(error_text(e)) from None

    def _calculate_status(self, d: JSON, all_rss: list[JSON | None], new_rs: JSON | None) -> JSON:
        """``calculateStatus``."""
        rss = [rs for rs in all_rss if rs is not None]
        available = sum(_status_int(rs, "availableReplicas") for rs in rss)
        total = replica_count(rss)
        status: JSON = {
            "observedGeneration": d["metadata"].get("generation"),
            "replicas": sum(_status_int(rs, "replicas") for rs in rss),
            "updatedReplicas": _status_int(new_rs, "replicas"),
            "readyReplicas": sum(_status_int(rs, "readyReplicas") for rs in rss),
            "availableReplicas": available,
            "unavailableReplicas": max(0, total - available),
        }
        old = d.get("status") or {}
        if old.get("collisionCount") is not None:
            status["collisionCount"] = old["collisionCount"]
        conds = list(old.get("conditions") or [])
        if available >= _replicas(d) - max_unavailable(d):
            cond = _condition(
                "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."
            )
        else:
            cond = _condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        status["conditions"] = set_condition(conds, cond)
        return status

    def _sync_status(self, d: JSON, all_rss: list[JSON | None], new_rs: JSON | None) -> float | None:
        """``syncDeploymentStatus``."""
        status = self._calculate_status(d, all_rss, new_rs)
        if _clean(status) != _clean(d.get("status") or {}):
            self._update_status(d, _clean(status))
        return None

    # -- progress.go: syncRolloutStatus --------------------------------------------------------
    def _sync_rollout_status(self, d: JSON, all_rss: list[JSON | None], new_rs: JSON | None) -> float | None:
        status = self._calculate_status(d, all_rss, new_rs)
        spec = d.get("spec") or {}
        deadline = spec.get("progressDeadlineSeconds")
        conds = list(status.get("conditions") or [])
        if deadline is None:
            conds = [c for c in conds if c.get("type") != "Progressing"]
        current = next(
            (c for c in (d.get("status") or {}).get("conditions") or [] if c.get("type") == "Progressing"),
            None,
        )
        complete_already = (
            int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0)
            and current is not None
            and current.get("reason") == "NewReplicaSetAvailable"
        )
        requeue: float | None = None
        if deadline is not None and not complete_already:
            rs_name = new_rs["metadata"]["name"] if new_rs is not None else None
            if deployment_complete(d, status):
                msg = (
                    f'ReplicaSet "{rs_name}" has successfully progressed.'
                    if rs_name
                    else f'Deployment "{d["metadata"]["name"]}" has successfully progressed.'
                )
                conds = set_condition(conds, _condition("Progressing", "True", "NewReplicaSetAvailable", msg))
            elif deployment_progressing(d, status):
                msg = (
                    f'ReplicaSet "{rs_name}" is progressing.'
                    if rs_name
                    else f'Deployment "{d["metadata"]["name"]}" is progressing.'
                )
                cond = _condition("Progressing", "True", "ReplicaSetUpdated", msg)
                if current is not None:
                    if current.get("status") == "True":
                        cond["lastTransitionTime"] = current.get("lastTransitionTime")
                    conds = [c for c in conds if c.get("type") != "Progressing"]
                conds = set_condition(conds, cond)
            elif self._timed_out(d, status):
                msg = (
                    f'ReplicaSet "{rs_name}" has timed out progressing.'
                    if rs_name
                    else f'Deployment "{d["metadata"]["name"]}" has timed out progressing.'
                )
                conds = set_condition(
                    conds, _condition("Progressing", "False", "ProgressDeadlineExceeded", msg)
                )
        # Failure conditions of the replica sets (getReplicaFailures).
        failure = None
        for rs in [new_rs, *[r for r in all_rss if r is not new_rs]]:
            if rs is None:
                continue
            c = next(
                (
                    c
                    for c in (rs.get("status") or {}).get("conditions") or []
                    if c.get("type") == "ReplicaFailure"
                ),
                None,
            )
            if c is not None:
                failure = _condition(
                    "ReplicaFailure", c.get("status", "True"), c.get("reason", ""), c.get("message", "")
                )
                break
        if failure is not None:
            conds = set_condition(conds, failure)
        else:
            conds = [c for c in conds if c.get("type") != "ReplicaFailure"]
        status["conditions"] = conds
        if _clean(status) == _clean(d.get("status") or {}):
            requeue = self._requeue_stuck(d, status)
            return requeue
        self._update_status(d, _clean(status))
        return None

    @staticmethod
    def _timed_out(d: JSON, status: JSON) -> bool:
        """``DeploymentTimedOut``."""
        deadline = (d.get("spec") or {}).get("progressDeadlineSeconds")
        if deadline is None:
            return False
        cond = next((c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), None)
        if cond is None:
            return False
        if cond.get("reason") == "NewReplicaSetAvailable" or cond.get("reason") == "ProgressDeadlineExceeded":
            return bool(cond.get("reason") == "ProgressDeadlineExceeded")
        last = cond.get("lastUpdateTime")
        if not last:
            return False
        return parse_time(last).timestamp() + int(deadline) < time.time()

    @staticmethod
    def _requeue_stuck(d: JSON, status: JSON) -> float | None:
        """``requeueStuckDeployment``: come back when the progress deadline would pass."""
        deadline = (d.get("spec") or {}).get("progressDeadlineSeconds")
        cond = next((c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), None)
        if (
            deadline is None
            or cond is None
            or cond.get("reason") in ("NewReplicaSetAvailable", "ProgressDeadlineExceeded")
        ):
            return None
        if deployment_complete(d, status) or not cond.get("lastUpdateTime"):
            return None
        after = parse_time(cond["lastUpdateTime"]).timestamp() + int(deadline) - time.time()
        return max(after, 0.0) + 1.0

    # -- rolling.go ---------------------------------------------------------------------------
    def _rollout_rolling(self, d: JSON, rs_list: list[JSON]) -> float | None:
        new_rs, old = self._all_replica_sets(d, rs_list, True)
        assert new_rs is not None
        all_rss: list[JSON | None] = [*old, new_rs]
        if self._reconcile_new(d, all_rss, new_rs):
            return self._sync_rollout_status(d, all_rss, new_rs)
        if self._reconcile_old(d, all_rss, filter_active(list(old)), new_rs):
            return self._sync_rollout_status(d, all_rss, new_rs)
        if deployment_complete(d, d.get("status") or {}):
            self._cleanup(d, old)
        return self._sync_rollout_status(d, all_rss, new_rs)

    def _reconcile_new(self, d: JSON, all_rss: list[JSON | None], new_rs: JSON) -> bool:
        if _replicas(new_rs) == _replicas(d):
            return False
        if _replicas(new_rs) > _replicas(d):
            return self._scale_rs(new_rs, _replicas(d), d)
        return self._scale_rs(new_rs, new_rs_new_replicas(d, all_rss, new_rs), d)

    def _reconcile_old(self, d: JSON, all_rss: list[JSON | None], old_rss: list[JSON], new_rs: JSON) -> bool:
        old_count = replica_count(old_rss)
        if old_count == 0:
            return False
        all_count = replica_count(all_rss)
        min_available = _replicas(d) - max_unavailable(d)
        new_unavailable = _replicas(new_rs) - _status_int(new_rs, "availableReplicas")
        max_scaled_down = all_count - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        # cleanupUnhealthyReplicas
        cleaned = 0
        for rs in sorted(old_rss, key=_created):
            if cleaned >= max_scaled_down:
                break
            if _replicas(rs) == 0 or _replicas(rs) == _status_int(rs, "availableReplicas"):
                continue
            n = min(max_scaled_down - cleaned, _replicas(rs) - _status_int(rs, "availableReplicas"))
            self._scale_rs(rs, _replicas(rs) - n, d)
            cleaned += n
        # scaleDownOldReplicaSetsForRollingUpdate
        available = sum(_status_int(rs, "availableReplicas") for rs in [*old_rss, new_rs])
        scaled = 0
        if available > min_available:
            total = available - min_available
            for rs in sorted(old_rss, key=_created):
                if scaled >= total:
                    break
                if _replicas(rs) == 0:
                    continue
                n = min(_replicas(rs), total - scaled)
                self._scale_rs(rs, _replicas(rs) - n, d)
                scaled += n
        return cleaned + scaled > 0

    # -- recreate.go ------------------------------------------------------------------------------
    def _rollout_recreate(self, d: JSON, rs_list: list[JSON]) -> float | None:
        new_rs, old = self._all_replica_sets(d, rs_list, False)
        all_rss: list[JSON | None] = [*old, new_rs]
        scaled_down = False
        for rs in filter_active(list(old)):
            scaled_down = self._scale_rs(rs, 0, d) or scaled_down
        if scaled_down:
            return self._sync_rollout_status(d, all_rss, new_rs)
        if self._old_pods_running(new_rs, old):
            return self._sync_rollout_status(d, all_rss, new_rs)
        if new_rs is None:
            new_rs, old = self._all_replica_sets(d, rs_list, True)
            all_rss = [*old, new_rs]
        assert new_rs is not None
        self._scale_rs(new_rs, _replicas(d), d)
        if deployment_complete(d, d.get("status") or {}):
            self._cleanup(d, old)
        return self._sync_rollout_status(d, all_rss, new_rs)

    def _old_pods_running(self, new_rs: JSON | None, old_rss: list[JSON]) -> bool:
        """``oldPodsRunning``: old ReplicaSets' pods that are not Succeeded/Failed."""
        if sum(_status_int(rs, "replicas") for rs in old_rss) > 0:
            return True
        old_uids = {rs["metadata"]["uid"] for rs in old_rss}
        if new_rs is not None:
            old_uids.discard(new_rs["metadata"]["uid"])
        for rs in old_rss:
            for p in self.store.iter("/pods", rs["metadata"]["namespace"]):
                ref = controller_ref(p)
                if ref is None or ref.get("uid") not in old_uids:
                    continue
                if phase(p) in ("Failed", "Succeeded"):
                    continue
                return True
        return False


def _clean(status: JSON) -> JSON:
    """Drop zero values of ``omitempty`` fields, as the Go encoder does."""
    keep = {"replicas", "availableReplicas"}
    return {k: v for k, v in status.items() if k in keep or v not in (0, None, [], {}, "")}


__all__ = [
    "DeploymentController",
    "RefManager",
    "ReplicaSetController",
    "RetryBackoff",
    "SyncError",
]
