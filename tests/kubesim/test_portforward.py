"""pods/portforward, driven by the real ``kubectl port-forward`` (the WebSocket tunnel it tries
first, and plain SPDY/3.1 with ``KUBECTL_PORT_FORWARD_WEBSOCKETS=false``), raw WebSocket
handshakes for the refusals, and the SPDY framer on its own."""

from __future__ import annotations

import itertools
import os
import re
import socket
import ssl
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import websocket
from test_exec_logs import get_pod, wait_for, ws_connect

from kubesim import spdy
from kubesim.testing import KubeSim, PortForward

_ids = itertools.count(1)
TIMEOUT = 20.0

# A TCP echo server: argv = port, bind address. One thread per connection; it echoes until the
# client half-closes, then closes its side.
ECHO_SERVER = r"""
import socket, sys, threading
port, bind = int(sys.argv[1]), sys.argv[2]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((bind, port)); srv.listen(64)
def serve(c):
    with c:
        while True:
            data = c.recv(65536)
            if not data:
                return
            c.sendall(data)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ns(kubesim: KubeSim) -> Iterator[str]:
    name = f"pf-{next(_ids)}"
    kubesim.kubectl("create", "namespace", name)
    yield name
    kubesim.kubectl("delete", "namespace", name, "--wait=false", check=False)


def can_connect(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=1):
            return True
    except OSError:
        return False


def echo_pod(
    sim: KubeSim,
    ns: str,
    name: str,
    ports: tuple[int, ...],
    *,
    bind: str = "0.0.0.0",
    labels: dict[str, str] | None = None,
    container_ports: bool = False,
) -> dict[str, Any]:
    """A process pod with one echo server per port; returns the pod once every server listens."""
    containers = []
    for i, port in enumerate(ports):
        c: dict[str, Any] = {
            "name": f"echo{i}",
            "image": "python",
            "command": [sys.executable, "-c", ECHO_SERVER, str(port), bind],
        }
        if container_ports:
            c["ports"] = [{"containerPort": port, "name": f"p{i}"}]
        containers.append(c)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": labels or {},
            "annotations": {"kubesim.io/process": "true"},
        },
        "spec": {"containers": containers, "terminationGracePeriodSeconds": 1},
    }
    status, _, obj = sim.request("POST", f"/api/v1/namespaces/{ns}/pods", body=pod)
    assert status == 201, obj
    wait_for(f"{name} running", lambda: get_pod(sim, ns, name).get("status", {}).get("phase") == "Running")
    obj = get_pod(sim, ns, name)
    ip = obj["status"]["podIP"]
    target = "127.0.0.1" if bind == "127.0.0.1" else ip
    for port in ports:

        def listening(port: int = port) -> bool:
            return can_connect(target, port)

        wait_for(f"{name} listening on {port}", listening)
    return obj


@pytest.fixture
def forwards() -> Iterator[list[PortForward]]:
    started: list[PortForward] = []
    yield started
    for pf in started:
        pf.stop()


def echo(port: int, payload: bytes, *, chunk: int = 65536) -> bytes:
    """Send ``payload`` to 127.0.0.1:port while reading the echo; half-close, read to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.settimeout(TIMEOUT)
        received = bytearray()

        def reader() -> None:
            while True:
                data = s.recv(chunk)
                if not data:
                    return
                received.extend(data)
                if len(received) >= len(payload):
                    return

        t = threading.Thread(target=reader)
        t.start()
        s.sendall(payload)
        t.join(TIMEOUT)
        assert not t.is_alive(), f"echo stalled after {len(received)} of {len(payload)} bytes"
        s.shutdown(socket.SHUT_WR)
        # the server closes after the client's FIN: the forwarded connection ends cleanly
        assert s.recv(1) == b""
        return bytes(received)


