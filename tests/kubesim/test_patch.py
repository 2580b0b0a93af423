"""Unit tests for :mod:`kubesim.patch` (JSON patch, JSON merge patch, strategic merge patch).

Expected results follow the upstream behaviour; where a case is taken from upstream's own tests it
says so (``apimachinery/pkg/util/strategicpatch/patch_test.go``, RFC 7386 appendix A, ...).
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesim import k8sdefs
from kubesim.errors import StatusError
from kubesim.patch import (
    APPLY_PATCH_YAML,
    BUILTIN_PATCH_TYPES,
    CUSTOM_RESOURCE_PATCH_TYPES,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    PatchError,
    decode_patch,
    json_merge_patch,
    json_patch,
    strategic_merge_patch,
)

GENERIC_422 = "the server rejected our request due to an error in our request"


def _definition(group: str, version: str, kind: str) -> dict[str, Any]:
    schema = k8sdefs.definition(group, version, kind)
    assert schema is not None, (group, version, kind)
    return schema


POD = _definition("", "v1", "Pod")
PVC = _definition("", "v1", "PersistentVolumeClaim")
STATEFULSET = _definition("apps", "v1", "StatefulSet")
DEPLOYMENT = _definition("apps", "v1", "Deployment")
CSR = _definition("certificates.k8s.io", "v1", "CertificateSigningRequest")
CONTROLLER_REVISION = _definition("apps", "v1", "ControllerRevision")


def Y(text: str) -> Any:
    """YAML (as upstream's test tables are written) to JSON-like data."""
    return yaml.safe_load(text)


def directive_keys(value: Any, path: str = "") -> Iterator[str]:
    """Every ``$``-prefixed key left anywhere in ``value``."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k.startswith("$"):
                yield f"{path}/{k}"
            yield from directive_keys(v, f"{path}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from directive_keys(v, f"{path}/{i}")


def raises_patch_error(code: int, reason: str, message: str | None = None) -> Any:
    """Context manager: a PatchError with that code/reason (and exact message if given)."""

    class _Check:
        def __enter__(self) -> None:
            return None

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
            assert exc_type is not None, "no PatchError raised"
            assert isinstance(exc, PatchError), repr(exc)
            assert (exc.code, exc.reason) == (code, reason), (exc.code, exc.reason, exc.message)
            if message is not None:
                assert exc.message == message
            return True

    return _Check()


# =============================================================================================
# decode_patch
# =============================================================================================


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        (JSON_PATCH, b'[{"op": "add", "path": "/a", "value": 1}]', [{"op": "add", "path": "/a", "value": 1}]),
        (MERGE_PATCH, b'{"metadata": {"labels": {"a": null}}}', {"metadata": {"labels": {"a": None}}}),
        (STRATEGIC_MERGE_PATCH, b'{"spec": {"$patch": "replace"}}', {"spec": {"$patch": "replace"}}),
        (MERGE_PATCH + "; charset=utf-8", b"{}", {}),
        (JSON_PATCH, b"  []  \n", []),
    ],
)
def test_decode_patch_parses_body(content_type: str, body: bytes, expected: Any) -> None:
    assert decode_patch(content_type, body) == expected


def test_decode_patch_null_bodies() -> None:
    # A null body decodes; what it means is up to each patch type (see the apply tests below).
    for ct in (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        assert decode_patch(ct, b"null") is None


def test_decode_patch_unknown_content_type_is_415() -> None:
    # handlers/patch.go: PatchResource -> negotiation.NewUnsupportedMediaTypeError(patchTypes)
    with pytest.raises(PatchError) as ei:
        decode_patch("application/json", b"{}")
    assert (ei.value.code, ei.value.reason) == (415, "UnsupportedMediaType")
    assert ei.value.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, "
        "application/strategic-merge-patch+json, application/apply-patch+yaml"
    )


@pytest.mark.parametrize(
    "content_type",
    [
        "Application/Merge-Patch+JSON",  # compared exactly, as upstream does
        "application/merge-patch+json ; charset=utf-8",  # only ';' and after are dropped
        ";application/merge-patch+json",  # a ';' at index 0 is not treated as a parameter
        "",
    ],
)
def test_decode_patch_content_type_matching_is_exact(content_type: str) -> None:
    with raises_patch_error(415, "UnsupportedMediaType"):
        decode_patch(content_type, b"{}")


def test_decode_patch_apply_yaml_decodes_a_map() -> None:
    # handlers/patch.go: applyPatcher: yaml.Unmarshal into a map; null leaves it empty.
    assert decode_patch(APPLY_PATCH_YAML, b"apiVersion: v1\nkind: ConfigMap\n") == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
    }
    assert decode_patch(APPLY_PATCH_YAML, b"null") == {}
    with pytest.raises(PatchError) as ei:
        decode_patch(APPLY_PATCH_YAML, b"[1, 2]")
    assert (ei.value.code, ei.value.reason) == (400, "BadRequest")
    assert ei.value.message.startswith("error decoding YAML: ")
    with raises_patch_error(400, "BadRequest"):
        decode_patch(APPLY_PATCH_YAML, b"a: [")
    # apply-patch+cbor is not accepted (the CBOR feature gates are off by default).
    with raises_patch_error(415, "UnsupportedMediaType"):
        decode_patch("application/apply-patch+cbor", b"\xa0")


def test_decode_patch_custom_resources_refuse_strategic_merge_patch() -> None:
    # apiextensions-apiserver customresource_handler.go: SMP is not among the accepted types.
    with pytest.raises(PatchError) as ei:
        decode_patch(STRATEGIC_MERGE_PATCH, b"{}", supported_types=CUSTOM_RESOURCE_PATCH_TYPES)
    assert ei.value.code == 415
    assert ei.value.message.endswith(
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )
    assert decode_patch(MERGE_PATCH, b"{}", supported_types=CUSTOM_RESOURCE_PATCH_TYPES) == {}
    assert STRATEGIC_MERGE_PATCH in BUILTIN_PATCH_TYPES


@pytest.mark.parametrize(
    ("body", "go_error"),
    [
        (b"", "unexpected end of JSON input"),
        (b"{", "unexpected end of JSON input"),
        (b'{"a": 1,}', "invalid character '}' looking for beginning of object key string"),
        (b'{"a" 1}', "invalid character '1' after object key"),
        (b'{"a": 1 "b": 2}', "invalid character '\"' after object key:value pair"),
        (b"[1 2]", "invalid character '2' after array element"),
        (b"nope", "invalid character 'o' in literal null (expecting 'u')"),
        (b"{} {}", "invalid character '{' after top-level value"),
        (b"{'a': 1}", "invalid character '\\'' looking for beginning of object key string"),
        (b'{"a": NaN}', "invalid character 'N' looking for beginning of value"),
        (b'{"a": 1.}', "invalid character '}' after decimal point in numeric literal"),
        (b'{"a": 1e400}', "json: cannot unmarshal number 1e400 into Go value of type float64"),
        (b'{"a": "\\x"}', "invalid character 'x' in string escape code"),
    ],
)
def test_decode_patch_malformed_json_is_400(body: bytes, go_error: str) -> None:
    # applyJSPatch: "error decoding patch: %v" (strict decode, fieldValidation defaults to Warn);
    # strategicPatchObject: errors.NewBadRequest(err.Error()) without a prefix.
    for ct in (JSON_PATCH, MERGE_PATCH):
        with raises_patch_error(400, "BadRequest", f"error decoding patch: {go_error}"):
            decode_patch(ct, body)
    with raises_patch_error(400, "BadRequest", go_error):
        decode_patch(STRATEGIC_MERGE_PATCH, body)


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (
            MERGE_PATCH,
            b'["c"]',
            "error decoding patch: json: cannot unmarshal array into Go value of type map[string]interface {}",
        ),
        (
            MERGE_PATCH,
            b'"bar"',
            "error decoding patch: json: cannot unmarshal string into Go value of type map[string]interface {}",
        ),
        (
            STRATEGIC_MERGE_PATCH,
            b"[]",
            "json: cannot unmarshal array into Go value of type map[string]interface {}",
        ),
        (
            STRATEGIC_MERGE_PATCH,
            b"42",
            "json: cannot unmarshal number into Go value of type map[string]interface {}",
        ),
        (
            JSON_PATCH,
            b'{"op": "add", "path": "/a", "value": 1}',
            "error decoding patch: json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp",
        ),
        (
            JSON_PATCH,
            b'["add"]',
            "error decoding patch: json: cannot unmarshal string into Go value of type handlers.jsonPatchOp",
        ),
        (
            JSON_PATCH,
            b'[{"op": "add", "path": 7}]',
            "error decoding patch: json: cannot unmarshal number into Go struct field jsonPatchOp.path of type string",
        ),
        (
            JSON_PATCH,
            b'[{"op": true}]',
            "error decoding patch: json: cannot unmarshal bool into Go struct field jsonPatchOp.op of type string",
        ),
    ],
)
def test_decode_patch_body_not_fitting_its_type_is_400(content_type: str, body: bytes, message: str) -> None:
    with raises_patch_error(400, "BadRequest", message):
        decode_patch(content_type, body)


def test_decode_patch_numbers_like_go() -> None:
    body = b'{"i": 9223372036854775807, "big": 9223372036854775808, "f": 1.5, "e": 1e2, "neg": -0}'
    decoded = decode_patch(MERGE_PATCH, body)
    assert decoded == {"i": 2**63 - 1, "big": float(2**63), "f": 1.5, "e": 100.0, "neg": 0}
    assert isinstance(decoded["i"], int)
    assert isinstance(decoded["big"], float)  # beyond int64: float64, as sigs.k8s.io/json does
    assert isinstance(decoded["e"], float)


def test_decode_patch_too_deep_is_400() -> None:
    with raises_patch_error(400, "BadRequest", "error decoding patch: exceeded max depth"):
        decode_patch(MERGE_PATCH, b'{"a":' * 20000 + b"1" + b"}" * 20000)


def test_decode_patch_replaces_invalid_text_like_go() -> None:
    # encoding/json turns invalid UTF-8 and lone surrogates inside strings into U+FFFD.
    decoded = decode_patch(MERGE_PATCH, b'{"a": "x\xffy", "b": "\\ud800", "c": "\\ud83d\\ude00"}')
    assert decoded == {"a": "x\ufffdy", "b": "\ufffd", "c": "\U0001f600"}


# =============================================================================================
# JSON merge patch (RFC 7386, evanphx/json-patch MergePatch)
# =============================================================================================

# RFC 7386 appendix A, the cases whose target and patch are objects.
RFC7386_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC7386_EXAMPLES)
def test_merge_patch_rfc7386_examples(target: dict[str, Any], patch: Any, expected: dict[str, Any]) -> None:
    assert json_merge_patch(target, patch) == expected


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        # RFC 7386 would give ["c"], "bar" and null; the apiserver refuses (strict decode into a map,
        # then MergePatch's ErrBadJSONPatch for null).
        (
            ["c"],
            "error decoding patch: json: cannot unmarshal array into Go value of type map[string]interface {}",
        ),
        (
            "bar",
            "error decoding patch: json: cannot unmarshal string into Go value of type map[string]interface {}",
        ),
        (None, "Invalid JSON Patch"),
    ],
)
def test_merge_patch_non_object_patch_is_400(patch: Any, message: str) -> None:
    with raises_patch_error(400, "BadRequest", message):
        json_merge_patch({"a": "foo"}, patch)


def test_merge_patch_prunes_nulls_like_evanphx() -> None:
    # merge.go: a value replacing a non-object (or absent) value has its null object members
    # pruned at any depth, null array elements kept; an object replaced by a non-object takes the
    # patch as is. (Checked against kubectl patch --local --type=merge, v1.37.)
    assert json_merge_patch({"a": [0]}, {"a": [1, None, {"x": None, "y": [None]}]}) == {
        "a": [1, None, {"y": [None]}]
    }
    assert json_merge_patch({}, {"d": [None, {"z": None}]}) == {"d": [None, {}]}
    assert json_merge_patch({"b": {"x": 1}}, {"b": [1, None, {"x": None}]}) == {"b": [1, None, {"x": None}]}
    assert json_merge_patch({"c": "s"}, {"c": {"k": None, "l": [None, {"m": None}]}}) == {
        "c": {"l": [None, {}]}
    }
    assert json_merge_patch({"e": None}, {"e": {"q": None, "r": 1}}) == {"e": {"r": 1}}


def test_merge_patch_on_kubernetes_object() -> None:
    pod = {
        "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]},
        "spec": {"containers": [{"name": "c", "image": "i:1"}, {"name": "d", "image": "j:1"}]},
    }
    patch = {
        "metadata": {"labels": {"a": None, "c": "3"}, "finalizers": ["z"]},
        "spec": {"containers": [{"name": "c", "image": "i:2"}]},
    }
    assert json_merge_patch(pod, patch) == {
        "metadata": {"name": "p", "labels": {"b": "2", "c": "3"}, "finalizers": ["z"]},
        "spec": {"containers": [{"name": "c", "image": "i:2"}]},  # lists are replaced wholesale
    }


def test_merge_patch_does_not_mutate_inputs() -> None:
    target = {"a": {"b": [1, 2]}, "c": None}
    patch = {"a": {"b": [3, None], "d": {"e": None}}, "c": 1}
    before = copy.deepcopy((target, patch))
    result = json_merge_patch(target, patch)
    assert (target, patch) == before
    result["a"]["b"].append(4)
    assert (target, patch) == before


# =============================================================================================
# JSON patch (RFC 6902, evanphx/json-patch v4)
# =============================================================================================

DOC: dict[str, Any] = {
    "metadata": {
        "name": "web",
        "labels": {"app": "web"},
        "annotations": {"example.com/owner": "team-a", "m~n": "tilde"},
    },
    "spec": {"ports": [{"port": 80}, {"port": 443}], "selector": None},
}


def _apply(*ops: dict[str, Any]) -> dict[str, Any]:
    return json_patch(DOC, list(ops))


def _fails(*ops: dict[str, Any]) -> PatchError:
    with pytest.raises(PatchError) as ei:
        json_patch(DOC, list(ops))
    return ei.value


def test_json_patch_add() -> None:
    assert _apply({"op": "add", "path": "/metadata/labels/tier", "value": "fe"})["metadata"]["labels"] == {
        "app": "web",
        "tier": "fe",
    }
    # add on an existing member replaces it
    assert _apply({"op": "add", "path": "/metadata/name", "value": "x"})["metadata"]["name"] == "x"

    # arrays: insert at an index, "-" appends, negative indices count from the end (v4 extension)
    def ports(doc: dict[str, Any]) -> list[int]:
        return [p["port"] for p in doc["spec"]["ports"]]

    assert ports(_apply({"op": "add", "path": "/spec/ports/0", "value": {"port": 1}})) == [1, 80, 443]
    assert ports(_apply({"op": "add", "path": "/spec/ports/2", "value": {"port": 1}})) == [80, 443, 1]
    assert ports(_apply({"op": "add", "path": "/spec/ports/-", "value": {"port": 1}})) == [80, 443, 1]
    assert ports(_apply({"op": "add", "path": "/spec/ports/-1", "value": {"port": 1}})) == [80, 443, 1]
    assert ports(_apply({"op": "add", "path": "/spec/ports/-3", "value": {"port": 1}})) == [1, 80, 443]
    # strconv.Atoi accepts a sign and leading zeros
    assert ports(_apply({"op": "add", "path": "/spec/ports/01", "value": {"port": 1}})) == [80, 1, 443]
    # no "value" member adds null
    assert _apply({"op": "add", "path": "/status"})["status"] is None


def test_json_patch_add_errors() -> None:
    for path in ("/spec/ports/3", "/spec/ports/-4", "/spec/ports/x", "/nope/a", "", "name"):
        err = _fails({"op": "add", "path": path, "value": 1})
        assert (err.code, err.reason, err.message) == (422, "Invalid", GENERIC_422), path
    err = _fails({"op": "add", "path": "/nope/a", "value": 1})
    assert err.go_error == 'add operation does not apply: doc is missing path: "/nope/a": missing value'
    # findObject splits on "/" and ignores what precedes the first one
    assert _apply({"op": "add", "path": "metadata/x", "value": 1})["x"] == 1


def test_json_patch_remove() -> None:
    doc = _apply({"op": "remove", "path": "/metadata/labels/app"}, {"op": "remove", "path": "/spec/ports/0"})
    assert doc["metadata"]["labels"] == {}
    assert doc["spec"]["ports"] == [{"port": 443}]
    assert _apply({"op": "remove", "path": "/spec/ports/-1"})["spec"]["ports"] == [{"port": 80}]
    err = _fails({"op": "remove", "path": "/metadata/labels/missing"})
    assert err.code == 422
    assert err.go_error == (
        "error in remove for path: '/metadata/labels/missing': "
        "Unable to remove nonexistent key: missing: missing value"
    )
    assert _fails({"op": "remove", "path": "/spec/ports/2"}).code == 422
    assert _fails({"op": "remove", "path": "/spec/ports/-"}).code == 422


def test_json_patch_replace() -> None:
    assert _apply({"op": "replace", "path": "/metadata/name", "value": "api"})["metadata"]["name"] == "api"
    assert _apply({"op": "replace", "path": "/spec/ports/1", "value": {"port": 8443}})["spec"]["ports"] == [
        {"port": 80},
        {"port": 8443},
    ]
    # json-patch v4 (the one kube-apiserver vendors): replacing a missing object member adds it
    assert _apply({"op": "replace", "path": "/metadata/labels/new", "value": "v"})["metadata"]["labels"] == {
        "app": "web",
        "new": "v",
    }
    assert _fails({"op": "replace", "path": "/spec/ports/5", "value": 1}).code == 422
    assert _fails({"op": "replace", "path": "/nope/x", "value": 1}).code == 422
    # the whole document
    assert _apply({"op": "replace", "path": "", "value": {"kind": "X"}}) == {"kind": "X"}


def test_json_patch_result_that_is_not_an_object_is_invalid() -> None:
    # jsonPatcher.applyPatchToCurrentObject: the patched JSON must decode into the object.
    err = _fails({"op": "replace", "path": "", "value": [1]})
    assert (err.code, err.reason) == (422, "Invalid")
    assert err.message.startswith(' "" is invalid: patch: Invalid value: "[1]": ')
    assert err.details is not None
    assert err.details["causes"][0]["field"] == "patch"
    assert _fails({"op": "replace", "path": "", "value": "x"}).code == 422


def test_json_patch_move_and_copy() -> None:
    doc = _apply({"op": "move", "from": "/metadata/labels/app", "path": "/metadata/annotations/app"})
    assert doc["metadata"]["labels"] == {}
    assert doc["metadata"]["annotations"]["app"] == "web"
    doc = _apply({"op": "move", "from": "/spec/ports/1", "path": "/spec/ports/0"})
    assert doc["spec"]["ports"] == [{"port": 443}, {"port": 80}]
    assert _fails({"op": "move", "from": "/metadata/nope", "path": "/x"}).code == 422
    assert _fails({"op": "move", "from": "/metadata", "path": "/metadata/inside"}).code == 422
    assert _fails({"op": "move", "path": "/x"}).code == 422  # no "from"

    doc = _apply({"op": "copy", "from": "/metadata/labels", "path": "/spec/selector"})
    assert doc["spec"]["selector"] == {"app": "web"}
    doc["spec"]["selector"]["app"] = "changed"  # a deep copy
    assert doc["metadata"]["labels"] == {"app": "web"}
    # json-patch v4: copying from a missing object member copies null
    assert _apply({"op": "copy", "from": "/metadata/nope", "path": "/x"})["x"] is None
    assert _fails({"op": "copy", "from": "/spec/ports/9", "path": "/x"}).code == 422


def test_json_patch_copy_size_is_limited() -> None:
    # apiserver config: JSONPatchMaxCopyBytes (3 MiB) arms jsonpatch.AccumulatedCopySizeLimit.
    doc = {"big": "x" * (1024 * 1024)}
    ops = [{"op": "copy", "from": "/big", "path": f"/c{i}"} for i in range(3)]
    assert len(json_patch(doc, ops[:2])) == 3
    with pytest.raises(PatchError) as ei:
        json_patch(doc, ops)
    assert ei.value.code == 422
    assert "accumulated size increase of copy" in ei.value.go_error


def test_json_patch_test_op() -> None:
    assert _apply({"op": "test", "path": "/metadata/name", "value": "web"}) == DOC
    assert _apply({"op": "test", "path": "/spec/ports", "value": [{"port": 80}, {"port": 443}]}) == DOC
    assert _apply({"op": "test", "path": "/spec/ports/-1/port", "value": 443}) == DOC
    assert _apply({"op": "test", "path": "", "value": DOC}) == DOC
    # a missing or null member matches a null (or absent) value
    assert _apply({"op": "test", "path": "/metadata/nope", "value": None}) == DOC
    assert _apply({"op": "test", "path": "/spec/selector"}) == DOC


@pytest.mark.parametrize(
    "op",
    [
        {"op": "test", "path": "/metadata/name", "value": "api"},
        {"op": "test", "path": "/spec/ports/0/port", "value": 80.0},  # 1 and 1.0 differ as JSON text
        {"op": "test", "path": "/spec/ports/0/port", "value": "80"},
        {"op": "test", "path": "/metadata/labels", "value": {"app": "web", "x": None}},
        {"op": "test", "path": "/metadata/name"},  # no value: fails on a non-null member
        {"op": "test", "path": "/metadata/nope", "value": "x"},
        {"op": "test", "path": "/nope/deeper", "value": "x"},
    ],
)
def test_json_patch_failed_test_is_422(op: dict[str, Any]) -> None:
    # applyJSPatch: patchObj.Apply error -> NewGenericServerResponse(422, ...): reason Invalid and a
    # generic message; the json-patch error text does not reach the client.
    err = _fails(op)
    assert (err.code, err.reason, err.message) == (422, "Invalid", GENERIC_422)
    assert err.to_status()["details"] == {}


def test_json_patch_failed_test_message_detail() -> None:
    err = _fails({"op": "test", "path": "/metadata/name", "value": "api"})
    assert err.go_error == "testing value /metadata/name failed: test failed"


def test_json_patch_pointer_escapes() -> None:
    # RFC 6901: "~1" is "/", "~0" is "~", decoded in one left-to-right pass.
    doc = _apply(
        {"op": "test", "path": "/metadata/annotations/example.com~1owner", "value": "team-a"},
        {"op": "replace", "path": "/metadata/annotations/m~0n", "value": "changed"},
        {"op": "add", "path": "/metadata/annotations/a~01", "value": "literal ~1"},
        {"op": "add", "path": "/metadata/annotations/kubernetes.io~1change-cause", "value": "why"},
    )
    assert doc["metadata"]["annotations"] == {
        "example.com/owner": "team-a",
        "m~n": "changed",
        "a~1": "literal ~1",
        "kubernetes.io/change-cause": "why",
    }
    assert _apply({"op": "add", "path": "/", "value": 1})[""] == 1  # the empty key


def test_json_patch_traversal_errors() -> None:
    for path in ("/metadata/name/x", "/spec/selector/x", "/spec/ports/x/port", "/spec/ports/7/port"):
        assert _fails({"op": "add", "path": path, "value": 1}).code == 422, path


@pytest.mark.parametrize(
    ("op", "detail"),
    [
        ({"op": "frobnicate", "path": "/a"}, "Unexpected kind: frobnicate"),
        ({"path": "/a"}, "Unexpected kind: unknown"),
        ({"op": "add", "value": 1}, "add operation failed to decode path: missing value"),
        (None, "Unexpected kind: unknown"),
    ],
)
def test_json_patch_bad_operations_are_422(op: Any, detail: str) -> None:
    with pytest.raises(PatchError) as ei:
        json_patch(DOC, [op])
    assert (ei.value.code, ei.value.go_error) == (422, detail)


def test_json_patch_is_all_or_nothing_and_does_not_mutate() -> None:
    before = copy.deepcopy(DOC)
    ops = [
        {"op": "add", "path": "/metadata/labels/x", "value": {"deep": [1]}},
        {"op": "test", "path": "/metadata/name", "value": "nope"},
    ]
    with pytest.raises(PatchError):
        json_patch(DOC, ops)
    assert before == DOC
    value = {"deep": [1]}
    result = json_patch(DOC, [{"op": "add", "path": "/x", "value": value}])
    result["x"]["deep"].append(2)
    assert value == {"deep": [1]}
    assert before == DOC


def test_json_patch_empty_and_null_patches() -> None:
    assert json_patch(DOC, []) == DOC
    assert json_patch(DOC, None) == DOC  # "null" decodes to an empty jsonpatch.Patch


def test_json_patch_operation_limit() -> None:
    ops = [{"op": "test", "path": "/metadata/name", "value": "web"}] * 10000
    assert json_patch(DOC, ops) == DOC
    with pytest.raises(PatchError) as ei:
        json_patch(DOC, [*ops, ops[0]])
    assert (ei.value.code, ei.value.reason) == (413, "RequestEntityTooLarge")
    assert ei.value.message == (
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
    )


def test_json_patch_object_body_is_400() -> None:
    with raises_patch_error(
        400,
        "BadRequest",
        "error decoding patch: json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp",
    ):
        json_patch(DOC, {"op": "add", "path": "/a", "value": 1})


def test_patch_error_is_a_status_error() -> None:
    err = _fails({"op": "test", "path": "/metadata/name", "value": "x"})
    assert isinstance(err, StatusError)
    status = err.to_status()
    assert status["kind"] == "Status"
    assert (status["code"], status["reason"], status["message"]) == (422, "Invalid", GENERIC_422)


# =============================================================================================
# Strategic merge patch: upstream's MergeItem test struct and cases
# =============================================================================================


def _merge_list(**extensions: str) -> dict[str, Any]:
    return {"type": "array", "items": {}, **extensions}


# The JSON Schema of upstream's test type (strategicpatch/patch_test.go: MergeItem and
# RetainKeysMergeItem), with the same patch strategies and merge keys as its struct tags.
MERGE_ITEM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "value": {"type": "string"},
        "other": {"type": "string"},
        "mergingList": _merge_list(
            **{"x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name"}
        ),
        "nonMergingList": _merge_list(),
        "mergingIntList": {
            "type": "array",
            "items": {"type": "integer"},
            "x-kubernetes-patch-strategy": "merge",
        },
        "nonMergingIntList": {"type": "array", "items": {"type": "integer"}},
        "mergeItemPtr": _merge_list(
            **{"x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name"}
        ),
        "simpleMap": {"type": "object", "additionalProperties": {"type": "string"}},
        "replacingItem": {
            "$ref": "#/$defs/io.k8s.apimachinery.pkg.runtime.RawExtension",
            "x-kubernetes-patch-strategy": "replace",
        },
        "retainKeysMap": {"x-kubernetes-patch-strategy": "retainKeys"},
        "retainKeysMergingList": _merge_list(
            **{"x-kubernetes-patch-strategy": "merge,retainKeys", "x-kubernetes-patch-merge-key": "name"}
        ),
    },
}
for _field in ("mergingList", "nonMergingList", "mergeItemPtr", "retainKeysMergingList"):
    MERGE_ITEM["properties"][_field]["items"] = MERGE_ITEM  # a recursive type, like the Go struct
RETAIN_KEYS_MERGE_ITEM: dict[str, Any] = {
    "type": "object",
    "properties": {
        name: MERGE_ITEM["properties"][name]
        for name in ("name", "value", "other", "simpleMap", "mergingIntList", "mergingList", "nonMergingList")
    },
}
MERGE_ITEM["properties"]["retainKeysMap"].update(RETAIN_KEYS_MERGE_ITEM)


# (description, current object, patch, expected result) - apimachinery/pkg/util/strategicpatch/
# patch_test.go (v0.36: customStrategicMergePatch*TestCases and strategicMergePatchRawTestCases,
# applying "twoWay" to "original" or "threeWay" to "current"). Raw cases compare list order too.
UPSTREAM_CASES: list[tuple[str, str, str, str]] = [
    (
        "unique scalars when merging lists",
        "mergingIntList: [1, 2]",
        "mergingIntList: [2, 3]",
        "mergingIntList: [1, 2, 3]",
    ),
    (
        "delete map from nested map",
        "simpleMap: {key1: 1, key2: 1}",
        "simpleMap: {$patch: delete}",
        "simpleMap: {}",
    ),
    (
        "delete all items from merging list",
        "mergingList: [{name: 1}, {name: 2}]",
        "mergingList: [{$patch: replace}]",
        "mergingList: []",
    ),
    ("merge empty merging lists", "mergingList: []", "mergingList: []", "mergingList: []"),
    ("delete all keys from map", "{name: 1, value: 1}", "$patch: replace", "{}"),
    (
        "add key and delete all keys from map",
        "{name: 1, value: 1}",
        "{other: a, $patch: replace}",
        "other: a",
    ),
    (
        "delete all duplicate entries in a merging list",
        "mergingList: [{name: 1}, {name: 1}, {name: 2, value: a}, {name: 3}, {name: 3}]",
        "mergingList: [{name: 1, $patch: delete}, {name: 3, $patch: delete}]",
        "mergingList: [{name: 2, value: a}]",
    ),
    (
        "retainKeys map merge an empty map",
        "retainKeysMap: {name: foo, value: a}",
        "retainKeysMap: {}",
        "retainKeysMap: {name: foo, value: a}",
    ),
    (
        "retainKeys list can delete a field when no retainKeys directive present",
        "retainKeysMergingList: [{name: bar}, {name: foo, value: a}]",
        "retainKeysMergingList: [{name: foo, value: null}]",
        "retainKeysMergingList: [{name: bar}, {name: foo}]",
    ),
    (
        "preserve the order from the patch in a merging list",
        "mergingList: [{name: 1}, {name: 2, value: b}, {name: 3}]",
        "mergingList: [{name: 3, value: c}, {name: 1, value: a}, {name: 2, other: x}]",
        "mergingList: [{name: 3, value: c}, {name: 1, value: a}, {name: 2, value: b, other: x}]",
    ),
    (
        "preserve the order from the patch in a merging list 2",
        "mergingList: [{name: 1}, {name: 2, value: b}, {name: 3}]",
        "mergingList: [{name: 3, value: c}, {name: 1, value: a}]",
        "mergingList: [{name: 2, value: b}, {name: 3, value: c}, {name: 1, value: a}]",
    ),
    (
        "preserve the order from the patch in a merging int list",
        "mergingIntList: [1, 2, 3]",
        "mergingIntList: [3, 1, 2]",
        "mergingIntList: [3, 1, 2]",
    ),
    (
        "preserve the order from the patch in a merging int list 2",
        "mergingIntList: [1, 2, 3]",
        "mergingIntList: [3, 1]",
        "mergingIntList: [2, 3, 1]",
    ),
    (
        "$setElementOrder contains item that is not present in the list to be merged",
        "mergingList: [{name: 1}, {name: 3}]",
        "{$setElementOrder/mergingList: [{name: 3}, {name: 2}, {name: 1}], mergingList: [{name: 3, value: 3}, {name: 1, value: 1}]}",
        "mergingList: [{name: 3, value: 3}, {name: 1, value: 1}]",
    ),
    (
        "$setElementOrder contains item that is not present in the int list to be merged",
        "mergingIntList: [1, 3]",
        "$setElementOrder/mergingIntList: [3, 2, 1]",
        "mergingIntList: [3, 1]",
    ),
    (
        "$deleteFromPrimitiveList of nonexistent item in primitive list should not add the item to the list",
        "mergingIntList: [1, 2]",
        "$deleteFromPrimitiveList/mergingIntList: [3]",
        "mergingIntList: [1, 2]",
    ),
    (
        "$deleteFromPrimitiveList on nonexistent primitive list should not add the primitive list",
        "foo: [bar]",
        "$deleteFromPrimitiveList/mergingIntList: [3]",
        "foo: [bar]",
    ),
    (
        "$deleteFromPrimitiveList should delete item from a list without merge patch strategy",
        "nonMergingIntList: [1, 2, 3]",
        "$deleteFromPrimitiveList/nonMergingIntList: [2]",
        "nonMergingIntList: [1, 3]",
    ),
    (
        "nested patch merge with empty list",
        "{name: hi, mergingList: [{name: hello2}]}",
        "{$setElementOrder/mergingList: [{name: hello}, {name: doesntexist}], mergingList: [{name: hello}]}",
        "{name: hi, mergingList: [{name: hello}, {name: hello2}]}",
    ),
    (
        "delete all duplicate items in lists of scalars",
        "mergingIntList: [1, 2, 3, 3, 4]",
        "{$setElementOrder/mergingIntList: [1, 2], $deleteFromPrimitiveList/mergingIntList: [3]}",
        "mergingIntList: [1, 2, 4]",
    ),
    (
        "merge lists of maps",
        "mergingList: [{name: 1, other: a}, {name: 2, value: 2, other: b}]",
        "{$setElementOrder/mergingList: [{name: 4}, {name: 1}, {name: 2}, {name: 3}], mergingList: [{name: 4, value: 4}, {name: 3, value: 3}]}",
        "mergingList: [{name: 4, value: 4}, {name: 1, other: a}, {name: 2, value: 2, other: b}, {name: 3, value: 3}]",
    ),
    (
        "add field to map in merging list with conflict",
        "mergingList: [{name: 1, other: a}, {name: 3, value: 2, other: b}]",
        "{$setElementOrder/mergingList: [{name: 1}, {name: 2}], mergingList: [{name: 1, value: 1}, {name: 2, value: 2}]}",
        "mergingList: [{name: 1, value: 1, other: a}, {name: 2, value: 2}, {name: 3, value: 2, other: b}]",
    ),
    (
        "delete missing map from merging list with conflict",
        "mergingList: [{name: 3, other: a}]",
        "{$setElementOrder/mergingList: [{name: 2}], mergingList: [{name: 2}, {name: 1, $patch: delete}]}",
        "mergingList: [{name: 2}, {name: 3, other: a}]",
    ),
    (
        # The server-only item 4 lands before 3: Go's in-place delete/append rewrote the server order.
        "add map and delete map from merging list",
        "mergingList: [{name: 1}, {name: 2, other: b}, {name: 4, other: c}]",
        "{$setElementOrder/mergingList: [{name: 2}, {name: 3}], mergingList: [{name: 3}, {name: 1, $patch: delete}]}",
        "mergingList: [{name: 2, other: b}, {name: 4, other: c}, {name: 3}]",
    ),
    (
        "add map and delete map from merging list with conflict",
        "mergingList: [{name: 1, other: a}, {name: 4, other: c}]",
        "{$setElementOrder/mergingList: [{name: 2}, {name: 3}], mergingList: [{name: 2}, {name: 3}, {name: 1, $patch: delete}]}",
        "mergingList: [{name: 4, other: c}, {name: 2}, {name: 3}]",
    ),
    (
        "add field to map in merging list nested in merging list with deletion conflict",
        "mergingList: [{name: 1, other: a, mergingList: [{name: 2, value: 2, other: d}]}, {name: 2, other: b}]",
        """
        $setElementOrder/mergingList: [{name: 1}, {name: 2}]
        mergingList:
          - $setElementOrder/mergingList: [{name: 2}, {name: 1}]
            name: 1
            mergingList: [{name: 1, value: 1}]
        """,
        "mergingList: [{name: 1, other: a, mergingList: [{name: 2, value: 2, other: d}, {name: 1, value: 1}]}, {name: 2, other: b}]",
    ),
    (
        "add map to merging list by pointer",
        "mergeItemPtr: [{name: 1, other: a}, {name: 3}]",
        "{$setElementOrder/mergeItemPtr: [{name: 1}, {name: 2}], mergeItemPtr: [{name: 2}]}",
        "mergeItemPtr: [{name: 1, other: a}, {name: 2}, {name: 3}]",
    ),
    (
        "add an item in a list of primitives and preserve order",
        "mergingIntList: [1, 4, 2]",
        "{$setElementOrder/mergingIntList: [3, 1, 2], mergingIntList: [3]}",
        "mergingIntList: [3, 1, 4, 2]",
    ),
    (
        "add and delete an item in a list and preserve order",
        "mergingList: [{name: 1, other: a}, {name: 2, value: 2, other: b}, {name: 3, value: 3}]",
        "{$setElementOrder/mergingList: [{name: 4}, {name: 2}, {name: 1}], mergingList: [{name: 4, value: 4}, {name: 3, $patch: delete}]}",
        "mergingList: [{name: 4, value: 4}, {name: 2, value: 2, other: b}, {name: 1, other: a}]",
    ),
    (
        "set elements order in a list with server-only items 3",
        "mergingList: [{name: 1, other: a}, {name: 2, value: 2}, {name: 7}, {name: 9}, {name: 8}, {name: 3, value: 3}, {name: 4, value: 4}]",
        "$setElementOrder/mergingList: [{name: 2}, {name: 1}, {name: 4}, {name: 3}]",
        "mergingList: [{name: 2, value: 2}, {name: 1, other: a}, {name: 7}, {name: 9}, {name: 8}, {name: 4, value: 4}, {name: 3, value: 3}]",
    ),
    (
        "set elements order in a int list with server-only items 2",
        "mergingIntList: [1, 2, 9, 3, 4]",
        "$setElementOrder/mergingIntList: [2, 1, 4, 3]",
        "mergingIntList: [2, 1, 9, 4, 3]",
    ),
    (
        "behavior of set element order for a merging list with duplicate",
        "mergingList: [{name: 1}, {name: 2, value: dup1}, {name: 3}, {name: 2, value: dup2}, {name: 4}]",
        "$setElementOrder/mergingList: [{name: 2}, {name: 1}, {name: 4}, {name: 3}, {name: 2}]",
        "mergingList: [{name: 2, value: dup1}, {name: 2, value: dup2}, {name: 1}, {name: 4}, {name: 3}]",
    ),
    (
        "retainKeys map should clear defaulted field with conflict (discriminated union)",
        "retainKeysMap: {name: type1, value: foo}",
        "retainKeysMap: {$retainKeys: [name, other], name: type2, other: bar}",
        "retainKeysMap: {name: type2, other: bar}",
    ),
    (
        "retainKeys map adds a field in a nested map",
        "retainKeysMap: {name: foo, value: bar, simpleMap: {key1: a, key3: c}}",
        "retainKeysMap: {$retainKeys: [name, simpleMap, value], simpleMap: {key2: b}}",
        "retainKeysMap: {name: foo, value: bar, simpleMap: {key1: a, key2: b, key3: c}}",
    ),
    (
        "retainKeys map deletes nested merging int list",
        "retainKeysMap: {name: foo, mergingIntList: [1, 2, 3]}",
        "retainKeysMap: {$retainKeys: [name], mergingIntList: null}",
        "retainKeysMap: {name: foo}",
    ),
    (
        "retainKeys map deletes an item in nested merging list",
        "retainKeysMap: {name: foo, mergingList: [{name: a}, {name: b}, {name: x}]}",
        "retainKeysMap: {$retainKeys: [mergingList, name], $setElementOrder/mergingList: [{name: a}], mergingList: [{name: b, $patch: delete}]}",
        "retainKeysMap: {name: foo, mergingList: [{name: a}, {name: x}]}",
    ),
    (
        "retainKeys list of maps clears a field",
        "retainKeysMergingList: [{name: bar}, {name: foo, value: a, other: x}]",
        "{$setElementOrder/retainKeysMergingList: [{name: bar}, {name: foo}], retainKeysMergingList: [{$retainKeys: [name, value], name: foo}]}",
        "retainKeysMergingList: [{name: bar}, {name: foo, value: a}]",
    ),
    (
        "delete and reorder in one list, reorder in another",
        "{mergingList: [{name: a, value: a}, {name: b, value: b}], mergeItemPtr: [{name: c, value: c}, {name: d, value: d}]}",
        "{$setElementOrder/mergingList: [{name: b}], $setElementOrder/mergeItemPtr: [{name: d}, {name: c}], mergingList: [{$patch: delete, name: a}]}",
        "{mergingList: [{name: b, value: b}], mergeItemPtr: [{name: d, value: d}, {name: c, value: c}]}",
    ),
    (
        "replace RawExtension field and merge list",
        "{name: my-object, mergingList: [{name: 1}, {name: 3}], replacingItem: {Some: Generic, Field: Period}}",
        "{$setElementOrder/mergingList: [{name: 1}, {name: 2}], mergingList: [{name: 2}], replacingItem: {Newly: Modified}}",
        "{name: my-object, mergingList: [{name: 1}, {name: 2}, {name: 3}], replacingItem: {Newly: Modified}}",
    ),
]


@pytest.mark.parametrize(
    ("description", "current", "patch", "expected"), UPSTREAM_CASES, ids=[c[0] for c in UPSTREAM_CASES]
)
def test_smp_upstream_cases(description: str, current: str, patch: str, expected: str) -> None:
    result = strategic_merge_patch(Y(current), Y(patch), MERGE_ITEM)
    assert json.dumps(result, sort_keys=True) == json.dumps(Y(expected), sort_keys=True), description
    assert not list(directive_keys(result))


@pytest.mark.parametrize(
    ("current", "patch", "code", "reason", "message"),
    [
        # patch_test.go: "should check if order in $setElementOrder and patch list match"
        (
            "mergingList: [{name: 1}, {name: 3}, {name: 2}]",
            "{$setElementOrder/mergingList: [{name: 1}, {name: 2}, {name: 3}], mergingList: [{name: 3, value: 3}, {name: 1, value: 1}]}",
            500,
            "",
            "The order in patch list:\n[map[name:3 value:3] map[name:1 value:1]]\n doesn't match $setElementOrder list:\n"
            "[map[name:1] map[name:2] map[name:3]]\n",
        ),
        (
            "mergingIntList: [1, 3, 2]",
            "{$setElementOrder/mergingIntList: [1, 2, 3], mergingIntList: [3, 1]}",
            500,
            "",
            "The order in patch list:\n[3 1]\n doesn't match $setElementOrder list:\n[1 2 3]\n",
        ),
        # "missing merge key should error out"
        (
            "mergingList: [{name: 1, value: a}]",
            "mergingList: [{value: b}]",
            500,
            "",
            "map: map[value:b] does not contain declared merge key: name",
        ),
        # interpretStrategicMergePatchError: the mergepatch format errors are 400s...
        ("{}", "$retainKeys: name", 400, "BadRequest", "invalid patch format of retainKeys"),
        (
            "{name: a}",
            "{$retainKeys: [value], name: b}",
            400,
            "BadRequest",
            "invalid patch format of retainKeys",
        ),
        ("{}", "$setElementOrder: []", 400, "BadRequest", "invalid patch format of setElementOrder list"),
        (
            "{}",
            "$setElementOrderX/mergingList: []",
            400,
            "BadRequest",
            "invalid patch format of setElementOrder list",
        ),
        (
            "mergingIntList: [1]",
            "$deleteFromPrimitiveList: [1]",
            400,
            "BadRequest",
            "invalid patch format of primitive list",
        ),
        # ...lists of lists a 422 with the generic message...
        ("nonMergingIntList: [1]", "mergingIntList: [[1]]", None, None, None),
        ("mergingIntList: [[1]]", "mergingIntList: [[2]]", 422, "Invalid", GENERIC_422),
        # ...and anything else a 500 with the Go error as message.
        (
            "mergingIntList: [1]",
            "mergingIntList: ['1']",
            500,
            "",
            "list element types are not identical: [[1] [1]]",
        ),
        (
            "mergingList: [{name: 1}]",
            "mergingList: [{name: 1, $patch: merge}]",
            500,
            "",
            "merging lists cannot yet be specified in the patch",
        ),
        (
            "mergingList: [{name: 1}]",
            "mergingList: [{$patch: delete}]",
            500,
            "",
            "map: map[$patch:delete] does not contain declared merge key: name",
        ),
        (
            "simpleMap: {a: b}",
            "simpleMap: {$patch: merge}",
            500,
            "",
            "unknown patch type: merge in map: map[$patch:merge]",
        ),
        (
            "simpleMap: {a: b}",
            "simpleMap: {$patch: 1}",
            500,
            "",
            "unknown patch type: %!s(int64=1) in map: map[$patch:1]",
        ),
        (
            "mergingList: [{name: 1}]",
            "mergingList: [{name: 1, $patch: frob}]",
            500,
            "",
            "unknown patch type: frob in map: map[$patch:frob name:1]",
        ),
        (
            "mergingList: [{name: 1}]",
            "$setElementOrder/mergingList: oops",
            500,
            "",
            "expected a []interface {}, but received a string",
        ),
        (
            "{nope: {a: 1}}",
            "nope: {b: 2}",
            500,
            "",
            'unable to find api field in struct  for the json field "nope"',
        ),
    ],
)
def test_smp_errors(
    current: str, patch: str, code: int | None, reason: str | None, message: str | None
) -> None:
    if code is None:  # no error: a list of lists replacing a list without merge strategy is fine
        strategic_merge_patch(Y(current), Y(patch), MERGE_ITEM)
        return
    assert reason is not None
    with raises_patch_error(code, reason, message):
        strategic_merge_patch(Y(current), Y(patch), MERGE_ITEM)


# =============================================================================================
# Strategic merge patch on real kinds
# =============================================================================================


def _pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-0",
            "namespace": "default",
            "labels": {"app": "web", "tier": "fe"},
            "finalizers": ["a.example.com/x", "b.example.com/y"],
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "name": "web",
                    "uid": "u-1",
                    "controller": True,
                },
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "app:1",
                    "args": ["--a", "--b"],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                },
                {"name": "sidecar", "image": "side:1"},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "affinity": {"nodeAffinity": {}},
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False"},
            ],
        },
    }


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in pod["spec"]["containers"] if c["name"] == name)
    return found


def test_smp_containers_merge_by_name() -> None:
    patch = {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}
    result = strategic_merge_patch(_pod(), patch, POD)
    assert [c["name"] for c in result["spec"]["containers"]] == ["app", "sidecar"]
    assert _container(result, "app")["image"] == "app:2"
    assert _container(result, "app")["env"] == _pod()["spec"]["containers"][0]["env"]
    assert _container(result, "sidecar") == {"name": "sidecar", "image": "side:1"}


def test_smp_new_list_item_goes_before_server_only_items() -> None:
    # mergeSortedSlice: a patch item the live list does not order comes first.
    patch = {"spec": {"containers": [{"name": "debug", "image": "busybox"}]}}
    result = strategic_merge_patch(_pod(), patch, POD)
    assert [c["name"] for c in result["spec"]["containers"]] == ["debug", "app", "sidecar"]


def test_smp_nested_lists_merge_by_their_keys() -> None:
    patch = {
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                    "ports": [{"containerPort": 80, "name": "http"}],
                    "volumeMounts": [{"mountPath": "/data", "readOnly": True}],
                    "args": ["--c"],
                }
            ]
        }
    }
    app = _container(strategic_merge_patch(_pod(), patch, POD), "app")
    assert app["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "3"},
        {"name": "C", "value": "4"},
    ]
    assert app["ports"] == [{"containerPort": 80, "protocol": "TCP", "name": "http"}]  # by containerPort
    assert app["volumeMounts"] == [{"name": "data", "mountPath": "/data", "readOnly": True}]  # by mountPath
    assert app["args"] == ["--c"]  # atomic list: replaced


def test_smp_merge_key_values_compare_with_go_types() -> None:
    # findMapInSliceBasedOnKeyValue compares interface{} values: int64(80) != float64(80).
    patch = {"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80.0, "name": "f"}]}]}}
    ports = _container(strategic_merge_patch(_pod(), patch, POD), "app")["ports"]
    assert ports == [{"containerPort": 80.0, "name": "f"}, {"containerPort": 80, "protocol": "TCP"}]


def test_smp_lists_without_strategy_are_replaced() -> None:
    patch = {"spec": {"tolerations": [{"key": "other", "operator": "Exists"}]}}
    result = strategic_merge_patch(_pod(), patch, POD)
    assert result["spec"]["tolerations"] == [{"key": "other", "operator": "Exists"}]


def test_smp_maps_merge_and_null_deletes() -> None:
    patch = {"metadata": {"labels": {"tier": None, "new": "1", "absent": None}}, "spec": {"affinity": None}}
    result = strategic_merge_patch(_pod(), patch, POD)
    assert result["metadata"]["labels"] == {"app": "web", "new": "1"}
    assert "affinity" not in result["spec"]
    assert "absent" not in result["metadata"]["labels"]


def test_smp_conditions_merge_by_type() -> None:
    patch = {
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}]
        }
    }
    result = strategic_merge_patch(_pod(), patch, POD)
    assert result["status"]["conditions"] == [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Ready", "status": "True"},
        {"type": "Initialized", "status": "True"},
    ]
    assert result["status"]["phase"] == "Running"


def test_smp_pvc_conditions_and_atomic_access_modes() -> None:
    pvc = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound", "conditions": [{"type": "Resizing", "status": "True"}]},
    }
    patch = {
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "2Gi"}}},
        "status": {
            "conditions": [
                {"type": "Resizing", "$patch": "delete"},
                {"type": "FileSystemResizePending", "status": "True"},
            ]
        },
    }
    result = strategic_merge_patch(pvc, patch, PVC)
    assert result["spec"] == {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "2Gi"}}}
    assert result["status"]["conditions"] == [{"type": "FileSystemResizePending", "status": "True"}]


def test_smp_owner_references_merge_by_uid() -> None:
    new_owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u-2"}
    result = strategic_merge_patch(_pod(), {"metadata": {"ownerReferences": [new_owner]}}, POD)
    assert [o["uid"] for o in result["metadata"]["ownerReferences"]] == ["u-2", "u-1"]
    patch = {"metadata": {"ownerReferences": [{"uid": "u-1", "$patch": "delete"}, new_owner]}}
    result = strategic_merge_patch(_pod(), patch, POD)
    assert result["metadata"]["ownerReferences"] == [new_owner]


def test_smp_finalizers_union_and_delete_from_primitive_list() -> None:
    patch = {"metadata": {"finalizers": ["c.example.com/z", "a.example.com/x"]}}
    result = strategic_merge_patch(_pod(), patch, POD)
    # union without duplicates; patch items in patch order, interleaved with server-only ones
    assert result["metadata"]["finalizers"] == ["c.example.com/z", "a.example.com/x", "b.example.com/y"]
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example.com/x", "not-there"]}}
    result = strategic_merge_patch(_pod(), patch, POD)
    assert result["metadata"]["finalizers"] == ["b.example.com/y"]
    # a deletion list for a field the object lacks adds nothing
    no_such_list: dict[str, Any] = {"spec": {"$deleteFromPrimitiveList/imagePullSecrets": [1]}}
    assert strategic_merge_patch(_pod(), no_such_list, POD) == _pod()


def test_smp_statefulset_template_containers() -> None:
    sts = {
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 3,
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "containers": [{"name": "db", "image": "pg:15", "env": [{"name": "X", "value": "1"}]}]
                },
            },
            "volumeClaimTemplates": [
                {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}
            ],
        },
    }
    patch = {
        "spec": {
            "replicas": 5,
            "template": {"spec": {"containers": [{"name": "db", "env": [{"name": "Y", "value": "2"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "logs"}}],
        }
    }
    result = strategic_merge_patch(sts, patch, STATEFULSET)
    assert result["spec"]["replicas"] == 5
    db = result["spec"]["template"]["spec"]["containers"][0]
    assert db == {
        "name": "db",
        "image": "pg:15",
        "env": [{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}],
    }
    assert result["spec"]["volumeClaimTemplates"] == [{"metadata": {"name": "logs"}}]  # atomic


def test_smp_volumes_retain_keys() -> None:
    # PodSpec.volumes is "merge,retainKeys": kubectl sends $retainKeys to switch the volume source.
    patch = {
        "spec": {
            "volumes": [{"name": "data", "$retainKeys": ["configMap", "name"], "configMap": {"name": "cfg"}}]
        }
    }
    result = strategic_merge_patch(_pod(), patch, POD)
    assert result["spec"]["volumes"] == [{"name": "data", "configMap": {"name": "cfg"}}]


def test_smp_kubectl_apply_patch() -> None:
    """The shape of patch ``kubectl apply`` computes (CreateThreeWayMergePatch) for a Deployment."""
    live = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": '{"old": true}',
                "deployment.kubernetes.io/revision": "3",
            },
        },
        "spec": {
            "replicas": 2,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.25",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        },
                        {"name": "injected-proxy", "image": "proxy:1"},  # added by a webhook
                    ]
                },
            },
        },
    }
    patch = {
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": '{"new": true}'}},
        "spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None},
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "web"}],
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.26",
                            "$setElementOrder/env": [{"name": "C"}, {"name": "B"}],
                            "env": [{"name": "C", "value": "3"}, {"name": "A", "$patch": "delete"}],
                        }
                    ],
                }
            },
        },
    }
    result = strategic_merge_patch(live, patch, DEPLOYMENT)
    assert not list(directive_keys(result))
    assert result["metadata"]["annotations"] == {
        "kubectl.kubernetes.io/last-applied-configuration": '{"new": true}',
        "deployment.kubernetes.io/revision": "3",
    }
    assert result["spec"]["strategy"] == {"type": "Recreate"}
    containers = result["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web", "injected-proxy"]
    assert containers[0] == {
        "name": "web",
        "image": "nginx:1.26",
        "env": [{"name": "C", "value": "3"}, {"name": "B", "value": "2"}],
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
    }
    assert result["spec"]["replicas"] == 2


def test_smp_set_element_order_reorders_without_content() -> None:
    patch = {"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]}}
    result = strategic_merge_patch(_pod(), patch, POD)
    assert [c["name"] for c in result["spec"]["containers"]] == ["sidecar", "app"]
    order: dict[str, Any] = {
        "metadata": {"$setElementOrder/finalizers": ["b.example.com/y", "a.example.com/x"]}
    }
    assert strategic_merge_patch(_pod(), order, POD)["metadata"]["finalizers"] == [
        "b.example.com/y",
        "a.example.com/x",
    ]


def test_smp_replace_directive() -> None:
    # on a map: the patch map replaces the live one
    result = strategic_merge_patch(_pod(), {"metadata": {"labels": {"$patch": "replace", "only": "me"}}}, POD)
    assert result["metadata"]["labels"] == {"only": "me"}
    # in a merging list: the other patch items replace the whole list
    patch = {"spec": {"containers": [{"$patch": "replace"}, {"name": "solo", "image": "s:1"}]}}
    result = strategic_merge_patch(_pod(), patch, POD)
    assert result["spec"]["containers"] == [{"name": "solo", "image": "s:1"}]
    # at the root
    assert strategic_merge_patch(_pod(), {"$patch": "replace", "kind": "Pod"}, POD) == {"kind": "Pod"}


def test_smp_delete_directive() -> None:
    result = strategic_merge_patch(_pod(), {"spec": {"affinity": {"$patch": "delete"}}}, POD)
    assert result["spec"]["affinity"] == {}  # handleDirectiveInMergeMap: an empty map, not removal
    result = strategic_merge_patch(
        _pod(), {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}, POD
    )
    assert [c["name"] for c in result["spec"]["containers"]] == ["app"]
    # a directive on a value the object does not have is dropped (removeDirectives)
    result = strategic_merge_patch(
        _pod(), {"spec": {"dnsConfig": {"$patch": "delete"}, "hostname": "h"}}, POD
    )
    assert "dnsConfig" not in result["spec"]
    assert result["spec"]["hostname"] == "h"


def test_smp_new_values_are_cleaned_of_nulls_and_directives() -> None:
    # mergeMap: a value the object does not have goes through discardNullValuesFromPatch and
    # removeDirectives.
    patch = {
        "spec": {
            "securityContext": {"runAsUser": 1000, "fsGroup": None, "seLinuxOptions": {"$patch": "delete"}},
        }
    }
    result = strategic_merge_patch(_pod(), patch, POD)
    assert result["spec"]["securityContext"] == {"runAsUser": 1000}


def test_smp_type_change_replaces_value() -> None:
    result = strategic_merge_patch(
        {"metadata": {"labels": "oops"}}, {"metadata": {"labels": {"a": "b", "c": None}}}, POD
    )
    assert result == {"metadata": {"labels": {"a": "b"}}}


def test_smp_schema_lookup_failures_are_500() -> None:
    # forkedjson.LookupPatchMetadataForStruct fails where the apiserver's Go struct has no such field
    # or is not a struct; the plain error becomes a 500 (responsewriters.ErrorToAPIStatus).
    with raises_patch_error(500, "", 'unable to find api field in struct PodSpec for the json field "foo"'):
        strategic_merge_patch({"spec": {"foo": {"a": 1}}}, {"spec": {"foo": {"b": 2}}}, POD)
    with raises_patch_error(
        500, "", "merging an object in json but data type is not struct, instead is: map"
    ):
        strategic_merge_patch({"spec": {"extra": {"k": ["a"]}}}, {"spec": {"extra": {"k": ["b"]}}}, CSR)
    with raises_patch_error(
        500, "", 'unable to find api field in struct RawExtension for the json field "spec"'
    ):
        strategic_merge_patch({"data": {"spec": {"a": 1}}}, {"data": {"spec": {"b": 2}}}, CONTROLLER_REVISION)
    # fields the object does not have yet need no lookup: they are added for validation to judge
    result = strategic_merge_patch({"spec": {}}, {"spec": {"foo": {"b": 2}}}, POD)
    assert result == {"spec": {"foo": {"b": 2}}}
    # scalars inside maps need no lookup either
    result = strategic_merge_patch({"spec": {"extra": {"k": ["a"]}}}, {"spec": {"extra": {"j": ["b"]}}}, CSR)
    assert result == {"spec": {"extra": {"k": ["a"], "j": ["b"]}}}


def test_smp_without_schema_merges_maps_and_replaces_lists() -> None:
    obj = {"spec": {"items": [{"name": "a"}], "config": {"x": 1, "y": {"z": 2}}}}
    patch = {"spec": {"items": [{"name": "b"}], "config": {"x": None, "y": {"w": 3}}}}
    assert strategic_merge_patch(obj, patch, None) == {
        "spec": {"items": [{"name": "b"}], "config": {"y": {"z": 2, "w": 3}}}
    }
    # directives still apply
    patch = {
        "spec": {
            "config": {"$patch": "replace", "only": 1},
            "$deleteFromPrimitiveList/items": [{"name": "a"}],
        }
    }
    with raises_patch_error(500, "", "cannot merge lists without merge key for unknown"):
        strategic_merge_patch(obj, patch, None)
    patch = {"spec": {"config": {"$patch": "replace", "only": 1}}}
    assert strategic_merge_patch(obj, patch, None) == {
        "spec": {"items": [{"name": "a"}], "config": {"only": 1}}
    }


def test_smp_null_and_empty_patches() -> None:
    assert strategic_merge_patch(_pod(), None, POD) == _pod()
    assert strategic_merge_patch(_pod(), {}, POD) == _pod()
    # an empty merging list is a no-op (use $patch: replace to clear one)
    assert strategic_merge_patch(_pod(), {"spec": {"containers": []}}, POD) == _pod()
    with raises_patch_error(
        400, "BadRequest", "json: cannot unmarshal array into Go value of type map[string]interface {}"
    ):
        strategic_merge_patch(_pod(), [], POD)


def test_smp_does_not_mutate_inputs() -> None:
    pod = _pod()
    patch = {
        "metadata": {"labels": {"app": None}, "$setElementOrder/finalizers": ["b.example.com/y"]},
        "spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
            "containers": [{"name": "app", "image": "x", "env": [{"name": "A", "$patch": "delete"}]}],
        },
    }
    before = copy.deepcopy((pod, patch))
    result = strategic_merge_patch(pod, patch, POD)
    assert (pod, patch) == before
    _container(result, "app")["image"] = "changed"
    assert (pod, patch) == before


# =============================================================================================
# Properties
# =============================================================================================

KEYS = st.text(alphabet="abcxyz", min_size=1, max_size=3)
# An explicit alphabet (with escapes, HTML-ish and non-ASCII characters) keeps generation fast.
TEXT = st.text(alphabet='ab ~/"\\<&\n\u00e9\u2028\U0001f600', max_size=5)
NON_NULL_SCALARS = (
    st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | TEXT
)
SCALARS = st.none() | NON_NULL_SCALARS


def _json(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
        max_leaves=12,
    )


JSON_VALUES = _json(SCALARS)
NULL_FREE = _json(NON_NULL_SCALARS)
OBJECTS = st.dictionaries(KEYS, JSON_VALUES, max_size=4)
NULL_FREE_OBJECTS = st.dictionaries(KEYS, NULL_FREE, max_size=4)


def _merge_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """A merge patch turning ``a`` into ``b`` (evanphx CreateMergePatch's getDiff)."""
    diff: dict[str, Any] = {}
    for k, bv in b.items():
        av = a.get(k, ...)
        if isinstance(av, dict) and isinstance(bv, dict):
            sub = _merge_diff(av, bv)
            if sub:
                diff[k] = sub
        elif av is ... or type(av) is not type(bv) or av != bv:
            diff[k] = bv
    for k in a:
        if k not in b:
            diff[k] = None
    return diff


@given(NULL_FREE_OBJECTS, NULL_FREE_OBJECTS)
def test_merge_patch_of_a_diff_reproduces_the_target(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert json_merge_patch(a, _merge_diff(a, b)) == b


@given(OBJECTS)
def test_smp_empty_patch_is_identity_without_schema(obj: dict[str, Any]) -> None:
    assert strategic_merge_patch(obj, {}, None) == obj


_NAMES = st.text(alphabet="abcdef", min_size=1, max_size=4)
_ENV = st.lists(
    st.fixed_dictionaries({"name": _NAMES, "value": TEXT}), max_size=3, unique_by=lambda e: e["name"]
)
_CONTAINERS = st.lists(
    st.fixed_dictionaries(
        {"name": _NAMES, "image": st.text(alphabet="abc:1", min_size=1, max_size=5)}, optional={"env": _ENV}
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda c: str(c["name"]),
)
PODS = st.fixed_dictionaries(
    {
        "metadata": st.fixed_dictionaries(
            {"name": _NAMES},
            optional={
                "labels": st.dictionaries(_NAMES, TEXT, max_size=3),
                "finalizers": st.lists(_NAMES, unique=True, max_size=3),
            },
        ),
        "spec": st.fixed_dictionaries({"containers": _CONTAINERS}),
    }
)


@given(PODS)
def test_smp_empty_patch_is_identity_on_pods(pod: dict[str, Any]) -> None:
    assert strategic_merge_patch(pod, {}, POD) == pod


@given(PODS, PODS)
@settings(max_examples=50)
def test_smp_patching_containers_by_name_keeps_every_container(
    pod: dict[str, Any], other: dict[str, Any]
) -> None:
    patch = {"spec": {"containers": other["spec"]["containers"]}}
    result = strategic_merge_patch(pod, patch, POD)
    names = [c["name"] for c in result["spec"]["containers"]]
    expected = {c["name"] for c in pod["spec"]["containers"]} | {
        c["name"] for c in other["spec"]["containers"]
    }
    assert sorted(names) == sorted(expected)  # merged by key: no duplicates, nothing lost
    for c in other["spec"]["containers"]:
        assert _container(result, c["name"])["image"] == c["image"]


def _patch_values(depth: int = 2) -> st.SearchStrategy[Any]:
    # merge-patch values with no "$" keys and no nulls inside lists (where SMP and RFC 7386 differ)
    return st.recursive(
        SCALARS,
        lambda children: st.lists(NULL_FREE, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
        max_leaves=10,
    )


@given(OBJECTS, st.dictionaries(KEYS, _patch_values(), max_size=4))
def test_smp_without_schema_agrees_with_merge_patch(obj: dict[str, Any], patch: dict[str, Any]) -> None:
    assert strategic_merge_patch(obj, patch, None) == json_merge_patch(obj, patch)


@given(OBJECTS, JSON_VALUES)
def test_json_patch_add_then_remove_is_identity(obj: dict[str, Any], value: Any) -> None:
    key = "new/key~"
    assert key not in obj
    pointer = "/" + key.replace("~", "~0").replace("/", "~1")
    added = json_patch(obj, [{"op": "add", "path": pointer, "value": value}])
    assert added[key] == value
    assert json_patch(added, [{"op": "remove", "path": pointer}]) == obj


def _pointers(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    yield prefix, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _pointers(v, prefix + "/" + k.replace("~", "~0").replace("/", "~1"))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _pointers(v, f"{prefix}/{i}")


@given(st.dictionaries(st.text(alphabet="a/~b", min_size=1, max_size=3), JSON_VALUES, max_size=4))
def test_json_patch_test_op_accepts_every_value_of_the_document(obj: dict[str, Any]) -> None:
    ops = [{"op": "test", "path": p, "value": v} for p, v in _pointers(obj)]
    assert json_patch(obj, ops) == obj


@given(OBJECTS, OBJECTS)
def test_patches_do_not_mutate_their_inputs(obj: dict[str, Any], patch: dict[str, Any]) -> None:
    before = copy.deepcopy((obj, patch))
    json_merge_patch(obj, patch)
    strategic_merge_patch(obj, patch, None)
    json_patch(obj, [{"op": "add", "path": "/p", "value": patch}])
    assert (obj, patch) == before


@given(OBJECTS)
def test_decode_patch_round_trips_json(obj: dict[str, Any]) -> None:
    body = json.dumps(obj).encode()
    assert decode_patch(MERGE_PATCH, body) == obj
    assert decode_patch(STRATEGIC_MERGE_PATCH, body) == obj


# =============================================================================================
# Differential tests against kubectl: ``kubectl patch --local`` runs the same Go code
# (strategicpatch.StrategicMergePatch with the typed struct, json-patch v4 Apply / MergePatch).
# =============================================================================================


def _kubectl_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "kubectl"
    return str(beside_python) if beside_python.exists() else shutil.which("kubectl")


def _kubectl_patch(obj: dict[str, Any], patch_type: str, patch: Any) -> tuple[Any, str | None]:
    kubectl = _kubectl_binary()
    assert kubectl is not None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "obj.json"
        path.write_text(json.dumps(obj))
        proc = subprocess.run(
            [
                kubectl,
                "patch",
                "--local",
                "-f",
                str(path),
                f"--type={patch_type}",
                "-p",
                json.dumps(patch),
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            env={"KUBECONFIG": os.devnull, "PATH": os.environ.get("PATH", "")},
            check=False,
            timeout=60,
        )
    if proc.returncode:
        return None, proc.stderr.strip()
    return json.loads(proc.stdout), None


def _random_pod_and_patch(rnd: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    names = ["a", "b", "c", "d"]

    def env() -> list[dict[str, Any]]:
        return [{"name": n, "value": str(rnd.randint(0, 9))} for n in rnd.sample(names, rnd.randint(0, 3))]

    def container(name: str) -> dict[str, Any]:
        c: dict[str, Any] = {"name": name, "image": f"{name}:{rnd.randint(1, 3)}"}
        if rnd.random() < 0.6:
            c["env"] = env()
        if rnd.random() < 0.3:
            c["ports"] = [{"containerPort": p} for p in rnd.sample([80, 443, 8080], rnd.randint(1, 2))]
        return c

    def list_patch(field: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for _ in range(rnd.randint(0, 3)):
            name, r = rnd.choice(names), rnd.random()
            if r < 0.2:
                items.append({"name": name, "$patch": "delete"})
            elif r < 0.25:
                items.append({"$patch": "replace"})
            elif field == "containers":
                item: dict[str, Any] = {"name": name}
                if rnd.random() < 0.6:
                    item["image"] = f"new-{name}"
                if rnd.random() < 0.4:
                    item["env"] = list_patch("env")
                if rnd.random() < 0.3:
                    item["$setElementOrder/env"] = [{"name": x} for x in rnd.sample(names, rnd.randint(0, 4))]
                items.append(item)
            else:
                items.append({"name": name, "value": f"p{rnd.randint(0, 9)}" if rnd.random() < 0.8 else None})
        return items

    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [container(n) for n in rnd.sample(names, rnd.randint(1, 3))]},
    }
    if rnd.random() < 0.7:
        pod["metadata"]["finalizers"] = rnd.sample(["f1", "f2", "f3", "f4"], rnd.randint(1, 3))
    if rnd.random() < 0.7:
        pod["metadata"]["labels"] = {k: "v" for k in rnd.sample(names, rnd.randint(1, 3))}
    if rnd.random() < 0.5:
        pod["spec"]["volumes"] = [{"name": "v1", "emptyDir": {}}]

    metadata: dict[str, Any] = {}
    spec: dict[str, Any] = {}
    if rnd.random() < 0.4:
        metadata["labels"] = {k: rnd.choice(["x", None]) for k in rnd.sample(names, rnd.randint(1, 3))}
        if rnd.random() < 0.2:
            metadata["labels"]["$patch"] = "replace"
    if rnd.random() < 0.4:
        metadata["finalizers"] = rnd.sample(["f1", "f2", "f3", "f5"], rnd.randint(0, 3))
    if rnd.random() < 0.3:  # never also added: upstream applies the two in random (map) order
        gone = rnd.sample(["f1", "f2", "f5"], rnd.randint(1, 2))
        metadata["$deleteFromPrimitiveList/finalizers"] = [
            f for f in gone if f not in metadata.get("finalizers", [])
        ]
    if rnd.random() < 0.3:
        metadata["$setElementOrder/finalizers"] = rnd.sample(
            ["f1", "f2", "f3", "f4", "f5"], rnd.randint(0, 5)
        )
    if rnd.random() < 0.8:
        spec["containers"] = list_patch("containers")
    if rnd.random() < 0.4:
        spec["$setElementOrder/containers"] = [{"name": x} for x in rnd.sample(names, rnd.randint(0, 4))]
    if rnd.random() < 0.2:
        spec["volumes"] = [{"name": "v1", "$retainKeys": ["configMap", "name"], "configMap": {"name": "c"}}]
    patch: dict[str, Any] = {}
    if metadata:
        patch["metadata"] = metadata
    if spec:
        patch["spec"] = spec
    return pod, patch


requires_kubectl = pytest.mark.skipif(_kubectl_binary() is None, reason="kubectl not installed")


@pytest.mark.kubectl
@requires_kubectl
def test_smp_matches_kubectl() -> None:
    rnd = random.Random(20240601)
    for _ in range(60):
        pod, patch = _random_pod_and_patch(rnd)
        want, want_error = _kubectl_patch(pod, "strategic", patch)
        try:
            got, got_error = strategic_merge_patch(pod, patch, POD), None
        except PatchError as e:
            got, got_error = None, e
        case = json.dumps({"pod": pod, "patch": patch})
        if want_error is not None or got_error is not None:
            # both fail (which error comes first can depend on Go's map iteration order)
            assert (want_error is None) == (got_error is None), (case, want_error, got_error)
            continue
        assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True), case


@pytest.mark.kubectl
@requires_kubectl
def test_json_patch_and_merge_patch_match_kubectl() -> None:
    rnd = random.Random(20240602)
    keys = ["a", "b", "c/d", "e~f", "0"]

    def value(depth: int = 0) -> Any:
        r = rnd.random()
        if depth > 2 or r < 0.4:
            return rnd.choice([None, True, 1, -3, "s", 1.5])
        if r < 0.7:
            return {k: value(depth + 1) for k in rnd.sample(keys, rnd.randint(0, 3))}
        return [value(depth + 1) for _ in range(rnd.randint(0, 3))]

    def path(doc: Any) -> str:
        pointers = [p for p, _ in _pointers(doc, "/x")]
        chosen = rnd.choice(pointers)
        if rnd.random() < 0.25:
            chosen += "/" + rnd.choice(["zz", "-", "0", "-1", "5", "01"])
        return chosen

    for i in range(60):
        x = value()
        obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "x": x}
        if i % 2:
            patch_type = "json"
            patch: Any = []
            for _ in range(rnd.randint(1, 3)):
                op: dict[str, Any] = {
                    "op": rnd.choice(["add", "remove", "replace", "move", "copy", "test"]),
                    "path": path(x),
                }
                if op["op"] in ("move", "copy"):
                    op["from"] = path(x)
                if op["op"] in ("add", "replace", "test") and rnd.random() < 0.9:
                    op["value"] = value()
                patch.append(op)
        else:
            patch_type, patch = "merge", {"x": value(), "y": value()}
        want, want_error = _kubectl_patch(obj, patch_type, patch)
        try:
            got = json_patch(obj, patch) if patch_type == "json" else json_merge_patch(obj, patch)
            got_error = None
        except PatchError as e:
            got, got_error = None, e
        case = json.dumps({"obj": obj, "patch": patch})
        if want_error is not None or got_error is not None:
            assert (want_error is None) == (got_error is None), (case, want_error, got_error)
            continue
        assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True), case
