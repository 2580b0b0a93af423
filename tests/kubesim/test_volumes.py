"""Volumes on kubesim: the PV binder and reclaimer, the CSI external-provisioner, PVC/PV protection, clones.

Driven through kubectl and raw API requests; the data is checked on the host through the
``cluster.csi`` helpers. Each test works in a namespace of its own.
"""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kubesim.cluster import ClusterConfig
from kubesim.testing import KubeSim, wait_for

T = TypeVar("T")
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def kubesim() -> Iterator[KubeSim]:
    """A cluster with short retry and resync delays, so that retries show within a test."""
    config = ClusterConfig(pv_resync_period=1.0, volume_retry_start=0.05, volume_retry_max=0.4)
    with KubeSim(config=config) as sim:
        yield sim


# -- helpers -------------------------------------------------------------------------------------


def stays(fn: Callable[[], bool], duration: float = 0.6) -> None:
    """Assert that ``fn`` holds for the whole of ``duration`` (checked repeatedly)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert fn()
        time.sleep(0.05)


def get(k: KubeSim, path: str) -> dict[str, Any] | None:
    code, _, body = k.request("GET", path)
    if code == 404:
        return None
    assert code == 200, body
    return body  # type: ignore[no-any-return]


def claim(k: KubeSim, ns: str, name: str) -> dict[str, Any] | None:
    return get(k, f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}")


def pv(k: KubeSim, name: str) -> dict[str, Any] | None:
    return get(k, f"/api/v1/persistentvolumes/{name}")


def apply(k: KubeSim, ns: str, manifest: str) -> None:
    k.kubectl("apply", "-n", ns, "-f", "-", input=manifest)


def new_ns(k: KubeSim) -> str:
    ns = f"vol-{uuid.uuid4().hex[:8]}"
    k.kubectl("create", "namespace", ns)
    return ns


def claim_yaml(
    name: str, size: str = "1Mi", sc: str | None = None, extra: str = "", modes: str = "[ReadWriteOnce]"
) -> str:
    return f"""
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}}}
spec:
  accessModes: {modes}
  resources: {{requests: {{storage: {size}}}}}
{f"  storageClassName: {sc}" if sc is not None else ""}
{extra}
"""


def wait_bound(k: KubeSim, ns: str, name: str, timeout: float = 10.0) -> dict[str, Any]:
    return wait_for(
        lambda: c if (c := claim(k, ns, name)) and (c.get("status") or {}).get("phase") == "Bound" else None,
        timeout,
        f"claim {ns}/{name} Bound",
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


def a_node(k: KubeSim) -> tuple[str, str]:
    """An existing node (name, hostname label), or one created for the test."""
    body = get(k, "/api/v1/nodes")
    assert body is not None
    for n in body["items"]:
        return n["metadata"]["name"], (n["metadata"].get("labels") or {}).get("kubernetes.io/hostname", "")
    name = "vol-test-node"
    if get(k, f"/api/v1/nodes/{name}") is None:
        code, _, out = k.request(
            "POST",
            "/api/v1/nodes",
            body={"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}},
        )
        assert code == 201, out
    return name, name


# -- dynamic provisioning ------------------------------------------------------------------------
def test_dynamic_provisioning_binds_claim_and_creates_directory(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    apply(kubesim, ns, claim_yaml("data", "1500k"))
    c = wait_bound(kubesim, ns, "data")
    uid = c["metadata"]["uid"]
    assert c["spec"]["volumeName"] == f"pvc-{uid}"
    assert c["spec"]["storageClassName"] == "standard"  # the default class, by admission
    ann = c["metadata"]["annotations"]
    assert ann["pv.kubernetes.io/bind-completed"] == "yes"
    assert ann["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert ann["volume.kubernetes.io/storage-provisioner"] == "csi.kubesim.io"
    assert ann["volume.beta.kubernetes.io/storage-provisioner"] == "csi.kubesim.io"
    # The driver keeps the exact size; BinarySI prints bytes that are no multiple of 1024 as is.
    assert c["status"] == {
        "phase": "Bound",
        "accessModes": ["ReadWriteOnce"],
        "capacity": {"storage": "1500000"},
    }

    v = pv(kubesim, f"pvc-{uid}")
    assert v is not None
    assert v["status"]["phase"] == "Bound"
    assert v["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "csi.kubesim.io"
    assert v["metadata"]["finalizers"] == [
        "external-provisioner.volume.kubernetes.io/finalizer",
        "kubernetes.io/pv-protection",
    ]
    spec = v["spec"]
    assert spec["capacity"] == {"storage": "1500000"}
    assert spec["persistentVolumeReclaimPolicy"] == "Delete"
    assert spec["storageClassName"] == "standard"
    assert spec["csi"]["driver"] == "csi.kubesim.io"
    assert spec["csi"]["volumeHandle"] == f"pvc-{uid}"
    assert spec["csi"]["fsType"] == "ext4"
    assert spec["claimRef"]["uid"] == uid and spec["claimRef"]["name"] == "data"
    assert "nodeAffinity" not in spec  # Immediate binding: no selected node, no topology
    path = kubesim.volume_path(f"pvc-{uid}")
    assert path.is_dir() and path == Path(kubesim.cluster.data_dir) / "volumes" / f"pvc-{uid}"  # type: ignore[union-attr]

    wait_event(kubesim, ns, "data", "ExternalProvisioning", "external provisioner 'csi.kubesim.io'")
    wait_event(
        kubesim,
        ns,
        "data",
        "Provisioning",
        f'External provisioner is provisioning volume for claim "{ns}/data"',
    )
    wait_event(kubesim, ns, "data", "ProvisioningSucceeded", f"Successfully provisioned volume pvc-{uid}")


def test_delete_reclaim_removes_volume_and_data(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    apply(kubesim, ns, claim_yaml("data"))
    name = wait_bound(kubesim, ns, "data")["spec"]["volumeName"]
    kubesim.write_volume_file(name, "f.txt", b"x")
    path = kubesim.volume_path(name)
    kubesim.kubectl("delete", "pvc", "data", "-n", ns, "--wait=false")
    wait_for(lambda: pv(kubesim, name) is None, what="PV deleted")
    assert not path.exists()
    assert claim(kubesim, ns, "data") is None


def test_retain_keeps_data_released_then_available_and_prebound_again(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    sc = f"retain-{ns}"
    kubesim.kubectl(
        "apply",
        "-f",
        "-",
        input=f"""
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: {sc}}}
provisioner: csi.kubesim.io
reclaimPolicy: Retain
""",
    )
    apply(kubesim, ns, claim_yaml("data", sc=sc))
    old = wait_bound(kubesim, ns, "data")
    name, old_uid = old["spec"]["volumeName"], old["metadata"]["uid"]
    kubesim.write_volume_file(name, "db/PG_VERSION", b"17\n")
    v = pv(kubesim, name)
    assert (
        v is not None
        and "external-provisioner.volume.kubernetes.io/finalizer" not in v["metadata"]["finalizers"]
    )

    kubesim.kubectl("delete", "pvc", "data", "-n", ns)
    v = wait_for(
        lambda: x if (x := pv(kubesim, name)) and x["status"]["phase"] == "Released" else None,
        what="Released",
    )
    assert v["spec"]["claimRef"]["uid"] == old_uid  # the old claim's uid stays until someone clears it
    assert kubesim.read_volume_file(name, "db/PG_VERSION") == b"17\n"
    stays(lambda: (pv(kubesim, name) or {}).get("status", {}).get("phase") == "Released", 0.3)

    # Clearing the uid leaves a claimRef with namespace/name only: the volume is pre-bound again.
    kubesim.kubectl("patch", "pv", name, "--type=json", "-p", '[{"op":"remove","path":"/spec/claimRef/uid"}]')
    wait_for(
        lambda: (pv(kubesim, name) or {}).get("status", {}).get("phase") == "Available", what="Available"
    )

    # A new claim of that name, in another class, takes it before anything is provisioned.
    apply(kubesim, ns, claim_yaml("data", sc="standard"))
    new = wait_bound(kubesim, ns, "data")
    assert new["metadata"]["uid"] != old_uid
    assert new["spec"]["volumeName"] == name
    assert pv(kubesim, f"pvc-{new['metadata']['uid']}") is None
    assert kubesim.read_volume_file(name, "db/PG_VERSION") == b"17\n"
    v = pv(kubesim, name)
    assert v is not None and v["spec"]["claimRef"]["uid"] == new["metadata"]["uid"]
    assert v["status"]["phase"] == "Bound"


def test_prebound_static_volume_is_taken_before_provisioning_even_under_wffc(
    kubesim: KubeSim, tmp_path: Path
) -> None:
    ns = new_ns(kubesim)
    host = tmp_path / "disk"
    host.mkdir()
    (host / "hello.txt").write_text("from the admin")

    def static_pv(name: str, claim_name: str, size: str, modes: str) -> str:
        return f"""
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {name}}}
spec:
  capacity: {{storage: {size}}}
  accessModes: {modes}
  persistentVolumeReclaimPolicy: Retain
  storageClassName: manual
  hostPath: {{path: {host}}}
  claimRef: {{namespace: {ns}, name: {claim_name}}}
