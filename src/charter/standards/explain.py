"""`charter explain --principal X --model Y`: the exact instructions a request would carry.

It calls ``Standards.compose``, the same code the gateway runs on every request, and prints its
``text`` verbatim between two marker lines, after a summary of which standards applied and why.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from charter.document.model import Charter
from charter.errors import InvalidRequest
from charter.policy.runtime import principal_chain
from charter.standards.library import ComposedInstructions, Standards

BEGIN = "----- begin composed instructions -----"
END = "----- end composed instructions -----"


def explain_standards(
    charter: Charter,
    principal: str,
    model: str,
    *,
    base_dir: str | Path | None,
    caller_system: str = "",
    echo: Callable[[str], None] = print,
) -> ComposedInstructions:
    """Print (through ``echo``) what a request from ``principal`` to ``model`` carries, and
    return it. Unknown principals or models are an ``InvalidRequest`` naming the known ones."""
    principals = {p.id for p in charter.principals}
    models = {m.name for p in charter.providers for m in p.models}
    if principal not in principals:
        raise InvalidRequest(
            f"`{principal}` is not a principal of this charter",
            hint=f"known principals: {', '.join(sorted(principals)) or 'none'}",
        )
    if model not in models:
        raise InvalidRequest(
            f"`{model}` is not a model of this charter",
            hint=f"known models: {', '.join(sorted(models)) or 'none'}",
        )
    chain = principal_chain(charter, principal)
    base = Path(base_dir) if base_dir is not None else None
    composed = Standards(charter, base).compose(chain, model, caller_system)
    echo(render_explanation(composed, chain, model))
    return composed


def render_explanation(composed: ComposedInstructions, chain: tuple[str, ...], model: str) -> str:
    """The summary, then ``composed.text`` exactly, between ``BEGIN`` and ``END``."""
    lines = [
        f"principal {chain[0]}" + (f" (member of {' < '.join(chain[1:])})" if chain[1:] else ""),
        f"model {model}",
        f"charter version {composed.charter_version}",
        f"instructions digest {composed.digest}",
        "",
    ]
    if composed.applied:
        lines.append("standards applied, highest precedence first:")
        caller = "the caller's own system prompt" + (
            "" if composed.caller_system.strip() else " (none given)"
        )
        rank = 1
        for i, standard in enumerate(composed.applied):
            if i == composed.caller_at:
                lines.append(f"  {rank}. {caller}")
                rank += 1
            kind = "mandatory" if standard.mandatory else "default"
            owner = (
                "organization"
                if standard.level == "organization"
                else f"{standard.level} {standard.owner}"
            )
            decisions = ", ".join(standard.decisions) or "none"
            lines.append(f"  {rank}. {standard.id} ({kind}; {owner}; decisions: {decisions})")
            rank += 1
        if composed.caller_at == len(composed.applied):
            lines.append(f"  {rank}. {caller}")
    else:
        lines.append("no standard applies: the caller's system prompt goes upstream unchanged")
    if composed.replaced:
        lines.append("replaced by a narrower standard: " + ", ".join(composed.replaced))
    if composed.shadow:
        lines.append(
            "in shadow mode (checked and recorded, not composed): " + ", ".join(composed.shadow)
        )
    lines += ["", BEGIN, composed.text, END]
    return "\n".join(lines)
