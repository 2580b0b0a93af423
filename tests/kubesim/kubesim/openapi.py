"""The OpenAPI documents kube-apiserver publishes: ``/openapi/v3`` and one document per group-version.

What is served, and where upstream builds it:

* ``GET /openapi/v3``: the discovery document ``{"paths": {"api/v1": {"serverRelativeURL":
  "/openapi/v3/api/v1?hash=<SHA512>"}, ...}}`` (kube-openapi ``pkg/handler3/handler.go``:
  ``OpenAPIV3Discovery``, ``HandleDiscovery``, ``constructServerRelativeURL``; the hash is
  ``computeETag``, the upper-case hex SHA-512 of the document's JSON, so it changes whenever a
  CustomResourceDefinition does).
* ``GET /openapi/v3/<api/v1|apis/<group>/<version>|api|apis|apis/<group>|version>``: an OpenAPI
  3.0 document (``HandleGroupVersion``): ``Etag`` is the quoted hash, ``Vary: Accept``; with
  ``?hash=`` equal to the current hash the answer is ``Cache-Control: public, immutable`` and
  ``Expires`` a year ahead (clients such as kubectl cache it on disk by URL), with a stale hash a
  ``301`` to the current URL, without it the apiserver's default ``Cache-Control: no-cache,
  private`` (``staging/src/k8s.io/apiserver/pkg/server/filters/cachecontrol.go``
  ``WithCacheControl``). ``If-None-Match`` answers ``304`` (Go's ``http.ServeContent``). A
  group-version nobody serves is a bare ``404`` (kube-aggregator
  ``pkg/controllers/openapiv3/aggregator/aggregator.go`` ``handleGroupVersion``).
* Built-in group-versions list every resource kubesim serves with the operations and query
  parameters ``staging/src/k8s.io/apiserver/pkg/endpoints/installer.go``
  (``registerResourceHandlers``, ``AddObjectParams``) declares, operation ids and tags as
  ``staging/src/k8s.io/apiserver/pkg/endpoints/openapi/openapi.go`` (``GetOperationIDAndTags``)
  names them, parameters shared by every operation of a path hoisted to the path (kube-openapi
  ``pkg/builder3/openapi.go``), and ``components.schemas`` holding every definition reachable from
  them, converted from the upstream definitions in ``k8sdefs`` to the shape of
  ``api/openapi-spec/v3/*.json`` (``$ref: #/components/schemas/<name>``, a reference with
  siblings wrapped in ``allOf``, one ``type``, the ``x-kubernetes-*`` extensions kept).
* Custom resources get what ``staging/src/k8s.io/apiextensions-apiserver/pkg/controller/openapi/
  builder/builder.go`` (``BuildOpenAPIV3``, ``buildRoute``, ``buildKubeNative``,
  ``buildListSchema``, ``addEmbeddedProperties``) builds for each served version of an
  established CRD, merged per group-version as ``pkg/controller/openapiv3/controller.go`` does.

What clients rely on: kubectl's server-side field validation decision looks for a
``fieldValidation`` parameter on the PATCH operation carrying the kind's
``x-kubernetes-group-version-kind`` (``staging/src/k8s.io/cli-runtime/pkg/resource/
query_param_verifier_v3.go`` ``supportsQueryParamV3``); ``kubectl apply`` computes its
three-way strategic merge patch from the ``components.schemas`` entry with the kind's GVK when
the PATCH operation accepts ``application/strategic-merge-patch+json``
(``staging/src/k8s.io/kubectl/pkg/cmd/apply/patcher.go`` ``gvkSupportsPatchOpenAPIV3``,
``buildStrategicMergePatchFromOpenAPIV3``); ``kubectl explain`` finds the GVK on a path's
operation and renders the schema (``staging/src/k8s.io/kubectl/pkg/explain/v2/templates/
plaintext.tmpl``).

``/openapi/v2`` is not served: kubesim answers it with the ``404`` Status of any unknown path.
kubectl 1.37 asks for it only as a fallback: the apply patcher when the v3 document has no
strategic-merge PATCH for the kind (custom resources), where a failure is ignored and the result
is the JSON merge patch a v2 document would also have led to (``patcher.go``
``getPatchTypeFromOpenAPI``/``buildMergePatch``); client-side schema validation, only when the v3
documents lack ``fieldValidation`` (``staging/src/k8s.io/kubectl/pkg/validation/schema.go``
``paramVerifyingSchema``); and ``kubectl explain --output plaintext-openapiv2``. client-go asks
for v2 only as protobuf (``discovery.OpenAPISchema``), which would need the gnostic
``openapi_v2`` messages.

Simplified: only JSON is served (a client that accepts nothing but the protobuf encoding gets
``406``; one that prefers protobuf but accepts JSON gets JSON); query-parameter descriptions are
abridged; the ``default`` values upstream's generator adds to struct fields are absent (the JSON
Schema the definitions come from lacks them); the documents for ``.well-known/openid-configuration``,
``logs`` and ``openid/v1/jwks`` are absent; CRD schemas are published as stored (no structural-schema
check, so a non-structural schema is not reduced to ``{"type": "object"}``).
"""

from __future__ import annotations

import copy
import email.utils
import functools
import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from . import k8sdefs
from .apiserver import APIServer
from .errors import StatusError
from .resources import ResourceType

JSON = dict[str, Any]

V3_PREFIX = "#/components/schemas/"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
STATUS = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
DELETE_OPTIONS = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"
PATCH = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
WATCH_EVENT = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent"
SCALE = "io.k8s.api.autoscaling.v1.Scale"

# The media types kube-apiserver's handlers produce (installer.go: mediaTypes / streamMediaTypes).
BUILTIN_PRODUCES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
BUILTIN_STREAM = ("application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch")
BUILTIN_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
# builder.go buildRoute: custom resources produce JSON and YAML and take no strategic merge patch.
CRD_PRODUCES = ("application/json", "application/yaml")
CRD_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
)

