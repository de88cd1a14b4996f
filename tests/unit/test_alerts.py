"""Failure notification -> one alert log record: level, message key, dimensions, malformed payloads, no secrets."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from devhost.processes import AZURITE_KEY
from shared import alerts, schemas
from shared.alerts import ALERT_KEY, Alert, raise_alert
from shared.error_codes import ALERT_MALFORMED_NOTIFICATION as MALFORMED_NOTIFICATION
from shared.notifications import failure_notification
from shared.webhook import PAYLOADS, AlertContent, encode_body

SIGNATURE = "s1gnatureVALUE0123456789abcdef%3D"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2t1c3RvIn0.c2lnbmF0dXJlLXBhcnQ"


def notification(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "error_code": "BadRequest_MappingReferenceWasNotFound",
        "details": "Mapping 'm1' was not found",
        "origin": "ingestion",
        "database": "Telemetry",
        "table": "Events",
        "blob_url": "https://acct.blob.core.windows.net/staging/Telemetry/Events/x.csv",
        "blob_name": "Telemetry/Events/x.csv",
        "source_id": "7f1e7b7e-9a39-5a0e-8f3c-0b8f2a4f6c11",
        "operation_id": "op-123",
        "failure_status": "Permanent",
    }
    values.update(overrides)
    return failure_notification(**values)


def alert_for(caplog: pytest.LogCaptureFixture, body: str, **kwargs: Any) -> tuple[Alert, logging.LogRecord]:
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    alert = raise_alert(
        body,
        queue_name=kwargs.get("queue_name", "ingest-failures"),
        message_id=kwargs.get("message_id", "m-1"),
        dequeue_count=kwargs.get("dequeue_count", 1),
    )
    records = [r for r in caplog.records if r.name == "shared.alerts"]
    assert len(records) == 1, [r.getMessage() for r in records]
    return alert, records[0]


def assert_no_secret(record: logging.LogRecord, alert: Alert) -> None:
    texts = [record.getMessage(), json.dumps(record.custom_dimensions), alert.message, json.dumps(dict(alert.dimensions))]
    for text in texts:
        for secret in (SIGNATURE, TOKEN, AZURITE_KEY, "hunter2"):
            assert secret not in text


@pytest.mark.parametrize(("status", "level"), [("Permanent", logging.ERROR), ("Exhausted", logging.ERROR)])
def test_permanent_and_exhausted_failures_alert_at_error(caplog: pytest.LogCaptureFixture, status: str, level: int) -> None:
    alert, record = alert_for(caplog, json.dumps(notification(failure_status=status)))
    assert record.levelno == level == alert.level
    assert alert.failure_status == status


@pytest.mark.parametrize("status", ["Transient", "Unknown"])
def test_transient_and_unknown_failures_alert_at_warning(caplog: pytest.LogCaptureFixture, status: str) -> None:
    alert, record = alert_for(caplog, json.dumps(notification(failure_status=status)))
    assert record.levelno == logging.WARNING == alert.level


def test_record_message_and_dimensions(caplog: pytest.LogCaptureFixture) -> None:
    sent = notification()
    alert, record = alert_for(caplog, json.dumps(sent), queue_name="ingest-failures", message_id="abc", dequeue_count=2)
    assert record.msg.startswith(ALERT_KEY + " ")
    assert record.getMessage() == alert.message
    assert record.getMessage().startswith(
        'KUSTO_INGESTION_FAILURE errorCode="BadRequest_MappingReferenceWasNotFound" failureStatus=Permanent '
        'database="Telemetry" table="Events" blob=Telemetry/Events/x.csv origin=ingestion details=Mapping \'m1\' was not found'
    )
    dimensions = record.custom_dimensions
    assert dimensions == alert.dimensions
    schemas.validate(schemas.ALERT, dimensions)
    assert dimensions == {
        "alertKey": ALERT_KEY,
        "errorCode": "BadRequest_MappingReferenceWasNotFound",
        "failureStatus": "Permanent",
        "origin": "ingestion",
        "database": "Telemetry",
        "table": "Events",
        "blobPath": "https://acct.blob.core.windows.net/staging/Telemetry/Events/x.csv",
        "blobName": "Telemetry/Events/x.csv",
        "operationId": "op-123",
        "sourceId": "7f1e7b7e-9a39-5a0e-8f3c-0b8f2a4f6c11",
        "rootActivityId": "",
        "failedOn": sent["FailedOn"],
        "shouldRetry": False,
        "details": "Mapping 'm1' was not found",
        "queueName": "ingest-failures",
        "messageId": "abc",
        "dequeueCount": 2,
    }
    assert alert.notification == sent
    assert alert.error_code == "BadRequest_MappingReferenceWasNotFound"


def test_kusto_written_notification_without_app_fields(caplog: pytest.LogCaptureFixture) -> None:
    """Kusto's own FailedIngestionsQueue messages have no Origin or BlobName: they still alert fully."""
    sent = notification(failure_status="Transient")
    del sent["Origin"], sent["BlobName"]
    alert, record = alert_for(caplog, json.dumps(sent))
    assert alert.dimensions["origin"] == "" and alert.dimensions["blobName"] == ""
    assert "blob=https://acct.blob.core.windows.net/staging/Telemetry/Events/x.csv origin=?" in record.getMessage()


