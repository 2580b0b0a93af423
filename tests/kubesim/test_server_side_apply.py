"""Server-side apply and managedFields on kubesim, driven by the real kubectl and kubernetes client.

Expected results follow kube-apiserver: ``handlers/patch.go`` (applyPatcher, create on apply,
``ValidatePatchOptions``), ``managedfields/internal`` (``conflict.go`` wording,
``lastappliedmanager.go`` upgrade of client-side apply for the ``kubectl`` manager) and
structured-merge-diff's merge rules (list types from the schema).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim.testing import KubeSim

pytestmark = pytest.mark.kubectl

APPLY = "application/apply-patch+yaml"


def _deploy(
    name: str, replicas: int = 2, image: str = "nginx:1", labels: dict[str, str] | None = None
) -> str:
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]},
            },
        },
    }
    return yaml.safe_dump(doc)


def _get(kubesim: KubeSim, kind: str, name: str) -> dict[str, Any]:
    out = kubesim.kubectl("get", kind, name, "-o", "json", "--show-managed-fields").stdout
    obj: dict[str, Any] = json.loads(out)
    return obj


def _managers(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields") or []}


def test_kubectl_server_side_apply_create_reapply_change(kubesim: KubeSim) -> None:
    out = kubesim.kubectl("apply", "--server-side", "-f", "-", input=_deploy("ssa1")).stdout
    assert out.strip() == "deployment.apps/ssa1 serverside-applied"
    obj = _get(kubesim, "deployment", "ssa1")
    entry = _managers(obj)[("kubectl", "Apply")]
    assert entry["apiVersion"] == "apps/v1" and entry["fieldsType"] == "FieldsV1" and entry["time"]
    fields = entry["fieldsV1"]
    # the applier owns what it applied, list items by their keys (containers by name, ports by
    # containerPort+protocol with protocol's default), not the defaults the server added
    assert fields["f:spec"]["f:replicas"] == {}
    container = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']
    assert container["."] == {} and container["f:image"] == {}
    assert 'k:{"containerPort":80,"protocol":"TCP"}' in container["f:ports"]
    assert "f:imagePullPolicy" not in container
    assert "f:revisionHistoryLimit" not in fields["f:spec"]
    generation = obj["metadata"]["generation"]

    # re-applying the same manifest changes nothing (the controller's status writes aside)
    kubesim.kubectl("apply", "--server-side", "-f", "-", input=_deploy("ssa1"))
    obj = _get(kubesim, "deployment", "ssa1")
    assert obj["metadata"]["generation"] == generation
    assert _managers(obj)[("kubectl", "Apply")] == entry
    # ... and writes nothing at all (no new resourceVersion) on an object no controller touches
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa1, namespace: default}\ndata: {a: '1'}\n"
    kubesim.kubectl("apply", "--server-side", "-f", "-", input=cm)
    rv = _get(kubesim, "configmap", "ssa1")["metadata"]["resourceVersion"]
    kubesim.kubectl("apply", "--server-side", "-f", "-", input=cm)
    assert _get(kubesim, "configmap", "ssa1")["metadata"]["resourceVersion"] == rv

    # a changed field is applied
    kubesim.kubectl("apply", "--server-side", "-f", "-", input=_deploy("ssa1", image="nginx:2"))
    obj = _get(kubesim, "deployment", "ssa1")
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"
    assert obj["metadata"]["generation"] == generation + 1

    # -o yaml hides managedFields unless asked (kubectl's printer; the server always sends them)
    plain = yaml.safe_load(kubesim.kubectl("get", "deployment", "ssa1", "-o", "yaml").stdout)
    assert "managedFields" not in plain["metadata"]
    shown = yaml.safe_load(
        kubesim.kubectl("get", "deployment", "ssa1", "-o", "yaml", "--show-managed-fields").stdout
    )
    # the Apply entry sorts first (sortEncodedManagedFields), then the controller's Updates
    listed = [
        (e["manager"], e["operation"], e.get("subresource")) for e in shown["metadata"]["managedFields"]
    ]
    assert listed[0] == ("kubectl", "Apply", None)
    assert set(listed[1:]) == {
        ("kube-controller-manager", "Update", None),
        ("kube-controller-manager", "Update", "status"),
    }


def test_kubectl_removing_a_field_from_the_manifest_removes_it(kubesim: KubeSim) -> None:
    kubesim.kubectl(
        "apply", "--server-side", "-f", "-", input=_deploy("ssa2", labels={"app": "ssa2", "tier": "web"})
    )
    assert _get(kubesim, "deployment", "ssa2")["metadata"]["labels"] == {"app": "ssa2", "tier": "web"}
    kubesim.kubectl("apply", "--server-side", "-f", "-", input=_deploy("ssa2", labels={"app": "ssa2"}))
    obj = _get(kubesim, "deployment", "ssa2")
    assert obj["metadata"]["labels"] == {"app": "ssa2"}
    # a field another manager also set stays when one applier drops it
    kubesim.kubectl("label", "deployment", "ssa2", "team=db")
    kubesim.kubectl(
        "apply", "--server-side", "-f", "-", input=_deploy("ssa2", labels={"app": "ssa2", "team": "db"})
    )
    kubesim.kubectl("apply", "--server-side", "-f", "-", input=_deploy("ssa2", labels={"app": "ssa2"}))
    obj = _get(kubesim, "deployment", "ssa2")
    assert obj["metadata"]["labels"] == {"app": "ssa2", "team": "db"}
    assert "f:team" in _managers(obj)[("kubectl-label", "Update")]["fieldsV1"]["f:metadata"]["f:labels"]


def test_kubectl_conflict_with_client_side_apply_and_force(kubesim: KubeSim) -> None:
    kubesim.kubectl("apply", "-f", "-", input=_deploy("ssa3", replicas=2))
    obj = _get(kubesim, "deployment", "ssa3")
    csa = _managers(obj)[("kubectl-client-side-apply", "Update")]
    assert csa["apiVersion"] == "apps/v1"
    assert (
        "f:kubectl.kubernetes.io/last-applied-configuration" in csa["fieldsV1"]["f:metadata"]["f:annotations"]
    )

    proc = kubesim.kubectl(
        "apply",
        "--server-side",
        "--field-manager=deployer",
        "-f",
        "-",
        input=_deploy("ssa3", replicas=5),
        check=False,
    )
    assert proc.returncode != 0
    assert (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas'
        in proc.stderr
    )
    assert "--force-conflicts" in proc.stderr
    assert _get(kubesim, "deployment", "ssa3")["spec"]["replicas"] == 2

    kubesim.kubectl(
        "apply",
        "--server-side",
        "--field-manager=deployer",
        "--force-conflicts",
        "-f",
        "-",
        input=_deploy("ssa3", replicas=5),
    )
    obj = _get(kubesim, "deployment", "ssa3")
    assert obj["spec"]["replicas"] == 5
    managers = _managers(obj)
    assert "f:replicas" in managers[("deployer", "Apply")]["fieldsV1"]["f:spec"]
    # kubectl itself then migrates the client-side-apply entry into its applier's
    # (kubectl apply.go: migrateFieldsIfNecessary, csaupgrade.UpgradeManagedFields, a JSON patch
    # of metadata.managedFields that the server takes as the request's managedFields)
    assert ("kubectl-client-side-apply", "Update") not in managers
    assert [m for m, e in managers.items() if "f:replicas" in e["fieldsV1"].get("f:spec", {})] == [
        ("deployer", "Apply")
    ]


def test_kubectl_upgrade_from_client_side_apply(kubesim: KubeSim) -> None:
    # lastappliedmanager.go: the "kubectl" manager may take over fields whose live value is still
    # the last-applied one; lastappliedupdater.go rewrites the annotation.
    kubesim.kubectl("apply", "-f", "-", input=_deploy("ssa4", replicas=2))
    kubesim.kubectl("apply", "--server-side", "-f", "-", input=_deploy("ssa4", replicas=3))
    obj = _get(kubesim, "deployment", "ssa4")
    assert obj["spec"]["replicas"] == 3
    last = json.loads(obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["spec"]["replicas"] == 3
    # a field someone else changed since is a real conflict, naming that manager
    kubesim.kubectl("patch", "deployment", "ssa4", "--type=merge", "-p", '{"spec":{"replicas":7}}')
    kubesim.kubectl(
        "patch", "deployment", "ssa4", "--type=merge", "-p", '{"metadata":{"annotations":{"x":"y"}}}'
    )
    proc = kubesim.kubectl(
        "apply", "--server-side", "-f", "-", input=_deploy("ssa4", replicas=4), check=False
    )
    assert proc.returncode != 0
    assert 'conflict with "kubectl-patch" using apps/v1: .spec.replicas' in proc.stderr


def test_updates_record_their_manager_and_subresource(kubesim: KubeSim, k8s_client: Any) -> None:
    core = client.CoreV1Api(k8s_client)
    core.create_namespaced_config_map("default", {"metadata": {"name": "cm-upd"}, "data": {"a": "1"}})
    cm = _get(kubesim, "configmap", "cm-upd")
    # no fieldManager: the User-Agent's product name (handlers/create.go: prefixFromUserAgent)
    entry = _managers(cm)[("OpenAPI-Generator", "Update")]
    assert entry["fieldsV1"] == {"f:data": {".": {}, "f:a": {}}}
    kubesim.kubectl("patch", "configmap", "cm-upd", "--type=merge", "-p", '{"data":{"b":"2"}}')
    cm = _get(kubesim, "configmap", "cm-upd")
    assert _managers(cm)[("kubectl-patch", "Update")]["fieldsV1"] == {"f:data": {"f:b": {}}}


def _cm_apply(data: dict[str, str], name: str = "cm-py") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def test_python_client_apply(k8s_client: Any) -> None:
    core = client.CoreV1Api(k8s_client)
    # apply creates (201)
    obj, code, _ = core.patch_namespaced_config_map_with_http_info(
        "cm-py", "default", _cm_apply({"a": "1"}), field_manager="py", _content_type=APPLY
    )
    assert code == 201 and obj.data == {"a": "1"}
    assert [(e.manager, e.operation) for e in obj.metadata.managed_fields] == [("py", "Apply")]
    # a second applier with another value conflicts; its causes name the manager and field
    with pytest.raises(ApiException) as ei:
        core.patch_namespaced_config_map_with_http_info(
            "cm-py", "default", _cm_apply({"a": "2"}), field_manager="other", _content_type=APPLY
        )
    assert ei.value.status == 409
    status = json.loads(ei.value.body)
    assert status["reason"] == "Conflict"
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "py": .data.a'
    assert status["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "py"', "field": ".data.a"}
    ]
    # the same value is shared ownership, not a conflict
    obj, code, _ = core.patch_namespaced_config_map_with_http_info(
        "cm-py", "default", _cm_apply({"a": "1"}), field_manager="sharer", _content_type=APPLY
    )
    assert code == 200
    assert {e.manager: e.fields_v1 for e in obj.metadata.managed_fields} == {
        "py": {"f:data": {"f:a": {}}},
        "sharer": {"f:data": {"f:a": {}}},
    }
    # force takes ownership from every other owner
    obj, code, _ = core.patch_namespaced_config_map_with_http_info(
        "cm-py", "default", _cm_apply({"a": "2"}), field_manager="other", force=True, _content_type=APPLY
    )
    assert code == 200 and obj.data == {"a": "2"}
    owners = {e.manager: e.fields_v1 for e in obj.metadata.managed_fields}
    assert owners == {"other": {"f:data": {"f:a": {}}}}
    # dryRun=All answers with the result and stores nothing
    obj, _, _ = core.patch_namespaced_config_map_with_http_info(
        "cm-py", "default", _cm_apply({"a": "2", "b": "3"}), field_manager="other", dry_run="All",
        _content_type=APPLY,
    )  # fmt: skip
    assert obj.data == {"a": "2", "b": "3"}
    assert core.read_namespaced_config_map("cm-py", "default").data == {"a": "2"}


def test_apply_request_errors(k8s_client: Any) -> None:
    core = client.CoreV1Api(k8s_client)

    def status_of(**kw: Any) -> dict[str, Any]:
        with pytest.raises(ApiException) as ei:
            core.patch_namespaced_config_map_with_http_info("cm-err", "default", **kw)
        body: dict[str, Any] = json.loads(ei.value.body)
        assert body["code"] == ei.value.status
        return body

    # validation.ValidatePatchOptions
    s = status_of(body=_cm_apply({}, "cm-err"), _content_type=APPLY)
    assert (s["code"], s["message"]) == (
        422,
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
    )
    s = status_of(body={"data": {}}, force=True, _content_type="application/merge-patch+json")
    assert (s["code"], s["message"]) == (
        422,
        'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for non-apply patch',
    )
    # versioncheck.go and structuredmerge.go
    s = status_of(body={**_cm_apply({}, "cm-err"), "kind": "Secret"}, field_manager="x", _content_type=APPLY)
    assert (s["code"], s["message"]) == (400, "invalid object type: /v1, Kind=Secret")
    bad = _cm_apply({}, "cm-err")
    bad["metadata"]["managedFields"] = [{"manager": "x"}]
    s = status_of(body=bad, field_manager="x", _content_type=APPLY)
    assert (s["code"], s["message"]) == (400, "metadata.managedFields must be nil")
    s = status_of(body={**_cm_apply({}, "cm-err"), "nope": 1}, field_manager="x", _content_type=APPLY)
    assert s["code"] == 500
    assert s["message"] == (
        # structuredmerge.go: objectGVKNN names the applied object, which has no namespace here
        "failed to create typed patch object (/cm-err; /v1, Kind=ConfigMap): .nope: field not declared in schema"
    )
    # an existing object: a stale resourceVersion in the config is a precondition failure
    core.patch_namespaced_config_map_with_http_info(
        "cm-rv", "default", _cm_apply({"a": "1"}, "cm-rv"), field_manager="x", _content_type=APPLY
    )
    stale = _cm_apply({"a": "2"}, "cm-rv")
    stale["metadata"]["resourceVersion"] = "1"
    with pytest.raises(ApiException) as ei:
        core.patch_namespaced_config_map_with_http_info(
            "cm-rv", "default", stale, field_manager="x", _content_type=APPLY
        )
    assert ei.value.status == 409 and "the object has been modified" in json.loads(ei.value.body)["message"]
    s = status_of(body=_cm_apply({}, "other-name"), field_manager="x", _content_type=APPLY)
    assert (s["code"], s["message"]) == (
        400,
        "the name of the object (other-name) does not match the name on the URL (cm-err)",
    )
    with pytest.raises(ApiException) as ei:
        core.read_namespaced_config_map("cm-err", "default")
    assert ei.value.status == 404


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.ssa.example.com}
spec:
  group: ssa.example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    port: {type: integer}
              tags:
                type: array
                x-kubernetes-list-type: set
                items: {type: string}
              args:
                type: array
                items: {type: string}
          status:
            type: object
            properties:
              phase: {type: string}
"""


