"""Tests for kubesim.snapshot_crds: the CSI snapshot API (snapshot.storage.k8s.io/v1) CRDs.

1. Structural checks of kubesim's own CRDs (no external files needed).
2. A cross-check against the upstream CRDs of kubernetes-csi/external-snapshotter
   (``client/config/crd/snapshot.storage.k8s.io_*.yaml``), skipped when the read-only reference
   copy under ``../shared/reference/external-snapshotter`` is absent.
3. Behaviour: the CEL rules reject what a real cluster rejects (through ``kubesim.cel`` directly,
   and through ``kubesim.crdschema`` once that module exists), on inline objects and, when the
   reference copy is present, on the upstream examples.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from kubesim import cel, snapshot_crds
from kubesim.errors import Cause

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
SNAPSHOTTER = REFERENCE / "external-snapshotter"
UPSTREAM_FILES = {
    "VolumeSnapshot": "snapshot.storage.k8s.io_volumesnapshots.yaml",
    "VolumeSnapshotContent": "snapshot.storage.k8s.io_volumesnapshotcontents.yaml",
    "VolumeSnapshotClass": "snapshot.storage.k8s.io_volumesnapshotclasses.yaml",
}
KINDS = list(UPSTREAM_FILES)

Obj = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def by_kind() -> dict[str, Obj]:
    return {crd["spec"]["names"]["kind"]: crd for crd in snapshot_crds.crds()}


def v1(crd: Obj) -> Obj:
    versions = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    assert len(versions) == 1, f"{crd['metadata']['name']}: expected exactly one v1 version"
    version: Obj = versions[0]
    return version


def schema_of(kind: str) -> Obj:
    schema: Obj = v1(by_kind()[kind])["schema"]["openAPIV3Schema"]
    return schema


def walk(node: Obj, path: str = "") -> Iterator[tuple[str, Obj]]:
    """Every schema node with a readable path (``.spec.source``, ``.parameters[*]``)."""
    yield path or ".", node
    for name, sub in (node.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{name}")
    ap = node.get("additionalProperties")
    if isinstance(ap, dict):
        yield from walk(ap, f"{path}[*]")
    items = node.get("items")
    if isinstance(items, dict):
        yield from walk(items, f"{path}[]")


_RECURSED = {"properties", "additionalProperties", "items"}


def flatten(schema: Obj) -> dict[str, dict[str, Any]]:
    """path -> every keyword that affects behaviour; descriptions reduce to "has a description"."""
    out: dict[str, dict[str, Any]] = {}
    for path, node in walk(schema):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            if key in _RECURSED:
                continue
            if key == "description":
                flat["(has description)"] = bool(value)
            elif key == "x-kubernetes-validations":
                flat[key] = sorted(tuple(sorted(rule.items())) for rule in value)
            else:
                flat[key] = value
        if isinstance(node.get("additionalProperties"), bool):
            flat["additionalProperties"] = node["additionalProperties"]
        out[path] = flat
    return out


def columns(version: Obj) -> list[tuple[str, str, str]]:
    return [(c["name"], c["type"], c["jsonPath"]) for c in version.get("additionalPrinterColumns") or []]


def load_upstream(kind: str) -> Obj:
    docs = [d for d in yaml.safe_load_all((SNAPSHOTTER / UPSTREAM_FILES[kind]).read_text()) if d]
    assert len(docs) == 1
    crd: Obj = docs[0]
    return crd


def load_example(name: str) -> Obj:
    docs = [d for d in yaml.safe_load_all((SNAPSHOTTER / name).read_text()) if d]
    assert len(docs) == 1
    obj: Obj = docs[0]
    return obj


def need_reference() -> None:
    if not SNAPSHOTTER.is_dir():
        pytest.skip(
            f"../shared/reference is absent: {SNAPSHOTTER} (the upstream external-snapshotter CRDs and "
            "examples) exists only on the development machine; kubesim itself does not need it"
        )


def summarize(causes: list[Cause]) -> list[tuple[str, str]]:
    return [(c.field, c.message) for c in causes]


# ---------------------------------------------------------------------------------------------
# 1. structure
# ---------------------------------------------------------------------------------------------

EXPECTED_NAMES = {
    "VolumeSnapshot": ("volumesnapshots", "volumesnapshot", ["vs"], "Namespaced"),
    "VolumeSnapshotContent": ("volumesnapshotcontents", "volumesnapshotcontent", ["vsc", "vscs"], "Cluster"),
    "VolumeSnapshotClass": (
        "volumesnapshotclasses",
        "volumesnapshotclass",
        ["vsclass", "vsclasses"],
        "Cluster",
    ),
}

EXPECTED_COLUMNS = {
    "VolumeSnapshot": [
        ("ReadyToUse", "boolean", ".status.readyToUse"),
        ("SourcePVC", "string", ".spec.source.persistentVolumeClaimName"),
        ("SourceSnapshotContent", "string", ".spec.source.volumeSnapshotContentName"),
        ("RestoreSize", "string", ".status.restoreSize"),
        ("SnapshotClass", "string", ".spec.volumeSnapshotClassName"),
        ("SnapshotContent", "string", ".status.boundVolumeSnapshotContentName"),
        ("CreationTime", "date", ".status.creationTime"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ],
    "VolumeSnapshotContent": [
        ("ReadyToUse", "boolean", ".status.readyToUse"),
        ("RestoreSize", "integer", ".status.restoreSize"),
        ("DeletionPolicy", "string", ".spec.deletionPolicy"),
        ("Driver", "string", ".spec.driver"),
        ("VolumeSnapshotClass", "string", ".spec.volumeSnapshotClassName"),
        ("VolumeSnapshot", "string", ".spec.volumeSnapshotRef.name"),
        ("VolumeSnapshotNamespace", "string", ".spec.volumeSnapshotRef.namespace"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ],
    "VolumeSnapshotClass": [
        ("Driver", "string", ".driver"),
        ("DeletionPolicy", "string", ".deletionPolicy"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ],
}

EXPECTED_REQUIRED = {
    "VolumeSnapshot": {".": ["spec"], ".spec": ["source"]},
    "VolumeSnapshotContent": {
        ".": ["spec"],
        ".spec": ["deletionPolicy", "driver", "source", "volumeSnapshotRef"],
    },
    "VolumeSnapshotClass": {".": ["deletionPolicy", "driver"]},
}

EXPECTED_ENUMS = {
    "VolumeSnapshot": {},
    "VolumeSnapshotContent": {".spec.deletionPolicy": ["Delete", "Retain"]},
    "VolumeSnapshotClass": {".deletionPolicy": ["Delete", "Retain"]},
}

EXPECTED_RULES: dict[str, dict[str, set[tuple[str, str]]]] = {
    "VolumeSnapshot": {
        ".spec.source": {
            (
                "!has(oldSelf.persistentVolumeClaimName) || has(self.persistentVolumeClaimName)",
                "persistentVolumeClaimName is required once set",
            ),
            (
                "!has(oldSelf.volumeSnapshotContentName) || has(self.volumeSnapshotContentName)",
                "volumeSnapshotContentName is required once set",
            ),
            (
                "(has(self.volumeSnapshotContentName) && !has(self.persistentVolumeClaimName)) || "
                "(!has(self.volumeSnapshotContentName) && has(self.persistentVolumeClaimName))",
                "exactly one of volumeSnapshotContentName and persistentVolumeClaimName must be set",
            ),
        },
        ".spec.source.persistentVolumeClaimName": {
            ("self == oldSelf", "persistentVolumeClaimName is immutable")
        },
        ".spec.source.volumeSnapshotContentName": {
            ("self == oldSelf", "volumeSnapshotContentName is immutable")
        },
        ".spec.volumeSnapshotClassName": {
            ("size(self) > 0", "volumeSnapshotClassName must not be the empty string when set")
        },
    },
    "VolumeSnapshotContent": {
        ".spec": {
            (
                "!has(oldSelf.sourceVolumeMode) || has(self.sourceVolumeMode)",
                "sourceVolumeMode is required once set",
            )
        },
        ".spec.source": {
            ("!has(oldSelf.volumeHandle) || has(self.volumeHandle)", "volumeHandle is required once set"),
            (
                "!has(oldSelf.snapshotHandle) || has(self.snapshotHandle)",
                "snapshotHandle is required once set",
            ),
            (
                "(has(self.volumeHandle) && !has(self.snapshotHandle)) || "
                "(!has(self.volumeHandle) && has(self.snapshotHandle))",
                "exactly one of volumeHandle and snapshotHandle must be set",
            ),
        },
        ".spec.source.snapshotHandle": {("self == oldSelf", "snapshotHandle is immutable")},
        ".spec.source.volumeHandle": {("self == oldSelf", "volumeHandle is immutable")},
        ".spec.sourceVolumeMode": {("self == oldSelf", "sourceVolumeMode is immutable")},
        ".spec.volumeSnapshotRef": {
            (
                "has(self.name) && has(self.__namespace__)",
                "both spec.volumeSnapshotRef.name and spec.volumeSnapshotRef.namespace must be set",
            )
        },
    },
    "VolumeSnapshotClass": {},
}


def test_three_crds_in_the_snapshot_group() -> None:
    crds = snapshot_crds.crds()
    assert [c["spec"]["names"]["kind"] for c in crds] == KINDS
    for crd in crds:
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["kind"] == "CustomResourceDefinition"
        assert crd["spec"]["group"] == "snapshot.storage.k8s.io" == snapshot_crds.GROUP


@pytest.mark.parametrize("kind", KINDS)
def test_names_scope_and_approval(kind: str) -> None:
    crd = by_kind()[kind]
    plural, singular, short, scope = EXPECTED_NAMES[kind]
    names = crd["spec"]["names"]
    assert names == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": singular,
        "shortNames": short,
    }
    assert crd["metadata"]["name"] == f"{plural}.snapshot.storage.k8s.io"
    assert crd["spec"]["scope"] == scope
    # *.k8s.io groups are protected: the CRD must carry an approved API review link.
    approval = crd["metadata"]["annotations"]["api-approved.kubernetes.io"]
    assert approval.startswith("https://github.com/kubernetes-csi/external-snapshotter/pull/")


@pytest.mark.parametrize("kind", KINDS)
def test_only_v1_served_and_stored(kind: str) -> None:
    versions = by_kind()[kind]["spec"]["versions"]
    assert [(v["name"], v["served"], v["storage"]) for v in versions] == [("v1", True, True)]
    assert "deprecated" not in versions[0]


def test_subresources() -> None:
    crds = by_kind()
    assert v1(crds["VolumeSnapshot"])["subresources"] == {"status": {}}
    assert v1(crds["VolumeSnapshotContent"])["subresources"] == {"status": {}}
    # Upstream VolumeSnapshotClass has no status and `subresources: {}`.
    assert v1(crds["VolumeSnapshotClass"])["subresources"] == {}
    assert "status" not in schema_of("VolumeSnapshotClass")["properties"]


@pytest.mark.parametrize("kind", KINDS)
def test_printer_columns(kind: str) -> None:
    assert columns(v1(by_kind()[kind])) == EXPECTED_COLUMNS[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_structural_and_described(kind: str) -> None:
    schema = schema_of(kind)
    assert schema["type"] == "object"
    assert {"apiVersion", "kind", "metadata"} <= set(schema["properties"])
    # Metadata must be `type: object` only (apiextensions: only name/generateName may be restricted).
    assert schema["properties"]["metadata"] == {"type": "object"}
    forbidden = {"$ref", "anyOf", "oneOf", "allOf", "not", "definitions", "dependencies", "additionalItems"}
    for path, node in walk(schema):
        assert not forbidden & set(node), f"{path}: non-structural keyword"
        if node.get("x-kubernetes-int-or-string"):
            assert node.get("type") in (None, "string", "integer"), path
        else:
            assert node.get("type") in {"object", "string", "integer", "boolean", "number", "array"}, path
        if node.get("type") == "object" and path not in (".metadata",):
            assert "properties" in node or "additionalProperties" in node, f"{path}: object without fields"
        for req in node.get("required") or []:
            assert req in node["properties"], f"{path}: required {req!r} is not a property"
        described = path not in (".metadata",) and not path.endswith("[*]")
        if described:
            description = node.get("description")
            assert isinstance(description, str), f"{path}: no description"
            assert description.strip(), f"{path}: empty description"


@pytest.mark.parametrize("kind", KINDS)
def test_required_and_enums(kind: str) -> None:
    nodes = dict(walk(schema_of(kind)))
    assert {p: n["required"] for p, n in nodes.items() if "required" in n} == EXPECTED_REQUIRED[kind]
    assert {p: n["enum"] for p, n in nodes.items() if "enum" in n} == EXPECTED_ENUMS[kind]


def test_types_and_formats_of_notable_fields() -> None:
    vs = dict(walk(schema_of("VolumeSnapshot")))
    assert vs[".status.restoreSize"]["type"] == "string"
    assert vs[".status.restoreSize"]["x-kubernetes-int-or-string"] is True
    assert vs[".status.restoreSize"]["pattern"].startswith(r"^(\+|-)?")
    assert vs[".status.creationTime"]["format"] == "date-time"
    assert vs[".status.readyToUse"]["type"] == "boolean"
    vsc = dict(walk(schema_of("VolumeSnapshotContent")))
    assert (vsc[".status.restoreSize"]["type"], vsc[".status.restoreSize"]["format"]) == ("integer", "int64")
    assert vsc[".status.restoreSize"]["minimum"] == 0
    assert (vsc[".status.creationTime"]["type"], vsc[".status.creationTime"]["format"]) == (
        "integer",
        "int64",
    )
    assert vsc[".spec.volumeSnapshotRef"]["x-kubernetes-map-type"] == "atomic"
    cls = dict(walk(schema_of("VolumeSnapshotClass")))
    assert cls[".parameters"]["additionalProperties"] == {"type": "string"}


@pytest.mark.parametrize("kind", KINDS)
def test_cel_rules(kind: str) -> None:
    got = {
        path: {(r["rule"], r["message"]) for r in node["x-kubernetes-validations"]}
        for path, node in walk(schema_of(kind))
        if node.get("x-kubernetes-validations")
    }
    assert got == EXPECTED_RULES[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_cel_rules_compile_against_their_nodes(kind: str) -> None:
    for path, node in walk(schema_of(kind)):
        for rule in node.get("x-kubernetes-validations") or []:
            compiled = cel.compile_rule(rule["rule"], node, is_resource_root=(path == "."))
            assert compiled.uses_old_self == ("oldSelf" in rule["rule"]), f"{path}: {rule['rule']}"


def test_crds_returns_fresh_objects() -> None:
    first = snapshot_crds.crds()
    pristine = copy.deepcopy(first)
    first[0]["spec"]["versions"][0]["additionalPrinterColumns"][-1]["name"] = "Mutated"
    first[1]["spec"]["names"]["shortNames"].append("mutated")
    first[2]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["required"].clear()
    assert snapshot_crds.crds() == pristine


# ---------------------------------------------------------------------------------------------
# 2. cross-check against upstream
# ---------------------------------------------------------------------------------------------


def _diff_dicts(label: str, ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for key in sorted(set(ours) | set(theirs)):
        if key not in theirs:
            lines.append(f"{label}{key}: only in kubesim: {ours[key]!r}")
        elif key not in ours:
            lines.append(f"{label}{key}: only upstream: {theirs[key]!r}")
        elif ours[key] != theirs[key]:
            lines.append(f"{label}{key}: kubesim {ours[key]!r} != upstream {theirs[key]!r}")
    return lines


@pytest.mark.parametrize("kind", KINDS)
def test_matches_upstream_v1(kind: str) -> None:
    need_reference()
    ours = by_kind()[kind]
    theirs = load_upstream(kind)
    diff: list[str] = []

    def check(what: str, a: Any, b: Any) -> None:
        if a != b:
            diff.append(f"{what}: kubesim {a!r} != upstream {b!r}")

    check("metadata.name", ours["metadata"]["name"], theirs["metadata"]["name"])
    check(
        "metadata.annotations[api-approved.kubernetes.io]",
        ours["metadata"]["annotations"].get("api-approved.kubernetes.io"),
        theirs["metadata"]["annotations"].get("api-approved.kubernetes.io"),
    )
    check("spec.group", ours["spec"]["group"], theirs["spec"]["group"])
    check("spec.scope", ours["spec"]["scope"], theirs["spec"]["scope"])
    diff += _diff_dicts("spec.names.", ours["spec"]["names"], theirs["spec"]["names"])
    check("spec keys", sorted(ours["spec"]), sorted(theirs["spec"]))
    served = sorted(v["name"] for v in theirs["spec"]["versions"] if v.get("served"))
    check("served versions", sorted(v["name"] for v in ours["spec"]["versions"] if v.get("served")), served)
    ov, tv = v1(ours), v1(theirs)
    for key in ("served", "storage", "subresources", "deprecated"):
        check(f"v1.{key}", ov.get(key), tv.get(key))
    check("v1.additionalPrinterColumns", columns(ov), columns(tv))
    check(
        "v1.additionalPrinterColumns (described)",
        [bool(c.get("description")) for c in ov["additionalPrinterColumns"]],
        [bool(c.get("description")) for c in tv["additionalPrinterColumns"]],
    )
    ours_flat = flatten(ov["schema"]["openAPIV3Schema"])
    theirs_flat = flatten(tv["schema"]["openAPIV3Schema"])
    for path in sorted(set(ours_flat) | set(theirs_flat)):
        if path not in theirs_flat:
            diff.append(f"schema {path}: only in kubesim")
        elif path not in ours_flat:
            diff.append(f"schema {path}: only upstream ({theirs_flat[path]!r})")
        else:
            diff += _diff_dicts(f"schema {path} ", ours_flat[path], theirs_flat[path])
    assert not diff, f"{kind} differs from upstream {UPSTREAM_FILES[kind]}:\n" + "\n".join(diff)


def test_restore_example_points_at_our_api() -> None:
    need_reference()
    pvc = load_example("restore.yaml")
    source = pvc["spec"]["dataSource"]
    assert source["apiGroup"] == snapshot_crds.GROUP
    assert source["kind"] in by_kind()
    assert source["name"] == load_example("snapshot-v1.yaml")["metadata"]["name"]


# ---------------------------------------------------------------------------------------------
# 3. behaviour: objects a real cluster accepts and rejects
# ---------------------------------------------------------------------------------------------


def vs(source: Obj, **spec: Any) -> Obj:
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": "snap", "namespace": "default"},
        "spec": {"source": copy.deepcopy(source), **spec},
    }


def vsc(source: Obj, ref: Obj | None = None, **spec: Any) -> Obj:
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotContent",
        "metadata": {"name": "snapcontent"},
        "spec": {
            "deletionPolicy": "Delete",
            "driver": "hostpath.csi.k8s.io",
            "source": copy.deepcopy(source),
            "volumeSnapshotRef": {"name": "snap", "namespace": "default"}
            if ref is None
            else copy.deepcopy(ref),
            **spec,
        },
    }


def vsclass(**fields: Any) -> Obj:
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotClass",
        "metadata": {"name": "csi-hostpath-snapclass"},
        "driver": "hostpath.csi.k8s.io",
        "deletionPolicy": "Delete",
        **fields,
    }


PVC = {"persistentVolumeClaimName": "data"}
CONTENT = {"volumeSnapshotContentName": "snapcontent"}

# (id, kind, new object, old object or None, expected (field, message fragment) of every CEL error)
CEL_CASES: list[tuple[str, str, Obj, Obj | None, list[tuple[str, str]]]] = [
    ("vs-from-pvc", "VolumeSnapshot", vs(PVC, volumeSnapshotClassName="c"), None, []),
    ("vs-from-content", "VolumeSnapshot", vs(CONTENT), None, []),
    (
        "vs-both-sources",
        "VolumeSnapshot",
        vs({**PVC, **CONTENT}),
        None,
        [
            (
                "spec.source",
                "exactly one of volumeSnapshotContentName and persistentVolumeClaimName must be set",
            )
        ],
    ),
    (
        "vs-no-source",
        "VolumeSnapshot",
        vs({}),
        None,
        [
            (
                "spec.source",
                "exactly one of volumeSnapshotContentName and persistentVolumeClaimName must be set",
            )
        ],
    ),
    (
        "vs-empty-class",
        "VolumeSnapshot",
        vs(PVC, volumeSnapshotClassName=""),
        None,
        [("spec.volumeSnapshotClassName", "volumeSnapshotClassName must not be the empty string when set")],
    ),
    ("vs-unchanged-update", "VolumeSnapshot", vs(PVC), vs(PVC), []),
    (
        "vs-class-may-change",
        "VolumeSnapshot",
        vs(PVC, volumeSnapshotClassName="b"),
        vs(PVC, volumeSnapshotClassName="a"),
        [],
    ),
    (
        "vs-pvc-name-changed",
        "VolumeSnapshot",
        vs({"persistentVolumeClaimName": "other"}),
        vs(PVC),
        [("spec.source.persistentVolumeClaimName", "persistentVolumeClaimName is immutable")],
    ),
    (
        "vs-content-name-changed",
        "VolumeSnapshot",
        vs({"volumeSnapshotContentName": "other"}),
        vs(CONTENT),
        [("spec.source.volumeSnapshotContentName", "volumeSnapshotContentName is immutable")],
    ),
    (
        "vs-source-switched",
        "VolumeSnapshot",
        vs(CONTENT),
        vs(PVC),
        [("spec.source", "persistentVolumeClaimName is required once set")],
    ),
    ("vsc-dynamic", "VolumeSnapshotContent", vsc({"volumeHandle": "vol-1"}), None, []),
    (
        "vsc-pre-existing",
        "VolumeSnapshotContent",
        vsc({"snapshotHandle": "snap-1"}, sourceVolumeMode="Block"),
        None,
        [],
    ),
    (
        "vsc-both-handles",
        "VolumeSnapshotContent",
        vsc({"volumeHandle": "vol-1", "snapshotHandle": "snap-1"}),
        None,
        [("spec.source", "exactly one of volumeHandle and snapshotHandle must be set")],
    ),
    (
        "vsc-ref-without-namespace",
        "VolumeSnapshotContent",
        vsc({"volumeHandle": "vol-1"}, ref={"name": "snap"}),
        None,
        [
            (
                "spec.volumeSnapshotRef",
                "both spec.volumeSnapshotRef.name and spec.volumeSnapshotRef.namespace must be set",
            )
        ],
    ),
    (
        "vsc-snapshot-handle-changed",
        "VolumeSnapshotContent",
        vsc({"snapshotHandle": "snap-2"}),
        vsc({"snapshotHandle": "snap-1"}),
        [("spec.source.snapshotHandle", "snapshotHandle is immutable")],
    ),
    (
        "vsc-volume-handle-dropped",
        "VolumeSnapshotContent",
        vsc({"snapshotHandle": "snap-1"}),
        vsc({"volumeHandle": "vol-1"}),
        [("spec.source", "volumeHandle is required once set")],
    ),
    (
        "vsc-source-volume-mode-changed",
        "VolumeSnapshotContent",
        vsc({"volumeHandle": "vol-1"}, sourceVolumeMode="Block"),
        vsc({"volumeHandle": "vol-1"}, sourceVolumeMode="Filesystem"),
        [("spec.sourceVolumeMode", "sourceVolumeMode is immutable")],
    ),
    (
        "vsc-source-volume-mode-dropped",
        "VolumeSnapshotContent",
        vsc({"volumeHandle": "vol-1"}),
        vsc({"volumeHandle": "vol-1"}, sourceVolumeMode="Filesystem"),
        [("spec", "sourceVolumeMode is required once set")],
    ),
    ("vsclass", "VolumeSnapshotClass", vsclass(parameters={"a": "b"}), None, []),
]


def assert_causes(causes: list[Cause], expected: list[tuple[str, str]]) -> None:
    got = summarize(causes)
    assert len(got) == len(expected), got
    for field, fragment in expected:
        assert any(f == field and fragment in m for f, m in got), f"no {field}: {fragment!r} in {got}"


@pytest.mark.parametrize(
    ("kind", "obj", "old", "expected"), [c[1:] for c in CEL_CASES], ids=[c[0] for c in CEL_CASES]
)
def test_cel_rules_behave(kind: str, obj: Obj, old: Obj | None, expected: list[tuple[str, str]]) -> None:
    causes = cel.evaluate_validations(obj, schema_of(kind), old)
    assert_causes(causes, expected)
    for cause in causes:
        assert cause.type == "FieldValueInvalid"
        assert cause.message.startswith(f"{cause.field}: Invalid value: ")


# -- through kubesim.crdschema (schema validation, pruning, defaulting, CRD validation) ---------


@pytest.fixture
def crdschema() -> ModuleType:
    if importlib.util.find_spec("kubesim.crdschema") is None:
        pytest.skip("kubesim/crdschema.py does not exist yet: schema validation tests run once it lands")
    import kubesim.crdschema as module

    return module


@pytest.mark.parametrize("kind", KINDS)
def test_crd_is_valid(crdschema: ModuleType, kind: str) -> None:
    assert summarize(crdschema.validate_crd(by_kind()[kind], None)) == []


@pytest.mark.parametrize(
    ("kind", "obj", "old", "expected"), [c[1:] for c in CEL_CASES], ids=[c[0] for c in CEL_CASES]
)
def test_validate_applies_cel_rules(
    crdschema: ModuleType, kind: str, obj: Obj, old: Obj | None, expected: list[tuple[str, str]]
) -> None:
    assert_causes(crdschema.validate(obj, schema_of(kind), old), expected)


SCHEMA_CASES: list[tuple[str, str, Obj, str, str]] = [
    # (id, kind, object, field, cause type)
    (
        "vsclass-bad-policy",
        "VolumeSnapshotClass",
        vsclass(deletionPolicy="Keep"),
        "deletionPolicy",
        "FieldValueNotSupported",
    ),
    (
        "vsclass-no-driver",
        "VolumeSnapshotClass",
        {k: v for k, v in vsclass().items() if k != "driver"},
        "driver",
        "FieldValueRequired",
    ),
    (
        "vsclass-non-string-parameter",
        "VolumeSnapshotClass",
        vsclass(parameters={"a": 1}),
        "parameters.a",
        "FieldValueTypeInvalid",
    ),
    (
        "vsc-bad-policy",
        "VolumeSnapshotContent",
        vsc({"volumeHandle": "v"}, deletionPolicy="Keep"),
        "spec.deletionPolicy",
        "FieldValueNotSupported",
    ),
    (
        "vsc-no-ref",
        "VolumeSnapshotContent",
        {
            **vsc({"volumeHandle": "v"}),
            "spec": {"deletionPolicy": "Delete", "driver": "d", "source": {"volumeHandle": "v"}},
        },
        "spec.volumeSnapshotRef",
        "FieldValueRequired",
    ),
    (
        "vsc-negative-restore-size",
        "VolumeSnapshotContent",
        {**vsc({"volumeHandle": "v"}), "status": {"restoreSize": -1}},
        "status.restoreSize",
        "FieldValueInvalid",
    ),
    (
        "vs-no-spec",
        "VolumeSnapshot",
        {k: v for k, v in vs(PVC).items() if k != "spec"},
        "spec",
        "FieldValueRequired",
    ),
    (
        "vs-no-source",
        "VolumeSnapshot",
        {**vs(PVC), "spec": {"volumeSnapshotClassName": "c"}},
        "spec.source",
        "FieldValueRequired",
    ),
    (
        "vs-bad-restore-size",
        "VolumeSnapshot",
        {**vs(PVC), "status": {"restoreSize": "lots"}},
        "status.restoreSize",
        "FieldValueInvalid",
    ),
    (
        "vs-ready-not-bool",
        "VolumeSnapshot",
        {**vs(PVC), "status": {"readyToUse": "yes"}},
        "status.readyToUse",
        "FieldValueTypeInvalid",
    ),
]


@pytest.mark.parametrize(
    ("kind", "obj", "field", "cause_type"), [c[1:] for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES]
)
def test_validate_rejects_schema_violations(
    crdschema: ModuleType, kind: str, obj: Obj, field: str, cause_type: str
) -> None:
    causes: list[Cause] = crdschema.validate(obj, schema_of(kind), None)
    assert any(c.field == field and c.type == cause_type for c in causes), summarize(causes)


def test_validate_accepts_statuses(crdschema: ModuleType) -> None:
    snap = {
        **vs(PVC),
        "status": {
            "boundVolumeSnapshotContentName": "snapcontent",
            "creationTime": "2024-01-02T03:04:05Z",
            "readyToUse": True,
            "restoreSize": "1Gi",
            "error": {"message": "boom", "time": "2024-01-02T03:04:05Z"},
        },
    }
    assert summarize(crdschema.validate(snap, schema_of("VolumeSnapshot"), None)) == []
    content = {
        **vsc({"volumeHandle": "vol-1"}),
        "status": {
            "creationTime": 1704164645000000000,
            "readyToUse": True,
            "restoreSize": 1073741824,
            "snapshotHandle": "s",
        },
    }
    assert summarize(crdschema.validate(content, schema_of("VolumeSnapshotContent"), None)) == []


def test_prune_drops_unknown_fields(crdschema: ModuleType) -> None:
    obj = vs(PVC)
    obj["spec"]["unknownField"] = "x"
    obj["spec"]["source"]["alsoUnknown"] = 1
    pruned, paths = crdschema.prune(copy.deepcopy(obj), schema_of("VolumeSnapshot"))
    assert pruned["spec"] == {"source": PVC}
    assert any("unknownField" in str(p) for p in paths)
    assert any("alsoUnknown" in str(p) for p in paths)
    kept, none = crdschema.prune(vs(PVC), schema_of("VolumeSnapshot"))
    assert kept == vs(PVC)
    assert not none


def test_no_defaults(crdschema: ModuleType) -> None:
    for kind, obj in (("VolumeSnapshot", vs(PVC)), ("VolumeSnapshotClass", vsclass())):
        copied = copy.deepcopy(obj)
        result = crdschema.apply_defaults(copied, schema_of(kind))
        assert (copied if result is None else result) == obj


# -- the upstream examples ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("example", "kind"),
    [("snapshot-v1.yaml", "VolumeSnapshot"), ("snapshotclass-v1.yaml", "VolumeSnapshotClass")],
)
def test_upstream_examples_validate(crdschema: ModuleType, example: str, kind: str) -> None:
    need_reference()
    obj = load_example(example)
    assert obj["apiVersion"] == "snapshot.storage.k8s.io/v1"
    assert obj["kind"] == kind
    schema = schema_of(kind)
    pruned, paths = crdschema.prune(copy.deepcopy(obj), schema)
    assert not paths
    assert pruned == obj
    assert summarize(crdschema.validate(obj, schema, None)) == []
    assert summarize(crdschema.validate(obj, schema, copy.deepcopy(obj))) == []


def test_upstream_snapshot_example_rejects_cel_violations(crdschema: ModuleType) -> None:
    need_reference()
    good = load_example("snapshot-v1.yaml")
    schema = schema_of("VolumeSnapshot")
    both = copy.deepcopy(good)
    both["spec"]["source"]["volumeSnapshotContentName"] = "some-content"
    assert_causes(
        crdschema.validate(both, schema, None),
        [
            (
                "spec.source",
                "exactly one of volumeSnapshotContentName and persistentVolumeClaimName must be set",
            )
        ],
    )
    renamed = copy.deepcopy(good)
    renamed["spec"]["source"]["persistentVolumeClaimName"] = "another-pvc"
    assert_causes(
        crdschema.validate(renamed, schema, good),
        [("spec.source.persistentVolumeClaimName", "persistentVolumeClaimName is immutable")],
    )
    switched = copy.deepcopy(good)
    switched["spec"]["source"] = {"volumeSnapshotContentName": "some-content"}
    assert_causes(
        crdschema.validate(switched, schema, good),
        [("spec.source", "persistentVolumeClaimName is required once set")],
    )


def test_upstream_class_example_rejects_bad_policy(crdschema: ModuleType) -> None:
    need_reference()
    bad = load_example("snapshotclass-v1.yaml")
    bad["deletionPolicy"] = "Keep"
    causes: list[Cause] = crdschema.validate(bad, schema_of("VolumeSnapshotClass"), None)
    assert any(c.field == "deletionPolicy" and c.type == "FieldValueNotSupported" for c in causes), summarize(
        causes
    )


def test_upstream_crds_are_valid(crdschema: ModuleType) -> None:
    need_reference()
    for kind in KINDS:
        crd = load_upstream(kind)
        # The manifest's placeholder status (storedVersions: []) is reset by the API server before
        # validation (apiextensions-apiserver pkg/registry/customresourcedefinition/strategy.go:
        # PrepareForCreate), so it is not part of what a real cluster validates.
        crd.pop("status", None)
        assert summarize(crdschema.validate_crd(crd, None)) == [], kind
