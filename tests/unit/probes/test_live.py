"""The presets against real engines, when they are installed here (skipped otherwise).

PostgreSQL: a primary and a streaming replica with password authentication (the probe gets the
password on stdin, as the operator passes a Secret), driven in sync, lagging (replay paused) and
diverged (replica promoted and written to). Redis: a primary and a replica, in sync then diverged.
Checksum: the preset's command on two directories. PostgreSQL refuses to run as root: as root the
engines and the probes run as `nobody`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterresync.probes import PRESETS, Reading, Thresholds, Verdict

PG_BIN = next(
    (
        d
        for d in ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")
        if Path(d, "initdb").exists()
    ),
    None,
)
AS_ROOT = os.geteuid() == 0
PASSWORD = "live-pw-4b1d"


def sh(
    argv: list[str],
    *,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    user: str | None = "nobody" if AS_ROOT else None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``argv`` run as ``user`` (through runuser; the servers refuse root), its output captured."""
    return subprocess.run(
        ["runuser", "-u", user, "--", *argv] if user else argv,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="probes-live-", dir="/tmp"))
    if AS_ROOT:
        shutil.chown(path, "nobody")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- PostgreSQL


@pytest.mark.skipif(PG_BIN is None, reason="PostgreSQL server binaries (initdb, pg_ctl) are not installed")
@pytest.mark.skipif(
    shutil.which("psql") is None or shutil.which("pg_basebackup") is None,
    reason="psql/pg_basebackup not installed",
)
@pytest.mark.skipif(AS_ROOT and shutil.which("runuser") is None, reason="running as root without runuser")
def test_postgres_live(workdir: Path) -> None:
    assert PG_BIN is not None
    preset = PRESETS["Postgres"]
    assert preset.command is not None
    port0, port1 = 50000 + os.getpid() % 5000, 55000 + os.getpid() % 5000
    (workdir / "pw").write_text(PASSWORD + "\n")
    pgenv = {"PGPASSWORD": PASSWORD}

    def ok(argv: list[str]) -> str:
        done = sh(argv, env=pgenv)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def sql(port: int, query: str) -> str:
        return ok(
            ["psql", "-XAtq", "-h", str(workdir), "-p", str(port), "-U", "postgres", "-c", query]
        ).strip()

    def start(name: str, port: int) -> None:
        with open(workdir / name / "postgresql.auto.conf", "a") as f:
            f.write(
                f"port = {port}\nunix_socket_directories = '{workdir}'\nlisten_addresses = ''\nfsync = off\n"
            )
        ok([f"{PG_BIN}/pg_ctl", "-D", str(workdir / name), "-l", str(workdir / f"{name}.log"), "-w", "start"])

    def probe(pod: str, port: int, password: str = PASSWORD) -> Reading:
        assert preset.command is not None
        options: dict[str, object] = {
            "host": str(workdir),
            "port": port,
            "user": "postgres",
            "passwordStdin": True,
        }
        done = sh(preset.command(options), stdin=password + "\n")
        return preset.parse(pod, done.stdout, done.stderr, done.returncode, secrets=[password])

    def judge() -> tuple[Verdict, str]:
        replica = probe("db-1", port1)  # replicas first, the primary last
        judgement = preset.judge(probe("db-0", port0), replica, Thresholds())
        return judgement.verdict, judgement.reason

    def settle(expected: Verdict) -> tuple[Verdict, str]:
        for _ in range(100):
            verdict, reason = judge()
            if verdict is expected:
                break
            time.sleep(0.1)
        return verdict, reason

    ok(
        [
            f"{PG_BIN}/initdb",
            "-D",
            str(workdir / "db-0"),
            "-U",
            "postgres",
            "--auth-local=scram-sha-256",
            f"--pwfile={workdir / 'pw'}",
        ]
    )
    try:
        start("db-0", port0)
        sql(port0, "CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) VALUES ('a')")
        ok(
            [
                "pg_basebackup",
                "-D",
                str(workdir / "db-1"),
                "-R",
                "-h",
                str(workdir),
                "-p",
                str(port0),
                "-U",
                "postgres",
            ]
        )
        start("db-1", port1)

        assert settle(Verdict.InSync)[0] is Verdict.InSync

        sql(port1, "SELECT pg_wal_replay_pause()")
        sql(port0, "INSERT INTO t (v) SELECT 'row ' || g FROM generate_series(1, 2000) g")
        verdict, reason = settle(Verdict.Lagging)
        assert verdict is Verdict.Lagging, reason
        assert "replay is paused" in reason
        sql(port1, "SELECT pg_wal_replay_resume()")
        assert settle(Verdict.InSync)[0] is Verdict.InSync

        wrong = probe("db-0", port0, password="not-" + PASSWORD)
        assert wrong.error is not None and "password authentication failed" in wrong.error

        ok([f"{PG_BIN}/pg_ctl", "-D", str(workdir / "db-1"), "-w", "promote"])
        sql(port1, "INSERT INTO t (v) VALUES ('on the promoted replica')")
        verdict, reason = judge()
        assert verdict is Verdict.Diverged, reason
        assert "not in recovery" in reason
    finally:
        for name in ("db-1", "db-0"):
            if (workdir / name / "postmaster.pid").exists():
                sh([f"{PG_BIN}/pg_ctl", "-D", str(workdir / name), "-w", "-m", "immediate", "stop"])


