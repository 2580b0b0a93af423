"""The API machinery behind the HTTP endpoints: the generic registry and the type strategies.

``APIServer`` does what ``staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go``
(``Store.Create``, ``Store.Update``, ``Store.Delete``, ``Store.List``) and the handlers in
``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/`` do together with each type's strategy:
decode and field-validate the body, default it, run ``PrepareForCreate``/``PrepareForUpdate``,
validate, admit, check preconditions, and commit to the store. Controllers inside kubesim call
these same methods, so their writes pass the same checks as a client's.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import builtin_schema, crdschema, fieldmanager, gonum, k8sdefs, podsecurity, strategies
from .errors import (
    Cause,
    StatusError,
    already_exists,
    bad_request,
    conflict,
    field_error,
    forbidden,
    gone,
    invalid,
    not_found,
)
from .meta import generate_name, new_uid, now, time_plus, validate_object_meta
from .resources import GROUP_ORDER, ResourceType, builtin_types
from .selectors import (
    check_field_selector,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from .store import JSON, Store, deep_copy

FIELD_VALIDATION = ("Ignore", "Warn", "Strict")
#: Encoded managedFields entries (a module-level alias: ``APIServer.list`` shadows ``list``).
ManagedEntries = list[dict[str, Any]]
CauseList = list[Cause]
CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


#: The User-Agent of kubesim's own controllers, from which their field manager is derived
#: (handlers/create.go: managerOrUserAgent). Upstream they run in kube-controller-manager.
CONTROLLER_USER_AGENT = "kube-controller-manager/v1.37.0 (linux/amd64) kubernetes/kubesim"
KUBELET_USER_AGENT = "kubelet/v1.37.0 (linux/amd64) kubernetes/kubesim"
SCHEDULER_USER_AGENT = "kube-scheduler/v1.37.0 (linux/amd64) kubernetes/kubesim"


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_validation: str = "Warn"
    field_manager: str = ""
    user_agent: str = CONTROLLER_USER_AGENT
    #: PatchOptions.force (None when the request does not set it).
    force: bool | None = None
    #: The subresource a write is recorded under in managedFields when it is not the one the
    #: write goes through (a ``scale`` write is an update of the main resource here).
    record_subresource: str = ""

    @classmethod
    def kubelet(cls) -> WriteOptions:
        return cls(user_agent=KUBELET_USER_AGENT)

    @classmethod
    def scheduler(cls) -> WriteOptions:
        return cls(user_agent=SCHEDULER_USER_AGENT)

    @property
    def internal(self) -> bool:
        """A write by one of kubesim's own components (not over HTTP)."""
        return self.user_agent in (CONTROLLER_USER_AGENT, KUBELET_USER_AGENT, SCHEDULER_USER_AGENT)

    @property
    def manager(self) -> str:
        """handlers/create.go: managerOrUserAgent."""
        return self.field_manager or fieldmanager.manager_from_user_agent(self.user_agent)


@dataclass
class Result:
    obj: JSON
    code: int = 200
    warnings: list[str] = field(default_factory=list)


@dataclass
class ListOptions:
    label_selector: str = ""
    field_selector: str = ""
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


