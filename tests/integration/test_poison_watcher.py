"""Poison queue watcher through Azurite: every poison message becomes exactly one alert and is kept for a replay,
nothing loops."""

from __future__ import annotations

import json
import logging

import pytest
from azure.storage.queue import QueueClient

from devhost.processes import Azurite, Emulator
from shared import schemas
from shared.alerts import ALERT_KEY
from shared.notifications import failure_notification
from shared.poison import BLOB_TRIGGER_POISON_QUEUE, kept_queue, watch_poison_queues
from shared.storage import ensure_queue
from tests.integration.outcome_helpers import drain, failure_notifications, make_services

PENDING = {
    "version": 1,
    "blobUrl": "http://127.0.0.1/devstoreaccount1/staging/Db/Events/a.csv",
    "container": "staging",
    "blobName": "Db/Events/a.csv",
    "etag": '"0x1"',
    "size": 10,
    "sourceId": "2f1e3c59-5d4c-4f63-9a0e-4b7a8a0f0001",
    "database": "Db",
    "table": "Events",
    "properties": {"format": "csv"},
    "recordedAt": "2026-01-01T00:00:00Z",
}


def test_each_poison_queue_alerts_is_kept_and_is_emptied(
    azurite: Azurite, emulator: Emulator, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    services = make_services(azurite, emulator, unique_name)
    settings = services.settings
    # The blob trigger's poison queues have fixed names: start from empty ones (other tests share this Azurite).
    for name in (BLOB_TRIGGER_POISON_QUEUE, kept_queue(BLOB_TRIGGER_POISON_QUEUE)):
        shared_queue = services.raw_queue(name)
        ensure_queue(shared_queue)
        shared_queue.clear_messages()

    def poison(queue_name: str, text: str) -> QueueClient:
        queue = services.raw_queue(queue_name)
        ensure_queue(queue)
        queue.send_message(text)
        return queue

    tracking = {
        "version": 1,
        "database": "Db",
        "table": "Events",
        "operationId": "op-9",
        "submittedAt": "2026-01-01T00:00:00Z",
        "blobs": [
            {
                "sourceId": PENDING["sourceId"],
                "blobUrl": PENDING["blobUrl"],
                "container": "staging",
                "blobName": "Db/Events/a.csv",
            },
            {
                "sourceId": "2f1e3c59-5d4c-4f63-9a0e-4b7a8a0f0002",
                "blobUrl": PENDING["blobUrl"] + "2",
                "container": "staging",
                "blobName": "b",
            },
        ],
    }
    poison(settings.pending_poison_queue, json.dumps(PENDING))
    # Plain text too long to be written to a queue again once base64-encoded: alerted, not kept.
    too_large = "not base64 " * 4500
    QueueClient.from_connection_string(azurite.connection_string, settings.pending_poison_queue).send_message(too_large)
    poison(settings.tracking_poison_queue, json.dumps(tracking))
    # Not base64, not JSON, and carrying a SAS: still one alert, with the secret redacted.
    QueueClient.from_connection_string(azurite.connection_string, settings.tracking_poison_queue).send_message(
        "garbage https://x/y?sv=1&sig=TOPSECRET"
    )
    poison(
        BLOB_TRIGGER_POISON_QUEUE,
        json.dumps(
            {"FunctionId": "f", "BlobType": "BlockBlob", "ContainerName": "staging", "BlobName": "Db/Events/c.csv", "ETag": "e"}
        ),
    )
    failed = schemas.dump(
        schemas.FAILURE_NOTIFICATION,
        failure_notification(
            error_code="BadRequest_InvalidMapping", details="d", origin="ingestion", database="Db", table="Events"
        ),
    )
    poison(settings.failures_poison_queue, failed)

    assert watch_poison_queues(services) == 6

    notifications = failure_notifications(services)
    by_code: dict[str, list] = {}
    for n in notifications:
        by_code.setdefault(n["ErrorCode"], []).append(n)
    assert sorted((code, len(items)) for code, items in by_code.items()) == [
        ("Poison_BlobTrigger", 1),
        ("Poison_PendingQueue", 2),
        ("Poison_TrackingQueue", 3),
    ]
    assert {n["Origin"] for n in notifications} == {"poison"} and {n["FailureStatus"] for n in notifications} == {"Exhausted"}
    pending_alerts = {n["BlobName"]: n["Details"] for n in by_code["Poison_PendingQueue"]}
    assert sorted(pending_alerts) == ["", "Db/Events/a.csv"]
    assert "it was too large to keep and was removed after this alert" in pending_alerts[""]
    assert f"moved to queue {kept_queue(settings.pending_poison_queue)}" in pending_alerts["Db/Events/a.csv"]
    assert by_code["Poison_BlobTrigger"][0]["BlobName"] == "Db/Events/c.csv"
    assert sorted(n["BlobName"] for n in by_code["Poison_TrackingQueue"]) == ["", "Db/Events/a.csv", "b"]
    assert all(settings.tracking_poison_queue in n["Details"] for n in by_code["Poison_TrackingQueue"])
    # The failures poison message was not sent back to the failures queue (no loop): it was kept and logged.
    assert drain(services, kept_queue(settings.failures_poison_queue)) == [failed]
    # Every other message alerted is kept as well, as text, for `python -m shared.ops replay poison`.
    assert drain(services, kept_queue(settings.pending_poison_queue)) == [json.dumps(PENDING)]
    kept_tracking = drain(services, kept_queue(settings.tracking_poison_queue))
    assert sorted(kept_tracking) == sorted([json.dumps(tracking), "garbage https://x/y?sv=1&sig=TOPSECRET"])
    kept_host_messages = drain(services, kept_queue(BLOB_TRIGGER_POISON_QUEUE))
    assert [json.loads(text)["BlobName"] for text in kept_host_messages] == ["Db/Events/c.csv"]
    records = [r for r in caplog.records if r.name == "shared.alerts" and r.getMessage().startswith(ALERT_KEY)]
    assert len(records) == 1 and records[0].levelno == logging.ERROR
    assert records[0].custom_dimensions["errorCode"] == "Poison_FailuresQueue"
    assert records[0].custom_dimensions["queueName"] == settings.failures_poison_queue
    # Every poison queue is empty now, and a second run finds nothing.
    assert watch_poison_queues(services) == 0
    text = " ".join(json.dumps(n) for n in notifications) + " ".join(r.getMessage() + str(vars(r)) for r in caplog.records)
    assert "TOPSECRET" not in text
