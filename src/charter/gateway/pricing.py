"""What a request can cost at worst, and what it did cost.

Prices are USD per million tokens, so cost in micro-dollars is simply ``tokens x price``. The worst
case bounds the input by its UTF-8 byte count (a byte-level BPE token is at least one byte) plus
framing per message, and the output by ``max_tokens`` clamped to the model's maximum; the gateway
sends that clamped ``max_tokens`` upstream so the bound holds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from charter.document.model import ModelSpec
from charter.providers.types import ChatRequest, Usage

FRAMING_TOKENS_PER_MESSAGE = 8


@dataclass(frozen=True, slots=True)
class WorstCase:
    input_tokens: int
    output_tokens: int
    cost_micro_usd: int

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def output_cap(req: ChatRequest, spec: ModelSpec) -> int:
    """The max_tokens to send upstream: the caller's, never above the model's maximum."""
    asked = req.max_tokens
    return spec.max_output_tokens if asked is None else min(asked, spec.max_output_tokens)


def input_upper_bound(req: ChatRequest) -> int:
    total = 0
    for message in req.messages:
        total += len(message.text.encode()) + FRAMING_TOKENS_PER_MESSAGE
        for call in message.tool_calls:
            total += len(call.name.encode()) + len(call.arguments.encode())
    if req.tools:
        total += len(json.dumps([t.to_openai() for t in req.tools]).encode())
    return total


def worst_case(req: ChatRequest, spec: ModelSpec) -> WorstCase:
    """The most this request can cost, reserved against budgets before the upstream call."""
    inputs = input_upper_bound(req)
    outputs = output_cap(req, spec)
    return WorstCase(inputs, outputs, cost_micro_usd(spec, Usage(inputs, outputs)))


def cost_micro_usd(spec: ModelSpec, usage: Usage) -> int:
    """The cost of ``usage`` at the model's price, in micro-dollars, rounded up."""
    price = spec.price
    return math.ceil(
        usage.input_tokens * price.input_per_mtok + usage.output_tokens * price.output_per_mtok
    )
