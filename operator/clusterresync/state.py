"""What the planner sees and what it asks for: observed state in, actions out. No I/O here.

``Observed`` is a snapshot of the cluster objects one ClusterResync concerns, gathered by the
adapter. ``Action`` values are requests the adapter carries out; each is idempotent (creating
what exists, deleting what is gone, patching to what is already there are all no-ops), and
deletions of a replica's objects carry a ``uid`` precondition so that an object recreated under
the same name is never deleted by mistake.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from .models import ClusterResyncSpec, ClusterResyncStatus

Obj = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class Ref:
    """An object by API group/version, kind, plural, namespace and name."""

    api_version: str
    kind: str
    plural: str
    name: str
    namespace: str = ""

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


def pvc_ref(ns: str, name: str) -> Ref:
    return Ref("v1", "PersistentVolumeClaim", "persistentvolumeclaims", name, ns)


def pv_ref(name: str) -> Ref:
    return Ref("v1", "PersistentVolume", "persistentvolumes", name)


def pod_ref(ns: str, name: str) -> Ref:
    return Ref("v1", "Pod", "pods", name, ns)


def job_ref(ns: str, name: str) -> Ref:
    return Ref("batch/v1", "Job", "jobs", name, ns)


def snapshot_ref(ns: str, name: str) -> Ref:
    return Ref("snapshot.storage.k8s.io/v1", "VolumeSnapshot", "volumesnapshots", name, ns)


@dataclass(frozen=True)
class Create:
    ref: Ref
    body: Obj


@dataclass(frozen=True)
class Patch:
    ref: Ref
    patch: Any
    content_type: str = MERGE_PATCH


@dataclass(frozen=True)
class Delete:
    ref: Ref
    uid: str | None = None  # precondition: delete only the object with this uid
    propagation: str = "Background"


@dataclass(frozen=True)
class SecretKey:
    """A Secret's key, in the resync's namespace: the adapter reads it and writes its value to an
    exec's standard input. The planner never sees the value."""

    name: str
    key: str


@dataclass(frozen=True)
class Exec:
    """Run a hook (or probe) command in a pod; its outcome comes back in ``Observed.hook_outcomes``."""

    hook: str
    pod: str
    namespace: str
    container: str | None
    command: tuple[str, ...]
    timeout_seconds: int
    stdin_secret: SecretKey | None = None
    # Instead of a command: GET this URL on the pod (scheme, port, path); the body comes back as
    # the outcome's stdout and the HTTP status as its exit code.
    http_get: tuple[str, int, str] | None = None


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


Action = Create | Patch | Delete | Exec


@dataclass(frozen=True)
class HookOutcome:
    """What a hook did. ``output`` may hold secrets: it is never logged, and reaches the status
    only as the excerpt the spec opts into. ``error`` says why there is no exit code, if so."""

    ok: bool
    exit_code: int | None
    output: str  # stdout, then stderr
    error: str = ""
    stdout: str = ""
    stderr: str = ""


@dataclass(frozen=True)
class Resync:
    name: str
    namespace: str
    uid: str
    generation: int
    created: dt.datetime
    deleting: bool
    spec: ClusterResyncSpec
    status: ClusterResyncStatus


@dataclass(frozen=True)
class Observed:
    now: dt.datetime
    resync: Resync
    target: Obj | None
    pods: dict[str, Obj]  # the target's pods by name
    claims: dict[str, Obj]  # claims in the namespace that matter, by name
    pvs: dict[str, Obj]  # PersistentVolumes that matter, by name
    snapshots: dict[str, Obj]  # VolumeSnapshots of this resync, by name
    snapshot_classes: list[Obj]
    storage_classes: dict[str, Obj]
    csi_drivers: set[str]
    nodes: dict[str, Obj]
    jobs: dict[str, Obj]  # staging Jobs of this resync, by name
    other_resyncs: list[Obj]  # other ClusterResyncs in the namespace
    claim_warnings: dict[str, str] = field(
        default_factory=dict
    )  # claim name -> latest ProvisioningFailed message
    hook_outcomes: dict[str, HookOutcome] = field(default_factory=dict)
    # claim name -> the pods of the namespace (any owner) whose volumes use it
    claim_users: dict[str, list[str]] = field(default_factory=dict)
    namespace_terminating: bool = False
    snapshot_api: bool = True  # whether the server serves snapshot.storage.k8s.io/v1


@dataclass(frozen=True)
class Plan:
    status: ClusterResyncStatus
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    remove_finalizer: bool = False
    # spec.ttlSecondsAfterFinished: the ClusterResync itself is to be deleted in this many seconds
    # (0: now; the adapter deletes it, with a uid precondition). None: never.
    delete_self_after: float | None = None
