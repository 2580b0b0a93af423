"""Stage 1 of a replica: the copy restored (snapshot or clone), the restore Job, the restore time limit."""

from __future__ import annotations

from typing import Any

from clusterresync import planner

from ..world import World
from .drive import assert_success, drive, spec


def test_clone_method() -> None:
    w, s = World(), spec(method="Clone")
    drive(w, s)
    assert_success(w, s)


# -- the restore Job passes the restricted Pod Security profile ---------------------------------
def test_the_restore_job_is_restricted() -> None:
    w = World()
    for p in w.pods.values():
        p["spec"]["securityContext"] = {"runAsNonRoot": True, "runAsUser": 999, "fsGroup": 999}
    s = spec(primaryStableSeconds=0, hooks={"restore": {"image": "busybox", "command": ["true"]}})
    jobs: list[Any] = []

    def grab(world: World, p: planner.Plan) -> None:
        jobs.extend(world.jobs.values())

    drive(w, s, on_step=grab)
    pod = jobs[0]["spec"]["template"]["spec"]
    ctr = pod["containers"][0]["securityContext"]
    assert ctr["allowPrivilegeEscalation"] is False and ctr["capabilities"] == {"drop": ["ALL"]}
    # As the replica runs: its user and group.
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 999
    assert pod["securityContext"]["fsGroup"] == 999
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False


def test_a_restore_that_never_finishes_is_abandoned_without_touching_the_replica() -> None:
    w, s = World(), spec(timeouts={"replicaSeconds": 20})
    real_bind = w._bind

    def stuck(name: str, c: dict[str, Any]) -> None:
        if not name.startswith("crs-"):
            real_bind(name, c)

    w._bind = stuck  # type: ignore[method-assign]
    drive(w, s)
    assert w.status.phase == "Failed"
    assert {c.type: c.reason for c in w.status.conditions}["Failed"] == "RestoreFailed"
    assert all("restore not finished" in r.message for r in w.status.replicas if r.phase == "Failed")
    for pod in ("db-0", "db-2"):
        assert w.content_of(pod) == f"stale-{pod[-1]}"
    assert not [c for c in w.claims if c.startswith("crs-")] and not w.snapshots
