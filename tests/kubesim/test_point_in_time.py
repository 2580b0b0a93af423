"""Point-in-time copies of volumes that running process pods write to: while a VolumeSnapshot or a
clone is copied, the processes of every container that mounts the volume read-write are stopped
(SIGSTOP, waiting until they are) and continued afterwards (SIGCONT), as a filesystem freeze
would (``kubelet.frozen``, ``runtime.stop_processes``).

The writer below keeps two files, ``a`` and ``b``, each holding a sequence number written with
one ``pwrite`` at offset 0: it writes ``n`` to ``a``, then ``n`` to ``b``, then ``n + 1`` to
``a``... At every instant ``a - b`` is 0 or 1, so any copy of the volume as it was at one instant
has ``a - b`` in {0, 1}. A copy that reads the two files at different times while the writer runs
sees ``b > a`` (``a`` read first) or ``a - b >= 2`` (``b`` read first) as soon as the writer
completed one or two rounds in between; the writer does hundreds of thousands of rounds a second
and the copy reads a megabyte of other files, so an unfrozen copy is torn almost every time (the
control test shows it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from kubesim.cluster import ClusterConfig
from kubesim.testing import KubeSim, wait_for

GROUP = "snapshot.storage.k8s.io"
WRITER = (
    "import os\n"
    "os.makedirs('/data/fill', exist_ok=True)\n"
    "for i in range(16):\n"
    "    with open('/data/fill/f%02d' % i, 'wb') as f:\n"
    "        f.write(os.urandom(65536))\n"
    "fa = os.open('/data/a', os.O_RDWR | os.O_CREAT, 0o644)\n"
    "fb = os.open('/data/b', os.O_RDWR | os.O_CREAT, 0o644)\n"
    "n = 1\n"
    "os.pwrite(fa, b'%020d\\n' % n, 0)\n"
    "os.pwrite(fb, b'%020d\\n' % n, 0)\n"
    "open('/data/started', 'w').close()\n"
    "while True:\n"
    "    n += 1\n"
    "    rec = b'%020d\\n' % n\n"
    "    os.pwrite(fa, rec, 0)\n"
    "    os.pwrite(fb, rec, 0)\n"
)


@pytest.fixture(scope="module")
def kubesim() -> Iterator[KubeSim]:
    config = ClusterConfig(snapshot_ready_delay=0.05, volume_retry_start=0.05, volume_retry_max=0.4)
    with KubeSim(config=config) as sim:
        yield sim


# -- helpers -------------------------------------------------------------------------------------


def api(k: KubeSim, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
    code, _, out = k.request(method, path, body=body)
    assert code in ok, (code, out)
    return out


def get(k: KubeSim, path: str) -> dict[str, Any] | None:
    code, _, body = k.request("GET", path)
    return body if code == 200 else None


def claim_body(name: str, source: str | None = None, kind: str = "PersistentVolumeClaim") -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "4Mi"}}}
    if source is not None:
        spec["dataSource"] = {"kind": kind, "name": source}
        if kind == "VolumeSnapshot":
            spec["dataSource"]["apiGroup"] = GROUP
    return {"metadata": {"name": name}, "spec": spec}


def bound_pv(k: KubeSim, ns: str, name: str) -> str:
    def pv() -> str | None:
        c = get(k, f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}")
        if c is None or (c.get("status") or {}).get("phase") != "Bound":
            return None
        return str(c["spec"]["volumeName"])

    return wait_for(pv, what=f"claim {name} bound")


def start_writer(k: KubeSim, detach: bool = False) -> tuple[str, Path]:
    """A namespace with the claim ``data`` and the writer pod on it; returns (ns, volume dir).
    With ``detach`` the writer is a child of a shell that left its process group (setsid)."""
    ns = f"pit-{uuid.uuid4().hex[:6]}"
    api(k, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    wait_for(lambda: get(k, f"/api/v1/namespaces/{ns}/serviceaccounts/default"), what="default SA")
    api(k, "POST", f"/api/v1/namespaces/{ns}/persistentvolumeclaims", claim_body("data"))
    volume = k.volume_path(bound_pv(k, ns, "data"))
    pod = {
        "metadata": {"name": "writer", "annotations": {"kubesim.io/process": "true"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": "python:3",
                    "command": (
                        ["sh", "-c", 'setsid python3 -c "$WRITER" & wait']
                        if detach
                        else ["python3", "-c", WRITER]
                    ),
                    "env": [{"name": "WRITER", "value": WRITER}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    }
    api(k, "POST", f"/api/v1/namespaces/{ns}/pods", pod)
    wait_for(lambda: (volume / "started").exists(), what="the writer running")
    return ns, volume


def seq(root: Path, name: str) -> int:
    text = (root / name).read_text()
    return int(text) if text.strip() else 0


def torn(root: Path) -> str | None:
    """Why the copy at ``root`` cannot be the volume at one instant (None if it can)."""
    try:
        a, b = seq(root, "a"), seq(root, "b")
    except ValueError as e:
        return f"unreadable record: {e}"
    if a - b not in (0, 1):
        return f"a={a} b={b}"
    if len(list((root / "fill").iterdir())) != 16:
        return "filler files missing"
    return None


def writer_pid(k: KubeSim, ns: str) -> int:
    def pid(c: Any) -> int:
        proc = c.kubelet._runtime(ns, "writer").containers["main"].proc
        return int(proc.pid) if proc is not None and proc.returncode is None else 0

    return wait_for(lambda: k.call(pid), what="the writer's pid")


def state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[-1].split()[0].decode()


def direct_copies(k: KubeSim, volume: Path, n: int) -> list[Path]:
    """``n`` copies of ``volume`` through the CSI backend's copy (which snapshots and clones use)."""
    out_dir = k.cluster.data_dir / f"copies-{uuid.uuid4().hex[:6]}"  # type: ignore[union-attr]

    async def run(c: Any) -> list[Path]:
        for i in range(n):
            await c.csi.copy_directory(volume, out_dir / f"c{i}")
        return [out_dir / f"c{i}" for i in range(n)]

    return cast("list[Path]", k.call(run))


