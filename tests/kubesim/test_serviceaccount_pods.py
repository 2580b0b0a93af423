"""What a pod gets to reach the API server from inside, as on a real cluster: the ServiceAccount
admission plugin's projected token volume (``kube-api-access-*``), the root CA publisher's
``kube-root-ca.crt`` ConfigMap, the kubelet's service environment variables; and the image's
OCI config (Entrypoint, Cmd, Env, User) for a container without a command.

The in-cluster test runs the official Python client's ``load_incluster_config`` in a process pod:
the token, CA, namespace file and ``KUBERNETES_SERVICE_HOST``/``PORT`` it reads are kubesim's, and
the API server authorizes it as the pod's ServiceAccount.
"""

from __future__ import annotations

import json
import ssl
import sys
import textwrap
import uuid
from typing import Any

import pytest
from test_kubelet import PROCESS, api, create_pod, cstatus, log_text, new_ns, pod

from kubesim.cluster import ClusterConfig
from kubesim.kubelet import ImageConfig
from kubesim.testing import KubeSim, wait_for

MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
IMAGE = "registry.example/tools/show:1.0"
NONNUMERIC = "registry.example/tools/named-user:1.0"
ROOT = "registry.example/tools/root:1.0"


@pytest.fixture(scope="module")
def kubesim() -> Any:
    images = {
        IMAGE: ImageConfig(
            entrypoint=("/bin/sh", "-c", 'echo "$*" "$FROM_IMAGE"', "sh"),
            cmd=("from-cmd",),
            env=("FROM_IMAGE=image", "PATH=/usr/bin:/bin"),
            user="4242:4343",
        ),
        ROOT: ImageConfig(entrypoint=("/bin/true",), user="0"),
        NONNUMERIC: ImageConfig(entrypoint=("/bin/true",), user="app"),
    }
    with KubeSim(config=ClusterConfig(images=images)) as sim:
        yield sim


def token_volumes(p: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in p["spec"].get("volumes") or [] if v["name"].startswith("kube-api-access-")]


def mounts_at_default_path(c: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in c.get("volumeMounts") or [] if m["mountPath"] == MOUNT]


def ended(k: KubeSim, ns: str, name: str) -> dict[str, Any]:
    return wait_for(
        lambda: (p := pod(k, ns, name)) and p["status"].get("phase") in ("Succeeded", "Failed") and p,
        30,
        f"{name} to end",
    )


def refused(k: KubeSim, ns: str, name: str) -> dict[str, Any]:
    """The container's ``waiting`` state once the kubelet has said why it cannot start it."""
    st = wait_for(
        lambda: (
            (w := cstatus(pod(k, ns, name), "app").get("state", {}).get("waiting", {})).get("message") and w
        ),
        30,
        f"{name}'s container refused",
    )
    return st  # type: ignore[no-any-return]


# -- admission -------------------------------------------------------------------------------------
def test_every_container_mounts_the_projected_token_volume(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    own = {"name": "own", "emptyDir": {}}
    p = create_pod(
        kubesim,
        ns,
        "p",
        [
            {"name": "app"},
            # A container that mounts something at the path keeps its own.
            {"name": "custom", "volumeMounts": [{"name": "own", "mountPath": MOUNT}]},
        ],
        initContainers=[{"name": "init", "image": "busybox"}],
        volumes=[own],
    )
    (vol,) = token_volumes(p)
    assert len(vol["name"]) == len("kube-api-access-") + 5
    assert vol["projected"] == {
        "defaultMode": 0o644,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {
                "downwardAPI": {
                    "items": [
                        {
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }
                    ]
                }
            },
        ],
    }
    want = [{"name": vol["name"], "readOnly": True, "mountPath": MOUNT}]
    app, custom = p["spec"]["containers"]
    assert mounts_at_default_path(app) == want
    assert mounts_at_default_path(p["spec"]["initContainers"][0]) == want
    assert mounts_at_default_path(custom) == [{"name": "own", "mountPath": MOUNT}]
    assert p["spec"]["serviceAccountName"] == "default"


