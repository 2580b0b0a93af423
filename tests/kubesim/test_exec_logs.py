"""pods/exec, pods/attach and pods/log, driven by the real kubectl, the official Python client
(``kubernetes.stream.stream``) and raw WebSockets, against pods the kubelet runs."""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websocket

from kubesim.testing import KubeSim, kubectl_binary

_ids = itertools.count(1)
TIMEOUT = 20.0


def wait_for(what: str, fn: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture
def ns(kubesim: KubeSim) -> Iterator[str]:
    name = f"podio-{next(_ids)}"
    kubesim.kubectl("create", "namespace", name)
    yield name
    kubesim.kubectl("delete", "namespace", name, "--wait=false", check=False)


def get_pod(sim: KubeSim, ns: str, name: str) -> dict[str, Any]:
    status, _, obj = sim.request("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
    assert status == 200, obj
    return obj  # type: ignore[no-any-return]


def cstatus(pod: dict[str, Any], container: str = "c") -> dict[str, Any]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs["name"] == container:
            return cs  # type: ignore[no-any-return]
    return {}


def running(sim: KubeSim, ns: str, name: str, container: str = "c") -> bool:
    return "running" in (cstatus(get_pod(sim, ns, name), container).get("state") or {})


def make_pod(
    sim: KubeSim,
    ns: str,
    name: str,
    script: str | None = None,
    *,
    containers: tuple[str, ...] = ("c",),
    restart: str = "Always",
    wait: bool = True,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A pod; with a ``script`` its containers run ``sh -c script`` as host processes (Job pods
    do without the annotation)."""
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels or {}}
    if script is not None and "batch.kubernetes.io/job-name" not in (labels or {}):
        meta["annotations"] = {"kubesim.io/process": "true"}
    cs: list[dict[str, Any]] = []
    for c in containers:
        ctr: dict[str, Any] = {"name": c, "image": "busybox"}
        if script is not None:
            ctr["command"] = ["sh", "-c", script]
        cs.append(ctr)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": cs, "restartPolicy": restart, "terminationGracePeriodSeconds": 1, **spec},
    }
    status, _, obj = sim.request("POST", f"/api/v1/namespaces/{ns}/pods", body=pod)
    assert status == 201, obj
    if wait:
        wait_for(f"{name} running", lambda: all(running(sim, ns, name, c) for c in containers))
    return get_pod(sim, ns, name)


def ws_connect(sim: KubeSim, path: str, protocols: list[str]) -> websocket.WebSocket:
    assert sim.cluster is not None
    ca = sim.workdir / "ca.pem"
    if not ca.exists():
        ca.write_bytes(sim.cluster.certs.ca_pem)
    header = [f"Authorization: Bearer {sim.cluster.tokens.admin_token()}"]
    ws = websocket.WebSocket(sslopt={"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": str(ca)})
    ws.settimeout(TIMEOUT)
    # websocket-client checks that the server picked one of these
    ws.connect(  # type: ignore[no-untyped-call]
        "wss" + sim.server[len("https") :] + path, header=header, subprotocols=protocols or None
    )
    return ws


def ws_frames(ws: websocket.WebSocket) -> list[bytes | str]:
    """Every data frame until the server's close frame."""
    out: list[bytes | str] = []
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            ws.close()
            return out
        if opcode in (websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_TEXT):
            out.append(data)


def demux(frames: list[bytes | str], b64: bool = False) -> dict[int, bytes]:
    chans: dict[int, bytes] = {}
    for f in frames:
        raw = f.encode() if isinstance(f, str) else f
        if b64:
            ch, data = raw[0] - ord("0"), base64.b64decode(raw[1:])
        else:
            ch, data = raw[0], raw[1:]
        chans[ch] = chans.get(ch, b"") + data
    return chans


def exec_path(ns: str, pod: str, *command: str, **params: str) -> str:
    from urllib.parse import urlencode

    q = [("command", c) for c in command] + list(params.items())
    return f"/api/v1/namespaces/{ns}/pods/{pod}/exec?" + urlencode(q)


def popen_kubectl(sim: KubeSim, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, KUBECONFIG=str(sim.kubeconfig), KUBECACHEDIR=str(sim.workdir / "kubecache"))
    return subprocess.Popen(
        [kubectl_binary(), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


# ---------------------------------------------------------------------------------------------
# pods/exec
# ---------------------------------------------------------------------------------------------


def test_kubectl_exec_output_and_exit_codes(kubesim: KubeSim, ns: str) -> None:
    make_pod(kubesim, ns, "p", "sleep 60")
    r = kubesim.kubectl("exec", "-n", ns, "p", "--", "echo", "hi")
    assert r.stdout == "hi\n"
    r = kubesim.kubectl(
        "exec", "-n", ns, "p", "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False
    )
    assert r.returncode == 3
    assert r.stdout == "out\n"
    assert r.stderr.startswith("err\n")
    assert "command terminated with exit code 3" in r.stderr
    # a command killed by a signal reports 128 + the signal, as container runtimes do
    r = kubesim.kubectl("exec", "-n", ns, "p", "--", "sh", "-c", "kill -9 $$", check=False)
    assert r.returncode == 137


def test_kubectl_exec_stdin(kubesim: KubeSim, ns: str) -> None:
    make_pod(kubesim, ns, "p", "sleep 60")
    # echo hi | kubectl exec -i: stdin reaches the command, then its end (the v5 CLOSE signal)
    r = kubesim.kubectl("exec", "-i", "-n", ns, "p", "--", "cat", input="hi\n")
    assert r.stdout == "hi\n"
    big = "".join(f"line {i:06d}\n" for i in range(20000))  # 240 kB: several WebSocket frames
    r = kubesim.kubectl(
        "exec", "-i", "-n", ns, "p", "--", "sh", "-c", "wc -c; exit 5", input=big, check=False
    )
    assert r.returncode == 5
    assert r.stdout.strip() == str(len(big))
    # -t without a terminal is dropped by kubectl itself ("Unable to use a TTY")
    r = kubesim.kubectl("exec", "-it", "-n", ns, "p", "--", "cat", input="x")
    assert r.stdout == "x"


def test_exec_in_pod_without_a_process(kubesim: KubeSim, ns: str) -> None:
    """A container that runs no process still "runs": exec starts the command in the pod's
    mount namespace, where its volumes are mounted."""
    mnt = kubesim.workdir / f"mnt-{ns}" / "data"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "idle", "namespace": ns},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "volumeMounts": [{"name": "scratch", "mountPath": str(mnt)}],
                }
            ],
        },
    }
    status, _, body = kubesim.request("POST", f"/api/v1/namespaces/{ns}/pods", body=pod)
    assert status == 201, body
    wait_for("idle running", lambda: running(kubesim, ns, "idle"))
    r = kubesim.kubectl("exec", "-n", ns, "idle", "--", "sh", "-c", f"echo kept > {mnt}/f; echo written")
    assert r.stdout == "written\n"
    # the file went into the emptyDir mounted in the pod's mount namespace, not onto the host path
    assert not (mnt / "f").exists()
    assert kubesim.kubectl("exec", "-n", ns, "idle", "--", "cat", f"{mnt}/f").stdout == "kept\n"
    # a container without a process has no output to show
    assert kubesim.kubectl("logs", "-n", ns, "idle").stdout == ""


