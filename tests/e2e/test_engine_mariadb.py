"""MariaDB end to end on kubesim, through the real operator, with MariaDB's own replication status
as the judge (docs/engines/mariadb.md).

A StatefulSet ``mariadb`` of two process pods runs a real primary (mariadb-0) and a GTID replica
(mariadb-1, ``MASTER_USE_GTID=slave_pos``) of ``mariadb-0.mariadb``. The MariaDB probe preset,
logging in as a ``SLAVE MONITOR`` user whose password it reads from the container's environment,
reports the replica InSync, Lagging while its SQL thread is stopped, InSync again once it is
started, and Diverged once it is promoted and written to (errant GTIDs with its own server_id). A
ClusterResync without ``force`` refuses it; with ``force`` and the restore hook of the guide, it is
re-provisioned from a snapshot of the running primary while a client keeps writing to it, starts
as a replica from the copy's own GTID position, replicates again, and ends up holding exactly the
primary's rows.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from kubesim.testing import KubeSim

from . import engine_common
from .conftest import Operator, apply, wait_for
from .engine_common import assert_forced_over_divergence, condition, guide_specs, stop_engine, verdicts
from .engine_mariadb import (
    MARIADB_DATA,
    MARIADB_PROBE,
    MARIADB_RESTORE_HOOK,
    MARIADB_RUN,
    MARIADB_SCRIPT,
    MARIADBD,
    MariaWriter,
    mariadb_objects,
    mrow,
    msql,
)
from .engines import pod_ip
from .test_resync import get

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "engines" / "mariadb.md"


def resync(cluster: KubeSim, ns: str, name: str, **spec: Any) -> dict[str, Any]:
    """A ClusterResync of ``mariadb`` (primary mariadb-0, with the probe), run to its end."""
    return engine_common.resync(
        cluster, ns, name, target="mariadb", primary="mariadb-0", probe=MARIADB_PROBE, **spec
    )


def caught_up(cluster: KubeSim, ns: str, replica: str) -> str:
    """Wait until ``replica`` has applied everything the primary has binary-logged so far (MariaDB's
    own MASTER_GTID_WAIT); return that position."""
    pos = msql(cluster, ns, "mariadb-0", "SELECT @@gtid_binlog_pos")
    wait_for(
        lambda: msql(cluster, ns, replica, f"SELECT MASTER_GTID_WAIT('{pos}', 2)") == "0",
        90,
        f"{replica} to apply up to the primary's GTID position {pos}",
    )
    return pos


def diagnose(cluster: KubeSim, ns: str) -> str:
    """What a failure message needs: the pods, the servers' logs (and the previous instance's,
    after a restart), and what mariadb-0.mariadb resolves to in mariadb-1."""
    out = [cluster.kubectl("get", "pods", "-n", ns, "-o", "wide", check=False).stdout]
    for pod in ("mariadb-0", "mariadb-1"):
        for flags in ((), ("--previous",)):
            logs = cluster.kubectl("logs", "-n", ns, pod, "-c", "mariadb", "--tail=30", *flags, check=False)
            out.append(f"--- {pod} {' '.join(flags)}:\n{logs.stdout}{logs.stderr}")
    hosts = cluster.kubectl(
        "exec",
        "-n",
        ns,
        "mariadb-1",
        "-c",
        "mariadb",
        "--",
        "getent",
        "hosts",
        "mariadb-0.mariadb",
        check=False,
    )
    out.append(f"--- mariadb-0.mariadb in mariadb-1: {hosts.stdout}{hosts.stderr}")
    return "\n".join(out)


def replicating(cluster: KubeSim, ns: str, replica: str, timeout: float = 60) -> dict[str, str]:
    """Wait until SHOW SLAVE STATUS of ``replica`` says both threads run, with GTID, from
    mariadb-0.mariadb; return that row."""
    last: dict[str, str] = {}

    def check() -> dict[str, str] | None:
        nonlocal last
        last = mrow(cluster, ns, replica, "SHOW SLAVE STATUS")
        ok = (
            last.get("Slave_IO_Running") == "Yes"
            and last.get("Slave_SQL_Running") == "Yes"
            and last.get("Using_Gtid") == "Slave_Pos"
            and last.get("Master_Host") == "mariadb-0.mariadb"
        )
        return last if ok else None

    try:
        out: dict[str, str] = wait_for(check, timeout, f"{replica} replicating from mariadb-0")
    except AssertionError as e:
        raise AssertionError(f"{e}; SHOW SLAVE STATUS: {last}; {diagnose(cluster, ns)}") from None
    return out


def replica_hosts(cluster: KubeSim, ns: str) -> dict[str, str]:
    """SHOW SLAVE HOSTS on the primary: report_host (the replica's pod name) -> its server_id."""
    rows = msql(cluster, ns, "mariadb-0", "SHOW SLAVE HOSTS")
    return {cols[1]: cols[0] for cols in (line.split("\t") for line in rows.splitlines() if line)}


def server_start(cluster: KubeSim, ns: str, pod: str) -> tuple[str, int, float]:
    """(mariadbd's pid, its Uptime in seconds, when that was read): a restart changes the pid and
    resets the uptime."""
    pid = cluster.kubectl("exec", "-n", ns, pod, "-c", "mariadb", "--", "cat", "/run/mysqld/mariadbd.pid")
    uptime = msql(
        cluster,
        ns,
        pod,
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME'",
    )
    return pid.stdout.strip(), int(uptime), time.monotonic()


def test_the_guide_shows_the_probe_and_restore_hook_this_test_uses() -> None:
    """docs/engines/mariadb.md explains the probe and the restore hook line by line: they must be
    the ones exercised below."""
    specs = guide_specs(GUIDE)
    assert {"probe": MARIADB_PROBE} in specs
    assert {"hooks": {"restore": MARIADB_RESTORE_HOOK}} in specs
    # and the pod's command, which the hook's marker relies on
    shown = re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), re.S)
    assert MARIADB_SCRIPT.format(data=MARIADB_DATA, run=MARIADB_RUN) in shown


