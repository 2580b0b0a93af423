"""The volume controllers: PV binder and reclaimer, the CSI external-provisioner, PVC and PV protection.

- ``PersistentVolumeController`` follows ``pkg/controller/volume/persistentvolume/pv_controller.go``
  (``syncClaim``, ``syncUnboundClaim``, ``syncBoundClaim``, ``syncVolume``, ``bind``,
  ``reclaimVolume``, ``provisionClaimOperationExternal``), ``index.go`` (``findByClaim``) and
  ``staging/src/k8s.io/component-helpers/storage/volume/pv_helpers.go`` (``FindMatchingVolume``,
  ``GetBindVolumeToClaim``, ``IsVolumeBoundToClaim``). Its events come from
  ``persistentvolume-controller``; it resyncs every claim and volume every
  ``ClusterConfig.pv_resync_period`` seconds (``--pvclaimbinder-sync-period``, 15 s upstream).
- ``ExternalProvisioner`` is the ``csi-provisioner`` sidecar of one kubesim CSI driver:
  kubernetes-sigs/sig-storage-lib-external-provisioner ``controller/controller.go``
  (``shouldProvision``, ``provisionClaimOperation``, ``syncVolume``, ``shouldDelete``,
  ``deleteVolumeOperation``, ``handleProtectionFinalizer``) with kubernetes-csi/external-provisioner
  ``pkg/controller/controller.go`` (``Provision``, ``prepareProvision``, ``getSnapshotSource``,
  ``getPVCSource``, ``Delete``) and ``pkg/controller/clone_controller.go``.
- ``PVCProtectionController``: ``pkg/controller/volume/pvcprotection/pvc_protection_controller.go``.
- ``PVProtectionController``: ``pkg/controller/volume/pvprotection/pv_protection_controller.go``.

Long operations (provisioning with a copy, deleting a volume) run as separate tasks keyed by claim
or volume, as upstream runs them in goroutines (``goroutinemap``) or worker pools, so one slow copy
does not hold up the others. Failed operations are retried with exponential backoff from
``ClusterConfig.volume_retry_start`` to ``volume_retry_max`` (``--retry-interval-start`` /
``--retry-interval-max``, 1 s / 5 min upstream).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Coroutine, Hashable, Iterable
from typing import TYPE_CHECKING, Any

from .. import events
from ..csi import CSIError, format_binary_si, go_quote, quantity_bytes
from ..errors import StatusError
from ..meta import now
from ..store import Change, deep_copy
from .base import Controller

if TYPE_CHECKING:
    from ..cluster import Cluster

log = logging.getLogger("kubesim.controllers.volumes")

JSON = dict[str, Any]

# staging/src/k8s.io/component-helpers/storage/volume/pv_helpers.go
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_DYNAMICALLY_PROVISIONED = "pv.kubernetes.io/provisioned-by"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
ANN_MIGRATED_TO = "pv.kubernetes.io/migrated-to"
PV_DELETION_PROTECTION_FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"
# pkg/volume/util/finalizer.go
PVC_PROTECTION_FINALIZER = "kubernetes.io/pvc-protection"
PV_PROTECTION_FINALIZER = "kubernetes.io/pv-protection"
# external-provisioner pkg/controller/controller.go
PVC_CLONE_FINALIZER = "provisioner.storage.kubernetes.io/cloning-protection"
ANN_DELETION_SECRET_NAME = "volume.kubernetes.io/provisioner-deletion-secret-name"
ANN_DELETION_SECRET_NAMESPACE = "volume.kubernetes.io/provisioner-deletion-secret-namespace"
PROVISIONER_ID_KEY = "storage.kubernetes.io/csiProvisionerIdentity"
CSI_PARAMETER_PREFIX = "csi.storage.k8s.io/"
PREFIXED_FSTYPE_KEY = CSI_PARAMETER_PREFIX + "fstype"
SNAPSHOT_GROUP = "snapshot.storage.k8s.io"
# Parameters with the reserved prefix the provisioner understands (removePrefixedParameters).
_KNOWN_PREFIXED = {
    CSI_PARAMETER_PREFIX + s
    for s in (
        "fstype",
        "secret-name",
        "secret-namespace",
        "provisioner-secret-name",
        "provisioner-secret-namespace",
        "controller-publish-secret-name",
        "controller-publish-secret-namespace",
        "node-stage-secret-name",
        "node-stage-secret-namespace",
        "node-publish-secret-name",
        "node-publish-secret-namespace",
        "controller-expand-secret-name",
        "controller-expand-secret-namespace",
        "node-expand-secret-name",
        "node-expand-secret-namespace",
    )
}

PV_CONTROLLER_COMPONENT = "persistentvolume-controller"


# -- object helpers ----------------------------------------------------------------------------
def annots(obj: JSON) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def finalizers(obj: JSON) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def claim_class(claim: JSON) -> str:
    """``storagehelpers.GetPersistentVolumeClaimClass``: the beta annotation wins over the field."""
    ann = annots(claim)
    if ANN_BETA_STORAGE_CLASS in ann:
        return ann[ANN_BETA_STORAGE_CLASS]
    return str((claim.get("spec") or {}).get("storageClassName") or "")


def claim_has_class(claim: JSON) -> bool:
    """``storagehelpers.PersistentVolumeClaimHasClass``."""
    if ANN_BETA_STORAGE_CLASS in annots(claim):
        return True
    return (claim.get("spec") or {}).get("storageClassName") is not None


def volume_class(volume: JSON) -> str:
    """``storagehelpers.GetPersistentVolumeClass``."""
    ann = annots(volume)
    if ANN_BETA_STORAGE_CLASS in ann:
        return ann[ANN_BETA_STORAGE_CLASS]
    return str((volume.get("spec") or {}).get("storageClassName") or "")


def claim_request(claim: JSON) -> int:
    req = (((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
    return quantity_bytes(req) if req is not None else 0


def volume_capacity(volume: JSON) -> int:
    cap = ((volume.get("spec") or {}).get("capacity") or {}).get("storage")
    return quantity_bytes(cap) if cap is not None else 0


def claim_key(claim: JSON) -> str:
    m = claim["metadata"]
    return f"{m.get('namespace', '')}/{m['name']}"


def is_volume_bound_to_claim(volume: JSON, claim: JSON) -> bool:
    """``storagehelpers.IsVolumeBoundToClaim``: pre-bound (no uid) or bound to this very claim."""
    ref = (volume.get("spec") or {}).get("claimRef")
    if not ref:
        return False
    m = claim["metadata"]
    if ref.get("name") != m["name"] or ref.get("namespace", "") != m.get("namespace", ""):
        return False
    return not (ref.get("uid") and ref.get("uid") != m.get("uid"))


def volume_mode_mismatch(claim: JSON, volume: JSON) -> bool:
    """``storagehelpers.CheckVolumeModeMismatches`` (a missing mode means Filesystem)."""
    a = (claim.get("spec") or {}).get("volumeMode") or "Filesystem"
    b = (volume.get("spec") or {}).get("volumeMode") or "Filesystem"
    return a != b


def check_access_modes(claim: JSON, volume: JSON) -> bool:
    """``storagehelpers.CheckAccessModes``: the volume offers every mode the claim asks for."""
    offered = set((volume.get("spec") or {}).get("accessModes") or [])
    return all(m in offered for m in (claim.get("spec") or {}).get("accessModes") or [])


def _label_selector_matches(selector: JSON | None, labels: dict[str, str]) -> bool:
    if not selector:
        return True
    from ..selectors import labels_match, selector_from_label_selector

    reqs = selector_from_label_selector(selector)
    return reqs is None or labels_match(reqs, labels)


def find_matching_volume(claim: JSON, volumes: list[JSON], delay_binding: bool) -> JSON | None:
    """``storagehelpers.FindMatchingVolume`` on the PV controller path (no node, nothing excluded).

    A volume pre-bound to the claim (claimRef namespace/name, and uid if set) is returned as soon as
    it has the capacity, the volume mode and no deletionTimestamp: its phase, class, selector and
    the delay-binding mode are not looked at. Other volumes must be unclaimed, Available, match the
    claim's selector and class, and are skipped entirely under delay binding (the scheduler binds
    those); the smallest one wins.
    """
    requested = claim_request(claim)
    requested_class = claim_class(claim)
    selector = (claim.get("spec") or {}).get("selector")
    smallest: JSON | None = None
    smallest_qty = 0
    for volume in volumes:
        spec = volume.get("spec") or {}
        if spec.get("claimRef") and not is_volume_bound_to_claim(volume, claim):
            continue
        qty = volume_capacity(volume)
        if qty < requested:
            continue
        if volume_mode_mismatch(claim, volume):
            continue
        if volume["metadata"].get("deletionTimestamp"):
            continue
        if is_volume_bound_to_claim(volume, claim):
            return volume
        if delay_binding:
            # PV controller does not bind this claim; the scheduler binds unbound volumes.
            continue
        if (volume.get("status") or {}).get("phase") != "Available":
            continue
        if selector and not _label_selector_matches(selector, volume["metadata"].get("labels") or {}):
            continue
        if volume_class(volume) != requested_class:
            continue
        if smallest is None or smallest_qty > qty:
            smallest, smallest_qty = volume, qty
    return smallest


def find_best_match_for_claim(claim: JSON, volumes: Iterable[JSON], delay_binding: bool) -> JSON | None:
    """``persistentVolumeOrderedIndex.findByClaim`` (index.go).

    Volumes are indexed by their set of access modes; only the sets that contain every mode the
    claim asks for are searched, the smallest sets first (``allPossibleMatchingAccessModes``), and
    ``FindMatchingVolume`` runs on each set in turn.
    """
    wanted = set((claim.get("spec") or {}).get("accessModes") or [])
    groups: dict[tuple[str, ...], list[JSON]] = {}
    for v in volumes:
        modes = tuple(sorted(set((v.get("spec") or {}).get("accessModes") or [])))
        if wanted <= set(modes):
            groups.setdefault(modes, []).append(v)
    for modes in sorted(groups, key=lambda m: (len(m), m)):
        found = find_matching_volume(claim, groups[modes], delay_binding)
        if found is not None:
            return found
    return None


def claim_reference(claim: JSON) -> JSON:
    """``reference.GetReference`` of a claim, as a PV's ``spec.claimRef``."""
    m = claim["metadata"]
    return {
        "kind": "PersistentVolumeClaim",
        "namespace": m.get("namespace", ""),
        "name": m["name"],
        "uid": m["uid"],
        "apiVersion": "v1",
        "resourceVersion": m.get("resourceVersion", ""),
    }


