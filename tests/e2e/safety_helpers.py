"""Helpers of the "Nothing lost, whatever happens" end-to-end tests (``test_safety_*.py``).

They build on the helpers of ``test_resync.py`` (``make_db``, ``resync``, ``wait_done``, ...) and
add what the failure scenarios need: a record of every replica's data before the run, checks
that a replica is untouched or runs on a volume holding its own data or the primary's copy,
kubesim faults and paused controllers, and a sampler of replicas out of service.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kubesim.testing import KubeSim

from .conftest import statefulset, wait_for
from .test_resync import Db, get, make_db_of, pv_of

OPERATOR_USER = "system:serviceaccount:clusterresync-system:clusterresync-operator"
LABEL_RESYNC = "clusterresync.io/resync"
LABEL_UID = "clusterresync.io/resync-uid"
LABEL_REPLICA = "clusterresync.io/replica"
LABEL_VOLUME = "clusterresync.io/volume"
LABEL_ROLE = "clusterresync.io/volume-role"
DONE = ("Completed", "Failed")
SETTLE = 30.0


F = TypeVar("F", bound=Callable[..., Any])


def settles(fn: F) -> F:
    """An end-state check that is retried for up to SETTLE seconds: the status may say Completed
    or Failed while the cleanup it planned (written before it is done) is still running."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + SETTLE
        while True:
            try:
                return fn(*args, **kwargs)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    return wrapper  # type: ignore[return-value]


# -- the ClusterResync ------------------------------------------------------------------------
def crsync(cluster: KubeSim, ns: str, name: str = "rs") -> dict[str, Any] | None:
    out = cluster.kubectl("get", "crsync", "-n", ns, name, "-o", "json", check=False)
    if out.returncode != 0:
        if "NotFound" in out.stderr or "not found" in out.stderr:
            return None
        raise AssertionError(out.stderr)
    obj: dict[str, Any] = json.loads(out.stdout)
    return obj


def status(cluster: KubeSim, ns: str, name: str = "rs") -> dict[str, Any]:
    obj = crsync(cluster, ns, name)
    return (obj or {}).get("status") or {}


def conds(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in st.get("conditions") or []}


def failed(st: dict[str, Any]) -> dict[str, Any]:
    """The Failed condition, which must be True."""
    c = conds(st).get("Failed")
    assert c is not None and c["status"] == "True", f"not Failed: {summary(st)}"
    return c


def replica_status(st: dict[str, Any], pod: str) -> dict[str, Any]:
    return next((r for r in st.get("replicas") or [] if r.get("name") == pod), {})


def summary(st: dict[str, Any]) -> str:
    """The phase, conditions and replicas of a status, in one line, for failure messages."""
    cs = "; ".join(
        f"{c['type']}={c['status']} {c.get('reason')}: {c.get('message')}" for c in st.get("conditions") or []
    )
    rs = ", ".join(f"{r.get('name')}={r.get('phase')} ({r.get('message')})" for r in st.get("replicas") or [])
    return f"phase={st.get('phase')} progress={st.get('progress')} [{cs}] replicas: {rs}"


def wait_end(cluster: KubeSim, ns: str, name: str = "rs", timeout: float = 120) -> dict[str, Any]:
    """Wait until the resync is Completed or Failed and return it; on timeout, fail with its last status."""
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        obj = crsync(cluster, ns, name)
        st = (obj or {}).get("status") or {}
        if obj is not None and st.get("phase") in DONE:
            return obj
        time.sleep(0.2)
    raise AssertionError(f"ClusterResync {name} did not finish within {timeout}s: {summary(st)}")


