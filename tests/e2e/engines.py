"""Real database engines as kubesim process pods, for the engine end-to-end tests
(tests/e2e/test_engine_*.py): the objects a user would apply, and small helpers that run the
engine's own client in a pod with ``kubectl exec``.

PostgreSQL (docs/engines/postgres.md): a StatefulSet ``pg`` whose pod 0 is the primary and whose
other pods are streaming replicas cloned from ``pg-0.pg`` with ``pg_basebackup``; the restore hook
``PG_RESTORE_HOOK`` turns a copy of the primary's volume into a standby of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

from kubesim.testing import KubeSim

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)), None)

PG_UID, PG_GID = 101, 104  # who PostgreSQL runs as (it refuses to run as root)

# The data directory is a subdirectory of the volume: PostgreSQL wants it 0700 and its own, and
# the volume's root belongs to the storage driver.
PG_DATA = "/pg/data"

# The pod's command. PostgreSQL starts correctly whatever the volume holds:
# - nothing, on pg-0: initdb, the roles (replicator, monitor) and pg_hba, once;
# - nothing, on another pod: a clone of pg-0.pg with pg_basebackup, made a standby of it;
# - a data directory: it starts as it is (a standby if standby.signal is there, as the restore
#   hook leaves it).
# The replication password reaches the WAL receiver through PGPASSWORD in the server's
# environment, so nothing on the volume holds a secret and the restore hook needs none.
PG_SCRIPT = """set -eu
export PATH="{bin}:$PATH"
D={data}
if [ ! -s "$D/PG_VERSION" ]; then
  if [ "$HOSTNAME" = pg-0 ]; then
    pw=$(mktemp)
    printf '%s\\n' "$POSTGRES_PASSWORD" > "$pw"
    initdb -D "$D" -U postgres --auth=scram-sha-256 --pwfile="$pw" >/dev/null
    rm -f "$pw"
    postgres --single -D "$D" postgres >/dev/null <<EOF
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD '$REPLICATION_PASSWORD';
CREATE ROLE monitor WITH LOGIN PASSWORD '$MONITOR_PASSWORD' IN ROLE pg_monitor;
EOF
    cat >> "$D/pg_hba.conf" <<EOF
