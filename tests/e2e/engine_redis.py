"""Redis as kubesim process pods, for tests/e2e/test_engine_redis.py: the objects a user would
apply, and small helpers that run ``redis-cli`` in a pod with ``kubectl exec``.

A StatefulSet ``redis`` whose pod 0 is the primary and whose other pods are replicas of
``redis-0.redis`` (docs/engines/redis.md). The role comes from the pod's command, not from the
volume, so a copy of the primary's volume becomes a replica without help; the restore hook
``REDIS_RESTORE_HOOK`` only checks the copy and removes the files of a rewrite or save that was
in progress on the primary.
"""

from __future__ import annotations

import shutil
import socket
import threading
from typing import Any

from kubesim.testing import KubeSim

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")

REDIS_UID, REDIS_GID = 103, 106  # Debian's redis user; any non-root uid would do

# The data directory is a subdirectory of the volume (mounted at /redis): the volume's root
# belongs to the storage driver, the directory to Redis.
REDIS_DATA = "/redis/data"

# The pod's command. The configuration is written on redis-server's standard input (`-`), so the
# passwords, expanded by the shell from the environment (a Secret), are in no file and in no
# argv. Every pod but redis-0 is started as a replica of redis-0.redis, whatever its volume
# holds: empty, its own data, or a copy of the primary's (which Redis loads, then replaces by a
# synchronization with the primary). No `save` points: the append-only file is the persistence.
REDIS_SCRIPT = """set -eu
if [ "$HOSTNAME" = redis-0 ]; then
  follow=""
else
  follow="replicaof redis-0.redis 6379"
fi
exec redis-server - <<EOF
bind $POD_IP
port 6379
dir {data}
appendonly yes
appendfsync everysec
save ""
requirepass "$REDIS_PASSWORD"
masterauth "$REDIS_PASSWORD"
replica-read-only yes
repl-diskless-sync-delay 0
$follow
EOF
"""

# The restore hook (hooks.restore): runs in a Job with the restored copy of the primary's volume
# mounted where the replica mounts it (/redis), as the replica's user. Redis needs nothing to be
# made a replica (the pod's command does it); the hook refuses a copy without an append-only
# file and removes the temporary files of a save or AOF rewrite the primary had in progress.
# docs/engines/redis.md shows and explains exactly this script.
REDIS_RESTORE_SCRIPT = """set -eu
cd /redis/data
test -s appendonlydir/appendonly.aof.manifest
rm -f temp-*.rdb temp-*.aof appendonlydir/temp-*
"""

REDIS_RESTORE_HOOK: dict[str, Any] = {
    "image": "redis:7.0",
    "command": ["sh", "-c", REDIS_RESTORE_SCRIPT],
    "timeoutSeconds": 300,
}

# The probe: `redis-cli INFO replication` in the redis container, the password read from its
# environment. 64 KiB of replication stream counts as in sync.
REDIS_PROBE: dict[str, Any] = {
    "preset": "Redis",
    "container": "redis",
    "passwordEnv": "REDIS_PASSWORD",
    "maxLagBytes": 65536,
    "timeoutSeconds": 20,
}

REDIS_PASSWORD = "redis-pw-3e8c"

# kubesim only. In Kubernetes each pod has its own network namespace: Redis binds every address
# and `redis-cli` in the pod (the probe's, yours with kubectl exec) reaches it on 127.0.0.1. On
# kubesim the pods share the host's loopback, each server binds its own pod IP, and this wrapper,
# first on the container's PATH, points redis-cli at it.
REDIS_CLI_WRAPPER = f"""#!/bin/sh
exec {REDIS_CLI or "/usr/bin/redis-cli"} -h "$POD_IP" "$@"
"""
WRAPPER_DIR = "/redis-kubesim/bin"


