"""Every method of the Store interface, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from charter.errors import Conflict, InvalidRequest, StorageUnavailable
from charter.storage import AuditLeaf, CheckpointRow, KeyRow, SpendRow, Store, open_store
from charter.storage.schema import latest_version

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def key(key_id: str, principal: str = "team-a", created: float = 0) -> KeyRow:
    return KeyRow(
        id=key_id,
        principal_id=principal,
        key_hash=f"hash-{key_id}",
        prefix=f"ch-{key_id[:4]}",
        description=f"key {key_id}",
        created_at=at(created),
    )


def spend(request_id: str, cost: int, when: float, principal: str = "team-a") -> SpendRow:
    return SpendRow(request_id, principal, "gpt-4o-mini", 10, 20, cost, at(when))


def leaf(n: int) -> AuditLeaf:
    return AuditLeaf(bytes([n % 256]) * 32, f'{{"n":{n}}}', at(n))


def test_backend_names_itself(store: Store, store_url: str) -> None:
    assert store.backend == ("sqlite" if store_url.startswith("sqlite") else "postgresql")


def test_migrate_reports_the_latest_version(store: Store) -> None:
    assert store.schema_version() == latest_version(store.backend) >= 1
    assert store.migrate() == store.schema_version()


def test_schema_version_is_zero_before_migrate(store_url: str) -> None:
    with open_store(store_url) as fresh:
        assert fresh.schema_version() == 0
        assert fresh.migrate() == latest_version(fresh.backend)
        assert fresh.schema_version() == latest_version(fresh.backend)


def test_use_before_migrate_says_to_migrate(store_url: str) -> None:
    with open_store(store_url) as fresh, pytest.raises(StorageUnavailable) as caught:
        fresh.audit_size()
    if fresh.backend == "postgresql":
        assert "migrate()" in str(caught.value)


# -- charter versions ----------------------------------------------------------------------------


def test_charter_versions_are_idempotent_and_keep_the_first(store: Store) -> None:
    store.save_charter_version("sha256:bbb", '{"v":2}', at(10))
    store.save_charter_version("sha256:aaa", '{"v":1}', at(5))
    store.save_charter_version("sha256:bbb", '{"other":true}', at(99))
    versions = store.charter_versions()
    assert [(v.hash, v.canonical_json, v.first_seen_at) for v in versions] == [
        ("sha256:aaa", '{"v":1}', at(5)),
        ("sha256:bbb", '{"v":2}', at(10)),
    ]


# -- keys ----------------------------------------------------------------------------------------


def test_keys_create_find_list(store: Store) -> None:
    store.create_key(key("k1", "team-a", 1))
    store.create_key(key("k2", "team-b", 2))
    store.create_key(key("k3", "team-a", 3))
    found = store.find_key("hash-k2")
    assert found == key("k2", "team-b", 2)
    assert found is not None and found.active
    assert store.find_key("hash-unknown") is None
    assert [k.id for k in store.list_keys()] == ["k1", "k2", "k3"]
    assert [k.id for k in store.list_keys("team-a")] == ["k1", "k3"]
    assert store.list_keys("nobody") == []


def test_duplicate_key_id_or_hash_is_a_conflict(store: Store) -> None:
    store.create_key(key("k1"))
    with pytest.raises(Conflict):
        store.create_key(key("k1"))
    same_hash = KeyRow("k9", "team-a", "hash-k1", "ch-k9", "", at(0))
    with pytest.raises(Conflict):
        store.create_key(same_hash)
    assert [k.id for k in store.list_keys()] == ["k1"]


def test_revoke_key_once(store: Store) -> None:
    store.create_key(key("k1"))
    assert store.revoke_key("k1", at(60)) is True
    assert store.revoke_key("k1", at(120)) is False
    assert store.revoke_key("unknown", at(60)) is False
    revoked = store.find_key("hash-k1")
    assert revoked is not None
    assert revoked.revoked_at == at(60)
    assert not revoked.active


def test_key_created_revoked_round_trips(store: Store) -> None:
    row = KeyRow("k1", "team-a", "hash-k1", "ch-k1", "", at(0), revoked_at=at(5))
    store.create_key(row)
    assert store.find_key("hash-k1") == row


# -- spend ---------------------------------------------------------------------------------------


def test_spend_is_idempotent_per_request_id(store: Store) -> None:
    rows = [spend("r1", 1_000, 0), spend("r2", 2_500, 1)]
    assert store.add_spend(rows) == 2
    assert store.add_spend(rows) == 0
    # A duplicate inside one batch counts once too.
    assert store.add_spend([spend("r3", 7, 2), spend("r3", 7, 2), spend("r1", 1_000, 0)]) == 1
    assert store.spend_between("team-a", at(0), at(10)) == 3_507


def test_spend_between_is_half_open_and_per_principal(store: Store) -> None:
    store.add_spend(
        [
            spend("r1", 100, 0),
            spend("r2", 200, 10),
            spend("r3", 400, 20),
            spend("r4", 800, 10, principal="team-b"),
        ]
    )
    assert store.spend_between("team-a", at(0), at(20)) == 300
    assert store.spend_between("team-a", at(10), at(21)) == 600
    assert store.spend_between("team-a", at(30), at(40)) == 0
    assert store.spend_between("team-b", at(0), at(100)) == 800
    assert store.add_spend([]) == 0


def test_spend_rejects_negative_cost_before_writing(store: Store) -> None:
    with pytest.raises(InvalidRequest, match="cost_micro_usd"):
        store.add_spend([spend("ok", 5, 0), spend("bad", -1, 0)])
    assert store.spend_between("team-a", at(-1), at(1)) == 0


# -- counters ------------------------------------------------------------------------------------


def test_counters_add_and_get_per_window(store: Store) -> None:
    day1, day2 = at(0), at(86_400)
    assert store.get_counter("refunds:cust-1", day1) == 0
    assert store.add_counter("refunds:cust-1", day1, 1) == 1
    assert store.add_counter("refunds:cust-1", day1, 2) == 3
    assert store.add_counter("refunds:cust-1", day1, -1) == 2
    assert store.add_counter("refunds:cust-1", day2, 5) == 5
    assert store.add_counter("refunds:cust-2", day1, 7) == 7
    assert store.get_counter("refunds:cust-1", day1) == 2
    assert store.get_counter("refunds:cust-1", day2) == 5


def test_counter_amount_must_be_an_int(store: Store) -> None:
    with pytest.raises(InvalidRequest, match="amount"):
        store.add_counter("k", at(0), 1.5)  # type: ignore[arg-type]


# -- audit ---------------------------------------------------------------------------------------


def test_audit_append_numbers_from_zero_and_round_trips(store: Store) -> None:
    assert store.audit_size() == 0
    assert store.append_audit([]) == []
    assert store.append_audit([leaf(0), leaf(1)]) == [0, 1]
    assert store.append_audit([leaf(2)]) == [2]
    assert store.audit_size() == 3
    assert store.audit_leaves(0, 3) == [leaf(0), leaf(1), leaf(2)]
    assert store.audit_leaves(1, 2) == [leaf(1)]
    assert store.audit_leaves(2, 100) == [leaf(2)]  # stops at the end, like a slice
    assert store.audit_leaves(3, 3) == []


def test_audit_leaf_bytes_are_exact(store: Store) -> None:
    raw = bytes(range(256))
    store.append_audit([AuditLeaf(raw, '{"é":"ü\\u0000"}', at(0))])
    [back] = store.audit_leaves(0, 1)
    assert back.leaf_hash == raw
    assert back.record_json == '{"é":"ü\\u0000"}'


@pytest.mark.parametrize(("start", "end"), [(-1, 2), (3, 1)])
def test_audit_leaves_refuses_bad_ranges(store: Store, start: int, end: int) -> None:
    with pytest.raises(InvalidRequest):
        store.audit_leaves(start, end)


def test_audit_leaf_hash_must_be_bytes(store: Store) -> None:
    with pytest.raises(InvalidRequest, match="leaf_hash"):
        store.append_audit([AuditLeaf("ab" * 32, "{}", at(0))])  # type: ignore[arg-type]
    assert store.audit_size() == 0


def test_audit_content_put_get_erase(store: Store) -> None:
    store.audit_content_put("ref-1", "Jane Doe, order 4821")
    store.audit_content_put("ref-1", "Jane Doe, order 4821")  # same text again: no-op
    assert store.audit_content_get("ref-1") == "Jane Doe, order 4821"
    with pytest.raises(Conflict):
        store.audit_content_put("ref-1", "something else")
    assert store.audit_content_get("ref-2") is None
    assert store.audit_content_erase("ref-1") is True
    assert store.audit_content_erase("ref-1") is False
    assert store.audit_content_get("ref-1") is None


def test_erasing_content_leaves_the_log_intact(store: Store) -> None:
    store.append_audit([leaf(0)])
    store.audit_content_put("ref-0", "personal data")
    store.audit_content_erase("ref-0")
    assert store.audit_leaves(0, 1) == [leaf(0)]


def test_nul_characters_are_refused_alike_on_both_backends(store: Store) -> None:
    with pytest.raises(InvalidRequest, match="NUL"):
        store.audit_content_put("ref-1", "before\x00after")
    with pytest.raises(InvalidRequest, match="NUL"):
        store.append_audit([AuditLeaf(b"h" * 32, '{"a":"\x00"}', at(0))])
    assert store.audit_content_get("ref-1") is None
    assert store.audit_size() == 0


# -- checkpoints ---------------------------------------------------------------------------------


def test_checkpoints(store: Store) -> None:
    assert store.latest_checkpoint() is None
    assert store.checkpoints() == []
    ten = store.save_checkpoint(10, b"\x0a" * 32, b"sig-10", at(1))
    assert ten == CheckpointRow(10, b"\x0a" * 32, b"sig-10", at(1))
    store.save_checkpoint(20, b"\x14" * 32, b"sig-20", at(2))
    store.save_checkpoint(15, b"\x0f" * 32, b"sig-15", at(3))
    assert store.latest_checkpoint() == CheckpointRow(20, b"\x14" * 32, b"sig-20", at(2))
    assert [c.size for c in store.checkpoints()] == [10, 15, 20]


def test_checkpoint_same_size_same_root_returns_the_first(store: Store) -> None:
    first = store.save_checkpoint(10, b"\x0a" * 32, b"sig-a", at(1))
    again = store.save_checkpoint(10, b"\x0a" * 32, b"sig-b", at(2))
    assert again == first


def test_checkpoint_same_size_other_root_is_a_fork(store: Store) -> None:
    store.save_checkpoint(10, b"\x0a" * 32, b"sig-a", at(1))
    with pytest.raises(Conflict, match="different root"):
        store.save_checkpoint(10, b"\xff" * 32, b"sig-b", at(2))


# -- times and lifecycle -------------------------------------------------------------------------


def test_times_come_back_in_utc_to_the_microsecond(store: Store) -> None:
    paris = timezone(timedelta(hours=1))
    local = datetime(2025, 3, 1, 13, 0, 0, 654321, tzinfo=paris)
    store.save_charter_version("h", "{}", local)
    [row] = store.charter_versions()
    assert row.first_seen_at == local
    assert row.first_seen_at.utcoffset() == timedelta(0)
    assert row.first_seen_at.microsecond == 654321


def test_naive_datetime_is_refused(store: Store) -> None:
    naive = datetime(2025, 3, 1, 12, 0, 0)
    with pytest.raises(InvalidRequest, match="timezone-aware"):
        store.add_counter("k", naive, 1)
    with pytest.raises(InvalidRequest, match="naive"):
        store.add_spend([SpendRow("r", "p", "m", 1, 1, 1, naive)])


def test_closed_store_is_unavailable(store: Store) -> None:
    store.close()
    store.close()  # idempotent
    with pytest.raises(StorageUnavailable, match="closed"):
        store.audit_size()
    with pytest.raises(StorageUnavailable, match="closed"):
        store.add_counter("k", at(0), 1)


def test_append_audit_built_numbers_are_known_to_the_builder(store: Store) -> None:
    """The builder sees the numbers its leaves get, so a record can carry its own index."""
    from datetime import UTC, datetime

    store.append_audit([AuditLeaf(b"\x00" * 32, "{}", datetime.now(UTC))])

    def build(first: int) -> list[AuditLeaf]:
        return [
            AuditLeaf(bytes([first + i]) * 32, f'{{"index":{first + i}}}', datetime.now(UTC))
            for i in range(3)
        ]

    assert store.append_audit_built(3, build) == [1, 2, 3]
    assert [leaf.record_json for leaf in store.audit_leaves(1, 4)] == [
        '{"index":1}',
        '{"index":2}',
        '{"index":3}',
    ]
