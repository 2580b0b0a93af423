"""Real database engines as kubesim process pods, for the engine end-to-end tests
(tests/e2e/test_engine_*.py): the objects a user would apply, and small helpers that run the
engine's own client in a pod with ``kubectl exec``.

PostgreSQL (docs/engines/postgres.md): a StatefulSet ``pg`` whose pod 0 is the primary and whose
other pods are streaming replicas cloned from ``pg-0.pg`` with ``pg_basebackup``; the restore hook
``PG_RESTORE_HOOK`` turns a copy of the primary's volume into a standby of it. The objects, the
probe and the hook are loaded from manifests/samples/postgres/, what a user (and `make demo`) applies.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import yaml

from kubesim.testing import KubeSim

from .engine_common import SqlWriter

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)), None)

# One source of truth: the objects, the probe and the restore hook are the ones a user applies,
# manifests/samples/postgres/ (what `make demo` shows). docs/engines/postgres.md shows the same
# probe and hook (test_engine_postgres.py checks it).
SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples" / "postgres"


def _load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((SAMPLES / name).read_text()) if d]


def _only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (obj,) = (d for d in docs if d["kind"] == kind)
    return obj


_CLUSTER = _load("cluster.yaml")
_RESYNC = _only(_load("clusterresync.yaml"), "ClusterResync")
_POD = _only(_CLUSTER, "StatefulSet")["spec"]["template"]["spec"]

# Who PostgreSQL runs as (it refuses to run as root).
PG_UID, PG_GID = _POD["securityContext"]["runAsUser"], _POD["securityContext"]["runAsGroup"]

# The data directory is a subdirectory of the volume: PostgreSQL wants it 0700 and its own, and
# the volume's root belongs to the storage driver.
PG_DATA = "/pg/data"

# The pod's command (the sample explains it). PostgreSQL starts correctly whatever the volume
# holds: nothing on pg-0 (initdb), nothing on another pod (pg_basebackup from pg-0.pg, made a
# standby), or a data directory (started as it is: a standby if standby.signal is there).
PG_SCRIPT: str = _POD["containers"][0]["command"][2]

# The restore hook (hooks.restore): runs in a Job with the restored copy of the primary's volume
# mounted where the replica mounts it (/pg), as the replica's user; it makes the copy a standby of
# pg-0. docs/engines/postgres.md shows and explains exactly this script.
PG_RESTORE_HOOK: dict[str, Any] = _RESYNC["spec"]["hooks"]["restore"]
PG_RESTORE_SCRIPT: str = PG_RESTORE_HOOK["command"][2]

# The probe: the monitor role (pg_monitor), its password read from the container's environment.
# 64 KiB of WAL is "in sync": an idle primary still writes a few records now and then.
PG_PROBE: dict[str, Any] = _RESYNC["spec"]["probe"]

PG_PASSWORDS: dict[str, str] = dict(_only(_CLUSTER, "Secret")["stringData"])


def pg_objects(replicas: int = 3) -> list[dict[str, Any]]:
    """The Secret, the headless Service and the StatefulSet ``pg`` of
    manifests/samples/postgres/cluster.yaml, with ``replicas`` pods."""
    assert PG_BIN is not None
    objs = copy.deepcopy(_CLUSTER)
    _only(objs, "StatefulSet")["spec"]["replicas"] = replicas
    return objs


def sql(cluster: KubeSim, ns: str, pod: str, query: str, check: bool = True) -> str:
    """``query`` run with psql as postgres in ``pod`` (kubectl exec); its unaligned output."""
    script = 'PGPASSWORD="$POSTGRES_PASSWORD" psql -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1 -c "$1"'
    out = cluster.kubectl(
        "exec", "-n", ns, pod, "-c", "postgres", "--", "sh", "-c", script, "sh", query, check=check
    )
    return out.stdout.strip()


def pod_ip(cluster: KubeSim, ns: str, pod: str) -> str:
    out = cluster.kubectl("get", "pod", "-n", ns, pod, "-o", "json").stdout
    return str(json.loads(out)["status"]["podIP"])


class PgWriter(SqlWriter):
    """Rows inserted into ``table`` of the primary at ``host`` by one psql session, as postgres."""

    def __init__(self, host: str, table: str, interval: float = 0.05) -> None:
        argv = ["psql", "-h", host, "-U", "postgres", "-d", "postgres", "-XAtq", "-v", "ON_ERROR_STOP=1"]
        super().__init__(argv, dict(os.environ, PGPASSWORD=PG_PASSWORDS["postgres"]), table, interval)
