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

# Bounds of the API, stated in the field descriptions (the Builder keeps the status within them).
MAX_VOLUMES = 16  # spec.volumes, and the volumes of each replica
MAX_REPLICAS = 1000  # spec.replicas and status.replicas
MAX_REASON = 1024  # a condition's reason, as metav1.Condition
MAX_MESSAGE = 32768  # a condition's or a replica's message, as metav1.Condition
MAX_ARG = 8192  # one command-line argument of a hook
# metav1.Condition's patterns (k8s.io/apimachinery/pkg/apis/meta/v1/types.go).
CONDITION_TYPE_PATTERN = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
Name = Annotated[str, Field(max_length=253)]  # an object name (DNS subdomain)
ShortName = Annotated[str, Field(max_length=63)]  # a DNS label: a volume or container name, a label value
Uid = Annotated[str, Field(max_length=128)]
Timestamp = Annotated[str, Field(max_length=64)]
Arg = Annotated[str, Field(max_length=MAX_ARG)]


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
    key: Annotated[str, Field(min_length=1, max_length=317)] = Field(
        description="The label key the requirement applies to (at most 317 characters: prefix/name)."
    )
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values."
    )
    values: Annotated[list[ShortName], Field(max_length=64)] | None = Field(
        None,
        description="Values for In and NotIn (required, at least one); must be absent or empty for Exists and "
        "DoesNotExist. At most 64 values of at most 63 characters.",
    )


class LabelSelector(Model):
    # Atomic, as metav1.LabelSelector is (+structType=atomic): with server-side apply, one manager
    # owns the whole selector, and two appliers' matchLabels are never merged into one selector.
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-map-type": "atomic"})

    match_labels: Annotated[dict[str, ShortName], Field(max_length=64)] | None = Field(
        None, description="Labels a pod must carry, all of them. At most 64."
    )
    match_expressions: Annotated[list[LabelSelectorRequirement], Field(max_length=16)] | None = Field(
        None, description="Requirements a pod's labels must meet, all of them. At most 16."
    )


class PrimarySpec(Model):
    pod_name: Name | None = Field(
        None, description="Name of the primary pod. Exactly one of podName and selector is set."
    )
    selector: LabelSelector | None = Field(
        None,
        description="A label selector over the target's pods that must match exactly one pod: the primary. "
        "Exactly one of podName and selector is set.",
    )


class ExecHook(Model):
    container: ShortName | None = Field(
        None, description="Container to run the command in; default: the pod's first container."
    )
    command: Annotated[list[Arg], Field(min_length=1, max_length=64)] = Field(
        description="Command and arguments, run without a shell (use [sh, -c, ...] for one). At most 64 items "
        "of at most 8192 characters."
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
    name: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        description="Name of the environment variable (at most 253 characters)."
    )
    value: Annotated[str, Field(max_length=MAX_ARG)] = Field(
        "", description="Its value (at most 8192 characters)."
    )


class RestoreHook(Model):
    image: Annotated[str, Field(min_length=1, max_length=1024)] = Field(
        description="Image of the restore Job's container (at most 1024 characters)."
    )
    command: Annotated[list[Arg], Field(min_length=1, max_length=64)] = Field(
        description="Command run in the restore Job, with the restored volumes mounted at the replica's mountPaths. "
        "At most 64 items of at most 8192 characters."
    )
    args: Annotated[list[Arg], Field(max_length=64)] | None = Field(
        None, description="Arguments to the command. At most 64 of at most 8192 characters."
    )
    env: Annotated[list[EnvVar], Field(max_length=64)] | None = Field(
        None, description="Environment of the restore Job's container. At most 64 variables."
    )
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


ProbePreset = Literal["Postgres", "MySQL", "MariaDB", "Redis", "MongoDB", "Checksum", "Command", "HTTP"]
Verdict = Literal["InSync", "Lagging", "Diverged", "Unknown"]


class SecretKeySelector(Model):
    name: Name = Field(description="The Secret, in the ClusterResync's namespace.")
    key: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        description="The key of the Secret whose value is the password."
    )