def wait_replica(
    cluster: KubeSim, ns: str, pod: str, phases: tuple[str, ...], name: str = "rs", timeout: float = 90
) -> dict[str, Any]:
    """Wait until the status shows replica ``pod`` in one of ``phases``; return the status."""

    def reached() -> dict[str, Any] | None:
        st = status(cluster, ns, name)
        if replica_status(st, pod).get("phase") in phases:
            return st
        if st.get("phase") in DONE:
            raise AssertionError(f"{name} ended before {pod} reached {phases}: {summary(st)}")
        return None

    try:
        out: dict[str, Any] = wait_for(reached, timeout, f"{pod} in {phases}")
    except AssertionError as e:
        # Say where the resync was, so that a timeout on a loaded machine can be told from a stall.
        raise AssertionError(f"{e}; the status then: {summary(status(cluster, ns, name))}") from None
    return out


def wait_gone(cluster: KubeSim, ns: str, name: str = "rs", timeout: float = 120) -> None:
    wait_for(lambda: crsync(cluster, ns, name) is None, timeout, f"ClusterResync {name} to go")


def resync_uid(cluster: KubeSim, ns: str, name: str = "rs") -> str:
    obj = crsync(cluster, ns, name)
    assert obj is not None
    return str(obj["metadata"]["uid"])


def events(cluster: KubeSim, ns: str, name: str = "rs") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get(
        cluster,
        "events",
        "-n",
        ns,
        "--field-selector",
        f"involvedObject.kind=ClusterResync,involvedObject.name={name}",
    )["items"]
    return items


def event_messages(cluster: KubeSim, ns: str, reason: str, name: str = "rs") -> list[str]:
    return [str(e.get("message", "")) for e in events(cluster, ns, name) if e.get("reason") == reason]


def assert_never_swapped(cluster: KubeSim, ns: str, pod: str, name: str = "rs") -> None:
    """No Event says ``pod`` went out of service (``SwapStarted``). Its copy may have been made
    ahead (``ReplicaStarted``: copies do not wait for swaps), never swapped in."""
    msgs = [
        m for m in event_messages(cluster, ns, "SwapStarted", name) if re.search(rf"\b{re.escape(pod)}\b", m)
    ]
    assert msgs == [], f"{pod} was swapped: {msgs}"


# -- kubesim faults and controllers -----------------------------------------------------------
def add_fault(cluster: KubeSim, kind: str, **kw: Any) -> str:
    fid: str = cluster.call(lambda c: c.faults.add(kind, **kw))
    return fid


def remove_fault(cluster: KubeSim, fid: str) -> None:
    cluster.call(lambda c: c.faults.remove(fid))


def pause(cluster: KubeSim, *controllers: str) -> None:
    for name in controllers:
        cluster.call(lambda c, n=name: c.controller(n).pause())  # type: ignore[misc]


def resume(cluster: KubeSim, *controllers: str) -> None:
    for name in controllers:
        cluster.call(lambda c, n=name: c.controller(n).resume())  # type: ignore[misc]


# -- what each replica holds ------------------------------------------------------------------
@dataclass(frozen=True)
class Vol:
    """A replica's volume before the run."""

    claim: str
    claim_uid: str
    pv: str
    policy: str
    digest: str
    pod_uid: str


def record(cluster: KubeSim, db: Db, ordinals: list[int] | None = None) -> dict[tuple[int, str], Vol]:
    """Claim, PV, reclaim policy, data digest and pod uid of every replica volume, now."""
    out = {}
    for i in ordinals if ordinals is not None else range(db.replicas):
        if i == db.primary:
            continue
        pod_uid = get(cluster, "pod", "-n", db.ns, db.pod(i))["metadata"]["uid"]
        for v in db.volumes:
            claim = get(cluster, "pvc", "-n", db.ns, db.claim(v, i))
            pv = get(cluster, "pv", claim["spec"]["volumeName"])
            out[(i, v)] = Vol(
                claim=db.claim(v, i),
                claim_uid=claim["metadata"]["uid"],
                pv=pv["metadata"]["name"],
                policy=pv["spec"]["persistentVolumeReclaimPolicy"],
                digest=cluster.volume_digest(pv["metadata"]["name"]),
                pod_uid=pod_uid,
            )
    return out


