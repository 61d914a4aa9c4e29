"""Prompt-injection and jailbreak detection: a hashed n-gram linear model that runs on numpy alone.

Two variants ship in one artifact: ``direct`` for content the user wrote and ``untrusted`` for
content the user did not write (tool results, retrieved documents, email), trained by
``training/train_injection.py``; the model card is ``models/injection.md`` beside the artifact.
The scanner also scores de-obfuscated views of the text (``charter.guards.views``: base64, hex and
escapes decoded, spelled-out letters joined, leetspeak folded) and reports the highest score.
"""

from __future__ import annotations

import json
import threading
import unicodedata
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from charter.errors import ConfigurationError, InvalidRequest
from charter.guards.base import ScanResult
from charter.guards.views import views as deobfuscated_views
from charter.policy.verdict import Span

Variant = Literal["direct", "untrusted"]
VARIANTS: tuple[Variant, ...] = get_args(Variant)

ARTIFACT = "injection.npz"
"""File name of the shipped artifact inside ``charter/guards/models``."""

WINDOW = 512
"""Characters per scanned window: long texts are scored window by window and the maximum wins."""

STRIDE = 256
"""Step between windows; half a window of overlap, so any injection up to 256 characters long lies
wholly inside at least one window."""

# Feature hashing. Python's hash() is salted per process, so buckets come from fixed arithmetic:
# polynomial hashes over code points (mod 2**64, which numpy's uint64 wraps to for free) finished
# by a multiply-shift into 2**bits buckets. Training and run time share this code, so the features
# the model was fitted on are exactly the features it scores.
_CHAR_NGRAMS = (3, 4, 5)
_BASE = 0x100000001B3
_ROLL = np.uint64(_BASE)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_CHAR_SEEDS = {3: np.uint64(0x51ED27), 4: np.uint64(0xA54FF53A), 5: np.uint64(0x3C6EF372)}
_WORD_SEED = np.uint64(0x6A09E667)
_BIGRAM_SEED = np.uint64(0xBB67AE85)
_SPACE = 32
# Invisible characters that attackers insert to split the n-grams a detector looks for.
_INVISIBLE = np.array(
    [0xAD, 0x180E, *range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x2065), 0xFEFF],
    dtype=np.uint32,
)
_UNICODE_SPACES = np.array(
    [c for c in range(128, 0x3001) if chr(c).isspace()] + [0xFEFF], dtype=np.uint32
)
_ASCII_SPACE = np.zeros(128, dtype=bool)
_ASCII_SPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True
_ASCII_WORD = np.array([chr(c).isalnum() or c == ord("_") for c in range(128)], dtype=bool)


@dataclass(frozen=True)
class Features:
    """The hashed features of one text: one bucket per occurrence and where it starts.

    ``starts`` are offsets in the original text, so the features of any window are the
    occurrences that start inside it.
    """

    buckets: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]


def _fold(text: str) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """Code points of the text as the model sees it (NFKC, lower case, invisibles dropped, each
    run of white space one space, padded with a space each side), and each one's source offset."""
    folded = unicodedata.normalize("NFKC", text).lower()
    codes = np.frombuffer(folded.encode("utf-32-le"), dtype=np.uint32)
    if len(folded) == len(text):
        origin = np.arange(len(codes), dtype=np.int64)
    else:
        # NFKC or lower-casing changed the length (ligatures, compatibility forms): offsets are
        # scaled, so spans are approximate for such text while the features stay exact.
        origin = (np.arange(len(codes), dtype=np.int64) * len(text)) // max(len(codes), 1)
    ascii_only = folded.isascii()
    if not ascii_only:
        visible = ~np.isin(codes, _INVISIBLE)
        codes, origin = codes[visible], origin[visible]
        space = np.isin(codes, _UNICODE_SPACES)
        low = codes < 128
        space[low] = _ASCII_SPACE[codes[low]]
    else:
        space = _ASCII_SPACE[codes]
    # Keep the first space of every run, and none at the start.
    keep = ~(space & np.concatenate(([True], space[:-1])))
    codes = np.where(space, np.uint32(_SPACE), codes)[keep]
    origin = origin[keep]
    end = len(text)
    first = int(origin[0]) if len(origin) else 0
    padded = np.concatenate(
        ([_SPACE], codes, [_SPACE] if not len(codes) or codes[-1] != _SPACE else [])
    )
    starts = np.concatenate(([first], origin, [end] if len(padded) > len(codes) + 1 else []))
    return padded.astype(np.uint32), starts.astype(np.int64)


def _bucket(hashes: Any, seed: np.uint64, shift: np.uint64) -> Any:
    return ((hashes ^ seed) * _MIX) >> shift


