"""Fault injection: the registry every part of kubesim consults, and the API-request faults.

A fault has a ``kind`` (``api``: fail matching requests with a status code; ``latency``: delay
them; other kinds are consulted by the controllers that own them, e.g. ``snapshot`` and
``provision`` by the CSI driver), attributes it must match (verb, resource, namespace, name, ...),
and how often it fires: a ``count`` of times, or a ``probability`` per matching occasion.
An ``api`` fault answers a ``Status`` with ``code``, the reason apimachinery uses for it and
``message``; ``details`` (e.g. ``causes``) go into the Status as they are, and ``retry_after``
sends a ``Retry-After`` header and ``details.retryAfterSeconds`` (429 and 503 get 1 second
unless told otherwise), as ``apierrors.NewTooManyRequests`` and the apiserver's filters do.
Tests use the Python API (``cluster.faults``); scripts use ``POST /kubesim/faults`` or
``kubesim admin faults JSON``.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

_ids = itertools.count(1)


@dataclass
class Fault:
    kind: str
    match: dict[str, str] = field(default_factory=dict)
    count: int | None = None  # remaining firings; None means unlimited
    probability: float = 1.0
    code: int = 500
    delay: float = 0.0
    message: str = ""
    id: str = ""
    fired: int = 0
    retry_after: float | None = None  # seconds; sent rounded up to whole seconds, as HTTP carries it
    details: dict[str, Any] | None = None  # merged into the Status details of an ``api`` fault

    def retry_after_seconds(self) -> int | None:
        """The ``Retry-After`` of an ``api`` fault in whole seconds (rounded up): ``retry_after``,
        else 1 for a 429 or 503 (what the apiserver's filters send), else None."""
        if self.retry_after is not None:
            return math.ceil(self.retry_after)
        return 1 if self.code in (429, 503) else None

    def matches(self, attrs: dict[str, str]) -> bool:
        return all(attrs.get(k, "") == v for k, v in self.match.items())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Faults:
    def __init__(self, seed: int | None = None) -> None:
        self._faults: dict[str, Fault] = {}
        self._random = random.Random(seed)

    def add(
        self,
        kind: str,
        *,
        match: dict[str, str] | None = None,
        count: int | None = None,
        probability: float = 1.0,
        code: int = 500,
        delay: float = 0.0,
        message: str = "",
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> str:
        if count is not None and count < 1:
            raise ValueError("count must be at least 1 (or None for unlimited)")
        if not 0.0 < probability <= 1.0:
            raise ValueError("probability must be in (0, 1]")
        if retry_after is not None and (not math.isfinite(retry_after) or retry_after < 0):
            raise ValueError("retry_after must be a number of seconds >= 0")
        if details is not None and not isinstance(details, dict):
            raise ValueError("details must be an object")
        fid = f"f{next(_ids)}"
        self._faults[fid] = Fault(
            kind,
            dict(match or {}),
            count,
            probability,
            code,
            delay,
            message,
            fid,
            retry_after=retry_after,
            details=dict(details) if details is not None else None,
        )
        return fid

    def add_from_args(self, args: dict[str, Any]) -> str:
        """``add`` from the JSON body of ``POST /kubesim/faults`` (unknown keys are refused)."""
        known = {
            "kind",
            "match",
            "count",
            "probability",
            "code",
            "delay",
            "message",
            "retry_after",
            "details",
        }
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(
                f"unknown fault field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        retry_after = args.get("retry_after")
        return self.add(
            args["kind"],
            match=args.get("match"),
            count=args.get("count"),
            probability=float(args.get("probability", 1.0)),
            code=int(args.get("code", 500)),
            delay=float(args.get("delay", 0.0)),
            message=args.get("message", ""),
            retry_after=float(retry_after) if retry_after is not None else None,
            details=args.get("details"),
        )

    def remove(self, fid: str) -> bool:
        return self._faults.pop(fid, None) is not None

    def clear(self) -> None:
        self._faults.clear()

    def list(self) -> list[Fault]:
        return list(self._faults.values())

    def check(self, kind: str, **attrs: str) -> Fault | None:
        """The first fault of ``kind`` that matches and fires now (its count is used up by one)."""
        for fid, f in list(self._faults.items()):
            if f.kind != kind or not f.matches(attrs):
                continue
            if f.probability < 1.0 and self._random.random() >= f.probability:
                continue
            f.fired += 1
            if f.count is not None:
                f.count -= 1
                if f.count <= 0:
                    del self._faults[fid]
            return f
        return None
