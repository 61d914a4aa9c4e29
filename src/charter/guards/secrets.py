"""The secrets scanner: API keys, tokens, private keys and passwords in prompts and answers.

Compiled regular expressions for documented token formats, each run only when a literal that
every match must contain (``sk-``, ``AKIA``, ``ghp_``, ``-----BEGIN``...) occurs in the text, plus
keyword assignments (``password=...``) whose value must look random enough to be a real secret.
Yelp's detect-secrets was measured first and not used: its line scanner took ~2.8 ms on a 1 KB line
with nothing in it, reports no character offsets, and flags URL fragments as high-entropy strings.
Formats follow the vendors' documentation and the rules of gitleaks (MIT), cited per rule.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from charter.errors import ConfigurationError, InvalidRequest
from charter.guards.base import ScanResult
from charter.guards.redaction import resolve_overlaps
from charter.policy.verdict import Span

__all__ = ["SECRET_KINDS", "SecretsScanner", "shannon_entropy"]


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value``'s own character distribution (0 for an empty string)."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


@dataclass(frozen=True, slots=True)
class _Rule:
    """One secret format: the regex, the literals one of which every match contains, a score.

    ``group`` selects the part of the match that is the secret (0 = all of it); ``check``, when
    set, must accept that part, for formats whose shape alone is not enough.
    """

    label: str
    pattern: re.Pattern[str]
    triggers: tuple[str, ...]
    score: float
    group: int = 0
    check: Callable[[str], float | None] | None = None
    case_insensitive_triggers: bool = False


# Values that stand for a secret without being one: templates, examples, redactions.
_NOT_A_VALUE = re.compile(
    r"""^(?:
        \$\{?[\w.\-]+\}?            # $VAR, ${VAR}
      | \{\{.*\}\}                   # {{ template }}
      | <[^>]*>                      # <password>
      | %\(?\w*\)?s                  # %s, %(pw)s
      | \*+ | x+ | \.+ | -+          # ****, xxxx, ...
      | (?:your|my|the|some|example|sample|dummy|fake|test|changeme|placeholder)[\w\-]*
      | (?:none|null|nil|true|false|undefined|password|passwd|secret|redacted)
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
# Code on the right of ``password =`` that reads a secret instead of holding one.
_CODE_VALUE = re.compile(r"[()\[\]]|^(?:self|os|env|config|settings|request|args)\.|^[a-z_]+$")


def _assigned_secret_score(value: str) -> float | None:
    """Score a keyword-assigned value: None for words, templates and code; higher for randomness.

    A real password or key mixes character classes and has high entropy for its length; an
    English word, an identifier or ``os.environ[...]`` does not.
    """
    value = value.strip("\"'`")
    if len(value) < 8 or _NOT_A_VALUE.match(value) or _CODE_VALUE.search(value):
        return None
    classes = sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
            any(not c.isalnum() for c in value),
        )
    )
    entropy = shannon_entropy(value)
    if classes < 2 or entropy < 2.8:
        return None
    # 2.8 bits/char is a short mixed password; 4+ is what a random key reaches at 20+ chars.
    return min(0.95, 0.55 + 0.1 * (entropy - 2.8) + 0.05 * (classes - 2))


def _connection_password_score(value: str) -> float | None:
    if _NOT_A_VALUE.match(value) or len(value) < 3:
        return None
    return 0.9


_KEYWORDS = (
    r"password|passwd|pwd|pass_?phrase|secret|client_?secret|api_?key|apikey|access_?key|"
    r"secret_?key|private_?key|access_?token|auth_?token|refresh_?token|bearer_?token|token"
)

