"""CSI snapshots: the snapshot-controller and the csi-snapshotter sidecar (kubernetes-csi/external-snapshotter v8).

- ``SnapshotController`` is the common controller, ``pkg/common-controller/snapshot_controller.go``
  (``syncSnapshot``, ``syncUnreadySnapshot``, ``syncReadySnapshot``, ``createSnapshotContent``,
  ``updateSnapshotStatus``, ``processSnapshotWithDeletionTimestamp``,
  ``checkandRemoveSnapshotFinalizersAndCheckandDeleteContent``, ``checkandAddSnapshotFinalizers``,
  ``ensurePVCFinalizer``, ``checkandRemovePVCFinalizer``, ``SetDefaultSnapshotClass``,
  ``syncContent``) and ``snapshot_controller_base.go`` (``syncSnapshotByKey``,
  ``checkAndUpdateSnapshotClass``, ``deleteSnapshot``, ``deleteContent``). Its events come from
  ``snapshot-controller``; it resyncs everything every ``ClusterConfig.snapshot_resync_period``
  seconds (``--resync-period``, 15 min upstream).
- ``CSISnapshotter`` is the sidecar of ``csi.kubesim.io``, ``pkg/sidecar-controller/snapshot_controller.go``
  (``syncContent``, ``createSnapshotWrapper``, ``checkandUpdateContentStatusOperation``,
  ``updateSnapshotContentStatus``, ``updateContentErrorStatusWithEvent``,
  ``deleteCSISnapshotOperation``, ``shouldDelete``); events from ``csi-snapshotter csi.kubesim.io``.
  ``basic.csi.kubesim.io`` has no snapshot capability, so, as in a real deployment, no sidecar runs
  for it.

Both retry failures with exponential backoff (``ClusterConfig.volume_retry_start`` to
``volume_retry_max``); the sidecar's CreateSnapshot (a directory copy) runs as its own task.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any

from ..csi import CSIError, format_binary_si, go_quote
from ..errors import StatusError
from ..meta import now
from ..store import Change, deep_copy
from .volumes import VolumeControllerBase, annots, finalizers

if TYPE_CHECKING:
    from ..cluster import Cluster

log = logging.getLogger("kubesim.controllers.snapshots")

JSON = dict[str, Any]

GROUP = "snapshot.storage.k8s.io"
# pkg/utils/util.go
VOLUME_SNAPSHOT_CONTENT_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"
VOLUME_SNAPSHOT_AS_SOURCE_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection"
VOLUME_SNAPSHOT_BOUND_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection"
PVC_FINALIZER = "snapshot.storage.kubernetes.io/pvc-as-source-protection"
ANN_BEING_DELETED = "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted"
ANN_BEING_CREATED = "snapshot.storage.kubernetes.io/volumesnapshot-being-created"
ANN_DEFAULT_CLASS = "snapshot.storage.kubernetes.io/is-default-class"
CONTROLLER_UPDATE_FAIL_MSG = "snapshot controller failed to update"
# Parameters with the reserved prefix the snapshotter understands (utils.RemovePrefixedParameters).
_KNOWN_PREFIXED = {
    "csi.storage.k8s.io/snapshotter-secret-name",
    "csi.storage.k8s.io/snapshotter-secret-namespace",
    "csi.storage.k8s.io/snapshotter-list-secret-name",
    "csi.storage.k8s.io/snapshotter-list-secret-namespace",
}


class SyncError(Exception):
    """A sync that must be retried (the Go ``return err``)."""


def controller_update_error(name: str, message: str) -> SyncError:
    """``newControllerUpdateError``."""
    return SyncError(f"{CONTROLLER_UPDATE_FAIL_MSG} {name} on API server: {message}")


def snapshot_key(snapshot: JSON) -> str:
    """``utils.SnapshotKey``."""
    m = snapshot["metadata"]
    return f"{m.get('namespace', '')}/{m['name']}"


def content_name_for(snapshot: JSON) -> str:
    """``utils.GetDynamicSnapshotContentNameForSnapshot``."""
    return f"snapcontent-{snapshot['metadata']['uid']}"


def is_snapshot_ready(snapshot: JSON) -> bool:
    return (snapshot.get("status") or {}).get("readyToUse") is True


def is_bound_name_set(snapshot: JSON) -> bool:
    return bool((snapshot.get("status") or {}).get("boundVolumeSnapshotContentName"))


def is_snapshot_created(snapshot: JSON) -> bool:
    return bool((snapshot.get("status") or {}).get("creationTime"))


def is_deletion_candidate(snapshot: JSON) -> bool:
    """``utils.IsSnapshotDeletionCandidate``."""
    fins = finalizers(snapshot)
    return bool(snapshot["metadata"].get("deletionTimestamp")) and (
        VOLUME_SNAPSHOT_AS_SOURCE_FINALIZER in fins or VOLUME_SNAPSHOT_BOUND_FINALIZER in fins
    )


def is_volume_snapshot_ref_set(snapshot: JSON, content: JSON) -> bool:
    """``utils.IsVolumeSnapshotRefSet``."""
    ref = (content.get("spec") or {}).get("volumeSnapshotRef") or {}
    m = snapshot["metadata"]
    return bool(
        ref.get("name") == m["name"]
        and ref.get("namespace") == m.get("namespace")
        and ref.get("uid") == m["uid"]
    )


def content_ready(content: JSON) -> bool:
    return (content.get("status") or {}).get("readyToUse") is True


def rfc3339_from_ns(ns: int) -> str:
    return _dt.datetime.fromtimestamp(ns / 1e9, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _SnapshotBase(VolumeControllerBase):
    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.vs_rt = self.api.resource(GROUP, "v1", "volumesnapshots")
        self.vsc_rt = self.api.resource(GROUP, "v1", "volumesnapshotcontents")
        self.vsclass_rt = self.api.resource(GROUP, "v1", "volumesnapshotclasses")

    def get_snapshot(self, ns: str, name: str) -> JSON | None:
        return self.api.get_or_none(self.vs_rt, ns, name)

    def get_content(self, name: str) -> JSON | None:
        return self.api.get_or_none(self.vsc_rt, "", name) if name else None

    def get_snapshot_class(self, name: str) -> JSON:
        cls = self.api.get_or_none(self.vsclass_rt, "", name)
        if cls is None:
            # The class lister's NotFound error.
            raise SyncError(f'volumesnapshotclass.snapshot.storage.k8s.io "{name}" not found')
        return cls


# =============================================================================================
# snapshot-controller (common controller)
# =============================================================================================
class SnapshotController(_SnapshotBase):
    name = "snapshot-controller"
    component = "snapshot-controller"

    def keys_for(self, change: Change) -> Iterable[Hashable]:
        obj = change.obj
        if change.key == f"{GROUP}/volumesnapshots":
            if change.type == "DELETED":
                # deleteSnapshot: sync the content it was bound to.
                bound = (obj.get("status") or {}).get("boundVolumeSnapshotContentName")
                if bound:
                    yield ("vsc", bound)
            else:
                yield ("vs", obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        elif change.key == f"{GROUP}/volumesnapshotcontents":
            if change.type == "DELETED":
                # deleteContent: sync the snapshot it was bound to.
                ref = (obj.get("spec") or {}).get("volumeSnapshotRef") or {}
                if ref.get("name"):
                    yield ("vs", ref.get("namespace", ""), ref["name"])
            else:
                yield ("vsc", obj["metadata"]["name"])

    def initial_keys(self) -> Iterable[Hashable]:
        yield ("resync",)

    async def reconcile(self, key: Hashable) -> float | None:
        kind = key[0]  # type: ignore[index]
        if kind == "resync":
            for s in list(self.store.iter(f"{GROUP}/volumesnapshots")):
                self.enqueue(("vs", s["metadata"].get("namespace", ""), s["metadata"]["name"]))
            for c in list(self.store.iter(f"{GROUP}/volumesnapshotcontents")):
                self.enqueue(("vsc", c["metadata"]["name"]))
            return float(self.cluster.config.snapshot_resync_period)
        try:
            if kind == "vs":
                ns, name = str(key[1]), str(key[2])  # type: ignore[index]
                self.sync_snapshot_by_key(ns, name)
            else:
                self.sync_content(key[1])  # type: ignore[index]
        except (SyncError, StatusError) as e:
            log.debug("snapshot-controller: %r: %s", key, e)
            return self.ops.backoff(key)
        self.ops.forget(key)
        return None

    # -- snapshot class ------------------------------------------------------------------------
    def sync_snapshot_by_key(self, ns: str, name: str) -> None:
        """``syncSnapshotByKey``."""
        snapshot = self.get_snapshot(ns, name)
        if snapshot is None:
            return
        new = self.check_and_update_snapshot_class(snapshot)
        self.sync_snapshot(new)

    def check_and_update_snapshot_class(self, snapshot: JSON) -> JSON:
        """``checkAndUpdateSnapshotClass``: the named class must exist, or the default one is set."""
        spec = snapshot.get("spec") or {}
        class_name = spec.get("volumeSnapshotClassName")
        if class_name is not None:
            try:
                self.get_snapshot_class(class_name)
            except SyncError as e:
                self.update_snapshot_error_status_with_event(
                    snapshot,
                    False,
                    "Warning",
                    "GetSnapshotClassFailed",
                    f"Failed to get snapshot class with error {e}",
                )
                if snapshot["metadata"].get("deletionTimestamp"):
                    return snapshot  # it may still need to be deleted
                raise
            return snapshot
        if (spec.get("source") or {}).get("volumeSnapshotContentName"):
            return snapshot  # pre-provisioned: no class needed
        try:
            return self.set_default_snapshot_class(snapshot)
        except SyncError as e:
            self.update_snapshot_error_status_with_event(
                snapshot,
                False,
                "Warning",
                "SetDefaultSnapshotClassFailed",
                f"Failed to set default snapshot class with error {e}",
            )
            raise

    def set_default_snapshot_class(self, snapshot: JSON) -> JSON:
        """``SetDefaultSnapshotClass``: the one default class of the source volume's driver."""
        pv_driver = self.pv_driver_from_snapshot(snapshot)
        defaults = [
            c
            for c in self.store.iter(f"{GROUP}/volumesnapshotclasses")
            if annots(c).get(ANN_DEFAULT_CLASS) == "true" and c.get("driver") == pv_driver
        ]
        if not defaults:
            raise SyncError("cannot find default snapshot class")
        if len(defaults) > 1:
            raise SyncError(f"{len(defaults)} default snapshot classes were found")
        body = deep_copy(snapshot)
        body.setdefault("spec", {})["volumeSnapshotClassName"] = defaults[0]["metadata"]["name"]
        return self.update(self.vs_rt, body)

    def get_claim_from_snapshot(self, snapshot: JSON) -> JSON:
        """``getClaimFromVolumeSnapshot``."""
        pvc_name = ((snapshot.get("spec") or {}).get("source") or {}).get("persistentVolumeClaimName")
        if pvc_name is None:
            raise SyncError("the snapshot source PVC name is not specified")
        if pvc_name == "":
            raise SyncError(f"the PVC name is not specified in snapshot {snapshot_key(snapshot)}")
        pvc = self.get_claim(snapshot["metadata"].get("namespace", ""), pvc_name)
        if pvc is None:
            raise SyncError(
                f"failed to retrieve PVC {pvc_name} from the lister: "
                + go_quote(f'persistentvolumeclaim "{pvc_name}" not found')
            )
        return pvc

    def get_volume_from_snapshot(self, snapshot: JSON) -> JSON:
        """``getVolumeFromVolumeSnapshot``."""
        pvc = self.get_claim_from_snapshot(snapshot)
        if (pvc.get("status") or {}).get("phase") != "Bound":
            raise SyncError(
                f"the PVC {pvc['metadata']['name']} is not yet bound to a PV, will not attempt to take a snapshot"
            )
        pv_name = (pvc.get("spec") or {}).get("volumeName") or ""
        pv = self.get_volume(pv_name)
        if pv is None:
            raise SyncError(
                f"failed to retrieve PV {pv_name} from the API server: "
                + go_quote(f'persistentvolumes "{pv_name}" not found')
            )
        from .volumes import is_volume_bound_to_claim

        if not is_volume_bound_to_claim(pv, pvc):
            raise SyncError("claim in dataSource not bound or invalid")
        return pv

    def pv_driver_from_snapshot(self, snapshot: JSON) -> str:
        """``pvDriverFromSnapshot``."""
        pv = self.get_volume_from_snapshot(snapshot)
        csi = (pv.get("spec") or {}).get("csi")
        if not isinstance(csi, dict):
            m = snapshot["metadata"]
            raise SyncError(
                f"snapshotting non-CSI volumes is not supported, snapshot:{m.get('namespace', '')}/{m['name']}"
            )
        return str(csi.get("driver", ""))

    # -- snapshots -----------------------------------------------------------------------------
    def sync_snapshot(self, snapshot: JSON) -> None:
        """``syncSnapshot``."""
        try:
            self.check_and_remove_pvc_finalizer(snapshot, False)
        except (SyncError, StatusError):
            self.event(
                snapshot,
                "Warning",
                "ErrorPVCFinalizer",
                "Error check and remove PVC Finalizer for VolumeSnapshot",
            )
        if snapshot["metadata"].get("deletionTimestamp"):
            self.process_snapshot_with_deletion_timestamp(snapshot)
            return
        try:
            snapshot = self.check_and_add_snapshot_finalizers(snapshot)
        except (SyncError, StatusError) as e:
            self.event(
                snapshot, "Warning", "SnapshotFinalizerError", f"Failed to check and update snapshot: {e}"
            )
            raise
        if not is_snapshot_ready(snapshot) or not is_bound_name_set(snapshot):
            self.sync_unready_snapshot(snapshot)
        else:
            self.sync_ready_snapshot(snapshot)

    def process_snapshot_with_deletion_timestamp(self, snapshot: JSON) -> None:
        """``processSnapshotWithDeletionTimestamp``."""
        content_name = (snapshot.get("status") or {}).get("boundVolumeSnapshotContentName") or ""
        source = (snapshot.get("spec") or {}).get("source") or {}
        if not content_name and source.get("persistentVolumeClaimName") is not None:
            content_name = content_name_for(snapshot)
        content = self.get_content(content_name)
        delete_content = False
        if content is not None and is_volume_snapshot_ref_set(snapshot, content):
            delete_content = (content.get("spec") or {}).get("deletionPolicy") == "Delete"
        else:
            content = None
        self.check_and_remove_snapshot_finalizers_and_delete_content(snapshot, content, delete_content)

    def check_and_remove_snapshot_finalizers_and_delete_content(
        self, snapshot: JSON, content: JSON | None, delete_content: bool
    ) -> None:
        """``checkandRemoveSnapshotFinalizersAndCheckandDeleteContent``."""
        if not is_deletion_candidate(snapshot):
            return
        if content is not None and self.is_volume_being_created_from_snapshot(snapshot):
            # Wait until the restore finishes. Upstream does not requeue here: the next resync retries.
            self.event(
                snapshot, "Warning", "SnapshotDeletePending", "Snapshot is being used to restore a PVC"
            )
            return
        if content is not None:
            content = self.set_ann_being_deleted(content)
        if content is not None and delete_content:
            try:
                self.api.delete(self.vsc_rt, "", content["metadata"]["name"])
            except StatusError as e:
                if e.code != 404:
                    self.event(
                        snapshot,
                        "Warning",
                        "SnapshotContentObjectDeleteError",
                        "Failed to delete snapshot content API object",
                    )
                    raise SyncError(
                        f"failed to delete VolumeSnapshotContent {content['metadata']['name']} from API server: {go_quote(e.message)}"
                    ) from e
        remove_bound = not (content is not None and delete_content)
        self.remove_snapshot_finalizer(snapshot, True, remove_bound)

    def is_volume_being_created_from_snapshot(self, snapshot: JSON) -> bool:
        """``isVolumeBeingCreatedFromSnapshot``: a Pending claim names the snapshot in spec.dataSource."""
        for pvc in self.store.iter("/persistentvolumeclaims", snapshot["metadata"].get("namespace", "")):
            ds = (pvc.get("spec") or {}).get("dataSource")
            if (
                isinstance(ds, dict)
                and ds.get("name") == snapshot["metadata"]["name"]
                and ds.get("kind") == "VolumeSnapshot"
                and ds.get("apiGroup") == GROUP
                and (pvc.get("status") or {}).get("phase") == "Pending"
            ):
                return True
        return False

    def check_and_add_snapshot_finalizers(self, snapshot: JSON) -> JSON:
        """``checkandAddSnapshotFinalizers``."""
        if (snapshot.get("spec") or {}).get("source", {}).get("volumeSnapshotContentName"):
            content = self.get_preprovisioned_content(snapshot)
        else:
            content = self.get_dynamic_content(snapshot)
        fins = finalizers(snapshot)
        deleting = bool(snapshot["metadata"].get("deletionTimestamp"))
        add_source = not deleting and VOLUME_SNAPSHOT_AS_SOURCE_FINALIZER not in fins
        add_bound = (
            content is not None
            and not deleting
            and VOLUME_SNAPSHOT_BOUND_FINALIZER not in fins
            and is_bound_name_set(snapshot)
            and (content.get("spec") or {}).get("deletionPolicy") == "Delete"
        )
        if not (add_source or add_bound):
            return snapshot
        body = deep_copy(snapshot)
        new = body["metadata"].setdefault("finalizers", [])
        if add_source:
            new.append(VOLUME_SNAPSHOT_AS_SOURCE_FINALIZER)
        if add_bound:
            new.append(VOLUME_SNAPSHOT_BOUND_FINALIZER)
        try:
            return self.update(self.vs_rt, body)
        except StatusError as e:
            raise controller_update_error(snapshot_key(snapshot), e.message) from e

    def remove_snapshot_finalizer(self, snapshot: JSON, remove_source: bool, remove_bound: bool) -> None:
        """``removeSnapshotFinalizer``: the PVC finalizer first, then the snapshot's own."""
        if not remove_source and not remove_bound:
            return
        try:
            self.check_and_remove_pvc_finalizer(snapshot, True)
        except (SyncError, StatusError) as e:
            self.event(
                snapshot,
                "Warning",
                "ErrorPVCFinalizer",
                "Error check and remove PVC Finalizer for VolumeSnapshot",
            )
            raise controller_update_error(snapshot["metadata"]["name"], str(e)) from e
        body = deep_copy(snapshot)
        drop = set()
        if remove_source:
            drop.add(VOLUME_SNAPSHOT_AS_SOURCE_FINALIZER)
        if remove_bound:
            drop.add(VOLUME_SNAPSHOT_BOUND_FINALIZER)
        body["metadata"]["finalizers"] = [f for f in finalizers(snapshot) if f not in drop]
        try:
            self.update(self.vs_rt, body)
        except StatusError as e:
            if e.code == 404:
                return
            raise controller_update_error(snapshot["metadata"]["name"], e.message) from e

    def sync_ready_snapshot(self, snapshot: JSON) -> None:
        """``syncReadySnapshot``: the binding must still hold from both sides."""
        content = self.get_content((snapshot.get("status") or {}).get("boundVolumeSnapshotContentName") or "")
        if content is None:
            self.update_snapshot_error_status_with_event(
                snapshot, True, "Warning", "SnapshotContentMissing", "VolumeSnapshotContent is missing"
            )
            return
        if not is_volume_snapshot_ref_set(snapshot, content):
            self.update_snapshot_error_status_with_event(
                snapshot,
                True,
                "Warning",
                "SnapshotMisbound",
                "VolumeSnapshotContent is not bound to the VolumeSnapshot correctly",
            )

    def sync_unready_snapshot(self, snapshot: JSON) -> None:
        """``syncUnreadySnapshot``."""
        key = snapshot_key(snapshot)
        source = (snapshot.get("spec") or {}).get("source") or {}
        if source.get("volumeSnapshotContentName"):
            content = self.get_preprovisioned_content(snapshot)
            if content is None:
                self.update_snapshot_error_status_with_event(
                    snapshot, True, "Warning", "SnapshotContentMissing", "VolumeSnapshotContent is missing"
                )
                raise SyncError(
                    f"snapshot {key} requests an non-existing content {source['volumeSnapshotContentName']}"
                )
            try:
                content = self.check_and_bind_snapshot_content(snapshot, content)
            except SyncError as e:
                self.update_snapshot_error_status_with_event(
                    snapshot,
                    True,
                    "Warning",
                    "SnapshotBindFailed",
                    f"Snapshot failed to bind VolumeSnapshotContent, {e}",
                )
                raise
            self._update_status_or_report(snapshot, content)
            return
        content = self.get_dynamic_content(snapshot)
        if content is not None:
            if ((content.get("spec") or {}).get("source") or {}).get("snapshotHandle"):
                self.update_snapshot_error_status_with_event(
                    snapshot,
                    True,
                    "Warning",
                    "SnapshotHandleSet",
                    f"Snapshot handle should not be set in content {key} for dynamic provisioning",
                )
                raise SyncError(
                    f"snapshotHandle should not be set in the content for dynamic provisioning for snapshot {key}"
                )
            self._update_status_or_report(snapshot, content)  # bindandUpdateVolumeSnapshot
            return
        if source.get("persistentVolumeClaimName") is None:
            self.update_snapshot_error_status_with_event(
                snapshot,
                True,
                "Warning",
                "SnapshotPVCSourceMissing",
                f"PVC source for snapshot {key} is missing",
            )
            raise SyncError(f"expected PVC source for snapshot {key} but got nil")
        try:
            content = self.create_snapshot_content(snapshot)
        except (SyncError, StatusError) as e:
            self.update_snapshot_error_status_with_event(
                snapshot,
                True,
                "Warning",
                "SnapshotContentCreationFailed",
                f"Failed to create snapshot content with error {e.message if isinstance(e, StatusError) else e}",
            )
            raise
        self._update_status_or_report(snapshot, content)

    def _update_status_or_report(self, snapshot: JSON, content: JSON) -> None:
        try:
            self.update_snapshot_status(snapshot, content)
        except (SyncError, StatusError) as e:
            self.update_snapshot_error_status_with_event(
                snapshot,
                False,
                "Warning",
                "SnapshotStatusUpdateFailed",
                f"Snapshot status update failed, {e}",
            )
            raise

    def get_preprovisioned_content(self, snapshot: JSON) -> JSON | None:
        """``getPreprovisionedContentFromStore``."""
        name = ((snapshot.get("spec") or {}).get("source") or {}).get("volumeSnapshotContentName") or ""
        if not name:
            raise SyncError(f"empty VolumeSnapshotContentName for snapshot {snapshot_key(snapshot)}")
        content = self.get_content(name)
        if content is None:
            return None
        cspec = content.get("spec") or {}
        if not (cspec.get("source") or {}).get("snapshotHandle"):
            self.update_snapshot_error_status_with_event(
                snapshot,
                True,
                "Warning",
                "SnapshotContentMismatch",
                "VolumeSnapshotContent is dynamically provisioned while expecting a pre-provisioned one",
            )
            raise SyncError(
                f"snapshot {snapshot_key(snapshot)} expects a pre-provisioned VolumeSnapshotContent {name} but gets a dynamically provisioned one"
            )
        ref = cspec.get("volumeSnapshotRef") or {}
        m = snapshot["metadata"]
        if (
            ref.get("name") != m["name"]
            or ref.get("namespace") != m.get("namespace")
            or (ref.get("uid") and ref.get("uid") != m["uid"])
        ):
            msg = f"VolumeSnapshotContent [{name}] is bound to a different snapshot"
            self.update_snapshot_error_status_with_event(
                snapshot, True, "Warning", "SnapshotContentMisbound", msg
            )
            raise SyncError(msg)
        return content

    def get_dynamic_content(self, snapshot: JSON) -> JSON | None:
        """``getDynamicallyProvisionedContentFromStore``."""
        name = content_name_for(snapshot)
        content = self.get_content(name)
        if content is None:
            return None
        cspec = content.get("spec") or {}
        if not (cspec.get("source") or {}).get("volumeHandle"):
            self.update_snapshot_error_status_with_event(
                snapshot,
                True,
                "Warning",
                "SnapshotContentMismatch",
                f"VolumeSnapshotContent {name} is pre-provisioned while expecting a dynamically provisioned one",
            )
            raise SyncError(
                f"snapshot {snapshot_key(snapshot)} expects a dynamically provisioned VolumeSnapshotContent {name} but gets a pre-provisioned one"
            )
        ref = cspec.get("volumeSnapshotRef") or {}
        m = snapshot["metadata"]
        if (
            ref.get("name") != m["name"]
            or ref.get("namespace") != m.get("namespace")
            or ref.get("uid") != m["uid"]
        ):
            msg = f"VolumeSnapshotContent [{name}] is bound to a different snapshot"
            self.update_snapshot_error_status_with_event(
                snapshot, True, "Warning", "SnapshotContentMisbound", msg
            )
            raise SyncError(msg)
        return content

    def check_and_bind_snapshot_content(self, snapshot: JSON, content: JSON) -> JSON:
        """``checkandBindSnapshotContent``: set the snapshot's uid (and class) in a pre-bound content."""
        cspec = content.get("spec") or {}
        ref = cspec.get("volumeSnapshotRef") or {}
        m = snapshot["metadata"]
        mismatch = f"Could not bind snapshot {m['name']} and content {content['metadata']['name']}, the VolumeSnapshotRef does not match"
        if ref.get("name") != m["name"]:
            raise SyncError(mismatch)
        if ref.get("uid") and ref.get("uid") != m["uid"]:
            raise SyncError(mismatch)
        if ref.get("uid") and cspec.get("volumeSnapshotClassName") is not None:
            return content
        body = deep_copy(content)
        body["spec"]["volumeSnapshotRef"]["uid"] = m["uid"]
        class_name = (snapshot.get("spec") or {}).get("volumeSnapshotClassName")
        if class_name is not None:
            body["spec"]["volumeSnapshotClassName"] = class_name
        return self.update(self.vsc_rt, body)

    def create_snapshot_content(self, snapshot: JSON) -> JSON:
        """``createSnapshotContent`` (dynamic snapshots only)."""
        self.ensure_pvc_finalizer(snapshot)
        try:
            cls, volume = self.get_create_snapshot_input(snapshot)
        except SyncError as e:
            raise SyncError(
                f"failed to get input parameters to create snapshot {snapshot['metadata']['name']}: {go_quote(str(e))}"
            ) from e
        csi = (volume.get("spec") or {}).get("csi")
        if not isinstance(csi, dict):
            raise SyncError(f"cannot find CSI PersistentVolumeSource for volume {volume['metadata']['name']}")
        m = snapshot["metadata"]
        content: JSON = {
            "apiVersion": f"{GROUP}/v1",
            "kind": "VolumeSnapshotContent",
            "metadata": {"name": content_name_for(snapshot)},
            "spec": {
                "volumeSnapshotRef": {
                    "kind": "VolumeSnapshot",
                    "namespace": m.get("namespace", ""),
                    "name": m["name"],
                    "uid": m["uid"],
                    "apiVersion": f"{GROUP}/v1",
                    "resourceVersion": m.get("resourceVersion", ""),
                },
                "source": {"volumeHandle": csi["volumeHandle"]},
                "volumeSnapshotClassName": cls["metadata"]["name"],
                "deletionPolicy": cls.get("deletionPolicy"),
                "driver": cls.get("driver"),
            },
        }
        # --prevent-volume-mode-conversion (on by default): remember the source volume mode.
        if (volume.get("spec") or {}).get("volumeMode"):
            content["spec"]["sourceVolumeMode"] = volume["spec"]["volumeMode"]
        try:
            created = self.api.create(self.vsc_rt, "", content).obj
        except StatusError as e:
            if e.code != 409 or e.reason != "AlreadyExists":
                strerr = f"Error creating volume snapshot content object for snapshot {snapshot_key(snapshot)}: {e.message}."
                self.event(snapshot, "Warning", "CreateSnapshotContentFailed", strerr)
                raise controller_update_error(snapshot_key(snapshot), e.message) from e
            created = self.get_content(content["metadata"]["name"]) or content
        self.event(
            snapshot,
            "Normal",
            "CreatingSnapshot",
            f"Waiting for a snapshot {snapshot_key(snapshot)} to be created by the CSI driver.",
        )
        return created

    def get_create_snapshot_input(self, snapshot: JSON) -> tuple[JSON, JSON]:
        """``getCreateSnapshotInput``: the class and the source volume."""
        class_name = (snapshot.get("spec") or {}).get("volumeSnapshotClassName")
        if class_name is None:
            raise SyncError(
                f"failed to take snapshot {snapshot['metadata']['name']} without a snapshot class"
            )
        cls = self.get_snapshot_class(class_name)
        volume = self.get_volume_from_snapshot(snapshot)
        return cls, volume

    def ensure_pvc_finalizer(self, snapshot: JSON) -> None:
        """``ensurePVCFinalizer``: protect the source claim while the snapshot is being taken."""
        if ((snapshot.get("spec") or {}).get("source") or {}).get("persistentVolumeClaimName") is None:
            return
        try:
            pvc = self.get_claim_from_snapshot(snapshot)
        except SyncError as e:
            raise controller_update_error(
                snapshot["metadata"]["name"], "cannot get claim from snapshot"
            ) from e
        if PVC_FINALIZER in finalizers(pvc):
            return
        if pvc["metadata"].get("deletionTimestamp"):
            raise controller_update_error(
                pvc["metadata"]["name"], "cannot add finalizer on claim because it is being deleted"
            )
        body = deep_copy(pvc)
        body["metadata"].setdefault("finalizers", []).append(PVC_FINALIZER)
        try:
            self.update(self.pvc_rt, body)
        except StatusError as e:
            raise controller_update_error(pvc["metadata"]["name"], e.message) from e

    def check_and_remove_pvc_finalizer(self, snapshot: JSON, skip_current: bool) -> None:
        """``checkandRemovePVCFinalizer``: once no unready snapshot is taken from the claim."""
        pvc_name = ((snapshot.get("spec") or {}).get("source") or {}).get("persistentVolumeClaimName")
        if pvc_name is None:
            return
        pvc = self.get_claim(snapshot["metadata"].get("namespace", ""), pvc_name)
        if pvc is None or PVC_FINALIZER not in finalizers(pvc):
            return
        if self.is_pvc_being_used(pvc, snapshot, skip_current):
            return
        body = deep_copy(pvc)
        body["metadata"]["finalizers"] = [f for f in finalizers(pvc) if f != PVC_FINALIZER]
        try:
            self.update(self.pvc_rt, body)
        except StatusError as e:
            if e.code == 404:
                return
            raise controller_update_error(pvc["metadata"]["name"], e.message) from e

    def is_pvc_being_used(self, pvc: JSON, snapshot: JSON, skip_current: bool) -> bool:
        """``isPVCBeingUsed``: an unready snapshot of the claim is still being created."""
        for snap in self.store.iter(f"{GROUP}/volumesnapshots", snapshot["metadata"].get("namespace", "")):
            if skip_current and snap["metadata"]["name"] == snapshot["metadata"]["name"]:
                continue
            source = (snap.get("spec") or {}).get("source") or {}
            if (
                source.get("persistentVolumeClaimName") is None
                and source.get("volumeSnapshotContentName") is not None
            ):
                continue
            if source.get("persistentVolumeClaimName") == pvc["metadata"]["name"] and not is_snapshot_ready(
                snap
            ):
                return True
        return False

    def update_snapshot_status(self, snapshot: JSON, content: JSON) -> JSON:
        """``updateSnapshotStatus``: the snapshot's status follows its content's."""
        cstatus = content.get("status") or {}
        created_at = cstatus.get("creationTime")
        size = cstatus.get("restoreSize")
        ready = cstatus.get("readyToUse") is True
        content_error = deep_copy(cstatus.get("error")) if cstatus.get("error") else None
        current = self.get_snapshot(snapshot["metadata"].get("namespace", ""), snapshot["metadata"]["name"])
        if current is None:
            raise SyncError(f"error get snapshot {snapshot_key(snapshot)} from api server: not found")
        old = current.get("status")
        if old is None:
            new: JSON = {"boundVolumeSnapshotContentName": content["metadata"]["name"], "readyToUse": ready}
            if created_at is not None:
                new["creationTime"] = rfc3339_from_ns(int(created_at))
            if size is not None:
                new["restoreSize"] = format_binary_si(int(size))
            if content_error:
                new["error"] = content_error
            updated = True
        else:
            new = deep_copy(old)
            updated = False
            if not new.get("boundVolumeSnapshotContentName"):
                new["boundVolumeSnapshotContentName"] = content["metadata"]["name"]
                updated = True
            if not new.get("creationTime") and created_at is not None:
                new["creationTime"] = rfc3339_from_ns(int(created_at))
                updated = True
            if new.get("readyToUse") is None or new.get("readyToUse") != ready:
                new["readyToUse"] = ready
                updated = True
                if ready and new.get("error"):
                    new.pop("error", None)
            if size is not None and (
                new.get("restoreSize") is None or (_is_zero(new.get("restoreSize")) and int(size) > 0)
            ):
                new["restoreSize"] = format_binary_si(int(size))
                updated = True
            if content_error is not None:
                if new.get("error") != content_error:
                    new["error"] = content_error
                    updated = True
            elif new.get("error") is not None:
                new.pop("error", None)
                updated = True
        if not updated:
            return current
        body = deep_copy(current)
        body["status"] = new
        key = snapshot_key(snapshot)
        if not is_snapshot_created(current) and new.get("creationTime"):
            self.event(
                snapshot,
                "Normal",
                "SnapshotCreated",
                f"Snapshot {key} was successfully created by the CSI driver.",
            )
        if not is_snapshot_ready(current) and new.get("readyToUse") is True:
            self.event(snapshot, "Normal", "SnapshotReady", f"Snapshot {key} is ready to use.")
        try:
            return self.update(self.vs_rt, body, "status")
        except StatusError as e:
            raise controller_update_error(key, e.message) from e

    def update_snapshot_error_status_with_event(
        self, snapshot: JSON, set_ready_false: bool, type_: str, reason: str, message: str
    ) -> None:
        """``updateSnapshotErrorStatusWithEvent``: nothing if the same error is already set."""
        current = (
            self.get_snapshot(snapshot["metadata"].get("namespace", ""), snapshot["metadata"]["name"])
            or snapshot
        )
        status = current.get("status") or {}
        if (status.get("error") or {}).get("message") == message:
            return
        body = deep_copy(current)
        new = body.setdefault("status", {}) or {}
        body["status"] = new
        new["error"] = {"time": now(), "message": message}
        if set_ready_false:
            new["readyToUse"] = False
        try:
            self.update(self.vs_rt, body, "status")
        except StatusError as e:
            log.debug("snapshot-controller: error status of %s: %s", snapshot_key(snapshot), e)
        # The event is emitted even if the status update fails.
        self.event(current, type_, reason, message)

    # -- contents ------------------------------------------------------------------------------
    def sync_content(self, name: str) -> None:
        """``syncContent`` (common controller)."""
        content = self.get_content(name)
        if content is None:
            return
        spec = content.get("spec") or {}
        source = spec.get("source") or {}
        if bool(source.get("volumeHandle")) == bool(source.get("snapshotHandle")):
            msg = "Exactly one of VolumeHandle and SnapshotHandle should be specified"
            self.event(content, "Warning", "ContentValidationError", msg)
            raise SyncError(msg)
        ref = spec.get("volumeSnapshotRef") or {}
        if not ref.get("uid"):
            return  # pre-bound: syncSnapshot binds it
        if not content["metadata"].get(
            "deletionTimestamp"
        ) and VOLUME_SNAPSHOT_CONTENT_FINALIZER not in finalizers(content):
            body = deep_copy(content)
            body["metadata"].setdefault("finalizers", []).append(VOLUME_SNAPSHOT_CONTENT_FINALIZER)
            try:
                self.update(self.vsc_rt, body)
            except StatusError as e:
                raise controller_update_error(name, e.message) from e
            return
        snapshot = self.get_snapshot(ref.get("namespace", ""), ref.get("name", ""))
        if snapshot is not None and snapshot["metadata"]["uid"] != ref.get("uid"):
            snapshot = None
        elif snapshot is not None and self.needs_update_snapshot_status(snapshot, content):
            self.enqueue(("vs", ref.get("namespace", ""), ref.get("name", "")))
        if snapshot is not None and is_deletion_candidate(snapshot):
            self.set_ann_being_deleted(content)

    @staticmethod
    def needs_update_snapshot_status(snapshot: JSON, content: JSON) -> bool:
        """``needsUpdateSnapshotStatus``."""
        sstatus = snapshot.get("status")
        cstatus = content.get("status")
        if sstatus is None and cstatus is not None:
            return True
        if cstatus is None:
            return False
        assert sstatus is not None
        if not sstatus.get("boundVolumeSnapshotContentName"):
            return True
        if sstatus.get("creationTime") is None and cstatus.get("creationTime") is not None:
            return True
        if sstatus.get("readyToUse") is None and cstatus.get("readyToUse") is not None:
            return True
        if sstatus.get("readyToUse") is not None and cstatus.get("readyToUse") is not None:
            # Upstream compares the two *bool pointers, not the values: always true when both are set.
            # So a content update always syncs its snapshot, which is how errors reach the snapshot.
            return True
        if sstatus.get("restoreSize") is None and cstatus.get("restoreSize") is not None:
            return True
        return bool(
            sstatus.get("restoreSize") is not None
            and _is_zero(sstatus.get("restoreSize"))
            and (cstatus.get("restoreSize") or 0) > 0
        )

    def set_ann_being_deleted(self, content: JSON) -> JSON:
        """``setAnnVolumeSnapshotBeingDeleted``: lets the sidecar delete the physical snapshot."""
        if ANN_BEING_DELETED in annots(content):
            return content
        body = deep_copy(content)
        body["metadata"].setdefault("annotations", {})[ANN_BEING_DELETED] = "yes"
        try:
            return self.update(self.vsc_rt, body)
        except StatusError as e:
            raise controller_update_error(content["metadata"]["name"], e.message) from e


