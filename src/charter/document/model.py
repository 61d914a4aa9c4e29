"""The charter file format: decisions, the controls that enforce them, principals and providers.

These pydantic models are the single definition of the format: `charter check` validates against
them, `charter schema` publishes them as JSON Schema, and the policy engine reads them. Every model
forbids unknown keys so a typo is an error with a suggestion, never a silently ignored setting.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
Id = Annotated[
    str,
    Field(
        pattern=ID_PATTERN,
        description="A short name: lower-case letters, digits, '-', '_' or '.'; at most 64.",
    ),
]
DURATION_PATTERN = r"^[1-9][0-9]*(s|m|h|d|w)$"
Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        description="A duration such as 30s, 15m, 4h, 1d or 2w.",
        examples=["1d"],
    ),
]
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(text: str) -> int:
    """Seconds in a validated duration string (``"4h"`` -> 14400)."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 15m, 4h, 1d, 2w)")
    return int(text[:-1]) * _UNIT_SECONDS[text[-1]]


ENV_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]*$"
"""What names an environment variable: settings hold these names, never the secrets."""


class Strict(BaseModel):
    """Base of every charter model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


# --- decisions --------------------------------------------------------------------------------


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Decision(Strict):
    """One thing the organization decided about its AI, and who answers for it."""

    id: Id
    statement: str = Field(min_length=1, description="What was decided, in one sentence.")
    owner: str = Field(min_length=1, description="The accountable role, e.g. head-of-support.")
    rationale: str | None = Field(None, description="Why it was decided.")
    risk: Risk = Field(description="low, medium, high or critical.")
    review_by: dt.date = Field(description="When the decision must be reviewed (YYYY-MM-DD).")
    enforced_by: list[Id] = Field(
        default_factory=list, description="Ids of the controls that enforce this decision."
    )
    frameworks: list[
        Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*:[A-Za-z0-9][A-Za-z0-9.-]*$")]
    ] = Field(
        default_factory=list,
        description="External framework items this decision answers, as FRAMEWORK:ITEM, e.g. "
        "owasp-llm-2025:LLM01, nist-ai-rmf:MEASURE, eu-ai-act:art-12 (see docs/observability.md).",
    )


# --- control settings, one model per kind -----------------------------------------------------


class Mode(StrEnum):
    ENFORCE = "enforce"
    SHADOW = "shadow"
    OFF = "off"


class OnError(StrEnum):
    FAIL_CLOSED = "fail_closed"
    FAIL_OPEN = "fail_open"


class RouteRule(Strict):
    principals: list[str] = Field(
        min_length=1, description="Principal ids ('*' for every principal)."
    )
    models: list[str] = Field(min_length=1, description="Model names these principals may call.")


class RouteSettings(Strict):
    """Model allowlists: a principal may call a model only if some rule allows it."""

    rules: list[RouteRule] = Field(min_length=1)


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class BudgetLimit(Strict):
    principal: str = Field(description="Principal id; a team's budget covers its apps and users.")
    usd: float = Field(gt=0, description="Spend limit in US dollars for each period.")
    period: Period


class BudgetSettings(Strict):
    """Spend limits per principal and period, held under concurrency by reserve-then-settle."""

    limits: list[BudgetLimit] = Field(min_length=1)


class RateLimit(Strict):
    principal: str = Field(description="Principal id ('*' for each principal separately).")
    model: str | None = Field(None, description="Limit only calls to this model.")
    requests_per_minute: int | None = Field(None, gt=0)
    tokens_per_minute: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _some_limit(self) -> RateLimit:
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            raise ValueError("set requests_per_minute, tokens_per_minute or both")
        return self


class RateLimitSettings(Strict):
    """Request and token rates per principal (and model), exact across replicas."""

    limits: list[RateLimit] = Field(min_length=1)


class GuardAction(StrEnum):
    BLOCK = "block"
    REDACT = "redact"
    ESCALATE = "escalate"


GuardStage = Literal["input", "untrusted", "output"]


class GuardBase(Strict):
    stages: list[GuardStage] = Field(
        default_factory=lambda: ["input"],  # type: ignore[arg-type,unused-ignore]
        min_length=1,
        description="Which content to scan: input (the user's), untrusted (tool results, "
        "documents), output (the model's answer).",
    )
    action: GuardAction = Field(GuardAction.BLOCK, description="What a hit does.")
    threshold: float | None = Field(
        None, ge=0, le=1, description="Score at or above which a scan is a hit."
    )
    escalate_band: tuple[float, float] | None = Field(
        None,
        description="[low, high): scores in this band escalate to a human instead of a silent "
        "allow or block.",
    )
    message: str | None = Field(None, description="The refusal shown to the user on a block.")

    @field_validator("escalate_band")
    @classmethod
    def _band_order(cls, band: tuple[float, float] | None) -> tuple[float, float] | None:
        if band is not None and not (0 <= band[0] < band[1] <= 1):
            raise ValueError("escalate_band must be [low, high] with 0 <= low < high <= 1")
        return band


class InjectionGuard(GuardBase):
    """Prompt injection and jailbreaks (input) and instructions hidden in untrusted content."""

    scanner: Literal["injection"]


class PiiGuard(GuardBase):
    """Personal data, found with Presidio's recognizers and redacted reversibly."""

    scanner: Literal["pii"]
    entities: list[str] = Field(
        default_factory=lambda: ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN"],
        min_length=1,
    )


