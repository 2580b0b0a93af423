"""kubesim's container runtime: host processes in private mount namespaces, and the kubelet helpers
that prepare what they see (environment, volumes, ownership, probes).

A container process is started through a small helper (``HELPER``, run by the kubesim
interpreter with ``-I -S``) that, in the child, does what runc does for a container, minus
the image: ``unshare(CLONE_NEWNS | CLONE_NEWUTS)``, makes ``/`` a private mount tree, sets the
hostname to the pod's, bind-mounts every volume at its ``mountPath`` (read-only remount where
asked), creates the working directory, sets the supplementary groups, gid and uid, asks for
SIGKILL when kubesim dies (``PR_SET_PDEATHSIG``), then ``execvpe``s the command. A setup
failure is reported on a close-on-exec pipe, so kubesim can tell "could not start" (containerd's
``StartError``) from "started and exited".

The kubelet also bind-mounts the pod's hosts file over ``/etc/hosts`` (``dns.py``). When a
container's process ends, what is left in its mount namespace is killed (``kill_namespace``); for
point-in-time volume copies the writers of a volume are stopped and continued
(``stop_processes``/``continue_processes``, the stand-in for a filesystem freeze).

Upstream references: ``pkg/kubelet/kuberuntime/kuberuntime_container.go`` (``startContainer``,
``killContainer``), ``pkg/kubelet/kubelet_pods.go`` (``makeEnvironmentVariables``,
``makeMounts``), ``third_party/forked/golang/expansion/expand.go`` (``$(VAR)`` expansion),
``pkg/volume/volume_linux.go`` (``SetVolumeOwnership``), ``pkg/kubelet/prober/prober.go``
(``runProbe``) and ``pkg/probe/{exec,http,tcp}``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import pwd
import signal
import stat
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

HELPER = r"""
import ctypes, json, os, sys, warnings  # nothing may be imported after setuid
spec = json.loads(sys.argv[1])
errfd = int(sys.argv[2])
if errfd >= 0:
    os.set_inheritable(errfd, False)

def fail(msg, code):
    data = ("kubesim: " + msg).encode()
    try:
        os.write(errfd if errfd >= 0 else 2, data if errfd >= 0 else data + b"\n")
    except OSError:
        pass
    os._exit(code)

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
CLONE_NEWNS, CLONE_NEWUTS = 0x00020000, 0x04000000

def mount(src, dst, flags):
    if libc.mount(src, dst.encode(), None, flags, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))

if libc.unshare(CLONE_NEWNS | CLONE_NEWUTS) != 0:
    e = ctypes.get_errno()
    fail("cannot create a mount namespace for the container (unshare(CLONE_NEWNS): %s); "
         "kubesim must run as root to run container processes" % os.strerror(e), 128)
try:
    mount(b"none", "/", MS_REC | MS_PRIVATE)
except OSError as e:
    fail("cannot make / a private mount tree: %s" % e.strerror, 128)
name = spec["hostname"].encode()
libc.sethostname(name, len(name))
for m in spec["mounts"]:
    src, dst, ro = m["source"], m["target"], m["read_only"]
    try:
        if os.path.isdir(src):
            os.makedirs(dst, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(dst) or "/", exist_ok=True)
            if not os.path.exists(dst):
                open(dst, "a").close()
        mount(src.encode(), dst, MS_BIND | MS_REC)
        if ro:
            mount(None, dst, MS_BIND | MS_REMOUNT | MS_RDONLY)
    except OSError as e:
        fail("error mounting %r to rootfs at %r: %s" % (src, dst, e.strerror), 128)
cwd = spec["cwd"] or "/"
try:
    os.makedirs(cwd, exist_ok=True)
except OSError:
    pass
if spec["read_only_root"]:
    # runc (libcontainer/rootfs_linux.go: finalizeRootfs, readonlyPath): the root is remounted
    # read-only after the mounts and the working directory; a bind remount changes this mount
    # namespace's copy only, never the host's.
    try:
        mount(None, "/", MS_BIND | MS_REMOUNT | MS_RDONLY)
    except OSError as e:
        fail("cannot make the root filesystem read-only: %s" % e.strerror, 128)
try:
    if spec["gid"] is not None:
        os.setgroups(spec["groups"])
        os.setgid(spec["gid"])
    if spec["uid"] is not None:
        os.setuid(spec["uid"])
except OSError as e:
    fail("cannot set user %s:%s: %s" % (spec["uid"], spec["gid"], e.strerror), 128)
libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL (after setuid, which clears it)
if os.getppid() != spec["ppid"]:
    os._exit(137)
try:
    os.chdir(cwd)
except OSError as e:
    fail("chdir to cwd (%r) set in config.json failed: %s" % (cwd, e.strerror), 128)
