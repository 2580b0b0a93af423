"""CSI snapshots on kubesim: the snapshot-controller, the csi-snapshotter sidecar, and restores.

Driven through kubectl and raw API requests; the data is compared on the host through the
``cluster.csi`` helpers. Each test works in a namespace of its own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kubesim.cluster import ClusterConfig
from kubesim.testing import KubeSim, wait_for

T = TypeVar("T")
GROUP = "snapshot.storage.k8s.io"
VS_FINALIZERS = [
    "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection",
    "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection",
]
PVC_SOURCE_FINALIZER = "snapshot.storage.kubernetes.io/pvc-as-source-protection"


@pytest.fixture(scope="module")
def kubesim() -> Iterator[KubeSim]:
    config = ClusterConfig(
        pv_resync_period=1.0,
        volume_retry_start=0.05,
        volume_retry_max=0.4,
        snapshot_ready_delay=0.2,
        snapshot_resync_period=1.0,
    )
    with KubeSim(config=config) as sim:
        yield sim


# -- helpers -------------------------------------------------------------------------------------


def get(k: KubeSim, path: str) -> dict[str, Any] | None:
    code, _, body = k.request("GET", path)
    if code == 404:
        return None
    assert code == 200, body
    return body  # type: ignore[no-any-return]


def claim(k: KubeSim, ns: str, name: str) -> dict[str, Any] | None:
    return get(k, f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}")


def snapshot(k: KubeSim, ns: str, name: str) -> dict[str, Any] | None:
    return get(k, f"/apis/{GROUP}/v1/namespaces/{ns}/volumesnapshots/{name}")


def content(k: KubeSim, name: str) -> dict[str, Any] | None:
    return get(k, f"/apis/{GROUP}/v1/volumesnapshotcontents/{name}")


def apply(k: KubeSim, ns: str, manifest: str) -> None:
    k.kubectl("apply", "-n", ns, "-f", "-", input=manifest)


def new_ns(k: KubeSim) -> str:
    ns = f"snap-{uuid.uuid4().hex[:8]}"
    k.kubectl("create", "namespace", ns)
    return ns


def claim_yaml(name: str, size: str = "1Mi", sc: str | None = None, source: str | None = None) -> str:
    lines = [
        "apiVersion: v1",
        "kind: PersistentVolumeClaim",
        f"metadata: {{name: {name}}}",
        "spec:",
        "  accessModes: [ReadWriteOnce]",
        f"  resources: {{requests: {{storage: {size}}}}}",
    ]
    if sc is not None:
        lines.append(f"  storageClassName: {sc}")
    if source is not None:
        lines.append(f"  dataSource: {{kind: VolumeSnapshot, apiGroup: {GROUP}, name: {source}}}")
    return "\n".join(lines) + "\n"


def snapshot_yaml(
    name: str, pvc: str | None = None, cls: str | None = None, content_name: str | None = None
) -> str:
    source = f"persistentVolumeClaimName: {pvc}" if pvc else f"volumeSnapshotContentName: {content_name}"
    return f"""
