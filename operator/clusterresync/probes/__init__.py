"""Probes: read a pod's replication state with its engine's own client, and judge a replica against
the primary.

A pure library (no Kubernetes I/O): for each engine a `Preset` builds the command to exec in the
pod's container (or, for HTTP, what to GET on the pod), parses that command's output into a
`Reading`, and judges a replica's reading against the primary's as a `Judgement` (`Verdict`
InSync, Lagging, Diverged or Unknown, with a one-sentence reason). Read the replicas first and the
primary last (see `model`). Credentials never appear in an argv or in what the probes return (see
`common`). The engines' rules are in each module's docstring:

- `postgres`: Postgres (LSNs and timelines),
- `mysql`: MySQL and MariaDB (GTID sets and positions, in `gtid`),
- `redis`: Redis (replication ids and offsets),
- `mongodb`: MongoDB (replica set member states and optimes),
- `checksum`: Checksum (a digest of the files under a path),
- `custom`: Command and HTTP (a JSON probe document of your own).
"""

from __future__ import annotations

from . import checksum, custom, mongodb, mysql, postgres, redis
from .model import (
    HttpGet,
    Judgement,
    Options,
    ParseFn,
    Preset,
    ProbeConfigError,
    Reading,
    Thresholds,
    Verdict,
)

PRESETS: dict[str, Preset] = {
    "Postgres": postgres.PRESET,
    "MySQL": mysql.MYSQL,
    "MariaDB": mysql.MARIADB,
    "Redis": redis.PRESET,
    "MongoDB": mongodb.PRESET,
    "Checksum": checksum.PRESET,
    "Command": custom.COMMAND,
    "HTTP": custom.HTTP,
}

__all__ = [
    "PRESETS",
    "HttpGet",
    "Judgement",
    "Options",
    "ParseFn",
    "Preset",
    "ProbeConfigError",
    "Reading",
    "Thresholds",
    "Verdict",
]
