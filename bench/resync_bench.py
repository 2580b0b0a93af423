"""`make bench`: how long replicas are out of service during a ClusterResync, and how long it takes.

One kubesim cluster, copy throughput set to model real storage (``--throughput``, MiB/s per copy),
the manifests applied with kubectl and the real operator process running as its ServiceAccount,
all through the end-to-end helpers of tests/e2e. Two measurements:

(a) Replica downtime against volume size. A StatefulSet whose primary holds ``--small-mib`` and
    then ``--large-mib`` of data is resynced with maxParallel 1; a thread polls the pods every
    ``--poll`` seconds and, per replica, measures the time from the pod stopping being Ready (or
    disappearing, or terminating) to its recreated pod being Ready. The restore copy runs before
    the swap, so the downtime should not grow with the size: large/small under 1.2.

(b) Total resync time of 4 replicas (a 5-pod StatefulSet) with maxParallel 1 and 4. With 4 in
    parallel the whole resync should take about as long as one replica's resync does.

Timings are printed with PASS/CHECK next to the expectation but never fail the run (machines are
noisy); the exit status is non-zero only if a resync fails, times out or leaves a replica whose
data differs from the primary's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kubernetes import client, config  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

from kubesim.cluster import ClusterConfig  # noqa: E402
from kubesim.testing import KubeSim  # noqa: E402
from tests.e2e.conftest import Operator  # noqa: E402
from tests.e2e.test_resync import Db, make_db, pv_of, resync, wait_done  # noqa: E402

MiB = 1 << 20
RESYNC = "rs"
# The replica phases in the order the operator walks them (models.ReplicaPhase).
STAGED_PHASES = ("Detaching", "Swapping", "Verifying", "Finishing", "Completed")


class BenchError(Exception):
    """A resync failed, timed out or produced wrong data: the only way this script exits non-zero."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


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
            # Never seen down: not swapped, or swapped between two polls (downtime < --poll).
            return 0.0 if self.back_at is None else None
        if self.back_at is None or self.down_since is not None:
            return None
        return self.back_at - self.first_down


class Sampler(threading.Thread):
    """Polls the StatefulSet's pods and the ClusterResync every ``interval`` seconds."""

    def __init__(self, api: client.ApiClient, db: Db, interval: float) -> None:
        super().__init__(name=f"sampler-{db.ns}", daemon=True)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.db = db
        self.interval = interval
        self.pods = {db.pod(i): PodTrack(db.pod(i)) for i in range(db.replicas)}
        self.phase_at: dict[str, float] = {}
        self.replica_phase_at: dict[str, dict[str, float]] = {}
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

    def sample(self) -> None:
        resp = self.core.list_namespaced_pod(
            self.db.ns, label_selector=f"app={self.db.name}", _preload_content=False
        )
        t = time.monotonic()
        pods = {p["metadata"]["name"]: p for p in json.loads(resp.data)["items"]}
        down = sum(0 if track.observe(t, pods.get(name)) else 1 for name, track in self.pods.items())
        self.peak_down = max(self.peak_down, down)
        self.samples += 1
        self.first_sample.set()
        try:
            obj = self.custom.get_namespaced_custom_object(
                "clusterresync.io", "v1alpha1", self.db.ns, "clusterresyncs", RESYNC
            )
        except ApiException as e:
            if e.status == 404:
                return
            raise
        t = time.monotonic()
        status = obj.get("status") or {}
        phase = status.get("phase")
        if phase:
            self.phase_at.setdefault(phase, t)
        for r in status.get("replicas") or []:
            self.replica_phase_at.setdefault(r["name"], {}).setdefault(r["phase"], t)
        if phase in ("Completed", "Failed"):
            self.finished.set()


@dataclass
class Result:
    label: str
    db: Db
    max_parallel: int
    mib: int
    total: float
    pods: dict[str, PodTrack]
    replica_phase_at: dict[str, dict[str, float]]
    t0: float
    peak_down: int

    def replicas(self) -> list[str]:
        return [self.db.pod(i) for i in range(self.db.replicas) if i != self.db.primary]

    def downtimes(self) -> list[float | None]:
        return [self.pods[n].downtime for n in self.replicas()]

    def staging(self, name: str) -> float | None:
        """Restoring (the copy into the staging claim) until the next phase was first seen."""
        at = self.replica_phase_at.get(name, {})
        later = [at[p] for p in STAGED_PHASES if p in at]
        return min(later) - at["Restoring"] if "Restoring" in at and later else None

    def replica_time(self, name: str) -> float | None:
        at = self.replica_phase_at.get(name, {})
        return at["Completed"] - at["Restoring"] if "Restoring" in at and "Completed" in at else None

    def first_replica_done(self) -> float | None:
        done = [at["Completed"] for at in self.replica_phase_at.values() if "Completed" in at]
        return min(done) - self.t0 if done else None


