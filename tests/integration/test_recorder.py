"""The blob trigger body against Azurite: real blobs in, real pending messages or failure notifications out."""

from __future__ import annotations

import gzip
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient, ContentSettings
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from devhost.processes import AZURITE_KEY, Azurite
from shared import error_codes, recorder, schemas
from shared.recorder import record_blob
from shared.services import Services, build_services, ensure_queues
from shared.settings import load_settings
from tests.integration.outcome_helpers import NO_KUSTO, app_settings

RULES = [
    {
        "name": "dated exports",
        "path": "exports/{table}/{yyyy}/{MM}/{dd}/*.csv",
        "database": "Exports",
        "ignoreFirstRecord": True,
        "tags": ["day:{yyyy}-{MM}-{dd}"],
    }
]


@dataclass
class Staging:
    """One test's container and queues on the shared Azurite, plus the services record_blob gets."""

    azurite: Azurite
    services: Services
    container: str

    def upload(self, name: str, data: bytes, **kwargs: Any) -> BlobClient:
        self.services.blob_service.get_blob_client(self.container, name).upload_blob(data, overwrite=True, **kwargs)
        return self.trigger_client(name)

    def trigger_client(self, name: str, connection_string: str | None = None) -> BlobClient:
        """A fresh SDK BlobClient, as the SDK-type blob trigger binding hands one over."""
        return BlobClient.from_connection_string(connection_string or self.azurite.connection_string, self.container, name)

    def _messages(self, queue: str, schema: str) -> list[dict[str, Any]]:
        reader = QueueClient.from_connection_string(
            self.azurite.connection_string, queue, message_decode_policy=TextBase64DecodePolicy()
        )
        return [schemas.parse(schema, message.content) for message in reader.peek_messages(max_messages=32)]

    def pending(self) -> list[dict[str, Any]]:
        return self._messages(self.services.settings.pending_queue, schemas.PENDING_BLOB)

    def failures(self) -> list[dict[str, Any]]:
        return self._messages(self.services.settings.failures_queue, schemas.FAILURE_NOTIFICATION)


def make_staging(azurite: Azurite, name: str, **settings: str) -> Staging:
    services = build_services(load_settings(app_settings(azurite, NO_KUSTO, name, STAGING_CONTAINER=name, **settings)))
    ensure_queues(services)
    services.blob_service.create_container(name)
    return Staging(azurite, services, name)


@pytest.fixture
def staging(azurite: Azurite, unique_name: str) -> Iterator[Staging]:
    env = make_staging(azurite, unique_name, ROUTING_RULES=json.dumps(RULES), ALLOWED_TARGETS="Telemetry.*,Exports.*,Meta.*")
    yield env
    env.services.blob_service.delete_container(unique_name)
    for queue in env.services.queues:
        queue.delete_queue()


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test here also checks that nothing it logged carries a SAS, a key or the Azurite key."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        text = record.getMessage() + json.dumps(getattr(record, "custom_dimensions", {}), default=str)
        for secret in ("sig=", "AccountKey", AZURITE_KEY):
            assert secret not in text, f"{record.name}: {text[:200]}"


def expected_source_id(blob: BlobClient) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{blob.url}#{blob.get_blob_properties().etag}"))


def test_plain_csv_becomes_one_pending_message(staging: Staging) -> None:
    blob = staging.upload("Telemetry/Events/2024/a.csv", b"a,b\n1,2\n", content_settings=ContentSettings(content_type="text/csv"))
    result = record_blob(blob, staging.services)
    assert result.outcome == recorder.PENDING and result.error_code is None
    [message] = staging.pending()
    assert message == result.message
    assert staging.failures() == []
    assert message["blobUrl"] == f"{staging.azurite.blob_endpoint}/{staging.container}/Telemetry/Events/2024/a.csv"
    assert (message["container"], message["blobName"]) == (staging.container, "Telemetry/Events/2024/a.csv")
    assert (message["database"], message["table"], message["properties"]) == ("Telemetry", "Events", {"format": "csv"})
    assert (message["size"], message["rawSize"]) == (8, 8)
    assert message["etag"] == blob.get_blob_properties().etag
    assert message["sourceId"] == expected_source_id(blob)


