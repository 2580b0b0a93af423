"""Snapshotting: the pre/post-snapshot hooks, one VolumeSnapshot per volume of the primary, and the
test that the primary has not changed since.
"""

from __future__ import annotations

from ..conditions import EventReason, EventType, Reason
from ..models import SnapshotStatus
from ..state import Create, Exec, snapshot_ref
from .naming import owner_references, resync_labels, snapshot_name
from .objects import deleting, labels_match, meta, parse_ts, restart_count, uid
from .preflight import snapshot_class
from .staging import ensure_staged
from .status import Builder


def _run_hook(b: Builder, hook_name: str, on_failure: Reason) -> bool:
    """Run an exec hook in the primary once; True once it has succeeded."""
    spec = b.obs.resync.spec
    if hook_name in b.status.hooks_done:
        return True
    hook = (
        getattr(spec.hooks, "pre_snapshot" if hook_name == "preSnapshot" else "post_snapshot", None)
        if spec.hooks
        else None
    )
    if hook is None:
        return True
    outcome = b.obs.hook_outcomes.get(hook_name)
    assert b.status.primary is not None
    if outcome is None:
        b.do(
            Exec(
                hook_name,
                b.status.primary.pod_name,
                b.obs.resync.namespace,
                hook.container,
                tuple(hook.command),
                hook.timeout_seconds,
            )
        )
        return False
    if not outcome.ok:
        # The output may hold secrets: only the exit code, unless the spec opts into an excerpt.
        why = f"exit code {outcome.exit_code}" if outcome.exit_code is not None else outcome.error
        msg = f"{hook_name} hook in {b.status.primary.pod_name} failed ({why})"
        if hook.output_excerpt_bytes and outcome.output:
            excerpt = outcome.output.encode()[-hook.output_excerpt_bytes :].decode(errors="replace")
            msg += f"; last {hook.output_excerpt_bytes} bytes of its output: {excerpt.strip()}"
        b.fail(on_failure, msg)
        return False
    b.set(hooks_done=[*b.status.hooks_done, hook_name])
    b.event(
        EventType.NORMAL,
        EventReason.HOOK_SUCCEEDED,
        f"{hook_name} hook in {b.status.primary.pod_name} succeeded",
    )
    return True


def primary_changed(b: Builder) -> str | None:
    """Why the primary is no longer the one the copy was taken from, or None."""
    p = b.status.primary
    if p is None:
        return None
    pod = b.obs.pods.get(p.pod_name)
    if pod is None:
        return f"primary pod {p.pod_name} is gone"
    if uid(pod) != p.uid:
        return f"primary pod {p.pod_name} was recreated (uid {p.uid} is now {uid(pod)})"
    if restart_count(pod) != p.restart_count:
        return (
            f"primary pod {p.pod_name} restarted (restartCount {p.restart_count} is now {restart_count(pod)})"
        )
    if deleting(pod):
        return f"primary pod {p.pod_name} is being deleted"
    sel = b.obs.resync.spec.primary.selector
    if sel is not None:
        matches = sorted(n for n, q in b.obs.pods.items() if labels_match(sel, meta(q).get("labels") or {}))
        if matches != [p.pod_name]:
            return (
                f"the primary selector now matches {', '.join(matches) or 'no pod'} instead of {p.pod_name}"
            )
    return None


def snapshotting(b: Builder) -> None:
    spec, obs = b.obs.resync.spec, b.obs
    assert b.status.primary is not None
    changed = primary_changed(b)
    if changed:
        b.fail(Reason.PRIMARY_CHANGED, f"{changed} before its volumes were copied; no replica was touched")
        return
    if not _run_hook(b, "preSnapshot", Reason.HOOK_FAILED):
        b.again(1.0)
        return
    started = parse_ts(b.status.started_at or b.now)
    elapsed = (obs.now - started).total_seconds()
    ready = True
    snaps: list[SnapshotStatus] = []
    if spec.method == "Snapshot":
        for v in spec.volumes:
            name = snapshot_name(obs.resync.uid, v)
            claim = b.status.primary.claims[v]
            snap = obs.snapshots.get(name)
            if snap is None:
                c = obs.claims.get(claim) or {}
                sc = obs.storage_classes.get((c.get("spec") or {}).get("storageClassName") or "") or {}
                klass = snapshot_class(b, str(sc.get("provisioner", "")))
                body = {
                    "apiVersion": "snapshot.storage.k8s.io/v1",
                    "kind": "VolumeSnapshot",
                    "metadata": {
                        "name": name,
                        "namespace": obs.resync.namespace,
                        "labels": resync_labels(b.obs.resync, volume=v),
                        "ownerReferences": owner_references(b.obs.resync),
                    },
                    "spec": {
                        "source": {"persistentVolumeClaimName": claim},
                        **({"volumeSnapshotClassName": meta(klass)["name"]} if klass else {}),
                    },
                }
                b.do(Create(snapshot_ref(obs.resync.namespace, name), body))
                snaps.append(SnapshotStatus(volume=v, name=name))
                ready = False
                continue
            st = snap.get("status") or {}
            ok = bool(st.get("readyToUse"))
            snaps.append(
                SnapshotStatus(
                    volume=v,
                    name=name,
                    ready_to_use=ok,
                    restore_size=str(st["restoreSize"]) if st.get("restoreSize") is not None else None,
                )
            )
            if not ok:
                ready = False
                err = (st.get("error") or {}).get("message")
                if err and elapsed >= spec.timeouts.snapshot_seconds:
                    b.set(snapshots=snaps)
                    b.fail(
                        Reason.SNAPSHOT_FAILED,
                        f"VolumeSnapshot {name} of claim {claim} is not ready after {int(elapsed)}s: {err}",
                    )
                    return
    else:
        # Clone: every replica's copy is provisioned now, from the same instant, between the hooks.
        for v in spec.volumes:
            snaps.append(SnapshotStatus(volume=v, name=b.status.primary.claims[v], ready_to_use=True))
        for r in b.status.replicas:
            if not ensure_staged(b, r, clone=True):
                ready = False
    b.set(snapshots=snaps)
    if b.status.phase == "Failed":
        return
    if not ready:
        if elapsed >= spec.timeouts.snapshot_seconds:
            b.fail(
                Reason.SNAPSHOT_FAILED,
                f"the copies of the primary's volumes are not ready after {int(elapsed)}s (timeouts.snapshotSeconds)",
            )
            return
        b.progressing(Reason.SNAPSHOTTING, f"copying the volumes of {b.status.primary.pod_name}")
        b.again(1.0)
        return
    if not _run_hook(b, "postSnapshot", Reason.HOOK_FAILED):
        b.again(1.0)
        return
    b.set(phase="Resyncing")
    b.progressing(
        Reason.RESYNCING,
        f"copies of {b.status.primary.pod_name} are ready; re-provisioning {len(b.status.replicas)} replica(s)",
    )
    b.event(
        EventType.NORMAL,
        EventReason.SNAPSHOTS_READY,
        f"copies of {', '.join(spec.volumes)} from {b.status.primary.pod_name} are ready",
    )
