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
    WAITING_FOR_OTHER_RESYNC = "WaitingForOtherResync"
    WAITING_FOR_PRIMARY = "WaitingForPrimary"
    PREFLIGHT_PASSED = "PreflightPassed"
    SNAPSHOTTING = "Snapshotting"
    RESYNCING = "Resyncing"
    CLEANING_UP = "CleaningUp"
    # Complete
    RESYNC_SUCCEEDED = "ResyncSucceeded"
    DRY_RUN_COMPLETE = "DryRunComplete"
    # Failed: preflight refusals (nothing was touched)
    TARGET_NOT_FOUND = "TargetNotFound"
    PRIMARY_NOT_FOUND = "PrimaryNotFound"
    NO_PRIMARY = "NoPrimary"
    MULTIPLE_PRIMARIES = "MultiplePrimaries"
    NO_REPLICAS = "NoReplicas"
    REPLICA_NOT_IN_TARGET = "ReplicaNotInTarget"
    VOLUME_NOT_FOUND = "VolumeNotFound"
    CLAIM_NOT_BOUND = "ClaimNotBound"
    PRIMARY_NOT_READY = "PrimaryNotReady"
    PRIMARY_NOT_STABLE = "PrimaryNotStable"
    NO_SNAPSHOT_CLASS = "NoSnapshotClass"
    CLONE_NOT_SUPPORTED = "CloneNotSupported"
    # Failed: during the run
    HOOK_FAILED = "HookFailed"
    SNAPSHOT_FAILED = "SnapshotFailed"
    RESTORE_FAILED = "RestoreFailed"
    PRIMARY_CHANGED = "PrimaryChanged"
    REPLICA_ROLLED_BACK = "ReplicaRolledBack"
    ROLLBACK_FAILED = "RollbackFailed"
    FORBIDDEN = "Forbidden"
    DELETED = "Deleted"


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"
