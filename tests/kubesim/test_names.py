"""Pod addressing and names for process pods: loopback pod IPs a process can bind, the kubelet's
/etc/hosts (bind-mounted in the pod's mount namespace) and kubesim's headless-Service records in
it, followed as pods come and go (see dns.py and the README's "Pod IPs and names").

Each test works in a namespace of its own; names are resolved inside the pods with glibc
(``getent``) and Python's resolver, and servers are reached over real TCP.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from kubesim import dns
from kubesim.testing import KubeSim, wait_for

PROCESS = {"kubesim.io/process": "true"}
POD_IP_ENV = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
# A server on $(POD_IP):7000 that answers every connection with its hostname.
SERVER = (
    "import os, socket\n"
    "s = socket.socket()\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do (TIME_WAIT)\n"
    "s.bind((os.environ['POD_IP'], 7000))\n"
    "s.listen(16)\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    c.sendall(socket.gethostname().encode())\n"
    "    c.close()\n"
)
CLIENT = (
    "import socket, sys\n"
    "c = socket.create_connection((sys.argv[1], 7000), timeout=5)\n"
    "print(c.getpeername()[0], c.recv(100).decode())\n"
)


@pytest.fixture(scope="module")
def kubesim() -> Iterator[KubeSim]:
    with KubeSim() as sim:
        yield sim


# -- helpers -------------------------------------------------------------------------------------


def api(k: KubeSim, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
    code, _, out = k.request(method, path, body=body)
    assert code in ok, (code, out)
    return out


def new_ns(k: KubeSim) -> str:
    ns = f"names-{uuid.uuid4().hex[:6]}"
    api(k, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    wait_for(lambda: k.request("GET", f"/api/v1/namespaces/{ns}/serviceaccounts/default")[0] == 200)
    return ns


def pod(k: KubeSim, ns: str, name: str) -> dict[str, Any] | None:
    code, _, body = k.request("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
    return body if code == 200 else None


def is_ready(p: dict[str, Any] | None) -> bool:
    conds = ((p or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def wait_ready(k: KubeSim, ns: str, name: str, not_ip: str = "") -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        p = pod(k, ns, name)
        if p is None or not is_ready(p) or p["status"].get("podIP") == not_ip:
            return None
        return p

    return wait_for(ready, what=f"{name} ready")


def run_in(k: KubeSim, ns: str, name: str, container: str, argv: list[str]) -> tuple[int, str, str]:
    """Run a command in a running container (as pods/exec does) and wait for it."""

    async def run(c: Any) -> tuple[int, bytes, bytes]:
        proc = await c.kubelet.exec_process(ns, name, container, argv, False)
        out, err = await proc.communicate()
        return proc.returncode, out, err

    rc, out, err = cast("tuple[int, bytes, bytes]", k.call(run))
    return rc, out.decode(), err.decode()


def resolve(k: KubeSim, ns: str, name: str, host: str) -> list[str]:
    """The addresses glibc gives for ``host`` inside the pod (``getent ahostsv4``)."""
    _rc, out, _err = run_in(k, ns, name, "main", ["getent", "ahostsv4", host])
    return sorted({line.split()[0] for line in out.splitlines() if line.strip()})


def headless_service(name: str, app: str, publish_not_ready: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "clusterIP": "None",
        "selector": {"app": app},
        "ports": [{"name": "tcp", "port": 7000}],
    }
    if publish_not_ready:
        spec["publishNotReadyAddresses"] = True
    return {"metadata": {"name": name}, "spec": spec}


def server_statefulset(name: str, replicas: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": PROCESS},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [
                        {
                            "name": "main",
                            "image": "python:3",
                            "command": ["python3", "-c", SERVER],
                            "env": POD_IP_ENV,
                            "ports": [{"name": "tcp", "containerPort": 7000}],
                            "readinessProbe": {"tcpSocket": {"port": 7000}, "periodSeconds": 1},
                        }
                    ],
                },
            },
        },
    }


# -- tests ---------------------------------------------------------------------------------------


def test_statefulset_pods_reach_each_other_by_name_on_the_same_port(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    api(kubesim, "POST", f"/api/v1/namespaces/{ns}/services", headless_service("db", "db"))
    api(kubesim, "POST", f"/apis/apps/v1/namespaces/{ns}/statefulsets", server_statefulset("db", 2))
    p0 = wait_ready(kubesim, ns, "db-0")
    p1 = wait_ready(kubesim, ns, "db-1")
    ip0, ip1 = p0["status"]["podIP"], p1["status"]["podIP"]
    # Distinct loopback addresses; both servers listen on port 7000, each on its own IP.
    assert ip0 != ip1 and ip0.startswith("127.") and ip1.startswith("127.")
    assert p1["spec"]["hostname"] == "db-1" and p1["spec"]["subdomain"] == "db"

    fqdn1 = f"db-1.db.{ns}.svc.cluster.local"
    wait_for(lambda: resolve(kubesim, ns, "db-0", fqdn1) == [ip1], what="db-1's name in db-0")
    assert resolve(kubesim, ns, "db-1", f"db-0.db.{ns}.svc.cluster.local") == [ip0]
    assert resolve(kubesim, ns, "db-0", f"db.{ns}.svc.cluster.local") == sorted([ip0, ip1])
    # The names the pod's search list would expand (db-1.db, db-1.db.<ns>, db-1.db.<ns>.svc).
    for short in ("db-1.db", f"db-1.db.{ns}", f"db-1.db.{ns}.svc"):
        assert resolve(kubesim, ns, "db-0", short) == [ip1], short

    # Real TCP by name, from one pod to the other and to itself.
    rc, out, err = run_in(kubesim, ns, "db-0", "main", ["python3", "-c", CLIENT, fqdn1])
    assert rc == 0, err
    assert out.split() == [ip1, "db-1"]
    rc, out, err = run_in(kubesim, ns, "db-1", "main", ["python3", "-c", CLIENT, "db-1"])
    assert rc == 0, err
    assert out.split() == [ip1, "db-1"]  # its own name, from the kubelet's hosts entry

    # The kubelet's hosts file: managedHostsFileContent with the pod's FQDN.
    rc, hosts, _ = run_in(kubesim, ns, "db-0", "main", ["cat", "/etc/hosts"])
    assert rc == 0
    assert hosts.startswith(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
        f"{ip0}\tdb-0.db.{ns}.svc.cluster.local\tdb-0\n"
    )
    _rc, inode_before, _ = run_in(kubesim, ns, "db-0", "main", ["stat", "-c", "%i", "/etc/hosts"])

    # A recreated pod gets a new IP; its name follows within about a second of it being Ready.
    api(kubesim, "DELETE", f"/api/v1/namespaces/{ns}/pods/db-1")
    p1b = wait_ready(kubesim, ns, "db-1", not_ip=ip1)
    new_ip1 = p1b["status"]["podIP"]
    assert new_ip1 != ip1
    ready_at = time.monotonic()
    wait_for(lambda: resolve(kubesim, ns, "db-0", fqdn1) == [new_ip1], timeout=5, what="the new IP")
    assert time.monotonic() - ready_at < 1.5
    assert resolve(kubesim, ns, "db-0", f"db.{ns}.svc.cluster.local") == sorted([ip0, new_ip1])
    rc, out, err = run_in(kubesim, ns, "db-0", "main", ["python3", "-c", CLIENT, fqdn1])
    assert rc == 0, err
    assert out.split() == [new_ip1, "db-1"]
    # Rewritten in place: the bind-mounted file is the same inode.
    _rc, inode_after, _ = run_in(kubesim, ns, "db-0", "main", ["stat", "-c", "%i", "/etc/hosts"])
    assert inode_after == inode_before


def test_not_ready_pods_hostaliases_and_dns_policy(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    api(kubesim, "POST", f"/api/v1/namespaces/{ns}/services", headless_service("web", "web"))
    api(kubesim, "POST", f"/api/v1/namespaces/{ns}/services", headless_service("all", "web", True))
    never_ready = {
        "name": "main",
        "image": "busybox",
        "command": ["sleep", "600"],
        "readinessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1},
    }
    body = {
        "metadata": {"name": "w", "labels": {"app": "web"}, "annotations": PROCESS},
        "spec": {
            "hostname": "front",
            "subdomain": "web",
            "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}],
            "containers": [never_ready],
        },
    }
    api(kubesim, "POST", f"/api/v1/namespaces/{ns}/pods", body)
    p = wait_for(lambda: (x := pod(kubesim, ns, "w")) and x["status"].get("podIP") and x, what="pod IP")
    ip = p["status"]["podIP"]
    wait_for(lambda: "running" in (pod(kubesim, ns, "w") or {})["status"]["containerStatuses"][0]["state"])
    rc, hosts, _ = run_in(kubesim, ns, "w", "main", ["cat", "/etc/hosts"])
    assert rc == 0
    assert f"\n{ip}\tfront.web.{ns}.svc.cluster.local\tfront\n" in hosts
    assert "\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n" in hosts
    assert resolve(kubesim, ns, "w", "bar.local") == ["10.1.2.3"]
    # Not Ready: only the Service that publishes not-ready addresses has a record (with the
    # dashed-IP endpoint name, as the pod's subdomain is another Service).
    wait_for(lambda: resolve(kubesim, ns, "w", f"all.{ns}.svc.cluster.local") == [ip], what="record")
    assert resolve(kubesim, ns, "w", f"{ip.replace('.', '-')}.all.{ns}.svc.cluster.local") == [ip]
    assert resolve(kubesim, ns, "w", f"web.{ns}.svc.cluster.local") == []
    assert resolve(kubesim, ns, "w", f"front.web.{ns}.svc.cluster.local") == [ip]  # its own entry

    # dnsPolicy Default: the kubelet's file only, no cluster records.
    body = {
        "metadata": {"name": "d", "labels": {"app": "web"}, "annotations": PROCESS},
        "spec": {
            "dnsPolicy": "Default",
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "600"]}],
        },
    }
    api(kubesim, "POST", f"/api/v1/namespaces/{ns}/pods", body)
    wait_ready(kubesim, ns, "d")
    rc, hosts, _ = run_in(kubesim, ns, "d", "main", ["cat", "/etc/hosts"])
    assert rc == 0 and "cluster DNS records" not in hosts
    assert resolve(kubesim, ns, "d", f"all.{ns}.svc.cluster.local") == []


def test_service_records_and_in_place_rewrite(tmp_path: Path) -> None:
    def pod_obj(name: str, ip: str, ready: bool, **spec: Any) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "namespace": "ns", "labels": {"app": "x"}},
            "spec": spec,
            "status": {
                "phase": "Running",
                "podIP": ip,
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }

    svc = {
        "metadata": {"name": "x", "namespace": "ns"},
        "spec": {"clusterIP": "None", "selector": {"app": "x"}},
    }
    not_headless = {
        "metadata": {"name": "y", "namespace": "ns"},
        "spec": {"clusterIP": "10.96.0.9", "selector": {"app": "x"}},
    }
    pods = [
        pod_obj("x-0", "127.1.0.1", True, hostname="x-0", subdomain="x"),
        pod_obj("x-1", "127.1.0.2", False, hostname="x-1", subdomain="x"),
        pod_obj("z", "127.1.0.3", True),
    ]
    gone = pod_obj("x-2", "127.1.0.4", True, hostname="x-2", subdomain="x")
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert dns.service_records([svc, not_headless], [*pods, gone]) == [
        ("127-1-0-3.x.ns.svc.cluster.local", "127.1.0.3"),
        ("x-0.x.ns.svc.cluster.local", "127.1.0.1"),
        ("x.ns.svc.cluster.local", "127.1.0.1"),
        ("x.ns.svc.cluster.local", "127.1.0.3"),
    ]
    assert dns.search_aliases("x-0.x.ns.svc.cluster.local", "ns") == ["x-0.x", "x-0.x.ns", "x-0.x.ns.svc"]
    assert dns.search_aliases("x-0.x.ns.svc.cluster.local", "other") == ["x-0.x.ns", "x-0.x.ns.svc"]

    f = tmp_path / "hosts"
    assert dns.rewrite_in_place(f, "a long first version\n")
    inode = os.stat(f).st_ino
    assert not dns.rewrite_in_place(f, "a long first version\n")
    assert dns.rewrite_in_place(f, "short\n")
    # Same inode, never shorter: the rest is a comment line.
    assert os.stat(f).st_ino == inode
    assert f.read_text() == "short\n#" + " " * 13 + "\n"
    assert len(f.read_bytes()) == len("a long first version\n")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_redis_replica_follows_its_primary_by_name(kubesim: KubeSim) -> None:
    """A real engine: a Redis primary and replica of a StatefulSet, both on port 6379 on their own
    pod IPs, the replica replicating from ``r-0.r`` (resolved by redis through glibc)."""
    ns = new_ns(kubesim)
    api(kubesim, "POST", f"/api/v1/namespaces/{ns}/services", headless_service("r", "r"))
    script = (
        "args=\"--bind $POD_IP --port 6379 --save '' --appendonly no --dir /work\"; "
        'if [ "$HOSTNAME" = r-0 ]; then eval exec redis-server $args; '
        "else eval exec redis-server $args --replicaof r-0.r 6379; fi"
    )
    sts = server_statefulset("r", 2)
    pod_spec = sts["spec"]["template"]["spec"]
    pod_spec["containers"][0].update(
        command=["sh", "-c", script],
        ports=[{"name": "redis", "containerPort": 6379}],
        readinessProbe={"tcpSocket": {"port": 6379}, "periodSeconds": 1},
        volumeMounts=[{"name": "work", "mountPath": "/work"}],
    )
    pod_spec["volumes"] = [{"name": "work", "emptyDir": {}}]
    api(kubesim, "POST", f"/apis/apps/v1/namespaces/{ns}/statefulsets", sts)
    wait_ready(kubesim, ns, "r-0")
    wait_ready(kubesim, ns, "r-1")
    rc, out, err = run_in(kubesim, ns, "r-1", "main", ["redis-cli", "-h", "r-0.r", "SET", "k", "v1"])
    assert rc == 0 and out.strip() == "OK", (out, err)
    replica = f"r-1.r.{ns}.svc.cluster.local"

    def replicated() -> bool:
        rc, out, _ = run_in(kubesim, ns, "r-0", "main", ["redis-cli", "-h", replica, "GET", "k"])
        return rc == 0 and out.strip() == "v1"

    wait_for(replicated, what="the key on the replica")
    rc, out, _ = run_in(kubesim, ns, "r-0", "main", ["redis-cli", "-h", replica, "INFO", "replication"])
    assert "role:slave" in out and "master_link_status:up" in out and "master_host:r-0.r" in out


PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)), None)


@pytest.mark.skipif(PG_BIN is None, reason="PostgreSQL is not installed")
def test_postgres_streaming_replica_by_name(kubesim: KubeSim) -> None:
    """A real engine: PostgreSQL primary ``pg-0`` and a streaming replica ``pg-1`` cloned from it
    with ``pg_basebackup -h pg-0.pg``, both on port 5432 on their own pod IPs; ``psql -h`` by name."""
    assert PG_BIN is not None
    ns = new_ns(kubesim)
    api(kubesim, "POST", f"/api/v1/namespaces/{ns}/services", headless_service("pg", "pg"))
    b = PG_BIN.parent
    script = (
        f"set -e; D=/pg/data; "
        'if [ "$HOSTNAME" = pg-0 ]; then '
        f"[ -s $D/PG_VERSION ] || {{ {b}/initdb -D $D -U postgres --auth=trust >/dev/null; "
        "echo 'host all all 127.0.0.0/8 trust' >> $D/pg_hba.conf; "
        "echo 'host replication all 127.0.0.0/8 trust' >> $D/pg_hba.conf; }; "
        f"else [ -s $D/PG_VERSION ] || {b}/pg_basebackup -h pg-0.pg -U postgres -D $D -R -X stream; fi; "
        f"exec {b}/postgres -D $D -c listen_addresses=$POD_IP -c port=5432 -c unix_socket_directories=/pg"
    )
    sts = server_statefulset("pg", 2)
    pod_spec = sts["spec"]["template"]["spec"]
    pod_spec["securityContext"] = {"runAsUser": 101, "runAsGroup": 104, "fsGroup": 104}
    pod_spec["containers"][0].update(
        command=["sh", "-c", script],
        ports=[{"name": "pg", "containerPort": 5432}],
        readinessProbe={"tcpSocket": {"port": 5432}, "periodSeconds": 1},
        volumeMounts=[{"name": "pg", "mountPath": "/pg"}],
    )
    pod_spec["volumes"] = [{"name": "pg", "emptyDir": {}}]
    api(kubesim, "POST", f"/apis/apps/v1/namespaces/{ns}/statefulsets", sts)
    wait_ready(kubesim, ns, "pg-0")
    wait_ready(kubesim, ns, "pg-1")
    psql = ["psql", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-tA"]
    rc, out, err = run_in(
        kubesim,
        ns,
        "pg-1",
        "main",
        [*psql, "-h", "pg-0.pg", "-c", "CREATE TABLE t (x int); INSERT INTO t VALUES (42)"],
    )
    assert rc == 0, err
    replica = f"pg-1.pg.{ns}.svc.cluster.local"

    def replicated() -> bool:
        rc, out, _ = run_in(kubesim, ns, "pg-0", "main", [*psql, "-h", replica, "-c", "SELECT x FROM t"])
        return rc == 0 and out.strip() == "42"

    wait_for(replicated, what="the row on the replica")
    rc, out, err = run_in(
        kubesim, ns, "pg-1", "main", [*psql, "-h", "pg-1.pg", "-c", "SELECT pg_is_in_recovery()"]
    )
    assert rc == 0 and out.strip() == "t", (out, err)
    # Scale to zero: graceful stops (SIGTERM), so the servers remove their System V segments
    # (kubesim has no IPC namespace that would take them away).
    code, _, out = kubesim.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{ns}/statefulsets/pg",
        body={"spec": {"replicas": 0}},
        content_type="application/merge-patch+json",
    )
    assert code == 200, out
    wait_for(lambda: pod(kubesim, ns, "pg-0") is None and pod(kubesim, ns, "pg-1") is None, what="pods gone")
