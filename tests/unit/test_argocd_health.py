"""The Argo CD health checks of manifests/argocd/, run as Argo CD runs them, on real statuses.

Argo CD (util/lua/lua.go in argoproj/argo-cd) runs a health script in gopher-lua, a Lua 5.1, with
only the base, table, package and a reduced os library open (the string and math libraries are
not, for scripts from argocd-cm, unless resource.customizations.useOpenLibs is set); the object
is the global ``obj`` (JSON numbers become Lua numbers, null becomes nil), and the script's
return value, a table, is read as ``{status, message}``; a status outside Argo CD's six is
replaced by Unknown. ``run`` does the same with lupa's Lua 5.1.

The fixtures are ClusterResyncs and ResyncPolicies captured from real runs of the operator on
kubesim (tests/fixtures/argocd/README.md says how each was obtained).

manifests/argocd/argocd-cm.yaml embeds the two scripts; regenerate it after changing one with
``.venv/bin/python tests/unit/test_argocd_health.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "manifests" / "argocd"
FIXTURES = ROOT / "tests" / "fixtures" / "argocd"
SCRIPTS = {
    "ClusterResync": ARGOCD / "clusterresync.io" / "ClusterResync" / "health.lua",
    "ResyncPolicy": ARGOCD / "clusterresync.io" / "ResyncPolicy" / "health.lua",
}
CM = ARGOCD / "argocd-cm.yaml"
STATUSES = ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")

# fixture -> the health Argo CD must show, and words its message must contain.
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    # ClusterResync
    "clusterresync-no-status": ("Progressing", ("Waiting for the operator to observe generation 1",)),
    "clusterresync-approved-not-yet-observed": (
        "Progressing",
        ("observe generation 2", "the status describes generation 1"),
    ),
    "clusterresync-suspended": ("Suspended", ("Suspended: suspended: waiting for approval", "kubectl")),
    "clusterresync-suspended-by-policy": ("Suspended", ("waiting for approval", "pol-")),
    "clusterresync-waiting-for-other": (
        "Progressing",
        ("Pending: WaitingForOtherResync: waiting for ClusterResync first",),
    ),
    "clusterresync-preflight": ("Progressing", ("Preflight: WaitingForPrimary: primary pg-0",)),
    "clusterresync-snapshotting": (
        "Progressing",
        ("Snapshotting 0/2: Snapshotting: copying the volumes of pg-1",),
    ),
    "clusterresync-resyncing": ("Progressing", ("Resyncing 0/2: Resyncing: 0/2 replica(s) done",)),
    "clusterresync-completed": ("Healthy", ("ResyncSucceeded: 2 replica(s) re-provisioned from pg-1",)),
    "clusterresync-completed-by-policy": ("Healthy", ("ResyncSucceeded: 1 replica(s)",)),
    "clusterresync-dry-run": ("Healthy", ("DryRunComplete: dry run: would resync 2 replica(s)",)),
    "clusterresync-failed": ("Degraded", ("ReplicaHasUnsyncedData: pg-2: pg-2's history is 2",)),
    # ResyncPolicy
    "resyncpolicy-no-status": ("Progressing", ("Waiting for the operator to observe generation 1",)),
    "resyncpolicy-generation-not-observed": (
        "Progressing",
        ("observe generation 2", "the status describes generation 1"),
    ),
    "resyncpolicy-in-sync": ("Healthy", ("2/2 in sync; InSync: 2 replica(s) in sync with pg-1",)),
    "resyncpolicy-in-sync-after-remediation": ("Healthy", ("2/2 in sync",)),
    "resyncpolicy-drifted": (
        "Degraded",
        ("1/2 in sync; Drifted: pg-2: Diverged", "remediation: ModeOff: mode Off"),
    ),
    "resyncpolicy-awaiting-approval": (
        "Degraded",
        ("pg-2: Diverged", "remediation: AwaitingApproval: ClusterResync pol-"),
    ),
    "resyncpolicy-resync-in-progress": ("Degraded", ("pg-2: Diverged", "remediation: ResyncInProgress")),
    "resyncpolicy-suspended": ("Suspended", ("Suspended: spec.suspend: no probes, no remediation",)),
    "resyncpolicy-probe-unknown": ("Progressing", ("ProbeUnknown: the probe could not tell for pg-0",)),
    "resyncpolicy-target-not-found": ("Progressing", ("TargetNotFound: StatefulSet pg not found",)),
    "resyncpolicy-probe-invalid": ("Degraded", ("ProbeInvalid: spec.probe (HTTP): option 'path'",)),
    "resyncpolicy-primary-role-mismatch": (
        "Degraded",
        ("PrimaryRoleMismatch: pg-0 reports it is a replica",),
    ),
}


def _to_lua(lua: Any, value: Any) -> Any:
    """Argo CD's decodeValue: maps and lists become tables, numbers Lua numbers, null nil."""
    if isinstance(value, dict):
        t = lua.table()
        for k, v in value.items():
            if v is not None:
                t[str(k)] = _to_lua(lua, v)
        return t
    if isinstance(value, list):
        t = lua.table()
        for i, v in enumerate(value, 1):
            t[i] = _to_lua(lua, v)
        return t
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)  # gopher-lua's LNumber is a float64
    return str(value)


