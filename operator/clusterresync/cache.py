"""Watch caches: the objects a resync reads, kept current by watches instead of listed on each pass.

One ``Reflector`` per resource (and per served namespace, for namespaced resources) lists once,
then watches from the list's resourceVersion with bookmarks, as client-go's reflector does
(``staging/src/k8s.io/client-go/tools/cache/reflector.go``: ``ListAndWatch``, ``watchHandler``;
a watch the server ends is resumed from the last version seen, without a new list; only a
``410 Expired`` or an ``ERROR`` event makes it list again). Objects are kept without their
``managedFields`` and ``last-applied-configuration`` annotation.

What the rest of the operator gets:

- ``CachedReader``: ``get`` and ``list_objects`` with the adapter's signatures, answered from the
  caches when a cache covers the request, and by the live API otherwise (a resource no source
  watches, a namespace not served, a selector it cannot evaluate). A cache that has not synced
  yet is waited for; one that cannot list (RBAC, a missing API) raises the adapter's
  ``KubeError``, so the resync shows the same named reason as a failed live read would.
- ``Cache.wait_seen``: read-your-writes. The adapter records every write the API accepted
  (``Kube.recording``) with the resourceVersion it answered; the daemon waits until the caches
  have delivered those versions before it plans again, so that a pass never plans from a state
  older than its own last actions. (Correctness does not rest on it: every write the planner
  makes carries a uid or resourceVersion precondition. It saves passes that would only repeat
  actions in flight, and conflicts.)
- ``Cache.subscribe``: a callback per event, in the reflector's thread; the handlers turn it into
  a wake-up of the daemons concerned (``handlers.Wakeups``).

Sources whose API is optional (the snapshot CRDs) are probed with a discovery GET while absent,
never with a LIST, and start watching once the API appears.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

from .kube import ErrorKind, Kube, KubeError, Written, path_for
from .models import GROUP, LABEL_RESYNC_UID, PLURAL, POLICY_PLURAL, VERSION
from .state import Obj, Ref

log = structlog.get_logger("clusterresync.cache")

RESYNC_API = f"{GROUP}/{VERSION}"
SNAPSHOT_API = "snapshot.storage.k8s.io/v1"
# The ProvisioningFailed Events of claims: the reason a staging claim stays Pending.
PROVISIONING_FAILED = "involvedObject.kind=PersistentVolumeClaim,reason=ProvisioningFailed"


@dataclass(frozen=True)
class Source:
    """A resource the operator watches. ``wakes`` says which resyncs an event concerns:
    ``namespace`` (those of the object's namespace), ``volume`` (a PersistentVolume: those of its
    claim's namespace, or the one named by its resync label), ``all``, or ``none`` (read on the
    next pass, no wake-up: Node heartbeats would otherwise wake every resync all the time)."""

    api_version: str
    plural: str
    namespaced: bool = True
    label_selector: str = ""  # server-side; only the label's presence (``key``) is supported
    field_selector: str = ""  # server-side; requests must ask for exactly this one
    optional: bool = False  # the API may not be served (its CRDs not installed)
    wakes: str = "namespace"


SOURCES: tuple[Source, ...] = (
    Source(RESYNC_API, PLURAL),
    Source(RESYNC_API, POLICY_PLURAL),
    Source("apps/v1", "statefulsets"),
    Source("v1", "pods"),
    Source("v1", "persistentvolumeclaims"),
    Source("batch/v1", "jobs", label_selector=LABEL_RESYNC_UID),
    Source(SNAPSHOT_API, "volumesnapshots", label_selector=LABEL_RESYNC_UID, optional=True),
    Source("v1", "events", field_selector=PROVISIONING_FAILED),
    Source("v1", "persistentvolumes", namespaced=False, wakes="volume"),
    Source("v1", "nodes", namespaced=False, wakes="none"),
    Source("storage.k8s.io/v1", "storageclasses", namespaced=False, wakes="all"),
    Source("storage.k8s.io/v1", "csidrivers", namespaced=False, wakes="all"),
    Source(SNAPSHOT_API, "volumesnapshotclasses", namespaced=False, optional=True, wakes="all"),
)

# The namespaces the operator serves (its --namespace flags; empty: all), set by the command line.
_namespaces: tuple[str, ...] = ()


def configure(namespaces: Iterable[str]) -> None:
    """The served namespaces. A glob pattern (Kopf accepts them) makes the caches watch all
    namespaces, which needs the cluster-wide install's permissions."""
    global _namespaces
    ns = tuple(namespaces)
    _namespaces = () if any(any(c in n for c in "*?[!") for n in ns) else ns


def configured() -> tuple[str, ...]:
    return _namespaces


