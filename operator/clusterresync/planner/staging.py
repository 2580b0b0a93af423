"""Stage 1 of a replica: the copy restored into a staging claim (a Job binds it when a restore hook
or a WaitForFirstConsumer class needs one).
"""

from __future__ import annotations

from ..conditions import Reason
from ..models import ReplicaStatus
from ..state import Create, Obj, job_ref, pvc_ref
from .naming import owner_references, resync_labels, staging_claim_name, staging_job_name
from .objects import meta, quantity_bytes
from .status import Builder, fail_replica, set_vol
from .volumes import name_conflict, owned


def _staging_job(b: Builder, r: ReplicaStatus) -> Obj | None:
    """The staging Job, if this replica needs one: a restore hook, or a WaitForFirstConsumer class."""
    obs, spec = b.obs, b.obs.resync.spec
    pod = obs.pods.get(r.name)
    needs = spec.hooks is not None and spec.hooks.restore is not None
    for v in r.volumes:
        c = obs.claims.get(v.claim) or {}
        sc = obs.storage_classes.get((c.get("spec") or {}).get("storageClassName") or "") or {}
        if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
            needs = True
    if not needs or pod is None:
        return None
    pspec = pod.get("spec") or {}
    mounts: list[Obj] = []
    volumes: list[Obj] = []
    image = ""
    for ctr in pspec.get("containers") or []:
        image = image or str(ctr.get("image", ""))
        for m in ctr.get("volumeMounts") or []:
            if any(v.volume == m.get("name") for v in r.volumes) and all(
                x["name"] != m["name"] for x in mounts
            ):
                mounts.append({k: m[k] for k in ("name", "mountPath", "subPath") if k in m})
    for v in r.volumes:
        volumes.append(
            {
                "name": v.volume,
                "persistentVolumeClaim": {"claimName": staging_claim_name(obs.resync.uid, r.name, v.volume)},
            }
        )
    hook = spec.hooks.restore if spec.hooks else None
    # The Job runs as the replica runs (its pod securityContext, and its container's user and
    # group), so the restored files are read and written as the replica's own -- and a namespace
    # that admits the replica admits the Job. On top, what the restricted Pod Security profile asks
    # that does not change who the process is (pod-security-admission policy/check_*.go: no
    # privilege escalation, every capability dropped, the RuntimeDefault seccomp profile).
    pod_sc = dict(pspec.get("securityContext") or {})
    pod_sc.setdefault("seccompProfile", {"type": "RuntimeDefault"})
    replica_ctr: Obj = next(iter(pspec.get("containers") or []), {})
    ctr_sc = {
        k: v
        for k, v in (replica_ctr.get("securityContext") or {}).items()
        if k in ("runAsUser", "runAsGroup", "runAsNonRoot")
    }
    container: Obj = {
        "name": "restore",
        "image": hook.image if hook else image,
        "command": list(hook.command) if hook else ["sh", "-c", "exit 0"],
        "volumeMounts": mounts,
        "securityContext": {
            **ctr_sc,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if hook and hook.args:
        container["args"] = list(hook.args)
    if hook and hook.env:
        container["env"] = [{"name": e.name, "value": e.value} for e in hook.env]
    node = obs.nodes.get(r.node_name or "") or {}
    hostname = (meta(node).get("labels") or {}).get("kubernetes.io/hostname", r.node_name or "")
    pod_spec: Obj = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        "nodeSelector": {"kubernetes.io/hostname": hostname} if hostname else {},
        "tolerations": list(pspec.get("tolerations") or []),
    }
    pod_spec["securityContext"] = pod_sc
    pod_spec["automountServiceAccountToken"] = False
    name = staging_job_name(obs.resync.uid, r.name)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": obs.resync.namespace,
            "labels": resync_labels(b.obs.resync, r.name),
            "ownerReferences": owner_references(b.obs.resync),
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": hook.timeout_seconds if hook else 600,
            "template": {"metadata": {"labels": resync_labels(b.obs.resync, r.name)}, "spec": pod_spec},
        },
    }