def _is_zero(q: Any) -> bool:
    try:
        from ..csi import quantity_bytes

        return quantity_bytes(q) == 0
    except ValueError:
        return False


# =============================================================================================
# csi-snapshotter sidecar
# =============================================================================================
_NON_FINAL_CODES = {"Canceled", "DeadlineExceeded", "Unavailable", "ResourceExhausted", "Aborted"}


class CSISnapshotter(_SnapshotBase):
    """The csi-snapshotter sidecar of one CSI driver (``pkg/sidecar-controller``)."""

    name = "csi-snapshotter"

    def __init__(self, cluster: Cluster, driver: str) -> None:
        super().__init__(cluster)
        self.driver = driver
        self.component = f"csi-snapshotter {driver}"

    def keys_for(self, change: Change) -> Iterable[Hashable]:
        if (
            change.key == f"{GROUP}/volumesnapshotcontents"
            and change.type != "DELETED"
            and (change.obj.get("spec") or {}).get("driver") == self.driver
        ):
            yield change.obj["metadata"]["name"]

    def initial_keys(self) -> Iterable[Hashable]:
        for c in self.store.iter(f"{GROUP}/volumesnapshotcontents"):
            if (c.get("spec") or {}).get("driver") == self.driver:
                yield c["metadata"]["name"]

    async def reconcile(self, key: Hashable) -> float | None:
        name = str(key)
        content = self.get_content(name)
        if content is None or (content.get("spec") or {}).get("driver") != self.driver:
            self.ops.forget(key)
            return None
        if self.ops.running(key):
            return None
        self.ops.run(key, self.sync_content(content), self._done)
        return None

    def _done(self, key: Hashable, exc: BaseException | None, requeue: Any, dirty: bool) -> None:
        if exc is not None:
            if not isinstance(exc, (SyncError, StatusError, CSIError)):
                log.error("csi-snapshotter: %r failed", key, exc_info=exc)
            self.enqueue_after(key, self.ops.backoff(key))
        elif requeue:
            self.enqueue_after(key, self.ops.backoff(key))
        else:
            self.ops.forget(key)
        if dirty and exc is None and not requeue:
            self.enqueue(key)

    async def sync_content(self, content: JSON) -> bool:
        """``syncContent`` (sidecar): returns whether to requeue."""
        spec = content.get("spec") or {}
        status = content.get("status")
        if self.should_delete(content):
            handle = (status or {}).get("snapshotHandle")
            if (
                spec.get("deletionPolicy") == "Delete"
                and handle
                and not (status or {}).get("volumeGroupSnapshotHandle")
            ):
                await self.delete_csi_snapshot(content, str(handle))
                return False
            self.remove_content_finalizer(content)
            return False
        if (spec.get("source") or {}).get("volumeHandle") and status is None:
            return await self.create_snapshot(content)
        if content_ready(content):
            self.remove_ann_being_created(content)
            return False
        return await self.check_and_update_content_status(content)

    def should_delete(self, content: JSON) -> bool:
        """``shouldDelete``."""
        m = content["metadata"]
        if not m.get("deletionTimestamp"):
            return False
        spec = content.get("spec") or {}
        if (spec.get("source") or {}).get("snapshotHandle") and not (spec.get("volumeSnapshotRef") or {}).get(
            "uid"
        ):
            return True
        if ANN_BEING_CREATED in annots(content):
            return False
        return ANN_BEING_DELETED in annots(content)

    async def create_snapshot(self, content: JSON) -> bool:
        """``createSnapshot``."""
        try:
            content = await self.create_snapshot_wrapper(content)
        except (SyncError, CSIError, StatusError) as e:
            self.update_content_error_status_with_event(
                content, "Warning", "SnapshotCreationFailed", f"Failed to create snapshot: {e}"
            )
            raise
        return not content_ready(content)

    async def check_and_update_content_status(self, content: JSON) -> bool:
        """``checkandUpdateContentStatus``."""
        try:
            content = await self.check_and_update_content_status_operation(content)
        except (SyncError, CSIError, StatusError) as e:
            self.update_content_error_status_with_event(
                content,
                "Warning",
                "SnapshotContentCheckandUpdateFailed",
                f"Failed to check and update snapshot content: {e}",
            )
            raise
        return not content_ready(content)

    async def check_and_update_content_status_operation(self, content: JSON) -> JSON:
        spec = content.get("spec") or {}
        handle = (spec.get("source") or {}).get("snapshotHandle")
        if handle:
            # A pre-provisioned snapshot: ListSnapshots (GetSnapshotStatus).
            rec = self.cluster.csi.get_snapshot(str(handle))
            if rec is None or rec.driver != self.driver:
                raise SyncError(
                    f"failed to list snapshot for content {content['metadata']['name']}: "
                    + go_quote(f"can not find snapshot for snapshotID {handle}")
                )
            return self.update_snapshot_content_status(
                content,
                rec.handle,
                self.cluster.csi.snapshot_ready(rec),
                rec.creation_time_ns,
                rec.size_bytes,
            )
        return await self.create_snapshot_wrapper(content)

    def get_csi_snapshot_input(self, content: JSON) -> JSON | None:
        """``getCSISnapshotInput``: the class (required for dynamic snapshots)."""
        spec = content.get("spec") or {}
        class_name = spec.get("volumeSnapshotClassName")
        if class_name is not None:
            return self.get_snapshot_class(class_name)
        if (spec.get("source") or {}).get("volumeHandle"):
            raise SyncError(f"failed to take snapshot {content['metadata']['name']} without a snapshot class")
        return None

    async def create_snapshot_wrapper(self, content: JSON) -> JSON:
        """``createSnapshotWrapper``: CreateSnapshot through the driver, then the content status."""
        name = content["metadata"]["name"]
        try:
            cls = self.get_csi_snapshot_input(content)
        except SyncError as e:
            raise SyncError(
                f"failed to get input parameters to create snapshot for content {name}: {go_quote(str(e))}"
            ) from e
        content = self.set_ann_being_created(content)
        params = {str(k): str(v) for k, v in ((cls or {}).get("parameters") or {}).items()}
        for k in params:
            if k.startswith("csi.storage.k8s.io/") and k not in _KNOWN_PREFIXED:
                raise SyncError(
                    f'failed to remove CSI Parameters of prefixed keys: found unknown parameter key "{k}" with reserved namespace csi.storage.k8s.io/'
                )
        spec = content.get("spec") or {}
        ref = spec.get("volumeSnapshotRef") or {}
        volume_handle = str((spec.get("source") or {}).get("volumeHandle", ""))
        try:
            # makeSnapshotName: "snapshot-<VolumeSnapshot uid>" (--snapshot-name-prefix, uuid length -1).
            rec = await self.cluster.csi.create_snapshot(
                self.driver,
                f"snapshot-{ref.get('uid', '')}",
                volume_handle,
                fault_attrs={"namespace": str(ref.get("namespace", "")), "name": str(ref.get("name", ""))},
            )
        except CSIError as e:
            if e.code not in _NON_FINAL_CODES:
                content = self.remove_ann_being_created(self.get_content(name) or content)
            raise SyncError(
                f"failed to take snapshot of the volume {volume_handle}: {go_quote(str(e))}"
            ) from e
        try:
            content = self.update_snapshot_content_status(
                content,
                rec.handle,
                self.cluster.csi.snapshot_ready(rec),
                rec.creation_time_ns,
                rec.size_bytes,
            )
        except (SyncError, StatusError) as e:
            raise SyncError(f"error updating status for volume snapshot content {name}: {e}") from e
        return self.remove_ann_being_created(content)

    def update_snapshot_content_status(
        self, content: JSON, handle: str, ready: bool, created_ns: int, size: int
    ) -> JSON:
        """``updateSnapshotContentStatus``."""
        current = self.get_content(content["metadata"]["name"])
        if current is None:
            raise SyncError(
                f"error get snapshot content {content['metadata']['name']} from api server: not found"
            )
        old = current.get("status")
        updated = False
        if old is None:
            new: JSON = {"snapshotHandle": handle, "readyToUse": ready, "creationTime": created_ns}
            if size > 0:
                new["restoreSize"] = size
            updated = True
        else:
            new = deep_copy(old)
            if new.get("snapshotHandle") is None:
                new["snapshotHandle"] = handle
                updated = True
            if new.get("readyToUse") is None or new.get("readyToUse") != ready:
                new["readyToUse"] = ready
                updated = True
                if ready and new.get("error") is not None:
                    new.pop("error", None)
            if new.get("creationTime") is None:
                new["creationTime"] = created_ns
                updated = True
            if new.get("restoreSize") is None and size > 0:
                new["restoreSize"] = size
                updated = True
        if not updated:
            return current
        body = deep_copy(current)
        body["status"] = new
        try:
            return self.update(self.vsc_rt, body, "status")
        except StatusError as e:
            raise controller_update_error(content["metadata"]["name"], e.message) from e

    def update_content_error_status_with_event(
        self, content: JSON, type_: str, reason: str, message: str
    ) -> None:
        """``updateContentErrorStatusWithEvent``: error and readyToUse=false, and an event."""
        current = self.get_content(content["metadata"]["name"]) or content
        status = current.get("status")
        if status is not None and (status.get("error") or {}).get("message") == message:
            return
        body = deep_copy(current)
        err = {"time": now(), "message": message}
        if status is None:
            body["status"] = {"readyToUse": False, "error": err}
        else:
            body["status"]["error"] = err
            body["status"]["readyToUse"] = False
        try:
            self.update(self.vsc_rt, body, "status")
        except StatusError as e:
            log.debug("csi-snapshotter: error status of %s: %s", content["metadata"]["name"], e)
        finally:
            self.event(current, type_, reason, message)

    async def delete_csi_snapshot(self, content: JSON, handle: str) -> None:
        """``deleteCSISnapshotOperation``: DeleteSnapshot, then clear the content's snapshot status."""
        try:
            await self.cluster.csi.delete_snapshot(self.driver, handle)
        except CSIError as e:
            self.event(content, "Warning", "SnapshotDeleteError", "Failed to delete snapshot")
            raise SyncError(
                f"failed to delete snapshot {go_quote(content['metadata']['name'])}, err: {e}"
            ) from e
        current = self.get_content(content["metadata"]["name"])
        if current is None:
            return
        body = deep_copy(current)
        st = body.get("status")
        if isinstance(st, dict):
            for k in ("snapshotHandle", "readyToUse", "creationTime", "restoreSize"):
                st.pop(k, None)
        try:
            self.update(self.vsc_rt, body, "status")
        except StatusError as e:
            self.event(content, "Warning", "SnapshotDeleteError", "Failed to clear content status")
            raise controller_update_error(content["metadata"]["name"], e.message) from e
        # Sync again: with the handle cleared, the finalizer goes next.
        self.enqueue(content["metadata"]["name"])

    def remove_content_finalizer(self, content: JSON) -> None:
        if VOLUME_SNAPSHOT_CONTENT_FINALIZER not in finalizers(content):
            return
        body = deep_copy(content)
        body["metadata"]["finalizers"] = [
            f for f in finalizers(content) if f != VOLUME_SNAPSHOT_CONTENT_FINALIZER
        ]
        try:
            self.update(self.vsc_rt, body)
        except StatusError as e:
            if e.code != 404:
                raise controller_update_error(content["metadata"]["name"], e.message) from e

    def set_ann_being_created(self, content: JSON) -> JSON:
        if ANN_BEING_CREATED in annots(content):
            return content
        current = self.get_content(content["metadata"]["name"]) or content
        body = deep_copy(current)
        body["metadata"].setdefault("annotations", {})[ANN_BEING_CREATED] = "yes"
        try:
            return self.update(self.vsc_rt, body)
        except StatusError as e:
            raise controller_update_error(content["metadata"]["name"], e.message) from e

    def remove_ann_being_created(self, content: JSON) -> JSON:
        current = self.get_content(content["metadata"]["name"]) or content
        if ANN_BEING_CREATED not in annots(current):
            return current
        body = deep_copy(current)
        body["metadata"]["annotations"].pop(ANN_BEING_CREATED, None)
        if not body["metadata"]["annotations"]:
            body["metadata"].pop("annotations")  # omitempty
        try:
            return self.update(self.vsc_rt, body)
        except StatusError as e:
            raise controller_update_error(content["metadata"]["name"], e.message) from e


def make_snapshot_controllers(cluster: Cluster) -> list[VolumeControllerBase]:
    from ..storage import CSI_DRIVER

    return [SnapshotController(cluster), CSISnapshotter(cluster, CSI_DRIVER)]


__all__ = [
    "CSISnapshotter",
    "SnapshotController",
    "make_snapshot_controllers",
]