_RULES: tuple[_Rule, ...] = (
    # OpenAI: "sk-" legacy keys and the sk-proj- / sk-svcacct- / sk-admin- keys
    # (platform.openai.com/docs/api-reference/authentication; gitleaks rule openai-api-key).
    _Rule(
        "OPENAI_API_KEY",
        re.compile(r"\bsk-(?!ant-)(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{32,}"),
        ("sk-",),
        0.97,
    ),
    # Anthropic: sk-ant-api03-... and sk-ant-admin01-... (docs.anthropic.com, API keys;
    # gitleaks rules anthropic-api-key, anthropic-admin-api-key).
    _Rule(
        "ANTHROPIC_API_KEY",
        re.compile(r"\bsk-ant-[a-z]{3,8}\d{2}-[A-Za-z0-9_\-]{32,}"),
        ("sk-ant-",),
        0.99,
    ),
    # AWS access key ids: a four-letter prefix (AKIA long-term, ASIA temporary, ...) and 16
    # base32 characters (docs.aws.amazon.com IAM "Understanding unique ID prefixes").
    _Rule(
        "AWS_ACCESS_KEY_ID",
        re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z2-7]{16}\b"),
        ("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
        0.95,
    ),
    # AWS secret access keys: 40 base64 characters, only recognisable by the name next to them
    # (gitleaks rule aws-secret-access-key takes the same approach).
    _Rule(
        "AWS_SECRET_ACCESS_KEY",
        re.compile(
            r"(?i)aws[\w\-. ]{0,20}secret[\w\-. ]{0,20}[\"']?\s*[:=]\s*[\"']?"
            r"([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
        ),
        ("aws",),
        0.95,
        group=1,
        case_insensitive_triggers=True,
    ),
    # GitHub: ghp_/gho_/ghu_/ghs_/ghr_ + 36 characters, and fine-grained github_pat_ tokens
    # (github.blog 2021-04-05 "Behind GitHub's new authentication token formats").
    _Rule("GITHUB_TOKEN", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"), ("gh",), 0.97),
    _Rule("GITHUB_TOKEN", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{60,}\b"), ("github_pat_",), 0.99),
    # Slack: xoxb-/xoxp-/xoxa-/xoxr-/xoxs-/xoxe- tokens and incoming-webhook URLs
    # (api.slack.com/authentication/token-types).
    _Rule("SLACK_TOKEN", re.compile(r"\bxox[abeoprs]-[A-Za-z0-9\-]{10,}"), ("xox",), 0.95),
    _Rule(
        "SLACK_WEBHOOK",
        re.compile(r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{16,}"),
        ("hooks.slack.com",),
        0.95,
    ),
    # Stripe: secret and restricted keys, live and test (docs.stripe.com/keys).
    _Rule(
        "STRIPE_KEY",
        re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"),
        ("sk_live_", "sk_test_", "rk_live_", "rk_test_"),
        0.97,
    ),
    # Google API keys: "AIza" and 35 more characters
    # (cloud.google.com/docs/authentication/api-keys).
    _Rule(
        "GOOGLE_API_KEY", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])"), ("AIza",), 0.95
    ),
    # JSON Web Tokens: base64url header and payload, both JSON objects, so both start "eyJ"
    # (RFC 7519 section 3; RFC 7515 compact serialisation), and a signature.
    _Rule(
        "JWT",
        re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
        ("eyJ",),
        0.9,
    ),
    # PEM private keys, RSA/EC/DSA/OPENSSH/PKCS#8/encrypted (RFC 7468 section 2); a block with no
    # END line (pasted truncated) is still a key up to where the base64 stops.
    _Rule(
        "PRIVATE_KEY",
        re.compile(
            r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----"
            r"(?:[\s\S]*?-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s:,\-]*)"
        ),
        ("-----BEGIN",),
        0.99,
    ),
    # Connection strings with a password: scheme://user:password@host (RFC 3986 userinfo), for
    # the databases, brokers and caches a prompt is likely to carry. Only the password is secret.
    _Rule(
        "CONNECTION_PASSWORD",
        re.compile(
            r"(?i)\b(?:postgres(?:ql)?|mysql|mariadb|mssql|sqlserver|oracle|mongodb(?:\+srv)?|"
            r"rediss?|amqps?|kafka|clickhouse|cockroachdb|snowflake|ldaps?|smtps?|s?ftp)"
            r"(?:\+\w+)?://[^\s:/@]*:([^\s@/]+)@[^\s/@]+"
        ),
        ("://",),
        0.9,
        group=1,
        check=_connection_password_score,
    ),
    # Generic assignments: password = "...", api_key: ..., "token": "..." in code, config, JSON,
    # YAML and prose. The value is only flagged when it looks random (see _assigned_secret_score).
    _Rule(
        "SECRET_ASSIGNMENT",
        re.compile(
            rf"(?i)(?<![A-Za-z0-9])(?:[a-z0-9]+[_\-.])*(?:{_KEYWORDS})[\"']?\s*(?::=|=>|[:=])\s*"
            r"(\"[^\"\n]{8,200}\"|'[^'\n]{8,200}'|`[^`\n]{8,200}`|[^\s\"'`,;]{8,200})"
        ),
        ("pass", "pwd", "secret", "key", "token"),
        0.8,
        group=1,
        check=_assigned_secret_score,
        case_insensitive_triggers=True,
    ),
)

SECRET_KINDS: frozenset[str] = frozenset(rule.label for rule in _RULES)


class SecretsScanner:
    """Find credentials in text; one span per secret, labelled with its kind.

    ``kinds`` restricts the scanner to some labels of ``SECRET_KINDS`` (all by default). For the
    quoted values of keyword assignments the span covers the value inside the quotes, and for
    connection strings only the password, so a redaction keeps the rest readable.
    """

    name = "secrets"
    reach = 4096  # a PEM private key block

    def __init__(self, kinds: Sequence[str] | None = None, *, score_threshold: float = 0.5) -> None:
        wanted = set(SECRET_KINDS) if kinds is None else {k.strip().upper() for k in kinds}
        unknown = wanted - SECRET_KINDS
        if unknown or not wanted:
            raise ConfigurationError(
                f"unknown secret kind(s): {', '.join(sorted(unknown)) or '(none given)'}",
                hint=f"choose from {', '.join(sorted(SECRET_KINDS))}, or omit kinds for all",
            )
        self.kinds: tuple[str, ...] = tuple(sorted(wanted))
        self.score_threshold = score_threshold
        self._rules = tuple(r for r in _RULES if r.label in wanted)

    def __repr__(self) -> str:
        return f"SecretsScanner(kinds={list(self.kinds)!r})"

    def scan(self, text: str) -> ScanResult:
        """Return the secrets in ``text`` with the highest span score as the result score."""
        spans = self.find(text)
        if not spans:
            return ScanResult(score=0.0)
        counts = Counter(s.label for s in spans)
        detail = ", ".join(f"{label} x{n}" for label, n in sorted(counts.items()))
        return ScanResult(score=max(s.score for s in spans), spans=spans, detail=detail)

    def find(self, text: str) -> tuple[Span, ...]:
        """The non-overlapping secret spans of ``text``, sorted by start."""
        if not isinstance(text, str):
            raise InvalidRequest(
                f"the secrets scanner scans text, got {type(text).__name__}",
                hint="pass the message content as a string",
            )
        lowered: str | None = None
        spans: list[Span] = []
        for rule in self._rules:
            if rule.case_insensitive_triggers:
                lowered = text.lower() if lowered is None else lowered
                haystack = lowered
            else:
                haystack = text
            # The literal test is a memchr-speed scan; most texts skip every regex here.
            if not any(t in haystack for t in rule.triggers):
                continue
            for m in rule.pattern.finditer(text):
                start, end = m.span(rule.group)
                value = m[rule.group]
                if value[:1] in "\"'`" and value[-1:] == value[:1] and len(value) > 1:
                    start, end, value = start + 1, end - 1, value[1:-1]
                score: float | None = rule.score
                if rule.check is not None:
                    score = rule.check(value)
                if score is not None and score >= self.score_threshold:
                    spans.append(Span(start, end, rule.label, score))
        return resolve_overlaps(spans)
