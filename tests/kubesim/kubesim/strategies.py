"""Per-type behaviour of the built-in kinds: defaulting, strategies, validation and admission.

Each function names the upstream code it follows. Defaults come from ``pkg/apis/<group>/v1/
defaults.go``; ``prepare_for_create``/``prepare_for_update`` from ``pkg/registry/<group>/<type>/
strategy.go``; validation from ``pkg/apis/<group>/validation/validation.go`` (the subset that the
project's objects can trip over); admission from the plugins named at each place.
"""

from __future__ import annotations

import ipaddress
import itertools
from typing import TYPE_CHECKING, Any

from .errors import Cause, StatusError, field_error, forbidden, not_found
from .meta import generate_name, is_dns1123_label, parse_time
from .resources import ResourceType
from .selectors import labels_match, selector_from_label_selector
from .store import JSON, deep_copy

if TYPE_CHECKING:
    from .apiserver import APIServer

_service_ips = itertools.count(1)

# plugin/pkg/admission/serviceaccount/admission.go: the projected token volume every pod gets.
SERVICE_ACCOUNT_VOLUME_PREFIX = "kube-api-access-"  # ServiceAccountVolumeName + "-"
SERVICE_ACCOUNT_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"  # DefaultAPITokenMountPath
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"  # pkg/controller/certificates/rootcacertpublisher
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
    "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
    "guaranteed across distributions of Kubernetes clusters."
)
TOKEN_EXPIRATION_SECONDS = 3607  # serviceaccount.WarnOnlyBoundTokenExpirationSeconds


# -- defaulting ------------------------------------------------------------------------------
def _default_container(c: JSON) -> None:
    # pkg/apis/core/v1/defaults.go: SetDefaults_Container
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if "imagePullPolicy" not in c:
        image = c.get("image", "")
        tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
        c["imagePullPolicy"] = "Always" if (not tagged or image.endswith(":latest")) else "IfNotPresent"
    c.setdefault("resources", {})
    for p in c.get("ports") or []:
        p.setdefault("protocol", "TCP")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = c.get(probe_name)
        if isinstance(probe, dict):
            probe.setdefault("timeoutSeconds", 1)
            probe.setdefault("periodSeconds", 10)
            probe.setdefault("successThreshold", 1)
            probe.setdefault("failureThreshold", 3)


def default_pod_spec(spec: JSON) -> None:
    # SetDefaults_PodSpec
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    for c in itertools.chain(spec.get("containers") or [], spec.get("initContainers") or []):
        if isinstance(c, dict):
            _default_container(c)
    for v in spec.get("volumes") or []:
        if isinstance(v, dict):
            if "emptyDir" in v and v["emptyDir"] is None:
                v["emptyDir"] = {}
            for src in ("secret", "configMap"):
                if isinstance(v.get(src), dict):
                    v[src].setdefault("defaultMode", 0o644)


def _default_pvc_spec(spec: JSON) -> None:
    # SetDefaults_PersistentVolumeClaimSpec
    spec.setdefault("volumeMode", "Filesystem")


def default(rt: ResourceType, obj: JSON) -> None:
    key = (rt.group, rt.kind)
    spec = obj.get("spec")
    if key == ("", "Pod") and isinstance(spec, dict):
        default_pod_spec(spec)
    elif key == ("", "PersistentVolumeClaim") and isinstance(spec, dict):
        _default_pvc_spec(spec)
    elif key == ("", "PersistentVolume") and isinstance(spec, dict):
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        spec.setdefault("volumeMode", "Filesystem")
    elif key == ("apps", "StatefulSet") and isinstance(spec, dict):
        # pkg/apis/apps/v1/defaults.go: SetDefaults_StatefulSet
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("revisionHistoryLimit", 10)
        us = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
        if us.get("type", "RollingUpdate") == "RollingUpdate":
            us.setdefault("type", "RollingUpdate")
            us.setdefault("rollingUpdate", {}).setdefault("partition", 0)
        pol = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
        pol.setdefault("whenDeleted", "Retain")
        pol.setdefault("whenScaled", "Retain")
        tspec = (spec.get("template") or {}).get("spec")
        if isinstance(tspec, dict):
            default_pod_spec(tspec)
        for t in spec.get("volumeClaimTemplates") or []:
            if isinstance(t, dict):
                t.setdefault("apiVersion", "v1")
                t.setdefault("kind", "PersistentVolumeClaim")
                if isinstance(t.get("spec"), dict):
                    _default_pvc_spec(t["spec"])
                t.setdefault("status", {"phase": "Pending"})
    elif key in (("apps", "Deployment"), ("apps", "ReplicaSet")) and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        if rt.kind == "Deployment":
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            st = spec.setdefault("strategy", {"type": "RollingUpdate"})
            if st.get("type") == "RollingUpdate":
                st.setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})
        tspec = (spec.get("template") or {}).get("spec")
        if isinstance(tspec, dict):
            default_pod_spec(tspec)
    elif key == ("batch", "Job") and isinstance(spec, dict):
        # pkg/apis/batch/v1/defaults.go: SetDefaults_Job
        spec.setdefault("parallelism", 1)
        if spec.get("completions") is None and spec.get("parallelism", 1) is not None:
            spec.setdefault("completions", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        tspec = (spec.get("template") or {}).get("spec")
        if isinstance(tspec, dict):
            default_pod_spec(tspec)
    elif key == ("", "Service") and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for p in spec.get("ports") or []:
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
    elif key == ("", "Secret"):
        obj.setdefault("type", "Opaque")
        # pkg/apis/core/v1/conversion.go: Convert_v1_Secret_To_core_Secret. stringData is
        # write-only: its keys overwrite data's, base64-encoded, and it is never stored or returned
        # (the internal Secret has no StringData), on create, update and patch alike.
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict) and string_data:
            import base64

            data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
    elif key == ("storage.k8s.io", "StorageClass"):
        obj.setdefault("reclaimPolicy", "Delete")
        obj.setdefault("volumeBindingMode", "Immediate")
    elif key == ("", "Namespace"):
        obj.setdefault("metadata", {}).setdefault("labels", {})["kubernetes.io/metadata.name"] = obj[
            "metadata"
        ].get("name", "")
    elif key == ("apiextensions.k8s.io", "CustomResourceDefinition") and isinstance(spec, dict):
        spec.setdefault("conversion", {"strategy": "None"})
        names = spec.get("names")
        if isinstance(names, dict):
            names.setdefault("singular", str(names.get("kind", "")).lower())
            names.setdefault("listKind", f"{names.get('kind', '')}List")