"""

    pv_ok, pv_small, pv_modes = f"{ns}-ok", f"{ns}-small", f"{ns}-modes"
    kubesim.kubectl(
        "apply", "-f", "-", input=static_pv(pv_ok, "data", "2Mi", "[ReadWriteOnce, ReadOnlyMany]")
    )
    kubesim.kubectl("apply", "-f", "-", input=static_pv(pv_small, "big", "1Mi", "[ReadWriteOnce]"))
    kubesim.kubectl("apply", "-f", "-", input=static_pv(pv_modes, "shared", "4Mi", "[ReadWriteOnce]"))
    wait_for(
        lambda: (pv(kubesim, pv_ok) or {}).get("status", {}).get("phase") == "Available", what="Available"
    )

    # Another class and WaitForFirstConsumer: a pre-bound volume matches on size, mode and access modes only.
    apply(kubesim, ns, claim_yaml("data", "1Mi", sc="standard-wffc"))
    c = wait_bound(kubesim, ns, "data")
    assert c["spec"]["volumeName"] == pv_ok
    assert c["status"]["capacity"] == {"storage": "2Mi"}
    assert c["status"]["accessModes"] == ["ReadWriteOnce", "ReadOnlyMany"]
    assert kubesim.read_volume_file(pv_ok, "hello.txt") == b"from the admin"
    v = pv(kubesim, pv_ok)
    assert v is not None and v["spec"]["claimRef"]["uid"] == c["metadata"]["uid"]
    # Pre-bound by the user: the controller does not claim the binding for itself.
    assert "pv.kubernetes.io/bound-by-controller" not in (v["metadata"].get("annotations") or {})

    # Too small, or lacking an access mode: not taken; the WFFC claims wait for a consumer.
    apply(kubesim, ns, claim_yaml("big", "2Mi", sc="standard-wffc"))
    apply(kubesim, ns, claim_yaml("shared", "1Mi", sc="standard-wffc", modes="[ReadWriteMany]"))
    wait_event(
        kubesim, ns, "big", "WaitForFirstConsumer", "waiting for first consumer to be created before binding"
    )
    wait_event(kubesim, ns, "shared", "WaitForFirstConsumer")
    for name in ("big", "shared"):
        c2 = claim(kubesim, ns, name)
        assert c2 is not None and c2["status"]["phase"] == "Pending" and not c2["spec"].get("volumeName")
        assert "volume.kubernetes.io/storage-provisioner" not in (c2["metadata"].get("annotations") or {})


def test_wait_for_first_consumer_provisions_on_the_selected_node(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    node, hostname = a_node(kubesim)
    apply(kubesim, ns, claim_yaml("data", sc="standard-wffc"))
    wait_event(
        kubesim, ns, "data", "WaitForFirstConsumer", "waiting for first consumer to be created before binding"
    )
    stays(lambda: (claim(kubesim, ns, "data") or {}).get("status", {}).get("phase") == "Pending", 0.3)
    # What the scheduler's volume binding does once it picked a node for a consumer pod.
    kubesim.kubectl("annotate", "pvc", "data", "-n", ns, f"volume.kubernetes.io/selected-node={node}")
    c = wait_bound(kubesim, ns, "data")
    v = pv(kubesim, c["spec"]["volumeName"])
    assert v is not None
    assert v["spec"]["nodeAffinity"] == {
        "required": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": [hostname]}
                    ]
                }
            ]
        }
    }


def test_selected_node_that_does_not_exist_is_rescheduled(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    apply(
        kubesim,
        ns,
        claim_yaml("data", sc="standard-wffc").replace(
            "metadata: {name: data}",
            "metadata: {name: data, annotations: {volume.kubernetes.io/selected-node: no-such-node}}",
        ),
    )
    wait_event(kubesim, ns, "data", "ProvisioningFailed", 'nodes "no-such-node" not found')
    c = wait_for(
        lambda: (
            x
            if (x := claim(kubesim, ns, "data"))
            and "volume.kubernetes.io/selected-node" not in (x["metadata"].get("annotations") or {})
            else None
        ),
        what="selected-node removed",
    )
    assert c["status"]["phase"] == "Pending"


# -- protection ------------------------------------------------------------------------------------
def pod_yaml(name: str, claim_name: str, node: str | None = None, selector: bool = False) -> str:
    placement = f"  nodeName: {node}\n" if node else ""
    if selector:
        placement += "  nodeSelector: {kubesim.io/no-such-label: nowhere}\n"
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
{placement}  containers:
  - {{name: main, image: busybox, command: [sleep, "3600"]}}
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: {claim_name}}}
"""


