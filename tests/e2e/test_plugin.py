"""``kubectl resync`` end to end: the real kubectl finds the ``kubectl-resync`` console script on the
PATH and runs it against kubesim, with the real operator doing the resyncs.

Each test drives the plugin as a user would and checks what the user sees: the exit code, the
lines of the (plain: stdout is a pipe) tables, the JSON of ``-o json``, and that the commands the
plugin prints do what they say.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim.testing import KubeSim, kubectl_binary

from .conftest import Operator, wait_for
from .test_policy import policy, setup
from .test_resync import assert_primary_untouched, get, make_db, pv_of

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl]

BIN = Path(sys.executable).parent


def resync_cli(
    cluster: KubeSim, *args: str, kubeconfig: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``kubectl resync ARGS``: kubectl looks the plugin up on the PATH, as for a user."""
    env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        KUBECONFIG=str(kubeconfig or cluster.kubeconfig),
        KUBECACHEDIR=str(cluster.workdir / "kubecache"),
    )
    return subprocess.run(
        [kubectl_binary(), "resync", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def resync_cli_tty(cluster: KubeSim, *args: str, timeout: float = 60) -> tuple[int, str]:
    """``kubectl resync ARGS`` with its stdout on a pseudo-terminal, as in an interactive shell."""
    import pty
    import select
    import time

    env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        KUBECONFIG=str(cluster.kubeconfig),
        KUBECACHEDIR=str(cluster.workdir / "kubecache"),
        COLUMNS="160",
        LINES="40",
        TERM="xterm-256color",
    )
    env.pop("NO_COLOR", None)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [kubectl_binary(), "resync", *args], env=env, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the other side closed
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return rc, out.decode(errors="replace")


def rows(text: str, first: str) -> dict[str, list[str]]:
    """The rows of the plain table whose header starts with ``first``, keyed by their first cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [first])
    out = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = line.split()
        out[cells[0]] = cells
    return out


def table_header(text: str, first: str) -> list[str]:
    return next(line for line in text.splitlines() if line.split()[:1] == [first]).split()


def test_start_wait_status_and_volumes(cluster: KubeSim, operator: Operator, ns: str) -> None:
    db = make_db(cluster, ns, name="pg", replicas=3, primary=1)
    done = resync_cli(
        cluster, "start", "pg", "-n", ns, "--primary", "pg-1", "--primary-stable-seconds", "0", "--wait"
    )
    assert done.returncode == 0, (done.stdout, done.stderr, operator.output()[-3000:])
    lines = done.stdout.splitlines()
    name = lines[0]
    assert name.startswith("pg-") and len(name) > 3  # metadata.generateName: pg-
    assert lines[-1].startswith(f"clusterresync {name} Completed: ResyncSucceeded"), lines
    # One line per change: each replica went through its swap to Completed, and no colour codes.
    assert any(line.split()[1:3] == ["pg-0", "Completed"] for line in lines[1:-1]), lines
    assert any(line.split()[1:3] == ["pg-2", "Completed"] for line in lines[1:-1]), lines
    assert any(line.split()[1:3] == [name, "Resyncing"] for line in lines[1:-1]), lines
    assert "\x1b[" not in done.stdout
    obj = get(cluster, "crsync", "-n", ns, name)
    assert obj["spec"]["volumes"] == ["data"]  # the default: every volumeClaimTemplate of the target
    assert obj["spec"]["primary"] == {"podName": "pg-1"}

    # status: the namespace's list
    listing = resync_cli(cluster, "status", "-n", ns)
    assert listing.returncode == 0, listing.stderr
    assert table_header(listing.stdout, "NAME") == ["NAME", "TARGET", "PHASE", "PROGRESS", "REASON", "AGE"]
    assert rows(listing.stdout, "NAME")[name][:5] == [name, "pg", "Completed", "2/2", "ResyncSucceeded"]

    # status NAME: per replica, with the old and new volumes the status records
    detail = resync_cli(cluster, "status", name, "-n", ns)
    assert detail.returncode == 0, detail.stderr
    assert table_header(detail.stdout, "REPLICA") == ["REPLICA", "PHASE", "REASON", "OLD", "PV", "NEW", "PV"]
    replicas = rows(detail.stdout, "REPLICA")
    for r in obj["status"]["replicas"]:
        v = r["volumes"][0]
        assert replicas[r["name"]] == [r["name"], "Completed", "-", v["oldPv"], v["newPv"]]
        assert v["newPv"] == pv_of(cluster, ns, f"data-pg-{r['name'][-1]}")
    conds = rows(detail.stdout, "TYPE")
    assert conds["Complete"][:3] == ["Complete", "True", "ResyncSucceeded"]
    assert "Phase:" in detail.stdout and "Completed" in detail.stdout

    as_json = resync_cli(cluster, "status", name, "-n", ns, "-o", "json")
    assert json.loads(as_json.stdout)["status"]["progress"] == "2/2"
    listed = json.loads(resync_cli(cluster, "status", "-n", ns, "-o", "json").stdout)
    assert [o["metadata"]["name"] for o in listed["items"]] == [name]
    assert (
        yaml.safe_load(resync_cli(cluster, "status", name, "-n", ns, "-o", "yaml").stdout)["metadata"]["name"]
        == name
    )

    # approve refuses a finished resync
    refused = resync_cli(cluster, "approve", name, "-n", ns)
    assert refused.returncode == 2 and "already Completed" in refused.stderr, refused

    # volumes: the two retained old volumes, with the commands to remove them
    old = {r["name"]: r["volumes"][0]["oldPv"] for r in obj["status"]["replicas"]}
    vols = resync_cli(cluster, "volumes", "pg", "-n", ns)
    assert vols.returncode == 0, vols.stderr
    table = rows(vols.stdout, "NAME")
    assert set(table) == set(old.values()), vols.stdout
    for replica, pv in old.items():
        assert table[pv][1:4] == ["old", name, replica]
        assert table[pv][5:8] == [f"{ns}/data-{replica}", "Released", "Retain"]
        assert table[pv][8] == "1Mi"
    doc = json.loads(resync_cli(cluster, "volumes", "pg", "-n", ns, "-o", "json").stdout)
    assert doc["target"] == "pg" and {v["name"] for v in doc["volumes"]} == set(old.values())
    entry = next(v for v in doc["volumes"] if v["replica"] == "pg-0")
    assert entry["status"] == "Released" and entry["originalReclaimPolicy"] == "Delete"
    # The printed command removes the volume: run it as printed.
    remove = entry["commands"]["remove"]
    assert remove in vols.stdout
    subprocess.run(
        ["bash", "-c", remove],
        env=dict(
            os.environ,
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            KUBECONFIG=str(cluster.kubeconfig),
        ),
        check=True,
        capture_output=True,
        timeout=60,
    )
    wait_for(
        lambda: cluster.kubectl("get", "pv", entry["name"], check=False).returncode != 0,
        60,
        "the old volume deleted",
    )
    after = rows(resync_cli(cluster, "volumes", "pg", "-n", ns).stdout, "NAME")
    assert set(after) == {old["pg-2"]}
    # Another StatefulSet's name is not a prefix match.
    none = resync_cli(cluster, "volumes", "p", "-n", ns)
    assert none.returncode == 0 and "No volumes kept by resyncs of p." in none.stdout
    assert_primary_untouched(cluster, db)


def test_watch_of_a_failing_resync_exits_1_with_the_reason(
    cluster: KubeSim, operator: Operator, ns: str
) -> None:
    make_db(cluster, ns, name="pg", replicas=2, primary=1)
    started = resync_cli(
        cluster,
        "start",
        "pg",
        "-n",
        ns,
        "--primary",
        "pg-1",
        "--volumes",
        "logs",
        "--primary-stable-seconds",
        "0",
    )
    assert started.returncode == 0, started.stderr
    name = started.stdout.strip()
    watched = resync_cli(cluster, "watch", name, "-n", ns)
    assert watched.returncode == 1, (watched.stdout, watched.stderr)
    last = watched.stdout.splitlines()[-1]
    assert last.startswith(f"clusterresync {name} Failed: VolumeNotFound: "), watched.stdout
    assert "logs" in last
    # -o json: only the final object
    final = json.loads(resync_cli(cluster, "watch", name, "-n", ns, "-o", "json").stdout)
    assert final["status"]["phase"] == "Failed"

    # On a terminal: the rich live table, then the same verdict.
    rc, screen = resync_cli_tty(cluster, "watch", name, "-n", ns)
    assert rc == 1, screen
    assert "\x1b[" in screen and "No replica was started." in screen, screen
    assert f"clusterresync {name} Failed: VolumeNotFound" in screen.replace("\r\n", " ").replace("\n", " "), (
        screen
    )
    rc, screen = resync_cli_tty(cluster, "status", "-n", ns)
    assert rc == 0 and "┃" in screen and "\x1b[" in screen and name in screen, screen

    # --dry-run is the operator's: the object is created, the plan listed, nothing touched.
    before = {i: pv_of(cluster, ns, f"data-pg-{i}") for i in range(2)}
    dry = resync_cli(
        cluster,
        "start",
        "pg",
        "-n",
        ns,
        "--primary",
        "pg-1",
        "--dry-run",
        "--primary-stable-seconds",
        "0",
        "--wait",
    )
    assert dry.returncode == 0, (dry.stdout, dry.stderr)
    dry_name = dry.stdout.splitlines()[0]
    assert dry.stdout.splitlines()[-1].startswith(f"clusterresync {dry_name} Completed: DryRunComplete"), (
        dry.stdout
    )
    shown = resync_cli(cluster, "status", dry_name, "-n", ns).stdout
    assert "Flags:      dryRun" in shown and "Plan (dry run: nothing was done):" in shown
    assert any(line.startswith("pg-0 ") and "data-pg-0" in line for line in shown.splitlines()), shown
    assert {i: pv_of(cluster, ns, f"data-pg-{i}") for i in range(2)} == before
    assert get(cluster, "volumesnapshot", "-n", ns)["items"] == []

    missing = resync_cli(cluster, "watch", "nosuch", "-n", ns)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f'error: ClusterResync "nosuch" not found in namespace "{ns}"'
    no_target = resync_cli(cluster, "start", "nosuch", "-n", ns, "--primary", "x-0")
    assert no_target.returncode == 2 and 'StatefulSet "nosuch" not found' in no_target.stderr
    usage = resync_cli(cluster, "start", "pg", "-n", ns)
    assert usage.returncode == 2 and "--primary" in usage.stderr


def test_drift_then_approve_the_remediation(cluster: KubeSim, operator: Operator, ns: str) -> None:
    db = setup(cluster, ns)  # pg-2 followed another history: Diverged
    policy(cluster, db, mode="Manual")
    made = wait_for(lambda: get(cluster, "crsync", "-n", ns)["items"], 40, "a remediation awaiting approval")
    name = made[0]["metadata"]["name"]

    def reported() -> str | None:
        out = resync_cli(cluster, "drift", "pg", "-n", ns).stdout
        return out if "kubectl resync approve" in out else None

    out = wait_for(reported, 40, "the drift report with its remediation")
    pods = rows(out, "POD")
    assert pods["pg-2"][1:3] == ["Diverged", "replica"] and pods["pg-2"][4] == "yes", out
    assert pods["pg-0"][1] == "InSync" and pods["pg-0"][4] == "no"
    assert pods["pg-1"][2] == "primary"
    assert rows(out, "TYPE")["Drifted"][:3] == ["Drifted", "True", "Drifted"]
    assert f"kubectl resync approve {name}" in out and "Manual" in out
    doc = json.loads(resync_cli(cluster, "drift", "pg", "-n", ns, "-o", "json").stdout)
    assert doc["kind"] == "List" and [p["metadata"]["name"] for p in doc["items"]] == ["pol"]
    nothing = resync_cli(cluster, "drift", "other", "-n", ns)
    assert nothing.returncode == 2 and "no ResyncPolicy" in nothing.stderr

    approved = resync_cli(cluster, "approve", name, "-n", ns)
    assert approved.returncode == 0 and approved.stdout.strip() == f"clusterresync {name} approved", approved
    assert get(cluster, "crsync", "-n", ns, name)["spec"]["suspend"] is False
    watched = resync_cli(cluster, "watch", name, "-n", ns)
    assert watched.returncode == 0, (watched.stdout, watched.stderr, operator.output()[-3000:])
    assert watched.stdout.splitlines()[-1].startswith(f"clusterresync {name} Completed"), watched.stdout
    assert cluster.read_volume_file(pv_of(cluster, ns, db.claim("data", 2)), "history").decode() == "1"


def test_kubeconfig_context_namespace_and_refusals(cluster: KubeSim, operator: Operator, ns: str) -> None:
    # A second kubeconfig whose extra context's namespace is ns: the plugin honours --kubeconfig,
    # --context and the context's namespace, as kubectl does.
    cfg = yaml.safe_load(cluster.kubeconfig.read_text())
    ctx = cfg["contexts"][0]["context"]
    cfg["contexts"].append({"name": "other", "context": {**ctx, "namespace": ns}})
    copy = cluster.workdir / f"kubeconfig-{ns}"
    copy.write_text(yaml.safe_dump(cfg))
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(_suspended("db", "db-0")))
    by_context = resync_cli(cluster, "status", "--kubeconfig", str(copy), "--context", "other")
    assert by_context.returncode == 0, by_context.stderr
    assert "held" in rows(by_context.stdout, "NAME"), by_context.stdout
    # ... and KUBECONFIG, with the flags before the subcommand
    via_env = resync_cli(cluster, "--context", "other", "status", "held", "-o", "json", kubeconfig=copy)
    assert json.loads(via_env.stdout)["spec"]["suspend"] is True
    # A resync deleted while it is watched: the watch ends with exit code 1.
    env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        KUBECONFIG=str(copy),
        KUBECACHEDIR=str(cluster.workdir / "kubecache"),
    )
    watcher = subprocess.Popen(
        [kubectl_binary(), "resync", "watch", "held", "--context", "other"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: (get(cluster, "crsync", "-n", ns, "held").get("status") or {}).get("phase") == "Pending",
            30,
            "the suspended resync seen by the operator",
        )
        assert watcher.stdout is not None
        first = watcher.stdout.readline()  # the watcher has read the object: it is following it
        assert first.split()[1:3] == ["held", "Pending"], first
        cluster.kubectl("delete", "crsync", "held", "-n", ns, "--wait=false")
        stdout, stderr = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == 1, (stdout, stderr)
    last = stdout.splitlines()[-1]
    assert last == "clusterresync held was deleted before it finished" or last.startswith(
        "clusterresync held Failed: Deleted"
    ), stdout

    bad_context = resync_cli(cluster, "status", "--context", "nope")
    assert bad_context.returncode == 2 and "context 'nope' not found" in bad_context.stderr

    # RBAC: a ServiceAccount with no role; its kubeconfig's context namespace is its own.
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", ns)
    sa = cluster.service_account_kubeconfig(ns, "nobody")
    forbidden = resync_cli(cluster, "status", kubeconfig=sa)
    assert forbidden.returncode == 2
    assert forbidden.stderr.startswith("error: forbidden: ") and len(forbidden.stderr.splitlines()) == 1
    assert "cannot list" in forbidden.stderr and f"system:serviceaccount:{ns}:nobody" in forbidden.stderr
    assert f'namespace "{ns}"' in forbidden.stderr  # the context's namespace, with no -n


def _suspended(target: str, primary: str) -> dict[str, Any]:
    return {
        "apiVersion": "clusterresync.io/v1alpha1",
        "kind": "ClusterResync",
        "metadata": {"name": "held"},
        "spec": {
            "target": {"name": target},
            "primary": {"podName": primary},
            "volumes": ["data"],
            "suspend": True,
        },
    }


def test_crd_not_installed() -> None:
    with KubeSim() as bare:
        out = resync_cli(bare, "status", "-n", "default")
    assert out.returncode == 2
    assert out.stderr.startswith("error: the ClusterResync CRD is not installed"), out.stderr