def test_kubectl_cp_goes_through_exec(kubesim: KubeSim, ns: str) -> None:
    """kubectl cp runs tar in the container over pods/exec, stdin one way and stdout the other."""
    mnt = kubesim.workdir / f"cp-{ns}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": ns},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "v", "emptyDir": {}}],
            "containers": [
                {"name": "c", "image": "busybox", "volumeMounts": [{"name": "v", "mountPath": str(mnt)}]}
            ],
        },
    }
    status, _, body = kubesim.request("POST", f"/api/v1/namespaces/{ns}/pods", body=pod)
    assert status == 201, body
    wait_for("p running", lambda: running(kubesim, ns, "p"))
    src = kubesim.workdir / f"cp-src-{ns}.txt"
    src.write_text("payload\n")
    kubesim.kubectl("cp", "-n", ns, str(src), f"p:{mnt}/in.txt")
    assert kubesim.kubectl("exec", "-n", ns, "p", "--", "cat", f"{mnt}/in.txt").stdout == "payload\n"
    back = kubesim.workdir / f"cp-back-{ns}.txt"
    kubesim.kubectl("cp", "-n", ns, f"p:{mnt}/in.txt", str(back))
    assert back.read_text() == "payload\n"


def test_python_client_stream(kubesim: KubeSim, k8s_client: Any, ns: str) -> None:
    from kubernetes import client
    from kubernetes.stream import stream

    make_pod(kubesim, ns, "p", "sleep 60")
    api = client.CoreV1Api(k8s_client)
    out = stream(
        api.connect_get_namespaced_pod_exec,
        "p",
        ns,
        command=["sh", "-c", "echo out; echo err >&2"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    assert out == "out\nerr\n"
    resp = stream(
        api.connect_get_namespaced_pod_exec,
        "p",
        ns,
        command=["sh", "-c", "echo $((6*7)); exit 7"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=TIMEOUT)
    assert resp.subprotocol == "v5.channel.k8s.io"
    assert resp.returncode == 7
    assert resp.read_all() == "42\n"
    # stdin, ended with the v5 CLOSE signal
    resp = stream(
        api.connect_get_namespaced_pod_exec,
        "p",
        ns,
        command=["tr", "a-z", "A-Z"],
        stderr=True,
        stdin=True,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.write_stdin("shout\n")
    resp.close_channel(0)
    resp.run_forever(timeout=TIMEOUT)
    assert resp.returncode == 0
    assert resp.read_all() == "SHOUT\n"


def test_exec_websocket_subprotocols(kubesim: KubeSim, ns: str) -> None:
    """v4 and the older channel protocols, as the kubelet's streaming server speaks them."""
    make_pod(kubesim, ns, "p", "sleep 60")
    path = exec_path(ns, "p", "sh", "-c", "echo hi; exit 2", stdout="true", stderr="true")
    ws = ws_connect(kubesim, path, ["v4.channel.k8s.io"])
    assert ws.getsubprotocol() == "v4.channel.k8s.io"
    frames = ws_frames(ws)
    assert frames[0] == b"\x01"  # the empty message announcing the connection
    chans = demux(frames)
    assert chans[1] == b"hi\n"
    status = json.loads(chans[3])
    assert status["status"] == "Failure"
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "2"}]

    ws = ws_connect(kubesim, path, ["v4.base64.channel.k8s.io"])
    assert ws.getsubprotocol() == "v4.base64.channel.k8s.io"
    chans = demux(ws_frames(ws), b64=True)
    assert chans[1] == b"hi\n"
    assert json.loads(chans[3])["details"]["causes"][0]["message"] == "2"

    # channel.k8s.io (protocol v1): the error channel carries only the error text
    ws = ws_connect(kubesim, path, ["channel.k8s.io"])
    chans = demux(ws_frames(ws))
    assert chans[3].decode().startswith("command terminated with non-zero exit code")

    # a client that offers v5 first gets v5 (the API server's stream translator)
    ws = ws_connect(
        kubesim, exec_path(ns, "p", "true", stdout="1"), ["v5.channel.k8s.io", "v4.channel.k8s.io"]
    )
    assert ws.getsubprotocol() == "v5.channel.k8s.io"
    assert json.loads(demux(ws_frames(ws))[3]) == {"metadata": {}, "status": "Success"}

    # stdin over v5: data on channel 0, then the CLOSE signal [255, 0]
    ws = ws_connect(kubesim, exec_path(ns, "p", "cat", stdin="true", stdout="true"), ["v5.channel.k8s.io"])
    ws.send_binary(b"\x00ping\n")
    ws.send_binary(b"\xff\x00")
    chans = demux(ws_frames(ws))
    assert chans[1] == b"ping\n"
    assert json.loads(chans[3])["status"] == "Success"

    # no subprotocol in common: the WebSocket handshake is refused with a bare 403
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        ws_connect(kubesim, path, ["v9.channel.k8s.io"])
    assert exc.value.status_code == 403


def test_exec_errors(kubesim: KubeSim, ns: str) -> None:
    make_pod(kubesim, ns, "p", "sleep 60")
    r = kubesim.kubectl("exec", "-n", ns, "nope", "--", "true", check=False)
    assert r.returncode == 1
    assert 'Error from server (NotFound): pods "nope" not found' in r.stderr
    base = f"/api/v1/namespaces/{ns}/pods"
    # the API server validates the container before anything else (strategy.go: validateContainer)
    status, _, body = kubesim.request("POST", f"{base}/p/exec", query={"command": "true", "container": "x"})
    assert (status, body["message"]) == (400, "container x is not valid for pod p")
    status, _, body = kubesim.request("POST", f"{base}/p/exec", query={"command": "true", "stdout": "1"})
    assert (status, body["message"]) == (400, "Upgrade request required")
    status, _, body = kubesim.request("POST", f"{base}/p/exec", query={"command": "true", "tty": "true"})
    assert status == 400
    assert "does not support tty" in body["message"]
    status, _, body = kubesim.request("PUT", f"{base}/p/exec", query={"command": "true"})
    assert status == 405
    # no stream requested: refused by the kubelet (remotecommand.NewOptions)
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        ws_connect(kubesim, exec_path(ns, "p", "true"), ["v4.channel.k8s.io"])
    assert exc.value.status_code == 400
    assert exc.value.resp_body == b"you must specify at least 1 of stdin, stdout, stderr"

    make_pod(kubesim, ns, "two", "sleep 60", containers=("a", "b"))
    status, _, body = kubesim.request("POST", f"{base}/two/exec", query={"command": "true"})
    assert (status, body["message"]) == (
        400,
        "a container name must be specified for pod two, choose one of: [a b]",
    )

    # an unscheduled pod (a nodeSelector no node matches)
    make_pod(kubesim, ns, "pending", "true", nodeSelector={"kubesim.io/none": "x"}, wait=False)
    status, _, body = kubesim.request("POST", f"{base}/pending/exec", query={"command": "true"})
    assert (status, body["message"]) == (400, "pod pending does not have a host assigned")


def test_exec_in_a_container_that_does_not_run(kubesim: KubeSim, ns: str) -> None:
    # Scheduled by hand onto a node, but its claim does not exist: the container never starts.
    make_pod(
        kubesim,
        ns,
        "stuck",
        "true",
        nodeName="kubesim-node-1",
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "missing"}}],
        wait=False,
    )
    wait_for(
        "stuck waiting", lambda: "waiting" in (cstatus(get_pod(kubesim, ns, "stuck")).get("state") or {})
    )
    # kubectl (v5): the translator reports the kubelet's refusal in-band
    r = kubesim.kubectl("exec", "-n", ns, "stuck", "--", "true", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        'error: Internal error occurred: unable to upgrade connection: container not found ("c")'
    )
    # older protocols reach the kubelet, which refuses before the upgrade
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        ws_connect(kubesim, exec_path(ns, "stuck", "true", stdout="1"), ["v4.channel.k8s.io"])
    assert exc.value.status_code == 500
    assert exc.value.resp_body == b'container not found ("c")'
    r = kubesim.kubectl("logs", "-n", ns, "stuck", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        'Error from server (BadRequest): container "c" in pod "stuck" is waiting to start: ContainerCreating'
    )


