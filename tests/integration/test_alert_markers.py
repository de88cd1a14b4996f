"""One failure, one alert: repeated notifications of a failure already alerted are dropped (Azurite, a local webhook)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devhost.processes import Azurite, Emulator
from shared import schemas
from shared.alert_markers import AlertMarkers, marker_key
from shared.alerts import ALERT_KEY
from shared.housekeeping import housekeep
from shared.notifications import failure_notification
from shared.services import Services
from shared.sinks import alert_once
from shared.webhook import WebhookError
from tests.integration.outcome_helpers import Receiver, make_services, unreachable_container

SOURCE_ID = "4f0b4a3e-8d7c-5c55-9f2a-6c1d2e3f4a5b"


@pytest.fixture
def services(azurite: Azurite, emulator: Emulator, unique_name: str, receiver: Receiver) -> Iterator[Services]:
    made = make_services(azurite, emulator, unique_name, ALERT_WEBHOOK_URL=receiver.url, ALERT_DIGEST_WINDOW_SECONDS="0")
    yield made
    state = made.blob_service.get_container_client(made.settings.state_container)
    if state.exists():
        state.delete_container()


def notification(**overrides: Any) -> str:
    values: dict[str, Any] = {
        "error_code": "Stream_WrongNumberOfFields",
        "details": "row 2 has 2 fields, the table 3",
        "origin": "ingestion",
        "database": "Db",
        "table": "Events",
        "blob_url": "https://acct.blob.core.windows.net/staging/Db/Events/bad.csv",
        "blob_name": "Db/Events/bad.csv",
        "source_id": SOURCE_ID,
        "failure_status": "Permanent",
    }
    values.update(overrides)
    return schemas.dump(schemas.FAILURE_NOTIFICATION, failure_notification(**values))


def alert_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "shared.alerts" and record.msg.startswith(ALERT_KEY)]


def test_the_same_failure_reported_twice_alerts_once(
    services: Services, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first = alert_once(notification(operation_id="op-1"), services, message_id="m1", dequeue_count=1)
    # A second submission of the same blob version failed the same way: another operation, another message.
    again = alert_once(notification(operation_id="op-2"), services, message_id="m2", dequeue_count=1)
    assert first is not None and again is None
    assert len(alert_records(caplog)) == 1
    assert len(receiver.accepted) == 1
    assert any("repeats an alert already raised" in record.getMessage() for record in caplog.records)


def test_a_refused_webhook_is_retried_without_a_second_alert_record(
    services: Services, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    receiver.failures = 100
    with pytest.raises(WebhookError):
        alert_once(notification(), services, message_id="m1", dequeue_count=1)
    receiver.failures = 0
    assert alert_once(notification(), services, message_id="m1", dequeue_count=2) is not None
    assert alert_once(notification(), services, message_id="m1", dequeue_count=3) is None
    assert len(alert_records(caplog)) == 1
    assert len(receiver.accepted) == 1


def test_another_error_or_blob_version_is_another_alert(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    alert_once(notification(), services, message_id="m1", dequeue_count=1)
    alert_once(notification(error_code="Download_SourceNotFound"), services, message_id="m2", dequeue_count=1)
    alert_once(notification(source_id="5a1b4a3e-8d7c-5c55-9f2a-6c1d2e3f4a5b"), services, message_id="m3", dequeue_count=1)
    assert len(alert_records(caplog)) == 3


def test_a_notification_naming_no_blob_version_always_alerts(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    body = schemas.dump(
        schemas.FAILURE_NOTIFICATION,
        failure_notification(error_code="Pending_Malformed", details="not JSON", origin="submission"),
    )
    assert marker_key(schemas.parse(schemas.FAILURE_NOTIFICATION, body)) is None
    for message_id in ("m1", "m2"):
        assert alert_once(body, services, message_id=message_id, dequeue_count=1) is not None
    assert len(alert_records(caplog)) == 2


def test_markers_expire_after_the_window_and_housekeeping_deletes_them(services: Services) -> None:
    alert_once(notification(), services, message_id="m1", dequeue_count=1)
    key = marker_key(schemas.parse(schemas.FAILURE_NOTIFICATION, notification()))
    assert key is not None
    container = services.blob_service.get_container_client(services.settings.state_container)
    window = services.settings.duplicate_window_seconds
    later = AlertMarkers(container, window, clock=lambda: datetime.now(UTC) + timedelta(seconds=window + 60))
    assert services.alert_markers.state(key) == "delivered"
    assert later.state(key) is None
    housekeep(services)  # the markers are still within the window: kept
    assert container.get_blob_client(key).exists()
    # Past the window it counts as absent, yet it is kept as long as the reconciler's look-back needs it...
    assert later.forget_expired(services.settings.state_retention_seconds) == 0
    assert services.alert_markers.alerted_versions() == {
        schemas.parse(schemas.FAILURE_NOTIFICATION, notification())["IngestionSourceId"]
    }
    # ...and deleted once that has passed.
    assert later.forget_expired(window) == 1
    assert not container.get_blob_client(key).exists()


def test_a_marker_store_that_cannot_be_reached_still_alerts(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    unreachable = replace(services, alert_markers=AlertMarkers(unreachable_container(), 3600))
    assert alert_once(notification(), unreachable, message_id="m1", dequeue_count=1) is not None
    assert len(alert_records(caplog)) == 1
    assert "not readable" in caplog.text and "not written" in caplog.text
