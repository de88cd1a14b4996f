"""KQL queries against the emulator's DuckDB tables, translated to SQL by duckdb-kql.

duckdb-kql refuses what it cannot translate instead of guessing, so every refusal becomes a Kusto-style
400 that names the construct. Results come back as Kusto column types and JSON values the way Kusto
serialises them (datetimes as ISO strings with `Z`, timespans as `[-][d.]hh:mm:ss[.fffffff]`, dynamic
values as JSON, guids and decimals as strings), so the official clients convert them as they would a
real cluster's answer.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import duckdb
import duckdb_kql

from .errors import BadRequest, SyntaxError_
from .kusto_types import kusto_type_of
from .names import quote_identifier

# Kusto truncates query results at 500,000 records unless told otherwise; the emulator refuses instead,
# so a test never reads a silently shortened answer.
MAX_RESULT_ROWS = 500_000


class UnsupportedQuery(BadRequest):
    """The query is valid KQL, but the emulator (duckdb-kql) does not translate one of its constructs."""

    code = "BadRequest_NotSupported"
    kusto_type = "Kusto.Data.Exceptions.KustoNotSupportedException"


class SemanticError(BadRequest):
    """The query names a table, column or function that does not exist, or mixes types."""

    code = "General_BadRequest"
    kusto_type = "Kusto.Data.Exceptions.SemanticException"


@dataclass(frozen=True)
class QueryResult:
    """A query's answer: columns as (name, Kusto type), rows of JSON-ready values."""

    columns: list[tuple[str, str]]
    rows: list[list[Any]]


def translate(csl: str, database: str, parameters: dict[str, Any] | None = None) -> duckdb_kql.TranslationResult:
    """The DuckDB SQL for a KQL query over `database`; writes are refused (queries only read)."""
    if not isinstance(csl, str) or not csl.strip():
        raise BadRequest("the query text (csl) is empty", code="BadRequest_SyntaxError")
    if csl.lstrip().startswith("."):
        raise BadRequest(
            f"'{csl.split(maxsplit=1)[0]}' is a management command: send it to /v1/rest/mgmt, not to a query endpoint",
            code="BadRequest_NotSupported",
        )
    try:
        return duckdb_kql.to_sql(
            csl, database=database, parameters=_declared_parameters(csl, parameters or {}), allow_write=False
        )
    except duckdb_kql.KqlSyntaxError as error:
        raise SyntaxError_(f"Syntax error: {error}") from None
    except duckdb_kql.KqlUnsupportedError as error:
        raise UnsupportedQuery(f"the emulator does not support this query: {error}") from None
    except duckdb_kql.KqlError as error:
        raise SemanticError(f"Semantic error: {error}") from None


def _declared_parameters(csl: str, given: dict[str, Any]) -> dict[str, Any] | None:
    """The request's parameters that the query declares, as values of the declared types.

    Clients send every parameter of a request (as text, the way Kusto takes them); duckdb-kql wants only
    the declared ones, typed.
    """
    if not given:
        return None
    values: dict[str, Any] = {}
    for declaration in duckdb_kql.query_parameters(csl):
        if declaration.name in given:
            values[declaration.name] = _typed_parameter(declaration.name, declaration.type, given[declaration.name])
    return values or None