# ---------------------------------------------------------------------------------------------
# The real kubectl
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("websockets", [True, False], ids=["websocket-tunnel", "spdy"])
def test_forward_local_to_remote_port(
    kubesim: KubeSim, ns: str, forwards: list[PortForward], websockets: bool
) -> None:
    remote = free_port()
    echo_pod(kubesim, ns, "web", (remote,))
    local = free_port()
    env = {} if websockets else {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}
    pf = PortForward(kubesim, "-n", ns, "pod/web", f"{local}:{remote}", env=env)
    forwards.append(pf)
    assert pf.local_ports() == [local]
    assert echo(local, b"hello through the tunnel\n") == b"hello through the tunnel\n"
    # a second connection on the same SPDY connection
    assert echo(local, b"again") == b"again"
    wait_for(
        "Handling connection lines", lambda: "".join(pf.stdout).count(f"Handling connection for {local}") == 2
    )
    assert kubesim.call(lambda c: dict(c.portforward.sessions)) == {(ns, "web"): 1}
    # kubectl tries the WebSocket tunnel first; it speaks plain SPDY only when told to
    kind = "websocket" if websockets else "spdy"
    assert kubesim.call(lambda c: [x for x in c.portforward.connections if x[0] == ns]) == [(ns, "web", kind)]
    _, _, err = pf.stop()
    assert "error" not in err.lower(), err
    wait_for("the session to end", lambda: not kubesim.call(lambda c: dict(c.portforward.sessions)))


def test_random_local_port_and_two_ports(kubesim: KubeSim, ns: str, forwards: list[PortForward]) -> None:
    a, b = free_port(), free_port()
    echo_pod(kubesim, ns, "two", (a, b))
    pf = PortForward(kubesim, "-n", ns, "pod/two", f":{a}", f":{b}")
    forwards.append(pf)
    la, lb = pf.local_ports(2)
    assert la != lb and la not in (a, b)
    assert echo(la, b"to a") == b"to a"
    assert echo(lb, b"to b") == b"to b"
    out = "".join(pf.stdout)
    assert f"Forwarding from 127.0.0.1:{la} -> {a}" in out
    assert f"Forwarding from 127.0.0.1:{lb} -> {b}" in out


