"""PostgreSQL: streaming replication, read with `psql` in the pod.

One query (`QUERY`), run with `psql -XAtq -F '|'`, prints one line of `|`-separated fields, in the
order of `FIELDS`; empty means SQL NULL. Functions used (PostgreSQL 10 or later; see
https://www.postgresql.org/docs/current/functions-admin.html and
https://www.postgresql.org/docs/current/monitoring-stats.html):

- `pg_is_in_recovery()`: true on a standby (replica), false on a primary.
- primary: `pg_current_wal_lsn()` (the position) and its timeline, the first 8 hex digits of
  `pg_walfile_name(pg_current_wal_lsn())`; `pg_stat_replication` (how many standbys stream from it).
- replica: `pg_last_wal_receive_lsn()` and `pg_last_wal_replay_lsn()` (the position is the replay
  LSN: what the replica's data reflects), `pg_stat_wal_receiver` (`status`, `received_tli`),
  `pg_is_wal_replay_paused()`, and `now() - pg_last_xact_replay_timestamp()` for lag in seconds
  (reported as 0 when everything received is replayed, the usual idiom: on an idle primary the last
  replayed transaction grows old without the replica falling behind). Its timeline is the WAL
  receiver's `received_tli`, else `(pg_control_checkpoint()).timeline_id`.

Rules (`judge`): Diverged when the replica is not in recovery (it was promoted), is on another
timeline than the primary (it followed another history), or its replay LSN is ahead of the
primary's current LSN (it has WAL the primary never wrote). Otherwise the lag in bytes is
`pg_wal_lsn_diff(primary, replica replay)`, computed here from the `X/Y` LSN strings; equal LSNs are
InSync, else the thresholds decide between InSync and Lagging.

Credentials: `PGPASSWORD` (see `common`); options `host`, `port`, `user`, `database`, `client`
(default `psql`), `passwordEnv` / `passwordStdin`.
"""

from __future__ import annotations

from collections.abc import Sequence

from .common import by_distance, clean, failed, opt_int, opt_str, unreadable, with_password
from .model import Judgement, Options, Preset, Reading, Thresholds, Verdict

FIELDS = (
    "in_recovery",
    "current_lsn",
    "current_tli",
    "receive_lsn",
    "replay_lsn",
    "receiver_status",
    "receiver_tli",
    "checkpoint_tli",
    "replay_paused",
    "replay_lag_seconds",
    "streaming_standbys",
    "server_version",
)

QUERY = """SELECT
  pg_is_in_recovery(),
  CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_lsn() END,
  CASE WHEN NOT pg_is_in_recovery()
       THEN ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
  pg_last_wal_receive_lsn(),
  pg_last_wal_replay_lsn(),
  (SELECT status FROM pg_stat_wal_receiver),
  (SELECT received_tli FROM pg_stat_wal_receiver),
  (pg_control_checkpoint()).timeline_id,
  CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END,
  CASE WHEN pg_is_in_recovery() THEN
       CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE round(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::numeric, 3) END END,
  (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'),
  current_setting('server_version_num')"""


def command(options: Options) -> list[str]:
    argv = [opt_str(options, "client", "psql") or "psql", "-XAtq", "-F", "|", "-v", "ON_ERROR_STOP=1"]
    for flag, key in (("-h", "host"), ("-U", "user"), ("-d", "database")):
        value = opt_str(options, key)
        if value is not None:
            argv += [flag, value]
    port = opt_int(options, "port")
    if port is not None:
        argv += ["-p", str(port)]
    return with_password(options, "PGPASSWORD", [*argv, "-c", QUERY])


def lsn(text: str) -> int:
    """An LSN `X/Y` (two hex numbers) as the 64-bit integer `pg_wal_lsn_diff` subtracts."""
    high, sep, low = text.partition("/")
    try:
        if not sep or not 0 < len(high) <= 8 or not 0 < len(low) <= 8:
            raise ValueError
        return (int(high, 16) << 32) | int(low, 16)
    except ValueError:
        raise ValueError(f"not an LSN: {text!r}") from None


