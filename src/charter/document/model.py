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


class Topic(Strict):
    name: Id
    description: str = Field(min_length=1)
    examples: list[str] = Field(min_length=1, description="Phrases that belong to this topic.")


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


class LeakGuard(GuardBase):
    """Canary tokens and near-verbatim system-prompt text in answers."""

    scanner: Literal["leak"]
    min_overlap_chars: int = Field(60, gt=10)


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


class Ownership(Strict):
    argument: str = Field(description="The argument naming the resource, e.g. order_id.")
    context: str = Field(
        description="The key of the caller-supplied context listing what the subject owns, "
        "e.g. customer_orders."
    )


class SequenceRule(Strict):
    after: list[str] = Field(min_length=1, description="Tools that, once called, restrict this.")
    argument: str = Field(description="The argument holding an address, e.g. to.")
    allow_domains: list[str] = Field(
        min_length=1, description="After those tools, only these domains are allowed."
    )
    over: Verdict3 = Verdict3.DENY


class ToolPolicySettings(Strict):
    """What the model may do with one tool on its own, what needs a person, what never."""

    tool: str = Field(min_length=1)
    arguments: dict[str, ArgumentSpec] = Field(default_factory=dict)
    caps: list[AmountCap] = Field(default_factory=list)
    rates: list[RateCap] = Field(default_factory=list)
    ownership: Ownership | None = None
    sequences: list[SequenceRule] = Field(default_factory=list)
    review: bool = Field(False, description="Always send this tool to a human.")
    reversible: bool = False


class ApprovalSettings(Strict):
    """A human checkpoint: who may approve, and what happens when nobody does in time."""

    reviewers: list[str] = Field(min_length=1, description="Roles that may approve.")
    deadline: Duration = "4h"
    on_timeout: Literal["deny"] = Field("deny", description="Only deny: silence is not consent.")
    notify_webhook: str | None = Field(None, pattern=r"^https?://")
    webhook_secret_env: str | None = None


class EvalThresholds(Strict):
    attack_block_rate_min: float = Field(0.95, ge=0, le=1)
    false_refusal_rate_max: float = Field(0.02, ge=0, le=1)
    max_regression_points: float = Field(1.0, ge=0)


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
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable holding the HMAC key that signs alerts.",
    )
    webhook_format: Literal["charter", "slack"] = Field(
        "charter", description="charter (the alert as JSON) or slack (a Slack-compatible text)."
    )


class AuditSettings(Strict):
    """What the audit trail may keep of the content, and for how long."""

    content: Literal["none", "hashed", "redacted"] = "hashed"
    retention: Duration = "400d"


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


Control = Annotated[
    GuardControl
    | BudgetControl
    | RateLimitControl
    | RouteControl
    | ToolPolicyControl
    | ApprovalControl
    | EvalGateControl
    | MonitorControl
    | AuditControl,
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
)


# --- principals and providers ------------------------------------------------------------------


class KeyRef(Strict):
    """A virtual key, never in plain text: the name of an environment variable or a SHA-256."""

    id: Id
    env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$")
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
    api_key_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$")
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
