"""kubesim's decoder of ``application/vnd.kubernetes.protobuf`` request bodies, and kubectl's
imperative commands (which send protobuf) end to end.

The unit tests build bodies with a small protobuf encoder written here (and a few bodies captured
from kubectl 1.37 itself); the end-to-end tests run the real kubectl against a kubesim cluster and
check each object against what kubectl's own JSON for it (``--dry-run=client -o json``) gives.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kubesim import protobuf
from kubesim.protobuf import ProtobufError, UnsupportedProtobuf, decode, go_duration
from kubesim.testing import KubeSim

PB = "application/vnd.kubernetes.protobuf"

# -- a tiny protobuf encoder -------------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64/int32 are ten-byte varints
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def v(num: int, n: int) -> bytes:
    """A varint field."""
    return varint(num << 3) + varint(n)


def s(num: int, data: str | bytes) -> bytes:
    """A length-delimited field (string, bytes or an encoded message)."""
    raw = data.encode() if isinstance(data, str) else data
    return varint(num << 3 | 2) + varint(len(raw)) + raw


def m(num: int, *fields: bytes) -> bytes:
    """A message field made of the given encoded fields."""
    return s(num, b"".join(fields))


def entry(num: int, key: str, value: str | bytes) -> bytes:
    """One map<string, T> entry."""
    return m(num, s(1, key), s(2, value))


def envelope(api_version: str, kind: str, *fields: bytes, encoding: str = "", ctype: str = "") -> bytes:
    """The k8s\\x00 magic and a runtime.Unknown around the object's fields."""
    type_meta = (s(1, api_version) if api_version else b"") + (s(2, kind) if kind else b"")
    return b"k8s\x00" + m(1, type_meta) + s(2, b"".join(fields)) + s(3, encoding) + s(4, ctype)


def meta(*fields: bytes) -> bytes:
    return m(1, *fields)


def ts(seconds: int, nanos: int = 0) -> bytes:
    return v(1, seconds) + (v(2, nanos) if nanos else b"")


# -- bodies captured from kubectl 1.37 ---------------------------------------------------------

