"""The audit log: one JSON line per request, an ``audit.k8s.io/v1`` ``Event`` at level ``Metadata``.

The event follows ``staging/src/k8s.io/apiserver/pkg/apis/audit/v1/types.go`` (``Event``,
``ObjectReference``) and is filled in as the apiserver fills it at level Metadata:
``pkg/audit/request.go`` (``LogRequestMetadata``: verb, requestURI, userAgent, sourceIPs, user,
objectRef of a resource request only; ``LogImpersonatedUser``; ``LogResponseObject``, which at
Metadata level keeps only the status, message, reason, details and code of a ``Status`` response)
and ``pkg/endpoints/filters/audit.go`` (``WithAudit``: the response code, the stage
``ResponseStarted`` for long-running requests and ``ResponseComplete`` at the end). The
authorization filter (``filters/authorization.go``) adds the annotations
``authorization.k8s.io/decision`` (``allow`` / ``forbid``) and ``authorization.k8s.io/reason``.

kubesim writes ``ResponseStarted`` for watches only (when the watch's headers go out), then
``ResponseComplete`` for every request, both with the same ``auditID``. Lines are appended to the
file under one lock and flushed as they are written, so a reader sees every finished request.

The reader helpers (:func:`read`, :func:`select`, :func:`count`, :func:`verbs`,
:func:`cluster_wide_lists`) are for tests and benchmarks that count an operator's requests.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from . import auth

DECISION_ANNOTATION = "authorization.k8s.io/decision"
REASON_ANNOTATION = "authorization.k8s.io/reason"

JSON = dict[str, Any]


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def micro_time(ns: int) -> str:
    """``metav1.MicroTime`` as JSON: RFC 3339 in UTC with six fractional digits (truncated, as Go's
    time.Format truncates), from a ``time.time_ns()`` reading."""
    sec, frac = divmod(ns // 1000, 1_000_000)
    if _second[0] != sec:  # strftime is the slow part: once per second
        _second[1] = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second[0] = sec
    return f"{_second[1]}.{frac:06d}Z"


def user_info(user: auth.UserInfo) -> JSON:
    """``authenticationv1.UserInfo`` (every field omitempty)."""
    out: JSON = {"username": user.name}
    if user.uid:
        out["uid"] = user.uid
    if user.groups:
        out["groups"] = list(user.groups)
    if user.extra:
        out["extra"] = {k: list(v) for k, v in user.extra}
    return out


def source_ips(forwarded_for: str | None, real_ip: str | None, remote: str | None) -> list[str]:
    """``utilnet.SourceIPs``: the X-Forwarded-For chain, then X-Real-Ip, then the peer address,
    each once."""
    ips: list[str] = []
    for part in (forwarded_for or "").split(","):
        part = part.strip()
        if part and part not in ips:
            ips.append(part)
    for extra in ((real_ip or "").strip(), remote or ""):
        if extra and extra not in ips:
            ips.append(extra)
    return ips


@dataclass
class RequestAudit:
    """What kubesim learns about one request while serving it, then writes as its event(s)."""

    audit_id: str
    received: int  # time.time_ns()
    request_uri: str
    method: str
    path: str
    query: Mapping[str, str]
    user_agent: str
    source_ips: list[str]
    # The request info, set by the server once it has parsed it (else parsed here when written).
    attrs: auth.Attributes | None = None
    user: auth.UserInfo | None = None
    impersonated: auth.UserInfo | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    response_status: JSON | None = None

    def authorized(self, allowed: bool, reason: str) -> None:
        self.annotations[DECISION_ANNOTATION] = "allow" if allowed else "forbid"
        self.annotations[REASON_ANNOTATION] = reason

    def request_info(self) -> tuple[str, JSON | None]:
        """The verb and objectRef (``LogRequestMetadata``)."""
        attrs = self.attrs
        if attrs is None:
            try:
                attrs = self.attrs = auth.request_attributes(
                    self.method, self.path, self.query, auth.ANONYMOUS
                )
            except auth.RequestInfoError:
                return self.method.lower(), None
        return attrs.verb, object_ref(attrs)

    def event(self, stage: str, code: int) -> JSON:
        verb, ref = self.request_info()
        status: JSON = {"metadata": {}}
        if self.response_status is not None:
            # LogResponseObject at Metadata level: the bounded fields of a Status response
            for k in ("status", "message", "reason"):
                v = self.response_status.get(k)
                if v:
                    status[k] = v
            details = self.response_status.get("details")
            if isinstance(details, dict):
                # StatusDetails as JSON: every field is omitempty
                details = {k: v for k, v in details.items() if v not in ("", None, 0, [])}
                if details:
                    status["details"] = details
        status["code"] = code
        ev: JSON = {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": self.audit_id,
            "stage": stage,
            "requestURI": self.request_uri,
            "verb": verb,
            "user": user_info(self.user) if self.user is not None else {},
        }
        if self.impersonated is not None:
            ev["impersonatedUser"] = user_info(self.impersonated)
        ev["sourceIPs"] = self.source_ips
        if self.user_agent:
            ev["userAgent"] = self.user_agent
        if ref is not None:
            ev["objectRef"] = ref
        ev["responseStatus"] = status
        ev["requestReceivedTimestamp"] = micro_time(self.received)
        ev["stageTimestamp"] = micro_time(time.time_ns())
        if self.annotations:
            ev["annotations"] = dict(self.annotations)
        return ev


def object_ref(attrs: auth.Attributes) -> JSON | None:
    """``ObjectReference`` of a resource request, from its request info (omitempty fields)."""
    if not attrs.resource_request:
        return None
    ref: JSON = {"resource": attrs.resource}
    if attrs.namespace:
        ref["namespace"] = attrs.namespace
    if attrs.name:
        ref["name"] = attrs.name
    if attrs.api_group:
        ref["apiGroup"] = attrs.api_group
    if attrs.api_version:
        ref["apiVersion"] = attrs.api_version
    if attrs.subresource:
        ref["subresource"] = attrs.subresource
    return ref


def new_request(
    method: str,
    path: str,
    request_uri: str,
    query: Mapping[str, str],
    user_agent: str,
    ips: list[str],
) -> RequestAudit:
    return RequestAudit(
        audit_id=str(uuid.uuid4()),
        received=time.time_ns(),
        request_uri=request_uri,
        method=method,
        path=path,
        query=query,
        user_agent=user_agent[:1024] + ("...TRUNCATED" if len(user_agent) > 1024 else ""),
        source_ips=ips,
    )


# The aiohttp request storage key holding a request's RequestAudit.
REQUEST_KEY: web.RequestKey[RequestAudit] = web.RequestKey("kubesim.audit", RequestAudit)


class AuditLog:
    """An append-only JSON-lines file: one buffered writer, one lock, a flush per line."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8", buffering=1 << 16)

    def write(self, event: JSON) -> None:
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self._lock:
            if self._file is None:
                return
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read(path: Path | str) -> list[JSON]:
    """Every complete event of the file, in order (a line still being written is left out)."""
    out: list[JSON] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def _events(source: Path | str | Iterable[JSON]) -> Iterable[JSON]:
    return read(source) if isinstance(source, str | Path) else source


