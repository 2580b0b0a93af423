"""A whole kubesim cluster: the API server, its HTTP front, the bootstrap objects and the controllers."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from . import auth, tls
from .apiserver import APIServer, WriteOptions
from .controllers.base import Controller
from .controllers.deployment import DeploymentController, ReplicaSetController
from .controllers.gc import GarbageCollector
from .controllers.job import JobController, TTLAfterFinishedController
from .controllers.namespace import NamespaceController
from .controllers.nodes import NodeController
from .controllers.scheduler import Scheduler
from .controllers.snapshots import make_snapshot_controllers
from .controllers.statefulset import StatefulSetController
from .controllers.volumes import make_volume_controllers
from .csi import CSIBackend
from .csi import bootstrap_objects as csi_bootstrap_objects
from .errors import StatusError, bad_request
from .faults import Faults
from .kubelet import ImageConfig, Kubelet, normalize_image
from .meta import time_plus
from .openapi import OpenAPI
from .protobuf import CONTENT_TYPE as PROTOBUF
from .resources import ResourceType
from .server import HTTPFront, decode_protobuf_body
from .store import Store

ADMIN_USER = "kubesim-admin"


@dataclass
class ClusterConfig:
    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path | None = None
    # How long watches wait between bookmarks when a client asks for them.
    bookmark_interval: float = 5.0
    # Number of changes the watch history keeps before older versions answer 410 Gone.
    watch_history: int = 100_000
    # Log every request (method, path, status) to the "kubesim.access" logger.
    access_log: bool = False
    # Append one audit.k8s.io/v1 Event per request (level Metadata) to this file (audit.py).
    audit_log: Path | None = None
    # Volumes (csi.py, controllers/volumes.py, controllers/snapshots.py). Bytes/s of data copies (None: disk speed).
    copy_throughput_bytes_per_s: float | None = None
    snapshot_ready_delay: float = 0.2  # seconds from a snapshot's cut to readyToUse
    # Stop (SIGSTOP) the processes writing to a volume while it is copied (snapshot, clone), as a
    # filesystem freeze does, so copies are point-in-time (kubelet.frozen, runtime.stop_processes).
    freeze_writers_during_copy: bool = True
    volume_retry_start: float = 0.1  # provisioner/snapshotter retry backoff (upstream 1 s .. 5 min)
    volume_retry_max: float = 5.0
    pv_resync_period: float = 15.0  # --pvclaimbinder-sync-period
    snapshot_resync_period: float = 900.0  # snapshot-controller --resync-period
    # Nodes, scheduler, kubelet (controllers/nodes.py, controllers/scheduler.py, kubelet.py, runtime.py).
    nodes: int = 3  # kubesim-node-1..N
    node_lease_renew_interval: float = 10.0  # nodelease: leaseDuration (40 s) / 4
    scheduler_backoff: float = 0.1  # initial per-pod backoff, doubling to 10x (upstream 1 s .. 10 s)
    volume_bind_timeout: float = 600.0  # VolumeBinding bindTimeoutSeconds
    pod_ready_delay: float = 0.2  # a running container without readiness probe is ready after this
    pod_stop_delay: float = 0.05  # a container without a process takes this long to stop on SIGTERM
    crash_backoff: float = 0.2  # crash-loop back-off, doubling to crash_backoff_max (upstream 10 s .. 5 min)
    crash_backoff_max: float = 2.0
    probe_period_scale: float = 1.0  # multiplies probes' initialDelaySeconds and periodSeconds
    dns_refresh_delay: float = 0.02  # process pods' /etc/hosts records follow pod/Service changes after this
    # Workload controllers (controllers/statefulset.py, deployment.py, job.py).
    workload_retry_start: float = 0.005  # a failed sync's requeue backoff (workqueue: 5 ms doubling)
    workload_retry_max: float = 1.0  # ... up to this (upstream 1000 s)
    statefulset_resync_period: float = 30.0  # statefulSetResyncPeriod
    job_pod_failure_backoff: float = 0.1  # DefaultJobPodFailureBackOff (upstream 10 s), doubling per failure
    job_pod_failure_backoff_max: float = 2.0  # MaxJobPodFailureBackOff (upstream 10 min)
    # The images the container runtime knows, by reference (normalized as the runtime reports it,
    # e.g. ``ghcr.io/org/app:1.0``): their OCI config's Entrypoint, Cmd, Env, User and WorkingDir
    # (``kubelet.ImageConfig``). A process pod's container without a command runs its image's
    # entrypoint, as containerd does; kubesim pulls nothing, so other images have none.
    images: dict[str, ImageConfig] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class Cluster:
    def __init__(self, config: ClusterConfig | None = None) -> None:
        self.config = config or ClusterConfig()
        if self.config.data_dir is None:
            self.config.data_dir = Path(tempfile.mkdtemp(prefix="kubesim-data-"))
        self.data_dir: Path = Path(self.config.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.api = APIServer(Store(self.config.watch_history))
        self.tokens = auth.TokenAuthority(secrets.token_bytes(32))
        self.authorizer = auth.RBACAuthorizer(self._rbac_lister)
        self.faults = Faults()
        self.csi = CSIBackend(self)
        self.front = HTTPFront(self.api, self.tokens, self.authorizer, self.faults)
        self.front.admin_actions.update(self.admin_actions())
        self.front.admin_actions.update(self.csi.admin_actions())
        self.front.openapi = OpenAPI(self.api)
        self.front.bookmark_interval = self.config.bookmark_interval
        if self.config.audit_log is not None:
            from .audit import AuditLog

            self.front.audit = AuditLog(self.config.audit_log)
        self.front.extra_handlers["/serviceaccounts/token"] = self._token_request
        from .podio import PodIO  # pods/exec, pods/attach, pods/log

        self.podio = PodIO(self)
        self.front.extra_handlers["/pods/exec"] = self.podio.exec
        self.front.extra_handlers["/pods/attach"] = self.podio.attach
        self.front.extra_handlers["/pods/log"] = self.podio.log
        # -- pods/portforward (portforward.py) --
        from .portforward import PortForward

        self.portforward = PortForward(self)
        self.front.extra_handlers["/pods/portforward"] = self.portforward.handle
        # -- end pods/portforward --
        self.controllers: list[Controller] = []
        self.kubelet = Kubelet(self)  # pods of every node; run from make_controllers
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.certs = tls.generate((self.config.host, "localhost"))
        self.api.root_ca_pem = self.certs.ca_pem.decode()
        self.config.images = {normalize_image(k): v for k, v in self.config.images.items()}

    # -- bootstrap ---------------------------------------------------------------------------
    def _rbac_lister(self, plural: str) -> list[dict[str, Any]]:
        return list(self.api.store.iter(f"rbac.authorization.k8s.io/{plural}"))

    def bootstrap(self) -> None:
        ns_rt = self.api.resource("", "v1", "namespaces")
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.api.create(ns_rt, "", {"metadata": {"name": name}})
        for obj in auth.bootstrap_policy():
            rt = self.api.kind_type(obj["apiVersion"], obj["kind"])
            assert rt is not None
            self.api.create(rt, obj["metadata"].get("namespace", ""), obj)
        from . import snapshot_crds

        crd_rt = self.api.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        for crd in snapshot_crds.crds():
            self.api.create(crd_rt, "", crd)
        NodeController.bootstrap(self)
        for obj in csi_bootstrap_objects():
            obj_rt = self.api.kind_type(obj["apiVersion"], obj["kind"])
            assert obj_rt is not None
            self.api.create(obj_rt, "", obj)

    def make_controllers(self) -> list[Controller]:
        return [
            GarbageCollector(self),
            NamespaceController(self),
            *make_volume_controllers(self),
            *make_snapshot_controllers(self),
            NodeController(self),
            Scheduler(self),
            self.kubelet,
            StatefulSetController(self),
            DeploymentController(self),
            ReplicaSetController(self),
            JobController(self),
            TTLAfterFinishedController(self),
        ]

    def set_node_ready(self, name: str, ready: bool) -> None:
        """Fault: stop (False) or restart (True) a node's kubelet; see controllers/nodes.py."""
        nodes = self.controller("nodes")
        assert isinstance(nodes, NodeController)
        nodes.set_ready(name, ready)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self.bootstrap()
        self.controllers = self.make_controllers()
        for c in self.controllers:
            c.start()
        access_log = logging.getLogger("kubesim.access") if self.config.access_log else None
        self._runner = web.AppRunner(
            self.front.app(), handle_signals=False, access_log=access_log, shutdown_timeout=1.0
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, ssl_context=self.certs.server_context())
        await site.start()

    async def stop(self) -> None:
        self.api.store.close_all_watches()
        for c in self.controllers:
            await c.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.front.audit is not None:
            self.front.audit.close()

    @property
    def server_url(self) -> str:
        return f"https://{self.config.host}:{self.port}"

    def controller(self, name: str) -> Controller:
        for c in self.controllers:
            if c.name == name:
                return c
        raise KeyError(
            f"no controller named {name!r}; there are: {', '.join(c.name for c in self.controllers)}"
        )

    # -- kubeconfigs -------------------------------------------------------------------------
    def kubeconfig(self, user: str, token: str, namespace: str = "default") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kubesim",
                    "cluster": {
                        "server": self.server_url,
                        "certificate-authority-data": base64.b64encode(self.certs.ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": f"{user}@kubesim",
                    "context": {"cluster": "kubesim", "user": user, "namespace": namespace},
                }
            ],
            "current-context": f"{user}@kubesim",
            "preferences": {},
        }

    def write_admin_kubeconfig(self, path: Path) -> None:
        write_kubeconfig(path, self.kubeconfig(ADMIN_USER, self.tokens.admin_token()))

    def service_account_token(self, namespace: str, name: str, expiration_seconds: int | None = None) -> str:
        sa = self.api.store.peek("/serviceaccounts", namespace, name)
        if sa is None:
            raise StatusError(
                404,
                "NotFound",
                f'serviceaccounts "{name}" not found',
                {"name": name, "kind": "serviceaccounts"},
            )
        return self.tokens.issue_service_account_token(
            namespace, name, sa["metadata"]["uid"], expiration_seconds
        )

    # -- subresource handlers ----------------------------------------------------------------
    async def _token_request(
        self, request: web.Request, rt: ResourceType, ns: str, name: str, user: auth.UserInfo
    ) -> web.StreamResponse:
        """serviceaccounts/token: a TokenRequest (pkg/registry/core/serviceaccount/storage/token.go)."""
        if request.method != "POST":
            raise StatusError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        raw = await request.read()
        if raw and request.headers.get("Content-Type", "").split(";")[0].strip() == PROTOBUF:
            # kubectl create token sends the TokenRequest as protobuf.
            body = decode_protobuf_body(raw, "authentication.k8s.io/v1", "TokenRequest")
            if body.get("kind") != "TokenRequest":
                raise bad_request(
                    f"the kind in the data ({body.get('kind')}) does not match the expected kind (TokenRequest)"
                )
        else:
            try:
                body = json.loads(raw or b"{}")
            except ValueError as e:
                raise bad_request(f"invalid TokenRequest: {e}") from None
        spec = (body or {}).get("spec") or {}
        exp = int(spec.get("expirationSeconds") or 3600)
        if exp < 600:
            raise StatusError(
                422,
                "Invalid",
                f'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: {exp}: may not specify a duration less than 10 minutes',
            )
        token = self.service_account_token(ns, name, exp)
        out = {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": None},
            "spec": {
                "audiences": spec.get("audiences") or ["https://kubernetes.default.svc"],
                "expirationSeconds": exp,
                "boundObjectRef": spec.get("boundObjectRef"),
            },
            "status": {"token": token, "expirationTimestamp": time_plus(exp)},
        }
        return web.json_response(out, status=201)

    # -- admin actions (POST /kubesim/<action>, and `kubesim fault`) ------------------------
    def admin_actions(self) -> dict[str, Any]:
        def add_fault(a: dict[str, Any]) -> dict[str, Any]:
            return {"id": self.faults.add_from_args(a)}  # faults.py parses the fields

        def pause(a: dict[str, Any]) -> dict[str, Any]:
            self.controller(a["name"]).pause()
            return {"paused": a["name"]}

        def resume(a: dict[str, Any]) -> dict[str, Any]:
            self.controller(a["name"]).resume()
            return {"resumed": a["name"]}

        return {
            "faults": add_fault,
            "faults/list": lambda a: {"faults": [f.to_dict() for f in self.faults.list()]},
            "faults/delete": lambda a: {"deleted": self.faults.remove(a["id"])},
            "faults/clear": lambda a: self.faults.clear() or {"cleared": True},
            "compact": lambda a: self.api.store.compact() or {"compactedTo": self.api.store.rv},
            "watches/drop": lambda a: {"dropped": self.drop_watches(a.get("resource"))},
            "controllers/pause": pause,
            "controllers/resume": resume,
            "controllers/list": lambda a: {"controllers": [c.name for c in self.controllers]},
        }

    def drop_watches(self, resource: str | None = None) -> int:
        """Close open watch connections (all, or those of one resource, e.g. "pods" or "widgets.example.com")."""
        key = None
        if resource:
            plural, _, group = resource.partition(".")
            key = f"{group}/{plural}"
        return self.api.store.close_watches(key)


def write_kubeconfig(path: Path, config: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    os.chmod(tmp, 0o600)
    tmp.replace(path)


__all__ = ["ADMIN_USER", "Cluster", "ClusterConfig", "WriteOptions", "write_kubeconfig"]