host replication replicator 127.0.0.0/8 scram-sha-256
host all         all        127.0.0.0/8 scram-sha-256
EOF
  else
    until PGPASSWORD="$REPLICATION_PASSWORD" \\
        pg_basebackup -h pg-0.pg -U replicator -D "$D" -X stream -c fast; do
      rm -rf "$D"/*; sleep 1
    done
    touch "$D/standby.signal"
    echo "primary_conninfo = 'host=pg-0.pg port=5432 user=replicator'" >> "$D/postgresql.auto.conf"
  fi
fi
export PGPASSWORD="$REPLICATION_PASSWORD"
exec postgres -D "$D" -c listen_addresses="$POD_IP" -c port=5432 -c unix_socket_directories= \\
  -c cluster_name="$HOSTNAME" -c wal_keep_size=256MB -c shared_buffers=16MB -c max_connections=40
"""

# The restore hook (hooks.restore): runs in a Job with the restored copy of the primary's volume
# mounted where the replica mounts it (/pg), as the replica's user; it makes the copy a standby of
# pg-0. docs/engines/postgres.md shows and explains exactly this script.
PG_RESTORE_SCRIPT = """set -eu
D=/pg/data
test -s "$D/PG_VERSION"
rm -f "$D/postmaster.pid" "$D/postmaster.opts"
rm -f "$D/recovery.signal"
rm -rf "$D"/pg_replslot/*
touch "$D/standby.signal"
sed -i -e '/^primary_conninfo/d' -e '/^primary_slot_name/d' "$D/postgresql.auto.conf"
echo "primary_conninfo = 'host=pg-0.pg port=5432 user=replicator'" >> "$D/postgresql.auto.conf"
"""

PG_RESTORE_HOOK: dict[str, Any] = {
    "image": "postgres:15",
    "command": ["sh", "-c", PG_RESTORE_SCRIPT],
    "timeoutSeconds": 300,
}

# The probe: the monitor role (pg_monitor), its password read from the container's environment.
# 64 KiB of WAL is "in sync": an idle primary still writes a few records now and then.
PG_PROBE: dict[str, Any] = {
    "preset": "Postgres",
    "container": "postgres",
    "user": "monitor",
    "database": "postgres",
    "passwordEnv": "MONITOR_PASSWORD",
    "maxLagBytes": 65536,
    "timeoutSeconds": 20,
}

PG_PASSWORDS = {"postgres": "pg-super-0d1e", "replication": "pg-repl-7a2b", "monitor": "pg-mon-5c9f"}


def pg_objects(replicas: int = 3) -> list[dict[str, Any]]:
    """The Secret, the headless Service and the StatefulSet ``pg``."""
    assert PG_BIN is not None
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "pg-auth"},
        "stringData": dict(PG_PASSWORDS),
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "pg"},
        "spec": {
            "clusterIP": "None",
            "selector": {"app": "pg"},
            "ports": [{"name": "postgres", "port": 5432}],
        },
    }

    def from_secret(name: str, key: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": "pg-auth", "key": key}}}

    mount = [{"name": "data", "mountPath": "/pg"}]
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "pg"},
        "spec": {
            "serviceName": "pg",
            "replicas": replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "pg"}},
            "template": {
                "metadata": {"labels": {"app": "pg"}, "annotations": {"kubesim.io/process": "true"}},
                "spec": {
                    "securityContext": {"runAsUser": PG_UID, "runAsGroup": PG_GID},
                    "initContainers": [
                        {
                            "name": "data-dir",
                            "image": "busybox:1.36",
                            "command": [
                                "sh",
                                "-c",
                                f"mkdir -p {PG_DATA} && chown {PG_UID}:{PG_GID} {PG_DATA} && chmod 0700 {PG_DATA}",
                            ],
                            "securityContext": {"runAsUser": 0},
                            "volumeMounts": mount,
                        }
                    ],
                    "containers": [
                        {
                            "name": "postgres",
                            "image": "postgres:15",
                            "command": ["sh", "-c", PG_SCRIPT.format(bin=PG_BIN.parent, data=PG_DATA)],
                            "env": [
                                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                                {"name": "PGHOST", "value": "$(POD_IP)"},
                                from_secret("POSTGRES_PASSWORD", "postgres"),
                                from_secret("REPLICATION_PASSWORD", "replication"),
                                from_secret("MONITOR_PASSWORD", "monitor"),
                            ],
                            "ports": [{"name": "postgres", "containerPort": 5432}],
                            "readinessProbe": {"tcpSocket": {"port": 5432}, "periodSeconds": 1},
                            "volumeMounts": mount,
                        }
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }
            ],
        },
    }
    return [secret, service, sts]


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


class PgWriter:
    """A client of the primary that inserts a row into ``table`` every ``interval`` seconds, over
    TCP from outside the pod (one psql session reading its statements from stdin), until stopped."""

    def __init__(self, host: str, table: str, interval: float = 0.05) -> None:
        self.proc = subprocess.Popen(
            ["psql", "-h", host, "-U", "postgres", "-d", "postgres", "-XAtq", "-v", "ON_ERROR_STOP=1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PGPASSWORD=PG_PASSWORDS["postgres"]),
            text=True,
        )
        self.table, self.interval = table, interval
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.proc.stdin is not None
        while not self._stop.wait(self.interval):
            try:
                self.proc.stdin.write(f"INSERT INTO {self.table} (v) VALUES ('during resync');\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                return
            self.sent += 1

    def kill(self) -> None:
        """Stop at once (cleanup after a failure)."""
        self._stop.set()
        self.proc.kill()
        self._thread.join(10)
        self.proc.communicate()

    def stop(self) -> str:
        """Stop writing, end the session (every statement sent is run first) and return its errors."""
        self._stop.set()
        self._thread.join(10)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err or ""