class APIServer:
    def __init__(self, store: Store | None = None) -> None:
        self.store = store or Store()
        self.types: dict[tuple[str, str, str], ResourceType] = {}
        for rt in builtin_types():
            self.types[(rt.group, rt.version, rt.plural)] = rt
        # Hooks controllers add: called after a CRD is established or removed.
        self.on_types_changed: list[Callable[[], None]] = []
        # The cluster's CA (PEM), published in every namespace as the ConfigMap kube-root-ca.crt.
        self.root_ca_pem = ""

    # -- resource types ----------------------------------------------------------------------
    def resource(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self.types.get((group, version, plural))
        if rt is None:
            # handlers: "the server could not find the requested resource"
            raise StatusError(404, "NotFound", "the server could not find the requested resource", {})
        return rt

    def kind_type(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rt in self.types.values():
            if rt.group == group and rt.version == version and rt.kind == kind:
                return rt
        return None

    def groups(self) -> dict[str, list[str]]:
        """Group -> served versions, preferred first, in discovery order."""
        out: dict[str, list[str]] = {}
        for (g, v, _), _rt in self.types.items():
            versions = out.setdefault(g, [])
            if v not in versions:
                versions.append(v)
        for g, versions in out.items():
            pref = self.preferred_version(g)
            versions.sort(key=lambda v: (v != pref, v))
        order = {g: i for i, g in enumerate(GROUP_ORDER)}
        return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))

    def preferred_version(self, group: str) -> str:
        crd_versions: list[str] = []
        for rt in self.types.values():
            if rt.group == group:
                if rt.crd is not None:
                    # apiextensions: the preferred version is the first by kube-aware version order.
                    crd_versions = [v["name"] for v in rt.crd["spec"]["versions"] if v.get("served")]
                    break
                return rt.version
        return sorted(crd_versions, key=version_priority)[0] if crd_versions else ""

    def types_in(self, group: str, version: str) -> list[ResourceType]:
        return [rt for (g, v, _), rt in self.types.items() if g == group and v == version]

    def register_crd(self, crd: JSON) -> None:
        """Serve (or re-serve) the versions a CRD defines (apiextensions-apiserver crdHandler)."""
        spec = crd["spec"]
        names = spec["names"]
        group = spec["group"]
        self.unregister_crd(crd, notify=False)
        subres_any = False
        for ver in spec["versions"]:
            if not ver.get("served"):
                continue
            subs = ver.get("subresources") or {}
            subres_any = subres_any or bool(subs)
            schema = (ver.get("schema") or {}).get("openAPIV3Schema") or {}
            scale = subs.get("scale")
            rt = ResourceType(
                group,
                ver["name"],
                names["kind"],
                names["plural"],
                names.get("singular") or names["kind"].lower(),
                spec["scope"] == "Namespaced",
                tuple(names.get("shortNames") or ()),
                tuple(names.get("categories") or ()),
                status_subresource="status" in subs,
                scale_subresource=dict(scale) if scale is not None else None,
                track_generation=True,
                storage_key=f"{group}/{names['plural']}",
                builtin=False,
                crd=crd,
                schema=schema,
                printer_columns=list(ver.get("additionalPrinterColumns") or []),
                return_deleted_object=True,
            )
            self.types[(group, ver["name"], names["plural"])] = rt
        for fn in self.on_types_changed:
            fn()

    def unregister_crd(self, crd: JSON, notify: bool = True) -> None:
        group = crd["spec"]["group"]
        plural = crd["spec"]["names"]["plural"]
        for key in [k for k in self.types if k[0] == group and k[2] == plural]:
            del self.types[key]
        if notify:
            for fn in self.on_types_changed:
                fn()

    # -- representation ----------------------------------------------------------------------
    def to_external(self, rt: ResourceType, stored: JSON) -> JSON:
        obj = deep_copy(stored)
        if rt.group == "events.k8s.io":
            obj = strategies.core_event_to_events_v1(obj)
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        return obj

    def to_storage(self, rt: ResourceType, obj: JSON) -> JSON:
        if rt.group == "events.k8s.io":
            obj = strategies.events_v1_to_core_event(obj)
            obj["apiVersion"] = "v1"
            return obj
        if rt.crd is not None:
            storage = next(v["name"] for v in rt.crd["spec"]["versions"] if v.get("storage"))
            obj["apiVersion"] = f"{rt.group}/{storage}"
        return obj

    # -- decoding ----------------------------------------------------------------------------
    def decode(
        self, rt: ResourceType, body: Any, opts: WriteOptions, *, old: JSON | None = None
    ) -> tuple[JSON, list[str]]:
        """Check the body's type and kind, then field-validate it; returns (object, warnings)."""
        if not isinstance(body, dict):
            raise bad_request(
                f"the object provided is unrecognized (must be of type {rt.kind}): couldn't get version/kind; json parse error: expected an object"
            )
        api_version = body.get("apiVersion")
        kind = body.get("kind")
        if api_version is not None and api_version != rt.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})"
            )
        if kind is not None and kind != rt.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
        # Numbers as the Go decoder holds them: an int beyond int64 is a float64 (gonum.py).
        obj = gonum.normalize(deep_copy(body))
        if rt.builtin:
            _strip_nulls(obj)  # decoding into a Go struct turns null into the zero value
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        if not isinstance(obj.get("metadata", {}), dict):
            raise bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: metadata must be an object'
            )
        obj.setdefault("metadata", {})
        warnings: list[str] = []
        if rt.builtin:
            schema = k8sdefs.definition(rt.group, rt.version, rt.kind)
            if schema is not None:
                report = builtin_schema.check(obj, schema, rt.kind)
                if report.type_errors:
                    raise bad_request(
                        f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: json: {report.type_errors[0]}'
                    )
                if report.unknown:
                    if opts.field_validation == "Strict":
                        raise bad_request(
                            "strict decoding error: "
                            + ", ".join(f'unknown field "{p}"' for p in report.unknown)
                        )
                    if opts.field_validation == "Warn":
                        warnings.extend(f'unknown field "{p}"' for p in report.unknown)
                    builtin_schema.drop_unknown(obj, schema)
        else:
            assert rt.schema is not None
            meta_unknown = _unknown_meta_fields(obj["metadata"])
            pruned, paths = crdschema.prune(obj, rt.schema)
            paths = [f"metadata.{p}" for p in meta_unknown] + list(paths)
            for p in meta_unknown:
                pruned["metadata"].pop(p, None)
            obj = pruned
            if paths:
                if opts.field_validation == "Strict":
                    raise bad_request(
                        "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in paths)
                    )
                if opts.field_validation == "Warn":
                    warnings.extend(f'unknown field "{p}"' for p in paths)
        bad = gonum.first_non_finite(obj)
        if bad is not None:
            # a literal like 1e400 overflows the float64 the decoder reads it into
            raise bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: json: cannot unmarshal '
                f"number {gonum.literal(bad)} into Go value of type float64"
            )
        return obj, warnings

    # -- reads -------------------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str, name: str) -> JSON:
        stored = self.store.get(rt.storage_key, namespace if rt.namespaced else "", name)
        if stored is None:
            raise not_found(rt.plural, rt.group, name)
        return self.to_external(rt, stored)

    def get_or_none(self, rt: ResourceType, namespace: str, name: str) -> JSON | None:
        stored = self.store.get(rt.storage_key, namespace if rt.namespaced else "", name)
        return self.to_external(rt, stored) if stored is not None else None

    def matcher(self, rt: ResourceType, label_selector: str, field_selector: str) -> Callable[[JSON], bool]:
        lreqs = parse_label_selector(label_selector) if label_selector else []
        freqs = parse_field_selector(field_selector) if field_selector else []
        if freqs:
            supported = {"metadata.name", "metadata.namespace"}
            if rt.selectable_fields is not None:
                supported |= set(rt.selectable_fields({}).keys())
            for c in (rt.crd or {}).get("spec", {}).get("versions", []):
                if c.get("name") == rt.version:
                    for sf in c.get("selectableFields") or []:
                        supported.add(sf["jsonPath"].lstrip("."))
            check_field_selector(freqs, supported, rt.kind, rt.version)

        def match(stored: JSON) -> bool:
            meta = stored["metadata"]
            if lreqs and not labels_match(lreqs, meta.get("labels")):
                return False
            if freqs:
                fields = {"metadata.name": meta["name"], "metadata.namespace": meta.get("namespace", "")}
                if rt.selectable_fields is not None:
                    fields.update(rt.selectable_fields(stored))
                if rt.crd is not None:
                    from .jsonpath import simple_get

                    for r in freqs:
                        if r.field not in fields:
                            v = simple_get(stored, "." + r.field)
                            fields[r.field] = (
                                "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                            )
                return fields_match(freqs, fields)
            return True

        return match

    def list(self, rt: ResourceType, namespace: str | None, opts: ListOptions) -> JSON:
        if (
            opts.resource_version
            and opts.resource_version_match == "Exact"
            and opts.resource_version != str(self.store.rv)
        ):
            rv = _parse_rv(opts.resource_version)
            if rv < self.store.oldest_retained:
                raise gone(f"too old resource version: {rv} ({self.store.oldest_retained})")
            raise StatusError(
                410,
                "Expired",
                "kubesim keeps no snapshots: an Exact list is only served at the current resourceVersion",
            )
        if opts.resource_version and opts.resource_version not in ("0",):
            rv = _parse_rv(opts.resource_version)
            if rv > self.store.rv:
                raise StatusError(
                    504,
                    "Timeout",
                    f"Too large resource version: {rv}, current: {self.store.rv}",
                    {
                        "causes": [
                            {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
                        ],
                        "retryAfterSeconds": 1,
                    },
                )
        match = self.matcher(rt, opts.label_selector, opts.field_selector)
        ns = namespace if rt.namespaced else None
        items = [s for s in self.store.iter(rt.storage_key, ns) if match(s)]
        list_rv = str(self.store.rv)
        start = 0
        if opts.continue_token:
            try:
                tok = json.loads(base64.urlsafe_b64decode(opts.continue_token.encode()))
                list_rv = tok["rv"]
                after = tuple(tok["start"])
            except Exception as e:
                raise bad_request(f"continue key is not valid: {e}") from None
            start = next(
                (
                    i
                    for i, s in enumerate(items)
                    if (s["metadata"].get("namespace", ""), s["metadata"]["name"]) > after
                ),
                len(items),
            )
        meta: JSON = {"resourceVersion": list_rv}
        page = items[start:]
        if opts.limit and opts.limit > 0 and len(page) > opts.limit:
            page = page[: opts.limit]
            last = page[-1]["metadata"]
            tok = {"rv": list_rv, "start": [last.get("namespace", ""), last["name"]]}
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(tok).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - len(page)
        return {
            "apiVersion": rt.api_version,
            "kind": rt.list_kind,
            "metadata": meta,
            "items": [self.to_external(rt, s) for s in page],
        }

    # -- create ------------------------------------------------------------------------------
    def create(
        self,
        rt: ResourceType,
        namespace: str,
        body: Any,
        opts: WriteOptions | None = None,
        *,
        applied: ManagedEntries | None = None,
    ) -> Result:
        """``applied``: the managedFields an apply computed (create-on-apply), kept as they are."""
        opts = opts or WriteOptions()
        _check_field_manager("CreateOptions", opts.field_manager)
        obj, warnings = self.decode(rt, body, opts)
        meta = obj["metadata"]
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace or body_ns or ""
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = generate_name(meta["generateName"])
        body_managed = meta.get("managedFields")
        # BeforeCreate: server-set metadata.
        for k in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
            "selfLink",
            "managedFields",
        ):
            meta.pop(k, None)
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = now()
        if rt.track_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if rt.status_subresource and rt.crd is not None:
            obj.pop("status", None)  # customresource strategy PrepareForCreate drops status
        if rt.crd is not None:
            assert rt.schema is not None
            obj = crdschema.apply_defaults(obj, rt.schema)
            self._manage_create(rt, obj, body_managed, opts, applied)
        else:
            strategies.default(rt, obj)
            # handlers/create.go: the field manager sees the decoded (defaulted) object, before
            # the strategy's PrepareForCreate.
            self._manage_create(rt, obj, body_managed, opts, applied)
            strategies.prepare_for_create(rt, obj)
        self._admit_create(rt, obj)
        self._canonicalize(rt, obj)
        causes = self._validate(rt, obj, None)
        if causes:
            raise invalid(rt.kind, rt.group, meta.get("name", ""), causes)
        # Validating admission runs after the strategy's validation, on the object with its
        # generated name (registry/store.go: Store.Create calls createValidation after BeforeCreate).
        warnings.extend(podsecurity.admit(self, rt, obj, None))
        if self.store.peek(rt.storage_key, meta.get("namespace", ""), meta["name"]) is not None:
            raise already_exists(rt.plural, rt.group, meta["name"])
        if opts.dry_run:
            return Result(self.to_external(rt, obj), 201, warnings)
        stored = self.store.put(rt.storage_key, self.to_storage(rt, obj))
        strategies.after_write(self, rt, stored, None)
        return Result(self.to_external(rt, stored), 201, warnings)

    def _admit_create(self, rt: ResourceType, obj: JSON) -> None:
        meta = obj["metadata"]
        if rt.namespaced:
            ns_name = meta.get("namespace", "")
            ns = self.store.peek("/namespaces", "", ns_name) if ns_name else None
            if ns is None and ns_name:
                raise not_found("namespaces", "", ns_name)
            if ns is not None and ns["metadata"].get("deletionTimestamp") and rt.storage_key != "events":
                # plugin/pkg/admission/namespace/lifecycle: NamespaceLifecycle.Admit
                raise forbidden(
                    rt.plural,
                    rt.group,
                    meta.get("name", ""),
                    f"unable to create new content in namespace {ns_name} because it is being terminated",
                )
        strategies.admit_create(self, rt, obj)

    def _canonicalize(self, rt: ResourceType, obj: JSON) -> None:
        if rt.builtin:
            schema = k8sdefs.definition(rt.group, rt.version, rt.kind)
            if schema is not None:
                builtin_schema.fill_required_zeros(obj, schema)

    def _validate(self, rt: ResourceType, obj: JSON, old: JSON | None) -> list[Cause]:
        name_check = "subdomain"
        if rt.plural in ("namespaces", "services"):
            name_check = "label"
        elif rt.crd is not None or rt.group == "rbac.authorization.k8s.io":
            name_check = "path"
        causes = validate_object_meta(obj["metadata"], rt.namespaced, name_check)
        if rt.crd is not None:
            assert rt.schema is not None
            causes.extend(crdschema.validate(obj, rt.schema, old))
        else:
            causes.extend(strategies.validate(self, rt, obj, old))
        return causes

    # -- update ------------------------------------------------------------------------------
    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        opts: WriteOptions | None = None,
        subresource: str = "",
        *,
        internal_patch: bool = False,
    ) -> Result:
        opts = opts or WriteOptions()
        _check_field_manager("UpdateOptions", opts.field_manager)
        ns = namespace if rt.namespaced else ""
        stored_old = self.store.get(rt.storage_key, ns, name)
        if stored_old is None:
            raise not_found(rt.plural, rt.group, name)
        old = self.to_external(rt, stored_old)
        obj, warnings = self.decode(rt, body, opts, old=old)
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != ns:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        rv = meta.get("resourceVersion")
        if rv:
            if rv != old["metadata"]["resourceVersion"]:
                raise conflict(
                    rt.plural,
                    rt.group,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
        elif not internal_patch and rt.crd is not None:
            # customresource strategy: AllowUnconditionalUpdate() is false.
            raise invalid(
                rt.kind,
                rt.group,
                name,
                [
                    field_error(
                        "FieldValueInvalid",
                        "metadata.resourceVersion",
                        "must be specified for an update",
                        0,
                        show_value=True,
                    )
                ],
            )
        return self._update(rt, old, obj, opts, subresource, warnings)

    def _update(
        self,
        rt: ResourceType,
        old: JSON,
        obj: JSON,
        opts: WriteOptions,
        subresource: str,
        warnings: list[str],
        applied: ManagedEntries | None = None,
    ) -> Result:
        meta = obj["metadata"]
        old_meta = old["metadata"]
        name = old_meta["name"]
        body_managed = meta.get("managedFields")
        if subresource == "status":
            # Status strategies: only .status of the new object is kept.
            new = deep_copy(old)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
            obj = new
            meta = obj["metadata"]
            self._manage_update(rt, old, obj, None, opts, subresource, applied)
        else:
            # Server-owned metadata stays as it is.
            for k in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if k in old_meta:
                    meta[k] = old_meta[k]
                else:
                    meta.pop(k, None)
            meta["namespace"] = old_meta.get("namespace", "")
            if not rt.namespaced:
                meta.pop("namespace", None)
            meta["name"] = name
            meta.pop("selfLink", None)
            meta.pop("managedFields", None)
            if rt.status_subresource:
                if "status" in old:
                    obj["status"] = deep_copy(old["status"])
                else:
                    obj.pop("status", None)
            if old_meta.get("deletionTimestamp"):
                added = [
                    f for f in meta.get("finalizers") or [] if f not in (old_meta.get("finalizers") or [])
                ]
                if added:
                    raise invalid(
                        rt.kind,
                        rt.group,
                        name,
                        [
                            field_error(
                                "FieldValueForbidden",
                                "metadata.finalizers",
                                f"no new finalizers can be added if the object is being deleted, found new finalizers []string{{{', '.join(json.dumps(a) for a in added)}}}",
                            )
                        ],
                    )
            if rt.crd is not None:
                assert rt.schema is not None
                obj = crdschema.apply_defaults(obj, rt.schema)
                meta = obj["metadata"]
                self._manage_update(rt, old, obj, body_managed, opts, subresource, applied)
            else:
                strategies.default(rt, obj)
                # handlers/update.go: the field manager runs on the decoded (defaulted) object, in
                # the update's transformers, before the strategy's PrepareForUpdate.
                self._manage_update(rt, old, obj, body_managed, opts, subresource, applied)
                strategies.prepare_for_update(rt, obj, old)
            if rt.track_generation and _spec_changed(rt, obj, old):
                meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if rt.crd is not None and subresource == "status":
            assert rt.schema is not None
            obj = crdschema.apply_defaults(obj, rt.schema)
        self._canonicalize(rt, obj)
        causes = self._validate(rt, obj, old)
        if subresource != "status" and rt.crd is None:
            causes.extend(strategies.validate_update(self, rt, obj, old))
        if causes:
            raise invalid(rt.kind, rt.group, name, causes)
        strategies.admit_update(self, rt, obj, old)
        warnings = [*warnings, *podsecurity.admit(self, rt, obj, old, subresource)]
        # GuaranteedUpdate: an update that changes nothing writes nothing (no new resourceVersion, no event).
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if _same(obj, old):
            return Result(old, 200, warnings)
        if opts.dry_run:
            return Result(obj, 200, warnings)
        ns = old_meta.get("namespace", "")
        if old_meta.get("deletionTimestamp") and not meta.get("finalizers") and not _graceful_pending(obj):
            # registry store.go: ShouldDeleteDuringUpdate: the last finalizer is gone, so the object goes.
            final = self.store.delete(rt.storage_key, ns, name, self.to_storage(rt, obj))
            assert final is not None
            strategies.after_delete(self, rt, final)
            return Result(self.to_external(rt, final), 200, warnings)
        stored = self.store.put(rt.storage_key, self.to_storage(rt, obj))
        strategies.after_write(self, rt, stored, old)
        return Result(self.to_external(rt, stored), 200, warnings)

    # -- managed fields ----------------------------------------------------------------------
    def _schema(self, rt: ResourceType) -> fieldmanager.Node:
        if rt.crd is not None:
            return rt.schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        name = k8sdefs.definition_name(rt.group, rt.version, rt.kind)
        return {"$ref": f"#/$defs/{name}"} if name else None

    def _manage_create(
        self,
        rt: ResourceType,
        obj: JSON,
        body_managed: Any,
        opts: WriteOptions,
        applied: ManagedEntries | None,
    ) -> None:
        """handlers/create.go: FieldManager.UpdateNoErrors(new empty object, obj, manager)."""
        meta = obj["metadata"]
        if applied is not None:
            meta["managedFields"] = applied
            return
        try:
            managers = fieldmanager.decode_managed(body_managed)
        except ValueError:
            managers = {}
        empty = {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": {}}
        self._set_managed(rt, empty, obj, managers, opts, "", creating=True)

    def _manage_update(
        self,
        rt: ResourceType,
        old: JSON,
        obj: JSON,
        body_managed: Any,
        opts: WriteOptions,
        subresource: str,
        applied: ManagedEntries | None,
    ) -> None:
        """fieldmanager.go: FieldManager.Update: the request's managedFields if they decode and are
        not empty (and this is no subresource), else the live ones."""
        if applied is not None:
            obj["metadata"]["managedFields"] = applied
            return
        managers: fieldmanager.Managers = {}
        try:
            # kubesim's own components never mean to set managedFields: their read-modify-writes
            # carry no resourceVersion, so the copy they read may be stale.
            if body_managed and not subresource and not opts.internal:
                managers = fieldmanager.decode_managed(body_managed)
        except ValueError:
            managers = {}
        if not managers:
            try:
                managers = fieldmanager.decode_managed(old["metadata"].get("managedFields"))
            except ValueError:
                managers = {}
        self._set_managed(
            rt, old, obj, managers, opts, opts.record_subresource or subresource, creating=False
        )

    def _set_managed(
        self,
        rt: ResourceType,
        live: JSON,
        obj: JSON,
        managers: fieldmanager.Managers,
        opts: WriteOptions,
        subresource: str,
        *,
        creating: bool,
    ) -> None:
        key = fieldmanager.manager_key(opts.manager, "Update", rt.api_version, subresource)
        ignored = fieldmanager.reset_fields(rt.status_subresource, subresource, obj.keys())
        managers = fieldmanager.update(
            live,
            obj,
            managers,
            key,
            rt.api_version,
            self._schema(rt),
            ignored,
            now(),
            creating_builtin=creating and rt.builtin,
        )
        if managers:
            obj["metadata"]["managedFields"] = fieldmanager.encode_managed(managers)
        else:
            obj["metadata"].pop("managedFields", None)

    # -- patch -------------------------------------------------------------------------------
    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        body: bytes,
        opts: WriteOptions | None = None,
        subresource: str = "",
    ) -> Result:
        from . import patch as patchlib

        opts = opts or WriteOptions()
        ns = namespace if rt.namespaced else ""
        ctype = content_type.split(";")[0].strip()
        # handlers/patch.go: custom resources take no strategic merge patch (415 from decode_patch).
        supported = patchlib.BUILTIN_PATCH_TYPES if rt.builtin else patchlib.CUSTOM_RESOURCE_PATCH_TYPES
        doc = patchlib.decode_patch(content_type, body, supported_types=supported)
        # handlers/patch.go: PatchResource validates the options (ValidatePatchOptions) first.
        causes: CauseList = []
        if ctype != patchlib.APPLY_PATCH_YAML:
            if opts.force is not None:
                causes.append(
                    field_error("FieldValueForbidden", "force", "may not be specified for non-apply patch")
                )
        elif not opts.field_manager:
            causes.append(field_error("FieldValueRequired", "fieldManager", "is required for apply patch"))
        causes.extend(_field_manager_causes(opts.field_manager))
        if causes:
            raise invalid("PatchOptions", "meta.k8s.io", "", causes)
        stored_old = self.store.get(rt.storage_key, ns, name)
        if ctype == patchlib.APPLY_PATCH_YAML:
            return self._apply(rt, ns, name, doc, stored_old, opts, subresource)
        if stored_old is None:
            raise not_found(rt.plural, rt.group, name)
        old = self.to_external(rt, stored_old)
        if ctype == "application/json-patch+json":
            patched = patchlib.json_patch(old, doc)
        elif ctype == "application/merge-patch+json":
            patched = patchlib.json_merge_patch(old, doc)
        else:
            patched = patchlib.strategic_merge_patch(
                old, doc, k8sdefs.definition(rt.group, rt.version, rt.kind)
            )
        if not isinstance(patched, dict):
            raise bad_request("the patched object is not an object")
        # A patch that sets metadata.resourceVersion makes it a precondition (handlers/patch.go).
        patched_rv = (patched.get("metadata") or {}).get("resourceVersion")
        if patched_rv is not None and patched_rv != old["metadata"]["resourceVersion"]:
            raise conflict(
                rt.plural,
                rt.group,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        patched.setdefault("metadata", {})["resourceVersion"] = old["metadata"]["resourceVersion"]
        obj, warnings = self.decode(rt, patched, opts, old=old)
        if obj["metadata"].get("name") != name:
            raise bad_request(
                f"the name of the object ({obj['metadata'].get('name')}) does not match the name on the URL ({name})"
            )
        return self._update(rt, old, obj, opts, subresource, warnings)

    def _apply(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        config: JSON,
        stored_old: JSON | None,
        opts: WriteOptions,
        subresource: str,
    ) -> Result:
        """handlers/patch.go: applyPatcher, with FieldManager.Apply; creates when the object is absent."""
        from .patch import PatchError

        # versioncheck.go: the applied object must be of the endpoint's kind and version.
        api_version = config.get("apiVersion")
        kind = config.get("kind")
        if api_version != rt.api_version or kind != rt.kind:
            av = api_version if isinstance(api_version, str) else ""
            group, _, version = av.rpartition("/")
            raise bad_request(
                f"invalid object type: {group}/{version}, Kind={kind if isinstance(kind, str) else ''}"
            )
        meta = config.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise bad_request("the object provided is unrecognized: metadata must be an object")
        if (meta or {}).get("managedFields") is not None:
            # structuredmerge.go: Apply
            raise bad_request("metadata.managedFields must be nil")
        if stored_old is None and subresource:
            raise not_found(rt.plural, rt.group, name)
        creating = stored_old is None
        if creating:
            # handlers/patch.go: applyPatcher.createNewObject: the apply runs on a new empty object.
            live: JSON = {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": {}}
            managers: fieldmanager.Managers = {}
        else:
            assert stored_old is not None
            live = self.to_external(rt, stored_old)
            try:
                managers = fieldmanager.decode_managed(live["metadata"].get("managedFields"))
            except ValueError as e:
                raise PatchError(500, "", f"failed to decode managed fields: {e}") from None
        key = fieldmanager.manager_key(opts.field_manager, "Apply", rt.api_version, subresource)
        schema = self._schema(rt)
        ignored = fieldmanager.reset_fields(rt.status_subresource, subresource, {*live, *config})
        try:
            merged, managers = fieldmanager.apply(
                live, config, managers, key, rt.api_version, schema, ignored, now(), bool(opts.force)
            )
        except fieldmanager.TypedError as e:
            # structuredmerge.go: objectGVKNN of the applied object (its own namespace and name)
            gvk = f"{rt.group}/{rt.version}, Kind={rt.kind}"
            nn = f"{(meta or {}).get('namespace', '')}/{(meta or {}).get('name', '')}"
            raise PatchError(500, "", f"failed to create typed patch object ({nn}; {gvk}): {e}") from None
        except fieldmanager.ConflictError as e:
            raise fieldmanager.conflict_error(e.conflicts, managers) from None
        # lastappliedupdater.go: an apply by "kubectl" keeps kubectl's client-side annotation in step.
        annotations = (merged.get("metadata") or {}).get("annotations") or {}
        if opts.field_manager == fieldmanager.KUBECTL_MANAGER and annotations.get(fieldmanager.LAST_APPLIED):
            merged["metadata"]["annotations"] = {
                **annotations,
                fieldmanager.LAST_APPLIED: fieldmanager.build_last_applied(config),
            }
        encoded = fieldmanager.encode_managed(managers)
        merged_meta = merged.setdefault("metadata", {})
        # patch.go: checkName
        if merged_meta.get("name", "") != name:
            raise bad_request(
                f"the name of the object ({merged_meta.get('name', '')}) does not match the name on the URL ({name})"
            )
        if rt.namespaced and merged_meta.get("namespace") and merged_meta["namespace"] != ns:
            raise bad_request(
                f"the namespace of the object ({merged_meta['namespace']}) does not match the namespace on the request ({ns})"
            )
        if creating:
            res = self.create(rt, ns, merged, opts, applied=encoded)
            return res
        assert stored_old is not None
        old = self.to_external(rt, stored_old)
        # A resourceVersion in the applied config is a precondition (registry/store.go: Update).
        applied_rv = (config.get("metadata") or {}).get("resourceVersion")
        if applied_rv and applied_rv != old["metadata"]["resourceVersion"]:
            raise conflict(
                rt.plural,
                rt.group,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        merged_meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        obj, warnings = self.decode(rt, merged, opts, old=old)
        return self._update(rt, old, obj, opts, subresource, warnings, applied=encoded)

    # -- delete ------------------------------------------------------------------------------
    def delete(
        self, rt: ResourceType, namespace: str, name: str, options: JSON | None = None, dry_run: bool = False
    ) -> Result:
        options = options or {}
        ns = namespace if rt.namespaced else ""
        old = self.store.get(rt.storage_key, ns, name)
        if old is None:
            raise not_found(rt.plural, rt.group, name)
        meta = old["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise conflict(
                rt.plural,
                rt.group,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta['uid']}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise conflict(
                rt.plural,
                rt.group,
                name,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, ResourceVersion in object meta: {meta['resourceVersion']}",
            )
        policy = options.get("propagationPolicy")
        if options.get("orphanDependents") is not None and policy is not None:
            raise invalid(
                "DeleteOptions",
                "",
                "",
                [
                    field_error(
                        "FieldValueInvalid",
                        "propagationPolicy",
                        "orphanDependents and deletionPropagation cannot be both set",
                        policy,
                        show_value=True,
                    )
                ],
            )
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy is not None and policy not in ("Orphan", "Background", "Foreground"):
            raise invalid(
                "DeleteOptions",
                "",
                "",
                [
                    field_error(
                        "FieldValueNotSupported",
                        "propagationPolicy",
                        'supported values: "Foreground", "Background", "Orphan"',
                        policy,
                        show_value=True,
                    )
                ],
            )
        if rt.builtin and rt.plural == "namespaces" and (old.get("spec") or {}).get("finalizers"):
            return self._delete_namespace(rt, old, dry_run)
        finalizers = list(meta.get("finalizers") or [])
        if rt.builtin and rt.plural == "customresourcedefinitions" and CRD_FINALIZER not in finalizers:
            # apiextensions-apiserver/pkg/registry/customresourcedefinition/etcd.go: REST.Delete
            finalizers.append(CRD_FINALIZER)
        # store.go: deletionFinalizersForGarbageCollection
        if policy is None and not meta.get("deletionTimestamp"):
            policy = (
                rt.default_propagation
                if "orphan" not in finalizers and "foregroundDeletion" not in finalizers
                else None
            )
        if policy == "Orphan":
            finalizers = [f for f in finalizers if f != "foregroundDeletion"]
            if "orphan" not in finalizers:
                finalizers.append("orphan")
        elif policy == "Foreground":
            finalizers = [f for f in finalizers if f != "orphan"]
            if "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
        elif policy == "Background":
            finalizers = [f for f in finalizers if f not in ("orphan", "foregroundDeletion")]
        # Orphaning or foreground deletion with no dependents needs no finalizer at all.
        if policy in ("Orphan", "Foreground") and not self.has_dependents(meta["uid"]):
            finalizers = [f for f in finalizers if f not in ("orphan", "foregroundDeletion")]
        grace = strategies.grace_period(rt, old, options.get("gracePeriodSeconds"))
        # handlers/delete.go: 202 only when the object stays and orphanDependents=false was asked for.
        pending = 202 if options.get("orphanDependents") is False else 200
        external_old = self.to_external(rt, old)
        if finalizers or grace > 0:
            obj = deep_copy(old)
            m = obj["metadata"]
            if finalizers:
                m["finalizers"] = finalizers
            else:
                m.pop("finalizers", None)
            if not m.get("deletionTimestamp"):
                m["deletionTimestamp"] = time_plus(grace) if grace > 0 else now()
                m["deletionGracePeriodSeconds"] = grace
                if m.get("generation"):
                    m["generation"] = int(m["generation"]) + 1
            elif grace < int(m.get("deletionGracePeriodSeconds") or 0):
                m["deletionTimestamp"] = time_plus(grace) if grace > 0 else now()
                m["deletionGracePeriodSeconds"] = grace
            elif not finalizers and grace == 0:
                pass
            if grace == 0 and not finalizers:
                return self._delete_now(rt, ns, name, obj, dry_run)
            if dry_run:
                return Result(self.to_external(rt, obj), pending)
            if _same(obj, old):
                return Result(external_old, pending)
            stored = self.store.put(rt.storage_key, obj)
            strategies.after_write(self, rt, stored, external_old)
            return Result(self.to_external(rt, stored), pending)
        return self._delete_now(rt, ns, name, old, dry_run)

    def _delete_namespace(self, rt: ResourceType, old: JSON, dry_run: bool) -> Result:
        """pkg/registry/core/namespace/storage/storage.go: REST.Delete: Terminating until finalized."""
        name = old["metadata"]["name"]
        if old["metadata"].get("deletionTimestamp"):
            raise conflict(
                rt.plural,
                rt.group,
                name,
                "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.",
            )
        obj = deep_copy(old)
        obj["metadata"]["deletionTimestamp"] = now()
        obj["metadata"]["deletionGracePeriodSeconds"] = 0
        obj.setdefault("status", {})["phase"] = "Terminating"
        if dry_run:
            return Result(obj, 200)
        stored = self.store.put(rt.storage_key, obj)
        return Result(self.to_external(rt, stored), 200)

    def finalize_namespace(self, name: str, finalizers: list[str]) -> None:
        """The namespaces/finalize subresource: set spec.finalizers; an empty list lets the namespace go."""
        rt = self.resource("", "v1", "namespaces")
        cur = self.store.get(rt.storage_key, "", name)
        if cur is None:
            raise not_found(rt.plural, rt.group, name)
        cur.setdefault("spec", {})["finalizers"] = finalizers
        if (
            cur["metadata"].get("deletionTimestamp")
            and not finalizers
            and not cur["metadata"].get("finalizers")
        ):
            self.store.delete(rt.storage_key, "", name, cur)
            return
        self.store.put(rt.storage_key, cur)

    def _delete_now(self, rt: ResourceType, ns: str, name: str, final: JSON, dry_run: bool) -> Result:
        if dry_run:
            return Result(
                self.to_external(rt, final) if rt.return_deleted_object else _success_status(rt, final), 200
            )
        gone_obj = self.store.delete(rt.storage_key, ns, name, final)
        assert gone_obj is not None
        strategies.after_delete(self, rt, gone_obj)
        if rt.return_deleted_object:
            return Result(self.to_external(rt, gone_obj), 200)
        return Result(_success_status(rt, gone_obj), 200)

    def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        lopts: ListOptions,
        options: JSON | None,
        dry_run: bool = False,
    ) -> JSON:
        listed = self.list(rt, namespace, ListOptions(lopts.label_selector, lopts.field_selector))
        items = []
        for item in listed["items"]:
            try:
                r = self.delete(
                    rt, item["metadata"].get("namespace", ""), item["metadata"]["name"], options, dry_run
                )
                items.append(r.obj if r.obj.get("kind") != "Status" else item)
            except StatusError as e:
                if e.code != 404:
                    raise
        listed["items"] = items
        return listed

    def has_dependents(self, uid: str) -> bool:
        for key in self.store.storage_keys():
            for o in self.store.iter(key):
                for ref in o["metadata"].get("ownerReferences") or []:
                    if ref.get("uid") == uid:
                        return True
        return False

    # -- scale subresource -------------------------------------------------------------------
    def get_scale(self, rt: ResourceType, namespace: str, name: str) -> JSON:
        from .jsonpath import simple_get

        obj = self.get(rt, namespace, name)
        assert rt.scale_subresource is not None
        paths = rt.scale_subresource
        sel = simple_get(obj, paths.get("labelSelectorPath", "")) if paths.get("labelSelectorPath") else None
        if rt.builtin:
            sel = strategies.selector_string((obj.get("spec") or {}).get("selector"))
        m = obj["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: m[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in m
            },
            # customresource/tableconvertor scale.go: scaleFromCustomResource reads int64s and
            # converts them with int32(): values beyond int32 wrap around (built-ins are int32).
            "spec": {"replicas": _scale_int32(simple_get(obj, paths["specReplicasPath"]))},
            "status": {
                "replicas": _scale_int32(simple_get(obj, paths["statusReplicasPath"])),
                **({"selector": sel} if sel else {}),
            },
        }

    def update_scale(
        self, rt: ResourceType, namespace: str, name: str, scale: JSON, opts: WriteOptions
    ) -> Result:
        from .jsonpath import simple_set

        assert rt.scale_subresource is not None
        if not isinstance(scale, dict) or scale.get("kind") not in (None, "Scale"):
            raise bad_request("the body of a scale request must be a Scale")
        replicas = (scale.get("spec") or {}).get("replicas")
        if replicas is not None and not isinstance(replicas, bool) and isinstance(replicas, int | float):
            if not gonum.fits_int(gonum.normalize(replicas), "int32"):
                # the body decodes into autoscaling/v1 Scale, whose spec.replicas is an int32
                raise bad_request(
                    'Scale in version "v1" cannot be handled as a Scale: json: cannot unmarshal number '
                    f"{gonum.literal(gonum.normalize(replicas))} into Go struct field ScaleSpec.spec.replicas of type int32"
                )
            replicas = int(replicas)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise invalid(
                "Scale",
                "autoscaling",
                name,
                [
                    field_error(
                        "FieldValueInvalid",
                        "spec.replicas",
                        "must be greater than or equal to 0",
                        replicas,
                        show_value=True,
                    )
                ],
            )
        obj = self.get(rt, namespace, name)
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv and rv != obj["metadata"]["resourceVersion"]:
            raise conflict(
                rt.plural,
                rt.group,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        simple_set(obj, rt.scale_subresource["specReplicasPath"], replicas)
        # The scale subresource's writes are recorded as such (its own field manager upstream).
        self.update(rt, namespace, name, obj, replace(opts, record_subresource="scale"), internal_patch=True)
        return Result(self.get_scale(rt, namespace, name), 200)


def _field_manager_causes(manager: str) -> list[Cause]:
    out = []
    for type_, detail, value in fieldmanager.validate_field_manager(manager):
        out.append(field_error(type_, "fieldManager", detail, value, show_value=value is not None))
    return out


def _check_field_manager(kind: str, manager: str) -> None:
    """ValidateCreateOptions / ValidateUpdateOptions: the fieldManager query parameter."""
    causes = _field_manager_causes(manager)
    if causes:
        raise invalid(kind, "meta.k8s.io", "", causes)


def _scale_int32(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        return 0
    return gonum.wrap_int32(v)


def version_priority(v: str) -> tuple[int, int, int, str]:
    """apimachinery/pkg/version/helpers.go CompareKubeAwareVersionStrings: GA > beta > alpha, then by number."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if not m:
        return (3, 0, 0, v)
    major = int(m.group(1))
    kind = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (kind, -major, -minor, v)


def _parse_rv(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        raise bad_request(f"invalid resource version: {s!r}") from None


def _unknown_meta_fields(meta: JSON) -> list[str]:
    schema = k8sdefs.definitions()["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]
    return [k for k in meta if k not in schema.get("properties", {})]


def _strip_nulls(value: Any) -> None:
    if isinstance(value, dict):
        for k in [k for k, v in value.items() if v is None]:
            del value[k]
        for v in value.values():
            _strip_nulls(v)
    elif isinstance(value, list):
        for v in value:
            _strip_nulls(v)


def _same(a: JSON, b: JSON) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _spec_changed(rt: ResourceType, new: JSON, old: JSON) -> bool:
    """Generation moves on when anything but metadata (and status, with a status subresource) changes."""
    ignore = {"metadata", "apiVersion", "kind"}
    if rt.status_subresource:
        ignore.add("status")
    a = {k: v for k, v in new.items() if k not in ignore}
    b = {k: v for k, v in old.items() if k not in ignore}
    return not _same(a, b)


def _graceful_pending(obj: JSON) -> bool:
    return int(obj["metadata"].get("deletionGracePeriodSeconds") or 0) > 0


def _success_status(rt: ResourceType, obj: JSON) -> JSON:
    m = obj["metadata"]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": m["name"], "group": rt.group, "kind": rt.plural, "uid": m.get("uid", "")},
    }
