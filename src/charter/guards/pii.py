"""The PII scanner: Microsoft Presidio's pattern recognizers behind a cheap regex prefilter.

Only the recognizers for the entity types a charter asks for are built, and they only ever see the
short windows of text around prefilter candidates, so a prompt with no digits, ``@`` or dotted names
costs a few regex passes. Nothing here downloads anything: the NLP engine is a blank spaCy pipeline
(a tokenizer, used for Presidio's context words) and the public suffix list is tldextract's bundled
snapshot. Named-entity types (PERSON, LOCATION, ...) need a spaCy pipeline with an NER component
that the operator installs and names; without one, asking for them is a ``ConfigurationError``.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import phonenumbers
import spacy
import tldextract
from presidio_analyzer import AnalyzerEngine, EntityRecognizer, Pattern, RecognizerRegistry
from presidio_analyzer import RecognizerResult as PresidioResult
from presidio_analyzer.nlp_engine import NlpArtifacts, SlimSpacyNlpEngine, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    CryptoRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    MacAddressRecognizer,
    NhsRecognizer,
    PhoneRecognizer,
    SpacyRecognizer,
    UrlRecognizer,
    UsItinRecognizer,
    UsSsnRecognizer,
)
from spacy.tokens import Doc

from charter.errors import ConfigurationError, InvalidRequest
from charter.guards.base import ScanResult
from charter.guards.redaction import resolve_overlaps
from charter.policy.verdict import Span

__all__ = [
    "DEFAULT_PHONE_REGIONS",
    "NER_ENTITIES",
    "PATTERN_ENTITIES",
    "PIIScanner",
]

# The public suffix list that ships inside tldextract. An empty URL list and no cache directory
# mean tldextract never opens a socket nor writes to disk; the snapshot is the only source.
_OFFLINE_TLD = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)

DEFAULT_PHONE_REGIONS: tuple[str, ...] = tuple(PhoneRecognizer.DEFAULT_SUPPORTED_REGIONS)

# Entity types a spaCy NER component provides (Presidio's default label mapping).
NER_ENTITIES: frozenset[str] = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION", "DATE_TIME"})


class _OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email recognizer, validating the domain against the bundled suffix list.

    The stock recognizer calls ``tldextract.extract``, whose default extractor fetches the public
    suffix list over HTTPS the first time it runs: an outbound call on the request path.
    """

    def validate_result(self, pattern_text: str) -> bool:
        return _OFFLINE_TLD(pattern_text).fqdn != ""


class _FileAwareUrlRecognizer(UrlRecognizer):
    """Presidio's URL recognizer, minus bare file names whose extension is also a country TLD.

    Without a scheme, ``www.`` or a path, ``setup.py``, ``main.rs`` and ``README.md`` match the
    "Non schema URL" pattern (Paraguay, Serbia, Moldova); in prompts about code those are file
    names, and redacting them makes the model's answer worse for no privacy gain.
    """

    _FILE_EXTENSIONS = frozenset(
        {"py", "rs", "md", "sh", "pl", "ps", "cc", "cs", "so", "ml", "mk", "am", "ac", "tf", "sc"}
    )

    def invalidate_result(self, pattern_text: str) -> bool:
        text = pattern_text.strip("\"'").lower()
        if "://" in text or text.startswith("www") or "/" in text:
            return False
        return text.rsplit(".", 1)[-1] in self._FILE_EXTENSIONS


# Candidate finders. Each is far cheaper than the recognizer it guards and errs on the side of
# too many candidates: a miss here is a miss of the scanner, a false candidate costs one window.
# Most start with a literal character so the regex engine can skip ahead to it; the window grows
# around the hit, so the hit need not cover the whole entity.
_PREFILTERS: dict[str, re.Pattern[str]] = {
    # Six or more digits with short separator runs between them: phone numbers, card numbers,
    # SSNs, ITINs, NHS numbers, and IBANs (every IBAN format carries such a run of digits).
    # The separator class holds no digit, so matching stays linear.
    "digits": re.compile(r"\d(?:[ \t\-./()]{0,3}\d){5,}"),
    "email": re.compile(r"@[\w\-]+\."),
    # Dotted quads (".31.73." of 106.31.73.20) and colon groups of IPv6.
    "ip": re.compile(r"\.\d{1,3}\.\d{1,3}\.|:[0-9A-Fa-f]{0,4}:"),
    # A dot followed by two letters: every URL Presidio recognises ends in such a TLD.
    "url": re.compile(r"\.[A-Za-z]{2}"),
    "crypto": re.compile(r"\b(?:bc1|[13])[a-zA-HJ-NP-Z0-9]{25,}"),
    "mac": re.compile(r"[:\-][0-9A-Fa-f]{2}[:\-]|\.[0-9A-Fa-f]{4}\."),
}