def test_exec_needs_create_permission(kubesim: KubeSim, ns: str) -> None:
    """A WebSocket exec is a GET, but it must also be allowed to `create` pods/exec
    (AuthorizePodWebsocketUpgradeCreatePermission)."""
    make_pod(kubesim, ns, "p", "sleep 60")
    kubesim.kubectl("create", "serviceaccount", "-n", ns, "viewer")
    kubesim.kubectl(
        "create", "role", "-n", ns, "getter", "--verb=get", "--resource=pods", "--resource=pods/exec"
    )
    kubesim.kubectl(
        "create", "rolebinding", "-n", ns, "getter", "--role=getter", f"--serviceaccount={ns}:viewer"
    )
    kc = kubesim.service_account_kubeconfig(ns, "viewer")
    r = kubesim.kubectl("exec", "-n", ns, "p", "--", "true", kubeconfig=kc, check=False)
    assert r.returncode == 1
    assert (
        f'pods "p" is forbidden: User "system:serviceaccount:{ns}:viewer" cannot create resource '
        f'"pods/exec" in API group "" in the namespace "{ns}"'
    ) in r.stderr
    kubesim.kubectl("create", "role", "-n", ns, "execer", "--verb=create", "--resource=pods/exec")
    kubesim.kubectl(
        "create", "rolebinding", "-n", ns, "execer", "--role=execer", f"--serviceaccount={ns}:viewer"
    )
    r = kubesim.kubectl("exec", "-n", ns, "p", "--", "echo", "ok", kubeconfig=kc)
    assert r.stdout == "ok\n"


