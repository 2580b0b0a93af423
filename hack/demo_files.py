"""`make demo-files`: a ClusterResync end to end on kubesim, on files instead of a database (pods
without processes; `make demo` is the same story on a real PostgreSQL).

1. Start kubesim (`kubesim serve`) and install the operator's manifests with `kubectl apply -k`.
2. Start the operator as its ServiceAccount (so the RBAC in manifests/ is what authorizes it).
3. Create a 3-pod StatefulSet; write "primary" data into db-1's volume and stale data into the
   replicas' volumes (through `kubectl exec`, in each pod's mount namespace).
4. Apply manifests/samples/clusterresync.yaml with kubectl and show its progress.
5. Check that every replica's files equal the primary's. Exit 0 only if they do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import demolib  # hack/demolib.py: the script's own directory is on sys.path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NS = "demo"


def say(msg: str) -> None:
    print(f"\n\033[1m==> {msg}\033[0m", flush=True)


class Demo:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.admin = work / "admin.kubeconfig"
        self.sa = work / "operator.kubeconfig"
        self.procs: list[subprocess.Popen[bytes]] = []

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        quiet: bool = False,
        kubeconfig: Path | None = None,
    ) -> str:
        env = dict(
            os.environ, KUBECONFIG=str(kubeconfig or self.admin), KUBECACHEDIR=str(self.work / "cache")
        )
        if not quiet:
            print(f"$ kubectl {' '.join(args)}", flush=True)
        p = subprocess.run(
            [str(BIN / "kubectl"), *args], env=env, input=input, capture_output=True, text=True, timeout=120
        )
        if not quiet and p.stdout.strip():
            print(p.stdout.rstrip(), flush=True)
        if check and p.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed:\n{p.stderr}")
        return p.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json", quiet=True))

    def start_kubesim(self) -> None:
        say("starting kubesim, the simulated cluster")
        try:
            p, line = demolib.start_kubesim(self.work, self.admin)
        except RuntimeError as e:
            raise SystemExit(str(e)) from None
        self.procs.append(p)
        print(line)

    def start_operator(self) -> None:
        say("starting the operator as ServiceAccount clusterresync-system/clusterresync-operator")
        self.procs.append(demolib.start_operator(self.work, self.admin, self.sa))
        print(f"operator log: {self.work / 'operator.log'}")

    def stop(self) -> None:
        demolib.stop(self.procs)

    def wait(self, what: str, pred: Any, timeout: float = 120) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = pred()
            if got:
                return got
            time.sleep(0.3)
        raise SystemExit(f"timed out waiting for {what}")

    def files(self, pod: str) -> dict[str, str]:
        out = self.kubectl(
            "exec",
            "-n",
            NS,
            pod,
            "--",
            "sh",
            "-c",
            'cd /var/lib/postgresql/data && for f in $(find . -type f | sort); do printf \'%s \' "$f"; cat "$f" | sha256sum; done',
            quiet=True,
        )
        return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())

    def run(self) -> int:
        self.start_kubesim()
        say("installing ClusterResync: CRD, RBAC, Deployment (kubectl apply -k manifests/)")
        self.kubectl("apply", "-k", str(ROOT / "manifests"))
        self.start_operator()
        say("a 3-pod StatefulSet 'db'; db-1 is the primary")
        self.kubectl("create", "namespace", NS)
        self.kubectl("apply", "-n", NS, "-f", str(ROOT / "manifests/samples/cluster.yaml"))
        self.wait(
            "the StatefulSet to be Ready",
            lambda: self.get("statefulset", "-n", NS, "db").get("status", {}).get("readyReplicas") == 3,
        )
        self.kubectl("label", "pod", "-n", NS, "db-1", "role=primary")
        for i in range(3):
            content = (
                "PRIMARY: the latest committed data"
                if i == 1
                else f"STALE: replica {i} drifted after a network split"
            )
            self.kubectl(
                "exec",
                "-n",
                NS,
                f"db-{i}",
                "--",
                "sh",
                "-c",
                f"mkdir -p /var/lib/postgresql/data/base && echo '{content}' > /var/lib/postgresql/data/base/state "
                f"&& echo 'written by db-{i}' > /var/lib/postgresql/data/PG_VERSION.{i}",
            )
        before = {f"db-{i}": self.files(f"db-{i}") for i in range(3)}
        for pod, f in before.items():
            print(
                f"{pod}: {len(f)} files, {'same as' if f == before['db-1'] else 'DIFFERENT from'} the primary"
            )
        say("applying the ClusterResync (manifests/samples/clusterresync.yaml)")
        self.kubectl("apply", "-n", NS, "-f", str(ROOT / "manifests/samples/clusterresync.yaml"))
        last = ""
        end = time.monotonic() + 180
        while time.monotonic() < end:
            st = self.get("crsync", "-n", NS, "db-resync").get("status", {})
            line = f"phase={st.get('phase', 'Pending')} progress={st.get('progress', '')} " + " ".join(
                f"{r['name']}={r['phase']}" for r in st.get("replicas", [])
            )
            if line != last:
                print(f"  {time.strftime('%H:%M:%S')} {line}", flush=True)
                last = line
            if st.get("phase") in ("Completed", "Failed"):
                break
            time.sleep(0.2)
        self.kubectl("get", "crsync", "-n", NS)
        obj = self.get("crsync", "-n", NS, "db-resync")
        for c in obj["status"].get("conditions", []):
            print(f"  condition {c['type']}={c['status']} reason={c['reason']}: {c.get('message', '')}")
        if obj["status"].get("phase") != "Completed":
            print((self.work / "operator.log").read_text()[-4000:])
            return 1
        say("checking every replica's files against the primary's")
        primary = self.files("db-1")
        ok = True
        for i in (0, 2):
            got = self.files(f"db-{i}")
            same = got == primary
            ok = ok and same
            print(f"db-{i}: {'EQUAL to' if same else 'DIFFERENT from'} db-1 ({len(got)} files)")
        self.kubectl("get", "pv", "-l", "clusterresync.io/resync")
        print("(the old volumes above are kept, Released, as oldVolumes: Retain asks)")
        say("demo " + ("succeeded" if ok else "FAILED"))
        return 0 if ok else 1


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="clusterresync-demo-") as d:
        demo = Demo(Path(d))
        try:
            return demo.run()
        finally:
            demo.stop()


if __name__ == "__main__":
    sys.exit(main())
