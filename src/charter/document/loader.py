"""Load a charter file: parse, validate, cross-check, and report every finding with its position.

``load_charter`` never raises on a bad file; it returns a ``LoadedCharter`` whose ``findings`` list
every problem (``charter check`` prints them). ``LoadedCharter.require()`` is what servers call: it
returns the validated ``Charter`` or raises ``CharterInvalid`` with all the findings.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path as FilePath
from typing import Any

from pydantic import ValidationError

from charter.document.findings import Finding, Severity, sort_findings
from charter.document.model import CONTROL_KINDS, Charter
from charter.document.source import Path, Source, SourceError, parse
from charter.document.version import charter_version
from charter.errors import CharterInvalid

MAX_BYTES = 5_000_000


@dataclass
class LoadedCharter:
    """A charter file after loading: the model if it validated, and every finding either way.

    ``charter`` is set whenever the file matches the format, even if cross-checks found errors (an
    uncovered decision, say), so `charter explain` can still draw the map; ``require()`` is what
    anything that enforces the charter calls.
    """

    file: str
    charter: Charter | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return self.charter is not None and not self.errors

    @property
    def version(self) -> str:
        """The charter version hash (see ``charter.document.version``)."""
        return charter_version(self.require())

    def require(self) -> Charter:
        """The validated charter, or ``CharterInvalid`` listing every error."""
        if self.charter is None or self.errors:
            raise CharterInvalid(self.findings, path=self.file)
        return self.charter


def load_charter(path: str | FilePath, *, today: dt.date | None = None) -> LoadedCharter:
    """Read and check the charter file at ``path``; never raises on bad content."""
    name = str(path)
    try:
        raw = FilePath(path).read_bytes()
    except OSError as exc:
        return _fatal(name, "unreadable", f"cannot read the file: {exc.strerror}", "check the path")
    if len(raw) > MAX_BYTES:
        return _fatal(name, "too-large", f"the file is over {MAX_BYTES} bytes", "split it")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _fatal(name, "encoding", f"not UTF-8 (byte {exc.start})", "save the file as UTF-8")
    return load_charter_text(text, file=name, today=today)


def load_charter_text(
    text: str, *, file: str = "<charter>", today: dt.date | None = None
) -> LoadedCharter:
    """Like ``load_charter`` for text already in memory."""
    try:
        source = parse(text)
    except SourceError as exc:
        finding = Finding(
            "error",
            "yaml-syntax",
            exc.message,
            file,
            exc.position.line,
            exc.position.column,
            hint=exc.hint,
        )
        return LoadedCharter(file, None, [finding])
    report = _Reporter(file, source)
    if not isinstance(source.data, dict):
        report.error(
            (),
            "not-a-mapping",
            "a charter must be a YAML mapping with `format`, "
            "`organization`, `decisions` and `controls`",
            "start from `charter init` or examples/support-desk/charter.yaml",
        )
        return LoadedCharter(file, None, report.findings)
    for path, position in source.duplicates:
        report.findings.append(
            Finding(
                "error",
                "duplicate-key",
                f"key `{path[-1]}` appears twice in the same mapping",
                file,
                position.line,
                position.column,
                _dotted(path),
                "keep one of them",
            )
        )
    charter: Charter | None = None
    try:
        charter = Charter.model_validate(source.data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            _report_validation_error(report, source.data, error)
    _cross_check(report, source.data, today or dt.date.today())
    _check_standards(report, source.data, FilePath(file).parent)
    _check_topics(report, source.data)
    if charter is not None:
        _check_implemented(report, charter)
    return LoadedCharter(file, charter, sort_findings(report.findings))


def _fatal(file: str, code: str, message: str, hint: str) -> LoadedCharter:
    return LoadedCharter(file, None, [Finding("error", code, message, file, 1, 1, hint=hint)])


class _Reporter:
    def __init__(self, file: str, source: Source) -> None:
        self.file = file
        self.source = source
        self.findings: list[Finding] = []

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" for f in self.findings)

    def add(
        self,
        severity: Severity,
        path: Path,
        code: str,
        message: str,
        hint: str | None = None,
        *,
        at_key: bool = False,
    ) -> None:
        pos = self.source.position(path, prefer_key=at_key)
        self.findings.append(
            Finding(severity, code, message, self.file, pos.line, pos.column, _dotted(path), hint)
        )

    def error(
        self, path: Path, code: str, message: str, hint: str | None = None, *, at_key: bool = False
    ) -> None:
        self.add("error", path, code, message, hint, at_key=at_key)

    def warning(self, path: Path, code: str, message: str, hint: str | None = None) -> None:
        self.add("warning", path, code, message, hint)


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# --- validation errors -------------------------------------------------------------------------


def _data_path(data: Any, loc: tuple[int | str, ...]) -> Path:
    """Drop the segments pydantic adds for union tags, keeping only those present in the data."""
    path: list[str | int] = []
    node = data
    for seg in loc:
        in_mapping = isinstance(node, dict) and isinstance(seg, str) and seg in node
        in_list = isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node)
        if in_mapping or in_list:
            path.append(seg)
            node = node[seg]
        # Anything else is a missing key or a union tag (which names a member the data never
        # holds): skip it, so the path stays one that exists in the file.
    return tuple(path)


def _report_validation_error(report: _Reporter, data: Any, error: Any) -> None:
    loc = tuple(error["loc"])
    kind = error["type"]
    path = _data_path(data, loc)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = allowed_keys(data, path[:-1])
        report.error(
            path, "unknown-key", f"unknown key `{key}`", _suggest(key, allowed, path), at_key=True
        )
    elif kind == "missing":
        key = str(loc[-1])
        report.error(
            path,
            "missing-key",
            f"missing required key `{key}`",
            f"add `{key}:` here" + _describe(data, (*path, key)),
        )
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        field_name = str(error.get("ctx", {}).get("discriminator", "kind")).strip("'\"")
        tag = error.get("ctx", {}).get("tag")
        choices = CONTROL_KINDS if field_name == "kind" else _union_choices(data, path, field_name)
        if kind == "union_tag_not_found":
            report.error(
                path,
                "missing-key",
                f"missing required key `{field_name}`",
                f"set `{field_name}:` to one of: {', '.join(choices)}",
            )
        else:
            close = difflib.get_close_matches(str(tag), choices, n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            report.error(
                (*path, field_name),
                "invalid-value",
                f"unknown {field_name} `{tag}`",
                f"{hint}use one of: {', '.join(choices)}",
            )
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
        got = error.get("input")
        if kind not in ("value_error", "assertion_error") and _is_scalar(got):
            message += f" (got {got!r})"
        code = "wrong-type" if kind.endswith("_type") or "parsing" in kind else "invalid-value"
        report.error(
            path,
            code,
            f"`{_dotted(path) or 'charter'}`: {message}",
            _describe(data, path).strip(" ()") or None,
        )


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) < 80


def _suggest(key: str, allowed: list[str], path: Path) -> str:
    if key in ("key", "value", "secret", "api_key", "token") and "keys" in path:
        return (
            "never write a key in plain text: use `env: VAR_NAME` (the key is read from that "
            "environment variable) or `sha256: <hex digest>` (from `charter keys hash`)"
        )
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"did you mean `{close[0]}`? " if close else ""
    return f"{hint}allowed keys here: {', '.join(allowed)}" if allowed else "remove it"


@cache
def _schema() -> dict[str, Any]:
    return Charter.model_json_schema(by_alias=True)


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = _schema()["$defs"][node["$ref"].split("/")[-1]]
    return node


def _pick(node: dict[str, Any], value: Any) -> dict[str, Any]:
    """Resolve refs and pick the member of a union that fits ``value``."""
    node = _resolve(node)
    members = node.get("oneOf") or node.get("anyOf")
    if not members:
        return node
    disc = node.get("discriminator")
    if disc and isinstance(value, dict):
        target = disc.get("mapping", {}).get(value.get(disc["propertyName"]))
        if target:
            return _resolve({"$ref": target})
    for member in members:
        member = _resolve(member)
        if member.get("type") == "object" or "properties" in member:
            if isinstance(value, dict):
                return member
        elif member.get("type") == "array" and isinstance(value, list):
            return member
    return _resolve(members[0])


def _schema_at(data: Any, path: Path) -> dict[str, Any] | None:
    node: dict[str, Any] = _schema()
    value = data
    node = _pick(node, value)
    for seg in path:
        if isinstance(seg, int):
            if "items" not in node:
                return None
            value = value[seg] if isinstance(value, list) and seg < len(value) else None
            node = _pick(node["items"], value)
        else:
            props = node.get("properties", {})
            value = value.get(seg) if isinstance(value, dict) else None
            if seg in props:
                node = _pick(props[seg], value)
            elif isinstance(node.get("additionalProperties"), dict):
                node = _pick(node["additionalProperties"], value)
            else:
                return None
    return node


def allowed_keys(data: Any, path: Path) -> list[str]:
    """The keys the format allows in the mapping at ``path`` (for "did you mean")."""
    node = _schema_at(data, path)
    return sorted(node.get("properties", {})) if node else []


def _union_choices(data: Any, path: Path, field_name: str) -> list[str]:
    parent = _schema_at(data, path[:-1]) if path else None
    if parent is None:
        return []
    seg = path[-1]
    raw = parent.get("items") if isinstance(seg, int) else parent.get("properties", {}).get(seg)
    if raw is None:
        return []
    mapping = _resolve(raw).get("discriminator", {}).get("mapping", {})
    return sorted(mapping)


def _describe(data: Any, path: Path) -> str:
    """``" (what the field is for)"`` from the schema, or nothing."""
    node = _schema_at(data, path)
    if node and node.get("description"):
        text = str(node["description"]).rstrip(".")
        return f" ({text[0].lower()}{text[1:]})"
    return ""


# --- cross-reference checks --------------------------------------------------------------------


def _items(data: dict[str, Any], section: str) -> Iterator[tuple[int, dict[str, Any]]]:
    value = data.get(section)
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict):
                yield index, item


def _ids(value: Any) -> list[tuple[int, str]]:
    return (
        [(i, v) for i, v in enumerate(value) if isinstance(v, str)]
        if isinstance(value, list)
        else []
    )


def _index_ids(report: _Reporter, data: dict[str, Any], section: str, label: str) -> dict[str, int]:
    seen: dict[str, int] = {}
    for index, item in _items(data, section):
        ident = item.get("id")
        if not isinstance(ident, str):
            continue
        if ident in seen:
            report.error(
                (section, index, "id"),
                "duplicate-id",
                f"{label} id `{ident}` is already used by {section}[{seen[ident]}]",
                "give each one its own id",
            )
        else:
            seen[ident] = index
    return seen


def _cross_check(report: _Reporter, data: dict[str, Any], today: dt.date) -> None:
    decisions = _index_ids(report, data, "decisions", "decision")
    controls = _index_ids(report, data, "controls", "control")
    principals = _index_ids(report, data, "principals", "principal")
    _index_ids(report, data, "providers", "provider")
    _check_mapping(report, data, decisions, controls)
    _check_review_dates(report, data, today)
    _check_principal_refs(report, data, principals)
    _check_model_refs(report, data)
    _check_key_ids(report, data)
    _check_control_refs(report, data, controls)


def _check_mapping(
    report: _Reporter, data: dict[str, Any], decisions: dict[str, int], controls: dict[str, int]
) -> None:
    control_items = dict(_items(data, "controls"))
    decision_items = dict(_items(data, "decisions"))
    serves = {c.get("id"): {d for _, d in _ids(c.get("serves"))} for c in control_items.values()}
    enforced = {
        d.get("id"): {c for _, c in _ids(d.get("enforced_by"))} for d in decision_items.values()
    }

    for index, decision in decision_items.items():
        did = decision.get("id")
        if not isinstance(did, str):
            continue
        refs = _ids(decision.get("enforced_by"))
        for pos, cid in refs:
            where = ("decisions", index, "enforced_by", pos)
            if cid not in controls:
                report.error(
                    where,
                    "unknown-id",
                    f"decision `{did}` is enforced by `{cid}`, which is not a control",
                    _did_you_mean(cid, controls, "controls"),
                )
            elif did not in serves.get(cid, set()):
                report.error(
                    where,
                    "mapping-mismatch",
                    f"decision `{did}` lists control `{cid}` in enforced_by, but that "
                    f"control does not list `{did}` in serves",
                    f"add `{did}` to the serves of control `{cid}`, or remove it here",
                )
        served_by = {cid for cid, ds in serves.items() if did in ds}
        if not refs and not served_by:
            report.error(
                ("decisions", index),
                "uncovered-decision",
                f"decision `{did}` has no control: a decision with no control is a slide",
                "add a control that serves it and list it in `enforced_by`",
            )
        elif refs and all(
            _mode(control_items, controls.get(c)) == "off" for _, c in refs if c in controls
        ):
            report.warning(
                ("decisions", index),
                "not-enforced",
                f"decision `{did}` is served only by controls in mode `off`, so "
                "nothing enforces it",
                "set one of its controls to enforce or shadow",
            )

    for index, control in control_items.items():
        control_id = control.get("id")
        if not isinstance(control_id, str):
            continue
        refs = _ids(control.get("serves"))
        for pos, dref in refs:
            where = ("controls", index, "serves", pos)
            if dref not in decisions:
                report.error(
                    where,
                    "unknown-id",
                    f"control `{control_id}` serves `{dref}`, which is not a decision",
                    _did_you_mean(dref, decisions, "decisions"),
                )
            elif control_id not in enforced.get(dref, set()):
                report.error(
                    where,
                    "mapping-mismatch",
                    f"control `{control_id}` serves decision `{dref}`, but that decision does not "
                    f"list `{control_id}` in enforced_by",
                    f"add `{control_id}` to the enforced_by of decision `{dref}` or remove it here",
                )
        claimed_by = {dref for dref, cs in enforced.items() if control_id in cs}
        if not refs and not claimed_by:
            report.error(
                ("controls", index),
                "orphan-control",
                f"control `{control_id}` serves no decision: a control with no decision behind "
                "it enforces an accident",
                "add the decision it serves to `serves`",
            )


def _mode(items: dict[int, dict[str, Any]], index: int | None) -> str:
    return str(items.get(index, {}).get("mode", "enforce")) if index is not None else "enforce"


def _did_you_mean(value: str, known: dict[str, int], section: str) -> str:
    close = difflib.get_close_matches(value, list(known), n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    return f"known {section}: {', '.join(sorted(known)) or 'none'}"


def _check_review_dates(report: _Reporter, data: dict[str, Any], today: dt.date) -> None:
    for index, decision in _items(data, "decisions"):
        review = decision.get("review_by")
        if isinstance(review, dt.date) and review < today:
            report.warning(
                ("decisions", index, "review_by"),
                "review-overdue",
                f"decision `{decision.get('id')}` was due for review on {review}",
                "review it with its owner and set a new review_by date",
            )


def _check_principal_refs(
    report: _Reporter, data: dict[str, Any], principals: dict[str, int]
) -> None:
    def check(path: Path, value: Any) -> None:
        if isinstance(value, str) and value != "*" and value not in principals:
            report.error(
                path,
                "unknown-id",
                f"`{value}` is not a principal",
                _did_you_mean(value, principals, "principals"),
            )

    for index, principal in _items(data, "principals"):
        check(("principals", index, "member_of"), principal.get("member_of")) if principal.get(
            "member_of"
        ) is not None else None
    for index, control in _items(data, "controls"):
        settings = control.get("settings")
        if not isinstance(settings, dict):
            continue
        base: Path = ("controls", index, "settings")
        for r, rule in _enumerate_dicts(settings.get("rules")):
            for p, ref in _ids(rule.get("principals")):
                check((*base, "rules", r, "principals", p), ref)
        for r, limit in _enumerate_dicts(settings.get("limits")):
            check((*base, "limits", r, "principal"), limit.get("principal"))
        if control.get("kind") == "monitor":
            for p, ref in _ids(settings.get("principals")):
                check((*base, "principals", p), ref)


def _enumerate_dicts(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict):
                yield index, item


def _check_model_refs(report: _Reporter, data: dict[str, Any]) -> None:
    models: dict[str, Path] = {}
    for p, provider in _items(data, "providers"):
        for m, spec in _enumerate_dicts(provider.get("models")):
            name = spec.get("name")
            if not isinstance(name, str):
                continue
            if name in models:
                report.error(
                    ("providers", p, "models", m, "name"),
                    "duplicate-id",
                    f"model `{name}` is already served by {_dotted(models[name])}",
                    "a model name must map to one provider; use `fallbacks` for a second",
                )
            else:
                models[name] = ("providers", p, "models", m)
    known = {name: 0 for name in models}

    def check(path: Path, value: Any) -> None:
        if isinstance(value, str) and value != "*" and value not in known:
            report.error(
                path,
                "unknown-id",
                f"`{value}` is not a model of any provider",
                _did_you_mean(value, known, "models"),
            )

    for name, where in models.items():
        for f, ref in _ids(_get(data, where).get("fallbacks")):
            check((*where, "fallbacks", f), ref)
            if ref == name:
                report.error(
                    (*where, "fallbacks", f),
                    "invalid-value",
                    f"model `{name}` lists itself as a fallback",
                    "remove it",
                )
    for index, control in _items(data, "controls"):
        settings = control.get("settings")
        if not isinstance(settings, dict):
            continue
        base: Path = ("controls", index, "settings")
        if control.get("kind") == "route":
            for r, rule in _enumerate_dicts(settings.get("rules")):
                for m, ref in _ids(rule.get("models")):
                    check((*base, "rules", r, "models", m), ref)
        if control.get("kind") == "rate_limit":
            for r, limit in _enumerate_dicts(settings.get("limits")):
                if limit.get("model") is not None:
                    check((*base, "limits", r, "model"), limit.get("model"))


def _get(data: Any, path: Path) -> Any:
    for seg in path:
        data = data[seg]
    return data


def _check_key_ids(report: _Reporter, data: dict[str, Any]) -> None:
    seen: dict[str, Path] = {}
    hashes: dict[str, Path] = {}
    for p, principal in _items(data, "principals"):
        for k, key in _enumerate_dicts(principal.get("keys")):
            here: Path = ("principals", p, "keys", k)
            kid, digest = key.get("id"), key.get("sha256")
            if isinstance(kid, str):
                if kid in seen:
                    report.error(
                        (*here, "id"),
                        "duplicate-id",
                        f"key id `{kid}` is already used at {_dotted(seen[kid])}",
                        "give each key its own id",
                    )
                seen.setdefault(kid, here)
            if isinstance(digest, str):
                if digest in hashes:
                    report.error(
                        (*here, "sha256"),
                        "duplicate-id",
                        "the same key is given to two "
                        f"principals (also at {_dotted(hashes[digest])})",
                        "a key identifies exactly one principal: create another key",
                    )
                hashes.setdefault(digest, here)


def _check_control_refs(report: _Reporter, data: dict[str, Any], controls: dict[str, int]) -> None:
    for index, control in _items(data, "controls"):
        settings = control.get("settings")
        if control.get("kind") == "monitor" and isinstance(settings, dict):
            ref = settings.get("control")
            if isinstance(ref, str) and ref not in controls:
                report.error(
                    ("controls", index, "settings", "control"),
                    "unknown-id",
                    f"`{ref}` is not a control",
                    _did_you_mean(ref, controls, "controls"),
                )


def _check_standards(report: _Reporter, data: dict[str, Any], base_dir: FilePath) -> None:
    """Scope, precedence and instruction files of `standard` controls (charter.standards)."""
    from charter.standards.checks import check_standards

    for problem in check_standards(data, base_dir):
        report.error(problem.path, problem.code, problem.message, problem.hint)


def _check_topics(report: _Reporter, data: dict[str, Any]) -> None:
    """Contradictions and duplicates among the phrases of topic guards (charter.guards.checks)."""
    from charter.guards.checks import check_topics

    for problem in check_topics(data):
        report.add(problem.severity, problem.path, problem.code, problem.message, problem.hint)


# --- implementation status ---------------------------------------------------------------------

Unimplemented = Callable[[Any], list[tuple[Path, str]]]


def _check_implemented(report: _Reporter, charter: Charter) -> None:
    """Settings this version validates but cannot enforce are errors, unless the control is off."""
    from charter.policy.registry import unimplemented

    index_of = {c.id: i for i, c in enumerate(charter.controls)}
    for control in charter.controls:
        for subpath, message in unimplemented(control):
            path: Path = ("controls", index_of[control.id], *subpath)
            if control.mode == "off":
                continue
            report.error(
                path,
                "not-implemented",
                f"control `{control.id}`: {message}",
                "this version validates it but cannot enforce it yet; set `mode: off` "
                "until it can, or remove it",
            )


def count_codes(findings: list[Finding]) -> Counter[str]:
    """How many findings of each code (for summaries and tests)."""
    return Counter(f.code for f in findings)