def pod_ready(pod: dict[str, Any] | None) -> bool:
    if not pod or pod["metadata"].get("deletionTimestamp"):
        return False
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def get_or_none(cluster: KubeSim, *args: str) -> dict[str, Any] | None:
    out = cluster.kubectl("get", *args, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    obj: dict[str, Any] = json.loads(out.stdout)
    return obj


@settles
def assert_untouched(cluster: KubeSim, db: Db, before: dict[tuple[int, str], Vol], i: int) -> None:
    """Replica ``i`` has the same pod, the same claims on the same volumes, with the same data and policy."""
    pod = get(cluster, "pod", "-n", db.ns, db.pod(i))
    for v in db.volumes:
        b = before[(i, v)]
        claim = get(cluster, "pvc", "-n", db.ns, b.claim)
        assert claim["metadata"]["uid"] == b.claim_uid, f"{b.claim} was recreated"
        assert claim["spec"].get("volumeName") == b.pv, f"{b.claim} is no longer on {b.pv}"
        pv = get(cluster, "pv", b.pv)
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == b.policy, (
            f"{b.pv}: reclaim policy {pv['spec']['persistentVolumeReclaimPolicy']}, was {b.policy}"
        )
        assert (pv["spec"].get("claimRef") or {}).get("uid") == b.claim_uid
        assert cluster.volume_digest(b.pv) == b.digest, f"{db.pod(i)} {v}: data changed"
    assert pod["metadata"]["uid"] == before[(i, db.volumes[0])].pod_uid, f"{db.pod(i)} was deleted"


def holds(
    cluster: KubeSim, db: Db, before: dict[tuple[int, str], Vol], i: int, v: str, pv: str
) -> str | None:
    """'own' if PV ``pv`` holds replica ``i``'s data of volume ``v``, 'copy' if the primary's, else None."""
    digest = cluster.volume_digest(pv)
    if digest == before[(i, v)].digest:
        return "own"
    if digest == db.primary_state[v]["digest"]:
        return "copy"
    return None


def assert_runs_on_good_data(
    cluster: KubeSim, db: Db, before: dict[tuple[int, str], Vol], i: int, timeout: float = 90
) -> dict[str, str]:
    """Replica ``i`` is Running and Ready, each claim Bound to a volume holding its own data or the
    primary's copy (never an empty or foreign volume). Returns volume -> 'own' | 'copy'."""
    wait_for(
        lambda: pod_ready(get_or_none(cluster, "pod", "-n", db.ns, db.pod(i))),
        timeout,
        f"{db.pod(i)} Running and Ready",
    )
    out = {}
    for v in db.volumes:
        pv = pv_of(cluster, db.ns, db.claim(v, i))
        what = holds(cluster, db, before, i, v, pv)
        assert what is not None, f"{db.pod(i)} runs on {pv}, which holds neither its data nor the copy"
        out[v] = what
    return out


def pvs_of_namespace(cluster: KubeSim, ns: str) -> list[dict[str, Any]]:
    return [
        p for p in get(cluster, "pv")["items"] if (p["spec"].get("claimRef") or {}).get("namespace") == ns
    ]


@settles
def assert_no_prebound(cluster: KubeSim, ns: str) -> None:
    """No PV is left pre-bound (a claimRef naming a claim of ``ns`` without a uid)."""
    left = [
        f"{p['metadata']['name']} -> {p['spec']['claimRef'].get('name')} ({p['status'].get('phase')})"
        for p in pvs_of_namespace(cluster, ns)
        if not p["spec"]["claimRef"].get("uid")
    ]
    assert left == [], f"PVs left pre-bound: {left}"


@settles
def assert_no_temporaries(cluster: KubeSim, ns: str, keep_snapshots: tuple[str, ...] = ()) -> None:
    """No snapshot, Job or staging claim of the operator is left in ``ns``."""
    snaps = [
        s["metadata"]["name"]
        for s in get(cluster, "volumesnapshot", "-n", ns)["items"]
        if s["metadata"]["name"] not in keep_snapshots
    ]
    assert snaps == [], f"snapshots left: {snaps}"
    jobs = [j["metadata"]["name"] for j in get(cluster, "job", "-n", ns)["items"]]
    assert jobs == [], f"Jobs left: {jobs}"
    staging = [
        c["metadata"]["name"]
        for c in get(cluster, "pvc", "-n", ns)["items"]
        if c["spec"].get("dataSource")
        or c["spec"].get("dataSourceRef")
        or LABEL_UID in (c["metadata"].get("labels") or {})
        or LABEL_RESYNC in (c["metadata"].get("labels") or {})
    ]
    assert staging == [], f"staging claims left: {staging}"


def assert_temporaries_labelled(cluster: KubeSim, ns: str, uid: str, name: str = "rs") -> None:
    """Every snapshot, Job and staging claim in ``ns`` carries the resync's identity labels, so
    that ``kubectl get volumesnapshot,pvc,job -l clusterresync.io/resync-uid=<uid>`` finds them."""
    objs = get(cluster, "volumesnapshot", "-n", ns)["items"] + get(cluster, "job", "-n", ns)["items"]
    objs += [c for c in get(cluster, "pvc", "-n", ns)["items"] if c["spec"].get("dataSource")]
    for o in objs:
        labels = o["metadata"].get("labels") or {}
        assert labels.get(LABEL_UID) == uid and labels.get(LABEL_RESYNC) == name, (
            f"{o['kind']} {o['metadata']['name']}: labels {labels}"
        )


@settles
def assert_old_data_kept(
    cluster: KubeSim, db: Db, before: dict[tuple[int, str], Vol], i: int, verified: bool = False
) -> None:
    """Nothing lost: replica ``i``'s old volume still exists with its data, and unless it is the
    volume the replica's claim is bound to it has reclaim policy Retain (``verified``: the replica
    was verified on a copy, so with ``oldVolumes: Retain`` its old PV is Released and Retain too)."""
    for v in db.volumes:
        b = before[(i, v)]
        pv = get_or_none(cluster, "pv", b.pv)
        assert pv is not None, f"{db.pod(i)}'s old volume {b.pv} is gone"
        claim = get_or_none(cluster, "pvc", "-n", db.ns, b.claim) or {}
        bound_here = (claim.get("spec") or {}).get("volumeName") == b.pv
        if not bound_here or verified:
            assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain", (
                f"{b.pv} holds {db.pod(i)}'s only old data but has policy "
                f"{pv['spec']['persistentVolumeReclaimPolicy']}"
            )
        assert cluster.read_volume_file(b.pv, "state").decode() == f"stale {v} of replica {i}\n"


