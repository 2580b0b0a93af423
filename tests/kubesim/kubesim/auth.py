"""Authentication tokens and RBAC authorization, as kube-apiserver does them.

Everything here is pure code (no I/O, no server state); the API server feeds it the request and a
lister over the stored RBAC objects. What it follows upstream, file by file:

* Request attributes: ``staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go``
  (``RequestInfoFactory.NewRequestInfo``), including the ``fieldSelector=metadata.name=`` name
  promotion for list/watch.
* Authorization: the privileged ``system:masters`` group
  (``staging/src/k8s.io/apiserver/pkg/authorization/authorizerfactory/builtin.go``:
  ``privilegedGroupAuthorizer``) in front of RBAC (``plugin/pkg/auth/authorizer/rbac/rbac.go``:
  ``RBACAuthorizer.Authorize``, ``RuleAllows``; ``pkg/registry/rbac/validation/rule.go``:
  ``DefaultRuleResolver.VisitRulesFor``, ``appliesToUser``, ``GetRoleReferenceRules``;
  ``pkg/apis/rbac/v1/evaluation_helpers.go``: ``VerbMatches`` ... ``NonResourceURLMatches``).
* The 403 body: ``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go``
  (``Forbidden``, ``forbiddenMessage``) and ``apimachinery/pkg/api/errors/errors.go``
  (``NewForbidden``).
* Default policy: ``plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`` (golden file
  ``testdata/cluster-roles.yaml``), with ``admin``/``edit``/``view`` aggregated as
  ``pkg/controller/clusterroleaggregation/clusterroleaggregation_controller.go`` does.
* Reviews: ``pkg/registry/authorization/{subjectaccessreview,selfsubjectaccessreview,
  selfsubjectrulesreview}/rest.go``, ``pkg/registry/authorization/util/helpers.go`` and
  ``pkg/apis/authorization/validation/validation.go``.
* Tokens: bound service-account tokens as ``pkg/serviceaccount/claims.go`` (``Claims``,
  ``validator.Validate``) and ``pkg/serviceaccount/jwt.go`` mint and check them, but signed with
  HMAC-SHA256 (``HS256``) under a server secret instead of an RSA/ECDSA key; the bearer header as
  ``staging/src/k8s.io/apiserver/pkg/authentication/request/bearertoken/bearertoken.go`` reads it.

* Impersonation: ``staging/src/k8s.io/apiserver/pkg/endpoints/filters/impersonation.go``
  (``WithImpersonation``, ``buildImpersonationRequests``, ``unescapeExtraKey``) with
  ``k8s.io/apiserver/pkg/authentication/serviceaccount/util.go`` (``SplitUsername``,
  ``MakeGroupNames``).

Simplifications (see the report / README): tokens are not bound to pods or secrets; ``extra`` user
attributes come only from impersonation (no authenticator sets them) and no authorizer looks at
them; list/watch parameter decoding only checks the parameters that decide the name promotion
(``fieldSelector``, ``limit``, ``timeoutSeconds``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import Cause, StatusError, bad_request, forbidden, invalid

JSON = dict[str, Any]

# k8s.io/apiserver/pkg/authentication/user/user.go
SYSTEM_PRIVILEGED_GROUP = "system:masters"
ALL_AUTHENTICATED = "system:authenticated"
ALL_UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS_USER = "system:anonymous"
# k8s.io/apiserver/pkg/authentication/serviceaccount/util.go
SERVICE_ACCOUNT_USERNAME_PREFIX = "system:serviceaccount:"
ALL_SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"
SERVICE_ACCOUNT_GROUP_PREFIX = "system:serviceaccounts:"

ADMIN_USER = "kubesim-admin"
RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class UserInfo:
    """``user.Info`` (``k8s.io/apiserver/pkg/authentication/user/user.go: DefaultInfo``)."""

    name: str
    groups: tuple[str, ...]
    uid: str = ""
    # user.Info.GetExtra(): key -> values, as (key, values) pairs in a stable order
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


# staging/src/k8s.io/apiserver/pkg/authentication/request/anonymous/anonymous.go: the anonymous
# authenticator's user.
ANONYMOUS = UserInfo(ANONYMOUS_USER, (ALL_UNAUTHENTICATED,))


@dataclass(frozen=True)
class Attributes:
    """``authorizer.AttributesRecord`` (``k8s.io/apiserver/pkg/authorization/authorizer/interfaces.go``)."""

    user: UserInfo
    verb: str
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    resource_request: bool = True
    path: str = ""


# --------------------------------------------------------------------------------------------
# Go formatting helpers
# --------------------------------------------------------------------------------------------

_GO_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t", "\v": r"\v"}


def go_quote(s: str) -> str:
    """Go's ``%q`` of a string (``strconv.Quote``): double quotes, Go escapes, printable runes kept."""
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            cp = ord(ch)
            if cp < 0x80:
                out.append(f"\\x{cp:02x}")
            elif cp <= 0xFFFF:
                out.append(f"\\u{cp:04x}")
            else:
                out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


def _aggregate_message(messages: Sequence[str]) -> str:
    """``utilerrors.NewAggregate(errs).Error()`` (``apimachinery/pkg/util/errors/errors.go``)."""
    if not messages:
        return ""
    if len(messages) == 1:
        return messages[0]
    seen: list[str] = []
    for m in messages:
        if m not in seen:
            seen.append(m)
    if len(seen) == 1:
        return seen[0]
    return "[" + ", ".join(seen) + "]"


# --------------------------------------------------------------------------------------------
# Request attributes
# --------------------------------------------------------------------------------------------


class RequestInfoError(ValueError):
    """``NewRequestInfo`` failed; the apiserver answers 500 ``failed to create RequestInfo: ...``
    (``staging/src/k8s.io/apiserver/pkg/endpoints/filters/requestinfo.go: WithRequestInfo``)."""


# requestinfo.go: APIPrefixes / GrouplessAPIPrefixes as the generic apiserver configures them.
_API_PREFIXES = frozenset({"api", "apis"})
_GROUPLESS_API_PREFIXES = frozenset({"api"})
# requestinfo.go: specialVerbs, specialVerbsNoSubresources, namespaceSubresources
_SPECIAL_VERBS = frozenset({"proxy", "watch"})
_SPECIAL_VERBS_NO_SUBRESOURCES = frozenset({"proxy"})
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


def _split_path(path: str) -> list[str]:
    # requestinfo.go: splitPath
    trimmed = path.strip("/")
    return trimmed.split("/") if trimmed else []


class _SelectorError(ValueError):
    pass


def _split_field_terms(selector: str) -> list[str]:
    # apimachinery/pkg/fields/selector.go: splitTerms (commas not escaped by a backslash)
    if not selector:
        return []
    terms: list[str] = []
    start = 0
    in_slash = False
    for i, c in enumerate(selector):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return terms


