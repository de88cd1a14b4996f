"""Blob trigger through Azurite: SDK client and InputStream arguments, receipts, restarts, retries and poison."""

from __future__ import annotations

import base64
import json
import threading

from azure.storage.blob import BlobClient

from devhost.blob_trigger import POISON_QUEUE, RECEIPTS_CONTAINER, BlobPath
from tests.devhost.apps.recording_app import Recorder, wait_until
from tests.devhost.conftest import HostFactory, Storage, peek_contents


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

    seen = wait_until(lambda: recorder.of("blob"))
    assert isinstance(seen[0]["client"], BlobClient)
    assert (seen[0]["name"], seen[0]["etag"]) == ("in/data.csv", etag)
    stream = wait_until(lambda: recorder.of("stream"))
    assert stream == [{"name": f"{storage.container.container_name}/streams/note.txt", "data": b"hello", "function": "on_stream"}]
    expected = f"{etag.strip(chr(34))}/{storage.container.container_name}/in/data.csv"
    assert wait_until(lambda: receipts(storage, "on_blob")) == [expected]


def test_the_receipt_is_written_only_after_the_function_returned(storage: Storage, start_host: HostFactory) -> None:
    recorder = Recorder(block=threading.Event())
    start_host(recorder)
    storage.container.upload_blob("in/slow.csv", b"x")
    wait_until(lambda: recorder.of("blob"))
    assert receipts(storage, "on_blob") == []
    recorder.block.set()
    assert len(wait_until(lambda: receipts(storage, "on_blob"))) == 1


def test_a_restarted_host_does_not_fire_again_but_a_changed_blob_does(storage: Storage, start_host: HostFactory) -> None:
    first = Recorder()
    host = start_host(first)
    storage.container.upload_blob("in/once.csv", b"v1")
    wait_until(lambda: receipts(storage, "on_blob"))
    host.stop()

    second = Recorder()
    start_host(second)
    storage.container.upload_blob("in/other.csv", b"x")
    wait_until(lambda: second.of("blob"))
    assert [call["name"] for call in second.of("blob")] == ["in/other.csv"]

    storage.container.upload_blob("in/once.csv", b"v2", overwrite=True)
    wait_until(lambda: len(second.of("blob")) == 2)
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

    body = wait_until(poison_message)
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
    wait_until(lambda: receipts(storage, "on_blob"))
    storage.container.upload_blob("in/after.csv", b"x")
    wait_until(lambda: any(call["name"] == "in/after.csv" for call in recorder.of("blob")))
    assert len(recorder.of("blob")) == 4
