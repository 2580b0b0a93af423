"""Leader election (leader.py) and the handlers' concurrency rules, without a cluster.

- ``decide``: client-go's tryAcquireOrRenew decision, judged on the local clock only.
- A simulation of several candidates sharing one Lease (optimistic concurrency on its
  resourceVersion, as the API server does), where hypothesis chooses who runs when, who is
  frozen (SIGSTOP) and for how long, and who crashes: never two leaders at the same instant, and
  a frozen leader's work is refused once it is back.
- ``FencedKube``: writes refused before they are sent, retries included; reads allowed.
- The handlers: one reconciliation per resync at a time (daemon and deletion handler), held
  until the worker thread really ends; the daemon survives any exception, with backoff.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import kopf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterresync import handlers, leader
from clusterresync.kube import Kube, KubeError
from clusterresync.leader import (
    Election,
    FencedKube,
    LeaderConfig,
    LeaderElector,
    LeaseRecord,
    NotLeaderError,
    Observation,
    Step,
    decide,
)

STAMP = "2030-01-01T00:00:00.000000Z"


def config(identity: str = "a", **kw: Any) -> LeaderConfig:
    base: dict[str, Any] = {
        "identity": identity,
        "lease_duration": 4,
        "renew_deadline": 3.0,
        "retry_period": 0.5,
    }
    base.update(kw)
    return LeaderConfig(**base)


# -- configuration -------------------------------------------------------------------------------
def test_config_defaults_are_client_gos() -> None:
    c = LeaderConfig(identity="x")
    assert (c.lease_duration, c.renew_deadline, c.retry_period) == (15, 10.0, 2.0)
    assert (c.namespace, c.name) == ("clusterresync-system", "clusterresync-operator")


@pytest.mark.parametrize(
    "kw",
    [
        {"lease_duration": 10, "renew_deadline": 10.0},  # leaseDuration must be > renewDeadline
        {"renew_deadline": 2.4, "retry_period": 2.0},  # renewDeadline must be > 1.2 x retryPeriod
        {"retry_period": 0.0},
        {"identity": ""},
    ],
)
def test_config_validation_follows_new_leader_elector(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LeaderConfig(**{"identity": "x", **kw})


def test_identity_and_namespace_from_the_downward_api() -> None:
    c = LeaderConfig.from_env({"POD_NAME": "op-7d9f", "POD_NAMESPACE": "ops"})
    assert c.namespace == "ops"
    assert c.identity.startswith("op-7d9f_") and len(c.identity) > len("op-7d9f_")
    # a random suffix: two processes of the same pod name are two candidates
    assert (
        LeaderConfig.from_env({"POD_NAME": "p"}).identity != LeaderConfig.from_env({"POD_NAME": "p"}).identity
    )
    assert LeaderConfig.from_env({}).namespace == "clusterresync-system"
    assert LeaderConfig.from_env({}, identity="fixed", namespace="n").identity == "fixed"


def test_cli_takes_the_lease_flags_and_passes_the_rest_to_kopf() -> None:
    from clusterresync.cli import leader_config

    c, rest = leader_config(
        [
            "--namespace=demo",
            "--lease-duration=4",
            "--renew-deadline",
            "3",
            "--retry-period=0.5",
            "--identity=me",
            "--lease-namespace=ops",
            "--standalone",
            "--liveness=http://0.0.0.0:8080/healthz",
        ]
    )
    assert (c.lease_duration, c.renew_deadline, c.retry_period, c.identity, c.namespace) == (
        4,
        3.0,
        0.5,
        "me",
        "ops",
    )
    assert rest == ["--namespace=demo", "--standalone", "--liveness=http://0.0.0.0:8080/healthz"]


# -- decide ----------------------------------------------------------------------------------------
def rec(holder: str, duration: int = 4, renew: str = STAMP, transitions: int = 0) -> LeaseRecord:
    return LeaseRecord(holder, duration, STAMP, renew, transitions)


def test_no_lease_is_created_held_by_us() -> None:
    d = decide(None, Observation(), now=0.0, identity="a", lease_duration=4, stamp=STAMP)
    assert d.step is Step.CREATE
    assert d.write == LeaseRecord("a", 4, STAMP, STAMP, 0)


def test_a_lease_held_by_another_is_waited_for_a_full_duration_from_first_sight() -> None:
    """Even if its renewTime is years old: server timestamps are not compared with our clock."""
    old = rec("b", renew="2001-01-01T00:00:00.000000Z")
    d = decide(old, Observation(), now=1000.0, identity="a", lease_duration=4, stamp=STAMP)
    assert d.step is Step.WAIT and d.observation == Observation(old, 1000.0)
    d = decide(old, d.observation, now=1003.9, identity="a", lease_duration=4, stamp=STAMP)
    assert d.step is Step.WAIT
    d = decide(old, d.observation, now=1004.0, identity="a", lease_duration=4, stamp=STAMP)
    assert d.step is Step.ACQUIRE
    assert d.write is not None and d.write.holder == "a" and d.write.transitions == 1
    assert d.write.acquire_time == STAMP


def test_any_change_of_the_record_restarts_the_countdown() -> None:
    seen = Observation(rec("b", renew="t1"), 0.0)
    d = decide(rec("b", renew="t2"), seen, now=3.9, identity="a", lease_duration=4, stamp=STAMP)
    assert d.step is Step.WAIT and d.observation.at == 3.9
    assert (
        decide(rec("b", renew="t2"), d.observation, now=7.8, identity="a", lease_duration=4, stamp=STAMP).step
        is Step.WAIT
    )


def test_renewal_keeps_acquire_time_and_transitions_and_a_released_lease_is_free() -> None:
    mine = LeaseRecord("a", 4, "acq", "r", 7)
    d = decide(mine, Observation(), now=0.0, identity="a", lease_duration=4, stamp=STAMP)
    assert d.step is Step.RENEW and d.write == LeaseRecord("a", 4, "acq", STAMP, 7)
    released = LeaseRecord("", 1, "x", "x", 7)
    d = decide(released, Observation(), now=0.0, identity="a", lease_duration=4, stamp=STAMP)
    assert d.step is Step.ACQUIRE and d.write is not None and d.write.transitions == 8


@given(
    events=st.lists(
        st.tuples(st.sampled_from(["b", "c", ""]), st.integers(0, 3), st.floats(0.0, 3.0)),
        min_size=1,
        max_size=30,
    )
)
def test_never_acquires_a_lease_another_holder_renewed_less_than_a_duration_ago(
    events: list[tuple[str, int, float]],
) -> None:
    seen, now, changed_at = Observation(), 0.0, 0.0
    last: LeaseRecord | None = None
    for holder, version, dt_ in events:
        now += dt_
        current = LeaseRecord(holder, 4, STAMP, f"r{version}", 0)
        if current != last:
            changed_at, last = now, current
        d = decide(current, seen, now=now, identity="a", lease_duration=4, stamp=STAMP)
        seen = d.observation
        if holder and now - changed_at < 4:
            assert d.step is Step.WAIT
        else:
            assert d.step is Step.ACQUIRE


# -- a simulated cluster of candidates -------------------------------------------------------------
class LeaseApi:
    """The API server's side of one Lease: create, get, update with resourceVersion preconditions."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.rv = 0
        self.writes: list[tuple[str, str]] = []  # (method, holder)
        self.fail_next = 0

    def request(self, method: str, path: str, *, body: Any = None, what: str = "", **_: Any) -> Any:
        if self.fail_next:
            self.fail_next -= 1
            raise KubeError(503, "ServiceUnavailable", "down")
        if method == "GET":
            if self.lease is None:
                raise KubeError(404, "NotFound", "leases not found")
            return copy.deepcopy(self.lease)
        if method == "POST":
            if self.lease is not None:
                raise KubeError(409, "AlreadyExists", "exists")
            return self._store(body, method)
        if method == "PUT":
            if self.lease is None:
                raise KubeError(404, "NotFound", "leases not found")
            if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
                raise KubeError(409, "Conflict", "the object has been modified")
            return self._store(body, method)
        raise AssertionError(method)

    def _store(self, body: dict[str, Any], method: str) -> dict[str, Any]:
        self.rv += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.rv)
        self.writes.append((method, body["spec"]["holderIdentity"]))
        return copy.deepcopy(self.lease)

    @property
    def holder(self) -> str:
        return str(((self.lease or {}).get("spec") or {}).get("holderIdentity") or "")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def candidate(api: LeaseApi, clock: Clock, identity: str, **kw: Any) -> LeaderElector:
    return LeaderElector(
        config(identity, **kw),
        api,  # type: ignore[arg-type]
        clock=clock,
        wall=lambda: dt.datetime(2030, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=clock.t),
    )