# Card numbers Presidio's one pattern misses (it stops at 16 digits and at the 5[0-5] and 6
# prefixes): 19-digit Visa, Mastercard's 2221-2720 range, Maestro (50, 56-69, 12-19 digits), JCB
# and Diners, written without separators. Presidio's Luhn validator still decides every match,
# which keeps the false positives of a digits-only pattern at the ~1 in 10 Luhn lets through
# among candidates that already carry a card-issuer prefix.
_MORE_CARDS = Pattern(
    "Card numbers by issuer prefix, unseparated (weak)",
    r"\b(?:4\d{18}|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)\d{12}|(?:5[06-9]|6\d)\d{10,17}"
    r"|35(?:2[89]|[3-8]\d)\d{12,15}|(?:2131|1800)\d{11}|3(?:0[0-5]|[68]\d)\d{11})\b",
    0.3,
)


@dataclass(frozen=True, slots=True)
class _EntitySpec:
    """How to recognise one pattern-based entity type, and which prefilter guards it."""

    make: Callable[[PIIScanner], EntityRecognizer]
    prefilter: str


_SPECS: dict[str, _EntitySpec] = {
    "EMAIL_ADDRESS": _EntitySpec(lambda s: _OfflineEmailRecognizer(), "email"),
    "PHONE_NUMBER": _EntitySpec(
        lambda s: PhoneRecognizer(supported_regions=s.phone_regions), "digits"
    ),
    "CREDIT_CARD": _EntitySpec(
        lambda s: CreditCardRecognizer(patterns=[*CreditCardRecognizer.PATTERNS, _MORE_CARDS]),
        "digits",
    ),
    "IBAN_CODE": _EntitySpec(lambda s: IbanRecognizer(), "digits"),
    "US_SSN": _EntitySpec(lambda s: UsSsnRecognizer(), "digits"),
    "US_ITIN": _EntitySpec(lambda s: UsItinRecognizer(), "digits"),
    "UK_NHS": _EntitySpec(lambda s: NhsRecognizer(), "digits"),
    "IP_ADDRESS": _EntitySpec(lambda s: IpRecognizer(), "ip"),
    "URL": _EntitySpec(lambda s: _FileAwareUrlRecognizer(), "url"),
    "CRYPTO": _EntitySpec(lambda s: CryptoRecognizer(), "crypto"),
    "MAC_ADDRESS": _EntitySpec(lambda s: MacAddressRecognizer(), "mac"),
}

PATTERN_ENTITIES: frozenset[str] = frozenset(_SPECS)

# How much text around a candidate its recognizer sees. The left margin holds Presidio's context
# words (five words before the entity); both edges then grow to the next whitespace so a window
# never cuts a token, up to a cap that bounds the cost of one pathological token.
_LEFT_MARGIN = 48
_RIGHT_MARGIN = 24
_SNAP_CAP = 256
_WINDOW_SEPARATOR = "\n\n"
_INF = 1 << 62
_WARM_UP = "jane@example.org 541-714-1388 4454794511390933 10.0.0.1 https://example.com"


class _BlankSpacyNlpEngine(SlimSpacyNlpEngine):
    """A tokenizer-only NLP engine over ``spacy.blank``: no model, nothing to download."""

    def __init__(self, language: str) -> None:
        super().__init__(
            models=[{"lang_code": language, "model_name": "blank"}], auto_download=False
        )
        self._language = language

    def load(self) -> None:
        # Presidio declares ``nlp`` as None until loaded; a dict of pipelines is what it holds.
        self.nlp = {self._language: spacy.blank(self._language)}  # type: ignore[assignment]

    def _doc_to_nlp_artifact(self, doc: Doc, language: str) -> NlpArtifacts:
        # A blank pipeline has no lemmatizer. The lower-cased token stands in for the lemma so
        # Presidio's context words ("phone", "card", "iban") still raise a candidate's score.
        # Tokens go in as strings: the context enhancer walks them once per result, and walking
        # a Doc builds a Token object per step, which was most of the cost of a scan with PII.
        return NlpArtifacts(
            entities=[],
            tokens=[t.text for t in doc],  # type: ignore[arg-type]
            tokens_indices=[t.idx for t in doc],
            lemmas=[t.lower_ for t in doc],
            nlp_engine=self,
            language=language,
            scores=[],
        )