def prepare_for_create(rt: ResourceType, obj: JSON) -> None:
    """Status is reset on create for types with a status subresource (each strategy's PrepareForCreate)."""
    key = (rt.group, rt.kind)
    if key == ("", "Pod"):
        # pkg/registry/core/pod/strategy.go: podStrategy.PrepareForCreate
        spec = obj.get("spec") or {}
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(spec)}
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = "default"
        spec["serviceAccount"] = spec["serviceAccountName"]
        # plugin/pkg/admission/defaulttolerationseconds
        tols = spec.setdefault("tolerations", [])
        for taint in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            if not any(t.get("key") == taint for t in tols):
                tols.append(
                    {"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                )
        spec.setdefault("priority", 0)
    elif key == ("", "PersistentVolumeClaim") or key == ("", "PersistentVolume"):
        obj["status"] = {"phase": "Pending"}
    elif key == ("", "Namespace"):
        # pkg/registry/core/namespace/strategy.go: the "kubernetes" finalizer and phase Active.
        spec = obj.setdefault("spec", {})
        fins = spec.setdefault("finalizers", [])
        if "kubernetes" not in fins:
            fins.append("kubernetes")
        obj["status"] = {"phase": "Active"}
    elif key == ("batch", "Job"):
        obj["status"] = {}
        _job_selector(obj)
    elif key == ("", "Service"):
        obj["status"] = {"loadBalancer": {}}
        spec = obj.setdefault("spec", {})
        if spec.get("clusterIP") != "None" and not spec.get("clusterIP"):
            n = next(_service_ips)
            spec["clusterIP"] = str(ipaddress.ip_address("10.96.0.0") + n)
            spec["clusterIPs"] = [spec["clusterIP"]]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    elif key == ("apiextensions.k8s.io", "CustomResourceDefinition"):
        obj["status"] = {"conditions": [], "acceptedNames": {"kind": "", "plural": ""}, "storedVersions": []}
    elif rt.status_subresource:
        obj["status"] = {}


def prepare_for_update(rt: ResourceType, obj: JSON, old: JSON) -> None:
    if (rt.group, rt.kind) == ("", "Namespace"):
        # Namespace spec.finalizers change only through /finalize.
        obj["spec"] = deep_copy(old.get("spec") or {})


def _qos_class(spec: JSON) -> str:
    containers = spec.get("containers") or []
    if not any(
        (c.get("resources") or {}).get("requests") or (c.get("resources") or {}).get("limits")
        for c in containers
        if isinstance(c, dict)
    ):
        return "BestEffort"
    return "Burstable"


def _job_selector(obj: JSON) -> None:
    # pkg/registry/batch/job/strategy.go: generateSelector
    spec = obj.setdefault("spec", {})
    uid = obj["metadata"]["uid"]
    name = obj["metadata"]["name"]
    if spec.get("manualSelector"):
        return
    labels = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    tmpl_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    tmpl_meta.setdefault("labels", {}).update(labels)
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}


def selector_string(sel: JSON | None) -> str:
    if not sel:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op = e["operator"]
        if op == "In":
            parts.append(f"{e['key']} in ({','.join(e.get('values') or [])})")
        elif op == "NotIn":
            parts.append(f"{e['key']} notin ({','.join(e.get('values') or [])})")
        elif op == "Exists":
            parts.append(e["key"])
        else:
            parts.append("!" + e["key"])
    return ",".join(parts)


# -- validation ------------------------------------------------------------------------------
def _req(causes: list[Cause], path: str, value: Any, detail: str = "") -> bool:
    if value in (None, "", [], {}):
        causes.append(field_error("FieldValueRequired", path, detail))
        return False
    return True


# apimachinery/pkg/util/validation/validation.go
_MAX_INT32 = 2**31 - 1


def _int_value(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _inclusive_range(causes: list[Cause], path: str, value: Any, lo: int, hi: int) -> None:
    """``field.Invalid(path, value, validation.InclusiveRangeError(lo, hi))`` when out of range
    (``IsValidPortNum``, ``IsValidUserID``, ``IsValidGroupID``, activeDeadlineSeconds)."""
    v = _int_value(value)
    if v is not None and not lo <= v <= hi:
        causes.append(
            field_error(
                "FieldValueInvalid", path, f"must be between {lo} and {hi}, inclusive", v, show_value=True
            )
        )


def _nonnegative(causes: list[Cause], path: str, value: Any) -> None:
    """``ValidateNonnegativeField``."""
    v = _int_value(value)
    if v is not None and v < 0:
        causes.append(
            field_error("FieldValueInvalid", path, "must be greater than or equal to 0", v, show_value=True)
        )


def _validate_ports_and_ids(spec: JSON, path: str, causes: list[Cause]) -> None:
    """The integer ranges of ``pkg/apis/core/validation/validation.go``: ``validateContainerPorts``
    (containerPort required and 1-65535, a non-zero hostPort 1-65535), ``validateProbe``
    (non-negative delays, periods and thresholds, a positive terminationGracePeriodSeconds),
    ``ValidateSecurityContext`` / ``validatePodSpecSecurityContext`` (``IsValidUserID`` /
    ``IsValidGroupID``: 0-2147483647) and ``ValidatePodSpec``'s activeDeadlineSeconds
    (1-2147483647)."""
    for key in ("containers", "initContainers"):
        for i, c in enumerate(spec.get(key) or []):
            if not isinstance(c, dict):
                continue
            cp = f"{path}.{key}[{i}]"
            for j, port in enumerate(c.get("ports") or []):
                if not isinstance(port, dict):
                    continue
                pp = f"{cp}.ports[{j}]"
                if not port.get("containerPort"):
                    causes.append(field_error("FieldValueRequired", f"{pp}.containerPort", ""))
                else:
                    _inclusive_range(causes, f"{pp}.containerPort", port.get("containerPort"), 1, 65535)
                if port.get("hostPort"):
                    _inclusive_range(causes, f"{pp}.hostPort", port.get("hostPort"), 1, 65535)
            for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
                probe = c.get(probe_name)
                if not isinstance(probe, dict):
                    continue
                pp = f"{cp}.{probe_name}"
                for f in (
                    "initialDelaySeconds",
                    "timeoutSeconds",
                    "periodSeconds",
                    "successThreshold",
                    "failureThreshold",
                ):
                    _nonnegative(causes, f"{pp}.{f}", probe.get(f))
                tg = _int_value(probe.get("terminationGracePeriodSeconds"))
                if tg is not None and tg <= 0:
                    causes.append(
                        field_error(
                            "FieldValueInvalid",
                            f"{pp}.terminationGracePeriodSeconds",
                            "must be greater than 0",
                            tg,
                            show_value=True,
                        )
                    )
            sc = c.get("securityContext")
            if isinstance(sc, dict):
                for f in ("runAsUser", "runAsGroup"):
                    _inclusive_range(causes, f"{cp}.securityContext.{f}", sc.get(f), 0, _MAX_INT32)
    psc = spec.get("securityContext")
    if isinstance(psc, dict):
        for f in ("runAsUser", "runAsGroup", "fsGroup"):
            _inclusive_range(causes, f"{path}.securityContext.{f}", psc.get(f), 0, _MAX_INT32)
        for g, gid in enumerate(psc.get("supplementalGroups") or []):
            _inclusive_range(causes, f"{path}.securityContext.supplementalGroups[{g}]", gid, 0, _MAX_INT32)
    if spec.get("activeDeadlineSeconds") is not None:
        _inclusive_range(
            causes, f"{path}.activeDeadlineSeconds", spec.get("activeDeadlineSeconds"), 1, _MAX_INT32
        )


def _validate_pod_spec(
    spec: JSON, path: str, causes: list[Cause], restart_policies: tuple[str, ...] | None = None
) -> None:
    _validate_ports_and_ids(spec, path, causes)
    containers = spec.get("containers")
    if _req(causes, f"{path}.containers", containers):
        names: set[str] = set()
        for i, c in enumerate(containers):
            cp = f"{path}.containers[{i}]"
            name = c.get("name", "")
            if _req(causes, f"{cp}.name", name):
                for e in is_dns1123_label(name):
                    causes.append(field_error("FieldValueInvalid", f"{cp}.name", e, name, show_value=True))
                if name in names:
                    causes.append(field_error("FieldValueDuplicate", f"{cp}.name", "", name, show_value=True))
                names.add(name)
            _req(causes, f"{cp}.image", c.get("image"))
    vol_names = {v.get("name") for v in spec.get("volumes") or []}
    for i, c in enumerate(spec.get("containers") or []):
        for j, m in enumerate(c.get("volumeMounts") or []):
            if m.get("name") not in vol_names:
                causes.append(
                    field_error(
                        "FieldValueNotFound",
                        f"{path}.containers[{i}].volumeMounts[{j}].name",
                        "",
                        m.get("name"),
                        show_value=True,
                    )
                )
            if not m.get("mountPath"):
                causes.append(
                    field_error(
                        "FieldValueRequired", f"{path}.containers[{i}].volumeMounts[{j}].mountPath", ""
                    )
                )
    rp = spec.get("restartPolicy")
    allowed = restart_policies or ("Always", "OnFailure", "Never")
    if rp not in allowed:
        causes.append(
            field_error(
                "FieldValueNotSupported",
                f"{path}.restartPolicy",
                "supported values: " + ", ".join(f'"{a}"' for a in allowed),
                rp,
                show_value=True,
            )
        )
    for i, v in enumerate(spec.get("volumes") or []):
        for e in is_dns1123_label(v.get("name", "")):
            causes.append(
                field_error(
                    "FieldValueInvalid", f"{path}.volumes[{i}].name", e, v.get("name", ""), show_value=True
                )
            )
        sources = [k for k in v if k != "name"]
        if len(sources) == 0:
            causes.append(
                field_error("FieldValueRequired", f"{path}.volumes[{i}]", "must specify a volume type")
            )
        elif len(sources) > 1:
            causes.append(
                field_error(
                    "FieldValueForbidden",
                    f"{path}.volumes[{i}].{sources[1]}",
                    "may not specify more than 1 volume type",
                )
            )


def _validate_pvc_spec(spec: JSON, path: str, causes: list[Cause]) -> None:
    modes = spec.get("accessModes") or []
    if _req(causes, f"{path}.accessModes", modes, "at least 1 access mode is required"):
        for m in modes:
            if m not in ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"):
                causes.append(
                    field_error(
                        "FieldValueNotSupported",
                        f"{path}.accessModes",
                        'supported values: "ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"',
                        m,
                        show_value=True,
                    )
                )
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if not storage:
        causes.append(field_error("FieldValueRequired", f"{path}.resources[storage]", ""))
    ds = spec.get("dataSource")
    dsr = spec.get("dataSourceRef")
    if (
        ds
        and dsr
        and (
            ds.get("kind") != dsr.get("kind")
            or ds.get("name") != dsr.get("name")
            or (ds.get("apiGroup") or "") != (dsr.get("apiGroup") or "")
        )
    ):
        causes.append(field_error("FieldValueInvalid", f"{path}", "must match dataSourceRef", None))
    if spec.get("volumeMode") not in (None, "Filesystem", "Block"):
        causes.append(
            field_error(
                "FieldValueNotSupported",
                f"{path}.volumeMode",
                'supported values: "Block", "Filesystem"',
                spec.get("volumeMode"),
                show_value=True,
            )
        )


def validate(api: APIServer, rt: ResourceType, obj: JSON, old: JSON | None) -> list[Cause]:
    causes: list[Cause] = []
    key = (rt.group, rt.kind)
    spec = obj.get("spec") or {}
    if key == ("", "Pod"):
        _validate_pod_spec(spec, "spec", causes)
    elif key == ("", "PersistentVolumeClaim"):
        _validate_pvc_spec(spec, "spec", causes)
    elif key == ("", "PersistentVolume"):
        if not (spec.get("capacity") or {}).get("storage"):
            causes.append(field_error("FieldValueRequired", "spec.capacity", ""))
        if not spec.get("accessModes"):
            causes.append(field_error("FieldValueRequired", "spec.accessModes", ""))
        sources = [k for k in ("hostPath", "csi", "local", "nfs", "iscsi", "fc") if spec.get(k)]
        if not sources:
            causes.append(field_error("FieldValueRequired", "spec", "must specify a volume type"))
        elif len(sources) > 1:
            causes.append(
                field_error(
                    "FieldValueForbidden", f"spec.{sources[1]}", "may not specify more than 1 volume type"
                )
            )
        pol = spec.get("persistentVolumeReclaimPolicy")
        if pol not in ("Retain", "Delete", "Recycle"):
            causes.append(
                field_error(
                    "FieldValueNotSupported",
                    "spec.persistentVolumeReclaimPolicy",
                    'supported values: "Delete", "Recycle", "Retain"',
                    pol,
                    show_value=True,
                )
            )
    elif key in (("apps", "StatefulSet"), ("apps", "Deployment"), ("apps", "ReplicaSet")):
        sel = spec.get("selector")
        if not sel:
            causes.append(field_error("FieldValueRequired", "spec.selector", ""))
        else:
            labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            reqs = selector_from_label_selector(sel)
            if not reqs:
                causes.append(
                    field_error(
                        "FieldValueInvalid",
                        "spec.selector",
                        "empty selector is invalid for deployment",
                        sel,
                        show_value=False,
                    )
                )
            elif not labels_match(reqs, labels):
                causes.append(
                    field_error(
                        "FieldValueInvalid",
                        "spec.template.metadata.labels",
                        "`selector` does not match template `labels`",
                        labels,
                        show_value=True,
                    )
                )
        if (spec.get("replicas") or 0) < 0:
            causes.append(
                field_error(
                    "FieldValueInvalid",
                    "spec.replicas",
                    "must be greater than or equal to 0",
                    spec.get("replicas"),
                    show_value=True,
                )
            )
        tspec = (spec.get("template") or {}).get("spec")
        if not isinstance(tspec, dict):
            causes.append(field_error("FieldValueRequired", "spec.template", ""))
        elif rt.kind == "StatefulSet":
            # ValidatePodTemplateSpecForStatefulSet: mounts may name volumeClaimTemplates (the
            # controller adds those volumes); kubesim checks mounts against the union.
            claims = [(t.get("metadata") or {}).get("name") for t in spec.get("volumeClaimTemplates") or []]
            vols = list(tspec.get("volumes") or []) + [
                {"name": n, "persistentVolumeClaim": {"claimName": n}}
                for n in claims
                if n and all(v.get("name") != n for v in tspec.get("volumes") or [])
            ]
            _validate_pod_spec({**tspec, "volumes": vols}, "spec.template.spec", causes, ("Always",))
        else:
            _validate_pod_spec(tspec, "spec.template.spec", causes, ("Always",))
        if rt.kind == "StatefulSet":
            pmp = spec.get("podManagementPolicy")
            if pmp not in ("OrderedReady", "Parallel"):
                causes.append(
                    field_error(
                        "FieldValueInvalid",
                        "spec.podManagementPolicy",
                        "must be 'OrderedReady' or 'Parallel'",
                        pmp,
                        show_value=True,
                    )
                )
            for i, t in enumerate(spec.get("volumeClaimTemplates") or []):
                _validate_pvc_spec(t.get("spec") or {}, f"spec.volumeClaimTemplates[{i}].spec", causes)
    elif key == ("batch", "Job"):
        tspec = (spec.get("template") or {}).get("spec")
        if not isinstance(tspec, dict):
            causes.append(field_error("FieldValueRequired", "spec.template", ""))
        else:
            _validate_pod_spec(tspec, "spec.template.spec", causes, ("OnFailure", "Never"))
        for f in (
            "parallelism",
            "completions",
            "backoffLimit",
            "activeDeadlineSeconds",
            "ttlSecondsAfterFinished",
        ):
            v = spec.get(f)
            if isinstance(v, int) and v < 0:
                causes.append(
                    field_error(
                        "FieldValueInvalid",
                        f"spec.{f}",
                        "must be greater than or equal to 0",
                        v,
                        show_value=True,
                    )
                )
    elif key == ("apiextensions.k8s.io", "CustomResourceDefinition"):
        from . import crdschema

        causes.extend(crdschema.validate_crd(obj, old))
    elif key in (
        ("rbac.authorization.k8s.io", "RoleBinding"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ):
        ref = obj.get("roleRef") or {}
        if ref.get("kind") not in ("Role", "ClusterRole") or (
            key[1] == "ClusterRoleBinding" and ref.get("kind") != "ClusterRole"
        ):
            causes.append(
                field_error(
                    "FieldValueNotSupported",
                    "roleRef.kind",
                    'supported values: "ClusterRole"'
                    if key[1] == "ClusterRoleBinding"
                    else 'supported values: "Role", "ClusterRole"',
                    ref.get("kind"),
                    show_value=True,
                )
            )
        if ref.get("apiGroup") != "rbac.authorization.k8s.io":
            causes.append(
                field_error(
                    "FieldValueNotSupported",
                    "roleRef.apiGroup",
                    'supported values: "rbac.authorization.k8s.io"',
                    ref.get("apiGroup"),
                    show_value=True,
                )
            )
        if not ref.get("name"):
            causes.append(field_error("FieldValueRequired", "roleRef.name", ""))
        for i, s in enumerate(obj.get("subjects") or []):
            if s.get("kind") not in ("User", "Group", "ServiceAccount"):
                causes.append(
                    field_error(
                        "FieldValueNotSupported",
                        f"subjects[{i}].kind",
                        'supported values: "ServiceAccount", "User", "Group"',
                        s.get("kind"),
                        show_value=True,
                    )
                )
            if (
                s.get("kind") == "ServiceAccount"
                and not s.get("namespace")
                and key[1] == "ClusterRoleBinding"
            ):
                causes.append(field_error("FieldValueRequired", f"subjects[{i}].namespace", ""))
    elif key == ("", "Service"):
        # ValidateService: ports are IsValidPortNum, as is an integer targetPort and a nodePort
        for i, port in enumerate(spec.get("ports") or []):
            if not isinstance(port, dict):
                continue
            pp = f"spec.ports[{i}]"
            _inclusive_range(causes, f"{pp}.port", port.get("port"), 1, 65535)
            if _int_value(port.get("targetPort")) is not None and port.get("targetPort") != 0:
                _inclusive_range(causes, f"{pp}.targetPort", port.get("targetPort"), 1, 65535)
            if port.get("nodePort"):
                _inclusive_range(causes, f"{pp}.nodePort", port.get("nodePort"), 1, 65535)
    elif key == ("", "Secret"):
        import base64
        import binascii

        for k, v in (obj.get("data") or {}).items():
            try:
                base64.b64decode(v, validate=True)
            except (binascii.Error, ValueError, TypeError):
                causes.append(field_error("FieldValueInvalid", f"data[{k}]", "illegal base64 data", None))
    elif key == ("storage.k8s.io", "StorageClass"):
        if not obj.get("provisioner"):
            causes.append(field_error("FieldValueRequired", "provisioner", ""))
        if obj.get("volumeBindingMode") not in ("Immediate", "WaitForFirstConsumer"):
            causes.append(
                field_error(
                    "FieldValueNotSupported",
                    "volumeBindingMode",
                    'supported values: "Immediate", "WaitForFirstConsumer"',
                    obj.get("volumeBindingMode"),
                    show_value=True,
                )
            )
    return causes


def validate_update(api: APIServer, rt: ResourceType, obj: JSON, old: JSON) -> list[Cause]:
    """Immutability rules of the built-in kinds (ValidateXUpdate in pkg/apis/*/validation)."""
    causes: list[Cause] = []
    key = (rt.group, rt.kind)
    spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
    if key == ("", "Pod"):
        # ValidatePodUpdate: only images, activeDeadlineSeconds, tolerations (additions) and a few more may change.
        a, b = deep_copy(spec), deep_copy(old_spec)
        for s in (a, b):
            for c in s.get("containers") or []:
                c.pop("image", None)
            for c in s.get("initContainers") or []:
                c.pop("image", None)
            s.pop("activeDeadlineSeconds", None)
            s.pop("tolerations", None)
            s.pop("schedulingGates", None)
        if b.get("nodeName") in (None, "") and a.get("nodeName"):
            b["nodeName"] = a["nodeName"]  # set through the binding subresource
        if a != b:
            causes.append(
                field_error(
                    "FieldValueForbidden",
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                )
            )
    elif key == ("", "PersistentVolumeClaim"):
        # ValidatePersistentVolumeClaimUpdate: the spec is immutable after creation except resources.requests and volumeName when unset.
        a, b = deep_copy(spec), deep_copy(old_spec)
        for s in (a, b):
            s.pop("resources", None)
            s.pop("volumeAttributesClassName", None)
        if not b.get("volumeName"):
            a.pop("volumeName", None)
            b.pop("volumeName", None)
        if a != b:
            causes.append(
                field_error(
                    "FieldValueForbidden",
                    "spec",
                    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                )
            )
        old_req = ((old_spec.get("resources") or {}).get("requests") or {}).get("storage")
        new_req = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        if old_req and new_req and _quantity(new_req) < _quantity(old_req):
            causes.append(
                field_error(
                    "FieldValueForbidden",
                    "spec.resources.requests.storage",
                    "field can not be less than status.capacity",
                    None,
                )
            )
    elif key == ("", "PersistentVolume"):
        for f in ("hostPath", "csi", "local", "volumeMode"):
            if f in old_spec and spec.get(f) != old_spec.get(f):
                causes.append(
                    field_error(
                        "FieldValueInvalid",
                        "spec.persistentvolumesource" if f != "volumeMode" else "spec.volumeMode",
                        "spec.persistentvolumesource is forbidden."
                        if f != "volumeMode"
                        else "field is immutable",
                        None,
                    )
                )
                break
    elif key == ("apps", "StatefulSet"):
        # ValidateStatefulSetUpdate
        mutable = {
            "replicas",
            "ordinals",
            "template",
            "updateStrategy",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
            "revisionHistoryLimit",
        }
        a = {k: v for k, v in spec.items() if k not in mutable}
        b = {k: v for k, v in old_spec.items() if k not in mutable}
        if a != b:
            causes.append(
                field_error(
                    "FieldValueForbidden",
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                )
            )
    elif key in (("apps", "Deployment"), ("apps", "ReplicaSet")):
        if spec.get("selector") != old_spec.get("selector"):
            causes.append(
                field_error(
                    "FieldValueInvalid",
                    "spec.selector",
                    "field is immutable",
                    spec.get("selector"),
                    show_value=False,
                )
            )
    elif key == ("batch", "Job"):
        for f in ("selector", "completions", "completionMode"):
            if spec.get(f) != old_spec.get(f) and not (
                f == "completions" and spec.get(f) == spec.get("parallelism")
            ):
                causes.append(
                    field_error(
                        "FieldValueInvalid", f"spec.{f}", "field is immutable", spec.get(f), show_value=False
                    )
                )
        a = deep_copy(spec.get("template") or {})
        b = deep_copy(old_spec.get("template") or {})
        if a != b:
            causes.append(field_error("FieldValueInvalid", "spec.template", "field is immutable", None))
    elif key == ("storage.k8s.io", "StorageClass"):
        for f in ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode"):
            if obj.get(f) != old.get(f):
                causes.append(field_error("FieldValueForbidden", f, "updates to " + f + " are forbidden."))
    elif key in (
        ("rbac.authorization.k8s.io", "RoleBinding"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ) and obj.get("roleRef") != old.get("roleRef"):
        causes.append(
            field_error(
                "FieldValueInvalid", "roleRef", "cannot change roleRef", obj.get("roleRef"), show_value=False
            )
        )
    elif (
        key in (("", "Secret"), ("", "ConfigMap"))
        and old.get("immutable")
        and (obj.get("data") != old.get("data") or obj.get("immutable") is not True)
    ):
        causes.append(
            field_error("FieldValueForbidden", "data", "field is immutable when `immutable` is set")
        )
    return causes


_UNITS = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "m": 0.001,
}


def _quantity(q: Any) -> float:
    return parse_quantity(q)


def parse_quantity(q: Any) -> float:
    """``resource.ParseQuantity`` for the forms the project uses (plain, binary and decimal SI suffixes)."""
    if isinstance(q, (int, float)):
        return float(q)
    s = str(q).strip()
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * _UNITS[suffix]
    return float(s)


# -- admission -------------------------------------------------------------------------------
def admit_create(api: APIServer, rt: ResourceType, obj: JSON) -> None:
    key = (rt.group, rt.kind)
    meta = obj["metadata"]
    if key == ("", "Pod"):
        # plugin/pkg/admission/serviceaccount: the pod's ServiceAccount must exist.
        sa = obj["spec"].get("serviceAccountName", "default")
        account = api.store.peek("/serviceaccounts", meta["namespace"], sa)
        if account is None:
            raise forbidden(
                rt.plural,
                rt.group,
                meta["name"],
                f'error looking up service account {meta["namespace"]}/{sa}: serviceaccount "{sa}" not found',
            )
        if _should_automount(account, obj["spec"]):
            _mount_service_account_token(obj["spec"])
    elif key == ("", "PersistentVolumeClaim"):
        # plugin/pkg/admission/storage/storageobjectinuseprotection
        fins = meta.setdefault("finalizers", [])
        if "kubernetes.io/pvc-protection" not in fins:
            fins.append("kubernetes.io/pvc-protection")
        # plugin/pkg/admission/storage/persistentvolume/label? no; DefaultStorageClass admission:
        spec = obj.setdefault("spec", {})
        if "storageClassName" not in spec:
            default_sc = _default_storage_class(api)
            if default_sc is not None:
                spec["storageClassName"] = default_sc
    elif key == ("", "PersistentVolume"):
        fins = meta.setdefault("finalizers", [])
        if "kubernetes.io/pv-protection" not in fins:
            fins.append("kubernetes.io/pv-protection")


def _should_automount(account: JSON, spec: JSON) -> bool:
    """``shouldAutomount``: the pod's choice, else the ServiceAccount's, else true."""
    if spec.get("automountServiceAccountToken") is not None:
        return bool(spec["automountServiceAccountToken"])
    if account.get("automountServiceAccountToken") is not None:
        return bool(account["automountServiceAccountToken"])
    return True


def _mount_service_account_token(spec: JSON) -> None:
    """``mountServiceAccountToken`` and ``TokenVolumeSource``: a ``kube-api-access-<random>``
    projected volume (a bound token, the cluster's CA from the ``kube-root-ca.crt`` ConfigMap,
    the namespace) mounted read-only at the default path in every init and regular container that
    does not mount something there already; the volume is added only if some container needs it,
    and a volume already named ``kube-api-access-*`` is reused."""
    volumes = spec.get("volumes") or []
    existing = next(
        (v["name"] for v in volumes if str(v.get("name", "")).startswith(SERVICE_ACCOUNT_VOLUME_PREFIX)), None
    )
    name = existing or generate_name(SERVICE_ACCOUNT_VOLUME_PREFIX)
    needs = False
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        mounts = c.setdefault("volumeMounts", [])
        if any(m.get("mountPath") == SERVICE_ACCOUNT_MOUNT_PATH for m in mounts):
            continue
        mounts.append({"name": name, "readOnly": True, "mountPath": SERVICE_ACCOUNT_MOUNT_PATH})
        needs = True
    if needs and existing is None:
        spec["volumes"] = [
            *volumes,
            {
                "name": name,
                "projected": {
                    "defaultMode": 0o644,
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                                "path": "token",
                            }
                        },
                        {
                            "configMap": {
                                "name": ROOT_CA_CONFIGMAP,
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                    }
                                ]
                            }
                        },
                    ],
                },
            },
        ]