def test_first_candidate_creates_and_leads_second_waits() -> None:
    api, clock = LeaseApi(), Clock()
    a, b = candidate(api, clock, "a"), candidate(api, clock, "b")
    assert a.try_acquire_or_renew() and a.is_leader()
    assert not b.try_acquire_or_renew() and not b.is_leader()
    assert api.writes == [("POST", "a")]
    clock.t += 0.5
    assert a.try_acquire_or_renew()  # fast path: one PUT, no GET
    assert api.writes[-1] == ("PUT", "a")


def test_a_dead_leader_is_replaced_after_lease_duration_and_not_before() -> None:
    api, clock = LeaseApi(), Clock()
    a, b = candidate(api, clock, "a"), candidate(api, clock, "b")
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()  # b sees a's record at t=100
    clock.t += 3.9
    assert not b.try_acquire_or_renew()
    assert not a.is_leader()  # a stopped at renewDeadline (3 s), before b may start
    clock.t += 0.1
    assert b.try_acquire_or_renew() and b.is_leader()
    lease = api.lease or {}
    assert lease["spec"]["leaseTransitions"] == 1 and lease["spec"]["holderIdentity"] == "b"


def test_a_leader_that_cannot_renew_stops_at_the_renew_deadline_exactly() -> None:
    api, clock = LeaseApi(), Clock()
    a = candidate(api, clock, "a")
    a.try_acquire_or_renew()
    api.fail_next = 100
    for _ in range(5):
        clock.t += 0.5
        with pytest.raises(KubeError):
            a.try_acquire_or_renew()
    assert a.is_leader()  # 2.5 s since the last renewal was sent
    clock.t += 0.49
    assert a.is_leader()
    clock.t += 0.01
    assert not a.is_leader()


