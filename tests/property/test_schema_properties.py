"""Property tests for the message schemas: any text or value is a valid message or a MessageError, nothing else.

Every queue reader parses with `schemas.parse` and catches MessageError (alerts.py catches nothing wider), so:

* `parse(schema, text)` for any text returns a message the schema accepts, or raises MessageError, never
  RecursionError (`[[[[...`), a bare ValueError (an integer of 5000 digits), TypeError and the like;
* `validate` and `dump` of any value raise MessageError or nothing, and what `dump` writes is UTF-8 JSON text
  (no NaN, no lone surrogate) that `parse` reads back as the same message;
* every date-time a schema accepts can be read by the code that reads it later (submission's recordedAt,
  tracking's submittedAt, routing's creation time): a valid message never crashes its reader.
"""

from __future__ import annotations

import contextlib
import copy
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared import schemas
from shared.notifications import failure_notification
from tests.property.strategies import ANY_TEXT, DATETIME_TEXT, JSON_ODDITIES, JSON_VALUES, json_text

SCHEMA_FILES = tuple(sorted(path.name for path in schemas.SCHEMA_DIR.glob("*.schema.json")))
INGESTION_MESSAGE = "ingestion-message.schema.json"
TIME = "2024-05-01T12:00:00Z"
SOURCE_ID = "0b5b3c36-77a2-4bb6-9d43-6d4a0e8f2c1e"

PENDING = {
    "version": 1,
    "blobUrl": "https://account.blob.core.windows.net/staging/Db/T/donn%C3%A9es.csv",
    "container": "staging",
    "blobName": "Db/T/données.csv",
    "etag": '"0x8DC0"',
    "size": 10,
    "rawSize": None,
    "sourceId": SOURCE_ID,
    "database": "Db",
    "table": "T",
    "properties": {"format": "csv", "tags": ["a"], "creationTime": TIME},
    "recordedAt": TIME,
}
VALID: dict[str, Any] = {
    schemas.PENDING_BLOB: PENDING,
    schemas.FAILURE_NOTIFICATION: failure_notification(
        error_code="Routing_NoRoute",
        details="no route",
        origin="routing",
        blob_url="https://account.blob.core.windows.net/staging/x.csv",
        blob_name="x.csv",
        failed_on=TIME,
    ),
    schemas.TRACKING_RECORD: {
        "version": 1,
        "database": "Db",
        "table": "T",
        "operationId": "op-1",
        "mode": "rest",
        "submittedAt": TIME,
        "polls": 2,
        "blobs": [
            {
                "sourceId": SOURCE_ID,
                "blobUrl": PENDING["blobUrl"],
                "container": "staging",
                "blobName": PENDING["blobName"],
                "pending": PENDING,
            }
        ],
    },
    schemas.INGEST_REQUEST: {
        "timestamp": TIME,
        "blobs": [{"url": "https://account.blob.core.windows.net/staging/x.csv?sig=s", "sourceId": SOURCE_ID, "rawSize": 1}],
        "properties": {"format": "csv", "enableTracking": True, "creationTime": TIME},
    },
    schemas.ROUTING_RULES: [{"path": "a/{table}/*.csv", "database": "D", "tags": ["x"], "skipBatching": True}],
    schemas.ALERT: {
        "alertKey": "KUSTO_INGESTION_FAILURE",
        "errorCode": "Routing_NoRoute",
        "failureStatus": "Permanent",
        "origin": "routing",
        "database": "",
        "table": "",
        "blobPath": "https://account.blob.core.windows.net/staging/x.csv",
        "blobName": "x.csv",
        "operationId": "",
        "sourceId": "",
        "rootActivityId": "",
        "failedOn": TIME,
        "shouldRetry": False,
        "details": "no route",
        "queueName": "ingest-failures",
        "messageId": "m",
        "dequeueCount": 1,
    },
    INGESTION_MESSAGE: {
        "Id": SOURCE_ID,
        "BlobPath": "https://account.blob.core.windows.net/staging/x.csv;managed_identity=system",
        "DatabaseName": "Db",
        "TableName": "T",
        "RetainBlobOnSuccess": True,
        "FlushImmediately": False,
        "ReportLevel": 0,
        "ReportMethod": 0,
        "SourceMessageCreationTime": TIME,
        "AdditionalProperties": {"authorizationContext": "token", "format": "csv", "creationTime": TIME},
    },
}