def test_gzip_blob_has_no_raw_size_unless_metadata_gives_it(staging: Staging) -> None:
    data = gzip.compress(b'{"a":1}\n' * 100)
    plain = record_blob(staging.upload("Telemetry/Events/x.json.gz", data), staging.services)
    sized = record_blob(staging.upload("Telemetry/Events/y.json.gz", data, metadata={"rawSizeBytes": "800"}), staging.services)
    by_name = {m["blobName"]: m for m in staging.pending()}
    assert by_name["Telemetry/Events/x.json.gz"] == plain.message
    assert (plain.message["size"], plain.message["rawSize"]) == (len(data), None)
    assert plain.message["properties"] == {"format": "multijson"}
    assert sized.message["rawSize"] == 800


def test_metadata_overrides_reach_the_pending_message(staging: Staging) -> None:
    metadata = {
        "kustoDatabase": "Meta",
        "kustoTable": "Overridden",
        "kustoDataFormat": "psv",
        "kustoIngestionMappingReference": "psv_map",
        "kustoIgnoreFirstRecord": "true",
        "kustoExtentTags": '["ingest-by:batch-7"]',
        "kustoCreationTime": "2023-06-01T12:00:00Z",
    }
    result = record_blob(staging.upload("Telemetry/Events/z.txt", b"a|b\n", metadata=metadata), staging.services)
    [message] = staging.pending()
    assert (message["database"], message["table"]) == ("Meta", "Overridden")
    assert message["properties"] == {
        "format": "psv",
        "ingestionMappingReference": "psv_map",
        "ignoreFirstRecord": True,
        "tags": ["ingest-by:batch-7"],
        "creationTime": "2023-06-01T12:00:00Z",
    }
    assert result.message == message


def test_rule_with_creation_time_from_the_path(staging: Staging) -> None:
    record_blob(staging.upload("exports/Orders/2024/02/29/part-1.csv", b"h\n1\n"), staging.services)
    [message] = staging.pending()
    assert (message["database"], message["table"]) == ("Exports", "Orders")
    assert message["properties"] == {
        "format": "csv",
        "ignoreFirstRecord": True,
        "tags": ["day:2024-02-29"],
        "creationTime": "2024-02-29T00:00:00Z",
    }


def test_non_ascii_blob_name_is_recorded_with_an_encoded_url_that_works(staging: Staging) -> None:
    name = "Telemetry/Events/données 日本 (1).csv"
    blob = staging.upload(name, b"x\n")
    record_blob(blob, staging.services)
    [message] = staging.pending()
    assert message["blobName"] == name
    assert message["blobUrl"].endswith("/Telemetry/Events/donn%C3%A9es%20%E6%97%A5%E6%9C%AC%20%281%29.csv")
    credential = {"account_name": "devstoreaccount1", "account_key": AZURITE_KEY}
    again = BlobClient.from_blob_url(message["blobUrl"], credential=credential).get_blob_properties()
    assert (again.name, again.etag) == (name, message["etag"])


def test_same_version_same_source_id_new_version_new_id(staging: Staging) -> None:
    blob = staging.upload("Telemetry/Events/v.csv", b"1\n")
    first = record_blob(blob, staging.services).message["sourceId"]
    assert record_blob(staging.trigger_client("Telemetry/Events/v.csv"), staging.services).message["sourceId"] == first
    assert record_blob(staging.upload("Telemetry/Events/v.csv", b"2\n"), staging.services).message["sourceId"] != first


def assert_one_failure(staging: Staging, result: recorder.RecordResult, code: str, name: str) -> dict[str, Any]:
    assert result.outcome == recorder.REJECTED and result.error_code == code
    assert staging.pending() == []
    [failure] = staging.failures()
    assert failure == result.message
    assert (failure["ErrorCode"], failure["Origin"], failure["FailureStatus"]) == (code, "routing", "Permanent")
    assert failure["BlobName"] == name
    assert repr(f"{staging.container}/{name}") in failure["Details"]
    return failure


def test_empty_blob_is_reported_once(staging: Staging) -> None:
    blob = staging.upload("Telemetry/Events/empty.csv", b"")
    failure = assert_one_failure(
        staging, record_blob(blob, staging.services), error_codes.ROUTING_EMPTY_BLOB, "Telemetry/Events/empty.csv"
    )
    assert (failure["Database"], failure["Table"]) == ("Telemetry", "Events")
    assert failure["IngestionSourceId"] == expected_source_id(blob)
    assert "empty (0 bytes)" in failure["Details"]


