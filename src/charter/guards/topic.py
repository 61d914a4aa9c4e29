"""Topics the organization decided to refuse, matched by meaning: static sentence embeddings and a
small linear head fitted, when the charter is compiled, to the charter's description and examples.

The embedding table is distilled from all-MiniLM-L6-v2 by ``training/topic/train_topic.py`` and
ships with a sample of benign prompts as vectors (the background every head is fitted and
calibrated against); the model card is ``models/topic.md``. Run time is a tokenizer, a table
lookup and a few dot products: no download, no torch.
"""

from __future__ import annotations

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
"""Embedding table, background vectors and metadata, inside ``charter/guards/models``."""

TOKENIZER = "topic_tokenizer.json"
"""The WordPiece tokenizer of all-MiniLM-L6-v2 (Hugging Face ``tokenizers`` format)."""

WINDOW_TOKENS = 48
"""Tokens per scored window: a long text is scored window by window and the maximum wins, so one
sentence of advice in a long message is not averaged away."""

STRIDE_TOKENS = 24

DEFAULT_THRESHOLD = 0.5
"""Scores are calibrated so 0.5 is the 1 % false-positive point on held-back benign prompts."""

FIT_L2 = 0.1
"""L2 penalty of each topic head (on the mean loss): few positives, so a firm prior."""


class TopicDefinition(Protocol):
    """What the charter says about one topic (``charter.document.model.Topic`` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def examples(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class TopicModel:
    """The shipped embedding: an int8 table with a scale per token, and the benign background.

    A text's vector is the mean of its tokens' rows, L2-normalised. The rows already carry the
    frequency weights (rare words count more than "the"), so run time only averages.
    """

    table: npt.NDArray[np.int8] = field(repr=False)
    scales: npt.NDArray[np.float32] = field(repr=False)
    background_fit: npt.NDArray[np.float32] = field(repr=False)
    background_calibrate: npt.NDArray[np.float32] = field(repr=False)
    tokenizer: Any = field(repr=False)
    metrics: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def dim(self) -> int:
        return int(self.table.shape[1])

    def tokens(self, text: str) -> tuple[npt.NDArray[np.int64], list[tuple[int, int]]]:
        """Token ids of ``text`` and each token's character offsets."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        return np.asarray(encoding.ids, dtype=np.int64), list(encoding.offsets)

    def rows(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return self.table[ids].astype(np.float32) * self.scales[ids, None]

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One normalised vector per text (the whole text, no windows): for anchors and training."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            ids, _ = self.tokens(text)
            if len(ids):
                out[i] = self.rows(ids).mean(axis=0)
        return normalise(out)


def normalise(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def token_windows(n: int, window: int = WINDOW_TOKENS, stride: int = STRIDE_TOKENS) -> list[int]:
    """Start indexes of the token windows covering ``n`` tokens; one window when it fits."""
    if n <= window:
        return [0]
    starts = list(range(0, n - window, stride))
    starts.append(n - window)
    return starts


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
            meta = json.loads(bytes(data["meta"]).decode())
            model = TopicModel(
                table=data["table"],
                scales=data["scales"].astype(np.float32),
                background_fit=data["background_fit"].astype(np.float32),
                background_calibrate=data["background_calibrate"].astype(np.float32),
                tokenizer=tokenizer,
                metrics=dict(meta.get("metrics", {})),
            )
    except Exception as exc:  # tokenizers raises its own exception types
        raise ConfigurationError(
            f"the topic model ({ARTIFACT}, {TOKENIZER}) is missing or unreadable: {exc}",
            hint="reinstall charter, or rebuild it with `python training/topic/train_topic.py`",
        ) from exc
    # The tokenizer file pads and truncates to the teacher's 128 tokens; the scanner windows
    # long texts itself and must see every token.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return model


def fit_head(
    positives: npt.NDArray[np.float32],
    negatives: npt.NDArray[np.float32],
    l2: float = FIT_L2,
    iterations: int = 25,
) -> tuple[npt.NDArray[np.float64], float]:
    """Class-balanced, L2-regularised logistic regression by Newton's method: weights and bias.

    Deterministic and about 129 x 129 per step, so a charter with several topics compiles in
    well under a second.
    """
    x = np.concatenate([positives, negatives]).astype(np.float64)
    x = np.hstack([x, np.ones((len(x), 1))])
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    # Each class carries half the mass, so 3 examples are not drowned by 3,000 benign prompts.
    weight = np.where(y == 1, 0.5 / len(positives), 0.5 / len(negatives))
    penalty = np.full(x.shape[1], l2)
    penalty[-1] = 0.0  # the bias is not shrunk
    beta = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        grad = x.T @ (weight * (p - y)) + penalty * beta
        hess = (x * (weight * p * (1 - p))[:, None]).T @ x + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return beta[:-1], float(beta[-1])


@dataclass(frozen=True)
class TopicHead:
    """One charter topic: a linear head and the calibration that maps its logit to a score.

    ``score = sigmoid((logit - at_1pct) / spread)``: 0.5 where 1 % of held-back benign prompts
    score higher, about 0.27 at the 5 % point (``spread`` is the distance between the two).
    """

    name: str
    weights: npt.NDArray[np.float64] = field(repr=False)
    bias: float
    at_1pct: float
    spread: float

    def scores(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        logits = vectors @ self.weights + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-(logits - self.at_1pct) / self.spread)))


