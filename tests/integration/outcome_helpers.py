"""Helpers shared by the outcome tests (tracking, outcomes, poison, sinks): a real pipeline on Azurite + emulator.

The settings, services and emulator calls come from `tests.support.stack`; they are importable from here too, the
place the tests have always imported them from."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient

from devhost.processes import AZURITE_ACCOUNT, AZURITE_KEY, Emulator, free_port
from shared import schemas
from shared.recorder import record_blob
from shared.services import Services
from shared.storage import decode_message
from shared.submission import submit_pending_blobs
from shared.tracking import TrackingReport, poll_operations
from tests.support.stack import NO_KUSTO, app_settings, emulator_call, make_services  # noqa: F401 - the tests import them from here

DATABASE = "OutcomeDb"


_AZURITE_CREDENTIAL = {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}


def _nowhere() -> str:
    """A storage endpoint nobody listens on."""
    return f"http://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT}"


def unreachable_container() -> ContainerClient:
    """A container client for a storage endpoint nobody listens on, failing at once (no retries)."""
    return BlobServiceClient(_nowhere(), credential=_AZURITE_CREDENTIAL, retry_total=0).get_container_client("state")


def unreachable_queue() -> QueueClient:
    """A queue client for a storage endpoint nobody listens on, failing at once (no retries)."""
    return QueueClient(_nowhere(), "nowhere", credential=_AZURITE_CREDENTIAL, retry_total=0)


def create_table(emulator: Emulator, table: str) -> None:
    emulator_call(
        emulator, "POST", "/v1/rest/mgmt", {"db": DATABASE, "csl": f".create-merge table {table} (name:string, value:long)"}
    )


def set_faults(emulator: Emulator, **faults: Any) -> None:
    emulator_call(emulator, "PUT", "/admin/faults", faults)


def stage(services: Services, table: str, name: str, data: bytes = b"a,1\nb,2\n") -> BlobClient:
    """Upload a blob under `{database}/{table}/` and record it (the blob trigger's work)."""
    blob = services.blob_service.get_blob_client(services.settings.staging_container, f"{DATABASE}/{table}/{name}")
    blob.upload_blob(data, overwrite=True)
    result = record_blob(blob, services)
    assert result.error_code is None, result
    return blob


def submit(services: Services) -> None:
    report = submit_pending_blobs(services)
    assert report.submitted > 0, report


def track_until_settled(services: Services, *, deadline_seconds: float = 90) -> list[TrackingReport]:
    """Run the tracker until the tracking queue is empty (visible or hidden): the way the timer would, only sooner."""
    reports = []
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        reports.append(poll_operations(services))
        if services.tracking_queue.get_queue_properties().approximate_message_count == 0:
            return reports
        time.sleep(0.5)
    raise AssertionError(f"tracking queue not settled within {deadline_seconds} s: {reports[-3:]}")


def drain(services: Services, queue_name: str) -> list[str]:
    """Every message of a queue as text (received and deleted)."""
    queue = services.raw_queue(queue_name)
    texts = []
    while True:
        page = list(queue.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=30))
        if not page:
            return texts
        for message in page:
            texts.append(decode_message(message.content))
            queue.delete_message(message)


def failure_notifications(services: Services) -> list[Mapping[str, Any]]:
    return [schemas.parse(schemas.FAILURE_NOTIFICATION, text) for text in drain(services, services.settings.failures_queue)]


def blob_names(services: Services, container: str) -> list[str]:
    client = services.blob_service.get_container_client(container)
    if not client.exists():
        return []
    return sorted(blob.name for blob in client.list_blobs())


class Receiver:
    """A webhook receiver on a free port: answers 500 `failures` times, then 200; keeps what it accepted.

    `gated` receivers answer only once `gate` is set, so the sender waits inside its delivery meanwhile.
    """

    def __init__(self, *, gated: bool = False) -> None:
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.failures = 0
        self.accepted: list[tuple[bytes, dict[str, str]]] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.gate.wait(timeout=30)
                receiver.attempts += 1
                if receiver.failures > 0:
                    receiver.failures -= 1
                    self.send_response(500)
                else:
                    receiver.accepted.append((body, dict(self.headers)))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def bodies(self) -> list[dict]:
        return [json.loads(body) for body, _ in self.accepted]
