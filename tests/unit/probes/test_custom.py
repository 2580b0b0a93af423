"""The Command and HTTP presets: the probe document (schema in clusterresync.probes.custom) and its judging.

The Command documents are produced by running a real command (`sh -c 'printf ...'`), as the
operator would through exec."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from clusterresync.probes import PRESETS, Reading, Thresholds, Verdict

COMMAND, HTTP = PRESETS["Command"], PRESETS["HTTP"]


def run(pod: str, document: Any) -> Reading:
    """Exec the Command preset's argv for a probe that prints `document`, and parse its output."""
    assert COMMAND.command is not None
    text = document if isinstance(document, str) else json.dumps(document)
    argv = COMMAND.command({"command": ["sh", "-c", 'printf "%s\\n" "$1"', "probe", text]})
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return COMMAND.parse(pod, done.stdout, done.stderr, done.returncode)


def judge(primary: Any, replica: Any, thresholds: Thresholds | None = None) -> tuple[Verdict, str]:
    j = COMMAND.judge(run("db-0", primary), run("db-1", replica), thresholds or Thresholds())
    return j.verdict, j.reason


def test_a_full_document_is_read() -> None:
    reading = run(
        "db-1",
        {
            "role": "replica",
            "position": 1200,
            "history": "7",
            "lagBytes": 30,
            "lagSeconds": 0.5,
            "checksum": "sha256:ab",
            "link": "up",
            "details": {"engine": "etcd", "learner": False, "members": 3},
            "ignored": "yes",
        },
    )
    assert reading == Reading(
        pod="db-1",
        role="replica",
        position="1200",
        history="7",
        lag_bytes=30,
        lag_seconds=0.5,
        checksum="sha256:ab",
        link="up",
        details={"engine": "etcd", "learner": "false", "members": "3"},
    )


@pytest.mark.parametrize(
    ("replica", "verdict", "words"),
    [
        ({"role": "replica", "position": 100}, Verdict.InSync, ["position 100"]),
        ({"role": "replica", "position": "100"}, Verdict.InSync, ["position 100"]),
        ({"role": "replica", "position": 90, "lagBytes": 10}, Verdict.Lagging, ["at position 90"]),
        ({"role": "replica", "position": 101}, Verdict.Diverged, ["ahead"]),
        ({"role": "primary", "position": 100}, Verdict.Diverged, ["says it is a primary"]),
        ({"role": "replica", "position": 100, "history": "b"}, Verdict.Diverged, ["history is b"]),
        ({"role": "replica", "position": 100, "checksum": "x"}, Verdict.Diverged, ["checksum is x"]),
        ({"role": "replica", "position": "abc"}, Verdict.Lagging, ["at position abc"]),
        ({"role": "replica", "lagBytes": 0, "lagSeconds": 0}, Verdict.InSync, ["no lag"]),
        ({"role": "replica", "lagSeconds": 3}, Verdict.Lagging, ["its own measure"]),
        ({"role": "replica"}, Verdict.Unknown, ["nothing to compare"]),
        (
            {"verdict": "Diverged", "reason": "its raft log conflicts"},
            Verdict.Diverged,
            ["its raft log conflicts"],
        ),
        ({"verdict": "InSync"}, Verdict.InSync, ["the probe says InSync"]),
        ({"error": "not initialised yet"}, Verdict.Unknown, ["not initialised yet"]),
    ],
)
def test_judging_documents(replica: dict[str, Any], verdict: Verdict, words: list[str]) -> None:
    got, reason = judge({"role": "primary", "position": 100, "history": "a", "checksum": "y"}, replica)
    assert got is verdict, reason
    for word in words:
        assert word in reason


def test_thresholds_use_the_replicas_own_measures() -> None:
    primary = {"role": "primary", "position": 100}
    replica = {"role": "replica", "position": 90, "lagBytes": 10, "lagSeconds": 2.0}
    assert judge(primary, replica, Thresholds(max_lag_bytes=16))[0] is Verdict.InSync
    assert judge(primary, replica, Thresholds(max_lag_bytes=16, max_lag_seconds=1))[0] is Verdict.Lagging
    assert (
        judge(primary, {"role": "replica", "position": 90}, Thresholds(max_lag_bytes=16))[0]
        is Verdict.Lagging
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (" ", ["printed nothing"]),
        ("not json", ["did not print JSON"]),
        ("[1, 2]", ["not a JSON object"]),
        ('{"role": "leader"}', ["role must be"]),
        ('{"link": "sideways"}', ["link must be"]),
        ('{"verdict": "Fine"}', ["verdict must be"]),
        ('{"lagBytes": -1}', ["int >= 0"]),
        ('{"lagBytes": 1.5}', ["int >= 0"]),
        ('{"lagSeconds": "3"}', ["float >= 0"]),
        ('{"position": [1]}', ["string or an integer"]),
        ('{"details": [1]}', ["details must be"]),
    ],
)
def test_malformed_documents_are_errors(text: str, words: list[str]) -> None:
    reading = run("db-1", text)
    assert reading.error is not None
    for word in words:
        assert word in reading.error


def test_a_failing_command_is_an_error() -> None:
    assert COMMAND.command is not None
    argv = COMMAND.command({"command": ["sh", "-c", "echo 'cannot reach the database' >&2; exit 3"]})
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    reading = COMMAND.parse("db-1", done.stdout, done.stderr, done.returncode)
    assert reading.error == "the probe command exited with 3: cannot reach the database"


def test_http_uses_the_status_code() -> None:
    ok = HTTP.parse("db-1", '{"role": "replica", "position": 4}', "", 200)
    assert (ok.role, ok.position, ok.error) == ("replica", "4", None)
    assert HTTP.parse("db-1", "Service Unavailable", "", 503).error == "HTTP 503: Service Unavailable"
    assert HTTP.parse("db-1", "", "connection refused", 0).error == "the request failed: connection refused"
    assert HTTP.parse("db-1", "", "", 204).error == "the probe returned an empty body"
    primary = HTTP.parse("db-0", '{"role": "primary", "position": 4}', "", 200)
    assert HTTP.judge(primary, ok, Thresholds()).verdict is Verdict.InSync


def test_an_oversized_document_is_refused() -> None:
    reading = HTTP.parse("db-1", json.dumps({"details": {"x": "y" * 70000}}), "", 200)
    assert reading.error is not None and "larger than" in reading.error
