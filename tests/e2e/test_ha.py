"""High availability end to end: two operator processes at once, on kubesim, as the ServiceAccount.

Both run the real Kopf; only the holder of the Lease clusterresync-system/clusterresync-operator
acts. Every test records the resync's status as the API server publishes it (``kubectl get -w``)
and checks that it never goes backwards, whatever happens to the processes:

- both running: one acts, the other does nothing; the resync completes with equal data;
- the leader SIGKILLed mid-resync: the other takes over within lease duration + margin;
- the leader SIGTERMed: it releases the Lease, the other takes over at once;
- the leader SIGSTOPped (mid-request) past its lease, then SIGCONTed: its stale pass is refused,
  it does not act again, the other finishes;
- the namespaced install (Roles only in the served namespace) runs a resync to the end.

Timings (lease 4 s, renew deadline 3 s, retry 0.5 s) come from conftest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesim.testing import KubeSim, kubectl_binary

from .conftest import LEASE_DURATION, RETRY_PERIOD, Operator, free_port, wait_for
from .test_resync import (
    OPERATOR_USER,
    assert_primary_untouched,
    assert_resynced,
    get,
    make_db,
    resync,
    wait_done,
)

pytestmark = pytest.mark.e2e

LEASE = ("clusterresync-system", "clusterresync-operator")
# A candidate retries every retry period jittered by up to x2.2 (client-go's JitterUntil): a
# takeover comes at most that long after the lease expires, plus the test's polling.
TAKEOVER_BOUND = LEASE_DURATION + 2.2 * RETRY_PERIOD + 3.0

PHASE_RANK = {"Pending": 0, "Preflight": 1, "Snapshotting": 2, "Resyncing": 3, "Completed": 4, "Failed": 4}
REPLICA_RANK = {
    "Pending": 0,
    "Restoring": 1,
    "Detaching": 2,
    "Swapping": 3,
    "Verifying": 4,
    "RollingBack": 5,
    "Finishing": 5,
    "Completed": 6,
    "Failed": 6,
}
# What an acting operator logs (reconcile.py); a standby, or a leader that lost the lease, never does.
ACTING = {"created", "already exists", "patched", "deleted", "nothing to delete", "phase", "replica phase"}
ACTING |= {"running hook", "event"}


# -- helpers ---------------------------------------------------------------------------------------
class StatusLog:
    """Every version of a ClusterResync, as ``kubectl get -w -o json`` (a watch) receives it."""

    def __init__(self, cluster: KubeSim, ns: str, name: str = "rs") -> None:
        env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
        self.proc = subprocess.Popen(
            [kubectl_binary(), "get", "crsync", name, "-n", ns, "-w", "-o", "json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.versions: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        decoder = json.JSONDecoder()
        buf = ""
        for line in self.proc.stdout:
            buf += line
            while True:
                stripped = buf.lstrip()
                if not stripped:
                    buf = ""
                    break
                try:
                    obj, end = decoder.raw_decode(stripped)
                except ValueError:
                    break
                self.versions.append(obj)
                buf = stripped[end:]

    def stop(self) -> list[dict[str, Any]]:
        time.sleep(0.5)  # the last events
        self.proc.terminate()
        self.proc.wait(10)
        self._thread.join(5)
        return self.versions

    def statuses(self) -> list[dict[str, Any]]:
        return [v.get("status") or {} for v in self.versions]


def assert_never_backwards(statuses: list[dict[str, Any]]) -> None:
    """Phase, every replica's phase, progress and hooksDone only ever move forward."""
    assert statuses, "no status recorded"
    phase, replicas, progress, hooks = -1, dict[str, int](), -1, set[str]()
    for i, st in enumerate(statuses):
        where = f"version {i} of {len(statuses)}: {st.get('phase')} {[(r['name'], r['phase']) for r in st.get('replicas', [])]}"
        if "phase" in st:
            rank = PHASE_RANK[st["phase"]]
            assert rank >= phase, f"phase went backwards at {where}"
            phase = rank
        for r in st.get("replicas") or []:
            rank = REPLICA_RANK[r["phase"]]
            assert rank >= replicas.get(r["name"], -1), f"replica {r['name']} went backwards at {where}"
            replicas[r["name"]] = rank
        if st.get("progress"):
            done = int(st["progress"].split("/")[0])
            assert done >= progress, f"progress went backwards at {where}"
            progress = done
        now_hooks = set(st.get("hooksDone") or [])
        assert now_hooks >= hooks, f"hooksDone shrank at {where}"
        hooks = now_hooks