_EMPTY_META = b'\n\x10\n\x00\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00'
KUBECTL_BODIES: list[tuple[str, bytes, dict[str, Any]]] = [
    (
        "create namespace",
        b'k8s\x00\n\x0f\n\x02v1\x12\tNamespace\x12\x1c\n\x14\n\x04pbns\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00'
        b'\x12\x00\x1a\x02\n\x00\x1a\x00"\x00',
        {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "pbns"}, "spec": {}, "status": {}},
    ),
    (
        "create configmap",
        b'k8s\x00\n\x0f\n\x02v1\x12\tConfigMap\x12!\n\x17\n\x03cm1\x12\x00\x1a\x04pbns"\x00*\x002\x008\x00B\x00'
        b'\x12\x06\n\x01a\x12\x01b\x1a\x00"\x00',
        {
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"name": "cm1", "namespace": "pbns"},
            "data": {"a": "b"},
        },
    ),
    (
        "create secret docker-registry",
        b'k8s\x00\n\x0c\n\x02v1\x12\x06Secret\x12\x88\x01\n\x12\n\x02d1\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00'
        b'\x12R\n\x11.dockerconfigjson\x12={"auths":{"x":{"username":"u","password":"p","auth":"dTpw"}}}'
        b'\x1a\x1ekubernetes.io/dockerconfigjson\x1a\x00"\x00',
        {
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {"name": "d1"},
            "data": {
                ".dockerconfigjson": base64.b64encode(
                    b'{"auths":{"x":{"username":"u","password":"p","auth":"dTpw"}}}'
                ).decode()
            },
            "type": "kubernetes.io/dockerconfigjson",
        },
    ),
    (
        "create rolebinding",
        b"k8s\x00\n+\n\x1crbac.authorization.k8s.io/v1\x12\x0bRoleBinding\x12_\n\x17\n\x03rb1\x12\x00\x1a\x04pbns"
        b'"\x00*\x002\x008\x00B\x00\x12\x1d\n\x0eServiceAccount\x12\x00\x1a\x03sa1"\x04pbns'
        b'\x1a%\n\x19rbac.authorization.k8s.io\x12\x04Role\x1a\x02r1\x1a\x00"\x00',
        {
            "kind": "RoleBinding",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": "rb1", "namespace": "pbns"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa1", "namespace": "pbns"}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r1"},
        },
    ),
    (
        "create clusterrole --non-resource-url",
        b"k8s\x00\n+\n\x1crbac.authorization.k8s.io/v1\x12\x0bClusterRole\x12%\n\x13\n\x03cr2\x12\x00\x1a\x00"
        b'"\x00*\x002\x008\x00B\x00\x12\x0e\n\x03get*\x07/logs/*\x1a\x00"\x00',
        {
            "kind": "ClusterRole",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": "cr2"},
            "rules": [{"verbs": ["get"], "nonResourceURLs": ["/logs/*"]}],
        },
    ),
    (
        "create token with options",
        b"k8s\x00\n(\n\x18authentication.k8s.io/v1\x12\x0cTokenRequest\x129"
        + _EMPTY_META
        + b"\x12\x1f\n\x01a"
        b'\n\x01b\x1a\x14\n\x06Secret\x12\x02v1\x1a\x01s"\x03abc \xb0\t\x1a\x04\n\x00\x12\x00\x1a\x00"\x00',
        {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {},
            "spec": {
                "audiences": ["a", "b"],
                "expirationSeconds": 1200,
                "boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "s", "uid": "abc"},
            },
            "status": {"token": "", "expirationTimestamp": None},
        },
    ),
    (
        "auth can-i list pods --subresource=log",
        b"k8s\x00\n2\n\x17authorization.k8s.io/v1\x12\x17SelfSubjectAccessReview\x12@"
        + _EMPTY_META
        + b'\x12"\n '
        b'\n\x07default\x12\x04list\x1a\x00"\x00*\x04pods2\x03log:\x00\x1a\x08\x08\x00\x12\x00\x1a\x00 \x00\x1a\x00"\x00',
        {
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {},
            "spec": {
                "resourceAttributes": {
                    "namespace": "default",
                    "verb": "list",
                    "resource": "pods",
                    "subresource": "log",
                }
            },
            "status": {"allowed": False},
        },
    ),
    (
        "auth can-i get /logs",
        b"k8s\x00\n2\n\x17authorization.k8s.io/v1\x12\x17SelfSubjectAccessReview\x12,"
        + _EMPTY_META
        + b"\x12\x0e"
        b'\x12\x0c\n\x05/logs\x12\x03get\x1a\x08\x08\x00\x12\x00\x1a\x00 \x00\x1a\x00"\x00',
        {
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {},
            "spec": {"nonResourceAttributes": {"path": "/logs", "verb": "get"}},
            "status": {"allowed": False},
        },
    ),
    (
        "auth can-i --list",
        b"k8s\x00\n1\n\x17authorization.k8s.io/v1\x12\x16SelfSubjectRulesReview\x12 "
        + _EMPTY_META
        + b"\x12\x06"
        b'\n\x04pbns\x1a\x04\x18\x00"\x00\x1a\x00"\x00',
        {
            "kind": "SelfSubjectRulesReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {},
            "spec": {"namespace": "pbns"},
            "status": {"resourceRules": None, "nonResourceRules": None, "incomplete": False},
        },
    ),
    (
        "auth whoami",
        b"k8s\x00\n-\n\x18authentication.k8s.io/v1\x12\x11SelfSubjectReview\x12\x1a"
        + _EMPTY_META
        + b"\x12\x06"
        b'\n\x04\n\x00\x12\x00\x1a\x00"\x00',
        {
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {},
            "status": {"userInfo": {}},
        },
    ),
    (
        "drain --grace-period=3 (DeleteOptions)",
        b'k8s\x00\n\x13\n\x02v1\x12\rDeleteOptions\x12\x02\x08\x03\x1a\x00"\x00',
        {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 3},
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"), [(b, e) for _, b, e in KUBECTL_BODIES], ids=[n for n, _, _ in KUBECTL_BODIES]
)
def test_kubectl_bodies(body: bytes, expected: dict[str, Any]) -> None:
    assert decode(body, "", None) == expected


# -- unit tests of the decoder -----------------------------------------------------------------