class ProbeSpec(Model):
    """How to read each pod's replication state (docs/probes.md)."""

    preset: ProbePreset = Field(
        description="The engine: Postgres, MySQL, MariaDB, Redis or MongoDB (its own client, run in the pod); "
        "Checksum (a digest of the files under path); Command (a command printing the documented JSON "
        "document); HTTP (a GET of path on the pod, answering that document)."
    )
    container: ShortName | None = Field(
        None, description="Container the probe's command runs in; default: the pod's first container."
    )
    port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None, description="The engine's (or the HTTP endpoint's) port; default: the engine's own."
    )
    user: Annotated[str, Field(max_length=253)] | None = Field(
        None, description="The database user the probe connects as; default: the engine client's own."
    )
    database: Annotated[str, Field(max_length=253)] | None = Field(
        None, description="The database to connect to (Postgres, MongoDB); default: the client's own."
    )
    password_env: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        None,
        description="A variable of the container's own environment that holds the password: the probe's command "
        "reads it there, so its value never reaches the operator.",
    )
    password_secret_ref: SecretKeySelector | None = Field(
        None,
        description="A Secret key that holds the password: the operator reads it (it needs get on that Secret, "
        "which the default install does not grant) and hands it to the probe's command on its standard input: "
        "never in its arguments, the status, Events or logs. At most one of passwordEnv and passwordSecretRef.",
    )
    path: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        None,
        description="Checksum: the directory whose files are digested. HTTP: the URL path. Required for both.",
    )
    excludes: Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=64)] | None = Field(
        None, description="Checksum: glob patterns of files left out (relative to path). At most 64."
    )
    command: Annotated[list[Arg], Field(min_length=1, max_length=64)] | None = Field(
        None,
        description="Command: the command and arguments, run without a shell; it prints the JSON document of "
        "docs/probes.md. Required for Command.",
    )
    max_lag_bytes: Annotated[int, Field(ge=0, json_schema_extra={"format": "int64"})] | None = Field(
        None, description="A replica lagging at most this many bytes behind the primary counts as verified."
    )
    max_lag_seconds: Annotated[int, Field(ge=0)] | None = Field(
        None, description="A replica lagging at most this many seconds behind the primary counts as verified."
    )
    timeout_seconds: Annotated[int, Field(ge=1, le=600)] = Field(
        30, description="How long one probe command may run before its result is Unknown."
    )


NotifyEvent = Literal["Completed", "Failed"]
EmailAddress = Annotated[str, Field(min_length=3, max_length=254, pattern=r"^[^@\s<>,;]+@[^@\s<>,;]+$")]


class UrlSecretRef(Model):
    name: Name = Field(description="The Secret, in the ClusterResync's namespace.")
    key: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        description="The key of the Secret whose value is the URL."
    )


class WebhookNotify(Model):
    url_secret_ref: UrlSecretRef = Field(
        description="The Secret key holding the webhook's URL (http or https). URLs such as Slack's or Teams' "
        "carry a token, so the URL is never in the spec, the status, an Event or a log. The operator must be "
        "granted get on that Secret (docs/observability.md#notifications)."
    )
    format: Literal["Generic", "Slack"] = Field(
        "Generic",
        description="Generic: the JSON document of docs/observability.md#payload. Slack: a Slack incoming "
        "webhook message (text and blocks; Mattermost accepts it too).",
    )


class SmtpCredentialsRef(Model):
    name: Name = Field(
        description="The Secret, in the object's namespace (the operator must be granted get on it)."
    )
    username_key: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        "username", description="The key of the Secret whose value is the SMTP user name."
    )
    password_key: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        "password", description="The key of the Secret whose value is the SMTP password."
    )


class SmtpSpec(Model):
    host: Annotated[str, Field(min_length=1, max_length=253)] = Field(
        description="The SMTP server's host name."
    )
    port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None, description="Its port; default 587, or 465 with security TLS."
    )
    security: Literal["StartTLS", "TLS", "None"] = Field(
        "StartTLS",
        description="StartTLS: upgrade a plain connection (port 587); TLS: implicit TLS (port 465); None: no "
        "encryption, and then no credentials are ever sent. The server's certificate is always verified "
        "(the system's CAs, plus the operator's --smtp-ca-file).",
    )
    sender: EmailAddress = Field(alias="from", description="The From address.")
    credentials_secret_ref: SmtpCredentialsRef | None = Field(
        None, description="The Secret holding the user name and password (AUTH); none: no AUTH."
    )


