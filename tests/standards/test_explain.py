"""`charter explain --principal X --model Y` shows exactly what a request carries."""

from __future__ import annotations

import pytest

from charter.document.model import Charter
from charter.errors import InvalidRequest
from charter.policy.runtime import principal_chain
from charter.providers.types import ChatRequest, Message
from charter.standards import Standards, with_instructions
from charter.standards.explain import BEGIN, END, explain_standards
from tests.standards.conftest import EXAMPLE_DIR


def shown(output: str) -> str:
    """The text between the markers, exactly as printed."""
    start = output.index(BEGIN + "\n") + len(BEGIN) + 1
    end = output.rindex("\n" + END)
    return output[start:end]


@pytest.mark.parametrize(
    ("principal", "model", "caller"),
    [
        ("support-bot", "sim-small", ""),
        ("support-bot", "sim-large", "You answer questions about orders.\n\nBe brief."),
        ("ravi", "sim-small", "Internal tool."),
        ("marketing-writer", "sim-small", "Write product copy."),
        ("alice", "sim-small", ""),
    ],
)
def test_explain_shows_exactly_what_the_request_carries(
    example: Charter, principal: str, model: str, caller: str
) -> None:
    printed: list[str] = []
    explain_standards(
        example,
        principal,
        model,
        base_dir=EXAMPLE_DIR,
        caller_system=caller,
        echo=printed.append,
    )
    (output,) = printed
    # What the gateway sends upstream for the same caller, model and system prompt.
    request = ChatRequest(
        model=model,
        messages=(
            *([Message(role="system", content=caller)] if caller else []),
            Message(role="user", content="hello"),
        ),
    )
    gateway = Standards(example, EXAMPLE_DIR)
    chain = principal_chain(example, principal)
    upstream = with_instructions(request, gateway.compose(chain, model, request.system_prompt))
    assert shown(output) == upstream.system_prompt


def test_explain_lists_the_precedence(example: Charter) -> None:
    printed: list[str] = []
    explain_standards(
        example, "support-bot", "sim-small", base_dir=EXAMPLE_DIR, echo=printed.append
    )
    summary = printed[0].split(BEGIN)[0]
    lines = [line.strip() for line in summary.splitlines() if line.startswith("  ")]
    assert lines == [
        "1. house-style (mandatory; organization; decisions: answer-quality)",
        "2. refund-disclosure (mandatory; team support; decisions: refund-disclosure)",
        "3. human-handoff (mandatory; team support; decisions: answer-quality)",
        "4. the caller's own system prompt (none given)",
        "5. support-tone (default; team support; decisions: answer-quality)",
    ]


def test_explain_refuses_unknown_principals_and_models(example: Charter) -> None:
    with pytest.raises(InvalidRequest, match="not a principal") as caught:
        explain_standards(example, "suport-bot", "sim-small", base_dir=EXAMPLE_DIR)
    assert caught.value.hint is not None and "support-bot" in caught.value.hint
    with pytest.raises(InvalidRequest, match="not a model"):
        explain_standards(example, "support-bot", "gpt-9", base_dir=EXAMPLE_DIR)
