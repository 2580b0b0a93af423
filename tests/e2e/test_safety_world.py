"""Nothing lost, whatever happens: the world changes under a running resync. The StatefulSet is
scaled or deleted, the namespace goes, the status is wiped, another resync's objects share the
old generated names, an object the operator would create already exists, the namespace enforces
the restricted Pod Security profile.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from typing import Any

import pytest

from kubesim.testing import KubeSim

from .conftest import Operator, apply, statefulset, wait_for
from .safety_helpers import (
    LABEL_REPLICA,
    LABEL_UID,
    Sampler,
    assert_kept_old_volumes,
    assert_no_prebound,
    assert_no_temporaries,
    assert_old_data_kept,
    assert_runs_on_good_data,
    assert_untouched,
    conds,
    failed,
    get_or_none,
    holds,
    make_db_of,
    pause,
    pvs_of_namespace,
    record,
    resume,
    resync_uid,
    settles,
    staging_pvs,
    status,
    summary,
    wait_end,
    wait_replica,
)
from .test_resync import Db, assert_primary_untouched, get, make_db, pv_of, resync

pytestmark = pytest.mark.e2e


@settles
def assert_claim_kept(cluster: KubeSim, db: Db, before: Any, i: int) -> None:
    """Replica ``i``'s claims (its pod may be gone) are the same objects on the same volumes,
    with the same data and reclaim policy."""
    for v in db.volumes:
        b = before[(i, v)]
        claim = get_or_none(cluster, "pvc", "-n", db.ns, b.claim)
        assert claim is not None, f"{b.claim} was deleted"
        assert claim["metadata"]["uid"] == b.claim_uid, f"{b.claim} was recreated"
        assert not claim["metadata"].get("deletionTimestamp"), f"{b.claim} is being deleted"
        assert claim["spec"].get("volumeName") == b.pv
        assert get(cluster, "pv", b.pv)["spec"]["persistentVolumeReclaimPolicy"] == b.policy
        assert cluster.volume_digest(b.pv) == b.digest


def assert_primary_volumes_untouched(cluster: KubeSim, db: Db) -> None:
    """The primary's claims, volumes and data (its pod may be gone with its StatefulSet)."""
    for v in db.volumes:
        st = db.primary_state[v]
        claim = get(cluster, "pvc", "-n", db.ns, db.claim(v, db.primary))
        assert claim["metadata"]["uid"] == st["claim_uid"]
        assert get(cluster, "pv", st["pv"])["spec"] == st["pv_spec"], "the primary's volume was modified"
        assert cluster.volume_digest(st["pv"]) == st["digest"], "the primary's data changed"


