"""The one adapter layer between the operator and the Kubernetes API.

Everything the operator does to the cluster goes through ``Kube``: plain dicts in and out, one
REST helper over the official client's connection pool (authentication, TLS, proxies and
kubeconfig handling stay the client's), explicit patch content types, and errors as
``KubeError`` carrying the API's ``Status`` (code, reason, message, causes) and an
``ErrorKind`` that says what the refusal means (RBAC, quota, admission, a terminating
namespace, a missing API, a conflict, a transient failure, ...), so that it can become a named
reason in the resync's status.

Three properties the rest of the operator relies on:

- **Idempotence.** Creating what exists, deleting what is gone and a uid precondition that no
  longer holds are not errors.
- **Retries.** Transient failures (5xx, 429, connection errors, timeouts) are retried here, with
  exponential backoff and jitter, honouring ``Retry-After``, within a time budget per call; then
  they surface as ``KubeError(kind=TRANSIENT)``. Nothing else is retried: a conflict, a refusal
  or an invalid request is the caller's to handle.
- **The primary guard.** ``Kube.guarded(Protected(...))`` returns a view of the same client that
  refuses, before anything is sent, every write to the primary's pod, claims and volumes (and a
  few indirect ways of reaching them). It is the second line of defence behind the planner.
"""

from __future__ import annotations

import copy
import datetime as dt
import email.utils
import json
import random
import re
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote, unquote

import structlog
import urllib3
from kubernetes import client, config
from kubernetes.stream import stream

from . import metrics
from .state import JSON_PATCH, HookOutcome, Obj, Ref

log = structlog.get_logger("clusterresync.kube")

CLIENT_TIMEOUT = 30.0  # seconds, one HTTP request (connect + response)
DEFAULT_INITIAL_BACKOFF = 0.2  # seconds before the first retry, doubling after each
DEFAULT_MAX_BACKOFF = 5.0  # cap of one backoff step (a server's Retry-After is honoured above it)
DEFAULT_RETRY_BUDGET = 20.0  # seconds a call may spend retrying before it gives up


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


class ErrorKind(StrEnum):
    """What a failed request means, from the HTTP code, the Status reason, details and message."""

    NOT_FOUND = "NotFound"  # the object does not exist
    ALREADY_EXISTS = "AlreadyExists"
    CONFLICT = "Conflict"  # 409: a resourceVersion/uid precondition failed, the object was modified
    FORBIDDEN = "Forbidden"  # 403 from the authorizer (RBAC): a missing permission
    QUOTA = "Quota"  # 403 from the ResourceQuota admission plugin
    ADMISSION = "Admission"  # any other 403: PodSecurity, webhooks, other admission plugins
    NAMESPACE_TERMINATING = "NamespaceTerminating"  # 403: creating in a namespace being deleted
    MISSING_API = "MissingAPI"  # 404 for a resource type (or API group) the server does not serve
    INVALID = "Invalid"  # 422 or 400: the request itself is wrong
    TRANSIENT = "Transient"  # 5xx, 429, connection errors, timeouts (after the adapter's retries)
    OTHER = "Other"  # anything else (401, 405, 410, 415, ...)


# The 403 messages, after the "... is forbidden: " prefix apierrors.NewForbidden adds:
# - the authorizer (k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go:
#   forbiddenMessage): `User "u" cannot VERB resource "R" in API group "G" ...` or
#   `User "u" cannot VERB path "/p"`, possibly followed by ": <authorizer reason>";
_RBAC = re.compile(r'^User "(?:[^"\\]|\\.)*" cannot \S+ (?:resource|path) ')
# - the ResourceQuota admission plugin (k8s.io/apiserver/pkg/admission/plugin/resourcequota/
#   controller.go: checkRequest): exceeded, failed, unknown status, uncovered, negative;
_QUOTA = re.compile(
    r"^(?:exceeded quota: |failed quota: |status unknown for quota: |insufficient quota to |"
    r"quota usage is negative)"
)
# - NamespaceLifecycle (k8s.io/apiserver/pkg/admission/plugin/namespace/lifecycle/admission.go),
#   which also adds a StatusCause of type NamespaceTerminating (v1.NamespaceTerminatingCause).
_NS_TERMINATING = re.compile(r"^unable to create new content in namespace \S+ because it is being terminated")
NAMESPACE_TERMINATING_CAUSE = "NamespaceTerminating"
_FORBIDDEN_PREFIX = re.compile(r"(?:^| is )forbidden: ")
# A 404 for a path nothing serves: the apiserver's NotFound handler answers a Status with this
# message and empty details (no name, no kind); a proxy in between may answer plain text.
MISSING_API_MESSAGE = "the server could not find the requested resource"


