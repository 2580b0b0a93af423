"""What both demos (`make demo`, `make demo-files`) do alike: start kubesim, start the operator as
its ServiceAccount (so the RBAC in manifests/ is what authorizes it), and stop them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
OPERATOR_SA = "clusterresync-system/clusterresync-operator"


def start_kubesim(work: Path, admin: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`kubesim serve` with its data under ``work``, its admin kubeconfig at ``admin``; the process
    and its "kubesim ready" line. Raises RuntimeError, with the end of its log, if it did not start."""
    log_path = work / "kubesim.log"
    cmd = [str(BIN / "kubesim"), "serve", "--kubeconfig", str(admin), "--data-dir", str(work / "data")]
    with log_path.open("wb") as log:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    assert p.stdout is not None
    line = p.stdout.readline().decode()
    if "kubesim ready" not in line:
        stop([p])
        raise RuntimeError(f"kubesim did not start: {line}{log_path.read_text()[-2000:]}")
    return p, line.strip()


def start_operator(work: Path, admin: Path, sa: Path) -> subprocess.Popen[bytes]:
    """The operator, watching every namespace, with the token of its ServiceAccount (a kubeconfig
    written to ``sa``); its log in ``work/operator.log``."""
    subprocess.run(
        [
            str(BIN / "kubesim"),
            "kubeconfig",
            "--server-kubeconfig",
            str(admin),
            "--serviceaccount",
            OPERATOR_SA,
            "--out",
            str(sa),
        ],
        check=True,
    )
    env = dict(
        os.environ,
        KUBECONFIG=str(sa),
        CLUSTERRESYNC_LOG_FORMAT="json",
        POD_NAMESPACE=OPERATOR_SA.split("/")[0],
    )
    with (work / "operator.log").open("wb") as log:
        return subprocess.Popen(
            [str(BIN / "clusterresync-operator"), "--all-namespaces"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(procs: list[subprocess.Popen[bytes]], grace: float = 20) -> None:
    """SIGTERM each process group, last started first; SIGKILL what is still there after ``grace``."""
    for p in reversed(procs):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
