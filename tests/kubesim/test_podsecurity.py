"""PodSecurity admission (``kubesim/podsecurity.py``): namespace labels, the Baseline and Restricted
checks with upstream's wording and order, enforce/warn on pods and pod templates, the Job and
ReplicaSet controllers' FailedCreate events for refused pods, and the real kubectl.

Upstream: ``staging/src/k8s.io/pod-security-admission`` (``api/helpers.go``,
``admission/admission.go``, ``policy/check_*.go``, ``policy/registry.go``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kubesim import podsecurity as psa
from kubesim import testing
from kubesim.podsecurity import LevelVersion, Policy
from kubesim.testing import KubeSim

LATEST_RESTRICTED = LevelVersion("restricted")
LATEST_BASELINE = LevelVersion("baseline")
PRIV = LevelVersion("privileged")

# The violations of a pod whose container sets nothing (kubectl run busybox), under restricted.
BARE_RESTRICTED = (
    'allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), '
    'unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), '
    'runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), '
    'seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" '
    'or "Localhost")'
)

RESTRICTED_SC = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def detail(lv: LevelVersion, spec: dict[str, Any], meta: dict[str, Any] | None = None) -> str:
    return psa.evaluate(lv, meta or {}, spec).forbidden_detail()


def c(name: str = "c", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", **fields}


# ------------------------------------------------------------------------------------------------
# Namespace labels -> policy (api/helpers.go: PolicyToEvaluate)
# ------------------------------------------------------------------------------------------------


def labels(**kv: str) -> dict[str, str]:
    return {"other": "x", **{psa.LABEL_PREFIX + k.replace("_", "-"): v for k, v in kv.items()}}


@pytest.mark.parametrize(
    ("kv", "expect", "has_errors"),
    [
        ({}, Policy(PRIV, PRIV, PRIV), False),
        # warn follows an explicitly set, stricter enforce level (and its version)
        ({"enforce": "baseline"}, Policy(LATEST_BASELINE, PRIV, LATEST_BASELINE), False),
        ({"warn": "restricted"}, Policy(PRIV, PRIV, LATEST_RESTRICTED), False),
        ({"audit": "baseline"}, Policy(PRIV, LATEST_BASELINE, PRIV), False),
        (
            {"enforce": "baseline", "warn": "restricted"},
            Policy(LATEST_BASELINE, PRIV, LATEST_RESTRICTED),
            False,
        ),
        (
            {"enforce": "baseline", "enforce_version": "v1.22"},
            Policy(LevelVersion("baseline", 22), PRIV, LevelVersion("baseline", 22)),
            False,
        ),
        (
            {"enforce": "baseline", "enforce_version": "v1.22", "warn_version": "latest"},
            Policy(LevelVersion("baseline", 22), PRIV, LATEST_BASELINE),
            False,
        ),
        ({"enforce": "baseline", "warn": "privileged"}, Policy(LATEST_BASELINE, PRIV, PRIV), False),
        # errors: enforce fails closed (restricted), warn and audit fail open (privileged)
        ({"enforce": "baseline", "warn": "foo"}, Policy(LATEST_BASELINE, PRIV, PRIV), True),
        ({"enforce": "foo"}, Policy(LATEST_RESTRICTED, PRIV, PRIV), True),
        ({"audit": "foo"}, Policy(PRIV, PRIV, PRIV), True),
        (
            {"enforce": "baseline", "enforce_version": "v1.01"},
            Policy(LATEST_BASELINE, PRIV, LATEST_BASELINE),
            True,
        ),
    ],
)
def test_policy_to_evaluate(kv: dict[str, str], expect: Policy, has_errors: bool) -> None:
    policy, errs = psa.policy_to_evaluate(labels(**kv))
    assert policy == expect
    assert bool(errs) == has_errors


def test_label_errors_are_field_errors() -> None:
    _, errs = psa.policy_to_evaluate(labels(enforce="foo", warn_version="1.25"))
    assert [e.message for e in errs] == [
        'metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "foo": '
        "must be one of privileged, baseline, restricted",
        'metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "1.25": must be "latest" or "v1.x"',
    ]


def test_level_version_strings() -> None:
    assert str(LATEST_RESTRICTED) == "restricted:latest"
    assert str(LevelVersion("baseline", 23)) == "baseline:v1.23"
    # a version newer than the registry is evaluated as the newest one
    assert LevelVersion("baseline", 99).evaluated_minor() == psa.MAX_POLICY_MINOR


# ------------------------------------------------------------------------------------------------
# Checks (policy/check_*.go) and their order (policy/registry.go)
# ------------------------------------------------------------------------------------------------


def test_bare_container_under_restricted() -> None:
    assert detail(LATEST_RESTRICTED, {"containers": [c()]}) == BARE_RESTRICTED
    assert psa.evaluate(LATEST_RESTRICTED, {}, {"containers": [c()]}).forbidden_reason() == (
        "allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"
    )
    assert psa.evaluate(LATEST_BASELINE, {}, {"containers": [c()]}).allowed
    assert psa.evaluate(PRIV, {}, {"hostPID": True, "containers": [c()]}).allowed


def test_compliant_pod_passes_restricted() -> None:
    spec = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            c(
                securityContext={
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                }
            )
        ],
        "volumes": [
            {"name": "d", "emptyDir": {}},
            {"name": "p", "persistentVolumeClaim": {"claimName": "x"}},
        ],
    }
    assert psa.evaluate(LATEST_RESTRICTED, {}, spec).allowed


@pytest.mark.parametrize(
    ("spec", "meta", "expected"),
    [
        (
            {"hostNetwork": True, "hostPID": True, "containers": [c()]},
            {},
            "host namespaces (hostNetwork, hostPID)",
        ),
        (
            {
                "containers": [
                    c(securityContext={"privileged": True}),
                    c("d", securityContext={"privileged": True}),
                ]
            },
            {},
            'privileged (containers "c", "d" must not set securityContext.privileged=true)',
        ),
        (
            {"containers": [c(securityContext={"capabilities": {"add": ["SYS_ADMIN", "CHOWN", "NET_RAW"]}})]},
            {},
            'non-default capabilities (container "c" must not include "NET_RAW", "SYS_ADMIN" in '
            "securityContext.capabilities.add)",
        ),
        (
            {"containers": [c()], "volumes": [{"name": "h", "hostPath": {"path": "/"}}]},
            {},
            'hostPath volumes (volume "h")',
        ),
        (
            {
                "containers": [
                    c(
                        ports=[
                            {"containerPort": 80, "hostPort": 8080},
                            {"containerPort": 90, "hostPort": 9090},
                        ]
                    )
                ]
            },
            {},
            'hostPort (container "c" uses hostPorts 8080, 9090)',
        ),
        (
            {"containers": [c(securityContext={"appArmorProfile": {"type": "Unconfined"}})]},
            {},
            'forbidden AppArmor profile (container "c" must not set AppArmor profile type to "Unconfined")',
        ),
        (
            {"containers": [c()]},
            {"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}},
            "forbidden AppArmor profile (annotation must not set AppArmor profile type to "
            # joinQuote does not escape: the annotation's own %q quotes stay as they are
            '"container.apparmor.security.beta.kubernetes.io/c="unconfined"")',
        ),
        (
            {"securityContext": {"seLinuxOptions": {"type": "spc_t", "user": "u"}}, "containers": [c()]},
            {},
            'seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: type "spc_t"; user may not be set)',
        ),
        (
            {"containers": [c(securityContext={"procMount": "Unmasked"})]},
            {},
            'procMount (container "c" must not set securityContext.procMount to "Unmasked")',
        ),
        (
            {"securityContext": {"seccompProfile": {"type": "Unconfined"}}, "containers": [c()]},
            {},
            'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")',
        ),
        (
            {
                "securityContext": {
                    "sysctls": [
                        {"name": "kernel.msgmax", "value": "1"},
                        {"name": "net.ipv4.tcp_rmem", "value": "1"},
                    ]
                },
                "containers": [c()],
            },
            {},
            "forbidden sysctls (kernel.msgmax)",
        ),
        (
            {"securityContext": {"windowsOptions": {"hostProcess": True}}, "containers": [c()]},
            {},
            "hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)",
        ),
        (
            {"containers": [c(livenessProbe={"httpGet": {"host": "10.0.0.1", "port": 80}})]},
            {},
            'probe or lifecycle host (container "c" uses probe or lifecycle host "10.0.0.1")',
        ),
    ],
)
def test_baseline_checks(spec: dict[str, Any], meta: dict[str, Any], expected: str) -> None:
    assert detail(LATEST_BASELINE, spec, meta) == expected


def test_baseline_order_follows_sorted_check_ids() -> None:
    spec = {
        "hostIPC": True,
        "securityContext": {"seLinuxOptions": {"role": "r"}, "seccompProfile": {"type": "Unconfined"}},
        "containers": [c(securityContext={"privileged": True, "appArmorProfile": {"type": "Unconfined"}})],
    }
    assert psa.evaluate(LATEST_BASELINE, {}, spec).forbidden_reason() == (
        "forbidden AppArmor profile, host namespaces, privileged, seLinuxOptions, seccompProfile"
    )


def test_restricted_checks_and_overrides() -> None:
    spec = {
        "securityContext": {"runAsUser": 0, "seccompProfile": {"type": "Unconfined"}},
        "containers": [
            c(
                securityContext={
                    **RESTRICTED_SC,
                    "runAsNonRoot": False,
                    "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]},
                }
            )
        ],
        "volumes": [
            {"name": "h", "hostPath": {"path": "/"}},
            {"name": "n", "nfs": {"server": "s", "path": "/"}},
        ],
    }
    assert detail(LATEST_RESTRICTED, spec) == (
        'unrestricted capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add), '
        'restricted volume types (volumes "h", "n" use restricted volume types "hostPath", "nfs"), '
        'runAsNonRoot != true (container "c" must not set securityContext.runAsNonRoot=false), '
        "runAsUser=0 (pod must not set runAsUser=0), "
        'seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")'
    )
    # hostPath (baseline) is reported once, as a restricted volume type; seccomp once too
    reasons = psa.evaluate(LATEST_RESTRICTED, {}, spec).reasons
    assert "hostPath volumes" not in reasons and reasons.count("seccompProfile") == 1


def test_policy_versions() -> None:
    bare = {"containers": [c(securityContext={"runAsUser": 0, **RESTRICTED_SC})]}
    assert "runAsUser=0" in psa.evaluate(LevelVersion("restricted", 23), {}, bare).reasons
    assert "runAsUser=0" not in psa.evaluate(LevelVersion("restricted", 22), {}, bare).reasons
    probe = {"containers": [c(readinessProbe={"tcpSocket": {"host": "h", "port": 1}})]}
    assert not psa.evaluate(LevelVersion("baseline", 34), {}, probe).allowed
    assert psa.evaluate(LevelVersion("baseline", 33), {}, probe).allowed
    sysctl = {
        "securityContext": {"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "1"}]},
        "containers": [c()],
    }
    assert psa.evaluate(LevelVersion("baseline", 32), {}, sysctl).allowed
    assert not psa.evaluate(LevelVersion("baseline", 31), {}, sysctl).allowed
    # before 1.19 seccomp was checked on the alpha annotations only
    annotated = {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}
    assert detail(LevelVersion("baseline", 18), {"containers": [c()]}, annotated) == (
        'seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined")'
    )
    assert psa.evaluate(LevelVersion("baseline", 19), annotated, {"containers": [c()]}).allowed


def test_windows_pods_are_exempt_from_linux_only_restricted_checks() -> None:
    spec = {"os": {"name": "windows"}, "securityContext": {"runAsNonRoot": True}, "containers": [c()]}
    assert psa.evaluate(LATEST_RESTRICTED, {}, spec).allowed
    assert psa.evaluate(LevelVersion("restricted", 24), {}, spec).reasons == [
        "allowPrivilegeEscalation != false",
        "unrestricted capabilities",
        "seccompProfile",
    ]


# ------------------------------------------------------------------------------------------------
# Through the API server
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kubesim() -> Iterator[KubeSim]:
    with KubeSim() as sim:
        yield sim


def new_ns(k: KubeSim, **kv: str) -> str:
    ns = f"psa-{uuid.uuid4().hex[:6]}"
    code, _, out = k.request(
        "POST", "/api/v1/namespaces", body={"metadata": {"name": ns, "labels": labels(**kv)}}
    )
    assert code == 201, out
    return ns


def pod(name: str, spec: dict[str, Any] | None = None, generate: bool = False) -> dict[str, Any]:
    meta = {"generateName": name} if generate else {"name": name}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec or {"containers": [c()]}}


def compliant_spec() -> dict[str, Any]:
    return {"containers": [c(securityContext=dict(RESTRICTED_SC))]}


def warnings(headers: dict[str, str]) -> str:
    return next((v for k, v in headers.items() if k.lower() == "warning"), "")


def test_unlabelled_namespace_is_privileged(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    code, hdrs, _ = kubesim.request(
        "POST", f"/api/v1/namespaces/{ns}/pods", body=pod("p", {"hostPID": True, "containers": [c()]})
    )
    assert code == 201 and not warnings(hdrs)


def test_invalid_labels_are_refused(kubesim: KubeSim) -> None:
    code, _, out = kubesim.request(
        "POST",
        "/api/v1/namespaces",
        body={"metadata": {"name": "psa-bad", "labels": labels(enforce="strict")}},
    )
    assert code == 422 and out["reason"] == "Invalid"
    assert out["message"] == (
        'Namespace "psa-bad" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: '
        'Invalid value: "strict": must be one of privileged, baseline, restricted'
    )
    assert out["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "strict": must be one of privileged, baseline, restricted',
            "field": "metadata.labels[pod-security.kubernetes.io/enforce]",
        }
    ]
    ns = new_ns(kubesim)
    code, _, out = kubesim.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}",
        body={"metadata": {"labels": {psa.WARN_VERSION_LABEL: "1.30"}}},
        content_type="application/merge-patch+json",
    )
    assert code == 422 and 'must be "latest" or "v1.x"' in out["message"]


def test_enforce_refuses_pods_with_upstream_message(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim, enforce="restricted")
    code, _, out = kubesim.request("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("bad"))
    assert code == 403
    assert out["reason"] == "Forbidden"
    assert (
        out["message"]
        == f'pods "bad" is forbidden: violates PodSecurity "restricted:latest": {BARE_RESTRICTED}'
    )
    assert out["details"] == {"name": "bad", "group": "", "kind": "pods"}
    # a generated name is in the message: validating admission runs after name generation
    code, _, out = kubesim.request("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("gen-", generate=True))
    assert code == 403 and out["details"]["name"].startswith("gen-") and len(out["details"]["name"]) == 9
    code, hdrs, _ = kubesim.request(
        "POST", f"/api/v1/namespaces/{ns}/pods", body=pod("good", compliant_spec())
    )
    assert code == 201 and not warnings(hdrs)


def test_pinned_enforce_version(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim, enforce="restricted", enforce_version="v1.22")
    spec = {"containers": [c(securityContext={**RESTRICTED_SC, "runAsNonRoot": None, "runAsUser": 0})]}
    spec["containers"][0]["securityContext"].pop("runAsNonRoot")
    code, _, out = kubesim.request("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("p", spec))
    assert code == 403
    assert out["message"] == (
        'pods "p" is forbidden: violates PodSecurity "restricted:v1.22": '
        'runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true)'
    )


def test_warn_mode_sends_warning_headers(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim, warn="baseline")
    spec = {"containers": [c(securityContext={"privileged": True})]}
    code, hdrs, _ = kubesim.request("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("w", spec))
    assert code == 201
    assert warnings(hdrs) == (
        '299 - "would violate PodSecurity \\"baseline:latest\\": privileged '
        '(container \\"c\\" must not set securityContext.privileged=true)"'
    )


def test_pod_updates_are_checked_when_significant(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    code, _, _ = kubesim.request("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("u"))
    assert code == 201
    code, _, _ = kubesim.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}",
        body={"metadata": {"labels": {psa.ENFORCE_LEVEL_LABEL: "restricted"}}},
        content_type="application/merge-patch+json",
    )
    assert code == 200
    path = f"/api/v1/namespaces/{ns}/pods/u"
    merge = "application/merge-patch+json"
    # a label change is not significant (isSignificantPodUpdate): allowed
    code, _, out = kubesim.request(
        "PATCH", path, body={"metadata": {"labels": {"a": "b"}}}, content_type=merge
    )
    assert code == 200, out
    # an image change is: the pod is evaluated and refused
    code, _, out = kubesim.request(
        "PATCH",
        path,
        body={"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}},
        content_type="application/strategic-merge-patch+json",
    )
    assert code == 403 and out["message"].startswith(
        'pods "u" is forbidden: violates PodSecurity "restricted:latest"'
    )


def test_stricter_enforce_label_warns_about_existing_pods(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    for name in ("a1", "a2", "a3"):
        assert kubesim.request("POST", f"/api/v1/namespaces/{ns}/pods", body=pod(name))[0] == 201
    spec = {"hostNetwork": True, "containers": [c()]}
    assert kubesim.request("POST", f"/api/v1/namespaces/{ns}/pods", body=pod("b1", spec))[0] == 201
    code, hdrs, _ = kubesim.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}",
        body={"metadata": {"labels": {psa.ENFORCE_LEVEL_LABEL: "restricted"}}},
        content_type="application/merge-patch+json",
    )
    assert code == 200
    header = warnings(hdrs)
    assert (
        f'existing pods in namespace \\"{ns}\\" violate the new PodSecurity enforce level \\"restricted:latest\\"'
        in header
    )
    assert (
        "a1 (and 2 other pods): allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, "
        "seccompProfile"
    ) in header
    assert "b1: host namespaces, allowPrivilegeEscalation != false" in header


def test_pod_templates_only_warn_and_controllers_record_failed_create(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim, enforce="restricted")
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [c()]}},
        },
    }
    code, hdrs, out = kubesim.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body=deployment)
    # enforce is not applied to templates; warn defaults to the enforce level
    assert code == 201, out
    assert warnings(hdrs).startswith(
        '299 - "would violate PodSecurity \\"restricted:latest\\": allowPrivilegeEscalation'
    )

    def failed_create(kind: str) -> list[dict[str, Any]]:
        events = kubesim.request("GET", f"/api/v1/namespaces/{ns}/events")[2]["items"]
        return [e for e in events if e["reason"] == "FailedCreate" and e["involvedObject"]["kind"] == kind]

    events = testing.wait_for(lambda: failed_create("ReplicaSet"), 15, "the ReplicaSet's FailedCreate event")
    msg = events[0]["message"]
    assert msg.startswith('Error creating: pods "web-')
    assert msg.endswith(f'" is forbidden: violates PodSecurity "restricted:latest": {BARE_RESTRICTED}')

    # calculateStatus sets ReplicaFailure once and keeps it: the retries do not rewrite the status
    def replica_set() -> dict[str, Any]:
        return kubesim.request("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets")[2]["items"][0]

    first = testing.wait_for(
        lambda: (rs := replica_set()).get("status", {}).get("conditions") and rs, 15, "ReplicaFailure"
    )
    cond = first["status"]["conditions"][0]
    assert (cond["type"], cond["reason"]) == ("ReplicaFailure", "FailedCreate")
    assert "violates PodSecurity" in cond["message"]
    time.sleep(1.5)
    assert replica_set()["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert len(failed_create("ReplicaSet")) >= 2  # ... while the creates are retried

    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [c(command=["true"])]}}},
    }
    code, hdrs, out = kubesim.request("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", body=job)
    assert code == 201, out
    assert "would violate PodSecurity" in warnings(hdrs)
    events = testing.wait_for(lambda: failed_create("Job"), 15, "the Job's FailedCreate event")
    assert events[0]["type"] == "Warning" and events[0]["source"]["component"] == "job-controller"
    assert events[0]["message"].startswith('Error creating: pods "once-')
    assert (
        f'" is forbidden: violates PodSecurity "restricted:latest": {BARE_RESTRICTED}' in events[0]["message"]
    )
    pods = kubesim.request("GET", f"/api/v1/namespaces/{ns}/pods")[2]["items"]
    assert pods == []


# ------------------------------------------------------------------------------------------------
# kubectl
# ------------------------------------------------------------------------------------------------

BAD_POD = """
apiVersion: v1
kind: Pod
metadata: {name: bad}
spec:
  containers:
  - {name: c, image: busybox}
