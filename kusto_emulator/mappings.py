"""Ingestion mappings: parsing, checking against the table, and the identity mapping used when none is given.

Kusto accepts two spellings of a mapping element: the current one,
`{"column": "a", "datatype": "long", "Properties": {"Ordinal": "0"}}`, and the older flat one,
`{"Name": "a", "DataType": "long", "Ordinal": 0}` / `{"column": "a", "path": "$.a"}`. Both are read here.
Kusto also reads mapping JSON leniently: a comma before the closing `]` or `}` is allowed (what a mapping
written one element per line, each ending in `,`, leaves behind), so the emulator allows it too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import IngestionError

FORMAT_MAPPING_KIND = {
    "csv": "csv",
    "tsv": "csv",
    "tsve": "csv",
    "psv": "csv",
    "scsv": "csv",
    "sohsv": "csv",
    "txt": "csv",
    "raw": "csv",
    "json": "json",
    "multijson": "json",
    "singlejson": "json",
    "avro": "avro",
    "apacheavro": "apacheavro",
    "parquet": "parquet",
    "orc": "orc",
    "w3clogfile": "w3clogfile",
    "sstream": "sstream",
}
MAPPING_KINDS = ("csv", "json", "avro", "apacheavro", "parquet", "orc", "w3clogfile", "sstream")

_CLOSING_NEXT = re.compile(r"\s*[\]}]")
# A JSON path Kusto mappings use: `$`, then `.name`, `['name']` or `[index]` steps.
_PATH_STEP = re.compile(r"""\.([A-Za-z_][A-Za-z0-9_\-]*)|\[\s*'((?:[^'\\]|\\.)*)'\s*\]|\[\s*"((?:[^"\\]|\\.)*)"\s*\]|\[(\d+)\]""")


@dataclass(frozen=True)
class ColumnMapping:
    """Where one table column comes from: a field ordinal, a JSON path, or a constant."""

    column: str
    ordinal: int | None = None
    path: tuple[str | int, ...] | None = None
    const_value: str | None = None


def _invalid(message: str) -> IngestionError:
    return IngestionError("BadRequest_InvalidMapping", message)


def parse_path(text: str) -> tuple[str | int, ...]:
    """`$.a['b c'][0]` -> ("a", "b c", 0); raises BadRequest_InvalidMapping on anything else."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise _invalid(f"path {text!r} must start with '$'")
    steps: list[str | int] = []
    position = 1
    while position < len(text):
        match = _PATH_STEP.match(text, position)
        if match is None:
            raise _invalid(f"path {text!r} cannot be parsed at position {position}")
        dotted, single, double, index = match.groups()
        if index is not None:
            steps.append(int(index))
        else:
            steps.append(dotted if dotted is not None else (single if single is not None else double))
        position = match.end()
    return tuple(steps)


def _element(item: Any, index: int, kind: str) -> ColumnMapping:
    if not isinstance(item, dict):
        raise _invalid(f"mapping element {index} is not an object")
    lowered = {key.lower(): value for key, value in item.items()}
    column = lowered.get("column", lowered.get("name"))
    if not isinstance(column, str) or not column:
        raise _invalid(f"mapping element {index} has no 'column'")
    properties = lowered.get("properties") or {}
    if isinstance(properties, str):
        try:
            properties = json.loads(properties)
        except ValueError:
            raise _invalid(f"mapping element {index} ('{column}'): Properties is not valid JSON") from None
    if not isinstance(properties, dict):
        raise _invalid(f"mapping element {index} ('{column}'): Properties must be an object")
    props = {key.lower(): value for key, value in properties.items()}
    for key in ("ordinal", "path", "constvalue", "field"):
        if key not in props and key in lowered:
            props[key] = lowered[key]
    if "constvalue" in props:
        return ColumnMapping(column, const_value=str(props["constvalue"]))
    if kind == "csv":
        if "ordinal" not in props:
            raise _invalid(f"csv mapping element {index} ('{column}') needs an Ordinal or a ConstValue")
        try:
            ordinal = int(props["ordinal"])
        except (TypeError, ValueError):
            raise _invalid(f"csv mapping element {index} ('{column}'): Ordinal {props['ordinal']!r} is not an integer") from None
        if ordinal < 0:
            raise _invalid(f"csv mapping element {index} ('{column}'): Ordinal must not be negative")
        return ColumnMapping(column, ordinal=ordinal)
    if "path" in props:
        return ColumnMapping(column, path=parse_path(props["path"]))
    if "field" in props and isinstance(props["field"], str):
        return ColumnMapping(column, path=(props["field"],))
    raise _invalid(f"{kind} mapping element {index} ('{column}') needs a Path, a Field or a ConstValue")


def _without_trailing_commas(text: str) -> str:
    """`text` without the commas (outside JSON strings) that only whitespace separates from a closing bracket."""
    kept: list[str] = []
    in_string = escaped = False
    for position, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "," and _CLOSING_NEXT.match(text, position + 1):
            continue
        kept.append(char)
    return "".join(kept)


def mapping_json(text: str) -> Any:
    """The JSON value of a mapping as Kusto reads it (trailing commas allowed); BadRequest_InvalidMapping if unreadable."""
    if not isinstance(text, str):
        raise _invalid("the mapping must be JSON text")
    try:
        return json.loads(_without_trailing_commas(text))
    except ValueError as error:
        raise _invalid(f"the mapping is not valid JSON: {error}") from None


def canonical_mapping(text: str) -> str:
    """The mapping as stored and shown by `.show ... mappings`: plain JSON, whatever leniency it was written with."""
    return json.dumps(mapping_json(text))


def parse_mapping(text: str, kind: str) -> list[ColumnMapping]:
    """The elements of a mapping given as JSON text; BadRequest_InvalidMapping naming the problem."""
    value = mapping_json(text)
    if not isinstance(value, list) or not value:
        raise _invalid("the mapping must be a non-empty JSON array of column mappings")
    elements = [_element(item, index, kind) for index, item in enumerate(value)]
    seen: set[str] = set()
    for element in elements:
        if element.column in seen:
            raise _invalid(f"column '{element.column}' is mapped twice")
        seen.add(element.column)
    return elements


def check_against_table(mapping: list[ColumnMapping], columns: list[tuple[str, str]], table: str) -> None:
    names = {name for name, _ in columns}
    unknown = [element.column for element in mapping if element.column not in names]
    if unknown:
        raise IngestionError(
            "BadRequest_InconsistentMapping", f"the mapping names columns that table '{table}' does not have: {unknown}"
        )


def identity_mapping(columns: list[tuple[str, str]], kind: str) -> list[ColumnMapping]:
    """The mapping used when none is given: csv by position, everything else by property name."""
    if kind == "csv":
        return [ColumnMapping(name, ordinal=index) for index, (name, _) in enumerate(columns)]
    return [ColumnMapping(name, path=(name,)) for name, _ in columns]
