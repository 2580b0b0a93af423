"""The StatefulSet controller (``pkg/controller/statefulset``).

- ``stateful_set.go``: ``sync`` (adopt orphan ControllerRevisions, ``getPodsForStatefulSet`` with
  the ``ControllerRefManager``, ``syncStatefulSet`` requeueing after ``minReadySeconds``), pods
  enqueue their controller (``addPod``/``updatePod``/``deletePod``, orphans every matching set),
  a resync of every set each ``statefulset_resync_period`` (``statefulSetResyncPeriod``, 30 s).
  PersistentVolumeClaims are only read, as upstream (its claim informer feeds a lister only).
- ``stateful_set_control.go``: ``UpdateStatefulSet`` / ``performUpdate`` /
  ``getStatefulSetRevisions`` / ``updateStatefulSet`` (``processReplica``, ``processCondemned``,
  ``runForAll``/``slowStartBatch``, ``updateStatefulSetAfterInvariantEstablished`` — the
  MaxUnavailableStatefulSet path, beta and on by default since 1.35) / ``truncateHistory`` /
  ``updateStatefulSetStatus``.
- ``stateful_pod_control.go``: ``CreateStatefulPod``, ``UpdateStatefulPod``, ``DeleteStatefulPod``,
  ``createPersistentVolumeClaims``/``createMissingPersistentVolumeClaims``,
  ``ClaimsMatchRetentionPolicy``, ``UpdatePodClaimForRetentionPolicy``, ``PodClaimIsStale``,
  ``recordPodEvent``/``recordClaimEvent`` (the event wording).
- ``stateful_set_utils.go``: identities, ``getPersistentVolumeClaims``, ``updateStorage``,
  ``isClaimOwnerUpToDate``/``updateClaimOwnerRefForSetAndPod``, revisions (``getPatch``,
  ``newRevision``, ``ApplyRevision``), ``newVersionedStatefulSetPod``, ``completeRollingUpdate``,
  ``inconsistentStatus``; ``pkg/controller/history/controller_history.go`` for revision names,
  hashes, ``EqualRevision`` and ``CreateControllerRevision``'s collision handling.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, cast

from ..errors import StatusError
from ..events import record
from ..selectors import Requirement
from ..store import JSON, Change, deep_copy
from .base import Controller
from .deployment import (
    RefManager,
    RetryBackoff,
    SyncError,
    _int_or_percent,
    aggregate,
    available_in,
    controller_ref,
    error_text,
    fnv32,
    go_json,
    inject_fault,
    is_pod_available,
    is_pod_ready,
    new_controller_ref,
    owners_for,
    phase,
    pod_from_template,
    safe_encode,
    selector_matches,
    selector_reqs,
)

if TYPE_CHECKING:
    from ..cluster import Cluster

COMPONENT = "statefulset-controller"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"  # apps.StatefulSetPodNameLabel
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"  # apps.PodIndexLabel
REVISION_LABEL = "controller-revision-hash"  # apps.StatefulSetRevisionLabel
HASH_LABEL = "controller.kubernetes.io/hash"  # history.ControllerRevisionHashLabel
SET_API, SET_KIND = "apps/v1", "StatefulSet"
POD_API, POD_KIND = "v1", "Pod"
_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")  # statefulPodRegex


# -- stateful_set_utils.go ---------------------------------------------------------------------
def parent_and_ordinal(pod: JSON) -> tuple[str, int]:
    """``getParentNameAndOrdinal``."""
    m = _ORDINAL.match(pod["metadata"]["name"])
    if not m:
        return "", -1
    n = int(m.group(2))
    return m.group(1), n if n < 2**31 else -1


def ordinal(pod: JSON) -> int:
    return parent_and_ordinal(pod)[1]


def start_ordinal(set_: JSON) -> int:
    return int(((set_.get("spec") or {}).get("ordinals") or {}).get("start") or 0)


def replicas_of(set_: JSON) -> int:
    return int((set_.get("spec") or {}).get("replicas", 1))


def end_ordinal(set_: JSON) -> int:
    return start_ordinal(set_) + replicas_of(set_) - 1


def in_ordinal_range(pod: JSON, set_: JSON) -> bool:
    o = ordinal(pod)
    return start_ordinal(set_) <= o <= end_ordinal(set_)


def pod_name(set_: JSON, o: int) -> str:
    return f"{set_['metadata']['name']}-{o}"


def claim_name(set_: JSON, template: JSON, o: int) -> str:
    return f"{(template.get('metadata') or {}).get('name', '')}-{set_['metadata']['name']}-{o}"


def is_member_of(set_: JSON, pod: JSON) -> bool:
    return bool(parent_and_ordinal(pod)[0] == set_["metadata"]["name"])


def identity_matches(set_: JSON, pod: JSON) -> bool:
    parent, o = parent_and_ordinal(pod)
    return (
        o >= 0
        and parent == set_["metadata"]["name"]
        and pod["metadata"]["name"] == pod_name(set_, o)
        and pod["metadata"].get("namespace") == set_["metadata"]["namespace"]
        and (pod["metadata"].get("labels") or {}).get(POD_NAME_LABEL) == pod["metadata"]["name"]
    )


def storage_matches(set_: JSON, pod: JSON) -> bool:
    o = ordinal(pod)
    if o < 0:
        return False
    volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
    for t in (set_.get("spec") or {}).get("volumeClaimTemplates") or []:
        v = volumes.get((t.get("metadata") or {}).get("name"))
        if (
            v is None
            or not v.get("persistentVolumeClaim")
            or v["persistentVolumeClaim"].get("claimName") != claim_name(set_, t, o)
        ):
            return False
    return True


def retention_policy(set_: JSON) -> tuple[str, str]:
    """``getPersistentVolumeClaimRetentionPolicy`` as (whenDeleted, whenScaled)."""
    pol = (set_.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}
    return str(pol.get("whenDeleted") or "Retain"), str(pol.get("whenScaled") or "Retain")


def persistent_volume_claims(set_: JSON, pod: JSON) -> list[tuple[str, JSON]]:
    """``getPersistentVolumeClaims``: each template copied whole, named for the pod, with the
    selector's matchLabels merged into its labels (or as its labels when it has none)."""
    o = ordinal(pod)
    match_labels = ((set_.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    out = []
    for t in (set_.get("spec") or {}).get("volumeClaimTemplates") or []:
        claim = deep_copy(t)
        meta = claim.setdefault("metadata", {})
        meta["name"] = claim_name(set_, t, o)
        meta["namespace"] = set_["metadata"]["namespace"]
        if meta.get("labels") is not None:
            meta["labels"].update(match_labels)
        else:
            meta["labels"] = dict(match_labels)
        out.append(((t.get("metadata") or {}).get("name", ""), claim))
    return out


def update_storage(set_: JSON, pod: JSON) -> None:
    """``updateStorage``: a volume per claim template, then the pod's other volumes."""
    claims = persistent_volume_claims(set_, pod)
    names = {n for n, _ in claims}
    new = [{"name": n, "persistentVolumeClaim": {"claimName": c["metadata"]["name"]}} for n, c in claims]
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if v.get("name") not in names:
            new.append(v)
    if new:
        pod.setdefault("spec", {})["volumes"] = new


def update_identity(set_: JSON, pod: JSON) -> None:
    """``updateIdentity`` (with the PodIndexLabel feature, GA)."""
    o = ordinal(pod)
    pod["metadata"]["name"] = pod_name(set_, o)
    pod["metadata"]["namespace"] = set_["metadata"]["namespace"]
    labels = pod["metadata"].setdefault("labels", {})
    labels[POD_NAME_LABEL] = pod["metadata"]["name"]
    labels[POD_INDEX_LABEL] = str(o)


def new_stateful_set_pod(set_: JSON, o: int) -> JSON:
    """``newStatefulSetPod``: ``GetPodFromTemplate`` + ``initIdentity`` + ``updateStorage``."""
    spec = set_.get("spec") or {}
    pod = pod_from_template(
        spec.get("template") or {}, set_["metadata"]["name"], new_controller_ref(set_, SET_API, SET_KIND)
    )
    pod["metadata"]["name"] = pod_name(set_, o)
    update_identity(set_, pod)
    pod["spec"]["hostname"] = pod["metadata"]["name"]
    if spec.get("serviceName"):
        pod["spec"]["subdomain"] = spec["serviceName"]
    update_storage(set_, pod)
    return pod


def pod_revision(pod: JSON) -> str:
    return str((pod["metadata"].get("labels") or {}).get(REVISION_LABEL) or "")


def is_created(pod: JSON) -> bool:
    return phase(pod) != ""


def is_terminating(pod: JSON) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_running_and_ready(pod: JSON) -> bool:
    return phase(pod) == "Running" and is_pod_ready(pod)


def is_unavailable(pod: JSON, min_ready: int) -> bool:
    return not is_pod_available(pod, min_ready) or is_terminating(pod)


def _matches_ref(ref: JSON, obj: JSON, api_version: str, kind: str) -> bool:
    return (
        ref.get("apiVersion") == api_version
        and ref.get("kind") == kind
        and ref.get("name") == obj["metadata"]["name"]
    )


def _uid(obj: JSON) -> str:
    return str(obj["metadata"].get("uid") or "")


def has_owner_ref(target: JSON, owner: JSON) -> bool:
    return any(r.get("uid") == _uid(owner) for r in target["metadata"].get("ownerReferences") or [])


def has_stale_owner_ref(target: JSON, obj: JSON, api_version: str, kind: str) -> bool:
    for r in target["metadata"].get("ownerReferences") or []:
        if _matches_ref(r, obj, api_version, kind):
            return bool(r.get("uid") != _uid(obj))
    return False


def has_unexpected_controller(claim: JSON, set_: JSON, pod: JSON) -> bool:
    when_deleted, when_scaled = retention_policy(set_)
    if when_deleted == "Retain" and when_scaled == "Retain":
        return False
    for r in claim["metadata"].get("ownerReferences") or []:
        if _matches_ref(r, set_, SET_API, SET_KIND):
            if r.get("uid") != _uid(set_):
                return True
            continue
        if _matches_ref(r, pod, POD_API, POD_KIND):
            if r.get("uid") != _uid(pod):
                return True
            continue
        if r.get("controller"):
            return True
    return False


def has_non_controller_owner(claim: JSON, set_: JSON, pod: JSON) -> bool:
    for r in claim["metadata"].get("ownerReferences") or []:
        if r.get("uid") in (_uid(set_), _uid(pod)) and not r.get("controller"):
            return True
    return False


def is_claim_owner_up_to_date(claim: JSON, set_: JSON, pod: JSON) -> bool:
    """``isClaimOwnerUpToDate``."""
    if has_stale_owner_ref(claim, set_, SET_API, SET_KIND) or has_stale_owner_ref(
        claim, pod, POD_API, POD_KIND
    ):
        return True
    if has_unexpected_controller(claim, set_, pod):
        return not (has_owner_ref(claim, set_) or has_owner_ref(claim, pod))
    if has_non_controller_owner(claim, set_, pod):
        return False
    when_deleted, when_scaled = retention_policy(set_)
    scaled_down = not in_ordinal_range(pod, set_)
    if when_scaled == "Delete" and when_deleted == "Delete":
        return scaled_down != has_owner_ref(claim, set_) and scaled_down == has_owner_ref(claim, pod)
    if when_scaled == "Delete":
        return not has_owner_ref(claim, set_) and scaled_down == has_owner_ref(claim, pod)
    if when_deleted == "Delete":
        return has_owner_ref(claim, set_) and not has_owner_ref(claim, pod)
    return not (has_owner_ref(claim, set_) or has_owner_ref(claim, pod))


def update_claim_owner_refs(claim: JSON, set_: JSON, pod: JSON) -> None:
    """``updateClaimOwnerRefForSetAndPod``."""
    unexpected = has_unexpected_controller(claim, set_, pod)
    refs = [
        r
        for r in claim["metadata"].get("ownerReferences") or []
        if not (_matches_ref(r, set_, SET_API, SET_KIND) or _matches_ref(r, pod, POD_API, POD_KIND))
    ]
    if not unexpected:
        when_deleted, when_scaled = retention_policy(set_)
        scaled_down = not in_ordinal_range(pod, set_)

        def add(owner: JSON, api_version: str, kind: str) -> None:
            if not any(r.get("uid") == _uid(owner) for r in refs):
                refs.append(new_controller_ref(owner, api_version, kind))

        if when_scaled == "Delete" and scaled_down:
            add(pod, POD_API, POD_KIND)
        if when_deleted == "Delete" and (when_scaled != "Delete" or not scaled_down):
            add(set_, SET_API, SET_KIND)
    if refs:
        claim["metadata"]["ownerReferences"] = refs
    else:
        claim["metadata"].pop("ownerReferences", None)


# -- revisions (stateful_set_utils.go, history/controller_history.go) --------------------------
def revision_data(set_: JSON) -> JSON:
    """``getPatch``: ``{"spec": {"template": <template>, "$patch": "replace"}}``."""
    template = deep_copy((set_.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def apply_revision(set_: JSON, revision: JSON) -> JSON:
    """``ApplyRevision``: the strategic merge patch replaces ``spec.template``."""
    clone: JSON = deep_copy(set_)
    template = deep_copy(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    clone.setdefault("spec", {})["template"] = template
    return clone


def revision_hash(data: JSON, collision_count: int | None) -> str:
    """``HashControllerRevision``: FNV-1 of the raw data, then the collision count, safe-encoded."""
    raw = go_json(data)
    if collision_count is not None:
        raw += str(collision_count).encode()
    return safe_encode(str(fnv32(raw)))


def revision_name(prefix: str, h: str) -> str:
    """``ControllerRevisionName``."""
    return f"{prefix[:223]}-{h}"


def equal_revision(a: JSON, b: JSON) -> bool:
    """``EqualRevision``: the hash labels never parse as numbers, so it compares the data."""
    return go_json(a.get("data") or {}) == go_json(b.get("data") or {})


def _revision_sort_key(r: JSON) -> tuple[int, str, str]:
    """``history.SortControllerRevisions`` (byRevision: revision, then creation time, then name)."""
    return (int(r.get("revision") or 0), r["metadata"].get("creationTimestamp") or "", r["metadata"]["name"])


class StatefulSetController(Controller):
    name = "statefulset"

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.set_rt = self.api.resource("apps", "v1", "statefulsets")
        self.pod_rt = self.api.resource("", "v1", "pods")
        self.pvc_rt = self.api.resource("", "v1", "persistentvolumeclaims")
        self.rev_rt = self.api.resource("apps", "v1", "controllerrevisions")
        cfg = cluster.config
        self.backoff = RetryBackoff(cfg.workload_retry_start, cfg.workload_retry_max)
        self.resync_period = cfg.statefulset_resync_period

    # -- stateful_set.go: event handlers --------------------------------------------------------
    def keys_for(self, change: Change) -> Iterable[Hashable]:
        if change.key == "apps/statefulsets":
            if change.type != "DELETED":
                yield (change.obj["metadata"]["namespace"], change.obj["metadata"]["name"])
        elif change.key == "/pods":
            owners = owners_for(change, SET_KIND)
            yield from owners
            if not owners and change.type != "DELETED":
                # An orphan: every set whose selector matches it (getPodStatefulSets).
                ns = change.obj["metadata"].get("namespace", "")
                for s in self.store.iter("apps/statefulsets", ns):
                    if selector_matches(selector_reqs((s.get("spec") or {}).get("selector")), change.obj):
                        yield (ns, s["metadata"]["name"])

    def initial_keys(self) -> Iterable[Hashable]:
        for s in self.store.iter("apps/statefulsets"):
            yield (s["metadata"]["namespace"], s["metadata"]["name"])

    def start(self) -> None:
        super().start()
        self._schedule_resync()

    def _schedule_resync(self) -> None:
        if self.resync_period <= 0:
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            for key in self.initial_keys():
                self.enqueue(key)
            self._schedule_resync()

        handle = loop.call_later(self.resync_period, fire)
        self._timers.add(handle)

    async def reconcile(self, key: Hashable) -> float | None:
        ns, name = cast(tuple[str, str], key)
        try:
            again = self.sync(ns, name)
        except SyncError:
            return self.backoff.failed(key)
        self.backoff.forget(key)
        return again

    # -- stateful_set.go: sync / syncStatefulSet ------------------------------------------------
    def sync(self, ns: str, name: str) -> float | None:
        set_ = self.api.get_or_none(self.set_rt, ns, name)
        if set_ is None:
            return None
        reqs = selector_reqs((set_.get("spec") or {}).get("selector"))
        if reqs is None:
            return None  # "error converting StatefulSet selector": a non-transient error
        self._adopt_orphan_revisions(set_, reqs)
        pods = self._pods_for_set(set_, reqs)
        status = self.update_stateful_set(set_, pods)
        min_ready = int((set_.get("spec") or {}).get("minReadySeconds") or 0)
        if (
            min_ready > 0
            and status is not None
            and int(status.get("availableReplicas") or 0) != replicas_of(set_)
        ):
            # One more sync to handle the clock skew; kubesim comes back when the next pod turns available.
            waits = [w for w in (available_in(p, min_ready) for p in pods) if w]
            return min(waits) + 0.05 if waits else float(min_ready)
        return None

    def _pods_for_set(self, set_: JSON, reqs: list[Requirement]) -> list[JSON]:
        """``getPodsForStatefulSet``: claim the namespace's pods that are members of the set."""
        pods = [deep_copy(p) for p in self.store.iter("/pods", set_["metadata"]["namespace"])]
        manager = RefManager(
            self.api, self.pod_rt, set_, SET_API, SET_KIND, reqs, match_filter=lambda p: is_member_of(set_, p)
        )
        return manager.claim(pods)

    def _list_revisions(self, set_: JSON, reqs: list[Requirement]) -> list[JSON]:
        """``ListControllerRevisions``: matching revisions owned by the set, or orphans."""
        out = []
        for r in self.store.iter("apps/controllerrevisions", set_["metadata"]["namespace"]):
            if not selector_matches(reqs, r):
                continue
            ref = controller_ref(r)
            if ref is None or ref.get("uid") == _uid(set_):
                out.append(deep_copy(r))
        return sorted(out, key=_revision_sort_key)

    def _adopt_orphan_revisions(self, set_: JSON, reqs: list[Requirement]) -> None:
        """``adoptOrphanRevisions`` (``AdoptControllerRevision``)."""
        orphans = [r for r in self._list_revisions(set_, reqs) if controller_ref(r) is None]
        if not orphans or set_["metadata"].get("deletionTimestamp"):
            return
        for r in orphans:
            cur = self.api.get_or_none(self.rev_rt, r["metadata"]["namespace"], r["metadata"]["name"])
            if cur is None:
                continue
            cur["metadata"]["ownerReferences"] = [
                *(cur["metadata"].get("ownerReferences") or []),
                new_controller_ref(set_, SET_API, SET_KIND),
            ]
            try:
                self.api.update(
                    self.rev_rt, r["metadata"]["namespace"], r["metadata"]["name"], cur, internal_patch=True
                )
            except StatusError as e:
                raise SyncError(error_text(e)) from None

    # -- stateful_set_control.go: UpdateStatefulSet ---------------------------------------------
    def update_stateful_set(self, set_: JSON, pods: list[JSON]) -> JSON | None:
        reqs = selector_reqs((set_.get("spec") or {}).get("selector")) or []
        revisions = self._list_revisions(set_, reqs)
        errors: list[str] = []
        current: JSON | None = None
        update: JSON | None = None
        status: JSON | None = None
        try:
            current, update, collision = self._get_revisions(set_, revisions)
            status, err = self._update_pods(set_, current, update, collision, pods)
            if err:
                errors.append(err)
            if status is not None:
                try:
                    self._update_status(set_, status)
                except StatusError as e:
                    errors.append(error_text(e))
        except SyncError as e:
            errors.append(str(e))
        try:
            self._truncate_history(set_, pods, revisions, current, update)
        except StatusError as e:
            errors.append(error_text(e))
        if errors:
            raise SyncError(aggregate(errors))
        return status

    def _truncate_history(
        self, set_: JSON, pods: list[JSON], revisions: list[JSON], current: JSON | None, update: JSON | None
    ) -> None:
        """``truncateHistory``: delete the oldest non-live revisions beyond revisionHistoryLimit."""
        live = {pod_revision(p) for p in pods}
        for r in (current, update):
            if r is not None:
                live.add(r["metadata"]["name"])
        history = [r for r in revisions if r["metadata"]["name"] not in live]
        limit = int((set_.get("spec") or {}).get("revisionHistoryLimit", 10))
        if limit < 0 or len(history) <= limit:
            return
        for r in history[: len(history) - limit]:
            try:
                self.api.delete(self.rev_rt, r["metadata"]["namespace"], r["metadata"]["name"])
            except StatusError as e:
                if e.code != 404:
                    raise

    def _get_revisions(self, set_: JSON, revisions: list[JSON]) -> tuple[JSON, JSON, int]:
        """``getStatefulSetRevisions``."""
        collision = int((set_.get("status") or {}).get("collisionCount") or 0)
        next_rev = int(revisions[-1].get("revision") or 0) + 1 if revisions else 1
        candidate = self._new_revision(set_, next_rev, collision)
        equal = [r for r in revisions if equal_revision(r, candidate)]
        if equal and equal_revision(revisions[-1], equal[-1]):
            update = revisions[-1]
        elif equal:
            # A rollback: the equivalent revision gets the next number (UpdateControllerRevision).
            cur = self.api.get_or_none(
                self.rev_rt, set_["metadata"]["namespace"], equal[-1]["metadata"]["name"]
            )
            if cur is None:
                raise SyncError(f'controllerrevisions.apps "{equal[-1]["metadata"]["name"]}" not found')
            cur["revision"] = next_rev
            try:
                update = dict(
                    self.api.update(
                        self.rev_rt,
                        set_["metadata"]["namespace"],
                        cur["metadata"]["name"],
                        cur,
                        internal_patch=True,
                    ).obj
                )
            except StatusError as e:
                raise SyncError(error_text(e)) from None
        else:
            update, collision = self._create_revision(set_, candidate, collision)
        name = (set_.get("status") or {}).get("currentRevision")
        current = next((r for r in revisions if r["metadata"]["name"] == name), None)
        return (current or update), update, collision

    def _new_revision(self, set_: JSON, revision: int, collision: int) -> JSON:
        """``newRevision`` / ``history.NewControllerRevision``."""
        data = revision_data(set_)
        h = revision_hash(data, collision)
        labels = dict(
            (((set_.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
        )
        labels[HASH_LABEL] = h
        meta: JSON = {
            "name": revision_name(set_["metadata"]["name"], h),
            "namespace": set_["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [new_controller_ref(set_, SET_API, SET_KIND)],
        }
        if set_["metadata"].get("annotations"):
            meta["annotations"] = dict(set_["metadata"]["annotations"])
        return {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": meta,
            "data": data,
            "revision": revision,
        }

    def _create_revision(self, set_: JSON, candidate: JSON, collision: int) -> tuple[JSON, int]:
        """``CreateControllerRevision``: on a name collision with other data, bump collisionCount."""
        ns = set_["metadata"]["namespace"]
        while True:
            rev = deep_copy(candidate)
            h = revision_hash(rev["data"], collision)
            rev["metadata"]["name"] = revision_name(set_["metadata"]["name"], h)
            rev["metadata"]["labels"][HASH_LABEL] = h
            try:
                return dict(self.api.create(self.rev_rt, ns, rev).obj), collision
            except StatusError as e:
                if e.code != 409 or e.reason != "AlreadyExists":
                    raise SyncError(error_text(e)) from None
                existing = self.api.get_or_none(self.rev_rt, ns, rev["metadata"]["name"])
                if existing is not None and equal_revision(existing, rev):
                    return existing, collision
                collision += 1

    # -- stateful_set_control.go: updateStatefulSet --------------------------------------------
    def _update_pods(
        self, set_: JSON, current: JSON, update: JSON, collision: int, pods: list[JSON]
    ) -> tuple[JSON, str | None]:
        current_set = apply_revision(set_, current)
        update_set = apply_revision(set_, update)
        spec = set_.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        status: JSON = {
            "observedGeneration": set_["metadata"].get("generation"),
            "currentRevision": current["metadata"]["name"],
            "updateRevision": update["metadata"]["name"],
            "collisionCount": collision,
        }
        cur_name, upd_name = current["metadata"]["name"], update["metadata"]["name"]
        self._compute_status(status, min_ready, cur_name, upd_name, pods)
        start, end = start_ordinal(set_), end_ordinal(set_)
        replicas: list[JSON | None] = [None] * replicas_of(set_)
        condemned: list[JSON] = []
        for p in pods:
            if in_ordinal_range(p, set_):
                replicas[ordinal(p) - start] = p
            elif ordinal(p) >= 0:
                condemned.append(p)
        for o in range(start, end + 1):
            if replicas[o - start] is None:
                replicas[o - start] = self._new_versioned_pod(current_set, update_set, cur_name, upd_name, o)
        reps: list[JSON] = [p for p in replicas if p is not None]
        condemned.sort(key=ordinal, reverse=True)  # descendingOrdinal
        first_unavailable: JSON | None = None
        for p in reps:
            if is_unavailable(p, min_ready):
                first_unavailable = p
                break
        if first_unavailable is None:
            for p in reversed(condemned):
                if is_unavailable(p, min_ready):
                    first_unavailable = p
                    break

        def finish(err: str | None) -> tuple[JSON, str | None]:
            self._compute_status(status, min_ready, cur_name, upd_name, reps + condemned)
            return status, err

        if set_["metadata"].get("deletionTimestamp"):
            return status, None
        monotonic = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"

        stop, err = self._run_for_all(
            len(reps), lambda i: self._process_replica(set_, update_set, monotonic, reps, i), monotonic
        )
        if stop or err:
            return finish(err)

        def fix_claim(i: int) -> tuple[bool, str | None]:
            try:
                if not self._claims_match_retention(update_set, condemned[i]):
                    self._update_claims_for_retention(update_set, condemned[i])
            except SyncError as e:
                return True, str(e)
            return False, None

        stop, err = self._run_for_all(len(condemned), fix_claim, monotonic)
        if stop or err:
            return finish(err)
        stop, err = self._run_for_all(
            len(condemned),
            lambda i: self._process_condemned(set_, first_unavailable, monotonic, condemned, i),
            monotonic,
        )
        if stop or err:
            return finish(err)
        self._compute_status(status, min_ready, cur_name, upd_name, reps + condemned)
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") == "OnDelete":
            return status, None
        return self._rolling_update(set_, reps, upd_name, status, min_ready)

    def _rolling_update(
        self, set_: JSON, reps: list[JSON], upd_name: str, status: JSON, min_ready: int
    ) -> tuple[JSON, str | None]:
        """``updateStatefulSetAfterInvariantEstablished`` (MaxUnavailableStatefulSet)."""
        ru = ((set_.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate")
        update_min = 0
        max_unavailable = 1
        if ru is not None:
            update_min = int(ru.get("partition") or 0)
            max_unavailable = max(1, _int_or_percent(ru.get("maxUnavailable", 1), replicas_of(set_), False))
        unavailable = sum(1 for p in reps if is_unavailable(p, min_ready))
        if unavailable >= max_unavailable:
            return status, None
        to_delete = max_unavailable - unavailable
        deleted = 0
        target = len(reps) - 1
        while target >= update_min and deleted < to_delete:
            p = reps[target]
            if pod_revision(p) != upd_name and not is_terminating(p):
                try:
                    self._delete_pod(set_, p)
                except StatusError as e:
                    if e.code != 404:
                        return status, error_text(e)
                deleted += 1
                status["currentReplicas"] = int(status.get("currentReplicas") or 0) - 1
            target -= 1
        return status, None

    @staticmethod
    def _run_for_all(
        n: int, fn: Callable[[int], tuple[bool, str | None]], monotonic: bool
    ) -> tuple[bool, str | None]:
        """``runForAll``: in order, stopping at the first blocker (OrderedReady), or in slow-start
        batches of 1, 2, 4, ... that stop after a batch with errors (Parallel)."""
        if monotonic:
            for i in range(n):
                stop, err = fn(i)
                if stop or err:
                    return True, err
            return False, None
        i = 0
        batch = min(1, n)
        errors: list[str] = []
        while batch > 0:
            for _ in range(batch):
                _, err = fn(i)
                i += 1
                if err:
                    errors.append(err)
            if errors:
                return True, aggregate(errors)
            batch = min(2 * batch, n - i, 500)
        return False, None

    @staticmethod
    def _new_versioned_pod(current_set: JSON, update_set: JSON, cur_name: str, upd_name: str, o: int) -> JSON:
        """``newVersionedStatefulSetPod``: ordinals below the partition get the current revision."""
        strategy = (current_set.get("spec") or {}).get("updateStrategy") or {}
        ru = strategy.get("rollingUpdate")
        start = start_ordinal(current_set)
        current_replicas = int((current_set.get("status") or {}).get("currentReplicas") or 0)
        if (
            strategy.get("type", "RollingUpdate") == "RollingUpdate"
            and ru is None
            and o < start + current_replicas
        ) or (ru is not None and o < start + int(ru.get("partition") or 0)):
            pod = new_stateful_set_pod(current_set, o)
            pod["metadata"]["labels"][REVISION_LABEL] = cur_name
            return pod
        pod = new_stateful_set_pod(update_set, o)
        pod["metadata"]["labels"][REVISION_LABEL] = upd_name
        return pod

    @staticmethod
    def _compute_status(status: JSON, min_ready: int, cur_name: str, upd_name: str, pods: list[JSON]) -> None:
        """``updateStatus`` / ``computeReplicaStatus``."""
        counts = dict.fromkeys(
            ("replicas", "readyReplicas", "availableReplicas", "currentReplicas", "updatedReplicas"), 0
        )
        for p in pods:
            if is_created(p):
                counts["replicas"] += 1
            if is_running_and_ready(p):
                counts["readyReplicas"] += 1
                if is_pod_available(p, min_ready):
                    counts["availableReplicas"] += 1
            if is_created(p) and not is_terminating(p):
                if pod_revision(p) == cur_name:
                    counts["currentReplicas"] += 1
                if pod_revision(p) == upd_name:
                    counts["updatedReplicas"] += 1
        status.update(counts)

    def _process_replica(
        self, set_: JSON, update_set: JSON, monotonic: bool, replicas: list[JSON], i: int
    ) -> tuple[bool, str | None]:
        """``processReplica``."""
        pod = replicas[i]
        min_ready = int((set_.get("spec") or {}).get("minReadySeconds") or 0)
        try:
            # Failed and Succeeded pods are deleted; the replacement comes once the old pod is gone.
            if phase(pod) in ("Failed", "Succeeded"):
                if not is_terminating(pod):
                    self._delete_pod(set_, pod)
                return True, None
            if not is_created(pod):
                if retention_policy(set_)[1] == "Delete" and self._pod_claim_is_stale(set_, pod):
                    return True, None  # a stale claim: no more work can be done this round
                self._create_pod(set_, pod)
                if monotonic:
                    return True, None
            if phase(pod) == "Pending":
                self._create_missing_claims(set_, pod)
            if is_terminating(pod) and monotonic:
                return True, None
            if not is_running_and_ready(pod) and monotonic:
                return True, None
            if not is_pod_available(pod, min_ready) and monotonic:
                return True, None
            try:
                retention_match = self._claims_match_retention(update_set, pod)
            except SyncError:
                retention_match = True  # expected while the pod is not fully updated
            if identity_matches(set_, pod) and storage_matches(set_, pod) and retention_match:
                return False, None
            self._update_stateful_pod(update_set, deep_copy(pod))
        except SyncError as e:
            return True, str(e)
        except StatusError as e:
            return True, error_text(e)
        return False, None

    def _process_condemned(
        self, set_: JSON, first_unavailable: JSON | None, monotonic: bool, condemned: list[JSON], i: int
    ) -> tuple[bool, str | None]:
        """``processCondemned``."""
        pod = condemned[i]
        min_ready = int((set_.get("spec") or {}).get("minReadySeconds") or 0)
        if is_terminating(pod):
            return monotonic, None
        if not is_running_and_ready(pod) and monotonic and pod is not first_unavailable:
            return True, None
        if not is_pod_available(pod, min_ready) and monotonic and pod is not first_unavailable:
            return True, None
        try:
            self._delete_pod(set_, pod)
        except StatusError as e:
            return True, error_text(e)
        return True, None

    # -- stateful_pod_control.go ------------------------------------------------------------------
    def _record_pod_event(self, verb: str, set_: JSON, pod: JSON, err: str | None) -> None:
        """``recordPodEvent``."""
        name = pod["metadata"]["name"]
        if err is None:
            record(
                self.api, set_, "Normal", f"Successful{verb.title()}",
                f"{verb} Pod {name} in StatefulSet {set_['metadata']['name']} successful", COMPONENT,
            )  # fmt: skip
        else:
            record(
                self.api, set_, "Warning", f"Failed{verb.title()}",
                f"{verb} Pod {name} in StatefulSet {set_['metadata']['name']} failed error: {err}", COMPONENT,
            )  # fmt: skip

    def _record_claim_event(self, verb: str, set_: JSON, pod: JSON, claim: JSON, err: str | None) -> None:
        """``recordClaimEvent``."""
        c, p, s = claim["metadata"]["name"], pod["metadata"]["name"], set_["metadata"]["name"]
        if err is None:
            record(
                self.api,
                set_,
                "Normal",
                f"Successful{verb.title()}",
                f"{verb} Claim {c} Pod {p} in StatefulSet {s} success",
                COMPONENT,
            )
        else:
            record(
                self.api, set_, "Warning", f"Failed{verb.title()}",
                f"{verb} Claim {c} for Pod {p} in StatefulSet {s} failed error: {err}", COMPONENT,
            )  # fmt: skip

    def _create_pod(self, set_: JSON, pod: JSON) -> None:
        """``CreateStatefulPod``: the claims first, then the pod, then the claims' retention refs."""
        try:
            self._create_claims(set_, pod)
        except SyncError as e:
            self._record_pod_event("create", set_, pod, str(e))
            raise
        try:
            self._fault("create", "pods", set_, pod["metadata"]["name"])
            self.api.create(self.pod_rt, set_["metadata"]["namespace"], pod)
        except StatusError as e:
            if e.code == 409 and e.reason == "AlreadyExists":
                raise SyncError(error_text(e)) from None
            self._record_pod_event("create", set_, pod, error_text(e))
            raise SyncError(error_text(e)) from None
        try:
            self._update_claims_for_retention(set_, pod)
        except SyncError as e:
            self._record_pod_event("update", set_, pod, str(e))
            raise
        self._record_pod_event("create", set_, pod, None)

    def _update_stateful_pod(self, set_: JSON, pod: JSON) -> None:
        """``UpdateStatefulPod``."""
        consistent = True
        try:
            if not identity_matches(set_, pod):
                update_identity(set_, pod)
                consistent = False
            if not storage_matches(set_, pod):
                update_storage(set_, pod)
                consistent = False
                self._create_claims(set_, pod)
            if not self._claims_match_retention(set_, pod):
                self._update_claims_for_retention(set_, pod)
                consistent = False
        except SyncError as e:
            self._record_pod_event("update", set_, pod, str(e))
            raise
        if consistent:
            return
        pod["metadata"].pop("resourceVersion", None)
        try:
            self.api.update(
                self.pod_rt, set_["metadata"]["namespace"], pod["metadata"]["name"], pod, internal_patch=True
            )
        except StatusError as e:
            self._record_pod_event("update", set_, pod, error_text(e))
            raise SyncError(error_text(e)) from None
        self._record_pod_event("update", set_, pod, None)

    def _delete_pod(self, set_: JSON, pod: JSON) -> None:
        """``DeleteStatefulPod``: a plain (graceful) delete and its event."""
        try:
            self._fault("delete", "pods", set_, pod["metadata"]["name"])
            self.api.delete(self.pod_rt, set_["metadata"]["namespace"], pod["metadata"]["name"])
        except StatusError as e:
            self._record_pod_event("delete", set_, pod, error_text(e))
            raise
        self._record_pod_event("delete", set_, pod, None)

    def _fault(self, verb: str, resource: str, set_: JSON, name: str) -> None:
        inject_fault(
            self.cluster,
            self.name,
            verb,
            resource,
            set_["metadata"]["namespace"],
            name,
            set_["metadata"]["name"],
        )

    def _get_claim(self, ns: str, name: str) -> JSON | None:
        return self.api.get_or_none(self.pvc_rt, ns, name)

    def _create_claims(self, set_: JSON, pod: JSON) -> None:
        """``createPersistentVolumeClaims``: a missing claim is created from its template; an
        existing one is used as it is, unless it is being deleted ("pvc X is being deleted")."""
        errors: list[str] = []
        for _, claim in persistent_volume_claims(set_, pod):
            ns, name = claim["metadata"]["namespace"], claim["metadata"]["name"]
            existing = self._get_claim(ns, name)
            if existing is None:
                try:
                    self._fault("create", "persistentvolumeclaims", set_, name)
                    self.api.create(self.pvc_rt, ns, claim)
                except StatusError as e:
                    errors.append(f"failed to create PVC {name}: {error_text(e)}")
                    if not (e.code == 409 and e.reason == "AlreadyExists"):
                        self._record_claim_event("create", set_, pod, claim, error_text(e))
                    continue
                self._record_claim_event("create", set_, pod, claim, None)
            elif existing["metadata"].get("deletionTimestamp"):
                errors.append(f"pvc {name} is being deleted")
        if errors:
            raise SyncError(aggregate(errors))

    def _create_missing_claims(self, set_: JSON, pod: JSON) -> None:
        """``createMissingPersistentVolumeClaims`` (every sync of a Pending pod)."""
        self._create_claims(set_, pod)
        try:
            self._update_claims_for_retention(set_, pod)
        except SyncError as e:
            self._record_pod_event("update", set_, pod, str(e))
            raise

    def _claims_match_retention(self, set_: JSON, pod: JSON) -> bool:
        """``ClaimsMatchRetentionPolicy``."""
        for _, claim in persistent_volume_claims(set_, pod):
            existing = self._get_claim(claim["metadata"]["namespace"], claim["metadata"]["name"])
            if existing is not None and not is_claim_owner_up_to_date(existing, set_, pod):
                return False
        return True

    def _update_claims_for_retention(self, set_: JSON, pod: JSON) -> None:
        """``UpdatePodClaimForRetentionPolicy``."""
        for _, claim in persistent_volume_claims(set_, pod):
            name = claim["metadata"]["name"]
            existing = self._get_claim(claim["metadata"]["namespace"], name)
            if existing is None:
                continue  # "Expected claim missing, continuing to pick up in next iteration"
            if has_unexpected_controller(existing, set_, pod):
                record(
                    self.api, set_, "Warning", "ConflictingController",
                    f"PersistentVolumeClaim {name} has a conflicting OwnerReference that acts as a manging controller, "
                    "the retention policy is ignored for this claim", COMPONENT,
                )  # fmt: skip
            if not is_claim_owner_up_to_date(existing, set_, pod):
                update_claim_owner_refs(existing, set_, pod)
                try:
                    self.api.update(
                        self.pvc_rt, existing["metadata"]["namespace"], name, existing, internal_patch=True
                    )
                except StatusError as e:
                    raise SyncError(
                        f"could not update claim {name} for delete policy ownerRefs: {error_text(e)}"
                    ) from None

    def _pod_claim_is_stale(self, set_: JSON, pod: JSON) -> bool:
        """``PodClaimIsStale``: with whenScaled=Delete, a claim whose pod reference names another pod
        (an older incarnation; the new pod has no uid yet) blocks the pod until it is gone."""
        for _, claim in persistent_volume_claims(set_, pod):
            existing = self._get_claim(claim["metadata"]["namespace"], claim["metadata"]["name"])
            if existing is not None and has_stale_owner_ref(existing, pod, POD_API, POD_KIND):
                return True
        return False

    # -- stateful_set_status_updater.go -------------------------------------------------------------
    def _update_status(self, set_: JSON, status: JSON) -> None:
        """``updateStatefulSetStatus``: complete a finished rolling update, write only when
        inconsistent (``inconsistentStatus``)."""
        spec = set_.get("spec") or {}
        want = replicas_of(set_)
        if (
            (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
            and status["updatedReplicas"] == want
            and status["readyReplicas"] == want
            and status["replicas"] == want
        ):
            status["currentReplicas"] = status["updatedReplicas"]
            status["currentRevision"] = status["updateRevision"]
        old = set_.get("status") or {}
        fields = (
            "replicas",
            "currentReplicas",
            "readyReplicas",
            "updatedReplicas",
            "currentRevision",
            "availableReplicas",
            "updateRevision",
        )
        if int(status.get("observedGeneration") or 0) <= int(old.get("observedGeneration") or 0) and all(
            (status.get(f) or 0) == (old.get(f) or 0) for f in fields
        ):
            return
        new_status: JSON = {
            k: v
            for k, v in status.items()
            if v not in (0, "", None) or k in ("replicas", "availableReplicas", "collisionCount")
        }
        if old.get("conditions"):
            new_status["conditions"] = old["conditions"]
        cur = deep_copy(set_)
        cur["status"] = new_status
        cur["metadata"].pop("resourceVersion", None)
        self.api.update(
            self.set_rt,
            set_["metadata"]["namespace"],
            set_["metadata"]["name"],
            cur,
            subresource="status",
            internal_patch=True,
        )