@pytest.mark.parametrize("websockets", [True, False], ids=["websocket-tunnel", "spdy"])
def test_large_transfer_both_ways(
    kubesim: KubeSim, ns: str, forwards: list[PortForward], websockets: bool
) -> None:
    """Well over SPDY's 64 KiB initial window in each direction: spdystream does no flow
    control, and kubesim must not wait for WINDOW_UPDATEs the client never sends."""
    remote = free_port()
    echo_pod(kubesim, ns, "big", (remote,))
    env = {} if websockets else {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"}
    pf = PortForward(kubesim, "-n", ns, "pod/big", f":{remote}", env=env)
    forwards.append(pf)
    (local,) = pf.local_ports()
    payload = os.urandom(3 * 1024 * 1024 + 17)
    assert echo(local, payload) == payload
    kind = "websocket" if websockets else "spdy"
    assert kubesim.call(lambda c: [x for x in c.portforward.connections if x[0] == ns]) == [(ns, "big", kind)]


def test_concurrent_connections(kubesim: KubeSim, ns: str, forwards: list[PortForward]) -> None:
    remote = free_port()
    echo_pod(kubesim, ns, "many", (remote,))
    pf = PortForward(kubesim, "-n", ns, "pod/many", f":{remote}")
    forwards.append(pf)
    (local,) = pf.local_ports()
    results: dict[int, bytes] = {}
    payloads = {i: os.urandom(100_000 + i) for i in range(8)}

    def run(i: int) -> None:
        results[i] = echo(local, payloads[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 2)
    assert results == payloads


def test_port_nothing_listens_on(kubesim: KubeSim, ns: str, forwards: list[PortForward]) -> None:
    """The runtime's dial error reaches kubectl on the error stream; kubectl 1.37 then closes
    the whole connection (client-go portforward.go: handleConnection → streamConn.Close) and
    exits with "lost connection to pod"."""
    listening = free_port()
    pod = echo_pod(kubesim, ns, "half", (listening,))
    dead = free_port()
    pf = PortForward(kubesim, "-n", ns, "pod/half", f":{listening}", f":{dead}")
    forwards.append(pf)
    good, bad = pf.local_ports(2)
    assert echo(good, b"still fine") == b"still fine"
    with socket.create_connection(("127.0.0.1", bad), timeout=TIMEOUT) as s:
        s.settimeout(TIMEOUT)
        assert s.recv(10) == b""  # the forwarded connection ends
    pf.proc.wait(timeout=TIMEOUT)
    code, _, err = pf.stop()
    ip = pod["status"]["podIP"]
    assert code == 1
    # klog prints the error as a quoted Go string: its quotes come escaped
    m = re.search(
        rf"error forwarding port {dead} to pod ([0-9a-f]{{64}}), uid : failed to execute portforward in "
        rf'network namespace \\"/var/run/netns/cni-[0-9a-f-]{{36}}\\": dial tcp {re.escape(ip)}:{dead}: '
        r"connect: connection refused",
        err,
    )
    assert m, err
    assert "error: lost connection to pod" in err


def test_server_on_loopback_only_is_not_reachable(
    kubesim: KubeSim, ns: str, forwards: list[PortForward]
) -> None:
    """kubesim's simplification: pods share the host's loopback, so the runtime dials the pod IP
    only; a server bound to 127.0.0.1 alone (reachable upstream through the pod's own
    localhost) is refused."""
    port = free_port()
    pod = echo_pod(kubesim, ns, "lo", (port,), bind="127.0.0.1")
    pf = PortForward(kubesim, "-n", ns, "pod/lo", f":{port}")
    forwards.append(pf)
    (local,) = pf.local_ports()
    with socket.create_connection(("127.0.0.1", local), timeout=TIMEOUT) as s:
        s.settimeout(TIMEOUT)
        assert s.recv(10) == b""
    pf.proc.wait(timeout=TIMEOUT)
    _, _, err = pf.stop()
    assert f"dial tcp {pod['status']['podIP']}:{port}: connect: connection refused" in err


def test_service_and_named_port_resolve_to_a_pod(
    kubesim: KubeSim, ns: str, forwards: list[PortForward]
) -> None:
    remote = free_port()
    echo_pod(kubesim, ns, "backend", (remote,), labels={"app": "echo"}, container_ports=True)
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo", "namespace": ns},
        "spec": {"selector": {"app": "echo"}, "ports": [{"name": "tcp", "port": 80, "targetPort": remote}]},
    }
    status, _, obj = kubesim.request("POST", f"/api/v1/namespaces/{ns}/services", body=svc)
    assert status == 201, obj
    # svc port 80 is translated to the target port (translateServicePortToTargetPort)
    pf = PortForward(kubesim, "-n", ns, "svc/echo", ":80")
    forwards.append(pf)
    (local,) = pf.local_ports()
    assert f"-> {remote}" in "".join(pf.stdout)
    assert echo(local, b"via service") == b"via service"
    # a named container port of the pod (convertPodNamedPortToNumber)
    pf2 = PortForward(kubesim, "-n", ns, "pod/backend", ":p0")
    forwards.append(pf2)
    (local2,) = pf2.local_ports()
    assert echo(local2, b"named") == b"named"


def test_pod_not_running_is_refused_by_kubectl(kubesim: KubeSim, ns: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pending", "namespace": ns},
        "spec": {
            "containers": [{"name": "c", "image": "busybox"}],
            "nodeSelector": {"kubesim.io/no-such-node": "x"},
        },
    }
    status, _, obj = kubesim.request("POST", f"/api/v1/namespaces/{ns}/pods", body=pod)
    assert status == 201, obj
    proc = kubesim.kubectl("port-forward", "-n", ns, "pod/pending", ":8080", check=False, timeout=30)
    assert proc.returncode == 1
    assert "error: unable to forward port because pod is not running. Current status=Pending" in proc.stderr
    proc = kubesim.kubectl("port-forward", "-n", ns, "pod/missing", ":8080", check=False, timeout=30)
    assert proc.returncode == 1
    assert 'pods "missing" not found' in proc.stderr


def test_forbidden_without_create_on_pods_portforward(
    kubesim: KubeSim, ns: str, forwards: list[PortForward]
) -> None:
    remote = free_port()
    echo_pod(kubesim, ns, "guarded", (remote,))
    rules: list[dict[str, Any]] = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        # GET (the WebSocket handshake) alone is not enough: AuthorizePodWebsocketUpgradeCreatePermission
        {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["get"]},
    ]
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "pod-reader", "namespace": ns},
        "rules": rules,
    }
    rb = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "jane-reads", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane"}],
    }
    for path, body in (("roles", role), ("rolebindings", rb)):
        status, _, obj = kubesim.request(
            "POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/{path}", body=body
        )
        assert status == 201, obj
    proc = kubesim.kubectl("port-forward", "--as=jane", "-n", ns, "pod/guarded", f":{remote}", check=False)
    assert proc.returncode == 1
    assert (
        # the WebSocket handshake is refused (403), kubectl falls back to SPDY, which is refused
        # too; client-go's SPDY round tripper prefixes the decoded Status
        f"error: error upgrading connection: unable to upgrade connection: "
        f'pods "guarded" is forbidden: User "jane" cannot create '
        f'resource "pods/portforward" in API group "" in the namespace "{ns}"'
    ) in proc.stderr
    # granted create, it forwards
    rules.append({"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["create"]})
    status, _, obj = kubesim.request(
        "PUT", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles/pod-reader", body=role
    )
    assert status == 200, obj
    pf = PortForward(kubesim, "--as=jane", "-n", ns, "pod/guarded", f":{remote}")
    forwards.append(pf)
    (local,) = pf.local_ports()
    assert echo(local, b"allowed") == b"allowed"


# ---------------------------------------------------------------------------------------------
# Refusals before the upgrade, as the WebSocket (and SPDY) client sees them
# ---------------------------------------------------------------------------------------------


def handshake(sim: KubeSim, path: str, protocols: list[str]) -> tuple[int, str]:
    """Open a WebSocket; returns (status, body) of a refused handshake, or (101, protocol)."""
    try:
        ws = ws_connect(sim, path, protocols)
    except websocket.WebSocketBadStatusException as e:
        body = e.resp_body.decode() if isinstance(e.resp_body, bytes) else str(e.resp_body)
        return int(e.status_code), body
    proto = ws.getsubprotocol() or ""
    ws.close()
    return 101, proto


def spdy_upgrade(sim: KubeSim, path: str, versions: list[str]) -> tuple[int, dict[str, str], str]:
    """A plain SPDY/3.1 upgrade request (what kubectl falls back to): status, headers, body."""
    import http.client
    from urllib.parse import urlsplit

    assert sim.cluster is not None
    ctx = ssl.create_default_context(cadata=sim.cluster.certs.ca_pem.decode())
    u = urlsplit(sim.server)
    conn = http.client.HTTPSConnection(u.hostname or "", u.port, context=ctx, timeout=TIMEOUT)
    try:
        headers = {
            "Authorization": f"Bearer {sim.cluster.tokens.admin_token()}",
            "Connection": "Upgrade",
            "Upgrade": "SPDY/3.1",
        }
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        for v in versions:
            conn.putheader("X-Stream-Protocol-Version", v)
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        resp = conn.getresponse()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        body = "" if resp.status == 101 else resp.read().decode()
        return resp.status, hdrs, body
    finally:
        conn.close()


def test_refusals_before_the_upgrade(kubesim: KubeSim, ns: str) -> None:
    tunnel = ["SPDY/3.1+portforward.k8s.io"]
    base = f"/api/v1/namespaces/{ns}/pods"
    status, body = handshake(kubesim, f"{base}/nope/portforward", tunnel)
    assert status == 404 and 'pods \\"nope\\" not found' in body, body
    # not scheduled: PortForwardLocation
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "unbound", "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "x"}], "nodeSelector": {"none": "x"}},
    }
    assert kubesim.request("POST", base, body=pod)[0] == 201
    status, body = handshake(kubesim, f"{base}/unbound/portforward", tunnel)
    assert status == 400 and "pod unbound does not have a host assigned" in body, body
    # bad ports query
    status, body = handshake(kubesim, f"{base}/unbound/portforward?ports=99999", tunnel)
    assert status == 400 and 'cannot convert to []int32: strconv.ParseUint: parsing \\"99999\\"' in body
    # a finished pod has no sandbox: the kubelet's plain-text 500, replayed by the tunnel
    done = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "done", "namespace": ns, "annotations": {"kubesim.io/process": "true"}},
        "spec": {"containers": [{"name": "c", "image": "x", "command": ["true"]}], "restartPolicy": "Never"},
    }
    assert kubesim.request("POST", base, body=done)[0] == 201
    wait_for(
        "done Succeeded", lambda: get_pod(kubesim, ns, "done").get("status", {}).get("phase") == "Succeeded"
    )
    status, body = handshake(kubesim, f"{base}/done/portforward", tunnel)
    assert (status, body) == (500, f'pod not found ("done_{ns}")')
    status, _, body = spdy_upgrade(kubesim, f"{base}/done/portforward", ["portforward.k8s.io"])
    assert (status, body) == (500, f'pod not found ("done_{ns}")')
    proc = kubesim.kubectl("port-forward", "-n", ns, "pod/done", ":80", check=False)
    assert "unable to forward port because pod is not running. Current status=Succeeded" in proc.stderr
    # protocol negotiation (httpstream.Handshake) and the tunneling prefix
    port = free_port()
    echo_pod(kubesim, ns, "ok", (port,))
    status, body = handshake(kubesim, f"{base}/ok/portforward", ["SPDY/3.1+v9.portforward.k8s.io"])
    assert status == 403
    assert body == (
        "unable to upgrade: unable to negotiate protocol: client supports [v9.portforward.k8s.io], "
        "server accepts [portforward.k8s.io]\n"
    )
    # a WebSocket without a tunneling protocol goes to the kubelet's own WebSocket protocol
    # (NewV4Options), which kubesim does not serve
    status, body = handshake(kubesim, f"{base}/ok/portforward", ["SPDY/3.1+portforward.example.com"])
    assert (status, body) == (400, 'query parameter "port" is required')
    status, body = handshake(kubesim, f"{base}/ok/portforward?ports={port}", ["portforward.k8s.io"])
    assert status == 400 and "kubesim does not serve the kubelet's WebSocket port-forward protocol" in body
    # (websocket-client lower-cases the chosen subprotocol; kubectl, which compares it exactly
    # after trimming "SPDY/3.1+", is the check of its case)
    status, proto = handshake(kubesim, f"{base}/ok/portforward", tunnel)
    assert (status, proto.lower()) == (101, "spdy/3.1+portforward.k8s.io")
    # the same over plain SPDY (httpstream.Handshake, spdy.responseUpgrader)
    status, hdrs, body = spdy_upgrade(kubesim, f"{base}/ok/portforward", ["v9.portforward.k8s.io, other"])
    assert status == 403 and hdrs["x-accepted-stream-protocol-versions"] == "portforward.k8s.io"
    assert body == (
        "unable to upgrade: unable to negotiate protocol: client supports [v9.portforward.k8s.io other], "
        "server accepts [portforward.k8s.io]\n"
    )
    # no version at all: Handshake returns its error without writing, net/http answers 200
    assert spdy_upgrade(kubesim, f"{base}/ok/portforward", [])[:3:2] == (200, "")
    status, hdrs, _ = spdy_upgrade(kubesim, f"{base}/ok/portforward", ["foo", "portforward.k8s.io"])
    assert status == 101
    assert (hdrs["upgrade"], hdrs["connection"], hdrs["x-stream-protocol-version"]) == (
        "SPDY/3.1",
        "Upgrade",
        "portforward.k8s.io",
    )
    # no upgrade at all
    status, _, obj = kubesim.request("POST", f"{base}/ok/portforward")
    assert status == 400 and obj["message"] == "Upgrade request required", obj
    status, _, obj = kubesim.request("PUT", f"{base}/ok/portforward")
    assert status == 405, obj


