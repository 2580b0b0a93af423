"""`make bench`: ClusterResync's downtime, speed, API traffic and memory, measured in one run.

One kubesim cluster with an audit log and a copy throughput that models real storage
(``--throughput``, MiB/s per copy); the manifests applied with kubectl; the real operator process
running as its ServiceAccount; all through the end-to-end helpers of tests/e2e. Several resyncs
run one after the other, each of a fresh StatefulSet in its own namespace, while a thread polls
its pods, the ClusterResync and the namespace's snapshots and claims. The figures (bench/README.md
says how each is measured and how to read it):

1. downtime of a replica, 256 MiB volume / 1 MiB volume (4-pod StatefulSet, maxParallel 1)
2. 4 replicas of 256 MiB at maxParallel 1: total / (snapshot copy + restore copy + 4 swaps)
3. 3 replicas of 1 MiB: total / the time a 4-pod StatefulSet takes to become Ready
4. kubectl apply -> first VolumeSnapshot created (audit log)
5. operator API requests per replica resynced, and cluster-wide LISTs after start-up (audit log)
6. operator RSS during a resync with 2,000 pods, claims and PersistentVolumes in the cluster
7. the resync of (3) with 1 s of API latency on the operator's requests, against (3)

Timings get PASS or CHECK next to their goal but never fail the run (machines are noisy); the exit
status is non-zero only if a resync fails, times out, or leaves a replica whose data differs from
the primary's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kubernetes import client, config  # noqa: E402

from bench import auditstats, crowd  # noqa: E402
from bench.tracking import RESYNC, Result, Sampler, mean, pod_up  # noqa: E402
from kubesim import audit  # noqa: E402
from kubesim.cluster import ClusterConfig  # noqa: E402
from kubesim.testing import KubeSim  # noqa: E402
from tests.e2e.conftest import Operator, apply, statefulset  # noqa: E402
from tests.e2e.test_resync import Db, make_db_of, pv_of, resync, wait_done  # noqa: E402

MiB = 1 << 20
MB = 1_000_000
OPERATOR_NS, OPERATOR_SA = "clusterresync-system", "clusterresync-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"
# Leader election as deployed (client-go's defaults, the operator's own): a renewal every 2 s.
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 15, 10.0, 2.0


class BenchError(Exception):
    """A resync failed, timed out or produced wrong data: the only way this script exits non-zero."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Step:
    """One resync of a fresh ``pods``-pod StatefulSet whose primary holds ``mib`` MiB."""

    key: str
    pods: int
    mib: int
    max_parallel: int = 1

    @property
    def label(self) -> str:
        return f"{self.key} ({self.pods - 1} x {self.mib} MiB, maxParallel {self.max_parallel})"


@dataclass
class Bench:
    """Everything the steps share."""

    args: argparse.Namespace
    cluster: KubeSim
    api: client.ApiClient
    operator: Operator
    audit_log: Path


# -- setup -----------------------------------------------------------------------------------
def fill(cluster: KubeSim, pv: str, mib: int) -> None:
    """Write ``mib`` MiB into the volume's directory (a repeated random block: not sparse)."""
    target = cluster.volume_path(pv) / "bench" / "fill.bin"
    target.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(MiB)
    with target.open("wb") as f:
        for _ in range(mib):
            f.write(block)


def wait_pods_ready(api: client.ApiClient, ns: str, app: str, pods: int, poll: float, timeout: float) -> None:
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp: Any = core.list_namespaced_pod(ns, label_selector=f"app={app}", _preload_content=False)
        if sum(1 for p in json.loads(resp.data)["items"] if pod_up(p)) == pods:
            return
        time.sleep(poll)
    raise BenchError(f"the StatefulSet {ns}/{app} did not become Ready in {timeout:.0f}s")


def build(b: Bench, ns: str, pods: int, mib: int) -> tuple[Db, str, float]:
    """A ``pods``-pod StatefulSet (primary at ordinal 0, stale replicas) whose primary holds ``mib``
    MiB; also returns how long it took from ``kubectl apply`` until all its pods were Ready."""
    b.cluster.kubectl("create", "namespace", ns)
    sts = statefulset("db", pods)
    t0 = time.monotonic()
    apply(b.cluster, ns, sts)
    wait_pods_ready(b.api, ns, "db", pods, b.args.poll, 120)
    sts_ready = time.monotonic() - t0
    # make_db_of applies the same object again (unchanged), writes the stale data and labels the primary.
    db = make_db_of(b.cluster, ns, sts, primary=0)
    pv = pv_of(b.cluster, ns, db.claim("data", db.primary))
    fill(b.cluster, pv, mib)
    return db, b.cluster.volume_digest(pv), sts_ready


