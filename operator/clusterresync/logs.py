"""structlog set-up: JSON lines in a cluster (or when asked), readable key=value on a terminal.

Log records carry the resync, its namespace and target (and the replica where one is concerned);
secrets are never logged: the operator handles no credentials of its own beyond the client's,
which the kubernetes client keeps out of its log output.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog


def json_wanted() -> bool:
    """JSON lines when ``CLUSTERRESYNC_LOG_FORMAT=json``, or unset and stderr is no terminal."""
    fmt = os.environ.get("CLUSTERRESYNC_LOG_FORMAT", "")
    return fmt == "json" or (fmt != "console" and not sys.stderr.isatty())


def configure(level: int = logging.INFO, json_output: bool | None = None) -> None:
    if json_output is None:
        json_output = json_wanted()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
