"""MariaDB as kubesim process pods, for tests/e2e/test_engine_mariadb.py: the objects a user would
apply (docs/engines/mariadb.md), and small helpers that run the ``mariadb`` client in a pod with
``kubectl exec`` or from the host.

A StatefulSet ``mariadb`` whose pod 0 is the primary and whose other pods are GTID replicas of
``mariadb-0.mariadb`` (``MASTER_USE_GTID=slave_pos``); the restore hook ``MARIADB_RESTORE_HOOK``
marks a copy of the primary's volume so that the pod's command starts it as a replica from the
copy's own GTID position.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from kubesim.testing import KubeSim

from .engine_common import SqlWriter

MARIADBD = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin")
MARIADB_UID, MARIADB_GID = 102, 105  # Debian's mysql user (`id mysql`): mariadbd refuses root

# The data directory is a subdirectory of the volume, made by renaming a complete installation
# into place (an init container gives the volume's root to MariaDB's user). The run directory
# (socket, pid file, init file, master.info, relay logs) is an emptyDir at the client's default
# socket directory: nothing there is on the volume or in a copy.
MARIADB_VOLUME = "/mariadb"
MARIADB_DATA = "/mariadb/data"
MARIADB_RUN = "/run/mysqld"

# The pod's command. mariadbd starts correctly whatever the volume holds:
# - nothing: mariadb-install-db, then the accounts (bootstrap mode, not binary-logged), on every
#   pod, into data.new, renamed to data once complete (a start that fails halfway leaves no
#   half-made data directory); a replica then replicates the primary's whole binary log from its
#   beginning;
# - a data directory: it starts as it is, after InnoDB's and the binary log's crash recovery;
# - a data directory holding the restore hook's marker (a copy of the primary): once, the
#   replica's GTID position is set to the copy's own (@@gtid_binlog_pos, the primary's position
#   when the copy was taken).
# Every pod but mariadb-0 is a read-only replica of mariadb-0.mariadb, configured on every start
# by the init file (in the run directory: the replication password never reaches the volume).
MARIADB_SCRIPT = """set -eu
D={data}
R={run}
if [ ! -d "$D" ]; then
  rm -rf "$D.new"
  mariadb-install-db --no-defaults --datadir="$D.new" --skip-test-db >/dev/null
  mariadbd --no-defaults --bootstrap --datadir="$D.new" --innodb-buffer-pool-size=16M --log-warnings=0 <<EOF
FLUSH PRIVILEGES;
DROP USER IF EXISTS mysql@localhost;
ALTER USER root@localhost IDENTIFIED BY '$MARIADB_ROOT_PASSWORD';
CREATE USER repl@'127.%' IDENTIFIED BY '$REPLICATION_PASSWORD';
GRANT REPLICATION SLAVE ON *.* TO repl@'127.%';
CREATE USER monitor@localhost IDENTIFIED BY '$MONITOR_PASSWORD';
GRANT SLAVE MONITOR ON *.* TO monitor@localhost;
CREATE USER app@'127.%' IDENTIFIED BY '$APP_PASSWORD';
GRANT ALL ON app.* TO app@'127.%';
EOF
  mv "$D.new" "$D"
fi
set --
if [ "$HOSTNAME" != mariadb-0 ]; then
  umask 077
  : > "$R/init.sql"
  if [ -e "$D/resync-from-copy" ]; then
    echo "SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos;" >> "$R/init.sql"
    rm "$D/resync-from-copy"
  fi
  cat >> "$R/init.sql" <<EOF
CHANGE MASTER TO MASTER_HOST='mariadb-0.mariadb', MASTER_PORT=3306, MASTER_USER='repl', MASTER_PASSWORD='$REPLICATION_PASSWORD', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;
START SLAVE;
EOF
  set -- --read-only --init-file="$R/init.sql"
