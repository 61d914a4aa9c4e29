"""Topics the organization decided to refuse, matched by meaning: static sentence embeddings and a
small head per topic, fitted when the charter is compiled to the topic's description and examples,
against the topic's allowed near misses (``allowed_examples``) and a shipped benign background.

The embedding table is distilled from all-MiniLM-L6-v2 by ``training/topic/train_topic.py`` and
ships with a sample of benign prompts as token ids (the background every head is fitted and
calibrated against); the model card is ``models/topic.md``. Run time is a tokenizer, a table
lookup and a few dot products: no download, no torch.
"""

from __future__ import annotations

import functools
import itertools
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from charter.errors import ConfigurationError, InvalidRequest
from charter.guards.base import ScanResult
from charter.policy.verdict import Span

ARTIFACT = "topic.npz"
"""Embedding table, token weights, benign background and metadata, in ``charter/guards/models``."""

TOKENIZER = "topic_tokenizer.json"
"""The WordPiece tokenizer of all-MiniLM-L6-v2 (Hugging Face ``tokenizers`` format)."""

WINDOW_TOKENS = 32
"""Tokens per scored window: a long text is scored window by window and the maximum wins, so one
sentence of advice in a long message is not averaged away."""

STRIDE_TOKENS = 16
"""Half a window: the block sums of ``_window_sums`` rely on ``WINDOW_TOKENS == 2 * STRIDE``."""

DEFAULT_THRESHOLD = 0.5
"""Scores are calibrated so 0.5 is the 1 % false-positive point on held-back benign prompts."""

L2_DENSE = 1e-3
"""L2 penalty (on the mean loss) of the embedding weights of each head."""

L2_LEXICAL = 1e-2
"""L2 penalty of the token and token-pair weights: they only exist for n-grams of the charter's
own phrases, so they refine the embedding, they cannot replace it."""

ALLOWED_WEIGHT = 0.7
"""Share of the negative class carried by the allowed examples when a guard lists any: the few
near misses the charter names weigh as much as the thousands of background prompts."""

FIT_ITERATIONS = 300


class TopicDefinition(Protocol):
    """What the charter says about one topic (``charter.document.model.Topic`` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def examples(self) -> Sequence[str]: ...

    @property
    def allowed_examples(self) -> Sequence[str]: ...


def normalise(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def ngram_keys(ids: npt.NDArray[np.int64], vocab: int) -> npt.NDArray[np.int64]:
    """Keys of a token sequence's unigrams (the token id) and adjacent pairs (``vocab + a*vocab +
    b``), one key per position: unigrams first, then the ``len(ids) - 1`` pairs."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.concatenate([ids, vocab + ids[:-1] * vocab + ids[1:]])


@dataclass(frozen=True)
class Features:
    """Texts as the heads see them: two embeddings side by side, and their n-gram keys.

    ``dense`` is ``[SIF-weighted mean, plain mean]`` of the token rows, each L2-normalised: the
    first carries what the text is about (rare words weigh most), the second how it asks ("should
    I", "do you sell"), which frequency weighting all but erases. ``keys`` holds each text's n-gram
    keys (see ``ngram_keys``) for the lexical part of a head.
    """

    dense: npt.NDArray[np.float32] = field(repr=False)
    keys: tuple[npt.NDArray[np.int64], ...] = field(repr=False)

    def __len__(self) -> int:
        return len(self.keys)

    @staticmethod
    def concat(parts: Sequence[Features]) -> Features:
        return Features(
            np.concatenate([p.dense for p in parts]), tuple(k for p in parts for k in p.keys)
        )


