"""Tracker + blob outcomes through Azurite and the Kusto emulator, driving the emulator's fault injection."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from azure.storage.queue import QueueClient

from devhost.processes import Azurite, Emulator
from shared import schemas
from shared.redaction import REDACTED, plain_blob_url
from shared.services import Services
from shared.times import utc_now_iso
from shared.tracking import poll_operations
from tests.integration.outcome_helpers import (
    blob_names,
    create_table,
    drain,
    failure_notifications,
    set_faults,
    stage,
    submit,
    track_until_settled,
)
from tests.integration.outcome_helpers import make_services as _make_services
from tests.support.waiting import wait_for

SECRET_MARKERS = ("sig=", "AccountKey", "Eby8vdM02", "Bearer ")


@pytest.fixture(autouse=True)
def _no_faults(emulator: Emulator) -> Iterator[None]:
    set_faults(emulator, failBlobs=[], throttleRate=0, errorRate=0, latencyMs=0)
    yield
    set_faults(emulator, failBlobs=[], throttleRate=0, errorRate=0, latencyMs=0)


@pytest.fixture
def table(emulator: Emulator, unique_name: str) -> str:
    name = f"T{unique_name}"
    create_table(emulator, name)
    return name


def make_services(azurite: Azurite, emulator: Emulator, unique_name: str, **overrides: str) -> Services:
    return _make_services(azurite, emulator, unique_name, **overrides)


def assert_no_secrets(texts: list[str]) -> None:
    for text in texts:
        for marker in SECRET_MARKERS:
            assert marker not in text, f"{marker!r} leaked into: {text[:300]}"


def test_success_logs_one_record_and_deletes_the_staged_blob(
    azurite: Azurite, emulator: Emulator, unique_name: str, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    services = make_services(azurite, emulator, unique_name, DELETE_ON_SUCCESS="true")
    stage(services, table, "good-1.csv")
    stage(services, table, "good-2.csv")
    submit(services)

    track_until_settled(services)

    assert failure_notifications(services) == []
    assert blob_names(services, services.settings.staging_container) == []
    finished = [r for r in caplog.records if r.name == "shared.tracking" and "finished after" in r.getMessage()]
    assert len(finished) == 1
    dims = finished[0].custom_dimensions
    assert (dims["database"], dims["table"], dims["blobsSucceeded"], dims["blobsFailed"]) == ("OutcomeDb", table, 2, 0)
    assert dims["durationSeconds"] >= 0
    assert_no_secrets([r.getMessage() for r in caplog.records])


def test_success_keeps_the_blob_without_cleanup(azurite: Azurite, emulator: Emulator, unique_name: str, table: str) -> None:
    services = make_services(azurite, emulator, unique_name)
    stage(services, table, "kept.csv")
    submit(services)
    track_until_settled(services)
    assert failure_notifications(services) == []
    assert blob_names(services, services.settings.staging_container) == [f"OutcomeDb/{table}/kept.csv"]


def test_permanent_failure_alerts_once_and_quarantines(
    azurite: Azurite, emulator: Emulator, unique_name: str, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    quarantine = f"{unique_name}-quarantine"
    services = make_services(azurite, emulator, unique_name, QUARANTINE_CONTAINER=quarantine, DELETE_ON_SUCCESS="true")
    set_faults(emulator, failBlobs=[{"pattern": f"bad-{unique_name}*", "errorCode": "BadRequest_InvalidMapping"}])
    stage(services, table, f"bad-{unique_name}.csv")
    stage(services, table, "fine.csv")
    submit(services)

    track_until_settled(services)

    notifications = failure_notifications(services)
    assert len(notifications) == 1
    n = notifications[0]
    assert (n["ErrorCode"], n["FailureStatus"], n["Origin"]) == ("BadRequest_InvalidMapping", "Permanent", "ingestion")
    assert n["BlobName"] == f"OutcomeDb/{table}/bad-{unique_name}.csv"
    assert n["OperationId"] and n["IngestionSourceId"]
    assert f"moved to {quarantine}/" in n["Details"]
    # The failed blob moved to quarantine with its error named; the good one was cleaned up after success.
    assert blob_names(services, services.settings.staging_container) == []
    assert blob_names(services, quarantine) == [f"OutcomeDb/{table}/bad-{unique_name}.csv"]
    metadata = (
        services.blob_service.get_blob_client(quarantine, f"OutcomeDb/{table}/bad-{unique_name}.csv")
        .get_blob_properties()
        .metadata
    )
    assert metadata["errorcode"] == "BadRequest_InvalidMapping"
    assert metadata["operationid"] == n["OperationId"]
    assert_no_secrets([r.getMessage() for r in caplog.records] + [str(n)])


def test_permanent_failure_without_quarantine_leaves_the_blob(
    azurite: Azurite, emulator: Emulator, unique_name: str, table: str
) -> None:
    services = make_services(azurite, emulator, unique_name)
    set_faults(emulator, failBlobs=[{"pattern": f"bad-{unique_name}*", "errorCode": "Stream_WrongNumberOfFields"}])
    stage(services, table, f"bad-{unique_name}.csv")
    submit(services)
    track_until_settled(services)
    assert [n["ErrorCode"] for n in failure_notifications(services)] == ["Stream_WrongNumberOfFields"]
    assert blob_names(services, services.settings.staging_container) == [f"OutcomeDb/{table}/bad-{unique_name}.csv"]


def test_transient_failure_is_resubmitted_then_succeeds(
    azurite: Azurite, emulator: Emulator, unique_name: str, table: str
) -> None:
    services = make_services(azurite, emulator, unique_name, RESUBMIT_MAX_ATTEMPTS="2", DELETE_ON_SUCCESS="true")
    set_faults(emulator, failBlobs=[{"pattern": f"flaky-{unique_name}*", "errorCode": "General_InternalServerError"}])
    stage(services, table, f"flaky-{unique_name}.csv")
    submit(services)
    reports = track_until_settled(services)
    assert sum(r.blobs["resubmitted"] for r in reports) == 1
    assert failure_notifications(services) == []
    pending = drain(services, services.settings.pending_queue)
    assert [schemas.parse(schemas.PENDING_BLOB, text)["attempt"] for text in pending] == [1]
    # Put the message back as the tracker left it, lift the fault: the second attempt succeeds, no alert at all.
    services.pending_queue.send_message(pending[0])
    set_faults(emulator, failBlobs=[])
    submit(services)
    track_until_settled(services)
    assert failure_notifications(services) == []
    assert blob_names(services, services.settings.staging_container) == []


def test_transient_failure_until_exhausted_alerts_once(
    azurite: Azurite, emulator: Emulator, unique_name: str, table: str
) -> None:
    quarantine = f"{unique_name}-quarantine"
    services = make_services(azurite, emulator, unique_name, RESUBMIT_MAX_ATTEMPTS="2", QUARANTINE_CONTAINER=quarantine)
    set_faults(emulator, failBlobs=[{"pattern": f"flaky-{unique_name}*", "errorCode": "General_InternalServerError"}])
    stage(services, table, f"flaky-{unique_name}.csv")
    for _ in range(3):
        submit(services)
        track_until_settled(services)
    notifications = failure_notifications(services)
    assert [(n["ErrorCode"], n["FailureStatus"]) for n in notifications] == [("General_InternalServerError", "Exhausted")]
    assert "after 2 resubmission(s)" in notifications[0]["Details"]
    assert drain(services, services.settings.pending_queue) == []
    assert blob_names(services, quarantine) == [f"OutcomeDb/{table}/flaky-{unique_name}.csv"]
    assert blob_names(services, services.settings.staging_container) == []


def test_tracking_timeout_names_each_pending_blob(azurite: Azurite, emulator: Emulator, unique_name: str, table: str) -> None:
    services = make_services(azurite, emulator, unique_name, TRACKING_HORIZON_SECONDS="60")
    stage(services, table, "real.csv")
    submit(services)
    record = schemas.parse(schemas.TRACKING_RECORD, drain(services, services.settings.tracking_queue)[0])
    wait_until_finished(services, record)
    # Two blobs Kusto never reports on, in an operation older than the horizon.
    ghost_blobs = [services.staging.blob(f"OutcomeDb/{table}/ghost-{i}.csv") for i in (1, 2)]
    ghosts = [
        {
            "sourceId": str(uuid.uuid4()),
            "blobUrl": plain_blob_url(blob.url),
            "container": blob.container_name,
            "blobName": blob.blob_name,
        }
        for blob in ghost_blobs
    ]
    record["blobs"] += ghosts
    record["submittedAt"] = "2020-01-01T00:00:00Z"
    services.tracking_queue.send_message(schemas.dump(schemas.TRACKING_RECORD, record))

    report = poll_operations(services)

    assert (report.received, report.timed_out) == (1, 1)
    assert (report.blobs["succeeded"], report.blobs["timedOut"]) == (1, 2)
    notifications = failure_notifications(services)
    assert sorted(n["BlobName"] for n in notifications) == [f"OutcomeDb/{table}/ghost-1.csv", f"OutcomeDb/{table}/ghost-2.csv"]
    assert {(n["ErrorCode"], n["FailureStatus"], n["Origin"]) for n in notifications} == {
        ("Tracking_TimedOut", "Unknown", "tracking")
    }
    assert services.tracking_queue.get_queue_properties().approximate_message_count == 0


def test_unknown_old_operation_alerts_status_failed(azurite: Azurite, emulator: Emulator, unique_name: str, table: str) -> None:
    services = make_services(azurite, emulator, unique_name)
    stage(services, table, "lost.csv")
    submit(services)
    record = schemas.parse(schemas.TRACKING_RECORD, drain(services, services.settings.tracking_queue)[0])
    record["operationId"] = "00000000-0000-0000-0000-000000000000"
    young = {**record, "submittedAt": utc_now_iso()}
    services.tracking_queue.send_message(schemas.dump(schemas.TRACKING_RECORD, young))
    # A young operation Kusto does not know yet (404) is asked about again later, without an alert.
    assert poll_operations(services).rescheduled == 1
    assert failure_notifications(services) == []
    drain(services, services.settings.tracking_queue)
    services.tracking_queue.send_message(schemas.dump(schemas.TRACKING_RECORD, {**record, "submittedAt": "2020-01-01T00:00:00Z"}))
    poll_operations(services)
    notifications = failure_notifications(services)
    assert [(n["ErrorCode"], n["FailureStatus"]) for n in notifications] == [("Tracking_StatusFailed", "Unknown")]


def wait_until_finished(services: Services, record: dict) -> None:
    def finished() -> bool:
        status = services.kusto.get_status(record["database"], record["table"], record["operationId"], details=True)
        return bool(status.blobs) and all(blob.finished for blob in status.blobs)

    wait_for(finished, "the emulator to finish the operation")


def test_malformed_tracking_message_alerts_and_is_deleted(azurite: Azurite, emulator: Emulator, unique_name: str) -> None:
    services = make_services(azurite, emulator, unique_name)
    services.tracking_queue.send_message('{"version": 1, "database": "X", "note": "https://a/b?sig=abc"}')
    # A message that is not even base64 (written by hand, without the encode policy) must alert too.
    QueueClient.from_connection_string(azurite.connection_string, services.settings.tracking_queue).send_message("{not json")
    report = poll_operations(services)
    notifications = failure_notifications(services)
    assert report.malformed == 2 and len(notifications) == 2
    assert {n["ErrorCode"] for n in notifications} == {"Tracking_MalformedRecord"}
    details = " ".join(n["Details"] for n in notifications)
    assert "sig=abc" not in details and REDACTED in details and "{not json" in details
    assert services.tracking_queue.get_queue_properties().approximate_message_count == 0


def test_throttled_status_hides_the_message_for_retry_after(
    azurite: Azurite, emulator: Emulator, unique_name: str, table: str
) -> None:
    services = make_services(azurite, emulator, unique_name)
    stage(services, table, "throttled.csv")
    submit(services)
    set_faults(emulator, throttleRate=1.0, retryAfterSeconds=30)
    report = poll_operations(services)
    assert report.throttled == 1 and report.rescheduled == 0
    # Hidden for Retry-After: the next run finds nothing to poll; the message still exists.
    set_faults(emulator, throttleRate=0)
    assert poll_operations(services).received == 0
    assert services.tracking_queue.get_queue_properties().approximate_message_count == 1


def test_queue_mode_record_is_left_to_the_relay(azurite: Azurite, emulator: Emulator, unique_name: str, table: str) -> None:
    services = make_services(azurite, emulator, unique_name)
    stage(services, table, "queued.csv")
    submit(services)
    record = schemas.parse(schemas.TRACKING_RECORD, drain(services, services.settings.tracking_queue)[0])
    record["operationId"] = f"queue;{uuid.uuid4()}"
    record["submittedAt"] = "2020-01-01T00:00:00Z"
    services.tracking_queue.send_message(schemas.dump(schemas.TRACKING_RECORD, record))
    report = poll_operations(services)
    assert (report.received, report.relayed) == (1, 1)
    assert failure_notifications(services) == []
    assert services.tracking_queue.get_queue_properties().approximate_message_count == 0
