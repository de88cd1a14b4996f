"""The JSON Schemas: valid 2020-12 documents, and each accepts what the app writes and refuses what it must not."""

from __future__ import annotations

import json
import uuid
from datetime import UTC
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from shared import schemas
from shared.alerts import ALERT_KEY
from shared.notifications import failure_notification
from shared.times import parse_time

SCHEMA_FILES = sorted(path.name for path in schemas.SCHEMA_DIR.glob("*.json"))


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_every_schema_is_a_valid_2020_12_document_named_after_its_file(name: str) -> None:
    document = json.loads((schemas.SCHEMA_DIR / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"] == name
    assert schemas.validator(name) is not None


def test_schema_constants_name_existing_files() -> None:
    for name in (
        schemas.PENDING_BLOB,
        schemas.FAILURE_NOTIFICATION,
        schemas.TRACKING_RECORD,
        schemas.ROUTING_RULES,
        schemas.ALERT,
    ):
        assert name in SCHEMA_FILES


def pending(**overrides: Any) -> dict[str, Any]:
    message = {
        "version": 1,
        "blobUrl": "http://127.0.0.1:10/devstoreaccount1/staging/Db/T/donn%C3%A9es.csv",
        "container": "staging",
        "blobName": "Db/T/données.csv",
        "etag": '"0x8DC0000000000"',
        "size": 10,
        "rawSize": None,
        "sourceId": str(uuid.uuid4()),
        "database": "Db",
        "table": "T",
        "properties": {"format": "csv", "tags": ["a"], "creationTime": "2024-01-01T00:00:00Z"},
        "recordedAt": "2024-01-01T00:00:00Z",
    }
    message.update(overrides)
    return message


def test_pending_blob_round_trip() -> None:
    message = pending()
    assert schemas.parse(schemas.PENDING_BLOB, schemas.dump(schemas.PENDING_BLOB, message)) == message


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"blobUrl": "https://a.blob.core.windows.net/c/x.csv?sig=abc"}, "$.blobUrl"),
        ({"database": "Bad!"}, "$.database"),
        ({"sourceId": "not-a-uuid"}, "$.sourceId"),
        ({"properties": {"format": "xml"}}, "$.properties.format"),
        ({"properties": {"format": "csv", "creationTime": "yesterday"}}, "$.properties.creationTime"),
        ({"properties": {"format": "csv", "unknown": 1}}, "$.properties"),
        # Format checks need their validator packages (requirements.txt): without them these would pass silently.
        ({"recordedAt": "2024-02-30T25:61:00Z"}, "$.recordedAt"),
        ({"blobUrl": "https://exa mple.blob.core.windows.net/c/x.csv"}, "$.blobUrl"),
    ],
)
def test_pending_blob_refuses(overrides: dict[str, Any], path: str) -> None:
    with pytest.raises(schemas.MessageError) as caught:
        schemas.dump(schemas.PENDING_BLOB, pending(**overrides))
    assert caught.value.path == path


def test_failure_notification_never_holds_a_sas_path() -> None:
    message = failure_notification(
        error_code="Routing_NoRoute", details="x", origin="routing", blob_url="https://a.blob.core.windows.net/c/x?sv=1&sig=s"
    )
    assert message["IngestionSourcePath"] == "https://a.blob.core.windows.net/c/x"
    message["IngestionSourcePath"] = "https://a.blob.core.windows.net/c/x?sv=1&sig=s"
    with pytest.raises(schemas.MessageError, match=r"\$\.IngestionSourcePath"):
        schemas.validate(schemas.FAILURE_NOTIFICATION, message)


def test_routing_rules_schema() -> None:
    schemas.validate(schemas.ROUTING_RULES, [{"path": "a/{table}/*.csv", "database": "D", "tags": ["x"], "skipBatching": True}])
    with pytest.raises(schemas.MessageError) as caught:
        schemas.validate(schemas.ROUTING_RULES, [{"path": "a"}, {"path": "b", "tags": "not-a-list"}])
    assert caught.value.path == "$[1].tags"


def alert_dimensions(**overrides: Any) -> dict[str, Any]:
    dimensions = {
        "alertKey": ALERT_KEY,
        "errorCode": "Routing_NoRoute",
        "failureStatus": "Permanent",
        "origin": "routing",
        "database": "",
        "table": "",
        "blobPath": "https://a.blob.core.windows.net/c/x.csv",
        "blobName": "x.csv",
        "operationId": "",
        "sourceId": "",
        "rootActivityId": "",
        "failedOn": "2024-01-01T00:00:00Z",
        "shouldRetry": False,
        "details": "no route",
        "queueName": "ingest-failures",
        "messageId": "m",
        "dequeueCount": 1,
    }
    dimensions.update(overrides)
    return dimensions


