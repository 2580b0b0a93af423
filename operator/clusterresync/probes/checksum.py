"""Checksum: a deterministic digest of the files under a path, compared primary vs replica.

The command (`SCRIPT`, run by `sh`) changes into `path`, lists the regular files with `find`
(pruning the `exclude` patterns, matched by `find -path` against `./relative/path`, e.g.
`./pg_wal`, `./postmaster.pid`, `*.log`), sorts them bytewise (`LC_ALL=C sort -z`), hashes each with
`sha256sum`, and prints:

    files=<number of files>
    sha256=<sha256 of the "digest  ./path" list>

so the digest covers both the contents and the names. The container needs a POSIX `sh`, `find`,
`sort -z`, `xargs -0 -r`, `sha256sum`, `wc` and `cut` (GNU coreutils/findutils or busybox).
Anything on stderr (a file that vanished, a permission denied) makes the reading Unknown: a digest
of part of the tree proves nothing.

Rules (`judge`): the checksum has no notion of position or lag, so a difference cannot be told apart
from lag: it is reported as Diverged. Use this preset on data that is quiescent when compared (a
stopped or fenced database, static content, the verification step after a resync), where a
difference really means different data; equal digests are InSync. Options: `path` (required),
`exclude` (list of `find -path` patterns).
"""

from __future__ import annotations

from collections.abc import Sequence

from .common import clean, failed, first_line, in_sync, opt_list, opt_str, unreadable
from .model import Judgement, Options, Preset, ProbeConfigError, Reading, Thresholds, Verdict

SCRIPT = (
    'set -eu; cd -- "$1"; shift; '
    'list=$(find . "$@" -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum --); '
    'if [ -z "$list" ]; then n=0; else n=$(printf "%s\\n" "$list" | wc -l); fi; '
    'printf "files=%s\\nsha256=%s\\n" "$n" "$(printf "%s\\n" "$list" | sha256sum | cut -d" " -f1)"'
)


def command(options: Options) -> list[str]:
    path = opt_str(options, "path")
    if path is None:
        raise ProbeConfigError("the Checksum preset needs option 'path'")
    excludes = opt_list(options, "exclude")
    prune: list[str] = []
    for pattern in excludes:
        prune += (["-o"] if prune else []) + ["-path", pattern]
    find_args = ["(", *prune, ")", "-prune", "-o"] if prune else []
    return ["sh", "-c", SCRIPT, "checksum", path, *find_args]


def parse(pod: str, stdout: str, stderr: str, exit_code: int, *, secrets: Sequence[str] = ()) -> Reading:
    bad = failed(pod, stdout, stderr, exit_code, secrets)
    if bad is not None:
        return bad
    if stderr.strip():
        return clean(Reading(pod=pod, error=f"the checksum is incomplete: {first_line(stderr)}"), secrets)
    values = dict(line.partition("=")[::2] for line in stdout.split() if "=" in line)
    digest, files = values.get("sha256", ""), values.get("files", "")
    if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest) or not files.isdigit():
        return clean(Reading(pod=pod, error=f"unexpected checksum output: {first_line(stdout)}"), secrets)
    return clean(Reading(pod=pod, checksum=digest, details={"files": files}), secrets)


def judge(primary: Reading, replica: Reading, thresholds: Thresholds) -> Judgement:
    del thresholds  # a digest has no lag
    unknown = unreadable(primary, replica)
    if unknown is not None:
        return unknown
    pod = replica.pod
    if replica.checksum == primary.checksum:
        return in_sync(
            replica,
            f"has the same files as the primary ({replica.details.get('files')} files, sha256 {(replica.checksum or '')[:12]}…)",
        )
    mine, theirs = replica.details.get("files"), primary.details.get("files")
    count = f"{mine} files vs {theirs}" if mine != theirs else f"{mine} files each"
    return Judgement(
        pod,
        Verdict.Diverged,
        f"{pod}'s files differ from the primary's ({count}; sha256 {(replica.checksum or '')[:12]}… vs {(primary.checksum or '')[:12]}…)",
    )


PRESET = Preset(name="Checksum", command=command, parse=parse, judge=judge)