def test_object_meta_all_fields() -> None:
    fields_v1 = b'{"f:data":{"f:a":{}}}'
    body = envelope(
        "v1",
        "ConfigMap",
        meta(
            s(1, "cm"),
            s(2, "cm-"),
            s(3, "ns"),
            s(4, ""),
            s(5, "0f0a"),
            s(6, "42"),
            v(7, 3),
            m(8, ts(1_700_000_000, 999)),  # Time drops the nanos (time_proto.go)
            m(9, ts(1_700_000_060)),
            v(10, 30),
            entry(11, "app", "web"),
            entry(11, "tier", "front"),
            entry(12, "note", ""),
            m(13, s(5, "apps/v1"), s(1, "Deployment"), s(3, "web"), s(4, "u1"), v(6, 1), v(7, 0)),
            m(13, s(5, "v1"), s(1, "Pod"), s(3, "p"), s(4, "u2")),
            s(14, "example.com/f1"),
            s(14, "example.com/f2"),
            m(
                17,
                s(1, "kubectl"),
                s(2, "Update"),
                s(3, "v1"),
                m(4, ts(0)),
                s(6, "FieldsV1"),
                m(7, s(1, fields_v1)),
            ),
        ),
        entry(2, "a", "b"),
    )
    assert decode(body, "v1", "ConfigMap") == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {
            "name": "cm",
            "generateName": "cm-",
            "namespace": "ns",
            "uid": "0f0a",
            "resourceVersion": "42",
            "generation": 3,
            "creationTimestamp": "2023-11-14T22:13:20Z",
            "deletionTimestamp": "2023-11-14T22:14:20Z",
            "deletionGracePeriodSeconds": 30,
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"note": ""},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "web",
                    "uid": "u1",
                    "controller": True,
                    "blockOwnerDeletion": False,
                },
                {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u2"},
            ],
            "finalizers": ["example.com/f1", "example.com/f2"],
            "managedFields": [
                {
                    "manager": "kubectl",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "1970-01-01T00:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:data": {"f:a": {}}},
                },
            ],
        },
        "data": {"a": "b"},
    }


def test_configmap_binary_data_and_immutable() -> None:
    body = envelope(
        "v1", "ConfigMap", meta(s(1, "c")), v(4, 1), entry(3, "bin", b"\xff\x00\x01"), entry(2, "k", "v")
    )
    out = decode(body, "v1", "ConfigMap")
    assert out == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "c"},
        "immutable": True,
        "data": {"k": "v"},
        "binaryData": {"bin": "/wAB"},
    }
    assert list(out) == [
        "kind",
        "apiVersion",
        "metadata",
        "immutable",
        "data",
        "binaryData",
    ]  # Go struct order


def test_secret_bytes_are_base64_and_false_pointer_is_kept() -> None:
    body = envelope(
        "v1",
        "Secret",
        meta(s(1, "s")),
        entry(2, "pw", b"s3cr\xe9t"),
        entry(4, "plain", "x"),
        s(3, "Opaque"),
        v(5, 0),
    )
    assert decode(body, "v1", "Secret") == {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {"name": "s"},
        "immutable": False,
        "data": {"pw": base64.b64encode(b"s3cr\xe9t").decode()},
        "stringData": {"plain": "x"},
        "type": "Opaque",
    }


def test_service_account() -> None:
    body = envelope(
        "v1",
        "ServiceAccount",
        meta(s(1, "sa"), s(3, "ns")),
        m(2, s(1, "Secret"), s(3, "tok"), s(7, "data")),
        m(3, s(1, "regcred")),
        v(4, 0),
    )
    assert decode(body, "v1", "ServiceAccount") == {
        "kind": "ServiceAccount",
        "apiVersion": "v1",
        "metadata": {"name": "sa", "namespace": "ns"},
        "secrets": [{"kind": "Secret", "name": "tok", "fieldPath": "data"}],
        "imagePullSecrets": [{"name": "regcred"}],
        "automountServiceAccountToken": False,
    }


def test_namespace_spec_and_status() -> None:
    body = envelope(
        "v1",
        "Namespace",
        meta(s(1, "n")),
        m(2, s(1, "kubernetes"), s(1, "example.com/x")),
        m(3, s(1, "Terminating"), m(2, s(1, "NamespaceDeletionContentFailure"), s(2, "False"), s(5, "Ok"))),
    )
    assert decode(body, "v1", "Namespace") == {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": "n"},
        "spec": {"finalizers": ["kubernetes", "example.com/x"]},
        "status": {
            "phase": "Terminating",
            # lastTransitionTime is a struct: omitempty keeps a zero one, as null.
            "conditions": [
                {
                    "type": "NamespaceDeletionContentFailure",
                    "status": "False",
                    "lastTransitionTime": None,
                    "reason": "Ok",
                }
            ],
        },
    }


def test_cluster_role_aggregation_rule_with_match_expressions() -> None:
    selector = m(
        1,
        entry(1, "rbac.example.com/aggregate", "true"),
        m(2, s(1, "tier"), s(2, "In"), s(3, "a"), s(3, "b")),
    )
    body = envelope(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        meta(s(1, "agg")),
        m(3, selector, m(1, m(2, s(1, "x"), s(2, "Exists")))),
    )
    assert decode(body, "rbac.authorization.k8s.io/v1", "ClusterRole") == {
        "kind": "ClusterRole",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": "agg"},
        "rules": None,  # `json:"rules"`: a nil slice is null, as kubectl's own JSON has it
        "aggregationRule": {
            "clusterRoleSelectors": [
                {
                    "matchLabels": {"rbac.example.com/aggregate": "true"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}],
                },
                {"matchExpressions": [{"key": "x", "operator": "Exists"}]},
            ]
        },
    }


