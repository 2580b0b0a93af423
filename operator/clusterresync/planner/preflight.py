"""Preflight: refuse early, touch nothing. The target, the primary, the replicas, the volumes, the
classes; the dry-run plan.
"""

from __future__ import annotations

from ..conditions import EventType, Reason
from ..models import PlannedAction, PrimaryStatus, ReplicaStatus, VolumeStatus
from ..state import Obj
from .naming import snapshot_name, staging_claim_name
from .objects import (
    claim_of,
    cond,
    deleting,
    labels_match,
    last_restart,
    meta,
    ordinal,
    parse_ts,
    pod_ready,
    restart_count,
    uid,
)
from .probing import guard as probe_guard
from .status import Builder


def _target_pods(b: Builder) -> dict[str, Obj]:
    return {n: p for n, p in b.obs.pods.items() if not deleting(p)}


def find_primary(b: Builder) -> tuple[Obj | None, Reason | None, str]:
    spec = b.obs.resync.spec
    pods = b.obs.pods
    if spec.primary.pod_name:
        pod = pods.get(spec.primary.pod_name)
        if pod is None:
            return (
                None,
                Reason.PRIMARY_NOT_FOUND,
                f"primary pod {spec.primary.pod_name} is not a pod of {spec.target.kind} {spec.target.name}",
            )
        return pod, None, ""
    assert spec.primary.selector is not None
    matches = sorted(
        n for n, p in pods.items() if labels_match(spec.primary.selector, meta(p).get("labels") or {})
    )
    if not matches:
        return (
            None,
            Reason.NO_PRIMARY,
            f"no pod of {spec.target.kind} {spec.target.name} matches the primary selector",
        )
    if len(matches) > 1:
        return (
            None,
            Reason.MULTIPLE_PRIMARIES,
            f"{len(matches)} pods match the primary selector ({', '.join(matches)}); it must match exactly one",
        )
    return pods[matches[0]], None, ""