@settles
def assert_no_delete_unless_verified(
    cluster: KubeSim, db: Db, before: dict[tuple[int, str], Vol], i: int, st: dict[str, Any]
) -> None:
    """No PV of replica ``i`` (its old volume, its copies) has reclaim policy Delete unless the
    replica was verified on the new one: then only the volume its claim is bound to may."""
    pod = db.pod(i)
    names = {before[(i, v)].pv for v in db.volumes}
    for vol in replica_status(st, pod).get("volumes") or []:
        if vol.get("newPv"):
            names.add(vol["newPv"])
    for p in get(cluster, "pv", "-l", f"{LABEL_REPLICA}={pod}")["items"]:
        if (p["spec"].get("claimRef") or {}).get("namespace") == db.ns:
            names.add(p["metadata"]["name"])
    bound = {str(pv_of(cluster, db.ns, db.claim(v, i))) for v in db.volumes}
    verified = st.get("phase") == "Completed" and replica_status(st, pod).get("phase") == "Completed"
    for name in sorted(names):
        pv = get_or_none(cluster, "pv", name)
        if pv is None or pv["spec"]["persistentVolumeReclaimPolicy"] != "Delete":
            continue
        assert verified and name in bound and name not in {before[(i, v)].pv for v in db.volumes}, (
            f"{name} of {pod} has reclaim policy Delete, though {pod} was not verified on it: {summary(st)}"
        )


