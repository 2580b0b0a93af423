"""The ``kubesim`` command: serve, readiness time, kubeconfigs, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kubesim.testing import kubectl_binary


def _kubesim() -> list[str]:
    return [sys.executable, "-m", "kubesim.cli"]


def test_serve_ready_fast_and_stops_on_sigterm(tmp_path: Path) -> None:
    kc = tmp_path / "admin.kubeconfig"
    started = time.monotonic()
    proc = subprocess.Popen(
        [*_kubesim(), "serve", "--kubeconfig", str(kc), "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        ready_after = time.monotonic() - started
        assert "kubesim ready" in line, line
        # Measured from process start, interpreter start-up included.
        print(f"kubesim serve ready after {ready_after:.2f}s")
        # The figure is reported, not asserted: timings on shared machines are noisy (see bench/).
        env = dict(os.environ, KUBECONFIG=str(kc), KUBECACHEDIR=str(tmp_path / "cache"))
        out = subprocess.run(
            [kubectl_binary(), "get", "namespaces", "-o", "name"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "namespace/default" in out.stdout, out.stderr
        # A ServiceAccount kubeconfig, through the TokenRequest API.
        subprocess.run(
            [kubectl_binary(), "create", "serviceaccount", "robot"],
            env=env,
            check=True,
            capture_output=True,
            timeout=30,
        )
        sa_kc = tmp_path / "robot.kubeconfig"
        subprocess.run(
            [
                *_kubesim(),
                "kubeconfig",
                "--server-kubeconfig",
                str(kc),
                "--serviceaccount",
                "default/robot",
                "--out",
                str(sa_kc),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        who = subprocess.run(
            [kubectl_binary(), "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
            env=dict(env, KUBECONFIG=str(sa_kc)),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert who.stdout == "system:serviceaccount:default:robot", who.stderr
        denied = subprocess.run(
            [kubectl_binary(), "get", "pods"],
            env=dict(env, KUBECONFIG=str(sa_kc)),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert denied.returncode != 0 and "Forbidden" in denied.stderr
        missing = subprocess.run(
            [
                *_kubesim(),
                "kubeconfig",
                "--server-kubeconfig",
                str(kc),
                "--serviceaccount",
                "default/nobody",
                "--out",
                str(tmp_path / "x"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert missing.returncode == 1 and "not found" in missing.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(10)
    assert rc == 0


def test_admin_cli_injects_a_fault(tmp_path: Path) -> None:
    kc = tmp_path / "admin.kubeconfig"
    proc = subprocess.Popen(
        [*_kubesim(), "serve", "--kubeconfig", str(kc)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and "kubesim ready" in proc.stdout.readline()
        out = subprocess.run(
            [
                *_kubesim(),
                "admin",
                "faults",
                '{"kind": "api", "match": {"verb": "list", "resource": "nodes"}, "code": 500, "count": 1}',
                "--kubeconfig",
                str(kc),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0 and '"id"' in out.stdout, out.stderr
        env = dict(os.environ, KUBECONFIG=str(kc), KUBECACHEDIR=str(tmp_path / "cache"))
        first = subprocess.run(
            [kubectl_binary(), "get", "nodes"], env=env, capture_output=True, text=True, timeout=30
        )
        # (a 503 would be retried by client-go, which honours Retry-After; a 500 is not)
        assert first.returncode != 0
        assert "kubesim injected fault" in first.stderr
        second = subprocess.run(
            [kubectl_binary(), "get", "nodes", "-o", "name"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 0 and "node/kubesim-node-1" in second.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_images_file_registers_image_configs(tmp_path: Path) -> None:
    import pytest

    from kubesim.cli import load_images
    from kubesim.kubelet import ImageConfig

    f = tmp_path / "images.yaml"
    f.write_text(
        "busybox:\n  Entrypoint: [/bin/sh, -c]\n  Cmd: ['echo hi']\n"
        "ghcr.io/org/app:1.0:\n  Entrypoint: [app]\n  Env: [A=1]\n  User: '65532:65532'\n  WorkingDir: /w\n"
    )
    assert load_images(f) == {
        "docker.io/library/busybox:latest": ImageConfig(entrypoint=("/bin/sh", "-c"), cmd=("echo hi",)),
        "ghcr.io/org/app:1.0": ImageConfig(
            entrypoint=("app",), env=("A=1",), user="65532:65532", working_dir="/w"
        ),
    }
    f.write_text("app:\n  Entrypoint: [x]\n  Volumes: {}\n")
    with pytest.raises(SystemExit, match=r"unsupported image config keys: \['Volumes'\]"):
        load_images(f)
