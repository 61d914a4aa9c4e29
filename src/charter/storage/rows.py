"""Row mapping shared by both backends for the actions table, so they cannot drift apart."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from charter.storage.base import ActionChange, ActionRow

T = TypeVar("T")


def action_from_row(
    row: tuple[Any, ...],
    when: Callable[[Any], datetime],
    maybe: Callable[[Any], datetime | None],
) -> ActionRow:
    """An ``ActionRow`` from the columns in the order both backends select them."""
    (
        action_id,
        approval_id,
        tool,
        arguments_json,
        principal_id,
        subject,
        conversation_id,
        excerpt,
        status,
        claims_json,
        control_id,
        decision_ids_json,
        reason,
        approval_control_id,
        reviewer_roles_json,
        created,
        hold_until,
        deadline,
        reviewer,
        review_reason,
        reviewed,
        executed,
        outcome_json,
        settled,
        updated,
        content_key,
    ) = row
    return ActionRow(
        id=action_id,
        tool=tool,
        arguments_json=arguments_json,
        principal_id=principal_id,
        status=status,
        created_at=when(created),
        hold_until=when(hold_until),
        updated_at=when(updated),
        subject=subject,
        conversation_id=conversation_id,
        excerpt=excerpt,
        claims_json=claims_json,
        approval_id=approval_id,
        control_id=control_id,
        decision_ids_json=decision_ids_json,
        reason=reason,
        approval_control_id=approval_control_id,
        reviewer_roles_json=reviewer_roles_json,
        deadline=maybe(deadline),
        reviewer=reviewer,
        review_reason=review_reason,
        reviewed_at=maybe(reviewed),
        executed_at=maybe(executed),
        outcome_json=outcome_json,
        settled_at=maybe(settled),
        content_key=content_key,
    )


def action_sets(
    change: ActionChange, at: T, mark: str, convert: Callable[[datetime | None], Any]
) -> tuple[str, list[Any]]:
    """The ``SET`` clause of a transition and its parameters; ``mark`` is the placeholder.

    Only the fields a change sets appear, so a field left None keeps its stored value.
    """
    suffix = "_us" if mark == "?" else "_at"
    hold = "hold_until_us" if mark == "?" else "hold_until"
    sets = [f"status = {mark}", f"updated{suffix} = {mark}"]
    params: list[Any] = [change.status, at]
    if change.hold_until is not None:
        sets.append(f"{hold} = {mark}")
        params.append(convert(change.hold_until))
    if change.reviewer is not None:
        sets += [f"reviewer = {mark}", f"reviewed{suffix} = {mark}"]
        params += [change.reviewer, at]
    if change.review_reason is not None:
        sets.append(f"review_reason = {mark}")
        params.append(change.review_reason)
    if change.outcome_json is not None:
        sets.append(f"outcome_json = {mark}")
        params.append(change.outcome_json)
    if change.status == "executed":
        sets.append(f"executed{suffix} = {mark}")
        params.append(at)
    if change.settled:
        sets.append(f"settled{suffix} = {mark}")
        params.append(at)
    return ", ".join(sets), params
