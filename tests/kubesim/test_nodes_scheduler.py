"""kubesim nodes and scheduler: node objects and leases, the NotReady fault, taint eviction,
placement (spreading, nodeSelector, node affinity, taints, PV node affinity), the upstream
FailedScheduling messages, WaitForFirstConsumer claims and the pods/binding subresource.

Each test works in a namespace of its own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest

from kubesim.cluster import ClusterConfig
from kubesim.testing import KubeSim, wait_for

T = TypeVar("T")
NODES = ["kubesim-node-1", "kubesim-node-2", "kubesim-node-3"]
PREEMPTION = "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."


@pytest.fixture(scope="module")
def kubesim() -> Iterator[KubeSim]:
    """A cluster whose node leases are renewed often enough to be seen within a test."""
    with KubeSim(config=ClusterConfig(node_lease_renew_interval=0.2)) as sim:
        yield sim


# -- helpers -------------------------------------------------------------------------------------


def api(k: KubeSim, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
    code, _, out = k.request(method, path, body=body)
    assert code in ok, (code, out)
    return out


def get(k: KubeSim, path: str) -> dict[str, Any] | None:
    code, _, body = k.request("GET", path)
    if code == 404:
        return None
    assert code == 200, body
    return body  # type: ignore[no-any-return]


def new_ns(k: KubeSim) -> str:
    ns = f"sched-{uuid.uuid4().hex[:6]}"
    api(k, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    wait_for(lambda: get(k, f"/api/v1/namespaces/{ns}/serviceaccounts/default"), what="default SA")
    return ns


def pod_body(name: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"containers": [{"name": "app", "image": "busybox:1.36"}]}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": base}


def create_pod(k: KubeSim, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    return api(k, "POST", f"/api/v1/namespaces/{ns}/pods", body)  # type: ignore[no-any-return]


def pod(k: KubeSim, ns: str, name: str) -> dict[str, Any] | None:
    return get(k, f"/api/v1/namespaces/{ns}/pods/{name}")


def cond(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c  # type: ignore[no-any-return]
    return {}


def is_ready(obj: dict[str, Any] | None) -> bool:
    return cond(obj, "Ready").get("status") == "True"


def events_for(k: KubeSim, ns: str, name: str, reason: str) -> list[dict[str, Any]]:
    evs = api(k, "GET", f"/api/v1/namespaces/{ns}/events")["items"]
    return [e for e in evs if e["involvedObject"].get("name") == name and e.get("reason") == reason]


def unschedulable_message(k: KubeSim, ns: str, name: str) -> str:
    def msg() -> str | None:
        c = cond(pod(k, ns, name), "PodScheduled")
        return c.get("message") if c.get("status") == "False" else None

    return wait_for(msg, what=f"{name} to be unschedulable")


def make_pvc(k: KubeSim, ns: str, name: str, sc: str | None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}
    if sc is not None:
        spec["storageClassName"] = sc
    spec.update(extra)
    body = {"metadata": {"name": name}, "spec": spec}
    return api(k, "POST", f"/api/v1/namespaces/{ns}/persistentvolumeclaims", body)  # type: ignore[no-any-return]


def bind_by_hand(k: KubeSim, ns: str, claim: str, pv_name: str, **pv_spec: Any) -> None:
    """A static PV pre-bound to ``claim``, and the claim marked bound (as the PV binder does)."""
    pvc = get(k, f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}")
    assert pvc is not None
    spec: dict[str, Any] = {
        "capacity": {"storage": "1Mi"},
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "",
        "persistentVolumeReclaimPolicy": "Retain",
        "hostPath": {"path": f"/tmp/kubesim-test-{pv_name}"},
        "claimRef": {
            "namespace": ns,
            "name": claim,
            "uid": pvc["metadata"]["uid"],
            "kind": "PersistentVolumeClaim",
        },
    }
    spec.update(pv_spec)
    api(k, "POST", "/api/v1/persistentvolumes", {"metadata": {"name": pv_name}, "spec": spec})

    def mark(c: Any) -> None:
        rt = c.api.resource("", "v1", "persistentvolumeclaims")
        cur = c.api.get(rt, ns, claim)
        cur["spec"]["volumeName"] = pv_name
        cur["metadata"].setdefault("annotations", {})["pv.kubernetes.io/bind-completed"] = "yes"
        c.api.update(rt, ns, claim, cur, internal_patch=True)
        cur = c.api.get(rt, ns, claim)
        cur["status"] = {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Mi"}}
        c.api.update(rt, ns, claim, cur, subresource="status", internal_patch=True)
        pv_rt = c.api.resource("", "v1", "persistentvolumes")
        pv = c.api.get(pv_rt, "", pv_name)
        pv["status"] = {"phase": "Bound"}
        c.api.update(pv_rt, "", pv_name, pv, subresource="status", internal_patch=True)

    k.call(mark)


def owner_configmap(k: KubeSim, ns: str, name: str) -> dict[str, Any]:
    cm = api(k, "POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": name}})
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": name,
        "uid": cm["metadata"]["uid"],
        "controller": True,
    }


# -- nodes ----------------------------------------------------------------------------------------
def test_nodes_are_registered_with_status_and_leases(kubesim: KubeSim) -> None:
    nodes = api(kubesim, "GET", "/api/v1/nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == NODES
    zones = set()
    for n in nodes:
        labels = n["metadata"]["labels"]
        assert labels["kubernetes.io/hostname"] == n["metadata"]["name"]
        assert labels["kubernetes.io/os"] == "linux"
        assert labels["kubernetes.io/arch"] in ("amd64", "arm64")
        zones.add(labels["topology.kubernetes.io/zone"])
        status = n["status"]
        conds = {c["type"]: c for c in status["conditions"]}
        assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "KubeletReady"
        for t in ("MemoryPressure", "DiskPressure", "PIDPressure"):
            assert conds[t]["status"] == "False"
        assert status["nodeInfo"]["kubeletVersion"] == "v1.37.0"
        assert {"cpu", "memory", "pods"} <= set(status["capacity"]) and status["allocatable"]["pods"] == "110"
        assert {a["type"] for a in status["addresses"]} == {"InternalIP", "Hostname"}
    assert zones == {"zone-a", "zone-b", "zone-c"}
    out = kubesim.kubectl("get", "nodes").stdout
    assert out.count(" Ready ") == 3 and "v1.37.0" in out

    # nodelease: the lease is renewed periodically.
    lease = api(
        kubesim, "GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/kubesim-node-1"
    )
    assert lease["spec"]["holderIdentity"] == "kubesim-node-1"
    assert lease["spec"]["leaseDurationSeconds"] == 40
    first = lease["spec"]["renewTime"]
    wait_for(
        lambda: (
            api(
                kubesim,
                "GET",
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/kubesim-node-1",
            )["spec"]["renewTime"]
            != first
        ),
        what="lease renewal",
    )


def test_node_not_ready_fault_and_recovery(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    node = "kubesim-node-1"
    create_pod(kubesim, ns, pod_body("victim", nodeName=node))
    create_pod(
        kubesim,
        ns,
        pod_body(
            "evictable",
            nodeName=node,
            tolerations=[
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 1,
                }
            ],
        ),
    )
    wait_for(
        lambda: is_ready(pod(kubesim, ns, "victim")) and is_ready(pod(kubesim, ns, "evictable")), what="ready"
    )

    # The admin action, as a script would use it.
    assert api(kubesim, "POST", "/kubesim/nodes/ready", {"name": node, "ready": False})["ready"] is False
    n = get(kubesim, f"/api/v1/nodes/{node}")
    assert n is not None
    ready = cond(n, "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "Unknown",
        "NodeStatusUnknown",
        "Kubelet stopped posting node status.",
    )
    taints = {(t["key"], t["effect"]) for t in n["spec"]["taints"]}
    assert taints == {
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
    }
    assert "NotReady" in kubesim.kubectl("get", "node", node).stdout
    # MarkPodsNotReady
    wait_for(lambda: cond(pod(kubesim, ns, "victim"), "Ready").get("status") == "False", what="pod not ready")
    assert events_for(kubesim, ns, "victim", "NodeNotReady")
    # New pods are kept off the node.
    create_pod(kubesim, ns, pod_body("newcomer", nodeSelector={"kubernetes.io/hostname": node}))
    msg = unschedulable_message(kubesim, ns, "newcomer")
    assert msg == (
        "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't match Pod's node "
        f"affinity/selector. no new claims to deallocate, {PREEMPTION}"
    )
    # Taint-based eviction after tolerationSeconds; the kubelet is down, so the pod stays Terminating.
    evicted = wait_for(
        lambda: (p := pod(kubesim, ns, "evictable")) and p["metadata"].get("deletionTimestamp") and p,
        what="taint eviction",
    )
    assert cond(evicted, "DisruptionTarget")["reason"] == "DeletionByTaintManager"
    assert events_for(kubesim, ns, "evictable", "TaintManagerEviction")
    time.sleep(0.3)
    assert pod(kubesim, ns, "evictable") is not None  # no kubelet to confirm the deletion
    assert pod(kubesim, ns, "victim")["metadata"].get("deletionTimestamp") is None  # type: ignore[index]

    kubesim.call(lambda c: c.set_node_ready(node, True))
    n = get(kubesim, f"/api/v1/nodes/{node}")
    assert cond(n, "Ready")["status"] == "True" and not (n or {})["spec"].get("taints")
    wait_for(lambda: pod(kubesim, ns, "evictable") is None, what="evicted pod to go")
    wait_for(lambda: is_ready(pod(kubesim, ns, "victim")), what="pod ready again")
    wait_for(
        lambda: (pod(kubesim, ns, "newcomer") or {}).get("spec", {}).get("nodeName") == node, what="newcomer"
    )


# -- placement ------------------------------------------------------------------------------------
def test_pods_spread_across_nodes_with_distinct_ips(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    owner = owner_configmap(kubesim, ns, "owner")
    for i in range(3):
        body = pod_body(f"web-{i}")
        body["metadata"]["ownerReferences"] = [owner]
        create_pod(kubesim, ns, body)

    def ready_pods() -> list[dict[str, Any]] | None:
        ps = [pod(kubesim, ns, f"web-{i}") for i in range(3)]
        return [p for p in ps if p is not None] if all(is_ready(p) for p in ps) else None

    pods = wait_for(ready_pods, what="3 ready pods")
    assert sorted(p["spec"]["nodeName"] for p in pods) == NODES
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == 3 and all(ip.startswith("127.") for ip in ips)
    for p in pods:
        assert p["status"]["phase"] == "Running"
        assert cond(p, "PodScheduled")["status"] == "True"
        msg = f"Successfully assigned {ns}/{p['metadata']['name']} to {p['spec']['nodeName']}"
        assert [e["message"] for e in events_for(kubesim, ns, p["metadata"]["name"], "Scheduled")] == [msg]


def test_node_selector_and_affinity_are_honoured(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_pod(kubesim, ns, pod_body("sel", nodeSelector={"kubernetes.io/hostname": "kubesim-node-2"}))
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-c"]}
                        ]
                    }
                ]
            }
        }
    }
    create_pod(kubesim, ns, pod_body("aff", affinity=affinity))
    create_pod(kubesim, ns, pod_body("nowhere", nodeSelector={"disktype": "ssd"}))
    wait_for(lambda: (pod(kubesim, ns, "sel") or {}).get("spec", {}).get("nodeName"), what="sel bound")
    wait_for(lambda: (pod(kubesim, ns, "aff") or {}).get("spec", {}).get("nodeName"), what="aff bound")
    assert pod(kubesim, ns, "sel")["spec"]["nodeName"] == "kubesim-node-2"  # type: ignore[index]
    assert pod(kubesim, ns, "aff")["spec"]["nodeName"] == "kubesim-node-3"  # type: ignore[index]
    msg = unschedulable_message(kubesim, ns, "nowhere")
    assert msg == (
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. "
        f"no new claims to deallocate, {PREEMPTION}"
    )
    p = pod(kubesim, ns, "nowhere")
    assert cond(p, "PodScheduled")["reason"] == "Unschedulable" and p["status"]["phase"] == "Pending"  # type: ignore[index]
    assert events_for(kubesim, ns, "nowhere", "FailedScheduling")[0]["message"] == msg
    # A label that appears makes the pod schedulable (a Node update requeues it).

    def label(c: Any) -> None:
        rt = c.api.resource("", "v1", "nodes")
        n = c.api.get(rt, "", "kubesim-node-1")
        n["metadata"]["labels"]["disktype"] = "ssd"
        c.api.update(rt, "", "kubesim-node-1", n, internal_patch=True)

    kubesim.call(label)
    try:
        wait_for(
            lambda: (pod(kubesim, ns, "nowhere") or {}).get("spec", {}).get("nodeName") == "kubesim-node-1",
            what="rescheduled after label",
        )
    finally:
        kubesim.kubectl("label", "node", "kubesim-node-1", "disktype-")


def test_taints_and_tolerations(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    kubesim.kubectl("taint", "node", "kubesim-node-3", "dedicated=db:NoSchedule")
    try:
        create_pod(kubesim, ns, pod_body("plain", nodeSelector={"kubernetes.io/hostname": "kubesim-node-3"}))
        tol = [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]
        create_pod(
            kubesim,
            ns,
            pod_body("tolerant", tolerations=tol, nodeSelector={"kubernetes.io/hostname": "kubesim-node-3"}),
        )
        wait_for(
            lambda: (pod(kubesim, ns, "tolerant") or {}).get("spec", {}).get("nodeName"),
            what="tolerant bound",
        )
        msg = unschedulable_message(kubesim, ns, "plain")
        assert msg.startswith(
            "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't match"
        )
    finally:
        kubesim.kubectl("taint", "node", "kubesim-node-3", "dedicated-")
    # Removing the taint (a Node update) lets the pod in.
    wait_for(lambda: (pod(kubesim, ns, "plain") or {}).get("spec", {}).get("nodeName"), what="plain bound")


# -- volumes --------------------------------------------------------------------------------------
def test_missing_deleting_and_unbound_claims(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    vol = [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}]
    create_pod(kubesim, ns, pod_body("db-0", volumes=vol))
    assert unschedulable_message(kubesim, ns, "db-0") == (
        f'0/3 nodes are available: persistentvolumeclaim "data-db-0" not found. {PREEMPTION}'
    )
    ev = wait_for(lambda: events_for(kubesim, ns, "db-0", "FailedScheduling"), what="event")
    assert ev[0]["type"] == "Warning" and ev[0]["source"]["component"] == "default-scheduler"

    # A claim being deleted (held by a finalizer).
    make_pvc(kubesim, ns, "going", "standard")
    kubesim.kubectl(
        "-n",
        ns,
        "patch",
        "pvc",
        "going",
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":["example.com/hold"]}}',
    )
    kubesim.kubectl("-n", ns, "delete", "pvc", "going", "--wait=false")
    create_pod(
        kubesim,
        ns,
        pod_body("uses-going", volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "going"}}]),
    )
    assert unschedulable_message(kubesim, ns, "uses-going") == (
        f'0/3 nodes are available: persistentvolumeclaim "going" is being deleted. {PREEMPTION}'
    )

    # An Immediate claim that nothing binds.
    make_pvc(kubesim, ns, "lonely", "no-such-class")
    create_pod(
        kubesim,
        ns,
        pod_body("uses-lonely", volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "lonely"}}]),
    )
    assert unschedulable_message(kubesim, ns, "uses-lonely") == (
        f"0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. {PREEMPTION}"
    )

    # Creating the missing claim (bound by hand) makes db-0 schedulable.
    make_pvc(kubesim, ns, "data-db-0", "")
    bind_by_hand(kubesim, ns, "data-db-0", f"pv-{ns}-db0")
    wait_for(lambda: is_ready(pod(kubesim, ns, "db-0")), what="db-0 running")
    kubesim.kubectl(
        "-n", ns, "patch", "pvc", "going", "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
    )


def test_bound_pv_node_affinity_constrains_the_node(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    make_pvc(kubesim, ns, "local", "")
    affinity = {
        "required": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["kubesim-node-3"]}
                    ]
                }
            ]
        }
    }
    bind_by_hand(kubesim, ns, "local", f"pv-{ns}-local", nodeAffinity=affinity)
    vols = [{"name": "d", "persistentVolumeClaim": {"claimName": "local"}}]
    create_pod(kubesim, ns, pod_body("pinned", volumes=vols))
    p = wait_for(lambda: (x := pod(kubesim, ns, "pinned")) and is_ready(x) and x, what="pinned running")
    assert p["spec"]["nodeName"] == "kubesim-node-3"
    create_pod(
        kubesim,
        ns,
        pod_body("conflict", volumes=vols, nodeSelector={"kubernetes.io/hostname": "kubesim-node-1"}),
    )
    assert unschedulable_message(kubesim, ns, "conflict") == (
        "0/3 nodes are available: 1 node(s) didn't match PersistentVolume's node affinity, 2 node(s) didn't "
        f"match Pod's node affinity/selector. no new claims to deallocate, {PREEMPTION}"
    )


def test_wait_for_first_consumer_claim_gets_selected_node(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    make_pvc(kubesim, ns, "data", "standard-wffc")
    time.sleep(0.2)
    pvc = get(kubesim, f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")
    assert pvc is not None and pvc["status"]["phase"] == "Pending"
    assert "volume.kubernetes.io/selected-node" not in (pvc["metadata"].get("annotations") or {})
    create_pod(
        kubesim,
        ns,
        pod_body(
            "consumer",
            volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
            nodeSelector={"topology.kubernetes.io/zone": "zone-b"},
        ),
    )
    selected = wait_for(
        lambda: (
            (get(kubesim, f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data") or {})
            .get("metadata", {})
            .get("annotations", {})
            .get("volume.kubernetes.io/selected-node")
        ),
        what="selected-node annotation",
    )
    assert selected == "kubesim-node-2"
    # The provisioner provisions on that node; once the claim is bound the pod is bound there.
    p = wait_for(
        lambda: (x := pod(kubesim, ns, "consumer")) and x["spec"].get("nodeName") and x, what="bound"
    )
    assert p["spec"]["nodeName"] == selected
    pvc = get(kubesim, f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")
    assert pvc is not None and pvc["status"]["phase"] == "Bound"
    wait_for(lambda: is_ready(pod(kubesim, ns, "consumer")), what="consumer running")


# -- binding --------------------------------------------------------------------------------------
def test_binding_subresource(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_pod(kubesim, ns, pod_body("manual", schedulerName="my-scheduler"))
    time.sleep(0.2)
    assert not pod(kubesim, ns, "manual")["spec"].get("nodeName")  # type: ignore[index]
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "manual"},
        "target": {"kind": "Node", "name": "kubesim-node-2"},
    }
    api(kubesim, "POST", f"/api/v1/namespaces/{ns}/pods/manual/binding", binding, ok=(201,))
    p = pod(kubesim, ns, "manual")
    assert p is not None and p["spec"]["nodeName"] == "kubesim-node-2"
    assert cond(p, "PodScheduled")["status"] == "True"
    code, _, body = kubesim.request("POST", f"/api/v1/namespaces/{ns}/pods/manual/binding", body=binding)
    assert code == 409 and 'is already assigned to node "kubesim-node-2"' in body["message"]
    wait_for(lambda: is_ready(pod(kubesim, ns, "manual")), what="manual running")