"""

GOOD_POD = """
apiVersion: v1
kind: Pod
metadata: {name: good}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: c
    image: busybox
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
"""


@pytest.mark.kubectl
def test_kubectl_restricted_namespace(kubesim: KubeSim) -> None:
    ns = f"psa-k-{uuid.uuid4().hex[:6]}"
    kubesim.kubectl("create", "namespace", ns)
    kubesim.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    proc = kubesim.kubectl("apply", "-n", ns, "-f", "-", input=BAD_POD, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        'Error from server (Forbidden): error when creating "STDIN": pods "bad" is forbidden: '
        f'violates PodSecurity "restricted:latest": {BARE_RESTRICTED}'
    )
    proc = kubesim.kubectl("apply", "-n", ns, "-f", "-", input=GOOD_POD)
    assert proc.stdout.strip() == "pod/good created" and "Warning" not in proc.stderr


@pytest.mark.kubectl
def test_kubectl_prints_warn_mode_warnings(kubesim: KubeSim) -> None:
    ns = f"psa-k-{uuid.uuid4().hex[:6]}"
    kubesim.kubectl("create", "namespace", ns)
    kubesim.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/warn=restricted")
    proc = kubesim.kubectl("apply", "-n", ns, "-f", "-", input=BAD_POD)
    assert proc.stdout.strip() == "pod/bad created"
    assert proc.stderr.strip() == f'Warning: would violate PodSecurity "restricted:latest": {BARE_RESTRICTED}'
    # labelling enforce afterwards warns about the pod that is already there
    proc = kubesim.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=baseline")
    assert "Warning" not in proc.stderr  # the pod meets baseline
    proc = kubesim.kubectl(
        "label", "--overwrite", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted"
    )
    assert (
        f'Warning: existing pods in namespace "{ns}" violate the new PodSecurity enforce level "restricted:latest"'
        in proc.stderr
    )
    assert "Warning: bad: allowPrivilegeEscalation != false" in proc.stderr
