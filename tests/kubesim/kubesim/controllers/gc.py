"""The garbage collector (``pkg/controller/garbagecollector/garbagecollector.go``).

- An object whose owners are all gone is deleted in the background (``attemptToDeleteItem``);
  an owner that is absent is one whose (kind, namespace, name) no longer resolves to the
  referenced ``uid``. Owners of unknown kinds are never presumed absent (the upstream collector
  cannot resolve them either, and deletes nothing on their account).
- Dangling references next to a live owner are removed from the dependent.
- ``foregroundDeletion``: the owner's dependents are deleted (foreground, so grandchildren go
  first); when none is left the finalizer is removed (``processDeletingDependentsItem``).
- ``orphan``: the owner's reference is removed from each dependent, then the finalizer
  (``orphanDependents``).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from ..errors import StatusError
from ..store import Change
from .base import Controller

Ref = tuple[str, str, str]  # (storage key, namespace, name)


class GarbageCollector(Controller):
    name = "garbagecollector"

    def keys_for(self, change: Change) -> Iterable[Hashable]:
        meta = change.obj["metadata"]
        ns = meta.get("namespace", "")
        key = (change.key, ns, meta["name"])
        if change.type != "DELETED" and (meta.get("ownerReferences") or meta.get("deletionTimestamp")):
            yield key
        # Any change to a potential owner re-examines its dependents.
        if change.type == "DELETED" or meta.get("deletionTimestamp"):
            yield from self._dependents(meta["uid"])

    def initial_keys(self) -> Iterable[Hashable]:
        for k in self.store.storage_keys():
            for o in self.store.iter(k):
                m = o["metadata"]
                if m.get("ownerReferences") or m.get("deletionTimestamp"):
                    yield (k, m.get("namespace", ""), m["name"])

    def _dependents(self, uid: str) -> list[Ref]:
        out: list[Ref] = []
        for k in self.store.storage_keys():
            for o in self.store.iter(k):
                for ref in o["metadata"].get("ownerReferences") or []:
                    if ref.get("uid") == uid:
                        out.append((k, o["metadata"].get("namespace", ""), o["metadata"]["name"]))
                        break
        return out

    def _rt_for_key(self, storage_key: str) -> Any:
        for rt in self.api.types.values():
            if rt.storage_key == storage_key and rt.group != "events.k8s.io":
                return rt
        return None

    def _owner_state(self, ref: dict[str, Any], dep_ns: str) -> str:
        """'present', 'absent', 'deleting-foreground' or 'unknown'."""
        rt = self.api.kind_type(ref.get("apiVersion", ""), ref.get("kind", ""))
        if rt is None:
            # Any served version of the group will do for lookup.
            group = ref.get("apiVersion", "").rpartition("/")[0]
            rt = next(
                (t for t in self.api.types.values() if t.group == group and t.kind == ref.get("kind")), None
            )
        if rt is None:
            return "unknown"
        owner = self.store.peek(rt.storage_key, dep_ns if rt.namespaced else "", ref.get("name", ""))
        if owner is None or owner["metadata"]["uid"] != ref.get("uid"):
            return "absent"
        if owner["metadata"].get("deletionTimestamp") and "foregroundDeletion" in (
            owner["metadata"].get("finalizers") or []
        ):
            return "deleting-foreground"
        return "present"

    async def reconcile(self, key: Hashable) -> float | None:
        storage_key, ns, name = key  # type: ignore[misc]
        obj = self.store.peek(storage_key, ns, name)
        if obj is None:
            return None
        rt = self._rt_for_key(storage_key)
        if rt is None:
            return None
        meta = obj["metadata"]
        fins = meta.get("finalizers") or []
        if meta.get("deletionTimestamp") and "orphan" in fins:
            self._orphan(meta["uid"])
            self._drop_finalizer(rt, ns, name, "orphan")
            return None
        if meta.get("deletionTimestamp") and "foregroundDeletion" in fins:
            deps = self._dependents(meta["uid"])
            blocking = []
            for dk, dns, dname in deps:
                dep = self.store.peek(dk, dns, dname)
                drt = self._rt_for_key(dk)
                if dep is None or drt is None:
                    continue
                if not dep["metadata"].get("deletionTimestamp"):
                    self._delete(drt, dns, dname, "Foreground")
                if any(
                    r.get("uid") == meta["uid"] and r.get("blockOwnerDeletion")
                    for r in dep["metadata"].get("ownerReferences") or []
                ):
                    blocking.append((dk, dns, dname))
            if not blocking:
                self._drop_finalizer(rt, ns, name, "foregroundDeletion")
                return None
            return 0.2
        refs = meta.get("ownerReferences") or []
        if not refs:
            return None
        states = [self._owner_state(r, ns) for r in refs]
        if "unknown" in states:
            return None
        if all(s == "absent" for s in states):
            if not meta.get("deletionTimestamp"):
                self._delete(rt, ns, name, "Background")
            return None
        if (
            "deleting-foreground" in states
            and not meta.get("deletionTimestamp")
            and all(s in ("absent", "deleting-foreground") for s in states)
        ):
            self._delete(rt, ns, name, "Foreground")
            return None
        if "absent" in states:
            keep = [r for r, s in zip(refs, states, strict=True) if s != "absent"]
            current = self.api.get(rt, ns, name)
            current["metadata"]["ownerReferences"] = keep
            self._write(rt, ns, name, current)
        return None

    def _orphan(self, uid: str) -> None:
        for dk, dns, dname in self._dependents(uid):
            drt = self._rt_for_key(dk)
            if drt is None:
                continue
            cur = self.api.get_or_none(drt, dns, dname)
            if cur is None:
                continue
            refs = [r for r in cur["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            if refs:
                cur["metadata"]["ownerReferences"] = refs
            else:
                cur["metadata"].pop("ownerReferences", None)
            self._write(drt, dns, dname, cur)

    def _drop_finalizer(self, rt: Any, ns: str, name: str, finalizer: str) -> None:
        cur = self.api.get_or_none(rt, ns, name)
        if cur is None:
            return
        cur["metadata"]["finalizers"] = [f for f in cur["metadata"].get("finalizers") or [] if f != finalizer]
        self._write(rt, ns, name, cur)

    def _write(self, rt: Any, ns: str, name: str, obj: dict[str, Any]) -> None:
        try:
            self.api.update(rt, ns, name, obj, internal_patch=True)
        except StatusError as e:
            if e.code not in (404, 409):
                raise

    def _delete(self, rt: Any, ns: str, name: str, policy: str) -> None:
        try:
            self.api.delete(rt, ns, name, {"propagationPolicy": policy})
        except StatusError as e:
            if e.code != 404:
                raise
