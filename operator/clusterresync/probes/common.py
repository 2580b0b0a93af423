"""Helpers every preset shares: reading options, passing a password without it ever appearing in an
argv, scrubbing credentials out of what an engine printed, and the common steps of a judgement.

Credentials. A preset never puts a password in its argv. Two modes, chosen in the options:

- `passwordEnv: NAME` - the password is in the container's own environment variable NAME (as the
  official images set `POSTGRES_PASSWORD`, `MYSQL_ROOT_PASSWORD`, ...). The argv is
  `sh -c 'CLIENTVAR="$NAME"; export CLIENTVAR; exec "$@"' probe <client argv...>`: the shell expands
  the variable inside the container, so only its *name* travels in the exec request.
- `passwordStdin: true` - the operator writes the Secret's value and a newline on the exec's stdin;
  the command is `sh -c 'IFS= read -r CLIENTVAR ...; export CLIENTVAR; exec "$@"' probe <client argv...>`.

CLIENTVAR is the variable the engine's client reads (`PGPASSWORD`, `MYSQL_PWD`, `REDISCLI_AUTH`;
MongoDB's probe script reads `process.env.MONGO_PROBE_PASSWORD`). The client argv is passed as
positional parameters, so no option value is ever interpolated into shell code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace

from .model import Judgement, Options, ProbeConfigError, Reading, Thresholds, Verdict

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ERROR = 300  # characters of an engine's error kept in a Reading


def opt_str(options: Options, key: str, default: str | None = None) -> str | None:
    value = options.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ProbeConfigError(f"option {key!r} must be a non-empty string")
    return value


def opt_int(options: Options, key: str, default: int | None = None) -> int | None:
    value = options.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ProbeConfigError(f"option {key!r} must be an integer between 1 and 65535")
    return value


def opt_list(options: Options, key: str) -> list[str]:
    value = options.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ProbeConfigError(f"option {key!r} must be a list of non-empty strings")
    return list(value)


def with_password(options: Options, client_var: str, argv: list[str]) -> list[str]:
    """Wrap a client argv so that `client_var` holds the password inside the container (see above)."""
    env = opt_str(options, "passwordEnv")
    stdin = options.get("passwordStdin", False)
    if not isinstance(stdin, bool):
        raise ProbeConfigError("option 'passwordStdin' must be true or false")
    if env is not None and stdin:
        raise ProbeConfigError("set either 'passwordEnv' or 'passwordStdin', not both")
    if env is not None:
        if not _ENV_NAME.fullmatch(env):
            raise ProbeConfigError("option 'passwordEnv' must be an environment variable name")
        script = f'{client_var}="${{{env}}}"; export {client_var}; exec "$@"'
    elif stdin:
        script = (
            f'IFS= read -r {client_var} || [ -n "${client_var}" ] || '
            f'{{ echo "probe: no password on stdin" >&2; exit 64; }}; export {client_var}; exec "$@"'
        )
    else:
        return argv
    return ["sh", "-c", script, "probe", *argv]


# What an engine may echo that carries a credential: key=value forms, URIs with user:password@,
# command-line flags, SQL that sets one. Each pattern keeps `pre` and `post` and masks `secret`.
_SECRET_PATTERNS = [
    re.compile(
        r"(?i)(?P<pre>\b(?:password|passwd|pwd|pass|secret|masterauth|requirepass|token)\s*[=:]\s*(?P<q>['\"]?))"
        r"(?!(?:YES|NO)\))(?P<secret>[^\s'\",;]+)(?P<post>(?P=q))"
    ),
    re.compile(
        r"(?i)(?P<pre>\b(?:masterauth|requirepass)\s+(?P<q>['\"]?))(?P<secret>[^\s'\"]+)(?P<post>(?P=q))"
    ),
    re.compile(
        r"(?P<pre>\b(?:PGPASSWORD|MYSQL_PWD|REDISCLI_AUTH|MONGO_PROBE_PASSWORD)\s*=\s*)(?P<secret>\S+)"
    ),
    re.compile(r"(?i)(?P<pre>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>\S+)(?P<post>@)"),
    re.compile(r"(?P<pre>(?:--password|--pass|--auth|\s-a|\s-p)[= ]?)(?P<secret>[^\s-]\S*)"),
    re.compile(r"(?i)(?P<pre>identified\s+by\s+(?:password\s+)?)(?P<secret>'[^']*')"),
    re.compile(
        r"(?i)(?P<pre>\bauth\s+)(?!(?:failed|required|error|denied)\b)(?P<secret>[^\s'\"]+(?:\s+(?!(?:failed|command)\b)[^\s'\"]+)?)"
    ),
]


# A detail whose key names a credential has its whole value masked.
_SECRET_KEY = re.compile(r"(?i)pass|pwd|secret|auth|token|credential")


def _mask(match: re.Match[str]) -> str:
    return match.group("pre") + "***" + (match.groupdict().get("post") or "")


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secret values and anything shaped like a credential replaced by `***`."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(_mask, text)
    return text


def clean(reading: Reading, secrets: Sequence[str] = ()) -> Reading:
    """The reading with every text field scrubbed (the last step of every parser)."""

    def s(value: str | None) -> str | None:
        return None if value is None else scrub(value, secrets)

    return replace(
        reading,
        position=s(reading.position),
        history=s(reading.history),
        checksum=s(reading.checksum),
        error=s(reading.error),
        details={
            k: "***" if _SECRET_KEY.search(k) else scrub(v, secrets) for k, v in reading.details.items()
        },
    )


def failed(pod: str, stdout: str, stderr: str, exit_code: int, secrets: Sequence[str]) -> Reading | None:
    """An Unknown-making reading when the command failed or printed nothing; None when it looks fine."""
    if exit_code != 0:
        message = first_line(stderr) or first_line(stdout) or "no output"
        return clean(Reading(pod=pod, error=f"the probe command exited with {exit_code}: {message}"), secrets)
    if not stdout.strip():
        message = first_line(stderr)
        return clean(
            Reading(pod=pod, error="the probe printed nothing" + (f" ({message})" if message else "")),
            secrets,
        )
    return None


def first_line(text: str) -> str:
    """The first non-empty line of `text`, shortened to MAX_ERROR characters."""
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= MAX_ERROR else line[: MAX_ERROR - 1] + "…"
    return ""


def unreadable(primary: Reading, replica: Reading) -> Judgement | None:
    """Unknown when either reading carries an error."""
    if replica.error is not None:
        return Judgement(replica.pod, Verdict.Unknown, f"{replica.pod} could not be read: {replica.error}")
    if primary.error is not None:
        return Judgement(
            replica.pod, Verdict.Unknown, f"the primary {primary.pod} could not be read: {primary.error}"
        )
    if primary.role == "replica":
        return Judgement(
            replica.pod,
            Verdict.Unknown,
            f"{primary.pod}, the designated primary, reports itself as a replica: nothing to compare against",
        )
    return None


def lag_verdict(
    replica: Reading,
    behind: str,
    thresholds: Thresholds,
    lag_bytes: int | None,
    lag_seconds: float | None,
    *,
    link_note: bool = True,
) -> Judgement:
    """Lagging or InSync for a replica that is behind the primary (`behind` says by how much, in words;
    `link_note`: add that the replication link is down, when `behind` does not already say why)."""
    checks: list[tuple[str, float | None, float]] = []
    if thresholds.max_lag_bytes is not None:
        checks.append(("bytes", lag_bytes, thresholds.max_lag_bytes))
    if thresholds.max_lag_seconds is not None:
        checks.append(("seconds", lag_seconds, thresholds.max_lag_seconds))
    link = "; its replication link is down" if replica.link == "down" and link_note else ""
    if checks and all(value is not None and value <= limit for _, value, limit in checks):
        return Judgement(
            replica.pod,
            Verdict.InSync,
            f"{replica.pod} is {behind}, within the thresholds{link}",
            lag_bytes,
            lag_seconds,
        )
    over = [f"{name} over {limit:g}" for name, value, limit in checks if value is not None and value > limit]
    unmeasured = [
        f"no lag in {name} to compare with the threshold" for name, value, _ in checks if value is None
    ]
    why = "; ".join(over + unmeasured)
    return Judgement(
        replica.pod,
        Verdict.Lagging,
        f"{replica.pod} is {behind}" + (f" ({why})" if why else "") + link,
        lag_bytes,
        lag_seconds,
    )


def by_distance(
    replica: Reading,
    diff: int,
    *,
    ahead: str,
    equal: str,
    behind: str,
    thresholds: Thresholds,
    lag_seconds: float | None,
) -> Judgement:
    """The verdict of a replica on the primary's history whose position is ``diff`` bytes behind
    the primary's (negative: ahead). Ahead is Diverged (``ahead`` completes "<pod> ..."), equal is
    InSync, behind is for the thresholds (``lag_verdict``)."""
    if diff < 0:
        return Judgement(replica.pod, Verdict.Diverged, f"{replica.pod} {ahead}", diff)
    if diff == 0:
        return in_sync(replica, equal, 0)
    return lag_verdict(replica, behind, thresholds, diff, lag_seconds)


def in_sync(replica: Reading, what: str, lag_bytes: int | None = None) -> Judgement:
    """InSync: `what` completes "<pod> ..." (lag in seconds is 0 when the engine measures it)."""
    link = ", but its replication link is down" if replica.link == "down" else ""
    seconds = 0.0 if replica.lag_seconds is not None else None
    return Judgement(replica.pod, Verdict.InSync, f"{replica.pod} {what}{link}", lag_bytes, seconds)
