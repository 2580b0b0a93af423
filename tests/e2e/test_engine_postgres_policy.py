"""A ResyncPolicy on a real PostgreSQL cluster, through the real operator, with PostgreSQL's own
replication status as the judge (docs/engines/postgres.md, docs/policies.md).

The replicas recover out of sync the way they do after a split brain: a replica is promoted and
written to, then its pod is recreated (a crash, a node loss), and it comes back a primary of its
own timeline. The policy probes every pod once an hour only, so what finds the drift is the
recovery trigger (``triggers.onPodRecovery``), after the grace period.

- In ``Auto`` mode it creates one ClusterResync, which re-provisions the replica from the running
  primary; PostgreSQL then streams to it again and its rows are the primary's. A second replica
  recovering out of sync within the cooldown is reported and not remediated.
- In ``Manual`` mode it creates a suspended ClusterResync that touches nothing until it is
  approved with kubectl; then the replica streams again too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kubesim.testing import KubeSim

from .conftest import Operator, apply, wait_for
from .engine_common import stop_engine
from .engines import PG_BIN, PG_PASSWORDS, PG_PROBE, PG_RESTORE_HOOK, pg_objects, sql
from .test_engine_postgres import caught_up, streaming
from .test_resync import get, wait_done

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        PG_BIN is None, reason="PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are absent"
    ),
]

ROWS = "SELECT count(*), md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM t"


@pytest.fixture
def pg(cluster: KubeSim, operator: Operator, ns: str) -> Iterator[str]:
    """pg-0, a primary, and pg-1 and pg-2 streaming from it, with a table ``t`` of 100 rows that
    both replicas have replayed; stopped gracefully afterwards."""
    for obj in pg_objects(3):
        apply(cluster, ns, obj)
    try:
        wait_for(
            lambda: (get(cluster, "sts", "-n", ns, "pg").get("status") or {}).get("readyReplicas") == 3,
            120,
            "the three PostgreSQL pods Ready",
        )
        wait_for(
            lambda: streaming(cluster, ns) == {"pg-1": "streaming", "pg-2": "streaming"},
            60,
            "pg-1 and pg-2 streaming from pg-0",
        )
        sql(cluster, ns, "pg-0", "CREATE TABLE t (id bigserial PRIMARY KEY, v text)")
        sql(cluster, ns, "pg-0", "INSERT INTO t (v) SELECT 'before' FROM generate_series(1, 100)")
        caught_up(cluster, ns, "pg-1")
        caught_up(cluster, ns, "pg-2")
        yield ns
    finally:
        stop_engine(cluster, ns, "pg")


def policy(cluster: KubeSim, ns: str, **spec: Any) -> None:
    body = {
        "apiVersion": "clusterresync.io/v1alpha1",
        "kind": "ResyncPolicy",
        "metadata": {"name": "pg"},
        "spec": {
            "target": {"name": "pg"},
            "primary": {"podName": "pg-0"},
            "volumes": ["data"],
            "probe": PG_PROBE,
            # Periodic probes once an hour: within the test only a recovery triggers one.
            "intervalSeconds": 3600,
            "triggers": {"onPodRecovery": True, "recoveryGraceSeconds": 5},
            "resyncTemplate": {
                "force": True,
                "primaryStableSeconds": 0,
                "hooks": {"restore": PG_RESTORE_HOOK},
            },
            **spec,
        },
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(body))


def status(cluster: KubeSim, ns: str) -> dict[str, Any]:
    return dict(get(cluster, "rspolicy", "-n", ns, "pg").get("status") or {})


def cond(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions", []) if c["type"] == type_), {})


def resyncs(cluster: KubeSim, ns: str) -> list[dict[str, Any]]:
    return list(get(cluster, "crsync", "-n", ns)["items"])


def in_sync(cluster: KubeSim, ns: str) -> dict[str, Any] | None:
    st = status(cluster, ns)
    return st if cond(st, "InSync").get("status") == "True" and st.get("inSync") == "2/2" else None


def split_brain(cluster: KubeSim, ns: str, replica: str) -> str:
    """Promote ``replica``, write to it, and recreate its pod: it comes back Ready, a primary of
    its own timeline holding a table the primary does not have. Returns the new pod's uid."""
    old = get(cluster, "pod", "-n", ns, replica)["metadata"]["uid"]
    assert sql(cluster, ns, replica, "SELECT pg_promote()") == "t"
    sql(cluster, ns, replica, "CREATE TABLE errant (x int); INSERT INTO errant VALUES (1), (2)")
    cluster.kubectl("delete", "pod", "-n", ns, replica)

    def back() -> str | None:
        pod = get(cluster, "pods", "-n", ns, "--field-selector", f"metadata.name={replica}")["items"]
        if not pod or pod[0]["metadata"]["uid"] == old:
            return None
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in pod[0]["status"].get("conditions", [])
        )
        return str(pod[0]["metadata"]["uid"]) if ready else None

    uid: str = wait_for(back, 90, f"{replica} recreated and Ready")
    wait_for(
        lambda: sql(cluster, ns, replica, "SELECT pg_is_in_recovery()", check=False) == "f",
        60,
        f"{replica} up, not in recovery",
    )
    return uid


