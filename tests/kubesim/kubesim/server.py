"""The HTTP front of kubesim: routing, authentication, authorization, content negotiation, watch.

URL parsing and verbs follow ``staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go``;
the handlers follow ``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/`` (``get.go``,
``create.go``, ``update.go``, ``patch.go``, ``delete.go``, ``watch.go``); discovery follows
``staging/src/k8s.io/apiserver/pkg/endpoints/discovery/``.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from aiohttp import web

from . import audit, auth, builtin_schema, gonum, protobuf, tables
from .apiserver import FIELD_VALIDATION, APIServer, ListOptions, Result, WriteOptions
from .errors import StatusError, bad_request, internal, method_not_allowed, unauthorized
from .faults import Faults
from .resources import ResourceType
from .store import Change, TooOldResourceVersion

KUBE_GIT_VERSION = "v1.37.0"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status_response(err: StatusError) -> web.Response:
    headers = dict(err.headers)
    return web.json_response(err.to_status(), status=err.code, headers=headers)


def _json(obj: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    headers = {}
    if warnings:
        # The Warning header as handlers/responsewriters/warning.go writes it: 299 - "text"
        headers["Warning"] = ", ".join(f'299 - "{w.replace(chr(34), chr(92) + chr(34))}"' for w in warnings)
    return web.Response(
        text=json.dumps(obj, separators=(",", ":")),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    first = accept.split(",")[0]
    return "as=Table" in first


def _wants_partial(request: web.Request) -> bool:
    first = request.headers.get("Accept", "").split(",")[0]
    return "as=PartialObjectMetadata" in first


class HTTPFront:
    def __init__(
        self,
        api: APIServer,
        tokens: auth.TokenAuthority,
        authorizer: auth.RBACAuthorizer,
        faults: Faults | None = None,
    ) -> None:
        self.api = api
        self.tokens = tokens
        self.authz = authorizer
        self.faults = faults
        self.admin_actions: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.bookmark_interval = 5.0
        self.extra_handlers: dict[
            str, Callable[[web.Request, ResourceType, str, str, auth.UserInfo], Awaitable[web.StreamResponse]]
        ] = {}
        self.openapi: Any = None  # set by the cluster when the OpenAPI documents are available
        self.watch_connections: set[web.StreamResponse] = set()
        self.audit: audit.AuditLog | None = None  # set by the cluster for --audit-log (audit.py)

    def app(self) -> web.Application:
        middlewares = [self._errors] if self.audit is None else [self._errors, self._audit]
        app = web.Application(client_max_size=16 * 1024 * 1024, middlewares=middlewares)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except StatusError as e:
            return status_response(e)
        except web.HTTPException:
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except (
            Exception
        ) as e:  # an unexpected error is a 500 with a Status body, as the apiserver's panic filter answers
            import traceback

            traceback.print_exc()
            return status_response(internal(f"{type(e).__name__}: {e}"))

    @web.middleware
    async def _audit(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The audit event of every request (audit.py), written once the response is known; an
        error is seen here as the exception ``_errors`` turns into its response."""
        assert self.audit is not None
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        ra = audit.new_request(
            request.method,
            request.path,
            request.raw_path,  # req.URL.RequestURI(): path and query as sent
            request.query,
            request.headers.get("User-Agent", ""),
            audit.source_ips(
                request.headers.get("X-Forwarded-For"),
                request.headers.get("X-Real-Ip"),
                peer[0] if isinstance(peer, tuple) and peer else None,
            ),
        )
        request[audit.REQUEST_KEY] = ra
        try:
            resp = await handler(request)
        except StatusError as e:
            ra.response_status = e.to_status()
            self.audit.write(ra.event("ResponseComplete", e.code))
            raise
        except web.HTTPException as e:
            self.audit.write(ra.event("ResponseComplete", e.status))
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:
            ra.response_status = internal(f"{type(e).__name__}: {e}").to_status()
            self.audit.write(ra.event("ResponseComplete", 500))
            raise
        self.audit.write(ra.event("ResponseComplete", resp.status))
        return resp

    def audit_started(self, request: web.Request, code: int) -> None:
        """The ``ResponseStarted`` event of a long-running request (a watch), as its headers go out."""
        ra = request.get(audit.REQUEST_KEY)
        if ra is not None and self.audit is not None:
            self.audit.write(ra.event("ResponseStarted", code))

    # -- authentication ----------------------------------------------------------------------
    def authenticate(self, request: web.Request) -> auth.UserInfo:
        # bearertoken.go: no token means anonymous; a token that fails to authenticate is a 401.
        token = auth.bearer_token(request.headers.get("Authorization"))
        if token is None:
            return auth.ANONYMOUS
        user = self.tokens.authenticate(token, self._sa_lookup)
        if user is None:
            raise unauthorized()
        return user

    def _sa_lookup(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.api.store.peek("/serviceaccounts", namespace, name)

    def impersonate(self, request: web.Request, requestor: auth.UserInfo) -> auth.UserInfo:
        """``filters.WithImpersonation`` (``endpoints/filters/impersonation.go``): every
        ``Impersonate-*`` header is authorized as the verb ``impersonate`` for the authenticated
        requestor (403 as ``responsewriters.Forbidden`` words it on the first refusal), then the
        request goes on as the impersonated user. A group, extra or uid without a user is the
        filter's plain-text ``InternalError``."""
        try:
            requests = auth.impersonation_requests(list(request.headers.items()))
        except auth.ImpersonationError as e:
            # responsewriters.InternalError: http.Error with the HTML-sanitised text
            text = f"Internal Server Error: {auth.go_quote(request.raw_path)}: {e}"
            text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            raise web.HTTPInternalServerError(
                text=text + "\n",
                content_type="text/plain",
                headers={"X-Content-Type-Options": "nosniff"},
            ) from None
        if not requests:
            return requestor
        for req in requests:
            attrs = auth.impersonation_attributes(requestor, req)
            allowed, reason = self.authz.authorize(attrs)
            if not allowed:
                raise auth.forbidden_error(attrs, reason)
        groups_specified = auth.IMPERSONATE_GROUP_HEADER in request.headers
        return auth.impersonated_user(requests, groups_specified)

    def authorize(self, attrs: auth.Attributes, request: web.Request | None = None) -> None:
        allowed, reason = self.authz.authorize(attrs)
        ra = request.get(audit.REQUEST_KEY) if request is not None else None
        if ra is not None:
            ra.authorized(allowed, reason)  # filters/authorization.go: the decision annotations
        if not allowed:
            raise auth.forbidden_error(attrs, reason)

    # -- dispatch ----------------------------------------------------------------------------
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        requestor = self.authenticate(request)
        ra = request.get(audit.REQUEST_KEY)
        if ra is not None:
            ra.user = requestor
        user = self.impersonate(request, requestor)
        if ra is not None and user is not requestor:
            ra.impersonated = user  # audit.LogImpersonatedUser
        query = dict(request.query)
        try:
            attrs = auth.request_attributes(request.method, path, query, user)
        except auth.RequestInfoError as e:
            raise internal(str(e)) from None
        if ra is not None:
            ra.attrs = attrs  # the audit event's verb and objectRef without parsing the path again
        if path.startswith("/kubesim/"):
            if ra is not None:
                ra.authorized("system:masters" in user.groups, "")
            if "system:masters" not in user.groups:
                raise auth.forbidden_error(attrs)
            return await self.admin(request, path[len("/kubesim/") :])
        self.authorize(attrs, request)
        if not attrs.resource_request:
            return await self.non_resource(request, path)
        if self.faults is not None:
            await self.inject(attrs, user)
        return await self.resource_request(request, attrs, user)

    async def inject(self, attrs: auth.Attributes, user: auth.UserInfo) -> None:
        """API faults: delay or fail requests that match (kubesim fault kinds ``latency`` and ``api``).

        A failure is a ``Status`` with the fault's code, the reason apimachinery gives that code and
        the fault's message, its ``details`` merged in. A 429 or 503 carries ``Retry-After`` (the
        fault's ``retry_after``, 1 second by default; any other code only when ``retry_after`` is
        set) in the header and in ``details.retryAfterSeconds``, whole seconds as both carry it
        (``apierrors.NewTooManyRequests``; the max-in-flight and priority-and-fairness filters).
        """
        assert self.faults is not None
        fa = {
            "verb": attrs.verb,
            "resource": attrs.resource,
            "subresource": attrs.subresource,
            "namespace": attrs.namespace,
            "name": attrs.name,
            "group": attrs.api_group,
            "user": user.name,
        }
        lat = self.faults.check("latency", **fa)
        if lat is not None:
            await asyncio.sleep(lat.delay)
        f = self.faults.check("api", **fa)
        if f is not None:
            reason = {
                400: "BadRequest",
                403: "Forbidden",
                404: "NotFound",
                409: "Conflict",
                410: "Expired",
                422: "Invalid",
                429: "TooManyRequests",
                500: "InternalError",
                503: "ServiceUnavailable",
                504: "Timeout",
            }.get(f.code, "InternalError")
            err = StatusError(f.code, reason, f.message or f"kubesim injected fault {f.id}")
            if f.details is not None:
                err.details = dict(f.details)
            seconds = f.retry_after_seconds()
            if seconds is not None:
                err.headers["Retry-After"] = str(seconds)
                err.details = {**(err.details or {}), "retryAfterSeconds": seconds}
            raise err

    async def admin(self, request: web.Request, action: str) -> web.StreamResponse:
        """``/kubesim/<action>``: the admin endpoint for scripts (faults, pausing controllers, ...)."""
        fn = self.admin_actions.get(action)
        if fn is None:
            raise StatusError(
                404,
                "NotFound",
                f"no kubesim admin action {action!r}; there are: {', '.join(sorted(self.admin_actions))}",
            )
        raw = await request.read()
        try:
            args = json.loads(raw) if raw else {}
        except ValueError as e:
            raise bad_request(f"the admin request body must be JSON: {e}") from None
        try:
            result = fn(args if isinstance(args, dict) else {})
            if asyncio.iscoroutine(result):
                result = await result
        except (KeyError, ValueError, TypeError) as e:
            raise bad_request(f"{action}: {e}") from None
        return _json(result if result is not None else {})

    async def non_resource(self, request: web.Request, path: str) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise method_not_allowed("the server does not allow this method on the requested resource")
        p = path.rstrip("/") or "/"
        if p in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok", content_type="text/plain")
        if p == "/version":
            return _json(
                {
                    "major": "1",
                    "minor": "37",
                    "gitVersion": KUBE_GIT_VERSION,
                    "gitCommit": "kubesim",
                    "gitTreeState": "clean",
                    "buildDate": "2026-01-01T00:00:00Z",
                    "goVersion": "go1.25",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                    "emulationMajor": "1",
                    "emulationMinor": "37",
                    "minCompatibilityMajor": "1",
                    "minCompatibilityMinor": "36",
                }
            )
        if p == "/api":
            return _json(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}
                    ],
                }
            )
        if p == "/api/v1":
            return _json(self.resource_list("", "v1"))
        if p == "/apis":
            return _json(
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [self.group_doc(g, vs) for g, vs in self.api.groups().items() if g],
                }
            )
        if p.startswith("/apis/"):
            parts = p.split("/")[2:]
            groups = self.api.groups()
            if len(parts) == 1 and parts[0] in groups:
                doc = self.group_doc(parts[0], groups[parts[0]])
                doc["kind"], doc["apiVersion"] = "APIGroup", "v1"
                return _json(doc)
            if len(parts) == 2 and parts[0] in groups and parts[1] in groups[parts[0]]:
                return _json(self.resource_list(parts[0], parts[1]))
        if p.startswith("/openapi") and self.openapi is not None:
            return await self.openapi.handle(request)
        raise StatusError(404, "NotFound", "the server could not find the requested resource", {})

    def group_doc(self, group: str, versions: list[str]) -> dict[str, Any]:
        vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": vs, "preferredVersion": vs[0]}

    def resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources: list[dict[str, Any]] = []
        for rt in sorted(self.api.types_in(group, version), key=lambda r: r.plural):
            entry: dict[str, Any] = {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": list(rt.verbs),
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            if rt.storage_key and not rt.virtual:
                entry["storageVersionHash"] = _hash(rt.storage_key)
            resources.append(entry)
            for sub, (gv, kind, verbs) in rt.subresources().items():
                s: dict[str, Any] = {
                    "name": f"{rt.plural}/{sub}",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": kind,
                    "verbs": list(verbs),
                }
                g, _, v = gv.rpartition("/")
                if gv != rt.api_version:
                    s["group"], s["version"] = g, v
                resources.append(s)
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    # -- resources ---------------------------------------------------------------------------
    async def resource_request(
        self, request: web.Request, attrs: auth.Attributes, user: auth.UserInfo
    ) -> web.StreamResponse:
        rt = self.api.resource(attrs.api_group, attrs.api_version, attrs.resource)
        ns, name, sub, verb = attrs.namespace, attrs.name, attrs.subresource, attrs.verb
        if rt.builtin and rt.plural == "namespaces":
            ns = ""  # requestinfo.go: /namespaces/{name} puts the name in Namespace too
        if rt.namespaced and not ns and verb not in ("list", "watch"):
            raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
        if not rt.namespaced and ns:
            raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
        if verb not in rt.verbs and not sub:
            raise method_not_allowed("the server does not allow this method on the requested resource")
        q = request.query
        if sub and sub not in rt.subresources():
            raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
        if sub and sub not in ("status", "scale"):
            handler = self.extra_handlers.get(f"{rt.group}/{rt.plural}/{sub}")
            if handler is None:
                raise StatusError(404, "NotFound", f"kubesim does not serve {rt.plural}/{sub}", {})
            return await handler(request, rt, ns, name, user)
        if rt.virtual:
            if verb != "create":
                raise method_not_allowed("the server does not allow this method on the requested resource")
            body = await self.read_body(request, rt)
            return _json(self.review(rt, body, user, ns), 201)
        if verb in ("list", "watch") or (verb == "get" and not name):
            opts = ListOptions(
                q.get("labelSelector", ""),
                q.get("fieldSelector", ""),
                _int(q.get("limit", "0"), "limit"),
                q.get("continue", ""),
                q.get("resourceVersion", ""),
                q.get("resourceVersionMatch", ""),
            )
            if verb == "watch":
                return await self.watch(request, rt, ns or None, opts)
            listed = self.api.list(rt, ns or None, opts)
            if _wants_table(request):
                return _json(
                    tables.to_table(
                        rt, listed["items"], listed["metadata"], q.get("includeObject", "Metadata")
                    )
                )
            if _wants_partial(request):
                listed = {
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": listed["metadata"],
                    "items": [tables.partial_metadata(i) for i in listed["items"]],
                }
            return _json(listed)
        if verb == "get":
            obj = self.api.get_scale(rt, ns, name) if sub == "scale" else self.api.get(rt, ns, name)
            return self.object_response(request, rt, obj, 200)
        opts_w = self.write_options(request)
        if verb == "create":
            if name:
                raise method_not_allowed("the server does not allow this method on the requested resource")
            body = await self.read_body(request, rt)
            res = self.api.create(rt, ns, body, opts_w)
            return self.object_response(request, rt, res.obj, res.code, res.warnings)
        if verb == "update":
            body = await self.read_body(request, rt, sub)
            if sub == "scale":
                res = self.api.update_scale(rt, ns, name, body, opts_w)
            else:
                res = self.api.update(rt, ns, name, body, opts_w, sub)
            return self.object_response(request, rt, res.obj, res.code, res.warnings)
        if verb == "patch":
            raw = await request.read()
            if sub == "scale":
                from . import patch as patchlib

                current = self.api.get_scale(rt, ns, name)
                ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
                # kubesim does not apply (server-side) through the scale subresource: 415.
                doc = patchlib.decode_patch(
                    ctype,
                    raw,
                    supported_types=(
                        patchlib.JSON_PATCH,
                        patchlib.MERGE_PATCH,
                        patchlib.STRATEGIC_MERGE_PATCH,
                    ),
                )
                if ctype == "application/json-patch+json":
                    patched = patchlib.json_patch(current, doc)
                else:  # a Scale has no lists: a strategic merge is a merge
                    patched = patchlib.json_merge_patch(current, doc)
                res = self.api.update_scale(rt, ns, name, patched, opts_w)
            else:
                res = self.api.patch(rt, ns, name, request.headers.get("Content-Type", ""), raw, opts_w, sub)
            return self.object_response(request, rt, res.obj, res.code, res.warnings)
        if verb == "delete":
            options = await self.delete_options(request)
            res = self.api.delete(rt, ns, name, options, dry_run=opts_w.dry_run)
            return self.object_response(request, rt, res.obj, res.code, res.warnings)
        if verb == "deletecollection":
            options = await self.delete_options(request)
            lopts = ListOptions(q.get("labelSelector", ""), q.get("fieldSelector", ""))
            out = self.api.delete_collection(rt, ns or None, lopts, options, dry_run=opts_w.dry_run)
            return _json(out)
        raise method_not_allowed("the server does not allow this method on the requested resource")

    def object_response(
        self,
        request: web.Request,
        rt: ResourceType,
        obj: dict[str, Any],
        code: int,
        warnings: list[str] | None = None,
    ) -> web.Response:
        if obj.get("kind") not in ("Status", "Scale") and _wants_table(request):
            return _json(
                tables.to_table(
                    rt,
                    [obj],
                    {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                    request.query.get("includeObject", "Metadata"),
                ),
                code,
                warnings,
            )
        if obj.get("kind") not in ("Status", "Scale") and _wants_partial(request):
            return _json(tables.partial_metadata(obj), code, warnings)
        return _json(obj, code, warnings)

    def write_options(self, request: web.Request) -> WriteOptions:
        q = request.query
        dry = q.getall("dryRun", [])
        for d in dry:
            if d != "All":
                raise bad_request(f'Invalid dryRun value: "{d}"; only "All" is supported')  # handlers/rest.go
        fv = q.get("fieldValidation", "Warn") or "Warn"
        if fv not in FIELD_VALIDATION:
            raise bad_request(
                f'fieldValidation parameter unsupported: "{fv}". Valid values are: Ignore, Warn, Strict'
            )
        force: bool | None = None
        if "force" in q:
            # runtime.ParameterCodec: a bool query parameter goes through strconv.ParseBool.
            raw = q.get("force", "")
            if raw in ("1", "t", "T", "true", "TRUE", "True"):
                force = True
            elif raw in ("0", "f", "F", "false", "FALSE", "False"):
                force = False
            else:
                raise bad_request(f'strconv.ParseBool: parsing "{raw}": invalid syntax')
        return WriteOptions(
            dry_run=bool(dry),
            field_validation=fv,
            field_manager=q.get("fieldManager", ""),
            user_agent=request.headers.get("User-Agent", ""),
            force=force,
        )

    async def read_body(self, request: web.Request, rt: ResourceType | None = None, sub: str = "") -> Any:
        raw = await request.read()
        ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if not raw:
            raise bad_request("the request body is empty")
        if ctype == protobuf.CONTENT_TYPE:
            # The endpoint's kind defaults what the body's typeMeta leaves out (protobuf.go: copyKindDefaults).
            api_version, kind = (rt.api_version, rt.kind) if rt is not None else ("", None)
            if rt is not None and sub in rt.subresources():
                api_version, kind, _ = rt.subresources()[sub]
            return decode_protobuf_body(raw, api_version, kind)
        try:
            if ctype in ("application/yaml", "application/x-yaml"):
                return yaml.safe_load(raw)
            if ctype in ("application/json", "", "*/*"):
                return gonum.loads(raw)  # numbers as the Go decoder reads them
        except (ValueError, yaml.YAMLError) as e:
            raise bad_request(f"the object provided is unrecognized: {e}") from None
        raise StatusError(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        )

    async def delete_options(self, request: web.Request) -> dict[str, Any]:
        options: dict[str, Any] = {}
        raw = await request.read()
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        if raw and ctype == protobuf.CONTENT_TYPE:
            # kubectl drain's typed client sends DeleteOptions as protobuf (handlers/delete.go decodes
            # it with the meta scheme, where DeleteOptions is unversioned).
            body = decode_protobuf_body(raw, "meta.k8s.io/v1", "DeleteOptions")
            if body.get("kind") != "DeleteOptions":
                raise bad_request("decoded object cannot be converted to DeleteOptions")
            options.update(body)
        elif raw:
            try:
                body = gonum.loads(raw)
            except ValueError as e:
                raise bad_request(f"invalid DeleteOptions: {e}") from None
            if isinstance(body, dict):
                grace = body.get("gracePeriodSeconds")
                if grace is not None and not gonum.fits_int(grace, "int64"):
                    number = isinstance(grace, int | float) and not isinstance(grace, bool)
                    kind = f"number {gonum.literal(grace)}" if number else builtin_schema.json_kind(grace)
                    raise bad_request(
                        f"json: cannot unmarshal {kind} into Go struct field "
                        "DeleteOptions.gracePeriodSeconds of type int64"
                    )
                options.update(body)
        q = request.query
        if "gracePeriodSeconds" in q:
            options["gracePeriodSeconds"] = _int(q["gracePeriodSeconds"], "gracePeriodSeconds")
        if "propagationPolicy" in q:
            options["propagationPolicy"] = q["propagationPolicy"]
        if "orphanDependents" in q:
            options["orphanDependents"] = q["orphanDependents"] == "true"
        return options

    def review(self, rt: ResourceType, body: Any, user: auth.UserInfo, ns: str) -> dict[str, Any]:
        """The create-only review kinds (pkg/registry/authorization/*, authentication/selfsubjectreview)."""
        if not isinstance(body, dict):
            raise bad_request("a review must be an object")
        out = dict(body)
        out.setdefault("metadata", {})
        out["apiVersion"], out["kind"] = rt.api_version, rt.kind
        spec = body.get("spec") or {}
        if rt.kind == "SelfSubjectReview":
            out["status"] = auth.self_subject_review_status(user)
        elif rt.kind == "SelfSubjectAccessReview":
            out["status"] = auth.self_subject_access_review(self.authz, spec, user)
        elif rt.kind == "SelfSubjectRulesReview":
            out["status"] = auth.self_subject_rules_review(self.authz, spec, user)
        else:
            out["status"] = auth.subject_access_review(self.authz, spec)
        return out

    # -- watch -------------------------------------------------------------------------------
    async def watch(
        self, request: web.Request, rt: ResourceType, ns: str | None, opts: ListOptions
    ) -> web.StreamResponse:
        q = request.query
        match = self.api.matcher(rt, opts.label_selector, opts.field_selector)
        send_initial = q.get("sendInitialEvents") == "true"
        bookmarks = q.get("allowWatchBookmarks") == "true"
        if send_initial and (not bookmarks or opts.resource_version_match != "NotOlderThan"):
            raise StatusError(
                422,
                "Invalid",
                "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled and allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan",
            )
        timeout = _int(q.get("timeoutSeconds", "0"), "timeoutSeconds") or random.randint(1800, 3600)
        as_table = _wants_table(request)
        store = self.api.store
        rv = opts.resource_version
        initial: list[dict[str, Any]] = []
        since: int | None
        if rv in ("", "0") or send_initial:
            # "Get State and Start at Most Recent": synthetic ADDED events of the current state.
            initial = [s for s in store.iter(rt.storage_key, ns if rt.namespaced else None) if match(s)]
            since = None
        else:
            try:
                since = int(rv)
            except ValueError:
                raise bad_request(f"invalid resource version: {rv!r}") from None
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"}
        )
        resp.enable_chunked_encoding()
        try:
            watcher, backlog = store.watch(rt.storage_key, ns if rt.namespaced else None, since)
        except TooOldResourceVersion as e:
            await resp.prepare(request)
            self.audit_started(request, 200)
            status = StatusError(
                410, "Expired", f"too old resource version: {e.requested} ({e.oldest})"
            ).to_status()
            await resp.write((json.dumps({"type": "ERROR", "object": status}) + "\n").encode())
            await resp.write_eof()
            return resp
        start_rv = store.rv
        self.watch_connections.add(resp)
        await resp.prepare(request)
        self.audit_started(request, 200)

        async def send(type_: str, obj: dict[str, Any]) -> None:
            if as_table and type_ != "BOOKMARK" and type_ != "ERROR":
                obj = tables.to_table(
                    rt,
                    [obj],
                    {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                    request.query.get("includeObject", "Metadata"),
                    with_headers=False,
                )
            await resp.write(
                (json.dumps({"type": type_, "object": obj}, separators=(",", ":")) + "\n").encode()
            )

        def bookmark(rv_: int, initial_end: bool = False) -> dict[str, Any]:
            meta: dict[str, Any] = {"resourceVersion": str(rv_)}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}

        try:
            for s in initial:
                await send("ADDED", self.api.to_external(rt, s))
            if send_initial:
                await send("BOOKMARK", bookmark(start_rv, True))
            for c in backlog:
                await self._send_change(send, rt, match, c)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            last_rv = start_rv
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wait = min(remaining, self.bookmark_interval) if bookmarks else remaining
                try:
                    change = await asyncio.wait_for(watcher.queue.get(), wait)
                except TimeoutError:
                    if bookmarks:
                        await send(
                            "BOOKMARK",
                            bookmark(max(last_rv, store.rv if not watcher.queue.qsize() else last_rv)),
                        )
                    continue
                if change is None:
                    break
                last_rv = change.rv
                await self._send_change(send, rt, match, change)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            store.unwatch(watcher)
            self.watch_connections.discard(resp)
        try:
            await resp.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass
        return resp

    async def _send_change(
        self,
        send: Callable[[str, dict[str, Any]], Awaitable[None]],
        rt: ResourceType,
        match: Callable[[dict[str, Any]], bool],
        c: Change,
    ) -> None:
        # cacher.go: cacheWatcher.convertToWatchEvent: selector transitions become ADDED / DELETED.
        cur_ok = match(c.obj)
        old_ok = c.old is not None and match(c.old)
        if c.type == "DELETED":
            if old_ok or cur_ok:
                await send("DELETED", self.api.to_external(rt, c.obj))
            return
        if c.type == "ADDED":
            if cur_ok:
                await send("ADDED", self.api.to_external(rt, c.obj))
            return
        if cur_ok and old_ok:
            await send("MODIFIED", self.api.to_external(rt, c.obj))
        elif cur_ok:
            await send("ADDED", self.api.to_external(rt, c.obj))
        elif old_ok and c.old is not None:
            gone_obj = dict(c.old)
            gone_obj["metadata"] = dict(c.old["metadata"], resourceVersion=str(c.rv))
            await send("DELETED", self.api.to_external(rt, gone_obj))


def decode_protobuf_body(raw: bytes, api_version: str, kind: str | None) -> dict[str, Any]:
    """An ``application/vnd.kubernetes.protobuf`` body as the JSON dict it stands for (``protobuf.py``):
    a malformed body is a 400 worded as ``handlers/rest.go: transformDecodeError`` words it; a kind
    kubesim has no protobuf table for is a 415 that says to send JSON or YAML instead."""
    try:
        return protobuf.decode(raw, api_version, kind)
    except protobuf.UnsupportedProtobuf as e:
        raise StatusError(415, "UnsupportedMediaType", str(e)) from None
    except protobuf.ProtobufError as e:
        raise bad_request(e.describe(kind or e.kind or "object")) from None


def _int(s: str, name: str) -> int:
    # query parameters decode with strconv.ParseInt(s, 10, 64)
    try:
        n = int(s)
    except ValueError:
        raise bad_request(f"invalid value for {name}: {s!r}") from None
    if not gonum.INT64_MIN <= n <= gonum.INT64_MAX:
        raise bad_request(f'invalid value for {name}: strconv.ParseInt: parsing "{s}": value out of range')
    return n


def _hash(s: str) -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(s.encode()).digest()[:8]).decode()


__all__ = ["HTTPFront", "Result", "decode_protobuf_body"]
