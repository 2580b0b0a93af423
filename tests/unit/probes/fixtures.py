"""Loading the probe fixtures (tests/fixtures/probes/, provenance in its README.md)."""

from __future__ import annotations

import json
from pathlib import Path

from clusterresync.probes import PRESETS, Reading

ROOT = Path(__file__).resolve().parents[2] / "fixtures" / "probes"


def record(engine: str, name: str) -> dict[str, object]:
    """A captured record (`<engine>/<name>.json`): pod, argv, stdout, stderr, exit_code."""
    data = json.loads((ROOT / engine.lower() / f"{name}.json").read_text())
    assert isinstance(data, dict)
    return data


def read(engine: str, name: str, pod: str | None = None) -> Reading:
    """Parse a fixture with its preset: a captured `.json` record, or a constructed `.out` stdout."""
    preset = PRESETS[engine]
    folder = ROOT / engine.lower()
    if (folder / f"{name}.json").exists():
        data = record(engine, name)
        return preset.parse(
            str(data["pod"]), str(data["stdout"]), str(data["stderr"]), int(str(data["exit_code"]))
        )
    stdout = (folder / f"{name}.out").read_text()
    return preset.parse(pod or name.split("-", 1)[1], stdout, "", 0)
