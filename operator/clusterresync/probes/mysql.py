"""MySQL and MariaDB: GTID-based replication, read with the `mysql` / `mariadb` client in the pod.

One client call runs two statements with vertical output (`-E`, `key: value` lines, one block per
row):

- MySQL 8.0.22+ (https://dev.mysql.com/doc/refman/8.4/en/replication-options-gtids.html,
  https://dev.mysql.com/doc/refman/8.4/en/show-replica-status.html): `SELECT @@server_uuid,
  @@gtid_mode, @@gtid_executed, @@read_only, @@super_read_only` then `SHOW REPLICA STATUS`
  (`Replica_IO_Running`, `Replica_SQL_Running`, `Seconds_Behind_Source`, `Retrieved_Gtid_Set`,
  `Last_IO_Error`, `Last_SQL_Error`; the older `Slave_*`/`*_Master` names are read too).
- MariaDB 10.0+ (https://mariadb.com/kb/en/gtid/, https://mariadb.com/kb/en/show-replica-status/):
  `SELECT @@server_id, @@gtid_current_pos, @@gtid_slave_pos, @@gtid_binlog_pos, @@gtid_binlog_state,
  @@read_only` then
  `SHOW SLAVE STATUS` (`Slave_IO_Running`, `Slave_SQL_Running`, `Seconds_Behind_Master`,
  `Gtid_IO_Pos`, `Last_IO_Error`, `Last_SQL_Error`).

A pod with a replica status row is a replica (whether or not its threads run); one without is a
primary. The position is the executed GTIDs (`@@gtid_executed`; MariaDB: `@@gtid_current_pos`).

Rules (`judge`): Diverged when the replica has no replication configured (it was promoted or
reset), or has transactions the primary does not have - MySQL: errant GTIDs, `replica - primary`
is not empty; MariaDB: per domain, a domain the primary never had, a sequence number beyond the
primary's, or the primary's sequence number written by another server (see `gtid.MariaPosition`).
Otherwise, if the primary has transactions the replica lacks, it is behind; lag in seconds is
`Seconds_Behind_Source` (NULL, hence unknown, while the SQL thread is stopped), and the thresholds
decide. MariaDB positions only keep the last GTID per domain: a replica's own write followed by more
primary writes in the same domain looks like lag in them. So `@@gtid_binlog_state` (the last GTID
of each server in each domain) is read too: an entry of the replica's own server_id that the
primary's binary log lacks, or has at a lower number, is Diverged (`gtid.maria_own_errant`).
Without binary logs on the replica that state is empty and the blind spot remains, until the
replica's SQL thread stops on the primary's next GTID in strict mode (its error is then reported
and its link is down).

Credentials: `MYSQL_PWD`, read by both clients (see `common`); options `host`, `port`, `socket`,
`user`, `client` (default `mysql` / `mariadb`), `passwordEnv` / `passwordStdin`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .common import (
    MAX_ERROR,
    clean,
    failed,
    first_line,
    in_sync,
    lag_verdict,
    opt_int,
    opt_str,
    unreadable,
    with_password,
)
from .gtid import GtidSet, MariaPosition, maria_own_errant
from .model import Judgement, Options, ParseFn, Preset, Reading, Thresholds, Verdict

MYSQL_QUERY = (
    "SELECT @@server_uuid AS server_uuid, @@gtid_mode AS gtid_mode, @@gtid_executed AS gtid_executed, "
    "@@read_only AS read_only, @@super_read_only AS super_read_only; SHOW REPLICA STATUS"
)
MARIADB_QUERY = (
    "SELECT @@server_id AS server_id, @@gtid_current_pos AS gtid_current_pos, @@gtid_slave_pos AS gtid_slave_pos, "
    "@@gtid_binlog_pos AS gtid_binlog_pos, @@gtid_binlog_state AS gtid_binlog_state, @@read_only AS read_only; "
    "SHOW SLAVE STATUS"
)
_ROW = re.compile(r"^\*+ \d+\. row \*+$")
_FIELD = re.compile(r"^\s*([A-Za-z_@][A-Za-z0-9_@]*):(?: (.*))?$")


def _command(client: str, query: str) -> Callable[[Options], list[str]]:
    def command(options: Options) -> list[str]:
        argv = [opt_str(options, "client", client) or client, "-E"]
        for flag, key in (("--host", "host"), ("--socket", "socket"), ("--user", "user")):
            value = opt_str(options, key)
            if value is not None:
                argv.append(f"{flag}={value}")
        port = opt_int(options, "port")
        if port is not None:
            argv.append(f"--port={port}")
        return with_password(options, "MYSQL_PWD", [*argv, "-e", query])

    return command


def rows(text: str) -> list[dict[str, str]]:
    """The rows of the client's vertical (`-E`) output; a value may continue on following lines."""
    out: list[dict[str, str]] = []
    key = ""
    for line in text.splitlines():
        if _ROW.match(line.strip()):
            out.append({})
            key = ""
            continue
        if not out:
            continue
        match = _FIELD.match(line)
        if match:
            key = match.group(1)
            out[-1][key] = match.group(2) or ""
        elif key:
            out[-1][key] += "\n" + line
    return out