apiVersion: {GROUP}/v1
kind: VolumeSnapshot
metadata: {{name: {name}}}
spec:
  source: {{{source}}}
{f"  volumeSnapshotClassName: {cls}" if cls else ""}
"""


def wait_bound(k: KubeSim, ns: str, name: str, timeout: float = 10.0) -> dict[str, Any]:
    return wait_for(
        lambda: c if (c := claim(k, ns, name)) and (c.get("status") or {}).get("phase") == "Bound" else None,
        timeout,
        f"claim {ns}/{name} Bound",
    )


def wait_ready(k: KubeSim, ns: str, name: str, timeout: float = 10.0) -> dict[str, Any]:
    return wait_for(
        lambda: (
            s if (s := snapshot(k, ns, name)) and (s.get("status") or {}).get("readyToUse") is True else None
        ),
        timeout,
        f"snapshot {ns}/{name} ready",
    )


def wait_snapshot_error(k: KubeSim, ns: str, name: str, contains: str) -> dict[str, Any]:
    return wait_for(
        lambda: (
            s
            if (s := snapshot(k, ns, name))
            and contains in (((s.get("status") or {}).get("error") or {}).get("message") or "")
            else None
        ),
        what=f"error {contains!r} on snapshot {name}",
    )


def events(k: KubeSim, ns: str, name: str) -> list[dict[str, Any]]:
    body = get(k, f"/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name%3D{name}")
    assert body is not None
    return list(body["items"])


def wait_event(k: KubeSim, ns: str, name: str, reason: str, contains: str = "") -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for e in events(k, ns, name):
            if e["reason"] == reason and contains in e["message"]:
                return e
        return None

    return wait_for(find, what=f"event {reason} {contains!r} on {name}")


def make_source(k: KubeSim, ns: str, name: str = "data", size: str = "2Mi", sc: str | None = None) -> str:
    apply(k, ns, claim_yaml(name, size, sc))
    pv = wait_bound(k, ns, name)["spec"]["volumeName"]
    root = k.volume_path(pv)
    (root / "pgdata").mkdir()
    (root / "pgdata" / "table").write_bytes(os.urandom(100_000))
    (root / "pgdata" / "PG_VERSION").write_text("17\n")
    os.chmod(root / "pgdata" / "PG_VERSION", 0o600)
    os.lchown(root / "pgdata", 999, 999)
    return str(pv)


# -- the main flow -------------------------------------------------------------------------------
def test_snapshot_and_restore_copy_the_data_exactly(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    src = make_source(kubesim, ns)
    digest = kubesim.volume_digest(src)
    apply(kubesim, ns, snapshot_yaml("snap", pvc="data"))
    vs = wait_ready(kubesim, ns, "snap")
    uid = vs["metadata"]["uid"]
    # The default class of the source's driver is filled in.
    assert vs["spec"]["volumeSnapshotClassName"] == "csi-kubesim-snapclass"
    assert vs["metadata"]["finalizers"] == VS_FINALIZERS
    st = vs["status"]
    assert st["boundVolumeSnapshotContentName"] == f"snapcontent-{uid}"
    assert st["restoreSize"] == "2Mi"
    assert st["creationTime"].endswith("Z") and "error" not in st

    vsc = content(kubesim, f"snapcontent-{uid}")
    assert vsc is not None
    spec = vsc["spec"]
    assert spec["volumeSnapshotRef"]["uid"] == uid and spec["volumeSnapshotRef"]["name"] == "snap"
    assert spec["source"] == {"volumeHandle": src}
    assert spec["driver"] == "csi.kubesim.io"
    assert spec["deletionPolicy"] == "Delete"
    assert spec["volumeSnapshotClassName"] == "csi-kubesim-snapclass"
    assert vsc["metadata"]["finalizers"] == [
        "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"
    ]
    assert "annotations" not in vsc["metadata"]
    cst = vsc["status"]
    assert cst["readyToUse"] is True and cst["restoreSize"] == 2 * 1024 * 1024
    assert cst["snapshotHandle"] == f"snapshot-{uid}"
    assert isinstance(cst["creationTime"], int) and cst["creationTime"] > 10**18
    # The source claim's protection goes once the snapshot is ready.
    wait_for(
        lambda: (
            PVC_SOURCE_FINALIZER not in (claim(kubesim, ns, "data") or {})["metadata"].get("finalizers", [])
        ),
        what="pvc-as-source finalizer removed",
    )
    wait_event(
        kubesim,
        ns,
        "snap",
        "CreatingSnapshot",
        f"Waiting for a snapshot {ns}/snap to be created by the CSI driver.",
    )
    wait_event(
        kubesim,
        ns,
        "snap",
        "SnapshotCreated",
        f"Snapshot {ns}/snap was successfully created by the CSI driver.",
    )
    wait_event(kubesim, ns, "snap", "SnapshotReady", f"Snapshot {ns}/snap is ready to use.")

    # Point in time: later writes to the source are not in the restored volume.
    kubesim.write_volume_file(src, "pgdata/PG_VERSION", "18\n")
    apply(kubesim, ns, claim_yaml("restored", "2Mi", source="snap"))
    dst = wait_bound(kubesim, ns, "restored")["spec"]["volumeName"]
    assert kubesim.volume_digest(dst) == digest
    assert kubesim.read_volume_file(dst, "pgdata/PG_VERSION") == b"17\n"
    root = kubesim.volume_path(dst)
    assert (root / "pgdata" / "PG_VERSION").stat().st_mode & 0o777 == 0o600
    assert (root / "pgdata").stat().st_uid == 999

    # dataSourceRef works the same.
    apply(
        kubesim,
        ns,
        claim_yaml("by-ref", "4Mi").replace(
            "  accessModes",
            f"  dataSourceRef: {{kind: VolumeSnapshot, apiGroup: {GROUP}, name: snap}}\n  accessModes",
        ),
    )
    assert kubesim.volume_digest(wait_bound(kubesim, ns, "by-ref")["spec"]["volumeName"]) == digest


def test_source_claim_is_protected_while_the_snapshot_is_taken(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    make_source(kubesim, ns)
    fid = kubesim.call(
        lambda c: c.faults.add("snapshot", match={"namespace": ns, "name": "slow"}, delay=0.8, count=1)
    )
    apply(kubesim, ns, snapshot_yaml("slow", pvc="data"))
    wait_for(
        lambda: PVC_SOURCE_FINALIZER in (claim(kubesim, ns, "data") or {})["metadata"].get("finalizers", []),
        what="pvc-as-source finalizer",
    )
    vsc = wait_for(
        lambda: content(kubesim, f"snapcontent-{snapshot(kubesim, ns, 'slow')['metadata']['uid']}")
    )  # type: ignore[index]
    assert (vsc.get("metadata") or {}).get("annotations", {}).get(
        "snapshot.storage.kubernetes.io/volumesnapshot-being-created"
    ) == "yes"
    # Deleting the claim now leaves it Terminating until the snapshot is cut.
    kubesim.kubectl("delete", "pvc", "data", "-n", ns, "--wait=false")
    c = claim(kubesim, ns, "data")
    assert c is not None and c["metadata"].get("deletionTimestamp")
    wait_ready(kubesim, ns, "slow")
    wait_for(lambda: claim(kubesim, ns, "data") is None, what="claim gone after the snapshot")
    kubesim.call(lambda c: c.faults.remove(fid))


# -- restore refusals ----------------------------------------------------------------------------
def test_restore_smaller_than_restore_size_stays_pending(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    make_source(kubesim, ns, size="2Mi")
    apply(kubesim, ns, snapshot_yaml("snap", pvc="data"))
    wait_ready(kubesim, ns, "snap")
    apply(kubesim, ns, claim_yaml("small", "1Mi", source="snap"))
    e = wait_event(
        kubesim,
        ns,
        "small",
        "ProvisioningFailed",
        "error getting handle for DataSource Type VolumeSnapshot by Name snap: "
        "requested volume size 1048576 is less than the size 2097152 for the source snapshot snap",
    )
    assert e["type"] == "Warning"
    c = claim(kubesim, ns, "small")
    assert c is not None and c["status"]["phase"] == "Pending" and not c["spec"].get("volumeName")


def test_restore_waits_until_the_snapshot_is_ready(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    src = make_source(kubesim, ns)
    fid = kubesim.call(
        lambda c: c.faults.add("snapshot", match={"namespace": ns, "name": "snap"}, message="busy")
    )
    apply(kubesim, ns, snapshot_yaml("snap", pvc="data"))
    apply(kubesim, ns, claim_yaml("restored", "2Mi", source="snap"))
    e = wait_event(kubesim, ns, "restored", "ProvisioningFailed", "snapshot snap is not Ready")
    assert (
        e["message"]
        == "error getting handle for DataSource Type VolumeSnapshot by Name snap: snapshot snap is not Ready"
    )
    c = claim(kubesim, ns, "restored")
    assert c is not None and c["status"]["phase"] == "Pending"
    kubesim.call(lambda c: c.faults.remove(fid))
    dst = wait_bound(kubesim, ns, "restored")["spec"]["volumeName"]
    assert kubesim.volume_digest(dst) == kubesim.volume_digest(src)


def test_restore_of_a_missing_snapshot_and_from_another_driver(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    apply(kubesim, ns, claim_yaml("orphan", "1Mi", source="missing"))
    wait_event(
        kubesim,
        ns,
        "orphan",
        "ProvisioningFailed",
        "error getting handle for DataSource Type VolumeSnapshot by Name missing: error getting snapshot missing "
        'from api server: volumesnapshots.snapshot.storage.k8s.io "missing" not found',
    )
    # A pre-provisioned snapshot of the basic driver cannot be restored by csi.kubesim.io.
    vsc_name = f"foreign-{ns}"
    kubesim.kubectl(
        "apply",
        "-f",
        "-",
        input=f"""
