"""Reads decompressed blob files and appends their records to a table, through DuckDB's own readers.

Two shapes of source feed one projection step:
* delimited formats (csv, tsv, tsve, psv, scsv, sohsv, and txt/raw as one-field records) become columns
  `c0..cN` of text, read by `read_csv` (fast: no row passes through Python);
* structured formats (json, multijson, singlejson, parquet, avro, orc) become one JSON column per record,
  so a mapping path (`$.a.b`) or the identity mapping (property = column name) works the same way for all.
  Parquet is read by DuckDB; avro (fastavro) and orc (pyarrow) go through an Arrow table, because DuckDB
  cannot read them offline.
Values that do not convert to the column type become null, as in Kusto; string columns get '' for null.
"""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import duckdb
import fastavro
import pyarrow as pa
import pyarrow.orc

from .errors import IngestionError
from .mappings import ColumnMapping
from .names import quote_identifier

DELIMITERS = {"csv": ",", "tsv": "\t", "tsve": "\t", "psv": "|", "scsv": ";", "sohsv": "\x01"}
LINE_FORMATS = ("txt", "raw")
JSON_FORMATS = ("json", "multijson", "singlejson")
ARROW_FORMATS = ("avro", "apacheavro", "orc")
SUPPORTED_FORMATS = frozenset({*DELIMITERS, *LINE_FORMATS, *JSON_FORMATS, *ARROW_FORMATS, "parquet"})

_SOURCE = "_emulator_source"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json_path(steps: tuple[str | int, ...]) -> str:
    parts = ["$"]
    for step in steps:
        parts.append(f"[{step}]" if isinstance(step, int) else '."' + step.replace('"', '\\"') + '"')
    return "".join(parts)


def _convert(text_sql: str, kusto_type: str) -> str:
    """SQL turning a text expression into the column's type; unconvertible values become null."""
    if kusto_type == "string":
        return f"COALESCE({text_sql}, '')"
    if kusto_type == "datetime":
        # The instant's UTC time, read as micros since the epoch: casting TIMESTAMPTZ to TIMESTAMP goes through ICU
        # per value, a fifth of the insert time of a CSV with one datetime column in six. Infinities and nulls still take it.
        instant = f"TRY_CAST({text_sql} AS TIMESTAMPTZ)"
        return (
            f"(CASE WHEN isfinite({instant}) THEN make_timestamp(epoch_us({instant})) ELSE TRY_CAST({instant} AS TIMESTAMP) END)"
        )
    if kusto_type == "dynamic":
        return f"(CASE WHEN json_valid({text_sql}) THEN CAST({text_sql} AS JSON) ELSE to_json({text_sql}) END)"
    if kusto_type == "timespan":
        # Kusto writes days as `d.hh:mm:ss`; DuckDB reads `d days hh:mm:ss`.
        return f"TRY_CAST(regexp_replace({text_sql}, '^(\\d+)\\.(\\d{{1,2}}:)', '\\1 days \\2') AS INTERVAL)"
    duck = {"long": "BIGINT", "int": "INTEGER", "real": "DOUBLE", "bool": "BOOLEAN", "guid": "UUID"}
    return f"TRY_CAST({text_sql} AS {duck.get(kusto_type, 'DECIMAL(38,18)')})"


def _json_value(steps: tuple[str | int, ...], kusto_type: str) -> str:
    path = _literal(_json_path(steps))
    if kusto_type == "dynamic":
        return f"json_extract(json, {path})"
    return _convert(f"json_extract_string(json, {path})", kusto_type)


def count_fields(path: Path, delimiter: str) -> int:
    """Fields in the first record of a delimited file (quotes respected); 0 for an empty file."""
    with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
        head = handle.read(1 << 16)
    for record in csv.reader(io.StringIO(head), delimiter=delimiter, quotechar='"'):
        return len(record)
    return 0


def _delimited_source(paths: list[Path], fmt: str, ignore_first_record: bool, field_count: int) -> tuple[str, list]:
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(field_count)) + "}"
    escape = "\\" if fmt == "tsve" else '"'
    sql = (
        f"read_csv(?, header = false, skip = {1 if ignore_first_record else 0}, columns = {columns}, auto_detect = false, "
        f"delim = {_literal(DELIMITERS[fmt])}, quote = '\"', escape = {_literal(escape)}, strict_mode = true, "
        "null_padding = false, parallel = true)"
    )
    return sql, [[str(path) for path in paths]]


def _line_table(paths: list[Path], fmt: str, ignore_first_record: bool) -> pa.Table:
    """txt: one record per line; raw: one record per file. Text is decoded as UTF-8 (bad bytes replaced)."""
    records: list[str] = []
    for path in paths:
        text = path.read_bytes().decode("utf-8", errors="replace")
        lines = [text] if fmt == "raw" else text.splitlines()
        records.extend(lines[1:] if ignore_first_record and fmt == "txt" else lines)
    return pa.table({"c0": pa.array(records, pa.string())})


def _arrow_table(paths: list[Path], fmt: str) -> pa.Table:
    tables = []
    for path in paths:
        if fmt == "orc":
            tables.append(pyarrow.orc.read_table(str(path)))
        else:
            with path.open("rb") as handle:
                tables.append(pa.Table.from_pylist(list(fastavro.reader(handle))))
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