DATE_TIME_FIELDS: dict[str, tuple[tuple[Any, ...], ...]] = {
    schemas.PENDING_BLOB: (("recordedAt",), ("properties", "creationTime")),
    schemas.FAILURE_NOTIFICATION: (("FailedOn",),),
    schemas.TRACKING_RECORD: (("submittedAt",),),
    schemas.INGEST_REQUEST: (("timestamp",), ("properties", "creationTime")),
    INGESTION_MESSAGE: (("SourceMessageCreationTime",), ("AdditionalProperties", "creationTime")),
}


def _elapsed(text: str) -> float:
    # submission.Submitter._too_old (recordedAt) and tracking._track (submittedAt) read a time exactly so.
    return (datetime.now(UTC) - datetime.fromisoformat(text.replace("Z", "+00:00"))).total_seconds()


def _in_utc(text: str) -> datetime:
    # routing._creation_time and anything that shows a time in UTC.
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


READERS: tuple[Callable[[str], object], ...] = (_elapsed, _in_utc)


def get(message: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        message = message[step]
    return message


def assert_readable(schema: str, message: Any) -> None:
    """Every date-time of an accepted message can be read by the app's readers."""
    for path in DATE_TIME_FIELDS.get(schema, ()):
        try:
            value = get(message, path)
        except (KeyError, IndexError, TypeError):
            continue
        if isinstance(value, str):
            for reader in READERS:
                reader(value)


def parse_or_error(schema: str, text: str | bytes) -> Any:
    try:
        return schemas.parse(schema, text)
    except schemas.MessageError as error:
        assert str(error).startswith(f"{schema}: $")
        return error


def assert_accepted_message_is_sound(schema: str, message: Any) -> None:
    """A message parse accepted is valid, readable and written back as the same UTF-8 JSON text."""
    schemas.validate(schema, message)
    assert_readable(schema, message)
    text = schemas.dump(schema, message)
    text.encode("utf-8")
    assert schemas.parse(schema, text) == message


TEXTS = st.one_of(
    JSON_ODDITIES,
    json_text(),
    st.sampled_from(SCHEMA_FILES).flatmap(lambda schema: json_text(st.just(VALID[schema]))),
    ANY_TEXT,
    st.binary(max_size=64),
    ANY_TEXT.map(lambda text: text.encode("utf-8", "surrogatepass")),
)


@settings(max_examples=300, deadline=None)
@given(schema=st.sampled_from(SCHEMA_FILES), text=TEXTS)
@example(schema=schemas.PENDING_BLOB, text="[" * 100_000)
@example(schema=schemas.FAILURE_NOTIFICATION, text="[" * 990 + "]" * 990)
@example(schema=schemas.TRACKING_RECORD, text="1" * 5000)
@example(schema=schemas.FAILURE_NOTIFICATION, text='{"a": NaN}')
@example(schema=schemas.FAILURE_NOTIFICATION, text=b'"\xed\xa0\x80"')
def test_parse_of_any_text_gives_a_sound_message_or_a_message_error(schema: str, text: str | bytes) -> None:
    outcome = parse_or_error(schema, text)
    if not isinstance(outcome, schemas.MessageError):
        assert_accepted_message_is_sound(schema, outcome)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, Any]:
    """A valid message of some schema with one to three of its values replaced, removed or added to."""
    schema = draw(st.sampled_from(SCHEMA_FILES))
    message = copy.deepcopy(VALID[schema])
    for _ in range(draw(st.integers(1, 3))):
        paths: list[tuple[Any, ...]] = []

        def walk(node: Any, path: tuple[Any, ...], paths: list[tuple[Any, ...]] = paths) -> None:
            items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
            for key, child in items:
                paths.append((*path, key))
                walk(child, (*path, key))

        walk(message, ())
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = get(message, path[:-1])
        action = draw(st.sampled_from(("replace", "datetime", "remove", "add")))
        if action == "remove":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(ANY_TEXT)] = draw(JSON_VALUES)
        else:
            parent[path[-1]] = draw(DATETIME_TEXT if action == "datetime" else JSON_VALUES)
    return schema, message


