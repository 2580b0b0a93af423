"""The operator, end to end on kubesim: the real process, the real Kopf, kubectl-applied objects.

Each test builds a StatefulSet whose replicas hold stale data, applies a ClusterResync with
kubectl and checks what a user cares about: the replicas' data equals the primary's at snapshot
time, the primary is untouched, the old volumes are kept, and the status says what happened.
"""

from __future__ import annotations

import json
import re
import signal
import time
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from kubesim.testing import KubeSim

from .conftest import Operator, apply, statefulset, wait_for

OPERATOR_USER = "system:serviceaccount:clusterresync-system:clusterresync-operator"

pytestmark = pytest.mark.e2e


@dataclass
class Db:
    ns: str
    name: str
    replicas: int
    primary: int
    volumes: tuple[str, ...]
    primary_state: dict[str, Any]

    def pod(self, i: int) -> str:
        return f"{self.name}-{i}"

    def claim(self, volume: str, i: int) -> str:
        return f"{volume}-{self.name}-{i}"


def get(cluster: KubeSim, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def pv_of(cluster: KubeSim, ns: str, claim: str) -> str:
    c = get(cluster, "pvc", "-n", ns, claim)
    assert c["status"]["phase"] == "Bound", c["status"]
    return str(c["spec"]["volumeName"])


def make_db_of(
    cluster: KubeSim, ns: str, sts: dict[str, Any], primary: int = 1, ok_files: bool = False
) -> Db:
    """A StatefulSet whose replicas hold stale data: ``stale <v> of replica <i>`` on the replicas'
    claim-template volumes, ``primary <v>`` on the primary's (labelled role=primary); with
    ``ok_files`` each volume also holds ``ok-<its pod>`` (for readiness probes that look for it).
    The files are written before the pods must be Ready, so a probe may depend on them."""
    apply(cluster, ns, sts)
    name, replicas = sts["metadata"]["name"], int(sts["spec"]["replicas"])
    volumes = tuple(t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"])
    claims = [f"{v}-{name}-{i}" for i in range(replicas) for v in volumes]

    def bound() -> bool:
        phases = {
            c["metadata"]["name"]: c["status"].get("phase") for c in get(cluster, "pvc", "-n", ns)["items"]
        }
        return all(phases.get(c) == "Bound" for c in claims)

    wait_for(bound, 60, f"claims of {name} Bound")
    for i in range(replicas):
        for v in volumes:
            pv = pv_of(cluster, ns, f"{v}-{name}-{i}")
            content = f"primary {v}\n" if i == primary else f"stale {v} of replica {i}\n"
            cluster.write_volume_file(pv, "state", content)
            cluster.write_volume_file(pv, f"dir/only-on-{i}", str(i))
            if ok_files:
                cluster.write_volume_file(pv, f"ok-{name}-{i}", "")

    def ready() -> bool:
        st = get(cluster, "statefulset", "-n", ns, name)
        return int(st.get("status", {}).get("readyReplicas", 0)) == replicas

    wait_for(ready, 60, f"StatefulSet {name} Ready")
    cluster.kubectl("label", "pod", "-n", ns, f"{name}-{primary}", "role=primary")
    state: dict[str, Any] = {}
    for v in volumes:
        claim = get(cluster, "pvc", "-n", ns, f"{v}-{name}-{primary}")
        pv = get(cluster, "pv", claim["spec"]["volumeName"])
        state[v] = {
            "claim_uid": claim["metadata"]["uid"],
            "pv": pv["metadata"]["name"],
            "pv_spec": pv["spec"],
            "digest": cluster.volume_digest(pv["metadata"]["name"]),
        }
    state["pod_uid"] = get(cluster, "pod", "-n", ns, f"{name}-{primary}")["metadata"]["uid"]
    return Db(ns, name, replicas, primary, volumes, state)


def make_db(
    cluster: KubeSim,
    ns: str,
    name: str = "pg",
    replicas: int = 3,
    primary: int = 1,
    volumes: tuple[str, ...] = ("data",),
    storage_class: str | None = None,
) -> Db:
    return make_db_of(cluster, ns, statefulset(name, replicas, volumes, storage_class), primary)


def resync(cluster: KubeSim, db: Db, name: str = "rs", **spec: Any) -> None:
    body: dict[str, Any] = {
        "apiVersion": "clusterresync.io/v1alpha1",
        "kind": "ClusterResync",
        "metadata": {"name": name},
        "spec": {
            "target": {"name": db.name},
            "primary": {"podName": db.pod(db.primary)},
            "volumes": list(db.volumes),
            "primaryStableSeconds": 0,
            **spec,
        },
    }
    apply(cluster, db.ns, body)


def wait_done(cluster: KubeSim, ns: str, name: str = "rs", timeout: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        obj = get(cluster, "crsync", "-n", ns, name)
        return obj if obj.get("status", {}).get("phase") in ("Completed", "Failed") else None

    out: dict[str, Any] = wait_for(done, timeout, f"ClusterResync {name} to finish")
    return out


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj["status"].get("conditions", [])}


def assert_primary_untouched(cluster: KubeSim, db: Db) -> None:
    pod = get(cluster, "pod", "-n", db.ns, db.pod(db.primary))
    assert pod["metadata"]["uid"] == db.primary_state["pod_uid"]
    for v in db.volumes:
        st = db.primary_state[v]
        claim = get(cluster, "pvc", "-n", db.ns, db.claim(v, db.primary))
        assert claim["metadata"]["uid"] == st["claim_uid"]
        pv = get(cluster, "pv", st["pv"])
        assert pv["spec"] == st["pv_spec"], "the primary's volume was modified"
        assert cluster.volume_digest(st["pv"]) == st["digest"], "the primary's data changed"


def assert_resynced(cluster: KubeSim, db: Db, replicas: list[int], old_volumes: str = "Retain") -> None:
    for i in replicas:
        for v in db.volumes:
            pv = pv_of(cluster, db.ns, db.claim(v, i))
            assert pv != db.primary_state[v]["pv"]
            assert cluster.volume_digest(pv) == db.primary_state[v]["digest"], (
                f"{db.pod(i)} {v} differs from the primary"
            )
    # Old volumes: kept, Released, Retain, labelled, data intact.
    listed = get(cluster, "pv", "-l", "clusterresync.io/resync")["items"]
    if old_volumes == "Retain":
        kept = {
            (
                p["metadata"]["labels"]["clusterresync.io/replica"],
                p["metadata"]["labels"]["clusterresync.io/volume"],
            ): p
            for p in listed
        }
        for i in replicas:
            for v in db.volumes:
                old = kept[(db.pod(i), v)]
                assert old["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
                assert old["status"]["phase"] == "Released"
                assert (
                    cluster.read_volume_file(old["metadata"]["name"], "state").decode()
                    == f"stale {v} of replica {i}\n"
                )


def assert_clean(cluster: KubeSim, ns: str, settle: float = 30.0) -> None:
    """No snapshot, Job or staging claim is left. The status says Completed or Failed before the
    cleanup actions of that same pass are carried out (the status is written first), so this
    waits up to ``settle`` seconds for them."""

    def leftovers() -> list[str]:
        return [
            f"{kind} {o['metadata']['name']}"
            for kind in ("volumesnapshot", "job", "pvc")
            for o in get(cluster, kind, "-n", ns)["items"]
            if kind != "pvc" or o["metadata"]["name"].startswith("crs-")
        ]

    deadline = time.monotonic() + settle
    while (left := leftovers()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], f"left behind: {left}"


# -- the happy path --------------------------------------------------------------------------
def test_happy_path_primary_not_at_ordinal_zero(cluster: KubeSim, operator: Operator, ns: str) -> None:
    db = make_db(cluster, ns, name="keycloak-db", replicas=3, primary=2)
    resync(cluster, db)
    out = wait_done(cluster, ns)
    assert out["status"]["phase"] == "Completed", (out["status"], operator.output()[-3000:])
    c = conditions(out)
    assert c["Complete"]["status"] == "True" and c["Complete"]["reason"] == "ResyncSucceeded"
    assert out["status"]["progress"] == "2/2"
    assert (out["status"]["completed"], out["status"]["total"]) == (2, 2)
    assert out["status"]["primary"]["podName"] == "keycloak-db-2"
    assert_resynced(cluster, db, [0, 1])
    assert_primary_untouched(cluster, db)
    assert_clean(cluster, ns)
    table = cluster.kubectl("get", "crsync", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "TARGET", "PRIMARY", "PHASE", "PROGRESS", "REASON", "AGE"]
    assert table[1].split()[:6] == [
        "rs",
        "keycloak-db",
        "keycloak-db-2",
        "Completed",
        "2/2",
        "ResyncSucceeded",
    ]
    wide = cluster.kubectl("get", "crsync", "-n", ns, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-2:] == ["AGE", "MESSAGE"], wide
    assert c["Complete"]["message"] in wide[1], wide
    # The retained old volumes, by the resync's name.
    old = {
        pv["metadata"]["name"]
        for pv in get(cluster, "pv", "-l", "clusterresync.io/resync=rs,clusterresync.io/volume-role=old")[
            "items"
        ]
    }
    assert {r["volumes"][0]["oldPv"] for r in out["status"]["replicas"]} <= old  # other tests' "rs" too
    events = get(cluster, "events", "-n", ns, "--field-selector", "involvedObject.kind=ClusterResync")[
        "items"
    ]
    assert {"ResyncSucceeded", "PreflightPassed"} <= {e["reason"] for e in events}


def test_ttl_seconds_after_finished_deletes_the_resync(cluster: KubeSim, operator: Operator, ns: str) -> None:
    db = make_db(cluster, ns, replicas=2, primary=0)
    resync(cluster, db, ttlSecondsAfterFinished=2)
    out = wait_done(cluster, ns)
    assert out["status"]["phase"] == "Completed", (out["status"], operator.output()[-3000:])
    wait_for(
        lambda: cluster.kubectl("get", "crsync", "-n", ns, "rs", check=False).returncode != 0,
        60,
        "the finished resync to be deleted",
    )
    assert_resynced(cluster, db, [1])
    assert_clean(cluster, ns)
    # The old volume stays, labelled with the resync's name, after the resync is gone.
    kept = get(cluster, "pv", "-l", "clusterresync.io/resync=rs,clusterresync.io/volume-role=old")["items"]
    assert out["status"]["replicas"][0]["volumes"][0]["oldPv"] in {pv["metadata"]["name"] for pv in kept}


def test_explain(cluster: KubeSim) -> None:
    out = cluster.kubectl("explain", "clusterresync.spec").stdout
    assert "primaryStableSeconds" in out and "Immutable once created" in out
    assert "maxParallel" in cluster.kubectl("explain", "crsync.spec.maxParallel").stdout


def test_dry_run_changes_nothing(cluster: KubeSim, operator: Operator, ns: str) -> None:
    db = make_db(cluster, ns, replicas=3, primary=0)
    before = {i: pv_of(cluster, ns, db.claim("data", i)) for i in range(3)}
    resync(cluster, db, dryRun=True)
    out = wait_done(cluster, ns)
    assert out["status"]["phase"] == "Completed"
    assert conditions(out)["Complete"]["reason"] == "DryRunComplete"
    assert any("snapshot" in a["action"] for a in out["status"]["plan"])
    assert {i: pv_of(cluster, ns, db.claim("data", i)) for i in range(3)} == before
    assert get(cluster, "volumesnapshot", "-n", ns)["items"] == []


def test_clone_method_and_two_volumes(cluster: KubeSim, operator: Operator, ns: str) -> None:
    db = make_db(cluster, ns, replicas=3, primary=1, volumes=("data", "wal"))
    resync(cluster, db, method="Clone")
    out = wait_done(cluster, ns)
    assert out["status"]["phase"] == "Completed", out["status"]
    assert_resynced(cluster, db, [0, 2])
    assert_primary_untouched(cluster, db)
    assert_clean(cluster, ns)


def test_restore_hook_runs_on_the_restored_volume(cluster: KubeSim, operator: Operator, ns: str) -> None:
    db = make_db(cluster, ns, replicas=2, primary=0)
    resync(
        cluster,
        db,
        hooks={
            "restore": {
                "image": "busybox:1.36",
                "command": ["sh", "-c", "echo standby > /var/lib/data/standby.signal"],
            }
        },
    )
    out = wait_done(cluster, ns)
    assert out["status"]["phase"] == "Completed", out["status"]
    pv = pv_of(cluster, ns, db.claim("data", 1))
    assert cluster.read_volume_file(pv, "standby.signal").decode() == "standby\n"
    assert cluster.read_volume_file(pv, "state").decode() == "primary data\n"
    assert_primary_untouched(cluster, db)


@pytest.mark.parametrize("max_parallel", [1, 3])
def test_max_parallel_bounds_replicas_out_of_service(
    cluster: KubeSim, operator: Operator, ns: str, max_parallel: int
) -> None:
    db = make_db(cluster, ns, replicas=4, primary=3)
    resync(cluster, db, maxParallel=max_parallel)
    peak = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        obj = get(cluster, "crsync", "-n", ns, "rs")
        st = obj.get("status", {})
        out = [r for r in st.get("replicas", []) if r["phase"] in ("Swapping", "Verifying", "RollingBack")]
        peak = max(peak, len(out))
        if st.get("phase") in ("Completed", "Failed"):
            break
        time.sleep(0.1)
    assert st["phase"] == "Completed", (
        [(r["name"], r["phase"], r.get("reason"), r.get("message")) for r in st.get("replicas", [])],
        operator.output()[-4000:],
    )
    assert 1 <= peak <= max_parallel
    assert_resynced(cluster, db, [0, 1, 2])


# -- refusals --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"target": {"name": "missing"}}, "TargetNotFound"),
        ({"primary": {"podName": "pg-7"}}, "PrimaryNotFound"),
        ({"primary": {"selector": {"matchLabels": {"app": "pg"}}}}, "MultiplePrimaries"),
        ({"primary": {"selector": {"matchLabels": {"role": "leader"}}}}, "NoPrimary"),
        ({"replicas": ["pg-9"]}, "ReplicaNotInTarget"),
        ({"volumes": ["logs"]}, "VolumeNotFound"),
        ({"volumeSnapshotClassName": "no-such-class"}, "NoSnapshotClass"),
    ],
)
def test_preflight_refusals(
    cluster: KubeSim, operator: Operator, ns: str, spec: dict[str, Any], reason: str
) -> None:
    db = make_db(cluster, ns, name="pg", replicas=2, primary=1)
    before = {i: pv_of(cluster, ns, db.claim("data", i)) for i in range(2)}
    resync(cluster, db, **spec)
    out = wait_done(cluster, ns)
    assert out["status"]["phase"] == "Failed"
    failed = conditions(out)["Failed"]
    assert failed["status"] == "True" and failed["reason"] == reason and failed["message"]
    events = get(
        cluster, "events", "-n", ns, "--field-selector", f"involvedObject.kind=ClusterResync,reason={reason}"
    )["items"]
    assert events, f"no {reason} event"
    assert {i: pv_of(cluster, ns, db.claim("data", i)) for i in range(2)} == before
    assert get(cluster, "volumesnapshot", "-n", ns)["items"] == []


def test_snapshot_unsupported_driver_is_refused(cluster: KubeSim, operator: Operator, ns: str) -> None:
    db = make_db(cluster, ns, replicas=2, primary=0, storage_class="basic")
    resync(cluster, db)
    out = wait_done(cluster, ns)
    assert conditions(out)["Failed"]["reason"] == "NoSnapshotClass"


def test_primary_not_stable_is_refused(cluster: KubeSim, operator: Operator, ns: str) -> None:
    db = make_db(cluster, ns, replicas=2, primary=0)
    # A wait shorter than the stability window is refused by the API: check once, without waiting.
    resync(cluster, db, primaryStableSeconds=3600, timeouts={"preflightSeconds": 0})
    out = wait_done(cluster, ns)
    assert conditions(out)["Failed"]["reason"] == "PrimaryNotStable"


def test_second_resync_of_the_same_target_waits(cluster: KubeSim, operator: Operator, ns: str) -> None:
    db = make_db(cluster, ns, replicas=2, primary=0)
    # "first" waits (in preflight) for its primary to be stable for an hour, until it is deleted.
    resync(cluster, db, name="first", primaryStableSeconds=3600, timeouts={"preflightSeconds": 3601})
    time.sleep(0.5)
    resync(cluster, db, name="second")

    def waiting() -> bool:
        st = get(cluster, "crsync", "-n", ns, "second").get("status", {})
        return (
            st.get("waitingFor") == "first"
            and conditions({"status": st}).get("Progressing", {}).get("reason") == "WaitingForOtherResync"
        )

    wait_for(waiting, 30, "the second resync to wait")
    cluster.kubectl("delete", "crsync", "-n", ns, "first", "--timeout=60s")
    second = wait_done(cluster, ns, "second")
    assert second["status"]["phase"] == "Completed"
    # Once it no longer waits, the field is gone from the server's status, not left behind.
    assert "waitingFor" not in second["status"], second["status"]


# -- the primary changes mid-run -------------------------------------------------------------
def test_primary_change_stops_before_next_replica(cluster: KubeSim, operator: Operator, ns: str) -> None:
    db = make_db(cluster, ns, replicas=3, primary=1)
    # The first replica is held out of service (its pod and claim are not recreated) while the
    # second one's copy, made ahead, waits for the swap slot of maxParallel 1; then the primary
    # restarts. The swap in flight is finished; the waiting copy is never swapped in.
    sts = cluster.call(lambda c: c.controller("statefulset"))
    resync(cluster, db, maxParallel=1)

    def first_out_of_service() -> bool:
        st = get(cluster, "crsync", "-n", ns, "rs").get("status", {})
        if any(r["phase"] == "Swapping" for r in st.get("replicas", [])):
            cluster.call(lambda c: sts.pause())
        return any(r["phase"] == "Verifying" for r in st.get("replicas", []))

    try:
        wait_for(first_out_of_service, 90, "the first replica out of service")
        cluster.call(lambda c: c.kubelet.crash(ns, db.pod(1)))
        time.sleep(1.0)
    finally:
        cluster.call(lambda c: sts.resume())
    out = wait_done(cluster, ns)
    assert conditions(out)["Failed"]["reason"] == "PrimaryChanged", out["status"]
    phases = {r["name"]: r["phase"] for r in out["status"]["replicas"]}
    assert sorted(phases.values()) == ["Completed", "Skipped"]
    untouched = next(n for n, p in phases.items() if p == "Skipped")
    i = int(untouched.rsplit("-", 1)[1])
    pv = pv_of(cluster, ns, db.claim("data", i))
    assert cluster.read_volume_file(pv, "state").decode() == f"stale data of replica {i}\n"
    assert get(cluster, "pv", pv)["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert_clean(cluster, ns)


# -- crashes ---------------------------------------------------------------------------------
def test_sigkill_at_every_step_ends_the_same(cluster: KubeSim, operator: Operator, ns: str) -> None:
    """Kill the operator with SIGKILL each time the resync reaches a new step, then restart it."""
    db = make_db(cluster, ns, replicas=3, primary=0)
    # The operator moves from step to step in milliseconds: each of its writes in this namespace
    # is held 0.4 s by the server, so that this loop sees (and kills at) every step.
    slow = cluster.call(
        lambda c: c.faults.add(
            "latency", match={"namespace": ns, "user": OPERATOR_USER, "verb": "patch"}, delay=0.4
        )
    )
    resync(cluster, db, maxParallel=1)
    seen: set[str] = set()
    kills = 0
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            st = get(cluster, "crsync", "-n", ns, "rs").get("status", {})
            marks = {f"phase:{st.get('phase')}"} | {
                f"{r['name']}:{r['phase']}" for r in st.get("replicas", [])
            }
            new = marks - seen
            if new:
                seen |= marks
                operator.kill(signal.SIGKILL)
                kills += 1
                operator.start()
            if st.get("phase") in ("Completed", "Failed"):
                break
            time.sleep(0.05)
    finally:
        cluster.call(lambda c: c.faults.remove(slow))
    out = wait_done(cluster, ns)
    assert out["status"]["phase"] == "Completed", out["status"]
    assert kills >= 8, f"only {kills} kills: {sorted(seen)}"
    assert_resynced(cluster, db, [1, 2])
    assert_primary_untouched(cluster, db)
    assert_clean(cluster, ns)


# -- deletion mid-run ------------------------------------------------------------------------
def test_delete_mid_swap_leaves_every_replica_with_a_volume(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    db = make_db(cluster, ns, replicas=3, primary=1)
    resync(cluster, db, maxParallel=1)

    def swapping() -> bool:
        st = get(cluster, "crsync", "-n", ns, "rs").get("status", {})
        return any(r["phase"] in ("Swapping", "Verifying") for r in st.get("replicas", []))

    wait_for(swapping, 90, "a swap")
    cluster.kubectl("delete", "crsync", "-n", ns, "rs", "--wait=false")
    wait_for(
        lambda: cluster.kubectl("get", "crsync", "-n", ns, "rs", check=False).returncode != 0,
        120,
        "the ClusterResync to go",
    )
    for i in (0, 2):
        pod = get(cluster, "pod", "-n", ns, db.pod(i))
        assert pod["status"]["phase"] == "Running"
        state = cluster.read_volume_file(pv_of(cluster, ns, db.claim("data", i)), "state").decode()
        assert state in ("primary data\n", f"stale data of replica {i}\n")
    assert_clean(cluster, ns)
    assert_primary_untouched(cluster, db)


# -- RBAC ------------------------------------------------------------------------------------
def test_rbac_gap_fails_with_forbidden(cluster: KubeSim, operator: Operator, ns: str) -> None:
    role = get(cluster, "clusterrole", "clusterresync-operator")
    try:
        trimmed = [r for r in role["rules"] if "volumesnapshots" not in r.get("resources", [])]
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=yaml.safe_dump({**role, "rules": trimmed, "metadata": {"name": "clusterresync-operator"}}),
        )
        db = make_db(cluster, ns, replicas=2, primary=0)
        resync(cluster, db)
        out = wait_done(cluster, ns)
        failed = conditions(out)["Failed"]
        assert failed["reason"] == "Forbidden"
        # The Kubernetes verb that was refused (not the HTTP method), and the resource: the
        # create, or the list of the operator's watch cache if it started after the change.
        assert re.search(
            r"not allowed to (create VolumeSnapshot|list volumesnapshots|watch volumesnapshots)",
            failed["message"],
        ), failed["message"]
    finally:
        cluster.kubectl(
            "apply", "-k", str(__import__("pathlib").Path(__file__).resolve().parents[2] / "manifests")
        )


def test_clone_without_driver_support_is_refused(cluster: KubeSim, operator: Operator, ns: str) -> None:
    db = make_db(cluster, ns, replicas=2, primary=0, storage_class="basic")
    before = pv_of(cluster, ns, db.claim("data", 1))
    resync(cluster, db, method="Clone")
    out = wait_done(cluster, ns)
    failed = conditions(out)["Failed"]
    assert failed["reason"] == "CloneNotSupported", out["status"]
    assert "clone" in failed["message"]
    assert pv_of(cluster, ns, db.claim("data", 1)) == before, "the replica was not touched"
    assert_clean(cluster, ns)
    assert_primary_untouched(cluster, db)


def test_primary_not_ready_is_refused_after_waiting(cluster: KubeSim, operator: Operator, ns: str) -> None:
    db = make_db(cluster, ns, replicas=2, primary=1)
    node = get(cluster, "pod", "-n", ns, db.pod(1))["spec"]["nodeName"]
    cluster.call(lambda c: c.set_node_ready(node, False))
    try:
        wait_for(
            lambda: (
                not any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in get(cluster, "pod", "-n", ns, db.pod(1))["status"]["conditions"]
                )
            ),
            30,
            "primary NotReady",
        )
        resync(cluster, db, timeouts={"preflightSeconds": 2})
        out = wait_done(cluster, ns)
        failed = conditions(out)["Failed"]
        assert failed["reason"] == "PrimaryNotReady" and "is not Ready" in failed["message"]
    finally:
        cluster.call(lambda c: c.set_node_ready(node, True))


# -- approval --------------------------------------------------------------------------------
def test_a_suspended_resync_touches_nothing_until_approved(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    db = make_db(cluster, ns, replicas=2, primary=1)
    before = pv_of(cluster, ns, db.claim("data", 0))
    resync(cluster, db, suspend=True)

    def suspended() -> dict[str, Any] | None:
        obj = get(cluster, "crsync", "-n", ns, "rs")
        c = conditions(obj).get("Progressing") or {} if obj.get("status") else {}
        return obj if c.get("reason") == "Suspended" else None

    obj = wait_for(suspended, 30, "Progressing/Suspended")
    assert obj["status"]["phase"] == "Pending"
    assert (
        "kubectl" in conditions(obj)["Progressing"]["message"]
        and "suspend" in conditions(obj)["Progressing"]["message"]
    )
    time.sleep(1.0)  # a daemon that ignored suspend would have snapshotted by now
    assert get(cluster, "volumesnapshots", "-n", ns)["items"] == []
    assert pv_of(cluster, ns, db.claim("data", 0)) == before
    cluster.kubectl("patch", "crsync", "rs", "-n", ns, "--type", "merge", "-p", '{"spec":{"suspend":false}}')
    out = wait_done(cluster, ns)
    assert out["status"]["phase"] == "Completed", out["status"]
    assert_resynced(cluster, db, [0])
    assert_primary_untouched(cluster, db)