def lease_holder(cluster: KubeSim) -> str:
    out = cluster.kubectl("get", "lease", "-n", LEASE[0], LEASE[1], "-o", "json", check=False)
    if out.returncode != 0:
        return ""
    return str(json.loads(out.stdout).get("spec", {}).get("holderIdentity") or "")


def wait_holder(cluster: KubeSim, identity: str, timeout: float) -> float:
    """Seconds until ``identity`` holds the lease."""
    t0 = time.monotonic()
    wait_for(lambda: lease_holder(cluster) == identity, timeout, f"{identity} to hold the lease")
    return time.monotonic() - t0


def acting(op: Operator, after: int = 0) -> list[dict[str, Any]]:
    """The operator's log records that show it acting, written after byte ``after`` of its log."""
    text = op.log.read_bytes()[after:].decode(errors="replace")
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") in ACTING:
                out.append(rec)
    return out


def health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        out: dict[str, Any] = json.load(r)
        return out


def replica_phase_reached(cluster: KubeSim, ns: str, phases: set[str]) -> bool:
    st = get(cluster, "crsync", "-n", ns, "rs").get("status", {})
    return any(r["phase"] in phases for r in st.get("replicas", []))


def events_by_reason(cluster: KubeSim, ns: str) -> dict[str, list[str]]:
    items = get(cluster, "events", "-n", ns, "--field-selector", "involvedObject.kind=ClusterResync")["items"]
    out: dict[str, list[str]] = {}
    for e in items:
        out.setdefault(e["reason"], []).append(e["message"])
    return out


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sa_kubeconfig(cluster: KubeSim) -> Path:
    return cluster.service_account_kubeconfig("clusterresync-system", "clusterresync-operator")


@pytest.fixture
def pair(cluster: KubeSim, sa_kubeconfig: Path, tmp_path: Path) -> Iterator[tuple[Operator, Operator]]:
    """Operators "op-a" (the leader: started first) and "op-b" (the standby), with health endpoints."""
    a, b = (
        Operator(sa_kubeconfig, tmp_path / f"{n}.log", identity=f"op-{n}", health_port=free_port())
        for n in "ab"
    )
    a.start()
    try:
        # A previous test may have left the lease to a killed process: it expires first.
        wait_holder(cluster, "op-a", TAKEOVER_BOUND + 10)
        b.start()
        yield a, b
    finally:
        a.kill(signal.SIGTERM)
        b.kill(signal.SIGTERM)


# -- tests -----------------------------------------------------------------------------------------
def test_two_operators_one_acts_and_the_status_never_goes_backwards(
    cluster: KubeSim, pair: tuple[Operator, Operator], ns: str
) -> None:
    a, b = pair
    # Slow the API down a little, as in the issue ("one slowed down"): passes overlap the standby's
    # chances to interfere, if it could. (The operator reads from watch caches: its writes are slowed.)
    fid = cluster.call(
        lambda c: c.faults.add("latency", match={"verb": "patch", "user": OPERATOR_USER}, delay=0.3)
    )
    try:
        db = make_db(cluster, ns, replicas=3, primary=1)
        resync(cluster, db, hooks={"preSnapshot": {"command": ["sh", "-c", "echo checkpoint"]}})
        log = StatusLog(cluster, ns)
        t0 = time.monotonic()
        out = wait_done(cluster, ns)
        took = time.monotonic() - t0
        statuses = [*log.stop()]
    finally:
        cluster.call(lambda c: c.faults.remove(fid))
    assert out["status"]["phase"] == "Completed", (out["status"], a.output()[-3000:])
    assert_resynced(cluster, db, [0, 2])
    assert_primary_untouched(cluster, db)
    assert_never_backwards([s.get("status") or {} for s in statuses])
    assert acting(a), "the leader did nothing"
    assert acting(b) == [], f"the standby acted: {acting(b)[:5]}"
    # No double work: each replica was started and swapped once.
    ev = events_by_reason(cluster, ns)
    assert sorted(ev["ReplicaStarted"]) == ["re-provisioning pg-0", "re-provisioning pg-2"], ev
    assert len(ev["SwapStarted"]) == 2, ev
    # The health endpoints say who leads.
    assert a.health_port is not None and b.health_port is not None
    assert health(a.health_port)["leader"]["leading"] is True
    assert health(b.health_port)["leader"]["leading"] is False
    assert lease_holder(cluster) == "op-a"
    print(f"\nresync with two operators: {took:.1f}s, {len(statuses)} status versions")


