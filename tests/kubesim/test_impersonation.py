"""User impersonation (``Impersonate-*`` headers, ``kubectl --as``/``--as-group``) through kubesim's
API server, as ``staging/src/k8s.io/apiserver/pkg/endpoints/filters/impersonation.go``
(``WithImpersonation``) does it: each impersonation is authorized (verb ``impersonate``), then the
request runs as the impersonated user, reviews included."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from kubesim.testing import KubeSim


@pytest.fixture(scope="module")
def kubesim() -> Iterator[KubeSim]:
    with KubeSim() as sim:
        sim.kubectl("create", "namespace", "imp")
        for sa in ("robot", "target"):
            sim.kubectl("create", "serviceaccount", sa, "-n", "imp")
        yield sim


def whoami(k: KubeSim, headers: list[tuple[str, str]], token: str | None = None) -> tuple[int, object]:
    code, _, out = k.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        headers=headers,
        token=token,
    )
    return code, out


def test_admin_impersonates_user_groups_uid_and_extras(kubesim: KubeSim) -> None:
    code, out = whoami(
        kubesim,
        [
            ("Impersonate-User", "alice"),
            ("Impersonate-Group", "devs"),
            ("Impersonate-Group", "qa"),
            ("Impersonate-Uid", "u-42"),
            ("Impersonate-Extra-Scopes", "view"),
            ("Impersonate-Extra-Scopes", "edit"),
        ],
    )
    assert code == 201
    assert out["status"]["userInfo"] == {  # type: ignore[index]
        "username": "alice",
        "uid": "u-42",
        "groups": ["devs", "qa", "system:authenticated"],
        "extra": {"scopes": ["view", "edit"]},
    }
    code, out = whoami(kubesim, [("Impersonate-User", "system:serviceaccount:imp:target")])
    assert out["status"]["userInfo"] == {  # type: ignore[index]
        "username": "system:serviceaccount:imp:target",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:imp", "system:authenticated"],
    }


def test_impersonated_user_is_authorized_as_itself(kubesim: KubeSim) -> None:
    proc = kubesim.kubectl("get", "pods", "-n", "imp", "--as=alice", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        'Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" '
        'in API group "" in the namespace "imp"'
    )
    # ... and the admin endpoints, reserved to system:masters, are closed to it
    code, _, _ = kubesim.request(
        "POST", "/kubesim/controllers/pause", body={}, headers=[("Impersonate-User", "alice")]
    )
    assert code == 403
    # impersonating a group that is bound to a role grants that role
    proc = kubesim.kubectl("get", "pods", "-n", "imp", "--as=alice", "--as-group=system:masters")
    assert proc.returncode == 0


def test_service_account_without_impersonate_is_refused(kubesim: KubeSim) -> None:
    cfg = kubesim.service_account_kubeconfig("imp", "robot")
    proc = kubesim.kubectl("get", "pods", "-n", "imp", "--as=alice", kubeconfig=cfg, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        'Error from server (Forbidden): users "alice" is forbidden: User "system:serviceaccount:imp:robot" '
        'cannot impersonate resource "users" in API group "" at the cluster scope'
    )
    proc = kubesim.kubectl(
        "get", "pods", "-n", "imp", "--as=system:serviceaccount:imp:target", kubeconfig=cfg, check=False
    )
    assert proc.stderr.strip() == (
        'Error from server (Forbidden): serviceaccounts "target" is forbidden: User '
        '"system:serviceaccount:imp:robot" cannot impersonate resource "serviceaccounts" in API group "" '
        'in the namespace "imp"'
    )
    # the edit role may impersonate service accounts of its namespace (bootstrap policy), no more
    kubesim.kubectl(
        "create", "rolebinding", "robot-edit", "-n", "imp", "--clusterrole=edit", "--serviceaccount=imp:robot"
    )
    proc = kubesim.kubectl(
        "get", "pods", "-n", "imp", "--as=system:serviceaccount:imp:target", kubeconfig=cfg, check=False
    )
    assert proc.stderr.strip() == (
        'Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:imp:target" cannot list '
        'resource "pods" in API group "" in the namespace "imp"'
    )
    proc = kubesim.kubectl(
        "get",
        "pods",
        "-n",
        "imp",
        "--as=system:serviceaccount:imp:target",
        "--as-group=devs",
        kubeconfig=cfg,
        check=False,
    )
    assert (
        'groups "devs" is forbidden: User "system:serviceaccount:imp:robot" cannot impersonate resource "groups"'
        in (proc.stderr)
    )


def test_can_i_answers_for_the_impersonated_service_account(kubesim: KubeSim) -> None:
    sa = "--as=system:serviceaccount:imp:target"
    proc = kubesim.kubectl("auth", "can-i", "list", "configmaps", "-n", "imp", sa, check=False)
    assert (proc.returncode, proc.stdout.strip()) == (1, "no")
    kubesim.kubectl(
        "create",
        "rolebinding",
        "target-view",
        "-n",
        "imp",
        "--clusterrole=view",
        "--serviceaccount=imp:target",
    )
    proc = kubesim.kubectl("auth", "can-i", "list", "configmaps", "-n", "imp", sa)
    assert (proc.returncode, proc.stdout.strip()) == (0, "yes")
    proc = kubesim.kubectl("auth", "can-i", "delete", "configmaps", "-n", "imp", sa, check=False)
    assert proc.stdout.strip() == "no"
    # the group of all service accounts of the namespace was added for the impersonated account
    kubesim.kubectl(
        "create",
        "rolebinding",
        "all-sa-secrets",
        "-n",
        "imp",
        "--clusterrole=admin",
        "--group=system:serviceaccounts:imp",
    )
    assert kubesim.kubectl("auth", "can-i", "delete", "secrets", "-n", "imp", sa).stdout.strip() == "yes"
    proc = kubesim.kubectl("auth", "whoami", sa, "-o", "json")
    assert json.loads(proc.stdout)["status"]["userInfo"]["username"] == "system:serviceaccount:imp:target"


def test_groups_without_user_is_an_internal_error(kubesim: KubeSim) -> None:
    code, hdrs, out = kubesim.request(
        "GET", "/api/v1/namespaces/imp/pods", headers=[("Impersonate-Group", "devs")], decode=False
    )
    assert code == 500
    assert out == (
        'Internal Server Error: "/api/v1/namespaces/imp/pods": requested [{Group  devs    }] '
        "without impersonating a user\n"
    )
    assert hdrs["Content-Type"].startswith("text/plain")


def test_anonymous_cannot_impersonate(kubesim: KubeSim) -> None:
    code, out = whoami(kubesim, [("Impersonate-User", "alice")], token="")
    assert code == 403
    assert out["message"] == (  # type: ignore[index]
        'users "alice" is forbidden: User "system:anonymous" cannot impersonate resource "users" '
        'in API group "" at the cluster scope'
    )
