"""The ClusterResync API (``clusterresync.io/v1alpha1``) as frozen pydantic models.

These models are the single source of truth: ``make manifests`` generates the CRD in ``crds/``
from them (``clusterresync.crdgen``), and the operator parses objects with them. Field names
are the JSON (camelCase) names; descriptions become the field documentation that
``kubectl explain clusterresync.spec`` prints.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "clusterresync.io"
VERSION = "v1alpha1"
KIND = "ClusterResync"
PLURAL = "clusterresyncs"
SINGULAR = "clusterresync"
SHORT_NAMES = ("crsync",)

# Keys the operator writes on objects it creates or touches. Identity is the uid label: the
# operator adopts, changes or deletes an object only when it carries its resync's uid. The other
# labels are for people (``kubectl get pv -l clusterresync.io/resync=NAME``); their values are the
# names as they are when they fit a label value (63 characters), else cut with a hash suffix.
LABEL_RESYNC = f"{GROUP}/resync"
LABEL_RESYNC_UID = f"{GROUP}/resync-uid"
LABEL_REPLICA = f"{GROUP}/replica"
LABEL_VOLUME = f"{GROUP}/volume"
LABEL_VOLUME_ROLE = f"{GROUP}/volume-role"  # on PersistentVolumes: "old" or "copy"
ANNOTATION_ORIGINAL_RECLAIM_POLICY = f"{GROUP}/original-reclaim-policy"
ANNOTATION_OLD_CLAIM_UID = f"{GROUP}/old-claim-uid"  # on an old PV: the claim it was bound to
ANNOTATION_OLD_POD_UID = f"{GROUP}/old-pod-uid"  # on an old PV: the replica pod before the swap
ANNOTATION_SWAPPED_AT = f"{GROUP}/swapped-at"  # on an old PV: its claim is being deleted (the swap)
FINALIZER = f"{GROUP}/finalizer"


class Model(BaseModel):
    """Frozen, camelCase on the wire, unknown fields refused (the CRD prunes them anyway)."""

    model_config = ConfigDict(
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )


# -- spec ------------------------------------------------------------------------------------
class TargetRef(Model):
    kind: Literal["StatefulSet"] = Field(
        "StatefulSet",
        description="Kind of the workload whose replicas are resynced. Only StatefulSet in v1alpha1.",
    )
    name: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        description="Name of the workload, in the ClusterResync's namespace."
    )


class LabelSelectorRequirement(Model):
    key: str = Field(description="The label key the requirement applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values."
    )
    values: list[str] | None = Field(
        None, description="Values for In and NotIn; must be empty for Exists and DoesNotExist."
    )


class LabelSelector(Model):
    match_labels: dict[str, str] | None = Field(None, description="Labels a pod must carry, all of them.")
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        None, description="Requirements a pod's labels must meet, all of them."
    )


class PrimarySpec(Model):
    pod_name: str | None = Field(
        None, description="Name of the primary pod. Exactly one of podName and selector is set."
    )
    selector: LabelSelector | None = Field(
        None,
        description="A label selector over the target's pods that must match exactly one pod: the primary. "
        "Exactly one of podName and selector is set.",
    )


class ExecHook(Model):
    container: str | None = Field(
        None, description="Container to run the command in; default: the pod's first container."
    )
    command: Annotated[list[str], Field(min_length=1)] = Field(
        description="Command and arguments, run without a shell (use [sh, -c, ...] for one)."
    )
    timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        300, description="How long the command may run before the hook counts as failed."
    )
    output_excerpt_bytes: Annotated[int, Field(ge=0, le=1024)] = Field(
        0,
        description="When the hook fails, put the last this-many bytes of its output (stdout, then stderr) in "
        "the status message and the Event. 0 (the default): only the exit code, because a hook's output may "
        "hold secrets that readers of the status and Events may not see otherwise. The output is never logged.",
    )


class EnvVar(Model):
    name: str = Field(description="Name of the environment variable.")
    value: str = Field("", description="Its value.")


class RestoreHook(Model):
    image: Annotated[str, Field(min_length=1)] = Field(description="Image of the restore Job's container.")
    command: Annotated[list[str], Field(min_length=1)] = Field(
        description="Command run in the restore Job, with the restored volumes mounted at the replica's mountPaths."
    )
    args: list[str] | None = Field(None, description="Arguments to the command.")
    env: list[EnvVar] | None = Field(None, description="Environment of the restore Job's container.")
    timeout_seconds: Annotated[int, Field(ge=1, le=86400)] = Field(
        1800, description="How long the restore Job may run before the replica's resync fails."
    )


class Hooks(Model):
    pre_snapshot: ExecHook | None = Field(
        None, description="Runs in the primary before the snapshot is taken (for example a checkpoint)."
    )
    post_snapshot: ExecHook | None = Field(
        None, description="Runs in the primary once the snapshot is taken."
    )
    restore: RestoreHook | None = Field(
        None,
        description="A Job run on the replica's node with the restored volumes mounted, before the swap "
        "(for example to make a PostgreSQL copy a standby).",
    )


class Timeouts(Model):
    snapshot_seconds: Annotated[int, Field(ge=1)] = Field(
        600, description="How long snapshots (or clones) may take to become ready."
    )
    replica_seconds: Annotated[int, Field(ge=1)] = Field(
        1800, description="How long one replica's swap may take to be verified before it is rolled back."
    )
    preflight_seconds: Annotated[int, Field(ge=0)] = Field(
        300, description="How long to wait for the primary to be Ready and stable before refusing."
    )


class ClusterResyncSpec(Model):
    target: TargetRef = Field(description="The workload whose replicas are resynced from its primary.")
    primary: PrimarySpec = Field(description="Which pod of the target is the primary. It is never modified.")
    volumes: Annotated[list[str], Field(min_length=1)] = Field(
        description="Pod volume names holding the data (for a StatefulSet: volumeClaimTemplate names). At least one."
    )
    replicas: list[str] | None = Field(
        None, description="Pods to resync; default: every pod of the target but the primary."
    )
    method: Literal["Snapshot", "Clone"] = Field(
        "Snapshot",
        description="Snapshot: copy the primary's volumes through CSI VolumeSnapshots. "
        "Clone: CSI volume cloning of the primary's claims.",
    )
    volume_snapshot_class_name: str | None = Field(
        None,
        description="VolumeSnapshotClass to use; default: the class whose driver is the claims' provisioner "
        "(the default-annotated one first).",
    )
    max_parallel: Annotated[int, Field(ge=1, le=100)] = Field(
        1, description="How many replicas may be out of service at once."
    )
    dry_run: bool = Field(
        False, description="Plan only: the status lists what would be done; nothing is created or deleted."
    )
    force: bool = Field(
        False,
        description="Go ahead even where a check says a replica may hold data the primary lacks. Reserved: v1alpha1 "
        "has no such check yet, so this field has no effect; check replication positions before applying.",
    )
    primary_stable_seconds: Annotated[int, Field(ge=0)] = Field(
        60, description="The primary must have been Ready, without a container restart, for this long."
    )
    old_volumes: Literal["Retain", "Delete"] = Field(
        "Retain",
        description="What becomes of each replica's previous volume once the replica is verified on its new one. "
        "Retain: the old PersistentVolume stays Released, labelled with this resync and replica. Delete: it is deleted.",
    )
    hooks: Hooks | None = Field(None, description="Commands run around the snapshot and before each swap.")
    timeouts: Timeouts = Field(default_factory=Timeouts, description="Time limits of the phases.")


# -- status ----------------------------------------------------------------------------------
Phase = Literal["Pending", "Preflight", "Snapshotting", "Resyncing", "Completed", "Failed"]
ReplicaPhase = Literal[
    "Pending",
    "Restoring",
    "Detaching",
    "Swapping",
    "Verifying",
    "Finishing",
    "Completed",
    "RollingBack",
    "Failed",
    "Skipped",
]


class Condition(Model):
    type: str = Field(description="Type of the condition: Progressing, Complete or Failed.")
    status: Literal["True", "False", "Unknown"] = Field(description="Whether the condition holds.")
    reason: str = Field(description="A CamelCase word saying why.")
    message: str = Field("", description="Human-readable details.")
    observed_generation: int | None = Field(None, description="The generation the condition was set for.")
    last_transition_time: str = Field(description="When the status last changed.")


class PrimaryStatus(Model):
    pod_name: str = Field(description="The primary pod.")
    uid: str = Field(description="Its uid when the resync began: a recreated primary has another.")
    node_name: str = Field("", description="The node it runs on.")
    restart_count: int = Field(0, description="Its containers' restarts when the resync began.")
    target_uid: str = Field("", description="Uid of the target when the resync began.")
    claims: dict[str, str] = Field(
        default_factory=dict, description="Volume name to the primary's claim name."
    )
    volumes: dict[str, str] = Field(
        default_factory=dict,
        description="Volume name to the PersistentVolume bound to the primary's claim. The operator never "
        "writes to these, nor to the primary's pod and claims.",
    )


class SnapshotStatus(Model):
    volume: str = Field(description="The volume it copies.")
    name: str = Field(description="The VolumeSnapshot (Snapshot method) or source claim (Clone method).")
    ready_to_use: bool = Field(False, description="Whether it can be restored from.")
    restore_size: str | None = Field(None, description="Minimum size of a volume restored from it.")


class VolumeStatus(Model):
    volume: str = Field(description="The pod volume name.")
    claim: str = Field(description="The replica's claim.")
    old_claim_uid: str | None = Field(None, description="Uid of the claim the replica had before the swap.")
    old_pv: str | None = Field(None, description="The PersistentVolume the replica had before the swap.")
    old_pv_reclaim_policy: str | None = Field(
        None, description="Its reclaim policy before the resync changed it."
    )
    staging_claim: str | None = Field(
        None, description="The temporary claim the new volume was restored into."
    )
    new_pv: str | None = Field(None, description="The PersistentVolume holding the copy.")
    new_pv_reclaim_policy: str | None = Field(
        None, description="Its reclaim policy before the resync changed it."
    )


class ReplicaStatus(Model):
    name: str = Field(description="The replica pod.")
    phase: ReplicaPhase = Field("Pending", description="Where this replica's resync stands.")
    node_name: str | None = Field(None, description="The node the replica ran on when it was staged.")
    old_pod_uid: str | None = Field(None, description="Uid of the replica pod before the swap.")
    volumes: list[VolumeStatus] = Field(default_factory=list, description="Per volume: old and new volumes.")
    started_at: str | None = Field(None, description="When work on this replica began.")
    swap_started_at: str | None = Field(None, description="When the replica went out of service.")
    completed_at: str | None = Field(None, description="When the replica was verified (or failed).")
    reason: str | None = Field(
        None, description="Why a Failed or Skipped replica is: a reason of docs/troubleshooting.md."
    )
    message: str = Field("", description="What is happening, or what went wrong.")


class PlannedAction(Model):
    replica: str = Field("", description="The replica the action concerns, if any.")
    action: str = Field(description="What would be done.")


class ClusterResyncStatus(Model):
    phase: Phase = Field(
        "Pending", description="Pending, Preflight, Snapshotting, Resyncing, Completed or Failed."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Progressing, Complete and Failed, as a Job has."
    )
    observed_generation: int | None = Field(None, description="The generation this status describes.")
    primary: PrimaryStatus | None = Field(None, description="The primary, as identified at preflight.")
    snapshots: list[SnapshotStatus] = Field(
        default_factory=list, description="The snapshots (or clone sources) taken."
    )
    progress: str = Field("", description="Replicas done over replicas to do, e.g. 1/2.")
    started_at: str | None = Field(None, description="When the resync began.")
    completed_at: str | None = Field(None, description="When it completed or failed.")
    replicas: list[ReplicaStatus] = Field(default_factory=list, description="Per replica progress.")
    hooks_done: list[str] = Field(
        default_factory=list, description="Hooks that have run: preSnapshot, postSnapshot."
    )
    plan: list[PlannedAction] = Field(default_factory=list, description="With dryRun: what would be done.")
    waiting_for: str | None = Field(
        None, description="Another ClusterResync of the same target this one waits for."
    )


class ClusterResync(Model):
    """A one-shot resync of a StatefulSet's replicas from a copy of its primary's volumes."""

    api_version: Literal["clusterresync.io/v1alpha1"] = "clusterresync.io/v1alpha1"
    kind: Literal["ClusterResync"] = "ClusterResync"
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: ClusterResyncSpec
    status: ClusterResyncStatus = Field(default_factory=ClusterResyncStatus)
