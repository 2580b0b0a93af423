"""A minimal controller runtime: a deduplicating work queue fed by store changes.

It mirrors client-go's ``workqueue`` with an informer's event handlers
(``staging/src/k8s.io/client-go/util/workqueue``): a key queued twice before it is processed is
processed once; a reconcile may ask to be called again after a delay. Controllers can be paused
and resumed (a kubesim fault), in which case keys accumulate until resumed.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING

from ..store import Change

if TYPE_CHECKING:
    from ..cluster import Cluster

log = logging.getLogger("kubesim.controllers")


class Controller(ABC):
    name = "controller"

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.api = cluster.api
        self.store = cluster.api.store
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._pending: set[Hashable] = set()
        self._task: asyncio.Task[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self.paused = asyncio.Event()
        self.paused.set()  # set = running

    # -- wiring ------------------------------------------------------------------------------
    def keys_for(self, change: Change) -> Iterable[Hashable]:
        """The keys a store change should enqueue."""
        return ()

    def on_change(self, change: Change) -> None:
        for key in self.keys_for(change):
            self.enqueue(key)

    def enqueue(self, key: Hashable) -> None:
        if key not in self._pending:
            self._pending.add(key)
            self._queue.put_nowait(key)

    def enqueue_after(self, key: Hashable, delay: float) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            self.enqueue(key)

        handle = loop.call_later(max(0.0, delay), fire)
        self._timers.add(handle)

    def initial_keys(self) -> Iterable[Hashable]:
        return ()

    def start(self) -> None:
        self.store.add_listener(self.on_change)
        for key in self.initial_keys():
            self.enqueue(key)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"controller-{self.name}")

    async def stop(self) -> None:
        for t in list(self._timers):
            t.cancel()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def pause(self) -> None:
        self.paused.clear()

    def resume(self) -> None:
        self.paused.set()

    async def _run(self) -> None:
        while True:
            key = await self._queue.get()
            await self.paused.wait()
            self._pending.discard(key)
            try:
                again = await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("controller %s failed on %r; retrying", self.name, key)
                again = 1.0
            if again is not None:
                self.enqueue_after(key, again)

    @abstractmethod
    async def reconcile(self, key: Hashable) -> float | None:
        """Bring the world in line for ``key``; return a delay to be called again, or None."""