# handler3.go: the sub-types HandleGroupVersion negotiates.
PROTOBUF_SUBTYPES = (
    "com.github.proto-openapi.spec.v3.v1.0+protobuf",
    "com.github.proto-openapi.spec.v3@v1.0+protobuf",
)

# Definitions the JSON Schema conversion in kubernetes-validate turned into oneOf without their
# description; restored to the shape of api/openapi-spec/v3 (IntOrString keeps its format). The
# Quantity description is abridged to its first sentences.
SPECIAL_DEFINITIONS: dict[str, JSON] = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML marshalling "
        "and unmarshalling, it produces or consumes the inner type.  This allows you to have, for example, a JSON "
        "field that can accept a name or number.",
        "format": "int-or-string",
        "oneOf": [{"type": "integer"}, {"type": "string"}],
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": "Quantity is a fixed-point representation of a number. It provides convenient "
        "marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors.",
        "oneOf": [{"type": "string"}, {"type": "number"}],
    },
}

# Query parameters (AddObjectParams over the *Options structs); descriptions abridged.
_PARAMS: dict[str, tuple[str, str]] = {
    "allowWatchBookmarks": (
        "boolean",
        'allowWatchBookmarks requests watch events with type "BOOKMARK". Servers that do '
        "not implement bookmarks may ignore this flag and bookmarks are sent at the server's "
        "discretion. If this is not a watch, this field is ignored.",
    ),
    "continue": (
        "string",
        "The continue option should be set when retrieving more results from the server. Since this "
        "value is server defined, clients may only use the continue value from a previous query result with "
        "identical query parameters (except for the value of continue).",
    ),
    "dryRun": (
        "string",
        "When present, indicates that modifications should not be persisted. An invalid or "
        "unrecognized dryRun directive will result in an error response and no further processing of the "
        "request. Valid values are: - All: all dry run stages will be processed",
    ),
    "fieldManager": (
        "string",
        "fieldManager is a name associated with the actor or entity that is making these "
        "changes. The value must be less than or 128 characters long, and only contain printable "
        "characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
    ),
    "fieldSelector": (
        "string",
        "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
    ),
    "fieldValidation": (
        "string",
        "fieldValidation instructs the server on how to handle objects in the request "
        "(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This "
        "will ignore any unknown fields that are silently dropped from the object, and will ignore "
        "all but the last duplicate field that the decoder encounters. This is the default behavior "
        "prior to v1.23. - Warn: This will send a warning via the standard warning response header "
        "for each unknown field that is dropped from the object, and for each duplicate field that "
        "is encountered. The request will still succeed if there are no other errors, and will only "
        "persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will "
        "fail the request with a BadRequest error if any unknown fields would be dropped from the "
        "object, or if any duplicate fields are present. The error returned from the server will "
        "contain all unknown and duplicate fields encountered.",
    ),
    "force": (
        "boolean",
        'Force is going to "force" Apply requests. It means user will re-acquire conflicting fields '
        "owned by other people. Force flag must be unset for non-apply patch requests.",
    ),
    "gracePeriodSeconds": (
        "integer",
        "The duration in seconds before the object should be deleted. Value must be "
        "non-negative integer. The value zero indicates delete immediately. If this value is nil, "
        "the default grace period for the specified type will be used.",
    ),
    "ignoreStoreReadErrorWithClusterBreakingPotential": (
        "boolean",
        "if set to true, it will trigger an unsafe "
        "deletion of the resource in case the normal deletion flow "
        "fails with a corrupt object error.",
    ),
    "labelSelector": (
        "string",
        "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
    ),
    "limit": (
        "integer",
        "limit is a maximum number of responses to return for a list call. If more items exist, the "
        "server will set the `continue` field on the list metadata to a value that can be used with the same "
        "initial query to retrieve the next set of results.",
    ),
    "orphanDependents": (
        "boolean",
        "Deprecated: please use the PropagationPolicy, this field will be deprecated in "
        "1.7. Should the dependent objects be orphaned.",
    ),
    "pretty": (
        "string",
        "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent "
        "indicates a browser or command-line HTTP tool (curl and wget).",
    ),
    "propagationPolicy": (
        "string",
        "Whether and how garbage collection will be performed. Either this field or "
        "OrphanDependents may be set, but not both. Acceptable values are: 'Orphan', 'Background', "
        "'Foreground'.",
    ),
    "resourceVersion": (
        "string",
        "resourceVersion sets a constraint on what resource versions a request may be "
        "served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/"
        "#resource-versions for details.\n\nDefaults to unset",
    ),
    "resourceVersionMatch": (
        "string",
        "resourceVersionMatch determines how resourceVersion is applied to list calls. "
        "See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for "
        "details.\n\nDefaults to unset",
    ),
    "sendInitialEvents": (
        "boolean",
        "`sendInitialEvents=true` may be set together with `watch=true`. In that case, "
        "the watch stream will begin with synthetic events to produce the current state of objects "
        "in the collection.",
    ),
    "timeoutSeconds": (
        "integer",
        "Timeout for the list/watch call. This limits the duration of the call, regardless "
        "of any activity or inactivity.",
    ),
    "watch": (
        "boolean",
        "Watch for changes to the described resources and return them as a stream of add, update, "
        "and remove notifications. Specify resourceVersion.",
    ),
    # connect (PodExecOptions, PodAttachOptions, PodPortForwardOptions) and PodLogOptions
    "command": (
        "string",
        "Command is the remote command to execute. argv array. Not executed within a shell.",
    ),
    "container": (
        "string",
        "The container in which to execute the command. Defaults to only container if there is "
        "only one container in the pod.",
    ),
    "stderr": ("boolean", "Redirect the standard error stream of the pod for this call."),
    "stdin": ("boolean", "Redirect the standard input stream of the pod for this call. Defaults to false."),
    "stdout": ("boolean", "Redirect the standard output stream of the pod for this call."),
    "tty": (
        "boolean",
        "TTY if true indicates that a tty will be allocated for the exec call. Defaults to false.",
    ),
    "ports": ("integer", "List of ports to forward Required when using WebSockets"),
    "follow": ("boolean", "Follow the log stream of the pod. Defaults to false."),
    "insecureSkipTLSVerifyBackend": (
        "boolean",
        "insecureSkipTLSVerifyBackend indicates that the apiserver should not "
        "confirm the validity of the serving certificate of the backend it is "
        "connecting to.",
    ),
    "limitBytes": (
        "integer",
        "If set, the number of bytes to read from the server before terminating the log output.",
    ),
    "previous": ("boolean", "Return previous terminated container logs. Defaults to false."),
    "sinceSeconds": (
        "integer",
        "A relative time in seconds before the current time from which to show logs.",
    ),
    "stream": (
        "string",
        "Specify which container log stream to return to the client. Acceptable values are "
        '"All", "Stdout" and "Stderr". If not specified, "All" is used.',
    ),
    "tailLines": ("integer", "If set, the number of lines from the end of the logs to show."),
    "timestamps": (
        "boolean",
        "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log "
        "output. Defaults to false.",
    ),
}
_PATCH_FIELD_MANAGER = (
    _PARAMS["fieldManager"][1]
    + " This field is required for apply requests (application/apply-patch) but optional "
    "for non-apply patch types (JsonPatch, MergePatch, StrategicMergePatch)."
)

