"""Issue 10's acceptance: `kubectl apply --server-side` of the samples works, and a conflicting
manager gets a 409.

The real kubectl (and the kubernetes client) against kubesim with the CRDs and install of
``manifests/`` (the ``cluster`` fixture), without the operator: nothing acts on the custom
resources, so a ClusterResync sample never starts a resync. Expected results follow
kube-apiserver's field manager (``managedfields/internal``: ``conflict.go`` for the wording,
``managedfieldsupdater.go`` for when a manager's time changes) and CRD validation
(``x-kubernetes-validations``, checked on apply as on any update).
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from kubesim.testing import KubeSim

from .conftest import ROOT

pytestmark = pytest.mark.kubectl

SAMPLES = ROOT / "manifests" / "samples"
APPLY = "application/apply-patch+yaml"
SECOND = "argocd-controller"  # the other manager: a GitOps controller applying its own copy
GROUP, VERSION = "clusterresync.io", "v1alpha1"

# Kinds whose re-apply changes nothing but the applier's time (and so writes): the applied object
# differs from the live one although the result is the same, and kube-apiserver stamps the time
# whenever structured-merge-diff's merge differs from the live object (managedFieldsUpdater.Apply).
RESTAMPED = {
    "Secret": "stringData is write-only: the server turns it into data",
    "StatefulSet": "volumeClaimTemplates is an atomic list (replaced whole by the applied one) whose "
    "items the server defaults (volumeMode, status.phase, apiVersion, kind)",
}


@pytest.fixture(scope="module")
def api(cluster: KubeSim) -> Iterator[Any]:
    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield api_client
    api_client.close()


def _docs(path: Path) -> list[dict[str, Any]]:
    """The objects of one sample file, or of every sample file of a directory (not below it)."""
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    return [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]


def _ref(doc: dict[str, Any]) -> str:
    """What kubectl calls the object: ``statefulset.apps/pg``, ``secret/pg-auth``."""
    group = doc["apiVersion"].rpartition("/")[0]
    return f"{doc['kind'].lower()}{'.' + group if group else ''}/{doc['metadata']['name']}"


def _get(cluster: KubeSim, ns: str, doc: dict[str, Any]) -> dict[str, Any]:
    out = cluster.kubectl("get", _ref(doc), "-n", ns, "-o", "json", "--show-managed-fields").stdout
    obj: dict[str, Any] = json.loads(out)
    return obj


def _entries(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields") or []}


def _owned(obj: dict[str, Any], manager: str, *path: str) -> bool:
    """Whether ``manager``'s Apply entry owns the field at ``path`` (``spec``, ``replicas``)."""
    node = _entries(obj).get((manager, "Apply"), {}).get("fieldsV1", {})
    for p in path:
        if f"f:{p}" not in node:
            return False
        node = node[f"f:{p}"]
    return True


def _subset(want: Any, got: Any) -> bool:
    """``want`` is in ``got``: the server only adds (defaults), it changes nothing applied."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and _subset(v, got[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(got, list) and len(want) == len(got) and all(map(_subset, want, got))
    return bool(want == got)


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    """The object but its status, resourceVersion and managedFields."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    for k in ("resourceVersion", "managedFields"):
        out["metadata"].pop(k, None)
    return out


def _apply(cluster: KubeSim, ns: str, source: Path | dict[str, Any], *args: str, check: bool = True) -> Any:
    if isinstance(source, Path):
        return cluster.kubectl("apply", "--server-side", "-n", ns, *args, "-f", str(source), check=check)
    return cluster.kubectl(
        "apply", "--server-side", "-n", ns, *args, "-f", "-", input=yaml.safe_dump(source), check=check
    )


# What each sample directory holds (a new sample is tested as soon as it is added here).
KINDS = {
    "": ["ClusterResync", "StatefulSet"],
    "postgres": ["ClusterResync", "ResyncPolicy", "Secret", "Service", "StatefulSet"],
}


def test_every_sample_directory_is_tested() -> None:
    dirs = {str(p.parent.relative_to(SAMPLES)) for p in SAMPLES.rglob("*.yaml")}
    assert {"" if d == "." else d for d in dirs} == set(KINDS)