def test_role_and_bindings() -> None:
    rule = m(2, s(1, "get"), s(1, "list"), s(2, ""), s(2, "apps"), s(3, "pods"), s(4, "one"))
    assert decode(
        envelope("rbac.authorization.k8s.io/v1", "Role", meta(s(1, "r"), s(3, "ns")), rule), "", None
    ) == {
        "kind": "Role",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": "r", "namespace": "ns"},
        "rules": [
            {
                "verbs": ["get", "list"],
                "apiGroups": ["", "apps"],
                "resources": ["pods"],
                "resourceNames": ["one"],
            }
        ],
    }
    crb = envelope(
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        meta(s(1, "b")),
        m(2, s(1, "Group"), s(2, "rbac.authorization.k8s.io"), s(3, "devs")),
        m(3, s(2, "ClusterRole"), s(3, "view")),
    )
    assert decode(crb, "", None) == {
        "kind": "ClusterRoleBinding",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": "b"},
        "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "devs"}],
        "roleRef": {"apiGroup": "", "kind": "ClusterRole", "name": "view"},  # RoleRef has no omitempty
    }


def test_self_subject_access_review_with_selectors() -> None:
    attrs = m(
        1,
        s(1, "ns"),
        s(2, "list"),
        s(5, "pods"),
        m(8, m(2, s(1, "spec.nodeName"), s(2, "In"), s(3, "n1"))),
        m(9, s(1, "app=web")),
    )
    body = envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", meta(), m(2, attrs))
    assert decode(body, "authorization.k8s.io/v1", "SelfSubjectAccessReview") == {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {},
        "spec": {
            "resourceAttributes": {
                "namespace": "ns",
                "verb": "list",
                "resource": "pods",
                "fieldSelector": {
                    "requirements": [{"key": "spec.nodeName", "operator": "In", "values": ["n1"]}]
                },
                "labelSelector": {"rawSelector": "app=web"},
            }
        },
        "status": {"allowed": False},  # a struct is always written, and allowed has no omitempty
    }


def test_subject_access_review_with_extra() -> None:
    spec = m(
        2,
        m(2, s(1, "/healthz"), s(2, "get")),
        s(3, "alice"),
        s(4, "devs"),
        m(5, s(1, "scopes"), m(2, s(1, "a"), s(1, "b"))),
        m(5, s(1, "empty")),
        s(6, "uid-1"),
    )
    status = m(3, v(1, 1), s(2, "because"))
    out = decode(envelope("authorization.k8s.io/v1", "SubjectAccessReview", meta(), spec, status), "", None)
    assert out == {
        "kind": "SubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {},
        "spec": {
            "nonResourceAttributes": {"path": "/healthz", "verb": "get"},
            "user": "alice",
            "groups": ["devs"],
            "extra": {"scopes": ["a", "b"], "empty": None},
            "uid": "uid-1",
        },
        "status": {"allowed": True, "reason": "because"},
    }


def test_token_request_defaults_are_null() -> None:
    out = decode(envelope("authentication.k8s.io/v1", "TokenRequest", meta()), "", None)
    assert out["spec"] == {"audiences": None, "expirationSeconds": None, "boundObjectRef": None}
    assert out["status"] == {"token": "", "expirationTimestamp": None}


def test_event_with_micro_time_and_series() -> None:
    body = envelope(
        "v1",
        "Event",
        meta(s(1, "e"), s(3, "ns")),
        m(2, s(1, "Pod"), s(3, "p")),
        s(3, "Started"),
        m(5, s(1, "kubelet")),
        m(7, ts(1_700_000_000)),
        v(8, 2),
        s(9, "Normal"),
        m(10, ts(1_700_000_000, 123_456_789)),
        m(11, v(1, 5), m(2, ts(1_700_000_001, 1_000))),
        s(14, "kubelet"),
    )
    assert decode(body, "v1", "Event") == {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {"name": "e", "namespace": "ns"},
        "involvedObject": {"kind": "Pod", "name": "p"},
        "reason": "Started",
        "source": {"component": "kubelet"},
        "firstTimestamp": None,
        "lastTimestamp": "2023-11-14T22:13:20Z",
        "count": 2,
        "type": "Normal",
        "eventTime": "2023-11-14T22:13:20.123456Z",  # RFC3339Micro truncates
        "series": {"count": 5, "lastObservedTime": "2023-11-14T22:13:21.000001Z"},
        "reportingComponent": "kubelet",
        "reportingInstance": "",
    }