class EmailNotify(Model):
    to: Annotated[list[EmailAddress], Field(min_length=1, max_length=20)] = Field(
        description="Recipients (1 to 20)."
    )
    smtp: SmtpSpec | None = Field(
        None,
        description="The SMTP server to send through; default: the operator's (its --smtp-* flags, "
        "docs/observability.md#email-an-smtp-server-in-the-spec).",
    )


class NotifySpec(Model):
    webhook: WebhookNotify | None = Field(
        None, description="POST a JSON document (docs/observability.md#payload) to a URL read from a Secret."
    )
    email: EmailNotify | None = Field(
        None, description="Send an email, through spec.email.smtp or the operator's SMTP server."
    )
    events: Annotated[list[NotifyEvent], Field(min_length=1, max_length=2)] = Field(
        default_factory=lambda: list[NotifyEvent](["Completed", "Failed"]),
        description="Which ends are notified: Completed, Failed (default: both).",
    )


PolicyNotifyEvent = Literal["DriftDetected", "RemediationStarted", "RemediationSuppressed", "InSyncAgain"]


class PolicyNotifySpec(Model):
    webhook: WebhookNotify | None = Field(
        None, description="POST a JSON document (docs/policies.md#notifications) to a URL read from a Secret."
    )
    email: EmailNotify | None = Field(
        None, description="Send an email, through spec.notify.email.smtp or the operator's SMTP server."
    )
    events: Annotated[list[PolicyNotifyEvent], Field(min_length=1, max_length=4)] = Field(
        default_factory=lambda: list[PolicyNotifyEvent](
            ["DriftDetected", "RemediationStarted", "RemediationSuppressed"]
        ),
        description="Which decisions are notified, each once when it changes (as its Event): DriftDetected, "
        "RemediationStarted, RemediationSuppressed, InSyncAgain (default: the first three).",
    )


