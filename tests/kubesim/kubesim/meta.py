"""Object-metadata helpers and validation (``staging/src/k8s.io/apimachinery/pkg/api/validation/objectmeta.go``)."""

from __future__ import annotations

import datetime as _dt
import re
import secrets
import uuid
from typing import Any

from .errors import Cause, field_error

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# util/rand: the alphabet generateName suffixes use (no vowels, no confusable characters).
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def time_plus(seconds: float) -> str:
    """Now plus ``seconds``, as Go computes ``now.Add(time.Second * time.Duration(seconds))``
    (``rest.BeforeDelete``): the nanosecond ``time.Duration`` is an int64 that wraps around, so
    a huge grace period gives a timestamp within about 292 years, never an error."""
    if isinstance(seconds, int):
        from .gonum import wrap_int64

        delta = _dt.timedelta(microseconds=wrap_int64(seconds * 10**9) // 1000)
    else:
        delta = _dt.timedelta(seconds=seconds)
    t = _dt.datetime.now(_dt.UTC) + delta
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid() -> str:
    return str(uuid.uuid4())


def generate_name(prefix: str) -> str:
    # names.SimpleNameGenerator: base (truncated to leave room) + 5 random characters.
    max_prefix = 63 - 5
    if len(prefix) > max_prefix:
        prefix = prefix[:max_prefix]
    return prefix + "".join(secrets.choice(_ALPHANUMS) for _ in range(5))


def is_dns1123_label(v: str) -> list[str]:
    errs = []
    if len(v) > 63:
        errs.append("must be no more than 63 characters")
    if not DNS1123_LABEL.match(v):
        errs.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end "
            "with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        )
    return errs


def is_dns1123_subdomain(v: str) -> list[str]:
    errs = []
    if len(v) > 253:
        errs.append("must be no more than 253 characters")
    if not DNS1123_SUBDOMAIN.match(v):
        errs.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
            "and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    return errs


def is_qualified_name(v: str) -> list[str]:
    """``validation.IsQualifiedName``: optional DNS-subdomain prefix and a name of at most 63 characters."""
    parts = v.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        errs = is_dns1123_subdomain(prefix)
        if errs:
            return ["prefix part " + e for e in errs]
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        return ["name part must be non-empty"]
    if len(name) > 63:
        return ["name part must be no more than 63 characters"]
    if not QUALIFIED_NAME.match(name):
        return [
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        ]
    return []


def validate_object_meta(
    meta: dict[str, Any], namespaced: bool, name_check: str = "subdomain"
) -> list[Cause]:
    causes: list[Cause] = []
    name = meta.get("name", "")
    if not name:
        causes.append(field_error("FieldValueRequired", "metadata.name", "name or generateName is required"))
    else:
        errs = (
            is_dns1123_label(name)
            if name_check == "label"
            else is_dns1123_subdomain(name)
            if name_check == "subdomain"
            else []
        )
        if name_check == "path" and (name in (".", "..") or "/" in name or "%" in name):
            errs = ["may not contain '/' or '%' and may not be '.' or '..'"]
        for e in errs:
            causes.append(field_error("FieldValueInvalid", "metadata.name", e, name, show_value=True))
    if namespaced and not meta.get("namespace"):
        causes.append(field_error("FieldValueRequired", "metadata.namespace", ""))
    if not namespaced and meta.get("namespace"):
        causes.append(field_error("FieldValueForbidden", "metadata.namespace", "not allowed on this type"))
    for k, v in (meta.get("labels") or {}).items():
        for e in is_qualified_name(k):
            causes.append(field_error("FieldValueInvalid", "metadata.labels", e, k, show_value=True))
        if not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v):
            causes.append(
                field_error(
                    "FieldValueInvalid",
                    "metadata.labels",
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                    v,
                    show_value=True,
                )
            )
    total = 0
    for k, v in (meta.get("annotations") or {}).items():
        for e in is_qualified_name(k.lower()):
            causes.append(field_error("FieldValueInvalid", "metadata.annotations", e, k, show_value=True))
        total += len(k) + len(v if isinstance(v, str) else "")
    if total > 256 * 1024:
        causes.append(
            field_error("FieldValueTooLong", "metadata.annotations", "must have at most 262144 bytes")
        )
    controllers = 0
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        p = f"metadata.ownerReferences[{i}]"
        for f in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(f):
                causes.append(
                    field_error(
                        "FieldValueInvalid",
                        f"{p}.{f}",
                        f"{f} must not be empty",
                        ref.get(f, ""),
                        show_value=True,
                    )
                )
        if ref.get("controller"):
            controllers += 1
    if controllers > 1:
        causes.append(
            field_error(
                "FieldValueInvalid",
                "metadata.ownerReferences",
                "Only one reference can have Controller set to true",
                None,
                show_value=False,
            )
        )
    for i, f in enumerate(meta.get("finalizers") or []):
        for e in is_qualified_name(f):
            causes.append(
                field_error("FieldValueInvalid", f"metadata.finalizers[{i}]", e, f, show_value=True)
            )
    return causes
