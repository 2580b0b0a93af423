"""The object store: etcd and the watch cache, as far as clients can tell.

One cluster-wide, monotonically increasing ``resourceVersion`` (etcd's revision), a bounded
history of changes from which watches are served (``staging/src/k8s.io/apiserver/pkg/storage/
cacher/watch_cache.go``), and ``410 Gone`` for a watch from a version older than that history
(``watchCache.getAllEventsSinceLocked``: "too old resource version"). Everything runs on one
asyncio event loop, so each write is atomic and every watcher sees every change in commit order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


def deep_copy(value: Any) -> Any:
    """A deep copy for JSON-shaped data, much faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    return value


@dataclass
class Change:
    rv: int
    key: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: JSON
    old: JSON | None = None


@dataclass(eq=False)
class Watcher:
    key: str
    namespace: str | None
    queue: asyncio.Queue[Change | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)


class TooOldResourceVersion(Exception):
    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class Store:
    def __init__(self, history: int = 100_000) -> None:
        self.rv = 1
        self._data: dict[str, dict[tuple[str, str], JSON]] = {}
        self._history: deque[Change] = deque(maxlen=history)
        # Changes at or before this revision are no longer in the history (compaction).
        self._compacted = 1
        self._watchers: set[Watcher] = set()
        self._listeners: list[Callable[[Change], None]] = []

    # -- reads -------------------------------------------------------------------------------
    def get(self, key: str, namespace: str, name: str) -> JSON | None:
        obj = self._data.get(key, {}).get((namespace, name))
        return deep_copy(obj) if obj is not None else None

    def peek(self, key: str, namespace: str, name: str) -> JSON | None:
        """The stored object itself, not a copy: callers must not mutate it."""
        return self._data.get(key, {}).get((namespace, name))

    def list(self, key: str, namespace: str | None = None) -> list[JSON]:
        return [deep_copy(o) for o in self.iter(key, namespace)]

    def iter(self, key: str, namespace: str | None = None) -> Iterator[JSON]:
        """Stored objects (not copies), in (namespace, name) order as etcd's key order gives them."""
        items = self._data.get(key, {})
        for k in sorted(items):
            if namespace is None or k[0] == namespace:
                yield items[k]

    def storage_keys(self) -> list[str]:
        return list(self._data)

    # -- writes ------------------------------------------------------------------------------
    def _commit(self, key: str, type_: str, obj: JSON, old: JSON | None) -> Change:
        change = Change(self.rv, key, type_, obj, old)
        if len(self._history) == self._history.maxlen and self._history:
            self._compacted = self._history[0].rv
        self._history.append(change)
        for w in list(self._watchers):
            if w.closed:
                self._watchers.discard(w)
                continue
            if w.key == key and (w.namespace is None or w.namespace == obj["metadata"].get("namespace", "")):
                w.queue.put_nowait(change)
        for listener in list(self._listeners):
            listener(change)
        return change

    def put(self, key: str, obj: JSON) -> JSON:
        """Create or replace; sets ``metadata.resourceVersion``. Returns a copy of what is stored."""
        self.rv += 1
        obj = deep_copy(obj)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        ns = obj["metadata"].get("namespace", "")
        name = obj["metadata"]["name"]
        bucket = self._data.setdefault(key, {})
        old = bucket.get((ns, name))
        bucket[(ns, name)] = obj
        self._commit(key, "MODIFIED" if old is not None else "ADDED", obj, old)
        return deep_copy(obj)

    def delete(self, key: str, namespace: str, name: str, final: JSON | None = None) -> JSON | None:
        """Remove an object; the DELETED event carries ``final`` (or the stored object) at a new revision."""
        bucket = self._data.get(key, {})
        old = bucket.pop((namespace, name), None)
        if old is None:
            return None
        self.rv += 1
        obj = deep_copy(final if final is not None else old)
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self._commit(key, "DELETED", obj, old)
        return deep_copy(obj)

    def compact(self, rv: int | None = None) -> None:
        """Drop history up to ``rv`` (default: all of it), as etcd compaction does."""
        rv = self.rv if rv is None else rv
        while self._history and self._history[0].rv <= rv:
            self._history.popleft()
        self._compacted = max(self._compacted, rv)

    # -- watch -------------------------------------------------------------------------------
    def watch(self, key: str, namespace: str | None, since: int | None) -> tuple[Watcher, list[Change]]:
        """Open a watcher; with ``since``, also return the retained changes after it.

        Raises TooOldResourceVersion when changes after ``since`` have been compacted away.
        """
        backlog: list[Change] = []
        if since is not None:
            if since < self._compacted:
                raise TooOldResourceVersion(since, self._compacted + 1)
            for c in self._history:
                if (
                    c.rv > since
                    and c.key == key
                    and (namespace is None or c.obj["metadata"].get("namespace", "") == namespace)
                ):
                    backlog.append(c)
        w = Watcher(key, namespace)
        self._watchers.add(w)
        return w, backlog

    def unwatch(self, w: Watcher) -> None:
        self._watchers.discard(w)
        w.close()

    def close_watches(self, key: str | None = None) -> int:
        """Close the watchers of one storage key (or all): their clients see the stream end."""
        n = 0
        for w in list(self._watchers):
            if key is None or w.key == key:
                w.close()
                self._watchers.discard(w)
                n += 1
        return n

    def close_all_watches(self) -> None:
        for w in list(self._watchers):
            w.close()
        self._watchers.clear()

    def add_listener(self, fn: Callable[[Change], None]) -> None:
        """Controllers register here to hear of every change, synchronously, in commit order."""
        self._listeners.append(fn)

    @property
    def oldest_retained(self) -> int:
        return self._compacted