def parse(pod: str, stdout: str, stderr: str, exit_code: int, *, secrets: Sequence[str] = ()) -> Reading:
    bad = failed(pod, stdout, stderr, exit_code, secrets)
    if bad is not None:
        return bad
    lines = [line for line in stdout.splitlines() if line.strip()]
    values = lines[-1].split("|") if lines else []
    if len(lines) != 1 or len(values) != len(FIELDS):
        return clean(
            Reading(
                pod=pod,
                error=f"unexpected psql output ({len(lines)} lines, expected one of {len(FIELDS)} fields)",
            ),
            secrets,
        )
    row = dict(zip(FIELDS, values, strict=True))
    try:
        for key in ("current_lsn", "receive_lsn", "replay_lsn"):
            if row[key]:
                lsn(row[key])
        seconds = float(row["replay_lag_seconds"]) if row["replay_lag_seconds"] else None
    except ValueError as e:
        return clean(Reading(pod=pod, error=f"unexpected psql output: {e}"), secrets)
    details = {"serverVersion": row["server_version"]}
    if row["in_recovery"] == "f":
        if not row["current_lsn"] or not row["current_tli"]:
            return clean(
                Reading(pod=pod, role="primary", error="the primary reported no current WAL LSN"), secrets
            )
        details["streamingStandbys"] = row["streaming_standbys"]
        return clean(
            Reading(
                pod=pod,
                role="primary",
                position=row["current_lsn"],
                history=row["current_tli"],
                details=details,
            ),
            secrets,
        )
    if row["in_recovery"] != "t":
        return clean(
            Reading(pod=pod, error=f"unexpected pg_is_in_recovery() value {row['in_recovery']!r}"), secrets
        )
    details |= {
        k: v for k, v in (("receiveLsn", row["receive_lsn"]), ("receiverStatus", row["receiver_status"])) if v
    }
    details["replayPaused"] = "true" if row["replay_paused"] == "t" else "false"
    position = row["replay_lsn"] or None
    timeline = row["receiver_tli"] or row["checkpoint_tli"] or None
    return clean(
        Reading(
            pod=pod,
            role="replica",
            position=position,
            history=timeline,
            lag_seconds=seconds,
            link="up" if row["receiver_status"] == "streaming" else "down",
            error=None
            if position
            else "the replica has replayed no WAL yet (pg_last_wal_replay_lsn() is NULL)",
            details=details,
        ),
        secrets,
    )


def judge(primary: Reading, replica: Reading, thresholds: Thresholds) -> Judgement:
    unknown = unreadable(primary, replica)
    if unknown is not None:
        return unknown
    pod = replica.pod
    if replica.role == "primary":
        return Judgement(
            pod,
            Verdict.Diverged,
            f"{pod} is not in recovery: it was promoted and accepts its own writes (timeline {replica.history}, LSN {replica.position})",
        )
    if primary.role != "primary" or primary.position is None or replica.position is None:
        return Judgement(
            pod,
            Verdict.Unknown,
            f"{primary.pod} is not a running primary, so {pod} cannot be compared with it",
        )
    if replica.history != primary.history:
        return Judgement(
            pod,
            Verdict.Diverged,
            f"{pod} is on timeline {replica.history}, the primary on timeline {primary.history}: it followed another history",
        )
    diff = lsn(primary.position) - lsn(replica.position)
    paused = ", replay is paused" if replica.details.get("replayPaused") == "true" else ""
    return by_distance(
        replica,
        diff,
        ahead=f"has replayed up to {replica.position}, beyond the primary's {primary.position}: "
        "it has WAL the primary never wrote",
        equal=f"has replayed up to the primary's current LSN {primary.position}",
        behind=f"{diff} bytes of WAL behind the primary ({replica.position} vs {primary.position}{paused})",
        thresholds=thresholds,
        lag_seconds=replica.lag_seconds,
    )


PRESET = Preset(name="Postgres", command=command, parse=parse, judge=judge)