# ---------------------------------------------------------------------------------------------
# The SPDY framer
# ---------------------------------------------------------------------------------------------


def test_spdy_dictionary_and_header_block_round_trip() -> None:
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    a, b = spdy.Framer(), spdy.Framer()
    frames: list[spdy.Frame] = [
        spdy.SynStreamFrame(1, {"Streamtype": ["error"], "Port": ["80"], "Requestid": ["0"]}),
        spdy.SynStreamFrame(3, {"Streamtype": ["data"], "Port": ["80"], "Requestid": ["0"]}, priority=3),
        spdy.SynReplyFrame(1, {}),
        spdy.HeadersFrame(3, {"X-Multi": ["a", "b"]}, flags=spdy.FLAG_FIN),
        spdy.DataFrame(3, b"x" * 70000),
        spdy.DataFrame(3, b"", spdy.FLAG_FIN),
        spdy.RstStreamFrame(3, spdy.CANCEL),
        spdy.SettingsFrame([(0, 7, 65536)]),
        spdy.PingFrame(1),
        spdy.GoAwayFrame(3, 0),
        spdy.WindowUpdateFrame(3, 1000),
    ]
    wire = b"".join(a.encode(f) for f in frames)
    # fed in awkward pieces, as WebSocket messages may split frames anywhere
    got: list[spdy.Frame] = []
    for i in range(0, len(wire), 7):
        got.extend(b.feed(wire[i : i + 7]))
    assert got == frames
    # the header stream is one zlib stream with the SPDY dictionary (FDICT + its Adler-32)
    first = a.__class__().encode(frames[0])
    assert first[18:20] == b"\x78\xf9" and first[20:24] == (0xE3C6A7C2).to_bytes(4, "big")


