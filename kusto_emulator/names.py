"""Kusto entity-name rules, checked before a name reaches SQL or a log line."""

from __future__ import annotations

import re

from .errors import BadRequest

# Kusto allows letters, digits, underscore, space, dot and dash, up to 1024 characters.
_ENTITY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ .\-]{0,1023}$")
RESERVED_SCHEMAS = frozenset({"_emulator", "main", "information_schema", "pg_catalog"})


def validate_entity_name(kind: str, name: str) -> str:
    """Return `name` if it is a valid Kusto name for a `kind` (database, table, column, mapping)."""
    if not isinstance(name, str) or not _ENTITY_NAME.match(name) or name != name.strip():
        raise BadRequest(
            f"{kind} name {name!r} is not valid: use 1-1024 letters, digits, '_', '.', '-' or spaces, "
            "starting with a letter, digit or '_'",
            code="BadRequest_EntityNameIsNotValid",
        )
    if kind == "database" and name.lower() in RESERVED_SCHEMAS:
        raise BadRequest(f"database name {name!r} is reserved by the emulator", code="BadRequest_EntityNameIsNotValid")
    return name


def quote_identifier(name: str) -> str:
    """A DuckDB identifier literal for `name` (double quotes, inner quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'
