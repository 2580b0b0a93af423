"""Kopf handlers: thin. Each one calls ``reconcile`` and turns the plan's wishes into Kopf's terms.

A daemon per ClusterResync drives it to the end; deletion is a Kopf-managed finalizer whose
handler finishes or rolls back the swap in flight and cleans up before the object goes.

When a daemon plans (the wake-up model, docs/design.md):

- **Woken by events.** The watch caches (``cache.py``, started at startup in every process, so
  that a standby takes over warm) call ``Wakeups.notify`` on every change; it wakes the daemons
  the object concerns (its namespace's resyncs; a PersistentVolume's claim namespace or resync
  label). Nodes wake nobody: heartbeats would wake every resync all the time.
- **Reads from the caches**, and so never lists the cluster on a pass; the resync itself comes
  from its cache too, except on the first pass after gaining leadership and after a conflict,
  when it is read live. The check before a swap reads live (``reconcile``).
- **Plans again at once after acting**, once the caches reflect its own writes
  (``Cache.wait_seen``): an action's effect is seen by the very next pass.
- **A safety timeout** (the plan's ``requeue_after``, else ``SAFETY_WAKE_SECONDS``) covers time-based
  steps (timeouts, stability windows) and any event missed.

Who may act, and when:

- **One process**: every operator process runs Kopf and has a daemon per resync, but only the
  holder of the leader Lease (``leader.py``) reconciles. The others' daemons wait for
  leadership; their deletion handlers ask Kopf to retry shortly. Every write of a
  reconciliation is fenced by the leader's term: if leadership lapses mid-way (a frozen
  process, a lost API connection), the rest of that reconciliation is refused before it is sent.
- **One reconciliation per resync at a time** within the process: the daemon and the deletion
  handler take the same ``asyncio.Lock`` (per uid) around each ``reconcile()``, and keep it until
  the worker thread running it has really returned, even if Kopf cancels them meanwhile.
- **The daemon never dies of an error**: any exception is logged and retried with exponential
  backoff (1 s doubling to 30 s, reset after a success); Kopf's own 60 s restart never happens.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import kopf
import structlog

from . import cache as caches
from . import leader, logs, metrics
from .cache import Cache, CachedReader, Source
from .kube import Kube, load_api_client
from .leader import LeaderElector, NotLeaderError
from .models import GROUP, LABEL_RESYNC_UID, PLURAL, POLICY_PLURAL, VERSION
from .policy_reconcile import PolicyOutcome, policy_ref, reconcile_policy
from .reconcile import Outcome, reconcile, resync_ref
from .state import Obj

log = structlog.get_logger("clusterresync")

T = TypeVar("T")

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
MAX_IMMEDIATE_REPLANS = 5  # conflicts in a row; then the usual pause, so a bug cannot spin
MAX_ACTING_PASSES = 50  # passes in a row that wrote something; then a pause, so a bug cannot spin
SAFETY_WAKE_SECONDS = 30.0  # with no event, a daemon still plans this often
SETTLE_SECONDS = 0.02  # after a wake-up, for the rest of a burst of events
CATCH_UP_SECONDS = 2.0  # how long a daemon waits for its caches to reflect its own writes
CACHE_SYNC_SECONDS = 60.0  # how long startup waits for the caches' first lists

_kube: Kube | None = None
_cache: Cache | None = None
_elector: LeaderElector | None = None
_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
_running: set[asyncio.Future[Any]] = set()  # reconciliations running in worker threads
_deletion_failures: dict[str, int] = {}  # uid -> consecutive failures of the deletion handler


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube(load_api_client())
    return _kube


def cache() -> Cache:
    global _cache
    if _cache is None:
        # Its own connection pool: each watch holds a connection for minutes.
        _cache = Cache(Kube(load_api_client(pool_size=32)), caches.configured())
        _cache.subscribe(wakeups.notify)
    return _cache


class Wakeups:
    """Which daemons a changed object concerns, and waking them. ``notify`` is called in the
    reflectors' threads; the daemons' events are set in the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: dict[str, asyncio.Event] = {}
        self._namespaces: dict[str, str] = {}  # uid -> namespace

    def register(self, uid: str, namespace: str) -> asyncio.Event:
        with self._lock:
            self._loop = asyncio.get_running_loop()
            event = self._events.get(uid)
            if event is None:
                event = self._events[uid] = asyncio.Event()
            self._namespaces[uid] = namespace
            return event

    def unregister(self, uid: str) -> None:
        with self._lock:
            self._events.pop(uid, None)
            self._namespaces.pop(uid, None)

    def concerned(self, source: Source, kind: str, obj: Obj | None) -> set[str]:
        """The resyncs (uids) an event may matter to."""
        with self._lock:
            every = set(self._namespaces)
            if kind == "LIST" or source.wakes == "all":
                return every
            if source.wakes == "none" or obj is None:
                return set()
            m = obj.get("metadata") or {}
            if source.wakes == "volume":
                out = {str(((m.get("labels") or {}).get(LABEL_RESYNC_UID)) or "")} & every
                claim_ns = ((obj.get("spec") or {}).get("claimRef") or {}).get("namespace")
                return out | {u for u, ns in self._namespaces.items() if ns == claim_ns}
            return {u for u, ns in self._namespaces.items() if ns == m.get("namespace")}

    def notify(self, source: Source, kind: str, obj: Obj | None) -> None:
        uids = self.concerned(source, kind, obj)
        loop = self._loop
        if uids and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._set, uids)

    def _set(self, uids: set[str]) -> None:
        for uid in uids:
            event = self._events.get(uid)
            if event is not None:
                event.set()