# -- setup -----------------------------------------------------------------------------------
def fill(cluster: KubeSim, pv: str, mib: int) -> None:
    """Write ``mib`` MiB into the volume's directory (a repeated random block: not sparse)."""
    target = cluster.volume_path(pv) / "bench" / "fill.bin"
    target.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(MiB)
    with target.open("wb") as f:
        for _ in range(mib):
            f.write(block)


def build(cluster: KubeSim, ns: str, pods: int, mib: int) -> tuple[Db, str]:
    """A ``pods``-pod StatefulSet (primary at ordinal 0, stale replicas) whose primary holds ``mib`` MiB."""
    cluster.kubectl("create", "namespace", ns)
    db = make_db(cluster, ns, name="db", replicas=pods, primary=0)
    pv = pv_of(cluster, ns, db.claim("data", db.primary))
    fill(cluster, pv, mib)
    return db, cluster.volume_digest(pv)


def run_resync(
    cluster: KubeSim,
    api: client.ApiClient,
    db: Db,
    digest: str,
    *,
    label: str,
    mib: int,
    max_parallel: int,
    args: argparse.Namespace,
) -> Result:
    sampler = Sampler(api, db, args.poll)
    sampler.start()
    if not sampler.first_sample.wait(15):
        sampler.stop()
        raise BenchError(f"{label}: cannot list the pods of {db.ns}/{db.name}")
    t0 = time.monotonic()
    # Copies made ahead of the swaps: at least as many as may be swapped at once (the default, 2,
    # for maxParallel 1), so that maxParallel alone is what the runs compare.
    resync(cluster, db, RESYNC, maxParallel=max_parallel, maxParallelCopies=max(2, max_parallel))
    sampler.finished.wait(args.timeout)
    try:
        # Returns at once when the sampler saw the end; otherwise polls until the timeout.
        obj = wait_done(cluster, db.ns, RESYNC, timeout=max(5.0, args.timeout - (time.monotonic() - t0)))
    except AssertionError as e:
        raise BenchError(f"{label}: {e}") from None
    finally:
        sampler.stop()
    status = obj.get("status") or {}
    if status.get("phase") != "Completed":
        conds = "; ".join(
            f"{c['type']}={c['reason']}: {c.get('message', '')}" for c in status.get("conditions", [])
        )
        raise BenchError(f"{label}: the resync ended {status.get('phase')}: {conds}")
    end = sampler.phase_at.get("Completed", time.monotonic())
    result = Result(
        label, db, max_parallel, mib, end - t0, sampler.pods, sampler.replica_phase_at, t0, sampler.peak_down
    )
    for name in result.replicas():
        i = int(name.rsplit("-", 1)[1])
        if cluster.volume_digest(pv_of(cluster, db.ns, db.claim("data", i))) != digest:
            raise BenchError(f"{label}: {name}'s data differs from the primary's after the resync")
    if sampler.errors:
        log(f"{label}: {sampler.errors} of {sampler.samples + sampler.errors} polls failed (ignored)")
    log(f"{label}: Completed in {result.total:.1f}s, downtime {fmt_list(result.downtimes())}")
    return result


# -- report ----------------------------------------------------------------------------------
def fmt(x: float | None, unit: str = "s", digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}{unit}"


def fmt_list(xs: list[float | None]) -> str:
    return " ".join(fmt(x) for x in xs)


def mean(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.fmean(vals) if vals and len(vals) == len(xs) else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "CHECK (timing only; noisy machines)")


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join(
        ("  " + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))).rstrip() for line in lines
    )


