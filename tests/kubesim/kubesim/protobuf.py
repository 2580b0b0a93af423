"""Decoding ``application/vnd.kubernetes.protobuf`` request bodies into the JSON dicts kubesim handles.

kubectl 1.37's typed clients (``kubectl create configmap|secret|serviceaccount|namespace|role|...``,
``kubectl create token``, ``kubectl auth can-i|whoami|reconcile``, ``kubectl drain``) send their
bodies as Kubernetes protobuf. The wire form is the one
``staging/src/k8s.io/apimachinery/pkg/runtime/serializer/protobuf/protobuf.go`` reads: the magic
prefix ``k8s\\x00`` and then a ``runtime.Unknown`` message (``apimachinery/pkg/runtime/generated.proto``:
``typeMeta`` = 1 {``apiVersion`` = 1, ``kind`` = 2}, ``raw`` = 2, ``contentEncoding`` = 3,
``contentType`` = 4) whose ``raw`` is the object's own message.

``decode`` turns that into exactly the dict the JSON body would have been: what Go's
``encoding/json`` writes for the struct the protobuf unmarshals into. So it follows the Go struct's
JSON tags, not the proto: ``omitempty`` zero values are left out, non-``omitempty`` ones are written
(``"rules": null``, ``"allowed": false``), structs are always written, pointers are written when
present, ``metav1.Time`` is RFC 3339 in seconds (``null`` when zero; left out where the tag says
``omitzero``), ``[]byte`` is base64.

The field table below is transcribed from the upstream types (field names, numbers, Go types and
JSON tags are protocol facts): ``staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/types.go``,
``staging/src/k8s.io/api/core/v1/generated.proto`` and ``types.go``, ``api/rbac/v1/types.go``,
``api/authentication/v1/types.go``, ``api/authorization/v1/types.go``, ``api/policy/v1/types.go``,
``api/autoscaling/v1/types.go``. Where kubesim is unsure it is stricter than kube-apiserver: the
generated gogo unmarshallers skip unknown field numbers, kubesim refuses them (``ProtobufError``)
rather than drop data silently; strings must be UTF-8; int32 fields must fit. Kinds outside the
table raise ``UnsupportedProtobuf``, which the server answers with 415 so that the user knows to
send JSON or YAML instead.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"


class ProtobufError(ValueError):
    """A body that is not a well-formed protobuf message of its kind (the server answers 400)."""

    def __init__(self, detail: str, kind: str = "", version: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.kind = kind
        self.version = version

    def describe(self, expected_kind: str) -> str:
        """The message as ``handlers/rest.go: transformDecodeError`` words a decode failure."""
        if self.kind:
            return f'{self.kind} in version "{self.version}" cannot be handled as a {expected_kind}: {self.detail}'
        return f"the object provided is unrecognized (must be of type {expected_kind}): {self.detail}"


class UnsupportedProtobuf(Exception):
    """A protobuf body of a kind kubesim has no field table for (the server answers 415)."""


# -- the field table -------------------------------------------------------------------------
#
# A field is (JSON name, proto field number, type, flags), listed in Go struct order (the order
# encoding/json writes). Types: "string", "int64", "int32", "bool", "bytes"; the apimachinery
# wrappers "Time", "MicroTime", "Duration", "Quantity", "IntOrString", "FieldsV1", "ExtraValue";
# or a message name from _MESSAGES. "[]T" is a repeated field, "{}T" a map<string, T>.
# Flags: "o" = omitempty, "p" = a Go pointer (nil unless on the wire), "z" = omitzero.

_Spec = tuple[str, int, str, str]

_S, _I64, _I32, _B, _Y = "string", "int64", "int32", "bool", "bytes"

# fmt: off
_MESSAGES: dict[str, tuple[_Spec, ...]] = {
    # apimachinery/pkg/apis/meta/v1/types.go
    "ObjectMeta": (
        ("name", 1, _S, "o"), ("generateName", 2, _S, "o"), ("namespace", 3, _S, "o"),
        ("selfLink", 4, _S, "o"), ("uid", 5, _S, "o"), ("resourceVersion", 6, _S, "o"),
        ("generation", 7, _I64, "o"),
        # `json:"creationTimestamp,omitempty,omitzero"` in 1.37 (kubectl's JSON leaves a zero one out).
        ("creationTimestamp", 8, "Time", "oz"), ("deletionTimestamp", 9, "Time", "op"),
        ("deletionGracePeriodSeconds", 10, _I64, "op"),
        ("labels", 11, "{}string", "o"), ("annotations", 12, "{}string", "o"),
        ("ownerReferences", 13, "[]OwnerReference", "o"), ("finalizers", 14, "[]string", "o"),
        # 15 (clusterName) is a tombstone, 16 was never used.
        ("managedFields", 17, "[]ManagedFieldsEntry", "o"),
    ),
    "OwnerReference": (
        ("apiVersion", 5, _S, ""), ("kind", 1, _S, ""), ("name", 3, _S, ""), ("uid", 4, _S, ""),
        ("controller", 6, _B, "op"), ("blockOwnerDeletion", 7, _B, "op"),
    ),
    "ManagedFieldsEntry": (
        ("manager", 1, _S, "o"), ("operation", 2, _S, "o"), ("apiVersion", 3, _S, "o"),
        ("time", 4, "Time", "op"),
        # 5 (fields) is a tombstone.
        ("fieldsType", 6, _S, "o"), ("fieldsV1", 7, "FieldsV1", "op"), ("subresource", 8, _S, "o"),
    ),
    "LabelSelector": (
        ("matchLabels", 1, "{}string", "o"), ("matchExpressions", 2, "[]LabelSelectorRequirement", "o"),
    ),
    "LabelSelectorRequirement": (("key", 1, _S, ""), ("operator", 2, _S, ""), ("values", 3, "[]string", "o")),
    "FieldSelectorRequirement": (("key", 1, _S, ""), ("operator", 2, _S, ""), ("values", 3, "[]string", "o")),
    "DeleteOptions": (
        ("gracePeriodSeconds", 1, _I64, "op"), ("preconditions", 2, "Preconditions", "op"),
        ("orphanDependents", 3, _B, "op"), ("propagationPolicy", 4, _S, "op"),
        ("dryRun", 5, "[]string", "o"),
        ("ignoreStoreReadErrorWithClusterBreakingPotential", 6, _B, "op"),
    ),
    "Preconditions": (("uid", 1, _S, "op"), ("resourceVersion", 2, _S, "op")),
    # api/core/v1 (generated.proto for numbers, types.go for the JSON tags)
    "ConfigMap": (
        ("metadata", 1, "ObjectMeta", "o"), ("immutable", 4, _B, "op"),
        ("data", 2, "{}string", "o"), ("binaryData", 3, "{}bytes", "o"),
    ),
    "Secret": (
        ("metadata", 1, "ObjectMeta", "o"), ("immutable", 5, _B, "op"), ("data", 2, "{}bytes", "o"),
        ("stringData", 4, "{}string", "o"), ("type", 3, _S, "o"),
    ),
    "ServiceAccount": (
        ("metadata", 1, "ObjectMeta", "o"), ("secrets", 2, "[]ObjectReference", "o"),
        ("imagePullSecrets", 3, "[]LocalObjectReference", "o"),
        ("automountServiceAccountToken", 4, _B, "op"),
    ),
    "ObjectReference": (
        ("kind", 1, _S, "o"), ("namespace", 2, _S, "o"), ("name", 3, _S, "o"), ("uid", 4, _S, "o"),
        ("apiVersion", 5, _S, "o"), ("resourceVersion", 6, _S, "o"), ("fieldPath", 7, _S, "o"),
    ),
    "LocalObjectReference": (("name", 1, _S, "o"),),
    "Namespace": (
        ("metadata", 1, "ObjectMeta", "o"), ("spec", 2, "NamespaceSpec", "o"), ("status", 3, "NamespaceStatus", "o"),
    ),
    "NamespaceSpec": (("finalizers", 1, "[]string", "o"),),
    "NamespaceStatus": (("phase", 1, _S, "o"), ("conditions", 2, "[]NamespaceCondition", "o")),
    "NamespaceCondition": (
        ("type", 1, _S, ""), ("status", 2, _S, ""), ("lastTransitionTime", 4, "Time", "o"),
        ("reason", 5, _S, "o"), ("message", 6, _S, "o"),
    ),
    "Event": (
        ("metadata", 1, "ObjectMeta", ""), ("involvedObject", 2, "ObjectReference", ""),
        ("reason", 3, _S, "o"), ("message", 4, _S, "o"), ("source", 5, "EventSource", "o"),
        ("firstTimestamp", 6, "Time", "o"), ("lastTimestamp", 7, "Time", "o"), ("count", 8, _I32, "o"),
        ("type", 9, _S, "o"), ("eventTime", 10, "MicroTime", "o"), ("series", 11, "EventSeries", "op"),
        ("action", 12, _S, "o"), ("related", 13, "ObjectReference", "op"),
        ("reportingComponent", 14, _S, ""), ("reportingInstance", 15, _S, ""),
    ),
    "EventSource": (("component", 1, _S, "o"), ("host", 2, _S, "o")),
    "EventSeries": (("count", 1, _I32, "o"), ("lastObservedTime", 2, "MicroTime", "o")),
    # api/rbac/v1/types.go
    "PolicyRule": (
        ("verbs", 1, "[]string", ""), ("apiGroups", 2, "[]string", "o"), ("resources", 3, "[]string", "o"),
        ("resourceNames", 4, "[]string", "o"), ("nonResourceURLs", 5, "[]string", "o"),
    ),
    "Subject": (("kind", 1, _S, ""), ("apiGroup", 2, _S, "o"), ("name", 3, _S, ""), ("namespace", 4, _S, "o")),
    "RoleRef": (("apiGroup", 1, _S, ""), ("kind", 2, _S, ""), ("name", 3, _S, "")),
    "Role": (("metadata", 1, "ObjectMeta", "o"), ("rules", 2, "[]PolicyRule", "")),
    "RoleBinding": (("metadata", 1, "ObjectMeta", "o"), ("subjects", 2, "[]Subject", "o"), ("roleRef", 3, "RoleRef", "")),
    "ClusterRole": (
        ("metadata", 1, "ObjectMeta", "o"), ("rules", 2, "[]PolicyRule", ""),
        ("aggregationRule", 3, "AggregationRule", "op"),
    ),
    "AggregationRule": (("clusterRoleSelectors", 1, "[]LabelSelector", "o"),),
    "ClusterRoleBinding": (
        ("metadata", 1, "ObjectMeta", "o"), ("subjects", 2, "[]Subject", "o"), ("roleRef", 3, "RoleRef", ""),
    ),
    # api/authentication/v1/types.go
    "TokenRequest": (
        ("metadata", 1, "ObjectMeta", "o"), ("spec", 2, "TokenRequestSpec", ""), ("status", 3, "TokenRequestStatus", "o"),
    ),
    "TokenRequestSpec": (
        ("audiences", 1, "[]string", ""), ("expirationSeconds", 4, _I64, "p"),
        ("boundObjectRef", 3, "BoundObjectReference", "p"),
    ),
    "TokenRequestStatus": (("token", 1, _S, ""), ("expirationTimestamp", 2, "Time", "")),
    "BoundObjectReference": (
        ("kind", 1, _S, "o"), ("apiVersion", 2, _S, "o"), ("name", 3, _S, "o"), ("uid", 4, _S, "o"),
    ),
    "SelfSubjectReview": (("metadata", 1, "ObjectMeta", "o"), ("status", 2, "SelfSubjectReviewStatus", "o")),
    "SelfSubjectReviewStatus": (("userInfo", 1, "UserInfo", "o"),),
    "UserInfo": (
        ("username", 1, _S, "o"), ("uid", 2, _S, "o"), ("groups", 3, "[]string", "o"), ("extra", 4, "{}ExtraValue", "o"),
    ),
    # api/authorization/v1/types.go (spec.authorizationOptions and status.conditionalDecision, behind
    # the alpha ConditionalAuthorization gate, are not in the table: kubesim refuses them).
    "SubjectAccessReview": (
        ("metadata", 1, "ObjectMeta", "o"), ("spec", 2, "SubjectAccessReviewSpec", ""),
        ("status", 3, "SubjectAccessReviewStatus", "o"),
    ),
    "SelfSubjectAccessReview": (
        ("metadata", 1, "ObjectMeta", "o"), ("spec", 2, "SelfSubjectAccessReviewSpec", ""),
        ("status", 3, "SubjectAccessReviewStatus", "o"),
    ),
    "SelfSubjectRulesReview": (
        ("metadata", 1, "ObjectMeta", "o"), ("spec", 2, "SelfSubjectRulesReviewSpec", ""),
        ("status", 3, "SubjectRulesReviewStatus", "o"),
    ),
    "ResourceAttributes": (
        ("namespace", 1, _S, "o"), ("verb", 2, _S, "o"), ("group", 3, _S, "o"), ("version", 4, _S, "o"),
        ("resource", 5, _S, "o"), ("subresource", 6, _S, "o"), ("name", 7, _S, "o"),
        ("fieldSelector", 8, "FieldSelectorAttributes", "op"), ("labelSelector", 9, "LabelSelectorAttributes", "op"),
    ),
    "LabelSelectorAttributes": (("rawSelector", 1, _S, "o"), ("requirements", 2, "[]LabelSelectorRequirement", "o")),
    "FieldSelectorAttributes": (("rawSelector", 1, _S, "o"), ("requirements", 2, "[]FieldSelectorRequirement", "o")),
    "NonResourceAttributes": (("path", 1, _S, "o"), ("verb", 2, _S, "o")),
    "SubjectAccessReviewSpec": (
        ("resourceAttributes", 1, "ResourceAttributes", "op"), ("nonResourceAttributes", 2, "NonResourceAttributes", "op"),
        ("user", 3, _S, "o"), ("groups", 4, "[]string", "o"), ("extra", 5, "{}ExtraValue", "o"), ("uid", 6, _S, "o"),
    ),
    "SelfSubjectAccessReviewSpec": (
        ("resourceAttributes", 1, "ResourceAttributes", "op"), ("nonResourceAttributes", 2, "NonResourceAttributes", "op"),
    ),
    "SubjectAccessReviewStatus": (
        ("allowed", 1, _B, ""), ("denied", 4, _B, "o"), ("reason", 2, _S, "o"), ("evaluationError", 3, _S, "o"),
    ),
    "SelfSubjectRulesReviewSpec": (("namespace", 1, _S, "o"),),
    "SubjectRulesReviewStatus": (
        ("resourceRules", 1, "[]ResourceRule", ""), ("nonResourceRules", 2, "[]NonResourceRule", ""),
        ("incomplete", 3, _B, ""), ("evaluationError", 4, _S, "o"),
    ),
    "ResourceRule": (
        ("verbs", 1, "[]string", ""), ("apiGroups", 2, "[]string", "o"), ("resources", 3, "[]string", "o"),
        ("resourceNames", 4, "[]string", "o"),
    ),
    "NonResourceRule": (("verbs", 1, "[]string", ""), ("nonResourceURLs", 2, "[]string", "o")),
    # api/policy/v1/types.go (pods/eviction, what kubectl drain posts)
    "Eviction": (("metadata", 1, "ObjectMeta", "o"), ("deleteOptions", 2, "DeleteOptions", "op")),
    # api/autoscaling/v1/types.go (the scale subresource)
    "Scale": (("metadata", 1, "ObjectMeta", "o"), ("spec", 2, "ScaleSpec", "o"), ("status", 3, "ScaleStatus", "o")),
    "ScaleSpec": (("replicas", 1, _I32, "o"),),
    "ScaleStatus": (("replicas", 1, _I32, ""), ("selector", 2, _S, "o")),
}
# fmt: on

# Top-level kinds: (apiVersion, kind) -> message. DeleteOptions is registered as an unversioned type
# of the meta scheme and decodes under any apiVersion (apimachinery/pkg/apis/meta/internalversion/
# register.go: "Allow delete options to be decoded across all version").
_KINDS: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "ConfigMap",
    ("v1", "Secret"): "Secret",
    ("v1", "ServiceAccount"): "ServiceAccount",
    ("v1", "Namespace"): "Namespace",
    ("v1", "Event"): "Event",
    ("rbac.authorization.k8s.io/v1", "Role"): "Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "ClusterRoleBinding",
    ("authentication.k8s.io/v1", "TokenRequest"): "TokenRequest",
    ("authentication.k8s.io/v1", "SelfSubjectReview"): "SelfSubjectReview",
    ("authorization.k8s.io/v1", "SubjectAccessReview"): "SubjectAccessReview",
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview"): "SubjectAccessReview",
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): "SelfSubjectAccessReview",
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): "SelfSubjectRulesReview",
    ("policy/v1", "Eviction"): "Eviction",
    ("autoscaling/v1", "Scale"): "Scale",
}

SUPPORTED_KINDS: tuple[str, ...] = (*(f"{k} ({av})" for av, k in _KINDS), "DeleteOptions (any apiVersion)")

_SCALARS = {_S, _I64, _I32, _B, _Y}
_WRAPPERS = {"Time", "MicroTime", "Duration", "Quantity", "IntOrString", "FieldsV1", "ExtraValue"}
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True)
class _Field:
    json: str
    num: int
    type: str  # element type for repeated fields and map values
    card: str  # "one", "rep" or "map"
    omitempty: bool
    pointer: bool
    omitzero: bool

    @property
    def wire(self) -> int:
        if self.card == "one" and self.type in (_I64, _I32, _B):
            return _VARINT
        return _LEN


def _compile() -> dict[str, tuple[dict[int, _Field], tuple[_Field, ...]]]:
    out: dict[str, tuple[dict[int, _Field], tuple[_Field, ...]]] = {}
    for name, specs in _MESSAGES.items():
        fields: list[_Field] = []
        for js, num, typ, flags in specs:
            card = "rep" if typ.startswith("[]") else "map" if typ.startswith("{}") else "one"
            elem = typ[2:] if card != "one" else typ
            assert elem in _SCALARS or elem in _WRAPPERS or elem in _MESSAGES, (name, js, elem)
            fields.append(_Field(js, num, elem, card, "o" in flags, "p" in flags, "z" in flags))
        by_num = {f.num: f for f in fields}
        assert len(by_num) == len(fields), name
        out[name] = (by_num, tuple(fields))
    return out


_TABLE = _compile()


# -- the wire format -------------------------------------------------------------------------


def _varint(data: bytes, i: int, path: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if i >= len(data):
            raise ProtobufError(f"{path}: unexpected end of data in a varint")
        b = data[i]
        i += 1
        if shift == 63 and b > 1:
            raise ProtobufError(f"{path}: integer overflow in a varint")
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ProtobufError(f"{path}: integer overflow in a varint")


def _scan(data: bytes, path: str) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of one message."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i, path)
        num, wt = key >> 3, key & 7
        if num <= 0:
            raise ProtobufError(f"{path}: illegal field number {num}")
        if wt == _VARINT:
            v, i = _varint(data, i, path)
            yield num, wt, v
        elif wt == _LEN:
            n, i = _varint(data, i, path)
            if n > len(data) - i:
                raise ProtobufError(f"{path}: field {num} is longer than its message")
            yield num, wt, data[i : i + n]
            i += n
        elif wt in (_FIXED64, _FIXED32):
            size = 8 if wt == _FIXED64 else 4
            if size > len(data) - i:
                raise ProtobufError(f"{path}: unexpected end of data in field {num}")
            yield num, wt, int.from_bytes(data[i : i + size], "little")
            i += size
        else:
            raise ProtobufError(f"{path}: wire type {wt} (groups) of field {num} is not used by Kubernetes")


def _int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _int32(v: int, path: str) -> int:
    # Go's generated code truncates to 32 bits; kubesim refuses a value that does not fit instead.
    x = _int64(v)
    if not -(1 << 31) <= x < 1 << 31:
        raise ProtobufError(f"{path}: {x} does not fit an int32")
    return x


def _string(b: bytes, path: str) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtobufError(f"{path}: string is not valid UTF-8: {e}") from None


# -- apimachinery wrappers ---------------------------------------------------------------------

_GO_ZERO_UNIX = -62135596800  # time.Time{}.Unix(): 0001-01-01T00:00:00Z, which IsZero()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _timestamp(data: bytes, path: str) -> tuple[int, int]:
    """A meta/v1 ``Timestamp`` (seconds = 1, nanos = 2), the wire form of Time and MicroTime."""
    seconds = nanos = 0
    for num, wt, v in _scan(data, path):
        if num == 1 and wt == _VARINT:
            assert isinstance(v, int)
            seconds = _int64(v)
        elif num == 2 and wt == _VARINT:
            assert isinstance(v, int)
            nanos = _int32(v, path + ".nanos")
        else:
            raise ProtobufError(f"{path}: field {num} (wire type {wt}) is not a field of Timestamp")
    return seconds, nanos


def _datetime(seconds: int, path: str) -> str:
    """The UTC date and time of a Unix time, without zone, years padded to four digits as Go does."""
    try:
        t = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        # Go's Time.MarshalJSON fails for years outside [0,9999]; Python stops at year 1.
        raise ProtobufError(f"{path}: time is out of the range JSON can carry") from None
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"


def _time(data: bytes, path: str) -> str | None:
    """metav1.Time: an empty message is the zero time (JSON null); nanos are dropped on decode
    (apimachinery/pkg/apis/meta/v1/time_proto.go: Unmarshal); JSON is RFC 3339 in UTC (time.go)."""
    if not data:
        return None
    seconds, _ = _timestamp(data, path)
    if seconds == _GO_ZERO_UNIX:
        return None
    return _datetime(seconds, path) + "Z"


def _micro_time(data: bytes, path: str) -> str | None:
    """metav1.MicroTime: keeps the nanos on decode (micro_time_proto.go); JSON is RFC 3339 with
    six fractional digits, truncated (micro_time.go: RFC3339Micro)."""
    if not data:
        return None
    seconds, nanos = _timestamp(data, path)
    if not 0 <= nanos < 1_000_000_000:
        raise ProtobufError(f"{path}: nanos {nanos} is out of range")
    if seconds == _GO_ZERO_UNIX and nanos == 0:
        return None
    return _datetime(seconds, path) + f".{nanos // 1000:06d}Z"


def _frac(v: int, prec: int) -> tuple[int, str]:
    """Go's time.fmtFrac: the integer part and the fraction with trailing zeros dropped."""
    whole, frac = divmod(v, 10**prec)
    digits = f"{frac:0{prec}d}".rstrip("0")
    return whole, ("." + digits if digits else "")