@settings(max_examples=400, deadline=None)
@given(case=mutated(), ascii_only=st.booleans())
def test_validate_dump_and_parse_of_any_value_agree_and_raise_only_message_error(case: tuple[str, Any], ascii_only: bool) -> None:
    schema, message = case
    try:
        schemas.validate(schema, message)
    except schemas.MessageError:
        valid = False
    else:
        valid = True
    try:
        text = schemas.dump(schema, message)
    except schemas.MessageError:
        pass
    else:
        assert valid, "dump wrote a message validate refuses"
        assert json.loads(text, parse_constant=pytest.fail) == message
        assert schemas.parse(schema, text.encode("utf-8")) == message
    # What another writer (NaN allowed, lone surrogates escaped or not) would put on the queue.
    outcome = parse_or_error(schema, json.dumps(message, ensure_ascii=ascii_only))
    if not isinstance(outcome, schemas.MessageError):
        assert_accepted_message_is_sound(schema, outcome)


# Not blobs[].pending of a tracking record: that schema leaves it open on purpose; shared.staging_area checks it
# as a pending-blob message before the tracker acts on it, and dump checks it again when it is resubmitted.
DATE_TIME_CASES = [(schema, path) for schema, paths in DATE_TIME_FIELDS.items() for path in paths]


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(DATE_TIME_CASES), value=DATETIME_TEXT)
@example(case=(schemas.PENDING_BLOB, ("recordedAt",)), value="0001-01-01T00:00:00+14:00")
@example(case=(schemas.PENDING_BLOB, ("properties", "creationTime")), value="9999-12-31T23:59:59-14:00")
@example(case=(schemas.TRACKING_RECORD, ("submittedAt",)), value="2024-01-01T00:00:00z")
@example(case=(schemas.PENDING_BLOB, ("recordedAt",)), value="2016-12-31T23:59:60Z")
def test_every_date_time_a_schema_accepts_can_be_read(case: tuple[str, tuple[Any, ...]], value: str) -> None:
    schema, path = case
    message = copy.deepcopy(VALID[schema])
    get(message, path[:-1])[path[-1]] = value
    try:
        text = schemas.dump(schema, message)
    except schemas.MessageError as error:
        assert error.path == "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in path), error
        return
    for reader in READERS:
        reader(value)
    assert schemas.parse(schema, text) == message


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@settings(max_examples=60, deadline=None)
@given(
    schema=st.sampled_from(SCHEMA_FILES),
    depth=st.sampled_from((50, 900, 995, 3000, 100_000)),
    leaf=st.sampled_from((1, 10**5000, float("nan"), "\ud800", str(uuid.UUID(int=0)))),
    where=st.sampled_from(("root", "field", "extra")),
)
def test_deep_huge_and_non_json_python_values_raise_only_message_error(schema: str, depth: int, leaf: Any, where: str) -> None:
    value = nested(depth, leaf)
    message: Any = copy.deepcopy(VALID[schema])
    if where == "root":
        message = value
    elif isinstance(message, dict):
        message["Extra" if where == "extra" else next(iter(message))] = value
    else:
        message[0]["name" if where == "field" else "extra"] = value
    with contextlib.suppress(schemas.MessageError):
        schemas.validate(schema, message)
    try:
        text = schemas.dump(schema, message)
    except schemas.MessageError:
        return
    # Only an open field ("additionalProperties": true) holds such a value; a text as deep as the interpreter's
    # recursion limit may be refused by parse as nested too deeply, but never with another exception.
    outcome = parse_or_error(schema, text.encode("utf-8"))
    assert isinstance(outcome, schemas.MessageError) or outcome == message