def test_spdy_reader_is_as_strict_as_the_go_framer() -> None:
    def raw_headers(block: bytes) -> bytes:
        c = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, spdy.DICTIONARY)
        z = c.compress(block) + c.flush(zlib.Z_SYNC_FLUSH)
        payload = (1).to_bytes(4, "big") + bytes(6) + z
        return b"\x80\x03\x00\x01\x00" + len(payload).to_bytes(3, "big") + payload

    upper = spdy.encode_header_block({"Port": ["1"]}).replace(b"port", b"Port")
    with pytest.raises(spdy.SpdyError, match="header was not lowercased"):
        list(spdy.Framer().feed(raw_headers(upper)))
    dup = (2).to_bytes(4, "big") + 2 * ((4).to_bytes(4, "big") + b"port" + (1).to_bytes(4, "big") + b"1")
    with pytest.raises(spdy.SpdyError, match="multiple headers with same name"):
        list(spdy.Framer().feed(raw_headers(dup)))
    with pytest.raises(spdy.SpdyError, match="frame contained invalid header"):
        list(spdy.Framer().feed(raw_headers(spdy.encode_header_block({"Host": ["x"]}))))
    with pytest.raises(spdy.SpdyError, match="stream id zero is disallowed"):
        list(spdy.Framer().feed(b"\x00\x00\x00\x00\x00\x00\x00\x00"))
    with pytest.raises(spdy.SpdyError, match="unknown frame type"):
        list(spdy.Framer().feed(b"\x80\x03\x00\x0a\x00\x00\x00\x00"))
    with pytest.raises(spdy.SpdyError, match="invalid control frame"):
        list(spdy.Framer().feed(b"\x80\x03\x00\x03\x00\x00\x00\x08" + (1).to_bytes(4, "big") + bytes(4)))