class ClusterResyncSpec(Model):
    target: TargetRef = Field(description="The workload whose replicas are resynced from its primary.")
    primary: PrimarySpec = Field(description="Which pod of the target is the primary. It is never modified.")
    volumes: Annotated[list[ShortName], Field(min_length=1, max_length=MAX_VOLUMES)] = Field(
        description="Pod volume names holding the data (for a StatefulSet: volumeClaimTemplate names). At least "
        "one, at most 16, each listed once, of at most 63 characters."
    )
    replicas: Annotated[list[Name], Field(max_length=MAX_REPLICAS)] | None = Field(
        None,
        description="Pods to resync; default: every pod of the target but the primary. At most 1000, each listed "
        "once; never the primary (primary.podName).",
    )
    method: Literal["Snapshot", "Clone"] = Field(
        "Snapshot",
        description="Snapshot: copy the primary's volumes through CSI VolumeSnapshots. "
        "Clone: CSI volume cloning of the primary's claims.",
    )
    volume_snapshot_class_name: Name | None = Field(
        None,
        description="VolumeSnapshotClass to use; default: the class whose driver is the claims' provisioner "
        "(the default-annotated one first).",
    )
    max_parallel: Annotated[int, Field(ge=1, le=100)] = Field(
        1,
        description="How many replicas may be out of service at once: from the deletion of a replica's "
        "claims (the swap) until it is verified on the copy, or rolled back. Copying does not count: see "
        "maxParallelCopies.",
    )
    max_parallel_copies: Annotated[int, Field(ge=1, le=100)] = Field(
        2,
        description="How many replicas may have a copy being made or waiting for its swap at once (method "
        "Snapshot). Copies are made ahead of the swaps, while the replicas still serve; each holds a full "
        "copy of the primary's volumes until its replica is swapped, so this bounds the extra storage "
        "(maxParallelCopies x the primary's volume sizes) and the copy bandwidth the resync takes. "
        "With method Clone every replica's copy is made at once, between the hooks.",
    )
    dry_run: bool = Field(
        False, description="Plan only: the status lists what would be done; nothing is created or deleted."
    )
    suspend: bool = Field(
        False,
        description="Wait for approval: a suspended ClusterResync stays Pending (reason Suspended) and touches "
        "nothing until this is set to false. The one field that can change after creation, and only from true "
        'to false (kubectl patch crsync NAME --type merge -p \'{"spec":{"suspend":false}}\').',
    )
    force: bool = Field(
        False,
        description="Go ahead even when the probe reports a replica Diverged (it holds writes the primary lacks, "
        "or follows another history) or cannot tell (Unknown): those writes are then lost with its old data, "
        "which is kept as the oldVolumes field says. Without a probe it has no effect.",
    )
    probe: ProbeSpec | None = Field(
        None,
        description="Read each pod's replication state: before anything is touched, a replica reported "
        "Diverged refuses the resync (ReplicaHasUnsyncedData) unless force is set; after its swap, a replica must "
        "report InSync (or Lagging within maxLagBytes/maxLagSeconds) to be verified, else it is rolled back.",
    )
    primary_stable_seconds: Annotated[int, Field(ge=0)] = Field(
        60,
        description="The primary must have been Ready, without a container restart, for this long. When "
        "timeouts.preflightSeconds is above 0, it must be below it (else a primary that just became Ready could "
        "never become stable within the wait).",
    )
    old_volumes: Literal["Retain", "Delete"] = Field(
        "Retain",
        description="What becomes of each replica's previous volume once the replica is verified on its new one. "
        "Retain: the old PersistentVolume stays Released, labelled with this resync and replica. Delete: it is deleted.",
    )
    hooks: Hooks | None = Field(None, description="Commands run around the snapshot and before each swap.")
    timeouts: Timeouts = Field(default_factory=Timeouts, description="Time limits of the phases.")
    notify: NotifySpec | None = Field(
        None,
        description="Tell someone when the resync ends: a webhook and/or an email, delivered at least once "
        "(status.notifications records each delivery). A notification never delays or fails the resync.",
    )
    ttl_seconds_after_finished: Annotated[int, Field(ge=0)] | None = Field(
        None,
        description="Like a Job's: once Completed or Failed and cleaned up, the ClusterResync is deleted this many "
        "seconds after status.completedAt (0: at once). Default: never. The volumes it retained stay, labelled.",
    )


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
    """A condition in the shape of metav1.Condition."""

    type: Annotated[str, Field(max_length=316, pattern=CONDITION_TYPE_PATTERN)] = Field(
        description="Type of the condition: Progressing, Complete or Failed."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="Whether the condition holds.")
    reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON, pattern=CONDITION_REASON_PATTERN)] = (
        Field(description="A CamelCase word saying why (at most 1024 characters).")
    )
    message: Annotated[str, Field(max_length=MAX_MESSAGE)] = Field(
        "", description="Human-readable details (at most 32768 characters; a longer one is cut, marked)."
    )
    observed_generation: Annotated[int, Field(ge=0, json_schema_extra={"format": "int64"})] | None = Field(
        None, description="The generation the condition was set for."
    )
    last_transition_time: Annotated[str, Field(json_schema_extra={"format": "date-time"})] = Field(
        description="When the status last changed."
    )


class PrimaryStatus(Model):
    pod_name: Name = Field(description="The primary pod.")
    uid: Uid = Field(description="Its uid when the resync began: a recreated primary has another.")
    node_name: Name = Field("", description="The node it runs on.")
    restart_count: int = Field(0, description="Its containers' restarts when the resync began.")
    target_uid: Uid = Field("", description="Uid of the target when the resync began.")
    claims: Annotated[dict[str, Name], Field(max_length=MAX_VOLUMES)] = Field(
        default_factory=dict, description="Volume name to the primary's claim name."
    )
    volumes: Annotated[dict[str, Name], Field(max_length=MAX_VOLUMES)] = Field(
        default_factory=dict,
        description="Volume name to the PersistentVolume bound to the primary's claim. The operator never "
        "writes to these, nor to the primary's pod and claims.",
    )


class SnapshotStatus(Model):
    volume: ShortName = Field(description="The volume it copies.")
    name: Name = Field(description="The VolumeSnapshot (Snapshot method) or source claim (Clone method).")
    ready_to_use: bool = Field(False, description="Whether it can be restored from.")
    restore_size: Annotated[str, Field(max_length=64)] | None = Field(
        None, description="Minimum size of a volume restored from it."
    )


