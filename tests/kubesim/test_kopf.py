"""A minimal Kopf operator runs against kubesim under ``kopf.testing.KopfRunner``."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any

import kopf
import pytest
from kopf.testing import KopfRunner
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim.testing import KubeSim

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "things.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "things", "singular": "thing", "kind": "Thing"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}

OPERATOR = textwrap.dedent("""
    import kopf

    @kopf.on.login()
    def login(**kwargs):
        # The kubernetes client resolves KUBECONFIG when it is imported, which in this test
        # process happened before the test set it; Kopf's own kubeconfig login reads it now.
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.create("example.com", "v1", "things")
    def created(body, spec, patch, **_):
        patch.status["observedSize"] = spec.get("size")
        kopf.info(body, reason="Seen", message="the test operator saw this thing")
        return {"message": "created"}

    @kopf.on.update("example.com", "v1", "things")
    def updated(spec, patch, **_):
        patch.status["observedSize"] = spec.get("size")

    @kopf.on.delete("example.com", "v1", "things")
    def deleted(name, logger, **_):
        logger.info(f"deleting {name}")
""")


def _wait(pred: Any, timeout: float = 20.0) -> Any:
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = pred()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")


def test_kopf_operator_create_update_delete(
    kubesim: KubeSim, k8s_client: client.ApiClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.ApiextensionsV1Api(k8s_client).create_custom_resource_definition(CRD)
    path = tmp_path / "operator.py"
    path.write_text(OPERATOR)
    monkeypatch.setenv("KUBECONFIG", str(kubesim.kubeconfig))
    api = client.CustomObjectsApi(k8s_client)
    # A registry of its own: handlers other test files imported into this process (the
    # operator's, when files share a pytest-xdist worker) must not run here.
    with KopfRunner(
        ["run", "--standalone", "--all-namespaces", "--verbose", str(path)],
        timeout=60,
        registry=kopf.OperatorRegistry(),
    ) as runner:
        api.create_namespaced_custom_object(
            "example.com",
            "v1",
            "default",
            "things",
            {
                "apiVersion": "example.com/v1",
                "kind": "Thing",
                "metadata": {"name": "t1"},
                "spec": {"size": 2},
            },
        )

        def status() -> dict[str, Any]:
            obj = api.get_namespaced_custom_object("example.com", "v1", "default", "things", "t1")
            st: dict[str, Any] = obj.get("status") or {}
            return st

        st = _wait(lambda: status().get("observedSize") == 2 and status())
        assert st["created"] == {"message": "created"}
        obj = api.get_namespaced_custom_object("example.com", "v1", "default", "things", "t1")
        assert "kopf.zalando.org/KopfFinalizerMarker" in obj["metadata"]["finalizers"]
        api.patch_namespaced_custom_object(
            "example.com", "v1", "default", "things", "t1", {"spec": {"size": 5}}
        )
        _wait(lambda: status().get("observedSize") == 5)
        api.delete_namespaced_custom_object("example.com", "v1", "default", "things", "t1")

        def gone() -> bool:
            try:
                api.get_namespaced_custom_object("example.com", "v1", "default", "things", "t1")
                return False
            except ApiException as e:
                return e.status == 404

        _wait(gone)
        core = client.CoreV1Api(k8s_client)

        def kopf_events() -> list[str]:
            listed = core.list_namespaced_event("default", field_selector="involvedObject.name=t1")
            return [e.message or "" for e in listed.items]

        # Kopf posts events (here the handler's kopf.info) in the background.
        messages = _wait(lambda: [m for m in kopf_events() if "saw this thing" in m])
        assert messages == ["the test operator saw this thing"]
    assert runner.exit_code == 0, runner.output
    assert runner.exception is None
    assert "deleting t1" in runner.output