class PIIScanner:
    """Find personal data with Presidio's recognizers; only the types asked for are loaded.

    ``scan`` returns one span per entity found (label = Presidio entity type, score = Presidio's
    score after context enhancement) and a result score equal to the highest span score. Spans
    under ``score_threshold`` are dropped. ``prefilter=False`` runs the recognizers on the whole
    text, which is what the benchmark compares against; results are the same up to the rare
    entity longer than a window. Safe to call from several threads: nothing mutable is shared
    across calls.
    """

    name = "pii"
    reach = 2048  # the longest entity it should still see whole (an email, a URL)

    def __init__(
        self,
        entities: Sequence[str],
        *,
        score_threshold: float = 0.4,
        prefilter: bool = True,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
        ner_model: str | None = None,
    ) -> None:
        wanted = _validate_entities(entities)
        if not 0.0 <= score_threshold <= 1.0:
            raise ConfigurationError(
                f"score_threshold must be between 0 and 1, got {score_threshold}",
                hint="Presidio scores are in [0, 1]; 0.4 keeps the phone recognizer's base score",
            )
        self.entities: tuple[str, ...] = tuple(sorted(wanted))
        self.score_threshold = score_threshold
        self.prefilter = prefilter
        self.phone_regions: tuple[str, ...] = tuple(r.upper() for r in phone_regions)
        unknown_regions = set(self.phone_regions) - phonenumbers.SUPPORTED_REGIONS
        if unknown_regions or not self.phone_regions:
            raise ConfigurationError(
                f"unknown phone region(s): {', '.join(sorted(unknown_regions)) or '(none given)'}",
                hint="use ISO 3166-1 alpha-2 codes such as US, GB, DE",
            )
        # Presidio's predefined recognizers and context words are English.
        self.language = "en"
        language = self.language

        self._pattern_entities = tuple(e for e in self.entities if e in _SPECS)
        self._ner_entities = tuple(e for e in self.entities if e in NER_ENTITIES)
        self._prefilters: dict[str, tuple[str, ...]] = {}
        for entity in self._pattern_entities:
            key = _SPECS[entity].prefilter
            self._prefilters[key] = (*self._prefilters.get(key, ()), entity)

        self._patterns: AnalyzerEngine | None = None
        if self._pattern_entities:
            engine = _BlankSpacyNlpEngine(language)
            engine.load()
            registry = RecognizerRegistry(
                recognizers=[_SPECS[e].make(self) for e in self._pattern_entities],
                supported_languages=[language],
            )
            self._patterns = AnalyzerEngine(
                registry=registry, nlp_engine=engine, supported_languages=[language]
            )
            # Presidio compiles each pattern on first use; do it now, at start-up, so the first
            # request does not pay for it (the URL pattern alone is a long alternation).
            self._patterns.analyze(
                text=_WARM_UP, language=language, entities=list(self._pattern_entities)
            )
        self._ner: AnalyzerEngine | None = None
        if self._ner_entities:
            self._ner = _ner_analyzer(self._ner_entities, ner_model, language)

    def __repr__(self) -> str:
        return (
            f"PIIScanner(entities={list(self.entities)!r}, "
            f"score_threshold={self.score_threshold}, prefilter={self.prefilter})"
        )

    def scan(self, text: str) -> ScanResult:
        """Return the PII spans in ``text`` by position, scored by the highest span score."""
        spans = self.find(text)
        if not spans:
            return ScanResult(score=0.0)
        counts = Counter(s.label for s in spans)
        detail = ", ".join(f"{label} x{n}" for label, n in sorted(counts.items()))
        return ScanResult(score=max(s.score for s in spans), spans=spans, detail=detail)

    def find(self, text: str) -> tuple[Span, ...]:
        """The non-overlapping PII spans of ``text``, sorted by start."""
        if not isinstance(text, str):
            raise InvalidRequest(
                f"the PII scanner scans text, got {type(text).__name__}",
                hint="pass the message content as a string",
            )
        results: list[Span] = []
        if self._patterns is not None:
            if self.prefilter:
                results.extend(self._analyze_windows(text))
            else:
                results.extend(self._analyze(self._patterns, text, self._pattern_entities))
        if self._ner is not None:
            results.extend(self._analyze(self._ner, text, self._ner_entities))
        return resolve_overlaps(results)

    def _analyze(self, engine: AnalyzerEngine, text: str, entities: Iterable[str]) -> list[Span]:
        found: list[PresidioResult] = engine.analyze(
            text=text,
            language=self.language,
            entities=list(entities),
            score_threshold=self.score_threshold,
        )
        return [Span(r.start, r.end, r.entity_type, float(r.score)) for r in found]

    def _analyze_windows(self, text: str) -> list[Span]:
        """Run the recognizers once, over the candidate windows joined by blank lines.

        One analyzer call instead of one per window: the phone matcher has a fixed cost per call
        and region. No recognizer matches across a newline, so nothing spans two windows; a
        result that did would be dropped below.
        """
        assert self._patterns is not None
        windows = self._candidate_windows(text)
        if not windows:
            return []
        pieces: list[str] = []
        offsets: list[tuple[int, int, int]] = []  # (start in joined, end in joined, start in text)
        entities: set[str] = set()
        cursor = 0
        for start, end, wanted in windows:
            pieces.append(text[start:end])
            offsets.append((cursor, cursor + end - start, start))
            entities.update(wanted)
            cursor += end - start + len(_WINDOW_SEPARATOR)
        joined = _WINDOW_SEPARATOR.join(pieces)
        spans: list[Span] = []
        for span in self._analyze(self._patterns, joined, sorted(entities)):
            i = bisect.bisect_right(offsets, (span.start, _INF, _INF)) - 1
            lo, hi, origin = offsets[i]
            if lo <= span.start and span.end <= hi:
                shift = origin - lo
                spans.append(Span(span.start + shift, span.end + shift, span.label, span.score))
        return spans

    def _candidate_windows(self, text: str) -> list[tuple[int, int, tuple[str, ...]]]:
        """Merged windows around prefilter hits, each with the entity types it may hold."""
        raw: list[tuple[int, int, tuple[str, ...]]] = []
        for key, entities in self._prefilters.items():
            for m in _PREFILTERS[key].finditer(text):
                raw.append((*_window(text, m.start(), m.end()), entities))
        if not raw:
            return []
        raw.sort()
        merged: list[tuple[int, int, tuple[str, ...]]] = []
        cur_start, cur_end, cur_entities = raw[0]
        wanted = set(cur_entities)
        for start, end, entities in raw[1:]:
            if start <= cur_end:
                cur_end = max(cur_end, end)
                wanted.update(entities)
            else:
                merged.append((cur_start, cur_end, tuple(sorted(wanted))))
                cur_start, cur_end, wanted = start, end, set(entities)
        merged.append((cur_start, cur_end, tuple(sorted(wanted))))
        return merged


