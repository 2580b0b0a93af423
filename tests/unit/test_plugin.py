"""``kubectl resync``: the pure parts (arguments, the object ``start`` creates, tables, watch lines,
which volumes belong to a target and the commands printed for them). The plugin against a cluster
is tested in tests/e2e/test_plugin.py."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from clusterresync.plugin import cli, render, views

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def resync(name: str = "pg-abcde", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "clusterresync.io/v1alpha1",
        "kind": "ClusterResync",
        "metadata": {"name": name, "namespace": "demo", "creationTimestamp": ts(90)},
        "spec": {"target": {"name": "pg"}, "primary": {"podName": "pg-1"}, "volumes": ["data"]},
        "status": status,
    }


def cond(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": ts(5),
    }


# -- arguments ---------------------------------------------------------------------------------
def test_cluster_flags_are_accepted_before_and_after_the_command() -> None:
    before = cli.parser().parse_args(["-n", "a", "--context", "c", "status", "x"])
    assert (before.namespace, before.context, before.name) == ("a", "c", "x")
    after = cli.parser().parse_args(["status", "x", "-n", "b", "-o", "json", "--kubeconfig", "/k"])
    assert (after.namespace, after.output, after.kubeconfig) == ("b", "json", "/k")
    # given before, not reset by the subcommand's own (suppressed) default
    assert cli.parser().parse_args(["-o", "yaml", "drift", "pg"]).output == "yaml"


@pytest.mark.parametrize(
    "argv",
    [
        ["start", "pg"],  # no primary
        ["start", "pg", "--primary", "pg-1", "--primary-selector", "role=primary"],
        ["status", "-o", "wide"],
        ["watch"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.parser().parse_args(argv)
    assert e.value.code == 2
    assert "usage: kubectl resync" in capsys.readouterr().err


def test_dry_run_help_says_how_it_differs_from_kubectl(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["start", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "spec.dryRun" in text and "IS created" in text and "--dry-run=client|server" in text


def test_start_body() -> None:
    body = views.resync_body(
        "pg",
        volumes=["data", "wal"],
        primary_selector=views.parse_selector("role=primary,app==pg"),
        replicas=views.csv("pg-2, pg-0,"),
        force=True,
        dry_run=True,
        primary_stable_seconds=0,
    )
    assert body == {
        "apiVersion": "clusterresync.io/v1alpha1",
        "kind": "ClusterResync",
        "metadata": {"generateName": "pg-"},
        "spec": {
            "target": {"name": "pg"},
            "primary": {"selector": {"matchLabels": {"role": "primary", "app": "pg"}}},
            "volumes": ["data", "wal"],
            "replicas": ["pg-2", "pg-0"],
            "primaryStableSeconds": 0,
            "force": True,
            "dryRun": True,
        },
    }
    plain = views.resync_body("pg", volumes=["data"], primary_pod="pg-1")
    assert plain["spec"] == {"target": {"name": "pg"}, "primary": {"podName": "pg-1"}, "volumes": ["data"]}


@pytest.mark.parametrize("bad", ["role", "role!=primary", "=x", ",", ""])
def test_primary_selector_must_be_equalities(bad: str) -> None:
    with pytest.raises(views.UsageError):
        views.parse_selector(bad)


def test_volumes_default_to_the_claim_templates() -> None:
    sts = {"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}}, {"metadata": {"name": "wal"}}]}}
    assert views.claim_template_names(sts) == ["data", "wal"]
    assert views.claim_template_names({"spec": {}}) == []


# -- formatting --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60, "3h1m"),
        (30 * 3600, "30h"),
        (50 * 3600, "2d2h"),
        (10 * 86400, "10d"),
        (800 * 86400, "2y70d"),
        (10 * 365 * 86400, "10y"),
    ],
)
def test_age_as_kubectl_prints_it(seconds: int, text: str) -> None:
    assert views.human_duration(seconds) == text


def test_reason_is_that_of_the_true_condition() -> None:
    running = resync(conditions=[cond("Progressing", "True", "Resyncing")])
    failed = resync(
        conditions=[cond("Progressing", "False", "Resyncing"), cond("Failed", "True", "RestoreFailed")]
    )
    assert views.true_reason(running) == "Resyncing"
    assert views.true_reason(failed) == "RestoreFailed"
    assert views.outcome(running) == views.Outcome(False, False)
    assert views.outcome(failed) == views.Outcome(True, False, "RestoreFailed", "")
    assert views.outcome(resync(phase="Completed")).ok


def test_status_list_table() -> None:
    objs = [
        resync("b", phase="Failed", conditions=[cond("Failed", "True", "VolumeNotFound")]),
        resync("a", phase="Resyncing", progress="1/2", conditions=[cond("Progressing", "True", "Resyncing")]),
    ]
    objs[1]["metadata"]["creationTimestamp"] = ts(200)  # older: listed first
    text = render.plain([views.resync_list(objs, NOW)])
    assert text.splitlines() == [
        "NAME   TARGET   PHASE       PROGRESS   REASON           AGE",
        "a      pg       Resyncing   1/2        Resyncing        3m20s",
        "b      pg       Failed      -          VolumeNotFound   90s",
    ]
    assert render.plain([views.resync_list([], NOW)]) == "No ClusterResyncs found.\n"


def test_status_detail_per_replica_conditions_and_probes() -> None:
    obj = resync(
        phase="Failed",
        progress="1/2",
        conditions=[cond("Failed", "True", "ReplicaRolledBack", "pg-2 was put back")],
        replicas=[
            {
                "name": "pg-0",
                "phase": "Completed",
                "volumes": [{"volume": "data", "claim": "data-pg-0", "oldPv": "pv-a", "newPv": "pv-b"}],
            },
            {
                "name": "pg-2",
                "phase": "Failed",
                "reason": "ReplicaRolledBack",
                "message": "not verified in time",
                "volumes": [{"volume": "data", "claim": "data-pg-2", "oldPv": "pv-c"}],
            },
        ],
        probes=[
            {
                "stage": "Before",
                "pod": "pg-2",
                "verdict": "Lagging",
                "role": "replica",
                "lagBytes": 10,
                "lagSeconds": 3,
                "reason": "behind",
                "observedAt": ts(60),
            }
        ],
    )
    text = render.plain(views.resync_detail(obj, NOW))
    lines = text.splitlines()
    assert "REPLICA   PHASE       REASON              OLD PV   NEW PV" in lines
    assert "pg-0      Completed   -                   pv-a     pv-b" in lines
    assert "pg-2      Failed      ReplicaRolledBack   pv-c     -" in lines
    assert "pg-2: not verified in time" in lines
    probe = next(line for line in lines if line.startswith("Before"))
    assert probe.split()[:5] == ["Before", "pg-2", "Lagging", "replica", "10B/3s"]
    assert any(line.split()[:3] == ["Failed", "True", "ReplicaRolledBack"] for line in lines)
    assert "Primary:    pg-1" in lines


def test_several_volumes_are_named_in_the_pv_columns() -> None:
    vols = [{"volume": "data", "oldPv": "pv-1"}, {"volume": "wal", "oldPv": "pv-2"}]
    obj = resync(replicas=[{"name": "pg-0", "phase": "Swapping", "volumes": vols}])
    table = views.resync_detail(obj, NOW)[1]
    assert isinstance(table, views.Table)
    assert table.rows == [["pg-0", "Swapping", "-", "data:pv-1 wal:pv-2", "-"]]


def test_watch_prints_one_line_per_change() -> None:
    seen: views.Snapshot = {}
    first = resync(
        phase="Resyncing",
        progress="0/2",
        conditions=[cond("Progressing", "True", "Resyncing")],
        replicas=[{"name": "pg-0", "phase": "Restoring"}, {"name": "pg-2", "phase": "Pending"}],
    )
    seen, lines = views.changes(seen, first, "12:00:00")
    assert lines == [
        "12:00:00  pg-abcde  Resyncing  0/2  (Resyncing)",
        "12:00:00  pg-0  Restoring",
        "12:00:00  pg-2  Pending",
    ]
    seen, lines = views.changes(seen, first, "12:00:01")
    assert lines == []  # nothing changed (e.g. only a message or a resourceVersion)
    second = resync(
        phase="Failed",
        progress="0/2",
        conditions=[cond("Failed", "True", "RestoreFailed", "job failed")],
        replicas=[
            {"name": "pg-0", "phase": "Failed", "reason": "RestoreFailed", "message": "job failed"},
            {"name": "pg-2", "phase": "Skipped", "reason": "RestoreFailed"},
        ],
    )
    seen, lines = views.changes(seen, second, "12:00:02")
    assert lines == [
        "12:00:02  pg-abcde  Failed  0/2  (RestoreFailed)",
        "12:00:02  pg-0  Failed  (RestoreFailed): job failed",
        "12:00:02  pg-2  Skipped  (RestoreFailed)",
    ]
    assert views.summary(second) == "clusterresync pg-abcde Failed: RestoreFailed: job failed"


# -- drift -------------------------------------------------------------------------------------
def test_drift_report() -> None:
    pol = {
        "metadata": {"name": "pol"},
        "spec": {"target": {"name": "pg"}, "mode": "Manual"},
        "status": {
            "inSync": "1/2",
            "lastProbeTime": ts(10),
            "pods": [
                {
                    "pod": "pg-2",
                    "verdict": "Diverged",
                    "role": "replica",
                    "drifted": True,
                    "reason": "history 2",
                    "observedAt": ts(10),
                },
                {
                    "pod": "pg-0",
                    "verdict": "Lagging",
                    "role": "replica",
                    "lagSeconds": 4,
                    "reason": "streams",
                    "observedAt": ts(10),
                },
            ],
            "conditions": [cond("Drifted", "True", "Drifted", "pg-2")],
            "lastRemediation": {"name": "pol-1", "replicas": ["pg-2"], "createdAt": ts(9), "confirmed": True},
            "lastDecision": "created pol-1",
        },
    }
    remediation = resync("pol-1", phase="Pending", conditions=[cond("Progressing", "True", "Suspended")])
    remediation["spec"]["suspend"] = True
    lines = render.plain(views.policy_blocks(pol, remediation, NOW)).splitlines()
    assert "Mode:        Manual" in lines
    assert next(line for line in lines if line.startswith("pg-2")).split()[:5] == [
        "pg-2",
        "Diverged",
        "replica",
        "-",
        "yes",
    ]
    assert next(line for line in lines if line.startswith("pg-0")).split()[:5] == [
        "pg-0",
        "Lagging",
        "replica",
        "4s",
        "no",
    ]
    assert "Approve:        kubectl resync approve pol-1" in lines
    assert "Phase:          Pending Suspended" in lines
    gone = render.plain(views.policy_blocks(pol, None, NOW))
    assert "(the ClusterResync no longer exists)" in gone and "approve" not in gone


# -- volumes -----------------------------------------------------------------------------------
def pv(
    name: str, replica: str, phase: str = "Released", ns: str = "demo", uid: str = "u1", role: str = "old"
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": ts(3600),
            "labels": {
                "clusterresync.io/resync": "pg-abcde",
                "clusterresync.io/resync-uid": uid,
                "clusterresync.io/replica": replica,
                "clusterresync.io/volume": "data",
                "clusterresync.io/volume-role": role,
            },
            "annotations": {"clusterresync.io/original-reclaim-policy": "Delete"},
        },
        "spec": {
            "capacity": {"storage": "1Gi"},
            "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": ns, "name": f"data-{replica}"},
        },
        "status": {"phase": phase},
    }


def test_which_volumes_belong_to_a_target() -> None:
    assert views.belongs_to(pv("a", "pg-0"), "pg", "demo", set())  # its resync is gone: by replica
    assert not views.belongs_to(pv("a", "pg-0"), "pg", "other", set())  # another namespace's pg
    assert not views.belongs_to(pv("a", "pg-x-0"), "pg", "demo", set())  # StatefulSet pg-x
    assert views.belongs_to(pv("a", "pg-x-0"), "pg-x", "demo", set())
    assert not views.belongs_to(pv("a", "pg-01"), "pg", "demo", set())  # not an ordinal
    # a label cut to 63 characters: found by the uid of one of the target's resyncs
    assert views.belongs_to(pv("a", "cut-0123abcd", uid="u9"), "a" * 70, "demo", {"u9"})


def test_commands_to_remove_or_keep_a_volume() -> None:
    released = views.volume_commands(pv("pv-1", "pg-0"))
    assert (
        released["remove"]
        == 'kubectl patch pv pv-1 -p \'{"spec":{"persistentVolumeReclaimPolicy":"Delete"}}\''
    )
    assert released["keep"] == ""
    bound = views.volume_commands(pv("pv-2", "pg-0", phase="Bound"))
    assert bound["remove"] == ""  # a replica runs on it
    assert bound["keep"].startswith(
        'kubectl patch pv pv-2 -p \'{"spec":{"persistentVolumeReclaimPolicy":"Delete"}}\' && kubectl label pv pv-2 clusterresync.io/resync- '
    )
    available = views.volume_commands(pv("pv-3", "pg-0", phase="Available"))
    for cmd in (available["remove"], available["keep"]):
        patch = json.loads(cmd.split(" -p ", 1)[1].strip("'"))
        assert patch["spec"]["claimRef"]["name"] == "gone"
    assert (
        json.loads(available["remove"].split(" -p ", 1)[1].strip("'"))["spec"][
            "persistentVolumeReclaimPolicy"
        ]
        == "Delete"
    )
    assert "persistentVolumeReclaimPolicy" not in available["keep"]


def test_volumes_table_and_json_entry() -> None:
    entries = [
        views.volume_entry(pv("pv-1", "pg-0"), NOW),
        views.volume_entry(pv("pv-2", "pg-2", role="copy", phase="Bound"), NOW),
    ]
    assert (
        entries[0]["claim"] == "demo/data-pg-0" and entries[0]["age"] == "60m" and entries[0]["size"] == "1Gi"
    )
    text = render.plain(views.volume_blocks(entries, "pg"))
    lines = text.splitlines()
    assert lines[0].split() == [
        "NAME",
        "ROLE",
        "RESYNC",
        "REPLICA",
        "VOLUME",
        "CLAIM",
        "STATUS",
        "RECLAIM",
        "SIZE",
        "AGE",
    ]
    assert lines[1].split() == [
        "pv-1",
        "old",
        "pg-abcde",
        "pg-0",
        "data",
        "demo/data-pg-0",
        "Released",
        "Retain",
        "1Gi",
        "60m",
    ]
    assert entries[0]["commands"]["remove"] in lines
    assert entries[1]["commands"]["keep"] in lines
    assert render.plain(views.volume_blocks([], "pg")) == "No volumes kept by resyncs of pg.\n"


# -- output ------------------------------------------------------------------------------------
def test_plain_output_has_no_colour_and_rich_output_draws_tables() -> None:
    blocks = views.resync_detail(
        resync(phase="Completed", conditions=[cond("Complete", "True", "ResyncSucceeded")]), NOW
    )
    pipe = io.StringIO()
    render.emit(blocks, pipe, tty=False)
    assert "\x1b[" not in pipe.getvalue() and "Complete   True" in pipe.getvalue()
    from rich.console import Console

    term = io.StringIO()
    console = Console(file=term, force_terminal=True, width=120, color_system="standard")
    for r in render.rich_renderables(blocks):
        console.print(r)
    out = term.getvalue()
    assert "\x1b[" in out and "┃" in out and "ResyncSucceeded" in out


def test_machine_output_round_trips() -> None:
    data = {"kind": "List", "items": [resync()]}
    assert json.loads(render.machine(data, "json")) == data
    assert yaml.safe_load(render.machine(data, "yaml")) == data
