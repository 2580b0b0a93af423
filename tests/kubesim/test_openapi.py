"""kubesim's /openapi/v3 documents, as kubectl (explain, apply) and the kubernetes client use them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from kubesim.testing import KubeSim

pytestmark = pytest.mark.kubectl

CRD_YAML = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wg]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        description: A Widget is a thing kubesim's tests explain.
        properties:
          spec:
            type: object
            description: WidgetSpec is the desired state of a Widget.
            properties:
              size:
                type: integer
                description: How big the widget is, in furlongs.
              color:
                type: string
                description: The paint colour of the widget.
                enum: [red, green]
              port:
                x-kubernetes-int-or-string: true
                description: The port the widget listens on.
          status:
            type: object
            properties:
              phase: {type: string, description: Where the widget is in its life.}
"""

POD_YAML = """
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  bogusField: 1
  containers:
  - name: c
    image: nginx
"""

DEPLOYMENT_YAML = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{app: web}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: a
        image: {image}
        ports:
        - containerPort: 80
      - name: b
        image: busybox
        env:
        - {{name: X, value: "{x}"}}
"""


def _get(api: client.ApiClient, path: str, headers: dict[str, str] | None = None) -> Any:
    """A raw GET through the kubernetes client; the RESTResponse, whatever its status."""
    method, url, hdrs, _body, _post = api.param_serialize(
        "GET", path, header_params=dict(headers or {}), auth_settings=["BearerToken"]
    )
    resp = api.call_api(method, url, header_params=hdrs)
    resp.read()  # type: ignore[no-untyped-call]
    return resp


def _get_json(api: client.ApiClient, path: str) -> Any:
    return json.loads(_get(api, path).data)


@pytest.fixture(scope="module")
def widgets(kubesim: KubeSim) -> str:
    kubesim.kubectl("apply", "-f", "-", input=CRD_YAML)
    kubesim.kubectl("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=30s")
    return "widgets.example.com"


def test_explain_builtin_prints_upstream_descriptions(kubesim: KubeSim) -> None:
    out = kubesim.kubectl("explain", "pods.spec.containers").stdout
    assert "KIND:       Pod" in out
    assert "FIELD: containers <[]Container>" in out
    assert "List of containers belonging to the pod." in out
    assert "image\t<string>" in out
    # A field whose type is a referenced object is named after the definition.
    assert "resources\t<ResourceRequirements>" in out


def test_explain_crd_prints_schema_descriptions(kubesim: KubeSim, widgets: str) -> None:
    out = kubesim.kubectl("explain", "widget.spec").stdout
    assert "GROUP:      example.com" in out
    assert "KIND:       Widget" in out
    assert "FIELD: spec <Object>" in out
    assert "WidgetSpec is the desired state of a Widget." in out
    assert "How big the widget is, in furlongs." in out
    assert "enum: red, green" in out
    top = kubesim.kubectl("explain", "widgets").stdout
    assert "A Widget is a thing kubesim's tests explain." in top
    # builder.go buildKubeNative: metadata is ObjectMeta, apiVersion/kind are TypeMeta's.
    assert "metadata\t<ObjectMeta>" in top
    assert "APIVersion defines the versioned schema" in top


def test_apply_unknown_field_is_rejected_by_server_side_strict_validation(kubesim: KubeSim) -> None:
    proc = kubesim.kubectl("apply", "-v=6", "-f", "-", input=POD_YAML.format(name="strict"), check=False)
    assert proc.returncode != 0
    assert 'unknown field "spec.bogusField"' in proc.stderr
    # kubectl chose server-side validation from the fieldValidation parameter in /openapi/v3.
    assert "fieldValidation=Strict" in proc.stderr
    assert "/openapi/v2" not in proc.stderr

    ok = kubesim.kubectl("apply", "--validate=false", "-f", "-", input=POD_YAML.format(name="lenient"))
    assert "pod/lenient created" in ok.stdout
    kubesim.kubectl("delete", "pod", "lenient", "--wait=false")


def test_apply_twice_uses_strategic_merge_from_openapi_v3(kubesim: KubeSim) -> None:
    kubesim.kubectl("apply", "-f", "-", input=DEPLOYMENT_YAML.format(image="nginx:1", x="1"))
    second = kubesim.kubectl("apply", "-v=6", "-f", "-", input=DEPLOYMENT_YAML.format(image="nginx:2", x="2"))
    assert "deployment.apps/web configured" in second.stdout
    assert "warning" not in second.stderr.lower()
    assert "/openapi/v2" not in second.stderr
    assert (
        "application/strategic-merge-patch+json"
        in kubesim.kubectl(
            "apply", "-v=8", "-f", "-", input=DEPLOYMENT_YAML.format(image="nginx:3", x="2")
        ).stderr
    )
    containers = json.loads(kubesim.kubectl("get", "deploy", "web", "-o", "json").stdout)["spec"]["template"][
        "spec"
    ]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("a", "nginx:3"), ("b", "busybox")]
    assert containers[1]["env"] == [{"name": "X", "value": "2"}]
    kubesim.kubectl("delete", "deploy", "web", "--wait=false")


def test_apply_twice_custom_resource(kubesim: KubeSim, widgets: str) -> None:
    cr = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: w1}}\nspec: {{size: {size}, color: red}}\n"
    kubesim.kubectl("apply", "-f", "-", input=cr.format(size=1))
    out = kubesim.kubectl("apply", "-f", "-", input=cr.format(size=2)).stdout
    assert "widget.example.com/w1 configured" in out
    got = json.loads(kubesim.kubectl("get", "widget", "w1", "-o", "json").stdout)
    assert got["spec"] == {"size": 2, "color": "red"}
    bad = kubesim.kubectl(
        "apply", "-f", "-", input=cr.format(size=3).replace("color: red", "colour: red"), check=False
    )
    assert bad.returncode != 0
    assert 'unknown field "spec.colour"' in bad.stderr


def test_openapi_v3_lists_crd_group_and_rehashes_on_change(
    kubesim: KubeSim, widgets: str, k8s_client: client.ApiClient
) -> None:
    paths = _get_json(k8s_client, "/openapi/v3")["paths"]
    assert {"api/v1", "apis/apps/v1", "apis/apiextensions.k8s.io/v1", "apis/example.com/v1"} <= set(paths)
    url = paths["apis/example.com/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/example.com/v1?hash=")

    doc = _get_json(k8s_client, url)
    widget = doc["components"]["schemas"]["com.example.v1.Widget"]
    assert widget["x-kubernetes-group-version-kind"] == [
        {"group": "example.com", "kind": "Widget", "version": "v1"}
    ]
    assert widget["properties"]["metadata"]["$ref"] == (
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    )
    assert widget["properties"]["spec"]["properties"]["port"]["anyOf"] == [
        {"type": "integer"},
        {"type": "string"},
    ]
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in doc["components"]["schemas"]
    patch = doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"]
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    assert "application/strategic-merge-patch+json" not in patch["requestBody"]["content"]
    status_patch = doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}/status"]["patch"]
    assert status_patch["x-kubernetes-group-version-kind"]["kind"] == "Widget"

    # A changed CRD is a new document under a new hash (clients cache documents by URL).
    kubesim.kubectl(
        "patch",
        "crd",
        widgets,
        "--type=json",
        "-p",
        json.dumps(
            [
                {
                    "op": "replace",
                    "path": "/spec/versions/0/schema/openAPIV3Schema/description",
                    "value": "A Widget, described anew.",
                }
            ]
        ),
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new_url = _get_json(k8s_client, "/openapi/v3")["paths"]["apis/example.com/v1"]["serverRelativeURL"]
        if new_url != url:
            break
        time.sleep(0.1)
    assert new_url != url
    assert _get_json(k8s_client, new_url)["components"]["schemas"]["com.example.v1.Widget"][
        "description"
    ] == ("A Widget, described anew.")
    # The old hash redirects to the current document (handler3.go HandleGroupVersion).
    stale = _get(k8s_client, url)
    assert stale.status == 200  # urllib3 followed the 301
    assert json.loads(stale.data)["components"]["schemas"]["com.example.v1.Widget"]["description"] == (
        "A Widget, described anew."
    )


def test_http_caching_and_errors(kubesim: KubeSim, k8s_client: client.ApiClient) -> None:
    url = _get_json(k8s_client, "/openapi/v3")["paths"]["apis/apps/v1"]["serverRelativeURL"]
    resp = _get(k8s_client, url)
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "public, immutable"
    assert resp.headers["Content-Type"] == "application/json"
    etag = resp.headers["Etag"]
    assert etag == '"' + url.split("hash=")[1] + '"'
    deployment = json.loads(resp.data)["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]
    # No hash: the apiserver's default cache control.
    assert _get(k8s_client, "/openapi/v3/apis/apps/v1").headers["Cache-Control"] == "no-cache, private"
    assert _get(k8s_client, url, {"If-None-Match": etag}).status == 304
    assert _get(k8s_client, "/openapi/v3/apis/nothing.example.com/v1").status == 404
    pb_only = {"Accept": "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"}
    assert _get(k8s_client, url, pb_only).status == 406
    # /openapi/v2 is not served (see kubesim/openapi.py): the NotFound Status of an unknown path.
    v2 = _get(k8s_client, "/openapi/v2")
    assert v2.status == 404
    assert json.loads(v2.data)["reason"] == "NotFound"


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def test_every_document_is_self_contained(kubesim: KubeSim, widgets: str) -> None:
    docs = kubesim.call(lambda c: {k: json.loads(d.data) for k, d in c.front.openapi.documents().items()})
    assert {"api", "apis", "apis/apps", "version", "api/v1", "apis/example.com/v1"} <= set(docs)
    for key, doc in docs.items():
        schemas = doc["components"]["schemas"]
        for node in _walk(doc):
            target = node.get("$ref")
            if isinstance(target, str):
                assert target.removeprefix("#/components/schemas/") in schemas, (key, target)
        for name, schema in schemas.items():
            for node in _walk(schema):
                # OpenAPI 3.0: one type per schema (JSON Schema's ["string", "null"] is gone).
                assert not isinstance(node.get("type"), list), (key, name)
                assert node.get("additionalProperties") is not False, (key, name)
        for path, item in doc["paths"].items():
            for method, op in item.items():
                if method == "parameters":
                    continue
                if "x-kubernetes-group-version-kind" in op:
                    assert "x-kubernetes-action" in op, (path, method)
                if method == "patch":
                    # query_param_verifier_v3.go reads the PATCH operation's own parameters.
                    assert "fieldValidation" in [p["name"] for p in op.get("parameters", [])], path
