"""Management commands on the catalog: databases, tables, schemas, ingestion mappings, failures.

Supported (any case; `T` may be bracketed as `['T']` or `["T"]`):
`.create database D [ifnotexists]`, `.show databases`,
`.create table T (a:string, b:long, ...)`, `.create-merge table T (...)`, `.drop table T [ifexists]`,
`.show tables`, `.show table T schema as json`,
`.create[-or-alter] table T ingestion <kind> mapping "name" '<json>'`, `.show table T ingestion <kind> mappings`,
`.show ingestion failures`, `.show version`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import duckdb

from .errors import BadRequest, EntityAlreadyExists, IngestionError, SyntaxError_
from .kusto_types import DOTNET_TYPES, canonical_kusto_type
from .mappings import MAPPING_KINDS, canonical_mapping, parse_mapping
from .mgmt_request import MgmtHandler, MgmtRequest, command
from .mgmt_syntax import NAME, STRING, STRINGS, entity, string_literal, string_value
from .names import validate_entity_name
from .responses import V1Table


def _schema_table(request: MgmtRequest, database: str, table: str) -> V1Table:
    columns = request.state.catalog.table_columns(database, table)
    schema = {
        "Name": table,
        "OrderedColumns": [{"Name": name, "Type": f"System.{DOTNET_TYPES[kind]}", "CslType": kind} for name, kind in columns],
    }
    return V1Table(
        "Table_0",
        [
            ("TableName", "string"),
            ("Schema", "string"),
            ("DatabaseName", "string"),
            ("Folder", "string"),
            ("DocString", "string"),
        ],
        [[table, json.dumps(schema), database, "", ""]],
    )


def _parse_columns(text: str) -> list[tuple[str, str]]:
    columns = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        match = re.fullmatch(rf"({NAME})\s*:\s*([A-Za-z0-9]+)", part)
        if match is None:
            raise SyntaxError_(f"column definition '{part}' is not 'name:type'")
        columns.append((entity(match.group(1)), canonical_kusto_type(match.group(2))))
    if not columns:
        raise SyntaxError_("a table needs at least one column")
    return columns


def create_database(request: MgmtRequest, match: re.Match[str]) -> Sequence[V1Table]:
    name = entity(match.group("name"))
    created = request.state.catalog.ensure_database(name)
    if not created and not match.group("ifnotexists"):
        raise EntityAlreadyExists(f"database '{name}' already exists")
    return [_databases_table([name])]


def _databases_table(names: list[str]) -> V1Table:
    return V1Table(
        "Table_0",
        [
            ("DatabaseName", "string"),
            ("PersistentStorage", "string"),
            ("Version", "string"),
            ("IsCurrent", "bool"),
            ("PrettyName", "string"),
        ],
        [[name, "duckdb", "v1.0", False, name] for name in names],
    )


def show_databases(request: MgmtRequest, match: re.Match[str]) -> Sequence[V1Table]:
    return [_databases_table(request.state.catalog.list_databases())]


def create_table(request: MgmtRequest, match: re.Match[str]) -> Sequence[V1Table]:
    database = request.context_database()
    table = validate_entity_name("table", entity(match.group("table")))
    merge = match.group("verb").lower() == ".create-merge"
    request.state.catalog.create_table(database, table, _parse_columns(match.group("columns")), merge=merge)
    return [_schema_table(request, database, table)]


def drop_table(request: MgmtRequest, match: re.Match[str]) -> Sequence[V1Table]:
    database = request.context_database()
    request.state.catalog.drop_table(database, entity(match.group("table")), if_exists=bool(match.group("ifexists")))
    return [_tables_table(request, database)]


def _tables_table(request: MgmtRequest, database: str) -> V1Table:
    return V1Table(
        "Table_0",
        [("TableName", "string"), ("DatabaseName", "string"), ("Folder", "string"), ("DocString", "string")],
        [[name, database, "", ""] for name in request.state.catalog.list_tables(database)],
    )


def show_tables(request: MgmtRequest, match: re.Match[str]) -> Sequence[V1Table]:
    return [_tables_table(request, request.context_database())]


def show_table_schema(request: MgmtRequest, match: re.Match[str]) -> Sequence[V1Table]:
    return [_schema_table(request, request.context_database(), entity(match.group("table")))]


_MAPPING_COLUMNS = [
    ("Name", "string"),
    ("Kind", "string"),
    ("Mapping", "string"),
    ("LastUpdatedOn", "datetime"),
    ("Database", "string"),
    ("Table", "string"),
]


def create_mapping(request: MgmtRequest, match: re.Match[str]) -> Sequence[V1Table]:
    database = request.context_database()
    table = entity(match.group("table"))
    kind = match.group("kind").lower()
    if kind not in MAPPING_KINDS:
        raise SyntaxError_(f"unknown mapping kind '{kind}': use one of {', '.join(MAPPING_KINDS)}")
    name = string_literal(match.group("name"))
    columns = request.state.catalog.table_columns(database, table)
    try:
        text = canonical_mapping(string_value(match.group("mapping")))
        elements = parse_mapping(text, kind)
    except IngestionError as error:
        raise BadRequest(f"mapping '{name}': {error.details}", code=error.code) from None
    known = {column for column, _ in columns}
    unknown = [element.column for element in elements if element.column not in known]
    if unknown:
        raise BadRequest(
            f"mapping '{name}' names columns that table '{table}' does not have: {unknown}", code="BadRequest_InconsistentMapping"
        )
    if match.group("verb").lower() == ".create":
        existing = [m for m in request.state.catalog.list_mappings(database, table) if m.name == name and m.kind.lower() == kind]
        if existing and canonical_mapping(existing[0].mapping) != text:
            raise EntityAlreadyExists(f"{kind} mapping '{name}' already exists on table '{table}': use .create-or-alter")
    stored = request.state.catalog.put_mapping(database, table, kind, name, text)
    return [
        V1Table(
            "Table_0",
            _MAPPING_COLUMNS,
            [[stored.name, stored.kind.capitalize(), stored.mapping, stored.last_updated, database, table]],
        )
    ]


def show_mappings(request: MgmtRequest, match: re.Match[str]) -> Sequence[V1Table]:
    database = request.context_database()
    table = entity(match.group("table"))
    request.state.catalog.require_table(database, table)
    kind = match.group("kind").lower()
    rows = [
        [m.name, m.kind.capitalize(), m.mapping, m.last_updated, database, table]
        for m in request.state.catalog.list_mappings(database, table)
        if m.kind.lower() == kind
    ]
    return [V1Table("Table_0", _MAPPING_COLUMNS, rows)]


# Kusto's documented columns of `.show ingestion failures`, in its order; IngestionSourceId is the emulator's addition
# (last, so clients reading the documented columns by position are not thrown off).
_FAILURE_COLUMNS = [
    ("OperationId", "string"),
    ("Database", "string"),
    ("Table", "string"),
    ("FailedOn", "datetime"),
    ("IngestionSourcePath", "string"),
    ("Details", "string"),
    ("FailureKind", "string"),
    ("RootActivityId", "string"),
    ("OperationKind", "string"),
    ("OriginatesFromUpdatePolicy", "bool"),
    ("ErrorCode", "string"),
    ("Principal", "string"),
    ("User", "string"),
    ("IngestionProperties", "string"),
    ("NumberOfSources", "int"),
    ("ShouldRetry", "bool"),
    ("IngestionSourceId", "string"),
]


def show_failures(request: MgmtRequest, match: re.Match[str]) -> Sequence[V1Table]:
    """One row per failed source. The emulator has no principals or activity ids to report: those columns are empty."""
    rows = []
    for operation_id, database, table, failed_on, path, source_id, code, kind, details in request.state.catalog.list_failures(
        request.database
    ):
        known = {
            "OperationId": operation_id,
            "Database": database,
            "Table": table,
            "FailedOn": failed_on,
            "IngestionSourcePath": path,
            "Details": details,
            "FailureKind": kind,
            "OperationKind": "DataIngestPull",
            "OriginatesFromUpdatePolicy": False,
            "ErrorCode": code,
            "NumberOfSources": 1,
            "ShouldRetry": kind == "Transient",
            "IngestionSourceId": source_id,
        }
        rows.append([known.get(name, "") for name, _ in _FAILURE_COLUMNS])
    return [V1Table("Table_0", _FAILURE_COLUMNS, rows)]


# The emulator has no release number; a four-part version, as Kusto's builds have, keeps clients that parse it working.
_BUILD_VERSION = "1.0.0.0"


def show_version(request: MgmtRequest, match: re.Match[str]) -> Sequence[V1Table]:
    """`.show version`. The emulator is both services at one URL; it says DataManagement because the clients look at
    ServiceType only when a queued ingestion fails, to tell the user they may have the engine's URL instead."""
    columns = [
        ("BuildVersion", "string"),
        ("BuildTime", "datetime"),
        ("ServiceType", "string"),
        ("ProductVersion", "string"),
        ("ServiceOffering", "string"),
    ]
    return [
        V1Table(
            "Table_0", columns, [[_BUILD_VERSION, None, "DataManagement", f"kusto-emulator on DuckDB {duckdb.__version__}", ""]]
        )
    ]


