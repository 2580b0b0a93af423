"""The API's validation rules, as an API server applies them: kubectl apply of a violating
ClusterResync is refused with the rule's message (kubesim: structural schema, CEL, list types)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim.testing import KubeSim


def body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"target": {"name": "db"}, "primary": {"podName": "db-1"}, "volumes": ["data"]}
    base.update(spec)
    return {
        "apiVersion": "clusterresync.io/v1alpha1",
        "kind": "ClusterResync",
        "metadata": {"name": "rs"},
        "spec": base,
    }


def apply(cluster: KubeSim, ns: str, obj: dict[str, Any]) -> tuple[int, str]:
    out = cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(obj), check=False)
    return out.returncode, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"replicas": ["db-0", "db-1"]},
            "replicas must not include the primary pod (primary.podName)",
        ),
        (
            {
                "notify": {
                    "email": {
                        "to": ["oncall@example.com"],
                        "smtp": {
                            "host": "smtp.example.com",
                            "from": "resync@example.com",
                            "security": "None",
                            "credentialsSecretRef": {"name": "smtp", "usernameKey": "u", "passwordKey": "p"},
                        },
                    }
                }
            },
            "credentials are only sent over TLS",
        ),
        ({"notify": {}}, "notify needs a webhook, an email, or both"),
        (
            {"primary": {"selector": {"matchExpressions": [{"key": "role", "operator": "In"}]}}},
            "values must be non-empty when the operator is In or NotIn",
        ),
        (
            {
                "primary": {
                    "selector": {"matchExpressions": [{"key": "role", "operator": "NotIn", "values": []}]}
                }
            },
            "values must be non-empty when the operator is In or NotIn",
        ),
        (
            {
                "primary": {
                    "selector": {"matchExpressions": [{"key": "r", "operator": "Exists", "values": ["x"]}]}
                }
            },
            "values must be empty when the operator is Exists or DoesNotExist",
        ),
        (
            {"primaryStableSeconds": 600, "timeouts": {"preflightSeconds": 300}},
            "primaryStableSeconds must be below timeouts.preflightSeconds",
        ),
        ({"volumes": ["data", "data"]}, "Duplicate value"),
        (
            {"primary": {"podName": "db-1", "selector": {"matchLabels": {"a": "b"}}}},
            "exactly one of podName and selector must be set",
        ),
        ({"ttlSecondsAfterFinished": -1}, "ttlSecondsAfterFinished"),
        ({"volumes": [f"v{i}" for i in range(17)]}, "must have at most 16 items"),
        (
            {
                "probe": {
                    "preset": "Postgres",
                    "passwordEnv": "P",
                    "passwordSecretRef": {"name": "s", "key": "k"},
                }
            },
            "set at most one of passwordEnv and passwordSecretRef",
        ),
        ({"probe": {"preset": "Command"}}, "command is required for the Command preset, and only for it"),
        (
            {"probe": {"preset": "Redis", "command": ["true"]}},
            "command is required for the Command preset, and only for it",
        ),
        ({"probe": {"preset": "Checksum"}}, "path is required for the Checksum and HTTP presets"),
        ({"probe": {"preset": "Oracle"}}, "Unsupported value"),
    ],
)
def test_invalid_resync_is_refused(cluster: KubeSim, ns: str, spec: dict[str, Any], message: str) -> None:
    rc, out = apply(cluster, ns, body(**spec))
    assert rc != 0 and message in out, out


def test_valid_resyncs_are_accepted_and_spec_is_immutable(cluster: KubeSim, ns: str) -> None:
    ok = body(
        replicas=["db-0", "db-2"],
        primaryStableSeconds=3600,
        timeouts={"preflightSeconds": 0},
        ttlSecondsAfterFinished=0,
    )
    rc, out = apply(cluster, ns, ok)
    assert rc == 0, out
    rc, out = apply(cluster, ns, {**ok, "spec": {**ok["spec"], "maxParallel": 2}})
    assert rc != 0 and "spec is immutable" in out, out


def test_suspend_is_the_one_change_and_only_an_approval(cluster: KubeSim, ns: str) -> None:
    """spec.suspend goes from true to false (approving a suspended resync); nothing else changes,
    and an approved (or never suspended) resync cannot be suspended afterwards."""
    held = body(suspend=True, primaryStableSeconds=3600, timeouts={"preflightSeconds": 0})
    rc, out = apply(cluster, ns, held)
    assert rc == 0, out
    rc, out = apply(cluster, ns, {**held, "spec": {**held["spec"], "suspend": True, "maxParallel": 3}})
    assert rc != 0 and "Only suspend can change, from true to false" in out, out
    rc, out = apply(cluster, ns, {**held, "spec": {**held["spec"], "suspend": False, "force": True}})
    assert rc != 0 and "spec is immutable" in out, out
    rc, out = apply(cluster, ns, {**held, "spec": {**held["spec"], "suspend": False}})
    assert rc == 0, out
    rc, out = apply(cluster, ns, {**held, "spec": {**held["spec"], "suspend": True}})
    assert rc != 0 and "spec is immutable" in out, out


def test_a_bare_off_mode_is_refused_with_the_message_the_docs_quote(cluster: KubeSim, ns: str) -> None:
    """kubectl reads YAML 1.1: `mode: Off` is the boolean false. docs/policies.md quotes the
    API server's refusal and says to write "Off"."""
    manifest = """apiVersion: clusterresync.io/v1alpha1
kind: ResyncPolicy
metadata: {name: pol}
spec:
  target: {name: db}
  primary: {podName: db-1}
  volumes: [data]
  probe: {preset: Command, command: [probe]}
  mode: %s
"""
    out = cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest % "Off", check=False)
    quoted = 'spec.mode: Invalid value: "boolean": spec.mode in body must be of type string'
    assert out.returncode != 0 and quoted in out.stderr, out.stderr
    assert quoted in (Path(__file__).resolve().parents[2] / "docs" / "policies.md").read_text().replace(
        "\n", " "
    )
    out = cluster.kubectl("apply", "-n", ns, "-f", "-", input=manifest % '"Off"', check=False)
    assert out.returncode == 0, out.stderr
