"""The kubelet of every kubesim node (``pkg/kubelet``), with a runtime of host processes.

For each pod bound to a kubesim node the kubelet does what ``Kubelet.SyncPod`` does
(``pkg/kubelet/kubelet.go``), in order:

1. admission (``lifecycle.GeneralPredicates``: the node must match the pod's node selector and
   required node affinity, else the pod is rejected: ``Failed``/``NodeAffinity``);
2. volumes (``volumemanager.WaitForAttachAndMount`` and the desired-state populator): every PVC
   must exist, not be deleting and be Bound to an existing PV, else a ``FailedMount`` event with
   the populator's error; a ReadWriteOnce volume in use by a pod on another node is refused
   with ``Multi-Attach error`` (the attach/detach controller); then the volumes are set up:
   PVC -> the PV's directory (``storage.volume_dir``), emptyDir -> a per-pod directory,
   configMap/secret/downwardAPI/projected -> files, hostPath -> the path, with ``fsGroup``
   ownership (``SetVolumeOwnership``);
3. the sandbox: a pod IP (127.x.y.z, unique among live pods), ``PodReadyToStartContainers``,
   and for process pods the hosts file (``makeHostsMount``; with kubesim's headless-Service
   records, see ``dns.py``);
4. init containers one by one (restartable "sidecar" init containers are started and left
   running), then the containers (``kuberuntime_manager.go``: ``computePodActions``,
   ``startContainer``), restarts per ``restartPolicy`` with the crash-loop back-off
   (``doBackOff``), readiness/liveness/startup probes (``pkg/kubelet/prober``);
5. the status (``generateAPIPodStatus``, ``getPhase``, ``pkg/kubelet/status/generate.go``),
   written through ``pods/status`` keeping the conditions the kubelet does not own;
6. deletion: containers are stopped (SIGTERM, the grace period, SIGKILL), the final status is
   written and the pod is deleted with ``gracePeriodSeconds=0`` and a UID precondition
   (``status_manager.go``: ``syncPod`` / ``canBeDeleted``).

How containers run: by default a container runs no process (it is "running" until the pod is
deleted or crashed by a fault). Pods owned by a Job, labelled ``batch.kubernetes.io/job-name``,
or annotated ``kubesim.io/process: "true"`` run each container's command as a host process in
a private mount namespace (see ``runtime.py``). No image is pulled: the host's files are the
container's, and an image registered in ``ClusterConfig.images`` contributes only its OCI config
(entrypoint, cmd, env, user, working directory), as containerd applies it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import secrets
import shutil
import signal
import time
from collections.abc import AsyncIterator, Coroutine, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from . import dns, events, runtime, storage
from .apiserver import WriteOptions
from .controllers.base import Controller
from .controllers.nodes import node_ip, node_names
from .controllers.scheduler import (
    go_duration,
    pod_claim_names,
    pod_matches_node_affinity,
)
from .errors import StatusError
from .meta import now
from .store import Change, deep_copy
from .strategies import parse_quantity

if TYPE_CHECKING:
    from .cluster import Cluster

PROCESS_ANNOTATION = "kubesim.io/process"
KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
MIN_GRACE_SECONDS = 2.0  # kuberuntime_container.go: minimumGracePeriodInSeconds
IP_SPACE = 254 * 256 * 254  # pod IPs 127.1.0.1 .. 127.254.255.254
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ConfigError(Exception):
    """A container cannot be configured (CreateContainerConfigError / CreateContainerError)."""

    def __init__(self, message: str, reason: str = "CreateContainerConfigError") -> None:
        super().__init__(message)
        self.reason = reason


class ExecError(Exception):
    """Why a command cannot be run in a container; ``code`` is the HTTP status to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Volume:
    path: Path
    read_only: bool
    kind: str


@dataclass
class Container:
    name: str
    spec: dict[str, Any]
    kind: str  # "init", "sidecar" (restartable init container) or "main"
    restart_count: int = 0
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    started_at: str = ""
    term: dict[str, Any] | None = None  # this instance's termination
    prev_term: dict[str, Any] | None = None  # the previous instance's termination
    finished_mono: float = 0.0
    container_id: str = ""
    image_id: str = ""
    proc: asyncio.subprocess.Process | None = None
    instance: int = 0
    started: bool = False
    ready_at: float | None = None  # monotonic time it becomes ready without a readiness probe
    probe_ready: bool = False
    backoff: float | None = None
    backoff_at: float = 0.0
    busy: bool = False  # a start in flight
    retry_at: float = 0.0  # after a configuration error, not before (monotonic)
    final: bool = False  # a sidecar stopped for good (the regular containers are done)
    pspec: runtime.ProcessSpec | None = None
    mnt_ns: runtime.Namespace | None = None  # the running instance's mount namespace
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return int((self.term or {}).get("exitCode", 0))


@dataclass
class PodRuntime:
    uid: str
    ns: str
    name: str
    node: str
    process: bool
    pod_dir: Path
    log_dir: Path
    containers: dict[str, Container]
    init_names: list[str]
    main_names: list[str]
    grace: float = 30.0
    ip: str = ""
    start_time: str = ""
    volumes: dict[str, Volume] | None = None
    preparing: bool = False
    rejected: bool = False
    terminating: asyncio.Task[None] | None = None
    stopped: bool = False
    final_written: bool = False
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    hosts_file: Path | None = None  # <pod dir>/etc-hosts, mounted over /etc/hosts (process pods)
    hosts_base: str = ""  # what the kubelet writes there (managedHostsFileContent)
    cluster_dns: bool = False  # dnsPolicy gives the pod cluster DNS (kubesim's records)


@dataclass
class Launch:
    """A process kubesim started in a pod (container, exec, exec probe), for freezing writers."""

    spec: runtime.ProcessSpec
    proc: asyncio.subprocess.Process | None = None
    forked: asyncio.Event = field(default_factory=asyncio.Event)  # set once proc is known (or never will be)


def is_process_pod(pod: dict[str, Any]) -> bool:
    """Job pods and pods annotated ``kubesim.io/process: "true"`` run real processes."""
    meta = pod["metadata"]
    ann = (meta.get("annotations") or {}).get(PROCESS_ANNOTATION)
    if ann is not None:
        return str(ann).lower() == "true"
    if "batch.kubernetes.io/job-name" in (meta.get("labels") or {}):
        return True
    return any(r.get("kind") == "Job" for r in meta.get("ownerReferences") or [])


@dataclass(frozen=True)
class ImageConfig:
    """What kubesim's runtime knows of an image: the ``config`` of its OCI image configuration
    (``Entrypoint``, ``Cmd``, ``Env`` as ``NAME=value``, ``User``, ``WorkingDir``). The image's
    filesystem is the host's: the entrypoint is a host path or a command on ``PATH``."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = ""

    @classmethod
    def from_oci(cls, config: dict[str, Any]) -> ImageConfig:
        """From an OCI image config object (``{"Entrypoint": [...], "Cmd": [...], ...}``)."""
        unknown = set(config) - {"Entrypoint", "Cmd", "Env", "User", "WorkingDir"}
        if unknown:
            raise ValueError(f"unsupported image config keys: {sorted(unknown)}")
        return cls(
            entrypoint=tuple(str(x) for x in config.get("Entrypoint") or ()),
            cmd=tuple(str(x) for x in config.get("Cmd") or ()),
            env=tuple(str(x) for x in config.get("Env") or ()),
            user=str(config.get("User") or ""),
            working_dir=str(config.get("WorkingDir") or ""),
        )


def _service_vars(name: str, ip: str, ports: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``pkg/kubelet/envvars/envvars.go: FromServices`` for one Service (``makeEnvVariableName``,
    ``makeLinkVariables``): ``<NAME>_SERVICE_HOST``/``_SERVICE_PORT[_<PORT NAME>]`` and the
    Docker-link variables ``<NAME>_PORT[_<port>_<PROTO>[_PROTO|_PORT|_ADDR]]``."""
    prefix = name.replace("-", "_").upper()
    out = [(f"{prefix}_SERVICE_HOST", ip), (f"{prefix}_SERVICE_PORT", str(ports[0].get("port", "")))]
    out += [
        (f"{prefix}_SERVICE_PORT_{str(p['name']).replace('-', '_').upper()}", str(p.get("port", "")))
        for p in ports
        if p.get("name")
    ]
    for i, p in enumerate(ports):
        proto = str(p.get("protocol") or "TCP")
        host = f"[{ip}]:{p.get('port')}" if ":" in ip else f"{ip}:{p.get('port')}"  # net.JoinHostPort
        url = f"{proto.lower()}://{host}"
        if i == 0:
            out.append((f"{prefix}_PORT", url))
        pp = f"{prefix}_PORT_{p.get('port')}_{proto.upper()}"
        out += [
            (pp, url),
            (f"{pp}_PROTO", proto.lower()),
            (f"{pp}_PORT", str(p.get("port"))),
            (f"{pp}_ADDR", ip),
        ]
    return out


def normalize_image(image: str) -> str:
    """The image reference as the runtime reports it (docker.io/library/x:latest)."""
    name, digest = [*image.split("@", 1), ""][:2]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and not digest:
        name += ":latest"
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return f"{name}@{digest}" if digest else name


def image_id(image: str) -> str:
    full = normalize_image(image)
    repo = (
        full.split("@", 1)[0].rsplit(":", 1)[0] if ":" in full.rsplit("/", 1)[-1] else full.split("@", 1)[0]
    )
    return f"{repo}@sha256:{hashlib.sha256(full.encode()).hexdigest()}"


def _pod_ref(pod: dict[str, Any]) -> dict[str, Any]:
    out = dict(pod)
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Pod")
    return out


def _format_pod(pod: dict[str, Any]) -> str:
    """pkg/kubelet/util/format.Pod: name_namespace(uid)."""
    m = pod["metadata"]
    return f"{m['name']}_{m['namespace']}({m['uid']})"


