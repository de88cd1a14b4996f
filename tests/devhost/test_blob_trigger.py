"""Blob trigger through Azurite: SDK client and InputStream arguments, receipts, restarts, retries and poison."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable
from datetime import datetime

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_types
import pytest
from azure.storage.blob import BlobClient, ContentSettings

from devhost.blob_trigger import POISON_QUEUE, RECEIPTS_CONTAINER, BlobPath
from devhost.config import (
    DELIVERY_DEAD_LETTERED,
    DELIVERY_DROPPED,
    DELIVERY_FAILS,
    BlobOptions,
    EventGridOptions,
)
from devhost.host import LocalHost
from tests.devhost.apps.recording_app import CONNECTION, Recorder
from tests.devhost.conftest import HostFactory, Storage, peek_contents
from tests.support.waiting import wait_for


def receipts(storage: Storage, function: str) -> list[str]:
    prefix = f"blobreceipts/{storage.host_id}/Host.Functions.{function}/"
    container = storage.blobs.get_container_client(RECEIPTS_CONTAINER)
    return [blob.name.removeprefix(prefix) for blob in container.list_blobs(name_starts_with=prefix)]


def test_paths_split_into_container_prefix_and_pattern() -> None:
    path = BlobPath.parse("staging/in/{folder}/{name}.csv")
    assert (path.container, path.prefix) == ("staging", "in/")
    assert path.matches("in/a/b.csv")
    assert not path.matches("in/a.json")
    assert BlobPath.parse("staging/{name}").matches("any/depth/file.parquet")


def test_new_blobs_fire_with_an_sdk_client_or_a_stream_and_leave_a_receipt(storage: Storage, start_host: HostFactory) -> None:
    recorder = Recorder()
    start_host(recorder)
    etag = storage.container.upload_blob("in/data.csv", b"a,b\n").get_blob_properties().etag
    storage.container.upload_blob("streams/note.txt", b"hello")
    storage.container.upload_blob("streams/ignored.json", b"{}")

    seen = wait_for(lambda: recorder.of("blob"))
    assert isinstance(seen[0]["client"], BlobClient)
    assert (seen[0]["name"], seen[0]["etag"]) == ("in/data.csv", etag)
    stream = wait_for(lambda: recorder.of("stream"))
    assert stream == [{"name": f"{storage.container.container_name}/streams/note.txt", "data": b"hello", "function": "on_stream"}]
    expected = f"{etag.strip(chr(34))}/{storage.container.container_name}/in/data.csv"
    assert wait_for(lambda: receipts(storage, "on_blob")) == [expected]


def test_the_receipt_is_written_only_after_the_function_returned(storage: Storage, start_host: HostFactory) -> None:
    recorder = Recorder(block=threading.Event())
    start_host(recorder)
    storage.container.upload_blob("in/slow.csv", b"x")
    wait_for(lambda: recorder.of("blob"))
    assert receipts(storage, "on_blob") == []
    recorder.block.set()
    assert len(wait_for(lambda: receipts(storage, "on_blob"))) == 1


def test_a_restarted_host_does_not_fire_again_but_a_changed_blob_does(storage: Storage, start_host: HostFactory) -> None:
    first = Recorder()
    host = start_host(first)
    storage.container.upload_blob("in/once.csv", b"v1")
    wait_for(lambda: receipts(storage, "on_blob"))
    host.stop()

    second = Recorder()
    start_host(second)
    storage.container.upload_blob("in/other.csv", b"x")
    wait_for(lambda: second.of("blob"))
    assert [call["name"] for call in second.of("blob")] == ["in/other.csv"]

    storage.container.upload_blob("in/once.csv", b"v2", overwrite=True)
    wait_for(lambda: len(second.of("blob")) == 2)
    assert [call["name"] for call in second.of("blob")] == ["in/other.csv", "in/once.csv"]
    assert len(first.of("blob")) == 1


def test_a_failing_blob_is_retried_then_poisoned_once(storage: Storage, start_host: HostFactory) -> None:
    recorder = Recorder()
    start_host(recorder)  # poisonBlobThreshold 3
    etag = storage.container.upload_blob("in/fail-me.csv", b"x").get_blob_properties().etag
    poison = storage.queues.get_queue_client(POISON_QUEUE)

    def poison_message() -> dict | None:
        for content in peek_contents(poison):
            body = json.loads(base64.b64decode(content))
            if body["ContainerName"] == storage.container.container_name:
                return body
        return None

    body = wait_for(poison_message)
    assert body == {
        "Type": "BlobTrigger",
        "FunctionId": "Host.Functions.on_blob",
        "BlobType": "BlockBlob",
        "ContainerName": storage.container.container_name,
        "BlobName": "in/fail-me.csv",
        "ETag": etag.strip(chr(34)),
    }
    assert len(recorder.of("blob")) == 3
    # The poisoned version has a receipt, so a later blob is the only thing that fires next.
    wait_for(lambda: receipts(storage, "on_blob"))
    storage.container.upload_blob("in/after.csv", b"x")
    wait_for(lambda: any(call["name"] == "in/after.csv" for call in recorder.of("blob")))
    assert len(recorder.of("blob")) == 4


# --- source=EventGrid: the local Event Grid subscription -------------------------------------------------------------

DEAD_LETTER_NAME = re.compile(r"(?P<subscription>[A-Z0-9-]+)/(\d{4})/(\d{1,2})/(\d{1,2})/(\d{1,2})/[0-9a-f-]{36}\.json")


def build_event_grid_app(recorder: Recorder) -> func.FunctionApp:
    """One blob trigger fed by Event Grid (as the real app's), recording its calls; `fail_marker` makes it raise."""
    app = func.FunctionApp()

    @app.blob_trigger(
        arg_name="client", path="%DEVHOST_TEST_CONTAINER%/in/{name}", connection=CONNECTION, source=func.BlobSource.EVENT_GRID
    )
    def on_event(client: blob_types.BlobClient) -> None:
        recorder.add("blob", {"name": client.blob_name, "etag": client.get_blob_properties().etag})
        if recorder.fail_marker in client.blob_name:
            raise RuntimeError(f"asked to fail for {client.blob_name}")

    return app


EventGridHostFactory = Callable[..., LocalHost]


@pytest.fixture
def start_event_grid_host(storage: Storage, start_host: HostFactory, monkeypatch: pytest.MonkeyPatch) -> EventGridHostFactory:
    """Start a host on the Event Grid app (dead letters go to `<container>-dl`); every host is stopped at the end."""
    monkeypatch.setenv("DEAD_LETTER_CONTAINER", f"{storage.container.container_name}-dl")

    def start(recorder: Recorder, event_grid: EventGridOptions | None = None) -> LocalHost:
        blobs = BlobOptions(max_degree_of_parallelism=4, poison_blob_threshold=3, event_grid=event_grid or EventGridOptions())
        return start_host(app=build_event_grid_app(recorder), blobs=blobs)

    return start


def dead_letters(storage: Storage) -> dict[str, list[dict]]:
    """Blob name -> the JSON array of events it holds, for every blob in the test's dead-letter container."""
    container = storage.blobs.get_container_client(f"{storage.container.container_name}-dl")
    if not container.exists():
        return {}
    return {blob.name: json.loads(container.download_blob(blob.name).readall()) for blob in container.list_blobs()}


def called(recorder: Recorder) -> list[str]:
    return [call["name"] for call in recorder.of("blob")]


def test_event_grid_source_fires_only_for_blobs_written_after_the_subscription(
    storage: Storage, start_event_grid_host: EventGridHostFactory
) -> None:
    storage.container.upload_blob("in/a-before.csv", b"there before the subscription")
    first = Recorder()
    host = start_event_grid_host(first)
    storage.container.upload_blob("in/b-after.csv", b"x")
    # A receipt is written once the call returned; the scans that found b also listed a (names sort a first).
    wait_for(lambda: any("in/b-after.csv" in receipt for receipt in receipts(storage, "on_event")))
    storage.container.upload_blob("in/c-after.csv", b"x")
    wait_for(lambda: any("in/c-after.csv" in receipt for receipt in receipts(storage, "on_event")))
    assert sorted(called(first)) == ["in/b-after.csv", "in/c-after.csv"]
    host.stop()

    # The subscription outlives the host, as in Azure: a blob written while it was stopped fires on the next start.
    storage.container.upload_blob("in/d-while-stopped.csv", b"x")
    storage.container.upload_blob("in/a-before.csv", b"overwritten: a new version has an event", overwrite=True)
    second = Recorder()
    start_event_grid_host(second)
    wait_for(lambda: len(second.of("blob")) == 2)
    storage.container.upload_blob("in/e-after-restart.csv", b"x")
    wait_for(lambda: any("in/e-after-restart.csv" in receipt for receipt in receipts(storage, "on_event")))
    assert sorted(called(second)) == ["in/a-before.csv", "in/d-while-stopped.csv", "in/e-after-restart.csv"]
    assert [call["etag"] for call in second.of("blob") if call["name"] == "in/a-before.csv"] == [
        storage.container.get_blob_client("in/a-before.csv").get_blob_properties().etag
    ]


def test_a_delivery_the_endpoint_keeps_refusing_is_dead_lettered_in_event_grids_format(
    storage: Storage, start_event_grid_host: EventGridHostFactory
) -> None:
    recorder = Recorder()
    options = EventGridOptions(
        max_delivery_attempts=3,
        retry_delays=(0.05, 0.1),
        delivery_fault=lambda name: DELIVERY_FAILS if "refused" in name else None,
    )
    start_event_grid_host(recorder, options)
    blob = storage.container.upload_blob("in/refused.csv", b"a,b\n", content_settings=ContentSettings("text/csv"))
    etag = blob.get_blob_properties().etag.strip('"')

    ((name, events),) = wait_for(lambda: list(dead_letters(storage).items()))
    container = storage.container.container_name
    match = DEAD_LETTER_NAME.fullmatch(name)
    assert match is not None, name
    assert match["subscription"] == f"BLOB-CREATED-{container.upper()}"  # the subscription's name, in upper case
    (event,) = events
    assert event["eventType"] == "Microsoft.Storage.BlobCreated"
    assert event["subject"] == f"/blobServices/default/containers/{container}/blobs/in/refused.csv"
    assert event["topic"].endswith("/providers/Microsoft.Storage/storageAccounts/devstoreaccount1")
    assert event["data"]["eTag"] == etag
    assert event["data"]["url"] == blob.url
    assert (event["data"]["contentType"], event["data"]["contentLength"], event["data"]["blobType"]) == (
        "text/csv",
        4,
        "BlockBlob",
    )
    assert (event["dataVersion"], event["metadataVersion"]) == ("", "1")
    assert (event["deadLetterReason"], event["deliveryAttempts"], event["lastDeliveryOutcome"]) == (
        "MaxDeliveryAttemptsExceeded",
        3,
        "GenericError",
    )
    for time_field in ("eventTime", "publishTime", "lastDeliveryAttemptTime"):
        assert datetime.fromisoformat(event[time_field].replace("Z", "+00:00")).tzinfo is not None, time_field

    # The host never accepted the event, so the function never ran; the receipt keeps the version from firing later.
    assert wait_for(lambda: any("in/refused.csv" in receipt for receipt in receipts(storage, "on_event")))
    storage.container.upload_blob("in/accepted.csv", b"x")
    wait_for(lambda: any("in/accepted.csv" in receipt for receipt in receipts(storage, "on_event")))
    assert called(recorder) == ["in/accepted.csv"]
    assert len(dead_letters(storage)) == 1


def test_the_local_event_grid_can_be_told_to_drop_or_dead_letter_an_event(
    storage: Storage, start_event_grid_host: EventGridHostFactory
) -> None:
    faults = {"in/dropped.csv": DELIVERY_DROPPED, "in/refused-at-once.csv": DELIVERY_DEAD_LETTERED}
    recorder = Recorder()
    start_event_grid_host(recorder, EventGridOptions(delivery_fault=faults.get))
    for name in faults:
        storage.container.upload_blob(name, b"x")

    ((_, (event,)),) = wait_for(lambda: list(dead_letters(storage).items()))
    assert event["subject"].endswith("/blobs/in/refused-at-once.csv")
    assert (event["deadLetterReason"], event["deliveryAttempts"], event["lastDeliveryOutcome"]) == (
        "UndeliverableDueToHttpBadRequest",
        1,
        "BadRequest",
    )
    wait_for(lambda: len(receipts(storage, "on_event")) == 2)
    storage.container.upload_blob("in/later.csv", b"x")
    wait_for(lambda: any("in/later.csv" in receipt for receipt in receipts(storage, "on_event")))
    # The dropped event left nothing behind (as without a dead-letter destination): no call, no dead letter.
    assert called(recorder) == ["in/later.csv"]
    assert len(dead_letters(storage)) == 1


def test_with_event_grid_a_function_that_raises_is_poisoned_not_dead_lettered(
    storage: Storage, start_event_grid_host: EventGridHostFactory
) -> None:
    """The extension's webhook queues the event and answers 202 before the function runs, so Event Grid never
    sees the function fail: the host retries it and poisons it after poisonBlobThreshold, as for polling."""
    storage.container.upload_blob("in/older-fail.csv", b"there before: no event, so never called")
    recorder = Recorder()
    start_event_grid_host(recorder, EventGridOptions(max_delivery_attempts=1))
    etag = storage.container.upload_blob("in/fail-me.csv", b"x").get_blob_properties().etag
    poison = storage.queues.get_queue_client(POISON_QUEUE)

    def poisoned() -> list[dict]:
        bodies = [json.loads(base64.b64decode(content)) for content in peek_contents(poison)]
        return [body for body in bodies if body["ContainerName"] == storage.container.container_name]

    (body,) = wait_for(poisoned)
    assert (body["BlobName"], body["ETag"]) == ("in/fail-me.csv", etag.strip('"'))
    assert called(recorder) == ["in/fail-me.csv"] * 3
    assert dead_letters(storage) == {}