def preflight(b: Builder) -> None:
    obs, spec = b.obs, b.obs.resync.spec
    if obs.target is None:
        b.fail(
            Reason.TARGET_NOT_FOUND, f"{spec.target.kind} {obs.resync.namespace}/{spec.target.name} not found"
        )
        return
    primary, reason, msg = find_primary(b)
    if primary is None:
        assert reason is not None
        b.fail(reason, msg)
        return
    pname = meta(primary)["name"]
    pods = _target_pods(b)
    if spec.replicas is not None:
        missing = [n for n in spec.replicas if n not in obs.pods]
        if missing:
            b.fail(
                Reason.REPLICA_NOT_IN_TARGET,
                f"replica {', '.join(missing)} is not a pod of {spec.target.kind} {spec.target.name}",
            )
            return
        if pname in spec.replicas:
            b.fail(Reason.REPLICA_NOT_IN_TARGET, f"{pname} is the primary; it cannot also be a replica")
            return
        replicas = list(spec.replicas)
    else:
        replicas = sorted((n for n in pods if n != pname), key=ordinal)
    if not replicas:
        b.fail(
            Reason.NO_REPLICAS,
            f"{spec.target.kind} {spec.target.name} has no pod besides the primary {pname}",
        )
        return
    # Every named volume is one of the target's volumeClaimTemplates: each pod has a claim of its
    # own. A volume every pod shares (a plain persistentVolumeClaim volume in the pod template) is
    # the primary's too: swapping it would delete the primary's data.
    templates = {
        str(meta(t).get("name")) for t in ((obs.target.get("spec") or {}).get("volumeClaimTemplates") or [])
    }
    for v in spec.volumes:
        if v not in templates and claim_of(primary, v) is not None:
            users = sorted(
                {
                    u
                    for p in [pname, *replicas]
                    for u in obs.claim_users.get(claim_of(obs.pods[p], v) or "", [])
                }
            )
            b.fail(
                Reason.VOLUME_NOT_PER_REPLICA,
                f"volume {v} is not a volumeClaimTemplate of {spec.target.kind} {spec.target.name} "
                f"(templates: {', '.join(sorted(templates)) or 'none'})"
                + (f"; its claim is used by pods {', '.join(users)}" if users else "")
                + ": only a volume each pod has its own claim for can be resynced; nothing was touched",
            )
            return
    # Every named volume is a claim on the primary and on every replica, and those claims are Bound.
    claims: dict[str, dict[str, str]] = {}
    for pod_name in [pname, *replicas]:
        pod = obs.pods[pod_name]
        claims[pod_name] = {}
        for v in spec.volumes:
            cn = claim_of(pod, v)
            if cn is None:
                b.fail(
                    Reason.VOLUME_NOT_FOUND,
                    f"pod {pod_name} has no volume {v} backed by a PersistentVolumeClaim",
                )
                return
            c = obs.claims.get(cn)
            if c is None or (c.get("status") or {}).get("phase") != "Bound" or deleting(c):
                b.fail(Reason.CLAIM_NOT_BOUND, f"claim {cn} of pod {pod_name} (volume {v}) is not Bound")
                return
            users = sorted(set(obs.claim_users.get(cn, [])) | {pod_name})
            if len(users) > 1:
                b.fail(
                    Reason.VOLUME_NOT_PER_REPLICA,
                    f"claim {cn} (volume {v} of pod {pod_name}) is used by pods {', '.join(users)}: "
                    "a claim shared by several pods cannot be swapped without taking it from the others; "
                    "nothing was touched",
                )
                return
            claims[pod_name][v] = cn
    # A copy mechanism exists for the claims' driver.
    for v in spec.volumes:
        c = obs.claims[claims[pname][v]]
        sc_name = (c.get("spec") or {}).get("storageClassName") or ""
        sc = obs.storage_classes.get(sc_name)
        driver = str(sc.get("provisioner", "")) if sc else ""
        if spec.method == "Snapshot":
            if not obs.snapshot_api:
                b.fail(
                    Reason.MISSING_API,
                    "the server does not serve snapshot.storage.k8s.io/v1 (no VolumeSnapshot CRDs): install the "
                    "CSI snapshot CRDs and snapshot controller, or use method: Clone; nothing was touched",
                )
                return
            if snapshot_class(b, driver) is None:
                where = f"driver {driver}" if driver else f"claim {claims[pname][v]} (no StorageClass)"
                named = (
                    f"VolumeSnapshotClass {spec.volume_snapshot_class_name} for "
                    if spec.volume_snapshot_class_name
                    else "VolumeSnapshotClass for "
                )
                b.fail(
                    Reason.NO_SNAPSHOT_CLASS,
                    f"no {named}{where}: the primary's volume {v} cannot be snapshotted",
                )
                return
        elif not driver or driver not in obs.csi_drivers:
            b.fail(
                Reason.CLONE_NOT_SUPPORTED,
                f"claim {claims[pname][v]} is not provisioned by a CSI driver (StorageClass {sc_name or '<none>'}): CSI volume cloning is not available",
            )
            return
    # The primary is Ready and has been stable for primaryStableSeconds.
    started = parse_ts(b.status.started_at) if b.status.started_at else obs.now
    waited = (obs.now - started).total_seconds()
    problem = _primary_unstable(b, primary)
    if problem is not None:
        reason, msg = problem
        if waited >= spec.timeouts.preflight_seconds:
            b.fail(reason, f"{msg}; gave up after {int(waited)}s (timeouts.preflightSeconds)")
            return
        b.progressing(Reason.WAITING_FOR_PRIMARY, msg)
        b.again(min(5.0, max(1.0, spec.timeouts.preflight_seconds - waited)))
        return
    # Before anything is touched: no replica may hold writes the primary lacks (spec.probe).
    if not probe_guard(b, pname, replicas):
        return
    b.set(
        primary=PrimaryStatus(
            pod_name=pname,
            uid=uid(primary),
            node_name=str((primary.get("spec") or {}).get("nodeName", "")),
            restart_count=restart_count(primary),
            target_uid=uid(obs.target),
            claims=claims[pname],
            volumes={
                v: str((obs.claims[cn].get("spec") or {}).get("volumeName") or "")
                for v, cn in claims[pname].items()
            },
        ),
        replicas=[
            ReplicaStatus(name=n, volumes=[VolumeStatus(volume=v, claim=claims[n][v]) for v in spec.volumes])
            for n in replicas
        ],
    )
    if spec.dry_run:
        b.set(plan=_dry_run_plan(b, pname, replicas, claims))
        b.complete(
            Reason.DRY_RUN_COMPLETE,
            f"dry run: would resync {len(replicas)} replica(s) ({', '.join(replicas)}) from {pname}; nothing was changed",
        )
        return
    b.set(phase="Snapshotting")
    b.progressing(Reason.PREFLIGHT_PASSED, f"primary {pname} is Ready and stable; copying its volumes")
    b.event(EventType.NORMAL, Reason.PREFLIGHT_PASSED, f"primary {pname}; replicas {', '.join(replicas)}")