wakeups = Wakeups()


def elector() -> LeaderElector:
    if _elector is None:
        raise NotLeaderError("leader election has not started")
    return _elector


# -- startup and cleanup -------------------------------------------------------------------------
@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _elector
    logs.configure(logging.INFO)
    # The status belongs to the API (its schema prunes anything else): Kopf keeps its own
    # bookkeeping in annotations.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf.clusterresync.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kopf.clusterresync.io")
    settings.posting.enabled = False  # the operator posts its own Events with named reasons
    settings.watching.server_timeout = 300
    # Kopf peering is off, whatever the command line says: same-priority peers all pause, so it
    # gives no availability. The leader Lease (leader.py) replaces it; `--standalone` is not needed.
    settings.peering.standalone = True
    # No CRD and namespace scanning: the one resource served and the namespaces (the flags) are
    # known at startup, so the operator needs no permission to list or watch CRDs or namespaces.
    settings.scanning.disabled = True
    metrics.STATE.leading = lambda: _elector is not None and _elector.is_leader()
    metrics.STATE.resyncs = lambda: _cached(PLURAL)
    metrics.STATE.policies = lambda: _cached(POLICY_PLURAL)
    metrics.serve()
    await _wait_for_api()
    if _cache is None:
        c = cache()
        c.start()
        unsynced = await asyncio.to_thread(c.wait_synced, CACHE_SYNC_SECONDS)
        log.info(
            "watch caches listed",
            caches=len(c.reflectors) - len(unsynced),
            absent=[repr(r) for r in c.reflectors.values() if r.absent] or None,
        )
        for r in unsynced:
            log.error(
                "a watch cache could not list: resyncs that need it report the error",
                cache=repr(r),
                error=str(r.error) if r.error else "not listed yet",
            )
    if _elector is None:
        config = leader.configured()
        _elector = LeaderElector(config, leader.lease_client(load_api_client(), config))
        await _elector.start()


def _cached(plural: str) -> list[Obj]:
    """Every cached object of one of the operator's own kinds (for the metrics' gauges)."""
    if _cache is None:
        return []
    out: list[Obj] = []
    for (api, p, _ns), r in _cache.reflectors.items():
        if api == f"{GROUP}/{VERSION}" and p == plural and r.synced:
            out.extend(r.items())
    return out


async def _wait_for_api() -> None:
    """With scanning off, Kopf serves only what exists at startup: wait until the CRD is served."""
    path = f"/apis/{GROUP}/{VERSION}"
    try:
        found = await asyncio.to_thread(kube().request, "GET", path, what="the ClusterResync API")
    except Exception as e:
        raise kopf.TemporaryError(f"cannot discover {path}: {e}", delay=5) from e
    if not any(r.get("name") == PLURAL for r in (found or {}).get("resources") or []):
        raise kopf.TemporaryError(f"{PLURAL}.{GROUP}/{VERSION} is not served yet (CRD missing?)", delay=5)