class Kubelet(Controller):
    name = "kubelet"

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.pod_rt = self.api.resource("", "v1", "pods")
        self.nodes = set(node_names(cluster.config.nodes))
        self.pods: dict[str, PodRuntime] = {}
        self.by_key: dict[tuple[str, str], str] = {}
        self._blocked: set[tuple[str, str]] = set()
        # Every kubesim on the host shares 127/8: each cluster starts its sequence at a random
        # point, so that clusters running side by side (and sockets a previous cluster left in
        # TIME_WAIT) rarely meet on an address.
        self._ip_seq = secrets.randbelow(IP_SPACE)
        self._ips: set[str] = set()
        self._wakeups: dict[Hashable, float] = {}
        self._handles: set[asyncio.TimerHandle] = set()
        self._procs: set[asyncio.subprocess.Process] = set()
        self._orphans: set[asyncio.Task[Any]] = set()
        self._launches: list[Launch] = []
        self._frozen: dict[str, int] = {}  # volume real path -> freezes in progress
        self._thawed = asyncio.Event()
        self._thawed.set()
        # Overlapping freezes (two copies of one volume) share stopped processes: a process is
        # continued when the last freeze that stopped it ends. The lock orders stops and thaws.
        self._freeze_lock = asyncio.Lock()
        self._stop_holds: dict[int, int] = {}
        self._hosts_refresh: asyncio.TimerHandle | None = None
        self._dns_pods: set[str] = set()  # uids of process pods whose hosts file carries records

    # -- wiring ------------------------------------------------------------------------------
    def start(self) -> None:
        super().start()
        self.cluster.front.admin_actions["pods/crash"] = self._admin_crash

    def _admin_crash(self, args: dict[str, Any]) -> dict[str, Any]:
        crashed = self.crash(str(args["namespace"]), str(args["name"]), args.get("container"))
        return {"namespace": args["namespace"], "name": args["name"], "crashed": crashed}

    def keys_for(self, change: Change) -> Iterable[Hashable]:
        obj = change.obj
        if change.key == "/pods":
            meta = obj["metadata"]
            key = (meta["namespace"], meta["name"])
            node = (obj.get("spec") or {}).get("nodeName")
            if node in self.nodes or key in self.by_key:
                yield key
            if change.type == "DELETED" or meta.get("deletionTimestamp"):
                yield from list(self._blocked)  # Multi-Attach may be resolved
            return
        if change.key == "/nodes":
            name = obj["metadata"]["name"]
            if name in self.nodes:
                yield from [k for k, uid in self.by_key.items() if self.pods[uid].node == name]
                yield from [
                    (p["metadata"]["namespace"], p["metadata"]["name"])
                    for p in self.store.iter("/pods")
                    if (p.get("spec") or {}).get("nodeName") == name
                ]
            return
        if change.key in (
            "/persistentvolumeclaims",
            "/persistentvolumes",
            "/configmaps",
            "/secrets",
            "storage.k8s.io/csidrivers",
        ):
            ns = obj["metadata"].get("namespace")
            keys = [k for k in self._blocked if not ns or k[0] == ns]
            if change.key in ("/configmaps", "/secrets"):
                # A configuration error may be resolved: retry at once.
                for k in keys:
                    rt = self._runtime(*k)
                    for c in rt.containers.values() if rt is not None else ():
                        c.retry_at = 0.0
            yield from keys

    def on_change(self, change: Change) -> None:
        super().on_change(change)
        if change.key in ("/pods", "/services"):
            self._schedule_hosts_refresh()

    def initial_keys(self) -> Iterable[Hashable]:
        for p in self.store.iter("/pods"):
            if (p.get("spec") or {}).get("nodeName") in self.nodes:
                yield (p["metadata"]["namespace"], p["metadata"]["name"])

    def _wake(self, key: Hashable, delay: float) -> None:
        loop = asyncio.get_running_loop()
        at = loop.time() + max(0.0, delay)
        cur = self._wakeups.get(key)
        if cur is not None and cur <= at + 0.001:
            return
        self._wakeups[key] = at
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._handles.discard(handle)
            if self._wakeups.get(key) == at:
                del self._wakeups[key]
                self.enqueue(key)

        handle = loop.call_at(at, fire)
        self._handles.add(handle)

    def _spawn_task(self, rt: PodRuntime | None, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        bucket = rt.tasks if rt is not None else self._orphans
        bucket.add(task)
        task.add_done_callback(bucket.discard)
        task.add_done_callback(_log_task_error)
        return task

    def _kubelet_running(self, node: str) -> bool:
        try:
            nodes = self.cluster.controller("nodes")
        except KeyError:
            return True
        fn = getattr(nodes, "kubelet_running", None)
        return bool(fn(node)) if fn is not None else True

    def _event(self, pod: dict[str, Any], type_: str, reason: str, message: str) -> None:
        events.record(
            self.api,
            _pod_ref(pod),
            type_,
            reason,
            message,
            "kubelet",
            (pod.get("spec") or {}).get("nodeName", ""),
        )

    # -- the sync loop -----------------------------------------------------------------------
    async def reconcile(self, key: Hashable) -> float | None:
        ns, name = cast("tuple[str, str]", key)
        pod = self.store.peek("/pods", ns, name)
        uid = self.by_key.get((ns, name))
        if uid is not None and (pod is None or pod["metadata"]["uid"] != uid):
            # The pod we ran is gone (or replaced by another with the same name).
            self._remove(self.pods[uid])
        if pod is None:
            self._blocked.discard((ns, name))
            return None
        node = (pod.get("spec") or {}).get("nodeName")
        if node not in self.nodes or not self._kubelet_running(node):
            return None
        pod = deep_copy(pod)
        rt = self.pods.get(pod["metadata"]["uid"])
        if rt is None:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and not pod["metadata"].get(
                "deletionTimestamp"
            ):
                return None
            rt = self._new_runtime(pod, node)
        if pod["metadata"].get("deletionTimestamp"):
            self._sync_terminating(pod, rt)
            return None
        self._sync(pod, rt)
        return None

    def _new_runtime(self, pod: dict[str, Any], node: str) -> PodRuntime:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        uid = meta["uid"]
        containers: dict[str, Container] = {}
        init_names, main_names = [], []
        for c in spec.get("initContainers") or []:
            kind = "sidecar" if c.get("restartPolicy") == "Always" else "init"
            containers[c["name"]] = Container(c["name"], c, kind)
            init_names.append(c["name"])
        for c in spec.get("containers") or []:
            containers[c["name"]] = Container(c["name"], c, "main")
            main_names.append(c["name"])
        rt = PodRuntime(
            uid=uid,
            ns=meta["namespace"],
            name=meta["name"],
            node=node,
            process=is_process_pod(pod),
            pod_dir=self.cluster.data_dir / "kubelet" / "pods" / uid,
            log_dir=self.cluster.data_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{uid}",
            containers=containers,
            init_names=init_names,
            main_names=main_names,
            grace=float(spec.get("terminationGracePeriodSeconds", 30) or 0),
        )
        self.pods[uid] = rt
        self.by_key[(rt.ns, rt.name)] = uid
        return rt

    def _sync(self, pod: dict[str, Any], rt: PodRuntime) -> None:
        key = (rt.ns, rt.name)
        rt.grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30) or 0)
        if rt.rejected or rt.stopped:
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") and all(c.state != "running" for c in rt.containers.values()):
            return
        if not rt.start_time:
            rt.start_time = now()
            # lifecycle.GeneralPredicates at admission.
            node = self.store.peek("/nodes", "", rt.node)
            if node is not None and not pod_matches_node_affinity(pod, node):
                rt.rejected = True
                msg = "Pod was rejected: Predicate NodeAffinity failed"
                self._event(pod, "Warning", "NodeAffinity", msg)
                self._write_status(pod, rt, reject=("NodeAffinity", msg))
                return
        # -- volumes --
        if rt.volumes is None:
            problem = self._volumes_problem(pod, rt)
            if problem is not None:
                self._blocked.add(key)
                reason, msg, component = problem
                events.record(
                    self.api,
                    _pod_ref(pod),
                    "Warning",
                    reason,
                    msg,
                    component,
                    rt.node if component == "kubelet" else "",
                )
                self._write_status(pod, rt)
                self._wake(key, 2.0)
                return
            self._blocked.discard(key)
            if not rt.preparing:
                rt.preparing = True
                self._spawn_task(rt, self._prepare_volumes(deep_copy(pod), rt))
            self._write_status(pod, rt)
            return
        # -- sandbox --
        if not rt.ip:
            rt.ip = node_ip(rt.node) if (pod.get("spec") or {}).get("hostNetwork") else self._alloc_ip()
        if rt.process and rt.hosts_file is None:
            self._make_hosts_file(pod, rt)
        # -- init containers --
        policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
        initialized = True
        for name in rt.init_names:
            c = rt.containers[name]
            if c.kind == "sidecar":
                if c.final:
                    continue
                self._ensure_running(pod, rt, c, "Always")
                if not (c.state == "running" and c.started):
                    initialized = False
                    break
                continue
            if c.state == "terminated" and c.exit_code == 0:
                continue
            initialized = False
            if c.busy or c.state == "running":
                break
            if c.state == "waiting" and c.term is None and c.instance == 0:
                self._start(pod, rt, c)
                break
            # A failed init container: restarted unless the pod never restarts.
            if policy == "Never":
                break
            self._restart_with_backoff(pod, rt, c)
            break
        if initialized:
            for name in rt.main_names:
                self._ensure_running(pod, rt, rt.containers[name], policy)
            self._stop_sidecars_when_done(pod, rt, policy)
        # -- readiness without probes --
        mono = time.monotonic()
        for c in rt.containers.values():
            if c.state == "running" and c.ready_at is not None and c.ready_at > mono:
                self._wake(key, c.ready_at - mono)
        self._write_status(pod, rt)

    def _ensure_running(self, pod: dict[str, Any], rt: PodRuntime, c: Container, policy: str) -> None:
        if c.busy or c.state == "running" or c.final:
            return
        if c.term is None:
            # Never started, or waiting after a configuration error (retried after a while;
            # a CreateContainerError of kubesim's own, e.g. no mount namespace, is final).
            if c.reason == "CreateContainerError" and c.message:
                return
            mono = time.monotonic()
            if c.retry_at > mono:
                self._wake((rt.ns, rt.name), c.retry_at - mono)
                return
            self._start(pod, rt, c)
            return
        restart = policy == "Always" or (policy == "OnFailure" and c.exit_code != 0)
        if c.kind == "sidecar":
            restart = True
        if restart:
            self._restart_with_backoff(pod, rt, c)

    def _restart_with_backoff(self, pod: dict[str, Any], rt: PodRuntime, c: Container) -> None:
        """kuberuntime_manager.go: doBackOff, then a new instance (restartCount + 1)."""
        cfg = self.cluster.config
        mono = time.monotonic()
        if c.backoff is not None and mono - c.backoff_at > 2 * cfg.crash_backoff_max:
            c.backoff = None  # the back-off entry expired (backoff.GC)
        if c.backoff is not None and mono - c.finished_mono < c.backoff:
            if c.reason != "CrashLoopBackOff" or c.state != "waiting":
                c.state, c.reason = "waiting", "CrashLoopBackOff"
                c.message = f"back-off {go_duration(c.backoff)} restarting failed container={c.name} pod={_format_pod(pod)}"
                self._event(
                    pod,
                    "Warning",
                    "BackOff",
                    f"Back-off restarting failed container {c.name} in pod {_format_pod(pod)}",
                )
            self._wake((rt.ns, rt.name), c.backoff - (mono - c.finished_mono))
            return
        c.backoff = cfg.crash_backoff if c.backoff is None else min(c.backoff * 2, cfg.crash_backoff_max)
        c.backoff_at = mono
        c.prev_term, c.term = c.term, None
        c.restart_count += 1
        self._start(pod, rt, c)

    # -- volumes -----------------------------------------------------------------------------
    def _volumes_problem(self, pod: dict[str, Any], rt: PodRuntime) -> tuple[str, str, str] | None:
        """The desired-state-of-world populator's checks: (event reason, message, component) or None."""
        ns = rt.ns
        failed: list[str] = []
        err = ""
        for vol_name, claim, _eph in pod_claim_names(pod):
            pvc = self.store.peek("/persistentvolumeclaims", ns, claim)
            e = ""
            if pvc is None:
                e = (
                    f"error processing PVC {ns}/{claim}: failed to fetch PVC from API server: "
                    f'persistentvolumeclaims "{claim}" not found'
                )
            elif pvc["metadata"].get("deletionTimestamp"):
                e = f"error processing PVC {ns}/{claim}: can't start pod because PVC {ns}/{claim} is being deleted"
            elif (pvc.get("status") or {}).get("phase") != "Bound" or not (pvc.get("spec") or {}).get(
                "volumeName"
            ):
                e = (
                    f"error processing PVC {ns}/{claim}: PVC {ns}/{claim} has non-bound phase "
                    f'("{(pvc.get("status") or {}).get("phase", "")}") or empty pvc.Spec.VolumeName '
                    f'("{(pvc.get("spec") or {}).get("volumeName", "")}")'
                )
            else:
                pv_name = pvc["spec"]["volumeName"]
                pv = self.store.peek("/persistentvolumes", "", pv_name)
                if pv is None:
                    e = (
                        f"error processing PVC {ns}/{claim}: failed to fetch PV {pv_name} from API server: "
                        f'persistentvolumes "{pv_name}" not found'
                    )
                else:
                    ref = (pv.get("spec") or {}).get("claimRef") or {}
                    if not ref:
                        e = (
                            f'error processing PVC {ns}/{claim}: found PV object "{pv_name}" but it has a nil '
                            "pv.Spec.ClaimRef indicating it is not yet bound to the claim"
                        )
                    elif ref.get("uid") != pvc["metadata"]["uid"]:
                        e = (
                            f'error processing PVC {ns}/{claim}: found PV object "{pv_name}" but its '
                            f'pv.Spec.ClaimRef.UID ("{ref.get("uid", "")}") does not point to claim.UID '
                            f'("{pvc["metadata"]["uid"]}")'
                        )
                    else:
                        attach = self._multi_attach(pod, rt, pv)
                        if attach is not None:
                            return ("FailedAttachVolume", attach, "attachdetach-controller")
            if e:
                failed.append(vol_name)
                err = err or e
        if not failed:
            return None
        # volume_manager.go: WaitForAttachAndMount; kubelet.go: "Unable to attach or mount volumes: %v"
        names = " ".join(sorted(failed))
        return (
            "FailedMount",
            f"Unable to attach or mount volumes: unmounted volumes=[{names}], unattached volumes=[], "
            f"failed to process volumes=[{names}]: {err}",
            "kubelet",
        )

    def _multi_attach(self, pod: dict[str, Any], rt: PodRuntime, pv: dict[str, Any]) -> str | None:
        """attachdetach controller, reconciler.go: reportMultiAttachError for a ReadWriteOnce volume
        still attached to another node (used by a pod there that is not gone)."""
        spec = pv.get("spec") or {}
        csi = spec.get("csi") or {}
        if not csi.get("driver"):
            return None
        modes = set(spec.get("accessModes") or [])
        if modes & {"ReadWriteMany", "ReadOnlyMany"}:
            return None
        driver = self.store.peek("storage.k8s.io/csidrivers", "", csi["driver"])
        if driver is not None and (driver.get("spec") or {}).get("attachRequired") is False:
            return None
        users = []
        for other in self.store.iter("/pods"):
            ospec = other.get("spec") or {}
            if (
                other["metadata"]["uid"] == rt.uid
                or not ospec.get("nodeName")
                or ospec["nodeName"] == rt.node
            ):
                continue
            if (other.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            ons = other["metadata"]["namespace"]
            for _v, claim, _e in pod_claim_names(other):
                pvc = self.store.peek("/persistentvolumeclaims", ons, claim)
                if pvc is not None and (pvc.get("spec") or {}).get("volumeName") == pv["metadata"]["name"]:
                    users.append(other)
        if not users:
            return None
        same_ns = [u["metadata"]["name"] for u in users if u["metadata"]["namespace"] == rt.ns]
        if same_ns:
            detail = f"Volume is already used by pod(s) {', '.join(sorted(same_ns))}"
        else:
            detail = f"Volume is already used by {len(users)} pod(s) in different namespaces"
        return f'Multi-Attach error for volume "{pv["metadata"]["name"]}" {detail}'

    async def _prepare_volumes(self, pod: dict[str, Any], rt: PodRuntime) -> None:
        """Set up every volume (the volume plugins' SetUp), then let the sync loop go on."""
        key = (rt.ns, rt.name)
        try:
            plan = self._volume_plan(pod, rt)
            loop = asyncio.get_running_loop()
            vols = await loop.run_in_executor(None, _set_up_volumes, plan)
        except ConfigError as e:
            rt.preparing = False
            self._blocked.add(key)
            self._event(pod, "Warning", "FailedMount", str(e))
            self._wake(key, 2.0)
            return
        rt.volumes = vols
        rt.preparing = False
        self.enqueue(key)

    def _volume_plan(self, pod: dict[str, Any], rt: PodRuntime) -> list[dict[str, Any]]:
        """What each volume is, resolved against the API (configMaps, secrets, PVs) now."""
        spec = pod.get("spec") or {}
        sc = spec.get("securityContext") or {}
        fs_group = sc.get("fsGroup")
        policy = sc.get("fsGroupChangePolicy") or "Always"
        plan: list[dict[str, Any]] = []
        base = rt.pod_dir / "volumes"
        claims = {v: c for v, c, _ in pod_claim_names(pod)}
        for v in spec.get("volumes") or []:
            name = v.get("name", "")
            item: dict[str, Any] = {
                "name": name,
                "fs_group": fs_group,
                "policy": policy,
                "read_only": False,
            }
            if name in claims:
                pvc = self.store.peek("/persistentvolumeclaims", rt.ns, claims[name])
                pv = self.store.peek(
                    "/persistentvolumes", "", ((pvc or {}).get("spec") or {}).get("volumeName", "")
                )
                if pvc is None or pv is None:
                    raise ConfigError(
                        f'MountVolume.SetUp failed for volume "{name}" : the claim is not bound'
                    )
                path = storage.volume_dir(self.cluster.data_dir, pv)
                pv_name = pv["metadata"]["name"]
                if path is None:
                    raise ConfigError(
                        f'MountVolume.SetUp failed for volume "{pv_name}" : kubesim cannot mount this kind of '
                        "volume (only its CSI drivers' volumes, hostPath and local)"
                    )
                pspec = pv.get("spec") or {}
                ro = bool((v.get("persistentVolumeClaim") or {}).get("readOnly")) or bool(
                    (pspec.get("csi") or {}).get("readOnly")
                )
                item.update(kind="pv", path=str(path), pv=pv_name, read_only=ro)
                if pspec.get("csi"):
                    item["must_exist"] = True
                    item["fs_group"] = fs_group if self._csi_supports_fs_group(pv) else None
                elif pspec.get("hostPath"):
                    item["fs_group"] = None  # hostPath volumes do not support ownership management
                    item["create"] = (pspec["hostPath"].get("type") or "") in ("", "DirectoryOrCreate")
                    item["must_exist"] = not item["create"]
                else:
                    item["must_exist"] = True
            elif isinstance(v.get("emptyDir"), dict) or "emptyDir" in v:
                item.update(kind="emptyDir", path=str(base / "kubernetes.io~empty-dir" / name))
            elif isinstance(v.get("hostPath"), dict):
                hp = v["hostPath"]
                t = hp.get("type") or ""
                item.update(kind="hostPath", path=hp.get("path", ""), fs_group=None, host_type=t)
            elif isinstance(v.get("configMap"), dict):
                files = self._configmap_files(rt.ns, v["configMap"], name)
                item.update(
                    kind="files",
                    path=str(base / "kubernetes.io~configmap" / name),
                    files=files,
                    read_only=True,
                )
            elif isinstance(v.get("secret"), dict):
                files = self._secret_files(rt.ns, v["secret"], name)
                item.update(
                    kind="files", path=str(base / "kubernetes.io~secret" / name), files=files, read_only=True
                )
            elif isinstance(v.get("downwardAPI"), dict):
                files = self._downward_files(pod, rt, v["downwardAPI"])
                item.update(
                    kind="files",
                    path=str(base / "kubernetes.io~downward-api" / name),
                    files=files,
                    read_only=True,
                )
            elif isinstance(v.get("projected"), dict):
                files = self._projected_files(pod, rt, v["projected"], name)
                item.update(
                    kind="files",
                    path=str(base / "kubernetes.io~projected" / name),
                    files=files,
                    read_only=True,
                )
            else:
                kinds = [k for k in v if k != "name"]
                raise ConfigError(
                    f'MountVolume.SetUp failed for volume "{name}" : kubesim does not support '
                    f"{kinds[0] if kinds else 'this'} volumes"
                )
            plan.append(item)
        return plan

    def _csi_supports_fs_group(self, pv: dict[str, Any]) -> bool:
        """csi_mounter.go: supportsFSGroup, from the CSIDriver's fsGroupPolicy (default
        ReadWriteOnceWithFSType: only with an fsType and a ReadWriteOnce(Pod) volume)."""
        spec = pv.get("spec") or {}
        csi = spec.get("csi") or {}
        driver = self.store.peek("storage.k8s.io/csidrivers", "", csi.get("driver", ""))
        policy = ((driver or {}).get("spec") or {}).get("fsGroupPolicy") or "ReadWriteOnceWithFSType"
        if policy == "None":
            return False
        if policy == "File":
            return True
        if not csi.get("fsType"):
            return False
        modes = set(spec.get("accessModes") or [])
        return bool(modes & {"ReadWriteOnce", "ReadWriteOncePod"})

    def _configmap_files(self, ns: str, src: dict[str, Any], vol: str) -> dict[str, tuple[bytes, int]]:
        cm = self.store.peek("/configmaps", ns, src.get("name", ""))
        if cm is None:
            if src.get("optional"):
                return {}
            raise ConfigError(
                f'MountVolume.SetUp failed for volume "{vol}" : configmap "{src.get("name", "")}" not found'
            )
        data = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
        import base64

        data.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
        return _project_items(data, src, vol, "configmap", cm, int(src.get("defaultMode", 0o644)))

    def _secret_files(self, ns: str, src: dict[str, Any], vol: str) -> dict[str, tuple[bytes, int]]:
        sec = self.store.peek("/secrets", ns, src.get("secretName", src.get("name", "")))
        if sec is None:
            if src.get("optional"):
                return {}
            raise ConfigError(
                f'MountVolume.SetUp failed for volume "{vol}" : secret "{src.get("secretName", src.get("name", ""))}" not found'
            )
        data = runtime.decode_secret(sec.get("data"))
        return _project_items(data, src, vol, "secret", sec, int(src.get("defaultMode", 0o644)))

    def _downward_files(
        self, pod: dict[str, Any], rt: PodRuntime, src: dict[str, Any], default_mode: int | None = None
    ) -> dict[str, tuple[bytes, int]]:
        mode = int(src.get("defaultMode", default_mode if default_mode is not None else 0o644))
        out: dict[str, tuple[bytes, int]] = {}
        for item in src.get("items") or []:
            if item.get("fieldRef"):
                value = self._field_ref(pod, rt, item["fieldRef"].get("fieldPath", ""), volume=True)
            elif item.get("resourceFieldRef"):
                c = next(
                    (
                        x
                        for x in (pod.get("spec") or {}).get("containers") or []
                        if x.get("name") == item["resourceFieldRef"].get("containerName")
                    ),
                    None,
                )
                value = self._resource_ref(c or {}, item["resourceFieldRef"])
            else:
                continue
            out[item.get("path", "")] = (value.encode(), int(item.get("mode", mode)))
        return out

    def _projected_files(
        self, pod: dict[str, Any], rt: PodRuntime, src: dict[str, Any], vol: str
    ) -> dict[str, tuple[bytes, int]]:
        mode = int(src.get("defaultMode", 0o644))
        out: dict[str, tuple[bytes, int]] = {}
        for s in src.get("sources") or []:
            if s.get("configMap"):
                out.update(self._configmap_files(rt.ns, {**s["configMap"], "defaultMode": mode}, vol))
            elif s.get("secret"):
                sec = dict(s["secret"])
                sec.setdefault("secretName", sec.get("name", ""))
                out.update(self._secret_files(rt.ns, {**sec, "defaultMode": mode}, vol))
            elif s.get("downwardAPI"):
                out.update(self._downward_files(pod, rt, s["downwardAPI"], mode))
            elif s.get("serviceAccountToken"):
                tok = s["serviceAccountToken"]
                sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
                try:
                    token = self.cluster.service_account_token(
                        rt.ns, sa, int(tok.get("expirationSeconds") or 3607)
                    )
                except StatusError as e:
                    raise ConfigError(f'MountVolume.SetUp failed for volume "{vol}" : {e.message}') from None
                out[tok.get("path", "token")] = (token.encode(), mode)
            elif s.get("clusterTrustBundle"):
                out[s["clusterTrustBundle"].get("path", "ca.crt")] = (self.cluster.certs.ca_pem, mode)
        return out

    # -- environment (kubelet_pods.go: makeEnvironmentVariables) -------------------------------
    def _field_ref(self, pod: dict[str, Any], rt: PodRuntime, path: str, volume: bool = False) -> str:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        if path.startswith(("metadata.labels[", "metadata.annotations[")):
            which = "labels" if path.startswith("metadata.labels[") else "annotations"
            k = path[path.index("[") + 1 : -1].strip("'\"")
            return str((meta.get(which) or {}).get(k, ""))
        if path in ("metadata.labels", "metadata.annotations"):
            d = meta.get(path.split(".")[1]) or {}
            # fieldpath.FormatMap: sorted key="value" lines
            return "\n".join(f'{k}="{_go_quote(str(v))}"' for k, v in sorted(d.items()))
        host = node_ip(rt.node)
        values = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "status.hostIP": host,
            "status.hostIPs": host,
            "status.podIP": rt.ip,
            "status.podIPs": rt.ip,
        }
        if path not in values:
            raise ConfigError(f'unsupported fieldRef "{path}"', "CreateContainerConfigError")
        return str(values[path])

    def _resource_ref(self, c: dict[str, Any], ref: dict[str, Any]) -> str:
        res = ref.get("resource", "")
        kind, _, name = res.partition(".")
        resources = c.get("resources") or {}
        value = (resources.get(kind) or {}).get(name)
        if value is None and kind == "requests":
            value = (resources.get("limits") or {}).get(name)
        if value is None:
            node = self.store.peek("/nodes", "", next(iter(sorted(self.nodes)), ""))
            value = (((node or {}).get("status") or {}).get("allocatable") or {}).get(name, "0")
        divisor = parse_quantity(ref.get("divisor") or "1") or 1.0
        # pkg/api/v1/resource: ExtractContainerResourceValue rounds up.
        return str(math.ceil(parse_quantity(value) / divisor - 1e-9))

    def _service_env(self, pod: dict[str, Any], ns: str) -> dict[str, str]:
        """``getServiceEnvVarMap``: the master service's variables always, and with
        ``enableServiceLinks`` (default true) those of every Service of the pod's namespace that
        has a cluster IP (``envvars.FromServices``). kubesim has no ``kubernetes`` Service and no
        kube-proxy: the master service's variables name the API server's own address, where
        upstream they name the Service's cluster IP and port 443, which kube-proxy routes to it."""
        services: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        if (pod.get("spec") or {}).get("enableServiceLinks", True):
            for svc in self.store.iter("/services", ns):
                spec = svc.get("spec") or {}
                ip = str(spec.get("clusterIP") or "")
                if ip and ip != "None" and spec.get("ports"):
                    services[svc["metadata"]["name"]] = (ip, list(spec["ports"]))
        # The master service wins over a Service of the same name in the pod's namespace.
        services["kubernetes"] = (
            self.cluster.config.host,
            [{"name": "https", "port": self.cluster.port, "protocol": "TCP"}],
        )
        return {k: v for name, (ip, ports) in services.items() for k, v in _service_vars(name, ip, ports)}

    def _container_env(self, pod: dict[str, Any], rt: PodRuntime, c: dict[str, Any]) -> dict[str, str]:
        """``makeEnvironmentVariables``: envFrom, then env, ``$(VAR)`` expanded against them and
        the service variables, then the service variables the container does not set itself."""
        ns = rt.ns
        service_env = self._service_env(pod, ns)
        env: dict[str, str] = {}
        for ef in c.get("envFrom") or []:
            prefix = ef.get("prefix") or ""
            if ef.get("configMapRef"):
                ref = ef["configMapRef"]
                cm = self.store.peek("/configmaps", ns, ref.get("name", ""))
                if cm is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f'configmap "{ref.get("name", "")}" not found')
                for k, v in (cm.get("data") or {}).items():
                    env[prefix + k] = str(v)
            elif ef.get("secretRef"):
                ref = ef["secretRef"]
                sec = self.store.peek("/secrets", ns, ref.get("name", ""))
                if sec is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f'secret "{ref.get("name", "")}" not found')
                for k, b in runtime.decode_secret(sec.get("data")).items():
                    env[prefix + k] = b.decode(errors="replace")
        for e in c.get("env") or []:
            name = e.get("name", "")
            vf = e.get("valueFrom")
            if not vf:
                env[name] = runtime.expand(str(e.get("value", "")), {**service_env, **env})
                continue
            if vf.get("fieldRef"):
                env[name] = self._field_ref(pod, rt, vf["fieldRef"].get("fieldPath", ""))
            elif vf.get("resourceFieldRef"):
                env[name] = self._resource_ref(c, vf["resourceFieldRef"])
            elif vf.get("configMapKeyRef"):
                ref = vf["configMapKeyRef"]
                cm = self.store.peek("/configmaps", ns, ref.get("name", ""))
                if cm is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f'configmap "{ref.get("name", "")}" not found')
                data = cm.get("data") or {}
                if ref.get("key") not in data:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(
                        f"couldn't find key {ref.get('key')} in ConfigMap {ns}/{ref.get('name')}"
                    )
                env[name] = str(data[ref["key"]])
            elif vf.get("secretKeyRef"):
                ref = vf["secretKeyRef"]
                sec = self.store.peek("/secrets", ns, ref.get("name", ""))
                if sec is None:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f'secret "{ref.get("name", "")}" not found')
                data = runtime.decode_secret(sec.get("data"))
                if ref.get("key") not in data:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(f"couldn't find key {ref.get('key')} in Secret {ns}/{ref.get('name')}")
                env[name] = data[ref["key"]].decode(errors="replace")
        for k, v in service_env.items():
            env.setdefault(k, v)
        return env

    def _process_spec(self, pod: dict[str, Any], rt: PodRuntime, c: Container) -> runtime.ProcessSpec:
        """The container's process: command, env, user, groups, working directory, mounts."""
        spec = pod.get("spec") or {}
        csc = c.spec.get("securityContext") or {}
        psc = spec.get("securityContext") or {}
        env = self._container_env(pod, rt, c.spec)
        image = self.cluster.config.images.get(normalize_image(str(c.spec.get("image", ""))))
        # kubecontainer.ExpandContainerCommandAndArgs, then the runtime completes them from the
        # image (containerd, internal/cri/opts/spec_opts.go: WithProcessArgs): no command runs
        # the image's Entrypoint, with the container's args or else the image's Cmd.
        command = [runtime.expand(str(x), env) for x in c.spec.get("command") or []]
        args = [runtime.expand(str(x), env) for x in c.spec.get("args") or []]
        if image is not None and not command:
            command = list(image.entrypoint)
            args = args or list(image.cmd)
        argv = command + args
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        image_user = uid is None and image is not None and bool(image.user)
        image_gid: int | None = None
        if image_user:
            assert image is not None
            # kuberuntime_container.go: getImageUser; a non-numeric user cannot be verified.
            user, _, group = image.user.partition(":")
            if not user.isdigit():
                if csc.get("runAsNonRoot", psc.get("runAsNonRoot")):
                    raise ConfigError(
                        f"container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root"
                        f' (pod: "{_format_pod(pod)}", container: {c.name})'
                    )
                raise ConfigError(
                    f"image {c.spec.get('image')} has the non-numeric user {user}: kubesim runs processes by uid only",
                    "CreateContainerError",
                )
            uid = int(user)
            # containerd (WithUser): the image's "uid:gid" group when runAsGroup is not set.
            image_gid = int(group) if group.isdigit() else None
        gid = csc.get("runAsGroup", psc.get("runAsGroup"))
        eff_uid = int(uid) if uid is not None else 0
        if gid is None:
            gid = image_gid if image_gid is not None else runtime.primary_gid(eff_uid)
        if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) and eff_uid == 0:
            # kuberuntime_container_linux.go / security_context_others: verifyRunAsNonRoot
            if uid is None or image_user:
                msg = f'container has runAsNonRoot and image will run as root (pod: "{_format_pod(pod)}", container: {c.name})'
            else:
                msg = f'container\'s runAsUser breaks non-root policy (pod: "{_format_pod(pod)}", container: {c.name})'
            raise ConfigError(msg)
        groups = []
        if psc.get("fsGroup") is not None:
            groups.append(int(psc["fsGroup"]))
        groups += [int(g) for g in psc.get("supplementalGroups") or []]
        hostname = (spec.get("hostname") or rt.name)[:63]
        full_env = {
            "PATH": os.environ.get("PATH", DEFAULT_PATH),
            "HOSTNAME": hostname,
            "HOME": runtime.user_home(eff_uid),
        }
        if image is not None:
            # containerd: the image's Env, then the container's (WithEnv overrides by name).
            full_env.update(dict(x.split("=", 1) for x in image.env if "=" in x))
        full_env.update(env)
        mounts = self._mounts(rt, c, env)
        # kubelet_pods.go: makeMounts adds the hosts file unless the container mounts /etc/hosts.
        if rt.hosts_file is not None and all(m.target.rstrip("/") != dns.ETC_HOSTS for m in mounts):
            mounts.append(runtime.Mount(str(rt.hosts_file), dns.ETC_HOSTS))
        return runtime.ProcessSpec(
            argv=argv,
            env=full_env,
            cwd=c.spec.get("workingDir") or (image.working_dir if image is not None else "") or "/",
            uid=eff_uid,
            gid=int(gid),
            groups=groups,
            mounts=mounts,
            hostname=hostname,
            read_only_root=bool(csc.get("readOnlyRootFilesystem")),
        )

    def _mounts(self, rt: PodRuntime, c: Container, env: dict[str, str]) -> list[runtime.Mount]:
        """kubelet_pods.go: makeMounts (subPath, subPathExpr, readOnly)."""
        out = []
        for vm in c.spec.get("volumeMounts") or []:
            vol = (rt.volumes or {}).get(vm.get("name", ""))
            if vol is None:
                raise ConfigError(
                    f'cannot find volume "{vm.get("name", "")}" to mount into container "{c.name}"',
                    "CreateContainerError",
                )
            src = vol.path
            sub = vm.get("subPath") or ""
            if vm.get("subPathExpr"):
                sub = runtime.expand(str(vm["subPathExpr"]), env)
            if sub:
                if sub.startswith("/") or ".." in Path(sub).parts:
                    raise ConfigError(
                        f"subPath {sub!r} must be a relative path without '..'", "CreateContainerConfigError"
                    )
                src = vol.path / sub
                if not src.exists():
                    # doSafeMakeDir: created with the volume directory's permissions.
                    src.mkdir(parents=True, exist_ok=True)
                    with contextlib.suppress(OSError):
                        os.chmod(src, vol.path.stat().st_mode & 0o7777)
            out.append(
                runtime.Mount(
                    str(src), str(vm.get("mountPath", "")), bool(vm.get("readOnly")) or vol.read_only
                )
            )
        return out

    # -- starting and stopping containers ------------------------------------------------------
    def _start(self, pod: dict[str, Any], rt: PodRuntime, c: Container) -> None:
        c.busy = True
        c.state, c.reason, c.message = "waiting", "ContainerCreating" if c.instance == 0 else c.reason, ""
        if rt.process:
            self._spawn_task(rt, self._start_process(deep_copy(pod), rt, c))
        else:
            self._start_simulated(pod, rt, c)

    def _log_file(self, rt: PodRuntime, c: Container) -> Path:
        return rt.log_dir / c.name / f"{c.restart_count}.log"

    def _begin_instance(self, pod: dict[str, Any], c: Container) -> None:
        c.instance += 1
        c.container_id = f"containerd://{secrets.token_hex(32)}"
        c.image_id = image_id(c.spec.get("image", ""))
        image = c.spec.get("image", "")
        # kuberuntime_image.go: EnsureImageExists with IfNotPresent/Never and the image present.
        self._event(
            pod,
            "Normal",
            "Pulled",
            f'Container image "{image}" already present on machine and can be accessed by the pod',
        )
        self._event(pod, "Normal", "Created", f"Created container: {c.name}")

    def _running(self, pod: dict[str, Any], rt: PodRuntime, c: Container) -> None:
        self._blocked.discard((rt.ns, rt.name))
        c.state, c.reason, c.message = "running", "", ""
        c.started_at = now()
        self._event(pod, "Normal", "Started", f"Started container {c.name}")
        has_startup = rt.process and bool(c.spec.get("startupProbe"))
        c.started = not has_startup
        c.probe_ready = False
        if c.kind == "init" or (rt.process and c.spec.get("readinessProbe")):
            c.ready_at = None
        else:
            c.ready_at = time.monotonic() + self.cluster.config.pod_ready_delay

    def _start_simulated(self, pod: dict[str, Any], rt: PodRuntime, c: Container) -> None:
        _touch(self._log_file(rt, c))
        self._begin_instance(pod, c)
        self._running(pod, rt, c)
        c.busy = False
        if c.kind == "init":
            # An init container without a process completes at once.
            self._terminated(c, 0, "Completed")
        self.enqueue((rt.ns, rt.name))

    def _stop_sidecars_when_done(self, pod: dict[str, Any], rt: PodRuntime, policy: str) -> None:
        """Sidecars are stopped once every regular container has terminated for good."""
        sidecars = [rt.containers[n] for n in rt.init_names if rt.containers[n].kind == "sidecar"]
        if not sidecars or policy == "Always":
            return
        mains = [rt.containers[n] for n in rt.main_names]
        done = all(c.state == "terminated" and (policy == "Never" or c.exit_code == 0) for c in mains)
        if not done:
            return
        for c in sidecars:
            if c.final:
                continue
            c.final = True
            if c.state != "running":
                continue
            self._event(pod, "Normal", "Killing", f"Stopping container {c.name}")
            if c.proc is not None:
                self._spawn_task(rt, self._kill(rt, c, rt.grace))
            else:
                self._terminated(c, 0, "Completed")

    async def _start_process(self, pod: dict[str, Any], rt: PodRuntime, c: Container) -> None:
        key = (rt.ns, rt.name)
        try:
            problem = await runtime.mount_namespace_problem()
            if problem is not None:
                raise ConfigError(problem, "CreateContainerError")
            c.pspec = self._process_spec(pod, rt, c)
            if not c.pspec.argv:
                raise ConfigError(
                    f'kubesim runs a container\'s command on the host and container "{c.name}" has no command',
                    "CreateContainerError",
                )
        except ConfigError as e:
            c.state, c.reason, c.message = "waiting", e.reason, str(e)
            c.busy = False
            c.retry_at = time.monotonic() + 2.0
            self._blocked.add(key)
            self._event(pod, "Warning", "Failed", f"Error: {e}")
            self.enqueue(key)
            return
        log = self._log_file(rt, c)
        fd = _open_log(log)
        self._begin_instance(pod, c)
        try:
            proc, err = await self._launch(c.pspec, stdout=fd, stderr=fd)
        finally:
            os.close(fd)
        if err is not None or rt.stopped or rt.terminating is not None:
            c.busy = False
            if err is not None:
                msg = (
                    "failed to create containerd task: failed to create shim task: OCI runtime create failed: "
                    f"runc create failed: unable to start container process: {err}: unknown"
                )
                c.started_at = now()
                self._terminated(c, 128, "StartError", msg)
                self._event(pod, "Warning", "Failed", f"Error: {msg}")
            else:
                runtime.signal_group(proc, signal.SIGKILL)
                await proc.wait()
                self._terminated(c, 137, "Error")
            self.enqueue(key)
            return
        c.proc = proc
        c.mnt_ns = runtime.pin_mount_namespace(proc.pid)
        self._procs.add(proc)
        self._running(pod, rt, c)
        c.busy = False
        inst = c.instance
        c.tasks = [self._spawn_task(rt, self._watch(rt, c, proc, inst, c.mnt_ns))]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c.spec.get(kind)
            if isinstance(probe, dict):
                c.tasks.append(self._spawn_task(rt, self._probe_loop(pod, rt, c, inst, kind, probe)))
        self.enqueue(key)

    async def _watch(
        self,
        rt: PodRuntime,
        c: Container,
        proc: asyncio.subprocess.Process,
        inst: int,
        ns: runtime.Namespace | None,
    ) -> None:
        try:
            rc = await proc.wait()
            self._procs.discard(proc)
            # The process group may have left children behind: they go with the container, and so
            # do processes that left the group (setsid), found by the container's mount namespace
            # (a container's processes die with its init process, as in its PID namespace).
            runtime.signal_group(proc, signal.SIGKILL)
            if ns is not None:
                await asyncio.get_running_loop().run_in_executor(None, runtime.kill_namespace, ns)
        finally:
            if ns is not None:
                ns.close()
        if c.instance != inst or c.state != "running":
            return
        code = runtime.exit_code(rc)
        self._terminated(c, code, "Completed" if code == 0 else "Error")
        c.proc = None
        self.enqueue((rt.ns, rt.name))

    def _terminated(self, c: Container, code: int, reason: str, message: str = "") -> None:
        c.state, c.reason, c.message = "terminated", "", ""
        c.ready_at = None
        c.probe_ready = False
        c.started = False
        c.finished_mono = time.monotonic()
        term: dict[str, Any] = {
            "exitCode": code,
            "reason": reason,
            "startedAt": c.started_at or now(),
            "finishedAt": now(),
            "containerID": c.container_id,
        }
        if message:
            term["message"] = message
        c.term = term

    async def _kill(self, rt: PodRuntime, c: Container, grace: float) -> None:
        """killContainer: SIGTERM, the grace period (at least 2 s), SIGKILL."""
        proc = c.proc
        if proc is not None:
            await runtime.stop_process(proc, max(grace, MIN_GRACE_SECONDS))

    # -- probes (pkg/kubelet/prober/worker.go) ---------------------------------------------------
    async def _probe_loop(
        self, pod: dict[str, Any], rt: PodRuntime, c: Container, inst: int, kind: str, probe: dict[str, Any]
    ) -> None:
        scale = self.cluster.config.probe_period_scale
        period = max(1, int(probe.get("periodSeconds", 10))) * scale
        timeout = max(1, int(probe.get("timeoutSeconds", 1)))
        success_t = max(1, int(probe.get("successThreshold", 1)))
        failure_t = max(1, int(probe.get("failureThreshold", 3)))
        label = {"startupProbe": "Startup", "readinessProbe": "Readiness", "livenessProbe": "Liveness"}[kind]
        await asyncio.sleep(int(probe.get("initialDelaySeconds", 0)) * scale)
        ok_run = fail_run = 0
        key = (rt.ns, rt.name)
        while c.instance == inst and c.state == "running" and rt.terminating is None:
            if kind != "startupProbe" and not c.started:
                await asyncio.sleep(min(period, 0.1))
                continue
            ok, output = await self._run_probe(rt, c, probe, timeout)
            if c.instance != inst or c.state != "running" or rt.terminating is not None:
                return
            if ok:
                ok_run, fail_run = ok_run + 1, 0
            else:
                ok_run, fail_run = 0, fail_run + 1
                self._event(pod, "Warning", "Unhealthy", f"{label} probe failed: {output.strip()}")
            if kind == "readinessProbe":
                if ok and ok_run >= success_t and not c.probe_ready:
                    c.probe_ready = True
                    self.enqueue(key)
                elif not ok and fail_run >= failure_t and c.probe_ready:
                    c.probe_ready = False
                    self.enqueue(key)
            elif kind == "startupProbe" and ok:
                c.started = True
                self.enqueue(key)
                return
            elif not ok and fail_run >= failure_t:
                # Liveness or startup failure: the container is killed and restarted per policy.
                what = "liveness" if kind == "livenessProbe" else "startup"
                self._event(
                    pod, "Normal", "Killing", f"Container {c.name} failed {what} probe, will be restarted"
                )
                grace = probe.get("terminationGracePeriodSeconds")
                await self._kill(rt, c, float(grace) if grace is not None else rt.grace)
                return
            await asyncio.sleep(period)

    async def _run_probe(
        self, rt: PodRuntime, c: Container, probe: dict[str, Any], probe_timeout: float
    ) -> tuple[bool, str]:
        host = rt.ip or "127.0.0.1"
        if probe.get("exec"):
            if c.pspec is None:
                return False, "no process"
            argv = [str(a) for a in probe["exec"].get("command") or []]
            return await runtime.exec_probe(c.pspec, argv, probe_timeout, spawner=self._launch)
        if probe.get("tcpSocket"):
            t = probe["tcpSocket"]
            port = self._port(c, t.get("port"))
            return await runtime.tcp_probe(t.get("host") or host, port, probe_timeout)
        if probe.get("httpGet"):
            h = probe["httpGet"]
            port = self._port(c, h.get("port"))
            return await runtime.http_probe(
                h.get("scheme") or "HTTP",
                h.get("host") or host,
                port,
                h.get("path") or "/",
                h.get("httpHeaders") or [],
                probe_timeout,
            )
        return False, "kubesim does not run gRPC probes"

    @staticmethod
    def _port(c: Container, port: Any) -> int:
        if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
            return int(port)
        for p in c.spec.get("ports") or []:
            if p.get("name") == port:
                return int(p.get("containerPort", 0))
        return 0

    # -- deletion --------------------------------------------------------------------------------
    def _sync_terminating(self, pod: dict[str, Any], rt: PodRuntime) -> None:
        if rt.terminating is None and not rt.stopped:
            grace = pod["metadata"].get("deletionGracePeriodSeconds")
            grace_s = float(grace) if grace is not None else rt.grace
            rt.terminating = self._spawn_task(rt, self._terminate(deep_copy(pod), rt, grace_s))
            self._write_status(pod, rt)
            return
        if not rt.stopped:
            return
        # status_manager.go: syncPod writes the terminal status, then canBeDeleted -> delete(0).
        self._write_status(pod, rt, terminal=True)
        meta = pod["metadata"]
        if meta.get("finalizers"):
            return
        try:
            self.api.delete(
                self.pod_rt,
                rt.ns,
                rt.name,
                {"gracePeriodSeconds": 0, "preconditions": {"uid": rt.uid}},
            )
        except StatusError as e:
            if e.code not in (404, 409):
                raise

    async def _terminate(self, pod: dict[str, Any], rt: PodRuntime, grace: float) -> None:
        """killPod: every running container gets SIGTERM, the grace period, SIGKILL."""
        stop_delay = self.cluster.config.pod_stop_delay
        waits = []
        for c in rt.containers.values():
            if c.state != "running":
                continue
            self._event(pod, "Normal", "Killing", f"Stopping container {c.name}")
            if c.proc is not None:
                waits.append(self._kill(rt, c, grace))
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)
        simulated = [c for c in rt.containers.values() if c.state == "running" and c.proc is None]
        if simulated:
            await asyncio.sleep(min(stop_delay, grace))
            for c in simulated:
                if c.state == "running":
                    self._terminated(c, 0, "Completed")
        # Let the process watchers record the exits.
        await asyncio.sleep(0)
        for c in rt.containers.values():
            for t in c.tasks:
                t.cancel()
            if c.state == "running":
                rc = c.proc.returncode if c.proc is not None else None
                code = runtime.exit_code(rc) if rc is not None else 137
                self._terminated(c, code, "Completed" if code == 0 else "Error")
            c.busy = False
        rt.stopped = True
        self._release_ip(rt)
        self.enqueue((rt.ns, rt.name))

    def _remove(self, rt: PodRuntime) -> None:
        """HandlePodRemoves: the pod is gone from the API; stop what still runs, then clean up."""
        self.pods.pop(rt.uid, None)
        self._dns_pods.discard(rt.uid)
        if self.by_key.get((rt.ns, rt.name)) == rt.uid:
            del self.by_key[(rt.ns, rt.name)]

        async def finish() -> None:
            if rt.terminating is not None and not rt.terminating.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await rt.terminating
            procs = [c for c in rt.containers.values() if c.proc is not None and c.proc.returncode is None]
            if procs:
                await asyncio.gather(*(self._kill(rt, c, rt.grace) for c in procs), return_exceptions=True)
            for t in list(rt.tasks):
                t.cancel()
            self._release_ip(rt)
            await asyncio.get_running_loop().run_in_executor(None, _cleanup_dirs, rt.pod_dir, rt.log_dir)

        self._spawn_task(None, finish())

    # -- /etc/hosts and cluster names (dns.py) -----------------------------------------------------
    def _make_hosts_file(self, pod: dict[str, Any], rt: PodRuntime) -> None:
        """makeHostsMount / ensureHostsFile: <pod dir>/etc-hosts, with kubesim's DNS records."""
        rt.hosts_base = dns.kubelet_hosts_content(pod, rt.ip)
        rt.cluster_dns = dns.uses_cluster_dns(pod)
        path = rt.pod_dir / "etc-hosts"
        path.parent.mkdir(parents=True, exist_ok=True)
        records = self._dns_records() if rt.cluster_dns else []
        dns.rewrite_in_place(path, self._hosts_text(rt, records))
        rt.hosts_file = path
        if rt.cluster_dns:
            self._dns_pods.add(rt.uid)

    def _dns_records(self) -> list[tuple[str, str]]:
        return dns.service_records(self.store.iter("/services"), self.store.iter("/pods"))

    @staticmethod
    def _hosts_text(rt: PodRuntime, records: list[tuple[str, str]]) -> str:
        if not rt.cluster_dns:
            return rt.hosts_base
        return rt.hosts_base + dns.records_content(records, rt.ns)

    def _schedule_hosts_refresh(self) -> None:
        if self._hosts_refresh is not None:
            return
        if not self._dns_pods:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._hosts_refresh = loop.call_later(self.cluster.config.dns_refresh_delay, self._refresh_hosts)

    def _refresh_hosts(self) -> None:
        """Rewrite the records of every process pod's hosts file (in place: same inode)."""
        self._hosts_refresh = None
        records = self._dns_records()
        for uid in list(self._dns_pods):
            rt = self.pods.get(uid)
            if rt is None or rt.hosts_file is None or rt.stopped:
                continue
            with contextlib.suppress(OSError):
                dns.rewrite_in_place(rt.hosts_file, self._hosts_text(rt, records))

    # -- freezing writers during volume copies (runtime.stop_processes) ---------------------------
    async def _launch(
        self, spec: runtime.ProcessSpec, **kwargs: Any
    ) -> tuple[asyncio.subprocess.Process, str | None]:
        """runtime.spawn, recorded for freezes; waits while a volume it writes to is frozen (a
        write to a frozen filesystem blocks until the thaw)."""
        while any(runtime.mounts_writable(spec, v) for v in self._frozen):
            await self._thawed.wait()
        self._launches = [x for x in self._launches if x.proc is None or x.proc.returncode is None]
        launch = Launch(spec)
        self._launches.append(launch)

        def started(proc: asyncio.subprocess.Process) -> None:
            launch.proc = proc
            launch.forked.set()

        try:
            return await runtime.spawn(spec, started=started, **kwargs)
        except BaseException:
            if launch.proc is None:
                self._launches.remove(launch)
            raise
        finally:
            launch.forked.set()

    @contextlib.asynccontextmanager
    async def frozen(self, volume: Path) -> AsyncIterator[int]:
        """Freeze the writers of ``volume`` (a directory on the host) for a point-in-time copy:
        every process of every container, exec session or exec probe that mounts it read-write is
        stopped (SIGSTOP, waiting until it is) and continued (SIGCONT) on exit; processes that
        would start meanwhile wait. Yields how many processes were stopped. A no-op with
        ``ClusterConfig.freeze_writers_during_copy`` off."""
        if not self.cluster.config.freeze_writers_during_copy:
            yield 0
            return
        loop = asyncio.get_running_loop()
        key = await loop.run_in_executor(None, os.path.realpath, volume)
        self._frozen[key] = self._frozen.get(key, 0) + 1
        self._thawed.clear()
        stopped: list[int] = []
        try:
            # A launch that has no process yet will have one in a moment; it must be stopped too.
            for x in list(self._launches):
                if x.proc is None and runtime.mounts_writable(x.spec, key):
                    await x.forked.wait()
            roots = [
                x.proc.pid
                for x in self._launches
                if x.proc is not None and x.proc.returncode is None and runtime.mounts_writable(x.spec, key)
            ]
            if roots:
                async with self._freeze_lock:
                    stopped = await loop.run_in_executor(None, runtime.stop_processes, roots)
                    for pid in stopped:
                        self._stop_holds[pid] = self._stop_holds.get(pid, 0) + 1
            yield len(stopped)
        finally:
            if stopped:
                async with self._freeze_lock:
                    last = []
                    for pid in stopped:
                        self._stop_holds[pid] -= 1
                        if not self._stop_holds[pid]:
                            del self._stop_holds[pid]
                            last.append(pid)
                    runtime.continue_processes(last)
            self._frozen[key] -= 1
            if not self._frozen[key]:
                del self._frozen[key]
            if not self._frozen:
                self._thawed.set()

    # -- IPs -------------------------------------------------------------------------------------
    def _alloc_ip(self) -> str:
        # host-local IPAM: sequential allocation in 127.1.0.0-127.254.255.255, skipping live addresses.
        while True:
            n = self._ip_seq
            self._ip_seq = (self._ip_seq + 1) % IP_SPACE
            a, rest = divmod(n, 256 * 254)
            b, c = divmod(rest, 254)
            ip = f"127.{a + 1}.{b}.{c + 1}"
            if ip not in self._ips:
                self._ips.add(ip)
                return ip

    def _release_ip(self, rt: PodRuntime) -> None:
        if rt.ip:
            self._ips.discard(rt.ip)

    # -- status ----------------------------------------------------------------------------------
    def _container_status(self, rt: PodRuntime, c: Container) -> dict[str, Any]:
        image = normalize_image(c.spec.get("image", ""))
        out: dict[str, Any] = {
            "name": c.name,
            "image": image,
            "imageID": c.image_id if c.instance else "",
            "ready": self._is_ready(rt, c),
            "restartCount": c.restart_count,
            "started": c.state == "running" and c.started,
        }
        if c.container_id and (c.state != "waiting" or c.term is not None):
            out["containerID"] = c.container_id
        if c.state == "running":
            out["state"] = {"running": {"startedAt": c.started_at}}
            last = c.prev_term
        elif c.state == "terminated":
            out["state"] = {"terminated": dict(c.term or {})}
            last = c.prev_term
        else:
            waiting: dict[str, Any] = {"reason": c.reason}
            if c.message:
                waiting["message"] = c.message
            out["state"] = {"waiting": waiting}
            last = c.term if c.term is not None else c.prev_term
        out["lastState"] = {"terminated": dict(last)} if last else {}
        mounts = [
            {
                "name": vm.get("name", ""),
                "mountPath": vm.get("mountPath", ""),
                **({"readOnly": True} if vm.get("readOnly") else {}),
                "recursiveReadOnly": "Disabled",
            }
            for vm in c.spec.get("volumeMounts") or []
        ]
        if mounts:
            out["volumeMounts"] = mounts
        return out

    def _is_ready(self, rt: PodRuntime, c: Container) -> bool:
        if c.state != "running" or not c.started or c.kind == "init":
            return False
        if c.ready_at is None:
            return c.probe_ready
        return time.monotonic() >= c.ready_at

    def _write_status(
        self,
        pod: dict[str, Any],
        rt: PodRuntime,
        *,
        terminal: bool = False,
        reject: tuple[str, str] | None = None,
    ) -> None:
        """generateAPIPodStatus, then the status manager's write through pods/status."""
        cur = self.api.get_or_none(self.pod_rt, rt.ns, rt.name)
        if cur is None or cur["metadata"]["uid"] != rt.uid:
            return
        old = cur.get("status") or {}
        spec = cur.get("spec") or {}
        t = now()
        status: dict[str, Any] = {}
        init_statuses = [self._container_status(rt, rt.containers[n]) for n in rt.init_names]
        statuses = [self._container_status(rt, rt.containers[n]) for n in rt.main_names]
        if reject is not None:
            phase, status["reason"], status["message"] = "Failed", reject[0], reject[1]
        else:
            phase = get_phase(spec, statuses, init_statuses, terminal or rt.stopped)
            if old.get("phase") in ("Succeeded", "Failed"):
                phase = old["phase"]  # pods never leave a terminal phase
            if phase == old.get("phase"):
                for k in ("reason", "message"):
                    if old.get(k):
                        status[k] = old[k]
        status["phase"] = phase
        # Conditions: keep those the kubelet does not own, then generate its own.
        prev = {c.get("type"): c for c in old.get("conditions") or []}
        gen = cur["metadata"].get("generation")
        conds = [c for c in old.get("conditions") or [] if c.get("type") not in KUBELET_CONDITIONS]

        def cond(type_: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
            st = "True" if ok else "False"
            p = prev.get(type_)
            c: dict[str, Any] = {"type": type_, "status": st, "lastProbeTime": None}
            if gen is not None:
                c["observedGeneration"] = gen
            c["lastTransitionTime"] = (
                p["lastTransitionTime"]
                if p is not None and p.get("status") == st and p.get("lastTransitionTime")
                else t
            )
            if reason:
                c["reason"] = reason
            if message:
                c["message"] = message
            return c

        sandbox = bool(rt.ip) and not rt.stopped and phase not in ("Succeeded", "Failed")
        conds.append(cond("PodReadyToStartContainers", sandbox))
        # status/generate.go: GeneratePodInitializedCondition
        incomplete = [
            s["name"]
            for s, n in zip(init_statuses, rt.init_names, strict=True)
            if not (
                (rt.containers[n].kind == "sidecar" and (s.get("started") or rt.containers[n].final))
                or ("terminated" in s["state"] and s["state"]["terminated"].get("exitCode") == 0)
            )
        ]
        if phase == "Succeeded":
            conds.append(cond("Initialized", True, "PodCompleted"))
        elif incomplete and not (phase == "Running" and rt.stopped):
            conds.append(
                cond(
                    "Initialized",
                    False,
                    "ContainersNotInitialized",
                    f"containers with incomplete status: [{' '.join(incomplete)}]",
                )
            )
        else:
            conds.append(cond("Initialized", True))
        # GenerateContainersReadyCondition / GeneratePodReadyCondition
        unready = [s["name"] for s in statuses if not s["ready"]]
        unready += [
            s["name"]
            for s, n in zip(init_statuses, rt.init_names, strict=True)
            if rt.containers[n].kind == "sidecar" and not s["ready"]
        ]
        if phase == "Succeeded":
            cr = cond("ContainersReady", False, "PodCompleted")
            ready = cond("Ready", False, "PodCompleted")
        elif unready:
            msg = f"containers with unready status: [{' '.join(unready)}]"
            if incomplete and phase == "Pending":
                cr = cond(
                    "ContainersReady",
                    False,
                    "ContainersNotInitialized",
                    f"containers with incomplete status: [{' '.join(incomplete)}]",
                )
                ready = cond(
                    "Ready",
                    False,
                    "ContainersNotInitialized",
                    f"containers with incomplete status: [{' '.join(incomplete)}]",
                )
            else:
                cr = cond("ContainersReady", False, "ContainersNotReady", msg)
                ready = cond("Ready", False, "ContainersNotReady", msg)
        else:
            cr = cond("ContainersReady", True)
            gates = [g.get("conditionType") for g in spec.get("readinessGates") or []]
            missing = [g for g in gates if (prev.get(g) or {}).get("status") != "True"]
            if missing:
                g = missing[0]
                msg = (
                    f'corresponding condition of pod readiness gate "{g}" does not exist.'
                    if g not in prev
                    else f'the status of pod readiness gate "{g}" is not "True", but {prev[g].get("status")}'
                )
                ready = cond("Ready", False, "ReadinessGatesNotReady", msg)
            else:
                ready = cond("Ready", True)
        conds += [ready, cr, cond("PodScheduled", True)]
        status["conditions"] = conds
        host = node_ip(rt.node)
        status["hostIP"] = host
        status["hostIPs"] = [{"ip": host}]
        ip = rt.ip or old.get("podIP")
        if ip:
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        status["startTime"] = old.get("startTime") or rt.start_time or t
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        status["containerStatuses"] = statuses
        status["qosClass"] = old.get("qosClass", "BestEffort")
        if gen is not None:
            status["observedGeneration"] = gen
        if status == old:
            return
        cur["status"] = status
        try:
            self.api.update(
                self.pod_rt,
                rt.ns,
                rt.name,
                cur,
                WriteOptions.kubelet(),
                subresource="status",
                internal_patch=True,
            )
        except StatusError as e:
            if e.code not in (404, 409, 422):
                raise

    # -- public API ------------------------------------------------------------------------------
    def _runtime(self, ns: str, pod: str) -> PodRuntime | None:
        uid = self.by_key.get((ns, pod))
        return self.pods.get(uid) if uid is not None else None

    def log_path(self, ns: str, pod: str, container: str, previous: bool = False) -> Path | None:
        """The log file of a container's current (or previous) instance, if there is one."""
        rt = self._runtime(ns, pod)
        if rt is None or container not in rt.containers:
            return None
        c = rt.containers[container]
        if previous:
            if c.restart_count == 0 and not (c.state == "waiting" and c.term is not None):
                return None
            n = c.restart_count - 1 if not (c.state == "waiting" and c.term is not None) else c.restart_count
        else:
            if c.instance == 0:
                return None
            n = c.restart_count
        p = rt.log_dir / container / f"{n}.log"
        return p if p.exists() else None

    def crash(self, ns: str, pod: str, container: str | None = None) -> list[str]:
        """Fault: the container's process dies (SIGKILL); it is restarted per restartPolicy."""
        rt = self._runtime(ns, pod)
        if rt is None:
            raise KeyError(f'pod "{ns}/{pod}" is not running on a kubesim node')
        names = [container] if container else rt.main_names[:1]
        crashed = []
        for name in names:
            c = rt.containers.get(name)
            if c is None:
                raise KeyError(f'container "{name}" not found in pod "{ns}/{pod}"')
            if c.state != "running":
                continue
            if c.proc is not None:
                runtime.signal_group(c.proc, signal.SIGKILL)
            else:
                self._terminated(c, 137, "Error")
            crashed.append(name)
        self.enqueue((ns, pod))
        return crashed

    async def exec_process(
        self, ns: str, pod: str, container: str, argv: list[str], stdin: bool
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` in the container: its mount namespace, environment, user and workingDir
        (the CRI Exec the pods/exec endpoint streams). stdout/stderr are pipes."""
        obj = self.store.peek("/pods", ns, pod)
        if obj is None:
            raise ExecError(404, f'pods "{pod}" not found')
        rt = self._runtime(ns, pod)
        names = [c.get("name") for c in (obj.get("spec") or {}).get("containers") or []]
        names += [c.get("name") for c in (obj.get("spec") or {}).get("initContainers") or []]
        if container not in names:
            raise ExecError(400, f"container {container} is not valid for pod {pod}")
        if rt is None or rt.uid != obj["metadata"]["uid"] or container not in rt.containers:
            raise ExecError(400, f'unable to upgrade connection: container not found ("{container}")')
        c = rt.containers[container]
        if c.state != "running":
            raise ExecError(400, f'unable to upgrade connection: container not found ("{container}")')
        problem = await runtime.mount_namespace_problem()
        if problem is not None:
            raise ExecError(500, problem)
        spec = c.pspec
        if spec is None:
            try:
                spec = self._process_spec(deep_copy(obj), rt, c)
            except ConfigError as e:
                raise ExecError(500, str(e)) from None
        proc, _ = await self._launch(
            spec,
            argv=argv,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            report_errors=False,
        )
        self._procs.add(proc)
        self._spawn_task(None, self._reap(proc))
        return proc

    async def _reap(self, proc: asyncio.subprocess.Process) -> None:
        await proc.wait()
        self._procs.discard(proc)

    async def stop(self) -> None:
        for h in list(self._handles):
            h.cancel()
        self._handles.clear()
        if self._hosts_refresh is not None:
            self._hosts_refresh.cancel()
            self._hosts_refresh = None
        await super().stop()
        tasks = [t for rt in self.pods.values() for t in rt.tasks] + list(self._orphans)
        for t in tasks:
            t.cancel()
        procs = [p for p in self._procs if p.returncode is None]
        procs += [
            c.proc
            for rt in self.pods.values()
            for c in rt.containers.values()
            if c.proc is not None and c.proc.returncode is None
        ]
        for p in procs:
            runtime.signal_group(p, signal.SIGKILL)
        for rt in self.pods.values():
            for c in rt.containers.values():
                if c.mnt_ns is not None and c.mnt_ns.fd >= 0:
                    runtime.kill_namespace(c.mnt_ns)
                    c.mnt_ns.close()
        for p in procs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(p.wait(), timeout=5)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def get_phase(
    spec: dict[str, Any], statuses: list[dict[str, Any]], init_statuses: list[dict[str, Any]], terminal: bool
) -> str:
    """kubelet_pods.go: getPhase."""
    policy = spec.get("restartPolicy", "Always")
    pending_init = failed_init = 0
    by_name = {s["name"]: s for s in init_statuses}
    unknown = running = waiting = stopped = succeeded = 0
    for c in spec.get("initContainers") or []:
        s = by_name.get(c.get("name"))
        restartable = c.get("restartPolicy") == "Always"
        if s is None:
            if restartable:
                unknown += 1
            else:
                pending_init += 1
            continue
        st = s["state"]
        last = s.get("lastState") or {}
        if restartable:
            if "running" in st:
                if not s.get("started"):
                    pending_init += 1
                running += 1
            elif "waiting" in st and "terminated" not in last:
                pending_init += 1
                waiting += 1
            continue
        if "running" in st:
            pending_init += 1
        elif "terminated" in st:
            if st["terminated"].get("exitCode") != 0:
                failed_init += 1
        elif "waiting" in st:
            if "terminated" in last:
                if last["terminated"].get("exitCode") != 0:
                    failed_init += 1
            else:
                pending_init += 1
        else:
            pending_init += 1
    for s in statuses:
        st = s["state"]
        if "running" in st:
            running += 1
        elif "terminated" in st:
            stopped += 1
            if st["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in st:
            if "terminated" in (s.get("lastState") or {}):
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    if failed_init > 0 and policy == "Never":
        return "Failed"
    any_regular_started = any(
        "running" in s["state"] or "terminated" in s["state"] or (s.get("lastState") or {}) for s in statuses
    )
    if (pending_init > 0 and not any_regular_started) or waiting > 0:
        return "Pending"
    if running > 0 and unknown == 0:
        return "Running"
    if running == 0 and stopped > 0 and unknown == 0:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _project_items(
    data: dict[str, bytes], src: dict[str, Any], vol: str, what: str, obj: dict[str, Any], mode: int
) -> dict[str, tuple[bytes, int]]:
    items = src.get("items")
    if not items:
        return {k: (v, mode) for k, v in data.items()}
    out = {}
    for it in items:
        k = it.get("key", "")
        if k not in data:
            if src.get("optional"):
                continue
            kind = "configmap" if what == "configmap" else "secret"
            raise ConfigError(
                f'MountVolume.SetUp failed for volume "{vol}" : {kind} references non-existent '
                f"{'config' if kind == 'configmap' else 'secret'} key: {k}"
            )
        out[it.get("path", k)] = (data[k], int(it.get("mode", mode)))
    return out


def _set_up_volumes(plan: list[dict[str, Any]]) -> dict[str, Volume]:
    """The blocking part of volume set-up (run in an executor)."""
    out: dict[str, Volume] = {}
    for item in plan:
        path = Path(item["path"])
        kind = item["kind"]
        if kind == "pv":
            if not path.exists():
                if item.get("create"):
                    path.mkdir(parents=True, exist_ok=True)
                else:
                    raise ConfigError(
                        f'MountVolume.SetUp failed for volume "{item["pv"]}" : rpc error: code = NotFound desc = '
                        f"volume directory {path} does not exist"
                    )
        elif kind == "emptyDir":
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, 0o777)  # empty_dir.go: setupDir: 0777
        elif kind == "hostPath":
            t = item.get("host_type") or ""
            if t in ("", "DirectoryOrCreate") and not path.exists():
                path.mkdir(parents=True, exist_ok=True)
                os.chmod(path, 0o755)
            elif t == "FileOrCreate" and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch(0o644)
            elif t == "Directory" and not path.is_dir():
                raise ConfigError(
                    f'MountVolume.SetUp failed for volume "{item["name"]}" : hostPath type check failed: {path} is not a directory'
                )
            elif t == "File" and not path.is_file():
                raise ConfigError(
                    f'MountVolume.SetUp failed for volume "{item["name"]}" : hostPath type check failed: {path} is not a file'
                )
        elif kind == "files":
            runtime.write_volume_files(path, item["files"])
        if item.get("fs_group") is not None and not (kind == "pv" and item.get("read_only")):
            runtime.set_volume_ownership(path, int(item["fs_group"]), bool(item["read_only"]), item["policy"])
        out[item["name"]] = Volume(path, bool(item["read_only"]), kind)
    return out


def _open_log(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def _cleanup_dirs(*dirs: Path) -> None:
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def _go_quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        import logging

        logging.getLogger("kubesim.kubelet").error("kubelet task failed", exc_info=exc)


__all__ = ["ExecError", "Kubelet", "get_phase", "is_process_pod", "normalize_image"]