LIST_PARAMS = (
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
)
WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
PATCH_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force")
DELETE_PARAMS = (
    "dryRun",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "orphanDependents",
    "propagationPolicy",
)
# installer.go: DELETE on a collection takes the ListOptions but not watch/allowWatchBookmarks.
DELETECOLLECTION_PARAMS = tuple(sorted({*LIST_PARAMS, *DELETE_PARAMS} - {"watch", "allowWatchBookmarks"}))
CONNECT_PARAMS = {
    "exec": ("command", "container", "stderr", "stdin", "stdout", "tty"),
    "attach": ("container", "stderr", "stdin", "stdout", "tty"),
    "portforward": ("ports",),
}
LOG_PARAMS = (
    "container",
    "follow",
    "insecureSkipTLSVerifyBackend",
    "limitBytes",
    "previous",
    "sinceSeconds",
    "stream",
    "tailLines",
    "timestamps",
)


def query_param(name: str, description: str | None = None) -> JSON:
    typ, doc = _PARAMS[name]
    return {
        "description": description or doc,
        "in": "query",
        "name": name,
        "schema": {"type": typ, "uniqueItems": True},
    }


def path_param(name: str, description: str) -> JSON:
    return {
        "description": description,
        "in": "path",
        "name": name,
        "required": True,
        "schema": {"type": "string", "uniqueItems": True},
    }


def ref(name: str) -> JSON:
    return {"$ref": V3_PREFIX + name}


# -- schema conversion ------------------------------------------------------------------------


def _single_type(t: Any) -> str | None:
    """JSON Schema's ``["string", "null"]`` as OpenAPI 3.0's single ``type``."""
    if isinstance(t, str):
        return None if t == "null" else t
    if isinstance(t, list):
        rest = [x for x in t if x != "null"]
        return rest[0] if len(rest) == 1 else None
    return None


def convert_builtin(schema: JSON, prop_name: str | None = None) -> JSON:
    """One upstream definition (k8sdefs' JSON Schema form) in the form /openapi/v3 serves it."""
    out: JSON = {}
    target = k8sdefs.ref_name(schema)
    for key, value in schema.items():
        if key == "$ref":
            continue
        if key == "type":
            single = _single_type(value)
            if single is not None:
                out["type"] = single
        elif key == "additionalProperties":
            # The "-strict" flavour closes every object; upstream leaves additionalProperties out.
            if isinstance(value, dict):
                out[key] = convert_builtin(value)
            elif value is True:
                out[key] = True
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: convert_builtin(sub, name) for name, sub in value.items()}
        elif key in ("items", "not") and isinstance(value, dict):
            out[key] = convert_builtin(value)
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            out[key] = [convert_builtin(s) for s in value]
        elif (
            key == "enum"
            and prop_name in ("apiVersion", "kind")
            and isinstance(value, list)
            and len(value) == 1
        ):
            # The converter pins apiVersion/kind of top-level kinds with a one-value enum; upstream has none.
            continue
        else:
            out[key] = value
    if target is not None:
        if out:
            # openapi-gen (v3): a reference with siblings (description, patch extensions) becomes allOf.
            return {"allOf": [ref(target)], **out}
        return ref(target)
    return out


@functools.cache
def builtin_component(name: str) -> JSON:
    if name in SPECIAL_DEFINITIONS:
        return SPECIAL_DEFINITIONS[name]
    return convert_builtin(k8sdefs.definitions()[name])


