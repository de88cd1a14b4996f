"""KQL translation and result conversion (`kusto_emulator.kql`) on an in-memory DuckDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import duckdb
import pytest

from kusto_emulator.errors import SyntaxError_
from kusto_emulator.kql import SemanticError, UnsupportedQuery, format_timespan, run_query

ALL_TYPES = "x BIGINT, y VARCHAR, ts TIMESTAMP, d DOUBLE, b BOOLEAN, j JSON, i INTEGER, g UUID, m DECIMAL(38,18), sp INTERVAL"


@pytest.fixture
def cursor() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute("CREATE SCHEMA db1")
    connection.execute(f"CREATE TABLE db1.T ({ALL_TYPES})")
    connection.execute(
        "INSERT INTO db1.T VALUES "
        "(1, 'a', '2024-01-01 00:00:00', 1.5, true, '{\"k\": [1, 2]}', 7, '00000000-0000-0000-0000-000000000001', 1.25, "
        "INTERVAL 90 MINUTE), "
        "(2, 'b', '2024-01-02 03:04:05.123456', 'nan', false, '[1]', 8, NULL, NULL, INTERVAL '1 day 2 hours'), "
        "(3, 'a', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    )
    yield connection.cursor()
    connection.close()


def test_count_take_project_order_and_summarize(cursor: duckdb.DuckDBPyConnection) -> None:
    assert run_query(cursor, "T | count", "db1").rows == [[3]]
    taken = run_query(cursor, "T | order by x asc | take 2 | project x, y", "db1")
    assert taken.columns == [("x", "long"), ("y", "string")]
    assert taken.rows == [[1, "a"], [2, "b"]]
    assert run_query(cursor, "T | order by x desc | project x", "db1").rows == [[3], [2], [1]]
    summary = run_query(cursor, "T | where x > 1 | summarize count() by y | order by y asc", "db1")
    assert summary.columns == [("y", "string"), ("count_", "long")]
    assert summary.rows == [["a", 1], ["b", 1]]


def test_every_kusto_type_comes_back_with_its_name_and_wire_value(cursor: duckdb.DuckDBPyConnection) -> None:
    result = run_query(cursor, "T | order by x asc", "db1")
    assert [kind for _, kind in result.columns] == [
        "long", "string", "datetime", "real", "bool", "dynamic", "int", "guid", "decimal", "timespan"
    ]  # fmt: skip
    first, second, third = result.rows
    assert first == [1, "a", "2024-01-01T00:00:00.000000Z", 1.5, True, {"k": [1, 2]}, 7,
                     "00000000-0000-0000-0000-000000000001", "1.250000000000000000", "01:30:00"]  # fmt: skip
    assert second[2] == "2024-01-02T03:04:05.123456Z"
    assert second[3] == "NaN"  # bare NaN is not JSON; Kusto writes it as a string
    assert second[5] == [1]
    assert second[9] == "1.02:00:00"
    assert third[2:] == [None] * 8


def test_computed_columns_get_kusto_types(cursor: duckdb.DuckDBPyConnection) -> None:
    result = run_query(cursor, "print n = 1, r = 2.5, s = 'x', t = 1d + 2h, when = datetime(2024-05-06)", "db1")
    assert result.columns == [("n", "long"), ("r", "real"), ("s", "string"), ("t", "timespan"), ("when", "datetime")]
    assert result.rows == [[1, 2.5, "x", "1.02:00:00", "2024-05-06T00:00:00.000000Z"]]


def test_declared_query_parameters_take_the_request_values_as_text(cursor: duckdb.DuckDBPyConnection) -> None:
    query = "declare query_parameters(low:long); T | where x > low | project x"
    assert run_query(cursor, query, "db1", {"low": "1", "unused": "z"}).rows == [[2], [3]]


@pytest.mark.parametrize(
    ("query", "error", "fragment"),
    [
        ("T | make-series count() on ts step 1d", UnsupportedQuery, "MakeSeriesOperator"),
        ("T | where", SyntaxError_, "Syntax error"),
        ("Missing | count", SemanticError, "Missing"),
        ("T | where nosuch > 1", SemanticError, "nosuch"),
        (".show tables", Exception, "/v1/rest/mgmt"),
        ("   ", Exception, "empty"),
    ],
)
def test_refusals_name_what_is_wrong(cursor: duckdb.DuckDBPyConnection, query: str, error: type, fragment: str) -> None:
    with pytest.raises(error) as raised:
        run_query(cursor, query, "db1")
    assert fragment in raised.value.message
    assert raised.value.http_status == 400


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "00:00:00"),
        (timedelta(hours=1, minutes=2, seconds=3), "01:02:03"),
        (timedelta(days=3, microseconds=5), "3.00:00:00.0000050"),
        (-timedelta(minutes=1, milliseconds=500), "-00:01:00.5000000"),
    ],
)
def test_timespan_text(value: timedelta, text: str) -> None:
    assert format_timespan(value) == text
