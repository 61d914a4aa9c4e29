"""`charter check` for standards: what a single control's schema cannot see.

Unknown scope (principals, models, owners), precedence that contradicts itself (replacing a
mandatory standard, a team standard reaching outside its team, replacement cycles, two standards
replacing the same one for the same requests), a required element that a banned phrasing forbids,
and instruction files that are missing, empty or not the pinned content. It reads the raw parsed
data, so every problem keeps the line and column of the value at fault; the loader reports them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any

from pydantic import ValidationError

from charter.document.model import ORGANIZATION, BannedPhrasing, Fragment, RequiredElement
from charter.document.source import Path
from charter.standards.matching import (
    find_all,
    fragment_problem,
    pattern_matcher,
    phrase_matcher,
)

LEVELS = {ORGANIZATION: 0, "team": 1, "app": 2}
ALL = frozenset({"*"})


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about a standard, at ``path`` in the charter data."""

    path: Path
    code: str
    message: str
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class _Std:
    index: int
    id: str
    settings: dict[str, Any]
    owner: str
    level: int | None
    mandatory: bool
    principals: frozenset[str]  # the principals it covers ('*' = all)
    models: frozenset[str]

    @property
    def base(self) -> Path:
        return ("controls", self.index, "settings")


def check_standards(data: Any, base_dir: FilePath) -> list[Problem]:
    """Every cross-reference and precedence problem of the standards in ``data``."""
    if not isinstance(data, dict):
        return []
    principals = _principals(data)
    models = _models(data)
    standards = list(_standards(data, principals))
    if not standards:
        return []
    out: list[Problem] = []
    by_id = {s.id: s for s in standards}
    kinds = {c.get("id"): c.get("kind") for _, c in _dicts(data.get("controls")) if "id" in c}
    for std in standards:
        out += _check_owner(std, principals)
        out += _check_scope(std, principals, models)
        out += _check_files(std, base_dir)
        out += _check_replaces(std, by_id, kinds)
    out += _check_cycles(standards, by_id)
    out += _check_double_replacement(standards)
    out += _check_required_vs_banned(standards)
    return out


# --- reading the raw data ----------------------------------------------------------------------


def _dicts(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict):
                yield index, item


def _strings(value: Any) -> Iterator[tuple[int, str]]:
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                yield index, item


@dataclass(frozen=True, slots=True)
class _Principal:
    kind: str
    chain: tuple[str, ...]


def _principals(data: dict[str, Any]) -> dict[str, _Principal]:
    parents: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    for _, p in _dicts(data.get("principals")):
        if isinstance(p.get("id"), str):
            parents[p["id"]] = p.get("member_of")
            kinds[p["id"]] = str(p.get("kind"))
    out = {}
    for pid in parents:
        chain = [pid]
        while isinstance(parent := parents.get(chain[-1]), str) and parent not in chain:
            chain.append(parent)
        out[pid] = _Principal(kinds[pid], tuple(chain))
    return out


def _models(data: dict[str, Any]) -> set[str]:
    return {
        m["name"]
        for _, provider in _dicts(data.get("providers"))
        for _, m in _dicts(provider.get("models"))
        if isinstance(m.get("name"), str)
    }


def _standards(data: dict[str, Any], principals: dict[str, _Principal]) -> Iterator[_Std]:
    for index, control in _dicts(data.get("controls")):
        settings = control.get("settings")
        if control.get("kind") != "standard" or not isinstance(settings, dict):
            continue
        if not isinstance(control.get("id"), str):
            continue
        owner = settings.get("owner", ORGANIZATION)
        owner = owner if isinstance(owner, str) else ORGANIZATION
        level = LEVELS[ORGANIZATION] if owner == ORGANIZATION else None
        if owner in principals:
            level = LEVELS.get(principals[owner].kind)
        scope = settings.get("scope")
        scope = scope if isinstance(scope, dict) else {}
        listed = {p for _, p in _strings(scope.get("principals", ["*"]))}
        covered = _covered(listed, owner, principals)
        yield _Std(
            index,
            control["id"],
            settings,
            owner,
            level,
            settings.get("mandatory") is True,
            covered,
            frozenset(m for _, m in _strings(scope.get("models", ["*"]))),
        )


