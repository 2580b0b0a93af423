"""kubesim's Deployment, ReplicaSet, Job and TTL-after-finished controllers end to end: an
operator-style Deployment applied with kubectl gets a ready pod and ``kubectl rollout status``
returns; template changes roll out (RollingUpdate and Recreate); ReplicaSets keep their count;
Jobs complete, fail after ``backoffLimit`` or ``activeDeadlineSeconds``, suspend and resume, and
``ttlSecondsAfterFinished`` removes them.

Each test works in a namespace of its own.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest

from kubesim import testing
from kubesim.testing import KubeSim

T = TypeVar("T")


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


def patch(k: KubeSim, path: str, body: Any) -> Any:
    code, _, out = k.request("PATCH", path, body=body, content_type="application/merge-patch+json")
    assert code == 200, (path, code, out)
    return out


def new_ns(k: KubeSim) -> str:
    ns = f"wl-{uuid.uuid4().hex[:6]}"
    api(k, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    return ns


def items(k: KubeSim, path: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in api(k, "GET", path)["items"]}


def pods(k: KubeSim, ns: str) -> dict[str, dict[str, Any]]:
    return items(k, f"/api/v1/namespaces/{ns}/pods")


def rss(k: KubeSim, ns: str) -> dict[str, dict[str, Any]]:
    return items(k, f"/apis/apps/v1/namespaces/{ns}/replicasets")


def job_path(ns: str, name: str = "") -> str:
    return f"/apis/batch/v1/namespaces/{ns}/jobs" + (f"/{name}" if name else "")


def running_ready(p: dict[str, Any] | None) -> bool:
    if p is None or p["metadata"].get("deletionTimestamp"):
        return False
    st = p.get("status") or {}
    return st.get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or []
    )


def events(k: KubeSim, ns: str, reason: str | None = None) -> list[dict[str, Any]]:
    evs = api(k, "GET", f"/api/v1/namespaces/{ns}/events")["items"]
    evs.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
    return [e for e in evs if reason is None or e["reason"] == reason]


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: operator
  labels: {app.kubernetes.io/name: operator}
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: operator}
  template:
    metadata:
      labels: {app.kubernetes.io/name: operator}
    spec:
      containers:
      - name: manager
        image: example.com/operator:1
        args: [--leader-elect]
        readinessProbe:
          httpGet: {path: /readyz, port: 8081}
"""


def deploy_pods(k: KubeSim, ns: str, rs_name: str) -> list[dict[str, Any]]:
    return [p for p in pods(k, ns).values() if p["metadata"]["name"].startswith(rs_name + "-")]