apiVersion: {GROUP}/v1
kind: VolumeSnapshotContent
metadata: {{name: {vsc_name}}}
spec:
  deletionPolicy: Retain
  driver: basic.csi.kubesim.io
  source: {{snapshotHandle: snap-elsewhere}}
  volumeSnapshotRef: {{name: foreign, namespace: {ns}}}
""",
    )
    apply(kubesim, ns, snapshot_yaml("foreign", content_name=vsc_name))
    wait_for(
        lambda: (
            (snapshot(kubesim, ns, "foreign") or {}).get("status", {}).get("boundVolumeSnapshotContentName")
        )
    )
    apply(kubesim, ns, claim_yaml("cross", "1Mi", source="foreign"))
    wait_event(
        kubesim,
        ns,
        "cross",
        "ProvisioningFailed",
        "error getting handle for DataSource Type VolumeSnapshot by Name foreign: snapshot foreign not bound",
    )
    # The basic driver cannot restore at all.
    apply(kubesim, ns, claim_yaml("basic", "1Mi", sc="basic", source="foreign"))
    wait_event(
        kubesim,
        ns,
        "basic",
        "ProvisioningFailed",
        "CSI driver does not support snapshot restore: controller CREATE_DELETE_SNAPSHOT capability is not reported",
    )
    for name in ("orphan", "cross", "basic"):
        c = claim(kubesim, ns, name)
        assert c is not None and c["status"]["phase"] == "Pending"
    kubesim.kubectl("delete", "volumesnapshotcontent", vsc_name, "--wait=false")


# -- failures --------------------------------------------------------------------------------------
def test_basic_driver_cannot_snapshot(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    make_source(kubesim, ns, sc="basic")
    apply(kubesim, ns, snapshot_yaml("nodefault", pvc="data"))
    s = wait_snapshot_error(kubesim, ns, "nodefault", "cannot find default snapshot class")
    assert (
        s["status"]["error"]["message"]
        == "Failed to set default snapshot class with error cannot find default snapshot class"
    )
    assert s["status"].get("readyToUse") is not True
    wait_event(kubesim, ns, "nodefault", "SetDefaultSnapshotClassFailed")

    # Naming csi.kubesim.io's class: the content is made, and the driver does not know the volume.
    apply(kubesim, ns, snapshot_yaml("wrongdriver", pvc="data", cls="csi-kubesim-snapclass"))
    pv = claim(kubesim, ns, "data")["spec"]["volumeName"]  # type: ignore[index]
    s = wait_snapshot_error(kubesim, ns, "wrongdriver", f"failed to take snapshot of the volume {pv}")
    # The first attempt reports "Failed to create snapshot: ...", the retries (the content has a
    # status by then) "Failed to check and update snapshot content: ...", as upstream.
    assert s["status"]["error"]["message"].endswith(
        f'failed to take snapshot of the volume {pv}: "rpc error: code = NotFound desc = volume id {pv} '
        'does not exist in the volumes list"'
    )
    assert s["status"]["readyToUse"] is False
    vsc_name = s["status"]["boundVolumeSnapshotContentName"]
    e = wait_for(
        lambda: next(
            (x for x in events(kubesim, "default", vsc_name) if x["reason"] == "SnapshotCreationFailed"), None
        )
    )
    assert e["source"]["component"] == "csi-snapshotter csi.kubesim.io"


def test_snapshot_error_then_success_after_the_fault_clears(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    make_source(kubesim, ns)
    fid = kubesim.call(
        lambda c: c.faults.add("snapshot", match={"namespace": ns, "name": "snap"}, message="backend busy")
    )
    apply(kubesim, ns, snapshot_yaml("snap", pvc="data"))
    s = wait_snapshot_error(kubesim, ns, "snap", "backend busy")
    assert s["status"]["readyToUse"] is False
    assert s["status"]["error"]["time"].endswith("Z")
    vsc = content(kubesim, s["status"]["boundVolumeSnapshotContentName"])
    assert vsc is not None and "backend busy" in vsc["status"]["error"]["message"]
    assert "snapshotHandle" not in vsc["status"]
    kubesim.call(lambda c: c.faults.remove(fid))
    s = wait_ready(kubesim, ns, "snap")
    assert "error" not in s["status"]
    vsc = content(kubesim, s["status"]["boundVolumeSnapshotContentName"])
    assert vsc is not None and "error" not in vsc["status"]


# -- deletion --------------------------------------------------------------------------------------
def test_deletion_policy_delete_removes_content_and_data(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    make_source(kubesim, ns)
    apply(kubesim, ns, snapshot_yaml("snap", pvc="data"))
    s = wait_ready(kubesim, ns, "snap")
    vsc_name = s["status"]["boundVolumeSnapshotContentName"]
    handle = content(kubesim, vsc_name)["status"]["snapshotHandle"]  # type: ignore[index]
    data = Path(kubesim.cluster.data_dir) / "snapshots" / handle  # type: ignore[union-attr]
    assert data.is_dir()
    kubesim.kubectl("delete", "volumesnapshot", "snap", "-n", ns, "--wait=false")
    wait_for(
        lambda: snapshot(kubesim, ns, "snap") is None and content(kubesim, vsc_name) is None, what="both gone"
    )
    assert not data.exists()
    assert kubesim.call(lambda c: c.csi.get_snapshot(handle)) is None


def test_deletion_policy_retain_keeps_content_and_data_for_a_pre_provisioned_snapshot(
    kubesim: KubeSim,
) -> None:
    ns = new_ns(kubesim)
    src = make_source(kubesim, ns)
    digest = kubesim.volume_digest(src)
    cls = f"retain-{ns}"
    kubesim.kubectl(
        "apply",
        "-f",
        "-",
        input=f"""