@dataclass(frozen=True)
class TopicModel:
    """The shipped embedding: an int8 table with a scale per token, the SIF weight of each token,
    and the benign background as token ids.

    A token's row already carries its SIF weight (rare words count more than "the"); dividing by
    that weight gives the plain row, which keeps the function words.
    """

    table: npt.NDArray[np.int8] = field(repr=False)
    scales: npt.NDArray[np.float32] = field(repr=False)
    sif: npt.NDArray[np.float32] = field(repr=False)
    background: Features = field(repr=False)
    calibrate: npt.NDArray[np.bool_] = field(repr=False)
    tokenizer: Any = field(repr=False)

    @property
    def dim(self) -> int:
        return int(self.table.shape[1])

    @property
    def vocab(self) -> int:
        return int(self.table.shape[0])

    def tokens(self, text: str) -> tuple[npt.NDArray[np.int64], list[tuple[int, int]]]:
        """Token ids of ``text`` and each token's character offsets."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        return np.asarray(encoding.ids, dtype=np.int64), list(encoding.offsets)

    def rows(self, ids: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.float32], ...]:
        """The SIF-weighted and the plain rows of ``ids``."""
        weighted = self.table[ids].astype(np.float32) * self.scales[ids, None]
        return weighted, weighted / self.sif[ids, None]

    def features_of_ids(self, sequences: Sequence[npt.NDArray[np.int64]]) -> Features:
        dense = np.zeros((len(sequences), 2 * self.dim), dtype=np.float32)
        for i, ids in enumerate(sequences):
            if len(ids):
                weighted, plain = self.rows(ids)
                dense[i, : self.dim] = weighted.mean(axis=0)
                dense[i, self.dim :] = plain.mean(axis=0)
        dense[:, : self.dim] = normalise(dense[:, : self.dim])
        dense[:, self.dim :] = normalise(dense[:, self.dim :])
        return Features(dense, tuple(ngram_keys(ids, self.vocab) for ids in sequences))

    def features(self, texts: Sequence[str]) -> Features:
        """Features of whole texts (no windows): for exemplars and measurement."""
        return self.features_of_ids([self.tokens(t)[0] for t in texts])

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """The SIF-weighted embedding of each text, L2-normalised."""
        return self.features(texts).dense[:, : self.dim]


def token_windows(n: int, window: int = WINDOW_TOKENS, stride: int = STRIDE_TOKENS) -> list[int]:
    """Start indexes of the token windows covering ``n`` tokens; one window when it fits."""
    if n <= window:
        return [0]
    starts = list(range(0, n - window, stride))
    starts.append(n - window)
    return starts


def _window_sums(
    rows: npt.NDArray[np.float32], lexical_rows: npt.NDArray[np.float32], n: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Sums of ``rows`` and of the n-gram weights over each of ``token_windows(n)`` (n > window).

    A window is two stride blocks, so one pass of block sums serves every window but the last,
    which ends at ``n`` and is summed on its own. (A 0/1 window matrix times the rows would do
    it too, but BLAS spreads that product over threads, which costs milliseconds on a busy
    machine.) Unigram t is ``lexical_rows[t]``; the pair (t, t+1) is ``lexical_rows[n + t]`` and
    belongs to a window [s, e) when s <= t < e - 1.
    """
    starts = np.arange(0, n, STRIDE_TOKENS)
    blocks = np.add.reduceat(rows, starts, axis=0)
    unigram_blocks = np.add.reduceat(lexical_rows[:n], starts, axis=0)
    pairs = lexical_rows[n:]
    pair_blocks = np.add.reduceat(pairs, starts[starts < n - 1], axis=0)
    regular = len(token_windows(n)) - 1  # windows starting at 0, s, 2s, ...: blocks k and k + 1
    k = np.arange(regular)
    last = n - WINDOW_TOKENS
    sums = np.vstack([blocks[k] + blocks[k + 1], rows[last:].sum(axis=0, keepdims=True)])
    # A window's pairs are its two blocks' pairs but the one leaving the window at its end.
    inner = pair_blocks[k] + pair_blocks[k + 1] - pairs[k * STRIDE_TOKENS + WINDOW_TOKENS - 1]
    lexical = np.vstack(
        [
            unigram_blocks[k] + unigram_blocks[k + 1] + inner,
            lexical_rows[last:n].sum(axis=0, keepdims=True)
            + pairs[last : n - 1].sum(axis=0, keepdims=True),
        ]
    )
    return sums, lexical


_MODEL: list[TopicModel] = []
_LOCK = threading.Lock()


def load_model() -> TopicModel:
    """Load the shipped artifact once per process."""
    if not _MODEL:
        with _LOCK:
            if not _MODEL:
                _MODEL.append(_read_artifact())
    return _MODEL[0]