class SecretsGuard(GuardBase):
    """API keys, tokens, private keys and connection strings."""

    scanner: Literal["secrets"]


Phrase = Annotated[str, Field(min_length=1, max_length=2000)]


class Topic(Strict):
    """One refused topic: what it is, phrases that belong to it, and near misses that do not."""

    name: Id
    description: str = Field(min_length=1, description="What the topic is, in one sentence.")
    examples: list[Phrase] = Field(
        min_length=1, description="Phrases that belong to this topic: the guard refuses them."
    )
    allowed_examples: list[Phrase] = Field(
        default_factory=list,
        description="Near misses: phrases that mention the topic but are allowed (a question about "
        "our own warranty terms is not a request for legal advice). The guard learns to tell them "
        "apart from the examples; each is allowed by every topic of the guard.",
    )


class TopicGuard(GuardBase):
    """Topics the organization decided to refuse, matched by meaning, not keywords."""

    scanner: Literal["topic"]
    topics: list[Topic] = Field(min_length=1)


class JsonSchemaGuard(GuardBase):
    """Structured answers must validate against a JSON Schema."""

    scanner: Literal["json_schema"]
    json_schema: dict[str, Any] = Field(alias="schema")


class UrlGuard(GuardBase):
    """Links in answers must point at allowed domains."""

    scanner: Literal["urls"]
    allow_domains: list[str] = Field(min_length=1)


class LengthGuard(GuardBase):
    scanner: Literal["length"]
    max_chars: int = Field(gt=0)


class UnicodeGuard(GuardBase):
    """Invisible and control characters, used to smuggle instructions past people."""

    scanner: Literal["unicode"]


class ProtectedEnv(Strict):
    """A value an answer must never contain, read from an environment variable when the charter
    is loaded, so the secret itself never sits in the charter file (nor in its version hash)."""

    env: str = Field(
        pattern=ENV_NAME_PATTERN,
        description="Name of the environment variable that holds the value (at least 4 letters "
        "and digits).",
    )


class LeakGuard(GuardBase):
    """Canary tokens, near-verbatim system-prompt text and protected values in answers."""

    scanner: Literal["leak"]
    min_overlap_chars: int = Field(60, gt=10)
    protect: list[ProtectedEnv] = Field(
        default_factory=list,
        description="Secret values (an access code, an internal URL) answers must never carry, "
        "spaced out, re-cased, reversed, hex or base64 included; each read from `env`.",
    )
    phrases: list[Phrase] = Field(
        default_factory=list,
        description="Non-secret literal phrases answers must never carry (an internal codename), "
        "matched like `protect`; they are written in the charter, so never put a secret here.",
    )

    @field_validator("phrases")
    @classmethod
    def _long_enough(cls, phrases: list[str]) -> list[str]:
        from charter.guards.protected import MIN_CHARS, normalise

        for phrase in phrases:
            if len(normalise(phrase)) < MIN_CHARS:
                raise ValueError(
                    f"phrase {phrase!r} has fewer than {MIN_CHARS} letters and digits; a shorter "
                    "one would match ordinary answers by chance: use a longer phrase"
                )
        return phrases