def test_delete_options_any_api_version_and_eviction() -> None:
    opts = (v(1, 0), m(2, s(1, "u1"), s(2, "7")), s(4, "Foreground"), s(5, "All"), v(6, 0))
    expected = {
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": "u1", "resourceVersion": "7"},
        "propagationPolicy": "Foreground",
        "dryRun": ["All"],
        "ignoreStoreReadErrorWithClusterBreakingPotential": False,
    }
    for av in ("v1", "meta.k8s.io/v1", "apps/v1"):
        assert decode(envelope(av, "DeleteOptions", *opts), "meta.k8s.io/v1", "DeleteOptions") == {
            "kind": "DeleteOptions",
            "apiVersion": av,
            **expected,
        }
    eviction = envelope("policy/v1", "Eviction", meta(s(1, "p"), s(3, "ns")), m(2, v(3, 1)))
    assert decode(eviction, "", None) == {
        "kind": "Eviction",
        "apiVersion": "policy/v1",
        "metadata": {"name": "p", "namespace": "ns"},
        "deleteOptions": {"orphanDependents": True},
    }


def test_scale() -> None:
    body = envelope("autoscaling/v1", "Scale", meta(s(1, "d")), m(2, v(1, 3)), m(3))
    assert decode(body, "autoscaling/v1", "Scale") == {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": "d"},
        "spec": {"replicas": 3},
        "status": {"replicas": 0},
    }


def test_type_meta_defaults_from_the_endpoint() -> None:
    # protobuf.go copyKindDefaults: an empty typeMeta takes the endpoint's kind and version.
    body = envelope("", "", meta(s(1, "c")))
    assert decode(body, "v1", "ConfigMap") == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "c"},
    }
    body = envelope("", "ClusterRole", meta(s(1, "c")))
    assert decode(body, "rbac.authorization.k8s.io/v1", None)["apiVersion"] == "rbac.authorization.k8s.io/v1"
    with pytest.raises(ProtobufError, match="'Kind' is missing"):
        decode(envelope("", "", meta()), "v1", None)
    with pytest.raises(ProtobufError, match="'apiVersion' is missing"):
        decode(envelope("", "ConfigMap", meta()), "", None)


def test_merging_and_last_scalar_wins() -> None:
    # A message field seen twice is merged; a scalar seen twice keeps the last value.
    body = envelope(
        "v1", "ConfigMap", meta(s(1, "first")), meta(s(3, "ns")), meta(s(1, "second")), v(4, 1), v(4, 0)
    )
    assert decode(body, "", None) == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "second", "namespace": "ns"},
        "immutable": False,
    }


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (1_500_000, "1.5ms"),
        (1_000_000_000, "1s"),
        (61_000_000_000, "1m1s"),
        (3_600_000_000_000, "1h0m0s"),
        (5_400_500_000_000, "1h30m0.5s"),
        (-2_500_000_000, "-2.5s"),
    ],
)
def test_go_duration(ns: int, text: str) -> None:
    assert go_duration(ns) == text