def test_pvc_protection_keeps_a_claim_used_by_a_scheduled_pod(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    node, _ = a_node(kubesim)
    apply(kubesim, ns, claim_yaml("used"))
    apply(kubesim, ns, claim_yaml("pending-user"))
    name = wait_bound(kubesim, ns, "used")["spec"]["volumeName"]
    wait_bound(kubesim, ns, "pending-user")
    apply(kubesim, ns, pod_yaml("runner", "used", node=node))
    apply(kubesim, ns, pod_yaml("unschedulable", "pending-user", selector=True))

    kubesim.kubectl("delete", "pvc", "used", "pending-user", "-n", ns, "--wait=false")
    # A pod that is not scheduled does not hold its claim.
    wait_for(lambda: claim(kubesim, ns, "pending-user") is None, what="unused claim gone")
    c = claim(kubesim, ns, "used")
    assert c is not None and c["metadata"].get("deletionTimestamp")
    assert "kubernetes.io/pvc-protection" in c["metadata"]["finalizers"]

    def still_there() -> bool:
        cur = claim(kubesim, ns, "used")
        return cur is not None and cur["status"]["phase"] == "Bound" and pv(kubesim, name) is not None

    stays(still_there, 0.6)
    # The volume cannot be deleted while Bound either (pv-protection).
    kubesim.kubectl("delete", "pv", name, "--wait=false")
    v = pv(kubesim, name)
    assert v is not None and v["metadata"].get("deletionTimestamp")
    stays(lambda: pv(kubesim, name) is not None, 0.3)

    kubesim.kubectl("delete", "pod", "runner", "-n", ns, "--grace-period=0", "--force", "--wait=false")
    wait_for(lambda: claim(kubesim, ns, "used") is None, what="claim gone after its pod")
    wait_for(lambda: pv(kubesim, name) is None, what="volume gone after its claim")


# -- clones --------------------------------------------------------------------------------------
def populate(k: KubeSim, pv_name: str) -> None:
    """Files with modes, ownership, a symlink and a setgid directory."""
    root = k.volume_path(pv_name)
    (root / "pgdata" / "base").mkdir(parents=True)
    (root / "pgdata" / "base" / "1").write_bytes(os.urandom(64 * 1024))
    (root / "pgdata" / "PG_VERSION").write_text("17\n")
    os.chmod(root / "pgdata", 0o2750)
    os.chmod(root / "pgdata" / "PG_VERSION", 0o600)
    os.symlink("pgdata/PG_VERSION", root / "version-link")
    for p in (
        root / "pgdata",
        root / "pgdata" / "PG_VERSION",
        root / "pgdata" / "base",
        root / "pgdata" / "base" / "1",
    ):
        os.lchown(p, 999, 999)


def stats(root: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath) / n
            st = os.lstat(p)
            out[str(p.relative_to(root))] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return out


def test_clone_copies_the_data_exactly(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    apply(kubesim, ns, claim_yaml("source", "2Mi"))
    src = wait_bound(kubesim, ns, "source")["spec"]["volumeName"]
    populate(kubesim, src)
    apply(
        kubesim,
        ns,
        claim_yaml(
            "clone",
            "2Mi",
            sc="standard-wffc",
            extra="  dataSource: {kind: PersistentVolumeClaim, name: source}",
        ),
    )
    # A clone may use another class of the same driver (getPVCSource checks the driver only).
    node, _ = a_node(kubesim)
    kubesim.kubectl("annotate", "pvc", "clone", "-n", ns, f"volume.kubernetes.io/selected-node={node}")
    dst = wait_bound(kubesim, ns, "clone")["spec"]["volumeName"]
    assert kubesim.volume_digest(dst) == kubesim.volume_digest(src)
    assert stats(kubesim.volume_path(dst)) == stats(kubesim.volume_path(src))
    assert stats(kubesim.volume_path(dst))["pgdata"] == (0o2750, 999, 999)
    # The source claim is protected while clones of it may be in progress.
    c = claim(kubesim, ns, "source")
    assert (
        c is not None
        and "provisioner.storage.kubernetes.io/cloning-protection" in c["metadata"]["finalizers"]
    )
    kubesim.kubectl("delete", "pvc", "source", "-n", ns, "--wait=false")
    wait_for(
        lambda: claim(kubesim, ns, "source") is None, what="source claim deleted once no clone is Pending"
    )


def test_clone_refusals(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    apply(kubesim, ns, claim_yaml("source", "2Mi"))
    apply(kubesim, ns, claim_yaml("basic-source", "1Mi", sc="basic"))
    wait_bound(kubesim, ns, "source")
    wait_bound(kubesim, ns, "basic-source")
    ds = "  dataSource: {kind: PersistentVolumeClaim, name: %s}"
    apply(kubesim, ns, claim_yaml("too-small", "1Mi", extra=ds % "source"))
    apply(kubesim, ns, claim_yaml("basic-clone", "1Mi", sc="basic", extra=ds % "basic-source"))
    apply(kubesim, ns, claim_yaml("no-source", "1Mi", extra=ds % "missing"))
    apply(kubesim, ns, claim_yaml("other-driver", "1Mi", extra=ds % "basic-source"))
    wait_event(
        kubesim,
        ns,
        "too-small",
        "ProvisioningFailed",
        "error getting handle for DataSource Type PersistentVolumeClaim by Name source: error, new PVC request "
        "must be greater than or equal in size to the specified PVC data source, requested 1048576 but source is 2097152",
    )
    wait_event(
        kubesim,
        ns,
        "basic-clone",
        "ProvisioningFailed",
        "CSI driver does not support clone operations: controller CLONE_VOLUME capability is not reported",
    )
    wait_event(
        kubesim,
        ns,
        "no-source",
        "ProvisioningFailed",
        f'error getting PVC missing (namespace "{ns}") from api server: persistentvolumeclaim "missing" not found',
    )
    wait_event(kubesim, ns, "other-driver", "ProvisioningFailed", "claim in dataSource not bound or invalid")
    for name in ("too-small", "basic-clone", "no-source", "other-driver"):
        c = claim(kubesim, ns, name)
        assert c is not None and c["status"]["phase"] == "Pending"


def test_copy_throughput_knob_slows_copies(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    apply(kubesim, ns, claim_yaml("source", "8Mi"))
    src = wait_bound(kubesim, ns, "source")["spec"]["volumeName"]
    size = 4 * MiB
    kubesim.write_volume_file(src, "blob", os.urandom(size))
    throughput = 8 * MiB  # 4 MiB should take at least 0.5 s

    def clone(name: str) -> float:
        start = time.monotonic()
        apply(
            kubesim,
            ns,
            claim_yaml(name, "8Mi", extra="  dataSource: {kind: PersistentVolumeClaim, name: source}"),
        )
        dst = wait_bound(kubesim, ns, name, timeout=20)["spec"]["volumeName"]
        elapsed = time.monotonic() - start
        assert kubesim.volume_digest(dst) == kubesim.volume_digest(src)
        return elapsed

    fast = clone("fast")
    kubesim.call(lambda c: setattr(c.config, "copy_throughput_bytes_per_s", throughput))
    try:
        slow = clone("slow")
    finally:
        kubesim.call(lambda c: setattr(c.config, "copy_throughput_bytes_per_s", None))
    print(f"4 MiB clone: {fast:.3f} s at disk speed, {slow:.3f} s at 8 MiB/s")
    assert slow >= 0.8 * size / throughput


# -- faults and admin actions --------------------------------------------------------------------
def test_provision_fault_fails_then_succeeds_and_delay_fault_slows(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    fid = kubesim.call(
        lambda c: c.faults.add("provision", match={"namespace": ns, "name": "data"}, message="disk full")
    )
    apply(kubesim, ns, claim_yaml("data"))
    e = wait_event(kubesim, ns, "data", "ProvisioningFailed", "disk full")
    assert e["type"] == "Warning"
    assert e["message"] == "rpc error: code = Internal desc = disk full"
    wait_for(
        lambda: (
            x["count"] if (x := wait_event(kubesim, ns, "data", "ProvisioningFailed"))["count"] >= 2 else None
        ),
        what="a retry",
    )
    c = claim(kubesim, ns, "data")
    assert c is not None and c["status"]["phase"] == "Pending"
    kubesim.call(lambda c: c.faults.remove(fid))
    wait_bound(kubesim, ns, "data")

    # By storage class, with a delay and no message: slow, not failed.
    kubesim.call(
        lambda c: c.faults.add(
            "provision", match={"namespace": ns, "storageclass": "basic"}, delay=0.5, count=1
        )
    )
    start = time.monotonic()
    apply(kubesim, ns, claim_yaml("slow", sc="basic"))
    wait_bound(kubesim, ns, "slow")
    assert time.monotonic() - start >= 0.5
    assert not [x for x in events(kubesim, ns, "slow") if x["reason"] == "ProvisioningFailed"]


def test_volume_admin_actions(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    apply(kubesim, ns, claim_yaml("data"))
    name = wait_bound(kubesim, ns, "data")["spec"]["volumeName"]
    code, _, out = kubesim.request(
        "POST",
        "/kubesim/volumes/write",
        body={"namespace": ns, "claim": "data", "path": "x/y.txt", "data": "hi"},
    )
    assert code == 200, out
    code, _, out = kubesim.request("POST", "/kubesim/volumes/read", body={"pv": name, "path": "x/y.txt"})
    assert code == 200 and out["text"] == "hi"
    code, _, out = kubesim.request("POST", "/kubesim/volumes/tree", body={"pv": name})
    assert code == 200 and out["digest"] == kubesim.volume_digest(name)
    assert set(out["files"]) == {"x", "x/y.txt"}
    assert kubesim.call(lambda c: c.csi.read_file(name, "x/y.txt")) == b"hi"
    with pytest.raises(ValueError, match="outside the volume"):
        kubesim.read_volume_file(name, "../../etc/passwd")


def test_claim_without_class_and_missing_class(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    apply(kubesim, ns, claim_yaml("no-class", sc='""'))
    apply(kubesim, ns, claim_yaml("missing-class", sc="no-such-class"))
    wait_event(
        kubesim,
        ns,
        "no-class",
        "FailedBinding",
        "no persistent volumes available for this claim and no storage class is set",
    )
    wait_event(
        kubesim,
        ns,
        "missing-class",
        "ProvisioningFailed",
        'storageclass.storage.k8s.io "no-such-class" not found',
    )
    for name in ("no-class", "missing-class"):
        c = claim(kubesim, ns, name)
        assert c is not None and c["status"]["phase"] == "Pending"


def test_claim_loses_its_volume(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    apply(kubesim, ns, claim_yaml("data"))
    name = wait_bound(kubesim, ns, "data")["spec"]["volumeName"]
    # Force the volume away (finalizers removed by hand), as an admin might.
    kubesim.kubectl("delete", "pv", name, "--wait=false")
    kubesim.kubectl("patch", "pv", name, "--type=merge", "-p", json.dumps({"metadata": {"finalizers": None}}))
    c = wait_for(
        lambda: x if (x := claim(kubesim, ns, "data")) and x["status"]["phase"] == "Lost" else None,
        what="Lost",
    )
    assert "capacity" not in c["status"]
    wait_event(
        kubesim,
        ns,
        "data",
        "ClaimLost",
        "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
    )


def test_delete_policy_on_a_volume_without_deleter_fails(kubesim: KubeSim, tmp_path: Path) -> None:
    ns = new_ns(kubesim)
    name = f"{ns}-hostpath"
    kubesim.kubectl(
        "apply",
        "-f",
        "-",
        input=f"""
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {name}}}
spec:
  capacity: {{storage: 1Mi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Delete
  storageClassName: manual
  hostPath: {{path: {tmp_path}}}
  claimRef: {{namespace: {ns}, name: data}}
""",
    )
    apply(kubesim, ns, claim_yaml("data", sc="manual"))
    wait_bound(kubesim, ns, "data")
    kubesim.kubectl("delete", "pvc", "data", "-n", ns)
    v = wait_for(
        lambda: x if (x := pv(kubesim, name)) and x["status"]["phase"] == "Failed" else None, what="Failed"
    )
    msg = f'error getting deleter volume plugin for volume "{name}": no deletable volume plugin matched'
    assert v["status"]["message"] == msg
    e = wait_event(kubesim, "default", name, "VolumeFailedDelete", msg)
    assert e["source"]["component"] == "persistentvolume-controller"
    assert tmp_path.is_dir()