def _read_artifact() -> TopicModel:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:  # a dependency of charter; only a broken install lacks it
        raise ConfigurationError(
            "the topic scanner needs the `tokenizers` package",
            hint="pip install 'tokenizers>=0.15'",
        ) from exc
    models = resources.files("charter.guards.models")
    try:
        with resources.as_file(models.joinpath(TOKENIZER)) as path:
            tokenizer = Tokenizer.from_file(str(path))
        with (
            resources.as_file(models.joinpath(ARTIFACT)) as path,
            np.load(path, allow_pickle=False) as data,
        ):
            json.loads(bytes(data["meta"]).decode())  # the artifact is complete and readable
            table = data["table"]
            scales = data["scales"].astype(np.float32)
            sif = data["sif"].astype(np.float32)
            ids = data["background_ids"].astype(np.int64)
            bounds = data["background_offsets"].astype(np.int64)
            calibrate = data["background_calibrate"].astype(bool)
    except Exception as exc:  # tokenizers and numpy raise their own exception types
        raise ConfigurationError(
            f"the topic model ({ARTIFACT}, {TOKENIZER}) is missing or unreadable: {exc}",
            hint="reinstall charter, or rebuild it with `python training/topic/train_topic.py`",
        ) from exc
    # The tokenizer file pads and truncates to the teacher's 128 tokens; the scanner windows
    # long texts itself and must see every token.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    empty = Features(np.zeros((0, 2 * table.shape[1]), np.float32), ())
    model = TopicModel(table, scales, sif, empty, calibrate, tokenizer)
    sequences = [ids[a:b] for a, b in itertools.pairwise(bounds)]
    return TopicModel(table, scales, sif, model.features_of_ids(sequences), calibrate, tokenizer)


