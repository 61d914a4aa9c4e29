"""Property tests: roots, proofs and the incremental tree agree with the RFC 9162 definitions."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charter.audit.merkle import (
    InvalidProof,
    MerkleLevels,
    MerkleTree,
    leaf_hash,
    node_hash,
    root,
    roots_at,
    verify_consistency,
    verify_inclusion,
)
from charter.errors import InvalidRequest

MAX_SIZE = 130  # crosses several powers of two, keeps each example cheap


def _hashes(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


HASHES = _hashes(MAX_SIZE)


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    """MTH straight from RFC 9162 section 2.1.1, recursively: the reference."""
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return node_hash(mth(d[:k]), mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) straight from RFC 9162 section 2.1.3.1."""
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) straight from RFC 9162 section 2.1.4.1."""
    if m == len(d):
        return [] if b else [mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def _flip(proof: list[bytes], element: int, bit: int) -> list[bytes]:
    out = list(proof)
    value = bytearray(out[element])
    value[bit // 8] ^= 1 << (bit % 8)
    out[element] = bytes(value)
    return out


sizes = st.integers(min_value=0, max_value=MAX_SIZE)


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(min_value=1, max_value=MAX_SIZE))
    return size, draw(st.integers(min_value=0, max_value=size - 1))


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(st.integers(min_value=1, max_value=MAX_SIZE))
    return draw(st.integers(min_value=1, max_value=new)), new


@given(sizes)
def test_every_root_implementation_matches_the_rfc_definition(size: int) -> None:
    d = HASHES[:size]
    expected = mth(d)
    assert root(d) == expected
    assert MerkleLevels(HASHES).root(size) == expected
    tree = MerkleTree()
    tree.extend(d)
    assert tree.root() == expected
    assert tree.size == size


@given(st.lists(sizes, max_size=6))
def test_roots_at_many_sizes_in_one_pass(wanted: list[int]) -> None:
    got = roots_at(HASHES, wanted)
    assert got == {s: mth(HASHES[:s]) for s in wanted}


@given(size_and_index())
def test_every_inclusion_proof_verifies(case: tuple[int, int]) -> None:
    size, index = case
    levels = MerkleLevels(HASHES)
    proof = levels.inclusion_proof(index, size)
    assert proof == path(index, HASHES[:size])
    verify_inclusion(HASHES[index], index, size, proof, levels.root(size))


@given(size_and_index(), st.data())
def test_a_flipped_bit_in_an_inclusion_proof_fails(
    case: tuple[int, int], data: st.DataObject
) -> None:
    size, index = case
    levels = MerkleLevels(HASHES)
    proof = levels.inclusion_proof(index, size)
    root_hash = levels.root(size)
    if proof:
        element = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        with pytest.raises(InvalidProof):
            verify_inclusion(HASHES[index], index, size, _flip(proof, element, bit), root_hash)
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(InvalidProof):
        verify_inclusion(_flip([HASHES[index]], 0, bit)[0], index, size, proof, root_hash)


@given(size_and_index(), st.data())
def test_a_wrong_index_fails(case: tuple[int, int], data: st.DataObject) -> None:
    size, index = case
    levels = MerkleLevels(HASHES)
    proof = levels.inclusion_proof(index, size)
    other = data.draw(st.integers(0, size + 3).filter(lambda i: i != index))
    with pytest.raises(InvalidProof):
        verify_inclusion(HASHES[index], other, size, proof, levels.root(size))


@given(size_and_index(), st.data())
def test_a_record_not_in_the_tree_has_no_valid_proof(
    case: tuple[int, int], data: st.DataObject
) -> None:
    # A leaf that is not in the tree, presented with the proof of any real leaf, must fail.
    size, index = case
    levels = MerkleLevels(HASHES)
    outsider = leaf_hash(b"never appended " + data.draw(st.binary(max_size=16)))
    with pytest.raises(InvalidProof):
        verify_inclusion(
            outsider, index, size, levels.inclusion_proof(index, size), levels.root(size)
        )


@given(two_sizes())
def test_every_consistency_proof_verifies(case: tuple[int, int]) -> None:
    old, new = case
    levels = MerkleLevels(HASHES)
    proof = levels.consistency_proof(old, new)
    assert proof == ([] if old == new else subproof(old, HASHES[:new], True))
    verify_consistency(old, new, levels.root(old), levels.root(new), proof)


@given(two_sizes(), st.data())
def test_a_flipped_bit_in_a_consistency_proof_fails(
    case: tuple[int, int], data: st.DataObject
) -> None:
    old, new = case
    levels = MerkleLevels(HASHES)
    proof = levels.consistency_proof(old, new)
    old_root, new_root = levels.root(old), levels.root(new)
    if proof:
        element = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        with pytest.raises(InvalidProof):
            verify_consistency(old, new, old_root, new_root, _flip(proof, element, bit))
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(InvalidProof):
        verify_consistency(old, new, _flip([old_root], 0, bit)[0], new_root, proof)


@given(two_sizes())
def test_a_rewritten_history_is_not_consistent(case: tuple[int, int]) -> None:
    # Changing any leaf of the old tree must break the proof to the new tree.
    old, new = case
    levels = MerkleLevels(HASHES)
    forked = list(HASHES[:new])
    forked[old - 1] = leaf_hash(b"rewritten")
    with pytest.raises(InvalidProof):
        verify_consistency(
            old, new, levels.root(old), mth(forked), levels.consistency_proof(old, new)
        )


@settings(max_examples=30)
@given(sizes, sizes)
def test_the_incremental_tree_resumes_from_its_state(first: int, more: int) -> None:
    tree = MerkleTree()
    tree.extend(HASHES[:first])
    size, peaks = tree.state()
    assert len(peaks) == bin(size).count("1")  # O(log n) memory
    resumed = MerkleTree.from_state(size, peaks)
    total = min(first + more, MAX_SIZE)
    resumed.extend(HASHES[first:total])
    assert resumed.root() == mth(HASHES[:total])


def test_resuming_from_a_state_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="3 subtree hashes"):
        MerkleTree.from_state(7, HASHES[:2])


def test_proof_requests_outside_the_tree_are_refused() -> None:
    levels = MerkleLevels(HASHES[:5])
    with pytest.raises(InvalidRequest, match="outside"):
        levels.inclusion_proof(5)
    with pytest.raises(InvalidRequest, match="larger than"):
        levels.consistency_proof(6, 5)
    with pytest.raises(InvalidRequest, match="larger than the 5 leaves"):
        levels.root(6)
    with pytest.raises(InvalidRequest):
        roots_at(HASHES[:5], [6])