def test_leader_killed_mid_resync_the_other_takes_over(
    cluster: KubeSim, pair: tuple[Operator, Operator], ns: str
) -> None:
    a, b = pair
    db = make_db(cluster, ns, replicas=3, primary=0)
    resync(cluster, db)
    log = StatusLog(cluster, ns)
    wait_for(lambda: replica_phase_reached(cluster, ns, {"Swapping", "Verifying"}), 90, "a swap")
    a.kill(signal.SIGKILL)
    took = wait_holder(cluster, "op-b", TAKEOVER_BOUND)
    out = wait_done(cluster, ns)
    statuses = log.stop()
    assert out["status"]["phase"] == "Completed", (out["status"], b.output()[-3000:])
    assert_resynced(cluster, db, [1, 2])
    assert_primary_untouched(cluster, db)
    assert_never_backwards([s.get("status") or {} for s in statuses])
    assert acting(b), "the new leader did nothing"
    lease = get(cluster, "lease", "-n", LEASE[0], LEASE[1])
    assert lease["spec"]["leaseTransitions"] >= 1
    print(f"\ntakeover after SIGKILL: {took:.1f}s (bound {TAKEOVER_BOUND:.1f}s)")


def test_leader_terminated_releases_the_lease_and_the_other_takes_over_at_once(
    cluster: KubeSim, pair: tuple[Operator, Operator], ns: str
) -> None:
    a, b = pair
    db = make_db(cluster, ns, replicas=2, primary=0)
    # Each of the operator's writes held 0.3 s, so that the run is caught mid-way.
    fid = cluster.call(
        lambda c: c.faults.add("latency", match={"verb": "patch", "user": OPERATOR_USER}, delay=0.3)
    )
    try:
        resync(cluster, db)
        log = StatusLog(cluster, ns)
        wait_for(
            lambda: replica_phase_reached(cluster, ns, {"Restoring", "Detaching"}),
            90,
            "a replica in progress",
        )
        t0 = time.monotonic()
        a.stop()  # SIGTERM, as a rolling update does
        stopped_after = time.monotonic() - t0
        took = wait_holder(cluster, "op-b", LEASE_DURATION)  # well before the lease would expire
    finally:
        cluster.call(lambda c: c.faults.remove(fid))
    out = wait_done(cluster, ns)
    statuses = log.stop()
    assert out["status"]["phase"] == "Completed", (out["status"], b.output()[-3000:])
    assert_resynced(cluster, db, [1])
    assert_never_backwards([s.get("status") or {} for s in statuses])
    assert any(r.get("event") == "released the lease" for r in a.records()), a.output()[-2000:]
    print(f"\nSIGTERM: the leader exited in {stopped_after:.1f}s, the standby led {took:.1f}s after that")


