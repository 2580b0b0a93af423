"""The probe vocabulary shared by every engine: a per-pod `Reading`, the `Thresholds` a replica may lag
by, the `Judgement` of a replica against the primary, and the `Preset` that bundles an engine's
command, parser and judge.

Everything here is pure: no Kubernetes, no subprocess. The operator's adapter runs `Preset.command`
in the pod's container through pod exec (or GETs `Preset.http_path` on the pod for the HTTP preset),
hands the output to `Preset.parse`, and `Preset.judge` compares a replica's reading with the primary's.

Order of readings: read the replicas first and the primary last. A replica can then never be
legitimately ahead of the primary's reading, so "ahead" is a reliable sign of divergence.

Thresholds: a replica whose position differs from the primary's is `Lagging` unless every threshold
that is set (not None) is met by a measured value. None means "grants no tolerance": with the default
`Thresholds()` only an exact position match is `InSync`. With `max_lag_seconds=5` a replica that is
behind but reports at most 5 s of lag is `InSync`; one that cannot report its lag in seconds is not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol

Role = Literal["primary", "replica", "unknown"]
Link = Literal["up", "down"]
# The preset's options, as written in the ClusterResync spec (camelCase keys, YAML values).
Options = Mapping[str, object]


class Verdict(StrEnum):
    """How a replica compares with the primary."""

    InSync = "InSync"
    Lagging = "Lagging"
    Diverged = "Diverged"
    Unknown = "Unknown"


@dataclass(frozen=True)
class Reading:
    """What one pod says about its replication state, engine-neutral.

    `position` is an engine-specific comparable position (a PostgreSQL LSN, a GTID set, a Redis
    replication offset, a MongoDB optime); `history` names the line of history that position belongs
    to (a timeline, a replication id, a replica set term); `error` is set, and the other fields may be
    missing, when the output could not be read.
    """

    pod: str
    role: Role = "unknown"
    position: str | None = None
    history: str | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    checksum: str | None = None
    link: Link | None = None
    error: str | None = None
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Thresholds:
    """How far behind a replica may be and still count as in sync (None: no tolerance on that measure)."""

    max_lag_bytes: int | None = None
    max_lag_seconds: float | None = None


@dataclass(frozen=True)
class Judgement:
    """A replica judged against the primary, with one sentence saying why."""

    pod: str
    verdict: Verdict
    reason: str
    lag_bytes: int | None = None
    lag_seconds: float | None = None


@dataclass(frozen=True)
class HttpGet:
    """What the HTTP preset GETs on the pod: `scheme://<pod IP>:port/path`."""

    port: int
    path: str
    scheme: Literal["http", "https"] = "http"

    def url(self, host: str) -> str:
        return f"{self.scheme}://{host}:{self.port}{self.path}"


class ProbeConfigError(ValueError):
    """The preset's options are invalid (reported to the user; never contains a credential)."""


class ParseFn(Protocol):
    """`parse(pod, stdout, stderr, exit_code, *, secrets=()) -> Reading`."""

    def __call__(
        self, pod: str, stdout: str, stderr: str, exit_code: int, *, secrets: Sequence[str] = ()
    ) -> Reading: ...


JudgeFn = Callable[[Reading, Reading, Thresholds], Judgement]


@dataclass(frozen=True)
class Preset:
    """One engine's probe.

    Exactly one of `command` (argv to exec in the pod's container) and `http_path` (what to GET on
    the pod) is set; `transport` says which. `parse(pod, stdout, stderr, exit_code, *, secrets=())`
    turns the output into a `Reading` (for HTTP: the body as stdout and the HTTP status code as
    exit_code; when the request itself failed, exit_code 0 and the error as stderr); `secrets` are values to scrub besides the generic patterns (pass the
    Secret's value when the operator knows it). `judge(primary, replica, thresholds)` compares.
    """

    name: str
    parse: ParseFn
    judge: JudgeFn
    command: Callable[[Options], list[str]] | None = None
    http_path: Callable[[Options], HttpGet] | None = None

    def __post_init__(self) -> None:
        if (self.command is None) == (self.http_path is None):
            raise ValueError(f"preset {self.name}: set exactly one of command and http_path")

    @property
    def transport(self) -> Literal["exec", "http"]:
        return "exec" if self.command is not None else "http"

    def wants_stdin(self, options: Options) -> bool:
        """Whether the operator must write the password Secret's value, then a newline, on the exec's stdin."""
        return self.command is not None and options.get("passwordStdin") is True
