"""kubesim's kubelet: pod lifecycle, statuses and conditions, graceful deletion, restarts and the
crash-loop back-off, the crash fault, process containers (mount namespaces, volumes, users,
environment, probes, logs, exec) and process cleanup.

Each test works in a namespace of its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from kubesim import runtime
from kubesim.cluster import ClusterConfig
from kubesim.testing import KubeSim, wait_for

T = TypeVar("T")
PROCESS = {"kubesim.io/process": "true"}
POD_IP_ENV = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]


@pytest.fixture(scope="module")
def kubesim() -> Iterator[KubeSim]:
    """Probes run five times as often as their periods say, so that they show within a test."""
    with KubeSim(config=ClusterConfig(probe_period_scale=0.2)) as sim:
        yield sim


# -- helpers -------------------------------------------------------------------------------------


def api(k: KubeSim, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
    code, _, out = k.request(method, path, body=body)
    assert code in ok, (code, out)
    return out


def new_ns(k: KubeSim) -> str:
    ns = f"kubelet-{uuid.uuid4().hex[:6]}"
    api(k, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    wait_for(lambda: pod_get(k, ns, "serviceaccounts/default"), what="default SA")
    return ns


def pod_get(k: KubeSim, ns: str, rest: str) -> dict[str, Any] | None:
    code, _, body = k.request("GET", f"/api/v1/namespaces/{ns}/{rest}")
    return body if code == 200 else None


def pod(k: KubeSim, ns: str, name: str) -> dict[str, Any] | None:
    return pod_get(k, ns, f"pods/{name}")


def create_pod(
    k: KubeSim,
    ns: str,
    name: str,
    containers: list[dict[str, Any]],
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    for c in containers:
        c.setdefault("image", "busybox:1.36")
    body = {"metadata": meta, "spec": {"containers": containers, **spec}}
    return api(k, "POST", f"/api/v1/namespaces/{ns}/pods", body)  # type: ignore[no-any-return]


def cond(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c  # type: ignore[no-any-return]
    return {}


def is_ready(obj: dict[str, Any] | None) -> bool:
    return cond(obj, "Ready").get("status") == "True"


def cstatus(obj: dict[str, Any] | None, name: str, init: bool = False) -> dict[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    for s in ((obj or {}).get("status") or {}).get(key) or []:
        if s["name"] == name:
            return s  # type: ignore[no-any-return]
    return {}


def wait_ready(k: KubeSim, ns: str, name: str, timeout: float = 10.0) -> dict[str, Any]:
    return wait_for(lambda: (p := pod(k, ns, name)) and is_ready(p) and p, timeout, f"{name} ready")


def event_messages(k: KubeSim, ns: str, name: str, reason: str) -> list[str]:
    evs = api(k, "GET", f"/api/v1/namespaces/{ns}/events")["items"]
    return [
        e["message"] for e in evs if e["involvedObject"].get("name") == name and e.get("reason") == reason
    ]


def container_pid(k: KubeSim, ns: str, name: str, container: str) -> int:
    def pid(c: Any) -> int:
        rt = c.kubelet._runtime(ns, name)
        proc = rt.containers[container].proc
        return int(proc.pid) if proc is not None and proc.returncode is None else 0

    return wait_for(lambda: k.call(pid), what="container process")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
        if f.read().split(")")[-1].split()[0] == "Z":
            return False
    return True


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.read().decode()  # type: ignore[no-any-return]


def log_text(k: KubeSim, ns: str, name: str, container: str, previous: bool = False) -> str:
    p = k.call(lambda c: c.kubelet.log_path(ns, name, container, previous=previous))
    return Path(p).read_text() if p is not None else ""


def bind_hostpath_claim(k: KubeSim, ns: str, claim: str, path: Path) -> None:
    """A hostPath PV pre-bound to a claim made here, marked bound as the PV binder would."""
    api(
        k,
        "POST",
        f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
        {
            "metadata": {"name": claim},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "resources": {"requests": {"storage": "1Mi"}},
            },
        },
    )
    pvc = pod_get(k, ns, f"persistentvolumeclaims/{claim}")
    assert pvc is not None
    pv_name = f"pv-{ns}-{claim}"
    api(
        k,
        "POST",
        "/api/v1/persistentvolumes",
        {
            "metadata": {"name": pv_name},
            "spec": {
                "capacity": {"storage": "1Mi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
                "claimRef": {"namespace": ns, "name": claim, "uid": pvc["metadata"]["uid"]},
            },
        },
    )

    def mark(c: Any) -> None:
        rt = c.api.resource("", "v1", "persistentvolumeclaims")
        cur = c.api.get(rt, ns, claim)
        cur["spec"]["volumeName"] = pv_name
        cur["metadata"].setdefault("annotations", {})["pv.kubernetes.io/bind-completed"] = "yes"
        c.api.update(rt, ns, claim, cur, internal_patch=True)
        cur = c.api.get(rt, ns, claim)
        cur["status"] = {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Mi"}}
        c.api.update(rt, ns, claim, cur, subresource="status", internal_patch=True)

    k.call(mark)


# -- lifecycle ------------------------------------------------------------------------------------
def test_pod_status_conditions_and_ip(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_pod(
        kubesim,
        ns,
        "web",
        [{"name": "app", "image": "nginx"}],
        initContainers=[{"name": "setup", "image": "busybox"}],
    )
    p = wait_ready(kubesim, ns, "web")
    st = p["status"]
    assert (
        st["phase"] == "Running" and st["podIP"].startswith("127.") and st["podIPs"] == [{"ip": st["podIP"]}]
    )
    assert st["hostIP"].startswith("127.0.1.") and st["startTime"]
    types = [c["type"] for c in st["conditions"]]
    assert set(types) == {
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    }
    assert all(c["status"] == "True" for c in st["conditions"])
    app = cstatus(p, "app")
    assert app["ready"] and app["started"] and app["restartCount"] == 0
    assert app["state"]["running"]["startedAt"]
    assert app["containerID"].startswith("containerd://") and app["image"] == "docker.io/library/nginx:latest"
    assert app["imageID"].startswith("docker.io/library/nginx@sha256:")
    init = cstatus(p, "setup", init=True)
    assert (
        init["state"]["terminated"]["reason"] == "Completed" and init["state"]["terminated"]["exitCode"] == 0
    )
    assert event_messages(kubesim, ns, "web", "Started") and event_messages(kubesim, ns, "web", "Created")


def test_ready_only_after_pod_ready_delay(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_pod(kubesim, ns, "slow", [{"name": "app"}])
    running = wait_for(
        lambda: (p := pod(kubesim, ns, "slow")) and cstatus(p, "app").get("state", {}).get("running") and p,
        what="running",
    )
    # pod_ready_delay (0.2 s): running but not yet ready.
    assert not is_ready(running) and cond(running, "Ready")["reason"] == "ContainersNotReady"
    assert cond(running, "Ready")["message"] == "containers with unready status: [app]"
    wait_ready(kubesim, ns, "slow")


def test_graceful_deletion_ends_with_pod_gone(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_pod(kubesim, ns, "bye", [{"name": "app"}], terminationGracePeriodSeconds=20)
    wait_ready(kubesim, ns, "bye")
    out = api(kubesim, "DELETE", f"/api/v1/namespaces/{ns}/pods/bye", ok=(200,))
    assert out["metadata"]["deletionTimestamp"] and out["metadata"]["deletionGracePeriodSeconds"] == 20
    wait_for(lambda: pod(kubesim, ns, "bye") is None, what="pod gone")
    assert event_messages(kubesim, ns, "bye", "Killing") == ["Stopping container app"]


def test_claims_must_be_bound_before_the_pod_starts(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    api(
        kubesim,
        "POST",
        f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "no-such-class",
                "resources": {"requests": {"storage": "1Mi"}},
            },
        },
    )
    # nodeName set by hand: no scheduler check, the kubelet waits for the claim.
    create_pod(
        kubesim,
        ns,
        "waits",
        [{"name": "app", "volumeMounts": [{"name": "d", "mountPath": "/srv"}]}],
        nodeName="kubesim-node-1",
        volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
    )
    msgs = wait_for(lambda: event_messages(kubesim, ns, "waits", "FailedMount"), what="FailedMount")
    assert msgs[0] == (
        "Unable to attach or mount volumes: unmounted volumes=[d], unattached volumes=[], failed to process "
        f'volumes=[d]: error processing PVC {ns}/data: PVC {ns}/data has non-bound phase ("Pending") or '
        'empty pvc.Spec.VolumeName ("")'
    )
    p = pod(kubesim, ns, "waits")
    assert p is not None and p["status"]["phase"] == "Pending"
    assert cstatus(p, "app")["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert cond(p, "PodReadyToStartContainers")["status"] == "False"


def test_crash_fault_restarts_and_backoff(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_pod(kubesim, ns, "crashy", [{"name": "app"}])
    wait_ready(kubesim, ns, "crashy")
    assert kubesim.call(lambda c: c.kubelet.crash(ns, "crashy")) == ["app"]
    after = wait_for(
        lambda: (p := pod(kubesim, ns, "crashy")) and cstatus(p, "app").get("restartCount") == 1 and p,
        what="restart",
    )
    last = cstatus(after, "app")["lastState"]["terminated"]
    assert last["exitCode"] == 137 and last["reason"] == "Error"
    wait_ready(kubesim, ns, "crashy")
    # Through the admin action; the second crash in a row waits for the back-off.
    out = api(kubesim, "POST", "/kubesim/pods/crash", {"namespace": ns, "name": "crashy", "container": "app"})
    assert out["crashed"] == ["app"]
    backoff = wait_for(
        lambda: (
            (p := pod(kubesim, ns, "crashy"))
            and cstatus(p, "app").get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
            and p
        ),
        what="CrashLoopBackOff",
    )
    assert not is_ready(backoff)
    uid = backoff["metadata"]["uid"]
    assert cstatus(backoff, "app")["state"]["waiting"]["message"] == (
        f"back-off 200ms restarting failed container=app pod=crashy_{ns}({uid})"
    )
    assert event_messages(kubesim, ns, "crashy", "BackOff") == [
        f"Back-off restarting failed container app in pod crashy_{ns}({uid})"
    ]
    p = wait_ready(kubesim, ns, "crashy")
    assert cstatus(p, "app")["restartCount"] == 2


# -- process containers ---------------------------------------------------------------------------
def test_process_pod_serves_restarts_and_stops(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_pod(
        kubesim,
        ns,
        "http",
        [
            {
                "name": "web",
                "command": [
                    "python3",
                    "-m",
                    "http.server",
                    "--bind",
                    "$(POD_IP)",
                    "8080",
                    "--directory",
                    "/srv",
                ],
                "env": POD_IP_ENV,
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/hello.txt", "port": "http"}, "periodSeconds": 1},
                "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 5},
                "volumeMounts": [{"name": "content", "mountPath": "/srv", "readOnly": True}],
            }
        ],
        annotations=PROCESS,
        volumes=[{"name": "content", "configMap": {"name": "site"}}],
    )
    # The configMap is missing: the pod waits, then starts once it exists.
    msgs = wait_for(lambda: event_messages(kubesim, ns, "http", "FailedMount"), what="FailedMount")
    assert msgs[0] == 'MountVolume.SetUp failed for volume "content" : configmap "site" not found'
    api(
        kubesim,
        "POST",
        f"/api/v1/namespaces/{ns}/configmaps",
        {"metadata": {"name": "site"}, "data": {"hello.txt": "hi there"}},
    )
    p = wait_ready(kubesim, ns, "http")
    ip = p["status"]["podIP"]
    assert http_get(f"http://{ip}:8080/hello.txt") == "hi there"

    pid = container_pid(kubesim, ns, "http", "web")
    os.kill(pid, signal.SIGKILL)
    p = wait_for(
        lambda: (
            (x := pod(kubesim, ns, "http"))
            and cstatus(x, "web").get("restartCount") == 1
            and is_ready(x)
            and x
        ),
        what="restarted and ready",
    )
    assert cstatus(p, "web")["lastState"]["terminated"]["exitCode"] == 137
    assert http_get(f"http://{ip}:8080/hello.txt") == "hi there"
    new_pid = container_pid(kubesim, ns, "http", "web")
    assert new_pid != pid and alive(new_pid)
    assert "GET /hello.txt" in log_text(kubesim, ns, "http", "web", previous=True)

    api(kubesim, "DELETE", f"/api/v1/namespaces/{ns}/pods/http", ok=(200,))
    wait_for(lambda: pod(kubesim, ns, "http") is None, what="pod gone")
    wait_for(lambda: not alive(new_pid), what="process stopped")


def test_process_writes_volume_as_user_with_fsgroup(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    host = Path(kubesim.workdir) / f"hostpath-{ns}"
    bind_hostpath_claim(kubesim, ns, "data", host)
    script = 'id -u > uid; id -G > groups; echo "$MSG" > msg; echo $(GREETING) > arg; pwd > cwd'
    create_pod(
        kubesim,
        ns,
        "writer",
        [
            {
                "name": "w",
                "command": ["/bin/sh", "-c", script],
                "env": [
                    {"name": "GREETING", "value": "hello"},
                    {"name": "MSG", "value": "$(GREETING) from $(POD_NAME)"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
                "workingDir": "/srv/sub",
                "volumeMounts": [{"name": "d", "mountPath": "/srv"}],
            }
        ],
        annotations=PROCESS,
        restartPolicy="Never",
        securityContext={"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000},
        volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
        initContainers=[
            {
                "name": "mkdir",
                "image": "busybox",
                "command": ["/bin/sh", "-c", "mkdir -p /srv/sub && chmod 0777 /srv/sub"],
                "securityContext": {"runAsUser": 0},
                "volumeMounts": [{"name": "d", "mountPath": "/srv"}],
            }
        ],
    )
    p = wait_for(
        lambda: (x := pod(kubesim, ns, "writer")) and x["status"]["phase"] == "Succeeded" and x, what="done"
    )
    term = cstatus(p, "w")["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (0, "Completed")
    assert (host / "sub" / "uid").read_text().strip() == "1000"
    assert set((host / "sub" / "groups").read_text().split()) == {"3000", "2000"}
    # $(VAR) expansion refers to variables defined before; POD_NAME comes after MSG.
    assert (host / "sub" / "msg").read_text().strip() == "hello from $(POD_NAME)"
    assert (host / "sub" / "arg").read_text().strip() == "hello"  # the command is expanded too
    assert (host / "sub" / "cwd").read_text().strip() == "/srv/sub"
    st = (host / "sub" / "uid").stat()
    assert st.st_uid == 1000 and st.st_gid == 3000
    # hostPath volumes get no fsGroup ownership (hostPath does not support it).
    assert host.stat().st_gid != 2000
    assert not Path("/srv/sub").exists()  # the mount was private to the container


def test_read_only_root_filesystem_leaves_volumes_writable(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    probe = Path(kubesim.workdir) / f"rofs-{ns}"  # on the host's root filesystem
    script = (
        f"touch {probe} 2>/scratch/root-error; echo $? > /scratch/root-rc; "
        "echo kept > /scratch/file; cat /scratch/root-rc /scratch/root-error /scratch/file"
    )
    create_pod(
        kubesim,
        ns,
        "ro",
        [
            {
                "name": "c",
                "command": ["/bin/sh", "-c", script],
                "securityContext": {"readOnlyRootFilesystem": True},
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
            }
        ],
        annotations=PROCESS,
        restartPolicy="Never",
        volumes=[{"name": "scratch", "emptyDir": {}}],
    )
    p = wait_for(
        lambda: (x := pod(kubesim, ns, "ro")) and x["status"]["phase"] in ("Succeeded", "Failed") and x,
        what="done",
    )
    out = log_text(kubesim, ns, "ro", "c")
    assert p["status"]["phase"] == "Succeeded", out
    rc, error, kept = out.strip().splitlines()
    assert rc != "0" and "Read-only file system" in error and kept == "kept"
    assert not probe.exists()
    probe.touch()  # the host's root stays writable
    probe.unlink()


def test_emptydir_fsgroup_and_exec(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_pod(
        kubesim,
        ns,
        "sleeper",
        [
            {
                "name": "app",
                "command": ["/bin/sh", "-c", "echo started; touch /srv/scratch/mine; exec sleep 600"],
                "volumeMounts": [{"name": "scratch", "mountPath": "/srv/scratch"}],
                "readinessProbe": {
                    "exec": {"command": ["test", "-f", "/srv/scratch/mine"]},
                    "periodSeconds": 1,
                },
            }
        ],
        annotations=PROCESS,
        securityContext={"runAsUser": 1000, "fsGroup": 2000},
        volumes=[{"name": "scratch", "emptyDir": {}}],
    )
    wait_ready(kubesim, ns, "sleeper")

    async def run(c: Any) -> tuple[int, bytes, bytes]:
        proc = await c.kubelet.exec_process(
            ns, "sleeper", "app", ["sh", "-c", "id -u; stat -c %g /srv/scratch/mine"], False
        )
        out, err = await proc.communicate()
        return proc.returncode, out, err

    # KubeSim.call awaits a coroutine's result on the cluster's loop.
    rc, out, err = cast("tuple[int, bytes, bytes]", kubesim.call(run))
    assert rc == 0, err
    assert out.decode().split() == ["1000", "2000"]  # setgid emptyDir owned by the fsGroup
    assert log_text(kubesim, ns, "sleeper", "app") == "started\n"


def test_job_pod_exit_codes_and_crash_loop(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    labels = {"batch.kubernetes.io/job-name": "j"}
    for name, code in (("ok", 0), ("bad", 3)):
        api(
            kubesim,
            "POST",
            f"/api/v1/namespaces/{ns}/pods",
            {
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "busybox",
                            "command": ["sh", "-c", f"echo out; exit {code}"],
                        }
                    ],
                },
            },
        )
    ok = wait_for(
        lambda: (x := pod(kubesim, ns, "ok")) and x["status"]["phase"] == "Succeeded" and x, what="ok"
    )
    bad = wait_for(
        lambda: (x := pod(kubesim, ns, "bad")) and x["status"]["phase"] == "Failed" and x, what="bad"
    )
    assert cstatus(ok, "main")["state"]["terminated"]["reason"] == "Completed"
    t = cstatus(bad, "main")["state"]["terminated"]
    assert (t["exitCode"], t["reason"]) == (3, "Error")
    assert cond(ok, "Ready")["reason"] == "PodCompleted"
    assert log_text(kubesim, ns, "bad", "main") == "out\n"

    create_pod(
        kubesim, ns, "loop", [{"name": "main", "command": ["sh", "-c", "exit 1"]}], annotations=PROCESS
    )
    p = wait_for(
        lambda: (
            (x := pod(kubesim, ns, "loop"))
            and cstatus(x, "main").get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
            and cstatus(x, "main")["restartCount"] >= 2
            and x
        ),
        what="CrashLoopBackOff",
    )
    assert p["status"]["phase"] == "Running"
    assert cstatus(p, "main")["lastState"]["terminated"]["exitCode"] == 1

    create_pod(
        kubesim,
        ns,
        "missing",
        [{"name": "main", "command": ["no-such-binary"]}],
        annotations=PROCESS,
        restartPolicy="Never",
    )
    p = wait_for(
        lambda: (x := pod(kubesim, ns, "missing")) and x["status"]["phase"] == "Failed" and x, what="failed"
    )
    t = cstatus(p, "main")["state"]["terminated"]
    assert t["reason"] == "StartError" and t["exitCode"] == 128
    assert 'exec: "no-such-binary": executable file not found in $PATH' in t["message"]


def test_config_errors_and_missing_mount_namespace(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_pod(
        kubesim,
        ns,
        "cfg",
        [
            {
                "name": "app",
                "command": ["sleep", "60"],
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "x"}}}],
            }
        ],
        annotations=PROCESS,
    )
    p = wait_for(
        lambda: (
            (x := pod(kubesim, ns, "cfg"))
            and cstatus(x, "app").get("state", {}).get("waiting", {}).get("message")
            and x
        ),
        what="config error",
    )
    assert cstatus(p, "app")["state"]["waiting"] == {
        "reason": "CreateContainerConfigError",
        "message": 'configmap "settings" not found',
    }
    api(
        kubesim,
        "POST",
        f"/api/v1/namespaces/{ns}/configmaps",
        {"metadata": {"name": "settings"}, "data": {"x": "1"}},
    )
    wait_ready(kubesim, ns, "cfg")

    # Where no mount namespace can be made, a process pod does not start, and says why.
    kubesim.call(lambda c: setattr(runtime, "_SUPPORT", "cannot create a mount namespace (test)"))
    try:
        create_pod(kubesim, ns, "nomnt", [{"name": "app", "command": ["sleep", "60"]}], annotations=PROCESS)
        p = wait_for(
            lambda: (
                (x := pod(kubesim, ns, "nomnt"))
                and cstatus(x, "app").get("state", {}).get("waiting", {}).get("message")
                and x
            ),
            what="CreateContainerError",
        )
    finally:
        kubesim.call(lambda c: setattr(runtime, "_SUPPORT", False))
    assert cstatus(p, "app")["state"]["waiting"] == {
        "reason": "CreateContainerError",
        "message": "cannot create a mount namespace (test)",
    }
    assert event_messages(kubesim, ns, "nomnt", "Failed") == ["Error: cannot create a mount namespace (test)"]


def test_no_orphan_processes_when_the_cluster_stops() -> None:
    with KubeSim() as sim:
        ns = new_ns(sim)
        create_pod(
            sim,
            ns,
            "tree",
            [{"name": "app", "command": ["sh", "-c", "sleep 600 & sleep 600 & wait"]}],
            annotations=PROCESS,
        )
        wait_ready(sim, ns, "tree")
        pid = container_pid(sim, ns, "tree", "app")
        children = wait_for(
            lambda: [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()],
            what="children",
        )
        assert len(children) == 2
    assert not alive(pid)
    wait_for(lambda: not any(alive(c) for c in children), timeout=5, what="children gone")


def test_liveness_failure_restarts_the_container(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_pod(
        kubesim,
        ns,
        "sick",
        [
            {
                "name": "app",
                "command": ["sh", "-c", "exec sleep 600"],
                "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2},
            }
        ],
        annotations=PROCESS,
    )
    p = wait_for(
        lambda: (x := pod(kubesim, ns, "sick")) and cstatus(x, "app").get("restartCount", 0) >= 1 and x,
        what="liveness restart",
    )
    assert cstatus(p, "app")["lastState"]["terminated"]["exitCode"] == 143  # SIGTERM
    assert "Container app failed liveness probe, will be restarted" in event_messages(
        kubesim, ns, "sick", "Killing"
    )
    assert event_messages(kubesim, ns, "sick", "Unhealthy")[0] == "Liveness probe failed: "


def test_config_volumes_downward_api_and_secret_env(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    api(
        kubesim,
        "POST",
        f"/api/v1/namespaces/{ns}/configmaps",
        {"metadata": {"name": "cfg"}, "data": {"a.conf": "A=1"}},
    )
    api(
        kubesim,
        "POST",
        f"/api/v1/namespaces/{ns}/secrets",
        {"metadata": {"name": "sec"}, "data": {"password": "czNjcjN0"}},
    )
    script = (
        "cat /srv/cfg/a.conf; echo; cat /srv/meta/labels; echo; cat /srv/proj/pw; echo; "
        'echo "pw=$PASSWORD ns=$NS node=$NODE"; ls -l /srv/proj/pw | cut -c1-10'
    )
    create_pod(
        kubesim,
        ns,
        "reader",
        [
            {
                "name": "r",
                "command": ["sh", "-c", script],
                "env": [
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                    {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                ],
                "volumeMounts": [
                    {"name": "cfg", "mountPath": "/srv/cfg"},
                    {"name": "meta", "mountPath": "/srv/meta"},
                    {"name": "proj", "mountPath": "/srv/proj"},
                ],
            }
        ],
        annotations=PROCESS,
        restartPolicy="Never",
        nodeName="kubesim-node-2",
        volumes=[
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {
                "name": "meta",
                "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
            },
            {
                "name": "proj",
                "projected": {
                    "defaultMode": 0o400,
                    "sources": [{"secret": {"name": "sec", "items": [{"key": "password", "path": "pw"}]}}],
                },
            },
        ],
    )
    wait_for(lambda: (x := pod(kubesim, ns, "reader")) and x["status"]["phase"] == "Succeeded", what="done")
    assert log_text(kubesim, ns, "reader", "r").splitlines() == [
        "A=1",
        "",
        "s3cr3t",
        f"pw=s3cr3t ns={ns} node=kubesim-node-2",
        "-r--------",
    ]


def test_kubelet_rejects_a_pod_whose_node_does_not_match(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_pod(
        kubesim,
        ns,
        "misplaced",
        [{"name": "app"}],
        nodeName="kubesim-node-1",
        nodeSelector={"kubernetes.io/hostname": "x"},
    )
    p = wait_for(
        lambda: (x := pod(kubesim, ns, "misplaced")) and x["status"]["phase"] == "Failed" and x,
        what="rejected",
    )
    assert (p["status"]["reason"], p["status"]["message"]) == (
        "NodeAffinity",
        "Pod was rejected: Predicate NodeAffinity failed",
    )


def test_processes_that_left_the_group_die_with_the_container(kubesim: KubeSim) -> None:
    """A child that called setsid() is not in the container's process group; it still goes when
    the container's process exits (runc kills what is left of a container's PID namespace)."""
    ns = new_ns(kubesim)
    create_pod(
        kubesim,
        ns,
        "leaver",
        [{"name": "app", "command": ["sh", "-c", "setsid sleep 600 & echo $!; sleep 0.3"]}],
        annotations=PROCESS,
        restartPolicy="Never",
    )
    wait_for(
        lambda: (p := pod(kubesim, ns, "leaver")) and p["status"].get("phase") == "Succeeded",
        what="the pod to complete",
    )
    pid = int(log_text(kubesim, ns, "leaver", "app").split()[0])
    wait_for(lambda: not alive(pid), timeout=5, what="the setsid child killed")