def test_leader_frozen_past_its_lease_does_not_act_when_it_wakes(
    cluster: KubeSim, pair: tuple[Operator, Operator], ns: str
) -> None:
    a, b = pair
    db = make_db(cluster, ns, replicas=3, primary=1)
    resync(cluster, db)
    log = StatusLog(cluster, ns)
    wait_for(
        lambda: replica_phase_reached(cluster, ns, {"Detaching", "Swapping", "Verifying"}),
        90,
        "a replica in progress",
    )
    # Freeze the leader in the middle of a pass: the live read of the target before its next
    # swap takes 3 s on the server (its other reads come from watch caches); once that request
    # has arrived, SIGSTOP. The answer comes while it is frozen.
    cluster.call(
        lambda c: c.faults.add(
            "latency", match={"verb": "get", "resource": "statefulsets"}, delay=3.0, count=1
        )
    )
    wait_for(lambda: not cluster.call(lambda c: c.faults.list()), 30, "the leader's slow request")
    a.pause()
    frozen_at = a.log.stat().st_size
    try:
        took = wait_holder(cluster, "op-b", TAKEOVER_BOUND)
        # Let the new leader act a little, then wake the old one well past its lease.
        time.sleep(max(0.0, LEASE_DURATION + 2 - took))
    finally:
        a.resume()
    woke = time.monotonic()
    out = wait_done(cluster, ns)
    statuses = log.stop()
    assert out["status"]["phase"] == "Completed", (out["status"], b.output()[-3000:])
    assert_resynced(cluster, db, [0, 2])
    assert_primary_untouched(cluster, db)
    assert_never_backwards([s.get("status") or {} for s in statuses])
    after = acting(a, frozen_at)
    assert after == [], f"the old leader acted after waking: {after[:5]}"
    records = [
        json.loads(x) for x in a.log.read_bytes()[frozen_at:].decode().splitlines() if x.startswith("{")
    ]
    events = [r.get("event") for r in records]
    assert "stopped leading" in events, events
    refused = [r for r in records if r.get("event") == "not the leader: waiting for leadership"]
    assert refused, f"the frozen pass was not refused: {events}"
    assert lease_holder(cluster) == "op-b"
    print(
        f"\nSIGSTOP: takeover {took:.1f}s; woke, refused its stale pass ({refused[0].get('reason')}); "
        f"the resync ended {time.monotonic() - woke:.1f}s later"
    )


def test_the_deployments_pods_are_admitted_in_the_restricted_namespace(cluster: KubeSim) -> None:
    """kubesim runs the Deployment (its pods are simulated) under the namespace's Pod Security
    label ``enforce: restricted``: pods that failed the profile would be refused."""
    ns_labels = get(cluster, "namespace", "clusterresync-system")["metadata"]["labels"]
    assert ns_labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # The label is enforced: a pod without the restricted settings is refused there.
    bad = cluster.kubectl(
        "run", "not-restricted", "-n", "clusterresync-system", "--image=x", "--dry-run=server", check=False
    )
    if "violates PodSecurity" not in bad.stderr:
        pytest.skip(f"this kubesim does not enforce Pod Security labels: {bad.stderr or bad.stdout}")

    def two_pods() -> bool:
        pods = get(
            cluster, "pods", "-n", "clusterresync-system", "-l", "app.kubernetes.io/name=clusterresync"
        )
        return len(pods["items"]) >= 2

    wait_for(two_pods, 60, "the Deployment's two pods")


def test_namespaced_install_runs_a_resync(
    cluster: KubeSim, namespaced_install: str, sa_kubeconfig: Path, tmp_path: Path
) -> None:
    ns = namespaced_install
    sa = "system:serviceaccount:clusterresync-system:clusterresync-operator"
    can = lambda *a: cluster.kubectl("auth", "can-i", *a, "--as", sa, check=False).stdout.strip()  # noqa: E731
    assert can("create", "jobs", "-n", ns) == "yes"
    assert can("create", "jobs", "-n", "kube-system") == "no"
    assert can("create", "pods/exec", "-n", "default") == "no"
    assert can("delete", "pods", "-n", "default") == "no"
    assert can("patch", "persistentvolumes") == "yes"  # cluster-scoped: necessarily cluster-wide
    assert can("get", f"namespace/{ns}", "-n", ns) == "yes"  # its own namespace object only
    assert can("get", "namespace/default", "-n", "default") == "no"
    op = Operator(sa_kubeconfig, tmp_path / "ns.log", identity="op-ns", args=[f"--namespace={ns}"])
    op.start()
    try:
        db = make_db(cluster, ns, replicas=2, primary=1)
        resync(cluster, db, hooks={"preSnapshot": {"command": ["sh", "-c", "echo checkpoint"]}})
        out = wait_done(cluster, ns)
        assert out["status"]["phase"] == "Completed", (out["status"], op.output()[-3000:])
        assert_resynced(cluster, db, [0])
        assert_primary_untouched(cluster, db)
        cluster.kubectl("delete", "crsync", "-n", ns, "rs", "--wait=false")
        wait_for(
            lambda: cluster.kubectl("get", "crsync", "-n", ns, "rs", check=False).returncode != 0,
            60,
            "the ClusterResync to go (finalizer handled)",
        )
        assert "forbidden" not in op.output().lower(), op.output()[-3000:]
    finally:
        op.stop()
