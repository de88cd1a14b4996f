"""Every format the emulator reads, plain, gzip and zip, through Azurite and the REST endpoint."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from datetime import UTC, datetime

import fastavro
import pyarrow as pa
import pyarrow.orc
import pyarrow.parquet as pq
import pytest

ROWS = [
    ("alpha", 1, "2024-01-01T00:00:00Z", True),
    ("beta, quoted", 2, "2024-01-02T12:30:00Z", False),
    ("gamma", 3, "2024-01-03T00:00:00Z", True),
]
DELIMITERS = {"csv": ",", "tsv": "\t", "tsve": "\t", "psv": "|", "scsv": ";", "sohsv": "\x01"}


def delimited(fmt: str, header: bool = False) -> bytes:
    sep = DELIMITERS[fmt]
    lines = [sep.join(["name", "n", "ts", "ok"])] if header else []
    for name, n, ts, ok in ROWS:
        quoted = f'"{name}"' if "," in name and fmt == "csv" else name
        lines.append(sep.join([quoted, str(n), ts, str(ok).lower()]))
    return ("\n".join(lines) + "\n").encode()


def json_records() -> list[dict]:
    return [{"name": name, "n": n, "ts": ts, "ok": ok} for name, n, ts, ok in ROWS]


def arrow_table() -> pa.Table:
    return pa.table(
        {
            "name": [row[0] for row in ROWS],
            "n": pa.array([row[1] for row in ROWS], pa.int64()),
            "ts": [row[2] for row in ROWS],
            "ok": [row[3] for row in ROWS],
        }
    )


def encode(fmt: str) -> bytes:
    if fmt in DELIMITERS:
        return delimited(fmt)
    if fmt == "json":
        return "\n".join(json.dumps(record) for record in json_records()).encode()
    if fmt == "multijson":
        return "\n".join(json.dumps(record, indent=2) for record in json_records()).encode()
    if fmt == "singlejson":
        return json.dumps(json_records()[0], indent=2).encode()
    sink = io.BytesIO()
    if fmt == "parquet":
        pq.write_table(arrow_table(), sink)
    elif fmt == "orc":
        pyarrow.orc.write_table(arrow_table(), sink)
    elif fmt == "avro":
        schema = {
            "type": "record",
            "name": "Row",
            "fields": [
                {"name": "name", "type": "string"},
                {"name": "n", "type": "long"},
                {"name": "ts", "type": "string"},
                {"name": "ok", "type": "boolean"},
            ],
        }
        fastavro.writer(sink, schema, json_records())
    return sink.getvalue()


FORMATS = [*DELIMITERS, "json", "multijson", "singlejson", "parquet", "avro", "orc"]


@pytest.mark.parametrize("compression", ["", ".gz"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_is_ingested_plain_and_gzip(kusto, staging, db_table, fmt, compression):
    database, table = db_table()
    data = encode(fmt)
    url = staging.put(f"data.{fmt}{compression}", gzip.compress(data) if compression else data)

    outcome = kusto.ingest(database, table, [url], format=fmt)

    expected = 1 if fmt == "singlejson" else len(ROWS)
    assert outcome["status"] == {"succeeded": 1, "failed": 0, "inProgress": 0, "canceled": 0}, outcome
    assert kusto.count(database, table) == expected
    rows = kusto.query(database, f"{table} | where n == 1 | project name, ok")
    assert rows == [["alpha", True]]


def test_typed_values_are_converted_to_the_column_types(kusto, staging, db_table):
    database, table = db_table()
    kusto.ingest(database, table, [staging.put("typed.csv", delimited("csv"))], format="csv")

    [[name, n, ts, ok]] = kusto.query(database, f"{table} | where n == 2 | project name, n, ts, ok")

    assert (name, n, ok) == ("beta, quoted", 2, False)
    assert datetime.fromisoformat(ts) == datetime(2024, 1, 2, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize("fmt", ["txt", "raw"])
def test_txt_and_raw_fill_the_first_column(kusto, staging, db_table, fmt):
    database, table = db_table("line:string")
    url = staging.put(f"lines.{fmt}", b"first line\nsecond, with comma\nthird\n")

    kusto.ingest(database, table, [url], format=fmt)

    assert kusto.count(database, table) == (3 if fmt == "txt" else 1)


def test_zip_entries_are_picked_by_zip_pattern(kusto, staging, db_table):
    database, table = db_table()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("part1.csv", delimited("csv"))
        bundle.writestr("part2.csv", delimited("csv"))
        bundle.writestr("readme.txt", "not data, skipped by zipPattern")
    url = staging.put("bundle.csv.zip", archive.getvalue())

    outcome = kusto.ingest(database, table, [url], format="csv", zipPattern=r".*\.csv")

    assert outcome["status"]["succeeded"] == 1
    assert kusto.count(database, table) == 2 * len(ROWS)


def test_ignore_first_record_skips_the_header(kusto, staging, db_table):
    database, table = db_table()
    url = staging.put("with-header.csv", delimited("csv", header=True))

    kusto.ingest(database, table, [url], format="csv", ignoreFirstRecord=True)

    assert kusto.count(database, table) == len(ROWS)
    assert kusto.query(database, f"{table} | where name == 'name' | count") == [[0]]


def test_csv_with_fewer_fields_than_columns_fills_nulls(kusto, staging, db_table):
    database, table = db_table()
    kusto.ingest(database, table, [staging.put("short.csv", b"delta,4\nepsilon,5\n")], format="csv")

    assert kusto.query(database, f"{table} | where isnull(ok) | count") == [[2]]


def test_managed_identity_url_is_read_with_the_emulator_storage_account(kusto, staging, db_table):
    database, table = db_table()
    staging.put("identity.csv", delimited("csv"))

    outcome = kusto.ingest(database, table, [staging.plain_url("identity.csv") + ";managed_identity=system"], format="csv")

    assert outcome["status"]["succeeded"] == 1
    assert outcome["details"][0]["url"] == staging.plain_url("identity.csv")
    assert kusto.count(database, table) == len(ROWS)


def test_delete_after_download_removes_the_source_blob(kusto, staging, db_table):
    database, table = db_table()
    url = staging.put("delete-me.csv", delimited("csv"))

    kusto.ingest(database, table, [url], format="csv", deleteAfterDownload=True)

    assert not staging.container.get_blob_client("delete-me.csv").exists()
    assert kusto.count(database, table) == len(ROWS)


def test_timespan_guid_and_dynamic_values(kusto, staging, db_table):
    database, table = db_table("name:string, span:timespan, id:guid, bag:dynamic, amount:real")
    records = [
        {"name": "x", "span": "1.02:03:04", "id": "8a3b6f2e-1d4c-4e5f-9a7b-2c3d4e5f6a7b", "bag": {"k": [1, 2]}, "amount": 2.5}
    ]
    url = staging.put("typed.json", "\n".join(json.dumps(record) for record in records).encode())

    kusto.ingest(database, table, [url], format="json")

    [[span, guid, bag, amount]] = kusto.query(database, f"{table} | project span, id, bag, amount")
    assert span.startswith("1.02:03:04")
    assert guid == records[0]["id"]
    assert (bag if isinstance(bag, dict) else json.loads(bag)) == {"k": [1, 2]}
    assert amount == 2.5