def _collect_refs(node: Any, into: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(V3_PREFIX):
                into.add(value[len(V3_PREFIX) :])
            else:
                _collect_refs(value, into)
    elif isinstance(node, list):
        for item in node:
            _collect_refs(item, into)


@functools.cache
def _builtin_refs(name: str) -> frozenset[str]:
    refs: set[str] = set()
    _collect_refs(builtin_component(name), refs)
    return frozenset(refs)


def _type_meta_property(name: str) -> JSON:
    """TypeMeta's apiVersion/kind as upstream definitions carry them (no enum)."""
    pod = k8sdefs.definitions().get("io.k8s.api.core.v1.Pod", {})
    prop = (pod.get("properties") or {}).get(name)
    if prop is None:
        return {"type": "string"}
    return convert_builtin(prop, name)


# -- custom resources -------------------------------------------------------------------------

_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
_OBJECT_META_DESCRIPTION = (
    "Standard object's metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_LIST_META_DESCRIPTION = (
    "Standard list metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_EMBEDDED_API_VERSION = (
    "apiVersion defines the versioned schema of this representation of an object. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"
)
_EMBEDDED_KIND = (
    "kind is a string value representing the type of this object. In CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
)


def rest_friendly_name(name: str) -> str:
    """kube-openapi ``pkg/util/util.go`` ``ToRESTFriendlyName``: reverse the dotted first segment."""
    parts = name.split("/")
    if parts and "." in parts[0]:
        parts[0] = ".".join(reversed(parts[0].split(".")))
    return ".".join(parts)


def crd_definition_name(group: str, version: str, kind: str) -> str:
    # builder.go: the definition is named for "<group>/<version>.<kind>" (CRDCanonicalTypeNamer).
    return rest_friendly_name(f"{group}/{version}.{kind}")


def _unfold(s: JSON) -> None:
    """``pkg/apiserver/schema/unfold.go`` ``Unfold``: spell out int-or-string and embedded resources."""
    for sub in (s.get("properties") or {}).values():
        if isinstance(sub, dict):
            _unfold(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(s.get(key), dict):
            _unfold(s[key])
    if s.get("x-kubernetes-int-or-string"):
        pair = copy.deepcopy(_INT_OR_STRING_ANY_OF)
        if "anyOf" not in s:
            s["anyOf"] = pair
        elif s["anyOf"] != pair:
            s["allOf"] = [{"anyOf": pair}, {"anyOf": s.pop("anyOf")}, *(s.get("allOf") or [])]
    if s.get("x-kubernetes-embedded-resource"):
        props = s.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})


