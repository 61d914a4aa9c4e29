"""Token estimates for when an upstream reports no usage, so no call is ever costed at zero.

The estimator is deliberately simple and deterministic: one token per 4 characters of text (rounded
up), plus OpenAI's documented framing overhead of 3 tokens per message and 3 to prime the reply.
For English prose this is within about 10-20% of real BPE tokenizers; it is an estimate for
budgets, never a billing truth, and every ``Usage`` built from it is marked ``estimated=True``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from charter.providers.types import ChatRequest, EmbeddingRequest, ToolCall, Usage

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


def tokens_for_chars(chars: int) -> int:
    """Tokens in a text of ``chars`` characters: ceil(chars / 4)."""
    return (chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def estimate_tokens(text: str) -> int:
    """Tokens in ``text``: ceil(len / 4); 0 for the empty string."""
    return tokens_for_chars(len(text))


def estimate_input_tokens(req: ChatRequest) -> int:
    """Tokens the request's messages and tool definitions cost as model input."""
    total = TOKENS_PER_REPLY
    for m in req.messages:
        total += TOKENS_PER_MESSAGE + estimate_tokens(m.text)
        for call in m.tool_calls:
            total += estimate_tokens(call.name) + estimate_tokens(call.arguments)
    if req.tools:
        schemas = [t.to_openai() for t in req.tools]
        total += estimate_tokens(json.dumps(schemas, separators=(",", ":")))
    return total


def estimate_output_tokens(text: str, tool_calls: Iterable[ToolCall] = ()) -> int:
    """Tokens of an answer: its text plus the names and arguments of its tool calls."""
    total = estimate_tokens(text)
    for call in tool_calls:
        total += estimate_tokens(call.name) + estimate_tokens(call.arguments)
    return total


def estimate_usage(req: ChatRequest, text: str, tool_calls: Iterable[ToolCall] = ()) -> Usage:
    """An estimated ``Usage`` for a request and the answer it got."""
    return Usage(estimate_input_tokens(req), estimate_output_tokens(text, tool_calls), True)


def estimate_embedding_usage(req: EmbeddingRequest) -> Usage:
    """An estimated ``Usage`` for an embeddings request (input tokens only)."""
    return Usage(sum(estimate_tokens(t) for t in req.input), 0, True)