@pytest.mark.e2e
@pytest.mark.skipif(
    MARIADBD is None, reason="the MariaDB server (mariadbd, Debian's mariadb-server) is absent"
)
def test_mariadb_probe_guard_and_forced_resync_with_restore_hook(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    for obj in mariadb_objects(2):
        apply(cluster, ns, obj)
    writer: MariaWriter | None = None
    try:
        try:
            wait_for(
                lambda: (
                    int(
                        (get(cluster, "sts", "-n", ns, "mariadb").get("status") or {}).get("readyReplicas", 0)
                    )
                    == 2
                ),
                120,
                "the two MariaDB pods Ready",
            )
        except AssertionError as e:
            raise AssertionError(f"{e}; {diagnose(cluster, ns)}") from None
        replicating(cluster, ns, "mariadb-1")
        assert msql(cluster, ns, "mariadb-1", "SELECT @@server_id, @@read_only") == "2\t1"
        msql(cluster, ns, "mariadb-0", "CREATE DATABASE app")
        msql(
            cluster,
            ns,
            "mariadb-0",
            "CREATE TABLE app.t (id bigint AUTO_INCREMENT PRIMARY KEY, v varchar(255))",
        )
        msql(cluster, ns, "mariadb-0", "INSERT INTO app.t (v) SELECT 'before' FROM app.seq_1_to_100")
        caught_up(cluster, ns, "mariadb-1")
        assert wait_for(lambda: replica_hosts(cluster, ns), 30, "SHOW SLAVE HOSTS") == {"mariadb-1": "2"}

        # 1. In sync: a dry run with the probe reads both pods and touches nothing.
        out = resync(cluster, ns, "check-in-sync", dryRun=True)
        assert out["status"]["phase"] == "Completed", (out["status"], operator.output()[-3000:])
        got = verdicts(out)
        assert got["mariadb-0"]["role"] == "primary"
        assert got["mariadb-1"]["verdict"] == "InSync", got

        # 2. Its SQL thread stopped while the primary takes five transactions: Lagging (the
        # position is behind, and Seconds_Behind_Master is NULL, so no threshold can be met).
        msql(cluster, ns, "mariadb-1", "STOP SLAVE SQL_THREAD")
        for _ in range(5):
            msql(
                cluster,
                ns,
                "mariadb-0",
                "INSERT INTO app.t (v) SELECT REPEAT('x', 200) FROM app.seq_1_to_600",
            )
        out = resync(cluster, ns, "check-lagging", dryRun=True)
        assert out["status"]["phase"] == "Completed", (out["status"], operator.output()[-3000:])
        got = verdicts(out)
        assert got["mariadb-1"]["verdict"] == "Lagging", got
        reason = got["mariadb-1"]["reason"]
        assert "5 transactions behind" in reason and "SQL thread running: No" in reason, got
        msql(cluster, ns, "mariadb-1", "START SLAVE")
        caught_up(cluster, ns, "mariadb-1")
        out = resync(cluster, ns, "check-in-sync-again", dryRun=True)
        assert out["status"]["phase"] == "Completed", (out["status"], operator.output()[-3000:])
        assert verdicts(out)["mariadb-1"]["verdict"] == "InSync", out["status"]["probes"]

        # 3. mariadb-1 is promoted and written to: errant GTIDs with its own server_id (2).
        msql(cluster, ns, "mariadb-1", "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0")
        msql(cluster, ns, "mariadb-1", "CREATE TABLE app.errant (x int PRIMARY KEY)")
        msql(cluster, ns, "mariadb-1", "INSERT INTO app.errant VALUES (1), (2)")
        msql(cluster, ns, "mariadb-1", "INSERT INTO app.t (v) VALUES ('errant'), ('errant')")
        assert "0-2-" in msql(cluster, ns, "mariadb-1", "SELECT @@gtid_current_pos")
        out = resync(cluster, ns, "guarded")
        failed = condition(out, "Failed")
        assert failed.get("reason") == "ReplicaHasUnsyncedData", (out["status"], operator.output()[-3000:])
        assert "mariadb-1" in failed["message"], failed
        got = verdicts(out)
        assert got["mariadb-1"]["verdict"] == "Diverged", got
        assert "0-2-" in got["mariadb-1"]["reason"], got  # the errant GTID, written by server 2
        assert out["status"].get("snapshots", []) == []
        # untouched
        assert msql(cluster, ns, "mariadb-1", "SELECT count(*) FROM app.errant") == "2"
        assert msql(cluster, ns, "mariadb-1", "SELECT count(*) FROM app.t WHERE v = 'errant'") == "2"

        # 4. Forced, with the restore hook, while a client keeps writing to the primary.
        primary_pid, uptime, read_at = server_start(cluster, ns, "mariadb-0")
        restarts = get(cluster, "pod", "-n", ns, "mariadb-0")["status"]["containerStatuses"][0][
            "restartCount"
        ]
        before = int(msql(cluster, ns, "mariadb-0", "SELECT max(id) FROM app.t"))
        writer = MariaWriter(pod_ip(cluster, ns, "mariadb-0"), "app.t")
        wait_for(lambda: writer is not None and writer.sent >= 5, 30, "the writer to start")
        out = resync(
            cluster, ns, "forced", force=True, replicas=["mariadb-1"], hooks={"restore": MARIADB_RESTORE_HOOK}
        )
        assert_forced_over_divergence(cluster, ns, out, "mariadb-1", operator.output())
        sent_during = writer.sent
        # The writer goes on a little after the swap; then stops, and every row it sent is committed.
        wait_for(
            lambda: writer is not None and writer.sent >= sent_during + 5, 30, "more writes after the resync"
        )
        errors = writer.stop()
        assert writer.proc.returncode == 0, errors
        written, writer = writer.sent, None

        # The snapshot was taken of the running primary: it was never restarted.
        pid_after, uptime_after, read_after = server_start(cluster, ns, "mariadb-0")
        assert pid_after == primary_pid
        assert uptime_after >= uptime + int(read_after - read_at) - 1, (uptime, uptime_after)
        primary_pod = get(cluster, "pod", "-n", ns, "mariadb-0")
        assert primary_pod["status"]["containerStatuses"][0]["restartCount"] == restarts

        # MariaDB's own view: mariadb-1 is a read-only GTID replica of mariadb-0 again.
        status = replicating(cluster, ns, "mariadb-1")
        assert status["Last_SQL_Error"] == "" and status["Last_IO_Error"] == "", status
        assert msql(cluster, ns, "mariadb-1", "SELECT @@server_id, @@read_only") == "2\t1"
        assert wait_for(lambda: replica_hosts(cluster, ns), 30, "SHOW SLAVE HOSTS") == {"mariadb-1": "2"}
        # The pod's command consumed the hook's marker.
        cluster.kubectl(
            "exec",
            "-n",
            ns,
            "mariadb-1",
            "-c",
            "mariadb",
            "--",
            "test",
            "!",
            "-e",
            "/mariadb/data/resync-from-copy",
        )
        pos = caught_up(cluster, ns, "mariadb-1")
        assert msql(cluster, ns, "mariadb-1", "SELECT @@gtid_current_pos") == pos
        # The errant history is gone: the replica's binary log holds only server 1's transactions.
        state = msql(cluster, ns, "mariadb-1", "SELECT @@gtid_binlog_state")
        assert state == msql(cluster, ns, "mariadb-0", "SELECT @@gtid_binlog_state") and "0-2-" not in state
        rows = "SELECT count(*), max(id) FROM app.t"
        primary_rows = msql(cluster, ns, "mariadb-0", rows)
        assert msql(cluster, ns, "mariadb-1", rows) == primary_rows
        checksum = "CHECKSUM TABLE app.t"
        assert msql(cluster, ns, "mariadb-1", checksum) == msql(cluster, ns, "mariadb-0", checksum)
        count, max_id = (int(x) for x in primary_rows.split("\t"))
        assert count == 3100 + written and max_id > before + sent_during, (primary_rows, before, written)
        # The rows written while the resync ran reached mariadb-1 (by the copy or by replication).
        during = "SELECT count(*) FROM app.t WHERE v = 'during resync'"
        assert msql(cluster, ns, "mariadb-1", during) == str(written)
        # What mariadb-1 wrote while promoted is gone (its old volume is kept by oldVolumes: Retain).
        assert msql(cluster, ns, "mariadb-1", "SELECT count(*) FROM app.t WHERE v = 'errant'") == "0"
        errant = "SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'app' AND TABLE_NAME = 'errant'"
        assert msql(cluster, ns, "mariadb-1", errant) == "0"
        replica = next(r for r in out["status"]["replicas"] if r["name"] == "mariadb-1")
        old_pv = replica["volumes"][0]["oldPv"]
        assert get(cluster, "pv", old_pv)["metadata"]["name"] == old_pv
    finally:
        if writer is not None:
            writer.kill()
        stop_engine(cluster, ns, "mariadb")
