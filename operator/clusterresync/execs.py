"""Running Exec actions: a hook's or a probe's command in a pod over pods/exec, or a probe's HTTP
GET on a pod. A Secret a probe needs is read live (never cached), written on the command's
standard input (never in its arguments, which the API server's audit log records), and masked in
everything that comes back. Nothing here logs an output.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from dataclasses import replace
from typing import Any

from .kube import ErrorKind, Kube, KubeError
from .state import Exec, HookOutcome, Obj, Ref, SecretKey


def run_exec(kube: Kube, pods: dict[str, Obj], a: Exec) -> HookOutcome:
    """An Exec action's outcome: its command in the pod (with a Secret on stdin, masked in what
    comes back), or its HTTP GET on the pod. Never raises for the command's own failure."""
    if a.http_get is not None:
        return http_get(pods.get(a.pod), a.http_get, a.timeout_seconds)
    stdin, refused = secret_value(kube, a.namespace, a.stdin_secret)
    if refused is not None:
        return refused
    return scrubbed(
        kube.exec(a.namespace, a.pod, a.container, list(a.command), a.timeout_seconds, stdin), stdin
    )


def http_get(pod: Obj | None, target: tuple[str, int, str], timeout: int) -> HookOutcome:
    """GET ``scheme://<pod IP>:port/path`` (the HTTP probe): the body as stdout, the status as the
    exit code; no answer is an outcome without one. Redirects are not followed."""
    scheme, port, path = target
    ip = str(((pod or {}).get("status") or {}).get("podIP") or "")
    if not ip:
        return HookOutcome(False, None, "", error="the pod has no IP yet")
    host = f"[{ip}]" if ":" in ip else ip
    url = f"{scheme}://{host}:{port}{path}"
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=timeout) as resp:
            body = resp.read(64 * 1024 + 1).decode(errors="replace")
            return HookOutcome(True, int(resp.status), body, stdout=body)
    except urllib.error.HTTPError as e:
        body = e.read(4096).decode(errors="replace")
        return HookOutcome(False, int(e.code), body, stdout=body)
    except (OSError, ValueError) as e:
        return HookOutcome(False, None, "", error=f"GET {scheme}://<pod IP>:{port}{path}: {e}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def scrubbed(outcome: HookOutcome, secret: str | None) -> HookOutcome:
    """The outcome with every occurrence of ``secret`` masked: what a command echoed of the
    password it was given never reaches the planner, the status or a log."""
    if not secret:
        return outcome
    return replace(
        outcome,
        output=outcome.output.replace(secret, "***"),
        stdout=outcome.stdout.replace(secret, "***"),
        stderr=outcome.stderr.replace(secret, "***"),
        error=outcome.error.replace(secret, "***"),
    )


def secret_value(kube: Kube, namespace: str, ref: SecretKey | None) -> tuple[str | None, HookOutcome | None]:
    """The value of a Secret's key, for an exec's standard input; or the failed outcome saying why
    it cannot be had (named, never the value). Read live, never cached, never logged."""
    if ref is None:
        return None, None
    what = f"Secret {namespace}/{ref.name}"
    try:
        secret = kube.get(Ref("v1", "Secret", "secrets", ref.name, namespace))
    except KubeError as e:
        why = (
            f"the operator may not read {what} (RBAC): grant it get on that Secret (docs/probes.md#credentials)"
            if e.kind == ErrorKind.FORBIDDEN
            else f"could not read {what}: {e.message}"
        )
        return None, HookOutcome(False, None, "", error=why)
    raw = ((secret or {}).get("data") or {}).get(ref.key)
    if secret is None or raw is None:
        missing = f"{what} not found" if secret is None else f"{what} has no key {ref.key}"
        return None, HookOutcome(False, None, "", error=missing)
    try:
        return base64.b64decode(raw).decode(), None
    except (ValueError, UnicodeDecodeError):
        return None, HookOutcome(False, None, "", error=f"{what} key {ref.key} is not UTF-8 text")