def pod_claim_names(pod: JSON) -> list[str]:
    """Claims a pod uses: ``persistentVolumeClaim`` volumes and generic ephemeral volumes."""
    out = []
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if isinstance(v.get("persistentVolumeClaim"), dict):
            out.append(str(v["persistentVolumeClaim"].get("claimName", "")))
        elif v.get("ephemeral") is not None:
            out.append(f"{pod['metadata']['name']}-{v.get('name', '')}")  # ephemeral.VolumeClaimName
    return out


def is_pod_terminated(pod: JSON) -> bool:
    """``pkg/volume/util.IsPodTerminated``: Failed/Succeeded, or being deleted with no running container."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Failed", "Succeeded"):
        return True
    if pod["metadata"].get("deletionTimestamp"):
        for cs in status.get("containerStatuses") or []:
            state = cs.get("state") or {}
            if not state.get("terminated") and not state.get("waiting"):
                return False
        return True
    return False


def claim_data_source(claim: JSON) -> JSON | None:
    """external-provisioner ``dataSource``: dataSourceRef wins over dataSource (both are normally equal)."""
    spec = claim.get("spec") or {}
    src = spec.get("dataSourceRef") or spec.get("dataSource")
    if not isinstance(src, dict):
        return None
    return {"kind": src.get("kind", ""), "name": src.get("name", ""), "apiGroup": src.get("apiGroup") or ""}


class Operations:
    """``goroutinemap`` plus a per-key exponential-backoff rate limiter (client-go workqueue)."""

    def __init__(self, start: Callable[[], float], maximum: Callable[[], float]) -> None:
        self._running: dict[Hashable, asyncio.Task[Any]] = {}
        self._dirty: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._start = start
        self._max = maximum

    def running(self, key: Hashable) -> bool:
        if key in self._running:
            self._dirty.add(key)
            return True
        return False

    def run(
        self,
        key: Hashable,
        coro: Coroutine[Any, Any, Any],
        done: Callable[[Hashable, BaseException | None, Any, bool], None],
    ) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"volume-op-{key}")
        self._running[key] = task

        def finished(t: asyncio.Task[Any]) -> None:
            self._running.pop(key, None)
            dirty = key in self._dirty
            self._dirty.discard(key)
            if t.cancelled():
                return
            exc = t.exception()
            done(key, exc, None if exc is not None else t.result(), dirty)

        task.add_done_callback(finished)

    def backoff(self, key: Hashable) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        return float(min(self._start() * (2.0 ** min(n, 64)), self._max()))  # never overflows

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def cancel_all(self) -> None:
        for t in list(self._running.values()):
            t.cancel()
        self._running.clear()


class VolumeControllerBase(Controller):
    """Shared plumbing: resource types, fresh reads, writes that conflict like a client's, events."""

    component = ""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.pvc_rt = self.api.resource("", "v1", "persistentvolumeclaims")
        self.pv_rt = self.api.resource("", "v1", "persistentvolumes")
        self.sc_rt = self.api.resource("storage.k8s.io", "v1", "storageclasses")
        self.ops = Operations(
            lambda: float(self.cluster.config.volume_retry_start),
            lambda: float(self.cluster.config.volume_retry_max),
        )

    async def stop(self) -> None:
        self.ops.cancel_all()
        await super().stop()

    def get_claim(self, ns: str, name: str) -> JSON | None:
        return self.api.get_or_none(self.pvc_rt, ns, name)

    def get_volume(self, name: str) -> JSON | None:
        return self.api.get_or_none(self.pv_rt, "", name)

    def get_class(self, name: str) -> JSON | None:
        return self.api.get_or_none(self.sc_rt, "", name) if name else None

    def update(self, rt: Any, obj: JSON, subresource: str = "") -> JSON:
        """An Update carrying the object's resourceVersion: stale data fails with 409 Conflict."""
        m = obj["metadata"]
        return self.api.update(
            rt, m.get("namespace", ""), m["name"], obj, subresource=subresource, internal_patch=True
        ).obj

    def event(self, obj: JSON, type_: str, reason: str, message: str, component: str | None = None) -> None:
        events.record(self.api, obj, type_, reason, message, component or self.component)

    def retry_delay(self) -> float:
        return float(self.cluster.config.volume_retry_start)