fi
exec mariadbd --no-defaults --datadir="$D" --bind-address="$POD_IP" --port=3306 \\
  --socket="$R/mysqld.sock" --pid-file="$R/mariadbd.pid" --skip-name-resolve \\
  --server-id=$((${{HOSTNAME##*-}} + 1)) --report-host="$HOSTNAME" \\
  --log-bin=mariadb-bin --log-slave-updates --gtid-strict-mode --binlog-format=ROW --sync-binlog=1 \\
  --relay-log="$R/relay-bin" --master-info-file="$R/master.info" \\
  --relay-log-info-file="$R/relay-log.info" --skip-slave-start \\
  --innodb-buffer-pool-size=16M --innodb-log-file-size=16M --max-connections=40 "$@"
"""

# The restore hook (hooks.restore): runs in a Job with the restored copy of the primary's volume
# mounted where the replica mounts it (/mariadb), as the replica's user; it marks the copy for the
# pod's command. docs/engines/mariadb.md shows and explains exactly this script.
MARIADB_RESTORE_SCRIPT = """set -eu
D=/mariadb/data
test -d "$D/mysql"
test -s "$D/mariadb-bin.index"
rm -f "$D"/*.pid
rm -f "$D"/master*.info "$D"/multi-master.info "$D"/relay-log*.info "$D"/*relay-bin.*
touch "$D/resync-from-copy"
"""

MARIADB_RESTORE_HOOK: dict[str, Any] = {
    "image": "mariadb:10.11",
    "command": ["sh", "-c", MARIADB_RESTORE_SCRIPT],
    "timeoutSeconds": 300,
}

# The probe: the monitor user (SLAVE MONITOR only), over the pod's socket, its password read from
# the container's environment. 5 s of Seconds_Behind_Master is "in sync" when the positions differ.
MARIADB_PROBE: dict[str, Any] = {
    "preset": "MariaDB",
    "container": "mariadb",
    "user": "monitor",
    "passwordEnv": "MONITOR_PASSWORD",
    "maxLagSeconds": 5,
    "timeoutSeconds": 20,
}

MARIADB_PASSWORDS = {
    "root": "mdb-root-3f9a",
    "replication": "mdb-repl-81c4",
    "monitor": "mdb-mon-27de",
    "app": "mdb-app-6b05",
}


def mariadb_objects(replicas: int = 2) -> list[dict[str, Any]]:
    """The Secret, the headless Service and the StatefulSet ``mariadb``."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "mariadb-auth"},
        "stringData": dict(MARIADB_PASSWORDS),
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "mariadb"},
        "spec": {
            "clusterIP": "None",
            "selector": {"app": "mariadb"},
            "ports": [{"name": "mysql", "port": 3306}],
        },
    }

    def from_secret(name: str, key: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": "mariadb-auth", "key": key}}}

    data = {"name": "data", "mountPath": MARIADB_VOLUME}
    run = {"name": "run", "mountPath": MARIADB_RUN}
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "mariadb"},
        "spec": {
            "serviceName": "mariadb",
            "replicas": replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "mariadb"}},
            "template": {
                "metadata": {"labels": {"app": "mariadb"}, "annotations": {"kubesim.io/process": "true"}},
                "spec": {
                    "securityContext": {"runAsUser": MARIADB_UID, "runAsGroup": MARIADB_GID},
                    "initContainers": [
                        {
                            "name": "data-dir",
                            "image": "busybox:1.36",
                            "command": [
                                "sh",
                                "-c",
                                f"chown {MARIADB_UID}:{MARIADB_GID} {MARIADB_VOLUME} && chmod 0750 {MARIADB_VOLUME}",
                            ],
                            "securityContext": {"runAsUser": 0},
                            "volumeMounts": [data],
                        }
                    ],
                    "containers": [
                        {
                            "name": "mariadb",
                            "image": "mariadb:10.11",
                            "command": [
                                "sh",
                                "-c",
                                MARIADB_SCRIPT.format(data=MARIADB_DATA, run=MARIADB_RUN),
                            ],
                            "env": [
                                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                                from_secret("MARIADB_ROOT_PASSWORD", "root"),
                                from_secret("REPLICATION_PASSWORD", "replication"),
                                from_secret("MONITOR_PASSWORD", "monitor"),
                                from_secret("APP_PASSWORD", "app"),
                            ],
                            "ports": [{"name": "mysql", "containerPort": 3306}],
                            "readinessProbe": {"tcpSocket": {"port": 3306}, "periodSeconds": 1},
                            "volumeMounts": [data, run],
                        }
                    ],
                    "volumes": [{"name": "run", "emptyDir": {}}],
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


def msql(cluster: KubeSim, ns: str, pod: str, query: str, check: bool = True) -> str:
    """``query`` run with the mariadb client as root in ``pod`` (kubectl exec, over the pod's
    socket); its tab-separated output without column names."""
    script = 'MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb -uroot -NB -e "$1"'
    out = cluster.kubectl(
        "exec", "-n", ns, pod, "-c", "mariadb", "--", "sh", "-c", script, "sh", query, check=check
    )
    return str(out.stdout).strip()


def mrow(cluster: KubeSim, ns: str, pod: str, query: str) -> dict[str, str]:
    """The single row of ``query`` (vertical output: ``SHOW SLAVE STATUS`` and the like) as a dict;
    empty when there is no row."""
    script = 'MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb -uroot -E -e "$1"'
    out = cluster.kubectl("exec", "-n", ns, pod, "-c", "mariadb", "--", "sh", "-c", script, "sh", query)
    row: dict[str, str] = {}
    for line in out.stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith("*"):
            row[key.strip()] = value.strip()
    return row


class MariaWriter(SqlWriter):
    """Rows inserted into ``table`` of the primary at ``host`` by one ``mariadb`` session over TCP,
    as the ``app`` user."""

    def __init__(self, host: str, table: str, interval: float = 0.05) -> None:
        argv = ["mariadb", "--no-defaults", "--protocol=TCP", "-h", host, "-P", "3306", "-u", "app", "-NB"]
        super().__init__(argv, dict(os.environ, MYSQL_PWD=MARIADB_PASSWORDS["app"]), table, interval)
