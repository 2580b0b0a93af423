"""The ``kubesim`` command: ``kubesim serve`` and ``kubesim kubeconfig``."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .cluster import Cluster, ClusterConfig, write_kubeconfig
from .kubelet import ImageConfig, normalize_image


def load_images(path: Path) -> dict[str, ImageConfig]:
    """``--images FILE``: a YAML mapping of image reference to its OCI image config
    (``Entrypoint``, ``Cmd``, ``Env``, ``User``, ``WorkingDir``)."""
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise SystemExit(f"{path}: expected a mapping of image reference to image config")
    try:
        return {normalize_image(str(ref)): ImageConfig.from_oci(dict(cfg or {})) for ref, cfg in raw.items()}
    except (TypeError, ValueError) as e:
        raise SystemExit(f"{path}: {e}") from None


def _serve(args: argparse.Namespace) -> int:
    config = ClusterConfig(
        port=args.port,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        access_log=args.access_log,
        audit_log=Path(args.audit_log) if args.audit_log else None,
        images=load_images(Path(args.images)) if args.images else {},
    )
    if args.access_log:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def main() -> None:
        cluster = Cluster(config)
        await cluster.start()
        cluster.write_admin_kubeconfig(Path(args.kubeconfig))
        print(
            f"kubesim ready: serving {cluster.server_url}; admin kubeconfig written to {args.kubeconfig}",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("kubesim: shutting down", flush=True)
        await cluster.stop()

    asyncio.run(main())
    return 0


def _kubeconfig(args: argparse.Namespace) -> int:
    """Ask the server for a ServiceAccount token (the TokenRequest API, as `kubectl create token` does)."""
    server_cfg: dict[str, Any] = yaml.safe_load(Path(args.server_kubeconfig).read_text())
    ctx_name = server_cfg["current-context"]
    ctx = next(c["context"] for c in server_cfg["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in server_cfg["clusters"] if c["name"] == ctx["cluster"])
    server = cluster["server"]
    ca_data = cluster.get("certificate-authority-data")
    token = next(u["user"]["token"] for u in server_cfg["users"] if u["name"] == ctx["user"])
    try:
        ns, name = args.serviceaccount.split("/", 1)
    except ValueError:
        print("kubesim kubeconfig: --serviceaccount must be NAMESPACE/NAME", file=sys.stderr)
        return 2
    body = json.dumps(
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": args.expiration_seconds},
        }
    ).encode()
    req = urllib.request.Request(
        f"{server}/api/v1/namespaces/{ns}/serviceaccounts/{name}/token",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    ssl_ctx = ssl.create_default_context(cadata=base64.b64decode(ca_data).decode()) if ca_data else None
    try:
        with urllib.request.urlopen(req, timeout=10, context=ssl_ctx) as resp:
            out = json.load(resp)
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("message", detail)
        except ValueError:
            pass
        print(f"kubesim kubeconfig: the server refused a token for {ns}/{name}: {detail}", file=sys.stderr)
        return 1
    sa_token = out["status"]["token"]
    user = f"system:serviceaccount:{ns}:{name}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kubesim", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": sa_token}}],
        "contexts": [
            {"name": f"{user}@kubesim", "context": {"cluster": "kubesim", "user": user, "namespace": ns}}
        ],
        "current-context": f"{user}@kubesim",
        "preferences": {},
    }
    write_kubeconfig(Path(args.out), config)
    print(f"wrote {args.out} for {user}")
    return 0


def _admin(args: argparse.Namespace) -> int:
    """POST /kubesim/<action> with a JSON body, as the admin of the cluster the kubeconfig names."""
    cfg: dict[str, Any] = yaml.safe_load(Path(args.kubeconfig).read_text())
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == cfg["current-context"])
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    token = next(u["user"]["token"] for u in cfg["users"] if u["name"] == ctx["user"])
    ca = cluster.get("certificate-authority-data")
    ssl_ctx = ssl.create_default_context(cadata=base64.b64decode(ca).decode()) if ca else None
    body = (args.body or "{}").encode()
    req = urllib.request.Request(
        f"{cluster['server']}/kubesim/{args.action}",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30, context=ssl_ctx) as resp:
            print(resp.read().decode())
    except urllib.error.HTTPError as e:
        print(f"kubesim admin {args.action}: {e.code}: {e.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="kubesim", description="A simulated Kubernetes cluster for tests and demos."
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve the Kubernetes API on 127.0.0.1 and write an admin kubeconfig")
    s.add_argument("--kubeconfig", required=True, help="where to write the admin kubeconfig")
    s.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    s.add_argument("--data-dir", help="directory holding volume data")
    s.add_argument("--access-log", action="store_true", help="log every request")
    s.add_argument(
        "--audit-log",
        metavar="PATH",
        help="append one audit.k8s.io/v1 Event (level Metadata) per request to PATH, as JSON lines",
    )
    s.add_argument(
        "--images",
        metavar="FILE",
        help="a YAML mapping of image reference to its OCI config (Entrypoint, Cmd, Env, User, "
        "WorkingDir): what a process pod's container without a command runs",
    )
    s.set_defaults(func=_serve)
    k = sub.add_parser("kubeconfig", help="write a kubeconfig that authenticates as a ServiceAccount")
    k.add_argument("--server-kubeconfig", required=True, help="the admin kubeconfig `kubesim serve` wrote")
    k.add_argument("--serviceaccount", required=True, help="NAMESPACE/NAME of an existing ServiceAccount")
    k.add_argument("--out", required=True, help="where to write the new kubeconfig")
    k.add_argument("--expiration-seconds", type=int, default=86400, help="token lifetime (default: one day)")
    k.set_defaults(func=_kubeconfig)
    a = sub.add_parser(
        "admin",
        help="run an admin action: faults, faults/list, faults/clear, watches/drop, controllers/pause, "
        "controllers/resume, nodes/ready, pods/crash, volumes/read, ...",
    )
    a.add_argument("action", help="e.g. faults, or controllers/pause")
    a.add_argument(
        "body",
        nargs="?",
        help='JSON arguments, e.g. \'{"kind": "api", "match": {"verb": "create"}, "code": 500, "count": 1}\'',
    )
    a.add_argument("--kubeconfig", required=True, help="the admin kubeconfig `kubesim serve` wrote")
    a.set_defaults(func=_admin)
    args = p.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