def test_release_lets_the_next_candidate_take_over_at_once() -> None:
    api, clock = LeaseApi(), Clock()
    a, b = candidate(api, clock, "a"), candidate(api, clock, "b")
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    a.election.step_down()
    assert not a.is_leader()
    assert a._release()
    lease = api.lease or {}
    assert lease["spec"]["holderIdentity"] == "" and lease["spec"]["leaseDurationSeconds"] == 1
    assert b.try_acquire_or_renew() and b.is_leader()  # no wait
    assert not a._release()  # not ours any more: nothing written
    assert api.writes[-1] == ("PUT", "b")


def test_a_frozen_leader_is_refused_after_waking_and_its_old_term_stays_refused() -> None:
    api, clock = LeaseApi(), Clock()
    a, b = candidate(api, clock, "a"), candidate(api, clock, "b")
    a.try_acquire_or_renew()
    term = a.term_if_leader()
    assert term is not None
    fence = a.fence(term)
    fence()  # leading: allowed
    b.try_acquire_or_renew()
    clock.t += 10  # a is SIGSTOPped; b takes over
    assert b.try_acquire_or_renew()
    with pytest.raises(NotLeaderError):
        fence()  # a's reconciliation resumes: refused before anything is sent
    assert not a.try_acquire_or_renew()  # the lease is b's
    # b dies; a becomes the leader again, in a new term: the old work is still refused
    clock.t += 10
    a.try_acquire_or_renew()
    assert a.try_acquire_or_renew() and a.is_leader()
    assert a.term_if_leader() != term
    with pytest.raises(NotLeaderError):
        fence()