def build_head(model: TopicModel, topic: TopicDefinition) -> TopicHead:
    """Fit one topic's head on its description and examples against the shipped background."""
    anchors = [topic.description, *topic.examples]
    if not any(a.strip() for a in anchors):
        raise ConfigurationError(
            f"topic `{topic.name}` has no text to learn from",
            hint="give it a description and a few example phrases",
        )
    weights, bias = fit_head(model.embed(anchors), model.background_fit)
    held_back = model.background_calibrate @ weights + bias
    at_1pct = float(np.quantile(held_back, 0.99))
    spread = max(at_1pct - float(np.quantile(held_back, 0.95)), 1e-6)
    return TopicHead(topic.name, weights, bias, at_1pct, spread)


class TopicScanner:
    """Scores text for the charter's refused topics; the score is the best (topic, window).

    Thread-safe: everything is read-only after construction.
    """

    name = "topic"
    threshold = DEFAULT_THRESHOLD

    def __init__(self, topics: Sequence[TopicDefinition]) -> None:
        if not topics:
            raise ConfigurationError(
                "a topic guard needs at least one topic", hint="list topics under settings"
            )
        self._model = load_model()
        self.heads = tuple(build_head(self._model, t) for t in topics)
        self._weights = np.stack([h.weights for h in self.heads], axis=1).astype(np.float32)
        self._bias = np.array([h.bias for h in self.heads])
        self._at = np.array([h.at_1pct for h in self.heads])
        self._spread = np.array([h.spread for h in self.heads])

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
        rows = self._model.rows(ids)
        # Window means from one prefix sum: every window costs two row reads, whatever its size.
        prefix = np.concatenate([np.zeros((1, rows.shape[1]), np.float32), np.cumsum(rows, 0)])
        starts = np.array(token_windows(len(ids)))
        ends = np.minimum(starts + WINDOW_TOKENS, len(ids))
        vectors = normalise(prefix[ends] - prefix[starts])
        logits = vectors @ self._weights + self._bias
        scores = 1.0 / (1.0 + np.exp(-(logits - self._at) / self._spread))
        window, topic = np.unravel_index(int(np.argmax(scores)), scores.shape)
        score = float(scores[window, topic])
        start = offsets[int(starts[window])][0]
        end = offsets[int(ends[window]) - 1][1]
        name = self.heads[int(topic)].name
        span = Span(start=start, end=end, label=f"topic:{name}", score=score)
        return ScanResult(score=score, spans=(span,), detail=f"topic {name}")