# ---------------------------------------------------------------------------------------------
# pods/log
# ---------------------------------------------------------------------------------------------


def test_logs_of_a_process_pod(kubesim: KubeSim, k8s_client: Any, ns: str) -> None:
    make_pod(kubesim, ns, "p", "echo hello; echo second line; echo third >&2; sleep 60")
    wait_for("logs", lambda: kubesim.kubectl("logs", "-n", ns, "p").stdout.count("\n") == 3)
    assert kubesim.kubectl("logs", "-n", ns, "p").stdout == "hello\nsecond line\nthird\n"
    assert kubesim.kubectl("logs", "-n", ns, "p", "--tail=2").stdout == "second line\nthird\n"
    assert kubesim.kubectl("logs", "-n", ns, "p", "--tail=0").stdout == ""
    assert kubesim.kubectl("logs", "-n", ns, "p", "--limit-bytes=8").stdout == "hello\nse"
    assert kubesim.kubectl("logs", "-n", ns, "p", "--since=1h").stdout == "hello\nsecond line\nthird\n"
    out = kubesim.kubectl("logs", "-n", ns, "p", "--timestamps", "--tail=1").stdout
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z third\n", out), out
    from kubernetes import client

    text = client.CoreV1Api(k8s_client).read_namespaced_pod_log("p", ns, tail_lines=1)
    assert text == "third\n"