def _covered(listed: set[str], owner: str, principals: dict[str, _Principal]) -> frozenset[str]:
    """The principals a scope reaches: each listed one and its members, within the owner's."""
    if "*" in listed:
        listed = {owner} if owner != ORGANIZATION else set(ALL)
    if "*" in listed:
        return ALL
    return frozenset(
        pid
        for pid, p in principals.items()
        if any(name in p.chain for name in listed) and (owner == ORGANIZATION or owner in p.chain)
    )


def _overlap(a: _Std, b: _Std) -> bool:
    principals = (a.principals == ALL and bool(b.principals)) or (
        b.principals == ALL and bool(a.principals)
    )
    principals = principals or bool(a.principals & b.principals)
    models = "*" in a.models or "*" in b.models or bool(a.models & b.models)
    return principals and models


def _did_you_mean(value: str, known: set[str] | dict[str, Any], what: str) -> str:
    close = difflib.get_close_matches(value, list(known), n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    return f"known {what}: {', '.join(sorted(known)) or 'none'}"


# --- the checks ---------------------------------------------------------------------------------


def _check_owner(std: _Std, principals: dict[str, _Principal]) -> list[Problem]:
    if std.owner == ORGANIZATION:
        return []
    where = (*std.base, "owner")
    if std.owner not in principals:
        return [
            Problem(
                where,
                "unknown-id",
                f"standard `{std.id}` is owned by `{std.owner}`, which is not a principal",
                "use `organization`, or the id of a team or app; "
                + _did_you_mean(std.owner, principals, "principals"),
            )
        ]
    if std.level is None:
        return [
            Problem(
                where,
                "invalid-value",
                f"standard `{std.id}` is owned by user `{std.owner}`: a person's own instructions "
                "are the caller's system prompt, which every standard already ranks",
                "make the owner `organization`, a team or an app",
            )
        ]
    return []


def _check_scope(std: _Std, principals: dict[str, _Principal], models: set[str]) -> list[Problem]:
    out = []
    scope = std.settings.get("scope")
    if not isinstance(scope, dict):
        return []
    base = (*std.base, "scope")
    for i, name in _strings(scope.get("principals")):
        if name == "*":
            continue
        if name not in principals:
            out.append(
                Problem(
                    (*base, "principals", i),
                    "unknown-id",
                    f"standard `{std.id}` is scoped to `{name}`, which is not a principal",
                    _did_you_mean(name, principals, "principals"),
                )
            )
        elif std.owner != ORGANIZATION and std.owner not in principals[name].chain:
            out.append(
                Problem(
                    (*base, "principals", i),
                    "precedence-conflict",
                    f"standard `{std.id}` belongs to `{std.owner}` but is scoped to `{name}`, "
                    f"which is not part of `{std.owner}`",
                    "a team or app sets standards only for its own members; make the "
                    "organization the owner to reach others",
                )
            )
    for i, name in _strings(scope.get("models")):
        if name != "*" and name not in models:
            out.append(
                Problem(
                    (*base, "models", i),
                    "unknown-id",
                    f"standard `{std.id}` is scoped to model `{name}`, which no provider serves",
                    _did_you_mean(name, models, "models"),
                )
            )
    return out


def _check_files(std: _Std, base_dir: FilePath) -> list[Problem]:
    out = []
    for i, raw in _dicts(std.settings.get("instructions")):
        if not isinstance(raw.get("file"), str):
            continue
        try:
            fragment = Fragment.model_validate(raw)
        except ValidationError:
            continue  # the schema check reports it
        problem = fragment_problem(base_dir, fragment)
        if problem is not None:
            out.append(
                Problem(
                    (*std.base, "instructions", i, "file"),
                    "invalid-value",
                    f"standard `{std.id}`: {problem}",
                    f"paths are relative to the charter file's folder ({base_dir})",
                )
            )
    return out


def _check_replaces(std: _Std, by_id: dict[str, _Std], kinds: dict[Any, Any]) -> list[Problem]:
    out = []
    for i, target_id in _strings(std.settings.get("replaces")):
        where = (*std.base, "replaces", i)
        target = by_id.get(target_id)
        if target_id == std.id:
            out.append(
                Problem(
                    where,
                    "precedence-conflict",
                    f"standard `{std.id}` replaces itself",
                    "remove it from `replaces`",
                )
            )
        elif target is None:
            what = f"a {kinds[target_id]} control" if target_id in kinds else "not a control"
            out.append(
                Problem(
                    where,
                    "unknown-id",
                    f"standard `{std.id}` replaces `{target_id}`, which is {what}, not a standard",
                    _did_you_mean(target_id, by_id, "standards"),
                )
            )
        elif target.mandatory:
            out.append(
                Problem(
                    where,
                    "precedence-conflict",
                    f"standard `{std.id}` replaces `{target_id}`, which is mandatory: a "
                    "mandatory standard cannot be replaced",
                    f"drop `{target_id}` from `replaces`, or make `{target_id}` not mandatory "
                    "(its owner decides)",
                )
            )
        elif std.level is not None and target.level is not None and target.level > std.level:
            out.append(
                Problem(
                    where,
                    "precedence-conflict",
                    f"standard `{std.id}` ({_level_name(std.level)}) replaces `{target_id}` "
                    f"({_level_name(target.level)}): a broader standard cannot replace a "
                    "narrower one",
                    f"narrow or remove `{target_id}` instead, or let `{target_id}` replace "
                    f"`{std.id}`",
                )
            )
        elif std.level is not None and target.level is not None and not _overlap(std, target):
            out.append(
                Problem(
                    where,
                    "precedence-conflict",
                    f"standard `{std.id}` replaces `{target_id}`, but no request is in the scope "
                    "of both, so the replacement never happens",
                    "fix the scope of one of them, or drop the replacement",
                )
            )
    return out


def _level_name(level: int) -> str:
    return {0: "organization", 1: "team", 2: "app"}[level]


def _check_cycles(standards: list[_Std], by_id: dict[str, _Std]) -> list[Problem]:
    out = []
    edges = {
        s.id: [t for _, t in _strings(s.settings.get("replaces")) if t in by_id and t != s.id]
        for s in standards
    }
    for std in standards:
        for i, target in _strings(std.settings.get("replaces")):
            if target != std.id and _reaches(edges, target, std.id):
                out.append(
                    Problem(
                        (*std.base, "replaces", i),
                        "precedence-conflict",
                        f"standards `{std.id}` and `{target}` replace each other (directly or "
                        "through others), so neither order of precedence holds",
                        "keep the replacement in one direction only",
                    )
                )
    return out


def _reaches(edges: dict[str, list[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo += edges.get(node, [])
    return False


def _check_double_replacement(standards: list[_Std]) -> list[Problem]:
    out = []
    first: dict[str, list[_Std]] = {}
    for std in standards:
        for i, target in _strings(std.settings.get("replaces")):
            for other in first.get(target, []):
                if std.level is not None and other.level is not None and _overlap(std, other):
                    out.append(
                        Problem(
                            (*std.base, "replaces", i),
                            "precedence-conflict",
                            f"standards `{other.id}` and `{std.id}` both replace `{target}` for "
                            "some of the same requests, so which one applies is ambiguous",
                            "merge them, or narrow their scopes so they do not overlap",
                        )
                    )
            first.setdefault(target, []).append(std)
    return out


def _check_required_vs_banned(standards: list[_Std]) -> list[Problem]:
    """A repair must never append something another standard in scope forbids."""
    banned: list[tuple[_Std, BannedPhrasing]] = []
    for std in standards:
        for _, raw in _dicts(std.settings.get("banned")):
            try:
                banned.append((std, BannedPhrasing.model_validate(raw)))
            except ValidationError:
                continue
    out = []
    for std in standards:
        for i, raw in _dicts(std.settings.get("required")):
            try:
                element = RequiredElement.model_validate(raw)
            except ValidationError:
                continue
            for owner, phrasing in banned:
                matchers = (phrase_matcher(phrasing.phrases), pattern_matcher(phrasing.pattern))
                if (owner is std or _overlap(std, owner)) and find_all(matchers, element.text):
                    out.append(
                        Problem(
                            (*std.base, "required", i, "text"),
                            "standards-conflict",
                            f"required element `{element.id}` of standard `{std.id}` contains "
                            f"a phrasing that `{phrasing.id}` of standard `{owner.id}` bans",
                            "reword the element or the banned phrasing",
                        )
                    )
    return out