@kopf.on.cleanup()
async def shutdown(**_: Any) -> None:
    """Stop leading, let the reconciliations in flight end (they cannot write any more), then give
    the lease up so that another replica takes over at once (client-go's ReleaseOnCancel)."""
    if _cache is not None:
        _cache.stop()
    if _elector is None:
        return
    await _elector.stop()
    if _running:
        await asyncio.wait(set(_running), timeout=min(5.0, _elector.config.renew_deadline))
    if not _running:
        await _elector.release()
    else:
        log.warning("reconciliations still running: the lease is left to expire", running=len(_running))
    _elector.close()


@kopf.on.probe(id="leader")
def leader_probe(**_: Any) -> dict[str, Any]:
    """Reported on the health endpoint (``--liveness``): who this is and whether it leads."""
    if _elector is None:
        return {"leading": False}
    return {
        "identity": _elector.identity,
        "leading": _elector.is_leader(),
        "holder": _elector.election.holder,
    }


# -- the handlers ----------------------------------------------------------------------------------
@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0)
async def drive(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Reconcile until the resync is Completed or Failed and cleaned up; only while leading."""
    ns, name, uid = body.metadata.namespace or "", body.metadata.name or "", body.metadata.uid or ""
    wake = wakeups.register(uid, ns)
    try:
        await _drive(ns, name, uid, wake, stopped)
    finally:
        wakeups.unregister(uid)


@kopf.daemon(GROUP, VERSION, POLICY_PLURAL, cancellation_timeout=5.0)
async def watch_policy(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Probe and remediate as the ResyncPolicy says, as long as it exists; only while leading."""
    ns, name, uid = body.metadata.namespace or "", body.metadata.name or "", body.metadata.uid or ""
    wake = wakeups.register(uid, ns)
    try:
        await _drive(ns, name, uid, wake, stopped, policy=True)
    finally:
        wakeups.unregister(uid)


async def _drive(
    ns: str, name: str, uid: str, wake: asyncio.Event, stopped: kopf.DaemonStopped, *, policy: bool = False
) -> None:
    logger = log.bind(**{"policy" if policy else "resync": name}, namespace=ns)
    failures = 0
    replans = 0
    acting = 0
    fresh = True  # read the resync live (not from its cache) on the next pass
    while not stopped:
        if _elector is None or not _elector.is_leader():
            fresh = True
            await stopped.wait(_leader_poll())
            continue
        wake.clear()  # from here on, any change wakes the next wait
        try:
            outcome = await _reconcile_exclusively(uid, ns, name, fresh=fresh, policy=policy)
        except NotLeaderError as e:
            logger.info("not the leader: waiting for leadership", reason=str(e))
            fresh = True
            continue
        except Exception as e:
            failures += 1
            fresh = True
            delay = backoff(failures)
            logger.error(
                "reconcile failed; retrying", error=str(e), attempt=failures, retry_in=delay, exc_info=True
            )
            await stopped.wait(delay)
            continue
        if failures:
            logger.info("reconcile succeeded again", after_failures=failures)
        failures = 0
        if outcome is None:
            return  # gone, recreated, or being deleted: the deletion handler takes over
        fresh = False
        # Plan the next pass from caches that reflect this one's writes.
        if outcome.writes and not await asyncio.to_thread(
            cache().wait_seen, outcome.writes, CATCH_UP_SECONDS
        ):
            logger.info("the watch caches lag behind this operator's writes: reading live next")
            fresh = True
        if outcome.replan_now and replans < MAX_IMMEDIATE_REPLANS:
            replans += 1  # the status changed under us: observe again at once
            fresh = True
            continue
        replans = 0
        if outcome.finished:
            return
        if outcome.pause:
            acting = 0
            await stopped.wait(outcome.pause)  # an API error: not sooner, whatever changes
            continue
        acting = acting + 1 if outcome.writes else 0
        if acting and acting <= MAX_ACTING_PASSES:
            continue  # acted: plan again at once, from caches that show the effect
        if acting:
            logger.warning("many passes in a row acted: pausing", passes=acting)
            acting = 0
            await stopped.wait(1.0)
            continue
        await _until_woken(wake, stopped, outcome.requeue_after or SAFETY_WAKE_SECONDS)


async def _until_woken(wake: asyncio.Event, stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Until a watched change concerns the resync, the daemon is stopped, or ``seconds`` pass."""
    woken = asyncio.ensure_future(wake.wait())
    halted = asyncio.ensure_future(stopped.wait(seconds))
    try:
        await asyncio.wait({woken, halted}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (woken, halted):
            t.cancel()
    if wake.is_set():
        await asyncio.sleep(SETTLE_SECONDS)  # let a burst of events (one change, several objects) land


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def deleted(body: kopf.Body, **_: Any) -> None:
    """Finish or roll back the swap in flight, clean up temporary objects; then Kopf lets it go."""
    ns, name, uid = body.metadata.namespace or "", body.metadata.name or "", body.metadata.uid or ""
    not_leader = kopf.TemporaryError("not the leader: the leader finishes the deletion", delay=_leader_poll())
    if _elector is None or not _elector.is_leader():
        raise not_leader
    try:
        for _attempt in range(MAX_IMMEDIATE_REPLANS + 1):
            outcome = await _reconcile_exclusively(uid, ns, name, deleting=True)
            if outcome is None or not getattr(outcome, "replan_now", False):
                break
    except NotLeaderError:
        raise not_leader from None
    except Exception as e:
        # Counted here, not with Kopf's `retry`: the standby's retries are recorded on the same object.
        failures = _deletion_failures[uid] = _deletion_failures.get(uid, 0) + 1
        delay = backoff(failures)
        log.error(
            "deletion reconcile failed; retrying",
            resync=name,
            namespace=ns,
            error=str(e),
            attempt=failures,
            retry_in=delay,
            exc_info=True,
        )
        raise kopf.TemporaryError(f"reconcile failed: {e}", delay=delay) from e
    _deletion_failures.pop(uid, None)
    if outcome is None or isinstance(outcome, PolicyOutcome):
        return
    if not outcome.plan.remove_finalizer:
        raise kopf.TemporaryError(
            "finishing the swap in flight and cleaning up", delay=outcome.plan.requeue_after or 2.0
        )


# -- plumbing --------------------------------------------------------------------------------------
def backoff(failures: int) -> float:
    """1 s after the first failure, doubling, at most 30 s."""
    return float(min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** max(0, failures - 1)))


def _leader_poll() -> float:
    return min(1.0, _elector.config.retry_period) if _elector is not None else 1.0


def lock_for(uid: str) -> asyncio.Lock:
    """The resync's lock (kept as long as someone holds or awaits it)."""
    lock = _locks.get(uid)
    if lock is None:
        lock = asyncio.Lock()
        _locks[uid] = lock
    return lock


async def _reconcile_exclusively(
    uid: str, ns: str, name: str, *, deleting: bool = False, fresh: bool = True, policy: bool = False
) -> Outcome | PolicyOutcome | None:
    """Read the resync (live if ``fresh``, else from its cache), check leadership, reconcile it
    from the caches with writes fenced by the leader's term; all under the resync's lock. None
    if there is nothing (more) for the caller to do."""
    async with lock_for(uid):
        reader = CachedReader(cache(), kube())
        source = kube() if fresh else reader
        if policy:
            current = await asyncio.to_thread(source.get, policy_ref(ns, name))
        else:
            current = await asyncio.to_thread(source.get, resync_ref(ns, name))
        meta = (current or {}).get("metadata") or {}
        if current is None or meta.get("uid") != uid:
            return None
        if meta.get("deletionTimestamp") and not deleting:
            return None
        term = elector().term_if_leader()
        if term is None:
            raise NotLeaderError("not the leader")
        fenced = elector().fenced(kube(), term)
        if policy:
            return await run_to_end(reconcile_policy, fenced, current, reader)
        return await run_to_end(reconcile, fenced, current, reader)


async def run_to_end(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread; if cancelled meanwhile, wait for the thread to return
    anyway (a thread cannot be interrupted), then re-raise the cancellation. So whoever holds a
    resync's lock holds it until its reconciliation has really ended."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    _running.add(task)
    task.add_done_callback(_running.discard)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller gets
        raise asyncio.CancelledError
    return task.result()