def go_duration(ns: int) -> str:
    """time.Duration.String(), which metav1.Duration's MarshalJSON writes (duration.go)."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)
    if u < 1_000_000_000:
        if u < 1_000:
            return f"{sign}{u}ns"
        unit, prec = ("µs", 3) if u < 1_000_000 else ("ms", 6)
        whole, frac = _frac(u, prec)
        return f"{sign}{whole}{frac}{unit}"
    secs, frac = _frac(u, 9)
    out = f"{secs % 60}{frac}s"
    mins = secs // 60
    if mins:
        out = f"{mins % 60}m{out}"
        if mins // 60:
            out = f"{mins // 60}h{out}"
    return sign + out


def _duration(data: bytes, path: str) -> str:
    ns = 0
    for num, wt, v in _scan(data, path):
        if num != 1 or wt != _VARINT:
            raise ProtobufError(f"{path}: field {num} (wire type {wt}) is not a field of Duration")
        assert isinstance(v, int)
        ns = _int64(v)
    return go_duration(ns)


# apimachinery/pkg/api/resource/quantity.go: splitREString
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")


def _quantity(data: bytes, path: str) -> str:
    """resource.Quantity: ``string`` = 1 holds its text (generated.proto). Upstream parses and
    re-canonicalizes it; kubesim checks the syntax and keeps the text as sent."""
    s = ""
    for num, wt, v in _scan(data, path):
        if num != 1 or wt != _LEN:
            raise ProtobufError(f"{path}: field {num} (wire type {wt}) is not a field of Quantity")
        assert isinstance(v, bytes)
        s = _string(v, path)
    if not s:
        return "0"  # the zero Quantity marshals as "0"
    if not _QUANTITY.match(s):
        raise ProtobufError(f"{path}: quantities must match the regular expression '{_QUANTITY.pattern}'")
    return s


def _int_or_string(data: bytes, path: str) -> int | str:
    """intstr.IntOrString: type = 1 (0 int, 1 string), intVal = 2, strVal = 3 (util/intstr)."""
    typ, ival, sval = 0, 0, ""
    for num, wt, v in _scan(data, path):
        if num in (1, 2) and wt == _VARINT:
            assert isinstance(v, int)
            if num == 1:
                typ = _int64(v)
            else:
                ival = _int32(v, path)
        elif num == 3 and wt == _LEN:
            assert isinstance(v, bytes)
            sval = _string(v, path)
        else:
            raise ProtobufError(f"{path}: field {num} (wire type {wt}) is not a field of IntOrString")
    if typ == 0:
        return ival
    if typ == 1:
        return sval
    raise ProtobufError(f"{path}: impossible IntOrString.Type {typ}")


def _fields_v1(data: bytes, path: str) -> Any:
    """metav1.FieldsV1: ``Raw`` = 1 holds the JSON its MarshalJSON writes verbatim."""
    raw = b""
    for num, wt, v in _scan(data, path):
        if num != 1 or wt != _LEN:
            raise ProtobufError(f"{path}: field {num} (wire type {wt}) is not a field of FieldsV1")
        assert isinstance(v, bytes)
        raw = v
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as e:
        raise ProtobufError(f"{path}: FieldsV1 is not JSON: {e}") from None


def _extra_value(data: bytes, path: str) -> list[str] | None:
    """authentication/authorization ExtraValue: ``items`` = 1, a []string in JSON (nil is null)."""
    items: list[str] = []
    for num, wt, v in _scan(data, path):
        if num != 1 or wt != _LEN:
            raise ProtobufError(f"{path}: field {num} (wire type {wt}) is not a field of ExtraValue")
        assert isinstance(v, bytes)
        items.append(_string(v, path))
    return items or None


# -- messages --------------------------------------------------------------------------------


def _element(v: bytes, typ: str, path: str) -> Any:
    """A length-delimited value of ``typ`` (a repeated element, a map value or a singular field)."""
    if typ == _S:
        return _string(v, path)
    if typ == _Y:
        return base64.b64encode(v).decode()
    if typ == "Time":
        return _time(v, path)
    if typ == "MicroTime":
        return _micro_time(v, path)
    if typ == "Duration":
        return _duration(v, path)
    if typ == "Quantity":
        return _quantity(v, path)
    if typ == "IntOrString":
        return _int_or_string(v, path)
    if typ == "FieldsV1":
        return _fields_v1(v, path)
    if typ == "ExtraValue":
        return _extra_value(v, path)
    return _message(v, typ, path)


def _map_entry(data: bytes, f: _Field, path: str) -> tuple[str, Any]:
    key = ""
    value: Any = None
    seen_value = False
    for num, wt, v in _scan(data, path):
        if num == 1 and wt == _LEN:
            assert isinstance(v, bytes)
            key = _string(v, path + " (map key)")
        elif num == 2 and wt == _LEN:
            assert isinstance(v, bytes)
            value, seen_value = v, True
        else:
            raise ProtobufError(f"{path}: field {num} (wire type {wt}) is not a field of a map entry")
    raw = value if seen_value else b""
    return key, _element(raw, f.type, f"{path}[{key}]")


def _message(data: bytes, name: str, path: str) -> dict[str, Any]:
    """One message of type ``name``, as Go's encoding/json would write the struct it unmarshals into."""
    by_num, fields = _TABLE[name]
    singles: dict[int, int | bytes] = {}
    repeated: dict[int, list[Any]] = {}
    maps: dict[int, dict[str, Any]] = {}
    for num, wt, v in _scan(data, path):
        f = by_num.get(num)
        if f is None:
            raise ProtobufError(
                f"{path}: field number {num} is not a field of {name} kubesim knows; kubesim refuses"
                " unknown protobuf fields rather than drop them"
            )
        fpath = f"{path}.{f.json}"
        if wt != f.wire:
            raise ProtobufError(f"{fpath}: wrong wire type {wt} for field {num} (want {f.wire})")
        if f.card == "map":
            assert isinstance(v, bytes)
            k, val = _map_entry(v, f, fpath)
            maps.setdefault(num, {})[k] = val
        elif f.card == "rep":
            assert isinstance(v, bytes)
            repeated.setdefault(num, []).append(_element(v, f.type, f"{fpath}[{len(repeated.get(num, []))}]"))
        elif f.type in _SCALARS:
            singles[num] = v  # the last occurrence wins
        else:
            # A message seen twice is merged, which for the wire form is concatenation.
            prev = singles.get(num, b"")
            assert isinstance(prev, bytes) and isinstance(v, bytes)
            singles[num] = prev + v

    out: dict[str, Any] = {}
    for f in fields:
        fpath = f"{path}.{f.json}"
        if f.card != "one":
            coll: Any = maps.get(f.num) if f.card == "map" else repeated.get(f.num)
            if coll:
                out[f.json] = coll
            elif not f.omitempty:
                out[f.json] = None  # a nil slice or map without omitempty is null
            continue
        raw = singles.get(f.num)
        if f.pointer:
            if isinstance(raw, int) or (raw is not None and f.type in _SCALARS):
                out[f.json] = _scalar(raw, f.type, fpath)
            elif raw is not None:
                out[f.json] = _element(raw, f.type, fpath)  # a pointer to a zero Time is still null
            elif not f.omitempty:
                out[f.json] = None
            continue
        if f.type in _SCALARS:
            value = _scalar(raw, f.type, fpath) if raw is not None else _zero(f.type)
            if not (f.omitempty and value in ("", 0, False, None)):
                out[f.json] = value
            continue
        assert raw is None or isinstance(raw, bytes)
        value = _element(raw or b"", f.type, fpath)
        if f.omitzero and value is None:
            continue
        # omitempty never leaves out a struct (Time, Quantity, nested messages, ...).
        out[f.json] = value
    return out


