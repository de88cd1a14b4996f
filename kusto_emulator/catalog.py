"""The DuckDB file that holds every database, table and the emulator's own bookkeeping.

Databases are DuckDB schemas, tables are DuckDB tables, and the `_emulator` schema holds operations,
per-blob outcomes, extents (tags, creation time, source id, row count), mappings, policies and ingestion failures,
so all of it survives a restart. One DuckDB connection is opened per process; every caller takes its own
cursor (`cursor()`), which is how DuckDB is used from several threads. Kusto names are case-sensitive
while DuckDB matches identifiers case-insensitively, so lookups compare names exactly in Python and two
tables differing only in case cannot coexist (see docs/emulator.md).

Database and table names are cached in memory (every POST checks its target, and a DuckDB catalog query
costs more than the rest of the request), so all DDL must go through this class.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from .errors import BadRequest, DatabaseNotFound, EntityAlreadyExists, MappingNotFound, TableNotFound
from .kusto_types import duckdb_type, kusto_type_of
from .names import RESERVED_SCHEMAS, quote_identifier, validate_entity_name

BOOKKEEPING_DDL = (
    "CREATE SCHEMA IF NOT EXISTS _emulator",
    """CREATE TABLE IF NOT EXISTS _emulator.operations (
        operation_id VARCHAR, database VARCHAR, "table" VARCHAR, tracked BOOLEAN, start_time TIMESTAMP,
        properties VARCHAR,
        blobs STRUCT(url VARCHAR, credential VARCHAR, source_id VARCHAR, raw_size BIGINT)[])""",
    """CREATE TABLE IF NOT EXISTS _emulator.blob_outcomes (
        operation_id VARCHAR, blob_index INTEGER, status VARCHAR, row_count BIGINT, error_code VARCHAR,
        failure_status VARCHAR, details VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS _emulator.extents (
        extent_id UUID, database VARCHAR, "table" VARCHAR, created_at TIMESTAMP, creation_time TIMESTAMP,
        tags VARCHAR[], source_id VARCHAR, row_count BIGINT, operation_id VARCHAR, blob_url VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS _emulator.mappings (
        database VARCHAR, "table" VARCHAR, kind VARCHAR, name VARCHAR, mapping VARCHAR, last_updated TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS _emulator.ingestion_failures (
        operation_id VARCHAR, database VARCHAR, "table" VARCHAR, failed_on TIMESTAMP, source_path VARCHAR,
        source_id VARCHAR, error_code VARCHAR, failure_status VARCHAR, details VARCHAR)""",
    # Policies of a table, or of a database (`table` empty), as the JSON Kusto shows them; see policies.py.
    """CREATE TABLE IF NOT EXISTS _emulator.policies (database VARCHAR, "table" VARCHAR, kind VARCHAR, policy VARCHAR)""",
)


def utc_now() -> datetime:
    """Naive UTC now: DuckDB TIMESTAMP columns hold UTC without a zone."""
    return datetime.now(UTC).replace(tzinfo=None)


def insert_rows(cursor: duckdb.DuckDBPyConnection, table: str, rows: Sequence[Sequence[Any]]) -> None:
    """Insert rows (in the table's column order) with one statement.

    Not `executemany`: DuckDB runs the statement once per row, at 0.2-0.5 ms of CPU each, which was most of
    the cost of recording a batch of failed blobs. An Arrow table of the rows goes in at once.
    """
    if rows:
        insert_arrow(cursor, table, pa.table({f"c{index}": list(values) for index, values in enumerate(zip(*rows, strict=True))}))


def insert_arrow(cursor: duckdb.DuckDBPyConnection, table: str, rows: pa.Table) -> None:
    """Insert an Arrow table whose columns are in `table`'s order, with one statement."""
    cursor.register("_emulator_new_rows", rows)
    try:
        cursor.execute(f"INSERT INTO {table} SELECT * FROM _emulator_new_rows")  # noqa: S608 - a fixed table name
    finally:
        cursor.unregister("_emulator_new_rows")


@dataclass(frozen=True)
class Failure:
    """One row of `.show ingestion failures`. `source_path` must already be free of credentials."""

    operation_id: str
    database: str
    table: str
    source_path: str
    source_id: str
    error_code: str
    failure_status: str
    details: str
    failed_on: datetime = field(default_factory=utc_now)


@dataclass(frozen=True)
class Mapping:
    """A named ingestion mapping as stored by `.create table T ingestion <kind> mapping`."""

    database: str
    table: str
    kind: str
    name: str
    mapping: str
    last_updated: datetime


class Catalog:
    """Databases, tables, mappings and failures in one DuckDB file; safe to use from many threads."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._connection = duckdb.connect(str(path))
        # DDL on the DuckDB catalog from two threads at once can raise write-write conflicts: serialise it.
        self._ddl_lock = threading.RLock()
        cursor = self._connection.cursor()
        cursor.execute("SET GLOBAL TimeZone = 'UTC'")
        if threads:
            cursor.execute(f"SET GLOBAL threads = {int(threads)}")
        for statement in BOOKKEEPING_DDL:
            cursor.execute(statement)
        rows = cursor.execute(
            "SELECT s.schema_name, t.table_name FROM duckdb_schemas() s LEFT JOIN duckdb_tables() t "
            "ON t.database_name = s.database_name AND t.schema_name = s.schema_name "
            "WHERE s.database_name = current_database()"
        ).fetchall()
        cursor.close()
        self._names: dict[str, set[str]] = {}
        self._columns: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for schema, table in rows:
            if schema.lower() not in RESERVED_SCHEMAS:
                tables = self._names.setdefault(schema, set())
                if table is not None:
                    tables.add(table)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor for the calling thread (close it when done, or use it as a context manager)."""
        return self._connection.cursor()

    def close(self) -> None:
        self._connection.close()

    # --- databases -------------------------------------------------------------------------------

    def list_databases(self) -> list[str]:
        with self._ddl_lock:
            return sorted(self._names)

    def database_exists(self, database: str) -> bool:
        return database in self._names

    def ensure_database(self, database: str) -> bool:
        """Create the database unless it exists; returns True when it was created."""
        validate_entity_name("database", database)
        with self._ddl_lock:
            existing = self.list_databases()
            if database in existing:
                return False
            clash = next((name for name in existing if name.lower() == database.lower()), None)
            if clash is not None:
                raise EntityAlreadyExists(
                    f"database '{database}' differs from existing database '{clash}' only in case, which the emulator "
                    "cannot store (DuckDB schema names are case-insensitive)"
                )
            with self.cursor() as cur:
                cur.execute(f"CREATE SCHEMA {quote_identifier(database)}")
            self._names[database] = set()
        return True

    def require_database(self, database: str) -> None:
        if not self.database_exists(database):
            raise DatabaseNotFound(f"database '{database}' does not exist")

    # --- tables ----------------------------------------------------------------------------------

    def table_ref(self, database: str, table: str) -> str:
        """The quoted SQL name of a table, e.g. `"Db"."Table"`, safe to put into SQL text."""
        return f"{quote_identifier(database)}.{quote_identifier(table)}"

    def list_tables(self, database: str) -> list[str]:
        self.require_database(database)
        with self._ddl_lock:
            return sorted(self._names[database])

    def table_exists(self, database: str, table: str) -> bool:
        return table in self._names.get(database, ())

    def require_table(self, database: str, table: str) -> None:
        self.require_database(database)
        if not self.table_exists(database, table):
            raise TableNotFound(f"table '{table}' does not exist in database '{database}'")

    def table_columns(self, database: str, table: str) -> list[tuple[str, str]]:
        """(column name, Kusto type) in table order; DatabaseNotFound / TableNotFound if missing."""
        self.require_table(database, table)
        cached = self._columns.get((database, table))
        if cached is not None:
            return list(cached)
        # Under the DDL lock, so a schema change cannot slip between this read and the cache write.
        with self._ddl_lock, self.cursor() as cur:
            rows = cur.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = ? AND table_name = ? ORDER BY column_index",
                [database, table],
            ).fetchall()
            columns = [(name, kusto_type_of(duck_type)) for name, duck_type in rows]
            self._columns[(database, table)] = columns
        return list(columns)

    def create_table(self, database: str, table: str, columns: list[tuple[str, str]], *, merge: bool = False) -> None:
        """`.create table` (idempotent when the schema matches) or `.create-merge table` (adds columns)."""
        validate_entity_name("table", table)
        for name, _ in columns:
            validate_entity_name("column", name)
        if len({name for name, _ in columns}) != len(columns):
            raise BadRequest(f"table '{table}': a column name appears twice")
        with self._ddl_lock:
            self.require_database(database)
            existing_tables = self.list_tables(database)
            if table not in existing_tables:
                clash = next((name for name in existing_tables if name.lower() == table.lower()), None)
                if clash is not None:
                    raise EntityAlreadyExists(
                        f"table '{table}' differs from existing table '{clash}' only in case, which the emulator "
                        "cannot store (DuckDB table names are case-insensitive)"
                    )
                column_sql = ", ".join(f"{quote_identifier(name)} {duckdb_type(kind)}" for name, kind in columns)
                with self.cursor() as cur:
                    cur.execute(f"CREATE TABLE {self.table_ref(database, table)} ({column_sql})")
                self._names[database].add(table)
                return
            current = dict(self.table_columns(database, table))
            for name, kind in columns:
                wanted = kusto_type_of(duckdb_type(kind))
                if name in current and current[name] != wanted:
                    raise BadRequest(
                        f"column '{name}' of table '{table}' is {current[name]}, not {wanted}",
                        code="BadRequest_BadColumnType",
                    )
            missing = [(name, kind) for name, kind in columns if name not in current]
            if missing and not merge:
                raise EntityAlreadyExists(
                    f"table '{table}' already exists with a different schema: use .create-merge table to add columns"
                )
            with self.cursor() as cur:
                for name, kind in missing:
                    cur.execute(
                        f"ALTER TABLE {self.table_ref(database, table)} ADD COLUMN {quote_identifier(name)} {duckdb_type(kind)}"
                    )
            self._columns.pop((database, table), None)

    def drop_table(self, database: str, table: str, *, if_exists: bool = False) -> bool:
        with self._ddl_lock:
            if not self.table_exists(database, table):
                if if_exists:
                    return False
                self.require_table(database, table)
            with self.cursor() as cur:
                cur.execute("BEGIN")
                cur.execute(f"DROP TABLE {self.table_ref(database, table)}")
                cur.execute('DELETE FROM _emulator.extents WHERE database = ? AND "table" = ?', [database, table])
                cur.execute('DELETE FROM _emulator.mappings WHERE database = ? AND "table" = ?', [database, table])
                cur.execute('DELETE FROM _emulator.policies WHERE database = ? AND "table" = ?', [database, table])
                cur.execute("COMMIT")
            self._names[database].discard(table)
            self._columns.pop((database, table), None)
        return True

    # --- mappings --------------------------------------------------------------------------------

    def put_mapping(self, database: str, table: str, kind: str, name: str, mapping: str) -> Mapping:
        """Create or replace a named mapping (the caller has validated `mapping`)."""
        validate_entity_name("mapping", name)
        self.require_table(database, table)
        now = utc_now()
        with self._ddl_lock, self.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(
                'DELETE FROM _emulator.mappings WHERE database = ? AND "table" = ? AND lower(kind) = lower(?) AND name = ?',
                [database, table, kind, name],
            )
            cur.execute("INSERT INTO _emulator.mappings VALUES (?, ?, ?, ?, ?, ?)", [database, table, kind, name, mapping, now])
            cur.execute("COMMIT")
        return Mapping(database, table, kind, name, mapping, now)

    def get_mapping(self, database: str, table: str, name: str, kind: str | None = None) -> Mapping:
        """The named mapping of a table (of `kind` if given); MappingNotFound if there is none."""
        for mapping in self.list_mappings(database, table):
            if mapping.name == name and (kind is None or mapping.kind.lower() == kind.lower()):
                return mapping
        raise MappingNotFound(f"mapping '{name}' was not found on table '{database}.{table}'")

    def list_mappings(self, database: str, table: str | None = None) -> list[Mapping]:
        with self.cursor() as cur:
            rows = cur.execute(
                'SELECT database, "table", kind, name, mapping, last_updated FROM _emulator.mappings '
                'WHERE database = ? AND (? IS NULL OR "table" = ?) ORDER BY "table", kind, name',
                [database, table, table],
            ).fetchall()
        return [Mapping(*row) for row in rows]

    # --- failures and extents --------------------------------------------------------------------

    def record_failures(self, failures: Sequence[Failure], cursor: duckdb.DuckDBPyConnection | None = None) -> None:
        """Add rows to `.show ingestion failures`, in the caller's transaction when a cursor is given."""
        rows = [
            (
                failure.operation_id,
                failure.database,
                failure.table,
                failure.failed_on,
                failure.source_path,
                failure.source_id,
                failure.error_code,
                failure.failure_status,
                failure.details,
            )
            for failure in failures
        ]
        if cursor is not None:
            insert_rows(cursor, "_emulator.ingestion_failures", rows)
            return
        with self.cursor() as cur:
            insert_rows(cur, "_emulator.ingestion_failures", rows)

    def list_failures(self, database: str | None = None) -> list[tuple]:
        with self.cursor() as cur:
            return cur.execute(
                'SELECT operation_id, database, "table", failed_on, source_path, source_id, error_code, failure_status, '
                "details FROM _emulator.ingestion_failures WHERE (? IS NULL OR database = ?) ORDER BY failed_on",
                [database, database],
            ).fetchall()

    def ingest_by_tag_exists(self, database: str, table: str, tags: list[str], cursor: duckdb.DuckDBPyConnection) -> bool:
        """Whether an extent of the table carries `ingest-by:<tag>` for any of `tags` (ingestIfNotExists)."""
        wanted = [f"ingest-by:{tag}" for tag in tags]
        (found,) = cursor.execute(
            'SELECT count(*) FROM _emulator.extents WHERE database = ? AND "table" = ? AND list_has_any(tags, ?::VARCHAR[])',
            [database, table, wanted],
        ).fetchone()
        return found > 0

    def add_extent(
        self,
        cursor: duckdb.DuckDBPyConnection,
        *,
        database: str,
        table: str,
        creation_time: datetime | None,
        tags: list[str],
        source_id: str,
        row_count: int,
        operation_id: str,
        blob_url: str,
    ) -> uuid.UUID:
        """Record the extent of one ingested blob, inside the caller's transaction (same as the rows); returns its id."""
        now = utc_now()
        extent_id = uuid.uuid4()
        cursor.execute(
            "INSERT INTO _emulator.extents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [extent_id, database, table, now, creation_time or now, tags, source_id, row_count, operation_id, blob_url],
        )
        return extent_id