@dataclass
class Sim:
    api: LeaseApi
    clock: Clock
    cands: list[LeaderElector]
    frozen_until: list[float]
    dead: list[bool]


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 2),  # candidate
            st.sampled_from(["run", "run", "run", "freeze", "crash", "api-down", "release"]),
            st.floats(0.0, 2.0),  # time passing before the step
            st.floats(0.5, 12.0),  # a freeze's length
        ),
        min_size=1,
        max_size=80,
    )
)
def test_never_two_leaders_at_once(steps: list[tuple[int, str, float, float]]) -> None:
    """Whatever the schedule: frozen processes, crashes, API failures, releases, races."""
    api, clock = LeaseApi(), Clock()
    sim = Sim(api, clock, [candidate(api, clock, n) for n in "abc"], [0.0] * 3, [False] * 3)
    terms: dict[int, tuple[int, Any]] = {}
    for i, what, pause, freeze in steps:
        clock.t += pause
        c = sim.cands[i]
        awake = not sim.dead[i] and clock.t >= sim.frozen_until[i]
        if awake and what == "run":
            try:
                c.try_acquire_or_renew()
            except KubeError:
                pass
        elif awake and what == "freeze":
            sim.frozen_until[i] = clock.t + freeze
        elif awake and what == "crash":
            sim.dead[i] = True
        elif what == "api-down":
            api.fail_next = 2
        elif awake and what == "release":
            c.election.step_down()
            try:
                c._release()
            except KubeError:
                pass  # release() logs it; the lease then expires
            sim.dead[i] = True
        # Leadership as each process would judge it right now (a frozen one judges when it wakes,
        # on the same monotonic clock, which runs on while it is stopped).
        leaders = [j for j, x in enumerate(sim.cands) if not sim.dead[j] and x.is_leader()]
        assert len(leaders) <= 1, (leaders, clock.t)
        for j in leaders:
            term = sim.cands[j].term_if_leader()
            assert term is not None
            terms.setdefault(j, (term, sim.cands[j].fence(term)))
        # Work begun under an earlier leader is refused as soon as anyone else leads.
        for j, (_term, fence) in list(terms.items()):
            if any(k != j for k in leaders):
                with pytest.raises(NotLeaderError):
                    fence()
                del terms[j]
        if leaders:
            assert api.holder == sim.cands[leaders[0]].identity


@settings(max_examples=50, deadline=None)
@given(order=st.permutations([0, 1, 2]), gaps=st.lists(st.floats(0.0, 0.3), min_size=3, max_size=3))
def test_a_live_candidate_takes_over_within_lease_duration_plus_retry(
    order: list[int], gaps: list[float]
) -> None:
    api, clock = LeaseApi(), Clock()
    cands = [candidate(api, clock, n) for n in "abc"]
    for i, g in zip(order, gaps, strict=True):
        clock.t += g
        cands[i].try_acquire_or_renew()
    leader_i = next(i for i, c in enumerate(cands) if c.is_leader())
    died = clock.t
    others = [c for i, c in enumerate(cands) if i != leader_i]
    while not any(c.is_leader() for c in others):
        clock.t += 0.5 * 2.2  # the longest jittered retry period
        for c in others:
            c.try_acquire_or_renew()
        assert clock.t - died <= 4 + 2 * 0.5 * 2.2 + 0.3, "no takeover within the bound"


# -- fencing ---------------------------------------------------------------------------------------
class Flag:
    def __init__(self) -> None:
        self.leading = True

    def __call__(self) -> None:
        if not self.leading:
            raise NotLeaderError("no")


def fenced_kube(monkeypatch: pytest.MonkeyPatch, answers: list[Any]) -> tuple[FencedKube, Flag, list[str]]:
    sent: list[str] = []

    def fake_send(self: Kube, method: str, path: str, *args: Any, **kw: Any) -> Any:
        sent.append(f"{method} {path}")
        answer = answers.pop(0) if answers else {}
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer()
        return answer

    monkeypatch.setattr(Kube, "_send", fake_send)
    base = Kube(SimpleNamespace(), initial_backoff=0.0, max_backoff=0.0)
    flag = Flag()
    return FencedKube(base, flag), flag, sent