def _forbidden_detail(message: str) -> str:
    """What follows ``<resource> "<name>" is forbidden: `` (or ``forbidden: ``) in a 403 message."""
    m = _FORBIDDEN_PREFIX.search(message)
    return message[m.end() :] if m else message


def classify(
    code: int, reason: str = "", message: str = "", details: Mapping[str, Any] | None = None
) -> ErrorKind:
    """The kind of a failed request, from its HTTP code and its ``Status`` (reason, details, message).

    ``code`` 0 stands for no HTTP response at all (a connection error or a timeout).
    """
    details = details or {}
    if code == 0 or code == 429 or code >= 500:
        return ErrorKind.TRANSIENT
    if code == 404:
        # An object's NotFound (apierrors.NewNotFound) names it in details (name, kind); the
        # NotFound of a path nobody serves has empty details and the generic message.
        named = bool(details.get("name")) or (
            bool(details.get("kind")) and MISSING_API_MESSAGE not in message
        )
        return ErrorKind.NOT_FOUND if named else ErrorKind.MISSING_API
    if code == 409:
        return ErrorKind.ALREADY_EXISTS if reason == "AlreadyExists" else ErrorKind.CONFLICT
    if code == 403:
        causes = details.get("causes") or []
        # A StatusCause's type is serialized as "reason" (metav1.StatusCause: `json:"reason"`).
        if any(
            isinstance(c, Mapping) and NAMESPACE_TERMINATING_CAUSE in (c.get("reason"), c.get("type"))
            for c in causes
        ):
            return ErrorKind.NAMESPACE_TERMINATING
        detail = _forbidden_detail(message)
        if _NS_TERMINATING.match(detail):
            return ErrorKind.NAMESPACE_TERMINATING
        if _QUOTA.match(detail):
            return ErrorKind.QUOTA
        if _RBAC.match(detail):
            return ErrorKind.FORBIDDEN
        return ErrorKind.ADMISSION
    if code in (400, 422):
        return ErrorKind.INVALID
    return ErrorKind.OTHER


class KubeError(Exception):
    """A request the API refused (or that never got an answer: ``code`` 0).

    ``verb`` is the Kubernetes verb (get, list, watch, create, update, patch, delete,
    deletecollection), ``what`` names the object or collection, ``kind`` classifies the failure,
    ``retry_after`` is the delay the server asked for (seconds), ``causes`` the Status causes
    (each ``{"reason"|"type", "message", "field"}``), ``attempts`` how many requests were made.
    """

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        verb: str = "",
        what: str = "",
        *,
        kind: ErrorKind | None = None,
        retry_after: float | None = None,
        causes: list[dict[str, Any]] | None = None,
        details: Mapping[str, Any] | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(f"{verb} {what}: {code} {reason}: {message}".strip())
        self.code = code
        self.reason = reason
        self.message = message
        self.verb = verb
        self.what = what
        self.causes: list[dict[str, Any]] = list(
            causes if causes is not None else ((details or {}).get("causes") or [])
        )
        self.kind: ErrorKind = kind if kind is not None else classify(code, reason, message, details)
        self.retry_after = retry_after
        self.attempts = attempts


# ------------------------------------------------------------------------------------------------
# The primary guard
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Protected:
    """The primary's objects, by name: nothing may write to them through a guarded ``Kube``."""

    namespace: str
    pods: frozenset[str]
    claims: frozenset[str]
    pvs: frozenset[str]


class ProtectedObjectError(Exception):
    """A write the primary guard refused; nothing was sent to the API."""

    def __init__(self, ref: Ref, verb: str, detail: str) -> None:
        super().__init__(f"refused to {verb} {ref}: {detail}")
        self.ref = ref
        self.verb = verb
        self.detail = detail


# ------------------------------------------------------------------------------------------------
# Paths and verbs
# ------------------------------------------------------------------------------------------------