@settles
def assert_kept_old_volumes(
    cluster: KubeSim, db: Db, uid: str, ordinals: list[int], name: str = "rs"
) -> None:
    """After a success: each replica's old PV is Released, Retain, labelled, with its data."""
    listed = get(cluster, "pv", "-l", f"{LABEL_RESYNC}={name}")["items"]
    mine = [p for p in listed if (p["spec"].get("claimRef") or {}).get("namespace") == db.ns]
    for i in ordinals:
        for v in db.volumes:
            olds = [
                p
                for p in mine
                if p["metadata"]["labels"].get(LABEL_REPLICA) == db.pod(i)
                and p["metadata"]["labels"].get(LABEL_VOLUME) == v
                and p["metadata"]["labels"].get(LABEL_ROLE) == "old"
            ]
            assert len(olds) == 1, f"old volumes of {db.pod(i)} {v}: {[p['metadata']['name'] for p in olds]}"
            old = olds[0]
            assert old["metadata"]["labels"].get(LABEL_UID) == uid
            assert old["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
            assert old["status"]["phase"] == "Released"
            assert cluster.read_volume_file(old["metadata"]["name"], "state").decode() == (
                f"stale {v} of replica {i}\n"
            )


# -- replicas out of service ------------------------------------------------------------------
def not_ready(cluster: KubeSim, ns: str, pods: list[str]) -> list[str]:
    """Pods among ``pods`` that are missing, being deleted or not Ready (read from kubesim's store)."""

    def read(c: Any) -> list[str]:
        out = []
        for name in pods:
            pod = c.api.store.peek("/pods", ns, name)
            if not pod_ready(pod):
                out.append(name)
        return out

    result: list[str] = cluster.call(read)
    return result


class Sampler:
    """Samples, in a thread, how many of ``pods`` are out of service at once."""

    def __init__(self, cluster: KubeSim, ns: str, pods: list[str], interval: float = 0.05) -> None:
        self.cluster, self.ns, self.pods, self.interval = cluster, ns, pods, interval
        self.peak: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            down = not_ready(self.cluster, self.ns, self.pods)
            if len(down) > len(self.peak):
                self.peak = down
            time.sleep(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


# -- StatefulSets whose pods run processes with a readiness probe -----------------------------
def probed_statefulset(name: str, replicas: int, **pod_spec: Any) -> dict[str, Any]:
    """Pods that run ``sleep`` as a real process and are Ready only while their data volume holds
    ``ok-<pod name>``: the replicas' own volumes have it, a copy of the primary does not."""
    sts = statefulset(name, replicas)
    tmpl = sts["spec"]["template"]
    tmpl["metadata"]["annotations"] = {"kubesim.io/process": "true"}
    ctr = tmpl["spec"]["containers"][0]
    ctr["command"] = ["sh", "-c", "exec sleep 100000"]
    ctr["readinessProbe"] = {
        "exec": {"command": ["sh", "-c", 'test -e "/var/lib/data/ok-$HOSTNAME"']},
        "periodSeconds": 1,
    }
    tmpl["spec"]["terminationGracePeriodSeconds"] = 1
    tmpl["spec"].update(pod_spec)
    return sts


def make_probed_db(cluster: KubeSim, ns: str, name: str = "pg", replicas: int = 3, primary: int = 1) -> Db:
    """``make_db_of`` of a ``probed_statefulset``: each volume holds ``ok-<its pod>``."""
    return make_db_of(cluster, ns, probed_statefulset(name, replicas), primary, ok_files=True)


def staging_pvs(cluster: KubeSim, ns: str, pod: str) -> list[str]:
    """The PVs of the Bound staging claims (claims with a data source) the operator made for ``pod``."""
    out = []
    for c in get(cluster, "pvc", "-n", ns, "-l", f"{LABEL_REPLICA}={pod}")["items"]:
        if (c["spec"].get("dataSource") or c["spec"].get("dataSourceRef")) and c["status"].get(
            "phase"
        ) == "Bound":
            out.append(str(c["spec"]["volumeName"]))
    return out
