"""``pods/exec``, ``pods/attach`` and ``pods/log``: the streaming subresources of pods.

Upstream, the API server validates the request, finds the pod and its container
(``pkg/registry/core/pod/strategy.go: streamLocation`` / ``LogLocation`` / ``validateContainer``)
and proxies to the kubelet, which finds the running container
(``pkg/kubelet/kubelet_pods.go: GetExec`` / ``GetAttach`` / ``validateContainerLogStatus``) and
hands the streams to the container runtime's streaming server
(``staging/src/k8s.io/kubelet/pkg/cri/streaming/remotecommand``). A WebSocket client that asks for
``v5.channel.k8s.io`` (kubectl >= 1.30, the Python client >= 35) is served by the API server's
stream translator instead (``staging/src/k8s.io/apiserver/pkg/util/proxy/streamtranslator.go``),
which reports errors and exit codes in-band on the error channel. kubesim plays all three parts:
the answers (HTTP status, plain-text kubelet errors, in-band ``Status`` documents) are those the
client would get from the part of the chain that upstream produces them.

The kubelet side is ``cluster.kubelet.exec_process`` (a process in the pod's mount namespace)
and ``cluster.kubelet.log_path`` (the captured output of a container instance).
SPDY is not spoken: kubectl only falls back to it when the WebSocket upgrade is refused, and
every refusal before the upgrade is answered identically for both.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from . import auth
from .errors import StatusError, bad_request, method_not_allowed
from .resources import ResourceType

if TYPE_CHECKING:
    from .cluster import Cluster

JSON = dict[str, Any]

# staging/src/k8s.io/apimachinery/pkg/util/remotecommand/constants.go and
# staging/src/k8s.io/kubelet/pkg/cri/streaming/remotecommand/websocket.go
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
CHANNEL = "channel.k8s.io"
BASE64_CHANNEL = "base64.channel.k8s.io"
# The subprotocols the kubelet's (CRI streaming server's) WebSocket endpoint offers; "" is a
# client that asked for none. v5 is only spoken by the API server's stream translator.
KUBELET_PROTOCOLS = ("", CHANNEL, BASE64_CHANNEL, V4, V4_BASE64)
JSON_STATUS_PROTOCOLS = (V5, V4, V4_BASE64)
BASE64_PROTOCOLS = (BASE64_CHANNEL, V4_BASE64)

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
STREAM_CLOSE = 255  # remotecommand.StreamClose: [255, channel] half-closes a channel (v5 only)

# kubesim's container runtime cannot give a process a terminal.
TTY_REFUSAL = (
    "kubesim does not support tty for pods/{sub} (tty=true): its containers are host processes "
    "without a terminal; run without -t/--tty"
)
STDIN_ATTACH_REFUSAL = (
    "kubesim does not support attaching to a container's stdin (stdin=true): attach without "
    "-i/--stdin, or use pods/exec"
)
SPDY_REFUSAL = (
    "kubesim serves pods/{sub} over WebSocket only (subprotocols v5.channel.k8s.io, "
    "v4.channel.k8s.io, v4.base64.channel.k8s.io, channel.k8s.io, base64.channel.k8s.io); "
    "SPDY/3.1 is not supported"
)


# ---------------------------------------------------------------------------------------------
# Query parameters (runtime.Convert_Slice_string_To_* as the parameter codec decodes them)
# ---------------------------------------------------------------------------------------------


def _go_bool(query: Any, key: str) -> bool:
    """``runtime.Convert_Slice_string_To_bool``: absent, "0" and "false" (any case) are false;
    anything else, the empty string included, is true."""
    values: list[str] = query.getall(key, [])
    if not values:
        return False
    v = values[0]
    return not (v == "0" or v.lower() == "false")


_INT_RE = re.compile(r"[+-]?[0-9]+")


def _go_int64(query: Any, key: str) -> int | None:
    """``runtime.Convert_Slice_string_To_Pointer_int64`` (``strconv.ParseInt(s, 10, 64)``); a
    decoding error is a 400 with the strconv message (``handlers/rest.go: getRequestOptions``)."""
    values: list[str] = query.getall(key, [])
    if not values:
        return None
    s = values[0]
    if not _INT_RE.fullmatch(s):
        raise bad_request(f'strconv.ParseInt: parsing "{s}": invalid syntax')
    n = int(s)
    if not -(2**63) <= n < 2**63:
        raise bad_request(f'strconv.ParseInt: parsing "{s}": value out of range')
    return n


_RFC3339_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _parse_rfc3339_ns(s: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 time (``time.Parse(time.RFC3339Nano, s)``)."""
    m = _RFC3339_RE.fullmatch(s)
    if not m:
        return None
    import calendar

    y, mo, d, h, mi, sec = (int(m.group(i)) for i in range(1, 7))
    try:
        secs = calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    frac = m.group(7)
    ns = int((frac[1:] + "000000000")[:9]) if frac else 0
    zone = m.group(8)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        secs -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return secs * 1_000_000_000 + ns


