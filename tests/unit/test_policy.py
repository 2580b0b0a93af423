"""ResyncPolicy decisions (``clusterresync.policy``): when pods are probed, what counts as drift,
every storm guard, Manual and Auto, history limits, and (hypothesis) that no sequence of drift and
time ever makes the policy remediate more than its guards allow."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clusterresync.models import (
    LABEL_POLICY_UID,
    Remediation,
    ResyncPolicySpec,
    ResyncPolicyStatus,
)
from clusterresync.planner import ts
from clusterresync.policy import Policy, PolicyObserved, PolicyPlan, confirmed, decide
from clusterresync.state import Create, Delete, Exec, HookOutcome

from .planner.drive import spec as resync_spec
from .world import T0, World

Doc = Callable[[str], dict[str, Any]]
UID = "policy-uid"


def spec(**kw: Any) -> ResyncPolicySpec:
    base: dict[str, Any] = {
        "target": {"name": "db"},
        "primary": {"podName": "db-1"},
        "volumes": ["data"],
        "probe": {"preset": "Command", "command": ["probe"]},
        "intervalSeconds": 60,
        "mode": "Auto",
        "resyncTemplate": {"primaryStableSeconds": 0},
    }
    base.update(kw)
    return ResyncPolicySpec.model_validate(base)


def in_sync(pod: str) -> dict[str, Any]:
    return {"role": "primary" if pod == "db-1" else "replica", "position": 100, "history": "1", "link": "up"}


def diverged(which: str) -> Doc:
    def doc(pod: str) -> dict[str, Any]:
        if pod == which:
            return {"role": "replica", "position": 140, "history": "2", "link": "down"}
        return in_sync(pod)

    return doc


def step(
    w: World,
    s: ResyncPolicySpec,
    status: ResyncPolicyStatus,
    now: dt.datetime,
    doc: Doc = in_sync,
    resyncs: list[dict[str, Any]] | None = None,
) -> tuple[PolicyPlan, list[Exec]]:
    """One pass: decide, run the probes it asks for with ``doc``, decide again."""
    target = w.observed(resync_spec()).target
    policy = Policy("pol", "db-ns", UID, 1, s, status)

    def observed(outcomes: dict[str, HookOutcome]) -> PolicyObserved:
        return PolicyObserved(now, policy, target, dict(w.pods), list(resyncs or []), outcomes)

    plan = decide(observed({}))
    execs = [a for a in plan.actions if isinstance(a, Exec)]
    if not execs:
        return plan, []
    outcomes = {}
    for a in execs:
        out = json.dumps(doc(a.pod))
        outcomes[a.hook] = HookOutcome(True, 0, out, stdout=out)
    return decide(observed(outcomes)), execs


def creates(plan: PolicyPlan) -> list[Create]:
    return [a for a in plan.actions if isinstance(a, Create)]


def condition(plan: PolicyPlan, type_: str) -> tuple[str, str]:
    c = next(c for c in plan.status.conditions if c.type == type_)
    return c.status, c.reason


def later(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def test_in_sync_pods_are_reported_and_nothing_is_done() -> None:
    w = World()
    plan, execs = step(w, spec(), ResyncPolicyStatus(), later(10))
    assert [e.pod for e in execs][-1] == "db-1", "the primary is read last"
    assert condition(plan, "InSync") == ("True", "InSync") and condition(plan, "Drifted")[0] == "False"
    assert plan.status.in_sync == "2/2" and not creates(plan)
    assert plan.requeue_after == 60


def test_a_streaming_lagging_replica_is_not_drift_without_thresholds() -> None:
    def doc(pod: str) -> dict[str, Any]:
        if pod == "db-1":
            return in_sync(pod) | {"position": 200}
        return in_sync(pod) | {"lagBytes": 100}

    plan, _ = step(World(), spec(), ResyncPolicyStatus(), later(10), doc)
    assert condition(plan, "Drifted")[0] == "False" and not creates(plan)
    # With a threshold it exceeds, the same lag is drift.
    s = spec(
        probe={"preset": "Command", "command": ["probe"], "maxLagBytes": 10}, resyncTemplate={"force": True}
    )
    plan, _ = step(World(), s, ResyncPolicyStatus(), later(10), doc)
    assert condition(plan, "Drifted")[0] == "True" and creates(plan)


def test_mode_off_reports_drift_and_never_remediates() -> None:
    plan, _ = step(World(), spec(mode="Off"), ResyncPolicyStatus(), later(10), diverged("db-2"))
    assert condition(plan, "Drifted") == ("True", "Drifted")
    assert condition(plan, "RemediationSuppressed") == ("True", "ModeOff") and not creates(plan)
    assert any(e.reason == "DriftDetected" and "db-2" in e.message for e in plan.events)


def test_a_diverged_replica_needs_force_to_be_remediated() -> None:
    plan, _ = step(World(), spec(), ResyncPolicyStatus(), later(10), diverged("db-2"))
    assert condition(plan, "RemediationSuppressed") == ("True", "DivergedNeedsForce") and not creates(plan)
    plan, _ = step(
        World(), spec(resyncTemplate={"force": True}), ResyncPolicyStatus(), later(10), diverged("db-2")
    )
    (c,) = creates(plan)
    body = c.body
    assert (
        body["spec"]["replicas"] == ["db-2"]
        and body["spec"]["force"] is True
        and body["spec"]["suspend"] is False
    )
    assert body["metadata"]["labels"][LABEL_POLICY_UID] == UID
    assert body["metadata"]["ownerReferences"][0]["kind"] == "ResyncPolicy"
    assert plan.status.last_remediation is not None and plan.status.last_remediation.replicas == ["db-2"]
    assert condition(plan, "RemediationSuppressed") == ("False", "Remediating")


def test_manual_mode_creates_a_suspended_resync() -> None:
    s = spec(mode="Manual", resyncTemplate={"force": True})
    plan, _ = step(World(), s, ResyncPolicyStatus(), later(10), diverged("db-0"))
    (c,) = creates(plan)
    assert c.body["spec"]["suspend"] is True
    assert condition(plan, "RemediationSuppressed") == ("False", "AwaitingApproval")


def remediated(at: dt.datetime) -> ResyncPolicyStatus:
    return ResyncPolicyStatus(
        last_remediation=Remediation(name="pol-1", replicas=["db-2"], created_at=ts(at)),
        remediations=[ts(at)],
    )


def test_cooldown_and_daily_limit_stop_remediation_storms() -> None:
    s = spec(resyncTemplate={"force": True}, cooldownSeconds=3600, maxPerDay=2)
    plan, _ = step(World(), s, remediated(later(0)), later(30), diverged("db-0"))
    assert condition(plan, "RemediationSuppressed") == ("True", "CoolingDown") and not creates(plan)
    busy = ResyncPolicyStatus(remediations=[ts(later(-600)), ts(later(-300))])
    plan, _ = step(World(), s, busy, later(30), diverged("db-0"))
    assert condition(plan, "RemediationSuppressed") == ("True", "DailyLimitReached") and not creates(plan)
    old = ResyncPolicyStatus(remediations=[ts(later(-2000)), ts(later(-1500))])
    plan, _ = step(World(), s, old, later(30), diverged("db-0"))
    assert creates(plan), "remediations older than 24 hours do not count"


def test_never_while_another_resync_of_the_target_runs_or_waits() -> None:
    other = {
        "metadata": {"name": "by-hand"},
        "spec": {"target": {"name": "db"}, "suspend": True},
        "status": {},
    }
    plan, _ = step(
        World(),
        spec(resyncTemplate={"force": True}),
        ResyncPolicyStatus(),
        later(10),
        diverged("db-2"),
        [other],
    )
    assert condition(plan, "RemediationSuppressed") == ("True", "ResyncInProgress") and not creates(plan)


def test_never_when_the_primary_is_unhealthy() -> None:
    w = World()
    w.pods["db-1"]["status"]["conditions"][0]["status"] = "False"
    plan, _ = step(w, spec(resyncTemplate={"force": True}), ResyncPolicyStatus(), later(10), diverged("db-2"))
    assert condition(plan, "RemediationSuppressed") == ("True", "PrimaryUnhealthy") and not creates(plan)
    plan, _ = step(
        World(),
        spec(resyncTemplate={"force": True, "primaryStableSeconds": 7200}),
        ResyncPolicyStatus(),
        later(10),
        diverged("db-2"),
    )
    assert condition(plan, "RemediationSuppressed") == ("True", "PrimaryUnhealthy")


def test_not_due_means_no_probe_until_the_interval_is_over() -> None:
    status = ResyncPolicyStatus(last_probe_time=ts(later(10)))
    plan, execs = step(World(), spec(), status, later(10.5))
    assert execs == [] and plan.actions == []
    assert plan.requeue_after is not None and 29 <= plan.requeue_after <= 31


def test_a_changed_spec_is_acted_on_at_once_and_recorded_as_observed() -> None:
    w = World()
    s = spec()
    status = ResyncPolicyStatus(last_probe_time=ts(later(10)), observed_generation=1)
    plan, execs = step(w, s, status, later(10.5))
    assert execs == [] and plan.status.observed_generation == 1, "same generation: not due yet"
    target = w.observed(resync_spec()).target
    changed = Policy("pol", "db-ns", UID, 2, s, status)  # e.g. kubectl edit of the thresholds
    plan = decide(PolicyObserved(later(10.5), changed, target, dict(w.pods), [], {}))
    assert [a for a in plan.actions if isinstance(a, Exec)], "probed again at once"
    assert plan.status.observed_generation == 2


def test_a_recovered_replica_is_probed_after_its_grace() -> None:
    w = World()
    s = spec(triggers={"periodic": False, "recoveryGraceSeconds": 60})
    plan, execs = step(w, s, ResyncPolicyStatus(), later(10))
    assert execs == [], "nothing triggers a probe yet"
    seen = plan.status
    w.pods["db-2"]["metadata"]["uid"] = "recreated"  # the pod came back (a node loss, a crash)
    ready_at = later(20)
    w.pods["db-2"]["status"]["conditions"][0]["lastTransitionTime"] = ts(ready_at)
    plan, execs = step(w, s, seen, later(20.5))
    assert execs == [] and plan.requeue_after is not None, "within its grace"
    plan, execs = step(w, s, plan.status, later(21.5), diverged("db-2"))
    assert execs and condition(plan, "Drifted")[0] == "True"
    assert all(x.probe_after is None for x in plan.status.seen)


def test_a_replica_whose_pod_is_gone_for_a_pass_is_a_recreation_when_it_comes_back() -> None:
    """A pass may run between the deletion of a pod and its recreation by the StatefulSet
    controller: the replica is still remembered, and the new pod is a recovery."""
    w = World()
    s = spec(triggers={"periodic": False, "recoveryGraceSeconds": 60})
    plan, _ = step(w, s, ResyncPolicyStatus(), later(10))
    gone = w.pods.pop("db-2")
    plan, execs = step(w, s, plan.status, later(11))
    assert execs == [] and [x.pod for x in plan.status.seen] == ["db-0", "db-2"]
    w.pods["db-2"] = gone
    gone["metadata"]["uid"] = "recreated"
    gone["status"]["conditions"][0]["lastTransitionTime"] = ts(later(12))
    plan, execs = step(w, s, plan.status, later(13.5))
    assert execs == [] and plan.requeue_after is not None, "within its grace"
    plan, execs = step(w, s, plan.status, later(14.6), diverged("db-2"))
    assert execs and condition(plan, "Drifted")[0] == "True"


def test_a_replica_the_target_no_longer_has_is_forgotten() -> None:
    w = World()
    s = spec(triggers={"periodic": False})
    plan, _ = step(w, s, ResyncPolicyStatus(), later(10))
    w.pods.pop("db-2")
    sts = w.observed(resync_spec()).target
    assert sts is not None
    sts["spec"]["replicas"] = 2
    target = sts
    policy = Policy("pol", "db-ns", UID, 1, s, plan.status)
    plan = decide(PolicyObserved(later(11), policy, target, dict(w.pods), [], {}))
    assert [x.pod for x in plan.status.seen] == ["db-0"]


def test_history_limits_delete_only_this_policys_oldest_finished_resyncs() -> None:
    def rs(name: str, phase: str, day: int, uid: str = UID) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "uid": f"u-{name}", "labels": {LABEL_POLICY_UID: uid}},
            "spec": {"target": {"name": "db"}},
            "status": {"phase": phase, "completedAt": f"2026-01-{day:02d}T00:00:00Z"},
        }

    resyncs = [rs(f"ok{i}", "Completed", i + 1) for i in range(5)] + [
        rs("bad1", "Failed", 1),
        rs("bad2", "Failed", 2),
    ]
    resyncs.append(rs("theirs", "Completed", 1, uid="someone-else"))
    s = spec(successfulHistoryLimit=3, failedHistoryLimit=1)
    plan, _ = step(
        World(), s, ResyncPolicyStatus(last_probe_time=ts(later(10))), later(10.1), resyncs=resyncs
    )
    deleted = sorted(a.ref.name for a in plan.actions if isinstance(a, Delete))
    assert deleted == ["bad1", "ok0", "ok1"]


def test_a_remediation_recorded_but_not_created_is_created_again() -> None:
    status = remediated(later(10)).model_copy(update={"last_probe_time": ts(later(10))})
    plan, _ = step(World(), spec(), status, later(10.5))
    (c,) = creates(plan)
    assert c.ref.name == "pol-1" and c.body["spec"]["replicas"] == ["db-2"]
    plan, _ = step(World(), spec(), status, later(20))
    assert not creates(plan), "forgotten after a while: the guards decide again"


def test_a_primary_that_reports_itself_a_replica_is_never_remediated_from() -> None:
    def doc(pod: str) -> dict[str, Any]:
        return {"role": "replica", "position": 1, "history": "1"} if pod == "db-1" else diverged("db-2")(pod)

    plan, _ = step(World(), spec(resyncTemplate={"force": True}), ResyncPolicyStatus(), later(10), doc)
    assert condition(plan, "RemediationSuppressed") == ("True", "PrimaryRoleMismatch") and not creates(plan)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 240), st.booleans(), st.booleans()), min_size=1, max_size=40),
    st.integers(0, 4),
    st.integers(0, 7200),
)
def test_no_history_of_drift_makes_the_policy_exceed_its_guards(
    steps: list[tuple[int, bool, bool]], max_per_day: int, cooldown: int
) -> None:
    """Minutes between passes, whether db-2 drifts, whether the created resync is still running:
    creations are >= cooldown apart, <= maxPerDay in any 24 hours, never while one runs."""
    s = spec(
        resyncTemplate={"force": True}, cooldownSeconds=cooldown, maxPerDay=max_per_day, intervalSeconds=10
    )
    status = ResyncPolicyStatus()
    now = later(0)
    created: list[dt.datetime] = []
    running: list[dict[str, Any]] = []
    for minutes, drifting, still_running in steps:
        now += dt.timedelta(minutes=minutes)
        if not still_running:
            # It finished; and with ttlSecondsAfterFinished it may be gone at once.
            running = [] if minutes % 2 else [{**r, "status": {"phase": "Completed"}} for r in running]
        plan, _ = step(World(), s, status, now, diverged("db-2") if drifting else in_sync, running)
        status = plan.status
        made = creates(plan)
        if made:
            unfinished = [r for r in running if (r.get("status") or {}).get("phase") != "Completed"]
            assert not unfinished, "created while another resync of the target runs"
            created.append(now)
            name = made[0].ref.name
            running = [{"metadata": {"name": name}, "spec": {"target": {"name": "db"}}, "status": {}}]
            status = confirmed(status, name)  # what the adapter does once the create succeeded
    for i, t in enumerate(created):
        if i:
            assert (t - created[i - 1]).total_seconds() >= cooldown
        assert sum(1 for x in created if t - dt.timedelta(days=1) < x <= t) <= max_per_day