GuardSettings = Annotated[
    InjectionGuard
    | PiiGuard
    | SecretsGuard
    | TopicGuard
    | JsonSchemaGuard
    | UrlGuard
    | LengthGuard
    | UnicodeGuard
    | LeakGuard,
    Field(discriminator="scanner"),
]


class Verdict3(StrEnum):
    DENY = "deny"
    REVIEW = "review"


class ArgumentSpec(Strict):
    type: Literal["string", "integer", "number", "boolean"]
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None
    enum: list[str | int | float] | None = None
    pattern: str | None = None
    max_length: int | None = Field(None, gt=0)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _fits_the_type(self) -> ArgumentSpec:
        numeric = self.type in ("integer", "number")
        if not numeric and (self.minimum is not None or self.maximum is not None):
            raise ValueError(f"minimum and maximum apply to numbers, not to a {self.type}")
        if self.type != "string" and (self.pattern is not None or self.max_length is not None):
            raise ValueError(f"pattern and max_length apply to strings, not to a {self.type}")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("minimum is greater than maximum")
        return self


class AmountCap(Strict):
    argument: str = Field(description="The numeric argument to cap, e.g. amount_usd.")
    max: float = Field(gt=0)
    over: Verdict3 = Field(Verdict3.REVIEW, description="deny, or review by a human.")


class RateCap(Strict):
    per: Literal["subject", "global"] = "subject"
    window: Duration
    count: int | None = Field(None, gt=0, description="At most this many executed calls.")
    sum_of: str | None = Field(None, description="Or: cap the sum of this numeric argument.")
    max: float | None = Field(None, gt=0, description="The cap on that sum.")
    over: Verdict3 = Verdict3.DENY

    @model_validator(mode="after")
    def _one_measure(self) -> RateCap:
        if (self.count is None) == (self.sum_of is None):
            raise ValueError("set either count, or sum_of with max")
        if self.sum_of is not None and self.max is None:
            raise ValueError("sum_of needs max")
        return self


_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_URL_FIELDS = ("subject", "resource")


class OwnershipHttp(Strict):
    """Ask an HTTP service whether the subject owns the resource; Charter makes the call itself."""

    url: str = Field(
        pattern=r"^https?://",
        description="The address to ask, with {subject} and {resource} placeholders (filled in "
        "percent-encoded), e.g. https://crm.internal/customers/{subject}/orders/{resource}.",
    )
    method: Literal["GET", "POST"] = Field(
        "GET", description="GET, or POST with the JSON body {subject, resource}."
    )
    owned_field: str = Field(
        "owned",
        min_length=1,
        description="The JSON boolean field of a 2xx answer that says whether it is owned.",
    )
    not_owned_status: list[int] = Field(
        default_factory=lambda: [404],
        description="Statuses that mean not owned (any other non-2xx is a failed lookup).",
    )
    timeout_s: float = Field(2.0, gt=0, le=60, description="Seconds to wait for the answer.")
    cache_ttl_s: float = Field(
        30.0, ge=0, le=86400, description="Seconds an answer is reused for; 0 asks every time."
    )
    max_concurrency: int = Field(
        8, ge=1, le=1024, description="Lookups of this control in flight at once, at most."
    )
    headers_env: dict[str, str] = Field(
        default_factory=dict,
        description="Headers to send, each read from an environment variable: "
        "{Authorization: CRM_TOKEN} (never the secret itself).",
    )

    @field_validator("url")
    @classmethod
    def _placeholders(cls, url: str) -> str:
        import string

        try:
            fields = list(string.Formatter().parse(url))
        except ValueError as exc:
            raise ValueError(
                f"url is not a valid template ({exc}); write {{{{ for a literal brace"
            ) from None
        for _, name, spec, conversion in fields:
            if name is None:
                continue
            if name not in _URL_FIELDS or spec or conversion:
                raise ValueError(
                    f"url has the placeholder {{{name}}}; only {{subject}} and {{resource}} "
                    "are filled in"
                )
        host = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
        if "{" in host:
            raise ValueError(
                "url has a placeholder in its host; put {subject} and {resource} in the path "
                "or query, so a caller's value can never choose where Charter connects"
            )
        return url

    @field_validator("not_owned_status")
    @classmethod
    def _statuses(cls, statuses: list[int]) -> list[int]:
        bad = [s for s in statuses if not 300 <= s <= 599]
        if bad:
            raise ValueError(f"not_owned_status must be 3xx-5xx statuses, got {bad}")
        return statuses

    @field_validator("headers_env")
    @classmethod
    def _header_names(cls, headers: dict[str, str]) -> dict[str, str]:
        for header, env in headers.items():
            if not _HEADER_NAME.match(header):
                raise ValueError(f"headers_env: {header!r} is not a header name")
            if not re.match(ENV_NAME_PATTERN, env):
                raise ValueError(
                    f"headers_env.{header}: {env!r} must name an environment variable "
                    "(e.g. CRM_TOKEN), not hold the secret"
                )
        return headers

    @model_validator(mode="after")
    def _get_names_both(self) -> OwnershipHttp:
        if self.method == "GET":
            missing = [f"{{{f}}}" for f in _URL_FIELDS if f"{{{f}}}" not in self.url]
            if missing:
                raise ValueError(
                    f"a GET lookup's url must carry {' and '.join(missing)} "
                    "(or use method: POST, which sends both as JSON)"
                )
        return self