@pytest.mark.parametrize(
    ("name", "metadata", "code", "reason"),
    [
        ("Telemetry/Events/a%2fb.csv", {}, error_codes.ROUTING_INVALID_NAME, "percent-escape '%2f'"),
        ("Telemetry/Events/a?x=1.csv", {}, error_codes.ROUTING_INVALID_NAME, "contains '?'"),
        ("Telemetry/Events/a#b.csv", {}, error_codes.ROUTING_INVALID_NAME, "contains '#'"),
        ("Telemetry/Events/a\x01b.csv", {}, error_codes.ROUTING_INVALID_NAME, "control character"),
        ("Telemetry//Events/a.csv", {}, error_codes.ROUTING_INVALID_NAME, "empty path segment"),
        ("loose.csv", {}, error_codes.ROUTING_NO_ROUTE, "no routing rule matches"),
        ("Telemetry/Events/a.dat", {}, error_codes.ROUTING_UNKNOWN_FORMAT, "cannot tell the data format"),
        (
            "Secret/Payroll/a.csv",
            {},
            error_codes.ROUTING_TARGET_NOT_ALLOWED,
            "Secret.Payroll (from convention) is not in ALLOWED_TARGETS",
        ),
        ("Telemetry/Bad!Name/a.csv", {}, error_codes.ROUTING_INVALID_NAME, "'Bad!Name' is not a valid Kusto table name"),
        (
            "Telemetry/Events/b.csv",
            {"kustoIgnoreFirstRecord": "maybe"},
            error_codes.ROUTING_INVALID_METADATA,
            "'true' or 'false'",
        ),
        (
            "Telemetry/Events/c.csv",
            {"kustoCreationTime": "31/12/2024"},
            error_codes.ROUTING_INVALID_METADATA,
            "not an ISO 8601 time",
        ),
        ("Telemetry/Events/d.csv", {"padding": "x" * 9000}, error_codes.ROUTING_INVALID_METADATA, "at most 8192"),
        ("exports/Orders/2024/02/30/p.csv", {}, error_codes.ROUTING_INVALID_CREATION_TIME, "day is out of range"),
    ],
)
def test_unroutable_blob_is_reported_once_and_not_retried(
    staging: Staging, name: str, metadata: dict[str, str], code: str, reason: str
) -> None:
    blob = staging.upload(name, b"a,b\n", metadata=metadata)
    failure = assert_one_failure(staging, record_blob(blob, staging.services), code, name)
    assert reason in failure["Details"]


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        # Valid local times whose UTC time is before year 1 or after year 9999: they raised OverflowError (issue #23).
        ("kustoCreationTime", "0001-01-01T00:00:00+14:00", "outside the years 0001-9999 when converted to UTC"),
        ("kustoCreationTime", "9999-12-31T23:59:59-14:00", "outside the years 0001-9999 when converted to UTC"),
        # Found by tests/property: RecursionError, ValueError, UnicodeEncodeError and a pending message over int64.
        ("kustoExtentTags", "[" * 4000, "is not a JSON array"),
        ("kustoExtentTags", "[" + "1" * 5000 + "]", "is not a JSON array"),
        ("kustoExtentTags", '["\\ud800"]', "printable characters"),
        ("rawSizeBytes", "9223372036854775808", "at most 9223372036854775807"),
    ],
)
def test_metadata_that_crashed_the_trigger_is_reported_once(staging: Staging, key: str, value: str, reason: str) -> None:
    name = "Telemetry/Events/odd-metadata.csv"
    result = record_blob(staging.upload(name, b"a,b\n", metadata={key: value}), staging.services)
    failure = assert_one_failure(staging, result, error_codes.ROUTING_INVALID_METADATA, name)
    assert f"metadata {key.lower()}" in failure["Details"].lower()
    assert reason in failure["Details"]


def test_name_too_long_for_a_url_in_a_message_is_reported_once(staging: Staging) -> None:
    # 500 CJK characters are 4500 percent-encoded: the pending message could not hold the URL (MessageError).
    name = "Telemetry/Events/" + "日" * 500 + ".csv"
    failure = assert_one_failure(
        staging, record_blob(staging.upload(name, b"a\n"), staging.services), error_codes.ROUTING_INVALID_NAME, name
    )
    assert "percent-encoded in its URL" in failure["Details"]


