"""The MariaDB preset against real mariadbd servers, when MariaDB is installed here (skipped
otherwise); the engine guide is docs/engines/mariadb.md.

A primary (server_id 1) and a GTID replica (server_id 2, ``MASTER_USE_GTID=slave_pos``, configured
by an init file as the guide's pod command does), with binary logs, ``log_slave_updates`` and
``gtid_strict_mode``. The probe logs in as a ``SLAVE MONITOR`` user whose password it reads from
the environment (``passwordEnv``). Shown: InSync; Unknown for a user with only ``REPLICATION
CLIENT``; Lagging while the SQL thread is stopped; Diverged for an errant write, also once the
primary has written past it (the binary log states tell); a copy of the running primary's data
directory started as a replica from its ``@@gtid_binlog_pos`` (the guide's restore hook); Diverged
once that replica is promoted. mariadbd refuses to run as root: as root the servers run as
``mysql`` (else ``nobody``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterresync.probes import PRESETS, Reading, Thresholds, Verdict

from .test_live import free_port, sh

MARIADBD = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin")
AS_ROOT = os.geteuid() == 0


def _server_user() -> str | None:
    if not AS_ROOT:
        return None
    for name in ("mysql", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return None


USER = _server_user()
PASSWORDS = {"root": "live-root-91ad", "repl": "live-repl-5e07", "monitor": "live-mon-c3b2"}
pytestmark = [
    pytest.mark.skipif(
        MARIADBD is None or any(shutil.which(t) is None for t in ("mariadb", "mariadb-install-db")),
        reason="MariaDB (mariadbd, mariadb-install-db, mariadb) is not installed",
    ),
    pytest.mark.skipif(AS_ROOT and shutil.which("runuser") is None, reason="running as root without runuser"),
]


def run(
    argv: list[str], *, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return sh(argv, stdin=stdin, env=env, user=USER, timeout=120)


@pytest.fixture
def workdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="probes-live-mariadb-", dir="/tmp"))
    if USER:
        shutil.chown(path, USER)
    # mariadb-install-db and mariadbd put their temporary files in $TMPDIR (default /tmp): a
    # private one, so that servers other tests start at the same time never share them.
    monkeypatch.setenv("TMPDIR", str(path))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Server:
    """One mariadbd on 127.0.0.1:``port`` with its data directory and socket under ``workdir``."""

    def __init__(self, workdir: Path, name: str, server_id: int, port: int) -> None:
        self.workdir, self.name, self.server_id, self.port = workdir, name, server_id, port
        self.data = workdir / name
        self.socket = workdir / f"{name}.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def install(self) -> None:
        done = run(["mariadb-install-db", "--no-defaults", f"--datadir={self.data}", "--skip-test-db"])
        assert done.returncode == 0, done.stdout + done.stderr
        users = f"""FLUSH PRIVILEGES;