# -- Deployments and ReplicaSets --------------------------------------------------------------------
def test_deployment_gets_a_ready_pod_and_rollout_status_returns(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    kubesim.kubectl("-n", ns, "apply", "-f", "-", input=DEPLOYMENT)
    out = kubesim.kubectl("-n", ns, "rollout", "status", "deployment/operator", "--timeout=30s")
    assert 'deployment "operator" successfully rolled out' in out.stdout
    d = api(kubesim, "GET", f"/apis/apps/v1/namespaces/{ns}/deployments/operator")
    (rs,) = rss(kubesim, ns).values()
    h = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"operator-{h}"
    assert rs["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "operator",
        "pod-template-hash": h,
    }
    assert rs["spec"]["replicas"] == 1
    assert rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "1"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "2"
    (p,) = deploy_pods(kubesim, ns, rs["metadata"]["name"])
    assert re.fullmatch(rf"operator-{h}-[bcdfghjklmnpqrstvwxz2456789]{{5}}", p["metadata"]["name"])
    assert p["metadata"]["labels"]["pod-template-hash"] == h
    assert p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert p["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] is True
    assert running_ready(p)
    st = d["status"]
    assert st["observedGeneration"] == d["metadata"]["generation"]
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"], st["availableReplicas"]) == (
        1,
        1,
        1,
        1,
    )
    conds = conditions(d)
    assert conds["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conds["Available"]["message"] == "Deployment has minimum availability."
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conds["Progressing"]["message"] == f'ReplicaSet "operator-{h}" has successfully progressed.'
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    rs_status = rss(kubesim, ns)[f"operator-{h}"]["status"]
    assert (
        rs_status["replicas"] == 1 and rs_status["readyReplicas"] == 1 and rs_status["availableReplicas"] == 1
    )
    msgs = [
        (e["source"]["component"], e["message"])
        for e in events(kubesim, ns)
        if e["involvedObject"]["kind"] != "Pod"
    ]
    assert ("deployment-controller", f"Scaled up replica set operator-{h} to 1") in msgs
    assert ("replicaset-controller", f"Created pod: {p['metadata']['name']}") in msgs


def test_rolling_update_creates_a_new_replica_set(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    kubesim.kubectl("-n", ns, "apply", "-f", "-", input=DEPLOYMENT)
    kubesim.kubectl("-n", ns, "scale", "deployment/operator", "--replicas=2")
    kubesim.kubectl("-n", ns, "rollout", "status", "deployment/operator", "--timeout=30s")
    (old,) = rss(kubesim, ns)
    kubesim.kubectl("-n", ns, "set", "image", "deployment/operator", "manager=example.com/operator:2")
    out = kubesim.kubectl("-n", ns, "rollout", "status", "deployment/operator", "--timeout=30s")
    assert 'deployment "operator" successfully rolled out' in out.stdout
    all_rs = rss(kubesim, ns)
    (new,) = [n for n in all_rs if n != old]
    assert all_rs[old]["spec"]["replicas"] == 0
    assert all_rs[new]["spec"]["replicas"] == 2
    assert all_rs[new]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    wait_for(lambda: not deploy_pods(kubesim, ns, old), what="old pods gone")
    ps = deploy_pods(kubesim, ns, new)
    assert len(ps) == 2 and all(p["spec"]["containers"][0]["image"] == "example.com/operator:2" for p in ps)
    scaling = [e["message"] for e in events(kubesim, ns, "ScalingReplicaSet")]
    assert f"Scaled up replica set {new} to 1" in scaling
    assert f"Scaled down replica set {old} to 0 from 1" in scaling
    hist = kubesim.kubectl("-n", ns, "rollout", "history", "deployment/operator").stdout
    assert re.search(r"^1\s", hist, re.M) and re.search(r"^2\s", hist, re.M)


def test_recreate_strategy_removes_old_pods_first(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    manifest = DEPLOYMENT.replace("  replicas: 1\n", "  replicas: 2\n  strategy: {type: Recreate}\n")
    kubesim.kubectl("-n", ns, "apply", "-f", "-", input=manifest)
    kubesim.kubectl("-n", ns, "rollout", "status", "deployment/operator", "--timeout=30s")
    (old,) = rss(kubesim, ns)
    kubesim.kubectl("-n", ns, "set", "image", "deployment/operator", "manager=example.com/operator:2")
    kubesim.kubectl("-n", ns, "rollout", "status", "deployment/operator", "--timeout=30s")
    (new,) = [n for n in rss(kubesim, ns) if n != old]
    scaling = [e["message"] for e in events(kubesim, ns, "ScalingReplicaSet")]
    assert scaling.index(f"Scaled down replica set {old} to 0 from 2") < scaling.index(
        f"Scaled up replica set {new} to 2"
    )
    # No pod of the new ReplicaSet was created before the old ones were gone.
    deleted = [e for e in events(kubesim, ns, "SuccessfulDelete") if e["involvedObject"]["name"] == old]
    created = [e for e in events(kubesim, ns, "SuccessfulCreate") if e["involvedObject"]["name"] == new]
    assert len(deleted) == 2 and len(created) == 2
    assert len(deploy_pods(kubesim, ns, new)) == 2


def test_replica_set_keeps_its_count(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "rs"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "rs"}},
            "template": {
                "metadata": {"labels": {"app": "rs"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }
    api(kubesim, "POST", f"/apis/apps/v1/namespaces/{ns}/replicasets", rs)
    wait_for(lambda: sum(running_ready(p) for p in pods(kubesim, ns).values()) == 3, what="3 ready pods")
    victim = sorted(pods(kubesim, ns))[0]
    api(kubesim, "DELETE", f"/api/v1/namespaces/{ns}/pods/{victim}")
    wait_for(
        lambda: (
            victim not in pods(kubesim, ns) and sum(running_ready(p) for p in pods(kubesim, ns).values()) == 3
        ),
        what="a replacement pod",
    )
    patch(kubesim, f"/apis/apps/v1/namespaces/{ns}/replicasets/rs", {"spec": {"replicas": 1}})
    wait_for(lambda: len(pods(kubesim, ns)) == 1, what="scale down to 1")
    st = wait_for(
        lambda: (
            (s := api(kubesim, "GET", f"/apis/apps/v1/namespaces/{ns}/replicasets/rs")["status"])["replicas"]
            == 1
            and s
        )
    )
    assert st["fullyLabeledReplicas"] == 1 and st["observedGeneration"] == 2
    assert (
        len(
            [
                e
                for e in events(kubesim, ns, "SuccessfulDelete")
                if e["message"].startswith("Deleted pod: rs-")
            ]
        )
        == 2
    )


# -- Jobs ---------------------------------------------------------------------------------------
def make_job(name: str, command: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            **spec,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", command]}],
                }
            },
        },
    }


def job(k: KubeSim, ns: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = api(k, "GET", job_path(ns, name))
    return out


def finished(k: KubeSim, ns: str, name: str, type_: str) -> dict[str, Any] | None:
    j = job(k, ns, name)
    c = conditions(j).get(type_)
    return j if c is not None and c["status"] == "True" else None


def test_job_that_exits_0_completes(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    created = api(
        kubesim, "POST", job_path(ns), make_job("ok", "sleep 0.3; exit 0", completions=2, parallelism=2)
    )
    uid = created["metadata"]["uid"]
    ps = wait_for(lambda: len(p := pods(kubesim, ns)) == 2 and p, what="two pods")
    for p in ps.values():
        assert p["metadata"]["name"].startswith("ok-")
        assert p["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "ok"
        assert p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] == uid
        assert p["metadata"]["finalizers"] == ["batch.kubernetes.io/job-tracking"]
        ref = p["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) == (
            "Job",
            uid,
            True,
            True,
        )
    j = wait_for(lambda: finished(kubesim, ns, "ok", "Complete"), what="Complete")
    st = j["status"]
    assert st["succeeded"] == 2 and not st.get("failed") and not st.get("active")
    assert st["ready"] == 0 and st["terminating"] == 0 and st["uncountedTerminatedPods"] == {}
    assert st["startTime"] and st["completionTime"]
    assert [c["type"] for c in st["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    for c in st["conditions"]:
        assert (c["reason"], c["message"]) == (
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        )
    # Counted pods lose the tracking finalizer and stay as Succeeded.
    assert all(not p["metadata"].get("finalizers") for p in pods(kubesim, ns).values())
    assert {p["status"]["phase"] for p in pods(kubesim, ns).values()} == {"Succeeded"}
    ev = [(e["reason"], e["message"]) for e in events(kubesim, ns) if e["involvedObject"]["kind"] == "Job"]
    assert (
        ev.count(("SuccessfulCreate", f"Created pod: {sorted(ps)[0]}"))
        + ev.count(("SuccessfulCreate", f"Created pod: {sorted(ps)[1]}"))
        == 2
    )
    assert ev[-1] == ("Completed", "Job completed")
    out = kubesim.kubectl("-n", ns, "wait", "--for=condition=Complete", "job/ok", "--timeout=5s")
    assert "condition met" in out.stdout


def test_job_that_exits_1_fails_after_backoff_limit(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    api(kubesim, "POST", job_path(ns), make_job("bad", "exit 1", backoffLimit=2))
    j = wait_for(lambda: finished(kubesim, ns, "bad", "Failed"), what="Failed")
    st = j["status"]
    assert st["failed"] == 3 and not st.get("succeeded") and not st.get("active")
    assert not st.get("completionTime")
    assert [c["type"] for c in st["conditions"]] == ["FailureTarget", "Failed"]
    for c in st["conditions"]:
        assert (c["reason"], c["message"]) == (
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        )
    ps = pods(kubesim, ns)
    assert len(ps) == 3 and {p["status"]["phase"] for p in ps.values()} == {"Failed"}
    ev = [e for e in events(kubesim, ns, "BackoffLimitExceeded")]
    assert ev[0]["type"] == "Warning" and ev[0]["message"] == "Job has reached the specified backoff limit"


def test_job_active_deadline(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    api(kubesim, "POST", job_path(ns), make_job("slow", "sleep 30", activeDeadlineSeconds=1))
    j = wait_for(lambda: finished(kubesim, ns, "slow", "Failed"), what="Failed")
    st = j["status"]
    assert conditions(j)["Failed"]["reason"] == "DeadlineExceeded"
    assert conditions(j)["Failed"]["message"] == "Job was active longer than specified deadline"
    assert conditions(j)["FailureTarget"]["reason"] == "DeadlineExceeded"
    # The running pod was deleted, counted as failed, and the Job failed once it was gone.
    assert st["failed"] == 1 and not st.get("active") and st["terminating"] == 0
    wait_for(lambda: not pods(kubesim, ns), what="the pod gone")
    reasons = [e["reason"] for e in events(kubesim, ns) if e["involvedObject"]["kind"] == "Job"]
    assert reasons[-2:] == ["SuccessfulDelete", "DeadlineExceeded"]


def test_ttl_after_finished_removes_the_job(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    api(kubesim, "POST", job_path(ns), make_job("ttl", "exit 0", ttlSecondsAfterFinished=0))
    wait_for(lambda: api(kubesim, "GET", job_path(ns), ok=(200,))["items"] == [], what="job deleted")
    wait_for(lambda: not pods(kubesim, ns), what="its pods deleted")


def test_suspended_job_starts_when_resumed(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    api(kubesim, "POST", job_path(ns), make_job("s", "exit 0", suspend=True))
    j = wait_for(
        lambda: (j := job(kubesim, ns, "s")).get("status", {}).get("conditions") and j, what="Suspended"
    )
    assert (
        conditions(j)["Suspended"]["status"] == "True"
        and conditions(j)["Suspended"]["reason"] == "JobSuspended"
    )
    assert not j["status"].get("startTime")
    time.sleep(0.3)
    assert not pods(kubesim, ns)
    patch(kubesim, job_path(ns, "s"), {"spec": {"suspend": False}})
    j = wait_for(lambda: finished(kubesim, ns, "s", "Complete"), what="Complete after resume")
    assert (
        conditions(j)["Suspended"]["status"] == "False"
        and conditions(j)["Suspended"]["reason"] == "JobResumed"
    )
    assert j["status"]["startTime"]
    assert [e["reason"] for e in events(kubesim, ns) if e["reason"] in ("Suspended", "Resumed")] == [
        "Suspended",
        "Resumed",
    ]


def test_unemulated_job_features_are_refused_visibly(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    body = make_job(
        "pfp",
        "exit 0",
        podFailurePolicy={
            "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]
        },
    )
    api(kubesim, "POST", job_path(ns), body)
    ev = wait_for(lambda: events(kubesim, ns, "Unsupported"), what="the Unsupported event")
    assert ev[0]["type"] == "Warning"
    assert ev[0]["message"] == "kubesim does not emulate podFailurePolicy; the Job is not synced"
    assert not pods(kubesim, ns)


def test_operator_style_job_with_a_claim_and_a_node(kubesim: KubeSim) -> None:
    """The shape of ClusterResync's staging Job: backoffLimit 0, a deadline, a claim, a node."""
    ns = new_ns(kubesim)
    api(
        kubesim,
        "POST",
        f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
        {
            "metadata": {"name": "staging"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
        },
    )
    body = make_job("stage", "echo restored > /data/marker", backoffLimit=0, activeDeadlineSeconds=600)
    tspec = body["spec"]["template"]["spec"]
    tspec["nodeSelector"] = {"kubernetes.io/hostname": "kubesim-node-2"}
    tspec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "staging"}}]
    tspec["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    api(kubesim, "POST", job_path(ns), body)
    wait_for(lambda: finished(kubesim, ns, "stage", "Complete"), what="Complete")
    (p,) = pods(kubesim, ns).values()
    assert p["spec"]["nodeName"] == "kubesim-node-2"
    pv = kubesim.pv_for_claim(ns, "staging")
    assert pv is not None
    assert kubesim.read_volume_file(pv, "marker") == b"restored\n"