def test_wrapper_types() -> None:
    el = protobuf._element
    assert el(v(1, 90_000_000_000), "Duration", "d") == "1m30s"
    assert el(b"", "Duration", "d") == "0s"
    assert el(s(1, "500m"), "Quantity", "q") == "500m"
    assert el(b"", "Quantity", "q") == "0"
    assert el(v(2, 8080), "IntOrString", "i") == 8080
    assert el(v(1, 1) + s(3, "http"), "IntOrString", "i") == "http"
    assert el(b"", "Time", "t") is None
    assert el(ts(-62135596800), "Time", "t") is None  # Go's zero time
    assert el(ts(-62135596800 + 86400), "Time", "t") == "0001-01-02T00:00:00Z"
    with pytest.raises(ProtobufError, match="quantities must match"):
        el(s(1, "1.5 Gi"), "Quantity", "q")
    with pytest.raises(ProtobufError, match="impossible IntOrString"):
        el(v(1, 2), "IntOrString", "i")
    with pytest.raises(ProtobufError, match="out of the range"):
        el(ts(400_000_000_000), "Time", "t")
    with pytest.raises(ProtobufError, match="not JSON"):
        el(s(1, b"{nope"), "FieldsV1", "f")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "empty data"),
        (b'{"kind":"ConfigMap"}', "does not appear to be a protobuf message"),
        (b"k8s\x00", "empty body"),
        (b"k8s\x00\n\x80", "end of data in a varint"),
        (b"k8s\x00\x12\x05ab", "longer than its message"),
        (b"k8s\x00\x0b", "groups"),
        (envelope("v1", "ConfigMap", v(9, 1)), "field number 9 is not a field of ConfigMap"),
        (envelope("v1", "ConfigMap", meta(s(15, "legacy"))), "field number 15 is not a field of ObjectMeta"),
        (envelope("v1", "ConfigMap", v(1, 5)), "wrong wire type 0"),
        (envelope("v1", "ConfigMap", s(4, "yes")), "wrong wire type 2"),
        (envelope("v1", "ConfigMap", meta(s(1, b"\xff"))), "not valid UTF-8"),
        (envelope("v1", "Event", v(8, 1 << 40)), "does not fit an int32"),
        (envelope("v1", "ConfigMap", encoding="gzip"), "contentEncoding"),
        (envelope("v1", "ConfigMap", ctype="application/json"), "contentType"),
        (envelope("a/b/c", "ConfigMap"), "unexpected GroupVersion"),
        # ConditionalAuthorization's alpha authorizationOptions is not in kubesim's table.
        (
            envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", m(2, m(3, s(1, "Allow")))),
            "field number 3",
        ),
    ],
)
def test_malformed_bodies(body: bytes, match: str) -> None:
    with pytest.raises(ProtobufError, match=match):
        decode(body, "v1", "ConfigMap")


def test_decode_error_is_worded_as_upstream() -> None:
    with pytest.raises(ProtobufError) as e:
        decode(envelope("v1", "ConfigMap", v(9, 1)), "v1", "ConfigMap")
    assert e.value.describe("ConfigMap").startswith(
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: '
    )


def test_unsupported_kind() -> None:
    with pytest.raises(UnsupportedProtobuf) as e:
        decode(envelope("apps/v1", "Deployment", meta(s(1, "d"))), "apps/v1", "Deployment")
    msg = str(e.value)
    assert "Deployment (apps/v1)" in msg
    assert "ConfigMap (v1)" in msg and "ClusterRoleBinding (rbac.authorization.k8s.io/v1)" in msg
    assert "kubectl apply -f" in msg


# -- end to end with kubectl -------------------------------------------------------------------

NS = "pbtest"


@pytest.fixture(scope="module")
def sim(kubesim: KubeSim) -> KubeSim:
    kubesim.kubectl("create", "namespace", NS)
    return kubesim