def _primary_unstable(b: Builder, primary: Obj) -> tuple[Reason, str] | None:
    spec = b.obs.resync.spec
    name = meta(primary)["name"]
    if not pod_ready(primary):
        return Reason.PRIMARY_NOT_READY, f"primary {name} is not Ready"
    ready = cond(primary, "Ready") or {}
    since = parse_ts(ready["lastTransitionTime"]) if ready.get("lastTransitionTime") else b.obs.now
    restarted = last_restart(primary)
    if restarted is not None and restarted > since:
        since = restarted
    stable_for = (b.obs.now - since).total_seconds()
    if stable_for < spec.primary_stable_seconds:
        return Reason.PRIMARY_NOT_STABLE, (
            f"primary {name} has been Ready without a restart for {int(stable_for)}s; primaryStableSeconds asks for {spec.primary_stable_seconds}s"
        )
    return None


def snapshot_class(b: Builder, driver: str) -> Obj | None:
    spec = b.obs.resync.spec
    classes = b.obs.snapshot_classes
    if spec.volume_snapshot_class_name:
        for c in classes:
            if meta(c).get("name") == spec.volume_snapshot_class_name and c.get("driver") == driver:
                return c
        return None
    candidates = [c for c in classes if c.get("driver") == driver]
    defaults = [
        c
        for c in candidates
        if (meta(c).get("annotations") or {}).get("snapshot.storage.kubernetes.io/is-default-class") == "true"
    ]
    chosen = sorted(defaults or candidates, key=lambda c: str(meta(c).get("name")))
    return chosen[0] if chosen else None


def _dry_run_plan(
    b: Builder, primary: str, replicas: list[str], claims: dict[str, dict[str, str]]
) -> list[PlannedAction]:
    spec = b.obs.resync.spec
    out = []
    if spec.hooks and spec.hooks.pre_snapshot:
        out.append(
            PlannedAction(
                action=f"run preSnapshot hook in {primary}: {' '.join(spec.hooks.pre_snapshot.command)}"
            )
        )
    for v in spec.volumes:
        if spec.method == "Snapshot":
            out.append(
                PlannedAction(
                    action=f"snapshot claim {claims[primary][v]} of {primary} as VolumeSnapshot {snapshot_name(b.obs.resync.uid, v)}"
                )
            )
    if spec.hooks and spec.hooks.post_snapshot:
        out.append(PlannedAction(action=f"run postSnapshot hook in {primary}"))
    for r in replicas:
        for v in spec.volumes:
            how = "clone of" if spec.method == "Clone" else "restore of"
            out.append(
                PlannedAction(
                    replica=r,
                    action=f"stage a {how} {v} in claim {staging_claim_name(b.obs.resync.uid, r, v)}, then pre-bind its volume to {claims[r][v]}",
                )
            )
        out.append(
            PlannedAction(
                replica=r,
                action=f"retain the old volumes of {r}, delete claims {', '.join(claims[r].values())} and pod {r}, verify the new pod on the copies",
            )
        )
        out.append(PlannedAction(replica=r, action=f"old volumes: {spec.old_volumes}"))
    return out