def time_ordered_statefulsets(b: Bench, pods: int, runs: int = 3) -> list[float]:
    """How long a ``pods``-pod StatefulSet with Kubernetes' default pod management (OrderedReady:
    each pod is started once the previous one is Ready) takes from ``kubectl apply`` until all its
    pods are Ready; ``runs`` times, each in a namespace of its own, deleted afterwards."""
    out = []
    for i in range(runs):
        ns = f"bench-sts-{i}"
        b.cluster.kubectl("create", "namespace", ns)
        sts = statefulset("db", pods)
        del sts["spec"]["podManagementPolicy"]
        t0 = time.monotonic()
        apply(b.cluster, ns, sts)
        wait_pods_ready(b.api, ns, "db", pods, b.args.poll, 120)
        out.append(time.monotonic() - t0)
        b.cluster.kubectl("delete", "namespace", ns, "--wait=false")
    return out


def wait_operator_ready(b: Bench, timeout: float = 60) -> float:
    """Until the audit log shows the operator leading (a Lease written) and watching
    ClusterResyncs, then ``--settle`` seconds more; returns that moment (time.time())."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = audit.read(b.audit_log) if b.audit_log.exists() else []
        leads = audit.select(
            events, user=OPERATOR_USER, verb=("create", "update", "patch"), resource="leases", stage=None
        )
        leads = [e for e in leads if e.get("responseStatus", {}).get("code") in (200, 201)]
        watching = audit.select(
            events, user=OPERATOR_USER, verb="watch", resource="clusterresyncs", stage="ResponseStarted"
        )
        if leads and watching:
            time.sleep(b.args.settle)
            return time.time()
        if not b.operator.running:
            break
        time.sleep(0.2)
    seen = auditstats.users(audit.read(b.audit_log)) if b.audit_log.exists() else {}
    raise BenchError(f"the operator did not become ready (users in the audit log: {dict(seen)})")


# -- one resync ------------------------------------------------------------------------------
def run_step(
    b: Bench,
    step: Step,
    *,
    timeout: float,
    soft_timeout: bool = False,
    before: Callable[[], None] | None = None,
    after_timeout: Callable[[], None] | None = None,
) -> Result:
    """Build the StatefulSet, apply the ClusterResync, wait until Completed, check every replica's
    data. With ``soft_timeout``, a resync still running after ``timeout`` is not a failure: the
    Result says timed_out, ``after_timeout`` runs (e.g. to remove a fault) and the resync is then
    waited for with ``--timeout`` and checked as any other."""
    args = b.args
    log(f"{step.label}: building the StatefulSet")
    db, digest, sts_ready = build(b, f"bench-{step.key}", step.pods, step.mib)
    if before is not None:
        before()
    sampler = Sampler(b.api, db, args.poll)
    sampler.start()
    try:
        if not sampler.first_sample.wait(15):
            raise BenchError(f"{step.label}: cannot list the pods of {db.ns}/{db.name}")
        log(f"{step.label}: resyncing")
        t0, start_wall = time.monotonic(), time.time()
        # Copies made ahead of the swaps: at least as many as may be swapped at once (the default, 2,
        # for maxParallel 1), so that maxParallel alone is what the runs compare.
        resync(
            b.cluster, db, RESYNC, maxParallel=step.max_parallel, maxParallelCopies=max(2, step.max_parallel)
        )
        finished = sampler.finished.wait(timeout)
        end_wall = sampler.phase_wall.get("Completed", time.time())
        timed_out = not finished
        if timed_out:
            if not soft_timeout:
                raise BenchError(f"{step.label}: not finished after {timeout:.0f}s")
            log(f"{step.label}: still running after {timeout:.0f}s; waiting for it to finish")
            if after_timeout is not None:
                after_timeout()
        try:
            obj = wait_done(b.cluster, db.ns, RESYNC, timeout=args.timeout)
        except AssertionError as e:
            raise BenchError(f"{step.label}: {e}") from None
    finally:
        sampler.stop()
    status = obj.get("status") or {}
    if status.get("phase") != "Completed":
        conds = "; ".join(
            f"{c['type']}={c['reason']}: {c.get('message', '')}" for c in status.get("conditions", [])
        )
        raise BenchError(f"{step.label}: the resync ended {status.get('phase')}: {conds}")
    total = None if timed_out else sampler.phase_at["Completed"] - t0
    result = Result(
        key=step.key,
        label=step.label,
        db=db,
        max_parallel=step.max_parallel,
        mib=step.mib,
        total=total,
        sampler=sampler,
        t0=t0,
        start_wall=start_wall,
        end_wall=end_wall,
        timed_out=timed_out,
        sts_ready=sts_ready,
    )
    for name in result.replicas():
        i = int(name.rsplit("-", 1)[1])
        if b.cluster.volume_digest(pv_of(b.cluster, db.ns, db.claim("data", i))) != digest:
            raise BenchError(f"{step.label}: {name}'s data differs from the primary's after the resync")
    if sampler.errors:
        log(f"{step.label}: {sampler.errors} of {sampler.samples + sampler.errors} polls failed (ignored)")
    took = f">= {timeout:.0f}s (cut short)" if total is None else f"{total:.1f}s"
    log(f"{step.label}: Completed in {took}, downtime {fmt_list(result.downtimes())}")
    return result


# -- the steps -------------------------------------------------------------------------------
@dataclass
class Crowd:
    """Figure 6's numbers."""

    count: int
    create_s: float
    bound_s: float | None
    rss_ready: int | None
    rss_before: int | None
    rss_peak: int | None
    rss_samples: int
    result: Result


