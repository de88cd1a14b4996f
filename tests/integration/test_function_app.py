"""Each registered function's user code, called with the real input types, against Azurite and the emulator."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobClient

from devhost.processes import Azurite, Emulator
from shared import schemas, services
from shared.notifications import failure_notification
from shared.settings import SettingsError
from shared.storage import decode_message
from tests.integration.outcome_helpers import Receiver, app_settings
from tests.integration.test_submission import DATABASE, emulator_call, row_count, wait_for
from tests.unit.test_function_app import import_function_app

UNRESOLVED = "@Microsoft.KeyVault(SecretUri=https://vault1.vault.azure.net/secrets/alert-webhook/)"
"""What an app setting holds when Azure cannot resolve its Key Vault reference."""


@pytest.fixture
def overrides() -> dict[str, str]:
    """App settings a test adds to (or changes in) the fixture's; tests parametrize it."""
    return {}


@pytest.fixture
def environment(
    azurite: Azurite, emulator: Emulator, unique_name: str, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, str]
) -> Iterator[dict[str, str]]:
    """App settings for one test in the process environment, as the worker has them; a fresh services cache."""
    values = app_settings(azurite, emulator.url, unique_name, **({"BLOB_TRIGGER_SOURCE": "LogsAndContainerScan"} | overrides))
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    services.forget_process_services()
    yield values
    app_services = services.get_services("submit_pending")
    with contextlib.suppress(ResourceNotFoundError):
        app_services.blob_service.delete_container(values["STAGING_CONTAINER"])
    with contextlib.suppress(ResourceNotFoundError):
        app_services.blob_service.delete_container(values["STATE_CONTAINER"])
    for queue in app_services.queues:
        queue.delete_queue()
    services.forget_process_services()


@pytest.fixture
def functions(environment: dict[str, str]) -> dict[str, Any]:
    module = import_function_app(environment)
    return {function.get_function_name(): function.get_user_function() for function in module.app.get_functions()}


def test_blob_then_timer_then_rows(
    functions: dict[str, Any], environment: dict[str, str], emulator: Emulator, unique_name: str
) -> None:
    table = f"F{unique_name}"
    emulator_call(emulator, "POST", "/v1/rest/mgmt", {"db": DATABASE, "csl": f".create table {table} (name:string, value:long)"})
    app_services = services.get_services("submit_pending")
    app_services.blob_service.create_container(environment["STAGING_CONTAINER"])
    blob = BlobClient.from_connection_string(
        environment["StagingStorage"], environment["STAGING_CONTAINER"], f"{DATABASE}/{table}/a.csv"
    )
    blob.upload_blob(b"a,1\nb,2\nc,3\n")

    functions["record_staged_blob"](blob=blob)
    [pending] = app_services.pending_queue.peek_messages()
    assert schemas.parse(schemas.PENDING_BLOB, decode_message(pending.content))["table"] == table

    functions["submit_pending"](timer=TimerRequest(past_due=True))
    [tracking] = app_services.tracking_queue.receive_messages()
    record = schemas.parse(schemas.TRACKING_RECORD, tracking.content)
    assert [b["blobName"] for b in record["blobs"]] == [f"{DATABASE}/{table}/a.csv"]
    wait_for(lambda: row_count(emulator, table) == 3, "3 rows")


def test_failure_message_becomes_an_alert(functions: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    notification = failure_notification(
        error_code="BadRequest_EmptyBlob", details="empty", origin="ingestion", database=DATABASE, table="T", blob_name="x.csv"
    )
    body = json.dumps(notification)
    message = QueueMessage(id="m-1", body=body, dequeue_count=1, pop_receipt="p", insertion_time=None)
    with caplog.at_level(logging.INFO):
        functions["alert_on_failure"](message=message)
    assert any("BadRequest_EmptyBlob" in record.getMessage() and record.name == "shared.alerts" for record in caplog.records)


def test_housekeeping_turns_a_poisoned_pending_message_into_a_failure_notification(functions: dict[str, Any]) -> None:
    app_services = services.get_services("housekeeping")
    app_services.pending_poison_queue.send_message('{"version": 1, "note": "left behind"}')
    functions["track_outcomes"](timer=TimerRequest(past_due=False))
    functions["housekeeping"](timer=TimerRequest(past_due=False))
    notifications = [
        schemas.parse(schemas.FAILURE_NOTIFICATION, m.content) for m in app_services.failures_queue.receive_messages()
    ]
    # The session's Azurite is shared: other tests may have left messages in webjobs-blobtrigger-poison.
    from_pending = [n for n in notifications if n["ErrorCode"] == "Poison_PendingQueue"]
    assert [n["Origin"] for n in from_pending] == ["poison"]
    assert app_services.pending_poison_queue.peek_messages() == []


# Issue #24, item 3: a bad optional setting turns off its feature only; a function's own bad setting fails that
# function only; ingestion and the log alert go on.


def stage_and_ingest(functions: dict[str, Any], environment: dict[str, str], emulator: Emulator, table: str) -> None:
    """A blob through the blob trigger and the submission timer into the emulator's table."""
    emulator_call(emulator, "POST", "/v1/rest/mgmt", {"db": DATABASE, "csl": f".create table {table} (name:string, value:long)"})
    services.get_services("submit_pending").blob_service.create_container(environment["STAGING_CONTAINER"])
    blob = BlobClient.from_connection_string(
        environment["StagingStorage"], environment["STAGING_CONTAINER"], f"{DATABASE}/{table}/a.csv"
    )
    blob.upload_blob(b"a,1\nb,2\nc,3\n")
    functions["record_staged_blob"](blob=blob)
    functions["submit_pending"](timer=TimerRequest(past_due=False))
    wait_for(lambda: row_count(emulator, table) == 3, "3 rows")


def failure_message(message_id: str, error_code: str) -> QueueMessage:
    notification = failure_notification(
        error_code=error_code, details="empty", origin="ingestion", database=DATABASE, table="T", blob_name="x.csv"
    )
    return QueueMessage(id=message_id, body=json.dumps(notification), dequeue_count=1, pop_receipt="p", insertion_time=None)


def records(caplog: pytest.LogCaptureFixture, logger: str, level: int = logging.INFO) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == logger and record.levelno >= level]