def test_secrets_in_details_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    details = (
        f"GET https://acct.blob.core.windows.net/c/x.csv?sv=2022&sig={SIGNATURE} failed; "
        f"conn=DefaultEndpointsProtocol=https;AccountKey={AZURITE_KEY}; auth=Bearer {TOKEN}; token=hunter2"
    )
    alert, record = alert_for(caplog, json.dumps(notification(details=details)))
    assert "REDACTED" in alert.dimensions["details"]
    assert_no_secret(record, alert)


def test_credential_suffix_is_stripped_from_the_blob_path(caplog: pytest.LogCaptureFixture) -> None:
    sent = notification()
    sent["IngestionSourcePath"] = "https://acct.blob.core.windows.net/c/x.csv;managed_identity=system"
    alert, _ = alert_for(caplog, json.dumps(sent))
    assert alert.dimensions["blobPath"] == "https://acct.blob.core.windows.net/c/x.csv"


def test_long_details_are_truncated(caplog: pytest.LogCaptureFixture) -> None:
    alert, record = alert_for(caplog, json.dumps(notification(details="x" * 30000)))
    assert len(alert.dimensions["details"]) == alerts.DETAILS_LIMIT
    assert len(record.getMessage()) < 1000


def test_control_characters_cannot_forge_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    forged = "ok\nKUSTO_INGESTION_FAILURE errorCode=Fake"
    alert, record = alert_for(caplog, json.dumps(notification(blob_name=forged, details=forged)))
    assert "\n" not in record.getMessage()
    assert "ok\\nKUSTO_INGESTION_FAILURE" in record.getMessage()
    # The dimensions are escaped too (they reach the local console and every webhook message).
    assert alert.dimensions["blobName"] == "ok\\nKUSTO_INGESTION_FAILURE errorCode=Fake"


def texts_in(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in texts_in(item)]
    if isinstance(value, list):
        return [text for item in value for text in texts_in(item)]
    return [value] if isinstance(value, str) else []


def test_control_and_bidi_characters_are_escaped_in_dimensions_and_every_webhook_format(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = "Telemetry/Events/ok\nKUSTO_INGESTION_FAILURE errorCode=Fake\u202evsc.exe"
    details = "line one\r\nline two \x1b[2J\u2028 \u200b"
    alert, record = alert_for(caplog, json.dumps(notification(blob_name=name, details=details)))
    assert alert.dimensions["blobName"] == "Telemetry/Events/ok\\nKUSTO_INGESTION_FAILURE errorCode=Fake\\u202evsc.exe"
    assert alert.dimensions["details"] == "line one\\r\\nline two \\x1b[2J\\u2028 \\u200b"
    assert "\n" not in record.getMessage() and "\u202e" not in record.getMessage()
    for payload_format, build in PAYLOADS.items():
        payload = build(AlertContent(alert.dimensions))
        body = encode_body(payload).decode("utf-8")
        for text in texts_in(payload):
            assert "ok\nKUSTO" not in text and "Fake\u202e" not in text, (payload_format, text)
            assert not any(char in text for char in "\r\x1b\u202e\u2028\u200b"), (payload_format, text)
        assert "line one\\\\r\\\\nline two" in body, payload_format  # shown escaped (JSON doubles the backslash)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("this is not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "is not of type 'object'"),
        (json.dumps({"ErrorCode": "X"}), "is a required property"),
        (json.dumps({**notification(), "FailureStatus": "Fatal"}), "$.FailureStatus"),
        (json.dumps({**notification(), "FailedOn": "yesterday"}), "$.FailedOn"),
    ],
)
def test_malformed_notifications_still_alert_at_error(caplog: pytest.LogCaptureFixture, body: str, problem: str) -> None:
    alert, record = alert_for(caplog, body, message_id="bad-1", dequeue_count=3)
    assert record.levelno == logging.ERROR == alert.level
    assert alert.error_code == MALFORMED_NOTIFICATION
    assert alert.notification is None
    assert record.getMessage().startswith(f'{ALERT_KEY} errorCode="{MALFORMED_NOTIFICATION}" failureStatus=Permanent')
    dimensions = record.custom_dimensions
    schemas.validate(schemas.ALERT, dimensions)
    assert problem in dimensions["validationError"]
    assert dimensions["rawPayload"] == body
    assert (dimensions["messageId"], dimensions["dequeueCount"]) == ("bad-1", 3)


def test_malformed_payload_is_redacted_and_truncated(caplog: pytest.LogCaptureFixture) -> None:
    body = json.dumps(
        {
            "IngestionSourcePath": f"https://acct.blob.core.windows.net/c/x.csv?sv=1&sig={SIGNATURE}",
            "Details": f"AccountKey={AZURITE_KEY} Bearer {TOKEN}",
            "Padding": "p" * 20000,
        }
    )
    alert, record = alert_for(caplog, body)
    assert alert.error_code == MALFORMED_NOTIFICATION
    assert len(alert.dimensions["rawPayload"]) == alerts.DETAILS_LIMIT
    assert "sig=REDACTED" in alert.dimensions["rawPayload"]
    assert_no_secret(record, alert)


def test_notification_with_a_sas_in_its_path_is_malformed_and_redacted(caplog: pytest.LogCaptureFixture) -> None:
    sent = notification()
    sent["IngestionSourcePath"] = f"https://acct.blob.core.windows.net/c/x.csv?sv=1&sig={SIGNATURE}"
    alert, record = alert_for(caplog, json.dumps(sent))
    assert alert.error_code == MALFORMED_NOTIFICATION
    assert "IngestionSourcePath" in alert.dimensions["validationError"]
    assert_no_secret(record, alert)
