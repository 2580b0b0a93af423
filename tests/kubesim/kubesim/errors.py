"""Kubernetes ``Status`` errors, as ``k8s.io/apimachinery/pkg/api/errors`` builds them.

Every failure kubesim returns is a ``Status`` body with the ``reason``, ``code``, ``details`` and
``message`` that apimachinery's constructors (``NewNotFound``, ``NewAlreadyExists``,
``NewConflict``, ``NewInvalid``, ``NewForbidden``, ``NewBadRequest``, ...) produce, because
clients (Kopf, client-go, the Python client) branch on ``reason`` and ``code``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cause:
    """One ``StatusCause``; ``type`` is a ``field.ErrorType`` string such as ``FieldValueRequired``."""

    type: str
    message: str
    field: str = ""

    def to_dict(self) -> dict[str, Any]:
        # A StatusCause carries the field separately; its message has no "field: " prefix
        # (apimachinery/pkg/api/errors.NewInvalid uses err.ErrorBody()).
        msg = self.message
        if self.field and msg.startswith(self.field + ": "):
            msg = msg[len(self.field) + 2 :]
        d: dict[str, Any] = {"reason": self.type, "message": msg}
        if self.field:
            d["field"] = self.field
        return d


# field.ErrorType values and their human strings (k8s.io/apimachinery/pkg/util/validation/field/errors.go).
FIELD_ERROR_STRINGS = {
    "FieldValueNotFound": "Not found",
    "FieldValueRequired": "Required value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "InternalError": "Internal error",
    "FieldValueTypeInvalid": "Invalid value",
}


def field_error(
    type_: str, path: str, detail: str = "", value: Any = None, *, show_value: bool = False
) -> Cause:
    """A field error worded as ``field.Error.Error()`` words it: ``path: Invalid value: "v": detail``."""
    import json

    parts = [FIELD_ERROR_STRINGS.get(type_, type_)]
    if show_value:
        if isinstance(value, str):
            parts.append(json.dumps(value))
        elif isinstance(value, (dict, list)):
            parts.append('"object"' if isinstance(value, dict) else '"array"')
        else:
            parts.append(json.dumps(value))
    msg = ": ".join(parts)
    if detail:
        msg = f"{msg}: {detail}"
    full = f"{path}: {msg}" if path else msg
    return Cause(type=type_, message=full, field=path)


@dataclass
class StatusError(Exception):
    """An error the API server returns as a ``Status`` body with HTTP code ``code``."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def to_status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if not self.reason:
            del body["reason"]  # StatusReasonUnknown is "" and omitted
        if self.details is not None:
            body["details"] = self.details
        return body


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> StatusError:
    return StatusError(
        404,
        "NotFound",
        f'{_qualified(resource, group)} "{name}" not found',
        {"name": name, "group": group, "kind": resource},
    )


def already_exists(resource: str, group: str, name: str) -> StatusError:
    return StatusError(
        409,
        "AlreadyExists",
        f'{_qualified(resource, group)} "{name}" already exists',
        {"name": name, "group": group, "kind": resource},
    )


def conflict(resource: str, group: str, name: str, detail: str) -> StatusError:
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {detail}',
        {"name": name, "group": group, "kind": resource},
    )


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> StatusError:
    """``errors.NewInvalid``: 422 with one cause per field error, the message joining them."""
    msgs = list(dict.fromkeys(c.message for c in causes))  # utilerrors.NewAggregate drops duplicates
    if len(msgs) == 1:
        agg = msgs[0]
    else:
        agg = "[" + ", ".join(msgs) + "]"
    qualified = f"{kind}.{group}" if group else kind
    return StatusError(
        422,
        "Invalid",
        f'{qualified} "{name}" is invalid: {agg}',
        {"name": name, "group": group, "kind": kind, "causes": [c.to_dict() for c in causes]},
    )


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def forbidden(resource: str, group: str, name: str, message: str) -> StatusError:
    q = _qualified(resource, group)
    prefix = f'{q} "{name}" is forbidden' if name else f"{q} is forbidden"
    return StatusError(
        403, "Forbidden", f"{prefix}: {message}", {"name": name, "group": group, "kind": resource}
    )


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def method_not_allowed(message: str) -> StatusError:
    return StatusError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> StatusError:
    return StatusError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: {content_type}",
    )


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def internal(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")
