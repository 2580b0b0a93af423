"""Rules the captured fixtures do not reach: edge cases of each judge, and malformed outputs."""

from __future__ import annotations

import pytest

from clusterresync.probes import PRESETS, Reading, Thresholds, Verdict
from clusterresync.probes.postgres import lsn

from .fixtures import read


def test_lsn_arithmetic_matches_pg_wal_lsn_diff() -> None:
    # SELECT pg_wal_lsn_diff('0/30B23E8', '0/3005730') = 707768 on the captured servers.
    assert lsn("0/30B23E8") - lsn("0/3005730") == 707768
    assert lsn("1/0") - lsn("0/FFFFFFFF") == 1
    assert lsn("16/B374D848") == 0x16_B374D848
    for bad in ("", "0", "x/1", "0/", "/1", "123456789/0"):
        with pytest.raises(ValueError):
            lsn(bad)


def test_postgres_replica_ahead_of_the_primary_diverged() -> None:
    judge = PRESETS["Postgres"].judge
    primary = Reading("db-0", role="primary", position="0/3000000", history="1")
    replica = Reading("db-1", role="replica", position="0/3000100", history="1")
    j = judge(primary, replica, Thresholds())
    assert (j.verdict, j.lag_bytes) == (Verdict.Diverged, -256)
    assert "beyond the primary's 0/3000000" in j.reason


def test_postgres_designated_primary_in_recovery_is_unknown() -> None:
    judge = PRESETS["Postgres"].judge
    j = judge(read("Postgres", "insync-db-1"), read("Postgres", "lagging-db-1"), Thresholds())
    assert j.verdict is Verdict.Unknown
    assert "reports itself as a replica" in j.reason


def test_redis_rules_without_fixtures() -> None:
    judge = PRESETS["Redis"].judge
    primary = Reading(
        "r-0", role="primary", position="500", history="a" * 40, details={"master_replid2": "0" * 40}
    )
    ahead = Reading("r-1", role="replica", position="600", history="a" * 40, link="up")
    assert judge(primary, ahead, Thresholds()).verdict is Verdict.Diverged
    stranger = Reading("r-1", role="replica", position="10", history="b" * 40, link="up")
    j = judge(primary, stranger, Thresholds())
    assert j.verdict is Verdict.Diverged
    assert "follows another history" in j.reason
    fresh = Reading("r-1", role="replica", position="0", history="0" * 40, link="down")
    assert "initial full synchronization" in judge(primary, fresh, Thresholds()).reason
    # Redis 7: a replica started empty reports a random id of its own until its first full sync.
    waiting = Reading("r-1", role="replica", position="0", history="c" * 40, link="down")
    j = judge(primary, waiting, Thresholds())
    assert j.verdict is Verdict.Lagging and "waiting for a full synchronization" in j.reason


def test_mongodb_unhealthy_members_are_unknown() -> None:
    parse = PRESETS["MongoDB"].parse
    # A member that reports itself DOWN or ARBITER has no data to compare.
    down = parse(
        "m1", '{"ok": 1, "set": "replset", "members": [{"name": "m1", "state": 8, "self": true}]}', "", 0
    )
    assert down.error == "the member is in state DOWN"
    arbiter = parse(
        "m4",
        '{"ok": 1, "set": "replset", "members": [{"name": "m4", "state": 7, "stateStr": "ARBITER", "self": true}]}',
        "",
        0,
    )
    assert arbiter.error == "the member is in state ARBITER"
    j = PRESETS["MongoDB"].judge(read("MongoDB", "insync-m1"), arbiter, Thresholds())
    assert j.verdict is Verdict.Unknown


def test_mongodb_primary_must_be_primary() -> None:
    judge = PRESETS["MongoDB"].judge
    j = judge(read("MongoDB", "insync-m3"), read("MongoDB", "insync-m2"), Thresholds())
    assert j.verdict is Verdict.Unknown


@pytest.mark.parametrize(
    ("engine", "stdout", "words"),
    [
        ("Postgres", "t|x\n", ["unexpected psql output"]),
        ("Postgres", "t|||0/1|zz/1|streaming|1|1|f|0|0|150018\n", ["not an LSN"]),
        ("Postgres", "f||||||||||0|150018\n", ["no current WAL LSN"]),
        ("Redis", "# Replication\r\nrole:master\r\n", ["no master_replid"]),
        ("Redis", "LOADING Redis is loading the dataset in memory\n", ["LOADING"]),
        ("MySQL", "ERROR: nothing\n", ["unexpected client output"]),
        (
            "MySQL",
            "*************************** 1. row ***************************\n      x: 1\n",
            ["no gtid_executed"],
        ),
        (
            "MySQL",
            "*************************** 1. row ***************************\n  gtid_executed: garbage\n",
            ["unreadable gtid_executed"],
        ),
        (
            "MariaDB",
            "*************************** 1. row ***************************\ngtid_current_pos: 0-1\n",
            ["unreadable"],
        ),
        ("MongoDB", "MongoNetworkError: connect ECONNREFUSED\n", ["printed no JSON"]),
        ("MongoDB", '{"ok": 1, "members": []}', ["self: true"]),
        ("Checksum", "files=3\nsha256=nothex\n", ["unexpected checksum output"]),
    ],
)
def test_malformed_outputs_are_errors(engine: str, stdout: str, words: list[str]) -> None:
    reading = PRESETS[engine].parse("db-1", stdout, "", 0)
    assert reading.error is not None, reading
    for word in words:
        assert word in reading.error


@pytest.mark.parametrize("engine", list(PRESETS))
def test_empty_output_and_failures_are_errors(engine: str) -> None:
    parse = PRESETS[engine].parse
    ok = 200 if engine == "HTTP" else 0
    assert parse("db-1", "", "", ok).error is not None
    failed = parse("db-1", "", "boom", 500 if engine == "HTTP" else 1)
    assert failed.error is not None and "boom" in failed.error


def test_the_mariadb_clients_statement_echo_is_not_the_reason() -> None:
    """MariaDB 10.11's client echoes the failing statement between two rulers before its ERROR
    line: the reading's error is the ERROR line, not the ruler."""
    stderr = (
        "--------------\nSELECT @@server_id AS server_id; SHOW SLAVE STATUS\n--------------\n\n"
        "ERROR 1045 (28000): Access denied for user 'monitor'@'localhost' (using password: YES)\n"
    )
    reading = PRESETS["MariaDB"].parse("db-1", "", stderr, 1)
    assert reading.error is not None and "ERROR 1045 (28000): Access denied" in reading.error
    assert "------" not in reading.error and "SELECT" not in reading.error
