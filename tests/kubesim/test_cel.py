"""Unit tests for kubesim.cel: x-kubernetes-validations as apiextensions-apiserver compiles and runs them."""

from __future__ import annotations

from typing import Any

import pytest

from kubesim import cel
from kubesim.cel import CelCompileError, compile_message_expression, compile_rule, evaluate_validations

SPEC: dict[str, Any] = {
    "type": "object",
    "properties": {
        "podName": {"type": "string"},
        "selector": {"type": "object", "additionalProperties": {"type": "string"}},
        "replicas": {"type": "integer"},
        "ratio": {"type": "number"},
        "namespace": {"type": "string"},
        "port": {"x-kubernetes-int-or-string": True},
        "created": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
    },
}


def root_with(spec: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"metadata": {"type": "object"}, "spec": spec}}


def with_rules(schema: dict[str, Any], *rules: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "x-kubernetes-validations": list(rules)}


def messages(causes: list[Any]) -> list[str]:
    return [c.message for c in causes]


# -- compilation ---------------------------------------------------------------------------------


def test_escape_follows_apiserver_rules() -> None:
    assert cel.escape("namespace") == "__namespace__"
    assert cel.escape("foo-bar.baz/qux") == "foo__dash__bar__dot__baz__slash__qux"
    assert cel.escape("a__b") == "a__underscores__b"
    assert cel.escape("1abc") is None
    assert cel.escape("with space") is None


def test_syntax_error_is_a_compile_error_worded_like_cel_go() -> None:
    with pytest.raises(CelCompileError) as exc:
        compile_rule("self.replicas >", SPEC)
    assert exc.value.message.startswith("compilation failed: ERROR: <input>:1:16: Syntax error:")
    assert exc.value.message.endswith("\n | self.replicas >\n | ...............^")


@pytest.mark.parametrize(
    ("rule", "detail"),
    [
        ("self.foo == 1", "ERROR: <input>:1:5: undefined field 'foo'"),
        ("self.namespace == 'x'", "undefined field 'namespace'"),  # reserved word: only __namespace__ works
        (
            "ip(self.podName).family() == 6",
            "ERROR: <input>:1:3: undeclared reference to 'ip' (in container '')",
        ),
        ("self.replicas == 'three'", "found no matching overload for '_==_' applied to '(int, string)'"),
        ("self.ratio == 1", "found no matching overload for '_==_' applied to '(double, int)'"),
        ("size(self) > 0", "found no matching overload for 'size' applied to '(object)'"),
        ("self.replicas.startsWith('1')", "found no matching overload for 'startsWith'"),
        ("unknownVar == 1", "undeclared reference to 'unknownVar'"),
    ],
)
def test_type_checking_rejects_what_cel_go_rejects(rule: str, detail: str) -> None:
    with pytest.raises(CelCompileError) as exc:
        compile_rule(rule, SPEC)
    assert exc.value.message.startswith("compilation failed: ")
    assert detail in exc.value.message


def test_rule_must_evaluate_to_bool_and_message_expression_to_string() -> None:
    with pytest.raises(CelCompileError, match=r"^cel expression must evaluate to a bool$"):
        compile_rule("self.replicas", SPEC)
    with pytest.raises(CelCompileError, match=r"^messageExpression must evaluate to a string$"):
        compile_message_expression("self.replicas", SPEC)
    assert compile_message_expression("'replicas: ' + string(self.replicas)", SPEC).result.kind == "string"


def test_transition_rules_and_escaped_fields_compile() -> None:
    assert compile_rule("self == oldSelf", SPEC).uses_old_self
    assert not compile_rule(
        "has(self.__namespace__) && self.selector.all(k, k.startsWith('a'))", SPEC
    ).uses_old_self
    assert compile_rule("self.metadata.name.startsWith('x')", root_with(SPEC), is_resource_root=True)
    with pytest.raises(CelCompileError, match="undefined field 'labels'"):
        compile_rule("has(self.metadata.labels)", root_with(SPEC), is_resource_root=True)


def test_schemaless_compile_checks_syntax_only() -> None:
    assert compile_rule("self.anything == oldSelf.anything").uses_old_self
    with pytest.raises(CelCompileError):
        compile_rule("self.a ==")


# -- evaluation ----------------------------------------------------------------------------------

IMMUTABLE = root_with(with_rules(SPEC, {"rule": "self == oldSelf", "message": "spec is immutable"}))


