"""Nothing lost, whatever happens: refusals and errors that must stop a resync before it touches
a replica, with a reason and a message a user can act on (issue "Nothing lost, whatever happens").

Each test checks what a user sees: the Failed condition's reason and message, the Events and
the operator's log, and that every replica still has its own pod, claim, volume, data and
reclaim policy, and the primary too.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kubesim.csi import bootstrap_objects as csi_objects
from kubesim.snapshot_crds import crds as snapshot_crds
from kubesim.testing import KubeSim

from .conftest import ROOT, Operator, apply, statefulset, wait_for
from .safety_helpers import (
    OPERATOR_USER,
    add_fault,
    assert_no_temporaries,
    assert_untouched,
    events,
    failed,
    make_db_of,
    record,
    remove_fault,
    wait_end,
)
from .test_resync import assert_primary_untouched, get, make_db, resync

pytestmark = pytest.mark.e2e


def assert_nothing_touched(cluster: KubeSim, db: Any, before: Any) -> None:
    for i in range(db.replicas):
        if i != db.primary:
            assert_untouched(cluster, db, before, i)
    assert_primary_untouched(cluster, db)
    assert_no_temporaries(cluster, db.ns)


# -- VolumeNotPerReplica ---------------------------------------------------------------------
def shared_claim_statefulset() -> dict[str, Any]:
    """Every pod mounts one claim, ``shared``, besides its own ``data`` claim."""
    sts = statefulset("pg", 3)
    spec = sts["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}}]
    spec["containers"][0]["volumeMounts"].append({"name": "shared", "mountPath": "/var/lib/shared"})
    return sts


def test_volume_shared_by_every_pod_is_refused(cluster: KubeSim, operator: Operator, ns: str) -> None:
    """A volume that is not a volumeClaimTemplate (one claim mounted by every pod, the primary
    included): resyncing it would swap the primary's own claim. Refused, nothing touched."""
    apply(
        cluster,
        ns,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "shared"},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Mi"}}},
        },
    )
    db = make_db_of(cluster, ns, shared_claim_statefulset(), primary=1)
    shared_pv = get(cluster, "pvc", "-n", ns, "shared")["spec"]["volumeName"]
    cluster.write_volume_file(shared_pv, "state", "shared\n")
    shared_digest = cluster.volume_digest(shared_pv)
    before = record(cluster, db)
    resync(cluster, db, volumes=["shared"])
    out = wait_end(cluster, ns, timeout=60)
    cond = failed(out["status"])
    assert cond["reason"] == "VolumeNotPerReplica", out["status"]
    for word in ("shared", "pg-0", "pg-1", "pg-2"):
        assert word in cond["message"], f"{word!r} not named in {cond['message']!r}"
    assert_nothing_touched(cluster, db, before)
    claim = get(cluster, "pvc", "-n", ns, "shared")
    assert claim["spec"]["volumeName"] == shared_pv and not claim["metadata"].get("deletionTimestamp")
    assert cluster.volume_digest(shared_pv) == shared_digest
    assert "VolumeNotPerReplica" in {e["reason"] for e in events(cluster, ns)}


def test_claim_mounted_by_another_pod_is_refused(cluster: KubeSim, operator: Operator, ns: str) -> None:
    """A replica's claim is also mounted by a pod outside the StatefulSet (a backup job, say):
    swapping it would pull the volume from under that pod. Refused, nothing touched."""
    db = make_db(cluster, ns, name="pg", replicas=3, primary=1)
    apply(
        cluster,
        ns,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "backup"},
            "spec": {
                "containers": [
                    {
                        "name": "backup",
                        "image": "example/backup:1",
                        "volumeMounts": [{"name": "d", "mountPath": "/backup", "readOnly": True}],
                    }
                ],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data-pg-2"}}],
            },
        },
    )
    cluster.kubectl("wait", "-n", ns, "pod/backup", "--for=condition=Ready", "--timeout=60s")
    before = record(cluster, db)
    resync(cluster, db)
    out = wait_end(cluster, ns, timeout=60)
    cond = failed(out["status"])
    assert cond["reason"] == "VolumeNotPerReplica", out["status"]
    for word in ("data", "pg-2", "backup"):
        assert word in cond["message"], f"{word!r} not named in {cond['message']!r}"
    assert_nothing_touched(cluster, db, before)


# -- 403s that are not RBAC ------------------------------------------------------------------
QUOTA = (
    'persistentvolumeclaims "staging" is forbidden: exceeded quota: q, requested: requests.storage=1Mi, '
    "used: requests.storage=0, limited: requests.storage=0"
)
WEBHOOK = (
    'admission webhook "snapshots.policy.example.com" denied the request: '
    "VolumeSnapshots are not allowed in this namespace"
)


@pytest.mark.parametrize(
    ("resource", "group", "message", "reason"),
    [
        ("persistentvolumeclaims", "", QUOTA, "QuotaExceeded"),
        ("volumesnapshots", "snapshot.storage.k8s.io", WEBHOOK, "AdmissionDenied"),
    ],
    ids=["quota", "webhook"],
)
def test_forbidden_that_is_not_rbac_is_named_with_the_servers_message(
    cluster: KubeSim, operator: Operator, ns: str, resource: str, group: str, message: str, reason: str
) -> None:
    """A 403 from a ResourceQuota or an admission webhook is not an RBAC gap: the reason says
    which, the message carries the server's words, and no replica is touched."""
    db = make_db(cluster, ns, replicas=3, primary=1)
    before = record(cluster, db)
    fid = add_fault(
        cluster,
        "api",
        match={
            "verb": "create",
            "resource": resource,
            "group": group,
            "namespace": ns,
            "user": OPERATOR_USER,
        },
        code=403,
        message=message,
    )
    try:
        resync(cluster, db)
        out = wait_end(cluster, ns, timeout=60)
    finally:
        remove_fault(cluster, fid)
    cond = failed(out["status"])
    assert cond["reason"] == reason, out["status"]
    assert message in cond["message"], cond["message"]
    assert reason in {e["reason"] for e in events(cluster, ns)}
    assert_nothing_touched(cluster, db, before)