COMMANDS: list[tuple[re.Pattern[str], MgmtHandler]] = [
    (
        command(
            rf"\.create\s+database\s+(?P<name>{NAME})(?:\s+persist\s*\(.*?\)|\s+volatile)?(?:\s+(?P<ifnotexists>ifnotexists))?\s*"
        ),
        create_database,
    ),
    (command(r"\.show\s+databases\s*"), show_databases),
    (
        command(
            rf"(?P<verb>\.create|\.create-merge)\s+table\s+(?P<table>{NAME})\s*\((?P<columns>[^()]*)\)(?:\s+with\s*\(.*\))?\s*"
        ),
        create_table,
    ),
    (command(rf"\.drop\s+table\s+(?P<table>{NAME})(?:\s+(?P<ifexists>ifexists))?\s*"), drop_table),
    (command(r"\.show\s+tables\s*"), show_tables),
    (command(rf"\.show\s+table\s+(?P<table>{NAME})\s+schema\s+as\s+json\s*"), show_table_schema),
    (
        command(
            rf"(?P<verb>\.create|\.create-or-alter)\s+table\s+(?P<table>{NAME})\s+ingestion\s+(?P<kind>[A-Za-z0-9]+)\s+mapping\s+"
            rf"(?P<name>{STRING})\s+(?P<mapping>{STRINGS})\s*"
        ),
        create_mapping,
    ),
    (command(rf"\.show\s+table\s+(?P<table>{NAME})\s+ingestion\s+(?P<kind>[A-Za-z0-9]+)\s+mappings\s*"), show_mappings),
    (command(r"\.show\s+ingestion\s+failures\s*"), show_failures),
    (command(r"\.show\s+version\s*"), show_version),
]