# ---------------------------------------------------------------- Redis


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick), rather than a fixed one that another
    test's server or a client's ephemeral port may hold."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
    reason="redis-server/redis-cli not installed",
)
def test_redis_live(workdir: Path) -> None:
    preset = PRESETS["Redis"]
    port0, port1 = free_port(), free_port()
    for name, port, extra in (
        ("r0", port0, []),
        ("r1", port1, ["--replicaof", "127.0.0.1", str(port0), "--masterauth", PASSWORD]),
    ):
        (workdir / name).mkdir()
        if AS_ROOT:
            shutil.chown(workdir / name, "nobody")
        done = sh(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(workdir / name),
                "--daemonize",
                "yes",
                "--save",
                "",
                "--requirepass",
                PASSWORD,
                "--pidfile",
                str(workdir / f"{name}.pid"),
                "--logfile",
                str(workdir / f"{name}.log"),
                *extra,
            ]
        )
        assert done.returncode == 0, done.stderr

    def cli(port: int, *args: str) -> None:
        done = sh(["redis-cli", "--no-auth-warning", "-p", str(port), *args], env={"REDISCLI_AUTH": PASSWORD})
        assert done.returncode == 0, done.stderr

    def probe(pod: str, port: int) -> Reading:
        assert preset.command is not None
        argv = preset.command({"port": port, "passwordEnv": "REDIS_PASSWORD"})
        done = sh(argv, env={"REDIS_PASSWORD": PASSWORD})
        return preset.parse(pod, done.stdout, done.stderr, done.returncode)

    def judge() -> tuple[Verdict, str]:
        replica = probe("r1", port1)
        judgement = preset.judge(probe("r0", port0), replica, Thresholds())
        return judgement.verdict, judgement.reason

    try:
        for _ in range(300):  # 30 s: a loaded machine
            cli(port0, "SET", "k", "v")
            verdict, reason = judge()
            if verdict is Verdict.InSync:
                break
            time.sleep(0.1)
        assert verdict is Verdict.InSync, reason
        cli(port1, "REPLICAOF", "NO", "ONE")
        cli(port1, "SET", "k", "other")
        verdict, reason = judge()
        assert verdict is Verdict.Diverged, reason
        assert "role master" in reason
    finally:
        for port in (port0, port1):
            sh(
                ["redis-cli", "--no-auth-warning", "-p", str(port), "SHUTDOWN", "NOSAVE"],
                env={"REDISCLI_AUTH": PASSWORD},
            )


# ---------------------------------------------------------------- Checksum


@pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("sh", "find", "sort", "xargs", "sha256sum")),
    reason="coreutils/findutils missing",
)
def test_checksum_live(tmp_path: Path) -> None:
    preset = PRESETS["Checksum"]
    assert preset.command is not None
    for pod in ("a", "b"):
        (tmp_path / pod / "sub dir").mkdir(parents=True)
        (tmp_path / pod / "sub dir" / "f\nwith newline").write_text("same")
        (tmp_path / pod / "x").write_bytes(b"\x00\x01")
        (tmp_path / pod / "lock.pid").write_text(pod)

    def probe(pod: str) -> Reading:
        assert preset.command is not None
        done = subprocess.run(
            preset.command({"path": str(tmp_path / pod), "exclude": ["*.pid"]}),
            capture_output=True,
            text=True,
            check=False,
        )
        return preset.parse(pod, done.stdout, done.stderr, done.returncode)

    assert preset.judge(probe("a"), probe("b"), Thresholds()).verdict is Verdict.InSync
    (tmp_path / "b" / "x").write_bytes(b"\x00\x02")
    judgement = preset.judge(probe("a"), probe("b"), Thresholds())
    assert judgement.verdict is Verdict.Diverged
    assert "differ" in judgement.reason
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run(preset.command({"path": str(empty)}), capture_output=True, text=True, check=False)
    assert preset.parse("e", done.stdout, done.stderr, done.returncode).details == {"files": "0"}


# ---------------------------------------------------------------- MongoDB (script only)

# mongosh's globals, stood in for: `db` answering replSetGetStatus with bson-like values (a
# Timestamp with t/i getters as in bson 6, or only getHighBits/getLowBits as in bson 4; terms as
# Long objects with toNumber()), and `print`. MongoDB itself is not installable here.
STAND_IN = """
const Long = (n) => ({toNumber: () => n, toString: () => String(n)});
const TsNew = (t, i) => ({get t() { return t; }, get i() { return i; }});
const TsOld = (t, i) => ({getHighBits: () => t | 0, getLowBits: () => i | 0});
const print = (s) => console.log(s);
const calls = [];
const db = {
  getSiblingDB: (name) => ({auth: (user, pw) => { calls.push([name, user, pw]);
    if (pw !== "right") { const e = new Error("Authentication failed."); e.code = 18; e.codeName = "AuthenticationFailed"; throw e; } }}),
  adminCommand: (cmd) => ({ok: 1, set: "replset", myState: 2, term: Long(3), members: [
    {name: "m1:27017", state: 1, stateStr: "PRIMARY", health: 1, optime: {ts: TsNew(1723763173, 1), t: Long(3)},
     optimeDate: new Date(1723763173000)},
    {name: "m2:27017", state: 2, stateStr: "SECONDARY", health: 1, self: true, optime: {ts: TsOld(1723763170, 4), t: Long(3)},
     optimeDate: new Date(1723763170000), syncSourceHost: "m1:27017"}]}),
};
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (it stands in for mongosh)")
@pytest.mark.parametrize(
    ("password", "error"), [("right", None), ("wrong", "replSetGetStatus failed: Authentication failed.")]
)
def test_mongodb_script_with_stand_ins(tmp_path: Path, password: str, error: str | None) -> None:
    preset = PRESETS["MongoDB"]
    assert preset.command is not None
    argv = preset.command({"user": "probe", "passwordStdin": True})
    script = argv[argv.index("--eval") + 1]
    (tmp_path / "probe.js").write_text(STAND_IN + script + ";\n")
    done = subprocess.run(
        ["node", str(tmp_path / "probe.js")],
        capture_output=True,
        text=True,
        check=False,
        env={"MONGO_PROBE_PASSWORD": password, "PATH": os.environ.get("PATH", "")},
    )
    assert done.returncode == 0, done.stderr
    reading = preset.parse("m2", done.stdout, done.stderr, 0)
    assert reading.error == error
    if error is None:
        assert (reading.role, reading.position, reading.history, reading.link) == (
            "replica",
            "1723763170:4",
            "3",
            "up",
        )
        primary = Reading(
            "m1", role="primary", position="1723763173:1", history="3", details={"set": "replset"}
        )
        judgement = preset.judge(primary, reading, Thresholds(max_lag_seconds=5))
        assert (judgement.verdict, judgement.lag_seconds) == (Verdict.InSync, 3.0)