# ---------------------------------------------------------------------------------------------
# The kubelet's stream protocol, with a raw SPDY client in the WebSocket tunnel
# ---------------------------------------------------------------------------------------------


class TunnelClient:
    """A minimal spdystream client: SPDY frames in WebSocket binary messages."""

    def __init__(self, sim: KubeSim, ns: str, pod: str) -> None:
        self.ws = ws_connect(
            sim, f"/api/v1/namespaces/{ns}/pods/{pod}/portforward", ["SPDY/3.1+portforward.k8s.io"]
        )
        self.framer = spdy.Framer()
        self.pending: list[spdy.Frame] = []

    def send(self, *frames: spdy.Frame) -> None:
        for f in frames:
            self.ws.send_binary(self.framer.encode(f))

    def open(self, sid: int, kind: str, port: int, request_id: str | None = "0") -> None:
        headers = {"Streamtype": [kind], "Port": [str(port)]}
        if request_id is not None:
            headers["Requestid"] = [request_id]
        self.send(spdy.SynStreamFrame(sid, headers))

    def recv(self, timeout: float = TIMEOUT) -> spdy.Frame | None:
        """The next frame; None once the server closed the connection."""
        self.ws.settimeout(timeout)
        while not self.pending:
            try:
                opcode, data = self.ws.recv_data(control_frame=True)
            except websocket.WebSocketConnectionClosedException:
                return None
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return None
            if opcode == websocket.ABNF.OPCODE_BINARY:
                self.pending.extend(self.framer.feed(data))
        return self.pending.pop(0)

    def recv_until_fin(self, sid: int) -> bytes:
        out = b""
        while True:
            f = self.recv()
            assert f is not None, "connection closed"
            if isinstance(f, spdy.DataFrame) and f.stream_id == sid:
                out += f.data
                if f.flags & spdy.FLAG_FIN:
                    return out

    def close(self) -> None:
        self.ws.close()