def test_logs_of_a_job_pod_after_it_completed(kubesim: KubeSim, ns: str) -> None:
    # a pod of a Job (labelled so by the Job controller) runs its command as a process
    make_pod(
        kubesim,
        ns,
        "job-x",
        "echo computing; echo done",
        restart="Never",
        wait=False,
        labels={"batch.kubernetes.io/job-name": "job"},
    )
    wait_for("job pod succeeded", lambda: get_pod(kubesim, ns, "job-x")["status"].get("phase") == "Succeeded")
    assert kubesim.kubectl("logs", "-n", ns, "job-x").stdout == "computing\ndone\n"


def test_logs_follow(kubesim: KubeSim, ns: str) -> None:
    make_pod(kubesim, ns, "ticker", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done")
    follow = popen_kubectl(kubesim, "logs", "-f", "-n", ns, "ticker", "--tail=1")
    try:
        assert follow.stdout is not None
        first = follow.stdout.readline()
        later = [follow.stdout.readline() for _ in range(3)]
        n = int(first.split()[1])
        assert later == [f"tick {n + 1}\n", f"tick {n + 2}\n", f"tick {n + 3}\n"]
    finally:
        follow.kill()
        follow.wait()
    # following ends when the container stops
    make_pod(kubesim, ns, "short", "echo a; sleep 1; echo b", restart="Never")
    follow = popen_kubectl(kubesim, "logs", "-f", "-n", ns, "short")
    out, err = follow.communicate(timeout=TIMEOUT)
    assert follow.returncode == 0, err
    assert out == "a\nb\n"


def test_logs_previous_after_a_crash(kubesim: KubeSim, ns: str) -> None:
    make_pod(kubesim, ns, "p", "echo run $(date +%s%N); sleep 60")
    r = kubesim.kubectl("logs", "-n", ns, "p", "--previous", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        'Error from server (BadRequest): previous terminated container "c" in pod "p" not found'
    )
    first = wait_for("first run logged", lambda: kubesim.kubectl("logs", "-n", ns, "p").stdout)
    assert kubesim.cluster is not None
    kubesim.call(lambda c: c.kubelet.crash(ns, "p", "c") if c.kubelet else None)
    wait_for(
        "restarted",
        lambda: cstatus(get_pod(kubesim, ns, "p")).get("restartCount", 0) >= 1 and running(kubesim, ns, "p"),
    )
    second = wait_for("second run logged", lambda: kubesim.kubectl("logs", "-n", ns, "p").stdout)
    assert second != first
    assert kubesim.kubectl("logs", "-n", ns, "p", "--previous").stdout == first
    assert kubesim.kubectl("logs", "-n", ns, "p", "-p", "--tail=1").stdout == first


def test_logs_errors(kubesim: KubeSim, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/pods"
    make_pod(kubesim, ns, "two", "echo hi; sleep 60", containers=("a", "b"))
    status, _, body = kubesim.request("GET", f"{base}/two/log")
    assert (status, body["message"]) == (
        400,
        "a container name must be specified for pod two, choose one of: [a b]",
    )
    status, _, body = kubesim.request("GET", f"{base}/two/log", query={"container": "z"})
    assert (status, body["message"]) == (400, "container z is not valid for pod two")
    wait_for(
        "b logged", lambda: kubesim.request("GET", f"{base}/two/log", query={"container": "b"})[2] == "hi\n"
    )
    # kubectl picks the first container and says so
    r = kubesim.kubectl("logs", "-n", ns, "two")
    assert r.stdout == "hi\n"
    assert 'Defaulted container "a" out of: a, b' in r.stderr
    status, _, body = kubesim.request("GET", f"{base}/two/log", query={"container": "a", "tailLines": "-1"})
    assert status == 422
    assert (
        body["message"]
        == 'PodLogOptions "two" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0'
    )
    status, _, body = kubesim.request("GET", f"{base}/two/log", query={"container": "a", "limitBytes": "x"})
    assert (status, body["message"]) == (400, 'strconv.ParseInt: parsing "x": invalid syntax')
    status, _, body = kubesim.request("GET", f"{base}/nope/log")
    assert (status, body["reason"]) == (404, "NotFound")
    # an unscheduled pod has no log location: 204 No Content
    make_pod(kubesim, ns, "pending", "true", nodeSelector={"kubesim.io/none": "x"}, wait=False)
    status, _, body = kubesim.request("GET", f"{base}/pending/log")
    assert (status, body) == (204, "")


# ---------------------------------------------------------------------------------------------
# pods/attach
# ---------------------------------------------------------------------------------------------


def test_kubectl_attach_streams_new_output(kubesim: KubeSim, ns: str) -> None:
    flag = kubesim.workdir / f"attach-{ns}"
    script = (
        f"echo before; while [ ! -e {flag} ]; do sleep 0.05; done; for i in 1 2 3; do echo after $i; done"
    )
    make_pod(kubesim, ns, "p", script, restart="Never")
    wait_for("before logged", lambda: kubesim.kubectl("logs", "-n", ns, "p").stdout == "before\n")
    attach = popen_kubectl(kubesim, "attach", "-n", ns, "p")
    wait_for("attached", lambda: kubesim.call(lambda c: ("attach", ns, "p", "c") in c.podio.sessions))
    flag.touch()
    out, err = attach.communicate(timeout=TIMEOUT)
    assert attach.returncode == 0, err
    # attach shows what the container writes from now on, and ends when the container stops
    assert out == "after 1\nafter 2\nafter 3\n"
    status, _, body = kubesim.request(
        "POST", f"/api/v1/namespaces/{ns}/pods/p/attach", query={"stdin": "true", "stdout": "true"}
    )
    assert status == 400
    assert "does not support attaching to a container's stdin" in body["message"]