class OwnershipSql(Strict):
    """Ask a database whether the subject owns the resource: a row when owned, none when not."""

    dsn_env: str = Field(
        pattern=ENV_NAME_PATTERN,
        description="The environment variable holding the database URL "
        "(sqlite:///path.db or postgresql://user@host/db); opened read-only.",
    )
    query: str = Field(
        description="One SELECT with :subject and :resource that returns a row when owned and "
        "no row when not, e.g. SELECT 1 FROM orders WHERE customer_id = :subject AND id = "
        ":resource. Not SELECT EXISTS(...) or count(*): those always return a row.",
    )
    timeout_s: float = Field(2.0, gt=0, le=60, description="Seconds the query may take.")
    cache_ttl_s: float = Field(
        30.0, ge=0, le=86400, description="Seconds an answer is reused for; 0 asks every time."
    )
    max_concurrency: int = Field(
        8, ge=1, le=256, description="Queries of this control in flight (and connections), at most."
    )

    @field_validator("query")
    @classmethod
    def _valid_query(cls, query: str) -> str:
        from charter.document.sqlquery import validate_query

        validate_query(query)
        return query


class Ownership(Strict):
    """Where the truth about who owns what lives: exactly one of context, http or sql."""

    argument: str = Field(description="The argument naming the resource, e.g. order_id.")
    context: str | None = Field(
        None,
        description="The key of the caller-supplied context listing what the subject owns, "
        "e.g. customer_orders. The caller is trusted to tell the truth; prefer http or sql.",
    )
    http: OwnershipHttp | None = Field(None, description="Charter asks an HTTP service.")
    sql: OwnershipSql | None = Field(None, description="Charter queries a database, read-only.")
    on_error: Literal["deny", "review", "allow"] = Field(
        "deny",
        description="When an http or sql lookup fails (timeout, 5xx, database down): deny "
        "(fail closed), review (a person decides) or allow (fail open). The reason is reported.",
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Ownership:
        given = [name for name in ("context", "http", "sql") if getattr(self, name) is not None]
        if len(given) != 1:
            said = f"got {' and '.join(given)}" if given else "got none"
            raise ValueError(
                f"ownership needs exactly one of context, http or sql ({said}): "
                "`context: customer_orders` reads a list the caller supplies; "
                "`http: {url: 'https://crm.internal/customers/{subject}/orders/{resource}'}` or "
                "`sql: {dsn_env: ORDERS_DB, query: 'SELECT 1 FROM orders WHERE customer_id = "
                ":subject AND id = :resource'}` make Charter look it up itself"
            )
        if self.context is not None and "on_error" in self.model_fields_set:
            raise ValueError(
                "on_error applies to http and sql lookups; a missing context always denies"
            )
        return self

    @property
    def lookup(self) -> OwnershipHttp | OwnershipSql | None:
        """The lookup Charter runs itself (None when the caller supplies the context)."""
        return self.http or self.sql


class SequenceRule(Strict):
    after: list[str] = Field(min_length=1, description="Tools that, once called, restrict this.")
    argument: str = Field(description="The argument holding an address, e.g. to.")
    allow_domains: list[str] = Field(
        min_length=1, description="After those tools, only these domains are allowed."
    )
    over: Verdict3 = Verdict3.DENY


class ActionWebhook(Strict):
    """An HTTP endpoint Charter calls itself: to execute an approved action, or to undo one."""

    url: str = Field(pattern=r"^https?://", description="Where to POST the action (JSON).")
    secret_env: str = Field(
        pattern=ENV_NAME_PATTERN,
        description="The environment variable holding the key that signs each call "
        "(HMAC-SHA256, header X-Charter-Signature).",
    )
    timeout_s: float = Field(10.0, gt=0, le=120, description="Seconds to wait for each attempt.")
    max_attempts: int = Field(3, ge=1, le=10, description="Attempts before the call is failed.")


class CircuitBreaker(Strict):
    """Pause a tool for everyone when it is executed unusually often."""

    max_executed: int = Field(
        gt=0, description="Trip when more than this many calls were executed within window."
    )
    window: Duration


class ToolPolicySettings(Strict):
    """What the model may do with one tool on its own, what needs a person, what never."""

    tool: str = Field(min_length=1)
    arguments: dict[str, ArgumentSpec] = Field(
        default_factory=dict,
        description="Every argument the tool takes; once any is listed, unlisted ones are refused.",
    )
    caps: list[AmountCap] = Field(default_factory=list)
    rates: list[RateCap] = Field(default_factory=list)
    ownership: Ownership | None = None
    sequences: list[SequenceRule] = Field(default_factory=list)
    review: bool = Field(False, description="Always send this tool to a human.")
    reversible: bool = False
    hold: Duration = Field(
        "15m",
        description="How long an allowed (or approved) call may wait to be reported executed; "
        "after that it is abandoned and stops counting against the rates.",
    )
    execute: ActionWebhook | None = Field(
        None, description="Charter itself executes approved calls through this webhook."
    )
    compensate: ActionWebhook | None = Field(
        None, description="The compensating call that reverts an executed call (reversible)."
    )
    breaker: CircuitBreaker | None = None

    @model_validator(mode="after")
    def _references_declared_arguments(self) -> ToolPolicySettings:
        if self.compensate is not None and not self.reversible:
            raise ValueError("compensate needs reversible: true")
        if not self.arguments:
            return self
        numeric = [(f"caps[{i}].argument", c.argument) for i, c in enumerate(self.caps)]
        numeric += [(f"rates[{i}].sum_of", r.sum_of) for i, r in enumerate(self.rates) if r.sum_of]
        named = [*numeric]
        if self.ownership is not None:
            named.append(("ownership.argument", self.ownership.argument))
        named += [(f"sequences[{i}].argument", s.argument) for i, s in enumerate(self.sequences)]
        for where, name in named:
            if name not in self.arguments:
                listed = ", ".join(sorted(self.arguments))
                raise ValueError(f"{where} names `{name}`, which is not an argument ({listed})")
        for where, name in numeric:
            if self.arguments[name].type not in ("integer", "number"):
                raise ValueError(f"{where} names `{name}`, which is not a number")
        for i, rule in enumerate(self.sequences):
            if self.arguments[rule.argument].type != "string":
                raise ValueError(f"sequences[{i}].argument `{rule.argument}` is not a string")
        return self


class ApprovalSettings(Strict):
    """A human checkpoint: who may approve, and what happens when nobody does in time."""

    reviewers: list[str] = Field(min_length=1, description="Roles that may approve.")
    deadline: Duration = "4h"
    on_timeout: Literal["deny"] = Field("deny", description="Only deny: silence is not consent.")
    use_within: Duration = Field(
        "1h",
        description="How long approved escalated content may be re-sent past its guard "
        "(retries and later turns that repeat it), counted from the approval.",
    )
    notify_webhook: str | None = Field(
        None, pattern=r"^https?://", description="POSTed (signed) when an approval is needed."
    )
    webhook_secret_env: str | None = Field(
        None,
        pattern=ENV_NAME_PATTERN,
        description="The environment variable holding the HMAC-SHA256 key for notify_webhook.",
    )

    @model_validator(mode="after")
    def _signed_webhook(self) -> ApprovalSettings:
        if self.notify_webhook is not None and self.webhook_secret_env is None:
            raise ValueError("notify_webhook needs webhook_secret_env: notifications are signed")
        return self


class EvalThresholds(Strict):
    attack_block_rate_min: float = Field(0.95, ge=0, le=1)
    false_refusal_rate_max: float = Field(0.02, ge=0, le=1)
    max_regression_points: float = Field(1.0, ge=0)
    grader_agreement_min: float = Field(
        0.9,
        ge=0,
        le=1,
        description="An automatic grader counts as evidence only at or above this agreement "
        "with human labels.",
    )


class EvalGateSettings(Strict):
    suite: str = Field(min_length=1, description="Path of the eval suite, relative to the charter.")
    baseline: str | None = None
    thresholds: EvalThresholds = Field(default_factory=EvalThresholds)


class MonitorSettings(Strict):
    statistic: Literal[
        "verdict_rate",
        "refusal_rate",
        "escalation_rate",
        "output_length",
        "cost_per_request",
        "score_psi",
        "score_ks",
        "topic_mix",
    ]
    control: str | None = Field(None, description="The control whose verdicts or scores to watch.")
    principals: list[str] = Field(default_factory=lambda: ["*"])
    window: Duration = "1h"
    baseline_window: Duration = "7d"
    threshold: float = Field(gt=0)
    webhook: str | None = Field(None, pattern=r"^https?://")
    webhook_secret_env: str | None = Field(
        None,
        pattern=ENV_NAME_PATTERN,
        description="Environment variable holding the HMAC key that signs alerts.",
    )
    webhook_format: Literal["charter", "slack"] = Field(
        "charter", description="charter (the alert as JSON) or slack (a Slack-compatible text)."
    )


class AuditSettings(Strict):
    """What the audit trail may keep of the content, and for how long."""

    content: Literal["none", "hashed", "redacted"] = "hashed"
    retention: Duration = "400d"
    durability: Literal["flush", "commit"] = Field(
        "flush",
        description="flush: a request is answered once its record is on disk, so it survives a "
        "power cut (a disk flush per commit batch). commit: once its record is committed to the "
        "database, so it survives a crash of Charter but records of the last moments before a "
        "power cut or OS crash can be lost (never reordered; checkpoints are always flushed).",
    )


# --- standards: how good work looks ------------------------------------------------------------


ORGANIZATION = "organization"


def _compiles(pattern: str | None) -> str | None:
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    return pattern


class Fragment(Strict):
    """One piece of a standard's instructions: inline text, or a file next to the charter."""

    text: str | None = Field(None, min_length=1, description="The instruction text itself.")
    file: str | None = Field(
        None, min_length=1, description="A UTF-8 text file, relative to the charter file."
    )
    sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="Pins the file's content, so the charter version covers it too.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Fragment:
        if (self.text is None) == (self.file is None):
            raise ValueError("give exactly one of text (the instruction) or file (a path)")
        if self.sha256 is not None and self.file is None:
            raise ValueError("sha256 pins a file: use it with file, not with text")
        return self


class StandardScope(Strict):
    """Which requests a standard applies to: principals (teams, apps, users) and models."""

    principals: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description="Principal ids, matching their members too ('*' for every principal the "
        "owner covers).",
    )
    models: list[str] = Field(
        default_factory=lambda: ["*"], min_length=1, description="Model names ('*' for all)."
    )