def test_stream_protocol(kubesim: KubeSim, ns: str) -> None:
    port = free_port()
    echo_pod(kubesim, ns, "proto", (port,))
    c = TunnelClient(kubesim, ns, "proto")
    try:
        # PING from the client (odd ids) is echoed (spdystream handlePingFrame)
        c.send(spdy.PingFrame(7))
        assert c.recv() == spdy.PingFrame(7)
        # streams with bad headers are reset (httpStreamReceived → newSpdyStream: stream.Reset)
        c.send(spdy.SynStreamFrame(1, {"Streamtype": ["data"]}))
        assert c.recv() == spdy.RstStreamFrame(1, spdy.CANCEL)
        c.open(3, "data", 0)
        assert c.recv() == spdy.RstStreamFrame(3, spdy.CANCEL)
        c.open(5, "data", 70000)
        assert c.recv() == spdy.RstStreamFrame(5, spdy.CANCEL)
        c.open(7, "bogus", port)
        assert c.recv() == spdy.RstStreamFrame(7, spdy.CANCEL)
        # a stream id that does not increase is a protocol error (validateStreamId)
        c.open(7, "error", port)
        assert c.recv() == spdy.RstStreamFrame(7, spdy.PROTOCOL_ERROR)
        # a pair: error stream, then data stream, same requestID
        c.open(9, "error", port, "a")
        assert c.recv() == spdy.SynReplyFrame(9, {})
        c.send(spdy.DataFrame(9, b"", spdy.FLAG_FIN))  # the client never writes the error stream
        c.open(11, "data", port, "a")
        assert c.recv() == spdy.SynReplyFrame(11, {})
        c.send(spdy.DataFrame(11, b"ping over spdy"))
        got = b""
        while len(got) < len(b"ping over spdy"):
            f = c.recv()
            assert isinstance(f, spdy.DataFrame) and f.stream_id == 11, f
            got += f.data
        assert got == b"ping over spdy"
        # the client's FIN ends one direction; the runtime gives the other one second
        # (containerd portForward) and then closes: data stream FIN, then error stream FIN
        started = time.monotonic()
        c.send(spdy.DataFrame(11, b"", spdy.FLAG_FIN))
        assert c.recv() == spdy.DataFrame(11, b"", spdy.FLAG_FIN)
        assert time.monotonic() - started >= 0.9
        assert c.recv() == spdy.DataFrame(9, b"", spdy.FLAG_FIN)
        # without requestID the pair is found from the stream ids (error N, data N+2)
        c.open(13, "error", port, None)
        assert c.recv() == spdy.SynReplyFrame(13, {})
        c.open(15, "data", port, None)
        assert c.recv() == spdy.SynReplyFrame(15, {})
        c.send(spdy.DataFrame(15, b"legacy"))
        f = c.recv()
        assert f == spdy.DataFrame(15, b"legacy"), f
        c.send(spdy.RstStreamFrame(15, spdy.CANCEL))  # what kubectl does when its side ends
        assert c.recv_until_fin(13) == b""
        # a second error stream for a request: the error goes to the first one
        c.open(17, "error", port, "dup")
        assert c.recv() == spdy.SynReplyFrame(17, {})
        c.open(19, "error", port, "dup")
        assert c.recv() == spdy.SynReplyFrame(19, {})
        f = c.recv()
        assert f == spdy.DataFrame(
            17, b"error processing stream for request dup: error stream already assigned"
        )
        # GOAWAY: the connection ends once its streams are closed; 17 waits for its pair, so
        # the connection stays until the client closes it
        c.send(spdy.GoAwayFrame(0))
        c.open(21, "error", port, "late")  # ignored after GOAWAY (checkStreamFrame)
        c.send(spdy.PingFrame(23))
        assert c.recv() == spdy.PingFrame(23)
    finally:
        c.close()