def rfc3339nano(ns: int) -> str:
    """Go's ``time.RFC3339Nano`` of a UTC instant: trailing zeros of the fraction dropped."""
    secs, frac = divmod(ns, 1_000_000_000)
    out = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        out += "." + f"{frac:09d}".rstrip("0")
    return out + "Z"


# ---------------------------------------------------------------------------------------------
# Status documents on the error channel
# ---------------------------------------------------------------------------------------------


def _success_status() -> JSON:
    # json.Marshal(metav1.Status{Status: Success}): an empty ListMeta is still "metadata": {}
    return {"metadata": {}, "status": "Success"}


def _exit_status(code: int, message: str) -> JSON:
    """The NonZeroExitCode ``Status`` (``remotecommand/exec.go: ServeExec``,
    ``streamtranslator.go: codeExitToStatusError``): the exit code is the ExitCode cause."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def _internal_status(err: str) -> JSON:
    """``apierrors.NewInternalError(err).Status()``."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {err}",
        "reason": "InternalError",
        "details": {"causes": [{"message": err}]},
        "code": 500,
    }


# ---------------------------------------------------------------------------------------------
# Pods and their containers
# ---------------------------------------------------------------------------------------------


def _all_containers(pod: JSON) -> list[JSON]:
    """``podutil.VisitContainers`` with all feature-enabled types: init, regular, ephemeral."""
    spec = pod.get("spec") or {}
    return [
        *(spec.get("initContainers") or []),
        *(spec.get("containers") or []),
        *(spec.get("ephemeralContainers") or []),
    ]


def validate_container(pod: JSON, container: str) -> str:
    """``pkg/registry/core/pod/strategy.go: validateContainer``."""
    name = pod["metadata"]["name"]
    containers = (pod.get("spec") or {}).get("containers") or []
    if not container:
        if len(containers) == 1:
            return str(containers[0]["name"])
        if not containers:
            raise bad_request(f"a container name must be specified for pod {name}")
        names = " ".join(c["name"] for c in _all_containers(pod))
        raise bad_request(f"a container name must be specified for pod {name}, choose one of: [{names}]")
    if not any(c.get("name") == container for c in _all_containers(pod)):
        raise bad_request(f"container {container} is not valid for pod {name}")
    return container


def container_status(pod: JSON, container: str) -> JSON | None:
    """``podutil.GetContainerStatus`` over containerStatuses, then init, then ephemeral ones
    (``kubelet_pods.go: validateContainerLogStatus``)."""
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(key) or []:
            if cs.get("name") == container:
                return dict(cs)
    return None


@dataclass(frozen=True)
class Instance:
    """One run of a container, as the runtime knows it (its container ID)."""

    container_id: str
    started_at: str
    restart_count: int


def running_instance(pod: JSON | None, container: str) -> Instance | None:
    """The running instance of ``container``, or None: what ``kubelet.findContainer`` finds among
    the runtime's running containers (``GetPods(all=false)``)."""
    if pod is None:
        return None
    cs = container_status(pod, container)
    if cs is None:
        return None
    running = (cs.get("state") or {}).get("running")
    if running is None:
        return None
    return Instance(
        str(cs.get("containerID") or ""),
        str(running.get("startedAt") or ""),
        int(cs.get("restartCount") or 0),
    )


# ---------------------------------------------------------------------------------------------
# Container logs (pkg/kubelet/kuberuntime/logs/logs.go)
# ---------------------------------------------------------------------------------------------

# A CRI log line: "<RFC3339Nano> <stdout|stderr> <P|F>[:tags] <content>" (logs.go: parseCRILog).
_CRI_LINE = re.compile(rb"(\S+) (stdout|stderr) ([^ ]+) (.*)", re.DOTALL)


@dataclass
class LogOptions:
    """``PodLogOptions`` as ``kuberuntime/logs.NewLogOptions`` turns them into a read plan."""

    container: str = ""
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    since_seconds: int | None = None
    since_time: str | None = None
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since_ns: int = 0  # lines stamped before this are skipped


@dataclass
class LogMessage:
    stream: str  # "stdout" / "stderr"
    data: bytes
    ts_ns: int