@pytest.mark.parametrize("overrides", [{"ALERT_WEBHOOK_URL": UNRESOLVED}])
def test_an_unresolved_webhook_reference_turns_off_the_webhook_only(
    functions: dict[str, Any],
    environment: dict[str, str],
    emulator: Emulator,
    unique_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    stage_and_ingest(functions, environment, emulator, f"K{unique_name}")
    functions["alert_on_failure"](message=failure_message("m-1", "BadRequest_EmptyBlob"))
    functions["housekeeping"](timer=TimerRequest(past_due=False))
    alerts = records(caplog, "shared.alerts")
    assert len(alerts) == 1 and "BadRequest_EmptyBlob" in alerts[0]
    reports = records(caplog, "shared.services", logging.ERROR)
    expected = "APP_SETTING_INVALID ALERT_WEBHOOK_URL: is an unresolved Key Vault reference"
    assert all(line.startswith(expected) and "vault1" not in line for line in reports), reports
    assert [line.rsplit("(", 1)[1] for line in reports] == [
        "read at start)",
        "reported by alert_on_failure)",
        "reported by housekeeping)",
    ]


def test_an_unresolved_webhook_secret_turns_the_webhook_off_instead_of_sending_unsigned(
    functions: dict[str, Any], receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ALERT_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("ALERT_WEBHOOK_SECRET", UNRESOLVED)
    services.forget_process_services()
    caplog.set_level(logging.INFO)
    functions["alert_on_failure"](message=failure_message("m-1", "BadRequest_EmptyBlob"))
    assert len(records(caplog, "shared.alerts")) == 1
    assert receiver.attempts == 0
    assert any(
        "ALERT_WEBHOOK_SECRET: is an unresolved Key Vault reference" in line for line in records(caplog, "shared.services")
    )
    # Once the secret resolves, the next alert reaches the same receiver, signed.
    monkeypatch.setenv("ALERT_WEBHOOK_SECRET", "key")
    services.forget_process_services()
    functions["alert_on_failure"](message=failure_message("m-2", "BadRequest_InvalidBlob"))
    [(_, headers)] = receiver.accepted
    assert headers["X-Signature-SHA256"].startswith("sha256=")


@pytest.mark.parametrize("overrides", [{"BLOB_TRIGGER_SOURCE": "Polling"}])
def test_an_invalid_blob_trigger_source_fails_the_blob_trigger_only(
    functions: dict[str, Any], environment: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    app_services = services.get_services("submit_pending")
    app_services.blob_service.create_container(environment["STAGING_CONTAINER"])
    blob = BlobClient.from_connection_string(environment["StagingStorage"], environment["STAGING_CONTAINER"], "Db/T/a.csv")
    blob.upload_blob(b"a,1\n")
    caplog.set_level(logging.INFO)
    for _ in range(2):
        with pytest.raises(SettingsError, match=r"^BLOB_TRIGGER_SOURCE: 'Polling' is not one of .* \(record_staged_blob fails"):
            functions["record_staged_blob"](blob=blob)
    assert app_services.pending_queue.peek_messages() == []
    functions["submit_pending"](timer=TimerRequest(past_due=False))
    functions["track_outcomes"](timer=TimerRequest(past_due=False))
    caplog.clear()
    functions["housekeeping"](timer=TimerRequest(past_due=False))
    [report] = records(caplog, "shared.services", logging.ERROR)
    assert report.startswith("APP_SETTING_INVALID BLOB_TRIGGER_SOURCE: 'Polling'") and report.endswith(
        "(reported by housekeeping)"
    )
