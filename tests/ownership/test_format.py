"""The ownership settings at load time: exactly one source, safe URLs, queries that only read."""

from __future__ import annotations

import pytest

from charter.document.loader import load_charter_text
from charter.document.sqlquery import QueryError, to_pyformat, validate_query
from tests.ownership.conftest import charter_with

GOOD_QUERY = "SELECT 1 FROM orders WHERE customer_id = :subject AND id = :resource"


def errors_of(ownership: str) -> str:
    text = f"""\
format: 1
organization: N
decisions:
  - {{id: d, statement: s, owner: o, risk: low, review_by: 2030-01-01, enforced_by: [p]}}
controls:
  - id: p
    kind: tool_policy
    serves: [d]
    settings:
      tool: issue_refund
      ownership: {ownership}
"""
    loaded = load_charter_text(text)
    assert not loaded.ok, "the charter was accepted"
    return "\n".join(f.message for f in loaded.errors)


def test_context_still_works_alone() -> None:
    charter = charter_with("{argument: order_id, context: customer_orders}")
    owned = charter.controls[0].settings.ownership  # type: ignore[union-attr]
    assert owned is not None and owned.context == "customer_orders" and owned.lookup is None


@pytest.mark.parametrize(
    "ownership, said",
    [
        ("{argument: order_id}", "got none"),
        (
            "{argument: order_id, context: c, http: {url: 'http://x/{subject}/{resource}'}}",
            "got context and http",
        ),
    ],
)
def test_exactly_one_source_and_the_message_says_what_to_write(ownership: str, said: str) -> None:
    message = errors_of(ownership)
    assert "exactly one of context, http or sql" in message and said in message
    assert "SELECT 1 FROM orders WHERE customer_id = :subject" in message  # what to write


@pytest.mark.parametrize(
    "http, said",
    [
        ("{url: 'http://crm/{subject}/{who}'}", "only {subject} and {resource}"),
        ("{url: 'http://{resource}.crm/x/{subject}'}", "placeholder in its host"),
        ("{url: 'http://crm/owners/{subject}'}", "must carry {resource}"),
        ("{url: 'ftp://crm/{subject}/{resource}'}", "should match pattern"),
        (
            "{url: 'http://crm/{subject}/{resource}', headers_env: {Authorization: 'Bearer x'}}",
            "must name an environment variable",
        ),
        ("{url: 'http://crm/{subject}/{resource}', not_owned_status: [200]}", "3xx-5xx"),
        ("{url: 'http://crm/{subject}/{resource}', method: PUT}", "'GET' or 'POST'"),
    ],
)
def test_http_settings_are_checked(http: str, said: str) -> None:
    assert said in errors_of(f"{{argument: order_id, http: {http}}}")


def test_post_needs_no_placeholders_and_defaults_are_as_documented() -> None:
    charter = charter_with("{argument: order_id, http: {url: 'https://crm/owns', method: POST}}")
    owned = charter.controls[0].settings.ownership  # type: ignore[union-attr]
    assert owned is not None and owned.http is not None
    http = owned.http
    assert (http.owned_field, http.not_owned_status, http.timeout_s) == ("owned", [404], 2.0)
    assert (http.cache_ttl_s, http.max_concurrency, owned.on_error) == (30.0, 8, "deny")


def test_on_error_is_for_lookups_only() -> None:
    message = errors_of("{argument: order_id, context: c, on_error: allow}")
    assert "on_error applies to http and sql lookups" in message
    assert "'deny', 'review' or 'allow'" in errors_of(
        "{argument: order_id, sql: {dsn_env: DB, query: '" + GOOD_QUERY + "'}, on_error: maybe}"
    )


@pytest.mark.parametrize(
    "query, said",
    [
        ("UPDATE orders SET customer_id = :subject WHERE id = :resource", "single SELECT"),
        (GOOD_QUERY + "; DELETE FROM orders", "';'"),
        (GOOD_QUERY + " FOR UPDATE", "uses UPDATE"),
        ("SELECT 1 FROM orders WHERE id = :resource", "does not use :subject"),
        ("SELECT 1 FROM orders WHERE customer_id = :subject", "does not use :resource"),
        (GOOD_QUERY + " AND region = :region", "uses :region"),
        (
            "SELECT EXISTS(SELECT 1 FROM orders WHERE customer_id = :subject AND id = :resource)",
            "returns a row whether or not",
        ),
        (
            "SELECT count(*) FROM orders WHERE customer_id = :subject AND id = :resource",
            "returns a row whether or not",
        ),
        (GOOD_QUERY + " -- owner check", "comment"),
        (
            "SELECT 1 INTO stash FROM orders WHERE customer_id = :subject AND id = :resource",
            "uses INTO",
        ),
        (
            "SELECT pg_sleep(10) FROM orders WHERE customer_id = :subject AND id = :resource",
            "uses PG_SLEEP",
        ),
        (
            "SELECT 1 FROM orders WHERE customer_id = ? AND id = :resource AND :subject = :subject",
            "not ?, $1 or %s",
        ),
        ("   ", "empty"),
    ],
)
def test_queries_that_do_more_than_read_are_refused(query: str, said: str) -> None:
    with pytest.raises(QueryError) as caught:
        validate_query(query)
    assert said in str(caught.value)


def test_a_refused_query_is_a_charter_finding() -> None:
    message = errors_of(
        "{argument: order_id, sql: {dsn_env: ORDERS_DB, "
        "query: 'UPDATE orders SET customer_id = :subject WHERE id = :resource'}}"
    )
    assert "single SELECT" in message


def test_keywords_inside_literals_do_not_count_and_psycopg_gets_its_placeholders() -> None:
    query = (
        "SELECT 1 FROM orders WHERE note <> 'update; drop' AND customer_id = :subject "
        "AND id::text = :resource AND tag LIKE '50%'"
    )
    with pytest.raises(QueryError, match="';'"):
        validate_query(query)  # no semicolon anywhere, even in a literal
    query = query.replace("; drop", " drop")
    validate_query(query)
    assert to_pyformat(query) == (
        "SELECT 1 FROM orders WHERE note <> 'update drop' AND customer_id = %(subject)s "
        "AND id::text = %(resource)s AND tag LIKE '50%%'"
    )