class StandardAction(StrEnum):
    FLAG = "flag"
    REPAIR = "repair"
    BLOCK = "block"


class BannedAction(StrEnum):
    FLAG = "flag"
    BLOCK = "block"


class Condition(Strict):
    """When a required element applies: any test that matches makes it apply."""

    answer_mentions: list[str] = Field(
        default_factory=list, description="Words or phrases in the answer (any case)."
    )
    question_mentions: list[str] = Field(
        default_factory=list, description="Words or phrases in the user's last message."
    )
    answer_pattern: str | None = Field(None, description="A regular expression on the answer.")
    question_pattern: str | None = Field(
        None, description="A regular expression on the user's last message."
    )
    description: str | None = Field(
        None, description="How the condition is put to the model, e.g. 'when you cannot help'."
    )

    _answer_re = field_validator("answer_pattern", "question_pattern")(_compiles)

    @model_validator(mode="after")
    def _some_test(self) -> Condition:
        if not (
            self.answer_mentions
            or self.question_mentions
            or self.answer_pattern
            or self.question_pattern
        ):
            raise ValueError(
                "a condition needs answer_mentions, question_mentions, answer_pattern or "
                "question_pattern; leave `when` out for an element every answer needs"
            )
        return self


class RequiredElement(Strict):
    """Something an answer must contain, e.g. a disclosure line or a link to a person."""

    id: Id
    text: str = Field(min_length=1, description="The element, as appended on repair.")
    present: str | None = Field(
        None,
        description="A regular expression that recognises the element in an answer (default: "
        "the text itself, ignoring case and spacing).",
    )
    when: Condition | None = Field(None, description="When it applies (default: every answer).")
    action: StandardAction | None = Field(
        None, description="flag, repair or block on a miss (default: the standard's on_miss)."
    )
    instruction: str | None = Field(None, description="How the model is told (default: derived).")
    message: str | None = Field(None, description="The refusal shown on a block.")

    _present_re = field_validator("present")(_compiles)