def find_tail_line_start(f: IO[bytes], n: int | None) -> int:
    """``pkg/util/tail/tail.go: FindTailLineStartIndex``: the offset of the n-th last line; an
    incomplete last line (no newline yet) does not count as a line."""
    if n is None or n < 0:
        return 0
    size = f.seek(0, os.SEEK_END)
    block = 1024
    left = size
    buf = b""
    cnt = 0
    right = size
    while right > 0 and cnt <= n:
        left = max(0, right - block)
        f.seek(left)
        buf = f.read(right - left)
        cnt += buf.count(b"\n")
        right = left
    while cnt > n:
        idx = buf.index(b"\n") + 1
        buf = buf[idx:]
        left += idx
        cnt -= 1
    return left


def parse_log_line(line: bytes, cri: bool, approx_ns: int) -> LogMessage | None:
    """One line of a container log: the CRI format (``parseCRILog``; a partial ``P`` line loses
    its newline) or kubesim's raw capture (stdout and stderr interleaved, no timestamps)."""
    if not cri:
        return LogMessage("stdout", line, approx_ns)
    m = _CRI_LINE.fullmatch(line)
    if not m:
        return None
    ts = _parse_rfc3339_ns(m.group(1).decode(errors="replace"))
    if ts is None:
        return None
    content = m.group(4)
    partial = m.group(3).split(b":")[0] == b"P"
    if partial and content.endswith(b"\n"):
        content = content[:-1]
    return LogMessage(m.group(2).decode(), content, ts)


def is_cri_line(line: bytes) -> bool:
    m = _CRI_LINE.fullmatch(line)
    return m is not None and _parse_rfc3339_ns(m.group(1).decode(errors="replace")) is not None