ALTER USER root@localhost IDENTIFIED BY '{PASSWORDS["root"]}';
CREATE USER repl@'127.0.0.1' IDENTIFIED BY '{PASSWORDS["repl"]}';
GRANT REPLICATION SLAVE ON *.* TO repl@'127.0.0.1';
CREATE USER monitor@localhost IDENTIFIED BY '{PASSWORDS["monitor"]}';
GRANT SLAVE MONITOR ON *.* TO monitor@localhost;
CREATE USER oldmonitor@localhost IDENTIFIED BY '{PASSWORDS["monitor"]}';
GRANT REPLICATION CLIENT ON *.* TO oldmonitor@localhost;
"""
        done = run(
            [
                str(MARIADBD),
                "--no-defaults",
                "--bootstrap",
                f"--datadir={self.data}",
                "--innodb-buffer-pool-size=16M",
            ],
            stdin=users,
        )
        assert done.returncode == 0, done.stderr[-2000:]

    def start(self, init_sql: str | None = None) -> None:
        """Start, on another free port if this one was taken meanwhile (a port in the ephemeral
        range may be any connection's source port)."""
        for _ in range(3):
            if self._start(init_sql):
                return
            self.port = free_port()
        raise AssertionError(f"{self.name}: no free port after 3 tries")

    def _start(self, init_sql: str | None) -> bool:
        argv = [
            str(MARIADBD),
            "--no-defaults",
            f"--datadir={self.data}",
            "--bind-address=127.0.0.1",
            f"--port={self.port}",
            f"--socket={self.socket}",
            f"--pid-file={self.workdir / self.name}.pid",
            "--skip-name-resolve",
            f"--server-id={self.server_id}",
            "--log-bin=mariadb-bin",
            "--log-slave-updates",
            "--gtid-strict-mode",
            "--binlog-format=ROW",
            f"--relay-log={self.workdir / self.name}-relay-bin",
            f"--master-info-file={self.workdir / self.name}-master.info",
            f"--relay-log-info-file={self.workdir / self.name}-relay-log.info",
            "--skip-slave-start",
            "--innodb-buffer-pool-size=16M",
            "--innodb-log-file-size=16M",
            "--max-connections=20",
        ]
        if init_sql is not None:
            init = self.workdir / f"{self.name}-init.sql"
            init.write_text(init_sql)
            if USER:
                shutil.chown(init, USER)
            argv.append(f"--init-file={init}")
        log = (self.workdir / f"{self.name}.log").open("ab")
        # Started directly as USER (not through runuser, which stops itself when its child is
        # stopped, as the copy below does to the primary).
        entry = pwd.getpwnam(USER) if USER else None
        self.proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            user=entry.pw_uid if entry else None,
            group=entry.pw_gid if entry else None,
            extra_groups=[] if entry else None,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = (self.workdir / f"{self.name}.log").read_text()
                if "Address already in use" in text[-3000:]:
                    return False
                raise AssertionError(text[-3000:])
            if (
                self.socket.exists()
                and run(self.client("SELECT 1"), env={"MYSQL_PWD": PASSWORDS["root"]}).returncode == 0
            ):
                return True
            time.sleep(0.2)
        raise AssertionError(
            f"{self.name} did not start: {(self.workdir / f'{self.name}.log').read_text()[-3000:]}"
        )

    def client(self, query: str, *flags: str) -> list[str]:
        return ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", *flags, "-e", query]

    def sql(self, query: str) -> str:
        done = run(self.client(query, "-NB"), env={"MYSQL_PWD": PASSWORDS["root"]})
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def slave_status(self) -> dict[str, str]:
        done = run(self.client("SHOW SLAVE STATUS", "-E"), env={"MYSQL_PWD": PASSWORDS["root"]})
        assert done.returncode == 0, done.stderr
        fields = (line.partition(":") for line in done.stdout.splitlines() if not line.startswith("*"))
        return {key.strip(): value.strip() for key, sep, value in fields if sep}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # a clean shutdown
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def change_master(port: int) -> str:
    return (
        f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={port}, MASTER_USER='repl', "
        f"MASTER_PASSWORD='{PASSWORDS['repl']}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;\n"
        "START SLAVE;\n"
    )


def test_mariadb_live(workdir: Path) -> None:
    preset = PRESETS["MariaDB"]
    primary = Server(workdir, "db-0", 1, free_port())
    replica = Server(workdir, "db-1", 2, free_port())
    copy = Server(workdir, "db-2", 3, free_port())

    def probe_run(server: Server, user: str = "monitor") -> subprocess.CompletedProcess[str]:
        assert preset.command is not None
        argv = preset.command({"socket": str(server.socket), "user": user, "passwordEnv": "MONITOR_PW"})
        return run(argv, env={"MONITOR_PW": PASSWORDS["monitor"]})

    def probe(server: Server, pod: str, user: str = "monitor") -> Reading:
        done = probe_run(server, user)
        return preset.parse(pod, done.stdout, done.stderr, done.returncode, secrets=[PASSWORDS["monitor"]])

    def judge(server: Server, pod: str) -> tuple[Verdict, str]:
        mine = probe(server, pod)  # replicas first, the primary last
        judgement = preset.judge(probe(primary, "db-0"), mine, Thresholds(max_lag_seconds=5))
        return judgement.verdict, judgement.reason

    def settle(server: Server, pod: str, expected: Verdict) -> tuple[Verdict, str]:
        for _ in range(150):
            verdict, reason = judge(server, pod)
            if verdict is expected:
                break
            time.sleep(0.1)
        return verdict, reason

    def caught_up(server: Server) -> None:
        pos = primary.sql("SELECT @@gtid_binlog_pos")
        assert server.sql(f"SELECT MASTER_GTID_WAIT('{pos}', 60)") == "0"

    primary.install()
    replica.install()
    try:
        primary.start()
        replica.start(change_master(primary.port))
        primary.sql("CREATE DATABASE app; CREATE TABLE app.t (id int AUTO_INCREMENT PRIMARY KEY, v text)")
        primary.sql("INSERT INTO app.t (v) VALUES ('a'), ('b')")
        caught_up(replica)
        verdict, reason = settle(replica, "db-1", Verdict.InSync)
        assert verdict is Verdict.InSync, reason
        assert "at the primary's GTID position 0-1-" in reason

        # REPLICATION CLIENT is BINLOG MONITOR since 10.5: it may not run SHOW SLAVE STATUS.
        # The client prints the failing statement between dashes on stderr before its ERROR line.
        done = probe_run(replica, user="oldmonitor")
        assert done.returncode == 1 and "you need (at least one of) the SUPER, SLAVE MONITOR" in done.stderr
        old = preset.parse("db-1", done.stdout, done.stderr, done.returncode)
        assert old.error is not None and old.position is None, old

        # The SQL thread stopped, three transactions on the primary: Lagging, lag unknown.
        replica.sql("STOP SLAVE SQL_THREAD")
        for n in range(3):
            primary.sql(f"INSERT INTO app.t (v) VALUES ('lag {n}')")
        verdict, reason = judge(replica, "db-1")
        assert verdict is Verdict.Lagging, reason
        assert "3 transactions behind" in reason and "SQL thread running: No" in reason, reason
        replica.sql("START SLAVE")
        caught_up(replica)
        assert settle(replica, "db-1", Verdict.InSync)[0] is Verdict.InSync

        # An errant write on the replica, still configured: a GTID with its own server_id.
        replica.sql("INSERT INTO app.t (v) VALUES ('errant')")
        assert replica.sql("SELECT @@gtid_current_pos").startswith("0-2-")
        verdict, reason = judge(replica, "db-1")
        assert verdict is Verdict.Diverged, reason
        assert "0-2-" in reason
        # Once the primary writes past that sequence number, the positions alone look like lag
        # (gtid_strict_mode stops the SQL thread on the primary's next GTID); the binary log
        # states still show the replica's own transaction, which the primary's lacks: Diverged.
        primary.sql("INSERT INTO app.t (v) VALUES ('p1')")
        primary.sql("INSERT INTO app.t (v) VALUES ('p2')")
        for _ in range(300):
            status = replica.slave_status()
            if status["Slave_SQL_Running"] == "No":
                break
            time.sleep(0.1)
        assert status["Last_SQL_Errno"] == "1950", status  # ER_GTID_STRICT_OUT_OF_ORDER
        verdict, reason = judge(replica, "db-1")
        assert verdict is Verdict.Diverged, reason
        assert "0-2-" in reason and "binary log" in reason, reason
        state = replica.sql("SELECT @@gtid_binlog_state")
        assert "0-2-" in state and "0-2-" not in primary.sql("SELECT @@gtid_binlog_state")

        # A copy of the running primary's data directory (the process stopped while it is
        # copied, as kubesim freezes writers), started as server 3: before anything is set, its
        # binary log holds the primary's position and its gtid_current_pos is empty (it prefers
        # gtid_slave_pos, the primary's empty table, as the binlog's GTIDs carry server_id 1).
        assert primary.proc is not None
        os.kill(primary.proc.pid, signal.SIGSTOP)
        try:
            shutil.copytree(primary.data, copy.data, symlinks=True)
        finally:
            os.kill(primary.proc.pid, signal.SIGCONT)
        if USER:
            subprocess.run(["chown", "-R", USER, str(copy.data)], check=True)
        copy.start()
        at_copy = copy.sql("SELECT @@gtid_binlog_pos")
        assert at_copy.startswith("0-1-") and copy.sql("SELECT @@gtid_current_pos") == ""
        copy.stop()
        # The guide's way: gtid_slave_pos from the copy's own binary log, then replicate.
        primary.sql("INSERT INTO app.t (v) VALUES ('after the copy')")
        copy.start("SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos;\n" + change_master(primary.port))
        caught_up(copy)
        verdict, reason = settle(copy, "db-2", Verdict.InSync)
        assert verdict is Verdict.InSync, reason
        rows = "SELECT count(*), max(id) FROM app.t; CHECKSUM TABLE app.t"
        assert copy.sql(rows) == primary.sql(rows)

        # Promoted: no replication configured, Diverged whatever the positions say.
        copy.sql("STOP SLAVE; RESET SLAVE ALL")
        verdict, reason = judge(copy, "db-2")
        assert verdict is Verdict.Diverged, reason
        assert "no replication configured" in reason
    finally:
        for server in (copy, replica, primary):
            server.stop()