@pytest.mark.parametrize("directory", list(KINDS), ids=["samples", "samples-postgres"])
def test_every_sample_applies_server_side_owned_by_kubectl_and_reapplies_as_a_no_op(
    cluster: KubeSim, ns: str, directory: str
) -> None:
    path = SAMPLES / directory
    docs = _docs(path)
    assert sorted(d["kind"] for d in docs) == KINDS[directory]
    try:
        out = _apply(cluster, ns, path).stdout
        assert sorted(out.splitlines()) == sorted(f"{_ref(d)} serverside-applied" for d in docs)

        before = {}
        for doc in docs:
            obj = _get(cluster, ns, doc)
            entries = _entries(obj)
            # one applier, kubectl, and it owns every field the sample sets; no one else owns any
            # (a controller writing the status does so under the status subresource)
            assert ("kubectl", "Apply") in entries, (doc["kind"], entries)
            for key in set(doc) - {"apiVersion", "kind", "metadata"}:
                assert _owned(obj, "kubectl", key), (doc["kind"], key)
            for key in doc.get("spec", {}):
                assert _owned(obj, "kubectl", "spec", key), (doc["kind"], key)
            others = [e for m, e in entries.items() if m != ("kubectl", "Apply")]
            assert all(e.get("subresource") == "status" for e in others), (doc["kind"], others)
            # the sample's values are the live ones (the server adds defaults, nothing else)
            if doc["kind"] == "Secret":
                live = {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}
                assert live == doc["stringData"]
            else:
                assert _subset(doc["spec"], obj["spec"]), doc["kind"]
            before[_ref(doc)] = obj

        time.sleep(1.1)  # managedFields times have a resolution of a second: a change would show
        out = _apply(cluster, ns, path).stdout
        assert sorted(out.splitlines()) == sorted(f"{_ref(d)} serverside-applied" for d in docs)
        for doc in docs:
            old, new = before[_ref(doc)], _get(cluster, ns, doc)
            assert _content(new) == _content(old), doc["kind"]
            old_entry, new_entry = _entries(old)[("kubectl", "Apply")], _entries(new)[("kubectl", "Apply")]
            assert new_entry["fieldsV1"] == old_entry["fieldsV1"]
            if doc["kind"] in RESTAMPED:
                continue
            assert new_entry == old_entry, doc["kind"]  # time included: not even touched
            # no controller writes to the others (no operator runs)
            assert new["metadata"]["resourceVersion"] == old["metadata"]["resourceVersion"], doc["kind"]
    finally:
        # the PostgreSQL sample's pods run real servers: stop them, the checks are done
        cluster.kubectl("delete", "statefulset", "--all", "-n", ns, "--wait=false", check=False)