apiVersion: {GROUP}/v1
kind: VolumeSnapshotClass
metadata: {{name: {cls}}}
driver: csi.kubesim.io
deletionPolicy: Retain
""",
    )
    apply(kubesim, ns, snapshot_yaml("snap", pvc="data", cls=cls))
    s = wait_ready(kubesim, ns, "snap")
    # No bound-protection finalizer when the content is retained.
    assert s["metadata"]["finalizers"] == VS_FINALIZERS[:1]
    vsc_name = s["status"]["boundVolumeSnapshotContentName"]
    handle = content(kubesim, vsc_name)["status"]["snapshotHandle"]  # type: ignore[index]
    kubesim.kubectl("delete", "volumesnapshot", "snap", "-n", ns)
    vsc = content(kubesim, vsc_name)
    assert vsc is not None and vsc["spec"]["deletionPolicy"] == "Retain"
    assert vsc["status"]["snapshotHandle"] == handle
    assert kubesim.call(lambda c: c.csi.get_snapshot(handle)) is not None

    # The retained snapshot, imported as a pre-provisioned content, restores the same data.
    imported = f"imported-{ns}"
    kubesim.kubectl(
        "apply",
        "-f",
        "-",
        input=f"""
apiVersion: {GROUP}/v1
kind: VolumeSnapshotContent
metadata: {{name: {imported}}}
spec:
  deletionPolicy: Retain
  driver: csi.kubesim.io
  source: {{snapshotHandle: {handle}}}
  volumeSnapshotRef: {{name: again, namespace: {ns}}}