def _pick(row: dict[str, str], *names: str) -> str | None:
    for name in names:
        if name in row:
            return row[name]
    return None


def _replica_status(status: list[dict[str, str]]) -> tuple[Reading, dict[str, str]]:
    """Link, lag in seconds and details from the replica status rows (one per channel)."""
    details: dict[str, str] = {}
    up = True
    lags: list[float] = []
    unknown_lag = False
    for row in status:
        io = _pick(row, "Replica_IO_Running", "Slave_IO_Running") or ""
        sql = _pick(row, "Replica_SQL_Running", "Slave_SQL_Running") or ""
        up = up and io == "Yes" and sql == "Yes"
        details["ioRunning"], details["sqlRunning"] = io, sql
        seconds = _pick(row, "Seconds_Behind_Source", "Seconds_Behind_Master")
        if seconds is None or not seconds.isdigit():
            unknown_lag = True
        else:
            lags.append(float(seconds))
        for key, names in (
            ("lastIoError", ("Last_IO_Error",)),
            ("lastSqlError", ("Last_SQL_Error",)),
            ("received", ("Retrieved_Gtid_Set", "Gtid_IO_Pos")),
            ("source", ("Source_Host", "Master_Host")),
        ):
            value = (_pick(row, *names) or "").replace("\n", "")
            if value:
                details[key] = value[:MAX_ERROR]
    seconds_behind = None if unknown_lag or not lags else max(lags)
    return Reading(pod="", link="up" if up else "down", lag_seconds=seconds_behind), details


def _without_statement_echo(stderr: str) -> str:
    """stderr without the failing statement that the MariaDB client (10.11) echoes between two
    "--------------" lines before its ERROR line, so that the reason is the error, not a ruler."""
    out, inside = [], False
    for line in stderr.splitlines():
        if line.strip() == "--------------":
            inside = not inside
        elif not inside:
            out.append(line)
    return "\n".join(out) if out else stderr


def _parse(flavor: str) -> ParseFn:
    def parse(pod: str, stdout: str, stderr: str, exit_code: int, *, secrets: Sequence[str] = ()) -> Reading:
        bad = failed(pod, stdout, _without_statement_echo(stderr), exit_code, secrets)
        if bad is not None:
            return bad
        found = rows(stdout)
        if not found:
            return clean(Reading(pod=pod, error=f"unexpected client output: {first_line(stdout)}"), secrets)
        variables, status = found[0], found[1:]
        key = "gtid_executed" if flavor == "MySQL" else "gtid_current_pos"
        if key not in variables:
            return clean(Reading(pod=pod, error=f"the client output has no {key}"), secrets)
        text = variables[key].replace("\n", "")
        try:
            position = str(GtidSet.parse(text) if flavor == "MySQL" else MariaPosition.parse(text))
        except ValueError as e:
            return clean(Reading(pod=pod, error=f"unreadable {key}: {e}"), secrets)
        details = {"readOnly": variables.get("read_only", "")}
        if flavor == "MySQL":
            if variables.get("gtid_mode", "ON") != "ON":
                return clean(
                    Reading(
                        pod=pod, error=f"gtid_mode is {variables.get('gtid_mode')}: GTIDs cannot be compared"
                    ),
                    secrets,
                )
            history, details["superReadOnly"] = (
                variables.get("server_uuid"),
                variables.get("super_read_only", ""),
            )
        else:
            history = variables.get("server_id")
            details |= {
                k: variables[k].replace("\n", "")
                for k in ("gtid_slave_pos", "gtid_binlog_pos", "gtid_binlog_state")
                if variables.get(k)
            }
        if not status:
            return clean(
                Reading(pod=pod, role="primary", position=position, history=history, details=details), secrets
            )
        link, more = _replica_status(status)
        return clean(
            Reading(
                pod=pod,
                role="replica",
                position=position,
                history=history,
                link=link.link,
                lag_seconds=link.lag_seconds,
                details=details | more,
            ),
            secrets,
        )

    return parse