def assert_streams_with_the_primarys_rows(cluster: KubeSim, ns: str, replica: str) -> None:
    """PostgreSQL's own view: ``replica`` is a standby streaming from pg-0, on its timeline, with
    its rows, and the errant table it wrote while promoted is gone."""
    assert sql(cluster, ns, replica, "SELECT pg_is_in_recovery()") == "t"
    wait_for(
        lambda: streaming(cluster, ns).get(replica) == "streaming",
        60,
        f"{replica} streaming from pg-0 again",
    )
    timeline = sql(cluster, ns, "pg-0", "SELECT timeline_id FROM pg_control_checkpoint()")
    assert sql(cluster, ns, replica, "SELECT status, received_tli FROM pg_stat_wal_receiver") == (
        f"streaming|{timeline}"
    )
    caught_up(cluster, ns, replica)
    assert sql(cluster, ns, replica, ROWS) == sql(cluster, ns, "pg-0", ROWS)
    assert sql(cluster, ns, replica, "SELECT to_regclass('errant') IS NULL") == "t"


def assert_no_password_anywhere(cluster: KubeSim, operator: Operator, ns: str) -> None:
    """The probe logged in with the monitor password from the container's environment: no
    password is in the operator's log, a status or an Event."""
    seen = operator.output() + "".join(
        cluster.kubectl("get", kind, "-n", ns, "-o", "yaml").stdout
        for kind in ("rspolicy", "crsync", "events")
    )
    for which, password in PG_PASSWORDS.items():
        assert password not in seen, f"the {which} password leaked"


