"""GTID set algebra (MySQL) and GTID positions (MariaDB): parsing, and set-algebra invariants checked
with hypothesis against a model of plain Python sets of (source, tag, number)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterresync.probes.gtid import GtidSet, MariaGtid, MariaPosition, normalize, subtract

A = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
B = "5f2c9c1e-5a1b-11ef-9b5d-0242ac120003"
C = "8c0b1a2e-0d3f-11ef-8e3b-0242ac120004"

# A model: a GTID set as a Python set of (uuid, tag, transaction number).
gtids = st.sets(
    st.tuples(st.sampled_from([A, B, C]), st.sampled_from(["", "blue", "x_1"]), st.integers(1, 60)),
    max_size=60,
)


def build(model: set[tuple[str, str, int]]) -> GtidSet:
    mapping: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for uuid, tag, n in model:
        mapping.setdefault((uuid, tag), []).append((n, n))
    return GtidSet.of(mapping)


def flatten(gtid_set: GtidSet) -> set[tuple[str, str, int]]:
    return {(uuid, tag, n) for (uuid, tag), ivs in gtid_set.sets for a, b in ivs for n in range(a, b + 1)}


def test_parse_mysql_text() -> None:
    text = f"{A.upper()}:1-5:7:9-10,\n{B}:1-3"
    parsed = GtidSet.parse(text)
    assert str(parsed) == f"{A}:1-5:7:9-10,{B}:1-3"
    assert len(parsed) == 11
    assert GtidSet.parse("") == GtidSet()
    assert not GtidSet.parse("  ")


def test_parse_tagged_gtids() -> None:
    parsed = GtidSet.parse(f"{A}:1-3:Blue:1-5:x_1:2,{A}:4")
    assert parsed.as_dict() == {(A, ""): ((1, 4),), (A, "blue"): ((1, 5),), (A, "x_1"): ((2, 2),)}
    assert str(parsed) == f"{A}:1-4:blue:1-5:x_1:2"
    assert GtidSet.parse(str(parsed)) == parsed


@pytest.mark.parametrize("text", ["nonsense", f"{A}", f"{A}:0", f"{A}:5-3", f"{A}:1-x", "1-2-3"])
def test_parse_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError):
        GtidSet.parse(text)


def test_errant_transactions() -> None:
    primary = GtidSet.parse(f"{A}:1-9,{C}:1-2")
    replica = GtidSet.parse(f"{A}:1-7,{B}:1-2,{C}:1-2")
    assert str(replica - primary) == f"{B}:1-2"
    assert str(primary - replica) == f"{A}:8-9"
    assert not replica <= primary
    assert (replica & primary) <= primary


@given(gtids, gtids)
def test_union_difference_intersection_match_the_model(
    a: set[tuple[str, str, int]], b: set[tuple[str, str, int]]
) -> None:
    x, y = build(a), build(b)
    assert flatten(x | y) == a | b
    assert flatten(x - y) == a - b
    assert flatten(x & y) == a & b
    assert (x <= y) == (a <= b)
    assert len(x) == len(a)
    assert bool(x) == bool(a)


@given(gtids, gtids)
def test_set_algebra_invariants(a: set[tuple[str, str, int]], b: set[tuple[str, str, int]]) -> None:
    x, y = build(a), build(b)
    assert (x - y) | (x & y) == x
    assert not ((x - y) & y)
    assert x <= x | y
    assert x - y <= x
    assert (x | y) - y == x - y
    assert len(x | y) == len(x) + len(y) - len(x & y)
    assert (x <= y and y <= x) == (x == y)


@given(gtids)
def test_text_round_trip(a: set[tuple[str, str, int]]) -> None:
    x = build(a)
    assert GtidSet.parse(str(x)) == x
    # MySQL prints a newline after each comma; the parse ignores it.
    assert GtidSet.parse(str(x).replace(",", ",\n")) == x


@given(st.lists(st.tuples(st.integers(1, 50), st.integers(0, 10)), max_size=12))
def test_normalize_and_subtract_on_intervals(raw: list[tuple[int, int]]) -> None:
    intervals = [(a, a + n) for a, n in raw]
    norm = normalize(intervals)
    numbers = {n for a, b in intervals for n in range(a, b + 1)}
    assert {n for a, b in norm for n in range(a, b + 1)} == numbers
    assert all(b1 + 1 < a2 for (_, b1), (a2, _) in itertools.pairwise(norm))
    half = normalize(intervals[::2])
    assert {n for a, b in subtract(norm, half) for n in range(a, b + 1)} == numbers - {
        n for a, b in half for n in range(a, b + 1)
    }


def test_mariadb_position_parse_and_compare() -> None:
    primary = MariaPosition.parse("0-1-12,1-3-4")
    assert primary.gtids == (MariaGtid(0, 1, 12), MariaGtid(1, 3, 4))
    assert str(primary) == "0-1-12,1-3-4"
    assert MariaPosition.parse("0-1-12,1-3-4").compare(primary) == ([], 0)
    assert MariaPosition.parse("0-1-7").compare(primary) == ([], 5 + 4)
    errant, _ = MariaPosition.parse("0-2-13").compare(primary)
    assert errant == ["0-2-13 (the primary is at 0-1-12)"]
    errant, _ = MariaPosition.parse("0-2-12").compare(primary)
    assert errant == ["0-2-12 (the primary's transaction 0-1-12 has that number)"]
    errant, _ = MariaPosition.parse("0-1-12,7-2-1").compare(primary)
    assert errant == ["7-2-1 (domain 7 does not exist on the primary)"]
    with pytest.raises(ValueError):
        MariaPosition.parse("0-1-2,0-1-3")
    with pytest.raises(ValueError):
        MariaPosition.parse("0-1")


positions = st.dictionaries(st.integers(0, 3), st.tuples(st.integers(1, 3), st.integers(1, 100)), max_size=4)


@given(positions)
def test_mariadb_position_round_trip_and_self_comparison(p: dict[int, tuple[int, int]]) -> None:
    position = MariaPosition(tuple(MariaGtid(d, s, n) for d, (s, n) in sorted(p.items())))
    assert MariaPosition.parse(str(position)) == position
    assert position.compare(position) == ([], 0)


@given(positions, st.integers(0, 3), st.integers(1, 20))
def test_mariadb_a_replica_behind_in_one_domain_is_never_errant(
    p: dict[int, tuple[int, int]], domain: int, by: int
) -> None:
    primary = MariaPosition(tuple(MariaGtid(d, s, n) for d, (s, n) in sorted(p.items())))
    if domain not in p or p[domain][1] <= by:
        return
    server, seq = p[domain]
    behind = MariaPosition(
        tuple(g if g.domain != domain else MariaGtid(domain, server, seq - by) for g in primary.gtids)
    )
    assert behind.compare(primary) == ([], by)
    errant, _ = primary.compare(behind)
    assert errant  # and the primary, seen from the replica, is ahead


def test_a_replicas_own_transaction_missing_from_the_primarys_binary_log_is_errant() -> None:
    from clusterresync.probes.gtid import maria_binlog_state, maria_own_errant

    # Several entries per domain: the last GTID of each server (MariaDB's gtid_binlog_state).
    assert maria_binlog_state("0-1-12,0-2-11, 1-1-3\n") == {(0, 1): 12, (0, 2): 11, (1, 1): 3}
    # The replica (server 2) wrote 0-2-11; the primary went on to 0-1-12 without it.
    assert maria_own_errant("0-1-10,0-2-11", "0-1-12", 2) == [
        "0-2-11 (no transaction of server 2 in the primary's binary log)"
    ]
    # Server 2 was the primary once: what it wrote then is in today's primary's binary log.
    assert maria_own_errant("0-1-12,0-2-7", "0-1-12,0-2-7", 2) == []
    assert maria_own_errant("0-1-12,0-2-9", "0-1-12,0-2-7", 2) == [
        "0-2-9 (the primary's binary log has server 2 up to 7)"
    ]
    # Other servers' entries are not the replica's own writes (a failover's history).
    assert maria_own_errant("0-3-5,0-1-12", "0-1-12", 2) == []
    with pytest.raises(ValueError):
        maria_binlog_state("0-1")