# -- hooks -----------------------------------------------------------------------------------
def test_hook_failure_reports_the_exit_code_not_the_output(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    """A hook's output may hold secrets (a connection string, a password prompt): by default the
    status, the Events and the operator's log carry the exit code, never the output."""
    secret = "s3cret-" + uuid.uuid4().hex
    db = make_db(cluster, ns, replicas=2, primary=0)
    before = record(cluster, db)
    resync(
        cluster,
        db,
        hooks={
            "preSnapshot": {"command": ["sh", "-c", f"echo password={secret}; echo {secret} >&2; exit 7"]}
        },
    )
    out = wait_end(cluster, ns, timeout=60)
    cond = failed(out["status"])
    assert cond["reason"] == "HookFailed", out["status"]
    assert re.search(r"\b7\b", cond["message"]), cond["message"]
    assert secret not in str(out["status"])
    evs = [e for e in events(cluster, ns) if e["reason"] == "HookFailed"]
    assert evs and all(secret not in e["message"] for e in evs)
    assert any(re.search(r"\b7\b", e["message"]) for e in evs), [e["message"] for e in evs]
    log = operator.output()
    assert secret not in log, "the hook's output is in the operator's log"
    assert any("HookFailed" in line and re.search(r"\b7\b", line) for line in log.splitlines()), (
        "the operator's log does not record the hook's exit code"
    )
    assert_nothing_touched(cluster, db, before)


def test_hook_output_excerpt_is_the_last_bytes_only(cluster: KubeSim, operator: Operator, ns: str) -> None:
    """``outputExcerptBytes: N`` puts the last N bytes of the output in the status message, and no more."""
    head = "HEAD-" + uuid.uuid4().hex
    tail = "tail-" + uuid.uuid4().hex[:10]  # 15 characters: with its newline, the last 16 bytes
    db = make_db(cluster, ns, replicas=2, primary=0)
    before = record(cluster, db)
    resync(
        cluster,
        db,
        hooks={
            "preSnapshot": {
                "command": ["sh", "-c", f"echo {head}; echo {tail}; exit 3"],
                "outputExcerptBytes": 16,
            }
        },
    )
    out = wait_end(cluster, ns, timeout=60)
    cond = failed(out["status"])
    assert cond["reason"] == "HookFailed", out["status"]
    assert re.search(r"\b3\b", cond["message"]), cond["message"]
    assert tail in cond["message"], cond["message"]
    assert "HEAD-" not in str(out["status"]) and head[5:] not in str(out["status"])
    assert all(head[5:] not in e["message"] for e in events(cluster, ns))
    assert head[5:] not in operator.output()
    assert_nothing_touched(cluster, db, before)


# -- MissingAPI ------------------------------------------------------------------------------
@pytest.fixture
def no_snapshot_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KubeSim, Operator]]:
    """A cluster of its own without the CSI snapshot CRDs (as without the external snapshotter),
    and an operator for it."""
    with KubeSim() as sim:
        sim.kubectl("apply", "-k", str(ROOT / "manifests"))
        for crd in snapshot_crds():
            sim.kubectl("delete", "crd", crd["metadata"]["name"])
        op = Operator(
            sim.service_account_kubeconfig("clusterresync-system", "clusterresync-operator"),
            tmp_path_factory.mktemp("operator-nosnap") / "operator.log",
        )
        op.start()
        try:
            yield sim, op
        finally:
            op.stop()


def test_missing_snapshot_api_is_refused(no_snapshot_api: tuple[KubeSim, Operator]) -> None:
    cluster, operator = no_snapshot_api
    ns = "e2e-" + uuid.uuid4().hex[:6]
    cluster.kubectl("create", "namespace", ns)
    db = make_db(cluster, ns, replicas=2, primary=0)
    before = record(cluster, db)
    resync(cluster, db)
    out = wait_end(cluster, ns, timeout=60)
    cond = failed(out["status"])
    assert cond["reason"] == "MissingAPI", (out["status"], operator.output()[-2000:])
    assert "snapshot.storage.k8s.io" in cond["message"] or "volumesnapshot" in cond["message"].lower()
    for i in (1,):
        assert_untouched(cluster, db, before, i)
    assert_primary_untouched(cluster, db)
    # Installing the snapshot CRDs is enough: the operator finds the API (a discovery GET every
    # 10 s) and a new ClusterResync runs, without a restart.
    for crd in snapshot_crds():
        cluster.kubectl("apply", "-f", "-", input=json.dumps(crd))
    # ... and the snapshot class, which went with the CRDs.
    (snapclass,) = [o for o in csi_objects() if o["kind"] == "VolumeSnapshotClass"]
    wait_for(
        lambda: cluster.kubectl("apply", "-f", "-", input=json.dumps(snapclass), check=False).returncode == 0,
        30,
        "the VolumeSnapshotClass created",
    )
    cluster.kubectl("delete", "crsync", "-n", ns, "rs")
    resync(cluster, db, name="rs2")
    out = wait_end(cluster, ns, name="rs2", timeout=90)
    assert out["status"]["phase"] == "Completed", (out["status"], operator.output()[-2000:])
