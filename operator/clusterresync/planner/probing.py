"""Probes in the run: each pod's replication state, read with the engine's own client (the
``..probes`` presets) by Exec actions of the pass that needs them, judged against the primary, and
recorded in ``status.probes``:

- **Before** anything is touched (preflight, ``guard``): a replica reported ``Diverged`` (it holds
  writes the primary lacks, or follows another history) refuses the resync with
  ``ReplicaHasUnsyncedData`` unless ``spec.force``, and so does a probe that cannot tell
  (``ReplicaStateUnknown``: no proof is no proof); a primary that reports itself a replica
  refuses it with ``PrimaryRoleMismatch``, whatever ``force`` says (its data is not the truth).
- **After** a replica's swap (``verified``): the replica counts as verified once it reports
  ``InSync`` (a lag within every threshold set, ``maxLagBytes``/``maxLagSeconds``, counts as in
  sync; with none set, only the primary's own position does); until then its verification
  waits, and past ``timeouts.replicaSeconds`` it is rolled back.

A probe's output never reaches the status, Events or logs: only the judgement (verdict, role,
position, lag and a sentence), which the presets build without any credential.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..conditions import EventReason, EventType, Reason
from ..models import ProbeResult, ProbeSpec, ReplicaStatus
from ..probes import PRESETS, Judgement, ProbeConfigError, Reading, Thresholds
from ..state import Exec, HookOutcome, SecretKey
from .status import Builder, bounded

PREFIX = "probe"


def hook_name(stage: str, pod: str, of: str = "") -> str:
    """The Exec's name: the pod probed at a stage (for the primary's reading taken to judge a
    replica's swap, ``of`` names that replica)."""
    return "/".join(x for x in (PREFIX, stage, pod, of) if x)


def options_of(spec: ProbeSpec) -> dict[str, object]:
    """The preset's options: the spec's fields as written (camelCase), and ``passwordStdin`` when
    the password comes from a Secret (the adapter writes it on the exec's standard input)."""
    out: dict[str, object] = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    out.pop("passwordSecretRef", None)
    if "excludes" in out:
        out["exclude"] = out.pop("excludes")
    if spec.password_secret_ref is not None:
        out["passwordStdin"] = True
    return out


def probe_exec(namespace: str, spec: ProbeSpec, name: str, pod: str) -> Exec:
    """The action that probes ``pod`` (a command in its container, or an HTTP GET on it)."""
    preset = PRESETS[spec.preset]
    ref = spec.password_secret_ref
    if preset.http_path is not None:
        get = preset.http_path(options_of(spec))
        return Exec(
            name,
            pod,
            namespace,
            None,
            (),
            spec.timeout_seconds,
            http_get=(get.scheme, get.port, get.path),
        )
    assert preset.command is not None
    return Exec(
        name,
        pod,
        namespace,
        spec.container,
        tuple(preset.command(options_of(spec))),
        spec.timeout_seconds,
        stdin_secret=SecretKey(ref.name, ref.key) if ref is not None else None,
    )


def reading_of(spec: ProbeSpec, pod: str, outcome: HookOutcome) -> Reading:
    if outcome.exit_code is None:
        # The command did not run to its end (refused, timed out, a Secret not readable).
        return Reading(pod=pod, role="unknown", error=outcome.error or "the probe did not finish")
    return PRESETS[spec.preset].parse(pod, outcome.stdout, outcome.stderr, outcome.exit_code)


def collect(
    namespace: str, spec: ProbeSpec, wanted: list[tuple[str, str]], outcomes: Mapping[str, HookOutcome]
) -> tuple[dict[str, Reading] | None, list[Exec]]:
    """The readings of ``wanted`` (Exec name, pod) once all of them have run in this pass (their
    outcomes in ``outcomes``); until then None, and the Exec actions of those that have not."""
    out: dict[str, Reading] = {}
    missing: list[Exec] = []
    for name, pod in wanted:
        outcome = outcomes.get(name)
        if outcome is None:
            missing.append(probe_exec(namespace, spec, name, pod))
        else:
            out[name] = reading_of(spec, pod, outcome)
    return (None if missing else out), missing


def readings(b: Builder, spec: ProbeSpec, wanted: list[tuple[str, str]]) -> dict[str, Reading] | None:
    """``collect`` in a planning call: the missing probes become its actions."""
    got, missing = collect(b.obs.resync.namespace, spec, wanted, b.obs.hook_outcomes)
    for e in missing:
        b.do(e)
    return got


def thresholds(spec: ProbeSpec) -> Thresholds:
    return Thresholds(max_lag_bytes=spec.max_lag_bytes, max_lag_seconds=spec.max_lag_seconds)


def result(b: Builder, stage: str, reading: Reading, judgement: Judgement | None) -> ProbeResult:
    """A pod's line in ``status.probes``: the primary's has no judgement of its own."""
    if judgement is None:
        verdict = "Unknown" if reading.error else "InSync"
        reason = reading.error or f"reports role {reading.role}"
    else:
        verdict, reason = str(judgement.verdict), judgement.reason
    return ProbeResult(
        pod=reading.pod,
        stage=stage,  # type: ignore[arg-type]
        verdict=verdict,  # type: ignore[arg-type]
        role=reading.role,
        position=bounded(reading.position, 1024) if reading.position else None,
        lag_bytes=judgement.lag_bytes if judgement else None,
        lag_seconds=int(judgement.lag_seconds) if judgement and judgement.lag_seconds is not None else None,
        reason=bounded(reason, 1024),
        observed_at=b.now,
    )