def test_immutability_rule_rejects_changes_on_update() -> None:
    old = {"spec": {"podName": "a", "selector": {"x": "1"}}}
    new = {"spec": {"podName": "b", "selector": {"x": "1"}}}
    assert messages(evaluate_validations(new, IMMUTABLE, old)) == [
        'spec: Invalid value: "object": spec is immutable'
    ]
    assert evaluate_validations(new, IMMUTABLE, new) == []


def test_transition_rules_are_not_evaluated_on_create() -> None:
    assert evaluate_validations({"spec": {"podName": "a"}}, IMMUTABLE, None) == []


def test_exactly_one_of_with_has() -> None:
    schema = root_with(
        with_rules(
            SPEC,
            {
                "rule": "has(self.podName) != has(self.selector)",
                "message": "exactly one of podName or selector",
            },
        )
    )
    assert evaluate_validations({"spec": {"podName": "a"}}, schema) == []
    assert evaluate_validations({"spec": {"selector": {}}}, schema) == []
    both = evaluate_validations({"spec": {"podName": "a", "selector": {}}}, schema)
    assert messages(both) == ['spec: Invalid value: "object": exactly one of podName or selector']
    assert both[0].type == "FieldValueInvalid"
    assert both[0].field == "spec"
    assert messages(evaluate_validations({"spec": {}}, schema)) == messages(both)


def test_default_message_and_message_expression() -> None:
    schema = root_with(
        with_rules(
            SPEC,
            {"rule": "self.replicas <= 5"},
            {
                "rule": "self.replicas <= 3",
                "messageExpression": "'too many replicas: ' + string(self.replicas)",
            },
            {"rule": "self.replicas <= 2", "message": "fallback", "messageExpression": "self.missing + 'x'"},
        )
    )
    assert messages(evaluate_validations({"spec": {"replicas": 9}}, schema)) == [
        'spec: Invalid value: "object": failed rule: self.replicas <= 5',
        'spec: Invalid value: "object": too many replicas: 9',
        'spec: Invalid value: "object": fallback',
    ]


@pytest.mark.parametrize(
    ("reason", "expected", "type_"),
    [
        ("FieldValueForbidden", "spec: Forbidden: no", "FieldValueForbidden"),
        ("FieldValueRequired", "spec: Required value: no", "FieldValueRequired"),
        ("FieldValueDuplicate", 'spec: Duplicate value: "object"', "FieldValueDuplicate"),
        ("FieldValueInvalid", 'spec: Invalid value: "object": no', "FieldValueInvalid"),
    ],
)
def test_reasons(reason: str, expected: str, type_: str) -> None:
    schema = root_with(with_rules(SPEC, {"rule": "false", "message": "no", "reason": reason}))
    (cause,) = evaluate_validations({"spec": {}}, schema)
    assert (cause.message, cause.type) == (expected, type_)


def test_field_path_moves_the_error() -> None:
    schema = root_with(
        with_rules(SPEC, {"rule": "self.replicas > 0", "message": "positive", "fieldPath": ".replicas"})
    )
    (cause,) = evaluate_validations({"spec": {"replicas": 0}}, schema)
    assert cause.message == 'spec.replicas: Invalid value: "object": positive'
    selector = root_with(
        with_rules(SPEC, {"rule": "false", "message": "m", "fieldPath": ".selector['app.io/x']"})
    )
    assert evaluate_validations({"spec": {}}, selector)[0].field == "spec.selector[app.io/x]"


def test_root_rules_report_a_nil_path_and_see_metadata() -> None:
    schema = with_rules(
        root_with(SPEC), {"rule": "self.metadata.name.startsWith('ok-')", "message": "bad name"}
    )
    assert evaluate_validations({"metadata": {"name": "ok-1"}, "spec": {}}, schema) == []
    assert messages(evaluate_validations({"metadata": {"name": "x"}, "spec": {}}, schema)) == [
        '<nil>: Invalid value: "object": bad name'
    ]


def test_runtime_errors_are_worded_like_the_apiserver() -> None:
    schema = root_with(
        with_rules(SPEC, {"rule": "self.replicas > 1"}, {"rule": "self.port > 1", "message": "m"})
    )
    assert messages(evaluate_validations({"spec": {"port": "http"}}, schema)) == [
        'spec: Invalid value: "object": no such key: replicas evaluating rule: self.replicas > 1',
        "spec: Invalid value: \"object\": 'no such overload': call arguments did not match a supported operator, "
        "function or macro signature for rule: m",
    ]


