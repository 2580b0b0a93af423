"""The namespace controller (``pkg/controller/namespace/deletion/namespaced_resources_deleter.go``).

A namespace being deleted is ``Terminating``; the controller deletes every namespaced object in
it, waits until none is left (finalizers of those objects are honoured), then removes the
``kubernetes`` finalizer from ``spec.finalizers`` through the ``finalize`` subresource, after
which the namespace itself goes. It also removes CRDs' custom resources when a CRD is deleted
(``apiextensions-apiserver/pkg/controller/finalizer/crd_finalizer.go``).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from ..errors import StatusError
from ..store import Change
from .base import Controller

CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


class NamespaceController(Controller):
    name = "namespace"

    def keys_for(self, change: Change) -> Iterable[Hashable]:
        meta = change.obj["metadata"]
        if change.key == "/namespaces" and meta.get("deletionTimestamp") and change.type != "DELETED":
            yield ("ns", meta["name"])
        elif (
            change.key == "apiextensions.k8s.io/customresourcedefinitions"
            and meta.get("deletionTimestamp")
            and change.type != "DELETED"
        ):
            yield ("crd", meta["name"])
        elif change.type == "DELETED" and meta.get("namespace"):
            ns = self.store.peek("/namespaces", "", meta["namespace"])
            if ns is not None and ns["metadata"].get("deletionTimestamp"):
                yield ("ns", meta["namespace"])

    def initial_keys(self) -> Iterable[Hashable]:
        for ns in self.store.iter("/namespaces"):
            if ns["metadata"].get("deletionTimestamp"):
                yield ("ns", ns["metadata"]["name"])

    async def reconcile(self, key: Hashable) -> float | None:
        what, name = key  # type: ignore[misc]
        if what == "crd":
            return self._cleanup_crd(name)
        return self._cleanup_namespace(name)

    def _cleanup_namespace(self, name: str) -> float | None:
        ns = self.store.peek("/namespaces", "", name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return None
        remaining = 0
        seen_keys: set[str] = set()
        for rt in list(self.api.types.values()):
            if not rt.namespaced or rt.virtual or rt.storage_key in seen_keys:
                continue
            seen_keys.add(rt.storage_key)
            for obj in list(self.store.iter(rt.storage_key, name)):
                remaining += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    try:
                        self.api.delete(
                            rt, name, obj["metadata"]["name"], {"propagationPolicy": "Background"}
                        )
                    except StatusError as e:
                        if e.code != 404:
                            raise
        if remaining:
            left = sum(1 for k in seen_keys for _ in self.store.iter(k, name))
            if left:
                return 0.5
        ns_rt = self.api.resource("", "v1", "namespaces")
        current = self.api.get_or_none(ns_rt, "", name)
        if current is None:
            return None
        fins = [f for f in (current.get("spec") or {}).get("finalizers") or [] if f != "kubernetes"]
        current.setdefault("spec", {})["finalizers"] = fins
        self.api.finalize_namespace(name, fins)
        return None

    def _cleanup_crd(self, name: str) -> float | None:
        crd_rt = self.api.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        crd = self.api.get_or_none(crd_rt, "", name)
        if crd is None or CRD_FINALIZER not in (crd["metadata"].get("finalizers") or []):
            return None
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        key = f"{group}/{plural}"
        rt = next((t for t in self.api.types.values() if t.storage_key == key), None)
        left = list(self.store.iter(key))
        if left and rt is not None:
            for obj in left:
                if not obj["metadata"].get("deletionTimestamp"):
                    try:
                        self.api.delete(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
                    except StatusError as e:
                        if e.code != 404:
                            raise
            return 0.3
        crd["metadata"]["finalizers"] = [
            f for f in crd["metadata"].get("finalizers") or [] if f != CRD_FINALIZER
        ]
        self.api.update(crd_rt, "", name, crd, internal_patch=True)
        return None