SYNC_WAIT_SECONDS = 10.0  # how long a read waits for a cache that has not listed yet
ABSENT_PROBE_SECONDS = 10.0  # how often an optional API that is not served is looked for again
SEEN_VERSIONS = 4096  # resourceVersions remembered per reflector, for wait_seen
BACKOFF_INITIAL, BACKOFF_MAX = 0.8, 30.0  # client-go's reflector backoff: 800 ms .. 30 s

Listener = Callable[[Source, str, Obj | None], None]  # (source, event type, object or None)


def slim(obj: Obj) -> Obj:
    """The object without what no reader needs and what makes it big."""
    m = obj.get("metadata")
    if not isinstance(m, dict):
        return obj
    m = dict(m)
    m.pop("managedFields", None)
    ann = m.get("annotations")
    if ann and "kubectl.kubernetes.io/last-applied-configuration" in ann:
        m["annotations"] = {
            k: v for k, v in ann.items() if k != "kubectl.kubernetes.io/last-applied-configuration"
        }
    return {**obj, "metadata": m}


def labels_match(selector: str, labels: dict[str, str]) -> bool | None:
    """A label selector string evaluated on ``labels``: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``
    (comma-separated, all must hold); None if it uses set-based forms this does not evaluate."""
    for term in (t.strip() for t in selector.split(",") if t.strip()):
        if " in " in term or " notin " in term or "(" in term:
            return None
        if "!=" in term:
            k, v = (x.strip() for x in term.split("!=", 1))
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = (x.strip() for x in term.replace("==", "=").split("=", 1))
            if labels.get(k) != v:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


