"""One reconciliation: observe the cluster, ask the planner, write the status, act.

The status is written *before* the actions are carried out (the planner relies on it): a crash
between the two leaves the intent recorded, and the next reconciliation repeats the action,
which is idempotent.
"""

from __future__ import annotations

import base64
import datetime as dt
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import structlog

from . import planner
from .cache import PROVISIONING_FAILED, SNAPSHOT_API, CachedReader
from .conditions import Reason
from .kube import ErrorKind, Kube, KubeError, Protected, ProtectedObjectError, Written
from .models import GROUP, LABEL_RESYNC_UID, PLURAL, VERSION, ClusterResyncSpec, ClusterResyncStatus
from .state import (
    Create,
    Delete,
    Exec,
    HookOutcome,
    Obj,
    Observed,
    Patch,
    Plan,
    Ref,
    Resync,
    SecretKey,
    pv_ref,
)

log = structlog.get_logger("clusterresync")

RESYNC_API = f"{GROUP}/{VERSION}"


def resync_ref(namespace: str, name: str) -> Ref:
    return Ref(RESYNC_API, "ClusterResync", PLURAL, name, namespace)


def parse_resync(body: Obj) -> Resync:
    m = body.get("metadata") or {}
    created = (
        planner.parse_ts(m["creationTimestamp"]) if m.get("creationTimestamp") else dt.datetime.now(dt.UTC)
    )
    status_raw = {
        k: v
        for k, v in (body.get("status") or {}).items()
        if k in ClusterResyncStatus.model_fields or k in _status_aliases()
    }
    return Resync(
        name=str(m["name"]),
        namespace=str(m.get("namespace", "")),
        uid=str(m.get("uid", "")),
        generation=int(m.get("generation") or 1),
        created=created,
        deleting=bool(m.get("deletionTimestamp")),
        spec=ClusterResyncSpec.model_validate(body.get("spec") or {}),
        status=ClusterResyncStatus.model_validate(status_raw),
    )


def _status_aliases() -> set[str]:
    return {f.alias or n for n, f in ClusterResyncStatus.model_fields.items()}