def test_name_with_dot_segments_is_refused_before_any_request(staging: Staging) -> None:
    # Azure normalises '..' away, so such a request would read another blob: no request is made at all.
    blob = staging.trigger_client("Telemetry/Events/../Other/x.csv")
    failure = assert_one_failure(
        staging, record_blob(blob, staging.services), error_codes.ROUTING_INVALID_NAME, "Telemetry/Events/../Other/x.csv"
    )
    assert failure["IngestionSourceId"] == ""


def test_gzip_content_encoding_without_gz_name_is_reported(staging: Staging) -> None:
    blob = staging.upload(
        "Telemetry/Events/z.csv", gzip.compress(b"a\n"), content_settings=ContentSettings(content_encoding="gzip")
    )
    failure = assert_one_failure(
        staging, record_blob(blob, staging.services), error_codes.ROUTING_COMPRESSION_MISMATCH, "Telemetry/Events/z.csv"
    )
    assert "add .gz to the name" in failure["Details"]


def test_blob_deleted_before_it_was_read_is_reported(staging: Staging) -> None:
    blob = staging.trigger_client("Telemetry/Events/gone.csv")
    failure = assert_one_failure(
        staging, record_blob(blob, staging.services), error_codes.DOWNLOAD_SOURCE_NOT_FOUND, "Telemetry/Events/gone.csv"
    )
    assert "deleted before it could be read" in failure["Details"]


def test_other_storage_errors_propagate_so_the_host_retries(staging: Staging) -> None:
    staging.upload("Telemetry/Events/ok.csv", b"1\n")
    wrong_key = staging.azurite.connection_string.replace(AZURITE_KEY, "d3JvbmcgYnV0IHdlbGwtZm9ybWVkIGtleQ==")
    with pytest.raises(HttpResponseError) as caught:
        record_blob(staging.trigger_client("Telemetry/Events/ok.csv", wrong_key), staging.services)
    assert caught.value.status_code == 403
    assert staging.pending() == [] and staging.failures() == []


def test_nothing_is_lost_every_blob_ends_as_exactly_one_message(staging: Staging) -> None:
    uploads: dict[str, tuple[bytes, dict[str, str]]] = {
        "Telemetry/Events/1.csv": (b"1\n", {}),
        "Telemetry/Events/2.json.gz": (gzip.compress(b"{}\n"), {}),
        "Telemetry/Events/3.parquet": (b"PAR1....PAR1", {}),
        "Telemetry/Events/é 4.tsv": (b"1\t2\n", {}),
        "Telemetry/Events/5.csv": (b"", {}),
        "Telemetry/Events/6.bin": (b"x", {}),
        "Telemetry/Events/7%2f.csv": (b"x", {}),
        "nowhere.csv": (b"x", {}),
        "Other/Table/8.csv": (b"x", {}),
        "Telemetry/Events/9.csv": (b"x", {"kustoTable": "Nine"}),
        "Telemetry/Events/10.csv": (b"x", {"kustoExtentTags": "[broken"}),
    }
    outcomes = {
        name: record_blob(staging.upload(name, data, metadata=metadata), staging.services)
        for name, (data, metadata) in uploads.items()
    }
    pending = [m["blobName"] for m in staging.pending()]
    failed = [m["BlobName"] for m in staging.failures()]
    assert sorted(pending + failed) == sorted(uploads)
    assert sorted(pending) == sorted(n for n, r in outcomes.items() if r.outcome == recorder.PENDING)
    assert len(pending) == 5 and len(failed) == 6


def test_pending_message_too_large_for_a_queue_is_reported(azurite: Azurite, unique_name: str) -> None:
    rules = [{"path": "big/*.csv", "database": "Big", "table": "T", "tags": [f"{i:03d}" + "x" * 1000 for i in range(60)]}]
    env = make_staging(azurite, unique_name, ROUTING_RULES=json.dumps(rules))
    try:
        blob = env.upload("big/a.csv", b"1\n")
        failure = assert_one_failure(env, record_blob(blob, env.services), error_codes.ROUTING_MESSAGE_TOO_LARGE, "big/a.csv")
        assert "over the queue's 49152" in failure["Details"]
    finally:
        env.services.blob_service.delete_container(unique_name)
        for queue in env.services.queues:
            queue.delete_queue()
