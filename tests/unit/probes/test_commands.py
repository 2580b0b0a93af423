"""The commands the presets build: argv shapes, option validation, and credentials that reach the
client inside the container without ever being part of the argv (the wrappers are run with a real
`sh` and a stand-in client that prints what it received)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from clusterresync.probes import PRESETS, HttpGet, ProbeConfigError
from clusterresync.probes.postgres import QUERY

SECRET = "s3cr3t p@ss'\"$(touch /tmp/pwned) `x` \\n"
CLIENT_VARS = {
    "Postgres": "PGPASSWORD",
    "MySQL": "MYSQL_PWD",
    "MariaDB": "MYSQL_PWD",
    "Redis": "REDISCLI_AUTH",
    "MongoDB": "MONGO_PROBE_PASSWORD",
}


def test_every_preset_is_registered() -> None:
    assert set(PRESETS) == {"Postgres", "MySQL", "MariaDB", "Redis", "MongoDB", "Checksum", "Command", "HTTP"}
    for name, preset in PRESETS.items():
        assert preset.name == name
        assert (preset.command is None) != (preset.http_path is None)
        assert preset.transport == ("http" if name == "HTTP" else "exec")


def test_postgres_argv_without_password() -> None:
    command = PRESETS["Postgres"].command
    assert command is not None
    argv = command({"host": "/var/run/postgresql", "port": 5432, "user": "postgres", "database": "app"})
    assert argv == [
        "psql", "-XAtq", "-F", "|", "-v", "ON_ERROR_STOP=1",
        "-h", "/var/run/postgresql", "-U", "postgres", "-d", "app", "-p", "5432", "-c", QUERY,
    ]  # fmt: skip


def test_client_override_and_other_argvs() -> None:
    redis, mysql, mariadb, mongo = (PRESETS[n].command for n in ("Redis", "MySQL", "MariaDB", "MongoDB"))
    assert redis is not None and mysql is not None and mariadb is not None and mongo is not None
    assert redis({"port": 6380, "tls": True, "user": "probe"}) == [
        "redis-cli", "--no-auth-warning", "-p", "6380", "--user", "probe", "--tls", "INFO", "replication",
    ]  # fmt: skip
    assert mysql({"user": "root", "port": 3307})[:4] == ["mysql", "-E", "--user=root", "--port=3307"]
    assert "SHOW REPLICA STATUS" in mysql({})[-1]
    assert mariadb({"client": "mysql"})[0] == "mysql"
    assert "SHOW SLAVE STATUS" in mariadb({})[-1]
    argv = mongo({"user": 'ad"min', "port": 27018})
    assert argv[:5] == ["mongosh", "--quiet", "--norc", "--port", "27018"]
    assert argv[5] == "--eval"
    assert 'const user = "ad\\"min", authDb = "admin";' in argv[6]


@pytest.mark.parametrize("engine", list(CLIENT_VARS))
@pytest.mark.parametrize("mode", ["env", "stdin"])
def test_the_password_is_never_in_the_argv(engine: str, mode: str) -> None:
    command = PRESETS[engine].command
    assert command is not None
    options: dict[str, object] = {"user": "probe", "port": 1234}
    options |= {"passwordEnv": "DB_PASSWORD"} if mode == "env" else {"passwordStdin": True}
    argv = command(options)
    assert argv[:2] == ["sh", "-c"]
    assert argv[3] == "probe"
    assert CLIENT_VARS[engine] in argv[2]
    assert ("DB_PASSWORD" in argv[2]) == (mode == "env")
    assert PRESETS[engine].wants_stdin(options) == (mode == "stdin")
    assert not any("password" in a.lower() and "=" in a and "MONGO_PROBE" not in a for a in argv[4:])


def stand_in(tmp_path: Path, client: str) -> str:
    """A fake client that prints its argv and the password variable as JSON."""
    path = tmp_path / "client"
    path.write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        f"print(json.dumps({{'argv': sys.argv[1:], 'password': os.environ.get({client!r})}}))\n"
    )
    path.chmod(0o755)
    return str(path)


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
@pytest.mark.parametrize("engine", list(CLIENT_VARS))
def test_env_mode_hands_the_containers_variable_to_the_client(engine: str, tmp_path: Path) -> None:
    command = PRESETS[engine].command
    assert command is not None
    argv = command({"client": stand_in(tmp_path, CLIENT_VARS[engine]), "passwordEnv": "DB_PASSWORD"})
    assert SECRET not in json.dumps(argv)
    done = subprocess.run(
        argv, capture_output=True, text=True, env={"DB_PASSWORD": SECRET, "PATH": "/usr/bin:/bin"}
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["password"] == SECRET
    assert SECRET not in json.dumps(seen["argv"])
    assert not Path("/tmp/pwned").exists()


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
@pytest.mark.parametrize("engine", list(CLIENT_VARS))
@pytest.mark.parametrize("ending", ["\n", ""])
def test_stdin_mode_reads_one_line_for_the_client(engine: str, ending: str, tmp_path: Path) -> None:
    command = PRESETS[engine].command
    assert command is not None
    argv = command({"client": stand_in(tmp_path, CLIENT_VARS[engine]), "passwordStdin": True})
    done = subprocess.run(
        argv, capture_output=True, text=True, input=SECRET + ending, env={"PATH": "/usr/bin:/bin"}
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["password"] == SECRET


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
def test_stdin_mode_fails_clearly_without_a_password(tmp_path: Path) -> None:
    command = PRESETS["Postgres"].command
    assert command is not None
    argv = command({"client": stand_in(tmp_path, "PGPASSWORD"), "passwordStdin": True})
    done = subprocess.run(argv, capture_output=True, text=True, input="", env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 64
    reading = PRESETS["Postgres"].parse("db-1", done.stdout, done.stderr, done.returncode)
    assert reading.error == "the probe command exited with 64: probe: no password on stdin"


@pytest.mark.parametrize(
    ("engine", "options", "message"),
    [
        ("Postgres", {"passwordEnv": "X; rm -rf /"}, "environment variable name"),
        ("Postgres", {"passwordEnv": "A", "passwordStdin": True}, "not both"),
        ("Postgres", {"passwordStdin": "yes"}, "true or false"),
        ("Redis", {"port": 70000}, "between 1 and 65535"),
        ("Redis", {"port": "6379"}, "between 1 and 65535"),
        ("MySQL", {"host": ""}, "non-empty string"),
        ("Checksum", {}, "needs option 'path'"),
        ("Checksum", {"path": "/data", "exclude": "pg_wal"}, "list of non-empty strings"),
        ("Command", {}, "needs option 'command'"),
        ("Command", {"command": "check.sh"}, "list of non-empty strings"),
    ],
)
def test_invalid_options_are_refused(engine: str, options: dict[str, object], message: str) -> None:
    command = PRESETS[engine].command
    assert command is not None
    with pytest.raises(ProbeConfigError, match=message):
        command(options)


def test_checksum_argv_passes_excludes_as_find_arguments() -> None:
    command = PRESETS["Checksum"].command
    assert command is not None
    argv = command({"path": "/var/lib/data", "exclude": ["./pg_wal", "*.pid"]})
    assert argv[:2] == ["sh", "-c"]
    assert argv[3:] == [
        "checksum",
        "/var/lib/data",
        "(",
        "-path",
        "./pg_wal",
        "-o",
        "-path",
        "*.pid",
        ")",
        "-prune",
        "-o",
    ]
    assert command({"path": "/d"})[3:] == ["checksum", "/d"]


def test_command_and_http_options() -> None:
    command, http = PRESETS["Command"].command, PRESETS["HTTP"].http_path
    assert command is not None and http is not None
    assert command({"command": ["/probe", "--json"]}) == ["/probe", "--json"]
    get = http({"port": 8008, "path": "/replication?format=json"})
    assert get == HttpGet(port=8008, path="/replication?format=json")
    assert get.url("10.0.0.7") == "http://10.0.0.7:8008/replication?format=json"
    assert http({"port": 443, "scheme": "https"}).url("db-0") == "https://db-0:443/"
    for bad in ({}, {"port": 80, "path": "status"}, {"port": 80, "scheme": "ftp"}):
        with pytest.raises(ProbeConfigError):
            http(bad)
    assert PRESETS["HTTP"].command is None
    assert not PRESETS["HTTP"].wants_stdin({"passwordStdin": True})