class VolumeStatus(Model):
    volume: ShortName = Field(description="The pod volume name.")
    claim: Name = Field(description="The replica's claim.")
    old_claim_uid: Uid | None = Field(None, description="Uid of the claim the replica had before the swap.")
    old_pv: Name | None = Field(None, description="The PersistentVolume the replica had before the swap.")
    old_pv_reclaim_policy: Annotated[str, Field(max_length=16)] | None = Field(
        None, description="Its reclaim policy before the resync changed it."
    )
    staging_claim: Name | None = Field(
        None, description="The temporary claim the new volume was restored into."
    )
    new_pv: Name | None = Field(None, description="The PersistentVolume holding the copy.")
    new_pv_reclaim_policy: Annotated[str, Field(max_length=16)] | None = Field(
        None, description="Its reclaim policy before the resync changed it."
    )


class ReplicaStatus(Model):
    name: Name = Field(description="The replica pod.")
    phase: ReplicaPhase = Field("Pending", description="Where this replica's resync stands.")
    node_name: Name | None = Field(None, description="The node the replica ran on when it was staged.")
    old_pod_uid: Uid | None = Field(None, description="Uid of the replica pod before the swap.")
    volumes: Annotated[list[VolumeStatus], Field(max_length=MAX_VOLUMES)] = Field(
        default_factory=list, description="Per volume: old and new volumes. At most 16."
    )
    started_at: Timestamp | None = Field(None, description="When work on this replica began.")
    swap_started_at: Timestamp | None = Field(None, description="When the replica went out of service.")
    completed_at: Timestamp | None = Field(None, description="When the replica was verified (or failed).")
    reason: Annotated[str, Field(max_length=MAX_REASON)] | None = Field(
        None, description="Why a Failed or Skipped replica is: a reason of docs/troubleshooting.md."
    )
    message: Annotated[str, Field(max_length=MAX_MESSAGE)] = Field(
        "",
        description="What is happening, or what went wrong (at most 32768 characters; a longer one is cut, marked).",
    )


class ProbeResult(Model):
    pod: Name = Field(description="The pod probed.")
    stage: Literal["Before", "After"] = Field(
        description="Before: at preflight, before anything was touched. After: once the replica was swapped."
    )
    verdict: Verdict = Field(description="InSync, Lagging, Diverged or Unknown (against the primary).")
    role: Literal["primary", "replica", "unknown"] = Field("unknown", description="The role the pod reports.")
    position: Annotated[str, Field(max_length=1024)] | None = Field(
        None,
        description="Its replication position, as the engine writes it (an LSN, a GTID set, an offset, ...).",
    )
    lag_bytes: Annotated[int, Field(json_schema_extra={"format": "int64"})] | None = Field(
        None, description="How far behind the primary, in bytes, when the engine can tell."
    )
    lag_seconds: int | None = Field(
        None, description="How far behind the primary, in seconds, when the engine can tell."
    )
    reason: Annotated[str, Field(max_length=MAX_REASON)] = Field(
        "", description="What was found, in a sentence."
    )
    observed_at: Timestamp = Field(description="When.")


class PlannedAction(Model):
    replica: Name = Field("", description="The replica the action concerns, if any.")
    action: Annotated[str, Field(max_length=MAX_MESSAGE)] = Field(
        description="What would be done (at most 32768 characters; a longer one is cut, marked)."
    )


class Delivery(Model):
    """Where the delivery of one notification stands: tried, sent, or given up (notify.py)."""

    attempts: Annotated[int, Field(ge=0)] = Field(0, description="Delivery attempts made.")
    sent_at: Timestamp | None = Field(None, description="When it was delivered (it is not sent again).")
    last_attempt_at: Timestamp | None = Field(None, description="When it was last tried.")
    next_attempt_at: Timestamp | None = Field(None, description="When it is tried again, after a failure.")
    last_error: Annotated[str, Field(max_length=MAX_REASON)] | None = Field(
        None, description="Why the last attempt failed (never the URL or a credential)."
    )
    gave_up: bool = Field(
        False, description="The attempts ran out: a Warning Event NotificationFailed was posted."
    )


class NotificationStatus(Delivery):
    channel: Literal["Webhook", "Email"] = Field(description="How it is delivered.")
    event: NotifyEvent = Field(description="The end it tells of.")