@contextmanager
def captured_bodies(sim: KubeSim) -> Iterator[list[tuple[str, bytes]]]:
    """Record (Content-Type, raw body) of the create/update bodies the server reads."""
    assert sim.cluster is not None
    front = sim.cluster.front
    original = front.read_body
    seen: list[tuple[str, bytes]] = []

    async def spy(request: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append((request.headers.get("Content-Type", ""), await request.read()))
        return await original(request, *args, **kwargs)

    front.read_body = spy  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        del front.read_body  # back to the class's method


def _clean(obj: dict[str, Any], name: str, twin: str) -> dict[str, Any]:
    """An object without what the server sets per object, with its twin's name replaced by ``name``."""
    obj = json.loads(json.dumps(obj).replace(twin, name))
    for k in ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation"):
        obj["metadata"].pop(k, None)
    return obj


# Each imperative command, with {n} for the object's name. The protobuf body kubectl sends must decode
# to kubectl's own JSON for it, and the object it creates must equal the one its JSON creates.
CREATES: list[tuple[str, str, list[str]]] = [
    ("namespace", "namespace", ["namespace", "{n}"]),
    ("configmap", "configmap", ["configmap", "{n}", "-n", NS, "--from-literal=a=b", "--from-literal=c=d"]),
    ("configmap-binary", "configmap", ["configmap", "{n}", "-n", NS, "--from-file=bin={bin}"]),
    (
        "secret",
        "secret",
        ["secret", "generic", "{n}", "-n", NS, "--from-literal=user=admin", "--type=Opaque"],
    ),
    (
        "secret-docker",
        "secret",
        [
            "secret",
            "docker-registry",
            "{n}",
            "-n",
            NS,
            "--docker-server=r.example",
            "--docker-username=u",
            "--docker-password=p",
        ],
    ),
    ("serviceaccount", "serviceaccount", ["serviceaccount", "{n}", "-n", NS]),
    (
        "role",
        "role",
        ["role", "{n}", "-n", NS, "--verb=get,list", "--resource=pods,deployments.apps", "--resource-name=x"],
    ),
    (
        "rolebinding",
        "rolebinding",
        [
            "rolebinding",
            "{n}",
            "-n",
            NS,
            "--clusterrole=view",
            "--user=alice",
            "--group=devs",
            f"--serviceaccount={NS}:default",
        ],
    ),
    (
        "clusterrole",
        "clusterrole",
        ["clusterrole", "{n}", "--verb=get", "--resource=pods", "--non-resource-url=/logs/*"],
    ),
    (
        "clusterrole-aggregated",
        "clusterrole",
        ["clusterrole", "{n}", "--aggregation-rule=pbtest.example.com/agg=true"],
    ),
    (
        "clusterrolebinding",
        "clusterrolebinding",
        ["clusterrolebinding", "{n}", "--clusterrole=view", "--user=bob"],
    ),
]


@pytest.mark.kubectl
@pytest.mark.parametrize(("case", "resource", "args"), CREATES, ids=[c[0] for c in CREATES])
def test_imperative_create(sim: KubeSim, tmp_path: Path, case: str, resource: str, args: list[str]) -> None:
    bin_file = tmp_path / "bin"
    bin_file.write_bytes(b"\xff\xfe\x00binary")

    def argv(name: str) -> list[str]:
        return [a.format(n=name, bin=bin_file) for a in args]

    name, twin = f"pb-{case}", f"js-{case}"
    expected = json.loads(sim.kubectl("create", *argv(name), "--dry-run=client", "-o", "json").stdout)
    with captured_bodies(sim) as seen:
        sim.kubectl("create", *argv(name))
    assert [ct for ct, _ in seen] == [PB]
    assert decode(seen[0][1], "", None) == expected

    # The same object sent as JSON (kubectl create -f sends JSON) must come out the same.
    doc = json.loads(sim.kubectl("create", *argv(twin), "--dry-run=client", "-o", "json").stdout)
    sim.kubectl("create", "-f", "-", input=json.dumps(doc))
    ns_args = [] if resource.startswith("cluster") or resource == "namespace" else ["-n", NS]
    got = json.loads(sim.kubectl("get", resource, name, *ns_args, "-o", "json").stdout)
    via_json = json.loads(sim.kubectl("get", resource, twin, *ns_args, "-o", "json").stdout)
    assert _clean(got, name, name) == _clean(via_json, name, twin)
    assert got["metadata"]["name"] == name


@pytest.fixture(scope="module")
def sa_kubeconfig(sim: KubeSim) -> Path:
    sim.kubectl("create", "serviceaccount", "robot", "-n", NS)
    return sim.service_account_kubeconfig(NS, "robot")


def _as_robot(sim: KubeSim, sa_kubeconfig: Path) -> Callable[..., Any]:
    def run(*args: str) -> Any:
        return sim.kubectl(*args, kubeconfig=sa_kubeconfig, check=False)

    return run


@pytest.mark.kubectl
def test_auth_can_i(sim: KubeSim, sa_kubeconfig: Path) -> None:
    robot = _as_robot(sim, sa_kubeconfig)
    before = robot("auth", "can-i", "list", "configmaps", "-n", NS)
    assert (before.returncode, before.stdout.strip()) == (1, "no")
    sim.kubectl("create", "role", "cm-reader", "-n", NS, "--verb=get,list", "--resource=configmaps")
    sim.kubectl(
        "create", "rolebinding", "robot-reads", "-n", NS, "--role=cm-reader", f"--serviceaccount={NS}:robot"
    )
    after = robot("auth", "can-i", "list", "configmaps", "-n", NS)
    assert (after.returncode, after.stdout.strip()) == (0, "yes")
    other = robot("auth", "can-i", "delete", "configmaps", "-n", NS)
    assert (other.returncode, other.stdout.strip()) == (1, "no")
    nonresource = sim.kubectl("auth", "can-i", "get", "/logs")
    assert nonresource.stdout.strip() == "yes"

    listed = robot("auth", "can-i", "--list", "-n", NS)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert ["configmaps", "[]", "[]", "[get", "list]"] in rows


@pytest.mark.kubectl
def test_auth_whoami(sim: KubeSim, sa_kubeconfig: Path) -> None:
    out = _as_robot(sim, sa_kubeconfig)("auth", "whoami", "-o", "json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)["status"]["userInfo"]
    assert info["username"] == f"system:serviceaccount:{NS}:robot"
    assert "system:serviceaccounts" in info["groups"]


@pytest.mark.kubectl
def test_create_token_authenticates(sim: KubeSim, sa_kubeconfig: Path) -> None:
    token = sim.kubectl("create", "token", "robot", "-n", NS, "--duration=20m").stdout.strip()
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert payload["exp"] - payload["iat"] == 1200  # spec.expirationSeconds came through the protobuf body
    who = sim.kubectl("auth", "whoami", "-o", "json", f"--token={token}")
    assert json.loads(who.stdout)["status"]["userInfo"]["username"] == f"system:serviceaccount:{NS}:robot"
    short = sim.kubectl("create", "token", "robot", "-n", NS, "--duration=5m", check=False)
    assert short.returncode != 0 and "may not specify a duration less than 10 minutes" in short.stderr


@pytest.mark.kubectl
def test_drain_deletes_with_protobuf_delete_options(sim: KubeSim) -> None:
    sim.kubectl(
        "apply",
        "-f",
        "-",
        input=f"""
apiVersion: v1
kind: Node
metadata: {{name: pb-node}}
---
apiVersion: v1
kind: Pod
metadata: {{name: pb-pod, namespace: {NS}}}
spec: {{nodeName: pb-node, containers: [{{name: c, image: nginx}}]}}
""",
    )
    out = sim.kubectl(
        "drain", "pb-node", "--force", "--disable-eviction", "--grace-period=0", "--timeout=20s"
    )
    assert "pod/pb-pod deleted" in out.stdout
    gone = sim.kubectl("get", "pod", "pb-pod", "-n", NS, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


@pytest.mark.kubectl
def test_auth_reconcile(sim: KubeSim) -> None:
    doc = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pb-reconciled}
rules: [{verbs: [get], apiGroups: [""], resources: [pods]}]
"""
    sim.kubectl("auth", "reconcile", "-f", "-", input=doc)  # a protobuf create
    got = json.loads(sim.kubectl("get", "clusterrole", "pb-reconciled", "-o", "json").stdout)
    assert got["rules"] == [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]
    sim.kubectl("auth", "reconcile", "-f", "-", input=doc.replace("[get]", "[list]"))  # a protobuf update
    got = json.loads(sim.kubectl("get", "clusterrole", "pb-reconciled", "-o", "json").stdout)
    assert [r["verbs"] for r in got["rules"]] == [["get"], ["list"]]


def test_raw_protobuf_delete_options_are_honored(sim: KubeSim) -> None:
    sim.kubectl("create", "configmap", "pb-guarded", "-n", NS)
    path = f"/api/v1/namespaces/{NS}/configmaps/pb-guarded"
    stale = envelope("v1", "DeleteOptions", m(2, s(1, "not-the-uid")))
    code, _, status = sim.request("DELETE", path, body=stale, content_type=PB)
    assert (code, status["reason"]) == (409, "Conflict")
    uid = sim.request("GET", path)[2]["metadata"]["uid"]
    code, _, _ = sim.request(
        "DELETE", path, body=envelope("v1", "DeleteOptions", m(2, s(1, uid))), content_type=PB
    )
    assert code == 200
    assert sim.request("GET", path)[0] == 404


def test_server_answers_400_and_415(sim: KubeSim) -> None:
    path = f"/api/v1/namespaces/{NS}/configmaps"
    code, _, status = sim.request(
        "POST", path, body=envelope("v1", "ConfigMap", meta(s(1, "x")), v(9, 1)), content_type=PB
    )
    assert (code, status["reason"]) == (400, "BadRequest")
    assert status["message"].startswith('ConfigMap in version "v1" cannot be handled as a ConfigMap: ')
    deployment = envelope("apps/v1", "Deployment", meta(s(1, "d")))
    code, _, status = sim.request(
        "POST", f"/apis/apps/v1/namespaces/{NS}/deployments", body=deployment, content_type=PB
    )
    assert (code, status["reason"]) == (415, "UnsupportedMediaType")
    assert "kubectl apply -f" in status["message"]
    # A body whose kind differs from the endpoint's is refused as the JSON one is.
    code, _, status = sim.request(
        "POST", path, body=envelope("v1", "Secret", meta(s(1, "x"))), content_type=PB
    )
    assert code == 400


@pytest.mark.kubectl
def test_kubectl_create_deployment_says_what_to_do(sim: KubeSim) -> None:
    out = sim.kubectl("create", "deployment", "pb-web", "--image=nginx", "-n", NS, check=False)
    assert out.returncode != 0
    assert "kubesim decodes application/vnd.kubernetes.protobuf" in out.stderr
    assert "kubectl apply -f" in out.stderr
