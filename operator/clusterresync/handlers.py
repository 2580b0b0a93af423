"""Kopf handlers: thin. Each one calls ``reconcile`` and turns the plan's wishes into Kopf's terms.

A daemon per ClusterResync drives it to the end (polling at the pace the plan asks for, since the
objects it waits on are not the ClusterResync itself); deletion is a Kopf-managed finalizer whose
handler finishes or rolls back the swap in flight and cleans up before the object goes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from . import logs
from .kube import Kube, load_api_client
from .models import GROUP, PLURAL, VERSION
from .reconcile import reconcile

_kube: Kube | None = None


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube(load_api_client())
    return _kube


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    logs.configure(logging.INFO)
    # The status belongs to the API (its schema prunes anything else): Kopf keeps its own
    # bookkeeping in annotations.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf.clusterresync.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kopf.clusterresync.io")
    settings.posting.enabled = False  # the operator posts its own Events with named reasons
    settings.watching.server_timeout = 300


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0)
async def drive(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Reconcile until the resync is Completed or Failed and cleaned up."""
    ns, name = body.metadata.namespace, body.metadata.name
    while not stopped:
        current = await asyncio.to_thread(kube().get, _ref(ns, name))
        if current is None or (current.get("metadata") or {}).get("deletionTimestamp"):
            return
        outcome = await asyncio.to_thread(reconcile, kube(), current)
        if outcome.plan.requeue_after is None and outcome.status.phase in ("Completed", "Failed"):
            return
        await stopped.wait(outcome.plan.requeue_after or 2.0)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def deleted(body: kopf.Body, **_: Any) -> None:
    """Finish or roll back the swap in flight, clean up temporary objects; then Kopf lets it go."""
    ns, name = body.metadata.namespace, body.metadata.name
    current = await asyncio.to_thread(kube().get, _ref(ns, name))
    if current is None:
        return
    outcome = await asyncio.to_thread(reconcile, kube(), current)
    if not outcome.plan.remove_finalizer:
        raise kopf.TemporaryError(
            "finishing the swap in flight and cleaning up", delay=outcome.plan.requeue_after or 2.0
        )


def _ref(ns: str | None, name: str | None) -> Any:
    from .reconcile import resync_ref

    return resync_ref(ns or "", name or "")