def admit_update(api: APIServer, rt: ResourceType, obj: JSON, old: JSON) -> None:
    return None


def _default_storage_class(api: APIServer) -> str | None:
    # plugin/pkg/admission/storage/storageclass/setdefault: the newest default class wins.
    best: tuple[str, str] | None = None
    for sc in api.store.iter("storage.k8s.io/storageclasses"):
        ann = sc["metadata"].get("annotations") or {}
        if (
            ann.get("storageclass.kubernetes.io/is-default-class") == "true"
            or ann.get("storageclass.beta.kubernetes.io/is-default-class") == "true"
        ):
            cand = (sc["metadata"]["creationTimestamp"], sc["metadata"]["name"])
            if best is None or cand > best:
                best = cand
    return best[1] if best else None


# -- side effects of writes ------------------------------------------------------------------
def after_write(api: APIServer, rt: ResourceType, stored: JSON, old: JSON | None) -> None:
    key = (rt.group, rt.kind)
    if key == ("apiextensions.k8s.io", "CustomResourceDefinition") and not stored["metadata"].get(
        "deletionTimestamp"
    ):
        _establish_crd(api, rt, stored)
    elif key == ("", "Namespace") and old is None:
        # The ServiceAccount controller (pkg/controller/serviceaccount) gives every namespace "default".
        sa_rt = api.resource("", "v1", "serviceaccounts")
        name = stored["metadata"]["name"]
        if api.store.peek("/serviceaccounts", name, "default") is None:
            api.create(sa_rt, name, {"metadata": {"name": "default", "namespace": name}})
        # pkg/controller/certificates/rootcacertpublisher/publisher.go: every namespace gets the
        # ConfigMap kube-root-ca.crt with the API server's CA (the token volume reads it).
        if api.root_ca_pem and api.store.peek("/configmaps", name, ROOT_CA_CONFIGMAP) is None:
            cm_rt = api.resource("", "v1", "configmaps")
            api.create(
                cm_rt,
                name,
                {
                    "metadata": {
                        "name": ROOT_CA_CONFIGMAP,
                        "namespace": name,
                        "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION},
                    },
                    "data": {"ca.crt": api.root_ca_pem},
                },
            )