class ClusterResyncStatus(Model):
    phase: Phase = Field(
        "Pending", description="Pending, Preflight, Snapshotting, Resyncing, Completed or Failed."
    )
    conditions: Annotated[list[Condition], Field(max_length=8)] = Field(
        default_factory=list,
        description="Progressing, Complete and Failed, as a Job has: metav1.Conditions, one per type. At most 8.",
    )
    observed_generation: Annotated[int, Field(ge=0, json_schema_extra={"format": "int64"})] | None = Field(
        None, description="The generation this status describes."
    )
    primary: PrimaryStatus | None = Field(None, description="The primary, as identified at preflight.")
    snapshots: Annotated[list[SnapshotStatus], Field(max_length=MAX_VOLUMES)] = Field(
        default_factory=list,
        description="The snapshots (or clone sources) taken: one per volume, at most 16.",
    )
    progress: Annotated[str, Field(max_length=32)] = Field(
        "", description="Replicas done over replicas to do, e.g. 1/2 (completed/total)."
    )
    completed: Annotated[int, Field(ge=0)] | None = Field(None, description="Replicas completed (verified).")
    total: Annotated[int, Field(ge=0)] | None = Field(None, description="Replicas to do.")
    started_at: Timestamp | None = Field(None, description="When the resync began.")
    completed_at: Timestamp | None = Field(None, description="When it completed or failed.")
    replicas: Annotated[list[ReplicaStatus], Field(max_length=MAX_REPLICAS)] = Field(
        default_factory=list, description="Per replica progress, one per name. At most 1000."
    )
    hooks_done: Annotated[list[Annotated[str, Field(max_length=32)]], Field(max_length=8)] = Field(
        default_factory=list, description="Hooks that have run: preSnapshot, postSnapshot."
    )
    plan: Annotated[list[PlannedAction], Field(max_length=20000)] = Field(
        default_factory=list,
        description="With dryRun: what would be done. At most 20000 steps (1000 replicas x (16 volumes + 2) + 18).",
    )
    waiting_for: Name | None = Field(
        None, description="Another ClusterResync of the same target this one waits for."
    )
    probes: Annotated[list[ProbeResult], Field(max_length=2 * MAX_REPLICAS + 1)] = Field(
        default_factory=list,
        description="With spec.probe: each pod's result before anything was touched (stage Before), and each "
        "replica's once swapped (stage After); one per pod and stage.",
    )
    notifications: Annotated[list[NotificationStatus], Field(max_length=4)] = Field(
        default_factory=list,
        description="With spec.notify: each delivery (one per channel and event) and how it went.",
    )


class ClusterResync(Model):
    """A one-shot resync of a StatefulSet's replicas from a copy of its primary's volumes."""

    api_version: Literal["clusterresync.io/v1alpha1"] = "clusterresync.io/v1alpha1"
    kind: Literal["ClusterResync"] = "ClusterResync"
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: ClusterResyncSpec
    status: ClusterResyncStatus = Field(default_factory=ClusterResyncStatus)


# -- ResyncPolicy ----------------------------------------------------------------------------
POLICY_KIND = "ResyncPolicy"
POLICY_PLURAL = "resyncpolicies"
POLICY_SINGULAR = "resyncpolicy"
POLICY_SHORT_NAMES = ("rspolicy",)
LABEL_POLICY = f"{GROUP}/policy"  # on a ClusterResync a policy created: the policy's name
LABEL_POLICY_UID = f"{GROUP}/policy-uid"  # ... and its uid (identity)
MAX_REMEDIATIONS_KEPT = 100  # creation times kept in status.remediations (maxPerDay is at most this)


class Triggers(Model):
    periodic: bool = Field(True, description="Probe every intervalSeconds.")
    on_pod_recovery: bool = Field(
        True,
        description="Probe a replica that becomes Ready again after a restart or a recreation, once it has been "
        "Ready for recoveryGraceSeconds (time for normal replication to catch up).",
    )
    recovery_grace_seconds: Annotated[int, Field(ge=0, le=86400)] = Field(
        60, description="How long a recovered replica is given to catch up before it is probed."
    )


