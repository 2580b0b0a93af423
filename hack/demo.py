"""`make demo`: ClusterResync on a real PostgreSQL, on kubesim, as a newcomer would run it.

The story, step by step (each printed with the real kubectl commands and their output):

1. Start kubesim (the project's simulated cluster), install the operator with
   `kubectl apply -k manifests/` and run it as its ServiceAccount (the RBAC there authorizes it).
2. Apply manifests/samples/postgres/cluster.yaml: a primary pg-0 and two streaming replicas.
3. Write rows on the primary; apply the ResyncPolicy (mode Off), which reports both replicas in sync.
4. Diverge pg-2 (promote it, write on it); the policy reports the drift.
5. A ClusterResync without `force` is refused (ReplicaHasUnsyncedData); the sample, with `force` and
   the restore hook, resyncs pg-2 while a client keeps writing to the primary.
6. pg-2 streams again, the policy is back in sync, and the rows of pg-0, pg-1 and pg-2 are compared.

Exits 0 only if the resync Completed and every replica holds exactly the primary's rows; 2 if
something it needs is missing (it installs Debian's `postgresql` when root and absent).
PostgreSQL is stopped gracefully at the end (and on Ctrl-C), so no shared memory is left behind.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import demolib  # hack/demolib.py: the script's own directory is on sys.path
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SAMPLES = ROOT / "manifests" / "samples" / "postgres"
NS = "demo"
PODS = ("pg-0", "pg-1", "pg-2")
ROWS = "SELECT count(*), md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM t"

T = TypeVar("T")


class DemoFailed(Exception):
    pass


STARTED = time.monotonic()


def say(msg: str) -> None:
    print(f"\n\033[1m==> {msg}\033[0m  [{time.monotonic() - STARTED:.0f} s]", flush=True)


def quote(arg: str) -> str:
    """``arg`` quoted for a shell, readably: a query with single quotes in double quotes."""
    if "'" in arg and not re.search(r'[$`"]|\\[$`"\\\n]', arg):
        return f'"{arg}"'
    return shlex.quote(arg)


def cmdline(argv: list[str] | tuple[str, ...]) -> str:
    return " ".join(quote(a) for a in argv)


def note(msg: str) -> None:
    print(f"    {msg}", flush=True)


def pg_bin() -> Path | None:
    """The newest PostgreSQL server's bin directory, as the sample's command picks it."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)
    return found[0].parent if found else None


def ensure_postgres() -> Path | None:
    """PostgreSQL's bin directory, installed with apt-get when root and absent; None if missing."""
    if (found := pg_bin()) is not None:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("installing PostgreSQL (Debian's package `postgresql`): the pods run its server binaries")
        note("kubesim ignores images and runs the pods' commands as host processes, so the host needs")
        note("/usr/lib/postgresql/<version>/bin; the demo starts its own servers, in kubesim's pods.")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
            print(f"$ {shlex.join(argv)}", flush=True)
            if subprocess.run(argv, env=env).returncode != 0:
                return None
        return pg_bin()
    return None


