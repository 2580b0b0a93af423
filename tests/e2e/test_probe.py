"""spec.probe end to end on kubesim, through the real operator and pod exec: the guard refuses a
replica that follows another history, force resyncs it, each swapped replica is verified by the
probe, and a password Secret the operator may not read is a named refusal, not a leak.

The probe is the Command preset: a shell command in the pod that prints the probe document from
the pod's hostname (its role) and a ``history`` file on its data volume (its line of history), so
that a copy of the primary's volume carries the primary's history, as a real engine's data does.
The engines' own presets are tested on their real outputs in tests/unit/probes.
"""

from __future__ import annotations

from typing import Any

from kubesim.testing import KubeSim

from .conftest import Operator
from .safety_helpers import assert_untouched, record
from .test_resync import assert_primary_untouched, get, make_db, pv_of, resync, wait_done

SCRIPT = (
    "h=$(cat /proc/sys/kernel/hostname); hist=$(cat /var/lib/data/history); role=replica; "
    '[ "$h" = pg-1 ] && role=primary; '
    'printf \'{"role":"%s","position":100,"history":"%s","link":"up"}\' "$role" "$hist"'
)
PROBE = {"preset": "Command", "command": ["sh", "-c", SCRIPT], "timeoutSeconds": 20}


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj["status"].get("conditions", [])}


def probes(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p["stage"], p["pod"]): p for p in obj["status"].get("probes", [])}


def test_a_diverged_replica_is_refused_then_forced_and_verified(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    db = make_db(cluster, ns, replicas=3, primary=1)
    for i in range(3):
        # pg-2 was promoted during an outage and followed its own history.
        cluster.write_volume_file(pv_of(cluster, ns, db.claim("data", i)), "history", "2" if i == 2 else "1")
    # The primary's data, as it is now that it has its history file.
    db.primary_state["data"]["digest"] = cluster.volume_digest(db.primary_state["data"]["pv"])
    before = record(cluster, db)

    resync(cluster, db, probe=PROBE)
    out = wait_done(cluster, ns)
    failed = conditions(out)["Failed"]
    assert failed["reason"] == "ReplicaHasUnsyncedData", (out["status"], operator.output()[-3000:])
    assert "pg-2" in failed["message"] and "force: true" in failed["message"]
    got = probes(out)
    assert got[("Before", "pg-2")]["verdict"] == "Diverged"
    assert got[("Before", "pg-0")]["verdict"] == "InSync" and got[("Before", "pg-1")]["role"] == "primary"
    for i in (0, 2):
        assert_untouched(cluster, db, before, i)

    resync(cluster, db, name="forced", probe=PROBE, force=True)
    out = wait_done(cluster, ns, "forced")
    assert out["status"]["phase"] == "Completed", (out["status"], operator.output()[-3000:])
    got = probes(out)
    assert got[("After", "pg-2")]["verdict"] == "InSync", got
    assert got[("After", "pg-0")]["verdict"] == "InSync", got
    assert cluster.read_volume_file(pv_of(cluster, ns, db.claim("data", 2)), "history").decode() == "1"
    events = get(cluster, "events", "-n", ns, "--field-selector", "reason=ForcedDespiteDivergence")["items"]
    assert events and "pg-2" in events[0]["message"] and events[0]["type"] == "Warning"
    assert_primary_untouched(cluster, db)


def test_a_password_secret_the_operator_may_not_read_is_a_named_refusal(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    db = make_db(cluster, ns, replicas=2, primary=1)
    password = "s3cr3t-never-shown"
    cluster.kubectl("create", "secret", "generic", "pg-auth", "-n", ns, f"--from-literal=password={password}")
    before = record(cluster, db)
    resync(
        cluster,
        db,
        probe={"preset": "Postgres", "passwordSecretRef": {"name": "pg-auth", "key": "password"}},
    )
    out = wait_done(cluster, ns)
    failed = conditions(out)["Failed"]
    assert failed["reason"] == "ReplicaStateUnknown", out["status"]
    assert f"Secret {ns}/pg-auth" in failed["message"] and "RBAC" in failed["message"]
    assert_untouched(cluster, db, before, 0)
    everything = cluster.kubectl("get", "crsync,events", "-n", ns, "-o", "yaml").stdout + operator.output()
    assert password not in everything
