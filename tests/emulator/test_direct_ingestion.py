"""Streaming ingestion and `.ingest` commands over raw HTTP: the edges the official clients never send.

The clients' own path through both is in tests/conformance; these check what the emulator does with requests
a client could still make: no gzip header on a gzip body, no format, too much data, a missing table, bad data.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable

import requests

from tests.emulator.conftest import KustoCalls, Staging

ROWS = b"alpha,1,2024-01-01T00:00:00Z,true\nbeta,2,2024-01-02T00:00:00Z,false\n"


def _stream(kusto: KustoCalls, database: str, table: str, body: bytes, **params: str) -> requests.Response:
    return requests.post(f"{kusto.url}/v1/rest/ingest/{database}/{table}", params=params, data=body, timeout=30)


def _enable_streaming(kusto: KustoCalls, database: str, table: str) -> None:
    kusto.mgmt_rows(database, f".alter table {table} policy streamingingestion enable")


def test_a_gzip_body_is_recognised_without_a_content_encoding_header(kusto: KustoCalls, db_table: Callable) -> None:
    database, table = db_table()
    _enable_streaming(kusto, database, table)

    response = _stream(kusto, database, table, gzip.compress(ROWS), streamFormat="Csv")

    assert response.status_code == 200, response.text
    [answer] = response.json()["Tables"]
    assert [column["ColumnName"] for column in answer["Columns"]][:2] == ["ConsumedRecordsCount", "UpdatePolicyStatus"]
    assert answer["Rows"][0][:2] == [2, "Inactive"]
    assert kusto.count(database, table) == 2


def test_streaming_refusals_name_what_is_wrong(kusto: KustoCalls, db_table: Callable) -> None:
    database, table = db_table()
    _enable_streaming(kusto, database, table)

    no_format = _stream(kusto, database, table, ROWS)
    too_large = _stream(kusto, database, table, b"x" * (4 * 1024 * 1024 + 1), streamFormat="csv")
    no_table = _stream(kusto, database, "NoSuchTable", ROWS, streamFormat="csv")
    bad_data = _stream(kusto, database, table, b"a,1\nb,2,3,4,5\n", streamFormat="csv")

    assert (no_format.status_code, no_format.json()["error"]["code"]) == (400, "BadRequest")
    assert too_large.status_code == 413
    # 400, not 404: the clients read a 404 from this route as "streaming ingestion is not enabled on the cluster"
    assert (no_table.status_code, no_table.json()["error"]["code"]) == (400, "BadRequest_TableNotExist")
    assert (bad_data.status_code, bad_data.json()["error"]["code"]) == (400, "Stream_WrongNumberOfFields")
    assert kusto.count(database, table) == 0


def test_a_failed_ingest_inline_is_refused_and_listed_among_ingestion_failures(kusto: KustoCalls, db_table: Callable) -> None:
    database, table = db_table()

    response = kusto.mgmt(database, f".ingest inline into table {table} <| a,1\nb,2,3,4,5")

    assert (response.status_code, response.json()["error"]["code"]) == (400, "Stream_WrongNumberOfFields")
    failures = [row for row in kusto.mgmt_rows(database, ".show ingestion failures") if row["Table"] == table]
    assert [(row["ErrorCode"], row["IngestionSourcePath"]) for row in failures] == [("Stream_WrongNumberOfFields", "inline")]


def test_ingest_into_answers_one_row_per_source(kusto: KustoCalls, db_table: Callable, staging: Staging) -> None:
    database, table = db_table()
    first, second = staging.put("one.csv", ROWS), staging.put("two.csv.gz", gzip.compress(ROWS))

    rows = kusto.mgmt_rows(database, f".ingest into table {table} (h'{first}', '{second}') with (format = 'csv')")

    assert [row["ItemLoaded"] for row in rows] == [staging.plain_url("one.csv"), staging.plain_url("two.csv.gz")]
    assert all(not row["HasErrors"] and row["ExtentId"] != "00000000-0000-0000-0000-000000000000" for row in rows)
    assert kusto.count(database, table) == 4