def test_auto_remediates_a_replica_that_recovers_diverged_once_and_cools_down(
    cluster: KubeSim, operator: Operator, pg: str
) -> None:
    ns = pg
    primary_started = sql(cluster, ns, "pg-0", "SELECT pg_postmaster_start_time()")
    policy(cluster, ns, mode="Auto", cooldownSeconds=3600)
    st = wait_for(lambda: in_sync(cluster, ns), 60, "the policy reporting 2/2 in sync")
    assert {p["pod"]: p["verdict"] for p in st["pods"]} == {
        "pg-0": "InSync",
        "pg-1": "InSync",
        "pg-2": "InSync",
    }
    assert resyncs(cluster, ns) == []

    # pg-2 comes back from a split brain: the recovery trigger finds it, Auto remediates it.
    split_brain(cluster, ns, "pg-2")
    made = wait_for(lambda: resyncs(cluster, ns), 90, "a remediation")
    assert len(made) == 1, [r["metadata"]["name"] for r in made]
    name = made[0]["metadata"]["name"]
    assert made[0]["spec"]["replicas"] == ["pg-2"] and not made[0]["spec"].get("suspend")
    assert made[0]["spec"]["force"] is True
    events = get(cluster, "events", "-n", ns, "--field-selector", "reason=DriftDetected")["items"]
    assert any("pg-2" in e["message"] for e in events), events
    out = wait_done(cluster, ns, name, timeout=180)
    assert out["status"]["phase"] == "Completed", (out["status"], operator.output()[-3000:])
    assert_streams_with_the_primarys_rows(cluster, ns, "pg-2")
    # The swap recreated pg-2's pod: a recovery too, probed and found in sync, not remediated.
    wait_for(lambda: in_sync(cluster, ns), 90, "the policy reporting 2/2 in sync again")
    assert [r["metadata"]["name"] for r in resyncs(cluster, ns)] == [name]
    assert_no_password_anywhere(cluster, operator, ns)

    # pg-1 comes back from a split brain within the cooldown: reported, not remediated.
    split_brain(cluster, ns, "pg-1")

    def cooling_down() -> dict[str, Any] | None:
        st = status(cluster, ns)
        suppressed = cond(st, "RemediationSuppressed").get("reason") == "CoolingDown"
        return st if suppressed and cond(st, "Drifted").get("status") == "True" else None

    st = wait_for(cooling_down, 90, "RemediationSuppressed/CoolingDown")
    pods = {p["pod"]: p for p in st["pods"]}
    assert pods["pg-1"]["verdict"] == "Diverged" and pods["pg-1"]["drifted"] is True, pods
    assert st["lastRemediation"]["name"] == name
    time.sleep(2)  # a pass or two more: still nothing created
    assert [r["metadata"]["name"] for r in resyncs(cluster, ns)] == [name]
    assert sql(cluster, ns, "pg-1", "SELECT count(*) FROM errant") == "2"  # untouched
    # The primary was never restarted, and the policy never probed it as anything but primary.
    assert sql(cluster, ns, "pg-0", "SELECT pg_postmaster_start_time()") == primary_started
    assert sql(cluster, ns, "pg-0", "SELECT pg_is_in_recovery()") == "f"
    assert_no_password_anywhere(cluster, operator, ns)


def test_manual_waits_for_approval_with_kubectl_then_remediates(
    cluster: KubeSim, operator: Operator, pg: str
) -> None:
    ns = pg
    policy(cluster, ns, mode="Manual", cooldownSeconds=0)
    wait_for(lambda: in_sync(cluster, ns), 60, "the policy reporting 2/2 in sync")

    split_brain(cluster, ns, "pg-1")
    made = wait_for(
        lambda: resyncs(cluster, ns), 90, f"a remediation waiting for approval ({status(cluster, ns)})"
    )
    name = made[0]["metadata"]["name"]
    assert made[0]["spec"]["suspend"] is True and made[0]["spec"]["replicas"] == ["pg-1"]

    def suspended() -> dict[str, Any] | None:
        obj = get(cluster, "crsync", "-n", ns, name)
        progressing = next(
            (c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Progressing"), {}
        )
        return obj if progressing.get("reason") == "Suspended" else None

    wait_for(suspended, 30, "the remediation suspended")
    st = status(cluster, ns)
    assert cond(st, "RemediationSuppressed")["reason"] == "AwaitingApproval", st
    time.sleep(3)  # nothing happens until a person approves
    assert get(cluster, "volumesnapshots", "-n", ns)["items"] == []
    assert sql(cluster, ns, "pg-1", "SELECT count(*) FROM errant") == "2"
    assert [r["metadata"]["name"] for r in resyncs(cluster, ns)] == [name]

    # More rows on the primary while the remediation waits; then a person approves it.
    sql(cluster, ns, "pg-0", "INSERT INTO t (v) SELECT 'while waiting' FROM generate_series(1, 50)")
    cluster.kubectl("patch", "crsync", name, "-n", ns, "--type", "merge", "-p", '{"spec":{"suspend":false}}')
    out = wait_done(cluster, ns, name, timeout=180)
    assert out["status"]["phase"] == "Completed", (out["status"], operator.output()[-3000:])
    assert_streams_with_the_primarys_rows(cluster, ns, "pg-1")
    assert sql(cluster, ns, "pg-1", "SELECT count(*) FROM t") == "150"
    wait_for(lambda: in_sync(cluster, ns), 90, "the policy reporting 2/2 in sync again")
    assert [r["metadata"]["name"] for r in resyncs(cluster, ns)] == [name]
    assert_no_password_anywhere(cluster, operator, ns)
