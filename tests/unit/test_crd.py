"""The committed CRD is exactly what the models generate, and it is a valid structural CRD."""

from __future__ import annotations

from pathlib import Path

import yaml

from clusterresync import crdgen
from clusterresync.models import ClusterResyncSpec

ROOT = Path(__file__).resolve().parents[2]


def test_committed_crds_match_the_models() -> None:
    for path, content in crdgen.outputs(ROOT / "crds").items():
        assert path.exists(), f"{path} is missing: run `make manifests`"
        assert path.read_text() == content, (
            f"{path.relative_to(ROOT)} differs from the models: run `make manifests` and commit"
        )


def test_crd_is_accepted_by_kubesim_validation() -> None:
    from kubesim import crdschema

    crd = crdgen.crd()
    assert crdschema.validate_crd(crd, None) == []


def test_spec_rules() -> None:
    from kubesim import crdschema

    schema = crdgen.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    good = {
        "apiVersion": "clusterresync.io/v1alpha1",
        "kind": "ClusterResync",
        "metadata": {"name": "x"},
        "spec": {"target": {"name": "db"}, "primary": {"podName": "db-1"}, "volumes": ["data"]},
    }
    defaulted = crdschema.apply_defaults(good, schema)
    assert defaulted["spec"]["method"] == "Snapshot" and defaulted["spec"]["maxParallel"] == 1
    assert defaulted["spec"]["timeouts"]["replicaSeconds"] == 1800
    assert crdschema.validate(defaulted, schema) == []
    # The defaulted spec parses with the models: one source of truth.
    ClusterResyncSpec.model_validate(defaulted["spec"])
    both = {
        **good,
        "spec": {**good["spec"], "primary": {"podName": "db-1", "selector": {"matchLabels": {"a": "b"}}}},
    }
    msgs = [c.message for c in crdschema.validate(crdschema.apply_defaults(both, schema), schema)]
    assert any("exactly one of podName and selector" in m for m in msgs)
    changed = {**defaulted, "spec": {**defaulted["spec"], "maxParallel": 2}}
    msgs = [c.message for c in crdschema.validate(changed, schema, defaulted)]
    assert any("spec is immutable" in m for m in msgs)
    no_volumes = {**good, "spec": {**good["spec"], "volumes": []}}
    assert crdschema.validate(crdschema.apply_defaults(no_volumes, schema), schema)


def test_generated_yaml_parses() -> None:
    docs = list(yaml.safe_load_all((ROOT / "crds" / "clusterresync.io_clusterresyncs.yaml").read_text()))
    assert docs[0]["spec"]["names"]["shortNames"] == ["crsync"]


# -- the API's rules, as kubesim's schema validation (an API server's) applies them ---------------
def _messages(spec: dict[str, object], old: dict[str, object] | None = None) -> list[str]:
    from kubesim import crdschema

    schema = crdgen.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    obj = crdschema.apply_defaults(
        {
            "apiVersion": "clusterresync.io/v1alpha1",
            "kind": "ClusterResync",
            "metadata": {"name": "x"},
            "spec": spec,
        },
        schema,
    )
    return [str(c.message) for c in crdschema.validate(obj, schema, old)]


BASE: dict[str, object] = {"target": {"name": "db"}, "primary": {"podName": "db-1"}, "volumes": ["data"]}


def test_rule_primary_not_in_replicas() -> None:
    assert _messages({**BASE, "replicas": ["db-0", "db-2"]}) == []
    msgs = _messages({**BASE, "replicas": ["db-0", "db-1"]})
    assert any("replicas must not include the primary pod" in m for m in msgs), msgs


def test_rule_match_expression_values() -> None:
    def sel(op: str, values: list[str] | None) -> dict[str, object]:
        req: dict[str, object] = {"key": "role", "operator": op}
        if values is not None:
            req["values"] = values
        return {**BASE, "primary": {"selector": {"matchExpressions": [req]}}}

    assert _messages(sel("In", ["primary"])) == []
    assert _messages(sel("Exists", None)) == []
    for op in ("In", "NotIn"):
        for values in (None, []):
            msgs = _messages(sel(op, values))
            assert any("values must be non-empty when the operator is In or NotIn" in m for m in msgs), msgs
    for op in ("Exists", "DoesNotExist"):
        msgs = _messages(sel(op, ["x"]))
        assert any("values must be empty when the operator is Exists or DoesNotExist" in m for m in msgs), (
            msgs
        )


def test_rule_primary_stable_below_preflight() -> None:
    assert _messages({**BASE, "primaryStableSeconds": 60, "timeouts": {"preflightSeconds": 61}}) == []
    # preflightSeconds 0: checked once, without waiting: any stability window is fine.
    assert _messages({**BASE, "primaryStableSeconds": 3600, "timeouts": {"preflightSeconds": 0}}) == []
    for stable, preflight in ((60, 60), (3600, 2)):
        msgs = _messages(
            {**BASE, "primaryStableSeconds": stable, "timeouts": {"preflightSeconds": preflight}}
        )
        assert any("primaryStableSeconds must be below timeouts.preflightSeconds" in m for m in msgs), msgs


def test_volumes_and_replicas_unique_and_bounded() -> None:
    msgs = _messages({**BASE, "volumes": ["data", "data"]})
    assert any("Duplicate value" in m for m in msgs), msgs
    assert _messages({**BASE, "replicas": ["db-0", "db-0"]})
    assert _messages({**BASE, "volumes": [f"v{i}" for i in range(17)]})
    assert _messages({**BASE, "volumes": ["v" * 64]})
    assert _messages({**BASE, "ttlSecondsAfterFinished": -1})
    assert _messages({**BASE, "ttlSecondsAfterFinished": 0}) == []


def test_status_shape() -> None:
    schema = crdgen.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    conds = schema["properties"]["conditions"]
    assert conds["x-kubernetes-list-type"] == "map" and conds["x-kubernetes-list-map-keys"] == ["type"]
    c = conds["items"]["properties"]
    assert c["lastTransitionTime"]["format"] == "date-time"
    assert c["observedGeneration"] == {**c["observedGeneration"], "format": "int64", "minimum": 0}
    assert (
        c["reason"]["pattern"] == "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
        and c["reason"]["maxLength"] == 1024
    )
    assert c["message"]["maxLength"] == 32768 and c["type"]["maxLength"] == 316
    assert c["status"]["enum"] == ["True", "False", "Unknown"]
    reps = schema["properties"]["replicas"]
    assert reps["x-kubernetes-list-map-keys"] == ["name"] and reps["maxItems"] == 1000


def test_every_string_and_list_is_bounded() -> None:
    schema = crdgen.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    unbounded: list[str] = []

    def walk(node: dict[str, object], path: str) -> None:
        t = node.get("type")
        if t == "string" and "maxLength" not in node and "enum" not in node and "format" not in node:
            unbounded.append(path)
        if t == "array":
            if "maxItems" not in node:
                unbounded.append(path)
            walk(node["items"], f"{path}[*]")  # type: ignore[arg-type]
        if t == "object":
            if isinstance(node.get("additionalProperties"), dict):
                if "maxProperties" not in node:
                    unbounded.append(path)
                walk(node["additionalProperties"], f"{path}[*]")  # type: ignore[arg-type]
            for k, v in (node.get("properties") or {}).items():  # type: ignore[attr-defined]
                walk(v, f"{path}.{k}")

    walk(schema["properties"]["spec"], "spec")
    walk(schema["properties"]["status"], "status")
    assert unbounded == []
