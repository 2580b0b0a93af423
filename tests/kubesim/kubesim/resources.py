"""The resource types kubesim serves: the built-in ones and those CustomResourceDefinitions add.

A ``ResourceType`` is one (group, version, resource) as discovery lists it, with what the
generic registry (``staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go``) and the
type's strategy (``pkg/registry/<group>/<resource>/strategy.go``) need: scope, subresources,
whether writes to the main resource ignore ``status``, whether ``metadata.generation`` is tracked,
and the fields a field selector may use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
READ_WRITE = ALL_VERBS


@dataclass
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # Subresources beyond status/scale that discovery lists (name -> (kind, verbs)).
    extra_subresources: dict[str, tuple[str, str, tuple[str, ...]]] = field(default_factory=dict)
    status_subresource: bool = False
    scale_subresource: dict[str, str] | None = None  # specReplicasPath, statusReplicasPath, labelSelectorPath
    track_generation: bool = False
    # Extra selectable fields for field selectors (beyond metadata.name / metadata.namespace).
    selectable_fields: Callable[[dict[str, Any]], dict[str, str]] | None = None
    # Where objects are stored: types that are views of one storage share a key (events).
    storage_key: str = ""
    builtin: bool = True
    # Not stored at all (reviews): only create, answered by a handler.
    virtual: bool = False
    # For custom resources: the CRD object and this version's schema.
    crd: dict[str, Any] | None = None
    schema: dict[str, Any] | None = None
    printer_columns: list[dict[str, Any]] | None = None
    # Default garbage-collection policy when a DELETE names none (strategy DefaultGarbageCollectionPolicy).
    default_propagation: str = "Background"
    # Whether DELETE answers with the deleted object (store.ReturnDeletedObject) or a Status.
    return_deleted_object: bool = False

    def __post_init__(self) -> None:
        if not self.storage_key:
            self.storage_key = f"{self.group}/{self.plural}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        if self.crd is not None:
            return str(self.crd["spec"]["names"].get("listKind") or self.kind + "List")
        return self.kind + "List"

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def subresources(self) -> dict[str, tuple[str, str, tuple[str, ...]]]:
        """Name -> (group/version of the subresource's kind, kind, verbs), as discovery lists them."""
        subs: dict[str, tuple[str, str, tuple[str, ...]]] = {}
        if self.status_subresource:
            subs["status"] = (self.api_version, self.kind, ("get", "patch", "update"))
        if self.scale_subresource is not None:
            subs["scale"] = ("autoscaling/v1", "Scale", ("get", "patch", "update"))
        subs.update(self.extra_subresources)
        return subs


def _pod_fields(obj: dict[str, Any]) -> dict[str, str]:
    # pkg/registry/core/pod/strategy.go: ToSelectableFields
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return {
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.restartPolicy": spec.get("restartPolicy", ""),
        "spec.schedulerName": spec.get("schedulerName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "spec.hostNetwork": "true" if spec.get("hostNetwork") else "false",
        "status.phase": status.get("phase", ""),
        "status.podIP": status.get("podIP", ""),
        "status.nominatedNodeName": status.get("nominatedNodeName", ""),
    }


def _event_fields(obj: dict[str, Any]) -> dict[str, str]:
    # pkg/registry/core/event/strategy.go: ToSelectableFields
    io = obj.get("involvedObject") or {}
    src = obj.get("source") or {}
    return {
        "involvedObject.kind": io.get("kind", ""),
        "involvedObject.namespace": io.get("namespace", ""),
        "involvedObject.name": io.get("name", ""),
        "involvedObject.uid": io.get("uid", ""),
        "involvedObject.apiVersion": io.get("apiVersion", ""),
        "involvedObject.resourceVersion": io.get("resourceVersion", ""),
        "involvedObject.fieldPath": io.get("fieldPath", ""),
        "reason": obj.get("reason", ""),
        "reportingComponent": obj.get("reportingComponent", ""),
        "source": src.get("component", ""),
        "type": obj.get("type", ""),
    }


def _namespace_fields(obj: dict[str, Any]) -> dict[str, str]:
    return {"status.phase": (obj.get("status") or {}).get("phase", "")}


def _secret_fields(obj: dict[str, Any]) -> dict[str, str]:
    return {"type": obj.get("type", "")}


def _pvc_fields(obj: dict[str, Any]) -> dict[str, str]:
    return {}


def _node_fields(obj: dict[str, Any]) -> dict[str, str]:
    return {"spec.unschedulable": "true" if (obj.get("spec") or {}).get("unschedulable") else "false"}


def _job_fields(obj: dict[str, Any]) -> dict[str, str]:
    return {"status.successful": str((obj.get("status") or {}).get("succeeded", 0))}


SCALE_PATHS = {
    "specReplicasPath": ".spec.replicas",
    "statusReplicasPath": ".status.replicas",
    "labelSelectorPath": ".status.selector",
}


def builtin_types() -> list[ResourceType]:
    R = ResourceType
    return [
        # core/v1
        R(
            "",
            "v1",
            "Namespace",
            "namespaces",
            "namespace",
            False,
            ("ns",),
            verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
            status_subresource=True,
            selectable_fields=_namespace_fields,
            extra_subresources={"finalize": ("v1", "Namespace", ("update",))},
        ),
        R(
            "",
            "v1",
            "Node",
            "nodes",
            "node",
            False,
            ("no",),
            status_subresource=True,
            selectable_fields=_node_fields,
        ),
        R(
            "",
            "v1",
            "Pod",
            "pods",
            "pod",
            True,
            ("po",),
            ("all",),
            status_subresource=True,
            track_generation=True,
            selectable_fields=_pod_fields,
            return_deleted_object=True,
            extra_subresources={
                "exec": ("v1", "PodExecOptions", ("create", "get")),
                "log": ("v1", "Pod", ("get",)),
                "binding": ("v1", "Binding", ("create",)),
                "eviction": ("policy/v1", "Eviction", ("create",)),
                "attach": ("v1", "PodAttachOptions", ("create", "get")),
                "portforward": ("v1", "PodPortForwardOptions", ("create", "get")),
            },
        ),
        R(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            True,
            ("pvc",),
            status_subresource=True,
            selectable_fields=_pvc_fields,
            return_deleted_object=True,
        ),
        R(
            "",
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            "persistentvolume",
            False,
            ("pv",),
            status_subresource=True,
            return_deleted_object=True,
        ),
        R(
            "",
            "v1",
            "Event",
            "events",
            "event",
            True,
            ("ev",),
            selectable_fields=_event_fields,
            storage_key="events",
        ),
        R("", "v1", "Secret", "secrets", "secret", True, selectable_fields=_secret_fields),
        R("", "v1", "ConfigMap", "configmaps", "configmap", True, ("cm",)),
        R(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            "serviceaccount",
            True,
            ("sa",),
            extra_subresources={"token": ("authentication.k8s.io/v1", "TokenRequest", ("create",))},
        ),
        R(
            "",
            "v1",
            "Service",
            "services",
            "service",
            True,
            ("svc",),
            ("all",),
            status_subresource=True,
            return_deleted_object=True,
        ),
        R("", "v1", "Endpoints", "endpoints", "endpoints", True, ("ep",)),
        # apps/v1
        R(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            "statefulset",
            True,
            ("sts",),
            ("all",),
            status_subresource=True,
            scale_subresource=SCALE_PATHS,
            track_generation=True,
        ),
        R(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            "deployment",
            True,
            ("deploy",),
            ("all",),
            status_subresource=True,
            scale_subresource=SCALE_PATHS,
            track_generation=True,
        ),
        R(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            "replicaset",
            True,
            ("rs",),
            ("all",),
            status_subresource=True,
            scale_subresource=SCALE_PATHS,
            track_generation=True,
        ),
        R("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", True),
        # batch/v1: DefaultGarbageCollectionPolicy is OrphanDependents for batch/v1 (pkg/registry/batch/job/strategy.go).
        R(
            "batch",
            "v1",
            "Job",
            "jobs",
            "job",
            True,
            (),
            ("all",),
            status_subresource=True,
            track_generation=True,
            selectable_fields=_job_fields,
            default_propagation="Orphan",
            return_deleted_object=True,
        ),
        # storage.k8s.io/v1
        R("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", False, ("sc",)),
        R("storage.k8s.io", "v1", "CSIDriver", "csidrivers", "csidriver", False),
        # coordination.k8s.io/v1
        R("coordination.k8s.io", "v1", "Lease", "leases", "lease", True),
        # events.k8s.io/v1: a second view of the core events storage (pkg/registry/core/event).
        R("events.k8s.io", "v1", "Event", "events", "event", True, ("ev",), storage_key="events"),
        # rbac.authorization.k8s.io/v1
        R("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", True),
        R("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", True),
        R("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", False),
        R(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            "clusterrolebinding",
            False,
        ),
        # apiextensions.k8s.io/v1
        R(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            "customresourcedefinition",
            False,
            ("crd", "crds"),
            ("api-extensions",),
            status_subresource=True,
            track_generation=True,
        ),
        # authorization.k8s.io/v1 and authentication.k8s.io/v1: create-only reviews, never stored.
        R(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            "selfsubjectaccessreview",
            False,
            verbs=("create",),
            virtual=True,
        ),
        R(
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
            "subjectaccessreview",
            False,
            verbs=("create",),
            virtual=True,
        ),
        R(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            "selfsubjectrulesreview",
            False,  # +genclient:nonNamespaced (api/authorization/v1/types.go): kubectl posts it cluster-wide
            verbs=("create",),
            virtual=True,
        ),
        R(
            "authentication.k8s.io",
            "v1",
            "SelfSubjectReview",
            "selfsubjectreviews",
            "selfsubjectreview",
            False,
            verbs=("create",),
            virtual=True,
        ),
    ]


# Preferred version per group for discovery order (core first, as kube-apiserver lists them).
GROUP_ORDER = [
    "",
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "batch",
    "coordination.k8s.io",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "apiextensions.k8s.io",
]
