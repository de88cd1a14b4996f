"""Parsing ingestion messages the way every official client writes them, and the notifications written back."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from kusto_emulator.queue_messages import (
    METHOD_QUEUE,
    METHOD_QUEUE_AND_TABLE,
    METHOD_TABLE,
    REPORT_ALL,
    REPORT_FAILURES_ONLY,
    REPORT_NONE,
    RejectedMessageError,
    Reporting,
    UnattributableMessageError,
    decode_message,
    failure_notification,
    parse_message,
    success_notification,
)

PYTHON_SDK_MESSAGE = {
    "BlobPath": "http://127.0.0.1:1/devstoreaccount1/c/a.csv?sv=1&sig=secret",
    "RawDataSize": 12,
    "DatabaseName": "db",
    "TableName": "T",
    "RetainBlobOnSuccess": True,
    "FlushImmediately": True,
    "IgnoreSizeLimit": False,
    "ReportLevel": 2,
    "ReportMethod": 0,
    "SourceMessageCreationTime": "2026-11-23T02:02:11.182596",
    "Id": "46723f62-0000-0000-0000-000000000001",
    "ApplicationForTracing": None,
    "AdditionalProperties": {
        "authorizationContext": "token",
        "tags": '["t1","ingest-by:batch1"]',
        "ingestIfNotExists": '["batch1"]',
        "ingestionMapping": '[{"column":"x","datatype":"long","properties":{"Ordinal":"0"}}]',
        "format": "CSV",
        "ignoreFirstRecord": True,
    },
}


def test_python_sdk_message_pascal_case_integer_enums_and_json_text_values() -> None:
    message = parse_message(decode_message(base64.b64encode(json.dumps(PYTHON_SDK_MESSAGE).encode()).decode()))
    assert (message.source_id, message.database, message.table, message.raw_size) == (PYTHON_SDK_MESSAGE["Id"], "db", "T", 12)
    assert message.blob_url == PYTHON_SDK_MESSAGE["BlobPath"]
    assert message.reporting == Reporting(REPORT_ALL, METHOD_QUEUE, None)
    assert message.authorization_context == "token"
    assert message.properties == {
        "tags": '["t1","ingest-by:batch1"]',
        "ingestIfNotExists": '["batch1"]',
        "ingestionMapping": '[{"column":"x","datatype":"long","properties":{"Ordinal":"0"}}]',
        "format": "csv",
        "ignoreFirstRecord": True,
    }


def test_java_style_camel_case_enum_names_and_native_json_values() -> None:
    document = {
        "id": "src-1",
        "blobPath": "http://h/devstoreaccount1/c/b.json",
        "databaseName": "db",
        "tableName": "T",
        "retainBlobOnSuccess": "false",
        "reportLevel": "FailuresAndSuccesses",
        "reportMethod": "QueueAndTable",
        "ingestionStatusInTable": {
            "tableConnectionString": "http://h/devstoreaccount1/st?sig=x",
            "partitionKey": "p",
            "rowKey": "r",
        },
        "additionalProperties": {
            "AuthorizationContext": "token",
            "tags": ["a", "drop-by:b"],
            "jsonMapping": [{"column": "x", "path": "$.x"}],
            "mappingReference": "m1",
            "creationTime": "2024-01-01T00:00:00Z",
            "unknownProperty": "ignored",
        },
    }
    message = parse_message(decode_message(json.dumps(document)))
    assert message.reporting.level == REPORT_ALL
    assert message.reporting.method == METHOD_QUEUE_AND_TABLE
    assert message.reporting.status_table is not None and message.reporting.status_table.row_key == "r"
    assert message.retain_blob_on_success is False
    assert message.properties == {
        "tags": ["a", "drop-by:b"],
        "ingestionMapping": json.dumps([{"column": "x", "path": "$.x"}]),
        "ingestionMappingReference": "m1",
        "creationTime": "2024-01-01T00:00:00Z",
    }


def test_additional_properties_given_as_a_json_string() -> None:
    document = {**PYTHON_SDK_MESSAGE, "AdditionalProperties": json.dumps({"authorizationContext": "t", "format": "json"})}
    assert parse_message(document).properties == {"format": "json"}


@pytest.mark.parametrize(
    ("level", "method", "expected"),
    [
        (0, 1, (REPORT_FAILURES_ONLY, METHOD_TABLE)),
        ("1", "0", (REPORT_NONE, METHOD_QUEUE)),
        ("DoNotReport", "Table", (REPORT_NONE, METHOD_TABLE)),
        ("failuresonly", "queue", (REPORT_FAILURES_ONLY, METHOD_QUEUE)),
        (None, None, (REPORT_FAILURES_ONLY, METHOD_QUEUE)),
    ],
)
def test_report_enums_as_numbers_digits_or_names(level: Any, method: Any, expected: tuple[int, int]) -> None:
    document = {**PYTHON_SDK_MESSAGE, "ReportLevel": level, "ReportMethod": method}
    reporting = parse_message(document).reporting
    assert (reporting.level, reporting.method) == expected


@pytest.mark.parametrize(
    ("reporting", "on_success", "on_failure"),
    [(Reporting(REPORT_ALL), True, True), (Reporting(REPORT_FAILURES_ONLY), False, True), (Reporting(REPORT_NONE), False, False)],
)
def test_report_level_decides_what_is_reported(reporting: Reporting, on_success: bool, on_failure: bool) -> None:
    assert reporting.reports(succeeded=True) is on_success
    assert reporting.reports(succeeded=False) is on_failure


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("%%% not base64 %%%", "neither base64"),
        (base64.b64encode(b"\xff\xfe").decode(), "neither base64"),
        (base64.b64encode(b"plain words").decode(), "not valid JSON"),
        (base64.b64encode(b"[1, 2]").decode(), "not an object"),
        ("{broken json", "not valid JSON"),
    ],
)
def test_undecodable_messages_cannot_be_attributed(text: str, reason: str) -> None:
    with pytest.raises(UnattributableMessageError, match=reason):
        decode_message(text)


def test_message_without_id_cannot_be_attributed() -> None:
    with pytest.raises(UnattributableMessageError, match="no Id"):
        parse_message({key: value for key, value in PYTHON_SDK_MESSAGE.items() if key != "Id"})


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"DatabaseName": None}, "BadRequest_EmptyDatabaseName"),
        ({"TableName": ""}, "BadRequest_InvalidOrEmptyTableName"),
        ({"BlobPath": None}, "BadRequest_EmptyBlobUri"),
        ({"ReportLevel": 7}, "BadRequest_MalformedIngestionProperty"),
        ({"ReportMethod": "Carrier pigeon"}, "BadRequest_MalformedIngestionProperty"),
        ({"AdditionalProperties": [1]}, "BadRequest_MalformedIngestionProperty"),
        ({"RawDataSize": "big"}, "BadRequest_MalformedIngestionProperty"),
    ],
)
def test_attributable_but_invalid_messages_are_rejected_with_a_code(changes: dict[str, Any], code: str) -> None:
    with pytest.raises(RejectedMessageError) as raised:
        parse_message({**PYTHON_SDK_MESSAGE, **changes})
    assert raised.value.code == code
    assert raised.value.source_id == PYTHON_SDK_MESSAGE["Id"]


def test_notifications_have_the_sdk_fields_and_seven_digit_timestamps() -> None:
    common = {"operation_id": "op", "database": "db", "table": "T", "source_id": "s", "source_path": "http://h/c/a.csv"}
    success = success_notification(**common)
    failure = failure_notification(**common, error_code="Download_SourceNotFound", failure_status="Permanent", details="gone")
    for key in ("OperationId", "Database", "Table", "IngestionSourceId", "IngestionSourcePath", "RootActivityId"):
        assert key in success and key in failure
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", success["SucceededOn"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", failure["FailedOn"])
    assert failure["ErrorCode"] == "Download_SourceNotFound"
    assert failure["ShouldRetry"] is False
    assert failure["OriginatesFromUpdatePolicy"] is False
    assert failure_notification(**common, error_code="Timeout", failure_status="Transient", details="")["ShouldRetry"] is True