def runtime() -> Any:
    """A Lua 5.1 with what Argo CD opens for a script from argocd-cm, and nothing more."""
    lua = lua51.LuaRuntime(register_eval=False, register_builtins=False, unpack_returned_tuples=True)
    lua.execute(
        """
        getmetatable("").__index = nil          -- no string methods ("x"):len() either
        string, math, io, debug, coroutine, python = nil, nil, nil, nil, nil, nil
        os = {clock = os.clock, date = os.date, difftime = os.difftime, time = os.time}
        """
    )
    return lua


def run(script: str, obj: dict[str, Any]) -> dict[str, str]:
    lua = runtime()
    lua.globals().obj = _to_lua(lua, obj)
    hs = lua.execute(script)
    assert lua51.lua_type(hs) == "table", f"the script returned {hs!r}, not a table"
    out = {k: v for k, v in hs.items()}
    assert set(out) <= {"status", "message"}, out
    if out.get("status") not in STATUSES:
        return {"status": "Unknown", "message": "Lua returned an invalid health status"}
    return {"status": str(out["status"]), "message": str(out.get("message") or "")}


def fixture(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())
    return obj


def test_every_fixture_has_a_case_and_a_note() -> None:
    files = {p.stem for p in FIXTURES.glob("*.yaml")}
    assert files == set(CASES)
    readme = (FIXTURES / "README.md").read_text()
    assert [n for n in sorted(files) if f"`{n}.yaml`" not in readme] == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_health_of_a_captured_status(name: str) -> None:
    obj = fixture(name)
    assert obj["apiVersion"] == "clusterresync.io/v1alpha1"
    want, words = CASES[name]
    got = run(SCRIPTS[obj["kind"]].read_text(), obj)
    assert got["status"] == want, got
    for w in words:
        assert w in got["message"], (w, got)


def test_the_sandbox_is_argo_cds() -> None:
    """A script using the string library fails here as in Argo CD: these scripts must not."""
    with pytest.raises(lua51.LuaError):
        run('return {status = string.format("%s", "Healthy")}', {})
    with pytest.raises(lua51.LuaError):
        run('return {status = ("Healthy"):lower()}', {})
    assert run('return {status = "Fine"}', {})["status"] == "Unknown"


@pytest.mark.parametrize("kind", sorted(SCRIPTS))
def test_a_status_that_lost_its_conditions_is_not_healthy(kind: str) -> None:
    obj = {"apiVersion": "clusterresync.io/v1alpha1", "kind": kind, "metadata": {"generation": 3}}
    assert run(SCRIPTS[kind].read_text(), obj)["status"] == "Progressing"
    obj["status"] = {"observedGeneration": 3, "conditions": []}
    assert run(SCRIPTS[kind].read_text(), obj)["status"] == "Progressing"


def test_a_policy_status_observed_generation_wins_over_its_conditions() -> None:
    """Once the operator writes status.observedGeneration, a policy whose conditions are older (no
    probe since the spec changed) is judged by its conditions, not shown Progressing."""
    obj = fixture("resyncpolicy-generation-not-observed")
    obj["status"]["observedGeneration"] = obj["metadata"]["generation"]
    assert run(SCRIPTS["ResyncPolicy"].read_text(), obj)["status"] == "Degraded"


def render_cm() -> str:
    data = "".join(
        f"  resource.customizations.health.clusterresync.io_{kind}: |\n"
        + "".join(f"    {line}\n" if line else "\n" for line in SCRIPTS[kind].read_text().splitlines())
        for kind in sorted(SCRIPTS)
    )
    return (
        "# Argo CD health checks for ClusterResync and ResyncPolicy: merge these keys into your argocd-cm\n"
        "# (docs/gitops.md). Generated from clusterresync.io/*/health.lua by\n"
        "# `.venv/bin/python tests/unit/test_argocd_health.py`; tests/unit/test_argocd_health.py checks it.\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: argocd-cm\n"
        "  namespace: argocd\n"
        "  labels:\n"
        "    app.kubernetes.io/name: argocd-cm\n"
        "    app.kubernetes.io/part-of: argocd\n"
        "data:\n" + data
    )


def test_argocd_cm_embeds_the_scripts_exactly() -> None:
    assert CM.read_text() == render_cm(), "regenerate: .venv/bin/python tests/unit/test_argocd_health.py"
    cm = yaml.safe_load(CM.read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"] == {
        f"resource.customizations.health.clusterresync.io_{kind}": path.read_text()
        for kind, path in SCRIPTS.items()
    }


if __name__ == "__main__":
    CM.write_text(render_cm())
    sys.stdout.write(f"wrote {CM.relative_to(ROOT)}\n")
