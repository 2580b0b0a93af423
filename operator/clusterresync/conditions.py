"""Condition types and reasons, in one place (CloudNativePG keeps them together too).

A ClusterResync carries Job-style conditions: ``Progressing`` while it works, then exactly one of
``Complete`` or ``Failed`` set to True. Every refusal and failure has a named reason below, a
message for the person reading it, and an Event with the same reason.
"""

from __future__ import annotations

from enum import StrEnum


class ConditionType(StrEnum):
    PROGRESSING = "Progressing"
    COMPLETE = "Complete"
    FAILED = "Failed"


class Reason(StrEnum):
    # Progressing
    ACCEPTED = "Accepted"
    SUSPENDED = "Suspended"  # spec.suspend: waiting for approval
    WAITING_FOR_OTHER_RESYNC = "WaitingForOtherResync"
    WAITING_FOR_PRIMARY = "WaitingForPrimary"
    PREFLIGHT_PASSED = "PreflightPassed"
    SNAPSHOTTING = "Snapshotting"
    RESYNCING = "Resyncing"
    CLEANING_UP = "CleaningUp"
    RETRYING = "Retrying"  # a transient API error: retried with backoff, the resync keeps its place
    STATUS_REBUILT = "StatusRebuilt"  # the status was lost and rebuilt from the labelled objects
    # Complete
    RESYNC_SUCCEEDED = "ResyncSucceeded"
    DRY_RUN_COMPLETE = "DryRunComplete"
    NEW_PODS_NOT_RESYNCED = "NewPodsNotResynced"  # done, but the target was scaled up meanwhile
    # Failed: preflight refusals (nothing was touched)
    TARGET_NOT_FOUND = "TargetNotFound"
    PRIMARY_NOT_FOUND = "PrimaryNotFound"
    NO_PRIMARY = "NoPrimary"
    MULTIPLE_PRIMARIES = "MultiplePrimaries"
    NO_REPLICAS = "NoReplicas"
    REPLICA_NOT_IN_TARGET = "ReplicaNotInTarget"
    VOLUME_NOT_FOUND = "VolumeNotFound"
    CLAIM_NOT_BOUND = "ClaimNotBound"
    VOLUME_NOT_PER_REPLICA = "VolumeNotPerReplica"
    PRIMARY_NOT_READY = "PrimaryNotReady"
    PRIMARY_NOT_STABLE = "PrimaryNotStable"
    NO_SNAPSHOT_CLASS = "NoSnapshotClass"
    CLONE_NOT_SUPPORTED = "CloneNotSupported"
    REPLICA_HAS_UNSYNCED_DATA = "ReplicaHasUnsyncedData"  # the probe: a replica Diverged, no force
    PRIMARY_ROLE_MISMATCH = "PrimaryRoleMismatch"  # the probe: the primary says it is a replica
    REPLICA_STATE_UNKNOWN = "ReplicaStateUnknown"  # the probe could not tell, no force
    PROBE_INVALID = "ProbeInvalid"  # spec.probe's options cannot make a probe command
    # Failed: during the run
    HOOK_FAILED = "HookFailed"
    SNAPSHOT_FAILED = "SnapshotFailed"
    RESTORE_FAILED = "RestoreFailed"
    PRIMARY_CHANGED = "PrimaryChanged"
    REPLICA_ROLLED_BACK = "ReplicaRolledBack"
    ROLLBACK_FAILED = "RollbackFailed"
    PRIMARY_PROTECTED = "PrimaryProtected"  # the adapter refused a write to the primary
    NAME_CONFLICT = "NameConflict"  # an object the resync would adopt belongs to something else
    TARGET_SCALED_DOWN = "TargetScaledDown"
    TARGET_DELETED = "TargetDeleted"
    NAMESPACE_TERMINATING = "NamespaceTerminating"
    FORBIDDEN = "Forbidden"  # RBAC only
    QUOTA_EXCEEDED = "QuotaExceeded"
    ADMISSION_DENIED = "AdmissionDenied"
    MISSING_API = "MissingAPI"
    API_ERROR = "APIError"  # any other refusal of the API server, with its message
    DELETED = "Deleted"


class EventReason(StrEnum):
    """Reasons of Events that are not condition reasons (those are posted under their Reason)."""

    HOOK_SUCCEEDED = "HookSucceeded"
    SNAPSHOTS_READY = "SnapshotsReady"
    REPLICA_STARTED = "ReplicaStarted"
    SWAP_STARTED = "SwapStarted"
    REPLICA_RESYNCED = "ReplicaResynced"
    ROLLING_BACK = "RollingBack"
    REPLICA_FAILED = "ReplicaFailed"
    PROBED = "Probed"  # the probe's verdicts before the resync
    FORCED = "ForcedDespiteDivergence"  # force: true went ahead over a Diverged replica
    NOTIFICATION_SENT = "NotificationSent"  # spec.notify: a webhook or email delivered
    NOTIFICATION_FAILED = "NotificationFailed"  # spec.notify: the attempts ran out (Warning)


class PolicyCondition(StrEnum):
    """A ResyncPolicy's condition types."""

    IN_SYNC = "InSync"
    DRIFTED = "Drifted"
    REMEDIATION_SUPPRESSED = "RemediationSuppressed"


class PolicyReason(StrEnum):
    """The reasons of a ResyncPolicy's conditions (docs/policies.md explains each)."""

    IN_SYNC = "InSync"
    DRIFTED = "Drifted"
    NO_DRIFT = "NoDrift"
    PROBE_UNKNOWN = "ProbeUnknown"
    PROBE_INVALID = "ProbeInvalid"
    TARGET_NOT_FOUND = "TargetNotFound"
    PRIMARY_NOT_FOUND = "PrimaryNotFound"
    NO_PRIMARY = "NoPrimary"
    MULTIPLE_PRIMARIES = "MultiplePrimaries"
    PRIMARY_ROLE_MISMATCH = "PrimaryRoleMismatch"
    # RemediationSuppressed True: the storm guards, in the order they are checked
    SUSPENDED = "Suspended"
    MODE_OFF = "ModeOff"
    RESYNC_IN_PROGRESS = "ResyncInProgress"
    PRIMARY_UNHEALTHY = "PrimaryUnhealthy"
    COOLING_DOWN = "CoolingDown"
    DAILY_LIMIT_REACHED = "DailyLimitReached"
    DIVERGED_NEEDS_FORCE = "DivergedNeedsForce"
    # RemediationSuppressed False
    NOT_NEEDED = "NotNeeded"
    REMEDIATING = "Remediating"
    AWAITING_APPROVAL = "AwaitingApproval"


class PolicyEventReason(StrEnum):
    DRIFT_DETECTED = "DriftDetected"
    REMEDIATION_STARTED = "RemediationStarted"
    REMEDIATION_SUPPRESSED = "RemediationSuppressed"
    REMEDIATION_FAILED = "RemediationFailed"


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"