class BannedPhrasing(Strict):
    """Something an answer must never say, e.g. a promise the company cannot keep."""

    id: Id
    phrases: list[str] = Field(
        default_factory=list, description="Words or phrases, matched whole and in any case."
    )
    pattern: str | None = Field(None, description="Or a regular expression (any case).")
    action: BannedAction = Field(BannedAction.BLOCK, description="flag or block.")
    instruction: str | None = Field(None, description="How the model is told (default: derived).")
    message: str | None = Field(None, description="The refusal shown on a block.")

    _pattern_re = field_validator("pattern")(_compiles)

    @model_validator(mode="after")
    def _some_match(self) -> BannedPhrasing:
        if not self.phrases and self.pattern is None:
            raise ValueError("give phrases, a pattern or both")
        if any(not p.strip() for p in self.phrases):
            raise ValueError("a banned phrase cannot be empty")
        return self


class StandardSettings(Strict):
    """The organization's (or a team's) bar for answers: instructions composed into every request
    in scope, and the required elements and banned phrasings checked on every answer."""

    owner: str = Field(
        ORGANIZATION,
        description="Whose standard it is: 'organization', or the id of a team or app. "
        "Precedence: organization, then team, then app, then the caller's own system prompt.",
    )
    mandatory: bool = Field(
        False,
        description="A mandatory standard outranks the caller's system prompt and cannot be "
        "replaced; otherwise the caller's prompt outranks it.",
    )
    replaces: list[Id] = Field(
        default_factory=list,
        description="Standards this one replaces where both apply (never a mandatory one).",
    )
    scope: StandardScope = Field(default_factory=StandardScope)
    instructions: list[Fragment] = Field(default_factory=list)
    required: list[RequiredElement] = Field(default_factory=list)
    banned: list[BannedPhrasing] = Field(default_factory=list)
    on_miss: StandardAction = Field(
        StandardAction.REPAIR,
        description="What a missing required element does: flag (record), repair (append it) "
        "or block.",
    )
    message: str | None = Field(None, description="The refusal shown on a block.")

    @model_validator(mode="after")
    def _says_something(self) -> StandardSettings:
        if not (self.instructions or self.required or self.banned):
            raise ValueError(
                "an empty standard: give instructions, required elements or banned phrasings"
            )
        for name, items in (("required", self.required), ("banned", self.banned)):
            ids = [item.id for item in items]
            doubled = sorted({i for i in ids if ids.count(i) > 1})
            if doubled:
                raise ValueError(f"{name} ids must be unique; repeated: {', '.join(doubled)}")
        return self


