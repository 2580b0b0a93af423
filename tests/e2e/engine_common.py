"""What the real-engine end-to-end tests (tests/e2e/test_engine_*.py) share: a ClusterResync of an
engine's StatefulSet run to its end, the probe verdicts and conditions of its status, the guide's
YAML blocks, a SQL client that keeps writing to the primary, and a graceful stop of the engine."""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import yaml

from kubesim.testing import KubeSim

from .conftest import apply, wait_for
from .test_resync import get


def resync(
    cluster: KubeSim,
    ns: str,
    name: str,
    *,
    target: str,
    primary: str,
    probe: dict[str, Any],
    timeout: float = 180,
    **spec: Any,
) -> dict[str, Any]:
    """Apply a ClusterResync of StatefulSet ``target`` (volume ``data``, primary pod ``primary``,
    with ``probe``) and wait until it is Completed or Failed."""
    body = {
        "apiVersion": "clusterresync.io/v1alpha1",
        "kind": "ClusterResync",
        "metadata": {"name": name},
        "spec": {
            "target": {"name": target},
            "primary": {"podName": primary},
            "volumes": ["data"],
            "primaryStableSeconds": 0,
            "probe": probe,
            **spec,
        },
    }
    apply(cluster, ns, body)

    def done() -> dict[str, Any] | None:
        obj = get(cluster, "crsync", "-n", ns, name)
        return obj if (obj.get("status") or {}).get("phase") in ("Completed", "Failed") else None

    out: dict[str, Any] = wait_for(done, timeout, f"ClusterResync {name} to finish")
    return out


def verdicts(obj: dict[str, Any], stage: str = "Before") -> dict[str, dict[str, Any]]:
    """status.probes of one stage (Before, After), by pod."""
    return {p["pod"]: p for p in obj["status"].get("probes", []) if p["stage"] == stage}


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in obj["status"].get("conditions", []) if c["type"] == type_), {})


def guide_specs(guide: Path) -> list[dict[str, Any]]:
    """The ``spec`` of every YAML block of an engine guide that has one (to check that the guide
    shows exactly the probe and restore hook a test uses)."""
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", guide.read_text(), re.S)]
    return [b["spec"] for b in blocks if isinstance(b, dict) and isinstance(b.get("spec"), dict)]


def stop_engine(cluster: KubeSim, ns: str, sts: str) -> None:
    """Scale the engine's StatefulSet to 0 and wait for its pods to go: each server stops on
    SIGTERM and cleans up (shared memory, pid files) instead of being SIGKILLed when kubesim
    stops. Then delete the namespace."""
    cluster.kubectl("scale", "sts", sts, "-n", ns, "--replicas=0", check=False)
    wait_for(
        lambda: not get(cluster, "pods", "-n", ns, "-l", f"app={sts}")["items"], 90, f"the {sts} pods to stop"
    )
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


class SqlWriter:
    """A client of the primary that inserts a row into ``table`` every ``interval`` seconds, over
    TCP from outside the pod (one session of the engine's client, ``argv``, reading its
    statements from stdin), until stopped. ``sent`` counts the statements sent."""

    def __init__(self, argv: list[str], env: dict[str, str], table: str, interval: float = 0.05) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True
        )
        self.table, self.interval = table, interval
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.proc.stdin is not None
        while not self._stop.wait(self.interval):
            try:
                self.proc.stdin.write(f"INSERT INTO {self.table} (v) VALUES ('during resync');\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                return
            self.sent += 1

    def kill(self) -> None:
        """Stop at once (cleanup after a failure)."""
        self._stop.set()
        self.proc.kill()
        self._thread.join(10)
        self.proc.communicate()

    def stop(self) -> str:
        """Stop writing, end the session (every statement sent is run first) and return its errors."""
        self._stop.set()
        self._thread.join(10)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err or ""


def assert_forced_over_divergence(
    cluster: KubeSim, ns: str, out: dict[str, Any], replica: str, log: str
) -> None:
    """A resync with ``force`` over a replica its probe found Diverged completed: verified InSync
    after the swap, and a Warning Event ``ForcedDespiteDivergence`` names the replica."""
    assert out["status"]["phase"] == "Completed", (out["status"], log[-3000:])
    assert condition(out, "Complete").get("reason") == "ResyncSucceeded", out["status"]
    assert verdicts(out)[replica]["verdict"] == "Diverged"
    assert verdicts(out, "After")[replica]["verdict"] == "InSync", out["status"]["probes"]
    events = get(cluster, "events", "-n", ns, "--field-selector", "reason=ForcedDespiteDivergence")["items"]
    assert any(replica in e["message"] and e["type"] == "Warning" for e in events), events
