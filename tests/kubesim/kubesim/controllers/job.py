"""The Job controller and the TTL-after-finished controller.

- ``JobController`` follows ``pkg/controller/job/job_controller.go`` as of 1.31+ (JobManagedBy /
  JobPodReplacementPolicy on, so terminal conditions are delayed): ``syncJob`` (``getPodsForJob``
  adopting with the ``batch.kubernetes.io/job-tracking`` finalizer, counting, ``startTime``,
  ``exceedsBackoffLimit``/``pastBackoffLimitOnFailure``/``pastActiveDeadline`` → the interim
  ``FailureTarget`` condition, ``deleteActivePods``, ``manageJob`` with the pod-failure backoff
  (``backoff_utils.go``), suspend/resume, the interim ``SuccessCriteriaMet`` condition),
  ``trackJobStatusAndRemoveFinalizers`` / ``flushUncountedAndRemoveFinalizers`` (pods go through
  ``status.uncountedTerminatedPods`` before their finalizer is removed and they are counted),
  ``enactJobFinished`` (``Complete``/``Failed`` once nothing is uncounted or terminating) and
  ``recordJobFinished`` (events); orphan pods lose their tracking finalizer (``handleOrphanPod``).
- ``TTLAfterFinishedController`` follows ``pkg/controller/ttlafterfinished/
  ttlafterfinished_controller.go``: ``processJob`` / ``processTTL`` / ``timeLeft`` and the final
  check on a fresh read before deleting with ``propagationPolicy: Foreground`` and a UID
  precondition.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any, cast

from ..errors import StatusError
from ..events import record
from ..meta import now, parse_time
from ..store import JSON, Change, deep_copy
from .base import Controller
from .deployment import (
    RefManager,
    RetryBackoff,
    SyncError,
    active_pods_order,
    aggregate,
    controller_ref,
    error_text,
    inject_fault,
    is_pod_active,
    is_pod_ready,
    is_pod_terminating,
    new_controller_ref,
    owners_for,
    phase,
    pod_from_template,
    selector_reqs,
    slow_start_batch,
)

if TYPE_CHECKING:
    from ..cluster import Cluster

COMPONENT = "job-controller"
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"  # batch.JobTrackingFinalizer
MAX_UNCOUNTED_PODS = 500
MAX_POD_CREATE_DELETE_PER_SYNC = 500


def _cond(type_: str, status: str, reason: str, message: str) -> JSON:
    """``newCondition``."""
    t = now()
    return {
        "type": type_,
        "status": status,
        "lastProbeTime": t,
        "lastTransitionTime": t,
        "reason": reason,
        "message": message,
    }


def find_condition(job: JSON, type_: str) -> JSON | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def is_job_finished(job: JSON) -> bool:
    """``util.IsJobFinished``: a Complete or Failed condition that is True."""
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def has_finalizer(pod: JSON) -> bool:
    return TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or [])


def suspended(job: JSON) -> bool:
    return bool((job.get("spec") or {}).get("suspend"))


def only_replace_failed(job: JSON) -> bool:
    spec = job.get("spec") or {}
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def is_pod_failed(pod: JSON, job: JSON) -> bool:
    """``isPodFailed``: Failed, or (without podFailurePolicy / podReplacementPolicy Failed) deleted
    before it succeeded — orphans may never reach a terminal phase."""
    if (job.get("spec") or {}).get("podFailurePolicy") is not None:
        return phase(pod) == "Failed"
    if phase(pod) == "Failed":
        return True
    if only_replace_failed(job):
        return False
    return bool(pod["metadata"].get("deletionTimestamp")) and phase(pod) != "Succeeded"


def finished_time(pod: JSON) -> float:
    """``getFinishedTime``: the Ready=False transition of a terminal pod, the containers' end, the
    deletion timestamp, or the creation."""
    st = pod.get("status") or {}
    for c in st.get("conditions") or []:
        if (
            c.get("type") == "Ready"
            and c.get("status") == "False"
            and c.get("reason") == "PodCompleted"
            and c.get("lastTransitionTime")
        ):
            return parse_time(c["lastTransitionTime"]).timestamp()
    ends = [
        parse_time(cs["state"]["terminated"]["finishedAt"]).timestamp()
        for cs in st.get("containerStatuses") or []
        if ((cs.get("state") or {}).get("terminated") or {}).get("finishedAt")
    ]
    if ends:
        return max(ends)
    for t in (pod["metadata"].get("deletionTimestamp"), pod["metadata"].get("creationTimestamp")):
        if t:
            return parse_time(t).timestamp()
    return time.time()


class JobController(Controller):
    name = "job"

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.job_rt = self.api.resource("batch", "v1", "jobs")
        self.pod_rt = self.api.resource("", "v1", "pods")
        cfg = cluster.config
        self.backoff = RetryBackoff(cfg.workload_retry_start, cfg.workload_retry_max)
        self.pod_backoff = cfg.job_pod_failure_backoff
        self.pod_backoff_max = cfg.job_pod_failure_backoff_max
        # backoffStore: job uid -> (failuresAfterLastSuccess, lastFailureTime)
        self._backoff_records: dict[str, tuple[int, float | None]] = {}

    # -- event handlers (addPod/updatePod/deletePod, addJob/updateJob/deleteJob) ----------------
    def keys_for(self, change: Change) -> Iterable[Hashable]:
        meta = change.obj["metadata"]
        if change.key == "batch/jobs":
            if change.type != "DELETED":
                yield ("job", meta["namespace"], meta["name"])
            else:
                for p in self.store.iter("/pods", meta["namespace"]):
                    ref = controller_ref(p)
                    if has_finalizer(p) and ref is not None and ref.get("uid") == meta["uid"]:
                        yield ("orphan", meta["namespace"], p["metadata"]["name"])
        elif change.key == "/pods":
            owners = owners_for(change, "Job")
            for ns, name in owners:
                yield ("job", ns, name)
            if change.type != "DELETED" and has_finalizer(change.obj):
                ref = controller_ref(change.obj)
                job = None
                if ref is not None and ref.get("kind") == "Job":
                    job = self.store.peek("batch/jobs", meta.get("namespace", ""), str(ref.get("name")))
                if job is None or ref is None or job["metadata"]["uid"] != ref.get("uid"):
                    yield ("orphan", meta.get("namespace", ""), meta["name"])

    def initial_keys(self) -> Iterable[Hashable]:
        for j in self.store.iter("batch/jobs"):
            yield ("job", j["metadata"]["namespace"], j["metadata"]["name"])

    async def reconcile(self, key: Hashable) -> float | None:
        what, ns, name = cast(tuple[str, str, str], key)
        if what == "orphan":
            self._handle_orphan_pod(ns, name)
            return None
        try:
            again = self.sync_job(ns, name)
        except SyncError:
            return self.backoff.failed(key)
        self.backoff.forget(key)
        return again

    def _handle_orphan_pod(self, ns: str, name: str) -> None:
        """``handleOrphanPod``: a pod whose Job is gone loses its tracking finalizer."""
        pod = self.api.get_or_none(self.pod_rt, ns, name)
        if pod is None or not has_finalizer(pod):
            return
        ref = controller_ref(pod)
        if ref is not None and ref.get("kind") == "Job":
            job = self.store.peek("batch/jobs", ns, str(ref.get("name")))
            if job is not None and job["metadata"]["uid"] == ref.get("uid"):
                return
        self._remove_finalizer(pod)

    def _remove_finalizer(self, pod: JSON) -> bool:
        """``removeTrackingFinalizerPatch``: a NotFound counts as removed."""
        cur = self.api.get_or_none(self.pod_rt, pod["metadata"]["namespace"], pod["metadata"]["name"])
        if cur is None or cur["metadata"]["uid"] != pod["metadata"]["uid"]:
            return True
        fins = [f for f in cur["metadata"].get("finalizers") or [] if f != TRACKING_FINALIZER]
        if fins:
            cur["metadata"]["finalizers"] = fins
        else:
            cur["metadata"].pop("finalizers", None)
        cur["metadata"].pop("resourceVersion", None)
        try:
            self.api.update(
                self.pod_rt, pod["metadata"]["namespace"], pod["metadata"]["name"], cur, internal_patch=True
            )
        except StatusError as e:
            return e.code == 404
        return True

    # -- syncJob ----------------------------------------------------------------------------------
    def sync_job(self, ns: str, name: str) -> float | None:
        job = self.api.get_or_none(self.job_rt, ns, name)
        if job is None:
            return None
        uid = job["metadata"]["uid"]
        spec = job.get("spec") or {}
        if spec.get("managedBy") not in (None, "kubernetes.io/job-controller"):
            return None  # managed by an external controller
        if is_job_finished(job):
            self._backoff_records.pop(uid, None)
            return None
        mode = spec.get("completionMode", "NonIndexed")
        if mode not in ("NonIndexed", "Indexed"):
            record(
                self.api,
                job,
                "Warning",
                "UnknownCompletionMode",
                "Skipped Job sync because completion mode is unknown",
                COMPONENT,
            )
            return None
        unsupported = [
            what
            for what, present in (
                ("completionMode: Indexed", mode == "Indexed"),
                ("podFailurePolicy", spec.get("podFailurePolicy") is not None),
                ("successPolicy", spec.get("successPolicy") is not None),
                ("backoffLimitPerIndex", spec.get("backoffLimitPerIndex") is not None),
            )
            if present
        ]
        if unsupported:
            # Stricter than a half emulation: such Jobs are left alone, and say so.
            record(
                self.api, job, "Warning", "Unsupported",
                f"kubesim does not emulate {', '.join(unsupported)}; the Job is not synced", COMPONENT,
            )  # fmt: skip
            return None
        status = deep_copy(job.get("status") or {})
        uncounted = status.setdefault("uncountedTerminatedPods", {})
        reqs = selector_reqs(spec.get("selector"))
        if reqs is None:
            return None
        pods = [deep_copy(p) for p in self.store.iter("/pods", ns)]
        pods = RefManager(
            self.api, self.pod_rt, job, "batch/v1", "Job", reqs, finalizers=(TRACKING_FINALIZER,)
        ).claim(pods)
        active_pods = [p for p in pods if is_pod_active(p)]
        ready = sum(1 for p in active_pods if is_pod_ready(p))
        terminating = sum(1 for p in pods if is_pod_terminating(p))
        active = len(active_pods)
        unc_s = set(uncounted.get("succeeded") or [])
        unc_f = set(uncounted.get("failed") or [])
        new_succeeded = [
            p
            for p in pods
            if has_finalizer(p) and p["metadata"]["uid"] not in unc_s and phase(p) == "Succeeded"
        ]
        new_failed = [
            p
            for p in pods
            if has_finalizer(p) and p["metadata"]["uid"] not in unc_f and is_pod_failed(p, job)
        ]
        succeeded = int(status.get("succeeded") or 0) + len(new_succeeded) + len(unc_s)
        failed = int(status.get("failed") or 0) + len(new_failed) + len(unc_f)
        if not status.get("startTime") and not suspended(job):
            status["startTime"] = now()
        new_record = self._new_backoff_record(uid, new_succeeded, new_failed)
        requeue: float | None = None
        manage_err: str | None = None
        backoff_limit = int(spec.get("backoffLimit", 6))
        finished: JSON | None = find_condition(job, "SuccessCriteriaMet")
        if finished is not None and finished.get("status") != "True":
            finished = None
        if finished is None:
            target = find_condition(job, "FailureTarget")
            if target is not None and target.get("status") == "True":
                finished = _cond("Failed", "True", target.get("reason", ""), target.get("message", ""))
        if finished is None:
            if failed > backoff_limit or self._past_backoff_limit_on_failure(job, pods):
                finished = _cond(
                    "FailureTarget",
                    "True",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                )
            elif self._past_active_deadline(job, status):
                finished = _cond(
                    "FailureTarget",
                    "True",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                )
            elif spec.get("activeDeadlineSeconds") is not None and not suspended(job):
                start = parse_time(status["startTime"]).timestamp()
                requeue = max(0.0, int(spec["activeDeadlineSeconds"]) - (time.time() - start))
        suspend_changed = False
        if finished is not None:
            deleted_ready, deleted, errors = self._delete_pods(job, active_pods, keep_finalizer=True)
            if deleted != active:
                finished = None
            active -= deleted
            terminating += deleted
            ready -= deleted_ready
            manage_err = aggregate(errors) if errors else None
        else:
            manage_called = False
            if not job["metadata"].get("deletionTimestamp"):
                active, ready, terminating, manage_err, wait = self._manage_job(
                    job, active_pods, succeeded, ready, terminating, new_record
                )
                if wait is not None:
                    requeue = wait if requeue is None else min(requeue, wait)
                manage_called = True
            completions = spec.get("completions")
            if completions is None:
                complete = succeeded > 0 and active == 0
            else:
                complete = succeeded >= int(completions) and active == 0
            if complete:
                finished = _cond(
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                )
            elif manage_called:
                conds = list(status.get("conditions") or [])
                if suspended(job):
                    conds, changed = _ensure_condition(
                        conds, "Suspended", "True", "JobSuspended", "Job suspended"
                    )
                    if changed:
                        suspend_changed = True
                        record(self.api, job, "Normal", "Suspended", "Job suspended", COMPONENT)
                else:
                    conds, changed = _ensure_condition(
                        conds, "Suspended", "False", "JobResumed", "Job resumed"
                    )
                    if changed:
                        suspend_changed = True
                        record(self.api, job, "Normal", "Resumed", "Job resumed", COMPONENT)
                        # Resumed jobs always reset StartTime (activeDeadlineSeconds counts active time).
                        status["startTime"] = now()
                if conds:
                    status["conditions"] = conds
        old = job.get("status") or {}
        needs_update = (
            suspend_changed
            or active != int(old.get("active") or 0)
            or old.get("ready") != ready
            or old.get("terminating") != terminating
        )
        status["active"] = active
        status["ready"] = ready
        status["terminating"] = terminating
        self._track_and_remove_finalizers(job, status, pods, finished, terminating, new_record, needs_update)
        if manage_err:
            raise SyncError(manage_err)
        return requeue

    @staticmethod
    def _past_backoff_limit_on_failure(job: JSON, pods: list[JSON]) -> bool:
        """``pastBackoffLimitOnFailure``: restartPolicy OnFailure counts container restarts."""
        spec = job.get("spec") or {}
        if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
            return False
        total = 0
        for p in pods:
            if phase(p) in ("Running", "Pending"):
                st = p.get("status") or {}
                for cs in [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]:
                    total += int(cs.get("restartCount") or 0)
        limit = int(spec.get("backoffLimit", 6))
        return total > 0 if limit == 0 else total >= limit

    @staticmethod
    def _past_active_deadline(job: JSON, status: JSON) -> bool:
        """``pastActiveDeadline``."""
        ads = (job.get("spec") or {}).get("activeDeadlineSeconds")
        if ads is None or not status.get("startTime") or suspended(job):
            return False
        return time.time() - parse_time(status["startTime"]).timestamp() >= int(ads)

    # -- backoff_utils.go -------------------------------------------------------------------------
    def _new_backoff_record(
        self, uid: str, new_succeeded: list[JSON], new_failed: list[JSON]
    ) -> tuple[str, int, float | None]:
        """``newBackoffRecord``. The last failure is the time the controller saw it (upstream the
        pod's finish time, to the second): kubesim's back-off never ends early."""
        failures, last = self._backoff_records.get(uid, (0, None))
        if not new_succeeded:
            if not new_failed:
                return uid, failures, last
            return uid, failures + len(new_failed), time.time()
        last_success = max(finished_time(p) for p in new_succeeded)
        after = [p for p in new_failed if finished_time(p) > last_success]
        return uid, len(after), (time.time() if after else None)

    def _remaining_backoff(self, rec: tuple[str, int, float | None]) -> float:
        """``getRemainingTime``: base * 2^(failures-1), capped."""
        _, failures, last = rec
        if failures == 0 or last is None:
            return 0.0
        delay = self.pod_backoff
        for _ in range(1, failures):
            delay *= 2
            if delay >= self.pod_backoff_max:
                delay = self.pod_backoff_max
                break
        elapsed = time.time() - last
        return 0.0 if delay < elapsed else delay - elapsed

    # -- manageJob ------------------------------------------------------------------------------
    def _manage_job(
        self,
        job: JSON,
        active_pods: list[JSON],
        succeeded: int,
        ready: int,
        terminating: int,
        rec: tuple[str, int, float | None],
    ) -> tuple[int, int, int, str | None, float | None]:
        """Returns (active, ready, terminating, error, requeue delay)."""
        spec = job.get("spec") or {}
        active = len(active_pods)
        parallelism = int(spec.get("parallelism", 1))
        if suspended(job):
            victims = active_pods_order(active_pods)[:active]
            r_ready, removed, errors = self._delete_pods(job, victims, keep_finalizer=False)
            return (
                active - removed,
                ready - r_ready,
                terminating + removed,
                aggregate(errors) if errors else None,
                None,
            )
        completions = spec.get("completions")
        if completions is None:
            want = active if succeeded > 0 else parallelism
        else:
            want = max(0, min(int(completions) - succeeded, parallelism))
        rm = max(active - want, 0)
        victims = active_pods_order(active_pods)[:rm][:MAX_POD_CREATE_DELETE_PER_SYNC]
        if victims:
            r_ready, removed, errors = self._delete_pods(job, victims, keep_finalizer=False)
            return (
                active - removed,
                ready - r_ready,
                terminating + removed,
                aggregate(errors) if errors else None,
                None,
            )
        replacing = terminating if only_replace_failed(job) else 0
        diff = want - replacing - active
        if diff <= 0:
            return active, ready, terminating, None, None
        remaining = self._remaining_backoff(rec)
        if remaining > 0:
            # Upstream returns 0 active pods while it waits out the back-off.
            return 0, ready, terminating, None, remaining
        diff = min(diff, MAX_POD_CREATE_DELETE_PER_SYNC)
        template = deep_copy(spec.get("template") or {})
        tmeta = template.setdefault("metadata", {})
        fins = list(tmeta.get("finalizers") or [])
        if TRACKING_FINALIZER not in fins:
            fins.append(TRACKING_FINALIZER)
        tmeta["finalizers"] = fins
        ref = new_controller_ref(job, "batch/v1", "Job")
        ns = job["metadata"]["namespace"]

        def create(_i: int) -> str | None:
            pod = pod_from_template(template, job["metadata"]["name"], ref)
            try:
                inject_fault(
                    self.cluster,
                    self.name,
                    "create",
                    "pods",
                    ns,
                    pod["metadata"]["generateName"],
                    job["metadata"]["name"],
                )
                created = self.api.create(self.pod_rt, ns, pod).obj
            except StatusError as e:
                if e.code == 403 and "being terminated" in e.message:
                    return None  # NamespaceTerminatingCause: nothing more to do
                record(
                    self.api, job, "Warning", "FailedCreate", f"Error creating: {error_text(e)}", COMPONENT
                )
                return error_text(e)
            record(
                self.api,
                job,
                "Normal",
                "SuccessfulCreate",
                f"Created pod: {created['metadata']['name']}",
                COMPONENT,
            )
            return None

        ok, errors = slow_start_batch(diff, create)
        return active + ok, ready, terminating, aggregate(errors) if errors else None, None

    def _delete_pods(self, job: JSON, pods: list[JSON], keep_finalizer: bool) -> tuple[int, int, list[str]]:
        """``deleteActivePods`` (finalizers kept) / ``deleteJobPods`` (finalizer removed first)."""
        deleted = 0
        deleted_ready = 0
        errors: list[str] = []
        for p in pods:
            name = p["metadata"]["name"]
            if not keep_finalizer and has_finalizer(p) and not self._remove_finalizer(p):
                errors.append(f"removing completion finalizer: failed to update pod {name}")
                continue
            try:
                inject_fault(
                    self.cluster,
                    self.name,
                    "delete",
                    "pods",
                    p["metadata"]["namespace"],
                    name,
                    job["metadata"]["name"],
                )
                self.api.delete(self.pod_rt, p["metadata"]["namespace"], name)
            except StatusError as e:
                if e.code != 404:
                    record(
                        self.api,
                        job,
                        "Warning",
                        "FailedDelete",
                        f"Error deleting: {error_text(e)}",
                        COMPONENT,
                    )
                    errors.append(error_text(e))
                    continue
            else:
                record(self.api, job, "Normal", "SuccessfulDelete", f"Deleted pod: {name}", COMPONENT)
            deleted += 1
            if is_pod_ready(p):
                deleted_ready += 1
        return deleted_ready, deleted, errors

    # -- trackJobStatusAndRemoveFinalizers ------------------------------------------------------------
    def _track_and_remove_finalizers(
        self,
        job: JSON,
        status: JSON,
        pods: list[JSON],
        finished: JSON | None,
        terminating: int,
        rec: tuple[str, int, float | None],
        needs_flush: bool,
    ) -> None:
        uncounted = status.setdefault("uncountedTerminatedPods", {})
        with_finalizer = {p["metadata"]["uid"] for p in pods if has_finalizer(p)}
        if _clean_uncounted(status, with_finalizer):
            needs_flush = True
        to_remove: list[JSON] = []
        for p in pods:
            if not has_finalizer(p):
                continue
            uid = p["metadata"]["uid"]
            failed = is_pod_failed(p, job)
            can_remove = (
                bool(job["metadata"].get("deletionTimestamp"))
                or finished is not None
                or phase(p) == "Succeeded"
                or failed
            )
            if not can_remove:
                continue
            to_remove.append(p)
            if phase(p) == "Succeeded" and uid not in (uncounted.get("failed") or []):
                if uid not in (uncounted.get("succeeded") or []):
                    needs_flush = True
                    uncounted.setdefault("succeeded", []).append(uid)
            elif (
                failed or (finished is not None and finished["type"] != "SuccessCriteriaMet")
            ) and uid not in (uncounted.get("failed") or []):
                needs_flush = True
                uncounted.setdefault("failed", []).append(uid)
            if (
                len(uncounted.get("succeeded") or []) + len(uncounted.get("failed") or [])
                >= MAX_UNCOUNTED_PODS
            ):
                break
        conds = list(status.get("conditions") or [])
        if finished is not None and finished["type"] == "FailureTarget":
            # The interim FailureTarget condition goes first; Failed follows once the pods are counted.
            conds.append(finished)
            status["conditions"] = conds
            needs_flush = True
            finished = _cond("Failed", "True", finished["reason"], finished["message"])
        if finished is not None and finished["type"] == "SuccessCriteriaMet":
            if not any(c.get("type") == "SuccessCriteriaMet" for c in conds):
                conds.append(finished)
                status["conditions"] = conds
                needs_flush = True
            finished = _cond("Complete", "True", finished["reason"], finished["message"])
        # flushUncountedAndRemoveFinalizers
        if needs_flush:
            job = self._write_status(job, status)
            self._backoff_records[rec[0]] = (rec[1], rec[2])
            needs_flush = False
        rm_errors = []
        for p in to_remove:
            if self._remove_finalizer(p):
                with_finalizer.discard(p["metadata"]["uid"])
            else:
                rm_errors.append(f"removing tracking finalizer: pod {p['metadata']['name']}")
        if _clean_uncounted(status, with_finalizer):
            needs_flush = True
        if rm_errors:
            if needs_flush:
                self._write_status(job, status)
            raise SyncError(aggregate(rm_errors))
        # enactJobFinished
        job_finished = False
        if finished is not None:
            unc = status.get("uncountedTerminatedPods") or {}
            if not (unc.get("succeeded") or unc.get("failed")) and terminating == 0:
                conds, _ = _ensure_condition(
                    list(status.get("conditions") or []),
                    finished["type"],
                    "True",
                    finished["reason"],
                    finished["message"],
                )
                status["conditions"] = conds
                if finished["type"] == "Complete":
                    status["completionTime"] = next(c for c in conds if c["type"] == "Complete")[
                        "lastTransitionTime"
                    ]
                job_finished = True
                needs_flush = True
        if needs_flush:
            job = self._write_status(job, status)
            if job_finished:
                self._record_finished(job, finished)

    def _record_finished(self, job: JSON, finished: JSON | None) -> None:
        """``recordJobFinished``."""
        if finished is None:
            return
        if finished["type"] == "Complete":
            completions = (job.get("spec") or {}).get("completions")
            if completions is not None and int((job.get("status") or {}).get("succeeded") or 0) > int(
                completions
            ):
                record(
                    self.api, job, "Warning", "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached", COMPONENT,
                )  # fmt: skip
            record(self.api, job, "Normal", "Completed", "Job completed", COMPONENT)
        else:
            record(self.api, job, "Warning", finished["reason"], finished["message"], COMPONENT)

    def _write_status(self, job: JSON, status: JSON) -> JSON:
        """``updateJobStatus``: the whole status, zero counters left out as the Go encoder does."""
        out: JSON = {}
        for k, v in status.items():
            if k in ("active", "succeeded", "failed") and not v:
                continue
            if k == "conditions" and not v:
                continue
            if k == "uncountedTerminatedPods":
                v = {kk: vv for kk, vv in (v or {}).items() if vv}
            out[k] = v
        cur = deep_copy(job)
        cur["status"] = out
        cur["metadata"].pop("resourceVersion", None)
        try:
            return dict(
                self.api.update(
                    self.job_rt,
                    job["metadata"]["namespace"],
                    job["metadata"]["name"],
                    cur,
                    subresource="status",
                    internal_patch=True,
                ).obj
            )
        except StatusError as e:
            raise SyncError(error_text(e)) from None


def _clean_uncounted(status: JSON, with_finalizer: set[str]) -> bool:
    """``cleanUncountedPodsWithoutFinalizers``: uncounted pods whose finalizer is gone are counted."""
    unc = status.setdefault("uncountedTerminatedPods", {})
    updated = False
    for field, counter in (("succeeded", "succeeded"), ("failed", "failed")):
        uids = list(unc.get(field) or [])
        keep = [u for u in uids if u in with_finalizer]
        if len(keep) != len(uids):
            updated = True
            status[counter] = int(status.get(counter) or 0) + len(uids) - len(keep)
            unc[field] = keep
    return updated


def _ensure_condition(
    conds: list[JSON], type_: str, status: str, reason: str, message: str
) -> tuple[list[JSON], bool]:
    """``ensureJobConditionStatus``."""
    for i, c in enumerate(conds):
        if c.get("type") == type_:
            if c.get("status") != status or c.get("reason") != reason or c.get("message") != message:
                conds = [*conds[:i], _cond(type_, status, reason, message), *conds[i + 1 :]]
                return conds, True
            return conds, False
    if status == "False":
        return conds, False  # a False condition is only ever a change of an existing one
    return [*conds, _cond(type_, status, reason, message)], True


# == pkg/controller/ttlafterfinished ===========================================================
def finish_time(job: JSON) -> float | None:
    """``jobFinishTime``: the transition time of the Complete or Failed condition."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if (
            c.get("type") in ("Complete", "Failed")
            and c.get("status") == "True"
            and c.get("lastTransitionTime")
        ):
            return parse_time(c["lastTransitionTime"]).timestamp()
    return None


