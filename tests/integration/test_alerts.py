"""Failure notifications on a real Azurite queue, read as the queue trigger reads them, become alert records."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import BlobClient
from azure.storage.queue import QueueClient, QueueMessage

from devhost.processes import AZURITE_KEY, Azurite
from shared import schemas
from shared.alerts import ALERT_KEY, raise_alert
from shared.error_codes import ALERT_MALFORMED_NOTIFICATION as MALFORMED_NOTIFICATION
from shared.notifications import failure_notification
from shared.recorder import record_blob
from shared.services import Services, build_services, ensure_queues
from shared.settings import load_settings
from tests.integration.outcome_helpers import NO_KUSTO, app_settings

SIGNATURE = "c2VjcmV0LXNpZ25hdHVyZQ%3D%3D"


@pytest.fixture
def services(azurite: Azurite, unique_name: str) -> Iterator[Services]:
    settings = load_settings(app_settings(azurite, NO_KUSTO, unique_name, STAGING_CONTAINER=unique_name))
    built = build_services(settings)
    ensure_queues(built)
    built.blob_service.create_container(unique_name)
    yield built
    built.blob_service.delete_container(unique_name)
    for queue in built.queues:
        queue.delete_queue()


def receive_one(queue: QueueClient) -> QueueMessage:
    """Take the one message off the queue, as the trigger does (the decode policy turns base64 into text)."""
    [message] = list(queue.receive_messages(max_messages=32, visibility_timeout=60))
    queue.delete_message(message)
    return message


def alert_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "shared.alerts"]


def trigger(services: Services, caplog: pytest.LogCaptureFixture) -> tuple[Any, logging.LogRecord]:
    message = receive_one(services.failures_queue)
    caplog.clear()
    alert = raise_alert(
        message.content,
        queue_name=services.settings.failures_queue,
        message_id=message.id,
        dequeue_count=message.dequeue_count,
    )
    [record] = alert_records(caplog)
    assert record.getMessage().startswith(ALERT_KEY + " ")
    schemas.validate(schemas.ALERT, record.custom_dimensions)
    assert record.custom_dimensions["messageId"] == message.id
    assert record.custom_dimensions["dequeueCount"] == 1
    for text in (record.getMessage(), json.dumps(record.custom_dimensions)):
        for secret in (SIGNATURE, AZURITE_KEY):
            assert secret not in text
    return alert, record


def test_routing_failure_from_the_recorder_alerts_at_error(
    azurite: Azurite, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    name = "Telemetry/Events/empty.csv"
    services.blob_service.get_blob_client(services.settings.staging_container, name).upload_blob(b"")
    blob = BlobClient.from_connection_string(azurite.connection_string, services.settings.staging_container, name)
    recorded = record_blob(blob, services)
    alert, record = trigger(services, caplog)
    assert record.levelno == logging.ERROR
    assert alert.notification == recorded.message
    dimensions = record.custom_dimensions
    assert (dimensions["errorCode"], dimensions["origin"], dimensions["blobName"]) == ("Routing_EmptyBlob", "routing", name)
    assert (dimensions["database"], dimensions["table"]) == ("Telemetry", "Events")
    assert dimensions["blobPath"] == f"{azurite.blob_endpoint}/{services.settings.staging_container}/{name}"
    assert dimensions["queueName"] == services.settings.failures_queue


def test_transient_kusto_failure_alerts_at_warning_without_the_sas(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    notification = failure_notification(
        error_code="General_ThrottledIngestion",
        details=f"download of https://acct.blob.core.windows.net/c/x.csv?sv=2024&sig={SIGNATURE} throttled",
        origin="ingestion",
        database="Telemetry",
        table="Events",
        blob_url=f"https://acct.blob.core.windows.net/c/x.csv?sv=2024&sig={SIGNATURE}",
        failure_status="Transient",
        operation_id="op-9",
    )
    services.failures_queue.send_message(schemas.dump(schemas.FAILURE_NOTIFICATION, notification))
    alert, record = trigger(services, caplog)
    assert record.levelno == logging.WARNING
    assert alert.dimensions["blobPath"] == "https://acct.blob.core.windows.net/c/x.csv"
    assert alert.dimensions["operationId"] == "op-9"


def test_malformed_message_on_the_queue_still_alerts(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    services.failures_queue.send_message('{"ErrorCode": "Oops", "Details": "AccountKey=' + AZURITE_KEY + '"}')
    alert, record = trigger(services, caplog)
    assert record.levelno == logging.ERROR
    assert alert.error_code == MALFORMED_NOTIFICATION
    assert "is a required property" in record.custom_dimensions["validationError"]
    assert record.custom_dimensions["rawPayload"].startswith('{"ErrorCode": "Oops"')
