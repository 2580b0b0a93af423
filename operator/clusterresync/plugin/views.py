"""What ``kubectl resync`` shows, as pure functions of the API objects (no I/O).

Every command builds a list of :class:`Block` (key/value fields or a table) from the objects it
read; ``render`` prints them as a plain kubectl-style table or a rich one. Keeping this pure lets
the unit tests check every column and every kubectl command the plugin suggests.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..models import (
    ANNOTATION_ORIGINAL_RECLAIM_POLICY,
    GROUP,
    LABEL_REPLICA,
    LABEL_RESYNC,
    LABEL_RESYNC_UID,
    LABEL_VOLUME,
    LABEL_VOLUME_ROLE,
    VERSION,
)

Obj = dict[str, Any]
API_VERSION = f"{GROUP}/{VERSION}"
FINISHED = ("Completed", "Failed")
NONE = "-"  # an empty cell: plain tables stay splittable on whitespace


class UsageError(ValueError):
    """A command line that cannot be run (exit code 2)."""


@dataclass(frozen=True)
class Fields:
    """``Key: value`` lines."""

    items: list[tuple[str, str]]
    title: str = ""


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]
    title: str = ""
    empty: str = ""  # said instead of an empty table


@dataclass(frozen=True)
class Lines:
    lines: list[str] = field(default_factory=list)
    title: str = ""


Block = Fields | Table | Lines


# -- small helpers -----------------------------------------------------------------------------
def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """apimachinery's ``duration.HumanDuration``: the AGE column of kubectl."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None, now: datetime) -> str:
    t = parse_time(timestamp)
    return NONE if t is None else human_duration((now - t).total_seconds())


def cell(value: object) -> str:
    if value is None or value == "":
        return NONE
    return str(value)


def csv(value: str) -> list[str]:
    """``a,b,,c`` → ``[a, b, c]`` (an option's comma-separated list)."""
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_selector(value: str) -> dict[str, str]:
    """``k=v[,k2=v2]`` → matchLabels. Only equality: the selector must match the primary alone."""
    labels: dict[str, str] = {}
    for part in csv(value):
        key, sep, val = part.partition("=")
        if val.startswith("="):  # k==v, as kubectl -l accepts
            val = val[1:]
        if not sep or not key.strip() or "!" in key:
            raise UsageError(f"--primary-selector: {part!r} is not key=value")
        labels[key.strip()] = val.strip()
    if not labels:
        raise UsageError("--primary-selector: give at least one key=value")
    return labels


def conditions(obj: Mapping[str, Any]) -> dict[str, Obj]:
    return {c.get("type", ""): c for c in (obj.get("status") or {}).get("conditions") or []}


def true_reason(obj: Mapping[str, Any]) -> str:
    """The reason of the condition that is True: Failed or Complete once finished, else
    Progressing (the REASON column of ``kubectl get crsync``)."""
    conds = conditions(obj)
    for t in ("Failed", "Complete", "Progressing"):
        c = conds.get(t)
        if c and c.get("status") == "True":
            return str(c.get("reason", ""))
    return ""