def report(args: argparse.Namespace, small: Result, large: Result, seq: Result, par: Result) -> None:
    thr = args.throughput
    print()
    print(
        f"ClusterResync on kubesim, copy throughput {thr:g} MiB/s per copy, pods polled every {args.poll * 1000:.0f} ms"
    )
    print()
    print(
        f"(a) Replica downtime vs volume size: {small.db.replicas}-pod StatefulSet "
        f"({small.db.replicas - 1} replicas), maxParallel 1"
    )
    print("    downtime = pod not Ready, terminating or absent, until its recreated pod is Ready")
    rows = []
    for r in (small, large):
        names = r.replicas()
        rows.append(
            [
                f"{r.mib} MiB",
                fmt(r.mib / thr if thr else None),
                fmt(mean([r.staging(n) for n in names])),
                ", ".join(fmt(d) for d in r.downtimes()),
                fmt(mean(r.downtimes())),
                fmt(r.pods[r.db.pod(r.db.primary)].downtime),
                fmt(r.total, digits=1),
            ]
        )
    print(
        table(
            [
                "volume",
                "copy (model)",
                "staging (mean)",
                "downtime per replica",
                "downtime (mean)",
                "primary down",
                "resync total",
            ],
            rows,
        )
    )
    d_small, d_large = mean(small.downtimes()), mean(large.downtimes())
    ra = ratio(d_large, d_small)
    # A difference below one poll interval is below what the polling can resolve.
    within = None if d_small is None or d_large is None else d_large - d_small < args.poll
    print(
        f"  ratio downtime {large.mib} MiB / {small.mib} MiB: {fmt(ra, '', 2)}   "
        f"expected < 1.2 (the copy happens before the swap; a difference under the {args.poll * 1000:.0f} ms "
        f"poll also counts)   {verdict(None if ra is None else ra < 1.2 or bool(within))}"
    )
    print()
    print(
        f"(b) Total resync time, {seq.db.replicas - 1} replicas ({seq.db.replicas}-pod StatefulSet), "
        f"{seq.mib} MiB volumes"
    )
    rows = []
    for r in (seq, par):
        times = [r.replica_time(n) for n in r.replicas()]
        rows.append(
            [
                str(r.max_parallel),
                fmt(r.total, digits=1),
                fmt(r.first_replica_done(), digits=1),
                fmt(mean(times), digits=1),
                fmt(mean(r.downtimes())),
                str(r.peak_down),
            ]
        )
    print(
        table(
            [
                "maxParallel",
                "resync total",
                "first replica done",
                "per replica (mean)",
                "downtime (mean)",
                "peak replicas down",
            ],
            rows,
        )
    )
    rb = ratio(par.total, seq.total)
    n = seq.db.replicas - 1
    print(
        f"  ratio total maxParallel {par.max_parallel} / maxParallel {seq.max_parallel}: {fmt(rb, '', 2)}   "
        f"expected well under 1 (about 1/{n} plus the fixed preflight and snapshot time)   "
        f"{verdict(None if rb is None else rb < 0.6)}"
    )
    one = seq.first_replica_done()
    rp = ratio(par.total, one)
    print(
        f"  maxParallel {par.max_parallel} total / one replica's resync "
        f"(maxParallel 1 run, start to its first replica done, {fmt(one, digits=1)}): {fmt(rp, '', 2)}   "
        f"expected close to 1 (< 1.5)   {verdict(None if rp is None else rp < 1.5)}"
    )


# -- main ------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--throughput",
        type=float,
        default=64.0,
        help="kubesim copy throughput in MiB/s per snapshot or restore copy; 0 = disk speed (default 64)",
    )
    p.add_argument("--small-mib", type=int, default=1, help="(a) small volume, MiB (default 1)")
    p.add_argument("--large-mib", type=int, default=256, help="(a) large volume, MiB (default 256)")
    p.add_argument("--downtime-pods", type=int, default=4, help="(a) StatefulSet size (default 4)")
    p.add_argument("--parallel-mib", type=int, default=256, help="(b) volume size, MiB (default 256)")
    p.add_argument("--parallel-pods", type=int, default=5, help="(b) StatefulSet size (default 5)")
    p.add_argument("--poll", type=float, default=0.05, help="pod polling interval, seconds (default 0.05)")
    p.add_argument("--timeout", type=float, default=180.0, help="per resync, seconds (default 180)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    throughput = args.throughput * MiB if args.throughput > 0 else None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clusterresync-bench-") as work:
        log(f"starting kubesim (copy throughput {args.throughput:g} MiB/s)")
        with KubeSim(config=ClusterConfig(copy_throughput_bytes_per_s=throughput)) as cluster:
            cluster.kubectl("apply", "-k", str(ROOT / "manifests"))
            sa = cluster.service_account_kubeconfig("clusterresync-system", "clusterresync-operator")
            operator = Operator(sa, Path(work) / "operator.log")
            operator.start()
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
            try:
                results: list[Result] = []
                plan = [
                    ("a-small", args.downtime_pods, args.small_mib, 1),
                    ("a-large", args.downtime_pods, args.large_mib, 1),
                    ("b-seq", args.parallel_pods, args.parallel_mib, 1),
                    ("b-par", args.parallel_pods, args.parallel_mib, args.parallel_pods - 1),
                ]
                for key, pods, mib, max_parallel in plan:
                    label = f"{key} ({mib} MiB, {pods} pods, maxParallel {max_parallel})"
                    log(f"{label}: building the StatefulSet")
                    db, digest = build(cluster, f"bench-{key}", pods, mib)
                    log(f"{label}: resyncing")
                    results.append(
                        run_resync(
                            cluster,
                            api,
                            db,
                            digest,
                            label=label,
                            mib=mib,
                            max_parallel=max_parallel,
                            args=args,
                        )
                    )
            except BenchError as e:
                log(f"FAILED: {e}")
                tail = "\n".join(operator.output().splitlines()[-30:])
                print(f"operator log, last lines:\n{tail}", file=sys.stderr)
                return 1
            finally:
                api.close()
                operator.stop()
    report(args, *results)
    print(f"\n(benchmark wall time {time.monotonic() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
