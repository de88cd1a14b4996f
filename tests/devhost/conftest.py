"""Fixtures that run the local host in-process with the test-only app, against the session's Azurite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient, QueueServiceClient

from devhost.config import BlobOptions, HostOptions, QueueOptions
from devhost.host import LocalHost
from devhost.processes import Azurite
from tests.devhost.apps.recording_app import CONNECTION, Recorder, build_app

FAST_QUEUES = QueueOptions(batch_size=4, max_dequeue_count=3, visibility_timeout=0, max_polling_interval=0.2)


@dataclass
class Storage:
    """The test's own container and queue (unique names), and the host storage connection."""

    container: ContainerClient
    queue: QueueClient
    blobs: BlobServiceClient
    queues: QueueServiceClient
    host_id: str


@pytest.fixture
def storage(azurite: Azurite, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> Storage:
    for name in (CONNECTION, "AzureWebJobsStorage"):
        monkeypatch.setenv(name, azurite.connection_string)
    monkeypatch.setenv("DEVHOST_TEST_CONTAINER", unique_name)
    monkeypatch.setenv("DEVHOST_TEST_QUEUE", unique_name)
    monkeypatch.setenv("DEVHOST_TEST_SCHEDULE", "0 0 0 1 1 *")
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    queues = QueueServiceClient.from_connection_string(azurite.connection_string)
    container = blobs.create_container(unique_name)
    queue = queues.create_queue(unique_name)
    return Storage(container, queue, blobs, queues, host_id=f"test-{unique_name}")


HostFactory = Callable[..., LocalHost]


def peek_contents(queue: QueueClient) -> list[str]:
    """The raw text of the messages on a queue; none while the queue does not exist yet."""
    try:
        return [message.content for message in queue.peek_messages(max_messages=32)]
    except ResourceNotFoundError:
        return []


@pytest.fixture
def start_host(storage: Storage) -> Iterator[HostFactory]:
    """Start a host on a fresh app; every host started is stopped at the end of the test."""
    started: list[LocalHost] = []

    def start(
        recorder: Recorder | None = None,
        queues: QueueOptions = FAST_QUEUES,
        blobs: BlobOptions | None = None,
        run_on_startup: bool = False,
        queue_lease_seconds: int = 2,
        app: func.FunctionApp | None = None,
        options: HostOptions | None = None,
    ) -> LocalHost:
        """The recording app for `recorder`, or another `app`; `options` (host.json) replaces `queues` and `blobs`."""
        if app is None:
            assert recorder is not None, "give a Recorder for the recording app, or an app"
            app = build_app(recorder, run_on_startup)
        host = LocalHost(
            app,
            options
            or HostOptions(queues=queues, blobs=blobs or BlobOptions(max_degree_of_parallelism=4, poison_blob_threshold=3)),
            storage.host_id,
            Path(__file__).parent,
            blob_scan_interval=0.1,
            queue_lease_seconds=queue_lease_seconds,
        )
        host.start()
        started.append(host)
        return host

    yield start
    for host in started:
        host.stop(grace=5)
