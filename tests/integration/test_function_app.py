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
from shared.storage import decode_message
from tests.integration.outcome_helpers import app_settings
from tests.integration.test_submission import DATABASE, emulator_call, row_count, wait_for
from tests.unit.test_function_app import import_function_app


@pytest.fixture
def environment(
    azurite: Azurite, emulator: Emulator, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """App settings for one test in the process environment, as the worker has them; a fresh services cache."""
    values = app_settings(azurite, emulator.url, unique_name, BLOB_TRIGGER_SOURCE="LogsAndContainerScan")
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    services._process_services.cache_clear()
    yield values
    app_services = services.get_services()
    with contextlib.suppress(ResourceNotFoundError):
        app_services.blob_service.delete_container(values["STAGING_CONTAINER"])
    for queue in app_services.queues:
        queue.delete_queue()
    services._process_services.cache_clear()


@pytest.fixture
def functions(environment: dict[str, str]) -> dict[str, Any]:
    module = import_function_app(environment)
    return {function.get_function_name(): function.get_user_function() for function in module.app.get_functions()}


def test_blob_then_timer_then_rows(
    functions: dict[str, Any], environment: dict[str, str], emulator: Emulator, unique_name: str
) -> None:
    table = f"F{unique_name}"
    emulator_call(emulator, "POST", "/v1/rest/mgmt", {"db": DATABASE, "csl": f".create table {table} (name:string, value:long)"})
    app_services = services.get_services()
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
    app_services = services.get_services()
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
