"""The PodSecurity admission plugin (Pod Security Standards), as kube-apiserver runs it by default.

Upstream: ``staging/src/k8s.io/pod-security-admission`` (the library) wrapped by
``plugin/pkg/admission/security/podsecurity/admission.go`` (the in-tree validating plugin). What
each part here follows:

* Namespace labels -> policy: ``api/helpers.go`` (``ParseLevel``, ``ParseVersion``,
  ``PolicyToEvaluate`` with its "warn defaults to a stricter enforce level" rule,
  ``LevelVersion.String``).
* Decisions: ``admission/admission.go`` (``ValidateNamespace``, ``ValidatePod`` with
  ``ignoredPodSubresources`` and ``isSignificantPodUpdate``, ``ValidatePodController``,
  ``EvaluatePod``, ``EvaluatePodsInNamespace`` with ``prioritizePods`` / ``decoratePodWarnings``)
  and ``admission/response.go`` (``forbiddenResponse`` = ``apierrors.NewForbidden`` on the pod's
  group-resource and name, ``invalidResponse`` = ``apierrors.NewInvalid``).
* Checks: ``policy/check_*.go``, registered and ordered as ``policy/registry.go`` does
  (``populate``: Baseline check IDs sorted, then Restricted check IDs sorted; a Restricted check
  version drops the Baseline checks named in its ``OverrideCheckIDs``; ``inflateVersions`` and the
  clamp of a newer requested version to the registry's ``maxVersion``); results aggregated by
  ``policy/checks.go`` (``AggregateCheckResults``, ``ForbiddenDetail``, ``ForbiddenReason``) and
  worded with ``policy/helpers.go`` (``joinQuote``, ``pluralize``). Containers are visited as
  ``policy/visitor.go`` does: init containers, containers, ephemeral containers.

The plugin's default configuration (``admission/api/v1/defaults.go``) is privileged:latest for
enforce, audit and warn with no exemptions; so is kubesim's: a namespace without labels admits
everything. kubesim's audit log (audit.py) carries no admission annotations: the audit level is
parsed and validated like the others, then not used.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import Cause, StatusError, field_error, forbidden, invalid

if TYPE_CHECKING:
    from .apiserver import APIServer
    from .resources import ResourceType

JSON = dict[str, Any]

# api/constants.go
LABEL_PREFIX = "pod-security.kubernetes.io/"
ENFORCE_LEVEL_LABEL = LABEL_PREFIX + "enforce"
ENFORCE_VERSION_LABEL = LABEL_PREFIX + "enforce-version"
AUDIT_LEVEL_LABEL = LABEL_PREFIX + "audit"
AUDIT_VERSION_LABEL = LABEL_PREFIX + "audit-version"
WARN_LEVEL_LABEL = LABEL_PREFIX + "warn"
WARN_VERSION_LABEL = LABEL_PREFIX + "warn-version"

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
_LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)

#: ``registry.maxVersion`` of kube-apiserver 1.37: the newest ``MinimumVersion`` among the
#: registered checks (``sysctls`` gained a 1.37 revision). ``latest`` and any newer pinned version
#: are evaluated as this one (``checkRegistry.EvaluatePod``).
MAX_POLICY_MINOR = 37


# --------------------------------------------------------------------------------------------
# Levels, versions, policies (api/helpers.go)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LevelVersion:
    """``api.LevelVersion``; ``minor`` None is ``latest``."""

    level: str
    minor: int | None = None

    def __str__(self) -> str:
        return f"{self.level}:{'latest' if self.minor is None else f'v1.{self.minor}'}"

    def evaluated_minor(self) -> int:
        if self.minor is None or self.minor > MAX_POLICY_MINOR:
            return MAX_POLICY_MINOR
        return self.minor


@dataclass(frozen=True)
class Policy:
    enforce: LevelVersion
    audit: LevelVersion
    warn: LevelVersion

    def fully_privileged(self) -> bool:
        return PRIVILEGED == self.enforce.level == self.audit.level == self.warn.level


DEFAULT_POLICY = Policy(LevelVersion(PRIVILEGED), LevelVersion(PRIVILEGED), LevelVersion(PRIVILEGED))


def parse_level(level: str) -> tuple[str, str | None]:
    """``ParseLevel``: an unknown level is ``restricted`` with an error."""
    if level in _LEVELS:
        return level, None
    return RESTRICTED, "must be one of privileged, baseline, restricted"


_VERSION_RE = re.compile(r"^v1\.([0-9]|[1-9][0-9]*)$")


def parse_version(version: str) -> tuple[int | None, str | None]:
    """``ParseVersion``: ``latest`` or ``v1.x``; anything else is ``latest`` with an error."""
    if version == "latest":
        return None, None
    m = _VERSION_RE.match(version)
    if m is None:
        return None, 'must be "latest" or "v1.x"'
    return int(m.group(1)), None


def _compare_levels(a: str, b: str) -> int:
    """``CompareLevels``: -1, 0, 1 by strictness."""
    return (_LEVELS.index(a) > _LEVELS.index(b)) - (_LEVELS.index(a) < _LEVELS.index(b))


def policy_to_evaluate(
    labels: Mapping[str, str] | None, defaults: Policy = DEFAULT_POLICY
) -> tuple[Policy, list[Cause]]:
    """``PolicyToEvaluate``: the namespace's policy and the label errors (``metadata.labels[...]``
    field errors). A valid policy is always returned: an unparsable enforce level is
    ``restricted`` (fail closed), an unparsable audit or warn level ``privileged`` (fail open), an
    unparsable version ``latest``. Without a warn label, warn follows an explicitly set, stricter
    enforce level (and its version, unless warn-version is set)."""
    errs: list[Cause] = []
    enforce, audit, warn = defaults.enforce, defaults.audit, defaults.warn
    if not labels:
        return defaults, errs

    def bad(label: str, value: str, msg: str) -> None:
        errs.append(
            field_error("FieldValueInvalid", f"metadata.labels[{label}]", msg, value, show_value=True)
        )

    has_enforce_level = has_warn_level = has_warn_version = False
    if ENFORCE_LEVEL_LABEL in labels:
        value = labels[ENFORCE_LEVEL_LABEL]
        level, err = parse_level(value)
        enforce = LevelVersion(level, enforce.minor)
        has_enforce_level = err is None  # don't default warn in case of error
        if err:
            bad(ENFORCE_LEVEL_LABEL, value, err)
    if ENFORCE_VERSION_LABEL in labels:
        value = labels[ENFORCE_VERSION_LABEL]
        minor, err = parse_version(value)
        enforce = LevelVersion(enforce.level, minor)
        if err:
            bad(ENFORCE_VERSION_LABEL, value, err)
    if AUDIT_LEVEL_LABEL in labels:
        value = labels[AUDIT_LEVEL_LABEL]
        level, err = parse_level(value)
        audit = LevelVersion(PRIVILEGED if err else level, audit.minor)  # fail open for audit
        if err:
            bad(AUDIT_LEVEL_LABEL, value, err)
    if AUDIT_VERSION_LABEL in labels:
        value = labels[AUDIT_VERSION_LABEL]
        minor, err = parse_version(value)
        audit = LevelVersion(audit.level, minor)
        if err:
            bad(AUDIT_VERSION_LABEL, value, err)
    if WARN_LEVEL_LABEL in labels:
        has_warn_level = True
        value = labels[WARN_LEVEL_LABEL]
        level, err = parse_level(value)
        warn = LevelVersion(PRIVILEGED if err else level, warn.minor)  # fail open for warn
        if err:
            bad(WARN_LEVEL_LABEL, value, err)
    if WARN_VERSION_LABEL in labels:
        has_warn_version = True
        value = labels[WARN_VERSION_LABEL]
        minor, err = parse_version(value)
        warn = LevelVersion(warn.level, minor)
        if err:
            bad(WARN_VERSION_LABEL, value, err)
    # Default warn to the enforce level when explicitly set to a more restrictive level.
    if not has_warn_level and has_enforce_level and _compare_levels(enforce.level, warn.level) > 0:
        warn = LevelVersion(enforce.level, warn.minor if has_warn_version else enforce.minor)
    return Policy(enforce, audit, warn), errs


# --------------------------------------------------------------------------------------------
# Check helpers (policy/helpers.go, policy/visitor.go)
# --------------------------------------------------------------------------------------------


def join_quote(items: Sequence[str]) -> str:
    """``joinQuote``."""
    if not items:
        return ""
    return '"' + '", "'.join(items) + '"'


def pluralize(singular: str, plural: str, count: int) -> str:
    return singular if count == 1 else plural


def _map(obj: Any, key: str) -> Mapping[str, Any]:
    v = obj.get(key) if isinstance(obj, Mapping) else None
    return v if isinstance(v, Mapping) else {}


def _list(obj: Any, key: str) -> list[Any]:
    v = obj.get(key) if isinstance(obj, Mapping) else None
    return v if isinstance(v, list) else []


def _containers(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """``visitContainers``: init containers, containers, then ephemeral containers."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in _list(spec, key):
            if isinstance(c, Mapping):
                yield c


