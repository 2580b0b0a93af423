"""Where volume data lives on the host.

Every PersistentVolume kubesim's CSI driver provisions is a directory under
``<data-dir>/volumes/<volumeHandle>``; a ``hostPath`` PV is its path. The kubelet bind-mounts
that directory into a pod's mount namespace, and tests read and write it directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CSI_DRIVER = "csi.kubesim.io"
CSI_DRIVER_NO_SNAPSHOTS = "basic.csi.kubesim.io"


def volumes_root(data_dir: Path) -> Path:
    return Path(data_dir) / "volumes"


def volume_dir(data_dir: Path, pv: dict[str, Any]) -> Path | None:
    """The host directory holding a PV's data, or None for a source kubesim cannot hold."""
    spec = pv.get("spec") or {}
    csi = spec.get("csi")
    if (
        isinstance(csi, dict)
        and csi.get("driver") in (CSI_DRIVER, CSI_DRIVER_NO_SNAPSHOTS)
        and csi.get("volumeHandle")
    ):
        return volumes_root(data_dir) / str(csi["volumeHandle"])
    host = spec.get("hostPath")
    if isinstance(host, dict) and host.get("path"):
        return Path(host["path"])
    local = spec.get("local")
    if isinstance(local, dict) and local.get("path"):
        return Path(local["path"])
    return None