class Reader(Protocol):
    """Where observations come from: the live API (``Kube``) or the watch caches
    (``cache.CachedReader``), with the same two methods."""

    def get(self, ref: Ref) -> Obj | None: ...

    def list_objects(
        self,
        api_version: str,
        plural: str,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> list[Obj]: ...


def target_pods(reader: Reader, ns: str, target: Obj | None) -> tuple[dict[str, Obj], dict[str, list[str]]]:
    """The target's pods by name, and for every claim the pods of the namespace that use it."""
    pods: dict[str, Obj] = {}
    claim_users: dict[str, list[str]] = {}
    tuid = (target.get("metadata") or {}).get("uid") if target is not None else None
    # Every pod of the namespace: the target's are those it controls; the others tell which
    # claims are shared (a claim used by another pod is never swapped).
    for p in reader.list_objects("v1", "pods", ns):
        pname = p["metadata"]["name"]
        for v in (p.get("spec") or {}).get("volumes") or []:
            if v.get("persistentVolumeClaim"):
                claim_users.setdefault(str(v["persistentVolumeClaim"].get("claimName")), []).append(pname)
        owners = (p.get("metadata") or {}).get("ownerReferences") or []
        if tuid and any(o.get("uid") == tuid and o.get("controller") for o in owners):
            pods[pname] = p
    return pods, claim_users


def target_ref(resync: Resync) -> Ref:
    return Ref("apps/v1", "StatefulSet", "statefulsets", resync.spec.target.name, resync.namespace)


def referenced_volumes(
    resync: Resync, claims: dict[str, Obj], replicas: Iterable[str] | None = None
) -> set[str]:
    """The PersistentVolumes a resync depends on by name: the primary's, the old and restored
    ones its status records (of ``replicas`` only, if given), and those its own claims and the
    target's claims it records are bound to."""
    status = resync.status
    names: set[str] = set(v for v in status.primary.volumes.values() if v) if status.primary else set()
    claim_names: set[str] = set(status.primary.claims.values()) if status.primary else set()
    for r in status.replicas:
        if replicas is None or r.name in replicas:
            for v in r.volumes:
                names.update(x for x in (v.old_pv, v.new_pv) if x)
                claim_names.update(x for x in (v.claim, v.staging_claim) if x)
    for name, c in claims.items():
        ours = ((c.get("metadata") or {}).get("labels") or {}).get(LABEL_RESYNC_UID) == resync.uid
        vol = (c.get("spec") or {}).get("volumeName")
        if vol and (name in claim_names or (ours and replicas is None)):
            names.add(str(vol))
    return names


def observe(reader: Reader, resync: Resync, now: dt.datetime | None = None) -> Observed:
    """What the planner sees. From watch caches (``reader`` a ``CachedReader``), an object that a
    cache lacks but another object or the status names is read live: caches of different
    resources are not in step (a claim is seen bound before its new volume is seen), and absence
    is never concluded from a lag."""
    ns = resync.namespace
    live = reader.live if isinstance(reader, CachedReader) else None
    target = reader.get(target_ref(resync))
    if target is None and live is not None:
        target = live.get(target_ref(resync))
    pods, claim_users = target_pods(reader, ns, target)
    claims = {c["metadata"]["name"]: c for c in reader.list_objects("v1", "persistentvolumeclaims", ns)}
    pvs = {p["metadata"]["name"]: p for p in reader.list_objects("v1", "persistentvolumes")}
    if live is not None:
        for name in sorted(referenced_volumes(resync, claims) - pvs.keys()):
            pv = live.get(pv_ref(name))
            if pv is not None:
                pvs[name] = pv
    label = f"{LABEL_RESYNC_UID}={resync.uid}"
    # The snapshot API is optional (method: Clone does without it): its absence is observed,
    # and refused by preflight only where a snapshot is needed.
    snapshot_api = True
    try:
        snapshots = {
            s["metadata"]["name"]: s
            for s in reader.list_objects(
                "snapshot.storage.k8s.io/v1", "volumesnapshots", ns, label_selector=label
            )
        }
        snapshot_classes = reader.list_objects("snapshot.storage.k8s.io/v1", "volumesnapshotclasses")
    except KubeError as e:
        if e.kind != ErrorKind.MISSING_API:
            raise
        snapshot_api, snapshots, snapshot_classes = False, {}, []
    jobs = {
        j["metadata"]["name"]: j for j in reader.list_objects("batch/v1", "jobs", ns, label_selector=label)
    }
    staging = {
        c
        for c, o in claims.items()
        if ((o.get("metadata") or {}).get("labels") or {}).get(LABEL_RESYNC_UID) == resync.uid
    }
    warnings: dict[str, str] = {}
    if staging:
        events = reader.list_objects(
            "v1",
            "events",
            ns,
            field_selector=PROVISIONING_FAILED,
        )
        events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
        for ev in events:
            name = str((ev.get("involvedObject") or {}).get("name", ""))
            if name in staging and (ev.get("involvedObject") or {}).get("uid") == claims[name][
                "metadata"
            ].get("uid"):
                warnings[name] = str(ev.get("message", ""))
    return Observed(
        now=now or dt.datetime.now(dt.UTC),
        resync=resync,
        target=target,
        pods=pods,
        claims=claims,
        pvs=pvs,
        snapshots=snapshots,
        snapshot_classes=snapshot_classes,
        snapshot_api=snapshot_api,
        storage_classes={
            s["metadata"]["name"]: s for s in reader.list_objects("storage.k8s.io/v1", "storageclasses")
        },
        csi_drivers={d["metadata"]["name"] for d in reader.list_objects("storage.k8s.io/v1", "csidrivers")},
        nodes={n["metadata"]["name"]: n for n in reader.list_objects("v1", "nodes")},
        jobs=jobs,
        other_resyncs=[
            r
            for r in reader.list_objects(RESYNC_API, PLURAL, ns)
            if (r.get("metadata") or {}).get("uid") != resync.uid
        ],
        claim_warnings=warnings,
        claim_users=claim_users,
        namespace_terminating=_namespace_terminating(reader, ns) if resync.deleting else False,
    )


def _namespace_terminating(kube: Reader, ns: str) -> bool:
    try:
        obj = kube.get(Ref("v1", "Namespace", "namespaces", ns))
    except KubeError as e:
        log.warning("cannot tell whether the namespace is being deleted", namespace=ns, error=str(e))
        return False
    return obj is None or bool((obj.get("metadata") or {}).get("deletionTimestamp"))


@dataclass
class Outcome:
    plan: Plan
    status: ClusterResyncStatus
    # The status write met a newer version of the object (another writer, or a change by a
    # user): nothing was acted on; observe again and plan again at once.
    replan_now: bool = False
    # Every write the API accepted during the reconciliation (status, actions, Events): the
    # caller waits for its watch caches to reflect them before it plans again.
    writes: list[Written] = field(default_factory=list)
    # The pass met an API error or refusal: wait this long before the next one, whatever
    # changes meanwhile (retrying at once would hammer a failing API server).
    pause: float | None = None

    @property
    def requeue_after(self) -> float | None:
        return self.plan.requeue_after

    @property
    def finished(self) -> bool:
        """Completed or Failed, and nothing left to do: the daemon can end."""
        return self.plan.requeue_after is None and self.status.phase in ("Completed", "Failed")


def status_body(status: ClusterResyncStatus) -> dict[str, Any]:
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


def merge_diff(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: removed keys become null,
    so that a field the planner cleared is cleared on the server too."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    out: dict[str, Any] = {}
    for k, v in new.items():
        if k not in old:
            out[k] = v
        elif old[k] != v:
            out[k] = merge_diff(old[k], v) if isinstance(v, dict) and isinstance(old[k], dict) else v
    for k in old:
        if k not in new:
            out[k] = None
    return out


def protected_of(obs: Observed, status: ClusterResyncStatus) -> Protected:
    """The primary's objects, as recorded at preflight and as observed now (a pod the primary
    selector or podName points at, its claims and their volumes): the adapter refuses any write to them."""
    spec = obs.resync.spec
    pods: set[str] = set()
    claims: set[str] = set()
    pvs: set[str] = set()
    if status.primary is not None:
        pods.add(status.primary.pod_name)
        claims.update(status.primary.claims.values())
        pvs.update(v for v in status.primary.volumes.values() if v)
    for name, pod in obs.pods.items():
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if name == spec.primary.pod_name or (
            spec.primary.selector is not None and planner.labels_match(spec.primary.selector, labels)
        ):
            pods.add(name)
    for name in list(pods):
        for v in ((obs.pods.get(name) or {}).get("spec") or {}).get("volumes") or []:
            if v.get("persistentVolumeClaim"):
                claims.add(str(v["persistentVolumeClaim"].get("claimName")))
    for c in claims:
        vol = ((obs.claims.get(c) or {}).get("spec") or {}).get("volumeName")
        if vol:
            pvs.add(str(vol))
    return Protected(obs.resync.namespace, frozenset(pods), frozenset(claims), frozenset(pvs))


def decisions(before: ClusterResyncStatus, after: ClusterResyncStatus) -> list[str] | None:
    """The irreversible decisions of a plan, which are made again from a live read: the replicas
    it takes out of service (Swapping), fails, skips or rolls back, newly; all of them if it fails
    the resync. None if it decides nothing of the kind."""
    was = {r.name: r.phase for r in before.replicas}
    names = [
        r.name
        for r in after.replicas
        if r.phase in ("Swapping", "Failed", "Skipped", "RollingBack") and was.get(r.name) != r.phase
    ]
    if after.phase == "Failed" and before.phase != "Failed":
        return [r.name for r in after.replicas]
    return names or None


def observe_live(kube: Reader, obs: Observed, names: list[str]) -> Observed:
    """``obs`` with what decides the fate of replicas ``names`` read live: the target, the
    namespace's pods (the primary among them, and who uses each claim) and claims, this resync's
    snapshots and Jobs, and the volumes of the primary and of those replicas (current, old and
    restored). Namespaced lists and GETs: never a cluster-wide list."""
    resync = obs.resync
    ns = resync.namespace
    target = kube.get(target_ref(resync))
    pods, claim_users = target_pods(kube, ns, target)
    claims = {c["metadata"]["name"]: c for c in kube.list_objects("v1", "persistentvolumeclaims", ns)}
    label = f"{LABEL_RESYNC_UID}={resync.uid}"
    jobs = {j["metadata"]["name"]: j for j in kube.list_objects("batch/v1", "jobs", ns, label_selector=label)}
    snapshots = obs.snapshots
    if obs.snapshot_api:
        snapshots = {
            x["metadata"]["name"]: x
            for x in kube.list_objects(SNAPSHOT_API, "volumesnapshots", ns, label_selector=label)
        }
    pvs = dict(obs.pvs)
    # Those of the replicas decided on, and any other the live claims name that the cache lacks.
    wanted = referenced_volumes(resync, claims, names) | (referenced_volumes(resync, claims) - pvs.keys())
    for name in sorted(wanted):
        pv = kube.get(pv_ref(name))
        if pv is None:
            pvs.pop(name, None)
        else:
            pvs[name] = pv
    return replace(
        obs,
        now=dt.datetime.now(dt.UTC),
        target=target,
        pods=pods,
        claim_users=claim_users,
        claims=claims,
        pvs=pvs,
        jobs=jobs,
        snapshots=snapshots,
    )


def reconcile(kube: Kube, body: Obj, reader: Reader | None = None) -> Outcome:
    """Observe (through ``reader``: the watch caches; by default the live API), plan, write the
    status (with the resourceVersion it was planned from), act. A plan that takes a replica out
    of service, or fails a replica or the resync, is made again from a live read of what decides
    it before anything is written (``decisions``, ``observe_live``)."""
    writes: list[Written] = []
    outcome = _reconcile(kube.recording(writes), body, reader)
    outcome.writes = writes
    return outcome


def _reconcile(kube: Kube, body: Obj, reader: Reader | None) -> Outcome:
    resync = parse_resync(body)
    rv = str((body.get("metadata") or {}).get("resourceVersion") or "") or None
    logger = log.bind(resync=resync.name, namespace=resync.namespace, target=resync.spec.target.name)
    try:
        obs = observe(reader if reader is not None else kube, resync)
    except KubeError as e:
        return _api_failure(kube, body, resync, rv, e, logger)
    ref = resync_ref(resync.namespace, resync.name)
    written_status = resync.status
    # What the server holds, as it holds it: a field the parsed status has only by default (the
    # phase Pending of a new resync) is written too.
    written_body: dict[str, Any] = dict(body.get("status") or {})

    def write(status: ClusterResyncStatus) -> bool:
        """The status, as a merge patch conditional on the resourceVersion planned from. False
        on a conflict: something else wrote meanwhile; nothing may be acted on."""
        nonlocal rv, written_status, written_body
        new_body = status_body(status)
        if new_body == written_body:
            written_status = status
            return True
        try:
            out = kube.patch_status(
                ref,
                {"status": merge_diff(written_body, new_body)},
                resource_version=rv,
            )
        except KubeError as e:
            if e.kind == ErrorKind.CONFLICT:
                logger.info("status changed meanwhile: planning again from a fresh observation")
                return False
            raise
        rv = str((out.get("metadata") or {}).get("resourceVersion") or "") or rv
        written_status, written_body = status, new_body
        return True

    outcomes: dict[str, HookOutcome] = {}
    try:
        for _ in range(4):
            result = planner.plan(replace(obs, hook_outcomes=outcomes))
            execs = [a for a in result.actions if isinstance(a, Exec)]
            if not execs:
                break
            # A hook runs only under a status this writer could record: two writers, or a write
            # that lost a race, never run it twice.
            if not write(result.status):
                return Outcome(result, written_status, replan_now=True)
            for a in execs:
                # The hook's output may hold secrets: it is never logged.
                logger.info("running hook", hook=a.hook, pod=a.pod)
                outcomes[a.hook] = run_exec(kube, obs.pods, a)
                logger.info(
                    "hook finished", hook=a.hook, ok=outcomes[a.hook].ok, exit_code=outcomes[a.hook].exit_code
                )
        decided = decisions(resync.status, result.status) if reader is not None else None
        if decided is not None:
            # Before replicas go out of service, or a replica or the resync fails: the caches
            # may lag, so what decides it is read live, and the plan made again from that.
            obs = observe_live(kube, obs, decided)
            result = planner.plan(replace(obs, hook_outcomes=outcomes))
            again = decisions(resync.status, result.status)
            if again != decided:
                logger.info("a live read changed the decision", planned=decided, decided=again)
        if not write(result.status):
            return Outcome(result, written_status, replan_now=True)
    except KubeError as e:
        return _api_failure(kube, body, replace(resync, status=written_status), rv, e, logger)
    # Logged once recorded: a pass whose status write was refused (fenced, a conflict) says nothing.
    if result.status.phase != resync.status.phase:
        logger.info("phase", phase=result.status.phase, previous=resync.status.phase)
    before = {r.name: r.phase for r in resync.status.replicas}
    for r in result.status.replicas:
        if before.get(r.name) != r.phase:
            logger.info(
                "replica phase",
                replica=r.name,
                phase=r.phase,
                previous=before.get(r.name),
                message=r.message,
            )
    for ev in result.events:
        post_event(kube, body, ev.type, ev.reason, ev.message)
        logger.info("event", reason=ev.reason, message=ev.message)
    guarded = kube.guarded(protected_of(obs, result.status))
    try:
        for action in result.actions:
            apply(guarded, action, logger)
    except NameConflictError as e:
        logger.error("name conflict", error=str(e))
        return _fail_now(
            kube, body, replace(resync, status=result.status), rv, Reason.NAME_CONFLICT, str(e), logger
        )
    except ProtectedObjectError as e:
        logger.error("refused a write to the primary", error=str(e))
        return _fail_now(
            kube,
            body,
            replace(resync, status=result.status),
            rv,
            Reason.PRIMARY_PROTECTED,
            f"{e}; the resync stopped: the primary is never written to (a bug: please report it)",
            logger,
        )
    except KubeError as e:
        if e.kind == ErrorKind.CONFLICT:
            logger.info("an object changed meanwhile: planning again from a fresh observation", object=e.what)
            return Outcome(result, result.status, replan_now=True)
        return _api_failure(kube, body, replace(resync, status=result.status), rv, e, logger)
    if result.delete_self_after is not None and result.delete_self_after <= 0:
        # spec.ttlSecondsAfterFinished is up: this very object, and no other of the same name.
        try:
            kube.delete(resync_ref(resync.namespace, resync.name), resync.uid)
        except KubeError as e:
            logger.warning("could not delete the finished resync (ttlSecondsAfterFinished)", error=str(e))
            return Outcome(replace(result, requeue_after=TRANSIENT_RETRY_SECONDS), result.status)
        logger.info("deleted: ttlSecondsAfterFinished is up")
    return Outcome(result, result.status)


def run_exec(kube: Kube, pods: dict[str, Obj], a: Exec) -> HookOutcome:
    """An Exec action's outcome: its command in the pod (with a Secret on stdin, masked in what
    comes back), or its HTTP GET on the pod. Never raises for the command's own failure."""
    if a.http_get is not None:
        return http_get(pods.get(a.pod), a.http_get, a.timeout_seconds)
    stdin, refused = secret_value(kube, a.namespace, a.stdin_secret)
    if refused is not None:
        return refused
    return scrubbed(
        kube.exec(a.namespace, a.pod, a.container, list(a.command), a.timeout_seconds, stdin), stdin
    )


def http_get(pod: Obj | None, target: tuple[str, int, str], timeout: int) -> HookOutcome:
    """GET ``scheme://<pod IP>:port/path`` (the HTTP probe): the body as stdout, the status as the
    exit code; no answer is an outcome without one. Redirects are not followed."""
    scheme, port, path = target
    ip = str(((pod or {}).get("status") or {}).get("podIP") or "")
    if not ip:
        return HookOutcome(False, None, "", error="the pod has no IP yet")
    host = f"[{ip}]" if ":" in ip else ip
    url = f"{scheme}://{host}:{port}{path}"
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=timeout) as resp:
            body = resp.read(64 * 1024 + 1).decode(errors="replace")
            return HookOutcome(True, int(resp.status), body, stdout=body)
    except urllib.error.HTTPError as e:
        body = e.read(4096).decode(errors="replace")
        return HookOutcome(False, int(e.code), body, stdout=body)
    except (OSError, ValueError) as e:
        return HookOutcome(False, None, "", error=f"GET {scheme}://<pod IP>:{port}{path}: {e}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def scrubbed(outcome: HookOutcome, secret: str | None) -> HookOutcome:
    """The outcome with every occurrence of ``secret`` masked: what a command echoed of the
    password it was given never reaches the planner, the status or a log."""
    if not secret:
        return outcome
    return replace(
        outcome,
        output=outcome.output.replace(secret, "***"),
        stdout=outcome.stdout.replace(secret, "***"),
        stderr=outcome.stderr.replace(secret, "***"),
        error=outcome.error.replace(secret, "***"),
    )


def secret_value(kube: Kube, namespace: str, ref: SecretKey | None) -> tuple[str | None, HookOutcome | None]:
    """The value of a Secret's key, for an exec's standard input; or the failed outcome saying why
    it cannot be had (named, never the value). Read live, never cached, never logged."""
    if ref is None:
        return None, None
    what = f"Secret {namespace}/{ref.name}"
    try:
        secret = kube.get(Ref("v1", "Secret", "secrets", ref.name, namespace))
    except KubeError as e:
        why = (
            f"the operator may not read {what} (RBAC): grant it get on that Secret (docs/probes.md#credentials)"
            if e.kind == ErrorKind.FORBIDDEN
            else f"could not read {what}: {e.message}"
        )
        return None, HookOutcome(False, None, "", error=why)
    raw = ((secret or {}).get("data") or {}).get(ref.key)
    if secret is None or raw is None:
        missing = f"{what} not found" if secret is None else f"{what} has no key {ref.key}"
        return None, HookOutcome(False, None, "", error=missing)
    try:
        return base64.b64decode(raw).decode(), None
    except (ValueError, UnicodeDecodeError):
        return None, HookOutcome(False, None, "", error=f"{what} key {ref.key} is not UTF-8 text")


class NameConflictError(Exception):
    """A create met an object of the same name that is not this resync's: it is never adopted."""


def apply(kube: Kube, action: object, logger: Any) -> None:
    if isinstance(action, Create):
        created = kube.create(action.ref, action.body)
        if created is None:
            # Idempotent only if what exists is ours (a crash between create and status write):
            # identity is the uid label, never the name.
            want = ((action.body.get("metadata") or {}).get("labels") or {}).get(LABEL_RESYNC_UID)
            # A list by name, not a get: the operator lists what it creates anyway (least privilege).
            found = kube.list_objects(
                action.ref.api_version,
                action.ref.plural,
                action.ref.namespace,
                field_selector=f"metadata.name={action.ref.name}",
            )
            existing = found[0] if found else None
            has = (((existing or {}).get("metadata") or {}).get("labels") or {}).get(LABEL_RESYNC_UID)
            if want and existing is not None and has != want:
                raise NameConflictError(
                    f"{action.ref} exists and is not this resync's (its {LABEL_RESYNC_UID} label is "
                    f"{has or 'absent'}): it was not adopted, nor changed"
                )
        logger.info("created" if created is not None else "already exists", object=str(action.ref))
    elif isinstance(action, Patch):
        kube.patch(action.ref, action.patch, action.content_type)
        logger.info("patched", object=str(action.ref))
    elif isinstance(action, Delete):
        gone = kube.delete(action.ref, action.uid, action.propagation)
        logger.info("deleted" if gone else "nothing to delete", object=str(action.ref))


# Refusals of the API server, by kind, and the reason the resync reports them with.
_REASONS: dict[ErrorKind, Reason] = {
    ErrorKind.FORBIDDEN: Reason.FORBIDDEN,
    ErrorKind.QUOTA: Reason.QUOTA_EXCEEDED,
    ErrorKind.ADMISSION: Reason.ADMISSION_DENIED,
    ErrorKind.NAMESPACE_TERMINATING: Reason.NAMESPACE_TERMINATING,
    ErrorKind.MISSING_API: Reason.MISSING_API,
}
TRANSIENT_RETRY_SECONDS = 5.0


def _api_failure(kube: Kube, body: Obj, resync: Resync, rv: str | None, e: KubeError, logger: Any) -> Outcome:
    """An error the adapter did not absorb. Transient ones (the adapter already retried) and
    conflicts keep the resync's place and are retried; a refusal fails the resync with a named
    reason and the server's message -- unless a swap is in flight, which is never abandoned: then
    the refusal is shown in Progressing and retried until it is lifted."""
    if e.kind == ErrorKind.CONFLICT:
        return Outcome(Plan(resync.status), resync.status, replan_now=True)
    b = planner.Builder(_empty_observation(resync))
    in_flight = any(r.phase in planner.IN_FLIGHT for r in resync.status.replicas)
    if e.kind == ErrorKind.FORBIDDEN:
        message = f"the operator is not allowed to {e.verb} {e.what} (RBAC): {e.message}"
    else:
        message = f"could not {e.verb} {e.what}: {e.message}"
    if e.kind == ErrorKind.TRANSIENT or (in_flight and resync.status.phase not in planner.FINISHED):
        delay = max(e.retry_after or 0.0, TRANSIENT_RETRY_SECONDS)
        reason = Reason.RETRYING if e.kind == ErrorKind.TRANSIENT else _REASONS.get(e.kind, Reason.API_ERROR)
        what = (
            "a swap is in flight: retrying until it is allowed"
            if e.kind != ErrorKind.TRANSIENT
            else "retrying"
        )
        logger.warning("api error", kind=str(e.kind), error=message, retry_in=delay)
        if resync.status.phase not in planner.FINISHED:
            b.progressing(reason, f"{message} ({what} in {delay:.0f}s)")
        b.again(delay)
    else:
        reason = _REASONS.get(e.kind, Reason.API_ERROR)
        logger.error("api refusal", kind=str(e.kind), error=message)
        b.fail(reason, message)
        b.again(TRANSIENT_RETRY_SECONDS)  # keep cleaning up what was created before the refusal
    return _write_fallback(kube, body, resync, rv, b, logger)


def _fail_now(
    kube: Kube, body: Obj, resync: Resync, rv: str | None, reason: Reason, message: str, logger: Any
) -> Outcome:
    b = planner.Builder(_empty_observation(resync))
    b.fail(reason, message)
    b.again(TRANSIENT_RETRY_SECONDS)
    return _write_fallback(kube, body, resync, rv, b, logger)


def _write_fallback(
    kube: Kube, body: Obj, resync: Resync, rv: str | None, b: planner.Builder, logger: Any
) -> Outcome:
    plan = b.plan()
    if plan.status == resync.status:
        return Outcome(plan, plan.status, pause=plan.requeue_after)
    try:
        kube.patch_status(
            resync_ref(resync.namespace, resync.name),
            {"status": merge_diff(status_body(resync.status), status_body(plan.status))},
            resource_version=rv,
        )
    except KubeError as e2:
        if e2.kind == ErrorKind.CONFLICT:
            return Outcome(plan, resync.status, replan_now=True)
        logger.error("cannot report the error in the status", error=str(e2))
        return Outcome(plan, resync.status, pause=plan.requeue_after)
    for ev in plan.events:
        post_event(kube, body, ev.type, ev.reason, ev.message)
    return Outcome(plan, plan.status, pause=plan.requeue_after)


def _empty_observation(resync: Resync) -> Observed:
    return Observed(
        now=dt.datetime.now(dt.UTC),
        resync=resync,
        target=None,
        pods={},
        claims={},
        pvs={},
        snapshots={},
        snapshot_classes=[],
        storage_classes={},
        csi_drivers=set(),
        nodes={},
        jobs={},
        other_resyncs=[],
    )


def post_event(kube: Kube, body: Obj, type_: str, reason: str, message: str) -> None:
    """An Event about ``body`` (a ClusterResync or a ResyncPolicy)."""
    m = body.get("metadata") or {}
    now = dt.datetime.now(dt.UTC)
    ev = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{m.get('name')}.", "namespace": m.get("namespace")},
        "involvedObject": {
            "apiVersion": RESYNC_API,
            "kind": str(body.get("kind") or "ClusterResync"),
            "name": m.get("name"),
            "namespace": m.get("namespace"),
            "uid": m.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "clusterresync-operator"},
        "reportingComponent": "clusterresync.io/operator",
        "reportingInstance": "clusterresync-operator",
        "firstTimestamp": planner.ts(now),
        "lastTimestamp": planner.ts(now),
        "count": 1,
    }
    try:
        kube.create(Ref("v1", "Event", "events", "", str(m.get("namespace", ""))), ev)
    except KubeError as e:
        log.warning("could not post an event", reason=reason, error=str(e))
