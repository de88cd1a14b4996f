"""Forged and hostile queue messages against Azurite and the emulator: nothing acts outside the staging container.

Whoever can write to the account's queues can write a pending message or a tracking record. Each test
writes one as such a person would (valid JSON, valid schema, consistent where that is easy to forge) and
checks that the app alerts on it and neither signs, sends, ingests, deletes nor moves anything for it, while
honest messages beside it go through.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobClient

from devhost.processes import Azurite, Emulator
from shared import schemas, submission
from shared.redaction import plain_blob_url
from shared.services import Services
from shared.storage import decode_message
from shared.submission import submit_pending_blobs
from shared.tracking import poll_operations
from tests.integration.outcome_helpers import (
    DATABASE,
    Receiver,
    blob_names,
    create_table,
    emulator_call,
    failure_notifications,
    make_services,
    set_faults,
    stage,
    track_until_settled,
)
from tests.support.messages import pending_message
from tests.support.waiting import wait_for


def rows(emulator: Emulator, table: str) -> int:
    answer = emulator_call(emulator, "POST", "/v1/rest/query", {"db": DATABASE, "csl": f"{table} | count"})
    return int(answer["Tables"][0]["Rows"][0][0])


def wait_for_rows(emulator: Emulator, table: str, expected: int, timeout: float = 60) -> None:
    wait_for(lambda: rows(emulator, table) == expected, f"{table} to hold {expected} rows", timeout=timeout)


def send_raw(services: Services, document: dict[str, Any]) -> None:
    """Write a message as a forger would: straight JSON (base64 on the wire, as the app's queues carry it), no schema check."""
    services.pending_queue.send_message(json.dumps(document))


def pending_for(blob: BlobClient, table: str, **changes: Any) -> dict[str, Any]:
    """A pending message for `blob`, consistent in itself (its sourceId is its URL and ETag's), then `changes`."""
    return pending_message(blob, etag=blob.get_blob_properties().etag, size=8, database=DATABASE, table=table, **changes)


@pytest.fixture
def make(azurite: Azurite, emulator: Emulator, unique_name: str) -> Iterator[Callable[..., Services]]:
    made: list[Services] = []

    def build(**overrides: str) -> Services:
        services = make_services(azurite, emulator, unique_name, **overrides)
        made.append(services)
        return services

    yield build
    set_faults(emulator, errorBlobs=[], failBlobs=[])
    for services in made:
        for container in (services.settings.staging_container, f"{unique_name}-other", f"{unique_name}-quarantine"):
            with contextlib.suppress(Exception):
                services.blob_service.delete_container(container)
        for queue in services.queues:
            with contextlib.suppress(Exception):
                queue.delete_queue()
        services.kusto.close()


def other_blob(services: Services, name: str = "secret/payroll.csv") -> BlobClient:
    """A blob in another container of the same account: the app may never touch it."""
    container = services.settings.staging_container.replace("-staging", "-other")
    with contextlib.suppress(ResourceExistsError):
        services.blob_service.create_container(container)
    blob = services.blob_service.get_blob_client(container, name)
    blob.upload_blob(b"alice,100\nbob,200\n", overwrite=True)
    return blob


FORGERIES: dict[str, Callable[[Services, BlobClient, BlobClient, str], dict[str, Any]]] = {
    "another container, consistent": lambda s, good, other, table: pending_for(other, table),
    "staging container named, other container's URL": lambda s, good, other, table: pending_for(
        other, table, container=s.settings.staging_container
    ),
    "staging blob named, URL to an attacker's host": lambda s, good, other, table: {
        **pending_for(good, table),
        "blobUrl": "http://127.0.0.1:{port}/devstoreaccount1/" + f"{good.container_name}/{good.blob_name}",
    },
    "staging blob, another account's path": lambda s, good, other, table: {
        **pending_for(good, table),
        "blobUrl": plain_blob_url(good.url).replace("/devstoreaccount1/", "/otheraccount/"),
    },
    "target outside ALLOWED_TARGETS": lambda s, good, other, table: pending_for(good, "Forbidden"),
    "sourceId of another blob version": lambda s, good, other, table: pending_for(
        good, table, sourceId="6f1c3a52-9d2e-4b7a-8c1d-2e3f4a5b6c7d"
    ),
    "dot-dot blob name": lambda s, good, other, table: {
        **pending_for(good, table),
        "blobName": f"{DATABASE}/../../{other.container_name}/{other.blob_name}",
    },
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forged_pending_message_is_refused_with_an_alert_and_nothing_is_sent(
    forgery: str, make: Callable[..., Services], emulator: Emulator, receiver: Receiver, unique_name: str
) -> None:
    table = f"T{unique_name}"
    services = make(ALLOWED_TARGETS=f"{DATABASE}.{table}")
    create_table(emulator, table)
    create_table(emulator, "Forbidden")
    other = other_blob(services)
    good = stage(services, table, "honest.csv")  # its own pending message is on the queue too
    forged = FORGERIES[forgery](services, good, other, table)
    forged["blobUrl"] = forged["blobUrl"].replace("{port}", receiver.url.split(":")[2].split("/")[0])
    send_raw(services, forged)

    report = submit_pending_blobs(services)

    assert (report.received, report.submitted, report.refused) == (2, 1, 1)
    [alert] = failure_notifications(services)
    assert alert["ErrorCode"] == "Pending_Refused"
    assert "nothing was submitted" in alert["Details"]
    assert "sig=" not in json.dumps(alert)
    assert receiver.attempts == 0, "the attacker's host was sent a request"
    wait_for_rows(emulator, table, 2)  # the honest blob only
    assert rows(emulator, "Forbidden") == 0
    time.sleep(0.5)
    assert rows(emulator, table) == 2
    assert other.exists()


def test_a_forged_tracking_record_deletes_or_moves_nothing_outside_staging(
    make: Callable[..., Services], emulator: Emulator, unique_name: str
) -> None:
    table = f"T{unique_name}"
    services = make(DELETE_ON_SUCCESS="true", QUARANTINE_CONTAINER=f"{unique_name}-quarantine")
    create_table(emulator, table)
    other = other_blob(services)
    stage(services, table, "real.csv")
    assert submit_pending_blobs(services).submitted == 1
    [text] = [m.content for m in services.tracking_queue.receive_messages(visibility_timeout=1)]
    time.sleep(1.2)
    record = json.loads(text)
    # The forger copies a real record (its operation succeeds) and points its blob at the other container.
    forged_pending = pending_for(other, table)
    forged = {
        **record,
        "blobs": [
            {
                "sourceId": forged_pending["sourceId"],
                "blobUrl": forged_pending["blobUrl"],
                "container": other.container_name,
                "blobName": other.blob_name,
                "pending": forged_pending,
            }
        ],
    }
    services.tracking_queue.send_message(json.dumps(forged))

    reports = track_until_settled(services)

    assert sum(report.refused for report in reports) == 1
    assert other.exists(), "a blob outside staging was deleted"
    assert blob_names(services, f"{unique_name}-quarantine") == []
    codes = sorted(n["ErrorCode"] for n in failure_notifications(services))
    assert codes == ["Tracking_Refused"]
    assert blob_names(services, services.settings.staging_container) == [], "the real blob is deleted on success"


def test_a_raw_size_beyond_int64_is_refused_and_the_five_good_blobs_beside_it_land_in_the_first_run(
    make: Callable[..., Services], emulator: Emulator, unique_name: str
) -> None:
    table = f"T{unique_name}"
    services = make()
    create_table(emulator, table)
    for index in range(5):
        stage(services, table, f"good-{index}.csv")
    bad = services.blob_service.get_blob_client(services.settings.staging_container, f"{DATABASE}/{table}/huge.csv")
    bad.upload_blob(b"x,1\n")
    send_raw(services, pending_for(bad, table, rawSize=9999999999999999999))

    report = submit_pending_blobs(services)

    assert (report.submitted, report.malformed, report.deferred) == (5, 1, 0)
    wait_for_rows(emulator, table, 10)
    [alert] = failure_notifications(services)
    assert alert["ErrorCode"] == "Pending_Malformed"
    assert "rawSize" in alert["Details"]


@pytest.mark.parametrize("raw_size", [2**63, 9999999999999999999])
def test_the_emulator_answers_400_not_500_for_a_raw_size_kusto_cannot_read(emulator: Emulator, raw_size: int) -> None:
    create_table(emulator, "RawSizeProbe")
    body = {"blobs": [{"url": "https://a.blob.core.windows.net/c/b.csv", "rawSize": raw_size}], "properties": {"format": "csv"}}
    with pytest.raises(urllib.error.HTTPError) as raised:
        emulator_call(emulator, "POST", f"/v1/rest/ingestion/queued/{DATABASE}/RawSizeProbe", body)
    assert raised.value.code == 400
    assert "rawSize" in raised.value.read().decode()


def test_a_blob_the_service_cannot_take_is_sent_alone_so_the_good_blobs_of_its_chunk_land(
    make: Callable[..., Services], emulator: Emulator, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(submission, "DEFER_SECONDS", 1)
    table = f"T{unique_name}"
    services = make(PENDING_VISIBILITY_TIMEOUT_SECONDS="5")
    create_table(emulator, table)
    for index in range(5):
        stage(services, table, f"good-{index}.csv")
    stage(services, table, "cursed.csv")
    set_faults(emulator, errorBlobs=["cursed.csv"])

    first = submit_pending_blobs(services)
    assert (first.submitted, first.deferred) == (0, 6), "one request of six, answered 500"
    time.sleep(1.5)
    second = submit_pending_blobs(services)

    assert (second.received, second.operations, second.submitted, second.deferred) == (6, 5, 5, 1)
    assert second.blocked_targets == [], "a blob failing alone does not hold back its target"
    wait_for_rows(emulator, table, 10)
    time.sleep(1.5)
    [left] = [json.loads(decode_message(m.content)) for m in services.pending_queue.receive_messages(visibility_timeout=1)]
    assert (left["blobName"].rsplit("/", 1)[1], left["submitAlone"]) == ("cursed.csv", True)
    schemas.validate(schemas.PENDING_BLOB, left)
    assert poll_operations(services).received == 5