def _establish_crd(api: APIServer, rt: ResourceType, crd: JSON) -> None:
    # apiextensions-apiserver/pkg/controller/establish and .../status: NamesAccepted, Established.
    from .meta import now as _now

    api.register_crd(api.to_external(rt, crd))
    names = crd["spec"]["names"]
    status = deep_copy(crd.get("status") or {})
    accepted = {k: v for k, v in names.items()}
    stored_versions = list(status.get("storedVersions") or [])
    storage = next((v["name"] for v in crd["spec"]["versions"] if v.get("storage")), None)
    if storage and storage not in stored_versions:
        stored_versions.append(storage)
    conds = {c["type"]: c for c in status.get("conditions") or []}
    t = _now()
    want = [
        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"},
        {
            "type": "Established",
            "status": "True",
            "reason": "InitialNamesAccepted",
            "message": "the initial names have been accepted",
        },
    ]
    new_conds = []
    for w in want:
        prev = conds.get(w["type"])
        w["lastTransitionTime"] = (
            prev["lastTransitionTime"] if prev and prev.get("status") == w["status"] else t
        )
        new_conds.append(w)
    new_status = {"conditions": new_conds, "acceptedNames": accepted, "storedVersions": stored_versions}
    if status != new_status:
        obj = api.to_external(rt, crd)
        obj["status"] = new_status
        api.update(rt, "", crd["metadata"]["name"], obj, subresource="status", internal_patch=True)


