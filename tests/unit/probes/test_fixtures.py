"""Every preset parses its engine's real (or, for MySQL and MongoDB, documented) output and judges it.

The fixtures and how they were produced are described in tests/fixtures/probes/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clusterresync.probes import PRESETS, Thresholds, Verdict

from .fixtures import ROOT, read

# (engine, replica fixture, primary fixture, verdict, words the reason must contain)
CASES = [
    # PostgreSQL 15, captured.
    ("Postgres", "insync-db-1", "insync-db-0", Verdict.InSync, ["current LSN 0/3005730"]),
    ("Postgres", "lagging-db-1", "lagging-db-0", Verdict.Lagging, ["707768 bytes", "replay is paused"]),
    ("Postgres", "diverged-db-1", "diverged-db-0", Verdict.Diverged, ["not in recovery", "promoted"]),
    ("Postgres", "diverged-db-2", "diverged-db-0", Verdict.Diverged, ["timeline 2", "timeline 1"]),
    ("Postgres", "diverged-db-2", "diverged-db-1", Verdict.InSync, ["0/5000000"]),
    # Redis 7.0, captured.
    ("Redis", "insync-redis-1", "insync-redis-0", Verdict.InSync, ["offset 13013"]),
    ("Redis", "lagging-redis-1", "lagging-redis-0", Verdict.Lagging, ["11613 bytes", "link is down"]),
    ("Redis", "lagging-redis-2", "lagging-redis-0", Verdict.Lagging, ["11613 bytes"]),
    ("Redis", "promoted-redis-1", "promoted-redis-0", Verdict.Diverged, ["role master"]),
    ("Redis", "promoted-redis-2", "promoted-redis-1", Verdict.Lagging, ["partial resync"]),
    ("Redis", "splitbrain-redis-2", "splitbrain-redis-1", Verdict.Diverged, ["past offset 24626"]),
    ("Redis", "splitbrain-redis-2", "splitbrain-redis-0", Verdict.InSync, ["24926"]),
    ("Redis", "splitbrain-redis-0", "splitbrain-redis-1", Verdict.Diverged, ["role master"]),
    # MariaDB 10.11, captured.
    ("MariaDB", "insync-maria-1", "insync-maria-0", Verdict.InSync, ["0-1-7"]),
    (
        "MariaDB",
        "lagging-maria-1",
        "lagging-maria-0",
        Verdict.Lagging,
        ["5 transactions", "SQL thread running: No"],
    ),
    ("MariaDB", "errant-maria-1", "errant-maria-0", Verdict.Diverged, ["0-2-13", "written to directly"]),
    ("MariaDB", "promoted-maria-1", "promoted-maria-0", Verdict.Diverged, ["0-2-14", "0-1-13"]),
    # MySQL 8.4 format, constructed from the manual (MySQL cannot be installed here).
    ("MySQL", "insync-mysql-1", "insync-mysql-0", Verdict.InSync, ["every transaction"]),
    (
        "MySQL",
        "lagging-mysql-1",
        "lagging-mysql-0",
        Verdict.Lagging,
        ["4 transactions", "3e11fa47-71ca-11e1-9e33-c80aa9429562:6-9"],
    ),
    ("MySQL", "catchingup-mysql-1", "lagging-mysql-0", Verdict.Lagging, ["2 transactions"]),
    (
        "MySQL",
        "errant-mysql-1",
        "lagging-mysql-0",
        Verdict.Diverged,
        ["2 transactions", "5f2c9c1e-5a1b-11ef-9b5d-0242ac120003:1-2"],
    ),
    ("MySQL", "promoted-mysql-1", "insync-mysql-0", Verdict.Diverged, ["errant", ":1"]),
    # MongoDB, constructed from the manual's replSetGetStatus example (MongoDB cannot be installed here).
    ("MongoDB", "insync-m2", "insync-m1", Verdict.InSync, ["1723763173:1"]),
    ("MongoDB", "lagging-m2", "lagging-m1", Verdict.Lagging, ["30 s"]),
    ("MongoDB", "lagging-m3", "lagging-m1", Verdict.Lagging, ["STARTUP2"]),
    ("MongoDB", "diverged-m2", "diverged-m1", Verdict.Diverged, ["PRIMARY as well", "term 4"]),
    ("MongoDB", "diverged-m3", "diverged-m1", Verdict.Diverged, ["ROLLBACK"]),
    ("MongoDB", "laterterm-m3", "lagging-m1", Verdict.Diverged, ["term 4", "term 3"]),
    # Checksum, captured (the preset's command run on two directories).
    ("Checksum", "insync-files-1", "insync-files-0", Verdict.InSync, ["3 files"]),
    ("Checksum", "diverged-files-1", "insync-files-0", Verdict.Diverged, ["4 files vs 3"]),
]


@pytest.mark.parametrize(("engine", "replica", "primary", "verdict", "words"), CASES, ids=lambda v: str(v))
def test_fixture_is_judged(
    engine: str, replica: str, primary: str, verdict: Verdict, words: list[str]
) -> None:
    preset = PRESETS[engine]
    judgement = preset.judge(read(engine, primary), read(engine, replica), Thresholds())
    assert judgement.verdict is verdict, judgement.reason
    assert judgement.pod == read(engine, replica).pod
    for word in words:
        assert word in judgement.reason, judgement.reason


@pytest.mark.parametrize(
    ("engine", "name", "words"),
    [
        ("Postgres", "stopped-db-0", ["exited with 2", "No such file or directory"]),
        ("Redis", "stopped-redis-0", ["exited with 1", "Connection refused"]),
        ("Redis", "wrongpass-redis-0", ["NOAUTH", "WRONGPASS"]),
        ("MariaDB", "wrongpass-maria-0", ["exited with 1", "Access denied"]),
        ("MySQL", "gtidoff-mysql-0", ["gtid_mode is OFF"]),
        ("MongoDB", "norepl-m1", ["not running with --replSet"]),
        ("MongoDB", "authfailed-m1", ["Authentication failed"]),
        ("Checksum", "denied-files-1", ["incomplete", "Permission denied"]),
        ("Checksum", "missing-files-1", ["exited with 2", "can't cd"]),
    ],
)
def test_failures_read_as_errors_and_judge_unknown(engine: str, name: str, words: list[str]) -> None:
    reading = read(engine, name)
    assert reading.error is not None
    for word in words:
        assert word in reading.error
    preset = PRESETS[engine]
    healthy = {
        "Postgres": "insync-db-1",
        "Redis": "insync-redis-1",
        "MariaDB": "insync-maria-1",
        "MySQL": "insync-mysql-1",
        "MongoDB": "insync-m2",
        "Checksum": "insync-files-1",
    }[engine]
    as_primary = preset.judge(reading, read(engine, healthy), Thresholds())
    assert as_primary.verdict is Verdict.Unknown
    assert "could not be read" in as_primary.reason
    as_replica = preset.judge(read(engine, healthy), reading, Thresholds())
    assert as_replica.verdict is Verdict.Unknown


def test_postgres_readings() -> None:
    primary = read("Postgres", "lagging-db-0")
    assert (primary.role, primary.position, primary.history) == ("primary", "0/30B23E8", "1")
    replica = read("Postgres", "lagging-db-1")
    assert (replica.role, replica.position, replica.history, replica.link) == (
        "replica",
        "0/3005730",
        "1",
        "up",
    )
    assert replica.details["receiveLsn"] == "0/30B23E8"
    assert replica.details["replayPaused"] == "true"
    assert replica.lag_seconds is not None and replica.lag_seconds > 0


def test_postgres_thresholds_on_bytes_and_seconds() -> None:
    judge = PRESETS["Postgres"].judge
    primary, replica = read("Postgres", "lagging-db-0"), read("Postgres", "lagging-db-1")
    assert judge(primary, replica, Thresholds(max_lag_bytes=1_000_000)).verdict is Verdict.InSync
    assert judge(primary, replica, Thresholds(max_lag_bytes=1000)).verdict is Verdict.Lagging
    both = judge(primary, replica, Thresholds(max_lag_bytes=1_000_000, max_lag_seconds=1))
    assert both.verdict is Verdict.Lagging
    assert "seconds over 1" in both.reason


def test_redis_readings() -> None:
    primary = read("Redis", "promoted-redis-1")
    assert primary.role == "primary"
    assert primary.details["master_replid2"] == read("Redis", "insync-redis-0").history
    replica = read("Redis", "lagging-redis-1")
    assert (replica.role, replica.link) == ("replica", "down")


def test_redis_thresholds_on_bytes_only() -> None:
    judge = PRESETS["Redis"].judge
    primary, replica = read("Redis", "lagging-redis-0"), read("Redis", "lagging-redis-1")
    assert judge(primary, replica, Thresholds(max_lag_bytes=20_000)).verdict is Verdict.InSync
    # Redis has no lag in seconds: a seconds threshold cannot vouch for it.
    unmeasured = judge(primary, replica, Thresholds(max_lag_seconds=60))
    assert unmeasured.verdict is Verdict.Lagging
    assert "no lag in seconds" in unmeasured.reason


def test_mysql_lag_in_seconds_and_threads() -> None:
    judge = PRESETS["MySQL"].judge
    primary = read("MySQL", "lagging-mysql-0")
    running = read("MySQL", "catchingup-mysql-1")
    assert running.lag_seconds == 12.0
    assert judge(primary, running, Thresholds(max_lag_seconds=30)).verdict is Verdict.InSync
    stopped = read("MySQL", "lagging-mysql-1")
    assert stopped.lag_seconds is None  # Seconds_Behind_Source is NULL while the SQL thread is stopped
    assert stopped.link == "down"
    assert judge(primary, stopped, Thresholds(max_lag_seconds=30)).verdict is Verdict.Lagging


def test_mariadb_readings() -> None:
    replica = read("MariaDB", "lagging-maria-1")
    assert (replica.role, replica.position, replica.link) == ("replica", "0-1-7", "down")
    assert replica.details["received"] == "0-1-12"
    assert replica.lag_seconds is None
    assert read("MariaDB", "promoted-maria-1").role == "primary"


def test_mongodb_extended_json_of_the_raw_reply() -> None:
    primary = read("MongoDB", "raw-canonical-m1", pod="m1")
    replica = read("MongoDB", "raw-relaxed-m2", pod="m2")
    assert (primary.role, primary.position, primary.history) == ("primary", "1723763173:1", "3")
    assert (replica.role, replica.link, replica.details["syncSource"]) == (
        "replica",
        "up",
        "m1.example.net:27017",
    )
    assert PRESETS["MongoDB"].judge(primary, replica, Thresholds()).verdict is Verdict.InSync


def test_checksum_excludes_are_applied() -> None:
    with_excludes = read("Checksum", "insync-files-0")
    without = read("Checksum", "noexclude-files-1")
    assert with_excludes.details["files"] == "3"
    assert without.details["files"] == "5"
    assert with_excludes.checksum != without.checksum


@pytest.mark.parametrize("path", sorted(ROOT.glob("*/*.json")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_captured_fixtures_came_from_the_presets_current_command(path: Path) -> None:
    """Each captured record holds the argv it was produced with: the preset still builds that argv."""
    data = json.loads(path.read_text())
    command = PRESETS[data["engine"]].command
    assert command is not None
    assert command(data["options"]) == data["argv"]
