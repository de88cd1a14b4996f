"""Queue mode, pure parts: the ingestion message per property, its schema, report settings, the relay's mapping."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared import schemas
from shared.kusto_errors import PermanentKustoError
from shared.kusto_rest import BlobSource
from shared.queue_relay import _relayed
from shared.queue_submitter import INGESTION_MESSAGE, build_ingestion_message
from shared.settings import SettingsError, check_queue_report_settings, load_settings

SOURCE_ID = "6f1c8f53-54a4-5b7e-9a51-4c1ab4a0c1d1"
SAS_URL = "https://acct.blob.core.windows.net/staging/Db/T/a.csv?se=2030-01-01&sp=r&sv=2025-07-05&sr=b&sig=SECRETSIG"
TOKEN = "kusto-emulator.claims.SECRET-TOKEN"


def message(
    properties: dict[str, Any] | None = None, *, raw_size: int | None = 123, url: str = SAS_URL, **options: Any
) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "identity_token": TOKEN,
        "report_level": "FailuresOnly",
        "report_method": "Queue",
        "created_at": "2026-01-02T03:04:05.123456Z",
        **options,
    }
    blob = BlobSource(url=url, source_id=SOURCE_ID, raw_size=raw_size)
    return build_ingestion_message(blob, "Db", "T", {"format": "csv", **(properties or {})}, **arguments)


def test_the_minimal_message_has_the_design_doc_fields_and_sdk_defaults() -> None:
    built = message()
    assert built == {
        "Id": SOURCE_ID,
        "BlobPath": SAS_URL,
        "RawDataSize": 123,
        "DatabaseName": "Db",
        "TableName": "T",
        "RetainBlobOnSuccess": True,
        "FlushImmediately": False,
        "ReportLevel": 0,
        "ReportMethod": 0,
        "SourceMessageCreationTime": "2026-01-02T03:04:05.123456Z",
        "AdditionalProperties": {"authorizationContext": TOKEN, "format": "csv"},
    }


def test_an_unknown_raw_size_is_left_out_so_kusto_reads_it_from_the_blob() -> None:
    assert "RawDataSize" not in message(raw_size=None)


def test_the_managed_identity_access_option_is_kept_in_the_blob_path() -> None:
    url = "https://acct.blob.core.windows.net/staging/Db/T/a.csv;managed_identity=system"
    assert message(url=url)["BlobPath"] == url


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"ingestionMappingReference": "Map1"}, {"ingestionMappingReference": "Map1"}),
        ({"ignoreFirstRecord": True}, {"ignoreFirstRecord": True}),
        ({"creationTime": "2024-05-01T00:00:00Z"}, {"creationTime": "2024-05-01T00:00:00Z"}),
        ({"zipPattern": "*.csv"}, {"zipPattern": "*.csv"}),
        ({"tags": ["a", "ingest-by:x"]}, {"tags": '["a", "ingest-by:x"]'}),
        ({"ingestIfNotExists": ["x"]}, {"ingestIfNotExists": '["x"]'}),
    ],
)
def test_each_ingestion_property_goes_into_additional_properties(properties: dict[str, Any], expected: dict[str, Any]) -> None:
    additional = message(properties)["AdditionalProperties"]
    assert additional == {"authorizationContext": TOKEN, "format": "csv", **expected}
    for name in ("tags", "ingestIfNotExists"):
        if name in additional:
            assert json.loads(additional[name]) == properties[name], "v1 carries the list as JSON text"


def test_skip_batching_flushes_immediately_and_delete_after_download_does_not_retain_the_blob() -> None:
    built = message({"skipBatching": True, "deleteAfterDownload": True})
    assert (built["FlushImmediately"], built["RetainBlobOnSuccess"]) == (True, False)
    assert set(built["AdditionalProperties"]) == {"authorizationContext", "format"}


@pytest.mark.parametrize(
    ("level", "method", "codes"),
    [("FailuresOnly", "Queue", (0, 0)), ("FailuresAndSuccesses", "QueueAndTable", (2, 2)), ("None", "Table", (1, 1))],
)
def test_report_settings_are_sent_as_the_sdk_integers(level: str, method: str, codes: tuple[int, int]) -> None:
    built = message(report_level=level, report_method=method)
    assert (built["ReportLevel"], built["ReportMethod"]) == codes


@pytest.mark.parametrize(
    ("database", "properties", "options", "field"),
    [
        ("Bad/Name", {}, {}, "DatabaseName"),
        ("Db", {"format": "xlsx"}, {}, "format"),
        ("Db", {"creationTime": "yesterday"}, {}, "creationTime"),
        ("Db", {}, {"identity_token": ""}, "authorizationContext"),
    ],
)
def test_an_invalid_message_is_a_permanent_error_naming_the_field(
    database: str, properties: dict[str, Any], options: dict[str, Any], field: str
) -> None:
    arguments = {
        "identity_token": TOKEN,
        "report_level": "FailuresOnly",
        "report_method": "Queue",
        "created_at": "2026-01-02T03:04:05Z",
    }
    blob = BlobSource(url=SAS_URL, source_id=SOURCE_ID, raw_size=1)
    with pytest.raises(PermanentKustoError) as caught:
        build_ingestion_message(blob, database, "T", {"format": "csv", **properties}, **{**arguments, **options})
    text = str(caught.value)
    assert field in text
    assert caught.value.code == "InvalidIngestionMessage"
    assert "SECRETSIG" not in text and "SECRET-TOKEN" not in text


def test_the_schema_refuses_unknown_fields_and_string_enums() -> None:
    built = message()
    for bad in ({**built, "Extra": 1}, {**built, "ReportLevel": "FailuresOnly"}, {**built, "Id": "not-a-guid"}):
        with pytest.raises(schemas.MessageError):
            schemas.validate(INGESTION_MESSAGE, bad)


def settings_with(**values: str) -> Any:
    return load_settings(
        {
            "StagingStorage": "UseDevelopmentStorage=true",
            "KUSTO_INGEST_URI": "http://127.0.0.1:9",
            "KUSTO_CREDENTIAL": "none",
            **values,
        }
    )


@pytest.mark.parametrize(("name", "value"), [("REPORT_LEVEL", "None"), ("REPORT_METHOD", "Table")])
def test_report_settings_that_would_hide_failures_are_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        refused = settings_with(**{name: value})
        check_queue_report_settings(refused.report_level, refused.report_method)
    check_queue_report_settings("FailuresAndSuccesses", "QueueAndTable")


def test_a_kusto_failure_notification_becomes_a_schema_valid_relay_notification() -> None:
    kusto = {
        "operationid": "op-1",
        "database": "Db",
        "table": "T",
        "failedon": "2026-01-02T03:04:05.1234567",
        "ingestionsourceid": SOURCE_ID,
        "ingestionsourcepath": SAS_URL,
        "details": {"error": {"code": "Bad", "message": "see " + SAS_URL}},
        "errorcode": "BadRequest_InvalidBlob",
        "failurestatus": 1,
        "rootactivityid": "ra-1",
        "shouldretry": False,
    }
    relayed = _relayed(kusto, "https://acct.blob.core.windows.net/staging/Db/T/a.csv", "Db/T/a.csv")
    schemas.validate(schemas.FAILURE_NOTIFICATION, relayed)
    assert relayed["Origin"] == "relay"
    assert (relayed["FailureStatus"], relayed["FailedOn"], relayed["ErrorCode"]) == (
        "Permanent",
        "2026-01-02T03:04:05.1234567Z",
        "BadRequest_InvalidBlob",
    )
    assert (relayed["IngestionSourceId"], relayed["OperationId"], relayed["BlobName"]) == (SOURCE_ID, "op-1", "Db/T/a.csv")
    assert "SECRETSIG" not in json.dumps(relayed)


def test_a_notification_with_odd_fields_still_relays() -> None:
    relayed = _relayed({"failedon": "not a time", "failurestatus": "Weird"}, "https://a.blob.core.windows.net/s/x", "x")
    schemas.validate(schemas.FAILURE_NOTIFICATION, relayed)
    assert (relayed["FailureStatus"], relayed["ErrorCode"]) == ("Unknown", "Unknown")
