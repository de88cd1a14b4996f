"""Kusto scalar types and the DuckDB types that store them.

The mapping is one-to-one, so the Kusto type of a column is read back from its DuckDB type and needs no
bookkeeping of its own.
"""

from __future__ import annotations

from .errors import BadRequest

# Kusto type -> DuckDB type. Aliases are folded to their canonical name first.
DUCKDB_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "long": "BIGINT",
    "int": "INTEGER",
    "real": "DOUBLE",
    "bool": "BOOLEAN",
    "datetime": "TIMESTAMP",
    "timespan": "INTERVAL",
    "guid": "UUID",
    "dynamic": "JSON",
    "decimal": "DECIMAL(38,18)",
}

ALIASES: dict[str, str] = {
    "int64": "long",
    "int32": "int",
    "double": "real",
    "float": "real",
    "boolean": "bool",
    "date": "datetime",
    "time": "timespan",
    "uniqueid": "guid",
    "uuid": "guid",
}

# DuckDB type name (as duckdb_columns() reports it) -> Kusto type.
KUSTO_TYPES: dict[str, str] = {duck: kusto for kusto, duck in DUCKDB_TYPES.items()}

# Kusto type -> the .NET type name that v1 responses put in `DataType`.
DOTNET_TYPES: dict[str, str] = {
    "string": "String",
    "long": "Int64",
    "int": "Int32",
    "real": "Double",
    "bool": "Boolean",
    "datetime": "DateTime",
    "timespan": "TimeSpan",
    "guid": "Guid",
    "dynamic": "Object",
    "decimal": "Decimal",
}


def canonical_kusto_type(name: str) -> str:
    """The canonical Kusto type for `name` (case-insensitive, aliases folded); BadRequest if unknown."""
    folded = name.strip().lower()
    folded = ALIASES.get(folded, folded)
    if folded not in DUCKDB_TYPES:
        known = ", ".join(DUCKDB_TYPES)
        raise BadRequest(f"unknown column type '{name}': use one of {known}", code="BadRequest_SyntaxError")
    return folded


def duckdb_type(kusto_type: str) -> str:
    return DUCKDB_TYPES[canonical_kusto_type(kusto_type)]


def kusto_type_of(duck_type: str) -> str:
    """The Kusto type of a DuckDB column type; DECIMAL(p,s) of any precision reads back as decimal."""
    upper = duck_type.upper()
    if upper.startswith("DECIMAL"):
        return "decimal"
    return KUSTO_TYPES.get(upper, "string")
