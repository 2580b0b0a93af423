"""``kubectl resync``: start, follow and inspect ClusterResyncs and ResyncPolicies from the shell.

Installed as the console script ``kubectl-resync``; kubectl runs any ``kubectl-*`` program on the
PATH as a plugin, so ``kubectl resync status`` runs ``kubectl-resync status``. See docs/plugin.md.
Exit codes: 0 success (a resync Completed), 1 a resync Failed, 2 usage errors, not found, refused.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any

from ..models import LABEL_VOLUME_ROLE, PLURAL, POLICY_PLURAL
from . import render, views
from .kubeapi import Cluster, Obj, PluginError, connect

PROG = "kubectl resync"
EPILOG = """\
exit codes: 0 success (watch: Completed), 1 the resync Failed, 2 usage error, not found,
refused by the API server (RBAC), CRD not installed.
Flags go after "resync": kubectl refuses flags before a plugin's name (kubectl -n NS resync ...).
See docs/plugin.md."""


# -- arguments ---------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser, *, top: bool) -> None:
    """The kubectl-like flags, accepted before and after the subcommand. In the subcommands their
    default is SUPPRESS, so that a flag given before the subcommand is not reset by it."""
    d: Any = None if top else argparse.SUPPRESS
    g = p.add_argument_group("cluster" if top else "cluster (as kubectl)")
    g.add_argument(
        "--kubeconfig", default=d, help="path to the kubeconfig (default: $KUBECONFIG, ~/.kube/config)"
    )
    g.add_argument("--context", default=d, help="the kubeconfig context to use (default: the current one)")
    g.add_argument("-n", "--namespace", default=d, help="namespace (default: the context's, else default)")
    g.add_argument(
        "-o",
        "--output",
        choices=["json", "yaml"],
        default=d,
        help="machine output: the objects (or the documented structure) as JSON or YAML",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Start, follow and inspect ClusterResyncs (crsync) and ResyncPolicies (rspolicy).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _common(p, top=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_: str, description: str = "") -> argparse.ArgumentParser:
        c = sub.add_parser(
            name,
            help=help_,
            description=description or help_,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,
        )
        _common(c, top=False)
        return c

    s = command(
        "start",
        "create a ClusterResync of a StatefulSet and print its name",
        "Create a ClusterResync named <TARGET>-<random> (metadata.generateName) and print its name.",
    )
    s.add_argument("target", metavar="TARGET", help="the StatefulSet, in the namespace")
    prim = s.add_mutually_exclusive_group(required=True)
    prim.add_argument("--primary", metavar="POD", help="the primary pod (spec.primary.podName)")
    prim.add_argument(
        "--primary-selector",
        metavar="K=V[,K=V]",
        help="labels that match the primary alone (spec.primary.selector.matchLabels)",
    )
    s.add_argument(
        "--replicas", metavar="A,B", help="pods to resync, in order (default: every pod but the primary)"
    )
    s.add_argument(
        "--volumes",
        metavar="V,...",
        help="volumeClaimTemplate names to resync (default: every volumeClaimTemplate of TARGET)",
    )
    s.add_argument(
        "--force",
        action="store_true",
        help="resync replicas the probe reports Diverged or Unknown (their own writes are lost)",
    )
    s.add_argument(
        "--dry-run",
        action="store_true",
        help="set spec.dryRun: the ClusterResync IS created and the operator runs every preflight check and "
        "lists its plan (status plan[]) without touching anything. Unlike kubectl's --dry-run=client|server, "
        "the object exists afterwards, and the checks are the operator's, against the live cluster.",
    )
    s.add_argument(
        "--suspend",
        action="store_true",
        help="create it suspended: it waits, touching nothing, for `kubectl resync approve NAME`",
    )
    s.add_argument(
        "--method",
        choices=["Snapshot", "Clone"],
        help="how the primary's volumes are copied (default Snapshot)",
    )
    s.add_argument(
        "--max-parallel", type=int, metavar="N", help="replicas out of service at once (default 1)"
    )
    s.add_argument(
        "--old-volumes",
        choices=["Retain", "Delete"],
        help="fate of verified replicas' old volumes (default Retain)",
    )
    s.add_argument(
        "--primary-stable-seconds",
        type=int,
        metavar="S",
        help="how long the primary must have been Ready without a restart (default 60)",
    )
    s.add_argument(
        "--wait", action="store_true", help="then follow it as `watch` does (exit 0 Completed, 1 Failed)"
    )

    st = command(
        "status",
        "list the namespace's ClusterResyncs, or show one per replica",
        "Without NAME: every ClusterResync of the namespace. With NAME: its replicas (phase, reason, old and "
        "new PersistentVolumes), conditions, probe verdicts and, for a dry run, its plan.",
    )
    st.add_argument("name", metavar="NAME", nargs="?", help="a ClusterResync")

    w = command(
        "watch",
        "follow a ClusterResync until it ends",
        "Follow a ClusterResync with a watch until it is Completed (exit 0) or Failed (exit 1, with the Failed "
        "condition's reason and message). A live table on a terminal, one line per change otherwise. With -o, "
        "only the final object is printed.",
    )
    w.add_argument("name", metavar="NAME", help="a ClusterResync")

    d = command(
        "drift",
        "the drift reports of the ResyncPolicies of a StatefulSet",
        "The latest report of every ResyncPolicy whose spec.target.name is TARGET: each pod's verdict, role, "
        "lag, reason and time; the conditions; the last remediation.",
    )
    d.add_argument("target", metavar="TARGET", help="the StatefulSet")

    a = command(
        "approve",
        "approve a suspended ClusterResync (spec.suspend=false)",
        "Set spec.suspend to false on a suspended ClusterResync (a JSON merge patch), so that it runs. "
        "Refused if it is not suspended or already finished.",
    )
    a.add_argument("name", metavar="NAME", help="a ClusterResync")

    v = command(
        "volumes",
        "the volumes kept by resyncs of a StatefulSet, and how to remove or keep them",
        "PersistentVolumes labelled clusterresync.io/volume-role (old: a replica's volume before its swap; copy: "
        "a restored copy kept after a failure) by resyncs of TARGET in the namespace, even if the ClusterResync "
        "is gone, with the kubectl commands that remove or keep each one.",
    )
    v.add_argument("target", metavar="TARGET", help="the StatefulSet")
    return p


# -- output ------------------------------------------------------------------------------------
class Out:
    def __init__(self, stream: IO[str], fmt: str | None, tty: bool) -> None:
        self.stream = stream
        self.fmt = fmt
        self.tty = tty

    def data(self, data: Any) -> None:
        assert self.fmt is not None
        self.stream.write(render.machine(data, self.fmt))
        self.stream.flush()

    def blocks(self, blocks: list[views.Block]) -> None:
        render.emit(blocks, self.stream, self.tty)

    def line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def as_list(items: list[Obj]) -> Obj:
    return {"apiVersion": "v1", "kind": "List", "items": items}


# -- commands ----------------------------------------------------------------------------------
def cmd_start(c: Cluster, args: argparse.Namespace, out: Out) -> int:
    if args.volumes is not None:
        volumes = views.csv(args.volumes)
        if not volumes:
            raise views.UsageError("--volumes: give at least one volume name")
    else:
        volumes = views.claim_template_names(c.statefulset(args.target))
        if not volumes:
            raise PluginError(f'StatefulSet "{args.target}" has no volumeClaimTemplates: nothing to resync')
    body = views.resync_body(
        args.target,
        volumes=volumes,
        primary_pod=args.primary,
        primary_selector=views.parse_selector(args.primary_selector) if args.primary_selector else None,
        replicas=views.csv(args.replicas) if args.replicas else (),
        force=args.force,
        dry_run=args.dry_run,
        suspend=args.suspend,
        method=args.method,
        max_parallel=args.max_parallel,
        old_volumes=args.old_volumes,
        primary_stable_seconds=args.primary_stable_seconds,
    )
    created = c.create(PLURAL, body)
    name = views.name_of(created)
    if args.wait:
        if not out.fmt:
            out.line(name)
        return follow(c, name, out)
    if out.fmt:
        out.data(created)
    else:
        out.line(name)
    return 0


def cmd_status(c: Cluster, args: argparse.Namespace, out: Out) -> int:
    now = views.now_utc()
    if args.name:
        obj = c.get(PLURAL, args.name)
        if out.fmt:
            out.data(obj)
        else:
            out.blocks(views.resync_detail(obj, now))
        return 0
    items = list(c.list_objects(PLURAL).get("items") or [])
    if out.fmt:
        out.data(as_list(items))
    else:
        out.blocks([views.resync_list(items, now)])
    return 0


class PlainProgress:
    """One line per change, for logs and pipes."""

    def __init__(self, out: Out) -> None:
        self.out = out
        self.seen: views.Snapshot = {}

    def update(self, obj: Obj) -> None:
        self.seen, lines = views.changes(self.seen, obj, datetime.now().strftime("%H:%M:%S"))
        for line in lines:
            self.out.line(line)

    def close(self) -> None:
        pass


class LiveProgress:
    """A rich Live table, redrawn on each change (stdout is a terminal)."""

    def __init__(self, out: Out) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out.stream)
        self.live = Live(console=self.console, auto_refresh=False, transient=False)
        self.live.start()

    def update(self, obj: Obj) -> None:
        renderables = render.rich_renderables([views.live_table(obj, views.now_utc())])
        from rich.console import Group

        self.live.update(Group(*renderables), refresh=True)

    def close(self) -> None:
        self.live.stop()


def follow(c: Cluster, name: str, out: Out) -> int:
    """Watch ``name`` until it is finished: 0 Completed, 1 Failed (or deleted before the end)."""
    obj = c.get(PLURAL, name)
    progress: PlainProgress | LiveProgress | None = None
    if not out.fmt:
        progress = LiveProgress(out) if out.tty else PlainProgress(out)
        progress.update(obj)
    deleted = False
    try:
        rv = str(obj["metadata"]["resourceVersion"])
        while not views.outcome(obj).done and not deleted:
            for kind, event in c.watch(PLURAL, name, rv):
                if kind == "EXPIRED":
                    obj = c.get(PLURAL, name)
                    rv = str(obj["metadata"]["resourceVersion"])
                    if progress:
                        progress.update(obj)
                    break
                rv = str((event.get("metadata") or {}).get("resourceVersion") or rv)
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED":
                    deleted = True
                    break
                obj = event
                if progress:
                    progress.update(obj)
                if views.outcome(obj).done:
                    break
    finally:
        if progress:
            progress.close()
    if deleted and not views.outcome(obj).done:
        message = f"clusterresync {name} was deleted before it finished"
        if out.fmt:
            out.data(obj)
            print(message, file=sys.stderr)  # stdout stays parsable
        else:
            out.line(message)
        return 1
    if out.fmt:
        out.data(obj)
    else:
        out.line(views.summary(obj))
    return 0 if views.outcome(obj).ok else 1


def cmd_watch(c: Cluster, args: argparse.Namespace, out: Out) -> int:
    return follow(c, args.name, out)


def cmd_drift(c: Cluster, args: argparse.Namespace, out: Out) -> int:
    policies = [
        p
        for p in c.list_objects(POLICY_PLURAL).get("items") or []
        if ((p.get("spec") or {}).get("target") or {}).get("name") == args.target
    ]
    if not policies:
        raise PluginError(f'no ResyncPolicy in namespace "{c.namespace}" targets StatefulSet "{args.target}"')
    policies.sort(key=views.name_of)
    if out.fmt:
        out.data(as_list(policies))
        return 0
    now = views.now_utc()
    blocks: list[views.Block] = []
    for p in policies:
        last = ((p.get("status") or {}).get("lastRemediation") or {}).get("name")
        remediation = None
        if last:
            try:
                remediation = c.get(PLURAL, str(last))
            except PluginError as e:
                if "not found" not in e.message:
                    raise
        blocks += views.policy_blocks(p, remediation, now)
    out.blocks(blocks)
    return 0


def cmd_approve(c: Cluster, args: argparse.Namespace, out: Out) -> int:
    obj = c.get(PLURAL, args.name)
    result = views.outcome(obj)
    if result.done:
        raise PluginError(
            f"clusterresync {args.name} is already {'Completed' if result.ok else 'Failed'}: nothing to approve"
        )
    if not (obj.get("spec") or {}).get("suspend"):
        raise PluginError(f"clusterresync {args.name} is not suspended: nothing to approve")
    # The resourceVersion makes the patch conditional: refused (409) if the object changed meanwhile.
    rv = obj["metadata"]["resourceVersion"]
    patched = c.merge_patch(
        PLURAL, args.name, {"metadata": {"resourceVersion": rv}, "spec": {"suspend": False}}
    )
    if out.fmt:
        out.data(patched)
    else:
        out.line(f"clusterresync {args.name} approved")
    return 0


def cmd_volumes(c: Cluster, args: argparse.Namespace, out: Out) -> int:
    uids = {
        str(o["metadata"]["uid"])
        for o in c.list_objects(PLURAL).get("items") or []
        if ((o.get("spec") or {}).get("target") or {}).get("name") == args.target
    }
    pvs = [
        pv
        for pv in c.persistent_volumes(LABEL_VOLUME_ROLE)
        if views.belongs_to(pv, args.target, c.namespace, uids)
    ]
    now = views.now_utc()
    entries = sorted(
        (views.volume_entry(pv, now) for pv in pvs),
        key=lambda e: (e["resync"] or "", e["replica"] or "", e["volume"] or "", e["role"] or ""),
    )
    if out.fmt:
        out.data({"target": args.target, "namespace": c.namespace, "volumes": entries})
    else:
        out.blocks(views.volume_blocks(entries, args.target))
    return 0


COMMANDS: dict[str, Callable[[Cluster, argparse.Namespace, Out], int]] = {
    "start": cmd_start,
    "status": cmd_status,
    "watch": cmd_watch,
    "drift": cmd_drift,
    "approve": cmd_approve,
    "volumes": cmd_volumes,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    out = Out(sys.stdout, args.output, sys.stdout.isatty())
    try:
        cluster = connect(args.kubeconfig, args.context, args.namespace)
    except PluginError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return e.code
    try:
        return COMMANDS[args.command](cluster, args, out)
    except views.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except PluginError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130
    finally:
        cluster.close()
