"""A password an engine echoes never reaches a Reading or a Judgement."""

from __future__ import annotations

import json

import pytest

from clusterresync.probes import PRESETS, Thresholds
from clusterresync.probes.common import scrub

from .fixtures import read

PASSWORD = "hunter2-Xy9"

# (engine, stdout, stderr, exit code): outputs that echo the password in the ways clients do.
ECHOES = [
    (
        "Postgres",
        "",
        f'psql: error: connection to server at "db-0" failed: invalid connection option password={PASSWORD}\n',
        2,
    ),
    (
        "Postgres",
        "",
        f"psql: error: could not connect to postgresql://postgres:{PASSWORD}@db-0:5432/app\n",
        2,
    ),
    ("Postgres", "", f"sh: 1: PGPASSWORD={PASSWORD}: not found\n", 127),
    ("MySQL", "", f"mysql: [Warning] option -p{PASSWORD} given\nERROR 1045 (28000): Access denied\n", 1),
    ("MariaDB", "", f"ERROR 1064 (42000): near 'IDENTIFIED BY '{PASSWORD}'' at line 1\n", 1),
    ("Redis", f"ERR wrong number of arguments for 'auth {PASSWORD}' command\n", "", 0),
    ("Redis", "", f"Could not connect: requirepass {PASSWORD}\n", 1),
    (
        "MongoDB",
        json.dumps({"ok": 0, "errmsg": f"Authentication failed for mongodb://admin:{PASSWORD}@m1:27017/"}),
        "",
        0,
    ),
    ("MongoDB", "", f"MongoServerError: --password {PASSWORD} is not allowed\n", 1),
    ("Checksum", "files=1\nsha256=" + "0" * 64, f"find: './secret=\"{PASSWORD}\"': Permission denied\n", 0),
    ("Command", json.dumps({"error": f"cannot log in with token: {PASSWORD}"}), "", 0),
    (
        "Command",
        json.dumps({"role": "replica", "position": 5, "details": {"dsn": f"postgres://u:{PASSWORD}@h/db"}}),
        "",
        0,
    ),
    ("HTTP", f'{{"error": "auth failed", "details": {{"masterauth": "{PASSWORD}"}}}}', "", 200),
    ("HTTP", f"Unauthorized: pass={PASSWORD}", "", 401),
]
HEALTHY = {
    "Postgres": "insync-db-0",
    "MySQL": "insync-mysql-0",
    "MariaDB": "insync-maria-0",
    "Redis": "insync-redis-0",
    "MongoDB": "insync-m1",
    "Checksum": "insync-files-0",
}


@pytest.mark.parametrize(("engine", "stdout", "stderr", "exit_code"), ECHOES)
def test_an_echoed_password_is_scrubbed_without_being_told(
    engine: str, stdout: str, stderr: str, exit_code: int
) -> None:
    preset = PRESETS[engine]
    reading = preset.parse("db-1", stdout, stderr, exit_code)
    assert PASSWORD not in repr(reading)
    assert "***" in repr(reading)
    if engine in HEALTHY:
        other = read(engine, HEALTHY[engine])
    else:
        other = preset.parse(
            "db-0", json.dumps({"role": "primary", "position": 7}), "", 200 if engine == "HTTP" else 0
        )
    for judgement in (preset.judge(other, reading, Thresholds()), preset.judge(reading, other, Thresholds())):
        assert PASSWORD not in repr(judgement)


@pytest.mark.parametrize("engine", list(PRESETS))
def test_the_secret_value_itself_is_scrubbed_when_given(engine: str) -> None:
    preset = PRESETS[engine]
    reading = preset.parse("db-1", "", f"FATAL: something about {PASSWORD} went wrong", 1, secrets=[PASSWORD])
    assert reading.error is not None
    assert PASSWORD not in repr(reading)
    assert "something about *** went wrong" in reading.error


def test_scrub_keeps_what_is_not_a_credential() -> None:
    for text in (
        "master_link_status:up",
        "LSN 0/3000060 on timeline 2",
        "ERROR 1045 (28000): Access denied for user 'probe'@'localhost' (using password: YES)",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
        "connection to server on socket /tmp/.s.PGSQL.5432 failed",
    ):
        assert scrub(text) == text
    assert scrub(f"mongodb://admin:{PASSWORD}@with@at:27017") == "mongodb://admin:***@at:27017"
    assert scrub(f"redis-cli -a {PASSWORD} ping") == "redis-cli -a *** ping"
    assert scrub(f"PASSWORD: '{PASSWORD}'") == "PASSWORD: '***'"
