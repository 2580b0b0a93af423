"""The resync deleted mid-run (or its namespace terminating): in-flight swaps carried to their end,
the rest left untouched, then the finalizer removed.
"""

from __future__ import annotations

from ..conditions import Reason
from ..models import LABEL_RESYNC_UID
from ..state import Patch, Plan, pv_ref
from .cleanup import cleanup
from .objects import meta
from .replica import in_flight, step_replica
from .status import FINISHED, IN_FLIGHT, NOT_SWAPPED, Builder, fail_replica, kept, skip
from .volumes import owned


def deletion(b: Builder) -> Plan:
    """Deleting a ClusterResync: finish or roll back the swap in flight, clean up, then let it go.

    When the namespace itself is being deleted, nothing will recreate a replica's pod or claim and
    nothing can be created there: swaps in flight stop where they are with both volumes kept, no
    volume is left pre-bound to a claim of the dying namespace, and the finalizer goes at once so
    that the namespace is not blocked.
    """
    terminating = b.obs.namespace_terminating
    for r in list(b.status.replicas):
        if r.phase in IN_FLIGHT:
            if terminating:
                fail_replica(
                    b,
                    r,
                    Reason.NAMESPACE_TERMINATING,
                    f"namespace {b.obs.resync.namespace} deleted during its swap; {kept(b, r)}",
                )
            else:
                step_replica(b, r.name, None)
        elif r.phase in NOT_SWAPPED:
            skip(b, r, Reason.DELETED, "not swapped: the ClusterResync was deleted")
    if in_flight(b):
        b.progressing(Reason.CLEANING_UP, "deleted: finishing the swap in flight before cleaning up")
        b.again(1.0)
        return b.plan()
    if b.status.phase not in FINISHED:
        if terminating:
            b.fail(
                Reason.NAMESPACE_TERMINATING,
                f"namespace {b.obs.resync.namespace} is being deleted; volumes this resync changed are kept "
                f"with reclaim policy Retain (kubectl get pv -l {LABEL_RESYNC_UID}={b.obs.resync.uid})",
            )
        else:
            b.fail(
                Reason.DELETED,
                "the ClusterResync was deleted before it finished; swaps in flight were completed or rolled back",
            )
    if terminating:
        return b.plan(remove_finalizer=_unbind_from_namespace(b))
    if not cleanup(b):
        return b.plan()
    return b.plan(remove_finalizer=True)


def _unbind_from_namespace(b: Builder) -> bool:
    """No volume of this resync stays pre-bound to a claim of a namespace being deleted (the
    namespace controller deletes the claims and objects themselves). Its claimRef gets a uid no
    claim has (this resync's): the PV controller sees the claim gone and the volume Released,
    and with reclaim policy Retain it stays so, data kept, bindable by no claim until an admin
    decides (pv_controller.go syncVolume: a claimRef whose claim is not found is released).
    Removing the claimRef instead would make the copy Available to any matching claim of any
    namespace. True once no such volume is left."""
    ns = b.obs.resync.namespace
    done = True
    for pv in b.obs.pvs.values():
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if owned(b, pv) and ref.get("namespace") == ns and not ref.get("uid"):
            body = {
                "metadata": {"resourceVersion": meta(pv).get("resourceVersion")},
                "spec": {"claimRef": {"uid": b.obs.resync.uid}, "persistentVolumeReclaimPolicy": "Retain"},
            }
            b.do(Patch(pv_ref(meta(pv)["name"]), body))
            done = False
    return done
