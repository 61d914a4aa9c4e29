"""Published RFC 6962 / Certificate Transparency test vectors for the tree hashing and proofs.

The leaves, roots, inclusion proofs and consistency proofs are those of the Go CT implementation,
transparency-dev/merkle, file proof/verify_test.go (commit 02194e9afb6c1d95b5381350007963aa70fff472;
the same vectors as google/certificate-transparency's C++ merkle_tree_test.cc). Their indexes are
1-based there (leaf m of tree n); here they are converted to our 0-based leaf indexes.
"""

from __future__ import annotations

import pytest

from charter.audit.merkle import (
    EMPTY_ROOT,
    InvalidProof,
    MerkleLevels,
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    leaf_hashes,
    root,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]

# ROOTS[n - 1] is the root of the tree of the first n leaves.
ROOTS = [
    bytes.fromhex(h)
    for h in [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
]


def _h(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(x) for x in hexes]


# (leaf index, 0-based; tree size; proof)
INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _h(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, _h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        _h(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]

# (old size, new size, proof)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _h(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]

HASHES = leaf_hashes(LEAVES)
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    expected = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert EMPTY_ROOT.hex() == expected
    assert root([]).hex() == expected
    assert MerkleTree().root().hex() == expected
    assert MerkleLevels([]).root().hex() == expected


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_of_every_prefix(size: int) -> None:
    assert root(HASHES[:size]) == ROOTS[size - 1]
    assert MerkleLevels(HASHES).root(size) == ROOTS[size - 1]
    tree = MerkleTree()
    tree.extend(HASHES[:size])
    assert tree.root() == ROOTS[size - 1]


def test_leaf_hash_prefixes_a_zero_byte() -> None:
    # A one-leaf tree's root is its leaf hash: SHA-256(0x00 || "").
    assert leaf_hash(b"") == ROOTS[0]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_vectors_are_generated_and_verified(
    index: int, size: int, proof: list[bytes]
) -> None:
    assert inclusion_proof(index, HASHES[:size]) == proof
    verify_inclusion(HASHES[index], index, size, proof, ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_vectors_are_generated_and_verified(
    old: int, new: int, proof: list[bytes]
) -> None:
    assert consistency_proof(old, new, HASHES[:new]) == proof
    verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)


def _corrupted_inclusion(
    index: int, size: int, proof: list[bytes], root_hash: bytes, leaf: bytes
) -> list[tuple[str, tuple[bytes, int, int, list[bytes], bytes]]]:
    """The corruptions of the Go suite (corruptInclusionProof), each of which must be rejected."""
    probes: list[tuple[str, tuple[bytes, int, int, list[bytes], bytes]]] = [
        ("index + 1", (leaf, index + 1, size, proof, root_hash)),
        ("index ^ 2", (leaf, index ^ 2, size, proof, root_hash)),
        ("size * 2", (leaf, index, size * 2, proof, root_hash)),
        ("wrong leaf", (SOME_HASH, index, size, proof, root_hash)),
        ("empty root", (leaf, index, size, proof, EMPTY_ROOT)),
        ("random root", (leaf, index, size, proof, SOME_HASH)),
        ("trailing root", (leaf, index, size, [*proof, root_hash], root_hash)),
        ("preceding root", (leaf, index, size, [root_hash, *proof], root_hash)),
    ]
    if index > 0:
        probes.append(("index - 1", (leaf, index - 1, size, proof, root_hash)))
    if size // 2 > 0:
        probes.append(("size / 2", (leaf, index, size // 2, proof, root_hash)))
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        probes.append((f"proof[{i}] bit 3", (leaf, index, size, flipped, root_hash)))
    if proof:
        probes.append(("removed component", (leaf, index, size, proof[:-1], root_hash)))
    if len(proof) > 1:
        inserted = [proof[0], SOME_HASH, *proof[1:]]
        probes.append(("inserted component", (leaf, index, size, inserted, root_hash)))
    return probes


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_corrupted_inclusion_vectors_are_rejected(
    index: int, size: int, proof: list[bytes]
) -> None:
    for desc, args in _corrupted_inclusion(index, size, proof, ROOTS[size - 1], HASHES[index]):
        with pytest.raises(InvalidProof):
            verify_inclusion(*args)
            pytest.fail(f"accepted a corrupted proof: {desc}")


@pytest.mark.parametrize(("old", "new", "proof"), [c for c in CONSISTENCY if c[2]])
def test_corrupted_consistency_vectors_are_rejected(old: int, new: int, proof: list[bytes]) -> None:
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    probes: list[tuple[str, tuple[int, int, bytes, bytes, list[bytes]]]] = [
        ("old - 1", (old - 1, new, r1, r2, proof)),
        ("old + 1", (old + 1, new, r1, r2, proof)),
        ("old ^ 2", (old ^ 2, new, r1, r2, proof)),
        ("new * 2", (old, new * 2, r1, r2, proof)),
        ("new / 2", (old, new // 2, r1, r2, proof)),
        ("wrong old root", (old, new, SOME_HASH, r2, proof)),
        ("wrong new root", (old, new, r1, SOME_HASH, proof)),
        ("swapped roots", (old, new, r2, r1, proof)),
        ("empty proof", (old, new, r1, r2, [])),
        ("trailing old root", (old, new, r1, r2, [*proof, r1])),
        ("trailing new root", (old, new, r1, r2, [*proof, r2])),
        ("preceding old root", (old, new, r1, r2, [r1, *proof])),
        ("preceding new root", (old, new, r1, r2, [r2, *proof])),
        ("preceding proof[0]", (old, new, r1, r2, [proof[0], *proof])),
        ("truncated proof", (old, new, r1, r2, proof[:-1])),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        probes.append((f"proof[{i}] bit 4", (old, new, r1, r2, flipped)))
    for desc, args in probes:
        with pytest.raises(InvalidProof):
            verify_consistency(*args)
            pytest.fail(f"accepted a corrupted proof: {desc}")


def test_trivial_consistency_cases() -> None:
    # Equal sizes: empty proof and equal roots. From the empty tree: empty proof, empty root.
    verify_consistency(3, 3, ROOTS[2], ROOTS[2], [])
    verify_consistency(0, 5, EMPTY_ROOT, ROOTS[4], [])
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    with pytest.raises(InvalidProof, match="different roots"):
        verify_consistency(3, 3, ROOTS[2], ROOTS[3], [])
    with pytest.raises(InvalidProof, match="must be empty"):
        verify_consistency(3, 3, ROOTS[2], ROOTS[2], [EMPTY_ROOT])
    with pytest.raises(InvalidProof, match="empty tree"):
        verify_consistency(0, 5, ROOTS[0], ROOTS[4], [])
    with pytest.raises(InvalidProof, match="larger than"):
        verify_consistency(5, 3, ROOTS[4], ROOTS[2], [])


def test_inclusion_rejects_index_outside_tree_and_bad_hash_sizes() -> None:
    with pytest.raises(InvalidProof, match="not inside"):
        verify_inclusion(HASHES[0], 1, 1, [], ROOTS[0])
    with pytest.raises(InvalidProof, match="not inside"):
        verify_inclusion(HASHES[0], 0, 0, [], EMPTY_ROOT)
    with pytest.raises(InvalidProof, match="32-byte"):
        verify_inclusion(b"", 0, 1, [], ROOTS[0])
    with pytest.raises(InvalidProof, match="32-byte"):
        verify_inclusion(HASHES[5], 5, 8, [b"", *INCLUSION[2][2]], ROOTS[7])
