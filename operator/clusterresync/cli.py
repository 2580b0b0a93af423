"""``clusterresync-operator``: run the operator (a thin wrapper over ``kopf run``).

It accepts ``--namespace NS`` (repeatable) or ``--all-namespaces`` and passes every other flag to
Kopf (``--standalone``, ``--liveness``, ``--peering``, ``--verbose``, ...). Credentials come from
the in-cluster ServiceAccount, or from ``KUBECONFIG`` outside a cluster.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
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
