"""ResyncPolicy end to end on kubesim through the real operator: Off reports, Auto remediates once
and the cooldown stops a second one, Manual creates a suspended ClusterResync that runs only once
approved with kubectl. The probe is the Command preset of tests/e2e/test_probe.py (role from the
hostname, history from a file on the data volume), so a copy of the primary carries its history."""

from __future__ import annotations

import time
from typing import Any

import yaml

from kubesim.testing import KubeSim

from .conftest import Operator, wait_for
from .test_probe import PROBE
from .test_resync import Db, assert_primary_untouched, get, make_db, pv_of, wait_done


def history(cluster: KubeSim, db: Db, i: int, value: str) -> None:
    cluster.write_volume_file(pv_of(cluster, db.ns, db.claim("data", i)), "history", value)


def setup(cluster: KubeSim, ns: str) -> Db:
    db = make_db(cluster, ns, replicas=3, primary=1)
    for i in range(3):
        history(cluster, db, i, "2" if i == 2 else "1")  # pg-2 followed another history
    db.primary_state["data"]["digest"] = cluster.volume_digest(db.primary_state["data"]["pv"])
    return db


def policy(cluster: KubeSim, db: Db, **spec: Any) -> None:
    body = {
        "apiVersion": "clusterresync.io/v1alpha1",
        "kind": "ResyncPolicy",
        "metadata": {"name": "pol"},
        "spec": {
            "target": {"name": db.name},
            "primary": {"podName": db.pod(db.primary)},
            "volumes": ["data"],
            "probe": PROBE,
            "intervalSeconds": 10,
            "resyncTemplate": {"primaryStableSeconds": 0, "force": True},
            **spec,
        },
    }
    cluster.kubectl("apply", "-n", db.ns, "-f", "-", input=yaml.safe_dump(body))


def status(cluster: KubeSim, ns: str) -> dict[str, Any]:
    return dict(get(cluster, "rspolicy", "-n", ns, "pol").get("status") or {})


def cond(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions", []) if c["type"] == type_), {})


def resyncs(cluster: KubeSim, ns: str) -> list[dict[str, Any]]:
    return list(get(cluster, "crsync", "-n", ns)["items"])


def test_mode_off_reports_the_drift_and_touches_nothing(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    db = setup(cluster, ns)
    policy(cluster, db, mode="Off")
    st = wait_for(
        lambda: (s := status(cluster, ns)) and cond(s, "Drifted").get("status") == "True" and s, 30, "Drifted"
    )
    pods = {p["pod"]: p for p in st["pods"]}
    assert pods["pg-2"]["verdict"] == "Diverged" and pods["pg-2"]["drifted"] is True
    assert pods["pg-0"]["verdict"] == "InSync" and st["inSync"] == "1/2"
    assert cond(st, "RemediationSuppressed")["reason"] == "ModeOff"
    time.sleep(1.0)
    assert resyncs(cluster, ns) == []
    events = get(cluster, "events", "-n", ns, "--field-selector", "reason=DriftDetected")["items"]
    assert events and "pg-2" in events[0]["message"]
    # `kubectl get rspolicy` answers "is my cluster in sync?" at a glance.
    table = cluster.kubectl("get", "rspolicy", "-n", ns).stdout
    assert "IN SYNC" in table and "1/2" in table and "DRIFTED" in table


def test_auto_remediates_once_and_the_cooldown_stops_a_second(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    db = setup(cluster, ns)
    policy(cluster, db, mode="Auto", cooldownSeconds=3600)
    made = wait_for(lambda: resyncs(cluster, ns), 30, "a remediation")
    assert len(made) == 1
    name = made[0]["metadata"]["name"]
    assert made[0]["spec"]["replicas"] == ["pg-2"] and not made[0]["spec"].get("suspend")
    out = wait_done(cluster, ns, name)
    assert out["status"]["phase"] == "Completed", (out["status"], operator.output()[-3000:])
    assert cluster.read_volume_file(pv_of(cluster, ns, db.claim("data", 2)), "history").decode() == "1"
    # Another replica drifts: within the cooldown, nothing is created.
    history(cluster, db, 0, "3")

    def suppressed() -> dict[str, Any] | None:
        st = status(cluster, ns)
        return st if cond(st, "RemediationSuppressed").get("reason") == "CoolingDown" else None

    st = wait_for(suppressed, 40, "RemediationSuppressed/CoolingDown")
    assert st["lastRemediation"]["name"] == name
    assert [r["metadata"]["name"] for r in resyncs(cluster, ns)] == [name]
    assert_primary_untouched(cluster, db)


def test_manual_creates_a_suspended_resync_that_runs_once_approved(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    db = setup(cluster, ns)
    policy(cluster, db, mode="Manual")
    made = wait_for(lambda: resyncs(cluster, ns), 30, "a remediation waiting for approval")
    name = made[0]["metadata"]["name"]
    assert made[0]["spec"]["suspend"] is True
    wait_for(
        lambda: (
            cond(get(cluster, "crsync", "-n", ns, name).get("status") or {}, "Progressing").get("reason")
            == "Suspended"
        ),
        30,
        "the resync suspended",
    )
    assert get(cluster, "volumesnapshots", "-n", ns)["items"] == []
    cluster.kubectl("patch", "crsync", name, "-n", ns, "--type", "merge", "-p", '{"spec":{"suspend":false}}')
    out = wait_done(cluster, ns, name)
    assert out["status"]["phase"] == "Completed", out["status"]
    assert cluster.read_volume_file(pv_of(cluster, ns, db.claim("data", 2)), "history").decode() == "1"
