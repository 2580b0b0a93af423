"""kubesim's StatefulSet controller end to end, with the scheduler, kubelet and volume controllers:
identities, claims from volumeClaimTemplates and their known races, OrderedReady and Parallel
management, scaling, retention policies, rolling updates with a partition, OnDelete,
ControllerRevisions, status and ``kubectl rollout status``.

Each test works in a namespace of its own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest

from kubesim import testing
from kubesim.testing import KubeSim

T = TypeVar("T")
GATE = "example.com/gate"


@pytest.fixture(scope="module")
def kubesim() -> Iterator[KubeSim]:
    with KubeSim() as sim:
        yield sim


# -- helpers -------------------------------------------------------------------------------------
def wait_for(fn: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    return testing.wait_for(fn, timeout, what, interval=0.02)


def api(k: KubeSim, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 202)) -> Any:
    code, _, out = k.request(method, path, body=body)
    assert code in ok, (method, path, code, out)
    return out


def patch(k: KubeSim, path: str, body: Any, sub: str = "") -> Any:
    code, _, out = k.request(
        "PATCH", path + (f"/{sub}" if sub else ""), body=body, content_type="application/merge-patch+json"
    )
    assert code == 200, (path, code, out)
    return out


def get(k: KubeSim, path: str) -> Any | None:
    code, _, out = k.request("GET", path)
    return out if code == 200 else None


def new_ns(k: KubeSim) -> str:
    ns = f"sts-{uuid.uuid4().hex[:6]}"
    api(k, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    return ns


def sts_path(ns: str, name: str = "") -> str:
    return f"/apis/apps/v1/namespaces/{ns}/statefulsets" + (f"/{name}" if name else "")


def pod_path(ns: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{ns}/pods" + (f"/{name}" if name else "")


def pvc_path(ns: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{ns}/persistentvolumeclaims" + (f"/{name}" if name else "")


def make_sts(
    name: str,
    replicas: int = 3,
    claims: bool = True,
    gate: bool = False,
    **spec: Any,
) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "containers": [
            {
                "name": "app",
                "image": "busybox",
                **({"volumeMounts": [{"name": "data", "mountPath": "/data"}]} if claims else {}),
            }
        ],
        "terminationGracePeriodSeconds": 1,
    }
    if gate:
        # Pods become Ready only when a test sets the gate's condition, as a gate controller would.
        pod_spec["readinessGates"] = [{"conditionType": GATE}]
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
            **spec,
        },
    }
    if claims:
        body["spec"]["volumeClaimTemplates"] = [
            {
                "metadata": {"name": "data", "labels": {"tier": "storage"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
            }
        ]
    return body


def create_sts(k: KubeSim, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = api(k, "POST", sts_path(ns), body)
    return out


def pods(k: KubeSim, ns: str) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in api(k, "GET", pod_path(ns))["items"]}


def claims(k: KubeSim, ns: str) -> dict[str, dict[str, Any]]:
    return {c["metadata"]["name"]: c for c in api(k, "GET", pvc_path(ns))["items"]}


def running_ready(p: dict[str, Any] | None) -> bool:
    if p is None or p["metadata"].get("deletionTimestamp"):
        return False
    st = p.get("status") or {}
    return st.get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or []
    )


def all_ready(k: KubeSim, ns: str, names: list[str], bound: list[str] | None = None) -> bool:
    ps = pods(k, ns)
    if not all(running_ready(ps.get(n)) for n in names):
        return False
    if bound:
        cs = claims(k, ns)
        return all((cs.get(c) or {}).get("status", {}).get("phase") == "Bound" for c in bound)
    return True


def set_gate(k: KubeSim, ns: str, pod: str) -> None:
    p = api(k, "GET", pod_path(ns, pod))
    conds = [c for c in p["status"].get("conditions") or [] if c["type"] != GATE]
    conds.append({"type": GATE, "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"})
    patch(k, pod_path(ns, pod), {"status": {"conditions": conds}}, "status")


def events(k: KubeSim, ns: str, reason: str | None = None) -> list[dict[str, Any]]:
    items = api(k, "GET", f"/api/v1/namespaces/{ns}/events")["items"]
    items.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
    return [e for e in items if reason is None or e["reason"] == reason]


def messages(k: KubeSim, ns: str, reason: str) -> list[str]:
    return [e["message"] for e in events(k, ns, reason)]


def sts_status(k: KubeSim, ns: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = api(k, "GET", sts_path(ns, name)).get("status") or {}
    return out


# -- tests ---------------------------------------------------------------------------------------
def test_three_replicas_with_claims_become_ready(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    t0 = time.monotonic()
    create_sts(kubesim, ns, make_sts("db"))
    wait_for(
        lambda: all_ready(kubesim, ns, ["db-0", "db-1", "db-2"], ["data-db-0", "data-db-1", "data-db-2"]),
        what="3 pods Running and Ready with Bound claims",
    )
    elapsed = time.monotonic() - t0
    print(f"\n3-replica StatefulSet with 1Mi claims Ready in {elapsed:.2f} s")
    s = api(kubesim, "GET", sts_path(ns, "db"))
    wait_for(lambda: sts_status(kubesim, ns, "db").get("readyReplicas") == 3, what="status.readyReplicas")
    st = sts_status(kubesim, ns, "db")
    assert st["replicas"] == 3 and st["availableReplicas"] == 3
    assert st["currentReplicas"] == 3 and st["updatedReplicas"] == 3
    assert st["observedGeneration"] == s["metadata"]["generation"]
    assert st["currentRevision"] == st["updateRevision"]
    assert st["collisionCount"] == 0
    # The ControllerRevision: <set>-<hash>, revision 1, owned by the set, with the template.
    rev = api(kubesim, "GET", f"/apis/apps/v1/namespaces/{ns}/controllerrevisions/{st['updateRevision']}")
    assert rev["revision"] == 1
    assert rev["metadata"]["name"].startswith("db-")
    assert rev["metadata"]["labels"]["app"] == "db"
    assert rev["metadata"]["labels"]["controller.kubernetes.io/hash"] == rev["metadata"]["name"][3:]
    assert rev["metadata"]["ownerReferences"][0]["uid"] == s["metadata"]["uid"]
    assert rev["data"]["spec"]["template"]["$patch"] == "replace"
    # Pod identity.
    p = api(kubesim, "GET", pod_path(ns, "db-1"))
    assert p["metadata"]["labels"] == {
        "app": "db",
        "statefulset.kubernetes.io/pod-name": "db-1",
        "apps.kubernetes.io/pod-index": "1",
        "controller-revision-hash": st["updateRevision"],
    }
    assert p["metadata"]["generateName"] == "db-"
    assert p["spec"]["hostname"] == "db-1" and p["spec"]["subdomain"] == "db"
    ref = p["metadata"]["ownerReferences"][0]
    assert ref == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "db",
        "uid": s["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-1"}} in p["spec"]["volumes"]
    # Claims: template labels plus the selector's, no owner under the default Retain policy.
    c = api(kubesim, "GET", pvc_path(ns, "data-db-1"))
    assert c["metadata"]["labels"] == {"tier": "storage", "app": "db"}
    assert not c["metadata"].get("ownerReferences")
    assert c["spec"]["resources"]["requests"]["storage"] == "1Mi"
    # Upstream event wording, in creation order.
    created = messages(kubesim, ns, "SuccessfulCreate")
    assert created == [
        "create Claim data-db-0 Pod db-0 in StatefulSet db success",
        "create Pod db-0 in StatefulSet db successful",
        "create Claim data-db-1 Pod db-1 in StatefulSet db success",
        "create Pod db-1 in StatefulSet db successful",
        "create Claim data-db-2 Pod db-2 in StatefulSet db success",
        "create Pod db-2 in StatefulSet db successful",
    ]
    assert {e["source"]["component"] for e in events(kubesim, ns, "SuccessfulCreate")} == {
        "statefulset-controller"
    }
    out = kubesim.kubectl("-n", ns, "rollout", "status", "statefulset/db", "--timeout=20s")
    assert "partitioned roll out complete: 3 new pods have been updated" in out.stdout


def test_ordered_ready_creates_one_at_a_time_and_parallel_does_not(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_sts(kubesim, ns, make_sts("ord", claims=False, gate=True))
    wait_for(lambda: (pods(kubesim, ns).get("ord-0") or {}).get("status", {}).get("phase") == "Running")
    time.sleep(0.5)  # the set would have moved on by now if it did not wait for Ready
    assert list(pods(kubesim, ns)) == ["ord-0"]
    set_gate(kubesim, ns, "ord-0")
    wait_for(lambda: "ord-1" in pods(kubesim, ns), what="ord-1 after ord-0 Ready")
    assert "ord-2" not in pods(kubesim, ns)
    set_gate(kubesim, ns, "ord-1")
    wait_for(lambda: "ord-2" in pods(kubesim, ns), what="ord-2 after ord-1 Ready")
    # Parallel: all at once, none of them Ready.
    create_sts(kubesim, ns, make_sts("par", claims=False, gate=True, podManagementPolicy="Parallel"))
    wait_for(
        lambda: {"par-0", "par-1", "par-2"} <= set(pods(kubesim, ns)), what="all Parallel pods", timeout=5
    )
    assert not any(running_ready(p) for n, p in pods(kubesim, ns).items() if n.startswith("par-"))


def test_ordinals_start(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_sts(kubesim, ns, make_sts("web", replicas=2, ordinals={"start": 5}))
    wait_for(lambda: all_ready(kubesim, ns, ["web-5", "web-6"], ["data-web-5", "data-web-6"]))
    p = pods(kubesim, ns)
    assert set(p) == {"web-5", "web-6"}
    assert p["web-6"]["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "6"


def test_scale_up_and_down_in_reverse_order(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_sts(kubesim, ns, make_sts("s", replicas=1))
    wait_for(lambda: all_ready(kubesim, ns, ["s-0"]))
    kubesim.kubectl("-n", ns, "scale", "statefulset/s", "--replicas=3")
    wait_for(lambda: all_ready(kubesim, ns, ["s-0", "s-1", "s-2"], ["data-s-1", "data-s-2"]))
    kubesim.kubectl("-n", ns, "scale", "statefulset/s", "--replicas=1")
    wait_for(lambda: set(pods(kubesim, ns)) == {"s-0"}, what="scale down to s-0")
    assert messages(kubesim, ns, "SuccessfulDelete") == [
        "delete Pod s-2 in StatefulSet s successful",
        "delete Pod s-1 in StatefulSet s successful",
    ]
    # Retain: the claims of the removed replicas stay.
    assert {"data-s-0", "data-s-1", "data-s-2"} <= set(claims(kubesim, ns))
    wait_for(lambda: sts_status(kubesim, ns, "s").get("replicas") == 1, what="status.replicas 1")


def test_deleted_pod_comes_back_with_the_same_claim(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_sts(kubesim, ns, make_sts("db", replicas=1))
    wait_for(lambda: all_ready(kubesim, ns, ["db-0"], ["data-db-0"]))
    old_pod = pods(kubesim, ns)["db-0"]["metadata"]["uid"]
    claim = claims(kubesim, ns)["data-db-0"]
    kubesim.write_volume_file(claim["spec"]["volumeName"], "marker.txt", "kept")
    api(kubesim, "DELETE", pod_path(ns, "db-0"))
    wait_for(
        lambda: (
            (p := pods(kubesim, ns).get("db-0")) is not None
            and running_ready(p)
            and p["metadata"]["uid"] != old_pod
        ),
        what="db-0 recreated",
    )
    again = claims(kubesim, ns)["data-db-0"]
    assert again["metadata"]["uid"] == claim["metadata"]["uid"]
    assert not again["metadata"].get("deletionTimestamp")
    assert kubesim.read_volume_file(again["spec"]["volumeName"], "marker.txt") == b"kept"


def test_deleting_pod_and_claim_recreates_an_empty_claim(kubesim: KubeSim) -> None:
    """The race users hit: the claim is recreated EMPTY from the template before the new pod."""
    ns = new_ns(kubesim)
    create_sts(kubesim, ns, make_sts("db", replicas=1))
    wait_for(lambda: all_ready(kubesim, ns, ["db-0"], ["data-db-0"]))
    old_claim = claims(kubesim, ns)["data-db-0"]
    old_pv = old_claim["spec"]["volumeName"]
    kubesim.write_volume_file(old_pv, "marker.txt", "precious")
    # The claim waits for its pod (pvc-protection), then both go.
    api(kubesim, "DELETE", pvc_path(ns, "data-db-0"))
    api(kubesim, "DELETE", pod_path(ns, "db-0"))

    def recreated() -> dict[str, Any] | None:
        c = claims(kubesim, ns).get("data-db-0")
        if c is None or c["metadata"]["uid"] == old_claim["metadata"]["uid"]:
            return None
        if c.get("status", {}).get("phase") != "Bound" or not running_ready(pods(kubesim, ns).get("db-0")):
            return None
        return c

    new_claim = wait_for(recreated, what="a new claim and pod")
    new_pv = new_claim["spec"]["volumeName"]
    assert new_pv != old_pv
    assert new_claim["metadata"]["labels"] == {"tier": "storage", "app": "db"}
    assert kubesim.volume_tree(new_pv) == {}
    with pytest.raises(FileNotFoundError):
        kubesim.read_volume_file(new_pv, "marker.txt")
    # The recorder folds the repeated event: the claim was created twice.
    ev = [
        e
        for e in events(kubesim, ns, "SuccessfulCreate")
        if e["message"].startswith("create Claim data-db-0")
    ]
    assert len(ev) == 1 and ev[0]["count"] == 2


def test_claim_being_deleted_blocks_pod_creation(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_sts(kubesim, ns, make_sts("db", replicas=1))
    wait_for(lambda: all_ready(kubesim, ns, ["db-0"], ["data-db-0"]))
    old_claim = claims(kubesim, ns)["data-db-0"]
    patch(
        kubesim,
        pvc_path(ns, "data-db-0"),
        {"metadata": {"finalizers": ["kubernetes.io/pvc-protection", "example.com/hold"]}},
    )
    api(kubesim, "DELETE", pvc_path(ns, "data-db-0"))
    api(kubesim, "DELETE", pod_path(ns, "db-0"))
    want = "create Pod db-0 in StatefulSet db failed error: pvc data-db-0 is being deleted"
    ev = wait_for(lambda: [e for e in events(kubesim, ns, "FailedCreate") if e["message"] == want], what=want)
    assert ev[0]["type"] == "Warning" and ev[0]["involvedObject"]["kind"] == "StatefulSet"
    time.sleep(0.5)
    assert "db-0" not in pods(kubesim, ns)
    held = claims(kubesim, ns)["data-db-0"]
    assert held["metadata"]["uid"] == old_claim["metadata"]["uid"] and held["metadata"]["deletionTimestamp"]
    assert held["metadata"]["finalizers"] == ["example.com/hold"]  # pvc-protection let it go
    # Release it: the controller creates a new claim and the pod.
    patch(kubesim, pvc_path(ns, "data-db-0"), {"metadata": {"finalizers": []}})
    wait_for(lambda: all_ready(kubesim, ns, ["db-0"], ["data-db-0"]), what="db-0 back")
    assert claims(kubesim, ns)["data-db-0"]["metadata"]["uid"] != old_claim["metadata"]["uid"]


def test_pending_pod_gets_its_missing_claim_back(kubesim: KubeSim) -> None:
    """createMissingPersistentVolumeClaims runs on every sync of a Pending pod."""
    ns = new_ns(kubesim)
    body = make_sts("p", replicas=1)
    body["spec"]["template"]["spec"]["nodeSelector"] = {"no-such-label": "x"}
    create_sts(kubesim, ns, body)
    first = wait_for(lambda: claims(kubesim, ns).get("data-p-0"), what="claim")
    wait_for(lambda: (pods(kubesim, ns).get("p-0") or {}).get("status", {}).get("phase") == "Pending")
    # The pod is not scheduled, so pvc-protection does not hold the claim.
    api(kubesim, "DELETE", pvc_path(ns, "data-p-0"))
    again = wait_for(
        lambda: (
            (c := claims(kubesim, ns).get("data-p-0"))
            and c["metadata"]["uid"] != first["metadata"]["uid"]
            and c
        ),
        what="the claim recreated for the Pending pod",
    )
    assert again["metadata"]["labels"] == {"tier": "storage", "app": "p"}


def test_retention_policy_delete(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    body = make_sts(
        "r",
        replicas=2,
        persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete", "whenScaled": "Delete"},
    )
    s = create_sts(kubesim, ns, body)
    wait_for(lambda: all_ready(kubesim, ns, ["r-0", "r-1"], ["data-r-0", "data-r-1"]))
    c0 = claims(kubesim, ns)["data-r-0"]
    assert c0["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "name": "r",
            "uid": s["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    # whenScaled: Delete — the scaled-down replica's claim goes with its pod.
    kubesim.kubectl("-n", ns, "scale", "statefulset/r", "--replicas=1")
    wait_for(lambda: "data-r-1" not in claims(kubesim, ns), what="data-r-1 deleted on scale down")
    assert "data-r-0" in claims(kubesim, ns) and "r-1" not in pods(kubesim, ns)
    # Deleting only a pod never touches its claim.
    r0 = pods(kubesim, ns)["r-0"]["metadata"]["uid"]
    api(kubesim, "DELETE", pod_path(ns, "r-0"))
    wait_for(lambda: all_ready(kubesim, ns, ["r-0"]) and pods(kubesim, ns)["r-0"]["metadata"]["uid"] != r0)
    assert claims(kubesim, ns)["data-r-0"]["metadata"]["uid"] == c0["metadata"]["uid"]
    # whenDeleted: Delete — the set's claims go with the set.
    kubesim.kubectl("-n", ns, "delete", "statefulset/r", "--wait=false")
    wait_for(lambda: not claims(kubesim, ns) and not pods(kubesim, ns), what="claims and pods gone")


def test_rolling_update_with_partition(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    body = make_sts(
        "ru", claims=False, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}
    )
    create_sts(kubesim, ns, body)
    wait_for(lambda: all_ready(kubesim, ns, ["ru-0", "ru-1", "ru-2"]))
    rev1 = sts_status(kubesim, ns, "ru")["currentRevision"]
    patch(kubesim, sts_path(ns, "ru"), {"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}})

    def updated() -> dict[str, Any] | None:
        st = sts_status(kubesim, ns, "ru")
        ps = pods(kubesim, ns)
        if (
            st.get("updateRevision") in (None, rev1)
            or st.get("updatedReplicas") != 2
            or st.get("readyReplicas") != 3
        ):
            return None
        if not all(running_ready(ps.get(n)) for n in ("ru-0", "ru-1", "ru-2")):
            return None
        return st

    st = wait_for(updated, what="ordinals >= 1 updated")
    rev2 = st["updateRevision"]
    assert st["currentRevision"] == rev1 and st["currentReplicas"] == 1
    ps = pods(kubesim, ns)
    assert [ps[n]["metadata"]["labels"]["controller-revision-hash"] for n in ("ru-0", "ru-1", "ru-2")] == [
        rev1,
        rev2,
        rev2,
    ]
    assert ps["ru-2"]["metadata"]["annotations"] == {"v": "2"}
    assert messages(kubesim, ns, "SuccessfulDelete") == [
        "delete Pod ru-2 in StatefulSet ru successful",
        "delete Pod ru-1 in StatefulSet ru successful",
    ]
    out = kubesim.kubectl("-n", ns, "rollout", "status", "statefulset/ru", "--timeout=20s")
    assert "partitioned roll out complete: 2 new pods have been updated" in out.stdout
    revs = api(kubesim, "GET", f"/apis/apps/v1/namespaces/{ns}/controllerrevisions")["items"]
    assert sorted((r["metadata"]["name"], r["revision"]) for r in revs) == sorted([(rev1, 1), (rev2, 2)])
    # Partition 0: the rest follows and the update completes.
    patch(kubesim, sts_path(ns, "ru"), {"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}})
    wait_for(
        lambda: (
            (s := sts_status(kubesim, ns, "ru")).get("currentRevision") == rev2
            and s.get("currentReplicas") == 3
        ),
        what="rolling update complete",
    )
    assert pods(kubesim, ns)["ru-0"]["metadata"]["labels"]["controller-revision-hash"] == rev2
    kubesim.kubectl("-n", ns, "rollout", "status", "statefulset/ru", "--timeout=20s")


def test_on_delete_strategy(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_sts(kubesim, ns, make_sts("od", replicas=2, claims=False, updateStrategy={"type": "OnDelete"}))
    wait_for(lambda: all_ready(kubesim, ns, ["od-0", "od-1"]))
    rev1 = sts_status(kubesim, ns, "od")["currentRevision"]
    patch(kubesim, sts_path(ns, "od"), {"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}})
    rev2 = wait_for(lambda: (r := sts_status(kubesim, ns, "od").get("updateRevision")) != rev1 and r)
    time.sleep(0.3)
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods(kubesim, ns).values()} == {rev1}
    api(kubesim, "DELETE", pod_path(ns, "od-1"))
    wait_for(
        lambda: (
            (p := pods(kubesim, ns).get("od-1")) is not None
            and p["metadata"]["labels"]["controller-revision-hash"] == rev2
            and running_ready(p)
        ),
        what="od-1 recreated at the update revision",
    )
    assert pods(kubesim, ns)["od-0"]["metadata"]["labels"]["controller-revision-hash"] == rev1
    st = wait_for(lambda: (s := sts_status(kubesim, ns, "od")).get("updatedReplicas") == 1 and s)
    assert st["currentReplicas"] == 1 and st["currentRevision"] == rev1


def test_failed_pod_is_replaced(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    body = make_sts("f", replicas=1, claims=False)
    body["spec"]["template"]["metadata"]["annotations"] = {"kubesim.io/process": "true"}
    body["spec"]["template"]["spec"]["containers"][0]["command"] = ["sh", "-c", "sleep 30"]
    create_sts(kubesim, ns, body)
    wait_for(lambda: all_ready(kubesim, ns, ["f-0"]))
    uid = pods(kubesim, ns)["f-0"]["metadata"]["uid"]
    # A terminal phase (as after a node reboot or eviction): the set deletes and recreates the pod.
    patch(kubesim, pod_path(ns, "f-0"), {"status": {"phase": "Failed"}}, "status")
    wait_for(
        lambda: (
            (q := pods(kubesim, ns).get("f-0")) is not None
            and running_ready(q)
            and q["metadata"]["uid"] != uid
        ),
        what="f-0 replaced",
    )
    assert "delete Pod f-0 in StatefulSet f successful" in messages(kubesim, ns, "SuccessfulDelete")


def test_injected_claim_creation_failure_is_reported_and_retried(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    kubesim.call(
        lambda c: c.faults.add(
            "workload",
            match={
                "controller": "statefulset",
                "verb": "create",
                "resource": "persistentvolumeclaims",
                "namespace": ns,
            },
            count=1,
            code=500,
            message="etcdserver: request timed out",
        )
    )
    create_sts(kubesim, ns, make_sts("f", replicas=1))
    wait_for(lambda: all_ready(kubesim, ns, ["f-0"], ["data-f-0"]), what="f-0 after the retry")
    assert messages(kubesim, ns, "FailedCreate") == [
        "create Claim data-f-0 for Pod f-0 in StatefulSet f failed error: etcdserver: request timed out",
        "create Pod f-0 in StatefulSet f failed error: failed to create PVC data-f-0: etcdserver: request timed out",
    ]
    assert "create Pod f-0 in StatefulSet f successful" in messages(kubesim, ns, "SuccessfulCreate")


def test_rollout_undo_uses_the_controller_revisions(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_sts(kubesim, ns, make_sts("u", replicas=1, claims=False))
    wait_for(lambda: all_ready(kubesim, ns, ["u-0"]))
    rev1 = sts_status(kubesim, ns, "u")["currentRevision"]
    kubesim.kubectl("-n", ns, "set", "image", "statefulset/u", "app=busybox:2")
    wait_for(
        lambda: (
            (s := sts_status(kubesim, ns, "u")).get("currentRevision") not in (None, rev1)
            and s.get("readyReplicas") == 1
        )
    )
    kubesim.kubectl("-n", ns, "rollout", "undo", "statefulset/u")
    # Rolling back reuses revision 1's object with the next revision number.
    st = wait_for(
        lambda: (
            (s := sts_status(kubesim, ns, "u")).get("currentRevision") == rev1
            and s.get("readyReplicas") == 1
            and s
        ),
        what="rolled back",
    )
    rev = api(kubesim, "GET", f"/apis/apps/v1/namespaces/{ns}/controllerrevisions/{st['currentRevision']}")
    assert rev["revision"] == 3
    assert pods(kubesim, ns)["u-0"]["spec"]["containers"][0]["image"] == "busybox"
