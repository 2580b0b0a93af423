"""The chart's own Deployment runs the operator: installed by Helm's engine into kubesim, its pod
started by kubesim's kubelet as a process (the image's ENTRYPOINT, the chart's arguments, uid
65532 under the namespace's ``restricted`` Pod Security level), logged in from inside the pod
(the projected ServiceAccount token, ``kube-root-ca.crt``, ``KUBERNETES_SERVICE_HOST``), made
Ready by the chart's readiness probe on Kopf's health endpoint, and resyncing a StatefulSet.

The image: kubesim pulls nothing, so the Dockerfile's final stage is read (ENV, USER, WORKDIR,
ENTRYPOINT) and its ``/opt/clusterresync`` virtualenv is stood in for by one made here from a
CPython that any user may run, which sees this checkout's installed packages. What is not the
image: the base image's filesystem (the host's is used) and the wheel (this checkout's editable
install is used).

kubesim's pods share the host's network, so the health and metrics ports are free ports chosen
here (the chart's ``healthPort`` and ``metrics.port``), and one replica runs: two would bind the
same ports on one host. Leader election between replicas is covered by ``test_ha.py``.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import sysconfig
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from kubesim.cluster import ClusterConfig
from kubesim.kubelet import ImageConfig
from kubesim.testing import KubeSim, PortForward

from .conftest import free_port, wait_for
from .test_helm import NAME, NS, RELEASE, RESTRICTED, lease, namespace
from .test_resync import (
    assert_primary_untouched,
    assert_resynced,
    conditions,
    get,
    make_db,
    resync,
    wait_done,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "clusterresync"
IMAGE_VENV = "/opt/clusterresync"  # the Dockerfile's virtualenv
UID = 65532


def others_may_run(path: Path) -> bool:
    """Whether a user who is neither owner nor group member may reach and execute ``path``."""
    path = path.resolve()
    if not path.stat().st_mode & stat.S_IXOTH:
        return False
    return all(p.stat().st_mode & stat.S_IXOTH for p in path.parents)


def base_python() -> Path:
    """A CPython of this interpreter's version that uid 65532 may run: the one the test venv is
    built on, or the distribution's."""
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [Path(getattr(sys, "_base_executable", sys.executable)), Path(f"/usr/bin/python{ver}")]
    for c in candidates:
        if c.exists() and others_may_run(c):
            return c.resolve()
    raise AssertionError(
        f"no python{ver} that a non-root user may run (tried {', '.join(map(str, candidates))}): the "
        "chart's pod runs as uid 65532; install Debian's python3 (apt-get install python3)"
    )


def final_stage(dockerfile: Path) -> dict[str, Any]:
    """ENV, USER, WORKDIR and ENTRYPOINT of the Dockerfile's last stage (exec-form entrypoint,
    ``ENV K=V ...`` with backslash continuations, ``$VAR`` left for the caller)."""
    lines = dockerfile.read_text().replace("\\\n", " ").splitlines()
    start = max(i for i, ln in enumerate(lines) if ln.upper().startswith("FROM "))
    out: dict[str, Any] = {"env": {}, "user": "", "workdir": "", "entrypoint": []}
    for ln in lines[start + 1 :]:
        word, _, rest = ln.strip().partition(" ")
        if word == "ENV":
            for kv in shlex.split(rest):
                k, _, v = kv.partition("=")
                out["env"][k] = v
        elif word == "USER":
            out["user"] = rest.strip()
        elif word == "WORKDIR":
            out["workdir"] = rest.strip()
        elif word == "ENTRYPOINT":
            out["entrypoint"] = json.loads(rest)
    return out


def image_config(venv: Path) -> ImageConfig:
    """The image's config, its virtualenv at ``venv`` instead of /opt/clusterresync."""
    stage = final_stage(ROOT / "Dockerfile")
    assert stage["entrypoint"] == ["clusterresync-operator"] and stage["user"] == f"{UID}:{UID}", stage
    env = {k: v.replace(IMAGE_VENV, str(venv)) for k, v in stage["env"].items()}
    # $PATH in ENV is the base image's PATH.
    env["PATH"] = env["PATH"].replace("$PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return ImageConfig(
        entrypoint=tuple(stage["entrypoint"]),
        env=tuple(f"{k}={v}" for k, v in env.items()),
        user=stage["user"],
        working_dir=stage["workdir"],
    )


