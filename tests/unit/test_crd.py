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
