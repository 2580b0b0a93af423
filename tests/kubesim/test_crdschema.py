"""Unit tests for kubesim.crdschema: CRD validation, pruning, defaulting and custom-resource validation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim import cel, crdschema
from kubesim.crdschema import apply_defaults, prune, validate, validate_crd

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "external-snapshotter"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["name"],
            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "spec is immutable"}],
            "properties": {
                "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "port": {
                    "x-kubernetes-int-or-string": True,
                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                },
                "created": {"type": "string", "format": "date-time"},
                "data": {"type": "string", "format": "byte"},
                "tags": {
                    "type": "array",
                    "maxItems": 2,
                    "items": {"type": "string"},
                    "x-kubernetes-list-type": "set",
                },
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "port": {"type": "integer", "default": 80},
                        },
                    },
                },
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "properties": {"data": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
            },
        },
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    },
}


def make_crd(schema: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": copy.deepcopy(schema if schema is not None else SCHEMA)},
                    "subresources": {"status": {}},
                }
            ],
        },
    }
    crd["spec"].update(spec)
    return crd


def spec_schema(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"spec": {"type": "object", "properties": props}}}


def messages(causes: list[Any]) -> list[str]:
    return [c.message for c in causes]


P = "spec.validation.openAPIV3Schema.properties[spec]"

# -- validate_crd --------------------------------------------------------------------------------


def test_valid_crd_is_accepted() -> None:
    assert validate_crd(make_crd(), None) == []


def test_names_group_scope_and_storage_versions() -> None:
    crd = make_crd()
    crd["metadata"]["name"] = "gadgets.example.com"
    crd["spec"].update(group="example", scope="Global")
    crd["spec"]["names"].update(kind="wid_get", plural="Widgets")
    crd["spec"]["versions"][0]["storage"] = False
    assert messages(validate_crd(crd, None)) == [
        'metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group',
        'spec.group: Invalid value: "example": should be a domain with at least one dot',
        'spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced"',
        "spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion{apiextensions."
        'CustomResourceDefinitionVersion{Name:"v1", Served:true, Storage:false}}: must have exactly one version '
        "marked as storage version",
        'spec.names.plural: Invalid value: "Widgets": a DNS-1035 label must consist of lower case alphanumeric '
        "characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. "
        "'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
        'spec.names.kind: Invalid value: "wid_get": may have mixed case, but should otherwise match: a DNS-1035 label '
        "must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end "
        "with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
        "'[a-z]([-a-z0-9]*[a-z0-9])?')",
    ]


def test_v1_defaults_fill_singular_and_list_kind() -> None:
    crd = make_crd()
    del crd["spec"]["names"]["singular"], crd["spec"]["names"]["listKind"]
    assert validate_crd(crd, None) == []
    names = crdschema.default_crd(crd)["spec"]["names"]
    assert (names["singular"], names["listKind"]) == ("widget", "WidgetList")


def test_structural_schema_errors() -> None:
    schema = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
            "spec": {
                "properties": {
                    "a": {
                        "type": "object",
                        "properties": {"x": {"type": "string"}},
                        "additionalProperties": {"type": "string"},
                    }
                }
            },
            "list": {"type": "array"},
        },
    }
    assert messages(validate_crd(make_crd(schema), None)) == [
        "spec.validation.openAPIV3Schema.properties[list].items: Required value: must be specified",
        "spec.validation.openAPIV3Schema.properties[metadata]: Forbidden: must not specify anything other than name "
        "and generateName, but metadata is implicitly specified",
        f"{P}.type: Required value: must not be empty for specified object fields",
        f"{P}.properties[a].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
    ]


def test_root_must_be_an_object_with_only_status_friendly_fields() -> None:
    schema = {"type": "object", "x-kubernetes-int-or-string": True, "properties": {}}
    (cause, *_) = validate_crd(make_crd(schema), None)
    assert cause.field == "spec.validation.openAPIV3Schema"
    assert (
        "fields are allowed at the root of the schema if the status subresource is enabled" in cause.message
    )


def test_cel_compile_error_is_a_422_cause() -> None:
    schema = copy.deepcopy(SCHEMA)
    schema["properties"]["spec"]["x-kubernetes-validations"] = [
        {"rule": "self.replicas >"},
        {"rule": "self.nope == 1"},
    ]
    causes = validate_crd(make_crd(schema), None)
    assert [c.field for c in causes] == [
        f"{P}.x-kubernetes-validations[0].rule",
        f"{P}.x-kubernetes-validations[1].rule",
    ]
    assert causes[0].message == (
        f'{P}.x-kubernetes-validations[0].rule: Invalid value: apiextensions.ValidationRule{{Rule:"self.replicas >", '
        'Message:"", MessageExpression:"", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:"", '
        "OptionalOldSelf:(*bool)(nil)}: compilation failed: ERROR: <input>:1:16: Syntax error: mismatched input "
        "'<EOF>'\n | self.replicas >\n | ...............^"
    )
    assert "undefined field 'nope'" in causes[1].message
    assert all(c.type == "FieldValueInvalid" for c in causes)


def test_rule_shape_and_message_expression_checks() -> None:
    schema = spec_schema(n={"type": "integer"})
    schema["properties"]["spec"]["x-kubernetes-validations"] = [
        {"rule": " "},
        {"rule": "self.n > 0", "reason": "Nope"},
        {"rule": "self.n > 0", "messageExpression": "self.n"},
        {"rule": "self.n > 0", "fieldPath": ".missing"},
    ]
    assert messages(validate_crd(make_crd(schema), None)) == [
        f"{P}.x-kubernetes-validations[0].rule: Required value: rule is not specified",
        f'{P}.x-kubernetes-validations[1].reason: Unsupported value: "Nope": supported values: "FieldValueDuplicate", '
        '"FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"',
        f'{P}.x-kubernetes-validations[3].fieldPath: Invalid value: ".missing": fieldPath must be a valid path',
    ]
    del schema["properties"]["spec"]["x-kubernetes-validations"][:2]
    schema["properties"]["spec"]["x-kubernetes-validations"].pop()
    (cause,) = validate_crd(make_crd(schema), None)
    assert cause.field == f"{P}.x-kubernetes-validations[0].messageExpression"
    assert cause.message.endswith(": messageExpression must evaluate to a string")


def test_old_self_is_forbidden_where_items_cannot_be_correlated() -> None:
    item = {
        "type": "object",
        "properties": {"k": {"type": "string"}},
        "x-kubernetes-validations": [{"rule": "self == oldSelf"}],
    }
    schema = spec_schema(l={"type": "array", "items": item})
    assert messages(validate_crd(make_crd(schema), None)) == [
        f'{P}.properties[l].items.x-kubernetes-validations[0].rule: Invalid value: "self == oldSelf": oldSelf cannot '
        f"be used on the uncorrelatable portion of the schema within {P}.properties[l]"
    ]
    item["required"] = ["k"]
    schema = spec_schema(
        l={
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["k"],
            "items": item,
        }
    )
    assert validate_crd(make_crd(schema), None) == []


def test_defaults_must_validate_and_be_pruned() -> None:
    schema = spec_schema(
        a={"type": "string", "default": 5},
        o={"type": "object", "properties": {"x": {"type": "integer"}}, "default": {"x": 1, "y": 2}},
        e={"type": "string", "enum": ["a", "b"], "default": "c"},
        r={
            "type": "integer",
            "default": 1,
            "x-kubernetes-validations": [{"rule": "self > 2", "message": "big"}],
        },
    )
    assert messages(validate_crd(make_crd(schema), None)) == [
        f'{P}.properties[a].default: Invalid value: "integer":  in body must be of type string: "integer"',
        f'{P}.properties[o].default: Invalid value: map[string]interface {{}}{{"x":1, "y":2}}: must not have unknown fields',
        f'{P}.properties[e].default: Unsupported value: "c": supported values: "a", "b"',
        f'{P}.properties[r].default: Invalid value: "integer": big',
    ]


def test_printer_columns_and_scale_subresource() -> None:
    crd = make_crd()
    version = crd["spec"]["versions"][0]
    version["additionalPrinterColumns"] = [
        {"name": "Age", "type": "time", "jsonPath": "metadata.creationTimestamp"}
    ]
    version["subresources"]["scale"] = {
        "specReplicasPath": ".status.replicas",
        "statusReplicasPath": ".status.replicas",
    }
    assert messages(validate_crd(crd, None)) == [
        'spec.subresources.scale.specReplicasPath: Invalid value: ".status.replicas": should be a json path under .spec',
        'spec.additionalPrinterColumns[0].type: Invalid value: "time": must be one of boolean,date,integer,number,string',
        'spec.additionalPrinterColumns[0].JSONPath: Invalid value: "metadata.creationTimestamp": must be a simple json '
        "path starting with .",
    ]


def test_per_version_schemas_keep_their_version_path() -> None:
    crd = make_crd()
    v2 = copy.deepcopy(crd["spec"]["versions"][0])
    v2.update(name="v2", storage=False)
    v2["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["name"]["type"] = "strin"
    crd["spec"]["versions"].append(v2)
    assert messages(validate_crd(crd, None)) == [
        'spec.versions[1].schema.openAPIV3Schema.properties[spec].properties[name].type: Unsupported value: "strin": '
        'supported values: "array", "boolean", "integer", "number", "object", "string"'
    ]


def test_update_checks() -> None:
    old = make_crd()
    old["status"] = {
        "storedVersions": ["v1beta1", "v1"],
        "conditions": [{"type": "Established", "status": "True"}],
    }
    new = make_crd()
    new["spec"].update(group="example.org", scope="Cluster")
    new["metadata"]["name"] = "widgets.example.org"
    assert messages(validate_crd(new, old)) == [
        'metadata.name: Invalid value: "widgets.example.org": field is immutable',
        'spec.scope: Invalid value: "Cluster": field is immutable',
        'spec.group: Invalid value: "example.org": field is immutable',
        'status.storedVersions[0]: Invalid value: "v1beta1": missing from spec.versions; v1beta1 was previously a '
        "storage version, and must remain in spec.versions until a storage migration ensures no data remains "
        "persisted in v1beta1 and removes v1beta1 from status.storedVersions",
    ]


def test_protected_groups_need_api_approval() -> None:
    crd = make_crd()
    crd["metadata"]["name"] = "widgets.snapshot.k8s.io"
    crd["spec"]["group"] = "snapshot.k8s.io"
    assert messages(validate_crd(crd, None)) == [
        "metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must have approval "
        'annotation "api-approved.kubernetes.io", see https://github.com/kubernetes/enhancements/pull/1111'
    ]
    crd["metadata"]["annotations"] = {
        "api-approved.kubernetes.io": "https://github.com/kubernetes/kubernetes/pull/1"
    }
    assert validate_crd(crd, None) == []


# -- pruning and defaulting ----------------------------------------------------------------------


def test_prune_drops_unknown_fields_and_reports_their_paths() -> None:
    obj: dict[str, Any] = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "labels": {"a": "b"}},
        "spec": {
            "name": "w",
            "foo": 1,
            "ports": [{"name": "http", "bogus": True}],
            "extra": {"anything": {"goes": [1, 2]}},
            "template": {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"x": 1},
                "data": {"k": "v"},
                "junk": 1,
            },
        },
        "status": {"ready": True, "phase": "x"},
        "unknownTop": 1,
    }
    pruned, paths = prune(obj, SCHEMA)
    assert paths == ["spec.foo", "spec.ports[0].bogus", "spec.template.junk", "status.phase", "unknownTop"]
    assert pruned["metadata"] == obj["metadata"]
    assert pruned["spec"]["extra"] == {"anything": {"goes": [1, 2]}}
    assert pruned["spec"]["template"] == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"x": 1},
        "data": {"k": "v"},
    }
    assert "foo" in obj["spec"]  # the input is not modified


def test_defaults_are_applied_recursively() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "default": {},
                "properties": {
                    "replicas": {"type": "integer", "default": 1},
                    "optional": {"type": "string", "nullable": True, "default": "x"},
                    "plain": {"type": "string"},
                    "items": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"a": {"type": "string", "default": "A"}}},
                    },
                    "byName": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "properties": {"q": {"type": "integer", "default": 7}},
                        },
                    },
                },
            }
        },
    }
    assert apply_defaults({}, schema) == {"spec": {"replicas": 1, "optional": "x"}}
    obj: dict[str, Any] = {
        "spec": {
            "replicas": None,
            "optional": None,
            "plain": None,
            "items": [{}, {"a": "z"}],
            "byName": {"k": {}},
        }
    }
    assert apply_defaults(obj, schema) == {
        "spec": {
            "replicas": 1,
            "optional": None,
            "items": [{"a": "A"}, {"a": "z"}],
            "byName": {"k": {"q": 7}},
        }
    }
    assert obj["spec"]["replicas"] is None  # the input is not modified


# -- custom resource validation ------------------------------------------------------------------

BLOCKED = (
    '<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; '
    "correct the existing errors to complete validation"
)


def cr(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"name": "w", **spec},
    }


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"replicas": "three"},
            [
                'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"',
                BLOCKED,
            ],
        ),
        (
            {"name": None},
            ['spec.name: Invalid value: "null": spec.name in body must be of type string: "null"', BLOCKED],
        ),
        ({"mode": "x"}, ['spec.mode: Unsupported value: "x": supported values: "a", "b"', BLOCKED]),
        ({"name": "abcdefg"}, ["spec.name: Too long: may not be more than 5 bytes", BLOCKED]),
        ({"name": "A1"}, ["spec.name: Invalid value: \"A1\": spec.name in body should match '^[a-z]+$'"]),
        (
            {"replicas": 11},
            ["spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"],
        ),
        ({"tags": ["a", "b", "c"]}, ["spec.tags: Too many: 3: must have at most 2 items", BLOCKED]),
        ({"tags": ["a", "a"]}, ['spec.tags[1]: Duplicate value: "a"']),
        (
            {"ports": [{"name": "x"}, {"name": "x"}]},
            ['spec.ports[1]: Duplicate value: map[string]interface {}{"name":"x"}'],
        ),
        (
            {"created": "yesterday"},
            [
                'spec.created: Invalid value: "yesterday": spec.created in body must be of type date-time: "yesterday"',
                BLOCKED,
            ],
        ),
        (
            {"data": "!!"},
            ['spec.data: Invalid value: "!!": spec.data in body must be of type byte: "!!"', BLOCKED],
        ),
        (
            {"template": {"data": {}}},
            [
                "spec.template.apiVersion: Required value: must not be empty",
                "spec.template.kind: Required value: must not be empty",
                BLOCKED,
            ],
        ),
    ],
)
def test_openapi_validation_errors(spec: dict[str, Any], expected: list[str]) -> None:
    assert messages(validate(cr(**spec), SCHEMA)) == expected


def test_required_and_int_or_string() -> None:
    obj = cr()
    del obj["spec"]["name"]
    assert messages(validate(obj, SCHEMA)) == ["spec.name: Required value", BLOCKED]
    assert validate(cr(port=80), SCHEMA) == []
    assert validate(cr(port="80%"), SCHEMA) == []
    assert messages(validate(cr(port=True), SCHEMA)) == [
        'spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean"',
        '<nil>: Invalid value: "": "spec.port" must validate at least one schema (anyOf)',
        'spec.port: Invalid value: "boolean": spec.port in body must be of type integer: "boolean"',
        BLOCKED,
    ]


def test_valid_object_and_cel_transition_on_update() -> None:
    good = cr(
        replicas=3,
        mode="a",
        created="2024-01-02T03:04:05Z",
        data="aGVsbG8=",
        tags=["x"],
        ports=[{"name": "p"}],
    )
    assert validate(good, SCHEMA) == []
    changed = copy.deepcopy(good)
    changed["spec"]["replicas"] = 4
    assert messages(validate(changed, SCHEMA, good)) == ['spec: Invalid value: "object": spec is immutable']
    assert validate(good, SCHEMA, copy.deepcopy(good)) == []


def test_full_write_pipeline() -> None:
    raw = cr(ports=[{"name": "http"}], unknown=1)
    pruned, unknown = prune(raw, SCHEMA)
    assert unknown == ["spec.unknown"]
    stored = apply_defaults(pruned, SCHEMA)
    assert stored["spec"]["replicas"] == 1
    assert stored["spec"]["ports"] == [{"name": "http", "port": 80}]
    assert validate(stored, SCHEMA) == []


# -- real-world CRDs -----------------------------------------------------------------------------


def load_reference() -> dict[str, dict[str, Any]]:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference CRDs not present at {REFERENCE}")
    crds = {}
    for path in sorted(REFERENCE.glob("snapshot.storage.k8s.io_*.yaml")):
        doc = yaml.safe_load(path.read_text())
        crds[doc["spec"]["names"]["kind"]] = doc
    return crds


def iter_rules(schema: Any, is_root: bool = True) -> Any:
    if not isinstance(schema, dict):
        return
    for rule in schema.get("x-kubernetes-validations") or []:
        yield rule, schema, is_root
    for sub in (schema.get("properties") or {}).values():
        yield from iter_rules(sub, bool(sub.get("x-kubernetes-embedded-resource")))
    for name in ("items", "additionalProperties"):
        yield from iter_rules(schema.get(name), False)


def test_external_snapshotter_crds_are_accepted_and_their_rules_compile() -> None:
    crds = load_reference()
    assert set(crds) == {"VolumeSnapshot", "VolumeSnapshotClass", "VolumeSnapshotContent"}
    compiled = 0
    for crd in crds.values():
        assert validate_crd(crd, None) == []
        for version in crd["spec"]["versions"]:
            for rule, node, is_root in iter_rules(version["schema"]["openAPIV3Schema"]):
                cel.compile_rule(rule["rule"], node, is_resource_root=is_root)
                compiled += 1
    assert compiled >= 10


def test_volume_snapshot_rules_on_real_schema() -> None:
    crd = load_reference()["VolumeSnapshot"]
    schema = next(v for v in crd["spec"]["versions"] if v["storage"])["schema"]["openAPIV3Schema"]
    snap = yaml.safe_load((REFERENCE / "snapshot-v1.yaml").read_text())
    pruned, unknown = prune(snap, schema)
    assert unknown == []
    assert validate(pruned, schema) == []
    moved = copy.deepcopy(snap)
    moved["spec"]["source"] = {"persistentVolumeClaimName": "other"}
    assert messages(validate(moved, schema, snap)) == [
        'spec.source.persistentVolumeClaimName: Invalid value: "string": persistentVolumeClaimName is immutable'
    ]
    swapped = copy.deepcopy(snap)
    swapped["spec"]["source"] = {"volumeSnapshotContentName": "content"}
    assert messages(validate(swapped, schema, snap)) == [
        'spec.source: Invalid value: "object": persistentVolumeClaimName is required once set'
    ]
    both = copy.deepcopy(snap)
    both["spec"]["source"]["volumeSnapshotContentName"] = "content"
    assert (
        'spec.source: Invalid value: "object": exactly one of volumeSnapshotContentName and persistentVolumeClaimName must be set'
        in messages(validate(both, schema))
    )


def test_volume_snapshot_content_namespace_rule() -> None:
    crd = load_reference()["VolumeSnapshotContent"]
    schema = next(v for v in crd["spec"]["versions"] if v["storage"])["schema"]["openAPIV3Schema"]
    content: dict[str, Any] = {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": "c"},
        "spec": {
            "deletionPolicy": "Delete",
            "driver": "hostpath.csi.k8s.io",
            "source": {"snapshotHandle": "h"},
            "volumeSnapshotRef": {"name": "s", "namespace": "default"},
        },
    }
    assert validate(content, schema) == []
    del content["spec"]["volumeSnapshotRef"]["namespace"]
    assert messages(validate(content, schema)) == [
        'spec.volumeSnapshotRef: Invalid value: "object": both spec.volumeSnapshotRef.name and '
        "spec.volumeSnapshotRef.namespace must be set"
    ]
