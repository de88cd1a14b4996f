"""Event Grid dead letters through Azurite and the local host: housekeeping records each blob or alerts, once."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_types
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContainerClient

from devhost.blob_trigger import dead_letter_blob_name, subscription_name
from devhost.config import DELIVERY_DEAD_LETTERED, DELIVERY_FAILS, BlobOptions, EventGridOptions, HostOptions, QueueOptions
from devhost.events import describe
from devhost.host import LocalHost
from devhost.processes import Azurite, Emulator
from shared import schemas
from shared.dead_letters import recover_dead_letters
from shared.error_codes import DEAD_LETTER_BLOB_GONE as BLOB_GONE
from shared.error_codes import DEAD_LETTER_FOREIGN as FOREIGN
from shared.housekeeping import housekeep
from shared.recorder import record_blob
from shared.redaction import plain_blob_url
from shared.services import Services
from shared.settings import STAGING_CONNECTION, SettingsError, load_settings
from shared.staging_area import source_id
from tests.integration.outcome_helpers import DATABASE, NO_KUSTO, app_settings, drain, failure_notifications, make_services
from tests.support.waiting import wait_for


@pytest.mark.parametrize("other", ["STAGING_CONTAINER", "STATE_CONTAINER", "QUARANTINE_CONTAINER"])
def test_the_dead_letter_container_is_a_setting_apart_from_the_others(azurite: Azurite, other: str) -> None:
    values = app_settings(azurite, NO_KUSTO, "tdl")
    assert load_settings(values).dead_letter_container == "ingest-deadletter"
    with pytest.raises(SettingsError, match=r"^DEAD_LETTER_CONTAINER: must differ"):
        load_settings(values | {other: "shared-name", "DEAD_LETTER_CONTAINER": "shared-name"})
    with pytest.raises(SettingsError, match=r"^DEAD_LETTER_CONTAINER: .* is not a valid container name"):
        load_settings(values | {"DEAD_LETTER_CONTAINER": "Dead_Letters"})


@pytest.fixture
def services(azurite: Azurite, emulator: Emulator, unique_name: str) -> Services:
    return make_services(azurite, emulator, unique_name, DEAD_LETTER_CONTAINER=f"{unique_name}-deadletter")


@pytest.fixture
def local_host(
    services: Services, azurite: Azurite, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[LocalHost]]:
    """Settings for an in-process local host over the test's staging container; hosts started are stopped."""
    settings = services.settings
    for name, value in {
        STAGING_CONNECTION: azurite.connection_string,
        "AzureWebJobsStorage": azurite.connection_string,
        "STAGING_CONTAINER": settings.staging_container,
        "DEAD_LETTER_CONTAINER": settings.dead_letter_container,
    }.items():
        monkeypatch.setenv(name, value)
    hosts: list[LocalHost] = []
    yield hosts
    for host in hosts:
        host.stop(grace=5)


def start_app_host(services: Services, hosts: list[LocalHost], host_id: str, event_grid: EventGridOptions) -> LocalHost:
    """The app's blob trigger (Event Grid source, `record_blob`) in the local host, its Event Grid told `event_grid`."""
    app = func.FunctionApp()

    @app.blob_trigger(
        arg_name="blob", path="%STAGING_CONTAINER%/{name}", connection=STAGING_CONNECTION, source=func.BlobSource.EVENT_GRID
    )
    def record_staged_blob(blob: blob_types.BlobClient) -> None:
        record_blob(blob, services)

    host = LocalHost(
        app,
        HostOptions(queues=QueueOptions(), blobs=BlobOptions(max_degree_of_parallelism=2, event_grid=event_grid)),
        host_id,
        Path(__file__).parent,
        blob_scan_interval=0.1,
    )
    host.start()
    hosts.append(host)
    return host


def dead_letter_container(services: Services) -> ContainerClient:
    return services.blob_service.get_container_client(services.settings.dead_letter_container)


def dead_letters(services: Services) -> dict[str, Any]:
    container = dead_letter_container(services)
    if not container.exists():
        return {}
    return {blob.name: json.loads(container.download_blob(blob.name).readall()) for blob in container.list_blobs()}


def pending_blob_names(services: Services) -> list[str]:
    return sorted(json.loads(text)["blobName"] for text in drain(services, services.settings.pending_queue))


def dead_letter_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.getMessage().startswith("DeadLetter_Recovered ")]


