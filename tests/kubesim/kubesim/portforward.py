"""``pods/portforward``: ``kubectl port-forward`` against kubesim's pods.

Upstream the request goes through three parts, and kubesim plays all three:

1. the API server (``pkg/registry/core/pod/rest/subresources.go: PortForwardREST.Connect``,
   ``pkg/registry/core/pod/strategy.go: PortForwardLocation``) authorizes, finds the pod and its
   node, and proxies to the kubelet; a WebSocket that asks for a ``SPDY/3.1+...k8s.io``
   subprotocol is served by the ``TunnelingHandler``
   (``staging/src/k8s.io/apiserver/pkg/util/proxy/streamtunnel.go``), which turns it into a SPDY
   upgrade towards the kubelet and carries the SPDY bytes in WebSocket binary messages;
2. the kubelet (``pkg/kubelet/server/server.go: getPortForward``,
   ``pkg/kubelet/kubelet_pods.go: GetPortForward``) finds the pod and its sandbox and hands the
   connection to the CRI streaming server, which speaks SPDY/3.1
   (``staging/src/k8s.io/kubelet/pkg/cri/streaming/portforward/httpstream.go``: pairs of error
   and data streams per forwarded connection);
3. the runtime (containerd, ``internal/cri/server/sandbox_portforward_linux.go: portForward``)
   connects to the port in the pod and copies bytes both ways.

kubectl (``staging/src/k8s.io/kubectl/pkg/cmd/portforward/portforward.go: createDialer``) first
tries the WebSocket tunnel and falls back to a plain SPDY/3.1 upgrade (``POST`` with
``Upgrade: SPDY/3.1``) only when the WebSocket handshake is refused; kubesim serves both, and
every refusal before an upgrade is answered identically for both.

kubesim's pods share the host's network: the runtime dials the pod IP (127.x.y.z) only, never the
shared 127.0.0.1 (see the README: a server listening only on 127.0.0.1 is not reachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import WSMsgType, web

from . import auth, spdy
from .errors import bad_request
from .podio import authorize_connect, is_upgrade, is_websocket
from .resources import ResourceType

if TYPE_CHECKING:
    from .cluster import Cluster

JSON = dict[str, Any]

# staging/src/k8s.io/apimachinery/pkg/util/portforward/constants.go
PORT_FORWARD_V1 = "portforward.k8s.io"  # PortForwardV1Name
TUNNEL_PREFIX = "SPDY/3.1+"  # WebsocketsSPDYTunnelingPrefix
KUBERNETES_SUFFIX = ".k8s.io"  # KubernetesSuffix
# The CRI streaming server's SupportedPortForwardProtocols (cri/streaming/server.go: DefaultConfig)
SUPPORTED_PROTOCOLS = [PORT_FORWARD_V1]

# staging/src/k8s.io/apimachinery/pkg/util/httpstream/httpstream.go
HEADER_PROTOCOL_VERSION = "X-Stream-Protocol-Version"
HEADER_ACCEPTED_PROTOCOL_VERSIONS = "X-Accepted-Stream-Protocol-Versions"
HEADER_SPDY31 = "SPDY/3.1"  # httpstream/spdy: HeaderSpdy31

# staging/src/k8s.io/api/core/v1/types.go: StreamType, StreamTypeError/Data, PortHeader,
# PortForwardRequestIDHeader (looked up with http.Header.Get, which canonicalises them)
STREAM_TYPE = "streamType"
STREAM_TYPE_ERROR = "error"
STREAM_TYPE_DATA = "data"
PORT_HEADER = "port"
REQUEST_ID_HEADER = "requestID"

# cri/streaming/server.go: DefaultConfig.StreamCreationTimeout (remotecommandconsts.DefaultStreamCreationTimeout)
STREAM_CREATION_TIMEOUT = 30.0
DIAL_TIMEOUT = 5.0  # sandbox_portforward_linux.go: dialTimeout
CLOSE_GRACE = 1.0  # sandbox_portforward_linux.go: "give a chance to terminate gracefully or timeout after 1s"
COPY_BUFFER = 32 * 1024  # io.Copy's buffer: the largest DATA frame the runtime writes

WEBSOCKET_PORTFORWARD_REFUSAL = (
    "kubesim does not serve the kubelet's WebSocket port-forward protocol (v4.channel.k8s.io / "
    "portforward.k8s.io channels); use SPDY/3.1, or a WebSocket with the subprotocol "
    "SPDY/3.1+portforward.k8s.io"
)


# ---------------------------------------------------------------------------------------------
# Go formatting helpers
# ---------------------------------------------------------------------------------------------


def _errno_text(e: OSError) -> str:
    """``syscall.Errno.Error()``: the C library's text with a lower-case first letter."""
    code = e.errno
    if code is None:
        return str(e)
    text = os.strerror(code)
    return text[:1].lower() + text[1:]