class LogReader:
    """Reads one container log file as ``kuberuntime/logs.ReadLogs`` does: tail, since,
    timestamps, limitBytes, and follow (until the instance stops or the reader is stopped)."""

    def __init__(
        self,
        path: Path | None,
        opts: LogOptions,
        emit: Callable[[str, bytes], Awaitable[None]],
        alive: Callable[[], bool],
        gone: Callable[[], bool],
        poll: float,
        from_end: bool = False,
    ) -> None:
        self.path = path
        self.opts = opts
        self.emit = emit
        self.alive = alive
        self.gone = gone
        self.poll = poll
        self.from_end = from_end
        self.remain = opts.limit_bytes if opts.limit_bytes is not None else -1

    def _open(self) -> IO[bytes] | None:
        if self.path is None:
            return None
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - kept open while following
        except OSError:
            return None
        if self.from_end:
            f.seek(0, os.SEEK_END)
        else:
            f.seek(find_tail_line_start(f, self.opts.tail_lines))
        return f

    async def run(self) -> None:
        f = self._open()
        try:
            await self._run(f)
        finally:
            if f is not None:
                f.close()

    async def _wait(self, f: IO[bytes] | None, pos: int) -> bool:
        """``logs.go: waitLogs``: False at once when the container is not running; otherwise
        True once the file grew or after a second (``logForceCheckPeriod``)."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if not self.alive() or self.gone():
                return False
            await asyncio.sleep(self.poll)
            if f is not None and _size(f) > pos:
                return True
        return True

    async def _run(self, f: IO[bytes] | None) -> None:
        opts = self.opts
        limited = opts.tail_lines is not None and opts.tail_lines >= 0 and not opts.follow
        limited_num = opts.tail_lines or 0
        if f is None:
            # No output captured (a container without a process, or a file not written yet).
            while opts.follow and self.alive() and not self.gone():
                await asyncio.sleep(self.poll)
                f = self._open()
                if f is not None:
                    break
            if f is None:
                return
        # Raw captures carry no timestamps: lines already written are stamped with the file's
        # last modification, lines that appear while following with the time they were read.
        approx_ns = os.fstat(f.fileno()).st_mtime_ns
        cri: bool | None = None
        found = True
        stop = False
        is_new_line = True
        lines_since_yield = 0
        while True:
            if stop or (limited and limited_num <= 0) or self.gone():
                return
            pos = f.tell()
            line = f.readline()
            if not line.endswith(b"\n"):
                if opts.follow:
                    if not found:
                        return
                    f.seek(pos)
                    found = await self._wait(f, pos)
                    approx_ns = time.time_ns()
                    continue
                stop = True
                if not line:
                    continue
            if cri is None:
                cri = is_cri_line(line)
            msg = parse_log_line(line, cri, approx_ns)
            if msg is None:
                continue  # "Failed when parsing line in log file": skipped
            if not await self._write(msg, is_new_line):
                return
            if limited:
                limited_num -= 1
            is_new_line = not msg.data or msg.data.endswith(b"\n")
            lines_since_yield += 1
            if lines_since_yield >= 256:
                lines_since_yield = 0
                await asyncio.sleep(0)

    async def _write(self, msg: LogMessage, add_prefix: bool) -> bool:
        """``logs.go: logWriter.write``; False once ``limitBytes`` is reached."""
        if msg.ts_ns < self.opts.since_ns:
            return True
        line = msg.data
        if self.opts.timestamps and add_prefix:
            line = rfc3339nano(msg.ts_ns).encode() + b" " + line
        if self.remain >= 0 and len(line) > self.remain:
            line = line[: self.remain]
        await self.emit(msg.stream, line)
        if self.remain >= 0:
            self.remain -= len(line)
            if self.remain <= 0:
                return False
        return True


def _size(f: IO[bytes]) -> int:
    return os.fstat(f.fileno()).st_size


# ---------------------------------------------------------------------------------------------
# The WebSocket channel connection (wsstream/conn.go)
# ---------------------------------------------------------------------------------------------


class ChannelConn:
    """A ``wsstream.Conn`` after the handshake: channel-prefixed frames, binary or base64."""

    def __init__(self, ws: web.WebSocketResponse, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.base64 = protocol in BASE64_PROTOCOLS
        self.close_signal = protocol == V5
        self.lock = asyncio.Lock()
        self.gone = False

    async def write(self, channel: int, data: bytes) -> None:
        """``Conn.write``; a failed write marks the client gone (its output is dropped)."""
        if self.gone:
            return
        try:
            async with self.lock:
                if self.base64:
                    await self.ws.send_str(chr(ord("0") + channel) + base64.b64encode(data).decode())
                else:
                    await self.ws.send_bytes(bytes([channel]) + data)
        except (ConnectionError, RuntimeError):
            self.gone = True

    async def write_status(self, status: JSON) -> None:
        """The error channel: the ``Status`` as JSON for v4/v5 (``v4WriteStatusFunc``), only the
        error text for older protocols, and nothing on success (``v1WriteStatusFunc``)."""
        if self.protocol in JSON_STATUS_PROTOCOLS:
            await self.write(ERROR, json.dumps(status, separators=(",", ":")).encode())
        elif status.get("status") != "Success":
            await self.write(ERROR, str(status.get("message", "")).encode())

    async def read(
        self, on_data: Callable[[int, bytes], Awaitable[None]], on_close: Callable[[int], Awaitable[None]]
    ) -> None:
        """``Conn.handle``: demultiplex client frames until the connection closes."""
        while True:
            try:
                msg = await self.ws.receive()
            except (RuntimeError, ConnectionError):
                return
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            if msg.type == WSMsgType.TEXT:
                raw = str(msg.data).encode()
            elif msg.type == WSMsgType.BINARY:
                raw = bytes(msg.data)
            else:
                continue
            if not raw:
                continue
            if self.close_signal and raw[0] == STREAM_CLOSE:
                if len(raw) != 2 or raw[1] > RESIZE:
                    return  # "Single channel byte should follow stream close signal": the loop ends
                await on_close(raw[1])
                continue
            channel = raw[0] - ord("0") if self.base64 else raw[0]
            data = raw[1:]
            if self.base64:
                try:
                    data = base64.b64decode(data, validate=True)
                except ValueError:
                    continue  # "Unable to write frame": dropped
            if 0 <= channel <= RESIZE:
                await on_data(channel, data)

    async def finish(self, status: JSON | None) -> None:
        """``proxy/websocket.go: conns.finish``: report the status, send the close frame and wait
        (bounded) for the client to close the connection."""
        if status is not None:
            await self.write_status(status)
        with contextlib.suppress(Exception):
            await self.ws.close()


def _requested_protocols(request: web.Request) -> list[str]:
    out: list[str] = []
    for value in request.headers.getall("Sec-WebSocket-Protocol", []):
        out.extend(p.strip() for p in value.split(",") if p.strip())
    return out


def is_upgrade(request: web.Request) -> bool:
    """``httpstream.IsUpgradeRequest``: a Connection header with the ``upgrade`` token."""
    for value in request.headers.getall("Connection", []):
        if any(tok.strip().lower() == "upgrade" for tok in value.split(",")):
            return True
    return False


def is_websocket(request: web.Request) -> bool:
    """``wsstream.IsWebSocketRequest``."""
    return request.headers.get("Upgrade", "").strip().lower() == "websocket" and is_upgrade(request)


def authorize_connect(
    cluster: Cluster, request: web.Request, user: auth.UserInfo, ns: str, name: str, sub: str
) -> None:
    """The checks of a pod connect subresource (exec, attach, portforward) before its handler:
    the methods it is served on (``subresources.go: upgradeableMethods``), and, for a GET (the
    WebSocket handshake), ``create`` on it as well (AuthorizePodWebsocketUpgradeCreatePermission,
    beta and on since 1.35), on top of the ``get`` the request was authorized for."""
    if request.method not in ("GET", "POST"):
        raise method_not_allowed("the server does not allow this method on the requested resource")
    if request.method == "GET":
        cluster.front.authorize(
            auth.Attributes(
                user=user,
                verb="create",
                namespace=ns,
                api_version="v1",
                resource="pods",
                subresource=sub,
                name=name,
            ),
            request,
        )


# ---------------------------------------------------------------------------------------------
# The handlers
# ---------------------------------------------------------------------------------------------


@dataclass
class StreamOptions:
    """``PodExecOptions`` / ``PodAttachOptions`` (no defaulting: pkg/apis/core/v1/defaults.go
    has none for them)."""

    container: str
    command: list[str]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


class PodIO:
    """The handlers of ``pods/exec``, ``pods/attach`` and ``pods/log``."""

    def __init__(self, cluster: Cluster, poll_interval: float = 0.05) -> None:
        self.cluster = cluster
        self.poll = poll_interval
        # Streaming sessions in progress, by (subresource, namespace, pod, container): lets tests
        # (and scripts) know when an exec/attach/follow is connected.
        self.sessions: dict[tuple[str, str, str, str], int] = {}

    @contextlib.contextmanager
    def _session(self, sub: str, ns: str, name: str, container: str) -> Iterator[None]:
        key = (sub, ns, name, container)
        self.sessions[key] = self.sessions.get(key, 0) + 1
        try:
            yield
        finally:
            self.sessions[key] -= 1
            if not self.sessions[key]:
                del self.sessions[key]

    # -- helpers ---------------------------------------------------------------------------
    @property
    def kubelet(self) -> Any:
        return getattr(self.cluster, "kubelet", None)

    def _pod(self, ns: str, name: str) -> JSON | None:
        return self.cluster.api.store.peek("/pods", ns, name)

    def _alive(self, ns: str, name: str, container: str, inst: Instance | None) -> bool:
        """Whether the instance ``inst`` of the container still runs."""
        return inst is not None and running_instance(self._pod(ns, name), container) == inst

    # -- pods/log ---------------------------------------------------------------------------
    async def log(
        self, request: web.Request, rt: ResourceType, ns: str, name: str, user: auth.UserInfo
    ) -> web.StreamResponse:
        """``pkg/registry/core/pod/rest/log.go: LogREST.Get`` then the kubelet's
        ``server.go: getContainerLogs`` / ``kubelet_pods.go: GetKubeletContainerLogs``."""
        if request.method != "GET":
            raise method_not_allowed("the server does not allow this method on the requested resource")
        opts = _log_options(request.query)
        _validate_log_options(name, opts)
        pod = self.cluster.api.get(rt, ns, name)
        container = validate_container(pod, opts.container)
        if not (pod.get("spec") or {}).get("nodeName"):
            # LogLocation returns no location for an unscheduled pod and
            # handlers/responsewriters/writers.go: StreamObject answers 204 No Content.
            return web.Response(status=204)
        cid, previous = self._log_instance(pod, container, opts.previous)
        kubelet = self.kubelet
        path: Path | None = None
        if kubelet is not None:
            p = kubelet.log_path(ns, name, container, previous=previous)
            path = Path(p) if p is not None else None
        if opts.since_seconds is not None:
            opts.since_ns = time.time_ns() - opts.since_seconds * 1_000_000_000
        if opts.since_time is not None:
            since = _parse_rfc3339_ns(opts.since_time)
            if since is not None and since > opts.since_ns:
                opts.since_ns = since

        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)

        def gone() -> bool:
            return request.transport is None or request.transport.is_closing()

        def alive() -> bool:
            pod_now = self._pod(ns, name)
            if pod_now is None:
                return False
            cs = container_status(pod_now, container)
            return bool(
                cs and (cs.get("state") or {}).get("running") and str(cs.get("containerID") or "") == cid
            )

        async def emit(stream: str, data: bytes) -> None:
            await resp.write(data)

        reader = LogReader(path, opts, emit, alive, gone, self.poll)
        try:
            with self._session("log", ns, name, container):
                await reader.run()
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        return resp

    def _log_instance(self, pod: JSON, container: str, previous: bool) -> tuple[str, bool]:
        """``kubelet_pods.go: validateContainerLogStatus``: the container ID whose log is read
        (and whether it is the previous instance), or the kubelet's error as a 400
        (``genericrest.GenericHttpResponseChecker`` turns the kubelet's 400 into BadRequest)."""
        pod_name = pod["metadata"]["name"]
        cs = container_status(pod, container)
        if cs is None:
            raise bad_request(f'container "{container}" in pod "{pod_name}" is not available')
        state = cs.get("state") or {}
        last = (cs.get("lastState") or {}).get("terminated")
        waiting, running, terminated = state.get("waiting"), state.get("running"), state.get("terminated")
        if previous:
            if last is None or not last.get("containerID"):
                raise bad_request(
                    f'previous terminated container "{container}" in pod "{pod_name}" not found'
                )
            return str(last["containerID"]), True
        if running is not None:
            return str(cs.get("containerID") or ""), False
        if terminated is not None:
            if not terminated.get("containerID"):
                if last is not None and last.get("containerID"):
                    return str(last["containerID"]), True
                raise bad_request(f'container "{container}" in pod "{pod_name}" is terminated')
            return str(terminated["containerID"]), False
        if last is not None:
            if not last.get("containerID"):
                raise bad_request(f'container "{container}" in pod "{pod_name}" is terminated')
            return str(last["containerID"]), True
        if waiting is not None:
            reason = waiting.get("reason", "")
            if reason == "ErrImagePull":
                detail = "image can't be pulled"
            elif reason == "ImagePullBackOff":
                detail = "trying and failing to pull image"
            else:
                detail = str(reason)
            raise bad_request(f'container "{container}" in pod "{pod_name}" is waiting to start: {detail}')
        raise bad_request(f'container "{container}" in pod "{pod_name}" is waiting to start - no logs yet')

    # -- pods/exec and pods/attach ------------------------------------------------------------
    async def exec(
        self, request: web.Request, rt: ResourceType, ns: str, name: str, user: auth.UserInfo
    ) -> web.StreamResponse:
        return await self._connect(request, rt, ns, name, user, "exec")

    async def attach(
        self, request: web.Request, rt: ResourceType, ns: str, name: str, user: auth.UserInfo
    ) -> web.StreamResponse:
        return await self._connect(request, rt, ns, name, user, "attach")

    async def _connect(
        self, request: web.Request, rt: ResourceType, ns: str, name: str, user: auth.UserInfo, sub: str
    ) -> web.StreamResponse:
        """``handlers/rest.go: ConnectResource`` → ``ExecREST``/``AttachREST.Connect`` →
        ``UpgradeAwareHandler`` (or, for v5 WebSockets, the ``StreamTranslatorHandler``)."""
        authorize_connect(self.cluster, request, user, ns, name, sub)
        q = request.query
        opts = StreamOptions(
            container=q.get("container", ""),
            command=list(q.getall("command", [])) if sub == "exec" else [],
            stdin=_go_bool(q, "stdin"),
            stdout=_go_bool(q, "stdout"),
            stderr=_go_bool(q, "stderr"),
            tty=_go_bool(q, "tty"),
        )
        pod = self.cluster.api.get(rt, ns, name)  # 404 pods "x" not found
        container = validate_container(pod, opts.container)
        if not (pod.get("spec") or {}).get("nodeName"):
            raise bad_request(f"pod {name} does not have a host assigned")
        if opts.tty:
            raise bad_request(TTY_REFUSAL.format(sub=sub))
        if sub == "attach" and opts.stdin:
            raise bad_request(STDIN_ATTACH_REFUSAL)
        websocket = is_websocket(request)
        if not is_upgrade(request):
            # genericrest.UpgradeAwareProxyHandler with UpgradeRequired
            raise bad_request("Upgrade request required")
        requested = _requested_protocols(request) if websocket else []
        translated = websocket and V5 in requested  # wsstream.IsWebSocketRequestWithStreamCloseProtocol
        kubelet_error = self._kubelet_check(pod, container, opts, sub)
        if not translated:
            if kubelet_error is not None:
                # The kubelet answers before any upgrade, in plain text, and the API server's
                # UpgradeAwareHandler echoes that response to the client.
                code, text = kubelet_error
                return web.Response(status=code, text=text, content_type="text/plain")
            if not websocket:
                raise bad_request(SPDY_REFUSAL.format(sub=sub))
            protocol = next((p for p in (requested or [""]) if p in KUBELET_PROTOCOLS), None)
            if protocol is None:
                # wsstream handshake: "requested protocol(s) are not supported", answered by
                # golang.org/x/net/websocket as a bare 403.
                return web.Response(status=403)
        else:
            protocol = V5
        ws = web.WebSocketResponse(protocols=(protocol,) if protocol else (), compress=False)
        await ws.prepare(request)
        conn = ChannelConn(ws, protocol)
        # "Send an empty message to the lowest writable channel to notify the client the
        # connection is established" (remotecommand/websocket.go, proxy/websocket.go).
        await conn.write(STDOUT if opts.stdout else STDERR if opts.stderr else ERROR, b"")
        if kubelet_error is not None:
            # The translator's SPDY client got the kubelet's refusal: spdy/roundtripper.go
            # "unable to upgrade connection: <body>", reported as an InternalError.
            await conn.finish(_internal_status(f"unable to upgrade connection: {kubelet_error[1]}"))
            return ws
        try:
            with self._session(sub, ns, name, container):
                if sub == "exec":
                    status = await self._run_exec(conn, ns, name, container, opts)
                else:
                    status = await self._run_attach(conn, ns, name, container, opts)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await ws.close()
            raise
        await conn.finish(None if conn.gone else status)
        return ws

    def _kubelet_check(
        self, pod: JSON, container: str, opts: StreamOptions, sub: str
    ) -> tuple[int, str] | None:
        """The kubelet's own refusals, before it streams: ``remotecommand/httpstream.go:
        NewOptions`` (400) and ``kubelet_pods.go: GetExec`` / ``GetAttach`` (500)."""
        stderr = opts.stderr and not opts.tty
        if not opts.stdin and not opts.stdout and not stderr:
            return 400, "you must specify at least 1 of stdin, stdout, stderr"
        if running_instance(pod, container) is None or self.kubelet is None:
            if sub == "exec":
                return 500, f'container not found ("{container}")'
            meta = pod["metadata"]
            return 500, f"container {container} not found in pod {meta['name']}_{meta['namespace']}"
        return None

    async def _run_exec(
        self, conn: ChannelConn, ns: str, name: str, container: str, opts: StreamOptions
    ) -> JSON | None:
        """``remotecommand/exec.go: ServeExec`` (and, for v5, ``StreamTranslatorHandler``)."""
        translated = conn.protocol == V5
        inst = running_instance(self._pod(ns, name), container)
        try:
            if not opts.command:
                raise ValueError("no command specified")
            started = self.kubelet.exec_process(ns, name, container, list(opts.command), opts.stdin)
            proc: asyncio.subprocess.Process = await started if asyncio.iscoroutine(started) else started
        except Exception as e:  # the runtime could not start the command
            err = f"error executing command in container: {e}"
            if translated:
                # The kubelet's InternalError reaches the translator's SPDY client as a plain
                # error (errorDecoderV4), which it wraps in another InternalError.
                return _internal_status(f"Internal error occurred: {err}")
            return _internal_status(err)

        async def pump(stream: asyncio.StreamReader | None, channel: int, wanted: bool) -> None:
            if stream is None:
                return
            while True:
                data = await stream.read(32 * 1024)
                if not data:
                    return
                if wanted:
                    await conn.write(channel, data)

        async def close_stdin() -> None:
            if proc.stdin is not None and not proc.stdin.is_closing():
                with contextlib.suppress(Exception):
                    proc.stdin.close()

        async def on_data(channel: int, data: bytes) -> None:
            if channel == STDIN and opts.stdin and proc.stdin is not None and not proc.stdin.is_closing():
                try:
                    proc.stdin.write(data)
                    await proc.stdin.drain()
                except (ConnectionError, RuntimeError):
                    pass
            # channel 4 (resize) only matters with a tty; anything else is ignored

        async def on_close(channel: int) -> None:
            if channel == STDIN:
                await close_stdin()

        async def watch() -> None:
            # The exec process lives in the container: it dies with that container instance.
            while proc.returncode is None:
                await asyncio.sleep(max(self.poll, 0.1))
                if not self._alive(ns, name, container, inst):
                    _kill(proc)
                    return

        async def pump_all() -> None:
            await asyncio.gather(
                pump(proc.stdout, STDOUT, opts.stdout), pump(proc.stderr, STDERR, opts.stderr)
            )

        pumps = asyncio.create_task(pump_all())
        reader = asyncio.create_task(conn.read(on_data, on_close))
        watcher = asyncio.create_task(watch())
        exited = asyncio.create_task(proc.wait())
        try:
            await asyncio.wait({exited, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                # The client went away (wsstream closes every channel): the command is ended.
                conn.gone = True
                await close_stdin()
                _kill(proc)
                await exited
                return None
            rc = exited.result()
            done, _ = await asyncio.wait({pumps, reader}, return_when=asyncio.FIRST_COMPLETED)
            if pumps not in done:
                conn.gone = True
                return None
        finally:
            watcher.cancel()
            if proc.returncode is None:
                _kill(proc)
            pumps.cancel()
            with contextlib.suppress(BaseException):
                await pumps
            if not reader.done():
                # conns.finish closes the input channels before writing the status; the reader
                # itself is ended by the close handshake in finish().
                await close_stdin()
            self._detach_reader(reader)
        if rc == 0:
            return _success_status()
        code = rc if rc > 0 else 128 - rc  # killed by a signal: 128 + signal, as runtimes report
        if translated:
            return _exit_status(
                code, f"command terminated with non-zero exit code: command terminated with exit code {code}"
            )
        return _exit_status(
            code,
            f"command terminated with non-zero exit code: error executing command "
            f"[{' '.join(opts.command)}], exit code {code}",
        )

    async def _run_attach(
        self, conn: ChannelConn, ns: str, name: str, container: str, opts: StreamOptions
    ) -> JSON | None:
        """``remotecommand/attach.go: ServeAttach``: the container's output from now on, until
        the container instance stops (kubesim follows its captured output)."""
        inst = running_instance(self._pod(ns, name), container)
        p = self.kubelet.log_path(ns, name, container, previous=False)
        path = Path(p) if p is not None else None

        async def emit(stream: str, data: bytes) -> None:
            if stream == "stderr" and opts.stderr:
                await conn.write(STDERR, data)
            elif opts.stdout:
                await conn.write(STDOUT, data)
            elif opts.stderr:
                await conn.write(STDERR, data)

        async def ignore(channel: int, data: bytes = b"") -> None:
            return None

        reader = asyncio.create_task(conn.read(ignore, ignore))

        def gone() -> bool:
            return conn.gone or reader.done()

        follower = asyncio.create_task(
            LogReader(
                path,
                LogOptions(follow=True),
                emit,
                lambda: self._alive(ns, name, container, inst),
                gone,
                self.poll,
                from_end=True,
            ).run()
        )
        try:
            await asyncio.wait({follower, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done() and not follower.done():
                conn.gone = True
                return None
        finally:
            follower.cancel()
            with contextlib.suppress(BaseException):
                await follower
            self._detach_reader(reader)
        return _success_status()

    @staticmethod
    def _detach_reader(reader: asyncio.Task[None]) -> None:
        """The reader ends when finish() closes the connection; never leave its result unread."""
        reader.add_done_callback(lambda t: t.cancelled() or t.exception())


def _kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the command and, when it leads its own process group, the whole group."""
    if proc.returncode is not None:
        return
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass


def _log_options(query: Any) -> LogOptions:
    """Decode ``PodLogOptions`` from the query (the alpha ``stream`` field is ignored: the
    ``PodLogsQuerySplitStreams`` gate is off in 1.37)."""
    since_time = query.get("sinceTime")
    if since_time is not None and since_time not in ("", "null") and _parse_rfc3339_ns(since_time) is None:
        raise bad_request(
            f'parsing time "{since_time}" as "2006-01-02T15:04:05Z07:00": cannot parse "{since_time}" as "2006"'
        )
    return LogOptions(
        container=query.get("container", ""),
        follow=_go_bool(query, "follow"),
        previous=_go_bool(query, "previous"),
        timestamps=_go_bool(query, "timestamps"),
        since_seconds=_go_int64(query, "sinceSeconds"),
        since_time=since_time if since_time not in (None, "", "null") else None,
        tail_lines=_go_int64(query, "tailLines"),
        limit_bytes=_go_int64(query, "limitBytes"),
    )


def _validate_log_options(name: str, opts: LogOptions) -> None:
    """``pkg/api/pod/validation: ValidatePodLogOptions``, answered as ``errors.NewInvalid(
    Kind("PodLogOptions"), name, errs)`` (log.go: LogREST.Get)."""
    errs: list[tuple[str, str, str]] = []  # (field, reason, body)
    if opts.tail_lines is not None and opts.tail_lines < 0:
        errs.append(
            (
                "tailLines",
                "FieldValueInvalid",
                f"Invalid value: {opts.tail_lines}: must be greater than or equal to 0",
            )
        )
    if opts.limit_bytes is not None and opts.limit_bytes < 1:
        errs.append(
            ("limitBytes", "FieldValueInvalid", f"Invalid value: {opts.limit_bytes}: must be greater than 0")
        )
    if opts.since_seconds is not None and opts.since_time is not None:
        errs.append(
            (
                "",
                "FieldValueForbidden",
                "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
            )
        )
    elif opts.since_seconds is not None and opts.since_seconds < 1:
        errs.append(
            (
                "sinceSeconds",
                "FieldValueInvalid",
                f"Invalid value: {opts.since_seconds}: must be greater than 0",
            )
        )
    if not errs:
        return
    msgs = [f"{f}: {body}" for f, _, body in errs]
    agg = msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"
    causes = [
        {"reason": r, "message": body, "field": f} if f else {"reason": r, "message": body}
        for f, r, body in errs
    ]
    raise StatusError(
        422,
        "Invalid",
        f'PodLogOptions "{name}" is invalid: {agg}',
        {"name": name, "kind": "PodLogOptions", "causes": causes},
    )


__all__ = ["LogOptions", "LogReader", "PodIO", "rfc3339nano", "validate_container"]