# =============================================================================================
# PV controller (binder and reclaimer)
# =============================================================================================
class PersistentVolumeController(VolumeControllerBase):
    name = "persistentvolume-binder"
    component = PV_CONTROLLER_COMPONENT

    def keys_for(self, change: Change) -> Iterable[Hashable]:
        meta = change.obj["metadata"]
        if change.key == "/persistentvolumeclaims":
            if change.type == "DELETED":
                # pv_controller_base.go: deleteClaim syncs the volume the claim was bound to.
                vol = (change.obj.get("spec") or {}).get("volumeName")
                if vol:
                    yield ("volume", vol)
            else:
                yield ("claim", meta.get("namespace", ""), meta["name"])
        elif change.key == "/persistentvolumes":
            if change.type == "DELETED":
                # deleteVolume syncs the claim bound to the volume (it becomes Lost).
                ref = (change.obj.get("spec") or {}).get("claimRef") or {}
                if ref.get("name"):
                    yield ("claim", ref.get("namespace", ""), ref["name"])
            else:
                yield ("volume", meta["name"])

    def initial_keys(self) -> Iterable[Hashable]:
        yield ("resync",)

    async def reconcile(self, key: Hashable) -> float | None:
        kind = key[0]  # type: ignore[index]
        try:
            if kind == "resync":
                # pv_controller_base.go: resync lists every claim and volume into the queues.
                for c in list(self.store.iter("/persistentvolumeclaims")):
                    self.enqueue(("claim", c["metadata"].get("namespace", ""), c["metadata"]["name"]))
                for v in list(self.store.iter("/persistentvolumes")):
                    self.enqueue(("volume", v["metadata"]["name"]))
                return float(self.cluster.config.pv_resync_period)
            if kind == "claim":
                ns, name = str(key[1]), str(key[2])  # type: ignore[index]
                claim = self.get_claim(ns, name)
                if claim is not None:
                    self.sync_claim(claim)
            elif kind == "volume":
                volume = self.get_volume(key[1])  # type: ignore[index]
                if volume is not None:
                    self.sync_volume(volume)
        except StatusError as e:
            log.debug("persistentvolume-binder: %r: %s", key, e)
            return self.retry_delay()
        return None

    # -- claims ------------------------------------------------------------------------------
    def sync_claim(self, claim: JSON) -> None:
        """``syncClaim``."""
        if ANN_BIND_COMPLETED not in annots(claim):
            self.sync_unbound_claim(claim)
        else:
            self.sync_bound_claim(claim)

    def is_delay_binding_mode(self, claim: JSON) -> bool:
        """``storagehelpers.IsDelayBindingMode``: a missing class is not delay binding."""
        sc = self.get_class(claim_class(claim))
        return sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer"

    def sync_unbound_claim(self, claim: JSON) -> None:
        """``syncUnboundClaim``."""
        spec = claim.get("spec") or {}
        if not spec.get("volumeName"):
            delay_binding = self.is_delay_binding_mode(claim)
            volume = find_best_match_for_claim(claim, self.store.iter("/persistentvolumes"), delay_binding)
            if volume is None:
                # assignDefaultStorageClass: a claim without class gets the default one, if any.
                if self.assign_default_storage_class(claim):
                    return
                if delay_binding and ANN_SELECTED_NODE not in annots(claim):
                    self.emit_event_for_unbound_delay_binding_claim(claim)
                elif claim_class(claim) != "":
                    self.provision_claim(claim)
                    return
                else:
                    self.event(
                        claim,
                        "Normal",
                        "FailedBinding",
                        "no persistent volumes available for this claim and no storage class is set",
                    )
                self.update_claim_status(claim, "Pending", None)
                return
            self.bind(self.get_volume(volume["metadata"]["name"]) or volume, claim)
            return
        # The user asked for a specific PV.
        volume = self.get_volume(spec["volumeName"])
        if volume is None:
            self.update_claim_status(claim, "Pending", None)
            return
        if not (volume.get("spec") or {}).get("claimRef"):
            err = check_volume_satisfy_claim(volume, claim)
            if err:
                self.event(
                    claim,
                    "Warning",
                    "VolumeMismatch",
                    f'Cannot bind to requested volume "{volume["metadata"]["name"]}": {err}',
                )
                self.update_claim_status(claim, "Pending", None)
                return
            self.bind(volume, claim)
            return
        if is_volume_bound_to_claim(volume, claim):
            self.bind(volume, claim)
            return
        self.event(
            claim,
            "Warning",
            "FailedBinding",
            f'volume "{volume["metadata"]["name"]}" already bound to a different claim.',
        )
        if ANN_BOUND_BY_CONTROLLER not in annots(claim):
            self.update_claim_status(claim, "Pending", None)

    def sync_bound_claim(self, claim: JSON) -> None:
        """``syncBoundClaim``."""
        name = (claim.get("spec") or {}).get("volumeName")
        if not name:
            self.update_claim_status_with_event(
                claim,
                "Lost",
                None,
                "Warning",
                "ClaimLost",
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            )
            return
        volume = self.get_volume(name)
        if volume is None:
            self.update_claim_status_with_event(
                claim,
                "Lost",
                None,
                "Warning",
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            )
            return
        ref = (volume.get("spec") or {}).get("claimRef")
        if not ref or ref.get("uid") == claim["metadata"]["uid"]:
            # Unbound volume (re-bind it) or all is well (bind() is then a no-op).
            self.bind(volume, claim)
            return
        self.update_claim_status_with_event(
            claim,
            "Lost",
            None,
            "Warning",
            "ClaimMisbound",
            "Two claims are bound to the same volume, this one is bound incorrectly",
        )

    def emit_event_for_unbound_delay_binding_claim(self, claim: JSON) -> None:
        """``emitEventForUnboundDelayBindingClaim``."""
        reason, message = "WaitForFirstConsumer", "waiting for first consumer to be created before binding"
        pods = self.find_non_scheduled_pods_by_pvc(claim)
        if pods:
            reason = "WaitForPodScheduled"
            if len(pods) > 1:
                message = f"waiting for pods {','.join(pods)} to be scheduled"
            else:
                message = f"waiting for pod {pods[0]} to be scheduled"
        self.event(claim, "Normal", reason, message)

    def pods_using(self, namespace: str, claim_name: str) -> list[JSON]:
        return [p for p in self.store.iter("/pods", namespace) if claim_name in pod_claim_names(p)]

    def find_non_scheduled_pods_by_pvc(self, claim: JSON) -> list[str]:
        """``findNonScheduledPodsByPVC``."""
        m = claim["metadata"]
        return [
            p["metadata"]["name"]
            for p in self.pods_using(m.get("namespace", ""), m["name"])
            if not is_pod_terminated(p) and not (p.get("spec") or {}).get("nodeName")
        ]

    def assign_default_storage_class(self, claim: JSON) -> bool:
        """``assignDefaultStorageClass`` (retroactive default StorageClass)."""
        if claim_has_class(claim):
            return False
        from ..strategies import _default_storage_class

        default = _default_storage_class(self.api)
        if default is None:
            return False
        body = deep_copy(claim)
        body.setdefault("spec", {})["storageClassName"] = default
        try:
            self.update(self.pvc_rt, body)
        except StatusError as e:
            if e.code == 422:
                # kubesim's PVC validation does not allow the nil -> class change; keep going.
                return False
            raise
        return True

    def provision_claim(self, claim: JSON) -> None:
        """``provisionClaim`` for an external provisioner (``provisionClaimOperationExternal``)."""
        sc = self.get_class(claim_class(claim))
        if sc is None:
            # findProvisionablePlugin: the class lister's NotFound error.
            self.event(
                claim,
                "Warning",
                "ProvisioningFailed",
                f'storageclass.storage.k8s.io "{claim_class(claim)}" not found',
            )
            return
        provisioner = str(sc.get("provisioner", ""))
        if provisioner.startswith("kubernetes.io/") and provisioner != "kubernetes.io/no-provisioner":
            self.event(
                claim,
                "Warning",
                "ProvisioningFailed",
                f'failed to find provisioning plugin for "{provisioner}": no volume plugin matched',
            )
            return
        claim = self.set_claim_provisioner(claim, provisioner)
        msg = (
            f"Waiting for a volume to be created either by the external provisioner '{provisioner}' "
            "or manually by the system administrator. If volume creation is delayed, please verify that "
            "the provisioner is running and correctly registered."
        )
        self.event(claim, "Normal", "ExternalProvisioning", msg)

    def set_claim_provisioner(self, claim: JSON, provisioner: str) -> JSON:
        """``setClaimProvisioner``: both the GA and the beta storage-provisioner annotations."""
        if annots(claim).get(ANN_STORAGE_PROVISIONER) == provisioner:
            return claim
        body = deep_copy(claim)
        ann = body["metadata"].setdefault("annotations", {})
        ann[ANN_BETA_STORAGE_PROVISIONER] = provisioner
        ann[ANN_STORAGE_PROVISIONER] = provisioner
        return self.update(self.pvc_rt, body)

    def update_claim_status(self, claim: JSON, phase: str, volume: JSON | None) -> JSON:
        """``updateClaimStatus``: phase, and accessModes/capacity from the volume."""
        status = claim.get("status") or {}
        new = deep_copy(status)
        dirty = False
        if status.get("phase") != phase:
            new["phase"] = phase
            dirty = True
        if volume is None:
            for k in ("accessModes", "capacity"):
                if new.get(k) is not None:
                    new.pop(k)
                    dirty = True
        else:
            vspec = volume.get("spec") or {}
            if new.get("accessModes") != vspec.get("accessModes"):
                new["accessModes"] = deep_copy(vspec.get("accessModes"))
                dirty = True
            # Capacity only when the claim becomes Bound (a difference may be intentional later).
            if status.get("phase") != phase:
                vcap = (vspec.get("capacity") or {}).get("storage")
                if vcap is None:
                    raise StatusError(
                        500,
                        "",
                        f'PersistentVolume "{volume["metadata"]["name"]}" is without a storage capacity',
                    )
                ccap = (status.get("capacity") or {}).get("storage")
                if ccap is None or quantity_bytes(ccap) != quantity_bytes(vcap):
                    new["capacity"] = deep_copy(vspec.get("capacity"))
                    dirty = True
        if not dirty:
            return claim
        body = deep_copy(claim)
        body["status"] = new
        return self.update(self.pvc_rt, body, "status")

    def update_claim_status_with_event(
        self, claim: JSON, phase: str, volume: JSON | None, type_: str, reason: str, message: str
    ) -> JSON:
        """``updateClaimStatusWithEvent``: the event only when the phase changes."""
        if (claim.get("status") or {}).get("phase") == phase:
            return claim
        new = self.update_claim_status(claim, phase, volume)
        self.event(new, type_, reason, message)
        return new

    def update_volume_phase(self, volume: JSON, phase: str, message: str = "") -> JSON:
        """``updateVolumePhase`` (the registry's PrepareForUpdate sets lastPhaseTransitionTime)."""
        status = volume.get("status") or {}
        if status.get("phase") == phase:
            return volume
        body = deep_copy(volume)
        new = body.setdefault("status", {})
        new["phase"] = phase
        if message:
            new["message"] = message
        else:
            new.pop("message", None)
        # pkg/registry/core/persistentvolume/strategy.go: PrepareForUpdate (PersistentVolumeLastPhaseTransitionTime).
        new["lastPhaseTransitionTime"] = now()
        return self.update(self.pv_rt, body, "status")

    def update_volume_phase_with_event(
        self, volume: JSON, phase: str, type_: str, reason: str, message: str
    ) -> JSON:
        if (volume.get("status") or {}).get("phase") == phase:
            return volume
        new = self.update_volume_phase(volume, phase, message)
        self.event(new, type_, reason, message)
        return new

    # -- binding -----------------------------------------------------------------------------
    def bind_volume_to_claim(self, volume: JSON, claim: JSON) -> JSON:
        """``bindVolumeToClaim`` with ``storagehelpers.GetBindVolumeToClaim``."""
        should_set_bound_by_controller = not is_volume_bound_to_claim(volume, claim)
        body = deep_copy(volume)
        dirty = False
        ref = (volume.get("spec") or {}).get("claimRef")
        m = claim["metadata"]
        if (
            not ref
            or ref.get("name") != m["name"]
            or ref.get("namespace", "") != m.get("namespace", "")
            or ref.get("uid", "") != m["uid"]
        ):
            body.setdefault("spec", {})["claimRef"] = claim_reference(claim)
            dirty = True
        ann = body["metadata"].get("annotations") or {}
        if should_set_bound_by_controller and ANN_BOUND_BY_CONTROLLER not in ann:
            body["metadata"].setdefault("annotations", {})[ANN_BOUND_BY_CONTROLLER] = "yes"
            dirty = True
        if not dirty:
            return volume
        return self.update(self.pv_rt, body)

    def bind_claim_to_volume(self, claim: JSON, volume: JSON) -> JSON:
        """``bindClaimToVolume``."""
        body = deep_copy(claim)
        dirty = False
        ann = body["metadata"].setdefault("annotations", {})
        if (claim.get("spec") or {}).get("volumeName") != volume["metadata"]["name"]:
            body.setdefault("spec", {})["volumeName"] = volume["metadata"]["name"]
            ann.setdefault(ANN_BOUND_BY_CONTROLLER, "yes")
            dirty = True
        if ANN_BIND_COMPLETED not in ann:
            ann[ANN_BIND_COMPLETED] = "yes"
            dirty = True
        if not dirty:
            return claim
        return self.update(self.pvc_rt, body)

    def bind(self, volume: JSON, claim: JSON) -> None:
        """``bind``: the volume first (spec, then phase), then the claim (spec, then status)."""
        volume = self.bind_volume_to_claim(volume, claim)
        volume = self.update_volume_phase(volume, "Bound")
        claim = self.bind_claim_to_volume(claim, volume)
        self.update_claim_status(claim, "Bound", volume)

    def unbind_volume(self, volume: JSON) -> None:
        """``unbindVolume``: drop a controller binding, or only the uid of a user's pre-binding."""
        body = deep_copy(volume)
        ann = body["metadata"].get("annotations") or {}
        if ANN_BOUND_BY_CONTROLLER in ann:
            body["spec"].pop("claimRef", None)
            ann.pop(ANN_BOUND_BY_CONTROLLER, None)
            if not ann:
                body["metadata"].pop("annotations", None)
        else:
            body["spec"]["claimRef"].pop("uid", None)
        new = self.update(self.pv_rt, body)
        self.update_volume_phase(new, "Available")

    # -- volumes -----------------------------------------------------------------------------
    def sync_volume(self, volume: JSON) -> None:
        """``syncVolume``."""
        spec = volume.get("spec") or {}
        ref = spec.get("claimRef")
        if not ref:
            self.update_volume_phase(volume, "Available")
            return
        if not ref.get("uid"):
            # Pre-bound to a claim that has not been bound to it yet: syncClaim will do it.
            self.update_volume_phase(volume, "Available")
            return
        claim = self.get_claim(ref.get("namespace", ""), ref.get("name", ""))
        if claim is not None and claim["metadata"]["uid"] != ref.get("uid"):
            # The claim the volume pointed to was deleted and another with the same name created.
            claim = None
        phase = (volume.get("status") or {}).get("phase")
        if claim is None:
            if phase not in ("Released", "Failed"):
                volume = self.update_volume_phase(volume, "Released")
            self.reclaim_volume(volume)
            return
        cspec = claim.get("spec") or {}
        if not cspec.get("volumeName"):
            if volume_mode_mismatch(claim, volume):
                self.event(
                    volume,
                    "Warning",
                    "VolumeMismatch",
                    f'Cannot bind PersistentVolume to requested PersistentVolumeClaim "{claim["metadata"]["name"]}" due to incompatible volumeMode.',
                )
                self.event(
                    claim,
                    "Warning",
                    "VolumeMismatch",
                    f'Cannot bind PersistentVolume "{volume["metadata"]["name"]}" to requested PersistentVolumeClaim due to incompatible volumeMode.',
                )
                return
            # The volume is bound (or being bound) and the claim is Pending: the claim sync finishes it.
            self.enqueue(("claim", claim["metadata"].get("namespace", ""), claim["metadata"]["name"]))
            return
        if cspec.get("volumeName") == volume["metadata"]["name"]:
            self.update_volume_phase(volume, "Bound")
            return
        # The claim is bound to another volume.
        if (
            ANN_DYNAMICALLY_PROVISIONED in annots(volume)
            and spec.get("persistentVolumeReclaimPolicy") == "Delete"
        ):
            if phase not in ("Released", "Failed"):
                volume = self.update_volume_phase(volume, "Released")
            self.reclaim_volume(volume)
            return
        self.unbind_volume(volume)

    def reclaim_volume(self, volume: JSON) -> None:
        """``reclaimVolume``."""
        if annots(volume).get(ANN_MIGRATED_TO):
            return
        policy = (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy")
        if policy == "Retain":
            return
        if policy == "Recycle":
            # recycleVolumeOperation: kubesim has no recycler plugin (FindRecyclablePluginBySpec fails).
            self.update_volume_phase_with_event(
                volume, "Failed", "Warning", "VolumeFailedRecycle", "No recycler plugin found for the volume!"
            )
            return
        if policy == "Delete":
            self.delete_volume_operation(volume)
            return
        self.update_volume_phase_with_event(
            volume,
            "Failed",
            "Warning",
            "VolumeUnknownReclaimPolicy",
            "Volume has unrecognized PersistentVolumeReclaimPolicy",
        )

    def is_volume_released(self, volume: JSON) -> bool:
        """``isVolumeReleased``."""
        ref = (volume.get("spec") or {}).get("claimRef")
        if not ref or not ref.get("uid"):
            return False
        claim = self.get_claim(ref.get("namespace", ""), ref.get("name", ""))
        if claim is not None and claim["metadata"]["uid"] == ref.get("uid"):
            vn = (claim.get("spec") or {}).get("volumeName")
            return bool(vn) and vn != volume["metadata"]["name"]
        return True

    def delete_volume_operation(self, volume: JSON) -> None:
        """``deleteVolumeOperation`` / ``doDeleteVolume`` / ``findDeletablePlugin``.

        Dynamically provisioned volumes of an external provisioner, and CSI volumes, are deleted by
        the external provisioner: the controller only leaves them Released. kubesim has no in-tree
        deleter, so a non-CSI volume with policy Delete fails, as it does upstream for local volumes.
        """
        if not self.is_volume_released(volume):
            return
        provisioned_by = annots(volume).get(ANN_DYNAMICALLY_PROVISIONED, "")
        if provisioned_by and not provisioned_by.startswith("kubernetes.io/"):
            return  # external deleter
        if (volume.get("spec") or {}).get("csi"):
            return  # HonorPVReclaimPolicy: CSI volume source, external deleter
        self.update_volume_phase_with_event(
            volume,
            "Failed",
            "Warning",
            "VolumeFailedDelete",
            f'error getting deleter volume plugin for volume "{volume["metadata"]["name"]}": no deletable volume plugin matched',
        )


def check_volume_satisfy_claim(volume: JSON, claim: JSON) -> str:
    """``checkVolumeSatisfyClaim`` for a claim asking for an unclaimed volume by name."""
    if volume["metadata"].get("deletionTimestamp"):
        return f'the volume is marked for deletion "{volume["metadata"]["name"]}"'
    if volume_capacity(volume) < claim_request(claim):
        return "requested PV is too small"
    if volume_class(volume) != claim_class(claim):
        return "storageClassName does not match"
    if volume_mode_mismatch(claim, volume):
        return "incompatible volumeMode"
    if not check_access_modes(claim, volume):
        return "incompatible accessMode"
    return ""


# =============================================================================================
# External provisioner (csi-provisioner sidecar)
# =============================================================================================
class ProvisionError(Exception):
    """A provisioning failure; ``reschedule`` asks the scheduler for another node."""

    def __init__(self, message: str, reschedule: bool = False) -> None:
        super().__init__(message)
        self.reschedule = reschedule


class IgnoredError(Exception):
    """``controller.IgnoredError``: not for this provisioner; nothing is recorded."""


class ExternalProvisioner(VolumeControllerBase):
    """The csi-provisioner sidecar of one kubesim CSI driver."""

    def __init__(self, cluster: Cluster, driver: str) -> None:
        super().__init__(cluster)
        self.driver = driver
        info = cluster.csi.driver(driver)
        self.supports_snapshots = info.snapshots
        self.supports_clones = info.clones
        self.name = "csi-provisioner" if info.snapshots else "csi-provisioner-basic"
        # The library's recorder: "<provisioner>_<hostname>_<uuid>".
        self.component = f"{driver}_kubesim-csi-controller_{uuid.uuid4()}"
        # makeVolumeAttributes: the provisioner identity "<start ms>-<random>-<driver>".
        self.identity = f"{int(time.time() * 1000)}-{secrets.randbelow(10000)}-{driver}"

    # -- wiring ------------------------------------------------------------------------------
    def _claim_provisioner(self, claim: JSON) -> str:
        ann = annots(claim)
        return ann.get(ANN_STORAGE_PROVISIONER) or ann.get(ANN_BETA_STORAGE_PROVISIONER) or ""

    def is_provisioner_for_volume(self, volume: JSON) -> bool:
        """``isProvisionerForVolume``."""
        ann = annots(volume)
        if ANN_DYNAMICALLY_PROVISIONED in ann:
            return ann[ANN_DYNAMICALLY_PROVISIONED] == self.driver or ann.get(ANN_MIGRATED_TO) == self.driver
        csi = (volume.get("spec") or {}).get("csi")
        if isinstance(csi, dict):
            return csi.get("driver") == self.driver
        return ann.get(ANN_MIGRATED_TO) == self.driver

    def keys_for(self, change: Change) -> Iterable[Hashable]:
        if change.type == "DELETED":
            return
        meta = change.obj["metadata"]
        if change.key == "/persistentvolumeclaims":
            if self._claim_provisioner(change.obj) == self.driver or (
                self.supports_clones
                and meta.get("deletionTimestamp")
                and PVC_CLONE_FINALIZER in finalizers(change.obj)
            ):
                yield ("claim", meta.get("namespace", ""), meta["name"])
        elif change.key == "/persistentvolumes" and self.is_provisioner_for_volume(change.obj):
            yield ("volume", meta["name"])

    def initial_keys(self) -> Iterable[Hashable]:
        for c in self.store.iter("/persistentvolumeclaims"):
            if self._claim_provisioner(c) == self.driver:
                yield ("claim", c["metadata"].get("namespace", ""), c["metadata"]["name"])
        for v in self.store.iter("/persistentvolumes"):
            if self.is_provisioner_for_volume(v):
                yield ("volume", v["metadata"]["name"])

    async def reconcile(self, key: Hashable) -> float | None:
        kind = key[0]  # type: ignore[index]
        try:
            if kind == "claim":
                ns, name = str(key[1]), str(key[2])  # type: ignore[index]
                return self.sync_claim(key, ns, name)
            if kind == "volume":
                return self.sync_volume(key, key[1])  # type: ignore[index]
        except StatusError as e:
            log.debug("%s: %r: %s", self.name, key, e)
            return self.retry_delay()
        return None

    def _done(self, key: Hashable, exc: BaseException | None, result: Any, dirty: bool) -> None:
        if exc is not None:
            if not isinstance(exc, (ProvisionError, StatusError, CSIError, IgnoredError)):
                log.error("%s: operation %r failed", self.name, key, exc_info=exc)
            if isinstance(exc, IgnoredError):
                self.ops.forget(key)
                return
            self.enqueue_after(key, self.ops.backoff(key))
            return
        self.ops.forget(key)
        if dirty:
            self.enqueue(key)

    # -- claims ------------------------------------------------------------------------------
    def sync_claim(self, key: Hashable, ns: str, name: str) -> float | None:
        claim = self.get_claim(ns, name)
        if claim is None:
            self.ops.forget(key)
            return None
        if self.supports_clones and claim["metadata"].get("deletionTimestamp"):
            delay = self.sync_clone_protection(claim)
            if delay is not None:
                return delay
        if not self.should_provision(claim):
            return None
        if self.get_volume(f"pvc-{claim['metadata']['uid']}") is not None:
            # provisionClaimOperation: the PV (deterministic name) exists already.
            self.ops.forget(key)
            return None
        if self.ops.running(key):
            return None
        self.ops.run(key, self.provision_claim_operation(claim), self._done)
        return None

    def should_provision(self, claim: JSON) -> bool:
        """``shouldProvision`` (and csiProvisioner ``ShouldProvision``)."""
        if (claim.get("spec") or {}).get("volumeName"):
            return False
        if self._claim_provisioner(claim) != self.driver:
            return False
        sc = self.get_class(claim_class(claim))
        if sc is None:
            return False
        if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
            # Delay binding: the scheduler's selected-node annotation is required.
            return bool(annots(claim).get(ANN_SELECTED_NODE))
        return True

    async def provision_claim_operation(self, claim: JSON) -> None:
        """``provisionClaimOperation`` of the library, around csiProvisioner ``Provision``."""
        class_name = claim_class(claim)
        pv_name = f"pvc-{claim['metadata']['uid']}"
        if self.get_volume(pv_name) is not None:
            return
        sc = self.get_class(class_name)
        if sc is None:
            raise ProvisionError(f'storageClass "{class_name}" not found')
        if sc.get("provisioner") != self.driver:
            raise IgnoredError(
                f"unknown provisioner {sc.get('provisioner')!r} requested in claim's StorageClass"
            )
        node: JSON | None = None
        node_name = annots(claim).get(ANN_SELECTED_NODE)
        if node_name:
            node = self.api.get_or_none(self.api.resource("", "v1", "nodes"), "", node_name)
            if node is None:
                # The node does not exist: reschedule (remove selected-node) and stop.
                err = f'nodes "{node_name}" not found'
                self.event(claim, "Warning", "ProvisioningFailed", err)
                self.reschedule_provisioning(claim)
                raise IgnoredError(err)
        self.event(
            claim,
            "Normal",
            "Provisioning",
            f'External provisioner is provisioning volume for claim "{claim_key(claim)}"',
        )
        try:
            pv = await self.provision(claim, sc, node, pv_name)
        except IgnoredError:
            raise
        except (ProvisionError, CSIError) as e:
            # provisionVolumeErrorHandling: the event carries the error as it is.
            self.event(claim, "Warning", "ProvisioningFailed", str(e))
            if isinstance(e, ProvisionError) and e.reschedule and node_name:
                fresh = self.get_claim(claim["metadata"].get("namespace", ""), claim["metadata"]["name"])
                if fresh is not None:
                    self.reschedule_provisioning(fresh)
                raise IgnoredError(str(e)) from e
            raise
        # volume_store.go: StoreVolume creates the PV object, then reports success on the claim.
        try:
            self.api.create(self.pv_rt, "", pv)
        except StatusError as e:
            if e.code != 409:
                self.event(
                    claim,
                    "Warning",
                    "ProvisioningFailed",
                    f"Error creating provisioned PV object for claim {claim_key(claim)}: {e.message}. Deleting the volume.",
                )
                await self.cluster.csi.delete_volume(self.driver, pv["spec"]["csi"]["volumeHandle"])
                raise
        self.event(claim, "Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {pv_name}")

    def reschedule_provisioning(self, claim: JSON) -> None:
        """``rescheduleProvisioning``: drop selected-node so that the scheduler picks a node again."""
        if ANN_SELECTED_NODE not in annots(claim):
            return
        body = deep_copy(claim)
        body["metadata"]["annotations"].pop(ANN_SELECTED_NODE, None)
        try:
            self.update(self.pvc_rt, body)
        except StatusError as e:
            log.debug("%s: rescheduling %s failed: %s", self.name, claim_key(claim), e)

    async def provision(self, claim: JSON, sc: JSON, node: JSON | None, pv_name: str) -> JSON:
        """csiProvisioner ``Provision`` with ``prepareProvision``; returns the PV object to create."""
        if (
            self._claim_provisioner(claim) != self.driver
            and annots(claim).get(ANN_MIGRATED_TO) != self.driver
        ):
            raise IgnoredError(
                "PVC annotated with external-provisioner name does not match provisioner driver name"
            )
        spec = claim.get("spec") or {}
        data_source = claim_data_source(claim)
        need_snapshot = need_clone = False
        if data_source is not None:
            if not data_source["name"]:
                raise ProvisionError(f"the PVC source not found for PVC {claim['metadata']['name']}")
            if data_source["kind"] == "VolumeSnapshot":
                if data_source["apiGroup"] != SNAPSHOT_GROUP:
                    raise ProvisionError(
                        f"the PVC source does not belong to the right APIGroup. Expected {SNAPSHOT_GROUP}, Got {data_source['apiGroup']}"
                    )
                need_snapshot = True
            elif data_source["kind"] == "PersistentVolumeClaim" and data_source["apiGroup"] == "":
                need_clone = True
            else:
                # An external populator's data source.
                self.event(
                    claim,
                    "Normal",
                    "Provisioning",
                    "Assuming an external populator will provision the volume",
                    component="external-provisioner",
                )
                raise IgnoredError(
                    f"data source ({data_source['kind']}) is not handled by the provisioner, "
                    "assuming an external populator will provision it"
                )
        # checkDriverCapabilities
        if need_snapshot and not self.supports_snapshots:
            raise ProvisionError(
                "CSI driver does not support snapshot restore: controller CREATE_DELETE_SNAPSHOT capability is not reported"
            )
        if need_clone and not self.supports_clones:
            raise ProvisionError(
                "CSI driver does not support clone operations: controller CLONE_VOLUME capability is not reported"
            )
        if spec.get("selector") is not None:
            raise ProvisionError("claim Selector is not supported")
        params: dict[str, str] = {str(k): str(v) for k, v in (sc.get("parameters") or {}).items()}
        fs_types = [v for k, v in params.items() if k.lower() == "fstype" or k == PREFIXED_FSTYPE_KEY]
        if len(fs_types) > 1:
            raise ProvisionError(
                f'fstype specified in parameters with both "fstype" and "{PREFIXED_FSTYPE_KEY}" keys'
            )
        fs_type = fs_types[0] if fs_types else ""
        size = claim_request(claim)
        source: tuple[str, str] | None = None
        if data_source is not None:
            try:
                if need_snapshot:
                    source = ("snapshot", self.get_snapshot_source(claim, sc, data_source["name"]))
                else:
                    source = ("volume", self.get_pvc_source(claim, sc, data_source["name"]))
            except ProvisionError as e:
                raise ProvisionError(
                    f"error getting handle for DataSource Type {data_source['kind']} by Name {data_source['name']}: {e}"
                ) from e
            if need_clone:
                self.set_clone_finalizer(claim["metadata"].get("namespace", ""), data_source["name"])
        for k in params:
            if k.startswith(CSI_PARAMETER_PREFIX) and k not in _KNOWN_PREFIXED:
                raise ProvisionError(
                    f'failed to strip CSI Parameters of prefixed keys: found unknown parameter key "{k}" with reserved namespace {CSI_PARAMETER_PREFIX}'
                )
        node_hostname = None
        if node is not None:
            node_hostname = (node["metadata"].get("labels") or {}).get("kubernetes.io/hostname") or node[
                "metadata"
            ]["name"]
        meta = claim["metadata"]
        try:
            rec = await self.cluster.csi.create_volume(
                self.driver,
                pv_name,
                size,
                source=source,
                node=node_hostname,
                fault_attrs={
                    "namespace": meta.get("namespace", ""),
                    "name": meta["name"],
                    "storageclass": str(sc["metadata"]["name"]),
                },
            )
        except CSIError as e:
            # checkError: ResourceExhausted on a selected node asks for rescheduling.
            if e.code == "ResourceExhausted" and node is not None:
                raise ProvisionError(str(e), reschedule=True) from e
            raise
        capacity = rec.capacity_bytes or size
        if capacity < size:
            await self.cluster.csi.delete_volume(self.driver, rec.handle)
            raise ProvisionError(f"created volume capacity {capacity} less than requested capacity {size}")
        csi: JSON = {
            "driver": self.driver,
            "volumeHandle": rec.handle,
            "volumeAttributes": {PROVISIONER_ID_KEY: self.identity},
        }
        volume_mode = spec.get("volumeMode")
        if volume_mode != "Block" and fs_type:
            csi["fsType"] = fs_type
        pv_spec: JSON = {
            "accessModes": deep_copy(spec.get("accessModes") or []),
            "capacity": {"storage": format_binary_si(capacity)},
            "csi": csi,
            "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
            "storageClassName": claim_class(claim),
            "claimRef": claim_reference(claim),
        }
        if sc.get("mountOptions"):
            pv_spec["mountOptions"] = deep_copy(sc["mountOptions"])
        if volume_mode:
            pv_spec["volumeMode"] = volume_mode
        if rec.accessible_topology:
            # GenerateVolumeNodeAffinity (topology.go): one term per accessible topology segment.
            pv_spec["nodeAffinity"] = {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": k, "operator": "In", "values": [v]} for k, v in seg.items()
                            ]
                        }
                        for seg in rec.accessible_topology
                    ]
                }
            }
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": pv_name,
                "annotations": {
                    ANN_DYNAMICALLY_PROVISIONED: self.driver,
                    ANN_DELETION_SECRET_NAME: "",
                    ANN_DELETION_SECRET_NAMESPACE: "",
                },
                # addFinalizer (HonorPVReclaimPolicy): the provisioner's deletion protection.
                "finalizers": [PV_DELETION_PROTECTION_FINALIZER],
            },
            "spec": pv_spec,
        }

    def get_snapshot_source(self, claim: JSON, sc: JSON, name: str) -> str:
        """``getSnapshotSource``: the snapshot handle to restore, or why it cannot be used."""
        ns = claim["metadata"].get("namespace", "")
        vs_rt = self.api.resource(SNAPSHOT_GROUP, "v1", "volumesnapshots")
        vsc_rt = self.api.resource(SNAPSHOT_GROUP, "v1", "volumesnapshotcontents")
        snapshot = self.api.get_or_none(vs_rt, ns, name)
        if snapshot is None:
            raise ProvisionError(
                f'error getting snapshot {name} from api server: volumesnapshots.snapshot.storage.k8s.io "{name}" not found'
            )
        if snapshot["metadata"].get("deletionTimestamp"):
            raise ProvisionError(f"snapshot {name} is currently being deleted")
        status = snapshot.get("status") or {}
        bound = status.get("boundVolumeSnapshotContentName")
        not_bound = f"snapshot {name} not bound"
        if not bound:
            raise ProvisionError(not_bound)
        content = self.api.get_or_none(vsc_rt, "", bound)
        if content is None:
            raise ProvisionError(not_bound)
        ref = (content.get("spec") or {}).get("volumeSnapshotRef") or {}
        if (
            ref.get("uid") != snapshot["metadata"]["uid"]
            or ref.get("namespace") != ns
            or ref.get("name") != snapshot["metadata"]["name"]
        ):
            raise ProvisionError(not_bound)
        if (content.get("spec") or {}).get("driver") != sc.get("provisioner"):
            raise ProvisionError(not_bound)
        if status.get("readyToUse") is not True:
            raise ProvisionError(f"snapshot {name} is not Ready")
        handle = (content.get("status") or {}).get("snapshotHandle")
        if not handle:
            raise ProvisionError(f"snapshot handle {name} is not available")
        if status.get("restoreSize") is not None:
            requested = claim_request(claim)
            restore = quantity_bytes(status["restoreSize"])
            if requested < restore:
                raise ProvisionError(
                    f"requested volume size {requested} is less than the size {restore} for the source snapshot {name}"
                )
        mode = (content.get("spec") or {}).get("sourceVolumeMode")
        want = (claim.get("spec") or {}).get("volumeMode")
        if mode and want and mode != want:
            # preventVolumeModeConversion (on by default).
            allow = annots(content).get("snapshot.storage.kubernetes.io/allow-volume-mode-change")
            if allow is None:
                raise ProvisionError(
                    f"requested volume {ns}/{claim['metadata']['name']} modifies the mode of the source volume but does not have permission to do so. "
                    f"snapshot.storage.kubernetes.io/allow-volume-mode-change annotation is not present on snapshotcontent {content['metadata']['name']}"
                )
            if allow.lower() not in ("true", "1", "t"):
                raise ProvisionError(
                    f"requested volume {ns}/{claim['metadata']['name']} modifies the mode of the source volume but does not have permission to do so. "
                    f"snapshot.storage.kubernetes.io/allow-volume-mode-change is set to false on snapshotcontent {content['metadata']['name']}"
                )
        return str(handle)

    def get_pvc_source(self, claim: JSON, sc: JSON, name: str) -> str:
        """``getPVCSource``: the volume handle to clone, or why the source claim cannot be used."""
        ns = claim["metadata"].get("namespace", "")
        source = self.get_claim(ns, name)
        if source is None:
            raise ProvisionError(
                f'error getting PVC {name} (namespace "{ns}") from api server: persistentvolumeclaim "{name}" not found'
            )
        sstatus = source.get("status") or {}
        if sstatus.get("phase") != "Bound":
            raise ProvisionError(
                f"the PVC DataSource {name} must have a status of Bound.  Got {_go_claim_status(sstatus)}"
            )
        if source["metadata"].get("deletionTimestamp"):
            raise ProvisionError(f"the PVC DataSource {name} is currently being deleted")
        if (source.get("spec") or {}).get("storageClassName") is None:
            raise ProvisionError(f"the source PVC ({name}) storageclass cannot be empty")
        if (claim.get("spec") or {}).get("storageClassName") is None:
            raise ProvisionError(
                f"the requested PVC ({claim['metadata']['name']}) storageclass cannot be empty"
            )
        requested, src_size = claim_request(claim), claim_request(source)
        if requested < src_size:
            raise ProvisionError(
                "error, new PVC request must be greater than or equal in size to the specified PVC data source, "
                f"requested {requested} but source is {src_size}"
            )
        vname = (source.get("spec") or {}).get("volumeName")
        if not vname:
            raise ProvisionError(f"volume name is empty in source PVC {name}")
        invalid = "claim in dataSource not bound or invalid"
        pv = self.get_volume(vname)
        if pv is None:
            raise ProvisionError(invalid)
        pspec = pv.get("spec") or {}
        csi = pspec.get("csi")
        if not isinstance(csi, dict) or csi.get("driver") != sc.get("provisioner"):
            raise ProvisionError(invalid)
        ref = pspec.get("claimRef")
        if not ref:
            raise ProvisionError(invalid)
        if (
            ref.get("uid") != source["metadata"]["uid"]
            or ref.get("namespace") != ns
            or ref.get("name") != name
        ):
            raise ProvisionError(invalid)
        if (pv.get("status") or {}).get("phase") != "Bound":
            raise ProvisionError(invalid)
        want = (claim.get("spec") or {}).get("volumeMode") or "Filesystem"
        have = pspec.get("volumeMode") or "Filesystem"
        if want == "Filesystem" and have != "Filesystem":
            raise ProvisionError(
                "the source PVC and destination PVCs must have the same volume mode for cloning.  Source is Block, but new PVC requested Filesystem"
            )
        if want == "Block" and have != "Block":
            raise ProvisionError(
                "the source PVC and destination PVCs must have the same volume mode for cloning.  Source is Filesystem, but new PVC requested Block"
            )
        return str(csi["volumeHandle"])

    def set_clone_finalizer(self, ns: str, name: str) -> None:
        """``setCloneFinalizer``: protect the source claim while clones are in progress."""
        source = self.get_claim(ns, name)
        if source is None or PVC_CLONE_FINALIZER in finalizers(source):
            return
        body = deep_copy(source)
        body["metadata"].setdefault("finalizers", []).append(PVC_CLONE_FINALIZER)
        self.update(self.pvc_rt, body)

    def sync_clone_protection(self, claim: JSON) -> float | None:
        """clone_controller.go ``syncClaim``: drop the finalizer once no clone of the claim is Pending."""
        if PVC_CLONE_FINALIZER not in finalizers(claim):
            return None
        ns = claim["metadata"].get("namespace", "")
        for other in self.store.iter("/persistentvolumeclaims", ns):
            ds = (other.get("spec") or {}).get("dataSource")
            if (
                isinstance(ds, dict)
                and ds.get("kind") == "PersistentVolumeClaim"
                and ds.get("name") == claim["metadata"]["name"]
                and (other.get("status") or {}).get("phase") == "Pending"
            ):
                return self.ops.backoff(("clone", ns, claim["metadata"]["name"]))
        body = deep_copy(claim)
        body["metadata"]["finalizers"] = [f for f in finalizers(claim) if f != PVC_CLONE_FINALIZER]
        self.update(self.pvc_rt, body)
        self.ops.forget(("clone", ns, claim["metadata"]["name"]))
        return None

    # -- volumes -----------------------------------------------------------------------------
    def sync_volume(self, key: Hashable, name: str) -> float | None:
        """The library's ``syncVolume``: protection finalizer, then deletion of released volumes."""
        volume = self.get_volume(name)
        if volume is None or not self.is_provisioner_for_volume(volume):
            self.ops.forget(key)
            return None
        volume = self.handle_protection_finalizer(volume)
        if self.should_delete(volume) and not self.ops.running(key):
            self.ops.run(key, self.delete_volume_operation(volume), self._done)
        return None

    def handle_protection_finalizer(self, volume: JSON) -> JSON:
        """``handleProtectionFinalizer`` (addFinalizer is on)."""
        policy = (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy")
        fins = finalizers(volume)
        new = list(fins)
        if (
            policy == "Delete"
            and not volume["metadata"].get("deletionTimestamp")
            and (volume.get("status") or {}).get("phase") == "Bound"
            and PV_DELETION_PROTECTION_FINALIZER not in new
        ):
            new.append(PV_DELETION_PROTECTION_FINALIZER)
        if policy in ("Retain", "Recycle"):
            new = [f for f in new if f != PV_DELETION_PROTECTION_FINALIZER]
        if new == fins:
            return volume
        body = deep_copy(volume)
        body["metadata"]["finalizers"] = new
        return self.update(self.pv_rt, body)

    def should_delete(self, volume: JSON) -> bool:
        """``shouldDelete``."""
        if PV_DELETION_PROTECTION_FINALIZER not in finalizers(volume) and volume["metadata"].get(
            "deletionTimestamp"
        ):
            return False
        if (volume.get("status") or {}).get("phase") != "Released":
            return False
        return (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Delete"

    async def delete_volume_operation(self, volume: JSON) -> None:
        """``deleteVolumeOperation``: CSI DeleteVolume, then the PV object, then the finalizer."""
        csi = (volume.get("spec") or {}).get("csi")
        try:
            if not isinstance(csi, dict):
                raise ProvisionError("invalid CSI PV")
            await self.cluster.csi.delete_volume(self.driver, str(csi.get("volumeHandle", "")))
        except (ProvisionError, CSIError) as e:
            self.event(volume, "Warning", "VolumeFailedDelete", str(e))
            raise
        name = volume["metadata"]["name"]
        try:
            self.api.delete(self.pv_rt, "", name)
        except StatusError as e:
            if e.code != 404:
                raise
        current = self.get_volume(name)
        if current is not None and PV_DELETION_PROTECTION_FINALIZER in finalizers(current):
            body = deep_copy(current)
            body["metadata"]["finalizers"] = [
                f for f in finalizers(current) if f != PV_DELETION_PROTECTION_FINALIZER
            ]
            try:
                self.update(self.pv_rt, body)
            except StatusError as e:
                if e.code != 404:
                    raise


def _go_claim_status(status: JSON) -> str:
    """``%v`` of a PersistentVolumeClaimStatus as Go prints it (approximately: nested values are summarized)."""
    phase = status.get("phase", "")
    modes = " ".join(status.get("accessModes") or [])
    cap = " ".join(f"{k}:{v}" for k, v in sorted((status.get("capacity") or {}).items()))
    return f"{{{phase} [{modes}] map[{cap}] [] map[] map[] <nil> <nil>}}"


# =============================================================================================
# Protection controllers
# =============================================================================================
class PVCProtectionController(VolumeControllerBase):
    """``pvc_protection_controller.go``: the ``kubernetes.io/pvc-protection`` finalizer."""

    name = "pvc-protection"

    def keys_for(self, change: Change) -> Iterable[Hashable]:
        obj = change.obj
        if change.key == "/persistentvolumeclaims" and change.type != "DELETED":
            fins = finalizers(obj)
            deleting = bool(obj["metadata"].get("deletionTimestamp"))
            # pvcAddedUpdated: NeedToAddFinalizer or IsDeletionCandidate.
            if (not deleting and PVC_PROTECTION_FINALIZER not in fins) or (
                deleting and PVC_PROTECTION_FINALIZER in fins
            ):
                yield (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        elif change.key == "/pods":
            # podAddedDeletedUpdated / enqueuePVCs: only pods that can help remove a finalizer.
            pods = [obj]
            if change.old is not None and change.old["metadata"].get("uid") != obj["metadata"].get("uid"):
                pods.append(change.old)
            for pod in pods:
                deleted = change.type == "DELETED" or pod is change.old
                if not deleted and not is_pod_terminated(pod) and (pod.get("spec") or {}).get("nodeName"):
                    continue
                ns = pod["metadata"].get("namespace", "")
                for claim in pod_claim_names(pod):
                    yield (ns, claim)

    def initial_keys(self) -> Iterable[Hashable]:
        for c in self.store.iter("/persistentvolumeclaims"):
            yield (c["metadata"].get("namespace", ""), c["metadata"]["name"])

    async def reconcile(self, key: Hashable) -> float | None:
        ns, name = str(key[0]), str(key[1])  # type: ignore[index]
        claim = self.get_claim(ns, name)
        if claim is None:
            return None
        try:
            fins = finalizers(claim)
            if claim["metadata"].get("deletionTimestamp") and PVC_PROTECTION_FINALIZER in fins:
                # IsDeletionCandidate: remove the finalizer only if no scheduled pod uses the claim.
                if not self.is_being_used(claim):
                    body = deep_copy(claim)
                    body["metadata"]["finalizers"] = [f for f in fins if f != PVC_PROTECTION_FINALIZER]
                    self.update(self.pvc_rt, body)
                return None
            if not claim["metadata"].get("deletionTimestamp") and PVC_PROTECTION_FINALIZER not in fins:
                body = deep_copy(claim)
                body["metadata"].setdefault("finalizers", []).append(PVC_PROTECTION_FINALIZER)
                self.update(self.pvc_rt, body)
        except StatusError as e:
            if e.code == 404:
                return None
            return self.retry_delay()
        return None

    def is_being_used(self, claim: JSON) -> bool:
        """``isBeingUsed`` / ``podUsesPVC``.

        A pod uses the claim when it is scheduled (spec.nodeName set) and names the claim in a
        persistentVolumeClaim volume, whatever its phase: upstream does not skip terminated pods
        here (``podIsShutDown`` only applies to generic ephemeral volumes).
        """
        name = claim["metadata"]["name"]
        for pod in self.store.iter("/pods", claim["metadata"].get("namespace", "")):
            if not (pod.get("spec") or {}).get("nodeName"):
                continue
            for v in (pod.get("spec") or {}).get("volumes") or []:
                pvc = v.get("persistentVolumeClaim")
                if isinstance(pvc, dict) and pvc.get("claimName") == name:
                    return True
                if (
                    v.get("ephemeral") is not None
                    and f"{pod['metadata']['name']}-{v.get('name', '')}" == name
                    and not _pod_is_shut_down(pod)
                    and any(
                        r.get("uid") == pod["metadata"].get("uid") and r.get("controller")
                        for r in claim["metadata"].get("ownerReferences") or []
                    )
                ):
                    return True
        return False


def _pod_is_shut_down(pod: JSON) -> bool:
    """``podIsShutDown``: deletionTimestamp with deletionGracePeriodSeconds 0."""
    m = pod["metadata"]
    return bool(m.get("deletionTimestamp")) and m.get("deletionGracePeriodSeconds") == 0


class PVProtectionController(VolumeControllerBase):
    """``pv_protection_controller.go``: the ``kubernetes.io/pv-protection`` finalizer."""

    name = "pv-protection"

    def keys_for(self, change: Change) -> Iterable[Hashable]:
        if change.key == "/persistentvolumes" and change.type != "DELETED":
            fins = finalizers(change.obj)
            deleting = bool(change.obj["metadata"].get("deletionTimestamp"))
            if (not deleting and PV_PROTECTION_FINALIZER not in fins) or (
                deleting and PV_PROTECTION_FINALIZER in fins
            ):
                yield change.obj["metadata"]["name"]

    def initial_keys(self) -> Iterable[Hashable]:
        for v in self.store.iter("/persistentvolumes"):
            yield v["metadata"]["name"]

    async def reconcile(self, key: Hashable) -> float | None:
        volume = self.get_volume(str(key))
        if volume is None:
            return None
        try:
            fins = finalizers(volume)
            if volume["metadata"].get("deletionTimestamp") and PV_PROTECTION_FINALIZER in fins:
                # isBeingUsed: a Bound volume is in use.
                if (volume.get("status") or {}).get("phase") != "Bound":
                    body = deep_copy(volume)
                    body["metadata"]["finalizers"] = [f for f in fins if f != PV_PROTECTION_FINALIZER]
                    self.update(self.pv_rt, body)
                return None
            if not volume["metadata"].get("deletionTimestamp") and PV_PROTECTION_FINALIZER not in fins:
                body = deep_copy(volume)
                body["metadata"].setdefault("finalizers", []).append(PV_PROTECTION_FINALIZER)
                self.update(self.pv_rt, body)
        except StatusError as e:
            if e.code == 404:
                return None
            return self.retry_delay()
        return None


def make_volume_controllers(cluster: Cluster) -> list[Controller]:
    """The volume controllers in the order the cluster starts them."""
    from ..storage import CSI_DRIVER, CSI_DRIVER_NO_SNAPSHOTS

    return [
        PersistentVolumeController(cluster),
        ExternalProvisioner(cluster, CSI_DRIVER),
        ExternalProvisioner(cluster, CSI_DRIVER_NO_SNAPSHOTS),
        PVCProtectionController(cluster),
        PVProtectionController(cluster),
    ]


__all__ = [
    "ExternalProvisioner",
    "PVCProtectionController",
    "PVProtectionController",
    "PersistentVolumeController",
    "annots",
    "finalizers",
    "find_best_match_for_claim",
    "find_matching_volume",
    "go_quote",
    "make_volume_controllers",
]
