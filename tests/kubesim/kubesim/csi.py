"""kubesim's CSI driver: the storage backend behind ``csi.kubesim.io`` and ``basic.csi.kubesim.io``.

It plays the part a CSI plugin's controller service plays for the sidecars (``CreateVolume``,
``DeleteVolume``, ``CreateSnapshot``, ``DeleteSnapshot``, ``ListSnapshots`` of the CSI spec,
container-storage-interface/spec ``spec.md``), the way ``kubernetes-csi/csi-driver-host-path``
does (``pkg/hostpath/controllerserver.go``): a volume is a directory
``<data-dir>/volumes/<volumeHandle>`` (``storage.volume_dir``), a snapshot is a copy of it under
``<data-dir>/snapshots/<snapshotHandle>``, and restoring or cloning copies the data into the new
volume. Copies keep modes, ownership, times and symlinks, run off the event loop, and last at
least ``size / ClusterConfig.copy_throughput_bytes_per_s`` when that knob is set; the copy goes to
a temporary directory that is renamed into place only when complete, so a volume never shows
half its data.

``csi.kubesim.io`` reports the CREATE_DELETE_SNAPSHOT and CLONE_VOLUME capabilities;
``basic.csi.kubesim.io`` reports neither. Both report the ``kubernetes.io/hostname`` topology key,
which the external-provisioner turns into PV node affinity for volumes provisioned on a selected
node (WaitForFirstConsumer).

Faults (``cluster.faults``): kind ``provision`` (attributes ``namespace``, ``name`` of the claim
and ``storageclass``) is consulted by ``CreateVolume``, kind ``snapshot`` (``namespace``, ``name``
of the VolumeSnapshot) by ``CreateSnapshot``. A fault with a ``delay`` waits that long first; a
fault with a ``message`` (or with neither a delay nor a message) then fails the call with a gRPC
error carrying the message, so a delay-only fault makes the operation slow, not failed.

For tests and scripts: ``volume_path``, ``read_file``, ``write_file``, ``tree``, ``digest`` and
``pv_for_claim`` (Python), and the admin actions ``volumes/read``, ``volumes/write`` and
``volumes/tree``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import os
import re
import secrets
import shutil
import stat
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .storage import CSI_DRIVER, CSI_DRIVER_NO_SNAPSHOTS, volume_dir, volumes_root

if TYPE_CHECKING:
    from .cluster import Cluster

TOPOLOGY_KEY = "kubernetes.io/hostname"

# gRPC status codes by number (google.golang.org/grpc/codes), for faults that name one.
GRPC_CODES = {
    1: "Canceled",
    2: "Unknown",
    3: "InvalidArgument",
    4: "DeadlineExceeded",
    5: "NotFound",
    6: "AlreadyExists",
    7: "PermissionDenied",
    8: "ResourceExhausted",
    9: "FailedPrecondition",
    10: "Aborted",
    11: "OutOfRange",
    12: "Unimplemented",
    13: "Internal",
    14: "Unavailable",
    15: "DataLoss",
    16: "Unauthenticated",
}


class CSIError(Exception):
    """A failed CSI call, printed as a gRPC status error prints (``status.Error(...).Error()``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"rpc error: code = {self.code} desc = {self.message}"


@dataclass(frozen=True)
class DriverInfo:
    name: str
    snapshots: bool
    clones: bool
    topology_key: str = TOPOLOGY_KEY


DRIVERS: dict[str, DriverInfo] = {
    CSI_DRIVER: DriverInfo(CSI_DRIVER, snapshots=True, clones=True),
    CSI_DRIVER_NO_SNAPSHOTS: DriverInfo(CSI_DRIVER_NO_SNAPSHOTS, snapshots=False, clones=False),
}


@dataclass
class VolumeRecord:
    handle: str
    driver: str
    capacity_bytes: int
    node: str | None = None  # the hostname the volume is accessible from, if topology was requested
    source: tuple[str, str] | None = None  # ("snapshot", id) or ("volume", id)

    @property
    def accessible_topology(self) -> list[dict[str, str]]:
        return [{TOPOLOGY_KEY: self.node}] if self.node else []


@dataclass
class SnapshotRecord:
    handle: str
    driver: str
    source_volume: str
    size_bytes: int
    creation_time_ns: int
    ready_at: float  # loop/monotonic time at which the snapshot is ready to use


# -- quantities (k8s.io/apimachinery/pkg/api/resource) ----------------------------------------
_SUFFIXES: dict[str, Fraction] = {
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)


def quantity_bytes(q: Any) -> int:
    """``Quantity.Value()``: the quantity as an integer, rounded up (``resource.Quantity.Value``)."""
    if isinstance(q, bool):
        raise ValueError(f"quantities must match the regular expression: {q!r}")
    if isinstance(q, int):
        return q
    if isinstance(q, float):
        return math.ceil(q)
    m = _QUANTITY.match(str(q).strip())
    if not m:
        raise ValueError(f"quantities must match the regular expression: {q!r}")
    number, suffix = Fraction(m.group(1)), m.group(2) or ""
    if suffix[:1] in ("e", "E"):
        value = number * Fraction(10) ** int(suffix[1:])
    else:
        value = number * _SUFFIXES[suffix]
    return math.ceil(value)


def format_binary_si(n: int) -> str:
    """``resource.NewQuantity(n, resource.BinarySI).String()``: the largest exact Ki/Mi/Gi/... or bytes."""
    if -1024 < n < 1024:
        return str(n)
    suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
    i = 0
    while n % 1024 == 0 and i < len(suffixes) - 1 and n != 0:
        n //= 1024
        i += 1
    return f"{n}{suffixes[i]}"


# -- copying -----------------------------------------------------------------------------------
def _copy_tree(src: Path, dst: Path) -> int:
    """Copy ``src`` to the new directory ``dst`` keeping modes, ownership, times and symlinks.

    Returns the number of bytes of regular files copied. Runs in a worker thread.
    """
    shutil.copytree(src, dst, symlinks=True, copy_function=shutil.copy2)
    total = 0
    can_chown = hasattr(os, "lchown")
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        for name in [".", *dirs, *files]:
            s = Path(root) / name if name != "." else Path(root)
            d = dst / rel / name if name != "." else dst / rel
            st = os.lstat(s)
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
            if can_chown:
                try:
                    os.lchown(d, st.st_uid, st.st_gid)
                except (PermissionError, OSError):
                    pass
            if not stat.S_ISLNK(st.st_mode):
                # chown may clear set-id bits; copystat ran before it.
                try:
                    os.chmod(d, stat.S_IMODE(st.st_mode))
                    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
                except OSError:
                    pass
    return total


def _go_quote(s: str) -> str:
    """Go's ``%q`` for the strings these messages carry (``strconv.Quote``)."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


go_quote = _go_quote


class CSIBackend:
    """The controller service of kubesim's two CSI drivers, shared by the sidecars."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.volumes: dict[str, VolumeRecord] = {}
        self.snapshots: dict[str, SnapshotRecord] = {}
        self._inflight: set[str] = set()

    # -- paths -----------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return Path(self.cluster.data_dir)

    @staticmethod
    def _check_id(ident: str) -> str:
        if not ident or "/" in ident or ident in (".", ".."):
            raise CSIError("InvalidArgument", f"invalid volume or snapshot id {ident!r}")
        return ident

    def _volume_dir(self, handle: str) -> Path:
        return volumes_root(self.data_dir) / self._check_id(handle)

    def _snapshot_dir(self, handle: str) -> Path:
        return self.data_dir / "snapshots" / self._check_id(handle)

    @staticmethod
    def driver(name: str) -> DriverInfo:
        info = DRIVERS.get(name)
        if info is None:
            raise CSIError("InvalidArgument", f"unknown CSI driver {name}")
        return info

    # -- faults ----------------------------------------------------------------------------
    async def _fault(self, kind: str, attrs: dict[str, str]) -> None:
        f = self.cluster.faults.check(kind, **attrs)
        if f is None:
            return
        if f.delay > 0:
            await asyncio.sleep(f.delay)
        if f.message or f.delay <= 0:
            code = GRPC_CODES.get(f.code, "Internal")
            raise CSIError(code, f.message or f"injected {kind} fault")

    # -- copies ----------------------------------------------------------------------------
    async def copy_directory(self, src: Path, dst: Path) -> int:
        """Copy ``src`` to ``dst`` (which must not exist) off the loop, paced by the throughput knob."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        tmp = dst.with_name(f".{dst.name}.partial-{secrets.token_hex(4)}")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            try:
                # Point in time: the volume's writers are stopped for the real copy only (kubelet.frozen);
                # the throughput model's extra time below runs after the thaw.
                async with self.cluster.kubelet.frozen(src):
                    size = await loop.run_in_executor(None, _copy_tree, src, tmp)
            except (OSError, shutil.Error) as e:
                raise CSIError("Internal", f"failed to copy {src.name}: {e}") from e
            throughput = self.cluster.config.copy_throughput_bytes_per_s
            if throughput:
                remaining = size / float(throughput) - (loop.time() - start)
                if remaining > 0:
                    await asyncio.sleep(remaining)
            try:
                os.rename(tmp, dst)  # fails if dst exists and is not empty
            except OSError as e:
                raise CSIError("Internal", f"failed to publish {dst.name}: {e}") from e
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return size

    # -- volumes (CSI CreateVolume / DeleteVolume) -------------------------------------------
    async def create_volume(
        self,
        driver: str,
        name: str,
        capacity_bytes: int,
        *,
        source: tuple[str, str] | None = None,
        node: str | None = None,
        fault_attrs: dict[str, str] | None = None,
    ) -> VolumeRecord:
        info = self.driver(driver)
        existing = self.volumes.get(name)
        if existing is not None:
            # CreateVolume is idempotent for the same name (csi-driver-host-path: CreateVolume).
            if existing.driver != driver or existing.capacity_bytes < capacity_bytes:
                raise CSIError(
                    "AlreadyExists",
                    f"Volume with the same name: {name} but with different size already exist",
                )
            return existing
        if name in self._inflight:
            raise CSIError("Aborted", f"an operation with the given Volume ID {name} already exists")
        self._inflight.add(name)
        try:
            await self._fault("provision", fault_attrs or {})
            dst = self._volume_dir(name)
            if source is None:
                dst.mkdir(parents=True, exist_ok=True)
                os.chmod(dst, 0o755)
            elif source[0] == "snapshot":
                if not info.snapshots:
                    raise CSIError("InvalidArgument", "volume content source snapshot is not supported")
                snap = self.snapshots.get(source[1])
                if snap is None or snap.driver != driver:
                    raise CSIError("NotFound", f"cannot find snapshot {source[1]}")
                if snap.size_bytes > capacity_bytes:
                    raise CSIError(
                        "OutOfRange",
                        f"snapshot {source[1]} size {snap.size_bytes} is greater than requested volume size {capacity_bytes}",
                    )
                if not dst.exists():
                    await self.copy_directory(self._snapshot_dir(snap.handle), dst)
            elif source[0] == "volume":
                if not info.clones:
                    raise CSIError("InvalidArgument", "volume content source volume is not supported")
                src = self.volumes.get(source[1])
                if src is None or src.driver != driver:
                    raise CSIError("NotFound", f"source volume {source[1]} not found")
                if src.capacity_bytes > capacity_bytes:
                    raise CSIError(
                        "OutOfRange",
                        f"source volume {source[1]} size {src.capacity_bytes} is greater than requested volume size {capacity_bytes}",
                    )
                if not dst.exists():
                    await self.copy_directory(self._volume_dir(src.handle), dst)
            else:
                raise CSIError("InvalidArgument", f"unsupported volume content source {source[0]}")
            record = VolumeRecord(name, driver, capacity_bytes, node, source)
            self.volumes[name] = record
            return record
        finally:
            self._inflight.discard(name)

    async def delete_volume(self, driver: str, handle: str) -> None:
        """DeleteVolume: idempotent; an unknown volume is already deleted (CSI spec)."""
        self.driver(driver)
        rec = self.volumes.get(handle)
        if rec is not None and rec.driver != driver:
            raise CSIError("InvalidArgument", f"volume {handle} belongs to driver {rec.driver}")
        self.volumes.pop(handle, None)
        path = self._volume_dir(handle)
        if path.exists():
            await asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, path, True)

    # -- snapshots (CSI CreateSnapshot / DeleteSnapshot / ListSnapshots) ---------------------
    async def create_snapshot(
        self, driver: str, name: str, source_volume: str, *, fault_attrs: dict[str, str] | None = None
    ) -> SnapshotRecord:
        info = self.driver(driver)
        if not info.snapshots:
            raise CSIError("Unimplemented", "CreateSnapshot is not supported")
        existing = self.snapshots.get(name)
        if existing is not None:
            if existing.source_volume != source_volume:
                raise CSIError(
                    "AlreadyExists",
                    f"snapshot with the same name: {name} but with different SourceVolumeId already exist",
                )
            return existing
        vol = self.volumes.get(source_volume)
        if vol is None or vol.driver != driver:
            raise CSIError("NotFound", f"volume id {source_volume} does not exist in the volumes list")
        if name in self._inflight:
            raise CSIError("Aborted", f"an operation with the given Snapshot ID {name} already exists")
        self._inflight.add(name)
        try:
            await self._fault("snapshot", fault_attrs or {})
            created = time.time_ns()
            dst = self._snapshot_dir(name)
            if not dst.exists():
                await self.copy_directory(self._volume_dir(vol.handle), dst)
            ready_at = asyncio.get_running_loop().time() + float(self.cluster.config.snapshot_ready_delay)
            # The restore size of a snapshot is the capacity of its source volume (csi-driver-host-path).
            record = SnapshotRecord(name, driver, source_volume, vol.capacity_bytes, created, ready_at)
            self.snapshots[name] = record
            return record
        finally:
            self._inflight.discard(name)

    def snapshot_ready(self, record: SnapshotRecord) -> bool:
        return asyncio.get_running_loop().time() >= record.ready_at

    def get_snapshot(self, handle: str) -> SnapshotRecord | None:
        return self.snapshots.get(handle)

    async def delete_snapshot(self, driver: str, handle: str) -> None:
        self.driver(driver)
        self.snapshots.pop(handle, None)
        path = self._snapshot_dir(handle)
        if path.exists():
            await asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, path, True)

    # -- direct access for tests and scripts -------------------------------------------------
    def pv_for_claim(self, namespace: str, name: str) -> str | None:
        claim = self.cluster.api.store.peek("/persistentvolumeclaims", namespace, name)
        if claim is None:
            return None
        return (claim.get("spec") or {}).get("volumeName") or None

    def volume_path(self, pv_name: str) -> Path:
        pv = self.cluster.api.store.peek("/persistentvolumes", "", pv_name)
        if pv is None:
            raise KeyError(f'persistentvolumes "{pv_name}" not found')
        path = volume_dir(self.data_dir, pv)
        if path is None:
            raise KeyError(f"persistentvolume {pv_name} has no volume source kubesim can hold")
        return path

    @staticmethod
    def _inside(root: Path, relpath: str) -> Path:
        target = (root / relpath.lstrip("/")).resolve()
        if target != root.resolve() and root.resolve() not in target.parents:
            raise ValueError(f"{relpath!r} is outside the volume")
        return target

    def read_file(self, pv_name: str, relpath: str) -> bytes:
        return self._inside(self.volume_path(pv_name), relpath).read_bytes()

    def write_file(self, pv_name: str, relpath: str, data: bytes | str, mode: int | None = None) -> None:
        path = self._inside(self.volume_path(pv_name), relpath)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        if mode is not None:
            os.chmod(path, mode)

    def tree(self, pv_name: str) -> dict[str, str]:
        return tree_digests(self.volume_path(pv_name))

    def digest(self, pv_name: str) -> str:
        return tree_digest(self.tree(pv_name))

    def admin_actions(self) -> dict[str, Any]:
        """``POST /kubesim/volumes/...`` for scripts: read, write and list a volume's files."""

        def pv_of(a: dict[str, Any]) -> str:
            if a.get("pv"):
                return str(a["pv"])
            pv = self.pv_for_claim(str(a.get("namespace") or "default"), str(a.get("claim") or ""))
            if pv is None:
                raise KeyError("no bound claim; give pv, or namespace and claim")
            return pv

        def read(a: dict[str, Any]) -> dict[str, Any]:
            data = self.read_file(pv_of(a), str(a["path"]))
            out: dict[str, Any] = {"data": base64.b64encode(data).decode()}
            try:
                out["text"] = data.decode()
            except UnicodeDecodeError:
                pass
            return out

        def write(a: dict[str, Any]) -> dict[str, Any]:
            if "base64" in a:
                data = base64.b64decode(str(a["base64"]))
            else:
                data = str(a.get("data", "")).encode()
            mode = a.get("mode")
            self.write_file(pv_of(a), str(a["path"]), data, int(str(mode), 8) if mode is not None else None)
            return {"written": len(data)}

        def tree(a: dict[str, Any]) -> dict[str, Any]:
            files = self.tree(pv_of(a))
            return {"files": files, "digest": tree_digest(files)}

        return {"volumes/read": read, "volumes/write": write, "volumes/tree": tree}


def bootstrap_objects() -> list[dict[str, Any]]:
    """What a cluster with kubesim's CSI drivers installed has: StorageClasses, CSIDrivers, a VolumeSnapshotClass."""
    fstype = {"csi.storage.k8s.io/fstype": "ext4"}

    def storage_class(name: str, provisioner: str, mode: str, default: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if default:
            meta["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
        return {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": meta,
            "provisioner": provisioner,
            "parameters": dict(fstype),
            "reclaimPolicy": "Delete",
            "volumeBindingMode": mode,
            "allowVolumeExpansion": True,
        }

    def csi_driver(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "CSIDriver",
            "metadata": {"name": name},
            "spec": {
                "attachRequired": False,
                "podInfoOnMount": False,
                "fsGroupPolicy": "File",
                "volumeLifecycleModes": ["Persistent"],
                "storageCapacity": False,
                "requiresRepublish": False,
                "seLinuxMount": False,
            },
        }

    return [
        csi_driver(CSI_DRIVER),
        csi_driver(CSI_DRIVER_NO_SNAPSHOTS),
        storage_class("standard", CSI_DRIVER, "Immediate", default=True),
        storage_class("standard-wffc", CSI_DRIVER, "WaitForFirstConsumer"),
        storage_class("basic", CSI_DRIVER_NO_SNAPSHOTS, "Immediate"),
        {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshotClass",
            "metadata": {
                "name": "csi-kubesim-snapclass",
                "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"},
            },
            "driver": CSI_DRIVER,
            "deletionPolicy": "Delete",
        },
    ]


def tree_digests(root: Path) -> dict[str, str]:
    """Every entry under ``root``: a regular file's SHA-256, ``symlink:<target>`` or ``dir``."""
    out: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "symlink:" + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                out[rel] = h.hexdigest()
    return out


def tree_digest(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]}\n".encode())
    return h.hexdigest()


__all__ = [
    "DRIVERS",
    "CSIBackend",
    "CSIError",
    "DriverInfo",
    "SnapshotRecord",
    "VolumeRecord",
    "bootstrap_objects",
    "format_binary_si",
    "go_quote",
    "quantity_bytes",
    "tree_digest",
    "tree_digests",
]