@pytest.mark.parametrize(
    ("pod_says", "account_says", "mounted"),
    [
        (None, None, True),
        (False, None, False),
        (None, False, False),
        (True, False, True),
        (False, True, False),
    ],
)
def test_automount_the_pod_decides_then_the_service_account(
    kubesim: KubeSim, pod_says: bool | None, account_says: bool | None, mounted: bool
) -> None:
    ns = new_ns(kubesim)
    sa: dict[str, Any] = {"metadata": {"name": "robot"}}
    if account_says is not None:
        sa["automountServiceAccountToken"] = account_says
    api(kubesim, "POST", f"/api/v1/namespaces/{ns}/serviceaccounts", sa)
    spec: dict[str, Any] = {"serviceAccountName": "robot"}
    if pod_says is not None:
        spec["automountServiceAccountToken"] = pod_says
    p = create_pod(kubesim, ns, "p", [{"name": "app"}], **spec)
    assert bool(token_volumes(p)) == mounted
    assert bool(mounts_at_default_path(p["spec"]["containers"][0])) == mounted


def test_every_namespace_publishes_the_root_ca(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    cm = wait_for(
        lambda: (c := api(kubesim, "GET", f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt")) and c
    )
    assert "kube-apiserver" in cm["metadata"]["annotations"]["kubernetes.io/description"]
    # The CA verifies the API server's certificate for the address pods are given.
    host, port = kubesim.server.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.create_default_context(cadata=cm["data"]["ca.crt"])
    import socket

    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=host),
    ):
        pass


# -- from inside a pod -----------------------------------------------------------------------------
IN_CLUSTER = textwrap.dedent(
    """
    import json, os
    from kubernetes import client, config
    config.load_incluster_config()
    ns = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
    out = {"ns": ns, "env": {k: v for k, v in os.environ.items() if k.startswith(("KUBERNETES_", "WEB_"))}}
    try:
        out["pods"] = [p.metadata.name for p in client.CoreV1Api().list_namespaced_pod(ns).items]
    except client.ApiException as e:
        out["status"] = e.status
    print(json.dumps(out))
    """
)


def in_cluster_pod(kubesim: KubeSim, ns: str, name: str, **spec: Any) -> tuple[dict[str, Any], str]:
    """A process pod running ``IN_CLUSTER`` to its end: the pod and its output."""
    create_pod(
        kubesim,
        ns,
        name,
        [{"name": "app", "command": [sys.executable, "-c", IN_CLUSTER]}],
        annotations=PROCESS,
        restartPolicy="Never",
        **spec,
    )
    return ended(kubesim, ns, name), log_text(kubesim, ns, name, "app")


def run_in_cluster(kubesim: KubeSim, ns: str, name: str, **spec: Any) -> dict[str, Any]:
    p, text = in_cluster_pod(kubesim, ns, name, **spec)
    assert p["status"]["phase"] == "Succeeded", (cstatus(p, "app"), text)
    out: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    return out


def test_in_cluster_client_is_its_service_account(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    api(
        kubesim,
        "POST",
        f"/api/v1/namespaces/{ns}/services",
        {"metadata": {"name": "web-front"}, "spec": {"ports": [{"name": "http", "port": 80}]}},
    )
    denied = run_in_cluster(kubesim, ns, "denied")
    assert denied["status"] == 403 and denied["ns"] == ns
    host, port = kubesim.server.removeprefix("https://").rsplit(":", 1)
    env = denied["env"]
    assert (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]) == (host, port)
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == port
    assert env["KUBERNETES_PORT"] == f"tcp://{host}:{port}"
    assert env[f"KUBERNETES_PORT_{port}_TCP_ADDR"] == host
    # Service links: the Services of the pod's namespace (their cluster IPs), by default.
    svc = api(kubesim, "GET", f"/api/v1/namespaces/{ns}/services/web-front")
    assert env["WEB_FRONT_SERVICE_HOST"] == svc["spec"]["clusterIP"]
    assert env["WEB_FRONT_SERVICE_PORT_HTTP"] == "80"
    assert env["WEB_FRONT_PORT_80_TCP"] == f"tcp://{svc['spec']['clusterIP']}:80"
    # RBAC for the ServiceAccount: now it may list pods.
    api(
        kubesim,
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        {
            "metadata": {"name": "pods"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        },
    )
    api(
        kubesim,
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": "pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pods"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
        },
    )
    allowed = run_in_cluster(kubesim, ns, "allowed", enableServiceLinks=False)
    assert "allowed" in allowed["pods"] and "denied" in allowed["pods"]
    assert not [k for k in allowed["env"] if k.startswith("WEB_FRONT_")]
    assert "KUBERNETES_SERVICE_HOST" in allowed["env"]  # the master service's, always


def test_without_a_token_the_in_cluster_client_cannot_start(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    p, text = in_cluster_pod(kubesim, ns, "no-token", automountServiceAccountToken=False)
    assert p["status"]["phase"] == "Failed"
    assert "Service token file does not exist" in text


# -- the image's config ----------------------------------------------------------------------------
def test_a_container_without_command_runs_the_images_entrypoint(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    cases = {
        "cmd": {},  # Entrypoint + Cmd
        "args": {"args": ["a1", "a2"]},  # Entrypoint + the container's args
        "env": {"env": [{"name": "FROM_IMAGE", "value": "container"}]},  # the container's env wins
        "command": {"command": ["sh", "-c", "echo $(id -u):$(id -g)"]},  # only the image's User and Env
    }
    for name, extra in cases.items():
        create_pod(
            kubesim,
            ns,
            name,
            [{"name": "app", "image": IMAGE, **extra}],
            annotations=PROCESS,
            restartPolicy="Never",
        )
    out = {}
    for name in cases:
        p = ended(kubesim, ns, name)
        assert p["status"]["phase"] == "Succeeded", cstatus(p, "app")
        out[name] = log_text(kubesim, ns, name, "app").strip()
    assert out == {
        "cmd": "from-cmd image",
        "args": "a1 a2 image",
        "env": "from-cmd container",
        "command": "4242:4343",  # the image's user and group, no runAsUser/runAsGroup given
    }


def test_runasnonroot_cannot_verify_a_non_numeric_image_user(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_pod(
        kubesim,
        ns,
        "named",
        [{"name": "app", "image": NONNUMERIC, "securityContext": {"runAsNonRoot": True}}],
        annotations=PROCESS,
    )
    waiting = refused(kubesim, ns, "named")
    assert waiting["reason"] == "CreateContainerConfigError"
    assert "image has non-numeric user (app), cannot verify user is non-root" in waiting["message"]


def test_an_unknown_image_without_command_does_not_start(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_pod(
        kubesim,
        ns,
        "bare",
        [{"name": "app", "image": f"unknown/{uuid.uuid4().hex[:6]}:1"}],
        annotations=PROCESS,
    )
    waiting = refused(kubesim, ns, "bare")
    assert waiting["reason"] == "CreateContainerError"
    assert "has no command" in waiting["message"]


def test_runasnonroot_refuses_an_image_that_runs_as_root(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    create_pod(
        kubesim,
        ns,
        "root",
        [{"name": "app", "image": ROOT, "securityContext": {"runAsNonRoot": True}}],
        annotations=PROCESS,
    )
    waiting = refused(kubesim, ns, "root")
    assert waiting["reason"] == "CreateContainerConfigError"
    assert waiting["message"].startswith("container has runAsNonRoot and image will run as root"), waiting


def test_a_non_numeric_image_user_cannot_run_here(kubesim: KubeSim) -> None:
    """Without runAsNonRoot upstream resolves the name in the image's /etc/passwd; kubesim has no
    image filesystem, so it refuses rather than guess a uid."""
    ns = new_ns(kubesim)
    create_pod(kubesim, ns, "named", [{"name": "app", "image": NONNUMERIC}], annotations=PROCESS)
    waiting = refused(kubesim, ns, "named")
    assert waiting["reason"] == "CreateContainerError"
    assert "has the non-numeric user app: kubesim runs processes by uid only" in waiting["message"]


def test_a_token_volume_already_in_the_spec_is_reused(kubesim: KubeSim) -> None:
    ns = new_ns(kubesim)
    mine = {"name": "kube-api-access-mine1", "emptyDir": {}}
    p = create_pod(kubesim, ns, "p", [{"name": "app"}], volumes=[mine])
    assert token_volumes(p) == [mine]
    assert mounts_at_default_path(p["spec"]["containers"][0]) == [
        {"name": "kube-api-access-mine1", "readOnly": True, "mountPath": MOUNT}
    ]