def _validate_entities(entities: Sequence[str]) -> set[str]:
    if isinstance(entities, str):
        raise ConfigurationError(
            f"entities must be a list of entity types, got the string {entities!r}",
            hint=f"write entities: [{entities}]",
        )
    wanted = {e.strip().upper() for e in entities}
    if not wanted:
        raise ConfigurationError(
            "a PII scanner needs at least one entity type",
            hint=f"choose from {', '.join(sorted(PATTERN_ENTITIES | NER_ENTITIES))}",
        )
    unknown = wanted - PATTERN_ENTITIES - NER_ENTITIES
    if unknown:
        raise ConfigurationError(
            f"unknown PII entity type(s): {', '.join(sorted(unknown))}",
            hint=f"choose from {', '.join(sorted(PATTERN_ENTITIES | NER_ENTITIES))}",
        )
    return wanted


def _ner_analyzer(entities: Sequence[str], ner_model: str | None, language: str) -> AnalyzerEngine:
    """An analyzer over an installed spaCy NER pipeline; never downloads one."""
    names = ", ".join(entities)
    if ner_model is None:
        raise ConfigurationError(
            f"PII entity type(s) {names} need a named-entity model, and none is configured",
            hint=(
                "install a spaCy pipeline with an 'ner' component (for example the en_core_web_sm "
                "wheel, from a source you trust) and pass ner_model='en_core_web_sm', or remove "
                f"{names} from the charter; the pattern types "
                f"({', '.join(sorted(PATTERN_ENTITIES))}) need no model"
            ),
        )
    if not (spacy.util.is_package(ner_model) or Path(ner_model).exists()):
        raise ConfigurationError(
            f"the spaCy pipeline {ner_model!r} named for {names} is not installed",
            hint=f"pip install the {ner_model} wheel, or give the path of a saved spaCy pipeline",
        )
    engine = SpacyNlpEngine(models=[{"lang_code": language, "model_name": ner_model}])
    engine.load()
    pipes = set(engine.get_nlp(language).pipe_names)
    if not pipes & {"ner", "entity_ruler", "span_ruler"}:
        raise ConfigurationError(
            f"the spaCy pipeline {ner_model!r} has no named-entity component",
            hint=f"it has {sorted(pipes) or 'no components'}; use a pipeline with 'ner'",
        )
    registry = RecognizerRegistry(
        recognizers=[
            SpacyRecognizer(supported_language=language, supported_entities=list(entities))
        ],
        supported_languages=[language],
    )
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=[language])


def _window(text: str, start: int, end: int) -> tuple[int, int]:
    lo = max(0, start - _LEFT_MARGIN)
    floor = max(0, lo - _SNAP_CAP)
    while lo > floor and not text[lo - 1].isspace():
        lo -= 1
    hi = min(len(text), end + _RIGHT_MARGIN)
    ceiling = min(len(text), hi + _SNAP_CAP)
    while hi < ceiling and not text[hi].isspace():
        hi += 1
    return lo, hi
