"""Numbers out of range: never a 500.

kube-apiserver decodes a built-in object into its Go struct, so a number that does not fit the
field's Go type (``int32``, ``int64``) fails decoding: 400 ``... cannot be handled as a Pod: json:
cannot unmarshal number <literal> into Go struct field <Struct>.<path> of type int32``
(``encoding/json`` ``literalStore``; ``handlers/rest.go: transformDecodeError``). A number that fits
the type but not the field's rules is a 422 from validation (``IsValidPortNum``,
``IsValidUserID``, ...). Custom resources are decoded into ``interface{}`` first, where an integer
beyond int64 becomes a float64, which the structural schema then refuses (422 ``must be of type
integer``); a ``format: int32`` is not range-checked there (kube-openapi's schema number
validator gets no type or format), as upstream. See ``kubesim/gonum.py``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from kubesim import gonum, testing
from kubesim.testing import KubeSim

NS = "numbers"


@pytest.fixture(scope="module")
def kubesim() -> Iterator[KubeSim]:
    with KubeSim() as sim:
        assert sim.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NS}})[0] == 201
        yield sim


def pod(name: str, spec: dict[str, Any] | None = None, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", **container}], **(spec or {})},
    }


def create(k: KubeSim, path: str, body: Any) -> tuple[int, Any]:
    code, _, out = k.request("POST", path, body=body)
    return code, out


PODS = f"/api/v1/namespaces/{NS}/pods"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"


def deployment(name: str, replicas: Any = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            pod("p", ports=[{"containerPort": 99999999999}]),
            "json: cannot unmarshal number 99999999999 into Go struct field "
            "ContainerPort.spec.containers.ports.containerPort of type int32",
        ),
        (
            pod("p", {"terminationGracePeriodSeconds": 2**63}),
            "json: cannot unmarshal number 9223372036854775808 into Go struct field "
            "PodSpec.spec.terminationGracePeriodSeconds of type int64",
        ),
        (
            pod("p", {"securityContext": {"runAsUser": 1.5}}),
            "json: cannot unmarshal number 1.5 into Go struct field PodSecurityContext.spec.securityContext.runAsUser "
            "of type int64",
        ),
        (
            pod("p", livenessProbe={"httpGet": {"port": 2**31}}),
            "json: cannot unmarshal number 2147483648 into Go struct field "
            "HTTPGetAction.spec.containers.livenessProbe.httpGet.port of type int32",
        ),
        (
            pod("p", {"activeDeadlineSeconds": "10"}),
            "json: cannot unmarshal string into Go struct field PodSpec.spec.activeDeadlineSeconds of type int64",
        ),
    ],
)
def test_builtin_numbers_that_do_not_fit_their_go_type_are_400(
    kubesim: KubeSim, body: Any, message: str
) -> None:
    code, out = create(kubesim, PODS, body)
    assert code == 400, out
    assert out["reason"] == "BadRequest"
    assert out["message"] == f'Pod in version "v1" cannot be handled as a Pod: {message}'


def test_literals_are_reported_as_sent(kubesim: KubeSim) -> None:
    for literal in ("1e30", "100000000000000000000000", "2.0"):
        template = json.dumps(deployment("d", replicas="REPLICAS"))
        raw = template.replace('"REPLICAS"', literal).encode()
        code, _, out = kubesim.request("POST", DEPLOYMENTS, body=raw)
        assert code == 400
        assert out["message"] == (
            'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal number '
            f"{literal} into Go struct field DeploymentSpec.spec.replicas of type int32"
        )
    raw = b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"activeDeadlineSeconds":1e400}}'
    code, _, out = kubesim.request("POST", PODS, body=raw)
    assert code == 400
    assert out["message"].endswith(
        "json: cannot unmarshal number 1e400 into Go struct field PodSpec.spec.activeDeadlineSeconds of type int64"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            pod("p", ports=[{"containerPort": 70000, "hostPort": 65536}]),
            'Pod "p" is invalid: [spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 '
            "and 65535, inclusive, spec.containers[0].ports[0].hostPort: Invalid value: 65536: must be between 1 and "
            "65535, inclusive]",
        ),
        (
            pod("p", {"activeDeadlineSeconds": 2**40}),
            'Pod "p" is invalid: spec.activeDeadlineSeconds: Invalid value: 1099511627776: must be between 1 and '
            "2147483647, inclusive",
        ),
        (
            pod("p", {"securityContext": {"runAsUser": 2**40, "supplementalGroups": [1, -1]}}),
            'Pod "p" is invalid: [spec.securityContext.runAsUser: Invalid value: 1099511627776: must be between 0 and '
            "2147483647, inclusive, spec.securityContext.supplementalGroups[1]: Invalid value: -1: must be between 0 "
            "and 2147483647, inclusive]",
        ),
        (
            pod("p", readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": -1}),
            'Pod "p" is invalid: spec.containers[0].readinessProbe.periodSeconds: Invalid value: -1: must be greater '
            "than or equal to 0",
        ),
    ],
)
def test_values_that_fit_the_type_but_not_the_rules_are_422(
    kubesim: KubeSim, body: Any, message: str
) -> None:
    code, out = create(kubesim, PODS, body)
    assert code == 422, out
    assert out["message"] == message


def test_service_ports(kubesim: KubeSim) -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 70000}]},
    }
    code, out = create(kubesim, f"/api/v1/namespaces/{NS}/services", svc)
    assert code == 422
    assert out["message"] == (
        'Service "s" is invalid: [spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive, '
        "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive]"
    )
    svc["spec"]["ports"] = [{"port": 2**40}]
    code, out = create(kubesim, f"/api/v1/namespaces/{NS}/services", svc)
    assert code == 400 and "ServicePort.spec.ports.port of type int32" in out["message"]


def test_replicas_through_patch_and_scale(kubesim: KubeSim) -> None:
    assert create(kubesim, DEPLOYMENTS, deployment("scaled"))[0] == 201
    code, _, out = kubesim.request(
        "PATCH",
        f"{DEPLOYMENTS}/scaled",
        body={"spec": {"replicas": 2**40}},
        content_type="application/merge-patch+json",
    )
    assert code == 400
    assert out["message"].endswith(
        "json: cannot unmarshal number 1099511627776 into Go struct field DeploymentSpec.spec.replicas of type int32"
    )
    code, _, out = kubesim.request(
        "PATCH",
        f"{DEPLOYMENTS}/scaled/scale",
        body={"spec": {"replicas": 2**40}},
        content_type="application/merge-patch+json",
    )
    assert code == 400
    assert out["message"] == (
        'Scale in version "v1" cannot be handled as a Scale: json: cannot unmarshal number 1099511627776 into Go '
        "struct field ScaleSpec.spec.replicas of type int32"
    )
    got = kubesim.request("GET", f"{DEPLOYMENTS}/scaled")[2]
    assert got["spec"]["replicas"] == 1


def test_huge_grace_periods_wrap_like_go_durations(kubesim: KubeSim) -> None:
    body = pod("graceful", {"terminationGracePeriodSeconds": 2**62})
    assert create(kubesim, PODS, body)[0] == 201
    testing.wait_for(
        lambda: kubesim.request("GET", f"{PODS}/graceful")[2].get("spec", {}).get("nodeName"),
        15,
        "scheduling",
    )
    code, _, out = kubesim.request("DELETE", f"{PODS}/graceful")
    assert code == 200, out
    # now + time.Second * time.Duration(2**62): the nanoseconds wrap around int64
    stamp = dt.datetime.fromisoformat(out["metadata"]["deletionTimestamp"].replace("Z", "+00:00"))
    expected = dt.datetime.now(dt.UTC) + dt.timedelta(microseconds=gonum.wrap_int64(2**62 * 10**9) // 1000)
    assert abs((stamp - expected).total_seconds()) < 60
    assert out["metadata"]["deletionGracePeriodSeconds"] == 2**62
    code, _, out = kubesim.request("DELETE", f"{PODS}/graceful", query={"gracePeriodSeconds": str(2**63)})
    assert code == 400
    assert out["message"] == (
        'invalid value for gracePeriodSeconds: strconv.ParseInt: parsing "9223372036854775808": value out of range'
    )
    code, _, out = kubesim.request("DELETE", f"{PODS}/graceful", body={"gracePeriodSeconds": 1e30})
    assert code == 400
    assert out["message"] == (
        "json: cannot unmarshal number 1e+30 into Go struct field DeleteOptions.gracePeriodSeconds of type int64"
    )
    # Cleanup: the container (no process) stopped on the first DELETE's SIGTERM, so the kubelet
    # may have removed the pod already (a race with this request under load).
    code, _, _ = kubesim.request("DELETE", f"{PODS}/graceful", query={"gracePeriodSeconds": "0"})
    assert code in (200, 404)
    testing.wait_for(lambda: kubesim.request("GET", f"{PODS}/graceful")[0] == 404, 15, "the pod to go")


# ------------------------------------------------------------------------------------------------
# Custom resources
# ------------------------------------------------------------------------------------------------

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "counters.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "counters", "singular": "counter", "kind": "Counter"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"},
                },
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "x-kubernetes-validations": [{"rule": "self.big >= 0"}],
                                "properties": {
                                    "replicas": {"type": "integer", "format": "int32"},
                                    "big": {"type": "integer", "format": "int64"},
                                    "plain": {"type": "integer"},
                                    "free": {"x-kubernetes-preserve-unknown-fields": True},
                                },
                            },
                            "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                        },
                    }
                },
            }
        ],
    },
}
COUNTERS = f"/apis/example.com/v1/namespaces/{NS}/counters"


@pytest.fixture(scope="module")
def crd(kubesim: KubeSim) -> None:
    assert (
        kubesim.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=CRD)[0] == 201
    )
    testing.wait_for(lambda: kubesim.request("GET", COUNTERS)[0] == 200, 10, "the CRD to be served")


def counter(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Counter",
        "metadata": {"name": name},
        "spec": {"big": 1, **spec},
    }


def test_custom_resource_int64_overflow_is_422(kubesim: KubeSim, crd: None) -> None:
    code, out = create(kubesim, COUNTERS, counter("c1", big=2**63))
    assert code == 422, out
    assert out["message"].startswith(
        'Counter.example.com "c1" is invalid: [spec.big: Invalid value: "float64": '
        'spec.big in body must be of type int64: "float64"'
    )
    code, out = create(kubesim, COUNTERS, counter("c2", plain=10**30))
    assert code == 422
    assert (
        'spec.plain: Invalid value: "number": spec.plain in body must be of type integer: "number"'
        in out["message"]
    )
    raw = b'{"apiVersion":"example.com/v1","kind":"Counter","metadata":{"name":"c3"},"spec":{"big":1e30}}'
    code, _, out = kubesim.request("POST", COUNTERS, body=raw)
    assert code == 422 and 'spec.big in body must be of type int64: "float64"' in out["message"]
    # an untyped field keeps the float64 the decoder made of it
    code, out = create(kubesim, COUNTERS, counter("c4", free=2**80))
    assert code == 201, out
    assert kubesim.request("GET", f"{COUNTERS}/c4")[2]["spec"]["free"] == float(2**80)
    raw = b'{"apiVersion":"example.com/v1","kind":"Counter","metadata":{"name":"c5"},"spec":{"big":1,"free":1e400}}'
    code, _, out = kubesim.request("POST", COUNTERS, body=raw)
    assert code == 400 and out["message"].endswith(
        "cannot unmarshal number 1e400 into Go value of type float64"
    )


def test_custom_resource_int32_format_is_not_range_checked(kubesim: KubeSim, crd: None) -> None:
    # kube-openapi's schema number validator is built without type and format: upstream accepts it
    code, out = create(kubesim, COUNTERS, counter("wide", replicas=2**40))
    assert code == 201, out
    # scaleFromCustomResource: int32(replicas) wraps around
    code, _, scale = kubesim.request("GET", f"{COUNTERS}/wide/scale")
    assert code == 200 and scale["spec"]["replicas"] == 0
    code, _, out = kubesim.request(
        "PATCH",
        f"{COUNTERS}/wide/scale",
        body={"spec": {"replicas": 2**31}},
        content_type="application/merge-patch+json",
    )
    assert code == 400 and "ScaleSpec.spec.replicas of type int32" in out["message"]
    code, _, out = kubesim.request(
        "PATCH",
        f"{COUNTERS}/wide",
        body={"spec": {"big": 2**64}},
        content_type="application/merge-patch+json",
    )
    assert code == 422 and 'spec.big in body must be of type int64: "float64"' in out["message"]


@pytest.mark.kubectl
def test_kubectl_apply_reports_the_decoding_error(kubesim: KubeSim) -> None:
    manifest = """
apiVersion: v1
kind: Pod
metadata: {name: wide-port}
spec:
  containers:
  - name: c
    image: busybox
    ports: [{containerPort: 99999999999}]
"""
    proc = kubesim.kubectl("apply", "-n", NS, "-f", "-", input=manifest, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        'Error from server (BadRequest): error when creating "STDIN": Pod in version "v1" cannot be handled as a '
        "Pod: json: cannot unmarshal number 99999999999 into Go struct field "
        "ContainerPort.spec.containers.ports.containerPort of type int32"
    )
    proc = kubesim.kubectl(
        "apply", "-n", NS, "-f", "-", input=manifest.replace("99999999999", "70000"), check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        'The Pod "wide-port" is invalid: spec.containers[0].ports[0].containerPort: Invalid value: 70000: '
        "must be between 1 and 65535, inclusive"
    )
