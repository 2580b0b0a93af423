"""Kopf handlers: thin. Each one calls ``reconcile`` and turns the plan's wishes into Kopf's terms.

A daemon per ClusterResync drives it to the end (polling at the pace the plan asks for, since the
objects it waits on are not the ClusterResync itself); deletion is a Kopf-managed finalizer whose
handler finishes or rolls back the swap in flight and cleans up before the object goes.

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
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import kopf
import structlog

from . import leader, logs
from .kube import Kube, load_api_client
from .leader import LeaderElector, NotLeaderError
from .models import GROUP, PLURAL, VERSION
from .reconcile import Outcome, reconcile, resync_ref

log = structlog.get_logger("clusterresync")

T = TypeVar("T")

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
MAX_IMMEDIATE_REPLANS = 5  # in a row; then the usual pause, so a bug cannot spin

_kube: Kube | None = None
_elector: LeaderElector | None = None
_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
_running: set[asyncio.Future[Any]] = set()  # reconciliations running in worker threads
_deletion_failures: dict[str, int] = {}  # uid -> consecutive failures of the deletion handler


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube(load_api_client())
    return _kube


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
    await _wait_for_api()
    if _elector is None:
        config = leader.configured()
        _elector = LeaderElector(config, leader.lease_client(load_api_client(), config))
        await _elector.start()


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
    logger = log.bind(resync=name, namespace=ns)
    failures = 0
    replans = 0
    while not stopped:
        if _elector is None or not _elector.is_leader():
            await stopped.wait(_leader_poll())
            continue
        try:
            outcome = await _reconcile_exclusively(uid, ns, name)
        except NotLeaderError as e:
            logger.info("not the leader: waiting for leadership", reason=str(e))
            continue
        except Exception as e:
            failures += 1
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
        if getattr(outcome, "replan_now", False) and replans < MAX_IMMEDIATE_REPLANS:
            replans += 1  # the status changed under us: observe again at once
            continue
        replans = 0
        if outcome.plan.requeue_after is None and outcome.status.phase in ("Completed", "Failed"):
            return
        await stopped.wait(outcome.plan.requeue_after or 2.0)


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
    if outcome is None:
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


async def _reconcile_exclusively(uid: str, ns: str, name: str, *, deleting: bool = False) -> Outcome | None:
    """Re-read the resync, check leadership, reconcile it with writes fenced by the leader's term;
    all under the resync's lock. None if there is nothing (more) for the caller to do."""
    async with lock_for(uid):
        current = await asyncio.to_thread(kube().get, resync_ref(ns, name))
        meta = (current or {}).get("metadata") or {}
        if current is None or meta.get("uid") != uid:
            return None
        if meta.get("deletionTimestamp") and not deleting:
            return None
        term = elector().term_if_leader()
        if term is None:
            raise NotLeaderError("not the leader")
        return await run_to_end(reconcile, elector().fenced(kube(), term), current)


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
