"""A rollback puts the replica back on its data and keeps both volumes (safety rule 3)."""

from __future__ import annotations

from ..world import World
from .drive import drive, policy, reasons, spec


# -- 3. a volume's fate is decided once ----------------------------------------------------------
def test_rollback_puts_the_replica_back_on_its_data_and_keeps_both_volumes() -> None:
    w = World(unready_on_copy={"db-0"})
    s = spec(primaryStableSeconds=0, timeouts={"replicaSeconds": 20})
    drive(w, s)
    assert w.status.phase == "Failed" and reasons(w)["Failed"] == "ReplicaRolledBack"
    assert w.content_of("db-0") == "stale-0"
    r0 = next(r for r in w.status.replicas if r.name == "db-0")
    old, copy = r0.volumes[0].old_pv, r0.volumes[0].new_pv
    assert old and copy and old in w.pvs and copy in w.pvs
    assert policy(w, old) == "Retain" and policy(w, copy) == "Retain"
    assert w.data[copy] == "primary-data"
    # One failure stops the run: db-2 was never swapped, and got everything back as it was.
    r2 = next(r for r in w.status.replicas if r.name == "db-2")
    assert r2.phase == "Skipped" and w.content_of("db-2") == "stale-2"
    assert policy(w, "pv-2") == "Delete" and not w.pvs["pv-2"]["metadata"]["labels"]


def test_a_rollback_that_cannot_finish_keeps_both_volumes_retained() -> None:
    w = World(never_ready={"db-0"})
    s = spec(primaryStableSeconds=0, timeouts={"replicaSeconds": 10})
    drive(w, s, max_steps=600)
    assert w.status.phase == "Failed" and reasons(w)["Failed"] == "RollbackFailed"
    r0 = next(r for r in w.status.replicas if r.name == "db-0")
    old, copy = r0.volumes[0].old_pv, r0.volumes[0].new_pv
    assert old and copy
    assert (policy(w, old), policy(w, copy)) == ("Retain", "Retain")
    assert w.data[old] == "stale-0" and w.data[copy] == "primary-data"
    assert old in r0.message and copy in r0.message and "Retain" in r0.message
    # Nothing of db-0's was deleted; only the copy staged ahead for db-2, never swapped, went.
    r2 = next(r for r in w.status.replicas if r.name == "db-2")
    assert r2.phase == "Skipped" and w.content_of("db-2") == "stale-2"
    assert set(w.deleted_pvs) <= {v.new_pv for v in r2.volumes}