def test_housekeeping_recovers_dead_lettered_events_once_and_alerts_the_rest(
    services: Services,
    local_host: list[LocalHost],
    unique_name: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO)
    # The poison watcher drains account-wide queues other tests of this Azurite use: it is not what is tested here.
    monkeypatch.setattr("shared.housekeeping.watch_poison_queues", lambda _services: 0)
    settings = services.settings
    staging = services.blob_service.get_container_client(settings.staging_container)
    lost, gone, delivered = (f"{DATABASE}/Events/{stem}.csv" for stem in ("lost", "gone", "delivered"))
    faults = {lost: DELIVERY_FAILS, gone: DELIVERY_DEAD_LETTERED}
    event_grid = EventGridOptions(max_delivery_attempts=2, retry_delays=(0.05,), delivery_fault=faults.get)
    host = start_app_host(services, local_host, f"dl-{unique_name}", event_grid)
    for name in (lost, gone, delivered):
        staging.upload_blob(name, b"a,1\n")
    wait_for(lambda: len(dead_letters(services)) == 2)
    wait_for(lambda: services.pending_queue.get_queue_properties().approximate_message_count == 1)
    host.stop(grace=5)
    assert pending_blob_names(services) == [delivered]  # the one event the local Event Grid delivered

    # The local host wrote the dead letters as Event Grid does; the foreign ones below are variations of one of them.
    (template,) = next(events for events in dead_letters(services).values() if events[0]["subject"].endswith(lost))
    other = services.blob_service.get_container_client(f"{unique_name}-other")
    with contextlib.suppress(ResourceExistsError):
        other.create_container()
    outside = other.upload_blob(lost, b"a,1\n", overwrite=True)
    staged_delivered = staging.get_blob_client(delivered)

    def variant(**changes: Any) -> dict[str, Any]:
        event = copy.deepcopy(template)
        data = changes.pop("data", {})
        event.update(changes)
        event["data"].update(data)
        return event

    staging_subject = f"/blobServices/default/containers/{settings.staging_container}/blobs/"
    foreign_events = [
        # Another container of the same account, its URL too: nothing there may be recorded.
        variant(subject=f"/blobServices/default/containers/{other.container_name}/blobs/{lost}", data={"url": outside.url}),
        # Another event type about a staging blob.
        variant(eventType="Microsoft.Storage.BlobDeleted", subject=staging_subject + delivered),
        # Another account's event naming a staging blob (and a URL into staging).
        variant(
            topic=template["topic"].rsplit("/", 1)[0] + "/someoneelse",
            subject=staging_subject + delivered,
            data={"url": staged_delivered.url},
        ),
        # The staging subject, but a URL elsewhere: the subject decides, and that version is no longer there.
        variant(subject=staging_subject + delivered, data={"url": outside.url, "eTag": "0x8D0000000000000"}),
        "not an event",
    ]
    published = datetime.fromisoformat(template["publishTime"].replace("Z", "+00:00"))
    name = dead_letter_blob_name(subscription_name(settings.staging_container), published)
    dead_letter_container(services).upload_blob(name, json.dumps(foreign_events))
    dead_letter_container(services).upload_blob(name.replace(".json", "-garbage.json"), b"{not json")
    staging.delete_blob(gone)  # its event was dead-lettered, and now the blob is gone: it can never be ingested

    housekeep(services)

    # The lost blob is recorded once, exactly as the blob trigger records it.
    pending = [json.loads(text) for text in drain(services, settings.pending_queue)]
    assert [message["blobName"] for message in pending] == [lost]
    lost_blob = staging.get_blob_client(lost)
    etag = lost_blob.get_blob_properties().etag
    assert pending[0]["sourceId"] == source_id(plain_blob_url(lost_blob.url), etag)
    assert pending[0]["etag"] == etag
    (recovered,) = dead_letter_records(caplog)
    assert recovered.levelno == logging.WARNING
    assert lost in recovered.getMessage()
    assert "MaxDeliveryAttemptsExceeded after 2 delivery attempt(s)" in recovered.getMessage()

    notifications = [n for n in failure_notifications(services) if n["ErrorCode"].startswith("DeadLetter_")]
    by_code: dict[str, list[Any]] = {}
    for notification in notifications:
        by_code.setdefault(notification["ErrorCode"], []).append(notification)
    assert sorted((code, len(found)) for code, found in by_code.items()) == [
        ("DeadLetter_BlobGone", 2),
        ("DeadLetter_Foreign", 4),
        ("DeadLetter_Unreadable", 1),
    ]
    assert sorted(n["BlobName"] for n in by_code[BLOB_GONE]) == [delivered, gone]
    assert all(n["IngestionSourcePath"].startswith(staging.url) for n in by_code[BLOB_GONE])
    assert any("someoneelse" in n["Details"] for n in by_code[FOREIGN])
    assert any("Microsoft.Storage.BlobDeleted" in n["Details"] for n in by_code[FOREIGN])
    assert all(n["IngestionSourcePath"] == "" for n in by_code[FOREIGN])

    # Nothing outside staging was acted on, and every dead letter is gone.
    assert other.get_blob_client(lost).get_blob_properties().etag == outside.get_blob_properties().etag
    assert dead_letters(services) == {}

    # A second run finds nothing more to do.
    caplog.clear()
    report = recover_dead_letters(services)
    housekeep(services)
    assert (report.blobs, report.recovered, report.alerted) == (0, 0, 0)
    assert pending_blob_names(services) == []
    assert [n for n in failure_notifications(services) if n["ErrorCode"].startswith("DeadLetter_")] == []
    assert dead_letter_records(caplog) == []