def phase(obj: Mapping[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase") or "")


def name_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


# -- start -------------------------------------------------------------------------------------
def resync_body(
    target: str,
    *,
    volumes: Sequence[str],
    primary_pod: str | None = None,
    primary_selector: Mapping[str, str] | None = None,
    replicas: Sequence[str] = (),
    force: bool = False,
    dry_run: bool = False,
    suspend: bool = False,
    method: str | None = None,
    max_parallel: int | None = None,
    old_volumes: str | None = None,
    primary_stable_seconds: int | None = None,
) -> Obj:
    """The ClusterResync ``start`` creates: named ``<target>-<random>`` by the API server."""
    if (primary_pod is None) == (primary_selector is None):
        raise UsageError("give exactly one of --primary POD and --primary-selector KEY=VALUE")
    if not volumes:
        raise UsageError("no volumes to resync")
    primary: Obj = (
        {"podName": primary_pod}
        if primary_pod
        else {"selector": {"matchLabels": dict(primary_selector or {})}}
    )
    spec: Obj = {"target": {"name": target}, "primary": primary, "volumes": list(volumes)}
    if replicas:
        spec["replicas"] = list(replicas)
    for key, value in (
        ("method", method),
        ("maxParallel", max_parallel),
        ("oldVolumes", old_volumes),
        ("primaryStableSeconds", primary_stable_seconds),
    ):
        if value is not None:
            spec[key] = value
    for key, flag in (("force", force), ("dryRun", dry_run), ("suspend", suspend)):
        if flag:
            spec[key] = True
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterResync",
        "metadata": {"generateName": f"{target}-"},
        "spec": spec,
    }


def claim_template_names(statefulset: Mapping[str, Any]) -> list[str]:
    """The default of ``--volumes``: every volumeClaimTemplate of the target."""
    templates = (statefulset.get("spec") or {}).get("volumeClaimTemplates") or []
    return [str(t["metadata"]["name"]) for t in templates if (t.get("metadata") or {}).get("name")]


# -- status ------------------------------------------------------------------------------------
def resync_list(items: Sequence[Mapping[str, Any]], now: datetime) -> Table:
    rows = []
    for o in sorted(
        items, key=lambda o: ((o.get("metadata") or {}).get("creationTimestamp") or "", name_of(o))
    ):
        st = o.get("status") or {}
        rows.append(
            [
                name_of(o),
                cell(((o.get("spec") or {}).get("target") or {}).get("name")),
                cell(st.get("phase")),
                cell(st.get("progress")),
                cell(true_reason(o)),
                age((o.get("metadata") or {}).get("creationTimestamp"), now),
            ]
        )
    return Table(
        ["NAME", "TARGET", "PHASE", "PROGRESS", "REASON", "AGE"], rows, empty="No ClusterResyncs found."
    )


def _pvs(volumes: Sequence[Mapping[str, Any]], key: str) -> str:
    named = [(str(v.get("volume", "")), v.get(key)) for v in volumes]
    if len(named) == 1:
        return cell(named[0][1])
    return cell(" ".join(f"{vol}:{pv}" for vol, pv in named if pv))


def lag(p: Mapping[str, Any]) -> str:
    parts = []
    if p.get("lagBytes") is not None:
        parts.append(f"{p['lagBytes']}B")
    if p.get("lagSeconds") is not None:
        parts.append(f"{p['lagSeconds']}s")
    return "/".join(parts) or NONE


def condition_table(obj: Mapping[str, Any], now: datetime) -> Table:
    rows = [
        [
            cell(c.get("type")),
            cell(c.get("status")),
            cell(c.get("reason")),
            age(c.get("lastTransitionTime"), now),
            cell(c.get("message")),
        ]
        for c in (obj.get("status") or {}).get("conditions") or []
    ]
    return Table(
        ["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], rows, title="Conditions", empty="No conditions yet."
    )


def resync_detail(obj: Mapping[str, Any], now: datetime) -> list[Block]:
    spec = obj.get("spec") or {}
    st = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    primary = (st.get("primary") or {}).get("podName") or (spec.get("primary") or {}).get("podName")
    if not primary:
        selector = ((spec.get("primary") or {}).get("selector") or {}).get("matchLabels") or {}
        primary = ",".join(f"{k}={v}" for k, v in selector.items()) or "(selector)"
    flags = [
        f
        for f, on in (
            ("dryRun", spec.get("dryRun")),
            ("suspend", spec.get("suspend")),
            ("force", spec.get("force")),
        )
        if on
    ]
    fields = Fields(
        [
            ("Name", name_of(obj)),
            ("Namespace", cell(meta.get("namespace"))),
            ("Target", cell((spec.get("target") or {}).get("name"))),
            ("Primary", cell(primary)),
            ("Volumes", ", ".join(spec.get("volumes") or []) or NONE),
            ("Phase", cell(st.get("phase") or "(no status yet)")),
            ("Progress", cell(st.get("progress"))),
            ("Reason", cell(true_reason(obj))),
            ("Flags", ", ".join(flags) or NONE),
            ("Started", cell(st.get("startedAt"))),
            ("Finished", cell(st.get("completedAt"))),
            ("Age", age(meta.get("creationTimestamp"), now)),
        ]
    )
    if st.get("waitingFor"):
        fields.items.append(("Waiting for", str(st["waitingFor"])))
    replicas = Table(
        ["REPLICA", "PHASE", "REASON", "OLD PV", "NEW PV"],
        [
            [
                cell(r.get("name")),
                cell(r.get("phase")),
                cell(r.get("reason")),
                _pvs(r.get("volumes") or [], "oldPv"),
                _pvs(r.get("volumes") or [], "newPv"),
            ]
            for r in st.get("replicas") or []
        ],
        title="Replicas",
        empty="No replicas yet (preflight has not passed).",
    )
    blocks: list[Block] = [fields, replicas, condition_table(obj, now)]
    messages = [
        f"{r['name']}: {r['message']}"
        for r in st.get("replicas") or []
        if r.get("message") and r.get("phase") in ("Failed", "Skipped", "RollingBack")
    ]
    if messages:
        blocks.append(Lines(messages, title="Replica messages"))
    probes = st.get("probes") or []
    if probes or spec.get("probe"):
        blocks.append(
            Table(
                ["STAGE", "POD", "VERDICT", "ROLE", "LAG", "REASON", "OBSERVED"],
                [
                    [
                        cell(p.get("stage")),
                        cell(p.get("pod")),
                        cell(p.get("verdict")),
                        cell(p.get("role")),
                        lag(p),
                        cell(p.get("reason")),
                        cell(p.get("observedAt")),
                    ]
                    for p in probes
                ],
                title="Probes",
                empty="No probe verdicts yet.",
            )
        )
    if st.get("plan"):
        blocks.append(
            Table(
                ["REPLICA", "ACTION"],
                [[cell(a.get("replica")), cell(a.get("action"))] for a in st["plan"]],
                title="Plan (dry run: nothing was done)",
            )
        )
    return blocks


# -- watch -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    done: bool
    ok: bool
    reason: str = ""
    message: str = ""


def outcome(obj: Mapping[str, Any]) -> Outcome:
    """Finished or not, and how: the Complete or Failed condition (the phase as a fallback)."""
    conds = conditions(obj)
    for t, ok in (("Failed", False), ("Complete", True)):
        c = conds.get(t)
        if c and c.get("status") == "True":
            return Outcome(True, ok, str(c.get("reason", "")), str(c.get("message", "")))
    p = phase(obj)
    if p in FINISHED:
        return Outcome(True, p == "Completed")
    return Outcome(False, False)


def summary(obj: Mapping[str, Any]) -> str:
    o = outcome(obj)
    word = "Completed" if o.ok else "Failed"
    text = f"clusterresync {name_of(obj)} {word}"
    if o.reason:
        text += f": {o.reason}"
    if o.message:
        text += f": {o.message}"
    return text


Snapshot = dict[str, tuple[str, ...]]


def snapshot(obj: Mapping[str, Any]) -> Snapshot:
    """What ``watch`` reports a change of: the resync's phase, progress and reason; each replica's
    phase and reason."""
    st = obj.get("status") or {}
    snap: Snapshot = {"": (phase(obj) or "Pending", str(st.get("progress") or ""), true_reason(obj))}
    for r in st.get("replicas") or []:
        snap[str(r.get("name"))] = (str(r.get("phase") or ""), str(r.get("reason") or ""))
    return snap


def changes(before: Snapshot, obj: Mapping[str, Any], clock: str) -> tuple[Snapshot, list[str]]:
    """The plain lines for what changed since ``before`` (one line per change)."""
    after = snapshot(obj)
    lines: list[str] = []
    if after[""] != before.get(""):
        ph, progress, reason = after[""]
        text = f"{clock}  {name_of(obj)}  {ph}"
        if progress:
            text += f"  {progress}"
        if reason:
            text += f"  ({reason})"
        lines.append(text)
    messages = {
        str(r.get("name")): str(r.get("message") or "")
        for r in (obj.get("status") or {}).get("replicas") or []
    }
    for name, value in after.items():
        if name and value != before.get(name):
            ph, reason = value
            text = f"{clock}  {name}  {ph}"
            if reason:
                text += f"  ({reason})"
            if ph in ("Failed", "RollingBack") and messages.get(name):
                text += f": {messages[name]}"
            lines.append(text)
    return after, lines


def live_table(obj: Mapping[str, Any], now: datetime) -> Table:
    st = obj.get("status") or {}
    title = (
        f"{name_of(obj)}  {phase(obj) or 'Pending'}  {st.get('progress') or ''}  {true_reason(obj)}".rstrip()
    )
    return Table(
        ["REPLICA", "PHASE", "REASON", "STARTED", "MESSAGE"],
        [
            [
                cell(r.get("name")),
                cell(r.get("phase")),
                cell(r.get("reason")),
                f"{age(r.get('startedAt'), now)} ago" if r.get("startedAt") else NONE,
                cell(r.get("message")),
            ]
            for r in st.get("replicas") or []
        ],
        title=title,
        empty="No replica was started." if outcome(obj).done else "Waiting for preflight...",
    )


# -- drift -------------------------------------------------------------------------------------
def policy_blocks(
    policy: Mapping[str, Any], remediation: Mapping[str, Any] | None, now: datetime
) -> list[Block]:
    spec = policy.get("spec") or {}
    st = policy.get("status") or {}
    mode = spec.get("mode") or "Off"
    if spec.get("suspend"):
        mode = f"{mode} (suspended)"
    blocks: list[Block] = [
        Fields(
            [
                ("Policy", name_of(policy)),
                ("Target", cell((spec.get("target") or {}).get("name"))),
                ("Mode", str(mode)),
                ("In sync", cell(st.get("inSync"))),
                ("Last probe", cell(st.get("lastProbeTime"))),
            ]
        ),
        Table(
            ["POD", "VERDICT", "ROLE", "LAG", "DRIFTED", "REASON", "OBSERVED"],
            [
                [
                    cell(p.get("pod")),
                    cell(p.get("verdict")),
                    cell(p.get("role")),
                    lag(p),
                    "yes" if p.get("drifted") else "no",
                    cell(p.get("reason")),
                    cell(p.get("observedAt")),
                ]
                for p in st.get("pods") or []
            ],
            title="Pods",
            empty="Not probed yet.",
        ),
        condition_table(policy, now),
    ]
    last = st.get("lastRemediation")
    items: list[tuple[str, str]] = []
    if last:
        items = [
            ("Name", cell(last.get("name"))),
            ("Replicas", ", ".join(last.get("replicas") or []) or NONE),
            ("Created", cell(last.get("createdAt"))),
            ("Confirmed", "yes" if last.get("confirmed") else "no"),
            ("Reason", cell(last.get("reason"))),
        ]
        if remediation is not None:
            items.append(("Phase", f"{phase(remediation) or 'Pending'} {true_reason(remediation)}".strip()))
            if (remediation.get("spec") or {}).get("suspend") and not outcome(remediation).done:
                items.append(("Approve", f"kubectl resync approve {name_of(remediation)}"))
        else:
            items.append(("Phase", "(the ClusterResync no longer exists)"))
    else:
        items = [("Name", "(none)")]
    if st.get("lastDecision"):
        items.append(("Last decision", str(st["lastDecision"])))
    blocks.append(Fields(items, title="Last remediation"))
    return blocks


# -- volumes -----------------------------------------------------------------------------------
_TAIL = re.compile(r"-(0|[1-9][0-9]*)$")


def belongs_to(pv: Mapping[str, Any], target: str, namespace: str, resync_uids: set[str]) -> bool:
    """A PV the operator labelled for a resync of ``target`` in ``namespace``: by the uid of one of
    the target's ClusterResyncs, or (the ClusterResync deleted) by its replica label
    ``<target>-<ordinal>`` and the namespace of its claim."""
    labels = (pv.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_RESYNC_UID) in resync_uids:
        return True
    claim_ns = ((pv.get("spec") or {}).get("claimRef") or {}).get("namespace")
    replica = str(labels.get(LABEL_REPLICA, ""))
    m = _TAIL.search(replica)
    return claim_ns == namespace and m is not None and replica[: m.start()] == target


def volume_commands(pv: Mapping[str, Any]) -> dict[str, str]:
    """What to run to remove a kept volume, and to keep it (docs/troubleshooting.md#kept-volumes)."""
    name = str((pv.get("metadata") or {}).get("name", ""))
    meta = pv.get("metadata") or {}
    status = str((pv.get("status") or {}).get("phase") or "")
    q = shlex.quote(name)
    unlabel = (
        f"kubectl label pv {q} {LABEL_RESYNC}- {LABEL_RESYNC_UID}- {LABEL_REPLICA}- {LABEL_VOLUME}- "
        f"{LABEL_VOLUME_ROLE}-"
    )
    if status == "Bound":
        # A replica runs on it (rolled back, or put back by hand): it is not removable; keeping it
        # means giving it its policy back and taking the operator's labels off.
        original = ((meta.get("annotations") or {}).get(ANNOTATION_ORIGINAL_RECLAIM_POLICY)) or "Delete"
        patch = '{"spec":{"persistentVolumeReclaimPolicy":"' + original + '"}}'
        return {
            "remove": "",
            "keep": f"kubectl patch pv {q} -p '{patch}' && {unlabel}",
            "note": "Bound: a replica runs on this volume; it is not removed, only given back",
        }
    if status == "Available":
        # Un-pre-bound (its namespace was deleted): point it at a claim that does not exist, so that
        # it is Released; with Delete too, the PV controller then reclaims it.
        gone = (
            '"claimRef":{"apiVersion":"v1","kind":"PersistentVolumeClaim","namespace":"gone",'
            '"name":"gone","uid":"00000000-0000-0000-0000-000000000000"}'
        )
        return {
            "remove": f'kubectl patch pv {q} -p \'{{"spec":{{"persistentVolumeReclaimPolicy":"Delete",{gone}}}}}\'',
            "keep": f"kubectl patch pv {q} -p '{{\"spec\":{{{gone}}}}}'",
            "note": "Available: any claim of its class and size could bind it; keeping it releases it",
        }
    return {
        "remove": f'kubectl patch pv {q} -p \'{{"spec":{{"persistentVolumeReclaimPolicy":"Delete"}}}}\'',
        "keep": "",
        "note": "kept with Retain: nothing to do to keep it (it costs storage)",
    }


def volume_entry(pv: Mapping[str, Any], now: datetime) -> Obj:
    """One kept volume, as ``volumes -o json`` prints it."""
    meta = pv.get("metadata") or {}
    labels = meta.get("labels") or {}
    spec = pv.get("spec") or {}
    claim = spec.get("claimRef") or {}
    return {
        "name": meta.get("name"),
        "role": labels.get(LABEL_VOLUME_ROLE),
        "resync": labels.get(LABEL_RESYNC),
        "resyncUid": labels.get(LABEL_RESYNC_UID),
        "replica": labels.get(LABEL_REPLICA),
        "volume": labels.get(LABEL_VOLUME),
        "claim": f"{claim['namespace']}/{claim['name']}" if claim.get("name") else None,
        "status": (pv.get("status") or {}).get("phase"),
        "reclaimPolicy": spec.get("persistentVolumeReclaimPolicy"),
        "originalReclaimPolicy": (meta.get("annotations") or {}).get(ANNOTATION_ORIGINAL_RECLAIM_POLICY),
        "size": (spec.get("capacity") or {}).get("storage"),
        "creationTimestamp": meta.get("creationTimestamp"),
        "age": age(meta.get("creationTimestamp"), now),
        "commands": volume_commands(pv),
    }


def volume_blocks(entries: Sequence[Mapping[str, Any]], target: str) -> list[Block]:
    table = Table(
        ["NAME", "ROLE", "RESYNC", "REPLICA", "VOLUME", "CLAIM", "STATUS", "RECLAIM", "SIZE", "AGE"],
        [
            [
                cell(e["name"]),
                cell(e["role"]),
                cell(e["resync"]),
                cell(e["replica"]),
                cell(e["volume"]),
                cell(e["claim"]),
                cell(e["status"]),
                cell(e["reclaimPolicy"]),
                cell(e["size"]),
                cell(e["age"]),
            ]
            for e in entries
        ],
        empty=f"No volumes kept by resyncs of {target}.",
    )
    blocks: list[Block] = [table]
    if not entries:
        return blocks
    remove = [e["commands"]["remove"] for e in entries if e["commands"]["remove"]]
    if remove:
        blocks.append(
            Lines(
                [
                    "# deletes each volume with its data (the PV controller reclaims it in the storage backend)",
                    *remove,
                ],
                title="To remove them",
            )
        )
    keep = [
        f"# {e['name']}: {e['commands']['note']}"
        + (f"\n{e['commands']['keep']}" if e["commands"]["keep"] else "")
        for e in entries
    ]
    blocks.append(Lines(keep, title="To keep them"))
    return blocks


def now_utc() -> datetime:
    return datetime.now(UTC)