def _go_list(items: list[str]) -> str:
    """``fmt.Sprintf("%v", []string{...})``."""
    return "[" + " ".join(items) + "]"


def _parse_uint(s: str, bits: int) -> int:
    """``strconv.ParseUint(s, 10, bits)``; raises ValueError with the strconv message."""
    if not s or not s.isascii() or not s.isdigit():
        raise ValueError(f'strconv.ParseUint: parsing "{s}": invalid syntax')
    n = int(s)
    if n >= 1 << bits:
        raise ValueError(f'strconv.ParseUint: parsing "{s}": value out of range')
    return n


def _http_error(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    """``http.Error``: plain text with a trailing newline."""
    h = {"X-Content-Type-Options": "nosniff", **(headers or {})}
    return web.Response(
        status=status, text=text + "\n", content_type="text/plain", charset="utf-8", headers=h
    )


def _websocket_protocols(request: web.Request) -> list[str]:
    """``gwebsocket.Subprotocols`` (and ``wsstream.IsWebSocketRequestWithTunnelingProtocol``):
    the comma-separated tokens of the first Sec-WebSocket-Protocol header (``Header.Get``)."""
    value = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in value.split(",") if p.strip()]


def _is_tunneling_protocol(protocol: str) -> bool:
    """``wsstream.protocolSupportsWebsocketTunneling``: a tunneled Kubernetes SPDY protocol."""
    return protocol.startswith(TUNNEL_PREFIX) and protocol.endswith(KUBERNETES_SUFFIX)


def _tunneling_protocols(request: web.Request) -> list[str]:
    """``streamtunnel.go: spdyProtocolsFromWebsocketProtocols``."""
    return [p[len(TUNNEL_PREFIX) :] for p in _websocket_protocols(request) if _is_tunneling_protocol(p)]


def _comma_separated(values: list[str]) -> list[str]:
    """``httpstream.go: commaSeparatedHeaderValues``."""
    return [p.strip(" ") for v in values for p in v.split(",") if p.strip(" ")]


def _negotiate(client: list[str], server: list[str]) -> str:
    """``httpstream.go: negotiateProtocol``: the first client protocol the server accepts."""
    return next((c for c in client if c in server), "")


# ---------------------------------------------------------------------------------------------
# Byte transports under the SPDY connection
# ---------------------------------------------------------------------------------------------