def test_fenced_writes_are_refused_before_sending_reads_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    k, flag, sent = fenced_kube(monkeypatch, [])
    k.request("PATCH", "/api/v1/persistentvolumes/pv1", body={})
    flag.leading = False
    assert k.request("GET", "/api/v1/persistentvolumes") == {}
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        with pytest.raises(NotLeaderError):
            k.request(method, "/api/v1/namespaces/n/pods/p", body={})
    with pytest.raises(NotLeaderError):
        k.exec("n", "p", None, ["true"], 5)
    assert sent == ["PATCH /api/v1/persistentvolumes/pv1", "GET /api/v1/persistentvolumes"]


def test_a_retry_after_leadership_lapsed_is_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    flag_box: list[Flag] = []

    def lapse_then_fail() -> Any:
        flag_box[0].leading = False
        raise KubeError(503, "ServiceUnavailable", "try again")

    k, flag, sent = fenced_kube(monkeypatch, [lapse_then_fail])
    flag_box.append(flag)
    with pytest.raises(NotLeaderError):
        k.request("DELETE", "/api/v1/namespaces/n/pods/p", body={})
    assert sent == ["DELETE /api/v1/namespaces/n/pods/p"]


def test_guarded_views_keep_the_fence(monkeypatch: pytest.MonkeyPatch) -> None:
    k, flag, sent = fenced_kube(monkeypatch, [])
    guarded = getattr(k, "guarded", None)
    if guarded is None:
        pytest.skip("this adapter has no guarded views")
    from clusterresync.kube import Protected

    view = guarded(Protected("n", frozenset(), frozenset(), frozenset()))
    flag.leading = False
    with pytest.raises(NotLeaderError):
        view.request("POST", "/api/v1/namespaces/n/persistentvolumeclaims", body={"metadata": {"name": "c"}})
    assert sent == []


