"""YAML parsing that remembers where every key and value came from.

PyYAML's composer gives each node a start mark; we build plain Python data from the node tree and
keep, for every path (``("controls", 2, "settings", "threshold")``), the position of its key and its
value, so any later finding can name the exact line and column.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]

try:  # the C parser is several times faster; fall back quietly when libyaml is absent
    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[attr-defined,assignment,unused-ignore]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Base = yaml.SafeLoader


class _Loader(_Base):  # type: ignore[valid-type,misc,unused-ignore]
    """Booleans the YAML 1.2 way: only true/false. YAML 1.1 also reads yes/no/on/off as
    booleans, which turns `mode: off` into False and country code NO into False."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


@dataclass(frozen=True, slots=True)
class Position:
    """A 1-based line and column."""

    line: int
    column: int


class SourceError(Exception):
    """The text is not YAML we can read: carries the position and a readable message."""

    def __init__(self, message: str, position: Position, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.hint = hint


@dataclass
class Source:
    """The parsed document and where each part of it was written."""

    data: Any
    keys: dict[Path, Position] = field(default_factory=dict)
    values: dict[Path, Position] = field(default_factory=dict)
    duplicates: list[tuple[Path, Position]] = field(default_factory=list)

    def position(self, path: Path, *, prefer_key: bool = False) -> Position:
        """The position of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            table = (self.keys, self.values) if prefer_key else (self.values, self.keys)
            for positions in table:
                if prefix in positions:
                    return positions[prefix]
        return Position(1, 1)


def _position(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def parse(text: str) -> Source:
    """Parse one YAML document into data with positions; raise ``SourceError`` if it is not."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Position(mark.line + 1, mark.column + 1) if mark else Position(1, 1)
        problem = exc.problem or "invalid YAML"
        context = f" {exc.context}" if exc.context else ""
        raise SourceError(
            f"YAML syntax error: {problem}{context}",
            where,
            "check indentation, quoting, and that each `key: value` has a space after the colon",
        ) from None
    except yaml.YAMLError as exc:
        raise SourceError(f"YAML error: {exc}", Position(1, 1)) from None
    source = Source(data=None)
    if node is None:
        source.data = None
        return source
    source.values[()] = _position(node)
    source.data = _build(node, (), source)
    return source


def _build(node: yaml.Node, path: Path, source: Source) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SourceError(
                    "a mapping key must be a plain name, not a list or mapping",
                    _position(key_node),
                )
            key = str(key_node.value)
            child = (*path, key)
            if key in out:
                source.duplicates.append((child, _position(key_node)))
                continue
            source.keys[child] = _position(key_node)
            source.values[child] = _position(value_node)
            out[key] = _build(value_node, child, source)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            source.values[child] = _position(item)
            items.append(_build(item, child, source))
        return items
    assert isinstance(node, yaml.ScalarNode)
    return _scalar(node)


_constructor = yaml.SafeLoader("")


def _scalar(node: yaml.ScalarNode) -> Any:
    try:
        value = _constructor.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise SourceError(f"cannot read value: {exc}", _position(node)) from None
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value