def record(b: Builder, results: list[ProbeResult]) -> None:
    """Put ``results`` in ``status.probes``, one line per pod and stage (the newest)."""
    keys = {(r.stage, r.pod) for r in results}
    kept = [r for r in b.status.probes if (r.stage, r.pod) not in keys]
    b.set(probes=[*kept, *results])


def guard(b: Builder, primary: str, replicas: list[str]) -> bool | None:
    """Preflight with a probe: True to go on, False once the resync is refused (failed), None while
    the probes run (their Exec actions were asked for)."""
    spec = b.obs.resync.spec
    probe = spec.probe
    if probe is None:
        return True
    # Replicas first, the primary last: a replica read before the primary can never be ahead of
    # it legitimately, so "ahead" means diverged (the presets' rule).
    wanted = [(hook_name("Before", p), p) for p in [*replicas, primary]]
    try:
        got = readings(b, probe, wanted)
    except ProbeConfigError as e:
        b.fail(Reason.PROBE_INVALID, f"spec.probe ({probe.preset}): {e}; nothing was touched")
        return False
    if got is None:
        return None
    p = got[hook_name("Before", primary)]
    judged = {
        r: PRESETS[probe.preset].judge(p, got[hook_name("Before", r)], thresholds(probe)) for r in replicas
    }
    record(
        b,
        [result(b, "Before", p, None)]
        + [result(b, "Before", got[hook_name("Before", r)], judged[r]) for r in replicas],
    )
    summary = "; ".join(f"{r}: {j.verdict}" for r, j in judged.items())
    if p.role == "replica":
        b.fail(
            Reason.PRIMARY_ROLE_MISMATCH,
            f"{primary} is the primary by spec.primary, but its probe reports it is a replica "
            f"({p.position or 'no position'}): its data is not the cluster's truth; nothing was touched",
        )
        return False
    diverged = [(r, j) for r, j in judged.items() if j.verdict == "Diverged"]
    # A probe that cannot tell is no proof that nothing would be lost: it refuses too.
    unknown = [(r, j.reason) for r, j in judged.items() if j.verdict == "Unknown"]
    if p.error:
        unknown.insert(0, (primary, p.error))
    if diverged and not spec.force:
        found = "; ".join(f"{r}: {j.reason}" for r, j in diverged)
        b.fail(
            Reason.REPLICA_HAS_UNSYNCED_DATA,
            f"{found}. Resyncing would throw those writes away; nothing was touched. To resync anyway, "
            "create a ClusterResync with force: true (the replica's old volume is kept as oldVolumes says)",
        )
        return False
    if unknown and not spec.force:
        found = "; ".join(f"{r}: {why}" for r, why in unknown)
        b.fail(
            Reason.REPLICA_STATE_UNKNOWN,
            f"the probe could not tell whether a replica holds writes the primary lacks ({found}); nothing "
            "was touched. Fix the probe (docs/probes.md), or create a ClusterResync with force: true",
        )
        return False
    if diverged or unknown:
        b.event(
            EventType.WARNING,
            EventReason.FORCED,
            "force: true: resyncing despite "
            + "; ".join(
                [f"{r} Diverged ({j.reason})" for r, j in diverged]
                + [f"{r} Unknown ({w})" for r, w in unknown]
            ),
        )
    b.event(EventType.NORMAL, EventReason.PROBED, f"before the resync: {primary} {p.role}; {summary}")
    return True


def verified(b: Builder, r: ReplicaStatus) -> tuple[bool, str] | None:
    """After a replica's swap: (True, "") once it reports InSync or Lagging within the thresholds;
    (False, why) otherwise; None while the probes run."""
    probe = b.obs.resync.spec.probe
    if probe is None or b.status.primary is None:
        return True, ""
    primary = b.status.primary.pod_name
    wanted = [(hook_name("After", r.name), r.name), (hook_name("After", primary, r.name), primary)]
    got = readings(b, probe, wanted)
    if got is None:
        return None
    mine, p = got[wanted[0][0]], got[wanted[1][0]]
    j = PRESETS[probe.preset].judge(p, mine, thresholds(probe))
    record(b, [result(b, "After", mine, j)])
    # A lag within every threshold that is set is judged InSync by the presets.
    if j.verdict == "InSync" or (j.verdict == "Lagging" and _default_tolerance(probe, mine, j)):
        return True, ""
    return False, f"replication not verified yet: {j.verdict}: {j.reason}"


# Without maxLagBytes or maxLagSeconds, a replica streaming from a busy primary would rarely be
# exactly at the position the primary reports a moment later: after its swap it counts as
# verified when its replication link is up and it is at most this far behind, by whatever
# measure its engine gives (docs/probes.md, "Verification").
DEFAULT_VERIFY_LAG_BYTES = 16 << 20
DEFAULT_VERIFY_LAG_SECONDS = 30


def _default_tolerance(probe: ProbeSpec, replica: Reading, j: Judgement) -> bool:
    if probe.max_lag_bytes is not None or probe.max_lag_seconds is not None or replica.link == "down":
        return False
    return (j.lag_bytes is not None and j.lag_bytes <= DEFAULT_VERIFY_LAG_BYTES) or (
        j.lag_seconds is not None and j.lag_seconds <= DEFAULT_VERIFY_LAG_SECONDS
    )
