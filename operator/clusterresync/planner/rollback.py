"""A replica that failed its verification goes back to its old volume(s)."""

from __future__ import annotations

from ..conditions import Reason
from ..models import ReplicaStatus
from ..state import Delete, pod_ref, pvc_ref
from .objects import deleting, pod_ready, uid
from .status import Builder, fail_replica, kept
from .volumes import owned, prebind_patch


def rollback(b: Builder, r: ReplicaStatus) -> None:
    """Put the replica back on its old volumes with the same primitive: pre-bind, then swap.

    Both volumes stay with reclaim policy Retain whatever happens: the replica was not verified on
    the copy, so the old volume keeps its data; the copy's claim was deleted, so the copy is kept.
    """
    obs = b.obs
    ns = obs.resync.namespace
    settled = True
    for v in r.volumes:
        old = obs.pvs.get(v.old_pv or "")
        if old is None or not owned(b, old):
            fail_replica(
                b,
                r,
                Reason.ROLLBACK_FAILED,
                f"rollback failed: old volume {v.old_pv} is gone or no longer this resync's; {kept(b, r)}; "
                "see docs/troubleshooting.md#rollbackfailed",
            )
            return
        c = obs.claims.get(v.claim)
        bound_to_old = c is not None and (c.get("spec") or {}).get("volumeName") == v.old_pv
        if bound_to_old:
            assert c is not None
            if (c.get("status") or {}).get("phase") != "Bound":
                settled = False
            continue
        settled = False
        ref = (old.get("spec") or {}).get("claimRef") or {}
        if ref.get("uid") or ref.get("name") != v.claim or ref.get("namespace") != ns:
            b.do(prebind_patch(b, old, ns, v.claim))
            continue
        if c is not None and not deleting(c):
            b.do(Delete(pvc_ref(ns, v.claim), uid=uid(c)))
    pod = obs.pods.get(r.name)
    if not settled:
        if (
            pod is not None
            and not deleting(pod)
            and any((obs.claims.get(v.claim) is None or deleting(obs.claims.get(v.claim))) for v in r.volumes)
        ):
            b.do(Delete(pod_ref(ns, r.name), uid=uid(pod)))
        return
    if not pod_ready(pod):
        return
    olds = ", ".join(v.old_pv or "" for v in r.volumes)
    news = ", ".join(v.new_pv or "" for v in r.volumes)
    fail_replica(
        b,
        r,
        Reason.REPLICA_ROLLED_BACK,
        f"rolled back: {r.name} runs on its old volume(s) {olds} again (kept with reclaim policy Retain); "
        f"the copy {news} is kept (Retain) too; why: {r.message}",
    )