def hashed_features(text: str, bits: int) -> Features:
    """Every feature occurrence of ``text`` hashed into ``2**bits`` buckets.

    Features are character 3-, 4- and 5-grams over the folded text (its padding and single spaces
    mark word starts and ends) plus word unigrams and bigrams; a word is a run of letters, digits,
    underscores or any non-ASCII non-space character.
    """
    shift = np.uint64(64 - bits)
    codes32, origin = _fold(text)
    codes = codes32.astype(np.uint64)
    n_codes = len(codes)
    buckets: list[Any] = []
    starts: list[Any] = []
    rolling = codes
    for n in range(2, max(_CHAR_NGRAMS) + 1):
        if n_codes < n:
            break
        rolling = rolling[:-1] * _ROLL + codes[n - 1 :]
        if n in _CHAR_NGRAMS:
            buckets.append(_bucket(rolling, _CHAR_SEEDS[n], shift))
            starts.append(origin[: len(rolling)])
    word = codes32 >= 128
    word &= codes32 != _SPACE
    low = ~word
    word[low] = _ASCII_WORD[np.minimum(codes32[low], 127)]
    edges = np.diff(np.concatenate(([False], word, [False])).astype(np.int8))
    first, stop = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if len(first):
        # Polynomial hash of each word from prefix sums: H(i, j) = B**(j-1) * (S[j] - S[i]) with
        # S[k] = sum(c[t] * B**-t for t < k); B is odd, so its inverse mod 2**64 exists.
        pow_b, pow_inv = _powers(n_codes + 1)
        prefix = np.concatenate(([np.uint64(0)], np.cumsum(codes * pow_inv[:n_codes])))
        words = pow_b[stop - 1] * (prefix[stop] - prefix[first])
        buckets.append(_bucket(words, _WORD_SEED, shift))
        starts.append(origin[first])
        if len(first) > 1:
            buckets.append(_bucket(words[:-1] * _ROLL + words[1:], _BIGRAM_SEED, shift))
            starts.append(origin[first[:-1]])
    if not buckets:
        empty = np.empty(0, dtype=np.int64)
        return Features(empty, empty)
    return Features(
        np.concatenate(buckets).astype(np.int64), np.concatenate(starts).astype(np.int64)
    )


_POWERS: list[tuple[Any, Any]] = []


def _powers(n: int) -> tuple[Any, Any]:
    """``B**k`` and ``B**-k`` mod 2**64 for k < n, cached (grown by doubling)."""
    if not _POWERS or len(_POWERS[0][0]) < n:
        size = max(n, 2 * len(_POWERS[0][0]) if _POWERS else 4096)
        pow_b = np.cumprod(np.full(size, _ROLL, dtype=np.uint64))
        pow_b = np.concatenate(([np.uint64(1)], pow_b[:-1]))
        inv = np.uint64(pow(_BASE, -1, 2**64))
        pow_inv = np.cumprod(np.full(size, inv, dtype=np.uint64))
        pow_inv = np.concatenate(([np.uint64(1)], pow_inv[:-1]))
        _POWERS[:] = [(pow_b, pow_inv)]
    return _POWERS[0]


def windows(length: int, window: int = WINDOW, stride: int = STRIDE) -> list[tuple[int, int]]:
    """The ``[start, end)`` windows that cover a text of ``length``; one when it is short enough."""
    if length <= window:
        return [(0, length)]
    starts = list(range(0, length - window, stride))
    starts.append(length - window)
    return [(s, s + window) for s in starts]


@dataclass(frozen=True)
class InjectionModel:
    """One trained variant: a weight per feature bucket, a bias and the thresholds chosen for it.

    The logit of a window is ``bias + sum(weights[distinct buckets]) / sqrt(number of distinct
    buckets)``: binary features, L2-normalised, exactly as in training.
    """

    variant: Variant
    weights: npt.NDArray[np.float32] = field(repr=False)
    bias: float
    bits: int
    threshold: float
    escalate_band: tuple[float, float]
    metrics: dict[str, Any] = field(default_factory=dict, repr=False)

    def _logit(self, buckets: npt.NDArray[np.int64]) -> float:
        distinct = np.unique(buckets)
        if len(distinct) == 0:
            return -np.inf
        total = float(self.weights[distinct].sum(dtype=np.float64))
        return self.bias + total / float(np.sqrt(len(distinct)))

    def score_windows(self, text: str) -> tuple[float, int, int]:
        """The highest window score of ``text`` and that window's ``[start, end)``."""
        spans = windows(len(text))
        feats = hashed_features(text, self.bits)
        if len(spans) == 1:
            logits = [self._logit(feats.buckets)]
        else:
            # Hash the whole text once; each window takes the occurrences that start inside it.
            order = np.argsort(feats.starts, kind="stable")
            starts, buckets = feats.starts[order], feats.buckets[order]
            edges = np.searchsorted(starts, np.array(spans, dtype=np.int64))
            logits = [self._logit(buckets[lo:hi]) for lo, hi in edges]
        best = int(np.argmax(logits))
        if logits[best] == -np.inf:
            return 0.0, 0, len(text)
        score = float(1.0 / (1.0 + np.exp(-logits[best])))
        return score, spans[best][0], spans[best][1]

    def score_views(self, text: str, views: bool = True) -> tuple[float, int, int, str]:
        """The highest window score over ``text`` and, with ``views``, its de-obfuscated views;
        that window's ``[start, end)`` in ``text`` and the winning view's name (``""`` for the text
        as sent). A view wins only when it scores strictly higher than the text itself."""
        score, start, end = self.score_windows(text)
        name = ""
        if views:
            for view in deobfuscated_views(text):
                view_score, lo, hi = self.score_windows(view.text)
                if view_score > score:
                    score, name = view_score, view.name
                    start, end = view.span(lo, hi)
        return score, start, end, name


