"""Fault injection: the registry every part of kubesim consults, and the API-request faults.

A fault has a ``kind`` (``api``: fail matching requests with a status code; ``latency``: delay
them; other kinds are consulted by the controllers that own them, e.g. ``snapshot`` and
``provision`` by the CSI driver), attributes it must match (verb, resource, namespace, name, ...),
and how often it fires: a ``count`` of times, or a ``probability`` per matching occasion.
Tests use the Python API (``cluster.faults``); scripts use ``POST /kubesim/faults`` or
``kubesim fault``.
"""

from __future__ import annotations

import itertools
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
    ) -> str:
        if count is not None and count < 1:
            raise ValueError("count must be at least 1 (or None for unlimited)")
        if not 0.0 < probability <= 1.0:
            raise ValueError("probability must be in (0, 1]")
        fid = f"f{next(_ids)}"
        self._faults[fid] = Fault(kind, dict(match or {}), count, probability, code, delay, message, fid)
        return fid

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
