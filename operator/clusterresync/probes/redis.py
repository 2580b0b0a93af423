"""Redis: asynchronous replication, read with `redis-cli INFO replication` in the pod.

Fields used (https://redis.io/docs/latest/commands/info/, section "replication", and
https://redis.io/docs/latest/operate/oss_and_stack/management/replication/):

- `role`: `master` or `slave`.
- `master_replid` and `master_repl_offset`: the replication id (the history) and the offset in it.
  A replica inherits its primary's replid; its `master_repl_offset` is what it has processed (the
  same as `slave_repl_offset`).
- `master_replid2` and `second_repl_offset`: after a promotion, the id of the history the node
  used to follow and the offset up to which that history is still accepted for a partial resync.
- replica only: `master_link_status` (`up`/`down`), `master_host`, `master_port`,
  `master_sync_in_progress`; primary only: `connected_slaves` and the `slaveN:` lines.

Rules (`judge`): Diverged when the replica's role is `master` (it was promoted and may have been
written to), or its replid is neither the primary's replid nor the primary's replid2 (the history
the primary was promoted from), or it is on the primary's replid2 but past `second_repl_offset`
(it took writes the primary never had), or its offset is ahead of the primary's. A replica on the
primary's replid2 within `second_repl_offset` is Lagging: it can continue with a partial resync.
Otherwise lag in bytes is the difference of the offsets (Redis has no lag in seconds).

Credentials: `REDISCLI_AUTH` (see `common`); options `host`, `port`, `user` (ACL user, `--user`),
`tls` (true: `--tls`), `client` (default `redis-cli`), `passwordEnv` / `passwordStdin`.
"""

from __future__ import annotations

from collections.abc import Sequence

from .common import (
    by_distance,
    clean,
    failed,
    first_line,
    opt_int,
    opt_str,
    unreadable,
    with_password,
)
from .model import Judgement, Options, Preset, Reading, Thresholds, Verdict

NO_REPLID = "0" * 40


def command(options: Options) -> list[str]:
    argv = [opt_str(options, "client", "redis-cli") or "redis-cli", "--no-auth-warning"]
    host = opt_str(options, "host")
    if host is not None:
        argv += ["-h", host]
    port = opt_int(options, "port")
    if port is not None:
        argv += ["-p", str(port)]
    user = opt_str(options, "user")
    if user is not None:
        argv += ["--user", user]
    if options.get("tls") is True:
        argv.append("--tls")
    return with_password(options, "REDISCLI_AUTH", [*argv, "INFO", "replication"])


def fields(text: str) -> dict[str, str]:
    """The `key:value` lines of an INFO section (CRLF or LF; `#` lines are headers)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            key, _, value = line.partition(":")
            out[key] = value
    return out


def parse(pod: str, stdout: str, stderr: str, exit_code: int, *, secrets: Sequence[str] = ()) -> Reading:
    bad = failed(pod, stdout, stderr, exit_code, secrets)
    if bad is not None:
        return bad
    info = fields(stdout)
    if "role" not in info:
        # redis-cli prints server errors (NOAUTH, WRONGPASS, LOADING) on stdout and exits 0.
        said = first_line(stdout) + (f" ({first_line(stderr)})" if stderr.strip() else "")
        return clean(Reading(pod=pod, error=f"redis said: {said}"), secrets)
    try:
        offset = int(info["master_repl_offset"])
        replid = info["master_replid"]
    except (KeyError, ValueError):
        return clean(
            Reading(pod=pod, error="INFO replication has no master_replid/master_repl_offset"), secrets
        )
    details: dict[str, str] = {k: info[k] for k in ("master_replid2", "second_repl_offset") if k in info}
    if info["role"] == "master":
        details["connectedReplicas"] = info.get("connected_slaves", "0")
        return clean(
            Reading(pod=pod, role="primary", position=str(offset), history=replid, details=details), secrets
        )
    if info["role"] != "slave":
        return clean(Reading(pod=pod, error=f"unexpected role {info['role']!r}"), secrets)
    if "master_host" in info:
        details["master"] = f"{info['master_host']}:{info.get('master_port', '')}"
    if info.get("master_sync_in_progress") == "1":
        details["syncInProgress"] = "true"
    link = info.get("master_link_status")
    return clean(
        Reading(
            pod=pod,
            role="replica",
            position=str(offset),
            history=replid,
            link="up" if link == "up" else "down",
            details=details,
        ),
        secrets,
    )


def judge(primary: Reading, replica: Reading, thresholds: Thresholds) -> Judgement:
    unknown = unreadable(primary, replica)
    if unknown is not None:
        return unknown
    pod = replica.pod
    if primary.position is None or replica.position is None:
        return Judgement(pod, Verdict.Unknown, f"{pod} or the primary reported no replication offset")
    if replica.role == "primary":
        return Judgement(
            pod,
            Verdict.Diverged,
            f"{pod} has role master (replication id {replica.history}): it was promoted and may have been written to",
        )
    if replica.history == NO_REPLID:
        return Judgement(
            pod, Verdict.Lagging, f"{pod} is still doing its initial full synchronization with the primary"
        )
    offset, primary_offset = int(replica.position), int(primary.position)
    if replica.history != primary.history:
        if replica.history == primary.details.get("master_replid2"):
            limit = int(primary.details.get("second_repl_offset", "-1"))
            if offset < limit:
                return Judgement(
                    pod,
                    Verdict.Lagging,
                    f"{pod} still follows the history {primary.pod} was promoted from (offset {offset}, accepted up to {limit - 1}): it can continue with a partial resync",
                    primary_offset - offset,
                )
            return Judgement(
                pod,
                Verdict.Diverged,
                f"{pod} went on along the previous history to offset {offset}, past offset {limit - 1} where {primary.pod} was promoted: it has writes the primary does not",
            )
        if replica.link != "up":
            # A replica that has not yet had its first full synchronization reports a replication
            # id of its own (Redis 7 gives every server a random one at start), not zeros: the
            # primary's id reaches it only with +FULLRESYNC (replication.c, syncWithMaster and
            # readSyncBulkPayload), and its dataset is then replaced by the primary's.
            return Judgement(
                pod,
                Verdict.Lagging,
                f"{pod} is a replica waiting for a full synchronization (its link is down, its replication id "
                f"{replica.history} is not the primary's {primary.history}): Redis will replace its data with "
                "the primary's when it connects",
                primary_offset,
            )
        return Judgement(
            pod,
            Verdict.Diverged,
            f"{pod} is on replication id {replica.history}, the primary on {primary.history}: it follows another history",
        )
    diff = primary_offset - offset
    syncing = ", reconnecting" if replica.details.get("syncInProgress") == "true" else ""
    return by_distance(
        replica,
        diff,
        ahead=f"is at offset {offset}, ahead of the primary's {primary_offset}: it has writes the primary does not",
        equal=f"is at the primary's replication offset {primary_offset}",
        behind=f"{diff} bytes of the replication stream behind the primary (offset {offset} vs "
        f"{primary_offset}{syncing})",
        thresholds=thresholds,
        lag_seconds=None,
    )


PRESET = Preset(name="Redis", command=command, parse=parse, judge=judge)