def make_image_venv(where: Path) -> Path:
    """A virtualenv on a python uid 65532 may run, seeing this checkout's installed packages (the
    test venv's site-packages, whose .pth files carry the editable install), with the console
    script the wheel would install."""
    for needed in (Path(sysconfig.get_paths()["purelib"]), ROOT / "operator"):
        assert others_may_run(needed), (
            f"{needed} is not reachable by uid {UID} (a parent directory lacks o+x): the chart's pod "
            "runs this checkout's operator as that uid; clone it where any user may read it"
        )
    venv = where / "clusterresync"
    subprocess.run([str(base_python()), "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(sysconfig.get_paths()["purelib"])
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "checkout.pth").write_text(f"import site; site.addsitedir({str(purelib)!r})\n")
    script = venv / "bin" / "clusterresync-operator"
    script.write_text(
        f"#!{venv}/bin/python\nimport sys\nfrom clusterresync.cli import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    for d in [where, *where.parents]:
        if d == Path("/"):
            break
        d.chmod(d.stat().st_mode | stat.S_IXOTH)  # tmp_path's directories are 0700
    return venv


@pytest.fixture(scope="module")
def image_ref() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return f"ghcr.io/clusterresync/clusterresync-operator:{chart['appVersion']}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, image_ref: str) -> Iterator[KubeSim]:
    venv = make_image_venv(tmp_path_factory.mktemp("image"))
    with KubeSim(config=ClusterConfig(images={image_ref: image_config(venv)})) as sim:
        sim.kubectl("create", "namespace", NS)
        sim.kubectl("label", "namespace", NS, *(f"{k}={v}" for k, v in RESTRICTED.items()))
        yield sim


def operator_pod(cluster: KubeSim) -> dict[str, Any]:
    pods = get(cluster, "pods", "-n", NS, "-l", "app.kubernetes.io/name=clusterresync")["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 1, [p["metadata"]["name"] for p in pods]
    return live[0]


def pod_log(cluster: KubeSim, pod: str) -> str:
    """The operator container's log, or its previous instance's when it is waiting to restart."""
    out = cluster.kubectl("logs", "-n", NS, pod, check=False)
    if out.returncode != 0 or not out.stdout:
        out = cluster.kubectl("logs", "-n", NS, pod, "--previous", check=False)
    return out.stdout + out.stderr


def test_the_charts_pod_runs_the_operator_and_resyncs(cluster: KubeSim, tmp_path: Path) -> None:
    health_port, metrics_port = free_port(), free_port()
    values = {
        "replicaCount": 1,
        "podAnnotations": {"kubesim.io/process": "true"},
        "healthPort": health_port,
        "metrics": {"port": metrics_port},
        "extraArgs": ["--lease-duration=4", "--renew-deadline=3", "--retry-period=0.5"],
    }
    with (
        helm.Chart.load(CHART) as chart,
        helm.Config(kubeconfig_path=cluster.kubeconfig, namespace=NS) as cfg,
    ):
        released = cfg.install(chart, RELEASE, values, timeout=120)
        assert released["status"] == "deployed"

        # The Deployment's pod runs the operator, Ready through the chart's probe on /healthz.
        def available() -> bool:
            st = get(cluster, "deployment", "-n", NS, NAME).get("status", {})
            return st.get("availableReplicas") == 1

        try:
            wait_for(available, 90, "the chart's Deployment available")
        except AssertionError:
            pod = operator_pod(cluster)
            raise AssertionError(
                f"{pod['status']}\n{pod_log(cluster, pod['metadata']['name'])[-4000:]}"
            ) from None
        pod = operator_pod(cluster)
        name = pod["metadata"]["name"]
        (cs,) = pod["status"]["containerStatuses"]
        assert cs["ready"] and "running" in cs["state"], cs
        # As the image's user, with the ServiceAccount token kubesim projected into the pod.
        assert pod["spec"]["serviceAccountName"] == NAME
        proc = cluster.call(lambda c: c.kubelet._runtime(NS, name).containers["operator"].proc)
        assert proc is not None and os.stat(f"/proc/{proc.pid}").st_uid == UID
        vols = [v["name"] for v in pod["spec"]["volumes"]]
        assert [v for v in vols if v.startswith("kube-api-access-")], vols

        # It leads (the Lease names the pod) and resyncs, authorized by the chart's RBAC.
        held = wait_for(
            lambda: (lz := lease(cluster)) and lz["spec"].get("holderIdentity") and lz, 60, "the Lease"
        )
        assert held["spec"]["holderIdentity"].startswith(name), held["spec"]
        ns = namespace(cluster, "helm-pod")
        db = make_db(cluster, ns, replicas=3, primary=1)
        resync(cluster, db)
        out = wait_done(cluster, ns)
        log = pod_log(cluster, name)
        assert out["status"]["phase"] == "Completed", (out["status"], log[-4000:])
        assert conditions(out)["Complete"]["reason"] == "ResyncSucceeded"
        assert_resynced(cluster, db, [0, 2])
        assert_primary_untouched(cluster, db)
        assert "forbidden" not in log.lower(), log[-4000:]
        # JSON logs, as the chart asks (logFormat: json): the operator's and Kopf's, every line.
        lines = [ln for ln in log.splitlines() if ln.strip()]
        assert lines and all(isinstance(json.loads(ln), dict) for ln in lines), [
            ln for ln in lines if not ln.startswith("{")
        ][:5]

        # The metrics, as a user reaches them: kubectl port-forward to the Deployment's port
        # named "metrics" (docs/observability.md).
        forward = PortForward(cluster, "-n", NS, f"deploy/{NAME}", ":metrics")
        try:
            (local,) = forward.local_ports()
            text = urllib.request.urlopen(f"http://127.0.0.1:{local}/metrics", timeout=5).read().decode()
        finally:
            forward.stop()
        done = [ln for ln in text.splitlines() if ln.startswith("clusterresync_resyncs_finished_total{")]
        assert any(
            f'namespace="{ns}"' in ln and 'outcome="Completed"' in ln and ln.endswith(" 1.0") for ln in done
        ), done

        # Its log file, held open: the kubelet removes it with the pod.
        log_file = open(cluster.call(lambda c: c.kubelet.log_path(NS, name, "operator")), errors="replace")  # noqa: SIM115
        # helm uninstall: the pod is stopped (SIGTERM) and the operator stops leading and exits.
        # Helm deletes the RBAC at the same time, so giving the Lease up is refused (docs/helm.md).
        cfg.uninstall(RELEASE, timeout=120)
        wait_for(
            lambda: not get(cluster, "pods", "-n", NS, "-l", "app.kubernetes.io/name=clusterresync")["items"],
            60,
            "the operator's pod gone",
        )
        with log_file:
            last = [json.loads(ln) for ln in log_file.read().splitlines() if ln.strip()]
        stopped = [e for e in last if e.get("event") == "stopped leading"]
        assert stopped and stopped[0]["reason"] == "shutting down", last[-5:]
        # No error on the way out (structlog's "level", Kopf's "severity").
        assert not [e for e in last if "error" in (e.get("level"), e.get("severity"))], last[-5:]

        # A later install takes the Lease over once it has expired.
        cfg.install(chart, RELEASE, values, timeout=120)
        wait_for(available, 90, "the reinstalled Deployment available")
        again = operator_pod(cluster)["metadata"]["name"]
        wait_for(
            lambda: (lz := lease(cluster)) and str(lz["spec"].get("holderIdentity")).startswith(again),
            60,
            "the new pod leading",
        )
        cfg.uninstall(RELEASE, timeout=120)