def _unescape_field_value(s: str) -> str:
    # apimachinery/pkg/fields/selector.go: UnescapeValue
    if "\\" not in s:
        return s
    out: list[str] = []
    in_slash = False
    for c in s:
        if in_slash:
            if c not in ("\\", ",", "="):
                raise _SelectorError(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            in_slash = False
        elif c == "\\":
            in_slash = True
        else:
            out.append(c)
    if in_slash:
        raise _SelectorError("invalid field selector: unterminated escape sequence")
    return "".join(out)


def _field_selector_exact_match(selector: str, field: str) -> str | None:
    """``fields.ParseSelector(selector).RequiresExactMatch(field)``; raises on a parse error."""
    parts = sorted(_split_field_terms(selector))  # parseSelector sorts the terms
    matches: list[str] = []
    for part in parts:
        if part == "":
            continue
        for i in range(len(part)):
            op = next((o for o in ("!=", "==", "=") if part.startswith(o, i)), None)
            if op is not None:
                lhs, rhs = part[:i], part[i + len(op) :]
                break
        else:
            raise _SelectorError(f"invalid selector: '{selector}'; can't understand '{part}'")
        value = _unescape_field_value(rhs)
        if op != "!=" and lhs == field:
            matches.append(value)
    return matches[0] if matches else None


def _valid_path_segment_name(name: str) -> bool:
    # apimachinery/pkg/api/validation/path/name.go: IsValidPathSegmentName
    return name not in (".", "..") and "/" not in name and "%" not in name


def _go_parse_int(s: str) -> bool:
    # strconv.ParseInt(s, 10, 64): optional sign, ASCII digits, int64 range
    body = s[1:] if s[:1] in ("+", "-") else s
    if not body or not body.isascii() or not body.isdigit():
        return False
    return -(2**63) <= int(s) < 2**63


def request_attributes(method: str, path: str, query: Mapping[str, str], user: UserInfo) -> Attributes:
    """The authorizer attributes of a request, as ``RequestInfoFactory.NewRequestInfo`` parses it
    (``staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go``) and
    ``filters.GetAuthorizerAttributes`` copies it.

    ``path`` is the decoded URL path; ``query`` maps each query parameter to its first value.
    Raises :class:`RequestInfoError` where upstream's ``NewRequestInfo`` returns an error.
    """
    non_resource = Attributes(user=user, verb=method.lower(), resource_request=False, path=path)
    parts = _split_path(path)
    if len(parts) < 3 or parts[0] not in _API_PREFIXES:
        return non_resource
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix not in _GROUPLESS_API_PREFIXES:
        if len(parts) < 3:
            return non_resource
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]

    if parts[0] in _SPECIAL_VERBS:
        if len(parts) < 2:
            raise RequestInfoError(f"unable to determine kind and namespace from url, {path}")
        verb, parts = parts[0], parts[1:]
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")

    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        # another step after the namespace name that is not a namespace subresource is a
        # namespaced resource in its own right
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]

    # parts: resource/resourceName/subresource/other/stuff/we/don't/interpret
    resource = name = subresource = ""
    if len(parts) >= 3 and verb not in _SPECIAL_VERBS_NO_SUBRESOURCES:
        subresource = parts[2]
    if len(parts) >= 2:
        name = parts[1]
    if len(parts) >= 1:
        resource = parts[0]

    if not name and verb == "get":
        # ListOptions decoding (metainternalversionscheme.ParameterCodec.DecodeParameters); on a
        # decoding error upstream falls back to list/watch from the raw ``watch`` value, no name.
        watch_raw = query.get("watch")
        # Convert_Slice_string_To_bool: any value but "0" / "false" (case-insensitive) is true
        watch = watch_raw is not None and watch_raw.lower() not in ("false", "0")
        verb = "watch" if watch else "list"
        try:
            for int_param in ("limit", "timeoutSeconds"):
                if int_param in query and not _go_parse_int(query[int_param]):
                    raise _SelectorError(int_param)
            selector_name = _field_selector_exact_match(query.get("fieldSelector", ""), "metadata.name")
        except _SelectorError:
            selector_name = None
        if selector_name is not None and _valid_path_segment_name(selector_name):
            name = selector_name

    if not name and verb == "delete":
        verb = "deletecollection"

    return Attributes(
        user=user,
        verb=verb,
        namespace=namespace,
        api_group=group,
        api_version=version,
        resource=resource,
        subresource=subresource,
        name=name,
        resource_request=True,
        path=path,
    )


# --------------------------------------------------------------------------------------------
# RBAC rule evaluation
# --------------------------------------------------------------------------------------------


def _strs(rule: Mapping[str, Any], key: str) -> list[str]:
    value = rule.get(key)
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)]


def verb_matches(rule: Mapping[str, Any], verb: str) -> bool:
    """``pkg/apis/rbac/v1/evaluation_helpers.go: VerbMatches``."""
    return any(v == "*" or v == verb for v in _strs(rule, "verbs"))


def api_group_matches(rule: Mapping[str, Any], group: str) -> bool:
    """``evaluation_helpers.go: APIGroupMatches``."""
    return any(g == "*" or g == group for g in _strs(rule, "apiGroups"))


def resource_matches(rule: Mapping[str, Any], combined_resource: str, subresource: str) -> bool:
    """``evaluation_helpers.go: ResourceMatches``: ``*``, an exact ``resource`` or
    ``resource/subresource``, or ``*/subresource``.

    Upstream has no ``resource/*`` wildcard: such an entry only matches a request whose
    subresource is literally ``*``, and so does this.
    """
    for r in _strs(rule, "resources"):
        if r == "*" or r == combined_resource:
            return True
        if subresource and len(r) == len(subresource) + 2 and r.startswith("*/") and r.endswith(subresource):
            return True
    return False


def resource_name_matches(rule: Mapping[str, Any], name: str) -> bool:
    """``evaluation_helpers.go: ResourceNameMatches`` (an empty list matches every name, including none)."""
    names = _strs(rule, "resourceNames")
    return not names or name in names


def non_resource_url_matches(rule: Mapping[str, Any], path: str) -> bool:
    """``evaluation_helpers.go: NonResourceURLMatches`` (``*``, exact, or a trailing-``*`` prefix)."""
    for u in _strs(rule, "nonResourceURLs"):
        if u == "*" or u == path:
            return True
        if u.endswith("*") and path.startswith(u.rstrip("*")):
            return True
    return False


def rule_allows(attrs: Attributes, rule: Mapping[str, Any]) -> bool:
    """``plugin/pkg/auth/authorizer/rbac/rbac.go: RuleAllows``."""
    if attrs.resource_request:
        combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        return (
            verb_matches(rule, attrs.verb)
            and api_group_matches(rule, attrs.api_group)
            and resource_matches(rule, combined, attrs.subresource)
            and resource_name_matches(rule, attrs.name)
        )
    return verb_matches(rule, attrs.verb) and non_resource_url_matches(rule, attrs.path)


