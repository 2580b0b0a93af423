"""MongoDB: replica sets, read with `mongosh` in the pod.

The probe runs `replSetGetStatus` (what `rs.status()` wraps;
https://www.mongodb.com/docs/manual/reference/command/replSetGetStatus/) and prints one line of
plain JSON (`SCRIPT`): `{"ok", "set", "myState", "term", "members": [{"name", "state", "stateStr",
"health", "self", "optime": {"ts": {"t", "i"}, "t"}, "optimeDate", "syncSourceHost"}]}`, or
`{"ok": 0, "errmsg", "code", "codeName"}`. The BSON Timestamp `ts` is split into its seconds `t`
and ordinal `i`. The parser also accepts Extended JSON of the command's raw reply (for example
`mongosh --quiet --json=relaxed --eval 'rs.status()'`), where `ts` is `{"$timestamp": {"t", "i"}}`.

A reading is the member with `self: true`: its state (1 PRIMARY, 2 SECONDARY, 3 RECOVERING,
5 STARTUP2, 9 ROLLBACK, ...; https://www.mongodb.com/docs/manual/reference/replica-states/), its
optime as position `"<seconds>:<ordinal>"`, the optime's term as history, and the replica set name.

Rules (`judge`): Diverged when the replica is PRIMARY too (it was elected, or split from the set),
belongs to another replica set, is in ROLLBACK (it is undoing writes the primary does not have), or
its optime is ahead of the primary's, or equal in time but from another term. Lagging while in
STARTUP2 (initial sync) or RECOVERING, or when its optime is behind; lag in seconds is the difference
of the optimes' seconds. Unknown for DOWN, UNKNOWN, REMOVED, ARBITER (no data) and STARTUP.

Credentials: `mongosh` has no password environment variable, so the script authenticates itself with
`db.getSiblingDB(authDatabase).auth(user, process.env.MONGO_PROBE_PASSWORD)` (see `common`); the
user name is embedded as a JSON string literal. Options `host`, `port`, `user`, `authDatabase`
(default `admin`), `tls` (true: `--tls`), `client` (default `mongosh`), `passwordEnv` / `passwordStdin`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .common import (
    clean,
    failed,
    first_line,
    lag_verdict,
    opt_int,
    opt_str,
    unreadable,
    with_password,
)
from .model import Judgement, Options, Preset, Reading, Role, Thresholds, Verdict

SCRIPT = """(() => {
  const user = %s, authDb = %s;
  const env = (typeof process !== "undefined" && process.env) || {};
  const num = (x) => x == null ? null : typeof x === "number" ? x
    : typeof x.toNumber === "function" ? x.toNumber() : Number(x);
  const ts = (x) => x == null ? null : typeof x.t === "number"
    ? {t: x.t, i: x.i} : {t: x.getHighBits() >>> 0, i: x.getLowBits() >>> 0};
  const optime = (o) => o == null ? null : {ts: ts(o.ts), t: num(o.t)};
  let out;
  try {
    if (user) db.getSiblingDB(authDb).auth(user, env.MONGO_PROBE_PASSWORD || "");
    const s = db.adminCommand({replSetGetStatus: 1});
    out = {ok: num(s.ok), set: s.set, myState: num(s.myState), term: num(s.term),
      members: (s.members || []).map((m) => ({
        name: m.name, state: num(m.state), stateStr: m.stateStr, health: num(m.health), self: !!m.self,
        optime: optime(m.optime), optimeDate: m.optimeDate ? m.optimeDate.toISOString() : null,
        syncSourceHost: m.syncSourceHost || ""}))};
  } catch (e) {
    out = {ok: 0, errmsg: String((e && e.message) || e), code: e && e.code, codeName: e && e.codeName};
  }
  print(JSON.stringify(out));
})()"""

STATES = {
    0: "STARTUP",
    1: "PRIMARY",
    2: "SECONDARY",
    3: "RECOVERING",
    5: "STARTUP2",
    6: "UNKNOWN",
    7: "ARBITER",
    8: "DOWN",
    9: "ROLLBACK",
    10: "REMOVED",
}


def command(options: Options) -> list[str]:
    argv = [opt_str(options, "client", "mongosh") or "mongosh", "--quiet", "--norc"]
    host = opt_str(options, "host")
    if host is not None:
        argv += ["--host", host]
    port = opt_int(options, "port")
    if port is not None:
        argv += ["--port", str(port)]
    if options.get("tls") is True:
        argv.append("--tls")
    user = opt_str(options, "user") or ""
    auth_db = opt_str(options, "authDatabase", "admin") or "admin"
    script = SCRIPT % (json.dumps(user), json.dumps(auth_db))
    return with_password(options, "MONGO_PROBE_PASSWORD", [*argv, "--eval", script])


def _number(value: Any) -> int:
    """An integer from plain or Extended JSON (`{"$numberLong": "3"}`, `{"$numberInt": "3"}`)."""
    if isinstance(value, Mapping):
        value = value.get("$numberLong", value.get("$numberInt", value.get("$numberDouble")))
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a number: {value!r}")
    return int(float(value)) if isinstance(value, str) else int(value)


def _optime(value: Any) -> tuple[int, int, int] | None:
    """(seconds, ordinal, term) of an optime, or None when the member has none."""
    if not isinstance(value, Mapping) or value.get("ts") is None:
        return None
    ts = value["ts"]
    if isinstance(ts, Mapping) and "$timestamp" in ts:
        ts = ts["$timestamp"]
    if not isinstance(ts, Mapping):
        raise ValueError(f"not a timestamp: {ts!r}")
    return _number(ts["t"]), _number(ts["i"]), _number(value.get("t", -1))


def _json(stdout: str) -> Any:
    """The last line of stdout that is a JSON object (mongosh may print warnings before it)."""
    lines = [line for line in stdout.splitlines() if line.strip().startswith("{")]
    if lines:
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            pass
    return json.loads(stdout)


def parse(pod: str, stdout: str, stderr: str, exit_code: int, *, secrets: Sequence[str] = ()) -> Reading:
    bad = failed(pod, stdout, stderr, exit_code, secrets)
    if bad is not None:
        return bad
    try:
        status = _json(stdout)
    except json.JSONDecodeError:
        return clean(Reading(pod=pod, error=f"mongosh printed no JSON: {first_line(stdout)}"), secrets)
    if not isinstance(status, Mapping):
        return clean(Reading(pod=pod, error="mongosh printed JSON that is not an object"), secrets)
    if _number(status.get("ok", 0)) != 1:
        why = status.get("errmsg") or status.get("codeName") or "no error message"
        return clean(Reading(pod=pod, error=f"replSetGetStatus failed: {why}"), secrets)
    members = status.get("members")
    me = [m for m in members if isinstance(m, Mapping) and m.get("self")] if isinstance(members, list) else []
    if len(me) != 1:
        return clean(Reading(pod=pod, error="replSetGetStatus lists no member with self: true"), secrets)
    member = me[0]
    try:
        state = _number(member.get("state", status.get("myState")))
        optime = _optime(member.get("optime"))
    except (KeyError, TypeError, ValueError) as e:
        return clean(Reading(pod=pod, error=f"unreadable replSetGetStatus member: {e}"), secrets)
    details = {
        "set": str(status.get("set", "")),
        "state": str(member.get("stateStr") or STATES.get(state, str(state))),
        "member": str(member.get("name", "")),
    }
    if member.get("syncSourceHost"):
        details["syncSource"] = str(member["syncSourceHost"])
    role: Role = "primary" if state == 1 else "replica" if state in (2, 3, 5, 9) else "unknown"
    error = None if state in (1, 2, 3, 5, 9) else f"the member is in state {details['state']}"
    return clean(
        Reading(
            pod=pod,
            role=role,
            position=f"{optime[0]}:{optime[1]}" if optime else None,
            history=str(optime[2]) if optime else None,
            link=("up" if state == 2 and details.get("syncSource") else "down")
            if role == "replica"
            else None,
            error=error,
            details=details,
        ),
        secrets,
    )


def _ts(position: str) -> tuple[int, int]:
    seconds, _, ordinal = position.partition(":")
    return int(seconds), int(ordinal)


def judge(primary: Reading, replica: Reading, thresholds: Thresholds) -> Judgement:
    unknown = unreadable(primary, replica)
    if unknown is not None:
        return unknown
    pod, state = replica.pod, replica.details.get("state", "")
    if primary.role != "primary":
        return Judgement(
            pod,
            Verdict.Unknown,
            f"{primary.pod} is not PRIMARY ({primary.details.get('state')}), so {pod} cannot be compared with it",
        )
    if replica.role == "primary":
        return Judgement(
            pod,
            Verdict.Diverged,
            f"{pod} is PRIMARY as well (term {replica.history}): it was elected apart from {primary.pod} and may have taken writes",
        )
    if replica.details.get("set") != primary.details.get("set"):
        return Judgement(
            pod,
            Verdict.Diverged,
            f"{pod} belongs to replica set {replica.details.get('set')!r}, the primary to {primary.details.get('set')!r}",
        )
    if state == "ROLLBACK":
        return Judgement(
            pod, Verdict.Diverged, f"{pod} is in ROLLBACK: it is undoing writes the primary does not have"
        )
    if state in ("STARTUP2", "RECOVERING") or replica.position is None or primary.position is None:
        return Judgement(
            pod, Verdict.Lagging, f"{pod} is in state {state}: it is not yet a readable copy of the primary"
        )
    mine, theirs = _ts(replica.position), _ts(primary.position)
    term, primary_term = int(replica.history or -1), int(primary.history or -1)
    if term > primary_term:
        return Judgement(
            pod,
            Verdict.Diverged,
            f"{pod} has applied operations of term {term}, the primary is in term {primary_term}: they come from an election the primary never saw",
        )
    if mine > theirs:
        return Judgement(
            pod,
            Verdict.Diverged,
            f"{pod} has applied up to {replica.position}, beyond the primary's {primary.position}: it has writes the primary does not",
        )
    if mine == theirs and term != primary_term:
        return Judgement(
            pod,
            Verdict.Diverged,
            f"{pod}'s last operation {replica.position} is from term {term}, the primary's from term {primary_term}: they are different operations",
        )
    if mine == theirs:
        return Judgement(
            pod,
            Verdict.InSync,
            f"{pod} has applied the primary's last operation {primary.position} (term {primary_term})",
            None,
            0.0,
        )
    seconds = float(theirs[0] - mine[0])
    return lag_verdict(
        replica,
        f"behind the primary by {seconds:g} s of operations ({replica.position} vs {primary.position})",
        thresholds,
        None,
        seconds,
    )


PRESET = Preset(name="MongoDB", command=command, parse=parse, judge=judge)