def latency_step(b: Bench, step: Step) -> Result:
    """The step with ``--latency`` seconds added to every request of the operator's user (a kubesim
    ``latency`` fault matched on the user), removed when the resync ends or is cut short."""
    fault: list[str] = []

    def add() -> None:
        fault.append(
            b.cluster.call(
                lambda c: c.faults.add("latency", match={"user": OPERATOR_USER}, delay=b.args.latency)
            )
        )

    def remove() -> None:
        while fault:
            fid = fault.pop()
            b.cluster.call(lambda c, fid=fid: c.faults.remove(fid))

    try:
        return run_step(
            b, step, timeout=b.args.latency_timeout, soft_timeout=True, before=add, after_timeout=remove
        )
    finally:
        remove()


def crowd_step(b: Bench, step: Step, rss: crowd.RssSampler, rss_ready: int | None) -> Crowd:
    args = b.args
    ns = "crowd"
    rss_before = rss.now()
    log(f"creating {args.crowd} pods, claims and PersistentVolumes in {ns}")
    b.cluster.kubectl("create", "namespace", ns)
    t0 = time.monotonic()
    crowd.create_crowd(b.cluster, ns, args.crowd)
    create_s = time.monotonic() - t0
    bound = crowd.wait_bound(b.cluster, ns, args.crowd, timeout=120)
    bound_s = time.monotonic() - t0 if bound else None
    log(f"created in {create_s:.1f}s, claims Bound after {fmt(bound_s, digits=1)}")
    # The figure is memory with the objects there, not the churn of creating them: the resync
    # starts once the operator has taken in the burst of watch events (its CPU idle again).
    assert b.operator.proc is not None
    idle = crowd.wait_idle(b.operator.proc.pid, timeout=60)
    log(f"operator idle again {fmt(idle, digits=1)} after the claims were Bound")
    result = run_step(b, step, timeout=args.timeout)
    end = result.sampler.phase_at.get("Completed", time.monotonic())
    return Crowd(
        args.crowd,
        create_s,
        bound_s,
        rss_ready,
        rss_before,
        rss.peak(result.t0, end),
        rss.count(result.t0, end),
        result,
    )


# -- report ----------------------------------------------------------------------------------
def fmt(x: float | None, unit: str = "s", digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}{unit}"


def fmt_list(xs: list[float | None]) -> str:
    return " ".join(fmt(x) for x in xs)