@dataclass(frozen=True)
class LexicalDesign:
    """The n-gram part of a set of texts, as a sparse matrix over a fixed key vocabulary.

    Only n-grams of the charter's own phrases get a weight; each text's counts are divided by the
    square root of its number of n-grams, so a long text is not favoured.
    """

    rows: npt.NDArray[np.int64]
    cols: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    n: int
    width: int

    @staticmethod
    def build(
        keys: Sequence[npt.NDArray[np.int64]], vocabulary: npt.NDArray[np.int64]
    ) -> LexicalDesign:
        rows, cols, values = [], [], []
        for i, k in enumerate(keys):
            if not len(k) or not len(vocabulary):
                continue
            at = np.searchsorted(vocabulary, k)
            at = np.minimum(at, len(vocabulary) - 1)
            hit = vocabulary[at] == k
            rows.append(np.full(int(hit.sum()), i, dtype=np.int64))
            cols.append(at[hit])
            values.append(np.full(int(hit.sum()), 1.0 / np.sqrt(len(k))))
        if not rows:
            empty = np.zeros(0, dtype=np.int64)
            return LexicalDesign(empty, empty, np.zeros(0), len(keys), len(vocabulary))
        return LexicalDesign(
            np.concatenate(rows),
            np.concatenate(cols),
            np.concatenate(values),
            len(keys),
            len(vocabulary),
        )

    def dot(self, w: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        out = np.bincount(self.rows, weights=self.values * w[self.cols], minlength=self.n)
        return out.astype(np.float64)

    def tdot(self, r: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        out = np.bincount(self.cols, weights=self.values * r[self.rows], minlength=self.width)
        return out.astype(np.float64)

    def max_row_norm2(self) -> float:
        if not len(self.rows):
            return 0.0
        return float(np.bincount(self.rows, weights=self.values**2, minlength=self.n).max())


@dataclass(frozen=True)
class HeadWeights:
    dense: npt.NDArray[np.float64]
    lexical: npt.NDArray[np.float64]
    bias: float


def fit_head(
    positives: Features,
    negatives: Sequence[tuple[Features, float]],
    vocabulary: npt.NDArray[np.int64],
    *,
    l2_dense: float = L2_DENSE,
    l2_lexical: float = L2_LEXICAL,
    iterations: int = FIT_ITERATIONS,
) -> HeadWeights:
    """Class-balanced, L2-regularised logistic regression over the embeddings and the n-grams of
    ``vocabulary``, by Nesterov's accelerated gradient: deterministic, no solver dependency.

    The positives carry half the mass; ``negatives`` pairs each group of negatives with its share
    of the other half (so 50 allowed examples are not drowned by 3,000 background prompts).
    """
    groups = [(g, share) for g, share in negatives if len(g) and share > 0]
    total = sum(share for _, share in groups)
    everything = Features.concat([positives, *(g for g, _ in groups)])
    # float32 and a transposed copy: small single-threaded BLAS products. In float64 OpenBLAS
    # spreads each product over threads, which on a busy two-core machine is 5-20 times slower.
    x = np.ascontiguousarray(everything.dense, dtype=np.float32)
    xt = np.ascontiguousarray(x.T)
    lex = LexicalDesign.build(everything.keys, vocabulary)
    y = np.zeros(len(everything))
    y[: len(positives)] = 1.0
    weight = np.empty(len(everything))
    weight[: len(positives)] = 0.5 / len(positives)
    at = len(positives)
    for group, share in groups:
        weight[at : at + len(group)] = 0.5 * share / total / len(group)
        at += len(group)
    # Step 1/L, L bounding the Hessian: a quarter of the largest squared row norm (bias included).
    lipschitz = 0.25 * (float((x.astype(np.float64) ** 2).sum(1).max()) + lex.max_row_norm2() + 1)
    step = 1.0 / (lipschitz + max(l2_dense, l2_lexical))
    wd, wl, b = np.zeros(x.shape[1], np.float32), np.zeros(lex.width), 0.0
    vd, vl, vb = wd.copy(), wl.copy(), b
    for k in range(iterations):
        z = (x @ vd).astype(np.float64) + lex.dot(vl) + vb
        residual = weight * (1.0 / (1.0 + np.exp(-z)) - y)
        gd = xt @ residual.astype(np.float32) + np.float32(l2_dense) * vd
        nd = np.asarray(vd - np.float32(step) * gd, dtype=np.float32)
        nl = vl - step * (lex.tdot(residual) + l2_lexical * vl)
        nb = vb - step * float(residual.sum())
        momentum = k / (k + 3)
        vd = np.asarray(nd + np.float32(momentum) * (nd - wd), dtype=np.float32)
        vl, vb = nl + momentum * (nl - wl), nb + momentum * (nb - b)
        wd, wl, b = nd, nl, nb
    return HeadWeights(wd.astype(np.float64), wl, b)


@dataclass(frozen=True)
class TopicHead:
    """One charter topic: its weights and the calibration that maps its logit to a score.

    ``score = sigmoid((logit - at_1pct) / spread)``: 0.5 where 1 % of held-back benign prompts
    score higher, about 0.27 at the 5 % point (``spread`` is the distance between the two).
    """

    name: str
    weights: HeadWeights = field(repr=False)
    at_1pct: float
    spread: float


def _texts(topic: TopicDefinition) -> tuple[list[str], list[str]]:
    anchors = [t for t in (topic.description, *topic.examples) if t.strip()]
    allowed = [t for t in getattr(topic, "allowed_examples", ()) if t.strip()]
    return anchors, allowed


def build_heads(
    model: TopicModel, topics: Sequence[TopicDefinition]
) -> tuple[tuple[TopicHead, ...], npt.NDArray[np.int64]]:
    """Fit a head per topic, and the n-gram vocabulary they share.

    Every head learns its topic's description and examples as positives; its negatives are the
    background and the allowed examples of *every* topic of the guard (an allowed phrase is
    allowed by the whole guard).
    """
    anchors: list[list[str]] = []
    allowed: list[str] = []
    for topic in topics:
        a, ok = _texts(topic)
        if not a:
            raise ConfigurationError(
                f"topic `{topic.name}` has no text to learn from",
                hint="give it a description and a few example phrases",
            )
        anchors.append(a)
        allowed += ok
    positives = [model.features(a) for a in anchors]
    near_misses = model.features(allowed)
    vocabulary = np.unique(
        np.concatenate([k for p in positives for k in p.keys] + [k for k in near_misses.keys])
    )
    fit_rows = ~model.calibrate
    background_fit = Features(
        model.background.dense[fit_rows],
        tuple(k for k, f in zip(model.background.keys, fit_rows, strict=True) if f),
    )
    background_cal = Features(
        model.background.dense[model.calibrate],
        tuple(k for k, c in zip(model.background.keys, model.calibrate, strict=True) if c),
    )
    cal_lex = LexicalDesign.build(background_cal.keys, vocabulary)
    share = ALLOWED_WEIGHT if len(near_misses) else 0.0
    heads = []
    for topic, pos in zip(topics, positives, strict=True):
        weights = fit_head(pos, [(background_fit, 1.0 - share), (near_misses, share)], vocabulary)
        held_back = (
            background_cal.dense.astype(np.float64) @ weights.dense
            + cal_lex.dot(weights.lexical)
            + weights.bias
        )
        at_1pct = float(np.quantile(held_back, 0.99))
        spread = max(at_1pct - float(np.quantile(held_back, 0.95)), 1e-6)
        heads.append(TopicHead(topic.name, weights, at_1pct, spread))
    return tuple(heads), vocabulary


@dataclass(frozen=True)
class _Texts:
    """What a head is fitted from, hashable: the fit is deterministic, so equal texts give
    equal heads."""

    name: str
    description: str
    examples: tuple[str, ...]
    allowed_examples: tuple[str, ...]

    @classmethod
    def of(cls, topic: TopicDefinition) -> _Texts:
        allowed = tuple(getattr(topic, "allowed_examples", ()))
        return cls(topic.name, topic.description, tuple(topic.examples), allowed)


@functools.lru_cache(maxsize=32)
def _fitted(
    topics: tuple[_Texts, ...],
) -> tuple[tuple[TopicHead, ...], npt.NDArray[np.int64]]:
    """``build_heads`` on the shipped model, once per process for each set of topics: fitting
    takes about a second a topic, and a charter is compiled again on every reload (and by every
    test that builds an engine). The heads are frozen and the vocabulary is never written to."""
    heads, vocabulary = build_heads(load_model(), topics)
    vocabulary.setflags(write=False)
    return heads, vocabulary


class TopicScanner:
    """Scores text for the charter's refused topics; the score is the best (topic, window).

    Thread-safe: everything is read-only after construction.
    """

    name = "topic"
    reach = 512  # a window of WINDOW_TOKENS (32) tokens of up to 16 characters each
    threshold = DEFAULT_THRESHOLD

    def __init__(self, topics: Sequence[TopicDefinition]) -> None:
        if not topics:
            raise ConfigurationError(
                "a topic guard needs at least one topic", hint="list topics under settings"
            )
        self._model = load_model()
        self.heads, self._vocabulary = _fitted(tuple(_Texts.of(t) for t in topics))
        self._dense = np.stack([h.weights.dense for h in self.heads], axis=1).astype(np.float32)
        lexical = np.stack([h.weights.lexical for h in self.heads], axis=1)
        # One extra zero row, last: n-grams outside the vocabulary look up row -1 and add nothing.
        self._lexical = np.vstack([lexical, np.zeros((1, len(self.heads)))]).astype(np.float32)
        if not len(self._vocabulary):  # searchsorted needs one key; it never matches
            self._vocabulary = np.array([-1], dtype=np.int64)
        self._plain_scales = self._model.scales / self._model.sif
        self._bias = np.array([h.weights.bias for h in self.heads])
        self._at = np.array([h.at_1pct for h in self.heads])
        self._spread = np.array([h.spread for h in self.heads])

    def window_scores(
        self, ids: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Calibrated scores per (window, topic) of a non-empty token sequence, and the windows'
        token bounds."""
        model = self._model
        n, dim = len(ids), model.dim
        raw = model.table[ids].astype(np.float32)
        rows = np.empty((n, 2 * dim), np.float32)
        np.multiply(raw, model.scales[ids, None], out=rows[:, :dim])
        np.multiply(raw, self._plain_scales[ids, None], out=rows[:, dim:])
        keys = ngram_keys(ids, model.vocab)
        at = np.minimum(np.searchsorted(self._vocabulary, keys), len(self._vocabulary) - 1)
        lexical_rows = self._lexical[np.where(self._vocabulary[at] == keys, at, -1)]
        starts = np.array(token_windows(n))
        ends = np.minimum(starts + WINDOW_TOKENS, n)
        if n <= WINDOW_TOKENS:  # one window, the common case: plain sums
            sums = rows.sum(axis=0, keepdims=True)
            lexical = lexical_rows.sum(axis=0, keepdims=True)
        else:
            sums, lexical = _window_sums(rows, lexical_rows, n)
        vectors = np.hstack([normalise(sums[:, :dim]), normalise(sums[:, dim:])])
        logits = vectors @ self._dense + self._bias
        logits += lexical / np.sqrt(2 * (ends - starts) - 1)[:, None]
        scores = 1.0 / (1.0 + np.exp(-(logits - self._at) / self._spread))
        return scores, starts, ends

    def scan(self, text: str) -> ScanResult:
        """Return the highest topic score of ``text``, the topic and the window that scored it."""
        if not isinstance(text, str):
            raise InvalidRequest(
                f"the topic scanner scans text, got {type(text).__name__}",
                hint="pass the message content as a str",
            )
        ids, offsets = self._model.tokens(text)
        if not len(ids):
            return ScanResult(score=0.0, detail="no words")
        scores, starts, ends = self.window_scores(ids)
        window, topic = np.unravel_index(int(np.argmax(scores)), scores.shape)
        score = float(scores[window, topic])
        start = offsets[starts[int(window)]][0]
        end = offsets[ends[int(window)] - 1][1]
        name = self.heads[int(topic)].name
        span = Span(start=start, end=end, label=f"topic:{name}", score=score)
        return ScanResult(score=score, spans=(span,), detail=f"topic {name}")
