"""Command and HTTP: your own probe, for engines without a preset.

`Command` execs `command` (an argv list, run as-is in the pod's container); `HTTP` GETs
`scheme://<pod IP>:port/path` (the operator passes the body as stdout and the HTTP status code as
`exit_code`). Either must print/return one JSON object, the *probe document*, at most 64 KiB:

    {
      "role": "primary" | "replica" | "unknown",   // default "unknown"
      "position": "0/3000060" | 12345,             // where this pod is; integers (or decimal
                                                   // strings) are ordered, other strings only compared
      "history": "2",                              // timeline / replication id / term: must match the primary's
      "lagBytes": 0,                               // integer >= 0, as the pod measures it
      "lagSeconds": 0.0,                           // number >= 0, as the pod measures it
      "checksum": "sha256:…",                      // must match the primary's
      "link": "up" | "down",                       // is the pod's replication connection up
      "verdict": "InSync" | "Lagging" | "Diverged" | "Unknown",  // this pod's own verdict: it wins
      "reason": "one sentence",                    // goes with verdict
      "error": "why the probe cannot tell",        // makes the reading Unknown
      "details": {"key": "value"}                  // up to 20 strings, numbers or booleans
    }

Every field is optional; unknown fields are ignored. A non-zero exit code (or a non-2xx status),
an empty output, or anything that is not such an object makes the reading Unknown.

Rules (`judge`), in order: Unknown if either document has an error; the replica's own `verdict`, if
any; Diverged if the replica says it is a primary, or its `history` or `checksum` differs from the
primary's, or its integer position is greater than the primary's; InSync if the positions are equal;
otherwise it is behind and the thresholds decide with its `lagBytes` / `lagSeconds`. With no position
at all, its `lagBytes` / `lagSeconds` alone decide (both 0, or within the thresholds: InSync); with
nothing comparable, equal checksums are InSync and anything else is Unknown.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .common import clean, failed, first_line, in_sync, lag_verdict, opt_int, opt_list, opt_str, unreadable
from .model import HttpGet, Judgement, Options, Preset, ProbeConfigError, Reading, Role, Thresholds, Verdict

MAX_DOCUMENT = 64 * 1024
MAX_DETAILS = 20


def command(options: Options) -> list[str]:
    argv = opt_list(options, "command")
    if not argv:
        raise ProbeConfigError("the Command preset needs option 'command' (an argv list)")
    return argv


def http_path(options: Options) -> HttpGet:
    port = opt_int(options, "port")
    if port is None:
        raise ProbeConfigError("the HTTP preset needs option 'port'")
    path = opt_str(options, "path", "/") or "/"
    if not path.startswith("/"):
        raise ProbeConfigError("option 'path' must start with '/'")
    scheme = opt_str(options, "scheme", "http")
    if scheme not in ("http", "https"):
        raise ProbeConfigError("option 'scheme' must be http or https")
    return HttpGet(port=port, path=path, scheme="https" if scheme == "https" else "http")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"expected a string or an integer, got {value!r}")
    return str(value)


def _nonneg(value: Any, kind: type) -> Any:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < 0
        or (kind is int and not isinstance(value, int))
    ):
        raise ValueError(f"expected a {kind.__name__} >= 0, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return kind(value)


def document(pod: str, text: str, secrets: Sequence[str]) -> Reading:
    """The Reading a probe document describes (see the module docstring)."""
    if len(text) > MAX_DOCUMENT:
        return clean(
            Reading(pod=pod, error=f"the probe document is larger than {MAX_DOCUMENT} bytes"), secrets
        )
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return clean(Reading(pod=pod, error=f"the probe did not print JSON: {first_line(text)}"), secrets)
    if not isinstance(doc, Mapping):
        return clean(Reading(pod=pod, error="the probe document is not a JSON object"), secrets)
    try:
        role: Role = doc.get("role", "unknown")
        if role not in ("primary", "replica", "unknown"):
            raise ValueError(f"role must be primary, replica or unknown, got {role!r}")
        link = doc.get("link")
        if link not in (None, "up", "down"):
            raise ValueError(f"link must be up or down, got {link!r}")
        verdict = doc.get("verdict")
        if verdict is not None and verdict not in Verdict.__members__:
            raise ValueError(f"verdict must be one of {', '.join(Verdict.__members__)}, got {verdict!r}")
        raw = doc.get("details", {})
        if not isinstance(raw, Mapping) or len(raw) > MAX_DETAILS:
            raise ValueError(f"details must be an object of at most {MAX_DETAILS} entries")
        details = {
            str(k): json.dumps(v) if isinstance(v, bool) else str(v)
            for k, v in raw.items()
            if isinstance(v, str | int | float | bool)
        }
        if verdict is not None:
            details["verdict"] = verdict
            details["reason"] = str(doc.get("reason") or f"the probe says {verdict}")
        reading = Reading(
            pod=pod,
            role=role,
            position=_text(doc.get("position")),
            history=_text(doc.get("history")),
            lag_bytes=_nonneg(doc.get("lagBytes"), int),
            lag_seconds=_nonneg(doc.get("lagSeconds"), float),
            checksum=_text(doc.get("checksum")),
            link=link,
            error=_text(doc.get("error")),
            details=details,
        )
    except ValueError as e:
        return clean(Reading(pod=pod, error=f"invalid probe document: {e}"), secrets)
    return clean(reading, secrets)


def parse_command(
    pod: str, stdout: str, stderr: str, exit_code: int, *, secrets: Sequence[str] = ()
) -> Reading:
    bad = failed(pod, stdout, stderr, exit_code, secrets)
    return bad if bad is not None else document(pod, stdout, secrets)


def parse_http(pod: str, stdout: str, stderr: str, exit_code: int, *, secrets: Sequence[str] = ()) -> Reading:
    """`stdout` is the body, `exit_code` the HTTP status (0 or below: the request failed, `stderr` says why)."""
    if not 200 <= exit_code < 300:
        why = f"HTTP {exit_code}" if exit_code > 0 else "the request failed"
        message = first_line(stderr) or first_line(stdout)
        return clean(Reading(pod=pod, error=why + (f": {message}" if message else "")), secrets)
    if not stdout.strip():
        return clean(Reading(pod=pod, error="the probe returned an empty body"), secrets)
    return document(pod, stdout, secrets)


def _integer(position: str | None) -> int | None:
    return int(position) if position is not None and position.lstrip("-").isdigit() else None


def judge(primary: Reading, replica: Reading, thresholds: Thresholds) -> Judgement:
    unknown = unreadable(primary, replica)
    if unknown is not None:
        return unknown
    pod = replica.pod
    if "verdict" in replica.details:
        return Judgement(
            pod,
            Verdict(replica.details["verdict"]),
            f"{pod}: {replica.details['reason']}",
            replica.lag_bytes,
            replica.lag_seconds,
        )
    if replica.role == "primary":
        return Judgement(
            pod,
            Verdict.Diverged,
            f"{pod} says it is a primary: it was promoted and is not following {primary.pod}",
        )
    for name, mine, theirs in (
        ("history", replica.history, primary.history),
        ("checksum", replica.checksum, primary.checksum),
    ):
        if mine is not None and theirs is not None and mine != theirs:
            return Judgement(pod, Verdict.Diverged, f"{pod}'s {name} is {mine}, the primary's {theirs}")
    if replica.position is not None and primary.position is not None:
        mine_n, theirs_n = _integer(replica.position), _integer(primary.position)
        if mine_n is not None and theirs_n is not None and mine_n > theirs_n:
            return Judgement(
                pod, Verdict.Diverged, f"{pod} is at position {mine_n}, ahead of the primary's {theirs_n}"
            )
        if replica.position == primary.position or (mine_n is not None and mine_n == theirs_n):
            return in_sync(replica, f"is at the primary's position {primary.position}", replica.lag_bytes)
        behind = f"at position {replica.position}, the primary at {primary.position}"
        return lag_verdict(replica, behind, thresholds, replica.lag_bytes, replica.lag_seconds)
    if replica.lag_bytes is not None or replica.lag_seconds is not None:
        if (replica.lag_bytes or 0) == 0 and (replica.lag_seconds or 0) == 0:
            return in_sync(replica, "reports no lag", replica.lag_bytes)
        return lag_verdict(
            replica,
            "behind the primary by its own measure",
            thresholds,
            replica.lag_bytes,
            replica.lag_seconds,
        )
    if replica.checksum is not None and replica.checksum == primary.checksum:
        return in_sync(replica, f"has the primary's checksum {replica.checksum}")
    return Judgement(
        pod,
        Verdict.Unknown,
        f"{pod}'s probe document has nothing to compare with the primary's (no position, lag or checksum)",
    )


COMMAND = Preset(name="Command", command=command, parse=parse_command, judge=judge)
HTTP = Preset(name="HTTP", http_path=http_path, parse=parse_http, judge=judge)