def test_a_second_manager_gets_a_409_naming_the_field_and_force_takes_it_over(
    cluster: KubeSim, ns: str, api: Any
) -> None:
    policy_file = SAMPLES / "postgres" / "resyncpolicy.yaml"
    sts_file = SAMPLES / "cluster.yaml"
    _apply(cluster, ns, policy_file)
    _apply(cluster, ns, sts_file)
    (policy,) = _docs(policy_file)
    (sts,) = _docs(sts_file)
    assert policy["spec"]["intervalSeconds"] == 10 and sts["spec"]["replicas"] == 3

    # kubectl as the other manager, with another value of a field kubectl owns: refused
    theirs = copy.deepcopy(policy)
    theirs["spec"]["intervalSeconds"] = 30
    proc = _apply(cluster, ns, theirs, f"--field-manager={SECOND}", check=False)
    assert proc.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .spec.intervalSeconds' in proc.stderr
    assert "--force-conflicts" in proc.stderr
    assert _get(cluster, ns, policy)["spec"]["intervalSeconds"] == 10

    # the same through the API: 409 Conflict, the cause naming the manager and the field
    custom = client.CustomObjectsApi(api)
    with pytest.raises(ApiException) as ei:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, "resyncpolicies", "pg", theirs, field_manager=SECOND, _content_type=APPLY
        )
    assert ei.value.status == 409
    status = json.loads(ei.value.body)
    assert status["reason"] == "Conflict" and status["code"] == 409
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "kubectl": .spec.intervalSeconds'
    assert status["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl"',
            "field": ".spec.intervalSeconds",
        }
    ]
    # the same value of every other field is shared ownership, not a conflict
    same = copy.deepcopy(policy)
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, "resyncpolicies", "pg", same, field_manager=SECOND, _content_type=APPLY
    )
    obj = _get(cluster, ns, policy)
    assert _owned(obj, "kubectl", "spec", "intervalSeconds") and _owned(
        obj, SECOND, "spec", "intervalSeconds"
    )
    assert obj["spec"]["intervalSeconds"] == 10

    # --force-conflicts takes the field: its value, and its ownership, from every other manager
    _apply(cluster, ns, theirs, f"--field-manager={SECOND}", "--force-conflicts")
    obj = _get(cluster, ns, policy)
    assert obj["spec"]["intervalSeconds"] == 30
    assert _owned(obj, SECOND, "spec", "intervalSeconds")
    assert not _owned(obj, "kubectl", "spec", "intervalSeconds")
    assert _owned(obj, "kubectl", "spec", "mode") and _owned(obj, "kubectl", "spec", "probe", "preset")
    # ... and now kubectl applying the sample again is the one in conflict, with that manager
    proc = _apply(cluster, ns, policy_file, check=False)
    assert proc.returncode != 0
    assert f'Apply failed with 1 conflict: conflict with "{SECOND}": .spec.intervalSeconds' in proc.stderr
    assert _get(cluster, ns, policy)["spec"]["intervalSeconds"] == 30

    # a built-in kind alike: the StatefulSet's replicas, applied by the client as the other manager
    apps = client.AppsV1Api(api)
    scale: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {"replicas": 1},
    }
    with pytest.raises(ApiException) as ei:
        apps.patch_namespaced_stateful_set("db", ns, scale, field_manager=SECOND, _content_type=APPLY)
    assert ei.value.status == 409
    status = json.loads(ei.value.body)
    assert status["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl"', "field": ".spec.replicas"}
    ]
    assert _get(cluster, ns, sts)["spec"]["replicas"] == 3
    obj, code, _ = apps.patch_namespaced_stateful_set_with_http_info(
        "db", ns, scale, field_manager=SECOND, force=True, _content_type=APPLY
    )
    assert code == 200 and obj.spec.replicas == 1
    live = _get(cluster, ns, sts)
    assert _owned(live, SECOND, "spec", "replicas") and not _owned(live, "kubectl", "spec", "replicas")
    assert _owned(live, "kubectl", "spec", "serviceName")
    proc = _apply(cluster, ns, sts_file, check=False)
    assert proc.returncode != 0
    assert f'conflict with "{SECOND}": .spec.replicas' in proc.stderr


def test_the_immutable_spec_is_refused_server_side_as_client_side(
    cluster: KubeSim, ns: str, api: Any
) -> None:
    sample = SAMPLES / "clusterresync.yaml"
    _apply(cluster, ns, sample)
    (doc,) = _docs(sample)
    changed = copy.deepcopy(doc)
    changed["spec"]["maxParallel"] = 2
    immutable = "spec is immutable: a ClusterResync runs once, like a Job"

    # kubectl, server-side: its own field, no conflict; the CEL rule refuses it (422 Invalid)
    for extra in ((), ("--force-conflicts",)):
        proc = _apply(cluster, ns, changed, *extra, check=False)
        assert proc.returncode != 0
        assert f'The ClusterResync "{doc["metadata"]["name"]}" is invalid' in proc.stderr
        assert immutable in proc.stderr
    # another manager forcing its way past the conflict meets the same rule
    custom = client.CustomObjectsApi(api)
    with pytest.raises(ApiException) as ei:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, "clusterresyncs", doc["metadata"]["name"], changed,
            field_manager=SECOND, force=True, _content_type=APPLY,
        )  # fmt: skip
    assert ei.value.status == 422
    status = json.loads(ei.value.body)
    assert status["reason"] == "Invalid"
    assert any(c["field"] == "spec" and immutable in c["message"] for c in status["details"]["causes"])
    # client-side apply (a patch computed by kubectl) is refused with the same message
    proc = cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(changed), check=False)
    assert proc.returncode != 0 and immutable in proc.stderr
    obj = _get(cluster, ns, doc)
    assert obj["spec"]["maxParallel"] == 1
    assert list(_entries(obj)) == [("kubectl", "Apply")]

    # the one change the rule allows, an approval (suspend: true -> false), goes through apply
    suspended = copy.deepcopy(doc)
    suspended["metadata"]["name"] = "db-resync-approved"
    suspended["spec"]["suspend"] = True
    _apply(cluster, ns, suspended)
    suspended["spec"]["suspend"] = False
    _apply(cluster, ns, suspended)
    assert _get(cluster, ns, suspended)["spec"]["suspend"] is False
    suspended["spec"]["suspend"] = True  # ... and not back
    proc = _apply(cluster, ns, suspended, check=False)
    assert proc.returncode != 0 and immutable in proc.stderr
