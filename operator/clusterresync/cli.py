"""``clusterresync-operator``: run the operator (a thin wrapper over ``kopf run``).

It accepts ``--namespace NS`` (repeatable) or ``--all-namespaces`` (the default), the leader
election flags below, and passes every other flag to Kopf (``--liveness``, ``--verbose``, ...).
Credentials come from the in-cluster ServiceAccount, or from ``KUBECONFIG`` outside a cluster.

Leader election (``leader.py``; client-go's defaults):

  --lease-namespace NS     the Lease's namespace (default: $POD_NAMESPACE, else clusterresync-system)
  --lease-name NAME        the Lease's name (default: clusterresync-operator)
  --lease-duration SECS    how long a candidate waits, after the lease last changed, to take it over (15)
  --renew-deadline SECS    the leader stops acting if it could not renew for this long (10)
  --retry-period SECS      how often the leader renews and candidates retry (2)
  --identity ID            this process's identity (default: $POD_NAME or the hostname, plus a random suffix)

``--standalone`` (Kopf: no peering) is still accepted, for old manifests, but is not needed:
the operator always disables Kopf peering, since the Lease replaces it.
"""

from __future__ import annotations

import argparse
import sys

from . import cache, leader


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clusterresync-operator", add_help=False, allow_abbrev=False)
    p.add_argument("--lease-namespace", default=None)
    p.add_argument("--lease-name", default=None)
    p.add_argument("--lease-duration", type=int, default=None)
    p.add_argument("--renew-deadline", type=float, default=None)
    p.add_argument("--retry-period", type=float, default=None)
    p.add_argument("--identity", default=None)
    return p


def served_namespaces(args: list[str]) -> list[str]:
    """The ``-n/--namespace`` values among Kopf's arguments (they stay there for Kopf)."""
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("-n", "--namespace", action="append", default=[])
    p.add_argument("-A", "--all-namespaces", action="store_true")
    known, _ = p.parse_known_args(args)
    return [] if known.all_namespaces else list(known.namespace)


def leader_config(args: list[str]) -> tuple[leader.LeaderConfig, list[str]]:
    """The leader election configuration from ``args``, and the arguments left for Kopf."""
    known, rest = _parser().parse_known_args(args)
    config = leader.LeaderConfig.from_env(
        namespace=known.lease_namespace,
        name=known.lease_name,
        identity=known.identity,
        lease_duration=known.lease_duration,
        renew_deadline=known.renew_deadline,
        retry_period=known.retry_period,
    )
    return config, rest


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        config, args = leader_config(args)
    except (ValueError, SystemExit) as e:
        print(f"clusterresync-operator: {e}", file=sys.stderr)
        return 2
    leader.configure(config)
    cache.configure(served_namespaces(args))
    if not any(a in ("-A", "--all-namespaces") or a.startswith(("-n", "--namespace")) for a in args):
        args.insert(0, "--all-namespaces")
    from kopf.cli import main as kopf_main

    try:
        kopf_main.main(
            args=["run", "-m", "clusterresync.handlers", *args],
            prog_name="clusterresync-operator",
            standalone_mode=False,
        )
    except SystemExit as e:
        return int(e.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