# -- handlers --------------------------------------------------------------------------------------
def test_backoff_doubles_from_one_second_to_thirty() -> None:
    assert [handlers.backoff(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


@pytest.fixture
def leading(monkeypatch: pytest.MonkeyPatch) -> LeaderElector:
    api, clock = LeaseApi(), Clock()
    el = candidate(api, clock, "me")
    el.try_acquire_or_renew()
    monkeypatch.setattr(handlers, "_elector", el)
    monkeypatch.setattr(handlers, "cache", lambda: NoCache())
    return el


class NoCache:
    """handlers.cache() without watches: every read goes to handlers.kube(), writes are seen at once."""

    def reflector(self, *_: Any) -> None:
        return None

    def wait_seen(self, *_: Any) -> bool:
        return True


class Objects:
    """handlers.kube(): the ClusterResync as the daemon re-reads it."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def get(self, ref: Any) -> dict[str, Any] | None:
        return copy.deepcopy(self.body)


def resync_body(deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "rs", "namespace": "ns", "uid": "u1"}
    if deleting:
        meta["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    return {"apiVersion": "clusterresync.io/v1alpha1", "kind": "ClusterResync", "metadata": meta}


def outcome(phase: str = "Resyncing", requeue: float | None = 0.01, remove_finalizer: bool = False) -> Any:
    return SimpleNamespace(
        plan=SimpleNamespace(requeue_after=requeue, remove_finalizer=remove_finalizer),
        status=SimpleNamespace(phase=phase),
        writes=[],
        replan_now=False,
        pause=None,
        requeue_after=requeue,
        finished=requeue is None and phase in ("Completed", "Failed"),
    )


class Stopped:
    """kopf.DaemonStopped stand-in: records the waits."""

    def __init__(self, after: int = 1000) -> None:
        self.waits: list[float] = []
        self.after = after

    def __bool__(self) -> bool:
        return len(self.waits) >= self.after

    async def wait(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (Kopf's signature)
        self.waits.append(float(timeout or 0))
        await asyncio.sleep(0)


async def test_daemon_and_deletion_handler_never_reconcile_at_once(
    monkeypatch: pytest.MonkeyPatch, leading: LeaderElector
) -> None:
    active, overlaps, calls = [0], [0], [0]
    lock = threading.Lock()

    def slow_reconcile(kube: Any, body: dict[str, Any], *_: Any) -> Any:
        with lock:
            active[0] += 1
            overlaps[0] = max(overlaps[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
            calls[0] += 1
        deleting = bool(body["metadata"].get("deletionTimestamp"))
        return outcome("Completed", None, remove_finalizer=True) if deleting else outcome()

    objs = Objects(resync_body())
    monkeypatch.setattr(handlers, "reconcile", slow_reconcile)
    monkeypatch.setattr(handlers, "kube", lambda: objs)
    stopped = Stopped(after=6)
    daemon = asyncio.create_task(handlers.drive(body=kopf.Body(resync_body()), stopped=stopped))
    await asyncio.sleep(0.01)
    objs.body = resync_body(deleting=True)
    await handlers.deleted(body=kopf.Body(resync_body(deleting=True)))
    await daemon
    assert overlaps[0] == 1 and calls[0] >= 2


async def test_a_cancelled_caller_keeps_the_lock_until_its_thread_returns(
    monkeypatch: pytest.MonkeyPatch, leading: LeaderElector
) -> None:
    release = threading.Event()
    order: list[str] = []

    def blocking(kube: Any, body: dict[str, Any], *_: Any) -> Any:
        order.append("first starts")
        release.wait(5)
        order.append("first ends")
        return outcome()

    monkeypatch.setattr(handlers, "reconcile", blocking)
    monkeypatch.setattr(handlers, "kube", lambda: Objects(resync_body()))
    first = asyncio.create_task(handlers._reconcile_exclusively("u1", "ns", "rs"))
    await asyncio.sleep(0.05)
    first.cancel()  # Kopf cancels the daemon: its thread runs on
    await asyncio.sleep(0.05)

    def second_reconcile(kube: Any, body: dict[str, Any], *_: Any) -> Any:
        order.append("second")
        return outcome()

    monkeypatch.setattr(handlers, "reconcile", second_reconcile)
    second = asyncio.create_task(handlers._reconcile_exclusively("u1", "ns", "rs", deleting=True))
    await asyncio.sleep(0.05)
    assert order == ["first starts"], "the second ran while the first thread was still running"
    release.set()
    await second
    with pytest.raises(asyncio.CancelledError):
        await first
    assert order == ["first starts", "first ends", "second"]


async def test_the_daemon_survives_any_exception_with_backoff(
    monkeypatch: pytest.MonkeyPatch, leading: LeaderElector
) -> None:
    results: list[Any] = [
        RuntimeError("boom"),
        KeyError("x"),
        RuntimeError("again"),
        outcome(),
        ValueError("v"),
    ]
    results.append(outcome("Completed", None))

    def flaky(kube: Any, body: dict[str, Any], *_: Any) -> Any:
        r = results.pop(0)
        if isinstance(r, Exception):
            raise r
        return r

    monkeypatch.setattr(handlers, "reconcile", flaky)
    monkeypatch.setattr(handlers, "kube", lambda: Objects(resync_body()))
    stopped = Stopped()
    await handlers.drive(body=kopf.Body(resync_body()), stopped=stopped)
    assert results == []
    assert stopped.waits == [1.0, 2.0, 4.0, 0.01, 1.0]  # reset after the success


async def test_a_standby_never_reconciles(monkeypatch: pytest.MonkeyPatch, leading: LeaderElector) -> None:
    leading.election.step_down()
    monkeypatch.setattr(handlers, "reconcile", lambda *a: pytest.fail("a standby reconciled"))
    monkeypatch.setattr(handlers, "kube", lambda: Objects(resync_body()))
    stopped = Stopped(after=3)
    await handlers.drive(body=kopf.Body(resync_body()), stopped=stopped)
    assert stopped.waits == [0.5, 0.5, 0.5]
    with pytest.raises(kopf.TemporaryError):
        await handlers.deleted(body=kopf.Body(resync_body(deleting=True)))


async def test_leadership_lost_mid_reconcile_stops_the_pass_not_the_daemon(
    monkeypatch: pytest.MonkeyPatch, leading: LeaderElector
) -> None:
    passes: list[str] = []

    def reconcile(kube: Any, body: dict[str, Any], *_: Any) -> Any:
        if not passes:
            passes.append("refused")
            leading.election.step_down()
            kube._fence()  # the next write of this pass
        passes.append("ran")
        return outcome()

    monkeypatch.setattr(handlers, "reconcile", reconcile)
    monkeypatch.setattr(handlers, "kube", lambda: Objects(resync_body()))
    stopped = Stopped(after=2)
    await handlers.drive(body=kopf.Body(resync_body()), stopped=stopped)
    assert passes == ["refused"]
    assert stopped.waits == [0.5, 0.5]  # waiting for leadership, no error backoff


def test_leader_module_has_no_kopf_dependency() -> None:
    assert "kopf" not in vars(leader)
    assert isinstance(Election(config()).config, LeaderConfig)


async def test_the_deletion_handler_backs_off_on_errors_and_waits_for_the_cleanup(
    monkeypatch: pytest.MonkeyPatch, leading: LeaderElector
) -> None:
    results: list[Any] = [RuntimeError("boom"), RuntimeError("again"), outcome(requeue=3.0)]
    results.append(outcome("Failed", None, remove_finalizer=True))

    def flaky(kube: Any, body: dict[str, Any], *_: Any) -> Any:
        r = results.pop(0)
        if isinstance(r, Exception):
            raise r
        return r

    monkeypatch.setattr(handlers, "reconcile", flaky)
    monkeypatch.setattr(handlers, "kube", lambda: Objects(resync_body(deleting=True)))
    delays = []
    for _ in range(3):
        with pytest.raises(kopf.TemporaryError) as e:
            await handlers.deleted(body=kopf.Body(resync_body(deleting=True)))
        delays.append(e.value.delay)
    assert delays == [1.0, 2.0, 3.0]  # two failures, then "cleaning up" at the plan's pace
    await handlers.deleted(body=kopf.Body(resync_body(deleting=True)))  # done: Kopf removes the finalizer
    assert results == [] and "u1" not in handlers._deletion_failures


def test_kopf_is_given_the_lease_identity_and_never_looks_the_user_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The image runs as uid 65532, which has no /etc/passwd entry on a slim base (nor do
    OpenShift's arbitrary uids): Kopf must not need ``getpass.getuser`` to name itself."""
    import getpass

    from kopf._core.engines import peering

    from clusterresync import cli

    def no_such_user() -> str:
        raise KeyError("getpwuid(): uid not found: 65532")

    monkeypatch.setattr(getpass, "getuser", no_such_user)
    monkeypatch.delenv("POD_ID", raising=False)
    with pytest.raises(KeyError):
        peering.detect_own_id(manual=False)  # what crashed the image's first start
    env: dict[str, str] = {}
    cli.give_kopf_the_identity("op-7f9c-abc12", env)
    assert env == {"POD_ID": "op-7f9c-abc12"}
    monkeypatch.setenv("POD_ID", env["POD_ID"])
    assert peering.detect_own_id(manual=False) == "op-7f9c-abc12"
    cli.give_kopf_the_identity("other", env)  # a POD_ID set by the user is kept
    assert env["POD_ID"] == "op-7f9c-abc12"


@pytest.mark.parametrize(
    ("args", "json_logs", "expected"),
    [
        ([], True, ["--log-format=json", "--all-namespaces"]),
        ([], False, ["--all-namespaces"]),
        (["-n", "a", "--namespace=b"], True, ["--log-format=json", "-n", "a", "--namespace=b"]),
        (["--log-format=plain", "-A"], True, ["--log-format=plain", "-A"]),  # the user's choice stays
    ],
)
def test_kopf_run_args(args: list[str], json_logs: bool, expected: list[str]) -> None:
    from clusterresync import cli

    assert cli.kopf_run_args(args, json_logs) == expected
