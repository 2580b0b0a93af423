"""Generated names (safety rule 2: identity, not names)."""

from __future__ import annotations

from clusterresync import planner


# -- 2. identity, not names ----------------------------------------------------------------------
def test_generated_names_come_from_the_uid_not_from_names_that_concatenate() -> None:
    # "pg" + "main-db" and "pg-main" + "db" named the same claim when names were concatenated.
    a = planner.staging_claim_name("0b9e2f7c-1111-4a3b-9a55-000000000001", "main-db-0", "data")
    b = planner.staging_claim_name("0b9e2f7c-2222-4a3b-9a55-000000000002", "db-0", "data")
    assert a != b
    assert planner.staging_claim_name("u1", "db-0", "data") != planner.staging_claim_name(
        "u2", "db-0", "data"
    )