class Reflector:
    """One resource in one namespace (``""``: all namespaces, or a cluster-scoped resource)."""

    def __init__(self, kube: Kube, source: Source, namespace: str, listeners: list[Listener]) -> None:
        self.kube = kube
        self.source = source
        self.namespace = namespace
        self._listeners = listeners
        self._cond = threading.Condition()
        self._items: dict[tuple[str, str], Obj] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.epoch = 0  # lists done: a write before a list is in it
        self.synced = False
        self.absent = False  # an optional API that is not served
        self.error: KubeError | None = None  # why the last list failed, until one succeeds
        self._stop = threading.Event()
        self._recheck = threading.Event()  # look for an absent API now
        self._probed = 0.0  # when a reader last looked for it (monotonic)
        self._thread = threading.Thread(
            target=self._run, name=f"watch-{source.plural}-{namespace or 'all'}", daemon=True
        )
        self._random = random.Random()

    def __repr__(self) -> str:
        return f"<Reflector {self.source.plural} in {self.namespace or 'the cluster'}>"

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._recheck.set()
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        failures = 0
        rv = ""
        while not self._stop.is_set():
            try:
                if self.source.optional and self.absent and not self._served():
                    self._recheck.wait(ABSENT_PROBE_SECONDS)
                    self._recheck.clear()
                    continue
                if not rv:
                    rv = self._list()
                rv = self._watch(rv)
                failures = 0
            except KubeError as e:
                if e.code == 410 or e.reason in ("Expired", "Gone"):
                    log.info(
                        "watch expired: listing again", source=self.source.plural, namespace=self.namespace
                    )
                    rv = ""
                    continue
                if e.kind == ErrorKind.MISSING_API and self.source.optional:
                    self._set_absent(e)
                    rv = ""
                    continue
                failures += 1
                delay = min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (failures - 1))
                delay = delay / 2 + self._random.random() * delay / 2
                if not self.synced or failures > 1:
                    log.warning(
                        "watch cache cannot list or watch; retrying",
                        source=self.source.plural,
                        namespace=self.namespace or None,
                        error=str(e),
                        retry_in=round(delay, 2),
                    )
                if not self.synced or e.kind != ErrorKind.TRANSIENT:
                    # A refusal (RBAC, ...) is not waited out: readers get it, with its reason,
                    # until a new list succeeds. A transient failure keeps serving the cache.
                    with self._cond:
                        self.error = e
                        self.synced = False
                        self._cond.notify_all()
                    rv = ""
                self._stop.wait(delay)
            except Exception:  # a bug must not end the watch: it is logged and retried
                failures += 1
                log.error("watch cache failed", source=self.source.plural, exc_info=True)
                self._stop.wait(min(BACKOFF_MAX, BACKOFF_INITIAL * 2**failures))
                rv = ""

    def _served(self) -> bool:
        """Whether the optional API is served now (a discovery GET of its group version)."""
        try:
            found = self.kube.request(
                "GET",
                f"/apis/{self.source.api_version}",
                what=f"the {self.source.api_version} API",
                verb="get",
            )
        except KubeError as e:
            if e.kind in (ErrorKind.MISSING_API, ErrorKind.NOT_FOUND):
                return False
            raise
        return any(r.get("name") == self.source.plural for r in (found or {}).get("resources") or [])

    def _set_absent(self, e: KubeError) -> None:
        with self._cond:
            changed = not self.absent
            self.absent, self.synced, self.error = True, False, e
            self._items.clear()
            self.epoch += 1
            self._cond.notify_all()
        if changed:
            log.info(
                "API not served: watching for it", source=self.source.plural, api=self.source.api_version
            )

    def _list(self) -> str:
        out = self.kube.request(
            "GET",
            _collection_path(self.source, self.namespace),
            query=_selectors(self.source),
            what=f"{self.source.plural} in {self.namespace or 'the cluster'}",
            verb="list",
        )
        items = {_key(o): slim(o) for o in out.get("items") or []}
        with self._cond:
            self._items = items
            for o in items.values():
                self._remember(str((o.get("metadata") or {}).get("resourceVersion") or ""))
            self.synced, self.absent, self.error = True, False, None
            self.epoch += 1
            self._cond.notify_all()
        for listener in self._listeners:
            listener(self.source, "LIST", None)
        return str((out.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, rv: str) -> str:
        # client-go: a random timeout between 5 and 10 minutes, so that watches do not end together.
        timeout = int(300 * (1 + self._random.random()))
        for event in self.kube.watch(
            self.source.api_version,
            self.source.plural,
            self.namespace,
            resource_version=rv,
            label_selector=self.source.label_selector,
            field_selector=self.source.field_selector,
            timeout_seconds=timeout,
        ):
            if self._stop.is_set():
                break
            kind = str(event.get("type") or "")
            obj = event.get("object") or {}
            new_rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            if kind == "BOOKMARK":
                rv = new_rv or rv
                continue
            if kind not in ("ADDED", "MODIFIED", "DELETED"):
                continue
            key = _key(obj)
            with self._cond:
                if kind == "DELETED":
                    self._items.pop(key, None)
                else:
                    self._items[key] = slim(obj)
                self._remember(new_rv)
                self._cond.notify_all()
            rv = new_rv or rv
            for listener in self._listeners:
                try:
                    listener(self.source, kind, obj)
                except Exception:
                    log.error("watch listener failed", source=self.source.plural, exc_info=True)
        return rv

    def _remember(self, rv: str) -> None:
        """Under the lock: a version delivered (for ``has_seen``); the oldest are forgotten."""
        if rv:
            self._seen[rv] = None
            while len(self._seen) > SEEN_VERSIONS:
                self._seen.popitem(last=False)

    # -- reading -------------------------------------------------------------------------------
    def _look_again_if_absent(self) -> None:
        """A reader wants an API that was not served: look now (at most once a second), so that
        CRDs installed a moment ago are used without waiting for the next periodic look."""
        if not self.absent or time.monotonic() - self._probed < 1.0:
            return
        self._probed = time.monotonic()
        try:
            served = self._served()
        except KubeError:
            return
        if served:
            with self._cond:
                self.absent, self.error = False, None  # readers now wait for the first list
            self._recheck.set()

    def items(self, namespace: str = "") -> list[Obj]:
        """The objects (of ``namespace`` only, if given), once listed."""
        self._look_again_if_absent()
        with self._cond:
            self._ready()
            return [o for (ns, _), o in self._items.items() if not namespace or ns == namespace]

    def get(self, namespace: str, name: str) -> Obj | None:
        self._look_again_if_absent()
        with self._cond:
            self._ready()
            return self._items.get((namespace, name))

    def _ready(self) -> None:
        """Under the lock: wait for the first list; raise why it failed, if it did."""
        deadline = time.monotonic() + SYNC_WAIT_SECONDS
        while not self.synced:
            if self.absent or self.error is not None:
                assert self.error is not None
                raise self.error
            left = deadline - time.monotonic()
            if left <= 0:
                raise KubeError(
                    0,
                    "",
                    "the watch cache has not listed yet",
                    "list",
                    f"{self.source.plural} in {self.namespace or 'the cluster'}",
                    kind=ErrorKind.TRANSIENT,
                )
            self._cond.wait(left)

    def has_seen(self, written: Written, since_epoch: int) -> bool:
        """Whether the cache reflects ``written`` (or was listed again since ``since_epoch``)."""
        with self._cond:
            if self.epoch != since_epoch or not self.synced:
                return True
            if written.resource_version and written.resource_version in self._seen:
                return True
            if written.deleted:
                return (written.namespace, written.name) not in self._items
            return False

    def wait(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait(timeout)


class Cache:
    """Every reflector of the operator: ``SOURCES`` in ``namespaces`` (empty: all namespaces)."""

    def __init__(
        self, kube: Kube, namespaces: Iterable[str] = (), sources: Iterable[Source] = SOURCES
    ) -> None:
        self.kube = kube
        self.namespaces = tuple(sorted(set(namespaces)))
        self._listeners: list[Listener] = []
        self.reflectors: dict[tuple[str, str, str], Reflector] = {}
        for s in sources:
            for ns in self.namespaces if s.namespaced and self.namespaces else ("",):
                self.reflectors[(s.api_version, s.plural, ns)] = Reflector(kube, s, ns, self._listeners)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def start(self) -> None:
        for r in self.reflectors.values():
            r.start()

    def stop(self) -> None:
        for r in self.reflectors.values():
            r.stop()

    def wait_synced(self, timeout: float) -> list[Reflector]:
        """Wait until every reflector has listed (or found its optional API absent); the ones
        that have not, when ``timeout`` is up."""
        deadline = time.monotonic() + timeout
        pending = list(self.reflectors.values())
        while pending and time.monotonic() < deadline:
            pending = [r for r in pending if not (r.synced or r.absent)]
            if pending:
                pending[0].wait(min(0.1, max(0.0, deadline - time.monotonic())))
        return [r for r in self.reflectors.values() if not (r.synced or r.absent)]

    def reflector(self, api_version: str, plural: str, namespace: str) -> Reflector | None:
        """The reflector holding ``plural`` objects of ``namespace`` (or all namespaces)."""
        return self.reflectors.get((api_version, plural, "")) or (
            self.reflectors.get((api_version, plural, namespace)) if namespace else None
        )

    def epochs(self, writes: Iterable[Written]) -> list[int]:
        return [r.epoch if (r := self._covering(w)) else -1 for w in writes]

    def _covering(self, w: Written) -> Reflector | None:
        r = self.reflector(w.api_version, w.plural, w.namespace)
        # A write a selector may hide (Events: only ProvisioningFailed ones are watched) is not waited for.
        if r is None or r.source.field_selector:
            return None
        return r

    def wait_seen(self, writes: list[Written], timeout: float, epochs: list[int] | None = None) -> bool:
        """Wait until the caches reflect every write (False if ``timeout`` came first)."""
        epochs = epochs if epochs is not None else self.epochs(writes)
        deadline = time.monotonic() + timeout
        pending = [(w, e) for w, e in zip(writes, epochs, strict=True) if e >= 0]
        while True:
            pending = [(w, e) for w, e in pending if not self._reflects(w, e)]
            left = deadline - time.monotonic()
            if not pending or left <= 0:
                return not pending
            r = self._covering(pending[0][0])
            assert r is not None
            r.wait(min(left, 0.1))

    def _reflects(self, w: Written, epoch: int) -> bool:
        r = self._covering(w)
        return r is None or r.has_seen(w, epoch)


class CachedReader:
    """``get`` and ``list_objects`` from the caches where they cover the request, else live."""

    def __init__(self, cache: Cache, live: Kube) -> None:
        self.cache = cache
        self.live = live

    def get(self, ref: Ref) -> Obj | None:
        r = self.cache.reflector(ref.api_version, ref.plural, ref.namespace)
        if r is None or r.source.label_selector or r.source.field_selector:
            return self.live.get(ref)
        return r.get(ref.namespace, ref.name)

    def list_objects(
        self,
        api_version: str,
        plural: str,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> list[Obj]:
        r = self.cache.reflector(api_version, plural, namespace)
        if r is None or not _covers(r.source, label_selector, field_selector):
            return self.live.list_objects(api_version, plural, namespace, label_selector, field_selector)
        out = []
        for o in r.items(namespace):
            labels = (o.get("metadata") or {}).get("labels") or {}
            if not label_selector or labels_match(label_selector, labels):
                out.append(o)
        return out


def _covers(source: Source, label_selector: str, field_selector: str) -> bool:
    """Whether a source's objects include every answer of a request with these selectors, and
    the rest can be evaluated here."""
    if field_selector != source.field_selector:
        return False
    if label_selector and labels_match(label_selector, {}) is None:
        return False
    if source.label_selector:
        # Only requests that require the source's label can be answered from it.
        terms = [t.strip() for t in label_selector.split(",")]
        key = source.label_selector
        return any(t == key or (t.split("=", 1)[0].strip() == key and "!=" not in t) for t in terms)
    return True


def _key(obj: Obj) -> tuple[str, str]:
    m = obj.get("metadata") or {}
    return str(m.get("namespace") or ""), str(m.get("name") or "")


def _collection_path(source: Source, namespace: str) -> str:
    return path_for(source.api_version, source.plural, namespace)


def _selectors(source: Source) -> list[tuple[str, str]]:
    q = []
    if source.label_selector:
        q.append(("labelSelector", source.label_selector))
    if source.field_selector:
        q.append(("fieldSelector", source.field_selector))
    return q