# --- controls ----------------------------------------------------------------------------------


class ControlBase(Strict):
    id: Id
    serves: list[Id] = Field(default_factory=list, description="Ids of the decisions it enforces.")
    mode: Mode = Mode.ENFORCE
    on_error: OnError = OnError.FAIL_CLOSED
    description: str | None = None


class GuardControl(ControlBase):
    kind: Literal["guard"]
    settings: GuardSettings


class BudgetControl(ControlBase):
    kind: Literal["budget"]
    settings: BudgetSettings


class RateLimitControl(ControlBase):
    kind: Literal["rate_limit"]
    settings: RateLimitSettings


class RouteControl(ControlBase):
    kind: Literal["route"]
    settings: RouteSettings


class ToolPolicyControl(ControlBase):
    kind: Literal["tool_policy"]
    settings: ToolPolicySettings


class ApprovalControl(ControlBase):
    kind: Literal["approval"]
    settings: ApprovalSettings


class EvalGateControl(ControlBase):
    kind: Literal["eval_gate"]
    settings: EvalGateSettings


class MonitorControl(ControlBase):
    kind: Literal["monitor"]
    settings: MonitorSettings


class AuditControl(ControlBase):
    kind: Literal["audit"]
    settings: AuditSettings = Field(default_factory=AuditSettings)