def fmt_mb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / MB:.0f} MB"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "CHECK")


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join(
        ("  " + "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))).rstrip() for line in lines
    )


@dataclass
class Line:
    """A row of the summary."""

    figure: str
    what: str
    value: str
    goal: str
    verdict: str


def report_downtime(args: argparse.Namespace, small: Result, large: Result) -> Line:
    thr = args.throughput
    print(
        f"1. Replica downtime vs volume size: {small.db.replicas}-pod StatefulSet "
        f"({small.db.replicas - 1} replicas), maxParallel 1"
    )
    print("   downtime = pod not Ready, terminating or absent, until its recreated pod is Ready")
    rows = []
    for r in (small, large):
        rows.append(
            [
                f"{r.mib} MiB",
                fmt(r.mib / thr if thr else None),
                fmt(r.restoring_mean()),
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
                "Restoring (mean)",
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
    ok = None if ra is None else ra <= 1.2 or bool(within)
    print(
        f"   downtime {large.mib} MiB / {small.mib} MiB = {fmt(ra, '', 2)}   goal <= 1.2 (a difference under "
        f"the {args.poll * 1000:.0f} ms poll also passes)   {verdict(ok)}"
    )
    return Line("1", f"downtime {large.mib} MiB / {small.mib} MiB", fmt(ra, "", 2), "<= 1.2", verdict(ok))


def ideal(r: Result) -> tuple[float | None, float | None, float | None, float | None]:
    """Figure 2's denominator and its parts: one snapshot copy, one restore copy (the mean of the
    replicas'), and one mean swap downtime per replica."""
    snap, restore, down = r.snapshot_copy(), mean(r.restore_copies()), mean(r.downtimes())
    if snap is None or restore is None or down is None:
        return snap, restore, down, None
    return snap, restore, down, snap + restore + len(r.replicas()) * down


def report_total(args: argparse.Namespace, seq: Result, par: Result | None) -> Line:
    n = len(seq.replicas())
    print(f"2. Total resync time, {n} replicas of {seq.mib} MiB ({seq.db.replicas}-pod StatefulSet)")
    print(
        "   ideal = snapshot copy (VolumeSnapshot seen -> readyToUse) + restore copy (claim from the "
        f"snapshot seen -> Bound, mean) + {n} x swap downtime (mean)"
    )
    rows = []
    for r in [seq] if par is None else [seq, par]:
        snap, restore, down, best = ideal(r)
        rows.append(
            [
                str(r.max_parallel),
                fmt(r.total, digits=1),
                fmt(snap),
                fmt(restore),
                fmt(r.restoring_mean()),
                fmt(down),
                fmt(best, digits=1),
                fmt(ratio(r.total, best), "", 2),
                fmt(r.first_replica_done(), digits=1),
                str(r.sampler.peak_down),
            ]
        )
    print(
        table(
            [
                "maxParallel",
                "total",
                "snapshot copy",
                "restore copy",
                "Restoring (mean)",
                "downtime (mean)",
                "ideal",
                "total/ideal",
                "first replica done",
                "peak down",
            ],
            rows,
        )
    )
    copy = seq.mib / args.throughput if args.throughput else None
    print(f"   (model: one copy of {seq.mib} MiB at {args.throughput:g} MiB/s = {fmt(copy)})")
    rb = ratio(seq.total, ideal(seq)[3])
    ok = None if rb is None else rb <= 1.5
    print(f"   maxParallel 1: total / ideal = {fmt(rb, '', 2)}   goal <= 1.5   {verdict(ok)}")
    if par is not None:
        one = seq.first_replica_done()
        print(
            f"   maxParallel {par.max_parallel}: total / the maxParallel 1 run's start-to-first-replica-done "
            f"({fmt(one, digits=1)}) = {fmt(ratio(par.total, one), '', 2)}   (informational; close to 1 "
            "means the replicas ran in parallel)"
        )
    return Line(
        "2", f"{n} x {seq.mib} MiB, maxParallel 1: total / ideal", fmt(rb, "", 2), "<= 1.5", verdict(ok)
    )


def report_vs_statefulset(
    small: Result, parallel_times: list[float], ordered_times: list[float]
) -> tuple[Line, float | None]:
    n = len(small.replicas())
    sts = statistics.median(ordered_times) if ordered_times else None
    par = statistics.median(parallel_times) if parallel_times else None
    rc = ratio(small.total, sts)
    ok = None if rc is None else rc <= 3
    print(f"3. {n} replicas of {small.mib} MiB vs a StatefulSet starting (kubectl apply -> all pods Ready)")
    print(
        f"   4-pod StatefulSet, default podManagementPolicy (OrderedReady): "
        f"{', '.join(fmt(t) for t in ordered_times)} (median {fmt(sts)})"
    )
    print(
        f"   4-pod StatefulSet, podManagementPolicy Parallel (the benchmark's targets): "
        f"{', '.join(fmt(t) for t in parallel_times)} (median {fmt(par)}; informational)"
    )
    print(
        f"   resync total {fmt(small.total, digits=1)} / OrderedReady StatefulSet Ready {fmt(sts)} = "
        f"{fmt(rc, '', 2)}   goal <= 3   {verdict(ok)}"
    )
    print(
        f"   (at maxParallel 1 the replicas are swapped one after another, each a pod restart, as an "
        f"OrderedReady StatefulSet starts its pods; against the Parallel one: {fmt(ratio(small.total, par), '', 2)})"
    )
    return Line(
        "3", f"{n} x {small.mib} MiB total / 4-pod StatefulSet Ready", fmt(rc, "", 2), "<= 3", verdict(ok)
    ), sts


def report_first_snapshot(events: list[dict[str, Any]], results: list[Result]) -> Line:
    print("4. kubectl apply -> first VolumeSnapshot created (audit log: the admin's create clusterresyncs")
    print("   received -> the operator's first create volumesnapshots completed)")
    rows, worst = [], None
    for r in results:
        d = auditstats.apply_to_first_snapshot(events, OPERATOR_USER, r.db.ns)
        rows.append([r.label, fmt(d)])
        if r.key != "latency" and d is not None and (worst is None or d > worst[0]):
            worst = (d, r.key)
    print(table(["resync", "apply -> first snapshot"], rows))
    value = None if worst is None else worst[0]
    ok = None if value is None else value <= 1.0
    where = "" if worst is None else f" ({worst[1]})"
    print(f"   worst without added latency: {fmt(value)}{where}   goal <= 1 s   {verdict(ok)}")
    return Line(
        "4", "kubectl apply -> first VolumeSnapshot (worst run)", fmt(value) + where, "<= 1 s", verdict(ok)
    )


def print_breakdown(stats_of: dict[str, auditstats.RequestStats], keys: list[str]) -> None:
    """The requests of the given steps by verb and resource, one column per step."""
    keys = [k for k in dict.fromkeys(keys) if k in stats_of]
    if not keys:
        return
    counts: Counter[tuple[str, str]] = Counter()
    for k in keys:
        counts.update(stats_of[k].work)
    rows = [
        [verb, res, *(str(stats_of[k].work.get((verb, res), 0)) for k in keys)]
        for (verb, res), _ in counts.most_common()
    ]
    print(f"   by verb and resource ({', '.join(keys)}; Leases apart):")
    print(table(["verb", "resource", *keys], rows))


def report_requests(
    events: list[dict[str, Any]], results: list[Result], ready_wall: float, end_wall: float, detail: Result
) -> list[Line]:
    requests = auditstats.requests_of(events, OPERATOR_USER)
    print(f"5. Operator API requests (audit log, user {OPERATOR_USER})")
    print("   counted: requests received between the admin's create clusterresyncs and phase Completed")
    print("   first seen by the poller; Lease requests (leader election, time-based) apart")
    rows, worst = [], None
    stats_of: dict[str, auditstats.RequestStats] = {}
    starts = [auditstats.resync_created(events, r.db.ns) for r in results]
    for i, (r, start) in enumerate(zip(results, starts, strict=True)):
        if start is None:
            rows.append([r.label, "n/a", "", "", "", ""])
            continue
        st = stats_of[r.key] = auditstats.request_stats(requests, start, r.end_wall)
        # Cleanup after Completed, up to 3 s, and never into the next resync's window.
        later = [t for t in starts[i + 1 :] if t is not None]
        after = auditstats.request_stats(requests, r.end_wall, min([r.end_wall + 3.0, end_wall, *later]))
        n = len(r.replicas())
        per = st.total / n
        rows.append(
            [
                r.label + (" (cut short)" if r.timed_out else ""),
                fmt(r.end_wall - start, digits=1),
                str(st.total),
                f"{per:.1f}",
                f"{st.leases} ({(st.total + st.leases) / n:.1f}/replica)",
                str(after.total),
            ]
        )
        if r.key != "latency" and not r.timed_out and (worst is None or per > worst[0]):
            worst = (per, r.key)
    print(
        table(
            [
                "resync",
                "window",
                "requests",
                "per replica",
                "+ Lease requests (with them)",
                "in the 3 s after Completed",
            ],
            rows,
        )
    )
    print_breakdown(stats_of, [detail.key] + ([] if worst is None else [worst[1]]))
    value = None if worst is None else worst[0]
    ok = None if value is None else value <= 40
    where = "" if worst is None else f" ({worst[1]})"
    print(
        f"   worst per replica, without Lease requests: {fmt(value, '', 1)}{where}   goal <= 40   {verdict(ok)}"
    )
    lists = auditstats.cluster_wide_lists_after(requests, ready_wall)
    total_lists = sum(lists.values())
    print(
        f"   cluster-wide LISTs by the operator after start-up (after it led, watched ClusterResyncs and "
        f"settled; {fmt(end_wall - ready_wall, digits=0)} of run): {total_lists}   goal 0   "
        f"{verdict(total_lists == 0)}"
    )
    for res, k in lists.most_common():
        print(f"     list {res} (no namespace): {k}")
    return [
        Line(
            "5",
            "operator requests per replica (worst run, no Leases)",
            fmt(value, "", 1) + where,
            "<= 40",
            verdict(ok),
        ),
        Line("5", "cluster-wide LISTs after start-up", str(total_lists), "0", verdict(total_lists == 0)),
    ]


def report_memory(c: Crowd) -> Line:
    r = c.result
    print(f"6. Operator memory (VmRSS of its process, MB = 10^6 bytes) with {c.count} pods, claims and PVs")
    print(
        f"   the crowd: created in {c.create_s:.1f}s (kubesim Python API), claims all Bound after "
        f"{fmt(c.bound_s, digits=1)}"
    )
    print(
        f"   RSS after start-up {fmt_mb(c.rss_ready)}; before the crowd {fmt_mb(c.rss_before)}; "
        f"peak during {r.label} with the crowd {fmt_mb(c.rss_peak)} ({c.rss_samples} samples, "
        f"resync total {fmt(r.total, digits=1)})"
    )
    ok = None if c.rss_peak is None else c.rss_peak <= 200 * MB
    print(f"   peak {fmt_mb(c.rss_peak)}   goal <= 200 MB   {verdict(ok)}")
    return Line(
        "6",
        f"operator peak RSS, resync with {c.count} pods/claims/PVs",
        fmt_mb(c.rss_peak),
        "<= 200 MB",
        verdict(ok),
    )


def report_latency(args: argparse.Namespace, small: Result, slow: Result) -> Line:
    print(f"7. {slow.label} with {args.latency:g} s of latency added to each operator request")
    if slow.total is None:
        value = f">= {ratio(args.latency_timeout, small.total) or 0:.1f}"
        took = f">= {args.latency_timeout:.0f}s (cut short at --latency-timeout)"
    else:
        value = fmt(ratio(slow.total, small.total), "", 1)
        took = fmt(slow.total, digits=1)
    print(f"   total {took} / without latency {fmt(small.total, digits=1)} = {value}   (informational)")
    return Line("7", f"{args.latency:g} s API latency: total / no-latency total", value, "(none)", "info")


def report(
    b: Bench,
    results: dict[str, Result],
    crowd_result: Crowd,
    ready_wall: float,
    end_wall: float,
    ordered_times: list[float],
) -> None:
    args = b.args
    events = audit.read(b.audit_log)
    small = results["small"]
    print()
    print(
        f"ClusterResync on kubesim: copy throughput {args.throughput:g} MiB/s per copy, pods polled every "
        f"{args.poll * 1000:.0f} ms, leader election {LEASE_DURATION}/{RENEW_DEADLINE:g}/{RETRY_PERIOD:g} s"
    )
    print()
    lines = [report_downtime(args, small, results["large"])]
    print()
    lines.append(report_total(args, results["seq4"], results.get("par4")))
    print()
    ready_times = [r.sts_ready for r in results.values() if r.db.replicas == 4 and r.sts_ready is not None]
    line3, _ = report_vs_statefulset(small, ready_times, ordered_times)
    lines.append(line3)
    print()
    ordered = [*results.values(), crowd_result.result]
    lines.append(report_first_snapshot(events, ordered))
    print()
    lines.extend(report_requests(events, ordered, ready_wall, end_wall, small))
    print()
    lines.append(report_memory(crowd_result))
    print()
    lines.append(report_latency(args, small, results["latency"]))
    print()
    print("Summary (PASS/CHECK compare timings with the goals; they never change the exit status)")
    print(
        table(
            ["fig", "what", "measured", "goal", "verdict"],
            [[x.figure, x.what, x.value, x.goal, x.verdict] for x in lines],
        )
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
    p.add_argument("--small-mib", type=int, default=1, help="figures 1, 3-7: small volume, MiB (default 1)")
    p.add_argument("--large-mib", type=int, default=256, help="figures 1, 2: large volume, MiB (default 256)")
    p.add_argument(
        "--no-parallel", action="store_true", help="figure 2: skip the maxParallel 4 comparison run"
    )
    p.add_argument("--crowd", type=int, default=2000, help="figure 6: pods, claims and PVs (default 2000)")
    p.add_argument("--latency", type=float, default=1.0, help="figure 7: added latency, s (default 1)")
    p.add_argument(
        "--latency-timeout",
        type=float,
        default=180.0,
        help="figure 7: cut the slow resync's measurement short after this many seconds (default 180)",
    )
    p.add_argument("--poll", type=float, default=0.05, help="pod polling interval, seconds (default 0.05)")
    p.add_argument(
        "--settle", type=float, default=3.0, help="seconds after the operator is ready before measuring (3)"
    )
    p.add_argument("--timeout", type=float, default=180.0, help="per resync, seconds (default 180)")
    p.add_argument(
        "--keep-logs",
        type=Path,
        default=None,
        metavar="DIR",
        help="copy the audit log and the operator's log into DIR at the end (they are deleted otherwise)",
    )
    return p.parse_args(argv)


def plan(args: argparse.Namespace) -> list[Step]:
    steps = [
        Step("small", 4, args.small_mib),
        Step("large", 4, args.large_mib),
        Step("seq4", 5, args.large_mib),
    ]
    if not args.no_parallel:
        steps.append(Step("par4", 5, args.large_mib, max_parallel=4))
    return steps


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    throughput = args.throughput * MiB if args.throughput > 0 else None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clusterresync-bench-") as work:
        audit_log = Path(work) / "audit.log"
        log(f"starting kubesim (copy throughput {args.throughput:g} MiB/s, audit log {audit_log})")
        cfg = ClusterConfig(copy_throughput_bytes_per_s=throughput)
        with KubeSim(config=cfg, audit_log=audit_log) as cluster:
            cluster.kubectl("apply", "-k", str(ROOT / "manifests"))
            sa = cluster.service_account_kubeconfig(OPERATOR_NS, OPERATOR_SA)
            operator = Operator(
                sa,
                Path(work) / "operator.log",
                lease_duration=LEASE_DURATION,
                renew_deadline=RENEW_DEADLINE,
                retry_period=RETRY_PERIOD,
            )
            operator.start()
            assert operator.proc is not None
            rss = crowd.RssSampler(operator.proc.pid)
            rss.start()
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
            b = Bench(args, cluster, api, operator, audit_log)
            try:
                ready_wall = wait_operator_ready(b)
                rss_ready = rss.now()
                log(f"operator ready (RSS {fmt_mb(rss_ready)})")
                ordered_times = time_ordered_statefulsets(b, 4)
                log(f"4-pod OrderedReady StatefulSet Ready in {', '.join(fmt(t) for t in ordered_times)}")
                results = {s.key: run_step(b, s, timeout=args.timeout) for s in plan(args)}
                results["latency"] = latency_step(b, Step("latency", 4, args.small_mib))
                crowd_result = crowd_step(b, Step("crowd", 4, args.small_mib), rss, rss_ready)
                end_wall = time.time()
            except BenchError as e:
                log(f"FAILED: {e}")
                tail = "\n".join(operator.output().splitlines()[-30:])
                print(f"operator log, last lines:\n{tail}", file=sys.stderr)
                return 1
            finally:
                rss.stop()
                api.close()
                operator.stop()
                if args.keep_logs is not None:
                    args.keep_logs.mkdir(parents=True, exist_ok=True)
                    for kept in (audit_log, operator.log):
                        shutil.copy2(kept, args.keep_logs / kept.name)
            report(b, results, crowd_result, ready_wall, end_wall, ordered_times)
    print(f"\n(benchmark wall time {time.monotonic() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