def _count(n: int) -> str:
    return f"{n} transaction" + ("" if n == 1 else "s")


def _threads(replica: Reading) -> str:
    """What stops replication, in words ("" when both threads run)."""
    d = replica.details
    if replica.link != "down":
        return ""
    error = d.get("lastSqlError") or d.get("lastIoError")
    return f"; IO thread running: {d.get('ioRunning')}, SQL thread running: {d.get('sqlRunning')}" + (
        f", error: {error}" if error else ""
    )


def judge_mysql(primary: Reading, replica: Reading, thresholds: Thresholds) -> Judgement:
    unknown = unreadable(primary, replica)
    if unknown is not None:
        return unknown
    pod = replica.pod
    if primary.position is None or replica.position is None:
        return Judgement(pod, Verdict.Unknown, f"{pod} or the primary reported no executed GTIDs")
    mine, theirs = GtidSet.parse(replica.position), GtidSet.parse(primary.position)
    errant, missing = mine - theirs, theirs - mine
    if errant:
        return Judgement(
            pod,
            Verdict.Diverged,
            f"{pod} has {_count(len(errant))} the primary does not have (errant GTIDs {errant}): it was written to directly",
        )
    if replica.role == "primary":
        return Judgement(
            pod,
            Verdict.Diverged,
            f"{pod} has no replication configured: it was promoted or reset and is not following the primary",
        )
    if not missing:
        return in_sync(replica, "has executed every transaction the primary has")
    return lag_verdict(
        replica,
        f"{_count(len(missing))} behind the primary (missing {missing}){_threads(replica)}",
        thresholds,
        None,
        replica.lag_seconds,
        link_note=not _threads(replica),
    )


def judge_mariadb(primary: Reading, replica: Reading, thresholds: Thresholds) -> Judgement:
    unknown = unreadable(primary, replica)
    if unknown is not None:
        return unknown
    pod = replica.pod
    if primary.position is None or replica.position is None:
        return Judgement(pod, Verdict.Unknown, f"{pod} or the primary reported no GTID position")
    errant, behind = MariaPosition.parse(replica.position).compare(MariaPosition.parse(primary.position))
    if errant:
        return Judgement(
            pod,
            Verdict.Diverged,
            f"{pod} has transactions the primary does not have: {', '.join(errant)}; it was written to directly",
        )
    own = _own_errant(primary, replica)
    if own:
        return Judgement(
            pod,
            Verdict.Diverged,
            f"{pod} wrote transactions the primary does not have: {', '.join(own)}; it was written to directly",
        )
    if replica.role == "primary":
        return Judgement(
            pod,
            Verdict.Diverged,
            f"{pod} has no replication configured: it was promoted or reset and is not following the primary",
        )
    if behind == 0:
        return in_sync(replica, f"is at the primary's GTID position {primary.position}")
    return lag_verdict(
        replica,
        f"{_count(behind)} behind the primary ({replica.position} vs {primary.position}){_threads(replica)}",
        thresholds,
        None,
        replica.lag_seconds,
        link_note=not _threads(replica),
    )


def _own_errant(primary: Reading, replica: Reading) -> list[str]:
    """The replica's own writes missing from the primary's binary log (``gtid.maria_own_errant``),
    when both report a binary log state and the replica its server_id; [] when they cannot tell."""
    mine, theirs = replica.details.get("gtid_binlog_state"), primary.details.get("gtid_binlog_state")
    if not mine or not theirs or not (replica.history or "").isdigit():
        return []
    try:
        return maria_own_errant(mine, theirs, int(replica.history or "0"))
    except ValueError:
        return []


MYSQL = Preset(name="MySQL", command=_command("mysql", MYSQL_QUERY), parse=_parse("MySQL"), judge=judge_mysql)
MARIADB = Preset(
    name="MariaDB", command=_command("mariadb", MARIADB_QUERY), parse=_parse("MariaDB"), judge=judge_mariadb
)
