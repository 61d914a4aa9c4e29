"""The SQL of an ownership lookup, checked when the charter is loaded.

An ownership query is one ``SELECT`` with the named parameters ``:subject`` and ``:resource`` that
returns a row when the subject owns the resource and no row when it does not. This module refuses
anything else before a connection is ever opened: several statements, comments, writes and other
statements with side effects, queries that always return exactly one row (``SELECT EXISTS(...)``,
``SELECT count(*) ...``), and missing or unknown parameters. The connection is read-only as well
(``charter.ownership``); this check is what makes a bad query an error at ``charter check``
rather than a denial on every call.
"""

from __future__ import annotations

import re

PARAMETERS = ("subject", "resource")

# Masks string literals and quoted identifiers, so a keyword inside 'text' is not a keyword.
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Statements, clauses and functions that write, lock, or reach outside the query.
_FORBIDDEN = frozenset(
    {
        "insert",
        "update",
        "delete",
        "merge",
        "upsert",
        "create",
        "drop",
        "alter",
        "truncate",
        "grant",
        "revoke",
        "attach",
        "detach",
        "pragma",
        "vacuum",
        "reindex",
        "copy",
        "execute",
        "into",
        "lock",
        "set_config",
        "pg_sleep",
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "lo_import",
        "lo_export",
        "dblink",
        "load_extension",
        "nextval",
        "setval",
    }
)
# An aggregate (or EXISTS) as the whole select list answers one row whatever the data says.
_ALWAYS_ONE_ROW = re.compile(
    r"^\s*select\s+(?:distinct\s+)?(?:not\s+)?(exists|count|sum|max|min|avg|total|bool_or|"
    r"bool_and|every|group_concat|string_agg|array_agg)\s*\(",
    re.IGNORECASE,
)
_EXAMPLE = "SELECT 1 FROM orders WHERE customer_id = :subject AND id = :resource"


class QueryError(ValueError):
    """An ownership query Charter will not run; the message says what to write instead."""


def validate_query(query: str) -> None:
    """Raise ``QueryError`` unless ``query`` is one SELECT that uses exactly ``:subject`` and
    ``:resource`` and can return no row."""
    text = query.strip()
    if not text:
        raise QueryError(f"the query is empty; write e.g. {_EXAMPLE}")
    if ";" in text:
        raise QueryError(
            "the query contains ';': write a single SELECT statement with no semicolon"
        )
    masked = _QUOTED.sub("''", text)
    if masked.count("'") % 2 or masked.count('"') % 2:
        raise QueryError("the query has an unterminated quote")
    if "--" in masked or "/*" in masked:
        raise QueryError("the query contains a comment (-- or /*); remove it")
    words = [w.lower() for w in _WORD.findall(_PARAM.sub(" ", masked))]
    if not words or words[0] != "select":
        raise QueryError(
            f"the query must be a single SELECT (it starts with {text.split()[0]!r}); "
            f"write e.g. {_EXAMPLE}"
        )
    forbidden = sorted({w for w in words if w in _FORBIDDEN})
    if forbidden:
        raise QueryError(
            f"the query uses {', '.join(w.upper() for w in forbidden)}: an ownership lookup only "
            "reads (one SELECT, no writes, locks or side effects)"
        )
    if _ALWAYS_ONE_ROW.match(masked):
        raise QueryError(
            "the query selects an aggregate or EXISTS, so it returns a row whether or not the "
            f"resource is owned; return a row only when owned, e.g. {_EXAMPLE}"
        )
    names = set(_PARAM.findall(masked))
    unknown = sorted(names - set(PARAMETERS))
    if unknown:
        raise QueryError(
            f"the query uses :{', :'.join(unknown)}; only :subject and :resource are bound"
        )
    missing = [p for p in PARAMETERS if p not in names]
    if missing:
        raise QueryError(
            f"the query does not use :{' or :'.join(missing)}; an ownership query must "
            f"depend on both, e.g. {_EXAMPLE}"
        )
    if re.search(r"\?|\$[0-9]|%s|%\(", masked):
        raise QueryError("use the named parameters :subject and :resource, not ?, $1 or %s")


def to_pyformat(query: str) -> str:
    """``query`` with ``:subject`` / ``:resource`` as ``%(subject)s`` / ``%(resource)s`` and every
    other ``%`` doubled, as psycopg expects; literals and quoted names are left as written."""
    out: list[str] = []
    last = 0
    for quoted in _QUOTED.finditer(query):
        out.append(_pyformat_code(query[last : quoted.start()]))
        out.append(quoted.group(0).replace("%", "%%"))
        last = quoted.end()
    out.append(_pyformat_code(query[last:]))
    return "".join(out)


def _pyformat_code(code: str) -> str:
    return _PARAM.sub(lambda m: f"%({m.group(1)})s", code.replace("%", "%%"))