def _add_embedded_properties(s: JSON) -> None:
    """builder.go ``addEmbeddedProperties`` (OpenAPI v3: also under preserve-unknown-fields)."""
    for sub in (s.get("properties") or {}).values():
        if isinstance(sub, dict):
            _add_embedded_properties(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(s.get(key), dict):
            _add_embedded_properties(s[key])
    if s.get("x-kubernetes-embedded-resource"):
        props = s.setdefault("properties", {})
        props["apiVersion"] = {**_type_meta_property("apiVersion"), "description": _EMBEDDED_API_VERSION}
        props["kind"] = {**_type_meta_property("kind"), "description": _EMBEDDED_KIND}
        props["metadata"] = {**ref(OBJECT_META), "description": _OBJECT_META_DESCRIPTION}
        required = list(s.get("required") or [])
        for name in ("kind", "apiVersion"):
            if name not in required:
                required.append(name)
        s["required"] = required


def crd_kind_schema(rt: ResourceType) -> JSON:
    """builder.go ``buildKubeNative`` for OpenAPI v3."""
    schema = rt.schema
    if schema:
        out: JSON = copy.deepcopy(schema)
        _unfold(out)
        props = out.setdefault("properties", {})
        props["metadata"] = {**ref(OBJECT_META), "description": _OBJECT_META_DESCRIPTION}
        props["apiVersion"] = _type_meta_property("apiVersion")
        props["kind"] = _type_meta_property("kind")
        _add_embedded_properties(out)
    else:
        # No schema: only the type, so that clients assume nothing about the fields.
        out = {"type": "object"}
    out["x-kubernetes-group-version-kind"] = [{"group": rt.group, "kind": rt.kind, "version": rt.version}]
    return out


def crd_list_schema(rt: ResourceType) -> JSON:
    """builder.go ``buildListSchema``."""
    return {
        "description": f"{rt.list_kind} is a list of {rt.kind}",
        "properties": {
            "apiVersion": _type_meta_property("apiVersion"),
            "items": {
                "description": f"List of {rt.plural}. More info: "
                "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md",
                "items": ref(crd_definition_name(rt.group, rt.version, rt.kind)),
                "type": "array",
            },
            "kind": _type_meta_property("kind"),
            "metadata": {**ref(LIST_META), "description": _LIST_META_DESCRIPTION},
        },
        "required": ["items"],
        "type": "object",
        "x-kubernetes-group-version-kind": [{"group": rt.group, "kind": rt.list_kind, "version": rt.version}],
    }


# -- paths ------------------------------------------------------------------------------------


def to_valid_operation_id(s: str, capitalize_first: bool) -> str:
    """apiserver ``pkg/endpoints/openapi/openapi.go`` ``ToValidOperationID``."""
    out: list[str] = []
    upper_next = capitalize_first
    for ch in s:
        if ch.isalnum():
            out.append(ch.upper() if upper_next else ch)
            upper_next = False
        else:
            upper_next = True
    return "".join(out)


def _article(noun: str) -> str:
    """apiserver ``pkg/endpoints/installer.go`` ``GetArticleForNoun`` (padded with spaces)."""
    if not noun.endswith("ss") and noun.endswith("s"):
        return " "
    return " an " if noun[:1].lower() in "aeiou" else " a "


def _media(types: Iterable[str], schema: JSON) -> JSON:
    return {"content": {t: {"schema": schema} for t in types}}


@dataclass
class _Builder:
    """Operations of one group-version, in the form kube-openapi's builder3 emits them."""

    group: str
    version: str
    builtin: bool
    paths: dict[str, JSON] = field(default_factory=dict)
    prefix: str = field(init=False)
    op_prefix: str = field(init=False)
    tag: str = field(init=False)

    def __post_init__(self) -> None:
        self.prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        trimmed = (self.group or "core").removesuffix(".k8s.io")
        self.op_prefix = to_valid_operation_id(trimmed, True) + to_valid_operation_id(self.version, True)
        self.tag = to_valid_operation_id(trimmed, False) + "_" + to_valid_operation_id(self.version, False)

    @property
    def produces(self) -> tuple[str, ...]:
        return BUILTIN_PRODUCES if self.builtin else CRD_PRODUCES

    def op(
        self,
        path: str,
        method: str,
        verb: str,
        rest: str,
        description: str,
        action: str | None,
        gvk: JSON | None,
        params: list[JSON],
        responses: JSON,
        body: JSON | None = None,
    ) -> None:
        op: JSON = {"description": description, "operationId": verb + self.op_prefix + rest}
        if params:
            op["parameters"] = params
        if body is not None:
            op["requestBody"] = body
        op["responses"] = {**responses, "401": {"description": "Unauthorized"}}
        op["tags"] = [self.tag]
        if action is not None:
            op["x-kubernetes-action"] = action
        if gvk is not None:
            op["x-kubernetes-group-version-kind"] = gvk
        self.paths.setdefault(path, {})[method] = op

    def ok(self, schema: JSON, *codes: tuple[str, str], stream: bool = False) -> JSON:
        types = [*self.produces, *(BUILTIN_STREAM if stream and self.builtin else ())]
        out = {"200": {**_media(sorted(types), schema), "description": "OK"}}
        for code, text in codes:
            out[code] = {**_media(sorted(self.produces), schema), "description": text}
        return out

    def body(self, schema: JSON) -> JSON:
        # Built-in handlers take "*/*" (the negotiated serializers); builder.go: JSON and YAML.
        return _media(["*/*"] if self.builtin else ["application/json", "application/yaml"], schema)

    def resource(self, rt: ResourceType) -> None:
        kind = rt.kind
        ns = "Namespaced" if rt.namespaced else ""
        gvk = {"group": rt.group, "kind": kind, "version": rt.version}
        if rt.builtin:
            obj_name = k8sdefs.definition_name(rt.group, rt.version, kind)
            list_name = k8sdefs.definition_name(rt.group, rt.version, rt.list_kind)
        else:
            obj_name = crd_definition_name(rt.group, rt.version, kind)
            list_name = crd_definition_name(rt.group, rt.version, rt.list_kind)
        obj = ref(obj_name) if obj_name else {"type": "object"}
        lst = ref(list_name) if list_name else {"type": "object"}
        pretty = query_param("pretty")
        ns_param = path_param("namespace", "object name and auth scope, such as for teams and projects")
        name_param = path_param("name", f"name of the {kind}")
        verbs = set(rt.verbs)
        root = (
            f"{self.prefix}/namespaces/{{namespace}}/{rt.plural}"
            if rt.namespaced
            else f"{self.prefix}/{rt.plural}"
        )
        scope = [ns_param] if rt.namespaced else []
        item = f"{root}/{{name}}"
        item_scope = [name_param, *scope]

        def params(*names: str) -> list[JSON]:
            return [query_param(n) for n in names]

        if "list" in verbs:
            list_doc = (
                f"list or watch objects of kind {kind}" if rt.builtin else f"list objects of kind {kind}"
            )
            if rt.namespaced:
                self.op(
                    f"{self.prefix}/{rt.plural}",
                    "get",
                    "list",
                    f"{kind}ForAllNamespaces",
                    list_doc,
                    "list",
                    gvk,
                    [*params(*LIST_PARAMS), pretty],
                    self.ok(lst, stream=True),
                )
            self.op(
                root,
                "get",
                "list",
                f"{ns}{kind}",
                list_doc,
                "list",
                gvk,
                [*scope, *params(*LIST_PARAMS), pretty],
                self.ok(lst, stream=True),
            )
        if "create" in verbs:
            self.op(
                root,
                "post",
                "create",
                f"{ns}{kind}",
                f"create{_article(kind)}{kind}",
                "post",
                gvk,
                [*scope, *params(*WRITE_PARAMS), pretty],
                self.ok(obj, ("201", "Created"), ("202", "Accepted")),
                self.body(obj),
            )
        if "deletecollection" in verbs:
            names = DELETECOLLECTION_PARAMS if rt.builtin else LIST_PARAMS
            self.op(
                root,
                "delete",
                "delete",
                f"Collection{ns}{kind}",
                f"delete collection of {kind}",
                "deletecollection",
                gvk,
                [*scope, *params(*names), pretty],
                self.ok(ref(STATUS)),
                self.body(ref(DELETE_OPTIONS)) if rt.builtin else None,
            )
        if "get" in verbs:
            self.op(
                item,
                "get",
                "read",
                f"{ns}{kind}",
                f"read the specified {kind}",
                "get",
                gvk,
                [*item_scope, pretty],
                self.ok(obj),
            )
        if "update" in verbs:
            self.op(
                item,
                "put",
                "replace",
                f"{ns}{kind}",
                f"replace the specified {kind}",
                "put",
                gvk,
                [*item_scope, *params(*WRITE_PARAMS), pretty],
                self.ok(obj, ("201", "Created")),
                self.body(obj),
            )
        if "delete" in verbs:
            deleted = obj if (rt.builtin and rt.return_deleted_object) else ref(STATUS)
            self.op(
                item,
                "delete",
                "delete",
                f"{ns}{kind}",
                f"delete{_article(kind)}{kind}",
                "delete",
                gvk,
                [*item_scope, *params(*DELETE_PARAMS), pretty],
                self.ok(deleted, ("202", "Accepted")),
                self.body(ref(DELETE_OPTIONS)),
            )
        if "patch" in verbs:
            self.patch(item, f"{ns}{kind}", f"partially update the specified {kind}", gvk, item_scope, obj)
        if "watch" in verbs and rt.builtin:
            self.watch(rt, gvk, scope, name_param)
        for sub, (sub_gv, sub_kind, sub_verbs) in rt.subresources().items():
            self.subresource(rt, sub, sub_gv, sub_kind, sub_verbs, gvk, item_scope, obj)

    def patch(self, path: str, rest: str, description: str, gvk: JSON, scope: list[JSON], obj: JSON) -> None:
        names = PATCH_PARAMS
        params = [query_param(n, _PATCH_FIELD_MANAGER if n == "fieldManager" else None) for n in names]
        types = BUILTIN_PATCH_TYPES if self.builtin else CRD_PATCH_TYPES
        responses = self.ok(obj, ("201", "Created")) if self.builtin else self.ok(obj)
        self.op(
            path,
            "patch",
            "patch",
            rest,
            description,
            "patch",
            gvk,
            [*scope, *params, query_param("pretty")],
            responses,
            _media(types, ref(PATCH)),
        )

    def watch(self, rt: ResourceType, gvk: JSON, scope: list[JSON], name_param: JSON) -> None:
        kind = rt.kind
        ns = "Namespaced" if rt.namespaced else ""
        event = ref(WATCH_EVENT)
        list_params = [query_param(n) for n in LIST_PARAMS]
        pretty = query_param("pretty")
        base = (
            f"{self.prefix}/watch/namespaces/{{namespace}}/{rt.plural}"
            if rt.namespaced
            else f"{self.prefix}/watch/{rt.plural}"
        )
        deprecated = "deprecated: use the 'watch' parameter with a list operation instead"
        self.op(
            base,
            "get",
            "watch",
            f"{ns}{kind}List",
            f"watch individual changes to a list of {kind}. {deprecated}.",
            "watchlist",
            gvk,
            [*scope, *list_params, pretty],
            self.ok(event, stream=True),
        )
        self.op(
            f"{base}/{{name}}",
            "get",
            "watch",
            f"{ns}{kind}",
            f"watch changes to an object of kind {kind}. {deprecated}, filtered to a single item with the "
            "'fieldSelector' parameter.",
            "watch",
            gvk,
            [name_param, *scope, *list_params, pretty],
            self.ok(event, stream=True),
        )
        if rt.namespaced:
            self.op(
                f"{self.prefix}/watch/{rt.plural}",
                "get",
                "watch",
                f"{kind}ListForAllNamespaces",
                f"watch individual changes to a list of {kind}. {deprecated}.",
                "watchlist",
                gvk,
                [*list_params, pretty],
                self.ok(event, stream=True),
            )

    def subresource(
        self,
        rt: ResourceType,
        sub: str,
        sub_gv: str,
        sub_kind: str,
        sub_verbs: tuple[str, ...],
        gvk: JSON,
        scope: list[JSON],
        obj: JSON,
    ) -> None:
        kind = rt.kind
        ns = "Namespaced" if rt.namespaced else ""
        path = f"{self.prefix}/{'namespaces/{namespace}/' if rt.namespaced else ''}{rt.plural}/{{name}}/{sub}"
        title = sub[:1].upper() + sub[1:]
        pretty = query_param("pretty")
        sub_group, _, sub_version = sub_gv.rpartition("/")
        if sub == "status":
            sub_obj, sub_gvk = obj, gvk
        elif sub == "scale" and not rt.builtin:
            # builder.go buildRoute: every custom resource route carries the custom resource's GVK.
            sub_obj, sub_gvk = ref(SCALE), gvk
        else:
            name = k8sdefs.definition_name(sub_group, sub_version, sub_kind)
            sub_obj = ref(name) if name else {"type": "object"}
            sub_gvk = {"group": sub_group, "kind": sub_kind, "version": sub_version}
        if sub_kind.endswith("Options") and sub in CONNECT_PARAMS:
            # installer.go: a Connecter answers GET and POST with a raw stream.
            connect = [query_param(n) for n in CONNECT_PARAMS[sub]]
            text = {"200": {**_media(["*/*"], {"type": "string"}), "description": "OK"}}
            for method in ("get", "post"):
                self.op(
                    path,
                    method,
                    "connect",
                    f"{method.title()}{ns}{kind}{title}",
                    f"connect {method.upper()} requests to {sub} of {kind}",
                    "connect",
                    sub_gvk,
                    [*scope, *connect],
                    text,
                )
            return
        if sub == "log":
            self.op(
                path,
                "get",
                "read",
                f"{ns}{kind}Log",
                f"read log of the specified {kind}",
                "get",
                sub_gvk,
                [*scope, *[query_param(n) for n in LOG_PARAMS], pretty],
                {"200": {**_media(["*/*"], {"type": "string"}), "description": "OK"}},
            )
            return
        write = [query_param(n) for n in WRITE_PARAMS]
        if "get" in sub_verbs:
            self.op(
                path,
                "get",
                "read",
                f"{ns}{kind}{title}",
                f"read {sub} of the specified {kind}",
                "get",
                sub_gvk,
                [*scope, pretty],
                self.ok(sub_obj),
            )
        if "update" in sub_verbs:
            self.op(
                path,
                "put",
                "replace",
                f"{ns}{kind}{title}",
                f"replace {sub} of the specified {kind}",
                "put",
                sub_gvk,
                [*scope, *write, pretty],
                self.ok(sub_obj, ("201", "Created")),
                self.body(sub_obj),
            )
        if "patch" in sub_verbs:
            self.patch(
                path,
                f"{ns}{kind}{title}",
                f"partially update {sub} of the specified {kind}",
                sub_gvk,
                scope,
                sub_obj,
            )
        if "create" in sub_verbs:
            self.op(
                path,
                "post",
                "create",
                f"{ns}{kind}{title}",
                f"create {sub} of{_article(kind)}{kind}",
                "post",
                sub_gvk,
                [*scope, *write, pretty],
                self.ok(sub_obj, ("201", "Created"), ("202", "Accepted")),
                self.body(sub_obj),
            )

    def resources_root(self) -> None:
        """The group-version's discovery endpoint (``getAppsV1APIResources``)."""
        self.paths[f"{self.prefix}/"] = {
            "get": {
                "description": "get available resources",
                "operationId": "get" + self.op_prefix + "APIResources",
                "responses": {
                    "200": {
                        **_media(
                            sorted(BUILTIN_PRODUCES),
                            ref("io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList"),
                        ),
                        "description": "OK",
                    },
                    "401": {"description": "Unauthorized"},
                },
                "tags": [self.tag],
            }
        }


def hoist_parameters(paths: dict[str, JSON]) -> None:
    """kube-openapi builder3: parameters every operation of a path shares move to the path."""
    for item in paths.values():
        ops = [op for op in item.values() if isinstance(op, dict)]
        if not ops:
            continue
        keyed = [{json.dumps(p, sort_keys=True): p for p in op.get("parameters", [])} for op in ops]
        shared = set(keyed[0])
        for k in keyed[1:]:
            shared &= set(k)
        if not shared:
            continue
        common = sorted((keyed[0][k] for k in shared), key=lambda p: (p["name"], p["in"]))
        for op, k in zip(ops, keyed, strict=True):
            rest = [p for key, p in k.items() if key not in shared]
            if rest:
                op["parameters"] = rest
            else:
                op.pop("parameters", None)
        item["parameters"] = common
    for item in paths.values():
        for op in item.values():
            if isinstance(op, dict) and "parameters" in op:
                op["parameters"].sort(key=lambda p: (p["name"], p["in"]))


def _document(paths: dict[str, JSON], components: dict[str, JSON], title: str, version: str) -> JSON:
    hoist_parameters(paths)
    return {
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "BearerToken": {
                    "description": "Bearer Token authentication",
                    "in": "header",
                    "name": "authorization",
                    "type": "apiKey",
                }
            },
        },
        "info": {"title": title, "version": version},
        "openapi": "3.0.0",
        "paths": dict(sorted(paths.items())),
    }