""",
    )
    apply(kubesim, ns, snapshot_yaml("again", content_name=imported))
    s = wait_ready(kubesim, ns, "again")
    assert s["status"]["boundVolumeSnapshotContentName"] == imported
    assert s["status"]["restoreSize"] == "2Mi"
    vsc = content(kubesim, imported)
    assert vsc is not None and vsc["spec"]["volumeSnapshotRef"]["uid"] == s["metadata"]["uid"]
    apply(kubesim, ns, claim_yaml("restored", "2Mi", source="again"))
    dst = wait_bound(kubesim, ns, "restored")["spec"]["volumeName"]
    assert kubesim.volume_digest(dst) == digest

    # Deleting the retained contents keeps the physical snapshot.
    kubesim.kubectl("delete", "volumesnapshot", "again", "-n", ns)
    kubesim.kubectl("delete", "volumesnapshotcontent", vsc_name, imported, "--wait=false")
    wait_for(
        lambda: content(kubesim, vsc_name) is None and content(kubesim, imported) is None,
        what="contents gone",
    )
    assert kubesim.call(lambda c: c.csi.get_snapshot(handle)) is not None


def test_snapshot_deletion_and_a_pending_restore_wait_for_each_other(kubesim: KubeSim) -> None:
    """The upstream deadlock: a snapshot being deleted is refused as a source (getSnapshotSource), and
    its deletion waits while a Pending claim names it (isVolumeBeingCreatedFromSnapshot)."""
    ns = new_ns(kubesim)
    make_source(kubesim, ns)
    apply(kubesim, ns, snapshot_yaml("snap", pvc="data"))
    s = wait_ready(kubesim, ns, "snap")
    vsc_name = s["status"]["boundVolumeSnapshotContentName"]
    fid = kubesim.call(
        lambda c: c.faults.add("provision", match={"namespace": ns, "name": "restored"}, message="slow disk")
    )
    apply(kubesim, ns, claim_yaml("restored", "2Mi", source="snap"))
    wait_event(kubesim, ns, "restored", "ProvisioningFailed", "slow disk")
    kubesim.kubectl("delete", "volumesnapshot", "snap", "-n", ns, "--wait=false")
    wait_event(kubesim, ns, "snap", "SnapshotDeletePending", "Snapshot is being used to restore a PVC")
    kubesim.call(lambda c: c.faults.remove(fid))
    wait_event(
        kubesim,
        ns,
        "restored",
        "ProvisioningFailed",
        "error getting handle for DataSource Type VolumeSnapshot by Name snap: snapshot snap is currently being deleted",
    )
    assert snapshot(kubesim, ns, "snap") is not None and content(kubesim, vsc_name) is not None
    c = claim(kubesim, ns, "restored")
    assert c is not None and c["status"]["phase"] == "Pending"
    # Deleting the pending claim breaks the wait; the periodic resync (1 s here) finishes the deletion.
    kubesim.kubectl("delete", "pvc", "restored", "-n", ns, "--wait=false")
    wait_for(
        lambda: snapshot(kubesim, ns, "snap") is None and content(kubesim, vsc_name) is None, what="deleted"
    )