argv = spec["argv"]
try:
    os.execvpe(argv[0], argv, spec["env"])
except FileNotFoundError:
    fail('exec: "%s": executable file not found in $PATH' % argv[0], 127)
except PermissionError:
    fail('exec: "%s": permission denied' % argv[0], 126)
except OSError as e:
    fail('exec: "%s": %s' % (argv[0], e.strerror), 126)
"""


@dataclass
class Mount:
    source: str
    target: str
    read_only: bool = False


@dataclass
class ProcessSpec:
    """What a container process is: its command, environment, user, working directory and mounts."""

    argv: list[str]
    env: dict[str, str]
    cwd: str = "/"
    uid: int | None = None
    gid: int | None = None
    groups: list[int] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    hostname: str = "kubesim"
    read_only_root: bool = False  # securityContext.readOnlyRootFilesystem

    def payload(self, argv: list[str] | None = None) -> str:
        d = asdict(self)
        if argv is not None:
            d["argv"] = argv
        d["ppid"] = os.getpid()
        # Parents before children, so that a mount inside another volume lands in it.
        d["mounts"] = sorted(d["mounts"], key=lambda m: m["target"].rstrip("/").count("/"))
        return json.dumps(d)


Spawner = Callable[..., Awaitable[tuple[asyncio.subprocess.Process, "str | None"]]]


class StartError(Exception):
    """The process could not be started (the runtime's StartError)."""


_SUPPORT: str | bool | None = False  # False: not checked yet; None: supported; str: why not


async def mount_namespace_problem() -> str | None:
    """Why kubesim cannot run container processes here (None when it can). Checked once."""
    global _SUPPORT
    if _SUPPORT is not False:
        return _SUPPORT  # type: ignore[return-value]
    if sys.platform != "linux":
        _SUPPORT = f"kubesim runs container processes on Linux only (this is {sys.platform})"
        return _SUPPORT
    spec = ProcessSpec(argv=["/bin/true"], env={"PATH": "/usr/bin:/bin"})
    try:
        proc, err = await spawn(spec, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await proc.wait()
    except OSError as e:
        err = f"cannot start the container helper: {e}"
    _SUPPORT = err
    return err


async def spawn(
    spec: ProcessSpec,
    *,
    argv: list[str] | None = None,
    stdin: int | None = asyncio.subprocess.DEVNULL,
    stdout: int | None = None,
    stderr: int | None = None,
    report_errors: bool = True,
    started: Callable[[asyncio.subprocess.Process], None] | None = None,
) -> tuple[asyncio.subprocess.Process, str | None]:
    """Start a process as ``spec`` says. With ``report_errors`` the setup error (if any) is
    returned; otherwise it goes to the process's stderr and the process exits 126/127/128.
    ``started`` is called with the process as soon as it exists (before its setup is done)."""
    if not report_errors:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            "-c",
            HELPER,
            spec.payload(argv),
            "-1",
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        if started is not None:
            started(proc)
        return proc, None
    r, w = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            "-c",
            HELPER,
            spec.payload(argv),
            str(w),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            pass_fds=(w,),
            start_new_session=True,
        )
    except BaseException:
        os.close(r)
        os.close(w)
        raise
    os.close(w)
    if started is not None:
        started(proc)
    try:
        data = await _read_until_eof(r)
    finally:
        os.close(r)
    if data:
        await proc.wait()
        return proc, data.decode(errors="replace").removeprefix("kubesim: ")
    return proc, None


async def _read_until_eof(fd: int) -> bytes:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[bytes] = loop.create_future()
    chunks: list[bytes] = []

    def on_read() -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            chunks.append(data)
            return
        loop.remove_reader(fd)
        if not fut.done():
            fut.set_result(b"".join(chunks))

    os.set_blocking(fd, False)
    loop.add_reader(fd, on_read)
    try:
        return await fut
    finally:
        loop.remove_reader(fd)


def signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    """Signal the process group of a container process (its children go too)."""
    if proc.returncode is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


async def stop_process(proc: asyncio.subprocess.Process, grace: float) -> int:
    """kuberuntime killContainer: SIGTERM, wait up to the grace period, then SIGKILL."""
    if proc.returncode is None:
        signal_group(proc, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=max(0.0, grace))
        except TimeoutError:
            signal_group(proc, signal.SIGKILL)
    rc = await proc.wait()
    # Reap what is left of the group (e.g. children that ignored SIGTERM).
    signal_group(proc, signal.SIGKILL)
    return rc


def exit_code(returncode: int) -> int:
    """A container's exit code: a process killed by signal N exits 128+N, as runc reports it."""
    return 128 - returncode if returncode < 0 else returncode


# -- $(VAR) expansion (third_party/forked/golang/expansion/expand.go) -----------------------------
def expand(text: str, mapping: dict[str, str]) -> str:
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")  # escaped reference
                i += 2
                continue
            if nxt == "(":
                j = text.find(")", i + 2)
                if j == -1:
                    out.append("$(")
                    i += 2
                    continue
                name = text[i + 2 : j]
                out.append(mapping[name] if name in mapping else text[i : j + 1])
                i = j + 1
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


# -- users -----------------------------------------------------------------------------------------
def user_home(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_dir or "/"
    except KeyError:
        return "/"


def primary_gid(uid: int) -> int:
    """The gid a container gets when only runAsUser is set: the user's group in the "image"
    (here the host's /etc/passwd), else 0, as containerd does."""
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return 0


# -- volume ownership (pkg/volume/volume_linux.go: SetVolumeOwnership) ----------------------------
def set_volume_ownership(path: Path, fs_group: int, read_only: bool = False, policy: str = "Always") -> None:
    """chgrp fsGroup, add group rw (r for read-only) and, on directories, setgid and group x."""
    mask = 0o440 if read_only else 0o660
    try:
        root = os.lstat(path)
    except FileNotFoundError:
        return
    if policy == "OnRootMismatch" and root.st_gid == fs_group:
        want = mask | stat.S_ISGID | 0o110
        if stat.S_IMODE(root.st_mode) & want == want:
            return

    def change(p: str) -> None:
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            return
        with contextlib.suppress(OSError):
            os.lchown(p, -1, fs_group)
        m = mask
        if stat.S_ISDIR(st.st_mode):
            m |= stat.S_ISGID | 0o110
        with contextlib.suppress(OSError):
            os.chmod(p, stat.S_IMODE(st.st_mode) | m)

    change(str(path))
    if path.is_dir():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                change(os.path.join(dirpath, name))


# -- files of configMap / secret / downwardAPI / projected volumes ---------------------------------
def write_volume_files(target: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """AtomicWriter, simplified: the payload's files, and nothing else, under ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    os.chmod(target, 0o755)
    wanted = set()
    for rel, (data, mode) in files.items():
        p = target / rel
        wanted.add(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_bytes(data)
        os.chmod(tmp, mode)
        tmp.replace(p)
    for dirpath, _dirs, filenames in os.walk(target):
        for name in filenames:
            p = Path(dirpath) / name
            if p not in wanted:
                with contextlib.suppress(OSError):
                    p.unlink()


def decode_secret(data: dict[str, str] | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (data or {}).items()}


# -- probes (pkg/probe) -------------------------------------------------------------------------------
async def tcp_probe(host: str, port: int, probe_timeout: float) -> tuple[bool, str]:
    """pkg/probe/tcp: DoTCPProbe."""
    try:
        _r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=probe_timeout)
    except TimeoutError:
        return False, f"dial tcp {host}:{port}: i/o timeout"
    except OSError as e:
        what = "connection refused" if isinstance(e, ConnectionRefusedError) else (e.strerror or str(e))
        return False, f"dial tcp {host}:{port}: connect: {what}"
    w.close()
    with contextlib.suppress(OSError):
        await w.wait_closed()
    return True, ""


async def http_probe(
    scheme: str, host: str, port: int, path: str, headers: list[dict[str, str]], probe_timeout: float
) -> tuple[bool, str]:
    """pkg/probe/http: DoHTTPProbe (2xx and 3xx succeed)."""
    import ssl

    url = f"{scheme.lower()}://{host}:{port}{path or '/'}"
    ctx = None
    if scheme.upper() == "HTTPS":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    started = time.monotonic()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx), timeout=probe_timeout)
    except TimeoutError:
        return False, f'Get "{url}": dial tcp {host}:{port}: i/o timeout'
    except OSError as e:
        what = "connection refused" if isinstance(e, ConnectionRefusedError) else (e.strerror or str(e))
        return False, f'Get "{url}": dial tcp {host}:{port}: connect: {what}'
    try:
        hdrs = {"Host": f"{host}:{port}", "User-Agent": "kube-probe/1.37", "Accept": "*/*"}
        for h in headers:
            hdrs[h.get("name", "")] = h.get("value", "")
        hdrs["Connection"] = "close"
        req = f"GET {path or '/'} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        w.write(req.encode())
        left = max(0.01, probe_timeout - (time.monotonic() - started))
        line = await asyncio.wait_for(r.readline(), timeout=left)
    except (TimeoutError, OSError):
        return (
            False,
            f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)',
        )
    finally:
        w.close()
    parts = line.decode(errors="replace").split()
    try:
        code = int(parts[1])
    except (IndexError, ValueError):
        return False, f'Get "{url}": malformed HTTP response'
    if 200 <= code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {code}"


async def exec_probe(
    spec: ProcessSpec, argv: list[str], probe_timeout: float, spawner: Spawner | None = None
) -> tuple[bool, str]:
    """pkg/probe/exec: run the command in the container (its mount namespace, env and user)."""
    proc, _ = await (spawner or spawn)(
        spec,
        argv=argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        report_errors=False,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=probe_timeout)
    except TimeoutError:
        signal_group(proc, signal.SIGKILL)
        await proc.wait()
        return False, f"command {' '.join(json.dumps(a) for a in argv)} timed out"
    text = out.decode(errors="replace")
    return proc.returncode == 0, text


# -- freezing writers for point-in-time copies -------------------------------------------------
# A filesystem freeze (``fsfreeze``/``FIFREEZE``, what CSI drivers and snapshotting storage use
# to cut a crash-consistent snapshot of a mounted volume) blocks every writer until the thaw.
# kubesim's volumes are plain directories, so it stops the writers themselves instead: every
# process of a container that mounts the volume read-write (all processes of its mount
# namespace, so children that called setsid(), like PostgreSQL's backends, are included) gets
# SIGSTOP, and the copy starts only once every thread of every such process is stopped (a
# write() in flight completes first, as a freeze waits for it); SIGCONT resumes them.


def mounts_writable(spec: ProcessSpec, volume: str) -> bool:
    """Whether ``spec`` mounts ``volume`` (a real path), a directory inside it or one holding it,
    read-write."""
    for m in spec.mounts:
        if m.read_only:
            continue
        src = os.path.realpath(m.source)
        if src == volume or src.startswith(volume + "/") or volume.startswith(src.rstrip("/") + "/"):
            return True
    return False


def _mount_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _all_pids() -> list[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def _task_states(pid: int) -> list[str]:
    """The scheduler state letter of every thread of ``pid`` (empty when it is gone)."""
    states = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        states.append(data.rsplit(b")", 1)[-1].split()[0].decode())
    return states


def stop_processes(roots: list[int], timeout: float = 30.0) -> list[int]:
    """SIGSTOP ``roots`` (container processes) and every process in their mount namespaces, until
    no new one shows up, then wait until all their threads are stopped. Returns the pids stopped
    (for ``continue_processes``). Runs in a worker thread; on an error the stopped are resumed."""
    me = os.getpid()
    own = _mount_ns(me)
    stopped: list[int] = []
    seen: set[int] = set()
    try:
        while True:
            want: set[int] = set()
            namespaces: set[str] = set()
            for pid in roots:
                ns = _mount_ns(pid)
                if ns is None:
                    continue
                want.add(pid)  # also a helper still setting up in kubesim's own namespace
                if ns != own:
                    namespaces.add(ns)
            if namespaces:
                want.update(pid for pid in _all_pids() if _mount_ns(pid) in namespaces)
            want.discard(me)
            new = sorted(want - seen)
            if not new:
                break
            for pid in new:
                seen.add(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
        deadline = time.monotonic() + timeout
        for pid in stopped:
            # T: stopped; t: traced; Z/X: exited. Anything else is still running a syscall.
            while any(s not in "TtZX" for s in _task_states(pid)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"process {pid} did not stop within {timeout:g}s")
                time.sleep(0.0005)
    except BaseException:
        continue_processes(stopped)
        raise
    return stopped


@dataclass
class Namespace:
    """A container's mount namespace, pinned by an open descriptor (so its identity cannot be
    reused by a new namespace while kubesim refers to it)."""

    ident: str
    fd: int

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def pin_mount_namespace(pid: int) -> Namespace | None:
    """The mount namespace of a started container process (None if it is kubesim's own or gone)."""
    try:
        fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    ident = _mount_ns(pid)
    if ident is None or ident == _mount_ns(os.getpid()):
        os.close(fd)
        return None
    return Namespace(ident, fd)


def kill_namespace(ns: Namespace, rounds: int = 50) -> int:
    """SIGKILL every process left in a container's mount namespace once its main process is gone,
    as the kernel kills a PID namespace's processes when its init (the container's process)
    exits (runc: ``signalAllProcesses``); returns how many were killed. Runs in a worker thread."""
    me = os.getpid()
    killed = 0
    for _ in range(rounds):
        pids = [pid for pid in _all_pids() if pid != me and _mount_ns(pid) == ns.ident]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.01)
    return killed


def continue_processes(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGCONT)


__all__ = [
    "HELPER",
    "Mount",
    "Namespace",
    "ProcessSpec",
    "Spawner",
    "StartError",
    "continue_processes",
    "decode_secret",
    "exec_probe",
    "exit_code",
    "expand",
    "http_probe",
    "kill_namespace",
    "mount_namespace_problem",
    "mounts_writable",
    "pin_mount_namespace",
    "primary_gid",
    "set_volume_ownership",
    "spawn",
    "stop_process",
    "stop_processes",
    "tcp_probe",
    "user_home",
    "write_volume_files",
]