def test_alert_schema_accepts_a_full_record() -> None:
    schemas.validate(schemas.ALERT, alert_dimensions())
    schemas.validate(
        schemas.ALERT, alert_dimensions(errorCode="Alert_MalformedNotification", validationError="x", rawPayload="{")
    )


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"alertKey": "OTHER"}, "$.alertKey"),
        ({"blobPath": "https://a.blob.core.windows.net/c/x.csv?sv=1&sig=s"}, "$.blobPath"),
        ({"blobPath": "https://a.blob.core.windows.net/c/x.csv;managed_identity=system"}, "$.blobPath"),
        ({"details": "x" * 4097}, "$.details"),
        ({"failureStatus": "Fatal"}, "$.failureStatus"),
        ({"errorCode": ""}, "$.errorCode"),
        ({"extra": 1}, "$"),
    ],
)
def test_alert_schema_refuses(overrides: dict[str, Any], path: str) -> None:
    with pytest.raises(schemas.MessageError) as caught:
        schemas.validate(schemas.ALERT, alert_dimensions(**overrides))
    assert caught.value.path == path


PENDING_CASES = [
    pending(),
    pending(database="Bad!"),
    pending(table=""),
    pending(properties={"format": "xml"}),
    pending(properties={"format": "csv", "tags": ["", "b"]}),
    pending(properties={"format": "csv", "unknown": 1}),
    pending(properties="csv"),
    pending(sourceId="not-a-uuid", database="Bad!"),
]


@pytest.mark.parametrize("message", PENDING_CASES)
def test_the_validator_with_definitions_inlined_judges_like_the_schema_file(message: dict[str, Any]) -> None:
    document = json.loads((schemas.SCHEMA_DIR / schemas.PENDING_BLOB).read_text(encoding="utf-8"))
    as_written = Draft202012Validator(document, registry=schemas._registry(), format_checker=schemas.FORMAT_CHECKER)

    def problems(validator: Draft202012Validator) -> list[tuple[str, str]]:
        return sorted((error.json_path, error.message) for error in validator.iter_errors(message))

    assert problems(schemas.validator(schemas.PENDING_BLOB)) == problems(as_written)
    assert "#/$defs/" not in json.dumps(schemas.validator(schemas.PENDING_BLOB).schema["properties"])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[" * 100_000, "nested too deeply"),
        ("1" * 5000, "integer string conversion"),
        ('{"a": NaN}', "NaN is not a JSON value"),
        ("[Infinity]", "Infinity is not a JSON value"),
        ("[1e400]", "out of range"),
        ('{"a": "\\ud800"}', "lone surrogate \\ud800"),
        ('{"a": "\ud800"}', "lone surrogate \\ud800"),
        (b'{"a": "\xed\xa0\x80"}', "lone surrogate \\ud800"),
    ],
    ids=["deep", "huge-integer", "nan", "infinity", "float-overflow", "escaped-surrogate", "raw-surrogate", "utf8-surrogate"],
)
def test_parse_refuses_what_is_not_json_text_with_a_message_error(text: str | bytes, problem: str) -> None:
    with pytest.raises(schemas.MessageError) as caught:
        schemas.parse(schemas.FAILURE_NOTIFICATION, text)
    assert caught.value.path == "$" and problem in caught.value.problem


def test_parse_keeps_escaped_surrogate_pairs() -> None:
    message = failure_notification(error_code="X", details="\U0001f600", origin="routing")
    text = json.dumps(message)  # ASCII, so the emoji is the pair \ud83d\ude00
    assert "\\ud83d\\ude00" in text and schemas.parse(schemas.FAILURE_NOTIFICATION, text) == message


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (float("nan"), "cannot be written as JSON"),
        ("\ud800", "lone surrogate \\ud800"),
        (10**5000, "cannot be written as JSON"),
    ],
    ids=["nan", "lone-surrogate", "huge-integer"],
)
def test_dump_writes_only_json_text(extra: Any, problem: str) -> None:
    message = {**failure_notification(error_code="X", details="x", origin="routing"), "Extra": extra}
    with pytest.raises(schemas.MessageError) as caught:
        schemas.dump(schemas.FAILURE_NOTIFICATION, message)
    assert problem in str(caught.value)
    with pytest.raises(schemas.MessageError, match="cannot be checked"):
        schemas.validate(schemas.FAILURE_NOTIFICATION, {**message, "Database": 10**5000})


@pytest.mark.parametrize(
    "moment",
    [
        "0001-01-01T00:00:00+14:00",  # a valid local time whose UTC time is before year 1
        "9999-12-31T23:59:59-14:00",  # ... after year 9999
        "2024-01-01T00:00:00z",  # RFC 3339 allows 'z', datetime.fromisoformat does not read it
        "2016-12-31T23:59:60Z",  # a leap second
        "2024-02-30T00:00:00Z",
    ],
)
def test_date_times_the_readers_cannot_read_are_refused(moment: str) -> None:
    with pytest.raises(schemas.MessageError) as caught:
        schemas.dump(schemas.PENDING_BLOB, pending(recordedAt=moment))
    assert caught.value.path == "$.recordedAt"


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.9999999Z", "2024-01-01t00:00:00+14:00"])
def test_date_times_at_the_edges_that_can_be_read_are_accepted(moment: str) -> None:
    schemas.dump(schemas.PENDING_BLOB, pending(recordedAt=moment))
    assert parse_time(moment).tzinfo is UTC
