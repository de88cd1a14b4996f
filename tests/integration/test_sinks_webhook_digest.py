"""Alert sinks through Azurite: the webhook (a local HTTP server that fails, then works) and the digest state."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from devhost.processes import Azurite, Emulator
from shared import schemas
from shared.alerts import raise_alert
from shared.digest import DigestBook, digest_key
from shared.notifications import failure_notification
from shared.services import Services
from shared.sinks import deliver, flush_digests
from shared.webhook import SIGNATURE_HEADER, WebhookError
from tests.integration.outcome_helpers import Receiver, make_services

SECRET = "hook-secret"


def services_for(azurite: Azurite, emulator: Emulator, unique_name: str, receiver: Receiver, **overrides: str) -> Services:
    return make_services(
        azurite,
        emulator,
        unique_name,
        ALERT_WEBHOOK_URL=receiver.url,
        ALERT_WEBHOOK_SECRET=SECRET,
        **overrides,
    )


def notification_text(error_code: str = "BadRequest_InvalidMapping", blob: str = "a.csv") -> str:
    return schemas.dump(
        schemas.FAILURE_NOTIFICATION,
        failure_notification(
            error_code=error_code,
            details="Kusto said no; it read https://acct.blob.core.windows.net/c/a.csv?sv=1&sig=SASSECRET",
            origin="ingestion",
            database="Db",
            table="Events",
            blob_url=f"https://acct.blob.core.windows.net/staging/Db/Events/{blob}?sig=SASSECRET",
            blob_name=f"Db/Events/{blob}",
        ),
    )


def trigger(services: Services, body: str, message_id: str) -> bool:
    """The log record, then the sinks: what `alert_once` does with these notifications, which name no blob version."""
    alert = raise_alert(body, queue_name=services.settings.failures_queue, message_id=message_id, dequeue_count=1)
    return deliver(alert, services)


def test_webhook_down_then_up_delivers_exactly_once(
    azurite: Azurite, emulator: Emulator, unique_name: str, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    services = services_for(azurite, emulator, unique_name, receiver, ALERT_DIGEST_WINDOW_SECONDS="0")
    receiver.failures = 100
    with pytest.raises(WebhookError):
        trigger(services, notification_text(), "m1")
    assert receiver.attempts == 4 and receiver.accepted == []  # the pipeline's 3 retries, then the queue's retry
    receiver.failures = 1
    assert trigger(services, notification_text(), "m1") is True
    assert len(receiver.accepted) == 1
    body, headers = receiver.accepted[0]
    assert headers[SIGNATURE_HEADER] == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    sent = receiver.bodies()[0]
    assert (sent["errorCode"], sent["database"], sent["table"]) == ("BadRequest_InvalidMapping", "Db", "Events")
    everything = body.decode() + " ".join(record.getMessage() + str(vars(record)) for record in caplog.records)
    assert "SASSECRET" not in everything and SECRET not in everything


def test_digest_folds_repeats_and_flushes_one_alert(
    azurite: Azurite, emulator: Emulator, unique_name: str, receiver: Receiver
) -> None:
    services = services_for(azurite, emulator, unique_name, receiver, ALERT_DIGEST_WINDOW_SECONDS="3600")
    assert trigger(services, notification_text(blob="1.csv"), "m1") is True
    assert [trigger(services, notification_text(blob=f"{i}.csv"), f"m{i}") for i in (2, 3, 4)] == [False, False, False]
    assert trigger(services, notification_text(blob="3.csv"), "m3") is False  # a retried message is not counted twice
    assert trigger(services, notification_text(error_code="Stream_NoDataToIngest"), "m5") is True  # another key
    receiver.failures = 100
    with pytest.raises(WebhookError):
        trigger(services, notification_text(error_code="Download_SourceNotFound"), "m6")
    receiver.failures = 0
    assert trigger(services, notification_text(error_code="Download_SourceNotFound"), "m6") is True  # the opener retried
    assert [body["errorCode"] for body in receiver.bodies()] == [
        "BadRequest_InvalidMapping",
        "Stream_NoDataToIngest",
        "Download_SourceNotFound",
    ]

    assert flush_digests(services) == 0  # windows still open
    close_windows(services)
    receiver.failures = 100
    assert flush_digests(services) == 0  # webhook down: the digest stays for the next run
    receiver.failures = 0
    assert flush_digests(services) == 1
    digest = receiver.bodies()[-1]
    assert (digest["type"], digest["errorCode"], digest["count"]) == ("ingestion-failure-digest", "BadRequest_InvalidMapping", 3)
    assert sorted(digest["samples"]) == [f"https://acct.blob.core.windows.net/staging/Db/Events/{i}.csv" for i in (2, 3, 4)]
    assert flush_digests(services) == 0
    assert list(services.blob_service.get_container_client(services.settings.state_container).list_blobs()) == []
    # After the window, the next failure of that key alerts at once again.
    assert trigger(services, notification_text(blob="9.csv"), "m9") is True


def test_concurrent_workers_count_every_failure_once(
    azurite: Azurite, emulator: Emulator, unique_name: str, receiver: Receiver
) -> None:
    services = services_for(azurite, emulator, unique_name, receiver, ALERT_DIGEST_WINDOW_SECONDS="3600")
    alert = raise_alert(notification_text(), queue_name="q", message_id="x", dequeue_count=1)
    container = services.blob_service.get_container_client(services.settings.state_container)
    book = DigestBook(container, 3600)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: book.record(alert.dimensions, f"id-{i}", datetime.now(UTC)), range(12)))
    assert results.count(True) == 1
    state = json.loads(container.get_blob_client(digest_key(alert.dimensions)).download_blob().readall())
    assert state["count"] == 11 and len(set(state["counted"])) == 11


def close_windows(services: Services) -> None:
    """Move every open window's end into the past (what waiting out the window would do)."""
    container = services.blob_service.get_container_client(services.settings.state_container)
    for item in container.list_blobs():
        blob = container.get_blob_client(item.name)
        state = json.loads(blob.download_blob().readall())
        state["windowEnd"] = "2000-01-01T00:00:00Z"
        blob.upload_blob(json.dumps(state), overwrite=True)