def test_volume_snapshot_style_transition_rules() -> None:
    source = with_rules(
        {
            "type": "object",
            "properties": {
                "persistentVolumeClaimName": with_rules(
                    {"type": "string"},
                    {"rule": "self == oldSelf", "message": "persistentVolumeClaimName is immutable"},
                ),
                "volumeSnapshotContentName": {"type": "string"},
            },
        },
        {
            "rule": "!has(oldSelf.persistentVolumeClaimName) || has(self.persistentVolumeClaimName)",
            "message": "persistentVolumeClaimName is required once set",
        },
    )
    schema = root_with({"type": "object", "properties": {"source": source}})
    old = {"spec": {"source": {"persistentVolumeClaimName": "pvc"}}}
    assert evaluate_validations(old, schema, old) == []
    assert messages(
        evaluate_validations({"spec": {"source": {"persistentVolumeClaimName": "other"}}}, schema, old)
    ) == [
        'spec.source.persistentVolumeClaimName: Invalid value: "string": persistentVolumeClaimName is immutable'
    ]
    assert messages(
        evaluate_validations({"spec": {"source": {"volumeSnapshotContentName": "c"}}}, schema, old)
    ) == ['spec.source: Invalid value: "object": persistentVolumeClaimName is required once set']


def test_map_lists_correlate_items_by_key() -> None:
    item = with_rules(
        {"type": "object", "properties": {"name": {"type": "string"}, "size": {"type": "integer"}}},
        {"rule": "self.size >= oldSelf.size", "message": "may not shrink"},
    )
    schema = root_with(
        {
            "type": "object",
            "properties": {
                "disks": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": item,
                }
            },
        }
    )
    old = {"spec": {"disks": [{"name": "a", "size": 5}, {"name": "b", "size": 5}]}}
    new = {"spec": {"disks": [{"name": "b", "size": 4}, {"name": "a", "size": 6}, {"name": "c", "size": 1}]}}
    assert messages(evaluate_validations(new, schema, old)) == [
        'spec.disks[0]: Invalid value: "object": may not shrink'
    ]


def test_optional_old_self_runs_on_create() -> None:
    schema = root_with(
        {
            "type": "object",
            "properties": {
                "replicas": with_rules(
                    {"type": "integer"},
                    {
                        "rule": "!oldSelf.hasValue() ? self <= 3 : self >= oldSelf.value()",
                        "message": "bad",
                        "optionalOldSelf": True,
                    },
                )
            },
        }
    )
    assert messages(evaluate_validations({"spec": {"replicas": 4}}, schema)) == [
        'spec.replicas: Invalid value: "integer": bad'
    ]
    assert evaluate_validations({"spec": {"replicas": 9}}, schema, {"spec": {"replicas": 4}}) == []


def test_values_are_typed_by_the_schema() -> None:
    schema = root_with(
        with_rules(
            SPEC,
            {
                "rule": "type(self.port) == string ? self.port.endsWith('%') : self.port < 100",
                "message": "port",
            },
            {"rule": "self.created < timestamp('2030-01-01T00:00:00Z')", "message": "created"},
            {"rule": "self.ratio == 1.0", "message": "ratio"},
            {"rule": "self.tags == oldSelf.tags", "message": "tags"},
            {"rule": "self.podName.lowerAscii().split('-')[0] == 'web'", "message": "name"},
        )
    )
    obj = {
        "spec": {
            "port": "50%",
            "created": "2024-05-01T10:00:00Z",
            "ratio": 1.0,
            "tags": ["b", "a"],
            "podName": "WEB-1",
        }
    }
    assert evaluate_validations(obj, schema, {"spec": {**obj["spec"], "tags": ["a", "b"]}}) == []
    bad = {"spec": {**obj["spec"], "port": 200, "created": "2031-01-01T00:00:00Z", "podName": "db-1"}}
    assert [m.rsplit(": ", 1)[1] for m in messages(evaluate_validations(bad, schema))] == [
        "port",
        "created",
        "name",
    ]


def test_rules_on_null_values_and_untyped_fields_are_skipped() -> None:
    schema = root_with(
        {
            "type": "object",
            "properties": {
                "opt": with_rules({"type": "string", "nullable": True}, {"rule": "false"}),
                "free": with_rules({"x-kubernetes-preserve-unknown-fields": True}, {"rule": "false"}),
            },
        }
    )
    assert evaluate_validations({"spec": {"opt": None, "free": {"x": 1}}}, schema) == []