def test_a_repeated_dead_letter_names_the_same_blob_version_and_the_same_alert(services: Services) -> None:
    """A crash between the new state and the delete repeats a dead letter: its second pending message carries the
    same source id (the submission ledger drops it), its second alert the same id (the alert markers drop it)."""
    settings = services.settings
    staging = services.blob_service.get_container_client(settings.staging_container)
    blob = staging.upload_blob(f"{DATABASE}/Events/twice.csv", b"a,1\n")
    etag = blob.get_blob_properties().etag.strip('"')
    account = services.blob_service.account_name
    subject = f"/blobServices/default/containers/{settings.staging_container}/blobs/"
    event = {
        "topic": f"/subscriptions/x/resourceGroups/y/providers/Microsoft.Storage/storageAccounts/{account}",
        "subject": subject + f"{DATABASE}/Events/twice.csv",
        "eventType": "Microsoft.Storage.BlobCreated",
        "id": "1",
        "data": {"eTag": etag, "url": blob.url},
        "dataVersion": "",
        "metadataVersion": "1",
        "eventTime": "2026-01-01T00:00:00Z",
        "deadLetterReason": "TimeToLiveExceeded",
        "deliveryAttempts": 11,
        "lastDeliveryOutcome": "TimedOut",
    }
    gone = dict(event, subject=subject + f"{DATABASE}/Events/never-there.csv")
    container = dead_letter_container(services)
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    for copy_name in ("A/2026/1/1/0/one.json", "A/2026/1/1/0/two.json"):
        container.upload_blob(copy_name, json.dumps([event, gone]))

    report = recover_dead_letters(services)

    assert (report.blobs, report.deleted, report.recovered, report.alerted) == (2, 2, 2, 2)
    pending = [schemas.parse(schemas.PENDING_BLOB, text) for text in drain(services, settings.pending_queue)]
    assert len(pending) == 2 and len({message["sourceId"] for message in pending}) == 1
    notifications = [n for n in failure_notifications(services) if n["ErrorCode"] == BLOB_GONE]
    assert len(notifications) == 2 and len({n["IngestionSourceId"] for n in notifications}) == 1


def test_one_run_settles_a_bounded_number_of_events_and_keeps_the_rest_for_the_next(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.dead_letters.MAX_EVENTS_PER_RUN", 3)
    monkeypatch.setattr("shared.dead_letters.MAX_BLOBS_PER_RUN", 2)
    container = dead_letter_container(services)
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    container.upload_blob("B/2026/1/1/0/big.json", json.dumps([f"not an event {n}" for n in range(5)]))
    for small in ("C/2026/1/1/0/one.json", "C/2026/1/1/0/two.json"):
        container.upload_blob(small, json.dumps(["not an event"]))

    first = recover_dead_letters(services)
    assert (first.blobs, first.alerted) == (1, 3)
    # The two events not settled were written to a dead letter of their own before the big one was deleted.
    (rest,) = [name for name in dead_letters(services) if name.startswith("B/")]
    assert rest.startswith("B/2026/1/1/0/big.rest-") and len(dead_letters(services)[rest]) == 2

    second = recover_dead_letters(services)
    assert (second.blobs, second.alerted) == (2, 3)  # at most two dead letters a run: the rest, then one of C
    third = recover_dead_letters(services)
    assert (third.blobs, third.alerted) == (1, 1)
    assert dead_letters(services) == {}
    assert len([n for n in failure_notifications(services) if n["ErrorCode"] == FOREIGN]) == 7


def test_make_run_shows_a_recovered_dead_letter_as_an_event_line(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    staging = services.blob_service.get_container_client(services.settings.staging_container)
    blob = staging.upload_blob(f"{DATABASE}/Events/shown.csv", b"a,1\n")
    event = {
        "topic": f"/subscriptions/x/providers/Microsoft.Storage/storageAccounts/{services.blob_service.account_name}",
        "subject": f"/blobServices/default/containers/{services.settings.staging_container}/blobs/{DATABASE}/Events/shown.csv",
        "eventType": "Microsoft.Storage.BlobCreated",
        "data": {"eTag": blob.get_blob_properties().etag},
        "deadLetterReason": "MaxDeliveryAttemptsExceeded",
        "deliveryAttempts": 30,
        "lastDeliveryOutcome": "GenericError",
    }
    container = dead_letter_container(services)
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    container.upload_blob("A/2026/1/1/0/shown.json", json.dumps([event]))

    recover_dead_letters(services)

    (record,) = dead_letter_records(caplog)
    line = describe(record)
    assert line is not None and line.startswith("recovered  ")
    assert f"'{services.settings.staging_container}/{DATABASE}/Events/shown.csv' recorded" in line