def after_delete(api: APIServer, rt: ResourceType, final: JSON) -> None:
    if (rt.group, rt.kind) == ("apiextensions.k8s.io", "CustomResourceDefinition"):
        api.unregister_crd(final)


def grace_period(rt: ResourceType, obj: JSON, requested: Any) -> int:
    """The grace period a DELETE gets (``rest.BeforeDelete`` with the strategy's CheckGracefulDelete)."""
    if (rt.group, rt.kind) != ("", "Pod"):
        return 0
    spec = obj.get("spec") or {}
    phase = (obj.get("status") or {}).get("phase")
    # pkg/registry/core/pod/strategy.go: CheckGracefulDelete: unscheduled or terminated pods go at once.
    if not spec.get("nodeName") or phase in ("Failed", "Succeeded"):
        return 0
    if requested is not None:
        g = int(requested)
        return 1 if g < 0 else g
    g = spec.get("terminationGracePeriodSeconds")
    return int(g) if g is not None else 30


# -- events.k8s.io/v1 <-> core/v1 Event (pkg/apis/events/v1/conversion.go) -------------------
def core_event_to_events_v1(ev: JSON) -> JSON:
    out: JSON = {"metadata": ev.get("metadata", {})}
    for src, dst in (
        ("involvedObject", "regarding"),
        ("related", "related"),
        ("message", "note"),
        ("reason", "reason"),
        ("type", "type"),
        ("action", "action"),
        ("eventTime", "eventTime"),
        ("series", "series"),
        ("reportingComponent", "reportingController"),
        ("reportingInstance", "reportingInstance"),
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
    ):
        if ev.get(src) not in (None, "", 0):
            out[dst] = ev[src]
    if ev.get("source"):
        out["deprecatedSource"] = ev["source"]
    if "eventTime" not in out:
        out["eventTime"] = None
    return out


def events_v1_to_core_event(ev: JSON) -> JSON:
    out: JSON = {"metadata": ev.get("metadata", {})}
    for dst, src in (
        ("involvedObject", "regarding"),
        ("related", "related"),
        ("message", "note"),
        ("reason", "reason"),
        ("type", "type"),
        ("action", "action"),
        ("eventTime", "eventTime"),
        ("series", "series"),
        ("reportingComponent", "reportingController"),
        ("reportingInstance", "reportingInstance"),
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
    ):
        if ev.get(src) is not None:
            out[dst] = ev[src]
    if ev.get("deprecatedSource"):
        out["source"] = ev["deprecatedSource"]
    out.setdefault("involvedObject", {})
    return out


def pod_ready(pod: JSON) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def age_seconds(ts: str) -> float:
    import datetime as dt

    return (dt.datetime.now(dt.UTC) - parse_time(ts)).total_seconds()


__all__ = ["StatusError", "not_found"]