def _typed_parameter(name: str, kusto_type: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if kusto_type in ("long", "int"):
            return int(value)
        if kusto_type == "real":
            return float(value)
    except ValueError:
        raise BadRequest(f"query parameter '{name}' is declared {kusto_type}, but its value {value!r} is not one") from None
    if kusto_type == "bool" and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def run_query(
    cursor: duckdb.DuckDBPyConnection, csl: str, database: str, parameters: dict[str, Any] | None = None
) -> QueryResult:
    """Translate and run `csl` on `cursor` (a cursor of the catalog's connection), in UTC."""
    sql = translate(csl, database, parameters)
    bound = list(sql.parameters) if isinstance(sql.parameters, list | tuple) else sql.parameters or None
    try:
        relation = cursor.sql(sql, params=bound)
        names = list(relation.columns)
        duck_types = [str(kind) for kind in relation.types]
        projection = ", ".join(
            _select_expression(quote_identifier(name), kind) for name, kind in zip(names, duck_types, strict=True)
        )
        # The outer projection turns types Python cannot fetch without pytz (or JSON cannot carry) into text.
        cursor.execute(f"SELECT {projection} FROM ({sql}) AS _query", bound)  # noqa: S608 - quoted names, translated SQL
        fetched = cursor.fetchmany(MAX_RESULT_ROWS + 1)
    except duckdb.CatalogException as error:
        raise SemanticError(f"Semantic error: {_first_line(error)}") from None
    except duckdb.BinderException as error:
        raise SemanticError(f"Semantic error: {_first_line(error)}") from None
    except duckdb.Error as error:
        raise BadRequest(f"query failed: {_first_line(error)}", code="General_BadRequest") from None
    if len(fetched) > MAX_RESULT_ROWS:
        raise BadRequest(
            f"the query returned more than {MAX_RESULT_ROWS} records (E_QUERY_RESULT_SET_TOO_LARGE): add a take or summarize",
            code="General_BadRequest",
        )
    kusto_types = [_kusto_type(kind) for kind in duck_types]
    converters = [_CONVERTERS.get(kind, _plain) for kind in kusto_types]
    rows = [[convert(value) for convert, value in zip(converters, row, strict=True)] for row in fetched]
    return QueryResult(list(zip(names, kusto_types, strict=True)), rows)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _kusto_type(duck_type: str) -> str:
    """The Kusto type of any DuckDB result type, including those no stored column has (HUGEINT, STRUCT...)."""
    upper = duck_type.upper()
    if upper in ("TINYINT", "SMALLINT", "UTINYINT", "USMALLINT"):
        return "int"
    if upper in ("HUGEINT", "UBIGINT", "UINTEGER", "UHUGEINT"):
        return "long"
    if upper == "FLOAT":
        return "real"
    if upper.startswith(("TIMESTAMP", "DATE")):
        return "datetime"
    if upper.startswith(("TIME", "INTERVAL")):
        return "timespan"
    if upper.startswith(("STRUCT", "MAP", "UNION")) or upper.endswith("]"):
        return "dynamic"
    return kusto_type_of(upper)


def _select_expression(column: str, duck_type: str) -> str:
    """SQL that yields `column` in a form Python fetches without extra modules and JSON can carry."""
    upper = duck_type.upper()
    if upper.startswith("TIMESTAMP WITH TIME ZONE"):
        return f"strftime({column} AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') AS {column}"
    if upper.startswith(("TIMESTAMP", "DATE")):
        return f"strftime(CAST({column} AS TIMESTAMP), '%Y-%m-%dT%H:%M:%S.%fZ') AS {column}"
    if upper.startswith("TIME"):
        return f"CAST({column} AS INTERVAL) AS {column}"
    if upper.startswith(("STRUCT", "MAP", "UNION")) or upper.endswith("]"):
        return f"CAST(to_json({column}) AS VARCHAR) AS {column}"
    if upper == "BLOB":
        return f"base64({column}) AS {column}"
    if upper.startswith("ENUM") or upper in ("BIT", "VARINT", "BIGNUM"):
        return f"CAST({column} AS VARCHAR) AS {column}"
    return column


def _plain(value: Any) -> Any:
    return value


def _real(value: Any) -> Any:
    """Kusto writes NaN and infinities as strings; bare NaN is not JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _dynamic(value: Any) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _guid(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


def _decimal(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def format_timespan(value: Any) -> Any:
    """A timedelta as Kusto's timespan text, `[-][d.]hh:mm:ss[.fffffff]`."""
    if not isinstance(value, timedelta):
        return value
    ticks = (value.days * 86_400 + value.seconds) * 10_000_000 + value.microseconds * 10
    sign = "-" if ticks < 0 else ""
    ticks = abs(ticks)
    days, rest = divmod(ticks, 86_400 * 10_000_000)
    hours, rest = divmod(rest, 3_600 * 10_000_000)
    minutes, rest = divmod(rest, 60 * 10_000_000)
    seconds, fraction = divmod(rest, 10_000_000)
    text = f"{sign}{f'{days}.' if days else ''}{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{text}.{fraction:07d}" if fraction else text


_CONVERTERS = {
    "real": _real,
    "dynamic": _dynamic,
    "guid": _guid,
    "decimal": _decimal,
    "timespan": format_timespan,
}