def load_api_client(pool_size: int | None = None) -> client.ApiClient:
    """In-cluster configuration when running in a pod, else KUBECONFIG / ~/.kube/config.

    ``pool_size``: connections kept per host (the client's default is 5 per CPU); the watch
    caches hold one open connection per watch, so they get a client of their own, sized for them.
    """
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    if pool_size is None:
        return client.ApiClient()
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = pool_size
    return client.ApiClient(cfg)


def path_for(api_version: str, plural: str, namespace: str = "", name: str = "", sub: str = "") -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    parts = [base]
    if namespace:
        parts.append(f"namespaces/{quote(namespace)}")
    parts.append(plural)
    if name:
        parts.append(quote(name))
    if sub:
        parts.append(sub)
    return "/".join(parts)


@dataclass(frozen=True)
class ResourcePath:
    """A resource request path taken apart (``k8s.io/apiserver/pkg/endpoints/request/requestinfo.go``)."""

    api_version: str
    plural: str
    namespace: str = ""
    name: str = ""
    sub: str = ""


_NAMESPACE_SUBRESOURCES = {"status", "finalize"}


def parse_path(path: str) -> ResourcePath | None:
    """The resource a request path addresses, or None for discovery and other non-resource paths."""
    parts = [unquote(p) for p in path.split("?", 1)[0].strip("/").split("/")]
    if parts[:2] == ["api", "v1"]:
        api_version, rest = "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        api_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        return None
    rest = [p for p in rest if p]
    if not rest:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
        else:  # the namespace itself (or its status/finalize): cluster-scoped
            return ResourcePath(api_version, "namespaces", "", rest[1], "/".join(rest[2:]))
    return ResourcePath(api_version, rest[0], namespace, rest[1] if len(rest) > 1 else "", "/".join(rest[2:]))


def kube_verb(method: str, path: str, query: list[tuple[str, str]] | None = None) -> str:
    """The Kubernetes verb of a request, as the apiserver's RequestInfo derives it."""
    method = method.upper()
    target = parse_path(path)
    named = bool(target and target.name)
    if method in ("GET", "HEAD"):
        if any(k == "watch" and v.lower() in ("1", "true") for k, v in query or []):
            return "watch"
        return "get" if named or target is None else "list"
    if method == "DELETE":
        return "delete" if named or target is None else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def _what(target: ResourcePath | None, path: str) -> str:
    if target is None:
        return path
    if target.name:
        where = f"{target.namespace}/" if target.namespace else ""
        sub = f" {target.sub}" if target.sub else ""
        return f"{target.plural} {where}{target.name}{sub}"
    return f"{target.plural} in {target.namespace or 'the cluster'}"


def _retry_after(header: str | None, details: Mapping[str, Any]) -> float | None:
    """Seconds the server asked to wait: the Retry-After header (seconds or an HTTP date), else
    ``details.retryAfterSeconds`` (apierrors.NewTooManyRequests, NewServerTimeout; 0 means unset)."""
    if header:
        header = header.strip()
        try:
            return max(0.0, float(header))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=dt.UTC)
                return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
    seconds = details.get("retryAfterSeconds")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        return float(seconds)
    return None


# Failures below HTTP that are worth another attempt: the connection was refused, reset or
# dropped, the response did not come in time, a proxy in between failed. A TLS failure is one
# too (an apiserver restarting closes handshakes), unless the certificate did not verify.
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    urllib3.exceptions.TimeoutError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.ProxyError,
    urllib3.exceptions.SSLError,
    urllib3.exceptions.DecodeError,
    ConnectionError,
    TimeoutError,
)


