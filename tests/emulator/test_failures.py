"""Each ingestion failure carries Kusto's error code and permanence, in the status and in .show ingestion failures."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import pytest

from devhost.processes import free_port
from kusto_emulator.catalog import Catalog
from kusto_emulator.config import EmulatorConfig
from kusto_emulator.faults import Faults
from kusto_emulator.ingestion_job import BlobOutcome, IngestionJob
from kusto_emulator.stats import Stats
from kusto_emulator.worker import IngestionWorker
from tests.emulator.conftest import KustoCalls

GOOD_CSV = b"alpha,1,2024-01-01T00:00:00Z,true\n"


def empty_zip() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("notes.md", "no csv in here")
    return archive.getvalue()


CASES = [
    # (id, blob name, content, properties, expected code)
    ("empty", "empty.csv", b"", {}, "BadRequest_EmptyBlob"),
    ("bad-gzip", "bad.csv.gz", b"this is not gzip", {}, "BadRequest_InvalidBlob"),
    ("fields", "ragged.csv", b"a,1,2024-01-01,true\nb,2\n", {}, "Stream_WrongNumberOfFields"),
    ("header-only", "header.csv", b"name,n,ts,ok\n", {"ignoreFirstRecord": True}, "Stream_NoDataToIngest"),
    ("bad-json", "bad.json", b'{"name": "a"}\nnot json at all\n', {"format": "json"}, "BadRequest_NoRecordsOrWrongFormat"),
    ("bad-parquet", "bad.parquet", b"PAR1 but not really", {"format": "parquet"}, "BadRequest_NoRecordsOrWrongFormat"),
    ("no-mapping", "m.csv", GOOD_CSV, {"ingestionMappingReference": "missing"}, "BadRequest_MappingReferenceWasNotFound"),
    ("bad-mapping", "m2.csv", GOOD_CSV, {"ingestionMapping": "[{not json"}, "BadRequest_InvalidMapping"),
    (
        "mapping-column",
        "m3.csv",
        GOOD_CSV,
        {"ingestionMapping": json.dumps([{"column": "nope", "Properties": {"Ordinal": "0"}}])},
        "BadRequest_InconsistentMapping",
    ),
    ("empty-zip", "none.csv.zip", empty_zip(), {"zipPattern": r".*\.csv"}, "BadRequest_EmptyArchive"),
    ("bad-zip", "broken.csv.zip", b"PK not a zip", {}, "BadRequest_InvalidArchive"),
    ("sstream", "data.ss", GOOD_CSV, {"format": "sstream"}, "BadRequest_FormatNotSupported"),
]


@pytest.mark.parametrize(("name", "content", "properties", "code"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_blob_failure_has_kusto_code_and_is_permanent(kusto, staging, db_table, name, content, properties, code):
    database, table = db_table()
    url = staging.put(name, content)

    outcome = kusto.ingest(database, table, [url], **{"format": "csv", **properties})

    assert outcome["status"]["failed"] == 1, outcome
    [blob] = outcome["details"]
    assert (blob["status"], blob["errorCode"], blob["failureStatus"]) == ("Failed", code, "Permanent")
    assert blob["details"]
    assert "sig=" not in json.dumps(outcome)
    assert kusto.count(database, table) == 0
    failures = [row for row in kusto.mgmt_rows(database, ".show ingestion failures") if row["Table"] == table]
    assert [row["ErrorCode"] for row in failures] == [code]
    assert failures[0]["IngestionSourcePath"] == staging.plain_url(name)


def test_missing_blob_is_download_source_not_found(kusto, staging, db_table):
    database, table = db_table()

    outcome = kusto.ingest(database, table, [staging.sas_url("never-uploaded.csv")])

    assert outcome["details"][0]["errorCode"] == "Download_SourceNotFound"
    assert outcome["details"][0]["failureStatus"] == "Permanent"


def test_blob_without_valid_sas_is_download_forbidden(kusto, staging, db_table):
    database, table = db_table()
    url = staging.put("secret.csv", GOOD_CSV)
    tampered = url.replace("sig=", "sig=AAAA")

    outcome = kusto.ingest(database, table, [tampered])

    assert outcome["details"][0]["errorCode"] == "Download_Forbidden"


def test_unreachable_storage_is_a_transient_download_error(kusto, db_table):
    database, table = db_table()
    url = f"http://127.0.0.1:{free_port()}/devstoreaccount1/nowhere/data.csv?sv=2024&sig=abc"

    outcome = kusto.ingest(database, table, [url])

    assert (outcome["details"][0]["errorCode"], outcome["details"][0]["failureStatus"]) == ("Download_UnknownError", "Transient")


def test_worker_reports_a_missing_table_to_its_caller(azurite, staging, tmp_path: Path):
    """The queue protocol submits jobs straight to the worker: a table that vanished is BadRequest_TableNotExist."""
    url = staging.put("orphan.csv", GOOD_CSV)
    catalog = Catalog(tmp_path / "kusto.duckdb")
    catalog.ensure_database("Db")
    config = EmulatorConfig(data_dir=tmp_path, storage_connection_string=azurite.connection_string)
    worker = IngestionWorker(catalog, azurite.connection_string, Faults(config), Stats(), 1, tmp_path / "tmp")
    outcomes: list[BlobOutcome] = []
    try:
        worker.submit(IngestionJob("Db", "Gone", url, "source-1", None, {"format": "csv"}), outcomes.append)
        assert worker.wait_idle(60)
    finally:
        worker.shutdown()
    [outcome] = outcomes
    assert (outcome.status, outcome.error_code, outcome.failure_status) == ("Failed", "BadRequest_TableNotExist", "Permanent")
    assert [row[6] for row in catalog.list_failures("Db")] == ["BadRequest_TableNotExist"]
    catalog.close()


def test_gzip_that_is_empty_inside_is_an_empty_blob(kusto, staging, db_table):
    database, table = db_table()
    url = staging.put("nothing.csv.gz", gzip.compress(b""))

    outcome = kusto.ingest(database, table, [url])

    assert outcome["details"][0]["errorCode"] == "BadRequest_EmptyBlob"


def test_managed_identity_outside_the_emulator_account_is_refused(kusto, db_table):
    database, table = db_table()
    url = f"http://127.0.0.1:{free_port()}/otheraccount/c/data.csv;managed_identity=system"

    outcome = kusto.ingest(database, table, [url])

    assert outcome["details"][0]["errorCode"] == "BadRequest_InvalidManagedIdentity"
    assert outcome["details"][0]["url"] == url.split(";", 1)[0]


def test_data_over_max_data_size_is_file_too_large_unless_ignored(start_own_emulator, staging):
    own = KustoCalls(start_own_emulator("--auto-create-databases", "--max-data-size", "20").url)
    own.mgmt_rows("D", ".create table T (name:string, n:long, ts:datetime, ok:bool)")
    url = staging.put("big.csv.gz", gzip.compress(GOOD_CSV * 2))

    refused = own.ingest("D", "T", [url])
    accepted = own.ingest("D", "T", [url], ignoreSizeLimit=True)

    [blob] = refused["details"]
    assert (blob["errorCode"], blob["failureStatus"]) == ("BadRequest_FileTooLarge", "Permanent")
    assert accepted["status"]["succeeded"] == 1 and own.count("D", "T") == 2