def _close_over(paths: dict[str, JSON], components: dict[str, JSON]) -> None:
    """Add every built-in definition reachable from the paths and the given components."""
    pending: set[str] = set()
    _collect_refs(paths, pending)
    _collect_refs(components, pending)
    defs = k8sdefs.definitions()
    while pending:
        name = pending.pop()
        if name in components or (name not in defs and name not in SPECIAL_DEFINITIONS):
            continue
        components[name] = builtin_component(name)
        pending |= _builtin_refs(name) - components.keys()


def group_version_document(group: str, version: str, types: list[ResourceType]) -> JSON:
    """The /openapi/v3/<api/v1|apis/g/v> document for the resources served there."""
    paths: dict[str, JSON] = {}
    components: dict[str, JSON] = {}
    builtins = [rt for rt in types if rt.crd is None]
    customs = [rt for rt in types if rt.crd is not None]
    if builtins:
        b = _Builder(group, version, builtin=True)
        b.resources_root()
        for rt in sorted(builtins, key=lambda r: r.plural):
            b.resource(rt)
        paths.update(b.paths)
    if customs:
        c = _Builder(group, version, builtin=False)
        for rt in sorted(customs, key=lambda r: r.plural):
            c.resource(rt)
            components[crd_definition_name(rt.group, rt.version, rt.kind)] = crd_kind_schema(rt)
            components[crd_definition_name(rt.group, rt.version, rt.list_kind)] = crd_list_schema(rt)
        for path, item in c.paths.items():
            paths.setdefault(path, {}).update(item)
    _close_over(paths, components)
    if builtins:
        return _document(paths, components, "Kubernetes", "unversioned")
    return _document(paths, components, "Kubernetes CRD Swagger", "v0.1.0")