def effective_user(ev: JSON) -> str:
    """The user the request acted as: the impersonated user if any, else the authenticated one."""
    return str((ev.get("impersonatedUser") or ev.get("user") or {}).get("username", ""))


def select(
    source: Path | str | Iterable[JSON],
    *,
    user: str | None = None,
    verb: str | Collection[str] | None = None,
    resource: str | None = None,
    api_group: str | None = None,
    namespace: str | None = None,
    cluster_wide: bool | None = None,
    cluster_scoped_list: bool = False,
    code: int | None = None,
    stage: str | None = "ResponseComplete",
) -> list[JSON]:
    """The events that match every given criterion.

    ``user`` is the effective username (:func:`effective_user`); ``verb`` one verb or several;
    ``resource`` / ``api_group`` / ``namespace`` match ``objectRef``; ``cluster_wide=True`` keeps
    resource requests without a namespace in ``objectRef`` (``False``: with one);
    ``cluster_scoped_list=True`` is ``verb="list", cluster_wide=True`` (a LIST across all
    namespaces, or of a cluster-scoped resource). ``stage`` defaults to ``ResponseComplete`` so
    that each request counts once; pass None for every stage.
    """
    if cluster_scoped_list:
        verb, cluster_wide = "list", True
    verbs = {verb} if isinstance(verb, str) else set(verb) if verb is not None else None
    out: list[JSON] = []
    for ev in _events(source):
        if stage is not None and ev.get("stage") != stage:
            continue
        if verbs is not None and ev.get("verb") not in verbs:
            continue
        if user is not None and effective_user(ev) != user:
            continue
        if code is not None and ev.get("responseStatus", {}).get("code") != code:
            continue
        ref = ev.get("objectRef")
        if resource is not None or api_group is not None or namespace is not None or cluster_wide is not None:
            if ref is None:
                continue
            if resource is not None and ref.get("resource") != resource:
                continue
            if api_group is not None and ref.get("apiGroup", "") != api_group:
                continue
            if namespace is not None and ref.get("namespace", "") != namespace:
                continue
            if cluster_wide is not None and cluster_wide == bool(ref.get("namespace")):
                continue
        out.append(ev)
    return out


def count(source: Path | str | Iterable[JSON], **criteria: Any) -> int:
    """How many events :func:`select` keeps for the same criteria."""
    return len(select(source, **criteria))


def verbs(source: Path | str | Iterable[JSON], **criteria: Any) -> dict[str, int]:
    """Requests per verb (of the events :func:`select` keeps), e.g. ``{"get": 3, "list": 1}``."""
    return dict(Counter(str(ev.get("verb")) for ev in select(source, **criteria)))


def cluster_wide_lists(source: Path | str | Iterable[JSON], **criteria: Any) -> list[JSON]:
    """The LISTs without a namespace in ``objectRef``."""
    return select(source, cluster_scoped_list=True, **criteria)


__all__ = [
    "AuditLog",
    "RequestAudit",
    "cluster_wide_lists",
    "count",
    "effective_user",
    "micro_time",
    "read",
    "select",
    "verbs",
]
