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

Metrics (``metrics.py``, docs/observability.md): Prometheus text on ``http://ADDRESS:PORT/metrics``,
distinct from Kopf's health endpoint (``--liveness``, port 8080 in manifests/):

  --metrics-port PORT      the port (default: $CLUSTERRESYNC_METRICS_PORT, else 9090; 0: no endpoint)
  --metrics-address ADDR   the address to bind (default: $CLUSTERRESYNC_METRICS_ADDRESS, else 0.0.0.0)

Notifications by email (``notify.py``, docs/observability.md) go through the SMTP server configured
here, unless a ClusterResync or ResyncPolicy names its own (``notify.email.smtp``):

  --smtp-host HOST         ($CLUSTERRESYNC_SMTP_HOST; unset: email notifications fail, webhooks work)
  --smtp-port PORT         ($CLUSTERRESYNC_SMTP_PORT; default 587, or 465 with --smtp-security=tls)
  --smtp-security MODE     starttls (default), tls (implicit TLS) or none ($CLUSTERRESYNC_SMTP_SECURITY)
  --smtp-from ADDRESS      the sender ($CLUSTERRESYNC_SMTP_FROM)
  --smtp-username USER     ($CLUSTERRESYNC_SMTP_USERNAME); the password only from the environment:
                           $CLUSTERRESYNC_SMTP_PASSWORD or the file $CLUSTERRESYNC_SMTP_PASSWORD_FILE
  --smtp-ca-file PATH      CA certificates (PEM) trusted besides the system's, for this server and
                           for the ones specs name ($CLUSTERRESYNC_SMTP_CA_FILE)

Failed deliveries are retried $CLUSTERRESYNC_NOTIFY_MAX_ATTEMPTS times in all (5), waiting
$CLUSTERRESYNC_NOTIFY_BACKOFF_SECONDS (30) after the first failure, doubling, at most 600 s.

``--standalone`` (Kopf: no peering) is still accepted, for old manifests, but is not needed:
the operator always disables Kopf peering, since the Lease replaces it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import MutableMapping

from . import cache, leader, logs, metrics, notify


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clusterresync-operator", add_help=False, allow_abbrev=False)
    p.add_argument("--lease-namespace", default=None)
    p.add_argument("--lease-name", default=None)
    p.add_argument("--lease-duration", type=int, default=None)
    p.add_argument("--renew-deadline", type=float, default=None)
    p.add_argument("--retry-period", type=float, default=None)
    p.add_argument("--identity", default=None)
    p.add_argument("--metrics-port", type=int, default=None)
    p.add_argument("--metrics-address", default=None)
    p.add_argument("--smtp-host", default=None)
    p.add_argument("--smtp-port", type=int, default=None)
    p.add_argument("--smtp-security", default=None, choices=["starttls", "tls", "none"])
    p.add_argument("--smtp-from", default=None)
    p.add_argument("--smtp-username", default=None)
    p.add_argument("--smtp-ca-file", default=None)
    return p


def notify_config(args: list[str]) -> tuple[notify.SmtpConfig, notify.RetryPolicy]:
    """The SMTP server and the retry policy of notifications, from the flags and the environment."""
    known, _ = _parser().parse_known_args(args)
    smtp = notify.SmtpConfig.from_env(
        host=known.smtp_host,
        port=known.smtp_port,
        security=known.smtp_security,
        sender=known.smtp_from,
        username=known.smtp_username,
        ca_file=known.smtp_ca_file,
    )
    return smtp, notify.RetryPolicy.from_env()


def metrics_config(args: list[str]) -> tuple[tuple[str, int], list[str]]:
    """The metrics endpoint's (address, port) from the flags, else the environment, else defaults."""
    known, rest = _parser().parse_known_args(args)
    port = known.metrics_port
    if port is None:
        port = int(os.environ.get("CLUSTERRESYNC_METRICS_PORT") or metrics.DEFAULT_PORT)
    if not 0 <= port <= 65535:
        raise ValueError(f"--metrics-port must be 0 to 65535, not {port}")
    address = known.metrics_address or os.environ.get("CLUSTERRESYNC_METRICS_ADDRESS") or "0.0.0.0"
    return (address, port), rest


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


def give_kopf_the_identity(identity: str, environ: MutableMapping[str, str] = os.environ) -> None:
    """Kopf names its process (``peering.detect_own_id``) from ``POD_ID``, else from the user's
    login name, which ``getpass.getuser`` looks up in /etc/passwd: a uid with no entry there (the
    image's 65532 on a slim base, OpenShift's arbitrary uids) would crash it at start. The
    Lease's identity is given instead, so Kopf never asks."""
    environ.setdefault("POD_ID", identity)


def kopf_run_args(args: list[str], json_logs: bool) -> list[str]:
    """Kopf's ``run`` arguments: every namespace unless some are named, and, with JSON logs,
    Kopf's own lines as JSON too (one object per line) unless a ``--log-format`` is given."""
    out = list(args)
    if not any(a in ("-A", "--all-namespaces") or a.startswith(("-n", "--namespace")) for a in out):
        out.insert(0, "--all-namespaces")
    if json_logs and not any(a.startswith("--log-format") for a in out):
        out.insert(0, "--log-format=json")
    return out


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        (address, port), _ = metrics_config(args)
        smtp, retry = notify_config(args)
        config, args = leader_config(args)
    except (ValueError, OSError, SystemExit) as e:
        print(f"clusterresync-operator: {e}", file=sys.stderr)
        return 2
    leader.configure(config)
    give_kopf_the_identity(config.identity)
    metrics.configure(address, port)
    notify.configure(smtp, retry)
    cache.configure(served_namespaces(args))
    args = kopf_run_args(args, json_logs=logs.json_wanted())
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