def redis_objects(replicas: int = 2) -> list[dict[str, Any]]:
    """The Secret, the kubesim redis-cli wrapper, the headless Service and the StatefulSet."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "redis-auth"},
        "stringData": {"password": REDIS_PASSWORD},
    }
    wrapper = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "redis-kubesim"},
        "data": {"redis-cli": REDIS_CLI_WRAPPER},
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "redis"},
        "spec": {
            "clusterIP": "None",
            "selector": {"app": "redis"},
            "ports": [{"name": "redis", "port": 6379}],
        },
    }
    mount = {"name": "data", "mountPath": "/redis"}
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "redis"},
        "spec": {
            "serviceName": "redis",
            "replicas": replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "redis"}},
            "template": {
                "metadata": {"labels": {"app": "redis"}, "annotations": {"kubesim.io/process": "true"}},
                "spec": {
                    "securityContext": {
                        "runAsUser": REDIS_UID,
                        "runAsGroup": REDIS_GID,
                        "runAsNonRoot": True,
                    },
                    "initContainers": [
                        {
                            "name": "data-dir",
                            "image": "busybox:1.36",
                            "command": [
                                "sh",
                                "-c",
                                f"mkdir -p {REDIS_DATA} && chown {REDIS_UID}:{REDIS_GID} {REDIS_DATA}"
                                f" && chmod 0700 {REDIS_DATA}",
                            ],
                            "securityContext": {"runAsUser": 0, "runAsNonRoot": False},
                            "volumeMounts": [mount],
                        }
                    ],
                    "containers": [
                        {
                            "name": "redis",
                            "image": "redis:7.0",
                            "command": ["sh", "-c", REDIS_SCRIPT.format(data=REDIS_DATA)],
                            "env": [
                                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                                {
                                    "name": "REDIS_PASSWORD",
                                    "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "password"}},
                                },
                                {"name": "PATH", "value": f"{WRAPPER_DIR}:/usr/sbin:/usr/bin:/sbin:/bin"},
                            ],
                            "ports": [{"name": "redis", "containerPort": 6379}],
                            "readinessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 1},
                            "volumeMounts": [mount, {"name": "kubesim", "mountPath": WRAPPER_DIR}],
                        }
                    ],
                    "volumes": [
                        {"name": "kubesim", "configMap": {"name": "redis-kubesim", "defaultMode": 0o555}}
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
    return [secret, wrapper, service, sts]


def cli(cluster: KubeSim, ns: str, pod: str, *args: str, check: bool = True) -> str:
    """``redis-cli args...`` in ``pod`` (kubectl exec), the password from the container's
    environment through REDISCLI_AUTH, never on an argv; its output, stripped."""
    script = 'REDISCLI_AUTH="$REDIS_PASSWORD" exec redis-cli --no-auth-warning "$@"'
    out = cluster.kubectl(
        "exec", "-n", ns, pod, "-c", "redis", "--", "sh", "-c", script, "sh", *args, check=check
    )
    return out.stdout.strip()


def info(cluster: KubeSim, ns: str, pod: str, section: str = "replication") -> dict[str, str]:
    """``INFO section`` in ``pod`` as a dict of its ``key:value`` lines."""
    out: dict[str, str] = {}
    for line in cli(cluster, ns, pod, "INFO", section).splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and not key.startswith("#"):
            out[key] = value
    return out


# Every key and its value (strings only), sorted, one `key=value` line each: computed by Redis in
# a read-only script, so one exec reads the whole (small) dataset of the test.
DUMP_SCRIPT = """local keys = redis.call('KEYS', '*')
table.sort(keys)
local out = {}
for _, k in ipairs(keys) do out[#out + 1] = k .. '=' .. redis.call('GET', k) end
return table.concat(out, '\\n')"""


def dataset(cluster: KubeSim, ns: str, pod: str) -> dict[str, str]:
    text = cli(cluster, ns, pod, "EVAL_RO", DUMP_SCRIPT, "0")
    return dict(line.split("=", 1) for line in text.splitlines() if line)


class RedisWriter:
    """A client of the primary that SETs ``<prefix><n>`` every ``interval`` seconds over TCP from
    outside the pod, until stopped. ``acked`` counts the writes Redis answered +OK; ``error`` is
    the first other answer or failure."""

    def __init__(self, host: str, prefix: str, interval: float = 0.05) -> None:
        self.sock = socket.create_connection((host, 6379), timeout=60)
        self.reader = self.sock.makefile("rb")
        reply = self._call("AUTH", REDIS_PASSWORD)
        assert reply == b"+OK", reply
        self.prefix, self.interval = prefix, interval
        self.acked = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _call(self, *args: str) -> bytes:
        parts = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = a.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(parts))
        return self.reader.readline().rstrip(b"\r\n")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            n = self.acked + 1
            try:
                reply = self._call("SET", f"{self.prefix}{n:06d}", "during resync")
            except OSError as e:
                self.error = f"write {n}: {e}"
                return
            if reply != b"+OK":
                self.error = f"write {n}: {reply!r}"
                return
            self.acked = n

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(90)
        self.sock.close()
