"""Every way the official Python clients ingest, against the emulator: queued, streaming, managed streaming, `.ingest`.

Runs in `.venv-sdk` (see sdk_helpers.py). Each table receives rows through one path only, so the test can tell
which path delivered what: Queued (QueuedIngestClient), Streamed (KustoStreamingIngestClient, policy enabled on the
table), Managed and Fallback (ManagedStreamingIngestClient with the policy on, and off), ByDatabase (policy on the
database only), Inline (`.ingest inline`) and Pulled (`.ingest into`).
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Any

from azure.kusto.data import KustoClient
from azure.kusto.data.data_format import DataFormat, IngestionMappingKind
from azure.kusto.ingest import (
    BlobDescriptor,
    ColumnMapping,
    IngestionProperties,
    KustoStreamingIngestClient,
    ManagedStreamingIngestClient,
    QueuedIngestClient,
)
from sdk_helpers import api_error, blob_with_sas, connection, count, rows, run, wait_for_count

TABLES = ("Queued", "Streamed", "Managed", "Fallback", "Inline", "Pulled")
SCHEMA = "(id:long, name:string, at:datetime)"
# Written the way Kusto's docs and the SDKs' own tests write long mappings: adjacent literals, a trailing comma.
JSON_MAPPING = (
    "'['\n"
    """  '{"column": "id", "datatype": "long", "Properties": {"Path": "$.i"}},'\n"""
    """  '{"column": "name", "datatype": "string", "Properties": {"Path": "$.n"}},'\n"""
    "']'"
)
CSV_MAPPING = """'[{"column": "name", "Properties": {"Ordinal": "0"}}, {"column": "id", "Properties": {"Ordinal": "1"}}]'"""


def _csv(*records: tuple[int, str]) -> bytes:
    return "".join(f"{number},{name},2024-01-0{number % 9 + 1}T00:00:00Z\n" for number, name in records).encode()


def _props(database: str, table: str, data_format: DataFormat, **options: Any) -> IngestionProperties:
    return IngestionProperties(database, table, data_format=data_format, **options)


def _ids(client: KustoClient, database: str, table: str) -> list[list[Any]]:
    return rows(client, database, f"['{table}'] | project id, name | order by id asc")


def _prepare(client: KustoClient, database: str) -> None:
    for table in TABLES:
        client.execute_mgmt(database, f".create table {table} {SCHEMA}")
        client.execute_mgmt(database, f".create table {table} ingestion json mapping 'Short' {JSON_MAPPING}")
        client.execute_mgmt(database, f".create table {table} ingestion csv mapping 'Swapped' {CSV_MAPPING}")
    for table in ("Streamed", "Managed"):
        client.execute_mgmt(database, f".alter table {table} policy streamingingestion enable")
    client.execute_mgmt(database, ".clear database cache streamingingestion schema")


def _queued(client: KustoClient, queued: QueuedIngestClient, database: str, work_dir: Path) -> dict[str, Any]:
    csv_file = work_dir / "rows.csv"
    csv_file.write_bytes(_csv((1, "alpha"), (2, "beta")))
    json_file = work_dir / "rows.json"
    json_file.write_text('{"id": 4, "name": "delta", "at": "2024-01-04T00:00:00Z"}\n')
    swapped = [ColumnMapping("name", "string", ordinal=0), ColumnMapping("id", "long", ordinal=1)]
    queued.ingest_from_file(str(csv_file), _props(database, "Queued", DataFormat.CSV))
    queued.ingest_from_stream(
        io.BytesIO(b"gamma,3,2024-01-03T00:00:00Z\n"), _props(database, "Queued", DataFormat.CSV, column_mappings=swapped)
    )
    queued.ingest_from_file(str(json_file), _props(database, "Queued", DataFormat.JSON))
    by_reference = _props(
        database, "Queued", DataFormat.JSON, ingestion_mapping_reference="Short", ingestion_mapping_kind=IngestionMappingKind.JSON
    )
    queued.ingest_from_stream(io.BytesIO(b'{"i": 5, "n": "epsilon"}\n'), by_reference)
    wait_for_count(client, database, "Queued", 5)
    return {"rows": _ids(client, database, "Queued")}


def _streamed(
    client: KustoClient, streaming: KustoStreamingIngestClient, database: str, storage: str, work_dir: Path
) -> dict[str, Any]:
    gz_file = work_dir / "rows.csv.gz"
    gz_file.write_bytes(gzip.compress(_csv((10, "kappa"), (11, "lambda"))))
    streaming.ingest_from_stream(io.BytesIO(_csv((1, "alpha"), (2, "beta"))), _props(database, "Streamed", DataFormat.CSV))
    streaming.ingest_from_file(str(gz_file), _props(database, "Streamed", DataFormat.CSV))
    json_reference = _props(
        database,
        "Streamed",
        DataFormat.JSON,
        ingestion_mapping_reference="Short",
        ingestion_mapping_kind=IngestionMappingKind.JSON,
    )
    streaming.ingest_from_stream(io.StringIO('{"i": 5, "n": "epsilon"}'), json_reference)
    csv_reference = _props(
        database,
        "Streamed",
        DataFormat.CSV,
        ingestion_mapping_reference="Swapped",
        ingestion_mapping_kind=IngestionMappingKind.CSV,
    )
    streaming.ingest_from_stream(io.BytesIO(b"gamma,3,2024-01-03T00:00:00Z"), csv_reference)
    blob = blob_with_sas(storage, f"conformance-{database.lower()}", "streamed.csv", _csv((20, "upsilon")))
    streaming.ingest_from_blob(BlobDescriptor(blob), _props(database, "Streamed", DataFormat.CSV))
    # Streaming ingestion answers once the rows are committed: they are there without waiting.
    answer = {"countRightAfter": count(client, database, "Streamed"), "rows": _ids(client, database, "Streamed")}
    answer["policyOff"] = api_error(
        lambda: streaming.ingest_from_stream(io.BytesIO(_csv((1, "x"))), _props(database, "Fallback", DataFormat.CSV))
    )
    missing_mapping = _props(
        database,
        "Streamed",
        DataFormat.JSON,
        ingestion_mapping_reference="Nope",
        ingestion_mapping_kind=IngestionMappingKind.JSON,
    )
    answer["missingMapping"] = api_error(lambda: streaming.ingest_from_stream(io.BytesIO(b'{"i": 1}'), missing_mapping))
    return answer


def _managed(client: KustoClient, managed: ManagedStreamingIngestClient, database: str) -> dict[str, Any]:
    streamed = managed.ingest_from_stream(
        io.BytesIO(_csv((1, "alpha"), (2, "beta"))), _props(database, "Managed", DataFormat.CSV)
    )
    answer: dict[str, Any] = {
        "policyOnStatus": streamed.status.name,
        "policyOnCountRightAfter": count(client, database, "Managed"),
    }
    json_reference = _props(
        database,
        "Fallback",
        DataFormat.JSON,
        ingestion_mapping_reference="Short",
        ingestion_mapping_kind=IngestionMappingKind.JSON,
    )
    fallen_back = managed.ingest_from_stream(io.BytesIO(b'{"i": 7, "n": "eta"}\n'), json_reference)
    answer["policyOffStatus"] = fallen_back.status.name
    wait_for_count(client, database, "Fallback", 1)
    answer["fallbackRows"] = _ids(client, database, "Fallback")
    return answer


def _database_policy(client: KustoClient, streaming: KustoStreamingIngestClient, database: str) -> dict[str, Any]:
    """A database's policy enables streaming into its tables, unless a table's own policy says otherwise."""
    other = f"{database}Policy"
    client.execute_mgmt(other, f".create table ByDatabase {SCHEMA}")
    client.execute_mgmt(other, f".alter database {other} policy streamingingestion enable")
    streaming.ingest_from_stream(io.BytesIO(_csv((1, "alpha"))), _props(other, "ByDatabase", DataFormat.CSV))
    answer: dict[str, Any] = {"countViaDatabasePolicy": count(client, other, "ByDatabase")}
    client.execute_mgmt(other, ".alter table ByDatabase policy streamingingestion disable")
    answer["tableDisabled"] = api_error(
        lambda: streaming.ingest_from_stream(io.BytesIO(_csv((2, "b"))), _props(other, "ByDatabase", DataFormat.CSV))
    )
    return answer


def _extent_rows(client: KustoClient, database: str, command: str) -> list[dict[str, Any]]:
    table = client.execute_mgmt(database, command).primary_results[0]
    return [{column.column_name: row[column.column_name] for column in table.columns} for row in table]


def _inline(client: KustoClient, database: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "csv": _extent_rows(
            client, database, '.ingest inline into table Inline <| 1,"a,b",2024-01-01T00:00:00Z\n2,c,2024-01-02T00:00:00Z'
        ),
    }
    client.execute_mgmt(
        database,
        """.ingest inline into table Inline with (format='json') <| {"id": 3, "name": "d", "at": "2024-01-03T00:00:00Z"}""",
    )
    client.execute_mgmt(database, '.ingest inline into table Inline [4,e,2024-01-04T00:00:00Z] [5,"f]",2024-01-05T00:00:00Z]')
    client.execute_mgmt(
        database, """.ingest inline into table Inline with (tags='["ingest-by:once"]') <| 6,g,2024-01-06T00:00:00Z"""
    )
    answer["skipped"] = _extent_rows(
        client, database, """.ingest inline into table Inline with (ingestIfNotExists='["once"]') <| 7,h,2024-01-07T00:00:00Z"""
    )
    answer["rows"] = _ids(client, database, "Inline")
    return answer


def _pulled(client: KustoClient, database: str, storage: str) -> dict[str, Any]:
    with_header = b"id,name,at\n" + _csv((30, "omega"), (31, "psi"))
    blob = blob_with_sas(storage, f"conformance-{database.lower()}", "pulled.csv", with_header)
    command = f".ingest into table Pulled (h'{blob}') with (format='csv', ignoreFirstRecord=true)"
    return {"extents": _extent_rows(client, database, command), "rows": _ids(client, database, "Pulled")}


def main(url: str, storage: str, database: str, work_dir: Path) -> dict[str, Any]:
    kcsb = connection(url)
    with KustoClient(kcsb) as client:
        _prepare(client, database)
        queued = QueuedIngestClient(kcsb)
        streaming = KustoStreamingIngestClient(kcsb)
        managed = ManagedStreamingIngestClient(kcsb, kcsb)
        try:
            return {
                "streamed": _streamed(client, streaming, database, storage, work_dir),
                "managed": _managed(client, managed, database),
                "databasePolicy": _database_policy(client, streaming, database),
                "inline": _inline(client, database),
                "pulled": _pulled(client, database, storage),
                "queued": _queued(client, queued, database, work_dir),
            }
        finally:
            for ingest_client in (queued, streaming, managed):
                ingest_client.close()


if __name__ == "__main__":
    run(main)