def _discovery_endpoint_document(path: str, op_id: str, tag: str, description: str, schema: str) -> JSON:
    paths = {
        path: {
            "get": {
                "description": description,
                "operationId": op_id,
                "responses": {
                    "200": {**_media(sorted(BUILTIN_PRODUCES), ref(schema)), "description": "OK"},
                    "401": {"description": "Unauthorized"},
                },
                "tags": [tag],
            }
        }
    }
    components: dict[str, JSON] = {}
    _close_over(paths, components)
    return _document(paths, components, "Kubernetes", "unversioned")


# -- serving ----------------------------------------------------------------------------------


@dataclass
class Doc:
    data: bytes
    etag: str  # handler3.go computeETag: upper-case hex SHA-512, unquoted
    last_modified: float


def _make_doc(doc: JSON) -> Doc:
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return Doc(data, hashlib.sha512(data).hexdigest().upper(), time.time())


def _http_date(t: float) -> str:
    return email.utils.formatdate(t, usegmt=True)


def _accepts(header: str) -> list[tuple[str, str]]:
    """(type, subtype) of the Accept clauses, best first (goautoneg ``ParseAccept`` ordering)."""
    clauses: list[tuple[float, int, str, str]] = []
    for part in (header or "*/*").split(","):
        fields = [f.strip() for f in part.split(";")]
        if not fields[0]:
            continue
        q = 1.0
        for f in fields[1:]:
            k, _, v = f.partition("=")
            if k.strip() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        typ, _, sub = fields[0].partition("/")
        specificity = (typ != "*") + (sub not in ("*", ""))
        clauses.append((q, specificity, typ, sub or "*"))
    clauses.sort(key=lambda c: (-c[0], -c[1]))
    return [(t, s) for q, _, t, s in clauses if q > 0]