def _map(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    m = obj.get(key)
    return m if isinstance(m, Mapping) else {}


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _map(obj, "metadata")


def _str(obj: Mapping[str, Any], key: str) -> str:
    v = obj.get(key)
    return v if isinstance(v, str) else ""


def _applies_to_user(user: UserInfo, subject: Mapping[str, Any], namespace: str) -> bool:
    """``pkg/registry/rbac/validation/rule.go: appliesToUser``."""
    kind, name = _str(subject, "kind"), _str(subject, "name")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        # default the namespace to the binding's (request's) namespace
        sa_namespace = _str(subject, "namespace") or namespace
        if not sa_namespace:
            return False
        # serviceaccount.MatchesUsername
        return user.name == f"{SERVICE_ACCOUNT_USERNAME_PREFIX}{sa_namespace}:{name}"
    return False


def _describe_subject(subject: Mapping[str, Any], binding_namespace: str) -> str:
    # rule.go: describeSubject
    kind, name = _str(subject, "kind"), _str(subject, "name")
    if kind == "ServiceAccount":
        return f"{kind} {go_quote(name + '/' + (_str(subject, 'namespace') or binding_namespace))}"
    return f"{kind} {go_quote(name)}"


def _subjects(binding: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    subjects = binding.get("subjects")
    if not isinstance(subjects, list):
        return []
    return [s for s in subjects if isinstance(s, Mapping)]


def _rules_of(role: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rules = role.get("rules")
    if not isinstance(rules, list):
        return []
    return [r for r in rules if isinstance(r, Mapping)]


def _not_found_message(resource: str, name: str) -> str:
    # client-go listers: errors.NewNotFound(v1.Resource("role"), name)
    return f"{resource}.{RBAC_GROUP} {go_quote(name)} not found"


Lister = Callable[[str], Iterable[Mapping[str, Any]]]
_Visit = tuple[str, Mapping[str, Any]] | str  # (source description, rule) or a resolution error


class RBACAuthorizer:
    """The apiserver's authorizer chain as far as kubesim needs it: ``system:masters`` is always
    allowed (``authorizerfactory.NewPrivilegedGroups``), everything else is decided by RBAC
    (``plugin/pkg/auth/authorizer/rbac/rbac.go: RBACAuthorizer``). Nothing is cached: every call
    reads the current objects through ``lister``, so RBAC changes apply at once (upstream applies
    them as soon as its informers see them)."""

    def __init__(self, lister: Lister) -> None:
        self._lister = lister

    # -- rule resolution (pkg/registry/rbac/validation/rule.go: DefaultRuleResolver) -----------

    def _role_reference_rules(
        self, role_ref: Mapping[str, Any], binding_namespace: str, cluster_roles: dict[str, Mapping[str, Any]]
    ) -> list[Mapping[str, Any]] | str:
        """``GetRoleReferenceRules``: the referenced role's rules, or the error message."""
        kind, name = _str(role_ref, "kind"), _str(role_ref, "name")
        if kind == "Role":
            for role in self._lister("roles"):
                meta = _meta(role)
                if (
                    binding_namespace
                    and meta.get("namespace") == binding_namespace
                    and meta.get("name") == name
                ):
                    return _rules_of(role)
            return _not_found_message("role", name)
        if kind == "ClusterRole":
            if not cluster_roles:
                for cr in self._lister("clusterroles"):
                    cluster_roles[_str(_meta(cr), "name")] = cr
            found = cluster_roles.get(name)
            if found is None:
                return _not_found_message("clusterrole", name)
            return _rules_of(found)
        return f"unsupported role reference kind: {go_quote(kind)}"

    def visit_rules_for(self, user: UserInfo, namespace: str) -> Iterator[_Visit]:
        """``DefaultRuleResolver.VisitRulesFor``: every rule that applies to ``user`` in
        ``namespace`` with its source description, and every resolution error, lazily."""
        cluster_roles: dict[str, Mapping[str, Any]] = {}
        for crb in self._lister("clusterrolebindings"):
            subject = next((s for s in _subjects(crb) if _applies_to_user(user, s, "")), None)
            if subject is None:
                continue
            role_ref = _map(crb, "roleRef")
            rules = self._role_reference_rules(role_ref, "", cluster_roles)
            if isinstance(rules, str):
                yield rules
                continue
            source = (
                f"ClusterRoleBinding {go_quote(_str(_meta(crb), 'name'))} of {_str(role_ref, 'kind')} "
                f"{go_quote(_str(role_ref, 'name'))} to {_describe_subject(subject, '')}"
            )
            for rule in rules:
                yield (source, rule)
        if not namespace:
            return
        for rb in self._lister("rolebindings"):
            meta = _meta(rb)
            if meta.get("namespace") != namespace:
                continue
            subject = next((s for s in _subjects(rb) if _applies_to_user(user, s, namespace)), None)
            if subject is None:
                continue
            role_ref = _map(rb, "roleRef")
            rules = self._role_reference_rules(role_ref, namespace, cluster_roles)
            if isinstance(rules, str):
                yield rules
                continue
            source = (
                f"RoleBinding {go_quote(_str(meta, 'name') + '/' + namespace)} of {_str(role_ref, 'kind')} "
                f"{go_quote(_str(role_ref, 'name'))} to {_describe_subject(subject, namespace)}"
            )
            for rule in rules:
                yield (source, rule)

    # -- decisions -------------------------------------------------------------------------

    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        """``(allowed, reason)``. Allowed reasons read ``RBAC: allowed by ClusterRoleBinding ...``;
        a denial's reason is empty unless a binding's role could not be resolved, then
        ``RBAC: <aggregated errors>`` as ``RBACAuthorizer.Authorize`` words it."""
        if SYSTEM_PRIVILEGED_GROUP in attrs.user.groups:
            # authorizerfactory/builtin.go: privilegedGroupAuthorizer allows with no reason
            return True, ""
        errors: list[str] = []
        for item in self.visit_rules_for(attrs.user, attrs.namespace):
            if isinstance(item, str):
                errors.append(item)
                continue
            source, rule = item
            if rule_allows(attrs, rule):
                return True, f"RBAC: allowed by {source}"
        if errors:
            return False, f"RBAC: {_aggregate_message(errors)}"
        return False, ""

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[JSON], list[JSON], str]:
        """``RBACAuthorizer.RulesFor``: (resource rules, non-resource rules, evaluation error) in the
        ``SubjectRulesReviewStatus`` shapes (``ResourceRule`` / ``NonResourceRule``)."""
        resource_rules: list[JSON] = []
        non_resource_rules: list[JSON] = []
        errors: list[str] = []
        for item in self.visit_rules_for(user, namespace):
            if isinstance(item, str):
                errors.append(item)
                continue
            rule = item[1]
            if _strs(rule, "resources"):
                rr: JSON = {"verbs": _strs(rule, "verbs")}
                for key in ("apiGroups", "resources", "resourceNames"):
                    if _strs(rule, key):
                        rr[key] = _strs(rule, key)
                resource_rules.append(rr)
            if _strs(rule, "nonResourceURLs"):
                non_resource_rules.append(
                    {"verbs": _strs(rule, "verbs"), "nonResourceURLs": _strs(rule, "nonResourceURLs")}
                )
        return resource_rules, non_resource_rules, _aggregate_message(errors)


# --------------------------------------------------------------------------------------------
# The 403 response
# --------------------------------------------------------------------------------------------


def forbidden_message(attrs: Attributes) -> str:
    """``responsewriters/errors.go: forbiddenMessage``."""
    user = go_quote(attrs.user.name)
    if not attrs.resource_request:
        return f"User {user} cannot {attrs.verb} path {go_quote(attrs.path)}"
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    head = f"User {user} cannot {attrs.verb} resource {go_quote(resource)} in API group {go_quote(attrs.api_group)}"
    if attrs.namespace:
        return f"{head} in the namespace {go_quote(attrs.namespace)}"
    return f"{head} at the cluster scope"


def forbidden_error(attrs: Attributes, reason: str = "") -> StatusError:
    """The 403 ``Status`` the apiserver sends for a denied request
    (``responsewriters/errors.go: Forbidden``): the HTML-sanitised ``forbiddenMessage``, then
    ``: <reason>`` when the authorizer gave one, wrapped by ``apierrors.NewForbidden`` on the
    request's group and resource (no subresource) and name."""
    msg = forbidden_message(attrs).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    err_msg = f"{msg}: {reason}" if reason else msg
    if not attrs.api_group and not attrs.resource:
        # schema.GroupResource{}.Empty(): "forbidden: ..."; every details field is omitempty
        return StatusError(403, "Forbidden", f"forbidden: {err_msg}", {})
    err = forbidden(attrs.resource, attrs.api_group, attrs.name, err_msg)
    err.details = {k: v for k, v in (err.details or {}).items() if v}
    return err


# --------------------------------------------------------------------------------------------
# Reviews (authorization.k8s.io/v1)
# --------------------------------------------------------------------------------------------


def _invalid_value(path: str, value: Any, detail: str) -> Cause:
    # field.Invalid(...).Error(): strings as %q, nil as null, structs as JSON
    if isinstance(value, str):
        shown = go_quote(value)
    else:
        shown = json.dumps(value, separators=(",", ":"), sort_keys=False)
    return Cause("FieldValueInvalid", f"{path}: Invalid value: {shown}: {detail}", path)


def _validate_access_review_spec(spec: Mapping[str, Any], *, require_subject: bool) -> list[Cause]:
    """``pkg/apis/authorization/validation/validation.go``: ``ValidateSubjectAccessReviewSpec`` /
    ``ValidateSelfSubjectAccessReviewSpec``."""
    causes: list[Cause] = []
    res, nonres = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if res is not None and nonres is not None:
        causes.append(
            _invalid_value(
                "spec.nonResourceAttributes",
                nonres,
                "cannot be specified in combination with resourceAttributes",
            )
        )
    if res is None and nonres is None:
        causes.append(
            _invalid_value(
                "spec.resourceAttributes",
                None,
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )
        )
    if require_subject and not spec.get("user") and not spec.get("groups"):
        causes.append(
            _invalid_value("spec.user", _str(spec, "user"), "at least one of user or group must be specified")
        )
    return causes


def _attributes_from_spec(spec: Mapping[str, Any], user: UserInfo) -> Attributes:
    """``pkg/registry/authorization/util/helpers.go``: ``ResourceAttributesFrom`` /
    ``NonResourceAttributesFrom``."""
    res = spec.get("resourceAttributes")
    if isinstance(res, Mapping):
        return Attributes(
            user=user,
            verb=_str(res, "verb"),
            namespace=_str(res, "namespace"),
            api_group=_str(res, "group"),
            api_version=_str(res, "version") or "*",  # matchAllVersionIfEmpty
            resource=_str(res, "resource"),
            subresource=_str(res, "subresource"),
            name=_str(res, "name"),
            resource_request=True,
        )
    nonres = spec.get("nonResourceAttributes")
    nonres = nonres if isinstance(nonres, Mapping) else {}
    return Attributes(user=user, verb=_str(nonres, "verb"), path=_str(nonres, "path"), resource_request=False)


def _review_status(authz: RBACAuthorizer, attrs: Attributes) -> JSON:
    # subjectaccessreview/rest.go: Status{Allowed, Denied (never: RBAC only says NoOpinion), Reason}
    allowed, reason = authz.authorize(attrs)
    status: JSON = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return status


def subject_access_review(authz: RBACAuthorizer, spec: Mapping[str, Any]) -> JSON:
    """The ``status`` of a ``SubjectAccessReview`` (also ``LocalSubjectAccessReview``) with this
    ``spec``; raises the 422 ``Invalid`` that ``subjectaccessreview/rest.go: Create`` returns for a
    bad spec."""
    causes = _validate_access_review_spec(spec, require_subject=True)
    if causes:
        raise invalid("SubjectAccessReview", "authorization.k8s.io", "", causes)
    groups = spec.get("groups")
    user = UserInfo(
        name=_str(spec, "user"),
        groups=tuple(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else (),
        uid=_str(spec, "uid"),
    )
    return _review_status(authz, _attributes_from_spec(spec, user))


def self_subject_access_review(authz: RBACAuthorizer, spec: Mapping[str, Any], user: UserInfo) -> JSON:
    """The ``status`` of a ``SelfSubjectAccessReview`` by ``user`` (what ``kubectl auth can-i``
    sends; ``selfsubjectaccessreview/rest.go: Create``)."""
    causes = _validate_access_review_spec(spec, require_subject=False)
    if causes:
        raise invalid("SelfSubjectAccessReview", "authorization.k8s.io", "", causes)
    return _review_status(authz, _attributes_from_spec(spec, user))


def self_subject_rules_review(authz: RBACAuthorizer, spec: Mapping[str, Any], user: UserInfo) -> JSON:
    """The ``status`` of a ``SelfSubjectRulesReview`` (``kubectl auth can-i --list``;
    ``selfsubjectrulesreview/rest.go: Create``)."""
    namespace = _str(spec, "namespace")
    if not namespace:
        raise bad_request("no namespace on request")
    resource_rules, non_resource_rules, error = authz.rules_for(user, namespace)
    status: JSON = {
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": False,
    }
    if error:
        status["evaluationError"] = error
    return status


def self_subject_review_status(user: UserInfo) -> JSON:
    """The ``status`` of an ``authentication.k8s.io/v1`` ``SelfSubjectReview`` (``kubectl auth whoami``)."""
    info: JSON = {"username": user.name}
    if user.uid:
        info["uid"] = user.uid
    if user.groups:
        info["groups"] = list(user.groups)
    if user.extra:
        info["extra"] = {k: list(v) for k, v in user.extra}
    return {"userInfo": info}


# --------------------------------------------------------------------------------------------
# Impersonation (endpoints/filters/impersonation.go)
# --------------------------------------------------------------------------------------------

# k8s.io/api/authentication/v1/types.go
IMPERSONATE_USER_HEADER = "Impersonate-User"
IMPERSONATE_UID_HEADER = "Impersonate-Uid"
IMPERSONATE_GROUP_HEADER = "Impersonate-Group"
IMPERSONATE_USER_EXTRA_HEADER_PREFIX = "Impersonate-Extra-"
AUTHENTICATION_GROUP = "authentication.k8s.io"


@dataclass(frozen=True)
class ImpersonationRequest:
    """One ``v1.ObjectReference`` of ``buildImpersonationRequests``."""

    kind: str  # ServiceAccount, User, Group, UserExtra or UID
    name: str
    namespace: str = ""
    api_version: str = ""
    field_path: str = ""

    def go_string(self) -> str:
        # fmt %v of a v1.ObjectReference: its seven fields, space separated, in braces
        fields = (self.kind, self.namespace, self.name, "", self.api_version, "", self.field_path)
        return "{" + " ".join(fields) + "}"


class ImpersonationError(Exception):
    """``buildImpersonationRequests`` failed: the filter answers with
    ``responsewriters.InternalError`` (a plain-text 500)."""


def split_service_account_username(username: str) -> tuple[str, str] | None:
    """``serviceaccount.SplitUsername``: (namespace, name) of ``system:serviceaccount:NS:NAME``
    when both parts are valid names, else None."""
    from .meta import is_dns1123_label, is_dns1123_subdomain

    if not username.startswith(SERVICE_ACCOUNT_USERNAME_PREFIX):
        return None
    parts = username[len(SERVICE_ACCOUNT_USERNAME_PREFIX) :].split(":")
    if len(parts) != 2:
        return None
    namespace, name = parts
    if not namespace or is_dns1123_label(namespace) or not name or is_dns1123_subdomain(name):
        return None
    return namespace, name


def _path_unescape(s: str) -> str | None:
    """``url.PathUnescape``; None for a malformed escape."""
    out = bytearray()
    i = 0
    raw = s.encode("utf-8", "surrogateescape")
    hexdigits = b"0123456789abcdefABCDEF"
    while i < len(raw):
        c = raw[i]
        if c == ord("%"):
            if i + 2 >= len(raw):
                return None
            if raw[i + 1] not in hexdigits or raw[i + 2] not in hexdigits:
                return None
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(c)
            i += 1
    return out.decode("utf-8", "surrogateescape")


def impersonation_requests(headers: Sequence[tuple[str, str]]) -> list[ImpersonationRequest]:
    """``buildImpersonationRequests`` over the request's headers (name, value) in order:
    the user (a ServiceAccount when the name splits as one), each group, each extra value
    (``Impersonate-Extra-<key>``, the key lower-cased and path-unescaped), then the uid. Groups,
    extras or a uid without a user raise :class:`ImpersonationError`."""
    requests: list[ImpersonationRequest] = []
    lower = [(k.lower(), v) for k, v in headers]
    user = next((v for k, v in lower if k == IMPERSONATE_USER_HEADER.lower()), "")
    has_user = bool(user)
    if has_user:
        sa = split_service_account_username(user)
        if sa is not None:
            requests.append(ImpersonationRequest("ServiceAccount", sa[1], namespace=sa[0]))
        else:
            requests.append(ImpersonationRequest("User", user))
    groups = [v for k, v in lower if k == IMPERSONATE_GROUP_HEADER.lower()]
    for group in groups:
        requests.append(ImpersonationRequest("Group", group))
    prefix = IMPERSONATE_USER_EXTRA_HEADER_PREFIX.lower()
    has_extra = False
    for k, v in lower:
        if not k.startswith(prefix):
            continue
        has_extra = True
        encoded = k[len(prefix) :]
        key = _path_unescape(encoded)
        requests.append(
            ImpersonationRequest(
                "UserExtra",
                v,
                api_version=f"{AUTHENTICATION_GROUP}/v1",
                field_path=key if key is not None else encoded,
            )
        )
    uid = next((v for k, v in lower if k == IMPERSONATE_UID_HEADER.lower()), "")
    if uid:
        requests.append(ImpersonationRequest("UID", uid, api_version=f"{AUTHENTICATION_GROUP}/v1"))
    if (groups or has_extra or uid) and not has_user:
        listed = "[" + " ".join(r.go_string() for r in requests) + "]"
        raise ImpersonationError(f"requested {listed} without impersonating a user")
    return requests


def impersonation_attributes(requestor: UserInfo, req: ImpersonationRequest) -> Attributes:
    """The ``impersonate`` check ``WithImpersonation`` makes for one request: ``users``,
    ``groups`` and ``serviceaccounts`` (in the account's namespace) in the core group,
    ``userextras/<key>`` and ``uids`` in ``authentication.k8s.io``."""
    if req.kind == "ServiceAccount":
        return Attributes(requestor, "impersonate", req.namespace, "", "", "serviceaccounts", "", req.name)
    if req.kind == "User":
        return Attributes(requestor, "impersonate", "", "", "", "users", "", req.name)
    if req.kind == "Group":
        return Attributes(requestor, "impersonate", "", "", "", "groups", "", req.name)
    if req.kind == "UserExtra":
        return Attributes(
            requestor, "impersonate", "", AUTHENTICATION_GROUP, "v1", "userextras", req.field_path, req.name
        )
    return Attributes(requestor, "impersonate", "", AUTHENTICATION_GROUP, "v1", "uids", "", req.name)


def impersonated_user(requests: Sequence[ImpersonationRequest], groups_specified: bool) -> UserInfo:
    """The user ``WithImpersonation`` puts in the request once every impersonation is allowed:
    a service account gets its fixed groups unless groups were given; every user but
    ``system:anonymous`` gets ``system:authenticated`` (unless ``system:authenticated`` or
    ``system:unauthenticated`` was asked for), ``system:anonymous`` gets
    ``system:unauthenticated``."""
    username = ""
    groups: list[str] = []
    extra: dict[str, list[str]] = {}
    uid = ""
    for r in requests:
        if r.kind == "ServiceAccount":
            username = f"{SERVICE_ACCOUNT_USERNAME_PREFIX}{r.namespace}:{r.name}"
            if not groups_specified:
                groups = [ALL_SERVICE_ACCOUNTS_GROUP, f"{SERVICE_ACCOUNT_GROUP_PREFIX}{r.namespace}"]
        elif r.kind == "User":
            username = r.name
        elif r.kind == "Group":
            groups.append(r.name)
        elif r.kind == "UserExtra":
            extra.setdefault(r.field_path, []).append(r.name)
        elif r.kind == "UID":
            uid = r.name
    if username != ANONYMOUS_USER:
        if not any(g in (ALL_AUTHENTICATED, ALL_UNAUTHENTICATED) for g in groups):
            groups.append(ALL_AUTHENTICATED)
    elif ALL_UNAUTHENTICATED not in groups:
        groups.append(ALL_UNAUTHENTICATED)
    return UserInfo(username, tuple(groups), uid, tuple((k, tuple(v)) for k, v in extra.items()))


# --------------------------------------------------------------------------------------------
# Bootstrap policy
# --------------------------------------------------------------------------------------------

_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]
_READ_WRITE = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _rule(verbs: list[str], groups: list[str], resources: list[str], names: list[str] | None = None) -> JSON:
    r: JSON = {"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)}
    if names:
        r["resourceNames"] = list(names)
    return r


def _url_rule(verbs: list[str], urls: list[str]) -> JSON:
    return {"verbs": list(verbs), "nonResourceURLs": list(urls)}


AGGREGATE_TO_ADMIN = "rbac.authorization.k8s.io/aggregate-to-admin"
AGGREGATE_TO_EDIT = "rbac.authorization.k8s.io/aggregate-to-edit"
AGGREGATE_TO_VIEW = "rbac.authorization.k8s.io/aggregate-to-view"


def _bootstrap_cluster_roles() -> list[tuple[str, dict[str, str], JSON | None, list[JSON]]]:
    """(name, extra labels, aggregationRule, rules) as in bootstrappolicy ``testdata/cluster-roles.yaml``."""

    def agg(label: str) -> JSON:
        return {"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]}

    return [
        ("admin", {}, agg(AGGREGATE_TO_ADMIN), []),
        ("cluster-admin", {}, None, [_rule(["*"], ["*"], ["*"]), _url_rule(["*"], ["*"])]),
        ("edit", {AGGREGATE_TO_ADMIN: "true"}, agg(AGGREGATE_TO_EDIT), []),
        (
            "system:aggregate-to-admin",
            {AGGREGATE_TO_ADMIN: "true"},
            None,
            [
                _rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
                _rule(_READ_WRITE, [RBAC_GROUP], ["rolebindings", "roles"]),
            ],
        ),
        (
            "system:aggregate-to-edit",
            {AGGREGATE_TO_EDIT: "true"},
            None,
            [
                _rule(
                    _READ,
                    [""],
                    [
                        "pods/attach",
                        "pods/exec",
                        "pods/portforward",
                        "pods/proxy",
                        "secrets",
                        "services/proxy",
                    ],
                ),
                _rule(["impersonate"], [""], ["serviceaccounts"]),
                _rule(_WRITE, [""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
                _rule(["create"], [""], ["pods/eviction"]),
                _rule(
                    _WRITE,
                    [""],
                    [
                        "configmaps",
                        "events",
                        "persistentvolumeclaims",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "secrets",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                    ],
                ),
                _rule(["create"], [""], ["serviceaccounts/token"]),
                _rule(
                    _WRITE,
                    ["apps"],
                    [
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/scale",
                    ],
                ),
                _rule(_WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
                _rule(_WRITE, ["batch"], ["cronjobs", "jobs"]),
                _rule(
                    _WRITE,
                    ["extensions"],
                    [
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "ingresses",
                        "networkpolicies",
                        "replicasets",
                        "replicasets/scale",
                        "replicationcontrollers/scale",
                    ],
                ),
                _rule(_WRITE, ["policy"], ["poddisruptionbudgets"]),
                _rule(_WRITE, ["networking.k8s.io"], ["ingresses", "networkpolicies"]),
                _rule(_READ_WRITE, ["coordination.k8s.io"], ["leases"]),
            ],
        ),
        (
            "system:aggregate-to-view",
            {AGGREGATE_TO_VIEW: "true"},
            None,
            [
                _rule(
                    _READ,
                    [""],
                    [
                        "configmaps",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                    ],
                ),
                _rule(
                    _READ,
                    [""],
                    [
                        "bindings",
                        "events",
                        "limitranges",
                        "namespaces/status",
                        "pods/log",
                        "pods/status",
                        "replicationcontrollers/status",
                        "resourcequotas",
                        "resourcequotas/status",
                    ],
                ),
                _rule(_READ, [""], ["namespaces"]),
                _rule(_READ, ["discovery.k8s.io"], ["endpointslices"]),
                _rule(
                    _READ,
                    ["apps"],
                    [
                        "controllerrevisions",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "statefulsets",
                        "statefulsets/scale",
                        "statefulsets/status",
                    ],
                ),
                _rule(
                    _READ, ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]
                ),
                _rule(_READ, ["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
                _rule(
                    _READ,
                    ["extensions"],
                    [
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "ingresses",
                        "ingresses/status",
                        "networkpolicies",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "replicationcontrollers/scale",
                    ],
                ),
                _rule(_READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
                _rule(_READ, ["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"]),
            ],
        ),
        (
            "system:basic-user",
            {},
            None,
            [
                _rule(
                    ["create"],
                    ["authorization.k8s.io"],
                    ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                _rule(["create"], ["authentication.k8s.io"], ["selfsubjectreviews"]),
            ],
        ),
        (
            "system:discovery",
            {},
            None,
            [
                _url_rule(
                    ["get"],
                    [
                        "/api",
                        "/api/*",
                        "/apis",
                        "/apis/*",
                        "/healthz",
                        "/livez",
                        "/openapi",
                        "/openapi/*",
                        "/readyz",
                        "/version",
                        "/version/",
                    ],
                )
            ],
        ),
        (
            "system:public-info-viewer",
            {},
            None,
            [_url_rule(["get"], ["/healthz", "/livez", "/readyz", "/version", "/version/"])],
        ),
        ("view", {AGGREGATE_TO_EDIT: "true"}, agg(AGGREGATE_TO_VIEW), []),
    ]


# bootstrappolicy/policy.go: ClusterRoleBindings() (the ones that bind the roles above)
_BOOTSTRAP_BINDINGS: list[tuple[str, list[str]]] = [
    ("cluster-admin", [SYSTEM_PRIVILEGED_GROUP]),
    ("system:basic-user", [ALL_AUTHENTICATED]),
    ("system:discovery", [ALL_AUTHENTICATED]),
    ("system:public-info-viewer", [ALL_AUTHENTICATED, ALL_UNAUTHENTICATED]),
]

_BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
_BOOTSTRAP_ANNOTATIONS = {"rbac.authorization.kubernetes.io/autoupdate": "true"}


def _selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """``metav1.LabelSelectorAsSelector(selector).Matches(labels)``. A selector that does not
    convert (unknown operator) matches nothing here; upstream the sync fails and nothing changes."""
    match_labels = selector.get("matchLabels") or {}
    if not isinstance(match_labels, Mapping):
        return False
    for k, v in match_labels.items():
        if labels.get(k) != v:
            return False
    exprs = selector.get("matchExpressions") or []
    if not isinstance(exprs, list):
        return False
    for e in exprs:
        if not isinstance(e, Mapping):
            return False
        key, op = _str(e, "key"), _str(e, "operator")
        values = _strs(e, "values")
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            return False
        if not ok:
            return False
    return True


def _normalized_rule(rule: Mapping[str, Any]) -> tuple[tuple[str, ...], ...]:
    # equality.Semantic.DeepEqual treats nil and empty slices alike
    return tuple(
        tuple(_strs(rule, k)) for k in ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs")
    )


def aggregate_cluster_roles(cluster_roles: Sequence[Mapping[str, Any]]) -> dict[str, list[JSON]]:
    """The rules the ClusterRole aggregation controller converges to for every ClusterRole with an
    ``aggregationRule`` (``clusterroleaggregation_controller.go: syncClusterRole``, iterated to a
    fixed point): for each selector in order, the matching roles sorted by name (skipping the role
    itself), their rules appended unless an equal rule is already there. Returns name -> rules
    for the aggregated roles only; the caller stores them."""
    labels: dict[str, Mapping[str, str]] = {}
    rules: dict[str, list[JSON]] = {}
    aggregated: dict[str, list[Mapping[str, Any]]] = {}
    for cr in cluster_roles:
        name = _str(_meta(cr), "name")
        lab = _meta(cr).get("labels")
        labels[name] = lab if isinstance(lab, Mapping) else {}
        rules[name] = [dict(r) for r in _rules_of(cr)]
        agg = cr.get("aggregationRule")
        if isinstance(agg, Mapping):
            sels = agg.get("clusterRoleSelectors")
            aggregated[name] = [s for s in sels if isinstance(s, Mapping)] if isinstance(sels, list) else []
    names = sorted(rules)
    for _ in range(len(aggregated) + 1):
        changed = False
        for target, selectors in aggregated.items():
            new_rules: list[JSON] = []
            seen: set[tuple[tuple[str, ...], ...]] = set()
            for selector in selectors:
                for name in names:
                    if name == target or not _selector_matches(selector, labels[name]):
                        continue
                    for r in rules[name]:
                        key = _normalized_rule(r)
                        if key not in seen:
                            seen.add(key)
                            new_rules.append(dict(r))
            if [_normalized_rule(r) for r in new_rules] != [_normalized_rule(r) for r in rules[target]]:
                rules[target] = new_rules
                changed = True
        if not changed:
            break
    return {name: rules[name] for name in aggregated}


def bootstrap_policy() -> list[JSON]:
    """The default ClusterRoles and ClusterRoleBindings of ``bootstrappolicy/policy.go`` that matter
    to kubesim: ``cluster-admin``, ``admin``/``edit``/``view`` (with their ``aggregationRule`` and
    the rules the aggregation controller fills in from ``system:aggregate-to-*``, which are
    included too), ``system:discovery``, ``system:basic-user``, ``system:public-info-viewer``, and
    their bindings. Every object carries the ``kubernetes.io/bootstrapping: rbac-defaults`` label
    and the ``rbac.authorization.kubernetes.io/autoupdate: "true"`` annotation
    (``addDefaultMetadata``). Server-set metadata (uid, resourceVersion, timestamps) is left to
    the caller."""
    roles: list[JSON] = []
    for name, extra_labels, aggregation_rule, rules in _bootstrap_cluster_roles():
        role: JSON = {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": name,
                "labels": {**_BOOTSTRAP_LABELS, **extra_labels},
                "annotations": dict(_BOOTSTRAP_ANNOTATIONS),
            },
            "rules": rules,
        }
        if aggregation_rule is not None:
            role["aggregationRule"] = aggregation_rule
        roles.append(role)
    for name, agg_rules in aggregate_cluster_roles(roles).items():
        next(r for r in roles if r["metadata"]["name"] == name)["rules"] = agg_rules
    bindings: list[JSON] = [
        {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {
                "name": name,
                "labels": dict(_BOOTSTRAP_LABELS),
                "annotations": dict(_BOOTSTRAP_ANNOTATIONS),
            },
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": g} for g in groups],
        }
        for name, groups in _BOOTSTRAP_BINDINGS
    ]
    return roles + bindings


# --------------------------------------------------------------------------------------------
# Bearer tokens
# --------------------------------------------------------------------------------------------

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# pkg/apis/authentication/v1/defaults.go: SetDefaults_TokenRequestSpec (one hour)
DEFAULT_EXPIRATION_SECONDS = 60 * 60
# go-jose jwt.DefaultLeeway, which Claims.Validate applies to exp/nbf/iat and claims.go to deletion
LEEWAY_SECONDS = 60


class TokenInvalid(Exception):
    """A bearer token that does not authenticate; the message says why (upstream logs it and
    answers a bare 401 ``Unauthorized``)."""


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None when there is none
    (``bearertoken.go: Authenticator.AuthenticateRequest``). A request whose header carries a
    token that fails to authenticate gets 401; one with no token goes on as anonymous."""
    auth = (authorization or "").strip()
    if not auth:
        return None
    parts = auth.split(" ", 2)
    if len(parts) < 2 or parts[0].lower() != "bearer":
        return None
    return parts[1] or None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(s: str) -> bytes:
    # JWS compact serialization: unpadded base64url (RFC 7515 section 2); anything else is rejected
    if not s or "=" in s or any(c not in _B64URL_ALPHABET for c in s):
        raise TokenInvalid("malformed token segment")
    try:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError) as e:
        raise TokenInvalid("malformed token segment") from e


_B64URL_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _parse_rfc3339(value: str) -> float | None:
    try:
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class TokenAuthority:
    """Issues and checks bearer tokens: one static admin token (like a ``--token-auth-file``
    entry) and stateless service-account tokens shaped like the bound tokens ``TokenRequest``
    returns (``pkg/serviceaccount/claims.go: Claims``), signed HS256 with a key derived from
    ``secret``. ``clock`` returns Unix seconds (tests inject one)."""

    def __init__(
        self, secret: bytes, *, issuer: str = DEFAULT_ISSUER, clock: Callable[[], float] = time.time
    ) -> None:
        if not secret:
            raise ValueError("TokenAuthority needs a non-empty secret")
        self.issuer = issuer
        self.audiences: tuple[str, ...] = (issuer,)  # --api-audiences defaults to the issuer
        self._clock = clock
        self._signing_key = hmac.new(secret, b"kubesim/service-account-token/v1", hashlib.sha256).digest()
        admin_mac = hmac.new(secret, b"kubesim/admin-token/v1", hashlib.sha256).digest()
        self._admin_token = f"{ADMIN_USER}.{_b64url(admin_mac)}"
        self._kid = _b64url(hashlib.sha256(b"kid:" + self._signing_key).digest()[:18])

    # -- admin ---------------------------------------------------------------------------------

    def admin_token(self) -> str:
        return self._admin_token

    @staticmethod
    def admin_user() -> UserInfo:
        return UserInfo(ADMIN_USER, (SYSTEM_PRIVILEGED_GROUP, ALL_AUTHENTICATED))

    # -- service accounts ----------------------------------------------------------------------

    def _sign(self, signing_input: bytes) -> bytes:
        return hmac.new(self._signing_key, signing_input, hashlib.sha256).digest()

    def issue_service_account_token(
        self,
        namespace: str,
        name: str,
        sa_uid: str,
        expiration_seconds: int | None = None,
        *,
        audiences: Sequence[str] | None = None,
    ) -> str:
        """A token for ServiceAccount ``namespace/name`` with uid ``sa_uid``, valid for
        ``expiration_seconds`` (default one hour, as ``TokenRequestSpec`` defaults; the
        ``TokenRequest`` handler, not this, enforces upstream's 10-minute minimum)."""
        if not namespace or not name or not sa_uid:
            raise ValueError("namespace, name and sa_uid are required")
        seconds = DEFAULT_EXPIRATION_SECONDS if expiration_seconds is None else int(expiration_seconds)
        if seconds <= 0:
            raise ValueError("expiration_seconds must be positive")
        now = int(self._clock())
        claims: JSON = {
            "aud": list(audiences) if audiences else list(self.audiences),
            "exp": now + seconds,
            "iat": now,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": sa_uid}},
            "nbf": now,
            "sub": f"{SERVICE_ACCOUNT_USERNAME_PREFIX}{namespace}:{name}",
        }
        header = {"alg": "HS256", "kid": self._kid}
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        )
        return signing_input + "." + _b64url(self._sign(signing_input.encode("ascii")))

    def claims(self, token: str) -> JSON:
        """The claims of a token this authority signed (signature checked, nothing else);
        raises :class:`TokenInvalid`."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenInvalid("not a JWT")
        header_raw, payload_raw, signature = (_b64url_decode(p) for p in parts)
        try:
            header = json.loads(header_raw)
        except ValueError as e:
            raise TokenInvalid("malformed token header") from e
        # only our own algorithm: never "none", never a downgrade
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            raise TokenInvalid("unexpected signing algorithm")
        expected = self._sign(f"{parts[0]}.{parts[1]}".encode("ascii"))
        if not hmac.compare_digest(signature, expected):
            raise TokenInvalid("invalid signature")
        try:
            payload = json.loads(payload_raw)
        except ValueError as e:
            raise TokenInvalid("malformed claims") from e
        if not isinstance(payload, dict):
            raise TokenInvalid("malformed claims")
        return payload

    def verify(self, token: str, sa_lookup: Callable[[str, str], Mapping[str, Any] | None]) -> UserInfo:
        """Authenticate ``token`` or raise :class:`TokenInvalid`. Service-account tokens are
        checked as ``pkg/serviceaccount/jwt.go`` and ``claims.go: validator.Validate`` do:
        signature, issuer, audience, ``exp``/``nbf``/``iat`` with the 60 s leeway, then the
        ServiceAccount must still exist (``sa_lookup(namespace, name)``), not be deleted, and
        have the uid in the token."""
        if hmac.compare_digest(token.encode("utf-8", "surrogateescape"), self._admin_token.encode("ascii")):
            return self.admin_user()
        claims = self.claims(token)
        if claims.get("iss") != self.issuer:
            raise TokenInvalid("token issuer is not this server")
        aud = claims.get("aud")
        token_auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if not any(a in self.audiences for a in token_auds):
            raise TokenInvalid("token audiences is invalid for the current authenticator")
        now = self._clock()
        exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise TokenInvalid(
                "service account token has no expiry"
            )  # stricter: bound tokens always have one
        if now - LEEWAY_SECONDS > exp:
            raise TokenInvalid("service account token has expired")
        if isinstance(nbf, int | float) and now + LEEWAY_SECONDS < nbf:
            raise TokenInvalid("service account token is not valid yet")
        if isinstance(iat, int | float) and now + LEEWAY_SECONDS < iat:
            raise TokenInvalid("service account token is issued in the future")
        private = _map(claims, "kubernetes.io")
        namespace = _str(private, "namespace")
        sa_ref = _map(private, "serviceaccount")
        name, uid = _str(sa_ref, "name"), _str(sa_ref, "uid")
        username = f"{SERVICE_ACCOUNT_USERNAME_PREFIX}{namespace}:{name}"
        if not namespace or not name or not uid or claims.get("sub") != username:
            raise TokenInvalid("service account token claims are incomplete")
        sa = sa_lookup(namespace, name)
        if sa is None:
            raise TokenInvalid(f'serviceaccounts "{name}" not found')
        meta = _meta(sa)
        deleted = meta.get("deletionTimestamp")
        if isinstance(deleted, str):
            when = _parse_rfc3339(deleted)
            if when is None or when < now - LEEWAY_SECONDS:
                raise TokenInvalid(f"service account {namespace}/{name} has been deleted")
        if _str(meta, "uid") != uid:
            raise TokenInvalid(f"service account UID ({_str(meta, 'uid')}) does not match claim ({uid})")
        # k8s.io/apiserver/pkg/authentication/serviceaccount/util.go: ServiceAccountInfo.UserInfo,
        # then the AuthenticatedGroupAdder
        return UserInfo(
            name=username,
            groups=(
                ALL_SERVICE_ACCOUNTS_GROUP,
                f"{SERVICE_ACCOUNT_GROUP_PREFIX}{namespace}",
                ALL_AUTHENTICATED,
            ),
            uid=uid,
        )

    def authenticate(
        self, token: str, sa_lookup: Callable[[str, str], Mapping[str, Any] | None]
    ) -> UserInfo | None:
        """The user ``token`` authenticates as, or None (the server answers 401)."""
        try:
            return self.verify(token, sa_lookup)
        except TokenInvalid:
            return None