def _certificate_failure(e: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(cur):
            return True
        inner = cur.args[0] if cur.args and isinstance(cur.args[0], BaseException) else None
        cur = inner or cur.__cause__ or cur.__context__
    return False


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.retries = 0


@dataclass(frozen=True)
class Written:
    """A write the API accepted: the object's path and the resourceVersion it answered with
    (empty if the answer was not an object, e.g. the Status of a deletion that removed it).
    A watch cache has caught up with the write once it has seen that version (``cache.py``)."""

    api_version: str
    plural: str
    namespace: str
    name: str
    resource_version: str
    deleted: bool = False


# ------------------------------------------------------------------------------------------------
# The adapter
# ------------------------------------------------------------------------------------------------


class Kube:
    """The operator's access to the Kubernetes API.

    ``initial_backoff`` doubles after each retry up to ``max_backoff`` (each step jittered to
    between half and all of it); a call gives up when the next wait would end past
    ``retry_budget`` seconds after it started; ``request_timeout`` bounds one HTTP request.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        initial_backoff: float = DEFAULT_INITIAL_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        retry_budget: float = DEFAULT_RETRY_BUDGET,
        request_timeout: float = CLIENT_TIMEOUT,
    ) -> None:
        if initial_backoff < 0 or max_backoff < 0 or retry_budget < 0 or request_timeout <= 0:
            raise ValueError("backoffs and the retry budget must be >= 0, the request timeout > 0")
        self.api_client = api_client
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.retry_budget = retry_budget
        self.request_timeout = request_timeout
        self._stats = _Stats()
        self._random = random.Random()
        self._protected: tuple[Protected, ...] = ()
        self._writes: list[Written] | None = None

    @property
    def retries(self) -> int:
        """Requests repeated after a transient failure, over this ``Kube`` and its guarded views."""
        return self._stats.retries

    @property
    def protected(self) -> tuple[Protected, ...]:
        return self._protected

    def guarded(self, protected: Protected) -> Kube:
        """A view sharing this client (and retry counter) that refuses every write to ``protected``.

        Refused before any request is sent, with ``ProtectedObjectError`` (and an error log):
        any write (create, update, patch, status, delete, eviction, ...) to a pod in
        ``protected.pods`` or a claim in ``protected.claims`` of ``protected.namespace``, or to a
        PersistentVolume in ``protected.pvs``; a deletecollection of pods or claims in that
        namespace or of PersistentVolumes; a delete of the namespace; a create or update of a
        PersistentVolume, or a patch of *any* PersistentVolume, that would set its claimRef to
        one of the primary's claims; a create of a claim whose ``spec.volumeName`` is one of the
        primary's volumes. Names, not uids: an object recreated under a primary's name stays
        protected. Reads, and exec (hooks run in the primary by design), are allowed. Guarding a
        guarded view adds to its protection.
        """
        view = copy.copy(self)
        view._protected = (*self._protected, protected)
        return view

    def recording(self, writes: list[Written]) -> Kube:
        """A view sharing this client (and its guard) that appends every write the API accepts
        to ``writes``: the caller can then wait until its watch caches have seen them."""
        view = copy.copy(self)
        view._writes = writes
        return view

    def _record(self, method: str, target: ResourcePath | None, answer: Any) -> None:
        if self._writes is None or target is None or method.upper() in ("GET", "HEAD"):
            return
        m = answer.get("metadata") if isinstance(answer, dict) else None
        is_object = isinstance(m, dict) and answer.get("kind") != "Status"
        name = str((m or {}).get("name") or target.name) if is_object else target.name
        if not name or target.sub not in ("", "status"):
            return  # a collection, or a subresource whose answer is not the object (exec, ...)
        self._writes.append(
            Written(
                target.api_version,
                target.plural,
                target.namespace,
                name,
                str((m or {}).get("resourceVersion") or "") if is_object else "",
                deleted=method.upper() == "DELETE",
            )
        )

    # -- transport ---------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        what: str = "",
        verb: str = "",
        ref: Ref | None = None,
    ) -> Any:
        """One API call, retried on transient failures; the decoded JSON answer, or raises KubeError.

        Retrying is safe because every write the adapter makes is idempotent, even when an
        attempt that seemed to fail actually took effect:

        - get, list, watch: reads.
        - create: a second attempt of a create that went through answers AlreadyExists, which
          ``create`` treats as done. (A ``generateName`` create, used for Events only, may post
          the Event twice: harmless.)
        - patch, update, patch_status: they set absolute values, so applying one twice is
          applying it once. With a resourceVersion precondition (or a JSON patch ``test``), a
          repeat of an attempt that went through fails its precondition (Conflict/Invalid): the
          caller re-reads and finds its change made; preconditions are never retried here.
        - delete, deletecollection: a repeat answers NotFound (``delete`` returns False), or the
          object again if finalizers hold it (already being deleted). With a uid precondition a
          repeat never deletes another object reusing the name meanwhile (False); without one it
          could, as a first attempt could: the operator puts uids on every deletion where that
          matters (a replica's claims and pod).
        """
        target = parse_path(path)
        verb = verb or kube_verb(method, path, query)
        what = what or (str(ref) if ref is not None else _what(target, path))
        if self._protected and method.upper() not in ("GET", "HEAD"):
            self._check_guard(verb, target, ref, body, content_type)
        started = time.monotonic()
        deadline = started + self.retry_budget
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = self._send(method, path, query, body, content_type, verb, what)
                self._record(method, target, answer)
                return answer
            except KubeError as e:
                e.attempts = attempt
                metrics.record_api_error(str(e.kind), verb)
                if e.kind is not ErrorKind.TRANSIENT:
                    raise
                if e.retry_after is not None:
                    # The server said when: wait at least that long (plus a little jitter so that
                    # clients told the same thing do not come back in step).
                    delay = e.retry_after * (1.0 + 0.1 * self._random.random())
                else:
                    step = min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))
                    delay = step / 2 + self._random.random() * step / 2
                failure = log.bind(verb=verb, object=what, code=e.code, reason=e.reason, error=e.message)
                if time.monotonic() + delay > deadline:
                    failure.warning(
                        "giving up on a transient failure",
                        attempts=attempt,
                        seconds=round(time.monotonic() - started, 3),
                        retry_after=e.retry_after,
                    )
                    raise
                failure.warning("retrying after a transient failure", attempt=attempt, delay=round(delay, 3))
                with self._stats.lock:
                    self._stats.retries += 1
                time.sleep(delay)

    def _send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: Any,
        content_type: str,
        verb: str,
        what: str,
    ) -> Any:
        """One HTTP request over the client's pool, with urllib3's own retries off (they are ours)."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        # Serialized per attempt: the client refreshes expiring tokens (in-cluster, exec plugins) here.
        m, url, hdrs, payload, _ = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        data: bytes | str | None
        if payload is None:
            data = None
        elif isinstance(payload, bytes | str):
            data = payload
        else:
            data = json.dumps(payload)
        try:
            resp = self.api_client.rest_client.pool_manager.request(
                m,
                url,
                body=data,
                headers=hdrs,
                timeout=urllib3.Timeout(total=self.request_timeout),
                retries=False,
                preload_content=False,
            )
            try:
                raw = resp.read()
            finally:
                resp.release_conn()
        except _TRANSPORT_ERRORS as e:
            if _certificate_failure(e):
                raise KubeError(0, "", f"{type(e).__name__}: {e}", verb, what, kind=ErrorKind.OTHER) from e
            raise KubeError(0, "", f"{type(e).__name__}: {e}", verb, what, kind=ErrorKind.TRANSIENT) from e
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw or "")
        if resp.status >= 400:
            raise self._error(resp.status, resp.headers.get("Retry-After"), text, verb, what)
        return json.loads(text) if text else None

    def watch(
        self,
        api_version: str,
        plural: str,
        namespace: str = "",
        *,
        resource_version: str,
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int = 300,
    ) -> Iterator[Obj]:
        """The watch events (``{"type", "object"}``) of a collection from ``resource_version``, with
        bookmarks, until the server ends the watch (after ``timeout_seconds``) or the connection
        breaks. Not retried here: the caller (a watch cache) resumes or lists again. An ERROR
        event is raised as ``KubeError`` (410 Expired: the version is too old; list again)."""
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", resource_version),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        what = f"{plural} in {namespace or 'the cluster'}"
        m, url, hdrs, _, _ = self.api_client.param_serialize(
            method="GET",
            resource_path=path_for(api_version, plural, namespace),
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        try:
            resp = self.api_client.rest_client.pool_manager.request(
                m,
                url,
                headers=hdrs,
                # No total: a watch lasts. A read that waits longer than the server's timeout
                # plus a margin means a dead connection (bookmarks come more often than that).
                timeout=urllib3.Timeout(connect=self.request_timeout, read=timeout_seconds + 30.0),
                retries=False,
                preload_content=False,
            )
        except _TRANSPORT_ERRORS as e:
            raise KubeError(0, "", f"{type(e).__name__}: {e}", "watch", what, kind=ErrorKind.TRANSIENT) from e
        finished = False
        try:
            if resp.status >= 400:
                raise self._error(
                    resp.status, resp.headers.get("Retry-After"), resp.read().decode(), "watch", what
                )
            buf = b""
            try:
                for chunk in resp.stream(65536, decode_content=True):
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        if event.get("type") == "ERROR":
                            st = event.get("object") or {}
                            raise self._error(int(st.get("code") or 500), None, json.dumps(st), "watch", what)
                        yield event
                finished = True
            except _TRANSPORT_ERRORS as e:
                raise KubeError(
                    0, "", f"{type(e).__name__}: {e}", "watch", what, kind=ErrorKind.TRANSIENT
                ) from e
        finally:
            if not finished:
                resp.close()  # left mid-stream: the connection cannot be reused
            resp.release_conn()

    @staticmethod
    def _error(status: int, retry_after: str | None, text: str, verb: str, what: str) -> KubeError:
        try:
            st = json.loads(text)
        except ValueError:
            st = None
        if not isinstance(st, dict) or st.get("kind") not in ("Status", None):
            # Not a Status: a proxy, a load balancer or a filter before the apiserver's handlers.
            return KubeError(
                status, "", text.strip()[:1000], verb, what, retry_after=_retry_after(retry_after, {})
            )
        raw_details = st.get("details")
        details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
        return KubeError(
            status,
            str(st.get("reason") or ""),
            str(st.get("message", text)),
            verb,
            what,
            retry_after=_retry_after(retry_after, details),
            details=details,
        )

    # -- the guard ---------------------------------------------------------------------------
    def _check_guard(
        self, verb: str, target: ResourcePath | None, ref: Ref | None, body: Any, content_type: str
    ) -> None:
        if target is None or target.api_version != "v1":
            return  # the primary's objects are all core/v1
        name = target.name
        if not name and verb == "create" and isinstance(body, dict):
            name = str((body.get("metadata") or {}).get("name") or "")
        shown = ref or Ref(
            "v1", _KINDS.get(target.plural, target.plural), target.plural, name, target.namespace
        )
        for p in self._protected:
            detail = _refusal(p, verb, target, name, body, content_type)
            if detail is not None:
                log.error(
                    "refused a write to the primary",
                    verb=verb,
                    object=str(shown),
                    subresource=target.sub or None,
                    reason=detail,
                )
                raise ProtectedObjectError(shown, verb, detail)

    # -- verbs -------------------------------------------------------------------------------
    def get(self, ref: Ref) -> Obj | None:
        """The object, or None if it does not exist (a missing API raises MISSING_API)."""
        try:
            out: Obj = self.request(
                "GET",
                path_for(ref.api_version, ref.plural, ref.namespace, ref.name),
                what=str(ref),
                verb="get",
                ref=ref,
            )
            return out
        except KubeError as e:
            if e.kind is ErrorKind.NOT_FOUND:
                return None
            raise

    def list_objects(
        self,
        api_version: str,
        plural: str,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> list[Obj]:
        query = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        out = self.request(
            "GET",
            path_for(api_version, plural, namespace),
            query=query,
            what=f"{plural} in {namespace or 'the cluster'}",
            verb="list",
        )
        items: list[Obj] = out.get("items") or []
        return items

    def create(self, ref: Ref, body: Obj) -> Obj | None:
        """The created object, or None if one of that name already exists."""
        try:
            out: Obj = self.request(
                "POST",
                path_for(ref.api_version, ref.plural, ref.namespace),
                body=body,
                what=str(ref),
                verb="create",
                ref=ref,
            )
            return out
        except KubeError as e:
            if e.kind is ErrorKind.ALREADY_EXISTS:
                return None
            raise

    def patch(
        self, ref: Ref, patch: Any, content_type: str, resource_version: str | None = None
    ) -> Obj | None:
        """The patched object, or None if it does not exist.

        With ``resource_version``, the patch applies only to that version of the object
        (a merge or strategic patch sets ``metadata.resourceVersion``, a JSON patch gets a
        ``replace`` of it, which the apiserver turns into a precondition): otherwise
        ``KubeError(kind=CONFLICT)``, never retried here. A failed JSON patch ``test`` op is a
        422 (``INVALID``): the apiserver hides which op failed.
        """
        try:
            out: Obj = self.request(
                "PATCH",
                path_for(ref.api_version, ref.plural, ref.namespace, ref.name),
                body=_with_resource_version(patch, content_type, resource_version),
                content_type=content_type,
                what=str(ref),
                verb="patch",
                ref=ref,
            )
            return out
        except KubeError as e:
            if e.kind is ErrorKind.NOT_FOUND:
                return None
            raise

    def patch_status(
        self, ref: Ref, status_patch: dict[str, Any], resource_version: str | None = None
    ) -> Obj:
        """Merge-patch the status subresource with ``status_patch`` (the status fields).

        With ``resource_version``, ``{"metadata": {"resourceVersion": rv}, "status": ...}``: the
        write happens only if the object is still at that version, else
        ``KubeError(kind=CONFLICT)`` (never retried here: re-read, re-plan). For compatibility a
        whole patch body ``{"status": {...}}`` is accepted too (no status has a ``status`` field).
        """
        if "status" in status_patch and set(status_patch) <= {"status", "metadata"}:
            body: dict[str, Any] = dict(status_patch)
        else:
            body = {"status": status_patch}
        out: Obj = self.request(
            "PATCH",
            path_for(ref.api_version, ref.plural, ref.namespace, ref.name, "status"),
            body=_with_resource_version(body, "application/merge-patch+json", resource_version),
            content_type="application/merge-patch+json",
            what=f"{ref} status",
            verb="patch",
            ref=ref,
        )
        return out

    def delete(self, ref: Ref, uid: str | None = None, propagation: str = "Background") -> bool:
        """Delete; False when there was nothing to delete (gone, or replaced under the same name)."""
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.request(
                "DELETE",
                path_for(ref.api_version, ref.plural, ref.namespace, ref.name),
                body=body,
                what=str(ref),
                verb="delete",
                ref=ref,
            )
            return True
        except KubeError as e:
            if e.kind is ErrorKind.NOT_FOUND or (
                e.kind is ErrorKind.CONFLICT and "Precondition failed" in e.message
            ):
                return False
            raise

    def exec(
        self,
        namespace: str,
        pod: str,
        container: str | None,
        command: list[str],
        timeout: int,
        stdin: str | None = None,
    ) -> HookOutcome:
        """Run a command in a container over the pods/exec WebSocket (as ``kubectl exec`` does).

        ``stdin``, if given, is written to the command's standard input, then closed: the way a
        secret reaches a probe without appearing in its arguments (which the API server's audit
        log records, in the request URI). Not guarded (hooks run in the primary by design) and
        not retried (a command may not be idempotent): a failure is the hook's outcome.
        """
        core = client.CoreV1Api(self.api_client)
        kwargs: dict[str, Any] = {
            "command": command,
            "stderr": True,
            "stdin": stdin is not None,
            "stdout": True,
            "tty": False,
            "_preload_content": False,
        }
        if container:
            kwargs["container"] = container
        try:
            ws = stream(core.connect_get_namespaced_pod_exec, pod, namespace, **kwargs)
        except Exception as e:  # the upgrade failed: the API refused the exec
            return HookOutcome(False, None, "", error=f"the exec was refused: {e}")
        out, err = "", ""
        try:
            if stdin is not None:
                # One line (a command can ``read -r`` it), then EOF: v5.channel.k8s.io half-closes
                # stdin ([255, 0], remotecommand.StreamClose); older protocols cannot.
                ws.write_stdin(stdin if stdin.endswith("\n") else stdin + "\n")
                ws.close_channel(0)
            ws.run_forever(timeout=timeout)
            out, err = ws.read_stdout() or "", ws.read_stderr() or ""
            code = ws.returncode
        finally:
            ws.close()
        if code is None:
            return HookOutcome(
                False, None, out + err, error=f"no exit status within {timeout}s", stdout=out, stderr=err
            )
        return HookOutcome(code == 0, code, out + err, stdout=out, stderr=err)


def _with_resource_version(patch: Any, content_type: str, resource_version: str | None) -> Any:
    """``patch`` (not modified) made conditional on ``resource_version``, if one is given."""
    if resource_version is None:
        return patch
    if content_type == JSON_PATCH:
        if not isinstance(patch, list):
            raise ValueError("a JSON patch is a list of operations")
        return [*patch, {"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version}]
    if not isinstance(patch, dict):
        raise ValueError("a merge patch with a resourceVersion precondition must be an object")
    out = dict(patch)
    meta = out.get("metadata")
    out["metadata"] = {**(meta if isinstance(meta, dict) else {}), "resourceVersion": resource_version}
    return out


# -- guard rules ---------------------------------------------------------------------------------

_KINDS = {
    "pods": "Pod",
    "persistentvolumeclaims": "PersistentVolumeClaim",
    "persistentvolumes": "PersistentVolume",
    "namespaces": "Namespace",
}
_UNGUARDED_POD_SUBRESOURCES = {"exec"}  # hooks: exec in the primary is by design


def _refusal(
    p: Protected, verb: str, target: ResourcePath, name: str, body: Any, content_type: str
) -> str | None:
    """Why ``p`` forbids this write, or None."""
    plural, ns = target.plural, target.namespace
    if plural == "namespaces":
        if verb == "delete" and name == p.namespace:
            return "the primary's pod and claims belong to it"
        if verb == "deletecollection":
            return "that would delete the namespace holding the primary"
        return None
    if plural == "pods" and ns == p.namespace:
        if target.sub in _UNGUARDED_POD_SUBRESOURCES:
            return None
        if name in p.pods:
            return "it belongs to the primary: it is the primary's pod"
        if verb == "deletecollection":
            return f"that would delete the primary's pod(s) {', '.join(sorted(p.pods))}"
        return None
    if plural == "persistentvolumeclaims" and ns == p.namespace:
        if name in p.claims:
            return "it belongs to the primary: it is one of the primary's claims"
        if verb == "deletecollection":
            return f"that would delete the primary's claim(s) {', '.join(sorted(p.claims))}"
        if verb in ("create", "update") and isinstance(body, dict):
            vol = (body.get("spec") or {}).get("volumeName")
            if vol in p.pvs:
                return f"it would claim PersistentVolume {vol}, which belongs to the primary"
        return None
    if plural == "persistentvolumes":
        if name in p.pvs:
            return "it belongs to the primary: it is one of the primary's volumes"
        if verb == "deletecollection":
            return f"that would delete the primary's volume(s) {', '.join(sorted(p.pvs))}"
        if verb in ("create", "update", "patch") and target.sub in ("", "status"):
            claim = _claim_ref_target(body, content_type)
            if claim is _UNKNOWN:
                return "the patch copies or moves a value into spec.claimRef, which cannot be checked against the claims that belong to the primary"
            if isinstance(claim, tuple):
                c_ns, c_name = claim
                if c_name in p.claims and c_ns in (None, p.namespace):
                    return (
                        f"it would set claimRef to PersistentVolumeClaim {p.namespace}/{c_name}, "
                        "which belongs to the primary"
                    )
        return None
    return None


_UNKNOWN = object()


def _claim_ref_target(body: Any, content_type: str) -> tuple[str | None, str] | object | None:
    """The (namespace or None if not set, name) a PV body or patch would put in spec.claimRef.

    None when it sets no claimRef name, ``_UNKNOWN`` when it cannot be told (copy/move ops).
    """
    if content_type == JSON_PATCH and isinstance(body, list):
        ns: str | None = None
        name: str | None = None
        for op in body:
            if not isinstance(op, dict):
                continue
            path = str(op.get("path", ""))
            kind = op.get("op")
            touches = path in ("", "/spec") or path == "/spec/claimRef" or path.startswith("/spec/claimRef/")
            if kind in ("copy", "move") and touches:
                return _UNKNOWN
            if kind not in ("add", "replace") or not touches:
                continue
            value = op.get("value")
            ref_value: Any = None
            if path == "":
                ref_value = (
                    ((value or {}).get("spec") or {}).get("claimRef") if isinstance(value, dict) else None
                )
            elif path == "/spec":
                ref_value = value.get("claimRef") if isinstance(value, dict) else None
            elif path == "/spec/claimRef":
                ref_value = value
            elif path == "/spec/claimRef/name":
                name = str(value) if value is not None else None
            elif path == "/spec/claimRef/namespace":
                ns = str(value) if value is not None else None
            if isinstance(ref_value, dict):
                if ref_value.get("name") is not None:
                    name = str(ref_value["name"])
                if ref_value.get("namespace") is not None:
                    ns = str(ref_value["namespace"])
        return (ns, name) if name else None
    if isinstance(body, dict):
        ref_value = (body.get("spec") or {}).get("claimRef") if isinstance(body.get("spec"), dict) else None
        if isinstance(ref_value, dict) and ref_value.get("name"):
            got_ns = ref_value.get("namespace")
            return (str(got_ns) if got_ns else None, str(ref_value["name"]))
    return None
