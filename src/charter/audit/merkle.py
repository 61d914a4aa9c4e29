"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, inclusion and consistency proofs.

The audit log is a list of leaves; this module turns leaf hashes into roots and proofs, and checks
proofs exactly as RFC 9162 sections 2.1.3.2 and 2.1.4.2 describe, so any CT verifier agrees with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from charter.errors import InvalidRequest

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the empty tree: SHA-256 of the empty string (RFC 9162 section 2.1.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256


class InvalidProof(InvalidRequest):
    """An inclusion or consistency proof does not prove what it claims; the message says why."""

    code = "invalid_proof"


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf: SHA-256(0x00 || data)."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: SHA-256(0x01 || left || right)."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def leaf_hashes(leaves: Iterable[bytes]) -> list[bytes]:
    """Leaf hashes of many leaves at once (a comprehension keeps the per-leaf cost minimal)."""
    sha = _sha256
    return [sha(b"\x00" + data).digest() for data in leaves]


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162: the largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def fold_peaks(peaks: Sequence[bytes]) -> bytes:
    """The root of a tree from its perfect subtrees, largest (leftmost) first (``peaks_at``).

    RFC 9162 splits a tree at the largest power of two, so the left part is always perfect and the
    root is H(p0, H(p1, ... H(p_{n-2}, p_{n-1}))): a fold from the right.
    """
    if not peaks:
        return EMPTY_ROOT
    acc = peaks[-1]
    for peak in reversed(peaks[:-1]):
        acc = _sha256(_NODE_PREFIX + peak + acc).digest()
    return acc


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise InvalidProof(
            f"{what} must be a {HASH_SIZE}-byte SHA-256 hash",
            hint="pass raw digest bytes (bytes.fromhex for hex strings)",
        )


def _check_size(value: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidProof(f"{what} must be a non-negative integer, got {value!r}")


def _next_level(level: Sequence[bytes]) -> list[bytes]:
    """Parents of each complete pair of nodes; an unpaired last node is left out (not promoted)."""
    sha = _sha256
    pairs = zip(level[0::2], level[1::2], strict=False)  # the shorter odd half ends the pairing
    return [sha(b"\x01" + left + right).digest() for left, right in pairs]


# --- roots ---------------------------------------------------------------------------------------


def roots_at(hashes: Sequence[bytes], sizes: Iterable[int]) -> dict[int, bytes]:
    """Roots of several prefixes of one tree in a single bottom-up pass over ``hashes``.

    This is the fast path for verification: each level is hashed with one list comprehension and
    dropped as soon as the next is built, so memory stays near the size of the leaf list. A prefix
    of size s has a perfect subtree at level k for every bit k set in s, namely node (s >> k) - 1
    of that level; the pass picks those up on the way and folds them at the end.
    """
    return {size: fold_peaks(peaks) for size, peaks in peaks_at(hashes, sizes).items()}


def peaks_at(hashes: Sequence[bytes], sizes: Iterable[int]) -> dict[int, list[bytes]]:
    """The perfect-subtree hashes (leftmost first) of several prefixes, in one pass.

    These are what ``MerkleTree.state()`` holds for a tree of that size, and the left-hand nodes
    of any consistency proof from that size (see ``range_consistency_proof``).
    """
    wanted = sorted(set(sizes))
    for size in wanted:
        _check_size(size, "tree size")
        if size > len(hashes):
            raise InvalidRequest(
                f"cannot compute the root of {size} leaves from {len(hashes)}",
                hint="pass a size no larger than the number of leaf hashes",
            )
    peaks: dict[int, list[bytes]] = {size: [] for size in wanted}
    level: Sequence[bytes] = hashes
    k = 0
    while any(size >> k for size in wanted):
        for size in wanted:
            if (size >> k) & 1:
                peaks[size].append(level[(size >> k) - 1])
        if not any(size >> (k + 1) for size in wanted):
            break
        level = _next_level(level)
        k += 1
    # Peaks were collected smallest level first, which is rightmost first; callers want leftmost.
    return {size: peaks[size][::-1] for size in wanted}


def frontier(hashes: Sequence[bytes]) -> MerkleTree:
    """An incremental tree holding ``hashes``, built in one bulk pass (to append more to it)."""
    return MerkleTree.from_state(len(hashes), peaks_at(hashes, [len(hashes)])[len(hashes)])


def root(hashes: Sequence[bytes]) -> bytes:
    """MTH of the whole list of leaf hashes (RFC 9162 section 2.1.1)."""
    return roots_at(hashes, [len(hashes)])[len(hashes)]


class MerkleLevels:
    """Every complete level of a tree, so roots of any prefix and proofs cost O(log n) each.

    Level k holds the hash of each perfect, aligned subtree of 2**k leaves. Build it once from the
    leaf hashes (O(n) time and memory) when many proofs are needed, e.g. for an export bundle.
    """

    __slots__ = ("_levels",)

    def __init__(self, hashes: Sequence[bytes]) -> None:
        levels: list[Sequence[bytes]] = [hashes]
        while len(levels[-1]) >= 2:
            levels.append(_next_level(levels[-1]))
        self._levels = levels

    @property
    def size(self) -> int:
        """The number of leaves."""
        return len(self._levels[0])

    def _check_range(self, size: int) -> None:
        _check_size(size, "tree size")
        if size > self.size:
            raise InvalidRequest(
                f"tree size {size} is larger than the {self.size} leaves available",
                hint="ask for a size no larger than the log",
            )

    def subtree_hash(self, start: int, end: int) -> bytes:
        """MTH of the leaves [start, end), split the RFC 9162 way (0 <= start < end <= size)."""
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            return self._levels[n.bit_length() - 1][start // n]
        k = _largest_power_of_two_below(n)
        return node_hash(self.subtree_hash(start, start + k), self.subtree_hash(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        """Root of the first ``size`` leaves (all of them by default)."""
        size = self.size if size is None else size
        self._check_range(size)
        return EMPTY_ROOT if size == 0 else self.subtree_hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 section 2.1.3.1, lowest sibling first."""
        size = self.size if size is None else size
        self._check_range(size)
        _check_size(index, "leaf index")
        if index >= size:
            raise InvalidRequest(
                f"leaf index {index} is outside a tree of size {size}",
                hint="indexes start at 0 and must be smaller than the tree size",
            )
        path: list[bytes] = []
        lo, hi, m = 0, size, index
        # Walk down from the root, remembering each sibling; the proof lists them bottom-up.
        while hi - lo > 1:
            k = _largest_power_of_two_below(hi - lo)
            if m < k:
                path.append(self.subtree_hash(lo + k, hi))
                hi = lo + k
            else:
                path.append(self.subtree_hash(lo, lo + k))
                lo, m = lo + k, m - k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[0:new_size]) of RFC 9162 section 2.1.4.1 (empty when trivial)."""
        new_size = self.size if new_size is None else new_size
        self._check_range(new_size)
        _check_size(old_size, "old tree size")
        if old_size > new_size:
            raise InvalidRequest(
                f"old size {old_size} is larger than new size {new_size}",
                hint="a consistency proof goes from a smaller tree to a larger one",
            )
        if old_size == 0 or old_size == new_size:
            return []
        path: list[bytes] = []
        lo, hi, m, complete = 0, new_size, old_size, True
        # SUBPROOF(m, D[lo:hi], complete), unrolled; nodes are collected top-down then reversed.
        while m != hi - lo:
            k = _largest_power_of_two_below(hi - lo)
            if m <= k:
                path.append(self.subtree_hash(lo + k, hi))
                hi = lo + k
            else:
                path.append(self.subtree_hash(lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        if not complete:
            path.append(self.subtree_hash(lo, hi))
        path.reverse()
        return path


def inclusion_proof(index: int, hashes: Sequence[bytes]) -> list[bytes]:
    """The inclusion proof of leaf ``index`` in the tree of all ``hashes``.

    Builds the tree's levels each call (O(n)); use ``MerkleLevels`` for many proofs over one tree.
    """
    return MerkleLevels(hashes).inclusion_proof(index)


def consistency_proof(old_size: int, new_size: int, hashes: Sequence[bytes]) -> list[bytes]:
    """The consistency proof from the first ``old_size`` to the first ``new_size`` leaves."""
    return MerkleLevels(hashes).consistency_proof(old_size, new_size)


def range_consistency_proof(
    old_peaks: Sequence[bytes], old_size: int, new_leaves: Sequence[bytes]
) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) from the old tree's subtree hashes and the new leaf hashes.

    ``old_peaks`` are the perfect-subtree hashes of the first ``old_size`` leaves (leftmost first,
    as ``MerkleTree.state()`` or ``peaks_at`` give them) and ``new_leaves`` the leaf hashes of
    ``[old_size, new_size)``. Every node of an RFC 9162 consistency proof lies either wholly
    inside the old tree, where it is one of its perfect subtrees, or wholly after it, where it
    is the root of a run of new leaves; so a verifier who trusts the old tree and holds the new
    records can build the proof itself, in O(new leaves), without the old records.
    """
    _check_size(old_size, "old tree size")
    if len(old_peaks) != old_size.bit_count():
        raise InvalidRequest(
            f"a tree of size {old_size} has {old_size.bit_count()} subtree hashes, "
            f"got {len(old_peaks)}",
            hint="pass what peaks_at or MerkleTree.state() returned",
        )
    new_size = old_size + len(new_leaves)
    if old_size == 0 or old_size == new_size:
        return []
    path: list[bytes] = []
    peaks = iter(old_peaks)
    lo, hi, m, complete = 0, new_size, old_size, True
    # The loop of MerkleLevels.consistency_proof; each left-hand node taken is the next peak.
    while m != hi - lo:
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            path.append(root(new_leaves[lo + k - old_size : hi - old_size]))
            hi = lo + k
        else:
            path.append(next(peaks))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        path.append(next(peaks))
    path.reverse()
    return path


# --- verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2, step by step) --------------------------


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root_hash: bytes
) -> None:
    """Check that ``leaf`` (a leaf hash) is leaf ``index`` of the tree with ``root_hash``.

    Returns quietly when the proof holds; raises ``InvalidProof`` saying what failed otherwise.
    """
    _check_hash(leaf, "leaf hash")
    _check_hash(root_hash, "root hash")
    _check_size(index, "leaf index")
    _check_size(tree_size, "tree size")
    for i, node in enumerate(proof):
        _check_hash(node, f"proof element {i}")
    if index >= tree_size:
        raise InvalidProof(f"leaf index {index} is not inside a tree of size {tree_size}")
    fn, sn = index, tree_size - 1
    r = bytes(leaf)
    for p in proof:
        if sn == 0:
            raise InvalidProof(
                f"inclusion proof for leaf {index} in a tree of size {tree_size} is too long"
            )
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof(
            f"inclusion proof for leaf {index} in a tree of size {tree_size} is too short"
        )
    if r != root_hash:
        raise InvalidProof(
            f"leaf {index} is not in the tree of size {tree_size} with root "
            f"{bytes(root_hash).hex()}: the proof leads to root {r.hex()}"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (``new_size``, ``new_root``) extends (``old_size``, ``old_root``).

    Raises ``InvalidProof`` saying what failed. Trivial cases, which RFC 9162 leaves to the caller:
    equal sizes need an empty proof and equal roots; an old size of 0 needs an empty proof and the
    empty-tree root as ``old_root`` (we do not accept an arbitrary root for the empty tree).
    """
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    _check_size(old_size, "old tree size")
    _check_size(new_size, "new tree size")
    for i, node in enumerate(proof):
        _check_hash(node, f"proof element {i}")
    if old_size > new_size:
        raise InvalidProof(f"old size {old_size} is larger than new size {new_size}")
    if old_size == new_size or old_size == 0:
        if proof:
            raise InvalidProof(
                f"a consistency proof from size {old_size} to {new_size} must be empty"
            )
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise InvalidProof("the root of an empty tree must be SHA-256 of the empty string")
        if old_size == new_size and old_root != new_root:
            raise InvalidProof(f"two trees of size {old_size} have different roots")
        return
    path = list(proof)
    if not path:  # step 1
        raise InvalidProof(f"empty consistency proof from size {old_size} to {new_size}")
    if old_size & (old_size - 1) == 0:  # step 2: first is an exact power of 2
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            raise InvalidProof(f"consistency proof from size {old_size} to {new_size} is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # step 7
        raise InvalidProof(f"consistency proof from size {old_size} to {new_size} is too short")
    if fr != old_root:
        raise InvalidProof(
            f"consistency proof does not reproduce the old root of size {old_size}: the older "
            "tree is not a prefix of the newer one, or the proof is wrong"
        )
    if sr != new_root:
        raise InvalidProof(
            f"consistency proof does not reproduce the new root of size {new_size}: the newer "
            "tree does not extend the older one, or the proof is wrong"
        )


# --- incremental tree ---------------------------------------------------------------------------


class MerkleTree:
    """An append-only tree that keeps only its compact range: one hash per set bit of its size.

    The writer appends each leaf hash as it commits a record and asks for the root when it signs a
    checkpoint; memory is O(log n) and each append costs amortised one node hash. ``state()`` and
    ``from_state()`` let a restarted writer resume without reading the log back.
    """

    __slots__ = ("_peaks", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._peaks: list[bytes] = []  # perfect subtrees, leftmost (largest) first

    @classmethod
    def from_state(cls, size: int, peaks: Sequence[bytes]) -> MerkleTree:
        """Resume a tree from ``state()``: its size and the hashes of its perfect subtrees."""
        _check_size(size, "tree size")
        if len(peaks) != size.bit_count():
            raise InvalidRequest(
                f"a tree of size {size} has {size.bit_count()} subtree hashes, got {len(peaks)}",
                hint="pass exactly what MerkleTree.state() returned",
            )
        for i, peak in enumerate(peaks):
            _check_hash(peak, f"subtree hash {i}")
        tree = cls()
        tree._size = size
        tree._peaks = [bytes(p) for p in peaks]
        return tree

    def state(self) -> tuple[int, tuple[bytes, ...]]:
        """The size and the perfect-subtree hashes, leftmost first; enough to resume the tree."""
        return self._size, tuple(self._peaks)

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    def append(self, leaf: bytes) -> int:
        """Append one leaf hash; returns its index."""
        _check_hash(leaf, "leaf hash")
        index = self._size
        h = bytes(leaf)
        s = index
        # Each trailing 1 bit of the old size is a perfect subtree of the same height: merge.
        while s & 1:
            h = _sha256(_NODE_PREFIX + self._peaks.pop() + h).digest()
            s >>= 1
        self._peaks.append(h)
        self._size = index + 1
        return index

    def append_data(self, data: bytes) -> int:
        """Hash ``data`` as a leaf and append it; returns its index."""
        return self.append(leaf_hash(data))

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append many leaf hashes."""
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """The current root (the empty-tree root when nothing was appended)."""
        return fold_peaks(self._peaks)

    def __repr__(self) -> str:
        return f"MerkleTree(size={self._size}, root={self.root().hex()[:16]}...)"
