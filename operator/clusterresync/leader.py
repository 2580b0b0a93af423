"""Leader election on a ``coordination.k8s.io/v1`` Lease, after client-go's leaderelection.

Several operator processes may run at once (the Deployment has two replicas); only the one
holding the Lease ``<namespace>/clusterresync-operator`` acts. The others wait, watch the Lease,
and take over once its holder stops renewing it. Kopf's own peering is not used: with equal
priorities every peer pauses (Kopf's docs, "Peering"), which gives no availability at all.

The protocol is client-go's (``k8s.io/client-go/tools/leaderelection/leaderelection.go``):

- ``tryAcquireOrRenew``: read the Lease (create it if it is missing); if another identity holds
  it and it has not expired, wait; otherwise write it back with ourselves as holder, by an
  update (PUT) carrying the ``resourceVersion`` just read, so that of two candidates racing for
  it exactly one wins (the other gets a 409 Conflict). A renewal keeps ``acquireTime`` and
  ``leaseTransitions``; taking the lease over sets ``acquireTime`` and increments
  ``leaseTransitions``. The holder first tries the update from the Lease it wrote last (the
  "fast path") and reads only when that fails.
- **Expiry is judged on the local clock, never on the server's timestamps**: a candidate
  remembers *when it saw* the record change (``observedTime``) and considers the lease expired
  ``leaseDurationSeconds`` after that. The timestamps in the Lease (``renewTime``,
  ``acquireTime``) are informational; clocks of different machines need not agree.
- ``leaseDurationSeconds`` (15 s) / ``renewDeadline`` (10 s) / ``retryPeriod`` (2 s): the
  leader renews every ``retryPeriod``; a candidate retries every ``retryPeriod`` (jittered by
  up to ``JitterFactor`` 1.2, as ``wait.JitterUntil``); the leader gives up leading when it has
  not renewed for ``renewDeadline``, which is shorter than ``leaseDuration``, so the old leader
  has stopped before anyone else may start. client-go's validation is kept:
  ``leaseDuration > renewDeadline > JitterFactor * retryPeriod``.
- ``ReleaseOnCancel``: on shutdown (SIGTERM, a rolling update) the leader writes the Lease back
  with an empty holder and ``leaseDurationSeconds: 1`` (``release()``), so that the next leader
  takes over at once instead of after ``leaseDuration``.

What this adds to client-go, because client-go itself "does not guarantee that only one client
is acting as a leader (a.k.a. fencing)" (its package doc):

- **Leadership is a function of the monotonic clock**: ``is_leader()`` is true only while the
  last successful write of the Lease was *sent* less than ``renewDeadline`` ago (measured with
  ``time.monotonic()``, which keeps counting while the process is stopped). A process frozen by
  SIGSTOP, a long GC pause or a starved event loop stops being the leader at the deadline
  itself, not when some loop gets round to noticing.
- **Terms**: every time this process becomes the leader (again) a new term starts. Work is done
  under a term (``FencedKube``): each write it sends first checks that this process is still the
  leader *in that term*, so a reconciliation that began before a lapse of leadership can never
  write after it, even if the process has become the leader again meanwhile.

The decisions are pure (``decide``, ``Election``) and unit tested with hypothesis; the I/O
(``LeaderElector``) goes through the project's adapter ``Kube`` on a thread of its own, so that
reconciliations occupying the default thread pool can never delay a renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Any

import structlog

from .kube import Kube, KubeError, path_for
from .state import HookOutcome, Obj

log = structlog.get_logger("clusterresync.leader")

LEASE_API = "coordination.k8s.io/v1"
DEFAULT_LEASE_NAME = "clusterresync-operator"
DEFAULT_LEASE_NAMESPACE = "clusterresync-system"
# client-go's defaults for core components (LeaderElectionConfig's field docs).
DEFAULT_LEASE_DURATION = 15
DEFAULT_RENEW_DEADLINE = 10.0
DEFAULT_RETRY_PERIOD = 2.0
JITTER_FACTOR = 1.2  # leaderelection.go: JitterFactor

_READS = frozenset({"GET", "HEAD"})


class NotLeaderError(Exception):
    """This process is not (or no longer) the leader in the term its work began in: nothing was sent."""


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------


def default_identity(environ: Mapping[str, str] | None = None) -> str:
    """The pod's name (downward API ``POD_NAME``) or the hostname, plus a random suffix.

    The suffix (client-go's callers use ``hostname + "_" + uuid``) makes a restarted container a
    new candidate: it cannot mistake the previous container's lease for its own.
    """
    env = os.environ if environ is None else environ
    base = env.get("POD_NAME") or socket.gethostname() or "clusterresync-operator"
    return f"{base}_{secrets.token_hex(4)}"


@dataclass(frozen=True)
class LeaderConfig:
    namespace: str = DEFAULT_LEASE_NAMESPACE
    name: str = DEFAULT_LEASE_NAME
    identity: str = ""
    lease_duration: int = DEFAULT_LEASE_DURATION  # whole seconds: Lease.spec.leaseDurationSeconds
    renew_deadline: float = DEFAULT_RENEW_DEADLINE
    retry_period: float = DEFAULT_RETRY_PERIOD

    def __post_init__(self) -> None:
        # leaderelection.go: NewLeaderElector's checks.
        if not self.identity:
            raise ValueError("the leader election identity is empty")
        if not self.namespace or not self.name:
            raise ValueError("the lease needs a namespace and a name")
        if self.lease_duration < 1 or self.renew_deadline <= 0 or self.retry_period <= 0:
            raise ValueError("the lease duration, renew deadline and retry period must be positive")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("the lease duration must be greater than the renew deadline")
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise ValueError(f"the renew deadline must be greater than {JITTER_FACTOR} x the retry period")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> LeaderConfig:
        """Defaults: the lease in ``POD_NAMESPACE`` (downward API), else ``clusterresync-system``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "namespace": env.get("POD_NAMESPACE") or DEFAULT_LEASE_NAMESPACE,
            "identity": default_identity(env),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


_configured: LeaderConfig | None = None


def configure(config: LeaderConfig) -> None:
    """Set the configuration the operator's startup uses (the CLI's flags)."""
    global _configured
    _configured = config


def configured() -> LeaderConfig:
    return _configured if _configured is not None else LeaderConfig.from_env()


# ------------------------------------------------------------------------------------------------
# The pure part: records, observations, decisions
# ------------------------------------------------------------------------------------------------


def micro_time(when: dt.datetime) -> str:
    """A ``metav1.MicroTime`` (RFC 3339 with microseconds, UTC)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseRecord:
    """``resourcelock.LeaderElectionRecord``, as a Lease's spec holds it."""

    holder: str = ""
    lease_duration_seconds: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0

    @classmethod
    def from_lease(cls, lease: Mapping[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time:
            out["acquireTime"] = self.acquire_time
        if self.renew_time:
            out["renewTime"] = self.renew_time
        return out


@dataclass(frozen=True)
class Observation:
    """The last record seen and the local (monotonic) time it was seen to change (``observedTime``)."""

    record: LeaseRecord | None = None
    at: float = float("-inf")


class Step(Enum):
    CREATE = "create"  # no Lease yet: create it, holding it
    ACQUIRE = "acquire"  # free, released or expired: take it over (a transition)
    RENEW = "renew"  # ours: renew it
    WAIT = "wait"  # held by another identity and not expired


@dataclass(frozen=True)
class Decision:
    step: Step
    observation: Observation
    write: LeaseRecord | None = None


def decide(
    current: LeaseRecord | None,
    seen: Observation,
    *,
    now: float,
    identity: str,
    lease_duration: int,
    stamp: str,
) -> Decision:
    """``tryAcquireOrRenew``'s decision, given the Lease's record as just read (None: no Lease).

    ``now`` is the local monotonic clock, ``stamp`` the wall-clock time to write (MicroTime).
    The record's own timestamps are never compared with anything: only a *change* of the record
    restarts the expiry countdown, on the local clock.
    """
    if current is None:
        return Decision(Step.CREATE, seen, LeaseRecord(identity, lease_duration, stamp, stamp, 0))
    if current != seen.record:
        seen = Observation(current, now)
    if current.holder and current.holder != identity and now < seen.at + current.lease_duration_seconds:
        return Decision(Step.WAIT, seen)
    if current.holder == identity:
        renewed = LeaseRecord(
            identity, lease_duration, current.acquire_time or stamp, stamp, current.transitions
        )
        return Decision(Step.RENEW, seen, renewed)
    taken = LeaseRecord(identity, lease_duration, stamp, stamp, current.transitions + 1)
    return Decision(Step.ACQUIRE, seen, taken)


class Election:
    """One candidate's memory and decisions; no I/O. Thread-safe: reconciliations ask it from
    worker threads whether they may still write, while the elector updates it.

    ``renewed_at`` is the monotonic time at which the last successful write of the Lease (as
    holder) was *sent*: the server recorded it after that, so every other candidate saw it
    change after that, and waits ``leaseDuration`` from then. This candidate leads until
    ``renewed_at + renewDeadline``, strictly earlier.
    """

    def __init__(self, config: LeaderConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._seen = Observation()
        self._lease: Obj | None = None  # the Lease as last read or written (its resourceVersion)
        self._renewed_at: float | None = None
        self._term = 0
        self._stopped = False

    # -- questions (any thread) -----------------------------------------------------------------
    def _leading_at(self, now: float) -> bool:
        return (
            not self._stopped
            and self._renewed_at is not None
            and now - self._renewed_at < self.config.renew_deadline
        )

    def is_leader(self, now: float) -> bool:
        with self._lock:
            return self._leading_at(now)

    def term_if_leader(self, now: float) -> int | None:
        with self._lock:
            return self._term if self._leading_at(now) else None

    def check(self, term: int, now: float) -> None:
        """Raise NotLeaderError unless this candidate leads, now, in ``term``."""
        with self._lock:
            if self._leading_at(now) and self._term == term:
                return
            current = self._term if self._leading_at(now) else None
        raise NotLeaderError(
            f"not the leader in term {term} any more (now: "
            + (f"term {current})" if current is not None else "not the leader)")
        )

    @property
    def holder(self) -> str:
        """The holder last seen on the Lease ("" if none or not read yet)."""
        with self._lock:
            return self._seen.record.holder if self._seen.record else ""

    @property
    def term(self) -> int:
        with self._lock:
            return self._term

    @property
    def stopped(self) -> bool:
        with self._lock:
            return self._stopped

    def record(self) -> LeaseRecord | None:
        """The record of the Lease as last read or written."""
        with self._lock:
            return LeaseRecord.from_lease(self._lease) if self._lease is not None else None

    def remember(self, lease: Obj | None) -> None:
        """The Lease as just read, for its resourceVersion (the observation is left alone)."""
        with self._lock:
            self._lease = lease

    # -- the elector's bookkeeping -------------------------------------------------------------
    def observe(self, lease: Obj | None, now: float, stamp: str) -> Decision:
        """The slow path: the Lease just read (None if missing) → what to do."""
        with self._lock:
            current = LeaseRecord.from_lease(lease) if lease is not None else None
            d = decide(
                current,
                self._seen,
                now=now,
                identity=self.config.identity,
                lease_duration=self.config.lease_duration,
                stamp=stamp,
            )
            self._seen = d.observation
            self._lease = lease
            if current is not None and current.holder != self.config.identity:
                self._renewed_at = None  # someone else holds it on the server: stop at once
            return d

    def fast_renewal(self, now: float, stamp: str) -> Obj | None:
        """client-go's fast path: while leading, the Lease we wrote last, renewed (to PUT)."""
        with self._lock:
            if not self._leading_at(now) or self._lease is None:
                return None
            record = LeaseRecord.from_lease(self._lease)
            if record.holder != self.config.identity:
                return None
            renewed = LeaseRecord(
                record.holder,
                self.config.lease_duration,
                record.acquire_time or stamp,
                stamp,
                record.transitions,
            )
            return self.body(renewed)

    def body(self, record: LeaseRecord) -> Obj:
        """The Lease to write: the one last read (metadata, resourceVersion) with ``record`` as spec."""
        lease = copy.deepcopy(self._lease) if self._lease is not None else None
        if lease is None:
            lease = {
                "apiVersion": LEASE_API,
                "kind": "Lease",
                "metadata": {
                    "name": self.config.name,
                    "namespace": self.config.namespace,
                    "labels": {"app.kubernetes.io/name": "clusterresync"},
                },
            }
        lease["apiVersion"], lease["kind"] = LEASE_API, "Lease"
        lease["spec"] = record.spec()  # the whole spec, as LeaseLock.Update does
        return lease

    def written(self, step: Step, lease: Obj, sent_at: float, done_at: float) -> bool:
        """A write as holder succeeded (``lease`` is the server's answer). True if a new term began."""
        with self._lock:
            self._lease = lease
            self._seen = Observation(LeaseRecord.from_lease(lease), done_at)
            if self._stopped:
                return False
            continuing = step is Step.RENEW and self._leading_at(sent_at)
            if not continuing:
                self._term += 1
            self._renewed_at = sent_at
            return not continuing

    def step_down(self) -> None:
        """Stop leading for good (shutdown): every fence refuses from now on."""
        with self._lock:
            self._stopped = True
            self._renewed_at = None

    def release_body(self, stamp: str) -> Obj | None:
        """``release()``: the Lease with no holder and a 1 s duration, if we hold it on record."""
        with self._lock:
            if self._lease is None:
                return None
            record = LeaseRecord.from_lease(self._lease)
            if record.holder != self.config.identity:
                return None
            return self.body(LeaseRecord("", 1, stamp, stamp, record.transitions))

    def released(self, lease: Obj, done_at: float) -> None:
        with self._lock:
            self._lease = lease
            self._seen = Observation(LeaseRecord.from_lease(lease), done_at)
            self._renewed_at = None


# ------------------------------------------------------------------------------------------------
# Fencing
# ------------------------------------------------------------------------------------------------


class FencedKube(Kube):
    """A view of a ``Kube`` (same client, same settings) that sends a write only while this
    process is the leader in the term the work began in; otherwise raises ``NotLeaderError``
    before anything is sent. Reads always go through.

    Checked on every request and again before every attempt (the adapter retries transient
    failures; a retry after leadership lapsed must not be sent either), and before an exec.
    Views made from it (``guarded``: a copy) keep the fence.
    """

    def __init__(self, base: Kube, fence: Callable[[], None]) -> None:
        # Not Kube.__init__: this is a view sharing the base's client, pool and settings.
        self.__dict__.update(base.__dict__)
        self._fence = fence

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        if method.upper() not in _READS:
            self._fence()
        return super().request(method, path, *args, **kwargs)

    def _send(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method.upper() not in _READS:
            self._fence()
        return super()._send(method, *args, **kwargs)

    def exec(self, *args: Any, **kwargs: Any) -> HookOutcome:
        self._fence()
        return super().exec(*args, **kwargs)


# ------------------------------------------------------------------------------------------------
# The I/O
# ------------------------------------------------------------------------------------------------


def lease_client(api_client: Any, config: LeaderConfig) -> Kube:
    """A ``Kube`` for the Lease: a request may not outlast half the renew deadline (a stuck
    request leaves time for another attempt before the deadline), nor retry past one retry
    period (the election loop retries on its own schedule)."""
    try:
        return Kube(
            api_client,
            retry_budget=config.retry_period,
            request_timeout=max(1.0, config.renew_deadline / 2),
        )
    except TypeError:  # an adapter without these settings
        return Kube(api_client)


class LeaderElector:
    """Runs the election in the background (``start``), answers ``is_leader`` and hands out fences."""

    def __init__(
        self,
        config: LeaderConfig,
        kube: Kube,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.config = config
        self.election = Election(config)
        self._kube = kube
        self._clock = clock
        self._wall = wall
        # One thread of its own: renewals never queue behind reconciliations in the default pool.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leader-election")
        self._task: asyncio.Task[None] | None = None
        self._reported_leading = False
        self._reported_holder: str | None = None
        self._path = path_for(LEASE_API, "leases", config.namespace, config.name)
        self._log = log.bind(lease=f"{config.namespace}/{config.name}", identity=config.identity)

    # -- questions ---------------------------------------------------------------------------
    @property
    def identity(self) -> str:
        return self.config.identity

    def is_leader(self) -> bool:
        return self.election.is_leader(self._clock())

    def term_if_leader(self) -> int | None:
        return self.election.term_if_leader(self._clock())

    def fence(self, term: int) -> Callable[[], None]:
        """A check that raises NotLeaderError unless this process still leads in ``term``."""

        def check() -> None:
            self.election.check(term, self._clock())

        return check

    def fenced(self, kube: Kube, term: int) -> FencedKube:
        return FencedKube(kube, self.fence(term))

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._log.info(
            "leader election",
            lease_duration=self.config.lease_duration,
            renew_deadline=self.config.renew_deadline,
            retry_period=self.config.retry_period,
        )
        self._task = asyncio.create_task(self._run(), name="leader election")

    async def stop(self) -> None:
        """Stop leading (fences refuse from now on) and stop the election loop. No I/O."""
        self.election.step_down()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._report()

    async def release(self) -> bool:
        """client-go ``ReleaseOnCancel``: give the Lease up so that another candidate takes over
        at once. Call after ``stop`` and once nothing acts any more under the lease."""
        loop = asyncio.get_running_loop()
        try:
            # The same single thread: after any write still in flight, with its resourceVersion.
            return await loop.run_in_executor(self._executor, self._release)
        except Exception as e:
            self._log.warning("could not release the lease", error=str(e))
            return False

    def close(self) -> None:
        self._executor.shutdown(wait=False)

    # -- the loop ------------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(self._executor, self.try_acquire_or_renew)
            except KubeError as e:
                self._log.warning("leader election: the lease could not be read or written", error=str(e))
            except Exception:
                self._log.error("leader election attempt failed", exc_info=True)
            self._report()
            await asyncio.sleep(self._delay())

    def _delay(self) -> float:
        if self.is_leader():
            return self.config.retry_period  # renew: wait.Until(..., RetryPeriod)
        # acquire: wait.JitterUntil(..., RetryPeriod, JitterFactor, ...)
        return self.config.retry_period * (1.0 + random.random() * JITTER_FACTOR)

    def try_acquire_or_renew(self) -> bool:
        """One round of ``tryAcquireOrRenew`` (blocking I/O). True if we hold the lease after it."""
        e = self.election
        sent = self._clock()
        stamp = micro_time(self._wall())
        fast = e.fast_renewal(sent, stamp)
        if fast is not None:
            try:
                out = self._kube.request("PUT", self._path, body=fast, what="the leader lease")
                self._became(e.written(Step.RENEW, out, sent, self._clock()))
                return True
            except KubeError as err:
                self._log.info("renewing from the last known lease failed; reading it", error=str(err))
        try:
            lease: Obj | None = self._kube.request("GET", self._path, what="the leader lease")
        except KubeError as err:
            if err.code != 404:
                raise
            lease = None
        now = self._clock()
        d = e.observe(lease, now, micro_time(self._wall()))
        if d.step is Step.WAIT or d.write is None:
            return False
        body = e.body(d.write)
        sent = self._clock()
        try:
            if d.step is Step.CREATE:
                out = self._kube.request(
                    "POST",
                    path_for(LEASE_API, "leases", self.config.namespace),
                    body=body,
                    what="the leader lease",
                )
            else:
                out = self._kube.request("PUT", self._path, body=body, what="the leader lease")
        except KubeError as err:
            if err.code == 409:  # another candidate wrote first (Conflict or AlreadyExists)
                return False
            raise
        self._became(e.written(d.step, out, sent, self._clock()))
        return True

    def _became(self, new_term: bool) -> None:
        if new_term:
            rec = self.election.record()
            self._log.info(
                "became the leader", term=self.election.term, transitions=rec.transitions if rec else None
            )

    def _release(self) -> bool:
        for _ in range(2):
            body = self.election.release_body(micro_time(self._wall()))
            if body is None:
                return False
            try:
                out = self._kube.request("PUT", self._path, body=body, what="the leader lease")
            except KubeError as err:
                if err.code != 409:
                    raise
                # Our copy is stale: read it again; release only if it is still ours.
                self.election.remember(self._kube.request("GET", self._path, what="the leader lease"))
                continue
            self.election.released(out, self._clock())
            self._log.info("released the lease")
            return True
        return False

    def _report(self) -> None:
        """Log the transitions: leading or not, and who holds the lease."""
        leading = self.is_leader()
        if leading != self._reported_leading:
            if not leading and self.election.stopped:
                self._log.info("stopped leading", reason="shutting down")
            elif not leading:
                self._log.warning(
                    "stopped leading",
                    reason="the lease was not renewed within the renew deadline, or another holder took it",
                )
            self._reported_leading = leading
        holder = self.election.holder
        if holder != self._reported_holder:
            if holder and holder != self.identity:
                self._log.info("the lease is held by another process", holder=holder)
            self._reported_holder = holder