class ResyncTemplate(Model):
    """The fields a ClusterResync created by the policy gets (the rest come from the policy)."""

    method: Literal["Snapshot", "Clone"] = Field("Snapshot", description="As ClusterResync's spec.method.")
    volume_snapshot_class_name: Name | None = Field(None, description="As ClusterResync's.")
    max_parallel: Annotated[int, Field(ge=1, le=100)] = Field(1, description="As ClusterResync's.")
    max_parallel_copies: Annotated[int, Field(ge=1, le=100)] = Field(2, description="As ClusterResync's.")
    primary_stable_seconds: Annotated[int, Field(ge=0)] = Field(
        60,
        description="As ClusterResync's; the policy also never remediates while the primary has not been Ready, "
        "without a restart, for this long.",
    )
    old_volumes: Literal["Retain", "Delete"] = Field("Retain", description="As ClusterResync's.")
    force: bool = Field(
        False,
        description="Let the policy resync a replica its probe reports Diverged: that replica's own writes are then "
        "discarded (its old volume is kept as oldVolumes says). Without it, a Diverged replica is reported and "
        "the remediation suppressed (DivergedNeedsForce), for a person to decide.",
    )
    hooks: Hooks | None = Field(None, description="As ClusterResync's.")
    timeouts: Timeouts = Field(default_factory=Timeouts, description="As ClusterResync's.")
    ttl_seconds_after_finished: Annotated[int, Field(ge=0)] | None = Field(
        None, description="As ClusterResync's (the history limits apply too)."
    )
    notify: NotifySpec | None = Field(
        None,
        description="As ClusterResync's: each remediation tells the webhook and/or the email recipients when it "
        "ends (the webhook's Secret is read in the policy's namespace).",
    )


class ResyncPolicySpec(Model):
    target: TargetRef = Field(description="The workload whose replicas are watched.")
    primary: PrimarySpec = Field(description="Which pod of the target is the primary.")
    volumes: Annotated[list[ShortName], Field(min_length=1, max_length=MAX_VOLUMES)] = Field(
        description="Pod volume names a remediation resyncs (volumeClaimTemplate names). 1 to 16, each once."
    )
    probe: ProbeSpec = Field(description="How each pod's replication state is read (docs/probes.md).")
    interval_seconds: Annotated[int, Field(ge=10, le=86400)] = Field(
        300, description="How often every pod is probed (triggers.periodic)."
    )
    triggers: Triggers = Field(default_factory=Triggers, description="When pods are probed.")
    mode: Literal["Off", "Manual", "Auto"] = Field(
        "Off",
        description="Off: report only. Manual: create a ClusterResync for the drifted replicas with suspend: true, "
        "for a person to approve (kubectl patch ... suspend false). Auto: create it ready to run.",
    )
    cooldown_seconds: Annotated[int, Field(ge=0)] = Field(
        3600, description="No remediation within this long after the previous one was created."
    )
    max_per_day: Annotated[int, Field(ge=0, le=MAX_REMEDIATIONS_KEPT)] = Field(
        3, description="At most this many remediations in any 24 hours (0: none)."
    )
    suspend: bool = Field(
        False, description="Stop probing and remediating (the status keeps its last results)."
    )
    resync_template: ResyncTemplate = Field(
        default_factory=ResyncTemplate, description="What the ClusterResyncs the policy creates get."
    )
    successful_history_limit: Annotated[int, Field(ge=0, le=100)] = Field(
        3, description="Completed ClusterResyncs of this policy kept (the oldest are deleted)."
    )
    failed_history_limit: Annotated[int, Field(ge=0, le=100)] = Field(
        1, description="Failed ClusterResyncs of this policy kept (the oldest are deleted)."
    )
    notify: PolicyNotifySpec | None = Field(
        None,
        description="Tell a webhook and/or email recipients of the policy's decisions (docs/policies.md#notifications), "
        "once per change, recorded in status.notifications. A notification never delays a probe or a remediation. "
        "(resyncTemplate.notify is for the ends of the remediations themselves.)",
    )


class PodProbe(Model):
    pod: Name = Field(description="The pod.")
    verdict: Verdict = Field(description="InSync, Lagging, Diverged or Unknown (against the primary).")
    role: Literal["primary", "replica", "unknown"] = Field("unknown", description="The role it reports.")
    position: Annotated[str, Field(max_length=1024)] | None = Field(
        None, description="Its replication position."
    )
    lag_bytes: Annotated[int, Field(json_schema_extra={"format": "int64"})] | None = Field(
        None, description="Bytes behind the primary, when the engine can tell."
    )
    lag_seconds: int | None = Field(None, description="Seconds behind the primary, when the engine can tell.")
    drifted: bool = Field(False, description="Whether this replica needs a resync (see docs/policies.md).")
    reason: Annotated[str, Field(max_length=MAX_REASON)] = Field("", description="What was found.")
    observed_at: Timestamp = Field(description="When it was probed.")