class Writer:
    """A client of the primary: one psql session (from the host, over TCP to pg-0's pod IP) that
    inserts a row into t every ``interval`` seconds until stopped."""

    def __init__(self, psql: Path, host: str, password: str, interval: float = 0.1) -> None:
        self.proc = subprocess.Popen(
            [str(psql), "-h", host, "-U", "postgres", "-d", "postgres", "-XAtq", "-v", "ON_ERROR_STOP=1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=dict(os.environ, PGPASSWORD=password),
            text=True,
            start_new_session=True,
        )
        self.interval = interval
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.proc.stdin is not None
        while not self._stop.wait(self.interval):
            try:
                self.proc.stdin.write("INSERT INTO t (v) VALUES ('written during the resync');\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                return
            self.sent += 1

    def stop(self) -> tuple[int, str]:
        """Stop writing and end the session (every statement sent is run first): (exit code, errors)."""
        self._stop.set()
        self._thread.join(10)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err or ""

    def kill(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


class Demo:
    def __init__(self, work: Path, bindir: Path) -> None:
        self.work = work
        self.bindir = bindir
        self.admin = work / "admin.kubeconfig"
        self.sa = work / "operator.kubeconfig"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.kubesim: subprocess.Popen[bytes] | None = None
        self.pg_applied = False
        self.writer: Writer | None = None

    # --- kubectl --------------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        quiet: bool = False,
        timeout: float = 120,
    ) -> str:
        env = dict(os.environ, KUBECONFIG=str(self.admin), KUBECACHEDIR=str(self.work / "cache"))
        if not quiet:
            print(f"$ kubectl {cmdline(args)}", flush=True)
        p = subprocess.run(
            [str(BIN / "kubectl"), *args],
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if not quiet:
            out = (p.stdout + (p.stderr if p.returncode else "")).rstrip()
            if out:
                print(out, flush=True)
        if check and p.returncode != 0:
            raise DemoFailed(f"kubectl {cmdline(args)} failed:\n{p.stderr}")
        return p.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", "-n", NS, *args, "-o", "json", quiet=True))

    def shell(self, command: str) -> str:
        """A shell pipeline with kubectl in it, shown and run as is (from the repository's root)."""
        env = dict(
            os.environ,
            KUBECONFIG=str(self.admin),
            KUBECACHEDIR=str(self.work / "cache"),
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        print(f"$ {command}", flush=True)
        p = subprocess.run(
            command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        out = (p.stdout + p.stderr).rstrip()
        if out:
            print(out, flush=True)
        if p.returncode != 0:
            raise DemoFailed(f"{command} failed")
        return p.stdout

    def psql(self, pod: str, query: str) -> None:
        """Show ``query``'s result as psql prints it, run in ``pod`` with kubectl exec."""
        script = 'PGPASSWORD="$POSTGRES_PASSWORD" psql -X -U postgres -c "$1"'
        self.kubectl("exec", "-n", NS, pod, "-c", "postgres", "--", "sh", "-c", script, "sh", query)

    def sql(self, pod: str, query: str, check: bool = True) -> str:
        """``query``'s unaligned result (quietly, for the demo's own checks)."""
        script = (
            'PGPASSWORD="$POSTGRES_PASSWORD" psql -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1 -c "$1"'
        )
        out = self.kubectl(
            "exec",
            "-n",
            NS,
            pod,
            "-c",
            "postgres",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            query,
            quiet=True,
            check=check,
        )
        return out.strip()

    def wait(self, what: str, pred: Callable[[], T | None], timeout: float = 120) -> T:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                got = pred()
            except (DemoFailed, subprocess.TimeoutExpired, ValueError, KeyError):
                got = None
            if got:
                return got
            time.sleep(0.5)
        raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")

    # --- processes ------------------------------------------------------------------------------

    def start_kubesim(self) -> None:
        say("1. Starting kubesim, the simulated Kubernetes cluster this project is tested on")
        note("(an API server and controllers of our own; the real kubectl and the real operator talk to it;")
        note(" pods annotated kubesim.io/process run their commands as host processes: a real PostgreSQL)")
        try:
            p, line = demolib.start_kubesim(self.work, self.admin)
        except RuntimeError as e:
            raise DemoFailed(str(e)) from None
        self.procs.append(p)
        self.kubesim = p
        print(line)

    def start_operator(self) -> None:
        say(
            "2. Installing ClusterResync (the CRDs, RBAC, the operator's Deployment) and running the operator"
        )
        self.kubectl("apply", "-k", str(ROOT / "manifests"))
        note("The operator runs here as a local process, with the token of its ServiceAccount")
        note("clusterresync-system/clusterresync-operator: the RBAC just applied is what authorizes it.")
        self.procs.append(demolib.start_operator(self.work, self.admin, self.sa))
        note(f"operator log: {self.work / 'operator.log'}")

    def stop(self) -> None:
        """PostgreSQL first, gracefully (SIGTERM: each server removes its shared memory), then the
        operator and kubesim."""
        if self.writer is not None:
            self.writer.kill()
            self.writer = None
        if self.pg_applied and self.kubesim is not None and self.kubesim.poll() is None:
            say(
                "Stopping PostgreSQL gracefully (scaling the StatefulSet to 0), then the operator and kubesim"
            )
            try:
                self.kubectl("scale", "statefulset", "pg", "-n", NS, "--replicas=0", check=False, timeout=30)
                self.wait(
                    "the PostgreSQL pods to stop", lambda: not self.get("pods", "-l", "app=pg")["items"], 90
                )
                print("  every PostgreSQL server has shut down", flush=True)
            except (DemoFailed, subprocess.TimeoutExpired) as e:
                print(f"  (could not stop PostgreSQL gracefully: {e})")
        demolib.stop(self.procs)

    # --- PostgreSQL -----------------------------------------------------------------------------

    def cluster_objects(self) -> tuple[list[dict[str, Any]], str | None]:
        """cluster.yaml's objects, and why they had to be adapted to this host (None: as they are).
        The sample runs PostgreSQL as Debian's postgres user, 101:104; initdb needs the uid to be a
        user of the host (kubesim runs the host's binaries), so elsewhere the host's is used."""
        objs = [d for d in yaml.safe_load_all((SAMPLES / "cluster.yaml").read_text()) if d]
        sts = next(o for o in objs if o["kind"] == "StatefulSet")
        pod = sts["spec"]["template"]["spec"]
        uid, gid = pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError:
            return objs, None
        if (pg.pw_uid, pg.pw_gid) == (uid, gid):
            return objs, None
        objs = copy.deepcopy(objs)
        sts = next(o for o in objs if o["kind"] == "StatefulSet")
        pod = sts["spec"]["template"]["spec"]
        pod["securityContext"].update(runAsUser=pg.pw_uid, runAsGroup=pg.pw_gid)
        init = pod["initContainers"][0]
        init["command"] = [c.replace(f"{uid}:{gid}", f"{pg.pw_uid}:{pg.pw_gid}") for c in init["command"]]
        return objs, f"this host's postgres user is {pg.pw_uid}:{pg.pw_gid}, not the sample's {uid}:{gid}"

    def streaming(self) -> dict[str, str]:
        rows = self.sql("pg-0", "SELECT application_name, state FROM pg_stat_replication")
        return dict(line.split("|") for line in rows.splitlines() if line)

    def caught_up(self, replica: str) -> None:
        lsn = self.sql("pg-0", "SELECT pg_current_wal_lsn()")
        self.wait(
            f"{replica} to replay up to the primary's {lsn}",
            lambda: self.sql(replica, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn") == "t",
            60,
        )

    def policy(self) -> dict[str, Any]:
        return dict(self.get("rspolicy", "pg").get("status") or {})

    @staticmethod
    def cond(st: dict[str, Any], type_: str) -> dict[str, Any]:
        return next((c for c in st.get("conditions", []) if c["type"] == type_), {})

    def resync_done(self, name: str) -> dict[str, Any]:
        """Show the ClusterResync's progress until it ends; the final object."""
        last = ""
        end = time.monotonic() + 240
        while time.monotonic() < end:
            obj: dict[str, Any] = self.get("crsync", name)
            st = obj.get("status") or {}
            line = f"phase={st.get('phase', 'Pending')} progress={st.get('progress', '')} " + " ".join(
                f"{r['name']}={r['phase']}" for r in st.get("replicas", [])
            )
            if line != last:
                print(f"  {time.strftime('%H:%M:%S')} {line}", flush=True)
                last = line
            if st.get("phase") in ("Completed", "Failed"):
                return obj
            time.sleep(0.3)
        raise DemoFailed(f"ClusterResync {name} did not finish in 240 s")

    def show_conditions(self, obj: dict[str, Any]) -> None:
        for c in (obj.get("status") or {}).get("conditions", []):
            if c["status"] == "True":
                print(f"  condition {c['type']}: reason={c['reason']}: {c.get('message', '')}")

    # --- the story ------------------------------------------------------------------------------

    def run(self) -> bool:
        self.start_kubesim()
        self.start_operator()

        say("3. A PostgreSQL cluster: the primary pg-0 and two streaming replicas, pg-1 and pg-2")
        note("manifests/samples/postgres/cluster.yaml: a Secret with the passwords, a headless Service")
        note("(pg-0.pg, ...), a StatefulSet: pg-0 runs initdb, the others clone pg-0 with pg_basebackup.")
        self.kubectl("create", "namespace", NS)
        objs, adapted = self.cluster_objects()
        self.pg_applied = True
        if adapted is None:
            self.kubectl("apply", "-n", NS, "-f", str(SAMPLES / "cluster.yaml"))
        else:
            note(f"({adapted}: the demo applies the sample with the host's uid and gid)")
            self.kubectl("apply", "-n", NS, "-f", "-", input=yaml.safe_dump_all(objs), quiet=True)
        self.wait(
            "the three PostgreSQL pods Ready",
            lambda: (self.get("statefulset", "pg").get("status") or {}).get("readyReplicas") == 3,
            180,
        )
        self.kubectl("get", "pods", "-n", NS, "-o", "wide")
        self.wait(
            "pg-1 and pg-2 streaming from pg-0",
            lambda: self.streaming() == {"pg-1": "streaming", "pg-2": "streaming"},
            90,
        )
        note("PostgreSQL's own view, on the primary: both replicas stream from it.")
        self.psql("pg-0", "SELECT application_name, client_addr, state, replay_lsn FROM pg_stat_replication")

        say("4. Some data: a table t with 1000 rows, written on the primary and replicated")
        self.psql("pg-0", "CREATE TABLE t (id bigserial PRIMARY KEY, v text)")
        self.psql("pg-0", "INSERT INTO t (v) SELECT 'row ' || i FROM generate_series(1, 1000) i")
        for pod in ("pg-1", "pg-2"):
            self.caught_up(pod)
        self.psql("pg-2", "SELECT count(*) FROM t")

        say("5. A ResyncPolicy watching the replicas (mode Off: it reports, and never resyncs)")
        note("manifests/samples/postgres/resyncpolicy.yaml: every 10 s the Postgres probe reads each")
        note("pod's replication state with psql, as the monitor role (pg_monitor: no access to the data).")
        self.kubectl("apply", "-n", NS, "-f", str(SAMPLES / "resyncpolicy.yaml"))
        self.wait(
            "the policy to report both replicas in sync",
            lambda: (
                (st := self.policy()).get("inSync") == "2/2"
                and self.cond(st, "InSync").get("status") == "True"
            ),
            60,
        )
        self.kubectl("get", "rspolicy", "-n", NS)

        say("6. Something goes wrong: pg-2 is promoted by mistake, and a client writes to it")
        self.psql("pg-2", "SELECT pg_promote()")
        self.psql("pg-2", "INSERT INTO t (v) VALUES ('written on pg-2 alone')")
        note("pg-2 now has a row the primary lacks, on its own timeline:")
        self.show_rows()
        note("The policy notices at its next probe (within 10 s): pg-2 is Diverged.")
        self.wait(
            "the policy to report the drift",
            lambda: self.cond(self.policy(), "Drifted").get("status") == "True",
            60,
        )
        self.kubectl("get", "rspolicy", "-n", NS)
        self.kubectl(
            "get",
            "rspolicy",
            "pg",
            "-n",
            NS,
            "-o",
            "jsonpath={range .status.pods[*]}{.pod}{'\\t'}{.verdict}{'\\t'}{.reason}{'\\n'}{end}",
        )
        self.kubectl("get", "events", "-n", NS, "--field-selector", "reason=DriftDetected")

        say("7. A ClusterResync of pg-2 WITHOUT force: the operator refuses to discard pg-2's own writes")
        note("The sample manifests/samples/postgres/clusterresync.yaml, without its `force: true` line:")
        self.shell(
            "sed -e '/^  force: true/d' -e 's/^  name: pg-resync$/  name: pg-resync-unforced/' "
            "manifests/samples/postgres/clusterresync.yaml | kubectl apply -n demo -f -"
        )
        out = self.resync_done("pg-resync-unforced")
        self.kubectl("get", "crsync", "-n", NS)
        self.show_conditions(out)
        failed = self.cond(out.get("status") or {}, "Failed")
        if failed.get("reason") != "ReplicaHasUnsyncedData":
            raise DemoFailed(
                f"the unforced resync was not refused with ReplicaHasUnsyncedData: {out.get('status')}"
            )
        note("Nothing was touched: no snapshot was taken, pg-2 still has its row.")
        self.show_rows(("pg-2",))

        say("8. The sample, with force and the restore hook, while a client keeps writing to the primary")
        note("The operator snapshots the running primary, restores the copy for pg-2, runs the restore hook")
        note(
            "(it makes the copy a standby of pg-0), swaps pg-2 onto it, and waits until the probe says InSync."
        )
        ip = str(self.get("pod", "pg-0")["status"]["podIP"])
        password = self.secret_password()
        self.writer = Writer(self.bindir / "psql", ip, password)
        note(f"From now on a client (psql on this machine, to pg-0's pod IP {ip}) inserts a row every 0.1 s.")
        self.wait("the client to write", lambda: self.writer is not None and self.writer.sent >= 5, 30)
        self.kubectl("apply", "-n", NS, "-f", str(SAMPLES / "clusterresync.yaml"))
        out = self.resync_done("pg-resync")
        self.kubectl("get", "crsync", "-n", NS)
        self.show_conditions(out)
        self.kubectl(
            "get",
            "crsync",
            "pg-resync",
            "-n",
            NS,
            "-o",
            "jsonpath={range .status.probes[*]}{.stage}{'\\t'}{.pod}{'\\t'}{.verdict}{'\\t'}{.reason}{'\\n'}{end}",
        )
        self.kubectl("get", "events", "-n", NS, "--field-selector", "reason=ForcedDespiteDivergence")
        completed = (out.get("status") or {}).get("phase") == "Completed"
        if not completed:
            print((self.work / "operator.log").read_text(errors="replace")[-4000:])
            raise DemoFailed("the resync did not complete")
        sent = self.writer.sent
        self.wait(
            "a few more writes after the resync", lambda: self.writer and self.writer.sent >= sent + 10, 30
        )
        code, errors = self.writer.stop()
        written, self.writer = self.writer.sent, None
        if code != 0:
            raise DemoFailed(f"the client's session failed: {errors}")
        note(f"the client wrote {written} rows during and after the resync, all committed")

        say("9. pg-2 is a standby again: PostgreSQL's own view, and the policy's")
        self.wait(
            "pg-1 and pg-2 streaming from pg-0 again",
            lambda: self.streaming() == {"pg-1": "streaming", "pg-2": "streaming"},
            90,
        )
        self.psql("pg-0", "SELECT application_name, client_addr, state, replay_lsn FROM pg_stat_replication")
        self.psql("pg-2", "SELECT pg_is_in_recovery(), status, sender_host FROM pg_stat_wal_receiver")
        self.wait(
            "the policy to report both replicas in sync again",
            lambda: (
                (st := self.policy()).get("inSync") == "2/2"
                and self.cond(st, "InSync").get("status") == "True"
            ),
            120,
        )
        self.kubectl("get", "rspolicy", "-n", NS)

        say("10. The rows: count and md5 of every row, in order, on each pod")
        for pod in ("pg-1", "pg-2"):
            self.caught_up(pod)
        rows = self.show_rows()
        equal = all(rows[pod] == rows["pg-0"] for pod in PODS)
        for pod in ("pg-1", "pg-2"):
            print(
                f"  {pod}: {'EQUAL to' if rows[pod] == rows['pg-0'] else 'DIFFERENT from'} the primary's rows"
            )
        count = int(rows["pg-0"].split("|")[0])
        complete = count == 1000 + written
        note(
            f"{count} rows = the 1000 of step 4 + the {written} the client wrote: none lost"
            if complete
            else f"{count} rows, but 1000 + {written} were written: rows were LOST"
        )
        old = [v.get("oldPv") for r in out["status"].get("replicas", []) for v in r.get("volumes", [])]
        note(
            f"pg-2's diverged data is kept on its old volume {', '.join(str(o) for o in old)} (oldVolumes: Retain)."
        )
        if equal and complete:
            say("demo succeeded: the rows of pg-1 and pg-2 are EQUAL to the primary's")
        else:
            say("demo FAILED: the rows differ")
        return equal and completed and complete

    def show_rows(self, pods: tuple[str, ...] = PODS) -> dict[str, str]:
        """The count and md5 of t's rows on ``pods``, shown; pod -> "count|md5"."""
        print(f"  psql on {', '.join(pods)}, with kubectl exec as above: {ROWS}", flush=True)
        rows = {pod: self.sql(pod, ROWS) for pod in pods}
        for pod, got in rows.items():
            count, md5 = got.split("|")
            print(f"  {pod}: {count:>5} rows, md5 {md5}")
        return rows

    def secret_password(self) -> str:
        """The superuser's password, from the Secret (for the client that writes during the resync)."""
        data = self.get("secret", "pg-auth")["data"]
        return base64.b64decode(data["postgres"]).decode()


def main() -> int:
    if os.geteuid() != 0:
        print(
            "make demo runs a real PostgreSQL in kubesim's pods, as host processes in their own mount\n"
            "namespaces: that needs root. Run it as root (sudo make demo), or run `make demo-files`,\n"
            "the same story on files, which needs nothing.",
            file=sys.stderr,
        )
        return 2
    bindir = ensure_postgres()
    if bindir is None:
        print(
            "make demo needs PostgreSQL's server binaries (/usr/lib/postgresql/<version>/bin/postgres):\n"
            "kubesim runs them in the demo's pods. Install Debian's or Ubuntu's `postgresql` package\n"
            "(apt-get install postgresql) and run `make demo` again, or run `make demo-files`.",
            file=sys.stderr,
        )
        return 2

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clusterresync-demo-") as d:
        demo = Demo(Path(d), bindir)
        code = 1
        try:
            code = 0 if demo.run() else 1
        except DemoFailed as e:
            say(f"demo FAILED: {e}")
            for log in ("kubesim.log", "operator.log"):
                lines = (Path(d) / log).read_text(errors="replace").splitlines()[-15:]
                print(f"--- the last lines of {log}:", *lines, sep="\n")
        except KeyboardInterrupt:
            print("\ninterrupted", flush=True)
            code = 130
        finally:
            # A second Ctrl-C must not leave PostgreSQL's shared memory behind: finish the stop.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            demo.stop()
    print(f"\n(the demo took {time.monotonic() - started:.0f} s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