def ensure_staged(b: Builder, r: ReplicaStatus, clone: bool) -> bool:
    """Create the staging claims (and Job); True once every staging claim is Bound and the Job done."""
    obs, spec = b.obs, b.obs.resync.spec
    ns = obs.resync.namespace
    all_bound = True
    for v in r.volumes:
        sname = staging_claim_name(obs.resync.uid, r.name, v.volume)
        if v.staging_claim != sname:
            r = set_vol(b, r, v.volume, staging_claim=sname)
        staged = obs.claims.get(sname)
        if staged is None:
            replica_claim = obs.claims.get(v.claim)
            if replica_claim is None:
                fail_replica(
                    b, r, Reason.RESTORE_FAILED, f"claim {v.claim} is gone; the replica was not touched"
                )
                return False
            cspec = replica_claim.get("spec") or {}
            request = ((cspec.get("resources") or {}).get("requests") or {}).get("storage", "0")
            size = str(request)
            if clone:
                assert b.status.primary is not None
                source = {"kind": "PersistentVolumeClaim", "name": b.status.primary.claims[v.volume]}
                src_claim = obs.claims.get(b.status.primary.claims[v.volume]) or {}
                src_req = (((src_claim.get("spec") or {}).get("resources") or {}).get("requests") or {}).get(
                    "storage", "0"
                )
                if quantity_bytes(src_req) > quantity_bytes(size):
                    size = str(src_req)
            else:
                snap = next((s for s in b.status.snapshots if s.volume == v.volume), None)
                assert snap is not None
                source = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snap.name}
                if snap.restore_size and quantity_bytes(snap.restore_size) > quantity_bytes(size):
                    size = snap.restore_size
            body = {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {
                    "name": sname,
                    "namespace": ns,
                    "labels": resync_labels(b.obs.resync, r.name, v.volume),
                    "ownerReferences": owner_references(b.obs.resync),
                },
                "spec": {
                    "accessModes": list(cspec.get("accessModes") or ["ReadWriteOnce"]),
                    "volumeMode": cspec.get("volumeMode", "Filesystem"),
                    "resources": {"requests": {"storage": size}},
                    "dataSource": source,
                    **(
                        {"storageClassName": cspec["storageClassName"]}
                        if cspec.get("storageClassName")
                        else {}
                    ),
                },
            }
            b.do(Create(pvc_ref(ns, sname), body))
            all_bound = False
            continue
        if not owned(b, staged):
            name_conflict(b, r, f"claim {sname} exists")
            return False
        if (staged.get("status") or {}).get("phase") != "Bound":
            all_bound = False
            warn = obs.claim_warnings.get(sname)
            if warn:
                r = r.model_copy(update={"message": f"staging claim {sname}: {warn}"})
                b.put_replica(r)
                if clone and ("clon" in warn.lower() and "support" in warn.lower()):
                    b.fail(
                        Reason.CLONE_NOT_SUPPORTED,
                        f"the CSI driver refused to clone claim {b.status.primary.claims[v.volume] if b.status.primary else ''}: {warn}",
                    )
                    return False
        elif not v.new_pv:
            r = set_vol(b, r, v.volume, new_pv=str((staged.get("spec") or {}).get("volumeName")))
    job = _staging_job(b, r)
    if job is not None:
        existing = obs.jobs.get(meta(job)["name"])
        if existing is None:
            # The Job is the restore hook's runner and, for WaitForFirstConsumer, the consumer
            # whose scheduling to the replica's node makes the volume land there.
            b.do(Create(job_ref(ns, meta(job)["name"]), job))
            return False
        jcond = {
            c.get("type"): c.get("status") for c in (existing.get("status") or {}).get("conditions") or []
        }
        if jcond.get("Failed") == "True" or jcond.get("FailureTarget") == "True":
            what = "the restore hook" if spec.hooks and spec.hooks.restore else "the staging Job"
            fail_replica(
                b,
                r,
                Reason.RESTORE_FAILED,
                f"staging Job {meta(job)['name']} failed ({what}; see kubectl describe job and its pod's logs); "
                "the replica was not touched",
            )
            return False
        if jcond.get("Complete") != "True":
            return False
    return all_bound