class PodSeen(Model):
    """A replica as last seen, to tell a recovery (a restart or a recreation) from a steady pod."""

    pod: Name = Field(description="The pod.")
    uid: Uid = Field(description="Its uid.")
    restart_count: int = Field(0, description="Its containers' restarts.")
    probe_after: Timestamp | None = Field(
        None, description="A recovery was seen: probe it once Ready until this time (recoveryGraceSeconds)."
    )


class Remediation(Model):
    name: Name = Field(description="The ClusterResync created.")
    replicas: Annotated[list[Name], Field(max_length=MAX_REPLICAS)] = Field(
        default_factory=list, description="The replicas it resyncs."
    )
    created_at: Timestamp = Field(description="When.")
    reason: Annotated[str, Field(max_length=MAX_MESSAGE)] = Field("", description="Why.")
    confirmed: bool = Field(
        False,
        description="Whether the policy has seen the ClusterResync exist (else it creates it again, once).",
    )


MAX_POLICY_NOTIFICATIONS = 20  # status.notifications of a ResyncPolicy (the oldest delivered go first)


class PolicyNotificationStatus(Delivery):
    id: Annotated[str, Field(max_length=256)] = Field(description="The decision's id (the payload's id).")
    channel: Literal["Webhook", "Email"] = Field(description="How it is delivered.")
    event: PolicyNotifyEvent = Field(description="The decision it tells of.")
    reason: Annotated[str, Field(max_length=128)] = Field("", description="The decision's reason.")
    message: Annotated[str, Field(max_length=MAX_REASON)] = Field(
        "", description="What was decided, and why."
    )
    replicas: Annotated[list[Name], Field(max_length=MAX_REPLICAS)] = Field(
        default_factory=list, description="The replicas concerned."
    )
    resync: Name | None = Field(None, description="The ClusterResync created (RemediationStarted).")
    created_at: Timestamp = Field(description="When the decision was made.")


class ResyncPolicyStatus(Model):
    conditions: Annotated[list[Condition], Field(max_length=8)] = Field(
        default_factory=list,
        description="InSync, Drifted and RemediationSuppressed: metav1.Conditions, one per type.",
    )
    observed_generation: Annotated[int, Field(ge=0, json_schema_extra={"format": "int64"})] | None = Field(
        None, description="The generation this status describes."
    )
    in_sync: Annotated[str, Field(max_length=32)] = Field(
        "", description="Replicas in sync over replicas probed, e.g. 2/3."
    )
    last_probe_time: Timestamp | None = Field(None, description="When every pod was last probed.")
    pods: Annotated[list[PodProbe], Field(max_length=MAX_REPLICAS + 1)] = Field(
        default_factory=list, description="Each pod's last probe result, one per pod."
    )
    seen: Annotated[list[PodSeen], Field(max_length=MAX_REPLICAS + 1)] = Field(
        default_factory=list, description="The replicas as last seen (recovery detection)."
    )
    last_remediation: Remediation | None = Field(
        None, description="The last ClusterResync the policy created."
    )
    remediations: Annotated[list[Timestamp], Field(max_length=MAX_REMEDIATIONS_KEPT)] = Field(
        default_factory=list, description="When remediations were created in the last 24 hours (maxPerDay)."
    )
    last_decision: Annotated[str, Field(max_length=MAX_MESSAGE)] = Field(
        "", description="Why a remediation was, or was not, started the last time one was needed."
    )
    notifications: Annotated[list[PolicyNotificationStatus], Field(max_length=MAX_POLICY_NOTIFICATIONS)] = (
        Field(
            default_factory=list,
            description="With spec.notify: the last decisions notified (one per decision and channel, at most 20) "
            "and how each delivery went.",
        )
    )


class ResyncPolicy(Model):
    """Measures drift continuously and remediates with ClusterResyncs: the CronJob to ClusterResync's Job."""

    api_version: Literal["clusterresync.io/v1alpha1"] = "clusterresync.io/v1alpha1"
    kind: Literal["ResyncPolicy"] = "ResyncPolicy"
    metadata: dict[str, object] = Field(default_factory=dict)
    spec: ResyncPolicySpec
    status: ResyncPolicyStatus = Field(default_factory=ResyncPolicyStatus)