def needs_cleanup(job: JSON) -> bool:
    return (job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None and is_job_finished(job)


class TTLAfterFinishedController(Controller):
    name = "ttl-after-finished"

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(cluster)
        self.job_rt = self.api.resource("batch", "v1", "jobs")

    def keys_for(self, change: Change) -> Iterable[Hashable]:
        if (
            change.key == "batch/jobs"
            and change.type != "DELETED"
            and not change.obj["metadata"].get("deletionTimestamp")
            and needs_cleanup(change.obj)
        ):
            yield (change.obj["metadata"]["namespace"], change.obj["metadata"]["name"])

    def initial_keys(self) -> Iterable[Hashable]:
        for j in self.store.iter("batch/jobs"):
            if not j["metadata"].get("deletionTimestamp") and needs_cleanup(j):
                yield (j["metadata"]["namespace"], j["metadata"]["name"])

    def _time_left(self, job: JSON) -> float | None:
        """``processTTL``/``timeLeft``: None when the job needs no cleanup."""
        if not needs_cleanup(job):
            return None
        finished = finish_time(job)
        if finished is None:
            return None
        ttl = int((job.get("spec") or {}).get("ttlSecondsAfterFinished") or 0)
        return finished + ttl - time.time()

    async def reconcile(self, key: Hashable) -> float | None:
        ns, name = cast(tuple[str, str], key)
        job = self.api.get_or_none(self.job_rt, ns, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return None
        left = self._time_left(job)
        if left is None:
            return None
        if left > 0:
            return left
        # The TTL looks expired; a final check on a fresh read before deleting.
        fresh = self.api.get_or_none(self.job_rt, ns, name)
        if fresh is None:
            return None
        left = self._time_left(fresh)
        if left is None:
            return None
        if left > 0:
            return left
        opts: dict[str, Any] = {
            "propagationPolicy": "Foreground",
            "preconditions": {"uid": fresh["metadata"]["uid"]},
        }
        try:
            self.api.delete(self.job_rt, ns, name, opts)
        except StatusError as e:
            if e.code not in (404, 409):
                raise
        return None
