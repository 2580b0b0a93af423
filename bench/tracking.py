"""What the benchmark observes while one ClusterResync runs, by polling the API as the admin.

A ``Sampler`` thread polls, every ``interval`` seconds, the target StatefulSet's pods (per pod:
when it went out of service and when its recreated pod was back), the ClusterResync (when each
phase and each replica phase was first seen), and, every ``storage_every``-th sample, the
namespace's VolumeSnapshots and claims (when each snapshot was first seen and first readyToUse,
when each claim restored from a snapshot was first seen and first Bound: the storage's own copy
times, free of the operator's reaction time).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.e2e.test_resync import Db

RESYNC = "rs"
GROUP, VERSION = "clusterresync.io", "v1alpha1"
SNAPSHOT_GROUP = "snapshot.storage.k8s.io"
# The replica phases that follow Restoring, in the order the operator walks them (models.ReplicaPhase).
STAGED_PHASES = ("Detaching", "Swapping", "Verifying", "Finishing", "Completed")


def pod_up(pod: dict[str, Any] | None) -> bool:
    """In service: exists, not terminating, Running and Ready (as the operator's planner.pod_ready)."""
    if not pod or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    return ready and status.get("phase") == "Running"


@dataclass
class PodTrack:
    """One pod's service record while a resync runs."""

    name: str
    orig_uid: str | None = None
    first_down: float | None = None  # first sample where it was not in service
    back_at: float | None = None  # first sample where a pod with a new uid was in service
    down_since: float | None = None
    outages: list[tuple[float, float]] = field(default_factory=list)

    def observe(self, t: float, pod: dict[str, Any] | None) -> bool:
        up = pod_up(pod)
        uid = (pod or {}).get("metadata", {}).get("uid")
        if up and self.orig_uid is None:
            self.orig_uid = uid
        if not up:
            if self.down_since is None:
                self.down_since = t
            if self.first_down is None:
                self.first_down = t
        else:
            if self.down_since is not None:
                self.outages.append((self.down_since, t))
                self.down_since = None
            if uid != self.orig_uid and self.back_at is None:
                self.back_at = t
        return up

    @property
    def downtime(self) -> float | None:
        """Not Ready (or absent) until the recreated pod is Ready; 0 if it never went down."""
        if self.first_down is None:
            # Never seen down: not swapped, or swapped between two polls (downtime < the poll interval).
            return 0.0 if self.back_at is None else None
        if self.back_at is None or self.down_since is not None:
            return None
        return self.back_at - self.first_down


@dataclass
class CopyTrack:
    """A storage copy seen by polling: a VolumeSnapshot (until readyToUse) or a claim restored from
    one (until Bound). Times are ``time.monotonic()`` of the first sample that showed each state."""

    name: str
    seen: float
    done: float | None = None

    @property
    def duration(self) -> float | None:
        return None if self.done is None else self.done - self.seen


class Sampler(threading.Thread):
    """Polls the StatefulSet's pods, the ClusterResync and the namespace's storage objects."""

    def __init__(self, api: client.ApiClient, db: Db, interval: float, storage_every: int = 2) -> None:
        super().__init__(name=f"sampler-{db.ns}", daemon=True)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.db = db
        self.interval = interval
        self.storage_every = max(1, storage_every)
        self.pods = {db.pod(i): PodTrack(db.pod(i)) for i in range(db.replicas)}
        self.phase_at: dict[str, float] = {}  # monotonic
        self.phase_wall: dict[str, float] = {}  # time.time(), to compare with audit timestamps
        self.replica_phase_at: dict[str, dict[str, float]] = {}
        self.snapshots: dict[str, CopyTrack] = {}  # by uid
        self.restores: dict[str, CopyTrack] = {}  # by uid
        self.peak_down = 0
        self.errors = 0
        self.samples = 0
        self.first_sample = threading.Event()
        self.finished = threading.Event()
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def run(self) -> None:
        while not self._halt.is_set():
            started = time.monotonic()
            try:
                self.sample()
            except Exception:
                self.errors += 1
            self._halt.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _list(self, fn: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        resp = fn(*args, _preload_content=False, **kwargs)
        items: list[dict[str, Any]] = json.loads(resp.data)["items"]
        return items

    def sample(self) -> None:
        ns = self.db.ns
        pods = {
            p["metadata"]["name"]: p
            for p in self._list(self.core.list_namespaced_pod, ns, label_selector=f"app={self.db.name}")
        }
        t = time.monotonic()
        down = sum(0 if track.observe(t, pods.get(name)) else 1 for name, track in self.pods.items())
        self.peak_down = max(self.peak_down, down)
        if self.samples % self.storage_every == 0:
            self.sample_storage()
        self.samples += 1
        self.first_sample.set()
        self.sample_resync()

    def sample_storage(self) -> None:
        ns = self.db.ns
        snaps = self._list(
            self.custom.list_namespaced_custom_object, SNAPSHOT_GROUP, "v1", ns, "volumesnapshots"
        )
        claims = self._list(self.core.list_namespaced_persistent_volume_claim, ns)
        t = time.monotonic()
        for s in snaps:
            track = self.snapshots.setdefault(s["metadata"]["uid"], CopyTrack(s["metadata"]["name"], t))
            if track.done is None and (s.get("status") or {}).get("readyToUse"):
                track.done = t
        present = set()
        for c in claims:
            source = (c.get("spec") or {}).get("dataSource") or {}
            if source.get("kind") != "VolumeSnapshot":
                continue
            present.add(c["metadata"]["uid"])
            track = self.restores.setdefault(c["metadata"]["uid"], CopyTrack(c["metadata"]["name"], t))
            if track.done is None and (c.get("status") or {}).get("phase") == "Bound":
                track.done = t
        # A staging claim can be bound and deleted by the operator (which deletes it only once
        # Bound, to detach the copy) between two polls: then it is done when first seen gone.
        for uid, track in self.restores.items():
            if track.done is None and uid not in present:
                track.done = t

    def sample_resync(self) -> None:
        try:
            obj: Any = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.db.ns, "clusterresyncs", RESYNC
            )
        except ApiException as e:
            if e.status == 404:
                return
            raise
        t, wall = time.monotonic(), time.time()
        status = obj.get("status") or {}
        phase = status.get("phase")
        if phase:
            self.phase_at.setdefault(phase, t)
            self.phase_wall.setdefault(phase, wall)
        for r in status.get("replicas") or []:
            self.replica_phase_at.setdefault(r["name"], {}).setdefault(r["phase"], t)
        if phase in ("Completed", "Failed"):
            self.finished.set()


def mean(xs: list[float | None]) -> float | None:
    """The mean, or None if any value is missing (a partial mean would hide a failed measurement)."""
    vals = [x for x in xs if x is not None]
    return statistics.fmean(vals) if vals and len(vals) == len(xs) else None


@dataclass
class Result:
    """One resync run: what the Sampler saw, and its time window on the wall clock."""

    key: str
    label: str
    db: Db
    max_parallel: int
    mib: int
    total: float | None  # kubectl apply to phase Completed; None if it did not end in time
    sampler: Sampler
    t0: float  # monotonic, just before kubectl apply
    start_wall: float  # time.time(), just before kubectl apply
    end_wall: float  # time.time(): phase Completed first seen (or when the run was cut short)
    timed_out: bool = False
    sts_ready: float | None = None  # kubectl apply of its StatefulSet until all pods Ready

    @property
    def pods(self) -> dict[str, PodTrack]:
        return self.sampler.pods

    def replicas(self) -> list[str]:
        return [self.db.pod(i) for i in range(self.db.replicas) if i != self.db.primary]

    def downtimes(self) -> list[float | None]:
        return [self.pods[n].downtime for n in self.replicas()]

    def restoring(self, name: str) -> float | None:
        """Replica phase Restoring until the next phase was first seen."""
        at = self.sampler.replica_phase_at.get(name, {})
        later = [at[p] for p in STAGED_PHASES if p in at]
        return min(later) - at["Restoring"] if "Restoring" in at and later else None

    def restoring_mean(self) -> float | None:
        return mean([self.restoring(n) for n in self.replicas()])

    def replica_time(self, name: str) -> float | None:
        at = self.sampler.replica_phase_at.get(name, {})
        return at["Completed"] - at["Restoring"] if "Restoring" in at and "Completed" in at else None

    def first_replica_done(self) -> float | None:
        done = [at["Completed"] for at in self.sampler.replica_phase_at.values() if "Completed" in at]
        return min(done) - self.t0 if done else None

    def snapshot_copy(self) -> float | None:
        """VolumeSnapshot first seen until first seen readyToUse (the first snapshot, if several)."""
        tracks = sorted(self.sampler.snapshots.values(), key=lambda s: s.seen)
        return tracks[0].duration if tracks else None

    def restore_copies(self) -> list[float | None]:
        """Per claim restored from the snapshot: first seen until first seen Bound."""
        return [c.duration for c in sorted(self.sampler.restores.values(), key=lambda c: c.seen)]