def _json_source(paths: list[Path], fmt: str) -> tuple[str, list]:
    files = [str(path) for path in paths]
    if fmt == "json":
        return "(SELECT json FROM read_json_objects(?, format = 'newline_delimited'))", [files]
    # multijson / singlejson: any layout of top-level values; a top-level array contributes its elements.
    return (
        "(SELECT unnest(CASE WHEN json_type(json) = 'ARRAY' THEN json_extract(json, '$[*]') ELSE [json] END) AS json "
        "FROM read_json_objects(?, format = 'unstructured'))",
        [files],
    )


def _delimited_select(
    cursor: duckdb.DuckDBPyConnection,
    types: dict[str, str],
    fmt: str,
    paths: list[Path],
    mapping: list[ColumnMapping],
    ignore_first_record: bool,
) -> tuple[list[str], str, list]:
    """(expressions, source, parameters) for csv-family, txt and raw files: fields c0..cN by ordinal."""
    parameters: list = []
    if fmt in LINE_FORMATS:
        cursor.register(_SOURCE, _line_table(paths, fmt, ignore_first_record))
        source, field_count = _SOURCE, 1
    else:
        field_count = max(count_fields(path, DELIMITERS[fmt]) for path in paths)
        if field_count == 0:
            raise IngestionError("Stream_NoDataToIngest", "the blob holds no records")
        source, parameters = _delimited_source(paths, fmt, ignore_first_record, field_count)
    expressions = []
    for element in mapping:
        if element.const_value is not None:
            text = _literal(element.const_value)
        elif element.ordinal is not None and element.ordinal < field_count:
            text = f"c{element.ordinal}"
        else:
            text = "NULL"
        expressions.append(_convert(text, types[element.column]))
    return expressions, source, parameters


def _structured_select(
    cursor: duckdb.DuckDBPyConnection, types: dict[str, str], fmt: str, paths: list[Path], mapping: list[ColumnMapping]
) -> tuple[list[str], str, list]:
    """(expressions, source, parameters) for json-family, parquet, avro and orc: one JSON value per record."""
    parameters: list = []
    if fmt == "parquet":
        source = "(SELECT to_json(s) AS json FROM read_parquet(?) s)"
        parameters = [[str(path) for path in paths]]
    elif fmt in ARROW_FORMATS:
        try:
            arrow_table = _arrow_table(paths, fmt)
        except (ValueError, OSError, EOFError, pa.ArrowException) as error:
            raise IngestionError(
                "BadRequest_NoRecordsOrWrongFormat", f"the blob is not valid {fmt}: {type(error).__name__}: {error}"
            ) from None
        cursor.register(_SOURCE, arrow_table)
        source = f"(SELECT to_json(s) AS json FROM {_SOURCE} s)"  # noqa: S608 - constant name
    else:
        source, parameters = _json_source(paths, fmt)
    expressions = [
        _convert(_literal(element.const_value), types[element.column])
        if element.const_value is not None
        else _json_value(element.path or (), types[element.column])
        for element in mapping
    ]
    return expressions, source, parameters


def append_records(
    cursor: duckdb.DuckDBPyConnection,
    target: str,
    columns: list[tuple[str, str]],
    fmt: str,
    paths: list[Path],
    mapping: list[ColumnMapping],
    ignore_first_record: bool,
) -> int:
    """Append the records of `paths` to `target` (quoted SQL name) as `mapping` says; returns the row count.

    Runs inside the caller's transaction. Parse errors become Kusto ingestion errors.
    """
    types = dict(columns)
    try:
        if fmt in DELIMITERS or fmt in LINE_FORMATS:
            expressions, source, parameters = _delimited_select(cursor, types, fmt, paths, mapping, ignore_first_record)
        else:
            expressions, source, parameters = _structured_select(cursor, types, fmt, paths, mapping)
        targets = ", ".join(quote_identifier(element.column) for element in mapping)
        # Identifiers are quoted and literals escaped above; file names travel as parameters.
        sql = f"INSERT INTO {target} ({targets}) SELECT {', '.join(expressions)} FROM {source}"  # noqa: S608
        (rows,) = cursor.execute(sql, parameters).fetchone()
    except (duckdb.InvalidInputException, duckdb.IOException) as error:
        raise _parse_error(fmt, str(error)) from None
    finally:
        if fmt in LINE_FORMATS or fmt in ARROW_FORMATS:
            with contextlib.suppress(duckdb.Error):
                cursor.unregister(_SOURCE)
    return int(rows)


def _parse_error(fmt: str, message: str) -> IngestionError:
    first_line = message.splitlines()[0] if message else "unreadable data"
    if fmt in DELIMITERS:
        if "Expected Number of Columns" in message:
            detail = next((line for line in message.splitlines() if line.startswith("Expected Number")), first_line)
            return IngestionError("Stream_WrongNumberOfFields", f"records have different numbers of fields ({detail})")
        if "unterminated quote" in message:
            return IngestionError("Stream_ClosingQuoteMissing", "a quoted field is not closed")
    return IngestionError("BadRequest_NoRecordsOrWrongFormat", f"the blob is not valid {fmt}: {first_line}")
