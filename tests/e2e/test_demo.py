"""`make demo` (hack/demo.py): run as a newcomer runs it, it must tell the whole PostgreSQL story and
exit 0, which it does only if every replica's rows equal the primary's. And the samples it applies
(manifests/samples/postgres/) agree with each other and with the engine tests' objects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .engines import PG_BIN, PG_PROBE, PG_RESTORE_HOOK, SAMPLES

ROOT = Path(__file__).resolve().parents[2]


def test_the_samples_share_the_probe_and_the_restore_hook() -> None:
    """The policy and the ClusterResync read the replicas with the same probe (the engine tests' and
    the guide's, docs/engines/postgres.md); the ClusterResync carries the guide's restore hook."""
    policy = yaml.safe_load((SAMPLES / "resyncpolicy.yaml").read_text())
    resync = yaml.safe_load((SAMPLES / "clusterresync.yaml").read_text())
    assert policy["kind"] == "ResyncPolicy" and resync["kind"] == "ClusterResync"
    assert policy["spec"]["probe"] == resync["spec"]["probe"] == PG_PROBE
    assert resync["spec"]["hooks"] == {"restore": PG_RESTORE_HOOK}
    assert policy["spec"]["mode"] == "Off"  # a string: a bare Off would be the boolean false
    assert resync["spec"]["force"] is True and resync["spec"]["replicas"] == ["pg-2"]
    # The demo's unforced ClusterResync is the sample without this line (hack/demo.py's sed).
    assert "\n  force: true" in (SAMPLES / "clusterresync.yaml").read_text()


@pytest.mark.e2e
@pytest.mark.timeout(600)
@pytest.mark.skipif(
    PG_BIN is None, reason="PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are absent"
)
@pytest.mark.skipif(os.geteuid() != 0, reason="kubesim runs process pods only as root")
def test_make_demo_ends_with_the_replicas_rows_equal_to_the_primarys() -> None:
    # What `make demo` runs: $(BIN)/python hack/demo.py, from the repository's root.
    p = subprocess.run(
        [sys.executable, "hack/demo.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-6000:]
    assert "ReplicaHasUnsyncedData" in out  # the refusal without force was shown
    assert "pg-1: EQUAL to the primary's rows" in out, out[-3000:]
    assert "pg-2: EQUAL to the primary's rows" in out, out[-3000:]
    assert "demo succeeded" in out
    assert "every PostgreSQL server has shut down" in out