class Transport(Protocol):
    async def read(self) -> bytes:
        """The next bytes from the client; b"" at the end."""

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class WebSocketTransport:
    """``client-go/tools/portforward/tunneling_connection.go: TunnelingConnection`` (the server
    side the TunnelingHandler wraps): the SPDY byte stream in binary messages; any other message
    type is an error that ends the connection."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    async def read(self) -> bytes:
        while True:
            try:
                msg = await self.ws.receive()
            except (RuntimeError, ConnectionError):
                return b""
            if msg.type == WSMsgType.BINARY:
                if msg.data:
                    return bytes(msg.data)
                continue
            # CLOSE/CLOSING/CLOSED/ERROR end the stream; TEXT is "invalid message type received"
            return b""

    async def write(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()


class _RawParser:
    """Receives the bytes of an upgraded HTTP connection (aiohttp's payload-parser hook)."""

    def __init__(self, queue: asyncio.Queue[bytes]) -> None:
        self.queue = queue

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.queue.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        self.queue.put_nowait(b"")


class RawTransport:
    """The connection itself after ``101 Switching Protocols`` (``spdy.responseUpgrader.
    UpgradeResponse`` hijacks it): SPDY frames directly on the TLS stream. aiohttp parses no
    upgrade but WebSocket's, so the bytes that follow the request are taken from its protocol
    (as its WebSocket support does); the 101 response has no body framing, so writes go out as
    they are, with the response writer's back-pressure."""

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self.request = request
        self.response = response
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.eof = False
        protocol: Any = request.protocol
        protocol.set_parser(_RawParser(self.queue))

    async def read(self) -> bytes:
        if self.eof:
            return b""
        transport = self.request.transport
        if (transport is None or transport.is_closing()) and self.queue.empty():
            self.eof = True
            return b""
        data = await self.queue.get()
        if not data:
            self.eof = True
        return data

    async def write(self, data: bytes) -> None:
        transport = self.request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection closed")
        await self.response.write(data)

    async def close(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.close()


# ---------------------------------------------------------------------------------------------
# The SPDY connection and its streams (moby/spdystream as apimachinery's spdy package uses it)
# ---------------------------------------------------------------------------------------------


@dataclass
class Stream:
    """A ``spdystream.Stream`` opened by the client."""

    conn: SpdyConnection
    id: int
    headers: spdy.Headers
    inbox: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    remote_closed: bool = False  # FIN or RST received: reads end
    finished: bool = False  # our FIN sent
    reset: bool = False

    def header(self, name: str) -> str:
        return spdy.get_header(self.headers, name)

    async def read(self) -> bytes:
        """``Stream.Read``: data until the client's FIN or RST_STREAM (then b"")."""
        if self.remote_closed and self.inbox.empty():
            return b""
        return await self.inbox.get()

    def _remote_close(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self.inbox.put_nowait(b"")
        self._forget_if_done()

    def _forget_if_done(self) -> None:
        # connection.go: remoteStreamFinish / Stream.Close: a stream closed both ways (or reset)
        # is removed from the connection; later frames for it are ignored.
        if self.remote_closed and (self.finished or self.reset):
            self.conn.streams.pop(self.id, None)
            self.conn.stream_done()

    async def write(self, data: bytes) -> None:
        """``Stream.Write``: one DATA frame (a reset stream's data is dropped by the client)."""
        if not data or self.reset or self.finished:
            return
        await self.conn.send(spdy.DataFrame(self.id, data))

    async def close(self) -> None:
        """``Stream.Close``: an empty DATA frame with FIN, once."""
        if self.finished or self.reset:
            return
        self.finished = True
        await self.conn.send(spdy.DataFrame(self.id, b"", spdy.FLAG_FIN))
        self._forget_if_done()


NewStreamHandler = Callable[[Stream], str | None]
StreamAccepted = Callable[[Stream], None]


class SpdyConnection:
    """The server side of a SPDY/3.1 connection (``spdystream.Connection.Serve`` with
    apimachinery's ``spdy/connection.go: newSpdyStream``): accepts client streams, answers
    PINGs, ignores SETTINGS/WINDOW_UPDATE and HEADERS, and ends at the first framing error.

    spdystream implements no flow control: it never sends WINDOW_UPDATE and ignores the ones it
    receives, so neither side limits how much it sends (nor does kubesim)."""

    def __init__(self, transport: Transport, on_stream: NewStreamHandler, accepted: StreamAccepted) -> None:
        self.transport = transport
        self.on_stream = on_stream  # httpstream.NewStreamHandler: an error text rejects the stream
        self.accepted = accepted  # the stream, once its SYN_REPLY is sent
        self.framer = spdy.Framer()
        self.streams: dict[int, Stream] = {}
        self.received_stream_id = 1  # spdystream: receivedStreamId, the lowest id accepted next
        self.gone_away = False
        self.closed = asyncio.Event()
        self._lock = asyncio.Lock()

    async def send(self, frame: spdy.Frame) -> None:
        """``idleAwareFramer.WriteFrame`` under the write lock: header compression state and the
        order of frames on the wire must agree."""
        if self.closed.is_set():
            return
        async with self._lock:
            try:
                await self.transport.write(self.framer.encode(frame))
            except (ConnectionError, RuntimeError, OSError):
                self.closed.set()

    async def serve(self) -> None:
        """Read frames until the client closes the connection or breaks the protocol, or the
        connection is closed from this side."""
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            while not self.closed.is_set():
                read = asyncio.ensure_future(self.transport.read())
                await asyncio.wait({read, closed}, return_when=asyncio.FIRST_COMPLETED)
                if not read.done():
                    read.cancel()
                    with contextlib.suppress(BaseException):
                        await read
                    return
                data = read.result()
                if not data:
                    return
                for frame in self.framer.feed(data):
                    await self._handle(frame)
        except spdy.SpdyError:
            return  # spdystream: "frame read error", Serve returns and the connection closes
        finally:
            closed.cancel()
            self.closed.set()
            for s in list(self.streams.values()):
                s._remote_close()
            self.streams.clear()

    async def _handle(self, frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.SynStreamFrame):
            await self._syn_stream(frame)
        elif isinstance(frame, spdy.DataFrame):
            s = self.streams.get(frame.stream_id)
            if s is None or s.remote_closed:
                return  # "Data frame gone away"
            if frame.data:
                s.inbox.put_nowait(frame.data)
            if frame.flags & spdy.FLAG_FIN:
                s._remote_close()
        elif isinstance(frame, spdy.RstStreamFrame):
            s = self.streams.pop(frame.stream_id, None)
            if s is not None:  # connection.go: handleResetFrame
                s.reset = True
                s._remote_close()
        elif isinstance(frame, spdy.PingFrame):
            # handlePingFrame: a ping of the other parity (the client's are odd) is echoed.
            if frame.id & 1:
                await self.send(frame)
        elif isinstance(frame, spdy.GoAwayFrame):
            # handleGoAwayFrame: no new streams; shutdown closes the connection once every
            # stream is closed
            self.gone_away = True
            self.stream_done()
        # SYN_REPLY (we open no streams), HEADERS, SETTINGS, WINDOW_UPDATE: nothing to do

    def stream_done(self) -> None:
        """After GOAWAY, the last stream closed ends the connection (spdystream ``shutdown``)."""
        if self.gone_away and not self.streams:
            self.closed.set()

    async def _syn_stream(self, frame: spdy.SynStreamFrame) -> None:
        # connection.go: checkStreamFrame / validateStreamId (ids must not go below the last
        # one + 2; their parity is not checked)
        if self.gone_away:
            return
        sid = frame.stream_id
        if sid < self.received_stream_id:
            await self.send(spdy.RstStreamFrame(sid, spdy.PROTOCOL_ERROR))
            return
        self.received_stream_id = sid + 2
        stream = Stream(self, sid, frame.headers)
        if frame.flags & spdy.FLAG_FIN:
            stream._remote_close()
        self.streams[sid] = stream
        # apimachinery spdy/connection.go: newSpdyStream: a rejected stream is Reset (CANCEL),
        # an accepted one gets an empty SYN_REPLY.
        err = self.on_stream(stream)
        if err is not None:
            self.streams.pop(sid, None)
            stream.reset = True
            await self.send(spdy.RstStreamFrame(sid, spdy.CANCEL))
            return
        await self.send(spdy.SynReplyFrame(sid, {}))
        self.accepted(stream)

    async def close(self) -> None:
        self.closed.set()
        await self.transport.close()


# ---------------------------------------------------------------------------------------------
# The kubelet's port-forward protocol (cri/streaming/portforward/httpstream.go)
# ---------------------------------------------------------------------------------------------


def http_stream_received(stream: Stream) -> str | None:
    """``httpstream.go: httpStreamReceived``: the port and stream type headers."""
    port = stream.header(PORT_HEADER)
    if not port:
        return f'"{PORT_HEADER}" header is required'
    try:
        n = _parse_uint(port, 16)
    except ValueError as e:
        return f'unable to parse "{port}" as a port: {e}'
    if n < 1:
        return f'port "{port}" must be > 0'
    kind = stream.header(STREAM_TYPE)
    if not kind:
        return f'"{STREAM_TYPE}" header is required'
    if kind not in (STREAM_TYPE_ERROR, STREAM_TYPE_DATA):
        return f'invalid stream type "{kind}"'
    return None


@dataclass
class StreamPair:
    """``httpstream.go: httpStreamPair``."""

    request_id: str
    data: Stream | None = None
    error: Stream | None = None
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, stream: Stream) -> bool:
        """``httpStreamPair.add``; raises ValueError when the type is already assigned."""
        if stream.header(STREAM_TYPE) == STREAM_TYPE_ERROR:
            if self.error is not None:
                raise ValueError("error stream already assigned")
            self.error = stream
        else:
            if self.data is not None:
                raise ValueError("data stream already assigned")
            self.data = stream
        done = self.error is not None and self.data is not None
        if done:
            self.complete.set()
        return done

    async def print_error(self, text: str) -> None:
        if self.error is not None:
            await self.error.write(text.encode())


Forwarder = Callable[[int, Stream], Awaitable[str | None]]


class PortForwardSession:
    """``httpstream.go: httpStreamHandler`` on one SPDY connection: pairs each forwarded
    connection's error and data streams by request ID and runs the forwarder for each pair."""

    def __init__(
        self, transport: Transport, pod: str, uid: str, forwarder: Forwarder, creation_timeout: float
    ) -> None:
        self.conn = SpdyConnection(transport, http_stream_received, self._stream)
        self.pod = pod
        self.uid = uid
        self.forwarder = forwarder
        self.creation_timeout = creation_timeout
        self.pairs: dict[str, StreamPair] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _request_id(self, stream: Stream) -> str:
        """``httpStreamHandler.requestID``, with the fallback for clients without the header."""
        rid = stream.header(REQUEST_ID_HEADER)
        if rid:
            return rid
        kind = stream.header(STREAM_TYPE)
        if kind == STREAM_TYPE_ERROR:
            return str(stream.id)
        if kind == STREAM_TYPE_DATA:
            return str(stream.id - 2)
        return ""

    def _stream(self, stream: Stream) -> None:
        """``httpStreamHandler.run``: one new stream."""
        rid = self._request_id(stream)
        pair = self.pairs.get(rid)
        if pair is None:
            pair = self.pairs[rid] = StreamPair(rid)
            self._spawn(self._monitor(pair))
        try:
            complete = pair.add(stream)
        except ValueError as e:
            self._spawn(pair.print_error(f"error processing stream for request {rid}: {e}"))
            return
        if complete:
            self._spawn(self._port_forward(pair))

    async def _monitor(self, pair: StreamPair) -> None:
        """``monitorStreamPair``: both streams within the creation timeout, or an error."""
        try:
            await asyncio.wait_for(pair.complete.wait(), self.creation_timeout)
        except TimeoutError:
            # upstream prints the connection with %v; kubesim names it instead
            await pair.print_error(
                f"(conn=kubesim-spdy-connection, request={pair.request_id}) timed out waiting for streams"
            )
        self._remove_pair(pair.request_id)

    def _remove_pair(self, rid: str) -> None:
        # removeStreamPair; conn.RemoveStreams only stops apimachinery's connection from
        # resetting the streams at Close: spdystream keeps routing their frames.
        self.pairs.pop(rid, None)

    async def _port_forward(self, pair: StreamPair) -> None:
        """``httpStreamHandler.portForward``: the error text on the error stream, then both
        streams closed (error stream first: the deferred closes run last-in first-out)."""
        assert pair.data is not None and pair.error is not None
        port = int(pair.data.header(PORT_HEADER))
        try:
            err = await self.forwarder(port, pair.data)
            if err is not None:
                msg = f"error forwarding port {port} to pod {self.pod}, uid {self.uid}: {err}"
                await pair.error.write(msg.encode())
        finally:
            await pair.error.close()
            await pair.data.close()

    async def run(self) -> None:
        try:
            await self.conn.serve()
        finally:
            for t in list(self.tasks):
                t.cancel()
            for t in list(self.tasks):
                with contextlib.suppress(BaseException):
                    await t
            await self.conn.close()


# ---------------------------------------------------------------------------------------------
# The runtime's side: connect to the port in the pod and copy (containerd)
# ---------------------------------------------------------------------------------------------


async def forward_to_pod(
    sandbox_id: str, netns: str, pod_ips: list[str], port: int, stream: Stream
) -> str | None:
    """``sandbox_portforward_linux.go: portForward`` for a sandbox whose loopback kubesim cannot
    reach (every kubesim pod shares the host's): the pod IPs are dialled directly, as containerd
    does when localhost is unreachable or skipped (``dialPodIPs``). Returns the error text."""
    # cri/streaming (containerd streamRuntime.PortForward): "invalid port %d"
    if port <= 0 or port > 65535:
        return f"invalid port {port}"
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    errs: list[str] = []
    for ip in pod_ips:
        if not ip:
            continue
        addr = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        try:
            conn = await asyncio.wait_for(asyncio.open_connection(ip, port), DIAL_TIMEOUT)
            break
        except TimeoutError:
            errs.append(f"dial tcp {addr}: i/o timeout")
        except OSError as e:
            errs.append(f"dial tcp {addr}: connect: {_errno_text(e)}")
    if conn is None:
        detail = "\n".join(errs) if errs else "no pod IPs provided"  # errors.Join / dialPodIPs
        return f'failed to execute portforward in network namespace "{netns}": {detail}'
    reader, writer = conn
    sock = writer.get_extra_info("sockname") or ("", 0)
    peer = writer.get_extra_info("peername") or ("", 0)
    local, remote = f"{sock[0]}:{sock[1]}", f"{peer[0]}:{peer[1]}"

    async def pod_to_client() -> str | None:
        # io.Copy(stream, conn): ends at the pod's EOF, or with the read error
        while True:
            try:
                data = await reader.read(COPY_BUFFER)
            except OSError as e:
                return f"read tcp {local}->{remote}: read: {_errno_text(e)}"
            if not data:
                return None
            await stream.write(data)
            if stream.reset or stream.conn.closed.is_set():
                return None

    async def client_to_pod() -> str | None:
        # io.Copy(conn, stream): ends at the client's FIN (or RST), or with the write error
        while True:
            data = await stream.read()
            if not data:
                return None
            try:
                writer.write(data)
                await writer.drain()
            except OSError as e:
                return f"write tcp {local}->{remote}: write: {_errno_text(e)}"

    tasks = [asyncio.ensure_future(pod_to_client()), asyncio.ensure_future(client_to_pod())]
    err: str | None = None
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        err = next(iter(done)).result()
        if pending:
            # "give a chance to terminate gracefully or timeout after 1s"
            done2, _ = await asyncio.wait(pending, timeout=CLOSE_GRACE)
            if done2 and err is None:
                err = next(iter(done2)).result()
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        # defer stream.Close(); defer conn.Close()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        await stream.close()
    if err is not None:
        return f'failed to execute portforward for "{sandbox_id}" port {port}: {err}'
    return None


# ---------------------------------------------------------------------------------------------
# The handler
# ---------------------------------------------------------------------------------------------


@dataclass
class Sandbox:
    """What the runtime knows of a pod's sandbox."""

    id: str
    netns: str
    ips: list[str]


class PortForward:
    """The handler of ``pods/portforward``."""

    def __init__(self, cluster: Cluster, stream_creation_timeout: float = STREAM_CREATION_TIMEOUT) -> None:
        self.cluster = cluster
        self.stream_creation_timeout = stream_creation_timeout
        # Connections in progress by (namespace, pod): lets tests know a forward is connected.
        self.sessions: dict[tuple[str, str], int] = {}
        # Every connection served, in order: (namespace, pod, "websocket" or "spdy").
        self.connections: list[tuple[str, str, str]] = []

    def _sandbox(self, pod: JSON) -> tuple[int, str] | Sandbox:
        """The kubelet's refusals (``server.go: getPortForward``: the pod manager does not know
        the pod, 404; ``kubelet_pods.go: GetPortForward``: no running sandbox or container in
        the runtime, written by ``streaming.WriteError`` as a 500), else the sandbox."""
        meta = pod["metadata"]
        kubelet = getattr(self.cluster, "kubelet", None)
        lookup = getattr(kubelet, "_runtime", None)
        rt = lookup(meta.get("namespace", ""), meta["name"]) if lookup is not None else None
        if rt is None:
            return 404, "pod does not exist"
        phase = (pod.get("status") or {}).get("phase")
        # the sandbox lives as kubelet.py's PodReadyToStartContainers says it does
        if not rt.ip or rt.stopped or phase in ("Succeeded", "Failed"):
            return 500, f'pod not found ("{meta["name"]}_{meta.get("namespace", "")}")'
        uid = str(meta.get("uid", ""))
        sandbox_id = hashlib.sha256(f"kubesim-sandbox:{uid}".encode()).hexdigest()
        host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
        netns = "host" if host_network else f"/var/run/netns/cni-{uuid.uuid5(uuid.NAMESPACE_URL, uid)}"
        return Sandbox(sandbox_id, netns, [str(rt.ip)])

    async def handle(
        self, request: web.Request, rt: ResourceType, ns: str, name: str, user: auth.UserInfo
    ) -> web.StreamResponse:
        """``handlers/rest.go: ConnectResource`` → ``PortForwardREST.Connect``."""
        authorize_connect(self.cluster, request, user, ns, name, "portforward")
        # PodPortForwardOptions.ports (meta/v1/conversion.go: Convert_Slice_string_To_Slice_int32);
        # a decoding error is a 400 (handlers/rest.go: getRequestOptions). The SPDY protocol
        # names its ports per stream, so the values are not used further.
        ports: list[int] = []
        for value in request.query.getall("ports", []):
            for v in value.split(","):
                try:
                    ports.append(_parse_uint(v, 16))
                except ValueError as e:
                    raise bad_request(f"cannot convert to []int32: {e}") from None
        pod = self.cluster.api.get(rt, ns, name)  # 404 pods "x" not found
        if not (pod.get("spec") or {}).get("nodeName"):
            raise bad_request(f"pod {name} does not have a host assigned")  # PortForwardLocation
        websocket = is_websocket(request)
        # TranslatingHandler(..., wsstream.IsWebSocketRequestWithTunnelingProtocol)
        tunneling = websocket and any(_is_tunneling_protocol(p) for p in _websocket_protocols(request))
        if tunneling:
            return await self._tunnel(request, pod, ns, name)
        if not is_upgrade(request):
            # newThrottledUpgradeAwareProxyHandler(..., upgradeRequired=true)
            raise bad_request("Upgrade request required")
        if websocket:
            # The kubelet's server.go: getPortForward → portforward.NewV4Options: a WebSocket
            # names its ports in the query (PortForwardLocation passes `ports` on as `port`).
            if not ports:
                return web.Response(
                    status=400, text='query parameter "port" is required', content_type="text/plain"
                )
            if 0 in ports:
                return web.Response(status=400, text='port "0" must be > 0', content_type="text/plain")
        sandbox = self._sandbox(pod)
        if not isinstance(sandbox, Sandbox):
            # The UpgradeAwareHandler echoes the kubelet's plain-text refusal.
            code, text = sandbox
            return web.Response(status=code, text=text, content_type="text/plain")
        if websocket:
            raise bad_request(WEBSOCKET_PORTFORWARD_REFUSAL)
        return await self._spdy(
            request, sandbox, ns, name, request.headers.getall(HEADER_PROTOCOL_VERSION, [])
        )

    # -- the WebSocket tunnel (streamtunnel.go: TunnelingHandler) ------------------------------
    async def _tunnel(self, request: web.Request, pod: JSON, ns: str, name: str) -> web.StreamResponse:
        spdy_protocols = _tunneling_protocols(request)
        if not spdy_protocols:
            return _http_error(400, "unable to upgrade: no tunneling spdy protocols provided")
        # createSPDYRequest → the kubelet: its refusals and the protocol handshake come back as
        # the backend response, which InitializeWrite replays to the client as it is.
        sandbox = self._sandbox(pod)
        if not isinstance(sandbox, Sandbox):
            code, text = sandbox
            return web.Response(status=code, text=text, content_type="text/plain")
        negotiated = _negotiate(spdy_protocols, SUPPORTED_PROTOCOLS)
        if not negotiated:
            return _handshake_refusal(spdy_protocols)
        ws = web.WebSocketResponse(protocols=(TUNNEL_PREFIX + negotiated,), compress=False, autoping=True)
        await ws.prepare(request)
        await self._serve(WebSocketTransport(ws), sandbox, ns, name, "websocket")
        return ws

    # -- plain SPDY/3.1 (spdy.responseUpgrader.UpgradeResponse) ---------------------------------
    async def _spdy(
        self, request: web.Request, sandbox: Sandbox, ns: str, name: str, versions: list[str]
    ) -> web.StreamResponse:
        client = _comma_separated(versions)
        if not client:
            # httpstream.Handshake returns "X-Stream-Protocol-Version is required" without
            # writing a response: the handler ends and net/http answers 200 with no body.
            return web.Response(status=200)
        negotiated = _negotiate(client, SUPPORTED_PROTOCOLS)
        if not negotiated:
            return _handshake_refusal(client)
        upgrade = request.headers.get("Upgrade", "").lower()
        if HEADER_SPDY31.lower() not in upgrade:
            return _http_error(
                400, f"unable to upgrade: missing upgrade headers in request: {_go_header_map(request)}"
            )
        resp = web.StreamResponse(
            status=101,
            headers={
                "Connection": "Upgrade",
                "Upgrade": HEADER_SPDY31,
                HEADER_PROTOCOL_VERSION: negotiated,
            },
        )
        await resp.prepare(request)
        await self._serve(RawTransport(request, resp), sandbox, ns, name, "spdy")
        return resp

    async def _serve(self, transport: Transport, sandbox: Sandbox, ns: str, name: str, kind: str) -> None:
        async def forwarder(port: int, stream: Stream) -> str | None:
            return await forward_to_pod(sandbox.id, sandbox.netns, sandbox.ips, port, stream)

        # containerd's streaming server calls ServePortForward(w, r, runtime, podSandboxID, "", ...)
        session = PortForwardSession(transport, sandbox.id, "", forwarder, self.stream_creation_timeout)
        key = (ns, name)
        self.connections.append((ns, name, kind))
        self.sessions[key] = self.sessions.get(key, 0) + 1
        try:
            await session.run()
        finally:
            self.sessions[key] -= 1
            if not self.sessions[key]:
                del self.sessions[key]


def _handshake_refusal(client: list[str]) -> web.Response:
    """``httpstream.Handshake`` when no protocol matches: 403 and the accepted versions."""
    text = (
        f"unable to upgrade: unable to negotiate protocol: client supports {_go_list(client)}, "
        f"server accepts {_go_list(SUPPORTED_PROTOCOLS)}"
    )
    return _http_error(403, text, {HEADER_ACCEPTED_PROTOCOL_VERSIONS: ", ".join(SUPPORTED_PROTOCOLS)})


def _go_header_map(request: web.Request) -> str:
    """``fmt.Sprintf("%#v", req.Header)`` (keys sorted, as fmt prints maps)."""
    by_key: dict[str, list[str]] = {}
    for k, v in request.headers.items():
        by_key.setdefault(spdy.canonical_header_key(k), []).append(v)
    items = ", ".join(
        f'"{k}":[]string{{{", ".join(chr(34) + v + chr(34) for v in vs)}}}'
        for k, vs in sorted(by_key.items())
    )
    return f"http.Header{{{items}}}"


__all__ = ["PortForward", "PortForwardSession", "SpdyConnection", "Stream", "forward_to_pod"]