def _widget(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "ssa.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}


def test_custom_resource_list_types(kubesim: KubeSim, k8s_client: Any) -> None:
    kubesim.kubectl("apply", "--server-side", "-f", "-", input=CRD)
    kubesim.kubectl("wait", "--for=condition=Established", "crd/widgets.ssa.example.com")
    api = client.CustomObjectsApi(k8s_client)

    def apply(manager: str, body: dict[str, Any], force: bool = False) -> dict[str, Any]:
        obj: dict[str, Any] = api.patch_namespaced_custom_object(
            "ssa.example.com", "v1", "default", "widgets", "w", body, field_manager=manager,
            force=force, _content_type=APPLY,
        )  # fmt: skip
        return obj

    apply("a", _widget(ports=[{"name": "http", "port": 80}], tags=["x"], args=["--one"]))
    obj = apply("b", _widget(ports=[{"name": "https", "port": 443}], tags=["y"]))
    # map lists merge by key, set lists by value
    assert obj["spec"]["ports"] == [{"name": "http", "port": 80}, {"name": "https", "port": 443}]
    assert obj["spec"]["tags"] == ["x", "y"]
    owned = {e["manager"]: e["fieldsV1"] for e in obj["metadata"]["managedFields"]}
    assert owned["b"] == {
        "f:spec": {
            "f:ports": {'k:{"name":"https"}': {".": {}, "f:name": {}, "f:port": {}}},
            "f:tags": {'v:"y"': {}},
        }
    }
    # a list without x-kubernetes-list-type is atomic: another value conflicts on the whole list
    with pytest.raises(ApiException) as ei:
        apply("b", _widget(ports=[{"name": "https", "port": 443}], tags=["y"], args=["--two"]))
    assert json.loads(ei.value.body)["details"]["causes"][0]["field"] == ".spec.args"
    # dropping items removes only those the applier alone owned
    obj = apply("a", _widget(ports=[], tags=[]))
    assert obj["spec"]["ports"] == [{"name": "https", "port": 443}]
    assert obj["spec"]["tags"] == ["y"]
    assert "args" not in obj["spec"]
    # the status subresource records its applier with subresource "status"
    obj = api.patch_namespaced_custom_object_status(
        "ssa.example.com", "v1", "default", "widgets", "w",
        {"apiVersion": "ssa.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "status": {"phase": "Ready"}},
        field_manager="ctrl", _content_type=APPLY,
    )  # fmt: skip
    assert obj["status"] == {"phase": "Ready"}
    entry = next(e for e in obj["metadata"]["managedFields"] if e["manager"] == "ctrl")
    assert (entry["operation"], entry.get("subresource")) == ("Apply", "status")
    assert entry["fieldsV1"] == {"f:status": {"f:phase": {}}}
    # an update of the status subresource is recorded as an Update with subresource "status"
    obj = api.patch_namespaced_custom_object_status(
        "ssa.example.com", "v1", "default", "widgets", "w", {"status": {"phase": "Done"}},
        field_manager="writer",
    )  # fmt: skip
    entry = next(e for e in obj["metadata"]["managedFields"] if e["manager"] == "writer")
    assert (entry["operation"], entry.get("subresource")) == ("Update", "status")
    assert entry["fieldsV1"] == {"f:status": {"f:phase": {}}}
    assert all(e["manager"] != "ctrl" for e in obj["metadata"]["managedFields"])


def test_kubectl_scale_is_recorded_under_the_scale_subresource(kubesim: KubeSim) -> None:
    kubesim.kubectl("apply", "--server-side", "-f", "-", input=_deploy("ssa6", replicas=2))
    kubesim.kubectl("scale", "deployment", "ssa6", "--replicas=4")
    obj = _get(kubesim, "deployment", "ssa6")
    scale = [e for e in obj["metadata"]["managedFields"] if e.get("subresource") == "scale"]
    assert [(e["manager"], e["operation"], e["fieldsV1"]) for e in scale] == [
        ("kubectl", "Update", {"f:spec": {"f:replicas": {}}})
    ]
    # the applier lost .spec.replicas to the scaler; applying another value conflicts with it
    # (conflict.go: printManager names the subresource)
    assert "f:replicas" not in _managers(obj)[("kubectl", "Apply")]["fieldsV1"]["f:spec"]
    proc = kubesim.kubectl(
        "apply", "--server-side", "-f", "-", input=_deploy("ssa6", replicas=3), check=False
    )
    assert proc.returncode != 0
    assert (
        'Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: '
        ".spec.replicas" in proc.stderr
    )


def test_kubectl_diff_and_dry_run_with_server_side_apply(kubesim: KubeSim) -> None:
    # kubectl diff --server-side and apply --dry-run=server send the apply with dryRun=All.
    kubesim.kubectl("apply", "--server-side", "-f", "-", input=_deploy("ssa7", replicas=2))
    proc = kubesim.kubectl("diff", "--server-side", "-f", "-", input=_deploy("ssa7", replicas=3), check=False)
    assert proc.returncode == 1, proc.stderr
    assert "-  replicas: 2\n+  replicas: 3" in proc.stdout
    same = kubesim.kubectl("diff", "--server-side", "-f", "-", input=_deploy("ssa7", replicas=2), check=False)
    assert (same.returncode, same.stdout) == (0, "")
    out = kubesim.kubectl(
        "apply", "--server-side", "--dry-run=server", "-f", "-", input=_deploy("ssa7", replicas=5)
    ).stdout
    assert out.strip() == "deployment.apps/ssa7 serverside-applied (server dry run)"
    assert _get(kubesim, "deployment", "ssa7")["spec"]["replicas"] == 2