def freeze_probe(k: KubeSim, volume: Path, pid: int) -> tuple[int, int, int, str]:
    """Freeze ``volume``: (processes stopped, a, a 50 ms later, the writer's state), then thaw."""

    async def run(c: Any) -> tuple[int, int, int, str]:
        async with c.kubelet.frozen(volume) as stopped:
            a1 = seq(volume, "a")
            await asyncio.sleep(0.05)
            return stopped, a1, seq(volume, "a"), state(pid)

    return cast("tuple[int, int, int, str]", k.call(run))


# -- tests ---------------------------------------------------------------------------------------


def test_snapshots_and_clones_of_a_volume_being_written_are_point_in_time(kubesim: KubeSim) -> None:
    ns, volume = start_writer(kubesim)
    snaps = [f"s{i}" for i in range(6)]
    clones = [f"clone{i}" for i in range(3)]
    for i, s in enumerate(snaps):
        body = {"metadata": {"name": s}, "spec": {"source": {"persistentVolumeClaimName": "data"}}}
        api(kubesim, "POST", f"/apis/{GROUP}/v1/namespaces/{ns}/volumesnapshots", body)
        if i % 2 == 0:
            api(
                kubesim,
                "POST",
                f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
                claim_body(clones[i // 2], "data"),
            )
    copies: list[tuple[str, Path]] = []
    for s in snaps:

        def handle(s: str = s) -> str | None:
            vs = get(kubesim, f"/apis/{GROUP}/v1/namespaces/{ns}/volumesnapshots/{s}") or {}
            if not (vs.get("status") or {}).get("readyToUse"):
                return None
            content = get(
                kubesim,
                f"/apis/{GROUP}/v1/volumesnapshotcontents/{vs['status']['boundVolumeSnapshotContentName']}",
            )
            return str(((content or {}).get("status") or {}).get("snapshotHandle") or "") or None

        copies.append((s, kubesim.cluster.data_dir / "snapshots" / wait_for(handle, what=f"snapshot {s}")))  # type: ignore[union-attr]
    for c in clones:
        copies.append((c, kubesim.volume_path(bound_pv(kubesim, ns, c))))
    problems = {name: why for name, root in copies if (why := torn(root)) is not None}
    assert problems == {}
    # Thawed: the writer goes on.
    before = seq(volume, "a")
    wait_for(lambda: seq(volume, "a") > before + 1000, what="the writer writing after the copies")
    assert state(writer_pid(kubesim, ns)) not in "Tt"


def test_without_the_freeze_copies_are_torn(kubesim: KubeSim) -> None:
    """The control: the same copies with the freeze on are all consistent and stop the writer;
    with ``freeze_writers_during_copy`` off, copies of the running writer's volume are torn."""
    ns, volume = start_writer(kubesim)
    pid = writer_pid(kubesim, ns)
    stopped, a1, a2, st = freeze_probe(kubesim, volume, pid)
    assert stopped >= 1 and a1 == a2 and st == "T"
    frozen = direct_copies(kubesim, volume, 15)
    assert {str(root): why for root in frozen if (why := torn(root)) is not None} == {}
    kubesim.call(lambda c: setattr(c.config, "freeze_writers_during_copy", False))
    try:
        stopped, a1, a2, st = freeze_probe(kubesim, volume, pid)
        assert stopped == 0 and a2 > a1 and st != "T"
        loose = direct_copies(kubesim, volume, 15)
    finally:
        kubesim.call(lambda c: setattr(c.config, "freeze_writers_during_copy", True))
    torn_copies = [why for root in loose if (why := torn(root)) is not None]
    assert torn_copies, "no copy was torn without the freeze: the test would not catch a missing freeze"


def test_the_freeze_reaches_processes_that_left_the_process_group(kubesim: KubeSim) -> None:
    """Like PostgreSQL's backends, the writer here runs in a session of its own (setsid): the
    freeze finds it by the container's mount namespace, not by the process group."""
    ns, volume = start_writer(kubesim, detach=True)
    shell = writer_pid(kubesim, ns)
    stopped, a1, a2, st = freeze_probe(kubesim, volume, shell)
    assert stopped >= 2 and a1 == a2 and st == "T"
    copies = direct_copies(kubesim, volume, 5)
    assert {str(root): why for root in copies if (why := torn(root)) is not None} == {}


def test_the_freeze_covers_the_real_copy_not_the_modelled_time(kubesim: KubeSim) -> None:
    """With ``copy_throughput_bytes_per_s`` the copy lasts size/throughput; the writer is stopped
    only while the bytes are really copied, not for the rest of that time."""
    ns, volume = start_writer(kubesim)
    pid = writer_pid(kubesim, ns)
    dst = kubesim.cluster.data_dir / f"slow-{uuid.uuid4().hex[:6]}"  # type: ignore[union-attr]

    async def run(c: Any) -> tuple[float, list[str]]:
        c.config.copy_throughput_bytes_per_s = 500_000  # ~1 MiB of data: about two seconds
        try:
            started = time.monotonic()
            task = asyncio.ensure_future(c.csi.copy_directory(volume, dst))
            states = []
            while not task.done():
                await asyncio.sleep(0.05)
                states.append(state(pid))
            await task
            return time.monotonic() - started, states
        finally:
            c.config.copy_throughput_bytes_per_s = None

    elapsed, states = cast("tuple[float, list[str]]", kubesim.call(run))
    assert elapsed >= 2.0
    # Stopped while the bytes are copied (however long that takes on a loaded machine), then
    # running for the rest of the modelled time: one frozen stretch at the start, never again.
    stopped = [s in "Tt" for s in states]
    first_running = stopped.index(False) if False in stopped else len(stopped)
    assert not any(stopped[first_running:]), states
    assert first_running < len(stopped), states  # it ran during the modelled time
    assert torn(dst) is None