_MODELS: dict[Variant, InjectionModel] = {}
_LOCK = threading.Lock()


def load_model(variant: Variant = "direct") -> InjectionModel:
    """Load one variant from the shipped artifact, once per process."""
    if variant not in VARIANTS:
        raise ConfigurationError(
            f"unknown injection scanner variant {variant!r}",
            hint=f"use one of {', '.join(VARIANTS)}",
        )
    model = _MODELS.get(variant)
    if model is None:
        with _LOCK:
            if not _MODELS:
                _MODELS.update(_read_artifact())
            model = _MODELS[variant]
    return model


def _read_artifact() -> dict[Variant, InjectionModel]:
    resource = resources.files("charter.guards.models").joinpath(ARTIFACT)
    with resources.as_file(resource) as path:
        return read_artifact(path)


def read_artifact(path: Path) -> dict[Variant, InjectionModel]:
    """Both variants from the artifact at ``path`` (the shipped one is read by :func:`load_model`;
    this is for comparing a rebuilt or an earlier artifact)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            return {
                variant: InjectionModel(
                    variant=variant,
                    weights=data[f"{variant}_weights"].astype(np.float32),
                    bias=float(meta[variant]["bias"]),
                    bits=int(meta[variant]["bits"]),
                    threshold=float(meta[variant]["threshold"]),
                    escalate_band=(
                        float(meta[variant]["escalate_band"][0]),
                        float(meta[variant]["escalate_band"][1]),
                    ),
                    metrics=dict(meta[variant].get("metrics", {})),
                )
                for variant in VARIANTS
            }
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigurationError(
            f"the injection model artifact {path} is missing or unreadable: {exc}",
            hint="reinstall charter, or rebuild it with `python training/train_injection.py`",
        ) from exc


def recommended_threshold(variant: Variant = "direct") -> float:
    """The block threshold chosen on the tuning split for ``variant``; the charter's default."""
    return load_model(variant).threshold


def recommended_escalate_band(variant: Variant = "direct") -> tuple[float, float]:
    """The score band ``[low, high)`` in which a hit should go to a human rather than be decided."""
    return load_model(variant).escalate_band


class InjectionScanner:
    """Scores text for prompt injection and jailbreaks (``direct``) or for instructions planted in
    content the user did not write (``untrusted``).

    The score is the highest window score over the text and its de-obfuscated views (see
    ``charter.guards.views``); the span is that window, mapped back to the text when a view won,
    and the detail names the view. Views are on by default for ``direct`` and off for
    ``untrusted``, where they are unmeasured (``views=`` overrides). Thread-safe: the model is
    read-only after loading.
    """

    def __init__(self, variant: Variant = "direct", *, views: bool | None = None) -> None:
        self.variant: Variant = variant
        self.name = f"injection.{variant}"
        self.views = variant == "direct" if views is None else views
        self._model = load_model(variant)

    @property
    def threshold(self) -> float:
        """The recommended block threshold for this variant."""
        return self._model.threshold

    def scan(self, text: str) -> ScanResult:
        """Return the injection score of ``text`` and the window that scored highest."""
        if not isinstance(text, str):
            raise InvalidRequest(
                f"the injection scanner scans text, got {type(text).__name__}",
                hint="pass the message content as a str",
            )
        if not text.strip():
            return ScanResult(score=0.0, detail="empty text")
        score, start, end, view = self._model.score_views(text, self.views)
        span = Span(start=start, end=end, label=self.name, score=score)
        detail = f"{self.name} window {start}-{end}" + (f"; view: {view}" if view else "")
        return ScanResult(score=score, spans=(span,), detail=detail)
