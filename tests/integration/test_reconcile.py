"""Reconciliation through Azurite and the emulator: a blob whose event was lost is recorded once, and said so.

Also the state it reads: ledger records that name their operation, alert markers filed under their blob version
with what the alert said, both kept as long as the look-back needs.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from devhost.processes import Azurite, Emulator
from shared import error_codes
from shared.alert_markers import marker_key
from shared.reconcile import reconcile_staging, recorded_versions, staged_blobs, version_id
from shared.recorder import record_blob
from shared.services import Services
from shared.sinks import alert_once
from shared.submission_ledger import ACCEPTED, SENDING, SubmissionLedger, ledger_key
from tests.integration.outcome_helpers import DATABASE, create_table, drain, make_services, stage, submit

TABLE = "Reconciled"


@pytest.fixture
def services(azurite: Azurite, emulator: Emulator, unique_name: str) -> Services:
    create_table(emulator, TABLE)
    # No grace: the blobs a test uploads count as old enough at once.
    return make_services(azurite, emulator, unique_name, RECONCILE_GRACE_SECONDS="0")


def upload_without_event(services: Services, name: str, data: bytes = b"a,1\n") -> None:
    """A blob whose event never came: uploaded, never recorded."""
    services.blob_service.get_blob_client(services.settings.staging_container, name).upload_blob(data, overwrite=True)


def pending_names(services: Services) -> list[str]:
    return sorted(json.loads(text)["blobName"] for text in drain(services, services.settings.pending_queue))


def raise_alerts(services: Services) -> None:
    """What the failure queue trigger does with every notification waiting."""
    for text in drain(services, services.settings.failures_queue):
        alert_once(text, services, message_id=uuid.uuid4().hex, dequeue_count=1)


def test_a_blob_the_app_never_recorded_is_recorded_once_and_logged(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    stage(services, TABLE, "seen.csv")  # recorded by the trigger's code...
    submit(services)  # ...and submitted, so the ledger has it
    lost = f"{DATABASE}/{TABLE}/lost.csv"
    upload_without_event(services, lost)

    with caplog.at_level(logging.WARNING, logger="shared.reconcile"):
        report = reconcile_staging(services)

    assert (report.in_window, report.known, report.recovered) == (2, 1, 1)
    assert pending_names(services) == [lost]
    recovered = [record for record in caplog.records if record.getMessage().startswith(error_codes.RECONCILE_RECOVERED)]
    assert len(recovered) == 1 and lost in recovered[0].getMessage()
    assert recovered[0].custom_dimensions["blobName"] == lost  # type: ignore[attr-defined]


def test_the_reconciler_gives_a_listed_blob_the_id_the_blob_trigger_gives_it(services: Services) -> None:
    """A listing's ETag comes without quotes; the id must still be the trigger's, or every blob would be recovered."""
    blob = stage(services, TABLE, "same-id.csv")
    recorded = record_blob(blob, services).message["sourceId"]
    (listed,) = staged_blobs(services, prefix=f"{DATABASE}/{TABLE}/same-id")
    assert version_id(services, listed) == recorded


def test_a_recovered_blob_is_not_recovered_again_once_submitted_nor_a_blob_inside_the_grace(
    azurite: Azurite, emulator: Emulator, unique_name: str
) -> None:
    services = make_services(azurite, emulator, unique_name)  # the default grace: 30 minutes
    create_table(emulator, TABLE)
    upload_without_event(services, f"{DATABASE}/{TABLE}/fresh.csv")
    assert reconcile_staging(services).in_window == 0  # too young: its event may still come
    later = datetime.now(UTC) + timedelta(hours=1)
    assert reconcile_staging(services, now=later).recovered == 1
    submit(services)
    again = reconcile_staging(services, now=later)
    assert (again.known, again.recovered) == (1, 0)
    # Outside the look-back (a day by default), a blob is not looked at.
    assert reconcile_staging(services, now=later + timedelta(days=2)).in_window == 0


def test_a_blob_that_ended_in_an_alert_counts_as_recorded(services: Services) -> None:
    """An unroutable blob is alerted, never submitted: its alert marker is what says the app saw it."""
    upload_without_event(services, "no-route.csv")
    first = reconcile_staging(services)
    assert first.recovered == 1
    raise_alerts(services)
    second = reconcile_staging(services)
    assert (second.known, second.recovered) == (1, 0)
    assert drain(services, services.settings.failures_queue) == []


def test_ledger_records_name_the_operation_and_markers_keep_what_the_alert_said(services: Services) -> None:
    blob = stage(services, TABLE, "traced.csv")
    sid = record_blob(blob, services).message["sourceId"]
    submit(services)
    history = services.ledger.history(uuid.UUID(sid).bytes, since=0)
    assert [record.entry.state for record in history] == [SENDING, ACCEPTED]
    assert history[0].operation_id == ""
    assert history[1].operation_id  # the id Kusto answered with
    assert uuid.UUID(sid).bytes == ledger_key({"sourceId": sid})

    upload_without_event(services, "nowhere.csv")
    reconcile_staging(services)
    notification_text = drain(services, services.settings.failures_queue)[0]
    alert_once(notification_text, services, message_id="m1", dequeue_count=1)
    notification = json.loads(notification_text)
    key = marker_key(notification)
    assert key is not None and key.startswith(f"alerted/{notification['IngestionSourceId']}/")
    (alert,) = services.alert_markers.alerts_of(notification["IngestionSourceId"])
    assert alert.state == "delivered"
    assert alert.facts["errorcode"] == notification["ErrorCode"] == error_codes.ROUTING_NO_ROUTE
    assert alert.facts["details"] == notification["Details"][:1024]
    assert notification["IngestionSourceId"] in recorded_versions(services).alerted


def test_state_is_kept_as_long_as_the_look_back_needs(services: Services) -> None:
    settings = services.settings
    assert settings.state_retention_seconds == settings.reconcile_lookback_seconds + 3600 > settings.duplicate_window_seconds
    stage(services, TABLE, "kept.csv")
    submit(services)
    # Housekeeping's own call: nothing younger than the retention goes...
    assert services.ledger.forget_expired(settings.state_retention_seconds) == 0
    # ...and once the retention has passed, the slot goes.
    state = services.blob_service.get_container_client(settings.state_container)
    later = SubmissionLedger(
        state, settings.duplicate_window_seconds, clock=lambda: time.time() + settings.state_retention_seconds + 600
    )
    assert later.forget_expired(settings.state_retention_seconds) == 1
