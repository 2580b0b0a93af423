"""kubesim.fieldmanager as pure functions: field sets, FieldsV1, compare, merge, apply, update.

Cases marked with an upstream test name are taken from sigs.k8s.io/structured-merge-diff/v4
(``merge/set_test.go``, ``merge/multiple_appliers_test.go``, ``fieldpath/serialize_test.go``) and
expect what those tests expect.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubesim import fieldmanager as fm

SET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"list": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"}},
}

MAP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name", "protocol"],
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "protocol": {"type": "string", "default": "TCP"},
                            "port": {"type": "integer"},
                        },
                    },
                },
                "args": {"type": "array", "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "replicas": {"type": "integer"},
            },
        }
    },
}


def _apply(
    live: dict[str, Any],
    config: dict[str, Any],
    managers: fm.Managers,
    who: str,
    schema: dict[str, Any],
    force: bool = False,
) -> tuple[dict[str, Any], fm.Managers]:
    key = fm.manager_key(who, "Apply", "v1", "")
    return fm.apply(live, config, managers, key, "v1", schema, set(), "2026-01-01T00:00:00Z", force)


def _update(
    live: dict[str, Any], new: dict[str, Any], managers: fm.Managers, who: str, schema: dict[str, Any]
) -> fm.Managers:
    key = fm.manager_key(who, "Update", "v1", "")
    return fm.update(live, new, managers, key, "v1", schema, set(), "2026-01-01T00:00:00Z")


def _owned(managers: fm.Managers, who: str) -> set[str]:
    return {fm.path_string(p) for k, e in managers.items() if k.manager == who for p in e.fields}


def test_set_apply_update_apply_with_overlap() -> None:
    # merge/set_test.go: TestUpdateSet "apply_update_apply_with_overlap"
    obj, managers = _apply({}, {"list": ["a", "c"]}, {}, "default", SET_SCHEMA)
    managers = _update(obj, {**obj, "list": ["a", "b", "c", "d"]}, managers, "controller", SET_SCHEMA)
    obj = {**obj, "list": ["a", "b", "c", "d"]}
    obj, managers = _apply(obj, {"list": ["a", "b", "c"]}, managers, "default", SET_SCHEMA)
    assert obj["list"] == ["a", "b", "c", "d"]
    assert _owned(managers, "default") == {'.list[="a"]', '.list[="b"]', '.list[="c"]'}
    assert _owned(managers, "controller") == {'.list[="b"]', '.list[="d"]'}


def test_set_apply_update_apply_no_overlap_keeps_order() -> None:
    # merge/set_test.go: TestUpdateSet "apply_update_apply_no_overlap"
    obj, managers = _apply({}, {"list": ["a", "c"]}, {}, "default", SET_SCHEMA)
    new = {**obj, "list": ["a", "b", "c", "d"]}
    managers = _update(obj, new, managers, "controller", SET_SCHEMA)
    obj, managers = _apply(new, {"list": ["a", "aprime", "c", "cprime"]}, managers, "default", SET_SCHEMA)
    # (upstream's fixture compares sets order-insensitively; the order is merge.go's: live items
    # first where the config does not place shared ones)
    assert sorted(obj["list"]) == ["a", "aprime", "b", "c", "cprime", "d"]
    assert obj["list"] == ["a", "b", "aprime", "c", "d", "cprime"]
    assert _owned(managers, "controller") == {'.list[="b"]', '.list[="d"]'}


def test_set_apply_update_apply_reorder() -> None:
    # merge/set_test.go: TestUpdateSet "apply_update_apply_reorder"
    obj, managers = _apply({}, {"list": ["a", "b", "c", "d"]}, {}, "default", SET_SCHEMA)
    new = {**obj, "list": ["a", "d", "c", "b"]}
    managers = _update(obj, new, managers, "controller", SET_SCHEMA)
    obj, managers = _apply(new, {"list": ["a", "b", "c", "d"]}, managers, "default", SET_SCHEMA)
    assert obj["list"] == ["a", "b", "c", "d"]


def test_set_apply_twice_removes_what_the_applier_dropped() -> None:
    # merge/set_test.go: "apply_twice_remove" (a "broken" case upstream only because of the
    # fixture; the object is [a, c] and default owns a and c).
    obj, managers = _apply({}, {"list": ["a", "b", "c", "d"]}, {}, "default", SET_SCHEMA)
    obj, managers = _apply(obj, {"list": ["a", "c"]}, managers, "default", SET_SCHEMA)
    assert obj["list"] == ["a", "c"]
    assert _owned(managers, "default") == {'.list[="a"]', '.list[="c"]'}


def test_conflict_on_a_scalar_and_force() -> None:
    # merge/multiple_appliers_test.go: two appliers of one field with different values conflict;
    # the same value is shared ownership.
    obj, managers = _apply({}, {"spec": {"replicas": 1}}, {}, "a", MAP_SCHEMA)
    same, shared = _apply(obj, {"spec": {"replicas": 1}}, managers, "b", MAP_SCHEMA)
    assert same == obj
    assert _owned(shared, "a") == _owned(shared, "b") == {".spec.replicas"}
    with pytest.raises(fm.ConflictError) as ei:
        _apply(obj, {"spec": {"replicas": 2}}, managers, "b", MAP_SCHEMA)
    assert [fm.path_string(c.path) for c in ei.value.conflicts] == [".spec.replicas"]
    forced, after = _apply(obj, {"spec": {"replicas": 2}}, managers, "b", MAP_SCHEMA, force=True)
    assert forced["spec"]["replicas"] == 2
    assert _owned(after, "a") == set()
    assert _owned(after, "b") == {".spec.replicas"}


def test_list_map_items_are_owned_per_key_and_removed_only_when_unowned() -> None:
    obj, managers = _apply({}, {"spec": {"ports": [{"name": "http", "port": 80}]}}, {}, "a", MAP_SCHEMA)
    obj, managers = _apply(
        obj, {"spec": {"ports": [{"name": "https", "port": 443}]}}, managers, "b", MAP_SCHEMA
    )
    assert [p["name"] for p in obj["spec"]["ports"]] == ["http", "https"]
    # the key's default (protocol TCP) is part of the item's key
    assert '.spec.ports[name="http",protocol="TCP"]' in _owned(managers, "a")
    obj, managers = _apply(obj, {"spec": {"ports": []}}, managers, "a", MAP_SCHEMA)
    assert [p["name"] for p in obj["spec"]["ports"]] == ["https"]
    assert _owned(managers, "a") == set()


def test_atomic_list_conflicts_as_a_whole() -> None:
    obj, managers = _apply({}, {"spec": {"args": ["x"]}}, {}, "a", MAP_SCHEMA)
    assert _owned(managers, "a") == {".spec.args"}
    with pytest.raises(fm.ConflictError):
        _apply(obj, {"spec": {"args": ["x", "y"]}}, managers, "b", MAP_SCHEMA)


def test_removed_field_stays_when_another_manager_owns_it() -> None:
    obj, managers = _apply({}, {"spec": {"labels": {"a": "1", "b": "2"}}}, {}, "one", MAP_SCHEMA)
    obj, managers = _apply(obj, {"spec": {"labels": {"b": "2"}}}, managers, "two", MAP_SCHEMA)
    obj, managers = _apply(obj, {"spec": {"labels": {"a": "1"}}}, managers, "one", MAP_SCHEMA)
    assert obj["spec"]["labels"] == {"a": "1", "b": "2"}
    obj, managers = _apply(obj, {"spec": {"labels": {}}}, managers, "two", MAP_SCHEMA)
    assert obj["spec"]["labels"] == {"a": "1"}


def test_update_takes_changed_fields_from_others() -> None:
    obj, managers = _apply({}, {"spec": {"replicas": 1, "labels": {"a": "1"}}}, {}, "applier", MAP_SCHEMA)
    new = {**obj, "spec": {**obj["spec"], "replicas": 5}}
    managers = _update(obj, new, managers, "scaler", MAP_SCHEMA)
    assert _owned(managers, "scaler") == {".spec.replicas"}
    assert _owned(managers, "applier") == {".spec.labels.a"}
    # an update that changes nothing records nothing
    assert _update(new, new, managers, "idle", MAP_SCHEMA) == managers


def test_fields_v1_encoding_round_trip() -> None:
    # fieldpath/serialize.go: "." marks a path that is a member and has children; elements sorted
    # field names, then keys, then values.
    s = {
        (("f", "metadata"), ("f", "labels")),
        (("f", "metadata"), ("f", "labels"), ("f", "app")),
        (("f", "spec"), ("f", "ports"), ("k", (("name", '"http"'), ("protocol", '"TCP"')))),
        (("f", "spec"), ("f", "ports"), ("k", (("name", '"http"'), ("protocol", '"TCP"'))), ("f", "port")),
        (("f", "spec"), ("f", "list"), ("v", '"a"')),
    }
    enc = fm.encode_fields(s)
    assert enc == {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {
            "f:list": {'v:"a"': {}},
            "f:ports": {'k:{"name":"http","protocol":"TCP"}': {".": {}, "f:port": {}}},
        },
    }
    assert fm.decode_fields(enc) == s


def test_path_strings_as_upstream_prints_them() -> None:
    # fieldpath/element.go: PathElement.String
    p = (("f", "spec"), ("f", "containers"), ("k", (("name", '"nginx"'),)), ("f", "image"))
    assert fm.path_string(p) == '.spec.containers[name="nginx"].image'
    assert fm.path_string((("f", "x"), ("v", "1"), ("i", 2))) == ".x[=1][2]"


def test_missing_key_in_apply_config_is_a_typed_error() -> None:
    schema = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            }
        },
    }
    with pytest.raises(fm.TypedError, match='omits key field "name"'):
        _apply({}, {"items": [{}]}, {}, "a", schema)
    with pytest.raises(fm.TypedError, match="field not declared in schema"):
        _apply({}, {"nope": 1}, {}, "a", schema)


def test_manager_from_user_agent() -> None:
    # handlers/create.go: prefixFromUserAgent
    assert fm.manager_from_user_agent("kubectl/v1.37.1 (linux/amd64) kubernetes/abc") == "kubectl"
    assert fm.manager_from_user_agent("OpenAPI-Generator/37.0.0/python") == "OpenAPI-Generator"
    assert fm.manager_from_user_agent("a\tb/1") == "ab"
    assert len(fm.manager_from_user_agent("x" * 300)) == 128


def test_update_managers_are_capped_into_ancient_changes() -> None:
    # capmanagers.go: capUpdateManagers (DefaultMaxUpdateManagers = 10); apply entries are not
    # counted; the two oldest updaters of a version merge into "ancient-changes".
    managers: fm.Managers = {
        fm.manager_key(f"m{i:02}", "Update", "v1", ""): fm.Entry(
            {(("f", "data"), ("f", f"k{i}"))}, "v1", f"2026-01-01T00:00:{i:02}Z"
        )
        for i in range(11)
    }
    managers[fm.manager_key("applier", "Apply", "v1", "")] = fm.Entry({(("f", "x"),)}, "v1", None)
    capped = fm.cap_update_managers(managers)
    names = sorted(k.manager for k in capped)
    assert names == ["ancient-changes", "applier", *[f"m{i:02}" for i in range(2, 11)]]
    bucket = next(e for k, e in capped.items() if k.manager == "ancient-changes")
    assert bucket.fields == {(("f", "data"), ("f", "k0")), (("f", "data"), ("f", "k1"))}
    assert bucket.time == "2026-01-01T00:00:01Z"
    assert fm.cap_update_managers(capped) == capped