# -- the StatefulSet is scaled ---------------------------------------------------------------
def test_scale_down_mid_run_never_deletes_the_removed_replicas_claims(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    """pg-1 is mid-swap when the StatefulSet is scaled from 4 to 2: pg-2 and pg-3 go. Their claims
    and data are never touched; pg-1 runs on its data or the copy; the resync fails with
    TargetScaledDown."""
    db = make_db(cluster, ns, replicas=4, primary=0)
    before = record(cluster, db)
    pause(cluster, "statefulset")  # holds pg-1 in Verifying: its pod is not recreated
    try:
        resync(cluster, db, maxParallel=1)
        # Four replicas staged two at a time before pg-1's swap: generous on a loaded machine.
        wait_replica(cluster, ns, "pg-1", ("Verifying",), timeout=180)
        cluster.kubectl("scale", "statefulset", "-n", ns, "pg", "--replicas=2")
    finally:
        resume(cluster, "statefulset")
    out = wait_end(cluster, ns, timeout=150)
    st = out["status"]
    cond = failed(st)
    assert cond["reason"] == "TargetScaledDown", summary(st)
    assert "pg-2" in cond["message"] and "pg-3" in cond["message"], cond["message"]
    on = assert_runs_on_good_data(cluster, db, before, 1)
    assert_old_data_kept(cluster, db, before, 1, verified=on == {"data": "copy"})
    for i in (2, 3):
        assert_claim_kept(cluster, db, before, i)
    assert_no_prebound(cluster, ns)
    assert_no_temporaries(cluster, ns)
    assert_primary_untouched(cluster, db)


def test_scale_up_mid_run_completes_and_names_the_new_pods(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    """A pod added during the run was not resynced: the resync completes (the replicas it knew
    are done) with reason NewPodsNotResynced naming the new pod, which is left alone."""
    db = make_db(cluster, ns, replicas=3, primary=1)
    resync(cluster, db, maxParallel=1)
    wait_for(lambda: status(cluster, ns).get("replicas"), 60, "the replicas recorded")
    cluster.kubectl("scale", "statefulset", "-n", ns, "pg", "--replicas=4")
    wait_for(lambda: get_or_none(cluster, "pvc", "-n", ns, "data-pg-3"), 60, "pg-3's claim")
    new_claim = get(cluster, "pvc", "-n", ns, "data-pg-3")["metadata"]["uid"]
    out = wait_end(cluster, ns, timeout=150)
    st = out["status"]
    assert st["phase"] == "Completed", summary(st)
    complete = conds(st)["Complete"]
    assert complete["status"] == "True" and complete["reason"] == "NewPodsNotResynced", summary(st)
    assert "pg-3" in complete["message"]
    assert st["progress"] == "2/2"
    for i in (0, 2):
        assert (
            cluster.volume_digest(pv_of(cluster, ns, db.claim("data", i)))
            == db.primary_state["data"]["digest"]
        )
    assert_kept_old_volumes(cluster, db, resync_uid(cluster, ns), [0, 2])
    assert get(cluster, "pvc", "-n", ns, "data-pg-3")["metadata"]["uid"] == new_claim
    assert "pg-3" not in {r["name"] for r in st["replicas"]}
    assert_no_prebound(cluster, ns)
    assert_no_temporaries(cluster, ns)
    assert_primary_untouched(cluster, db)


# -- the StatefulSet is deleted --------------------------------------------------------------
def test_target_deleted_mid_swap_loses_nothing(cluster: KubeSim, operator: Operator, ns: str) -> None:
    """``kubectl delete statefulset`` while pg-0 is out of service for its swap. The resync fails
    with TargetDeleted, and nothing is lost: recreating the StatefulSet brings every pod back on
    its own data or the copy."""
    db = make_db(cluster, ns, replicas=3, primary=1)
    before = record(cluster, db)
    pause(cluster, "statefulset")
    try:
        resync(cluster, db, maxParallel=1)
        wait_replica(cluster, ns, "pg-0", ("Verifying",))
        cluster.kubectl("delete", "statefulset", "-n", ns, "pg", "--wait=false")
    finally:
        resume(cluster, "statefulset")
    out = wait_end(cluster, ns, timeout=150)
    st = out["status"]
    assert failed(st)["reason"] == "TargetDeleted", summary(st)
    wait_for(lambda: not get(cluster, "pod", "-n", ns)["items"], 60, "the pods to go")
    assert_primary_volumes_untouched(cluster, db)
    assert_claim_kept(cluster, db, before, 2)

    # A volume left pre-bound to pg-0's claim (the swap in flight, ready to be finished) is fine
    # if it holds pg-0's data or the copy, and is kept (Retain). (pg-2's copy, made ahead and never
    # swapped, is being discarded meanwhile: the check waits for the cleanup to settle.)
    @settles
    def only_pg0_prebound() -> None:
        for pv in pvs_of_namespace(cluster, ns):
            if not pv["spec"]["claimRef"].get("uid"):
                assert pv["spec"]["claimRef"]["name"] == "data-pg-0", pv["spec"]["claimRef"]
                assert holds(cluster, db, before, 0, "data", pv["metadata"]["name"]), (
                    "pre-bound to the wrong data"
                )
                assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"

    only_pg0_prebound()
    assert_no_temporaries(cluster, ns)
    # The user recreates the StatefulSet: every pod comes back on good data.
    apply(cluster, ns, statefulset("pg", 3))
    on = assert_runs_on_good_data(cluster, db, before, 0)
    assert_old_data_kept(cluster, db, before, 0, verified=on == {"data": "copy"})
    assert assert_runs_on_good_data(cluster, db, before, 2) == {"data": "own"}
    assert_primary_volumes_untouched(cluster, db)


# -- the namespace is deleted ----------------------------------------------------------------
def test_namespace_deleted_mid_swap_finishes_deleting(cluster: KubeSim, operator: Operator, ns: str) -> None:
    """``kubectl delete namespace`` while a replica is mid-swap: the namespace goes within a
    bounded time (the finalizer does not hold it forever), and no PV is left pre-bound to a claim
    of the deleted namespace, where any claim of that name in a new namespace of the same name
    could take it."""
    db = make_db(cluster, ns, replicas=3, primary=1)
    pause(cluster, "statefulset")
    seen: set[str] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            st = status(cluster, ns)
            seen.update(f"{t}:{c.get('reason')}" for t, c in conds(st).items() if c.get("status") == "True")
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        resync(cluster, db, maxParallel=1)
        wait_replica(cluster, ns, "pg-0", ("Verifying",))
        watcher.start()
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
    finally:
        resume(cluster, "statefulset")
    try:
        wait_for(
            lambda: cluster.kubectl("get", "namespace", ns, check=False).returncode != 0,
            90,
            f"namespace {ns} to be deleted",
        )
    finally:
        stop.set()
        watcher.join(10)
    failures = {s for s in seen if s.startswith("Failed:")}
    assert failures <= {"Failed:NamespaceTerminating"}, seen
    assert_no_prebound(cluster, ns)
    assert [
        p["metadata"]["name"]
        for p in pvs_of_namespace(cluster, ns)
        if p["status"].get("phase") == "Available"
    ] == []


# -- two resyncs whose old generated names collide -------------------------------------------
def test_two_resyncs_with_colliding_names_each_copy_their_own_primary(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    """ClusterResync ``pg`` of StatefulSet ``main-db`` and ``pg-main`` of ``db``, at once, in one
    namespace: ``crs-<resync>-<replica>-<volume>`` named both staging claims of ordinal 0
    ``crs-pg-main-db-0-data``. Each replica must end with its own primary's data."""
    dbs = {
        "pg": make_db(cluster, ns, name="main-db", replicas=3, primary=1),
        "pg-main": make_db(cluster, ns, name="db", replicas=3, primary=1),
    }
    for db in dbs.values():  # the two primaries hold different data
        pv = db.primary_state["data"]["pv"]
        cluster.write_volume_file(pv, "owner", f"primary of {db.name}\n")
        db.primary_state["data"]["digest"] = cluster.volume_digest(pv)
    hooks = {"restore": {"image": "busybox:1.36", "command": ["sh", "-c", "exit 0"]}}
    # Both restores of ordinal 0 in flight at once: no staging claim is provisioned until then.
    pause(cluster, "csi-provisioner")
    try:
        for name, db in dbs.items():
            resync(cluster, db, name=name, hooks=hooks)
        for name, db in dbs.items():
            wait_replica(cluster, ns, db.pod(0), ("Restoring",), name=name)
    finally:
        resume(cluster, "csi-provisioner")
    ends = {name: wait_end(cluster, ns, name, timeout=180)["status"] for name in dbs}

    def owner(db: Db, i: int) -> str:
        """Whose data replica ``i`` of ``db`` runs on: a primary's copy says so in ``owner``."""
        f = cluster.volume_path(pv_of(cluster, ns, db.claim("data", i))) / "owner"
        return f.read_text().strip() if f.exists() else "its own stale data"

    holding = {db.pod(i): owner(db, i) for db in dbs.values() for i in (0, 2)}
    assert holding == {db.pod(i): f"primary of {db.name}" for db in dbs.values() for i in (0, 2)}, (
        f"what each replica holds: {holding}; {'; '.join(f'{n}: {summary(st)}' for n, st in ends.items())}"
    )
    for name, db in dbs.items():
        assert ends[name]["phase"] == "Completed", f"{name}: {summary(ends[name])}"
        for i in (0, 2):
            assert (
                cluster.volume_digest(pv_of(cluster, ns, db.claim("data", i)))
                == db.primary_state["data"]["digest"]
            )
        assert_kept_old_volumes(cluster, db, resync_uid(cluster, ns, name), [0, 2], name=name)
        assert_primary_untouched(cluster, db)
    assert_no_prebound(cluster, ns)
    assert_no_temporaries(cluster, ns)


# -- the status is wiped ---------------------------------------------------------------------
def test_status_removed_mid_swap_is_rebuilt_from_labelled_objects(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    """The status (the operator's memory) is removed while pg-0 is Verifying. The operator
    rebuilds its tracking from the objects it labelled: it finishes pg-0 (not a second resync of
    it), then pg-2, ends Completed 2/2, and never has two replicas out of service at once."""
    db = make_db(cluster, ns, replicas=3, primary=1)
    uid_before: str | None = None
    with Sampler(cluster, ns, ["pg-0", "pg-2"]) as sampler:
        pause(cluster, "statefulset")
        try:
            resync(cluster, db, maxParallel=1)
            uid_before = resync_uid(cluster, ns)
            wait_replica(cluster, ns, "pg-0", ("Verifying",))
            cluster.kubectl(
                "patch",
                "crsync",
                "-n",
                ns,
                "rs",
                "--subresource=status",
                "--type=merge",
                "-p",
                '{"status":null}',
            )
            # The operator must face the empty status while pg-0 is still out of service.
            wait_for(lambda: status(cluster, ns).get("phase"), 60, "a rebuilt status")
        finally:
            resume(cluster, "statefulset")
        out = wait_end(cluster, ns, timeout=180)
    st = out["status"]
    assert st["phase"] == "Completed", summary(st)
    assert st["progress"] == "2/2", summary(st)
    assert sampler.peak, "the sampler never saw a replica out of service"
    assert len(sampler.peak) <= 1, f"replicas out of service at once: {sampler.peak}"
    for i in (0, 2):
        assert (
            cluster.volume_digest(pv_of(cluster, ns, db.claim("data", i)))
            == db.primary_state["data"]["digest"]
        )
    assert uid_before is not None
    assert_kept_old_volumes(cluster, db, uid_before, [0, 2])
    assert_no_prebound(cluster, ns)
    assert_no_temporaries(cluster, ns)
    assert_primary_untouched(cluster, db)


# -- NameConflict ----------------------------------------------------------------------------
def test_object_with_a_generated_name_that_is_not_ours_is_never_adopted(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    """While the operator is down, its VolumeSnapshot is replaced by another one of the same
    name, of a replica's claim (stale data). The operator must not adopt it (restoring it would
    copy stale data into every replica) nor delete it: NameConflict, nothing touched."""
    db = make_db(cluster, ns, replicas=3, primary=1)
    before = record(cluster, db)
    pause(cluster, "csi-snapshotter")  # the snapshot is never cut: the resync waits in Snapshotting
    try:
        resync(cluster, db)
        snap = wait_for(
            lambda: next(iter(get(cluster, "volumesnapshot", "-n", ns)["items"]), None), 60, "the snapshot"
        )
        name = snap["metadata"]["name"]
        operator.kill(signal.SIGKILL)
    finally:
        resume(cluster, "csi-snapshotter")
    try:
        cluster.kubectl("delete", "volumesnapshot", "-n", ns, name, "--timeout=60s")
        apply(
            cluster,
            ns,
            {
                "apiVersion": "snapshot.storage.k8s.io/v1",
                "kind": "VolumeSnapshot",
                "metadata": {"name": name, "labels": {"app": "backup"}},
                "spec": {
                    "volumeSnapshotClassName": "csi-kubesim-snapclass",
                    "source": {"persistentVolumeClaimName": "data-pg-0"},
                },
            },
        )
        wait_for(
            lambda: (get(cluster, "volumesnapshot", "-n", ns, name).get("status") or {}).get("readyToUse"),
            60,
            "the foreign snapshot ready",
        )
        foreign_uid = get(cluster, "volumesnapshot", "-n", ns, name)["metadata"]["uid"]
    finally:
        operator.start()
    out = wait_end(cluster, ns, timeout=90)
    cond = failed(out["status"])
    assert cond["reason"] == "NameConflict", summary(out["status"])
    assert name in cond["message"]
    snap = get(cluster, "volumesnapshot", "-n", ns, name)
    assert snap["metadata"]["uid"] == foreign_uid, "the foreign snapshot was deleted"
    assert LABEL_UID not in (snap["metadata"].get("labels") or {}) and not snap["metadata"].get(
        "ownerReferences"
    )
    for i in (0, 2):
        assert_untouched(cluster, db, before, i)
    assert_no_prebound(cluster, ns)
    assert_no_temporaries(cluster, ns, keep_snapshots=(name,))
    assert_primary_untouched(cluster, db)


# -- Pod Security: restricted ----------------------------------------------------------------
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "fsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """What the Pod Security Standards' restricted profile (latest) refuses in a pod spec."""
    out = []
    psc = spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(key)
    for vol in spec.get("volumes") or []:
        kinds = set(vol) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            out.append(f"volume {vol['name']}: {kinds}")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        sc = c.get("securityContext") or {}
        name = c.get("name")
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation != false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{name}: capabilities.drop lacks ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: capabilities.add {caps['add']}")
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            out.append(f"{name}: runAsNonRoot != true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile {seccomp}")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            out.append(f"{name}: hostPort")
    return out


def test_restore_hook_in_a_restricted_namespace(cluster: KubeSim, operator: Operator, ns: str) -> None:
    """The namespace enforces the restricted Pod Security profile, and the StatefulSet's pods
    comply. The restore Job's pods must comply too, or they are refused and the resync cannot
    work in such a namespace."""
    cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    sts = statefulset("pg", 2)
    sts["spec"]["template"]["spec"]["securityContext"] = dict(RESTRICTED_POD)
    sts["spec"]["template"]["spec"]["containers"][0]["securityContext"] = dict(RESTRICTED_CONTAINER)
    assert restricted_violations(sts["spec"]["template"]["spec"]) == []
    db = make_db_of(cluster, ns, sts, primary=0)
    gate = "/var/lib/data/.go-" + uuid.uuid4().hex[:6]
    resync(
        cluster,
        db,
        hooks={
            "restore": {
                "image": "busybox:1.36",
                "command": [
                    "sh",
                    "-c",
                    f"while [ ! -e {gate} ]; do sleep 0.1; done; rm -f {gate}; "
                    "echo standby > /var/lib/data/standby.signal",
                ],
                "timeoutSeconds": 300,
            }
        },
    )

    def job() -> dict[str, Any] | None:
        jobs = get(cluster, "job", "-n", ns, "-l", f"{LABEL_REPLICA}=pg-1")["items"]
        return jobs[0] if jobs else None

    try:
        violations = restricted_violations(wait_for(job, 90, "the restore Job")["spec"]["template"]["spec"])
    finally:
        with contextlib.suppress(AssertionError, OSError):
            pvs = wait_for(lambda: staging_pvs(cluster, ns, "pg-1"), 30, "the staging volume")
            cluster.write_volume_file(pvs[0], gate.removeprefix("/var/lib/data/"), "")
    assert violations == [], f"the restore Job's pods violate the restricted profile: {violations}"
    out = wait_end(cluster, ns, timeout=120)
    assert out["status"]["phase"] == "Completed", summary(out["status"])
    pv = pv_of(cluster, ns, db.claim("data", 1))
    assert cluster.read_volume_file(pv, "standby.signal").decode() == "standby\n"
    assert cluster.read_volume_file(pv, "state").decode() == "primary data\n"
    assert_no_temporaries(cluster, ns)
    assert_primary_untouched(cluster, db)