class OpenAPI:
    """Serves /openapi/v3 (and answers /openapi/v2 as a server without it would)."""

    def __init__(self, api: APIServer) -> None:
        self.api = api
        self._cache: dict[str, tuple[str, Doc]] = {}

    # -- documents ---------------------------------------------------------------------------
    def keys(self) -> list[str]:
        """The discovery paths of every document served now (handler3.go ``OpenAPIV3Discovery``)."""
        out = ["api", "apis", "version"]
        for group, versions in self.api.groups().items():
            if not group:
                out += [f"api/{v}" for v in versions if self.api.types_in(group, v)]
                continue
            out += [f"apis/{group}/{v}" for v in versions if self.api.types_in(group, v)]
            if self._builtin_group(group):
                out.append(f"apis/{group}")
        return sorted(out)

    def _builtin_group(self, group: str) -> bool:
        # The group's discovery endpoint (/apis/<group>/) has a document for built-in groups only.
        return any(rt.group == group and rt.builtin for rt in self.api.types.values())

    def _source(self, key: str) -> tuple[str, tuple[str, str, str]] | None:
        """(fingerprint, what to build) for a discovery path, or None if nothing is served there."""
        if key in ("api", "apis", "version"):
            return "", (key, "", "")
        parts = key.split("/")
        if parts[0] == "api" and len(parts) == 2:
            group, version = "", parts[1]
        elif parts[0] == "apis" and len(parts) == 3:
            group, version = parts[1], parts[2]
        elif parts[0] == "apis" and len(parts) == 2 and parts[1] and self._builtin_group(parts[1]):
            return "", ("group", parts[1], "")
        else:
            return None
        types = self.api.types_in(group, version) if version else []
        if not types:
            return None
        fingerprint = json.dumps(
            [
                [
                    rt.plural,
                    rt.kind,
                    rt.namespaced,
                    list(rt.verbs),
                    rt.builtin,
                    {k: [v[0], v[1], list(v[2])] for k, v in rt.subresources().items()},
                    rt.crd["spec"] if rt.crd is not None else None,
                ]
                for rt in sorted(types, key=lambda r: r.plural)
            ],
            sort_keys=True,
            default=str,
        )
        return fingerprint, ("gv", group, version)

    def _build(self, what: tuple[str, str, str]) -> JSON:
        kind, group, version = what
        if kind == "gv":
            return group_version_document(group, version, self.api.types_in(group, version))
        if kind == "group":
            trimmed = group.removesuffix(".k8s.io")
            return _discovery_endpoint_document(
                f"/apis/{group}/",
                f"get{to_valid_operation_id(trimmed, True)}APIGroup",
                to_valid_operation_id(trimmed, False),
                "get information of a group",
                "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup",
            )
        if kind == "api":
            return _discovery_endpoint_document(
                "/api/",
                "getCoreAPIVersions",
                "core",
                "get available API versions",
                "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions",
            )
        if kind == "apis":
            return _discovery_endpoint_document(
                "/apis/",
                "getAPIVersions",
                "apis",
                "get available API versions",
                "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList",
            )
        return _discovery_endpoint_document(
            "/version/",
            "getCodeVersion",
            "version",
            "get the version information for this server",
            "io.k8s.apimachinery.pkg.version.Info",
        )

    def document(self, key: str) -> Doc | None:
        """The document at a discovery path, rebuilt only when the resources behind it changed."""
        source = self._source(key)
        if source is None:
            self._cache.pop(key, None)
            return None
        fingerprint, what = source
        cached = self._cache.get(key)
        if cached is None or cached[0] != fingerprint:
            cached = (fingerprint, _make_doc(self._build(what)))
            self._cache[key] = cached
        return cached[1]

    def documents(self) -> dict[str, Doc]:
        """Every document served now."""
        out = {key: doc for key in self.keys() if (doc := self.document(key)) is not None}
        for key in list(self._cache):
            if key not in out:
                del self._cache[key]
        return out

    def discovery(self) -> JSON:
        return {
            "paths": {
                key: {"serverRelativeURL": f"/openapi/v3/{key}?{urlencode({'hash': doc.etag})}"}
                for key, doc in sorted(self.documents().items())
            }
        }

    # -- HTTP --------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/openapi/v3":
            return self._serve_discovery(request)
        if path.startswith("/openapi/v3/"):
            return self._serve_group_version(request, path[len("/openapi/v3/") :])
        # /openapi/v2 (and anything else under /openapi): not served, see the module docstring.
        raise StatusError(404, "NotFound", "the server could not find the requested resource", {})

    def _serve_discovery(self, request: web.Request) -> web.StreamResponse:
        doc = _make_doc(self.discovery())
        headers = {
            "Content-Type": "application/json",
            "Etag": f'"{doc.etag}"',
            "Cache-Control": "no-cache, private",
        }
        return self._serve(request, doc, headers)

    def _serve_group_version(self, request: web.Request, key: str) -> web.StreamResponse:
        doc = self.document(key)
        if doc is None:
            # aggregator.go handleGroupVersion: "No group-versions match the desired request".
            return web.Response(status=404, headers={"Cache-Control": "no-cache, private"})
        headers = {"Vary": "Accept", "Cache-Control": "no-cache, private"}
        for typ, sub in _accepts(request.headers.get("Accept", "")):
            if typ not in ("application", "*"):
                continue
            if sub in ("json", "*"):
                break
            if sub in PROTOBUF_SUBTYPES:
                continue  # kubesim has no protobuf encoding; a later JSON clause may still match
        else:
            return web.Response(status=406, headers=headers)
        headers["Content-Type"] = "application/json"
        headers["Etag"] = f'"{doc.etag}"'
        want = request.query.get("hash", "")
        if want:
            if want != doc.etag:
                location = f"/openapi/v3/{key}?{urlencode({'hash': doc.etag})}"
                return web.Response(status=301, headers={**headers, "Location": location})
            headers["Cache-Control"] = "public, immutable"
            headers["Expires"] = _http_date(time.time() + 365 * 24 * 3600)
        return self._serve(request, doc, headers)

    def _serve(self, request: web.Request, doc: Doc, headers: dict[str, str]) -> web.StreamResponse:
        """Go's http.ServeContent: Last-Modified and the If-None-Match / If-Modified-Since checks."""
        headers = {**headers, "Last-Modified": _http_date(doc.last_modified), "Accept-Ranges": "bytes"}
        inm = request.headers.get("If-None-Match")
        if inm is not None:
            tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
            if "*" in tags or f'"{doc.etag}"' in tags:
                return web.Response(
                    status=304, headers={k: v for k, v in headers.items() if k != "Content-Type"}
                )
        else:
            ims = request.headers.get("If-Modified-Since")
            if ims:
                try:
                    since = email.utils.parsedate_to_datetime(ims).timestamp()
                except (TypeError, ValueError):
                    since = None
                if since is not None and int(doc.last_modified) <= since:
                    return web.Response(
                        status=304, headers={k: v for k, v in headers.items() if k != "Content-Type"}
                    )
        return web.Response(body=doc.data, headers=headers)


__all__ = [
    "OpenAPI",
    "convert_builtin",
    "crd_definition_name",
    "group_version_document",
    "rest_friendly_name",
]