def _scalar(v: int | bytes, typ: str, path: str) -> Any:
    if typ in (_S, _Y):
        assert isinstance(v, bytes)
        return _element(v, typ, path)
    assert isinstance(v, int)
    if typ == _I64:
        return _int64(v)
    if typ == _I32:
        return _int32(v, path)
    return v != 0  # bool, as the generated code reads it


def _zero(typ: str) -> Any:
    return {_S: "", _I64: 0, _I32: 0, _B: False, _Y: None}[typ]


# -- the envelope ----------------------------------------------------------------------------


def _split_api_version(av: str) -> tuple[str, str]:
    if av.count("/") > 1:
        raise ProtobufError(f"unexpected GroupVersion string: {av}")
    group, _, version = av.rpartition("/")
    return group, version


def decode(body: bytes, api_version: str, kind: str | None) -> dict[str, Any]:
    """The JSON dict of a protobuf request body.

    ``api_version`` and ``kind`` are the defaults the endpoint supplies for a body whose
    ``typeMeta`` leaves them out (``copyKindDefaults`` in protobuf.go). Raises ``ProtobufError``
    for a malformed body and ``UnsupportedProtobuf`` for a kind kubesim has no table for.
    """
    # protobuf.go: Serializer.Decode
    if not body:
        raise ProtobufError("empty data")
    if not body.startswith(MAGIC):
        raise ProtobufError(
            f"provided data does not appear to be a protobuf message, expected prefix {list(MAGIC)}"
        )
    if len(body) == len(MAGIC):
        raise ProtobufError("empty body")
    tm_av = tm_kind = encoding = ctype = ""
    raw = b""
    typemeta = b""
    for num, wt, v in _scan(body[len(MAGIC) :], "Unknown"):
        if wt != _LEN:
            raise ProtobufError(f"Unknown: wrong wire type {wt} for field {num}")
        assert isinstance(v, bytes)
        if num == 1:
            typemeta += v
        elif num == 2:
            raw = v
        elif num == 3:
            encoding = _string(v, "Unknown.contentEncoding")
        elif num == 4:
            ctype = _string(v, "Unknown.contentType")
        else:
            raise ProtobufError(f"Unknown: field number {num} is not a field of runtime.Unknown")
    for num, wt, v in _scan(typemeta, "Unknown.typeMeta"):
        if num not in (1, 2) or wt != _LEN:
            raise ProtobufError(f"Unknown.typeMeta: field {num} (wire type {wt}) is not a field of TypeMeta")
        assert isinstance(v, bytes)
        if num == 1:
            tm_av = _string(v, "TypeMeta.apiVersion")
        else:
            tm_kind = _string(v, "TypeMeta.kind")

    group, version = _split_api_version(tm_av)
    actual_kind = tm_kind or (kind or "")
    if not version:
        group, version = _split_api_version(api_version)
    if not actual_kind:
        raise ProtobufError(f"Object 'Kind' is missing in '{tm_av or '<protobuf encoded body>'}'")
    if not version:
        raise ProtobufError(f"Object 'apiVersion' is missing in '{actual_kind}'", actual_kind)
    av = f"{group}/{version}" if group else version
    # The serializer ignores these two; kubesim refuses what it could only misread.
    if encoding:
        raise ProtobufError(f"unsupported protobuf contentEncoding {encoding!r}", actual_kind, version)
    if ctype and ctype != CONTENT_TYPE:
        raise ProtobufError(f"unsupported protobuf contentType {ctype!r}", actual_kind, version)

    message = "DeleteOptions" if actual_kind == "DeleteOptions" else _KINDS.get((av, actual_kind))
    if message is None:
        raise UnsupportedProtobuf(
            f"kubesim decodes {CONTENT_TYPE} request bodies only for {', '.join(SUPPORTED_KINDS)}; "
            f"it cannot decode {actual_kind} ({av}): send it as application/json or application/yaml "
            "instead (for example with kubectl apply -f)"
        )
    try:
        fields = _message(raw, message, actual_kind)
    except ProtobufError as e:
        raise ProtobufError(e.detail, actual_kind, version) from None
    return {"kind": actual_kind, "apiVersion": av, **fields}


__all__ = [
    "CONTENT_TYPE",
    "MAGIC",
    "SUPPORTED_KINDS",
    "ProtobufError",
    "UnsupportedProtobuf",
    "decode",
    "go_duration",
]