def _name(c: Mapping[str, Any]) -> str:
    n = c.get("name")
    return n if isinstance(n, str) else ""


def _sc(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _map(obj, "securityContext")


def _is_true(v: Any) -> bool:
    return v is True


def _is_zero(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v == 0


def _windows(spec: Mapping[str, Any]) -> bool:
    return _map(spec, "os").get("name") == "windows"


def _user_namespace(spec: Mapping[str, Any]) -> bool:
    """``relaxPolicyForUserNamespacePod`` as of policy 1.35 (the feature gate that guarded it is
    gone): ``hostUsers: false``."""
    return spec.get("hostUsers") is False


def _setters(pod_bad: bool, containers: Sequence[str]) -> list[str]:
    setters = ["pod"] if pod_bad else []
    if containers:
        setters.append(f"{pluralize('container', 'containers', len(containers))} {join_quote(containers)}")
    return setters


Result = tuple[str, str] | None  # (ForbiddenReason, ForbiddenDetail) or allowed
CheckFn = Callable[[Mapping[str, Any], Mapping[str, Any]], Result]


# --------------------------------------------------------------------------------------------
# Baseline checks
# --------------------------------------------------------------------------------------------


def _app_armor_profile(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_appArmorProfile.go: appArmorProfile_1_0 (the field-based part since 1.30)."""
    allowed_types = ("RuntimeDefault", "Localhost")
    bad_values: set[str] = set()
    pod_bad = False
    pod_profile = _sc(spec).get("appArmorProfile")
    if isinstance(pod_profile, Mapping) and pod_profile.get("type") not in allowed_types:
        pod_bad = True
        bad_values.add(str(pod_profile.get("type") or ""))
    bad_containers = []
    for c in _containers(spec):
        profile = _sc(c).get("appArmorProfile")
        if isinstance(profile, Mapping) and profile.get("type") not in allowed_types:
            bad_containers.append(_name(c))
            bad_values.add(str(profile.get("type") or ""))
    setters = _setters(pod_bad, bad_containers)
    annotations = _map(meta, "annotations")
    forbidden_annotations = sorted(
        f"{k}={_go_quote(v)}"
        for k, v in annotations.items()
        if k.startswith("container.apparmor.security.beta.kubernetes.io/")
        and isinstance(v, str)
        and not (v == "" or v == "runtime/default" or v.startswith("localhost/"))
    )
    bad_list = sorted(bad_values)
    if forbidden_annotations:
        bad_list += forbidden_annotations
        setters.append(pluralize("annotation", "annotations", len(forbidden_annotations)))
    if setters:
        return (
            pluralize("forbidden AppArmor profile", "forbidden AppArmor profiles", len(bad_list)),
            f"{' and '.join(setters)} must not set AppArmor profile type to {join_quote(bad_list)}",
        )
    return None


_CAPABILITIES_ALLOWED_1_0 = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)


def _capabilities_baseline(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_capabilities_baseline.go: capabilitiesBaseline_1_0."""
    bad_containers: list[str] = []
    non_default: set[str] = set()
    for c in _containers(spec):
        caps = _sc(c).get("capabilities")
        if not isinstance(caps, Mapping):
            continue
        valid = True
        for cap in _list(caps, "add"):
            if cap not in _CAPABILITIES_ALLOWED_1_0:
                valid = False
                non_default.add(str(cap))
        if not valid:
            bad_containers.append(_name(c))
    if bad_containers:
        return (
            "non-default capabilities",
            f"{pluralize('container', 'containers', len(bad_containers))} {join_quote(bad_containers)} "
            f"must not include {join_quote(sorted(non_default))} in securityContext.capabilities.add",
        )
    return None


def _host_namespaces(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_hostNamespaces.go: hostNamespaces_1_0."""
    used = sorted(k for k in ("hostNetwork", "hostPID", "hostIPC") if _is_true(spec.get(k)))
    return ("host namespaces", ", ".join(used)) if used else None


def _host_path_volumes(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_hostPathVolumes.go: hostPathVolumes_1_0."""
    names = [
        str(v.get("name") or "")
        for v in _list(spec, "volumes")
        if isinstance(v, Mapping) and v.get("hostPath") is not None
    ]
    if names:
        return "hostPath volumes", f"{pluralize('volume', 'volumes', len(names))} {join_quote(names)}"
    return None


def _host_ports(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_hostPorts.go: hostPorts_1_0 (the ports as a sorted set of strings)."""
    bad_containers: list[str] = []
    ports: set[str] = set()
    for c in _containers(spec):
        valid = True
        for p in _list(c, "ports"):
            hp = p.get("hostPort") if isinstance(p, Mapping) else None
            if isinstance(hp, int) and not isinstance(hp, bool) and hp != 0:
                valid = False
                ports.add(str(hp))
        if not valid:
            bad_containers.append(_name(c))
    if bad_containers:
        return (
            "hostPort",
            f"{pluralize('container', 'containers', len(bad_containers))} {join_quote(bad_containers)} "
            f"{pluralize('uses', 'use', len(bad_containers))} "
            f"{pluralize('hostPort', 'hostPorts', len(ports))} {', '.join(sorted(ports))}",
        )
    return None


def _host_probes_and_lifecycle(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_hostProbesAndhostLifecycle.go: hostProbesAndHostLifecycleV1Dot34."""
    bad_containers: set[str] = set()
    hosts: set[str] = set()

    def handler_hosts(h: Any) -> list[str]:
        out = []
        if isinstance(h, Mapping):
            for kind in ("httpGet", "tcpSocket"):
                host = _map(h, kind).get("host")
                if isinstance(h.get(kind), Mapping) and isinstance(host, str) and host:
                    out.append(host)
        return out

    for c in _containers(spec):
        found: list[str] = []
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            found += handler_hosts(c.get(probe))
        lifecycle = _map(c, "lifecycle")
        for hook in ("postStart", "preStop"):
            found += handler_hosts(lifecycle.get(hook))
        if found:
            bad_containers.add(_name(c))
            hosts.update(found)
    if bad_containers:
        return (
            "probe or lifecycle host",
            f"{pluralize('container', 'containers', len(bad_containers))} {join_quote(sorted(bad_containers))} "
            f"{pluralize('uses', 'use', len(bad_containers))} "
            f"{pluralize('probe or lifecycle host', 'probe or lifecycle hosts', len(hosts))} "
            f"{join_quote(sorted(hosts))}",
        )
    return None


def _privileged(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_privileged.go: privileged_1_0."""
    bad = [_name(c) for c in _containers(spec) if _is_true(_sc(c).get("privileged"))]
    if bad:
        return (
            "privileged",
            f"{pluralize('container', 'containers', len(bad))} {join_quote(bad)} "
            "must not set securityContext.privileged=true",
        )
    return None


def _proc_mount_1_0(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_procMount_baseline.go: procMount_1_0 (also the Restricted ``procMount_restricted``)."""
    bad: list[str] = []
    types: set[str] = set()
    for c in _containers(spec):
        pm = _sc(c).get("procMount")
        if pm is not None and pm != "Default":
            bad.append(_name(c))
            types.add(str(pm))
    if bad:
        return (
            "procMount",
            f"{pluralize('container', 'containers', len(bad))} {join_quote(bad)} "
            f"must not set securityContext.procMount to {join_quote(sorted(types))}",
        )
    return None


def _proc_mount_1_35(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_procMount_baseline.go: procMount1_35baseline: anything goes in a user namespace."""
    return None if _user_namespace(spec) else _proc_mount_1_0(meta, spec)


def _se_linux_options(allowed_types: frozenset[str]) -> CheckFn:
    """check_seLinuxOptions.go: seLinuxOptions_1_0 / the 1.31 revision (``container_engine_t``)."""

    def check(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
        bad_types: set[str] = set()
        flags = {"user": False, "role": False}

        def valid(opts: Mapping[str, Any]) -> bool:
            ok = True
            t = opts.get("type") or ""
            if t not in allowed_types:
                ok = False
                bad_types.add(str(t))
            for key in ("user", "role"):
                if opts.get(key):
                    ok = False
                    flags[key] = True
            return ok

        pod_opts = _sc(spec).get("seLinuxOptions")
        pod_bad = isinstance(pod_opts, Mapping) and not valid(pod_opts)
        bad_containers = []
        for c in _containers(spec):
            opts = _sc(c).get("seLinuxOptions")
            if isinstance(opts, Mapping) and not valid(opts):
                bad_containers.append(_name(c))
        setters = _setters(pod_bad, bad_containers)
        if not setters:
            return None
        data = []
        if bad_types:
            data.append(f"{pluralize('type', 'types', len(bad_types))} {join_quote(sorted(bad_types))}")
        if flags["user"]:
            data.append("user may not be set")
        if flags["role"]:
            data.append("role may not be set")
        return (
            "seLinuxOptions",
            f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: {'; '.join(data)}",
        )

    return check


_SELINUX_TYPES_1_0 = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
_SELINUX_TYPES_1_31 = _SELINUX_TYPES_1_0 | {"container_engine_t"}


def _valid_seccomp(t: Any) -> bool:
    return t in ("Localhost", "RuntimeDefault")


def _seccomp_baseline_1_0(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_seccompProfile_baseline.go: seccompProfileBaseline_1_0 (the alpha annotations)."""

    def ok(v: Any) -> bool:
        return v in ("runtime/default", "docker/default") or (
            isinstance(v, str) and v.startswith("localhost/")
        )

    annotations = _map(meta, "annotations")
    bad: set[str] = set()
    pod_key = "seccomp.security.alpha.kubernetes.io/pod"
    if pod_key in annotations and not ok(annotations[pod_key]):
        bad.add(f"{pod_key}={_go_quote(str(annotations[pod_key]))}")
    for c in _containers(spec):
        key = "container.seccomp.security.alpha.kubernetes.io/" + _name(c)
        if key in annotations and not ok(annotations[key]):
            bad.add(f"{key}={_go_quote(str(annotations[key]))}")
    if bad:
        return (
            "seccompProfile",
            f"forbidden {pluralize('annotation', 'annotations', len(bad))} {', '.join(sorted(bad))}",
        )
    return None


def _seccomp_baseline_1_19(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_seccompProfile_baseline.go: seccompProfileBaseline_1_19."""
    bad_values: set[str] = set()
    pod_profile = _sc(spec).get("seccompProfile")
    pod_bad = isinstance(pod_profile, Mapping) and not _valid_seccomp(pod_profile.get("type"))
    if pod_bad:
        bad_values.add(str(pod_profile.get("type") or ""))  # type: ignore[union-attr]
    bad_containers = []
    for c in _containers(spec):
        profile = _sc(c).get("seccompProfile")
        if isinstance(profile, Mapping) and not _valid_seccomp(profile.get("type")):
            bad_containers.append(_name(c))
            bad_values.add(str(profile.get("type") or ""))
    setters = _setters(pod_bad, bad_containers)
    if setters:
        return (
            "seccompProfile",
            f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to "
            f"{join_quote(sorted(bad_values))}",
        )
    return None


_SYSCTLS_1_0 = (
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
)
_SYSCTLS_1_27 = (*_SYSCTLS_1_0, "net.ipv4.ip_local_reserved_ports")
_SYSCTLS_1_29 = (
    *_SYSCTLS_1_27,
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
)
_SYSCTLS_1_32 = (*_SYSCTLS_1_29, "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem")
_SYSCTLS_1_37 = (*_SYSCTLS_1_32, "net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat")


def _sysctls(allowed: Sequence[str]) -> CheckFn:
    """check_sysctls.go: sysctlsV1Dot0 ... sysctlsV1Dot37 (the names in pod order)."""
    allowed_set = frozenset(allowed)

    def check(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
        bad = [
            str(s.get("name") or "")
            for s in _list(_sc(spec), "sysctls")
            if isinstance(s, Mapping) and s.get("name") not in allowed_set
        ]
        return ("forbidden sysctls", ", ".join(bad)) if bad else None

    return check


def _windows_host_process(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_windowsHostProcess.go: windowsHostProcess_1_0."""
    bad = [_name(c) for c in _containers(spec) if _is_true(_map(_sc(c), "windowsOptions").get("hostProcess"))]
    pod_bad = _is_true(_map(_sc(spec), "windowsOptions").get("hostProcess"))
    setters = _setters(pod_bad, bad)
    if setters:
        return (
            "hostProcess",
            f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true",
        )
    return None


# --------------------------------------------------------------------------------------------
# Restricted checks
# --------------------------------------------------------------------------------------------


def _allow_privilege_escalation_1_8(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_allowPrivilegeEscalation.go: allowPrivilegeEscalation_1_8."""
    bad = [_name(c) for c in _containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False]
    if bad:
        return (
            "allowPrivilegeEscalation != false",
            f"{pluralize('container', 'containers', len(bad))} {join_quote(bad)} "
            "must set securityContext.allowPrivilegeEscalation=false",
        )
    return None


def _not_windows(check: CheckFn) -> CheckFn:
    """The 1.25 revisions of allowPrivilegeEscalation, capabilities_restricted and
    seccompProfile_restricted: a pod with ``spec.os.name: windows`` is exempt."""

    def wrapped(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
        return None if _windows(spec) else check(meta, spec)

    return wrapped


def _capabilities_restricted_1_22(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_capabilities_restricted.go: capabilitiesRestricted_1_22."""
    missing_drop_all: list[str] = []
    adding_forbidden: list[str] = []
    forbidden_caps: set[str] = set()
    for c in _containers(spec):
        caps = _sc(c).get("capabilities")
        if not isinstance(caps, Mapping):
            missing_drop_all.append(_name(c))
            continue
        if "ALL" not in _list(caps, "drop"):
            missing_drop_all.append(_name(c))
        bad = [str(x) for x in _list(caps, "add") if x != "NET_BIND_SERVICE"]
        if bad:
            adding_forbidden.append(_name(c))
            forbidden_caps.update(bad)
    details = []
    if missing_drop_all:
        details.append(
            f"{pluralize('container', 'containers', len(missing_drop_all))} {join_quote(missing_drop_all)} "
            'must set securityContext.capabilities.drop=["ALL"]'
        )
    if adding_forbidden:
        details.append(
            f"{pluralize('container', 'containers', len(adding_forbidden))} {join_quote(adding_forbidden)} "
            f"must not include {join_quote(sorted(forbidden_caps))} in securityContext.capabilities.add"
        )
    return ("unrestricted capabilities", "; ".join(details)) if details else None


_RESTRICTED_OK_VOLUMES = (
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
)
_RESTRICTED_BAD_VOLUMES = (
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
)


def _restricted_volumes(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_restrictedVolumes.go: restrictedVolumes_1_0 (``image`` volumes allowed since 1.33,
    patched into the 1.0 function)."""
    bad_volumes: list[str] = []
    bad_types: set[str] = set()
    for v in _list(spec, "volumes"):
        if not isinstance(v, Mapping):
            continue
        if any(v.get(k) is not None for k in _RESTRICTED_OK_VOLUMES):
            continue
        bad_volumes.append(str(v.get("name") or ""))
        bad_types.add(next((k for k in _RESTRICTED_BAD_VOLUMES if v.get(k) is not None), "unknown"))
    if bad_volumes:
        return (
            "restricted volume types",
            f"{pluralize('volume', 'volumes', len(bad_volumes))} {join_quote(bad_volumes)} "
            f"{pluralize('uses', 'use', len(bad_volumes))} "
            f"{pluralize('restricted volume type', 'restricted volume types', len(bad_types))} "
            f"{join_quote(sorted(bad_types))}",
        )
    return None


def _run_as_non_root_1_0(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_runAsNonRoot.go: runAsNonRoot_1_0."""
    pod_value = _sc(spec).get("runAsNonRoot")
    pod_bad = pod_value is False
    pod_ok = pod_value is True
    explicit_bad: list[str] = []
    implicit_bad: list[str] = []
    for c in _containers(spec):
        value = _sc(c).get("runAsNonRoot")
        if value is not None:
            if value is False:
                explicit_bad.append(_name(c))
        elif not pod_ok:
            implicit_bad.append(_name(c))
    setters = _setters(pod_bad, explicit_bad)
    if setters:
        return (
            "runAsNonRoot != true",
            f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false",
        )
    if implicit_bad:
        return (
            "runAsNonRoot != true",
            f"pod or {pluralize('container', 'containers', len(implicit_bad))} {join_quote(implicit_bad)} "
            "must set securityContext.runAsNonRoot=true",
        )
    return None


def _run_as_user_1_23(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_runAsUser.go: runAsUser_1_23."""
    pod_bad = _is_zero(_sc(spec).get("runAsUser"))
    bad = [_name(c) for c in _containers(spec) if _is_zero(_sc(c).get("runAsUser"))]
    setters = _setters(pod_bad, bad)
    if setters:
        return "runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0"
    return None


def _user_namespace_relaxed(check: CheckFn) -> CheckFn:
    """The 1.35 revisions of runAsNonRoot and runAsUser: skipped for ``hostUsers: false``."""

    def wrapped(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
        return None if _user_namespace(spec) else check(meta, spec)

    return wrapped


def _seccomp_restricted_1_19(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Result:
    """check_seccompProfile_restricted.go: seccompProfileRestricted_1_19."""
    bad_values: set[str] = set()
    pod_profile = _sc(spec).get("seccompProfile")
    pod_bad = False
    pod_set = False
    if isinstance(pod_profile, Mapping):
        if _valid_seccomp(pod_profile.get("type")):
            pod_set = True
        else:
            pod_bad = True
            bad_values.add(str(pod_profile.get("type") or ""))
    explicit_bad: list[str] = []
    implicit_bad: list[str] = []
    for c in _containers(spec):
        profile = _sc(c).get("seccompProfile")
        if isinstance(profile, Mapping):
            if not _valid_seccomp(profile.get("type")):
                explicit_bad.append(_name(c))
                bad_values.add(str(profile.get("type") or ""))
        elif not pod_set:
            implicit_bad.append(_name(c))
    setters = _setters(pod_bad, explicit_bad)
    if setters:
        return (
            "seccompProfile",
            f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to "
            f"{join_quote(sorted(bad_values))}",
        )
    if implicit_bad:
        return (
            "seccompProfile",
            f"pod or {pluralize('container', 'containers', len(implicit_bad))} {join_quote(implicit_bad)} "
            'must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"',
        )
    return None


# --------------------------------------------------------------------------------------------
# The registry (policy/registry.go)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Version:
    minimum: int  # MinimumVersion minor (major is always 1)
    check: CheckFn
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Check:
    id: str
    level: str
    versions: tuple[_Version, ...] = field(default_factory=tuple)


_CHECKS: tuple[_Check, ...] = (
    _Check("appArmorProfile", BASELINE, (_Version(0, _app_armor_profile),)),
    _Check("capabilities_baseline", BASELINE, (_Version(0, _capabilities_baseline),)),
    _Check("hostNamespaces", BASELINE, (_Version(0, _host_namespaces),)),
    _Check("hostPathVolumes", BASELINE, (_Version(0, _host_path_volumes),)),
    _Check("hostPorts", BASELINE, (_Version(0, _host_ports),)),
    _Check("hostProbesAndHostLifecycle", BASELINE, (_Version(34, _host_probes_and_lifecycle),)),
    _Check("privileged", BASELINE, (_Version(0, _privileged),)),
    _Check("procMount", BASELINE, (_Version(0, _proc_mount_1_0), _Version(35, _proc_mount_1_35))),
    _Check(
        "seLinuxOptions",
        BASELINE,
        (
            _Version(0, _se_linux_options(_SELINUX_TYPES_1_0)),
            _Version(31, _se_linux_options(_SELINUX_TYPES_1_31)),
        ),
    ),
    _Check(
        "seccompProfile_baseline",
        BASELINE,
        (_Version(0, _seccomp_baseline_1_0), _Version(19, _seccomp_baseline_1_19)),
    ),
    _Check(
        "sysctls",
        BASELINE,
        (
            _Version(0, _sysctls(_SYSCTLS_1_0)),
            _Version(27, _sysctls(_SYSCTLS_1_27)),
            _Version(29, _sysctls(_SYSCTLS_1_29)),
            _Version(32, _sysctls(_SYSCTLS_1_32)),
            _Version(37, _sysctls(_SYSCTLS_1_37)),
        ),
    ),
    _Check("windowsHostProcess", BASELINE, (_Version(0, _windows_host_process),)),
    _Check(
        "allowPrivilegeEscalation",
        RESTRICTED,
        (
            _Version(8, _allow_privilege_escalation_1_8),
            _Version(25, _not_windows(_allow_privilege_escalation_1_8)),
        ),
    ),
    _Check(
        "capabilities_restricted",
        RESTRICTED,
        (
            _Version(22, _capabilities_restricted_1_22, ("capabilities_baseline",)),
            _Version(25, _not_windows(_capabilities_restricted_1_22), ("capabilities_baseline",)),
        ),
    ),
    _Check("procMount_restricted", RESTRICTED, (_Version(35, _proc_mount_1_0, ("procMount",)),)),
    _Check("restrictedVolumes", RESTRICTED, (_Version(0, _restricted_volumes, ("hostPathVolumes",)),)),
    _Check(
        "runAsNonRoot",
        RESTRICTED,
        (_Version(0, _run_as_non_root_1_0), _Version(35, _user_namespace_relaxed(_run_as_non_root_1_0))),
    ),
    _Check(
        "runAsUser",
        RESTRICTED,
        (_Version(23, _run_as_user_1_23), _Version(35, _user_namespace_relaxed(_run_as_user_1_23))),
    ),
    _Check(
        "seccompProfile_restricted",
        RESTRICTED,
        (
            _Version(19, _seccomp_restricted_1_19, ("seccompProfile_baseline",)),
            _Version(25, _not_windows(_seccomp_restricted_1_19), ("seccompProfile_baseline",)),
        ),
    ),
)


def _version_at(check: _Check, minor: int) -> _Version | None:
    found = None
    for v in check.versions:
        if v.minimum <= minor:
            found = v
    return found


def checks_for(lv: LevelVersion) -> list[tuple[str, CheckFn]]:
    """The (id, check) pairs ``EvaluatePod`` runs for a level and version, in upstream order:
    Baseline IDs sorted, then Restricted IDs sorted; overridden Baseline checks left out."""
    if lv.level == PRIVILEGED:
        return []
    minor = lv.evaluated_minor()
    baseline: dict[str, _Version] = {}
    restricted: dict[str, _Version] = {}
    for c in _CHECKS:
        v = _version_at(c, minor)
        if v is not None:
            (baseline if c.level == BASELINE else restricted)[c.id] = v
    ordered = sorted(baseline)
    if lv.level == RESTRICTED:
        overridden = {o for v in restricted.values() for o in v.overrides}
        ordered = [i for i in ordered if i not in overridden] + sorted(restricted)
    table = {**baseline, **restricted}
    return [(i, table[i].check) for i in ordered]


@dataclass
class Aggregate:
    """``policy.AggregateCheckResult``."""

    reasons: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return not self.reasons

    def forbidden_reason(self) -> str:
        return ", ".join(self.reasons)

    def forbidden_detail(self) -> str:
        return ", ".join(f"{r} ({d})" if d else r for r, d in zip(self.reasons, self.details, strict=True))


def evaluate(lv: LevelVersion, meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Aggregate:
    """``Evaluator.EvaluatePod`` then ``AggregateCheckResults``."""
    out = Aggregate()
    for _id, check in checks_for(lv):
        r = check(meta, spec)
        if r is not None:
            out.reasons.append(r[0] or "unknown forbidden reason")
            out.details.append(r[1])
    return out


# --------------------------------------------------------------------------------------------
# Admission (admission/admission.go)
# --------------------------------------------------------------------------------------------

# admission.go: ignoredPodSubresources
_IGNORED_POD_SUBRESOURCES = frozenset(
    {"exec", "attach", "binding", "eviction", "log", "portforward", "proxy", "status"}
)
# admission.go: defaultPodSpecResources (pods are handled by ValidatePod)
_POD_CONTROLLERS = {
    ("", "ReplicationController"),
    ("", "PodTemplate"),
    ("apps", "ReplicaSet"),
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("batch", "Job"),
    ("batch", "CronJob"),
}


def _namespace_labels(api: APIServer, namespace: str) -> Mapping[str, str] | None:
    ns = api.store.peek("/namespaces", "", namespace)
    if ns is None:
        return None
    labels = (ns.get("metadata") or {}).get("labels")
    return labels if isinstance(labels, Mapping) else {}


def _pod_template(rt: ResourceType, obj: JSON) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """``DefaultPodSpecExtractor.ExtractPodSpec``: (template metadata, template spec)."""
    spec = _map(obj, "spec")
    if rt.kind == "CronJob":
        template = _map(_map(_map(spec, "jobTemplate"), "spec"), "template")
    elif rt.kind == "PodTemplate":
        template = _map(obj, "template")
    else:
        template = _map(spec, "template")
    if not template and rt.kind == "ReplicationController":
        return None  # an optional template
    return _map(template, "metadata"), _map(template, "spec")


def _is_significant_pod_update(pod: JSON, old: JSON) -> bool:
    """``isSignificantPodUpdate``: a different number of containers, a changed image, a changed
    seccomp container annotation, or a new ephemeral container."""
    spec, old_spec = _map(pod, "spec"), _map(old, "spec")
    ann, old_ann = _map(_map(pod, "metadata"), "annotations"), _map(_map(old, "metadata"), "annotations")
    for key in ("containers", "initContainers"):
        if len(_list(spec, key)) != len(_list(old_spec, key)):
            return True

    def significant(c: Mapping[str, Any], oc: Mapping[str, Any]) -> bool:
        if c.get("image") != oc.get("image"):
            return True
        seccomp_key = "container.seccomp.security.alpha.kubernetes.io/" + _name(c)
        return ann.get(seccomp_key) != old_ann.get(seccomp_key)

    for key in ("containers", "initContainers"):
        for c, oc in zip(_list(spec, key), _list(old_spec, key), strict=True):
            if isinstance(c, Mapping) and isinstance(oc, Mapping) and significant(c, oc):
                return True
    old_ephemeral = {_name(c): c for c in _list(old_spec, "ephemeralContainers") if isinstance(c, Mapping)}
    for c in _list(spec, "ephemeralContainers"):
        if not isinstance(c, Mapping):
            continue
        oc = old_ephemeral.get(_name(c))
        if oc is None or significant(c, oc):
            return True
    return False


def _evaluate_pod(
    rt: ResourceType,
    name: str,
    policy: Policy,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    enforce: bool,
) -> list[str]:
    """``EvaluatePod``: raises the enforce level's 403; returns the warn level's warnings (none
    for a request that is refused)."""
    cached: dict[LevelVersion, Aggregate] = {}
    if enforce:
        result = evaluate(policy.enforce, meta, spec)
        if not result.allowed:
            # response.go: forbiddenResponse = apierrors.NewForbidden(resource, name, err)
            raise forbidden(
                rt.plural,
                rt.group,
                name,
                f"violates PodSecurity {_go_quote(str(policy.enforce))}: {result.forbidden_detail()}",
            )
        cached[policy.enforce] = result
    # The audit level only produces audit annotations, which kubesim has no audit log for.
    warn_result = cached.get(policy.warn)
    if warn_result is None:
        warn_result = evaluate(policy.warn, meta, spec)
    if not warn_result.allowed:
        return [f"would violate PodSecurity {_go_quote(str(policy.warn))}: {warn_result.forbidden_detail()}"]
    return []


def admit(api: APIServer, rt: ResourceType, obj: JSON, old: JSON | None, subresource: str = "") -> list[str]:
    """The plugin's ``Validate`` for a create (``old`` None) or update of ``obj``: raises the
    refusal, returns the warnings to send as ``Warning`` headers."""
    if not rt.builtin:
        return []
    key = (rt.group, rt.kind)
    if key == ("", "Namespace"):
        return _validate_namespace(api, rt, obj, old, subresource)
    if key == ("", "Pod"):
        return _validate_pod(api, rt, obj, old, subresource)
    if key in _POD_CONTROLLERS:
        return _validate_pod_controller(api, rt, obj, subresource)
    return []


def _validate_pod(
    api: APIServer, rt: ResourceType, pod: JSON, old: JSON | None, subresource: str
) -> list[str]:
    """``ValidatePod``."""
    if subresource in _IGNORED_POD_SUBRESOURCES:
        return []
    meta = _map(pod, "metadata")
    labels = _namespace_labels(api, str(meta.get("namespace") or ""))
    if labels is None:
        # admission.go: the namespace lookup failed
        raise StatusError(
            500,
            "InternalError",
            f"Internal error occurred: failed to lookup namespace {_go_quote(str(meta.get('namespace') or ''))}",
        )
    policy, errs = policy_to_evaluate(labels)
    if not errs and policy.fully_privileged():
        return []
    if old is not None and not _is_significant_pod_update(pod, old):
        return []
    return _evaluate_pod(rt, str(meta.get("name") or ""), policy, meta, _map(pod, "spec"), enforce=True)


def _validate_pod_controller(api: APIServer, rt: ResourceType, obj: JSON, subresource: str) -> list[str]:
    """``ValidatePodController``: warn (and audit) only; the enforce level is for the pods."""
    if subresource:
        return []
    meta = _map(obj, "metadata")
    labels = _namespace_labels(api, str(meta.get("namespace") or ""))
    if labels is None:
        return []  # upstream allows with an audit annotation
    policy, errs = policy_to_evaluate(labels)
    if not errs and policy.warn.level == PRIVILEGED and policy.audit.level == PRIVILEGED:
        return []
    template = _pod_template(rt, obj)
    if template is None:
        return []
    return _evaluate_pod(rt, str(meta.get("name") or ""), policy, template[0], template[1], enforce=False)


def _validate_namespace(
    api: APIServer, rt: ResourceType, ns: JSON, old: JSON | None, subresource: str
) -> list[str]:
    """``ValidateNamespace``: valid labels are required on create, and on update when they
    changed; a stricter enforce level is dry-run against the namespace's pods (warnings)."""
    if subresource:
        return []
    name = str(_map(ns, "metadata").get("name") or "")
    labels = _map(_map(ns, "metadata"), "labels")
    new_policy, new_errs = policy_to_evaluate(labels)
    if old is None:
        if new_errs:
            raise invalid(rt.kind, rt.group, name, new_errs)
        return []
    old_policy, old_errs = policy_to_evaluate(_map(_map(old, "metadata"), "labels"))
    if new_errs and (not old_errs or [c.message for c in new_errs] != [c.message for c in old_errs]):
        raise invalid(rt.kind, rt.group, name, new_errs)
    if new_policy.enforce == old_policy.enforce or new_policy.enforce.level == PRIVILEGED:
        return []
    if new_policy.enforce.minor == old_policy.enforce.minor and (
        _compare_levels(new_policy.enforce.level, old_policy.enforce.level) < 1
    ):
        return []
    return _evaluate_pods_in_namespace(api, name, new_policy.enforce)


def _prioritize_pods(pods: list[JSON]) -> list[JSON]:
    """``prioritizePods``: the first pod of each controller first, its siblings after."""
    first: list[JSON] = []
    duplicates: list[JSON] = []
    seen: set[str] = set()
    for pod in pods:
        ref = next(
            (
                r
                for r in _list(_map(pod, "metadata"), "ownerReferences")
                if isinstance(r, Mapping) and r.get("controller")
            ),
            None,
        )
        if ref is None:
            first.append(pod)
        elif ref.get("uid") in seen:
            duplicates.append(pod)
        else:
            seen.add(str(ref.get("uid")))
            first.append(pod)
    return first + duplicates


# admission.go: defaultNamespaceMaxPodsToCheck
_NAMESPACE_MAX_PODS_TO_CHECK = 3000


def _evaluate_pods_in_namespace(api: APIServer, namespace: str, enforce: LevelVersion) -> list[str]:
    """``EvaluatePodsInNamespace`` (no time limit: kubesim checks every pod up to the count limit)."""
    pods = _prioritize_pods(list(api.store.iter("/pods", namespace)))
    total = len(pods)
    pods = pods[:_NAMESPACE_MAX_PODS_TO_CHECK]
    order: list[str] = []
    counts: dict[str, tuple[str, int]] = {}
    for pod in pods:
        r = evaluate(enforce, _map(pod, "metadata"), _map(pod, "spec"))
        if r.allowed:
            continue
        warning = r.forbidden_reason()
        pod_name = str(_map(pod, "metadata").get("name") or "")
        if warning not in counts:
            order.append(warning)
            counts[warning] = (pod_name, 1)
        else:
            first, n = counts[warning]
            counts[warning] = (min(first, pod_name), n + 1)
    warnings: list[str] = []
    if len(pods) < total:
        warnings.append(
            f"new PodSecurity enforce level only checked against the first {len(pods)} of {total} existing pods"
        )
    if order:
        warnings.append(
            f"existing pods in namespace {_go_quote(namespace)} violate the new PodSecurity enforce level "
            f"{_go_quote(str(enforce))}"
        )
    decorated = []
    for warning in order:
        first, n = counts[warning]
        if n == 1:
            decorated.append(f"{first}: {warning}")
        elif n == 2:
            decorated.append(f"{first} (and 1 other pod): {warning}")
        else:
            decorated.append(f"{first} (and {n - 1} other pods): {warning}")
    return warnings + sorted(decorated)


def _go_quote(s: str) -> str:
    from .auth import go_quote

    return go_quote(s)