class StandardControl(ControlBase):
    kind: Literal["standard"]
    settings: StandardSettings


Control = Annotated[
    GuardControl
    | BudgetControl
    | RateLimitControl
    | RouteControl
    | ToolPolicyControl
    | ApprovalControl
    | EvalGateControl
    | MonitorControl
    | AuditControl
    | StandardControl,
    Field(discriminator="kind"),
]
CONTROL_KINDS = (
    "guard",
    "budget",
    "rate_limit",
    "route",
    "tool_policy",
    "approval",
    "eval_gate",
    "monitor",
    "audit",
    "standard",
)


# --- principals and providers ------------------------------------------------------------------


class KeyRef(Strict):
    """A virtual key, never in plain text: the name of an environment variable or a SHA-256."""

    id: Id
    env: str | None = Field(None, pattern=ENV_NAME_PATTERN)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _exactly_one(self) -> KeyRef:
        if (self.env is None) == (self.sha256 is None):
            raise ValueError(
                "give exactly one of env (an environment variable holding the key) or sha256 "
                "(the key's SHA-256 hex digest, e.g. from `charter keys hash`)"
            )
        return self


class Role(StrEnum):
    ADMIN = "admin"
    OWNER = "owner"
    REVIEWER = "reviewer"
    GRADER = "grader"
    AUDITOR = "auditor"


class Principal(Strict):
    """Who calls: a team, an app of a team, or a person."""

    id: Id
    kind: Literal["team", "app", "user"]
    member_of: Id | None = Field(None, description="The team (or app) this principal belongs to.")
    description: str | None = None
    keys: list[KeyRef] = Field(default_factory=list)
    roles: list[Role] = Field(default_factory=list, description="Console and approval roles.")


class Price(Strict):
    input_per_mtok: float = Field(ge=0, description="USD per million input tokens.")
    output_per_mtok: float = Field(ge=0, description="USD per million output tokens.")


class ModelSpec(Strict):
    name: str = Field(min_length=1, description="The name clients ask for.")
    upstream: str | None = Field(None, description="The provider's name for it, if different.")
    price: Price
    max_output_tokens: int = Field(4096, gt=0)
    fallbacks: list[str] = Field(default_factory=list, description="Models to try if this fails.")


class Provider(Strict):
    """An upstream model endpoint."""

    id: Id
    kind: Literal["simulated", "openai", "anthropic"]
    base_url: str | None = Field(None, pattern=r"^https?://")
    api_key_env: str | None = Field(None, pattern=ENV_NAME_PATTERN)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    max_concurrency: int = Field(64, gt=0)
    models: list[ModelSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _remote_needs_url(self) -> Provider:
        if self.kind != "simulated" and self.base_url is None:
            raise ValueError(f"a provider of kind {self.kind} needs base_url")
        return self


# --- the document ------------------------------------------------------------------------------


class Charter(Strict):
    """The whole charter file."""

    format: Literal[1] = Field(description="The charter format version; 1.")
    organization: str = Field(min_length=1)
    description: str | None = None
    decisions: list[Decision] = Field(min_length=1)
    controls: list[Control] = Field(default_factory=list)
    principals: list[Principal] = Field(default_factory=list)
    providers: list[Provider] = Field(default_factory=list)

    def decision(self, decision_id: str) -> Decision:
        """The decision with this id (KeyError if none)."""
        for decision in self.decisions:
            if decision.id == decision_id:
                return decision
        raise KeyError(decision_id)

    def control(self, control_id: str) -> Control:
        """The control with this id (KeyError if none)."""
        for control in self.controls:
            if control.id == control_id:
                return control
        raise KeyError(control_id)