def test_stream_creation_timeout_and_protocol_errors(kubesim: KubeSim, ns: str) -> None:
    port = free_port()
    echo_pod(kubesim, ns, "lonely", (port,))

    def set_timeout(t: float) -> None:
        kubesim.call(lambda cl: setattr(cl.portforward, "stream_creation_timeout", t))

    set_timeout(0.5)
    try:
        c = TunnelClient(kubesim, ns, "lonely")
    finally:
        set_timeout(30.0)
    try:
        c.open(1, "error", port, "7")
        assert c.recv() == spdy.SynReplyFrame(1, {})
        started = time.monotonic()
        f = c.recv()
        assert isinstance(f, spdy.DataFrame) and f.stream_id == 1, f
        assert f.data.endswith(b", request=7) timed out waiting for streams"), f.data
        assert time.monotonic() - started >= 0.4
        # an unknown control frame type breaks the connection (spdy/read.go: UnknownFrameType)
        c.ws.send_binary(b"\x80\x03\x00\x0a\x00\x00\x00\x00")
        assert c.recv() is None
    finally:
        c.close()
    # GOAWAY with no streams open: the server closes the connection
    c = TunnelClient(kubesim, ns, "lonely")
    try:
        c.send(spdy.GoAwayFrame(0))
        assert c.recv() is None
    finally:
        c.close()


def test_deployment_resolves_to_its_running_pod(
    kubesim: KubeSim, ns: str, forwards: list[PortForward]
) -> None:
    """kubectl picks a running pod of the Deployment's selector (polymorphichelpers
    AttachablePodForObjectFn → GetFirstPod) and forwards to it."""
    remote = free_port()
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "echo", "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "echo-deploy"}},
            "template": {
                "metadata": {"labels": {"app": "echo-deploy"}, "annotations": {"kubesim.io/process": "true"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "echo",
                            "image": "python",
                            "command": [sys.executable, "-c", ECHO_SERVER, str(remote), "0.0.0.0"],
                        }
                    ],
                },
            },
        },
    }
    status, _, obj = kubesim.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body=deploy)
    assert status == 201, obj

    def pod_ip() -> str | None:
        _, _, pods = kubesim.request("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector=app%3Decho-deploy")
        for p in pods["items"]:
            if p.get("status", {}).get("phase") == "Running" and can_connect(p["status"]["podIP"], remote):
                return str(p["metadata"]["name"])
        return None

    name = wait_for("a listening deployment pod", pod_ip)
    pf = PortForward(kubesim, "-n", ns, "deploy/echo", f":{remote}")
    forwards.append(pf)
    (local,) = pf.local_ports()
    assert echo(local, b"via deployment") == b"via deployment"
    assert (ns, name, "websocket") in kubesim.call(lambda c: list(c.portforward.connections))
