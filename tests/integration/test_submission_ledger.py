"""The submission ledger on Azurite: what one worker appends another reads, incrementally, within the window only;
a key's latest record wins whatever order the records reach a worker in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient, ContainerClient

from devhost.processes import Azurite
from shared.submission_ledger import (
    ACCEPTED,
    FIRST_FORMAT_PREFIX,
    HEAD_BYTES,
    MAX_OPERATION_ID_BYTES,
    NOT_ACCEPTED,
    PREFIX,
    SENDING,
    SLOT_SECONDS,
    SubmissionLedger,
    decode,
    encode,
    ledger_key,
    slot_name,
    slot_start,
)

WINDOW = 3600
START = 1_800_000_000.0  # a fixed moment, so slot boundaries are known


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def container(azurite: Azurite, unique_name: str) -> Iterator[ContainerClient]:
    """A state container that does not exist yet: the ledger creates it on its first append."""
    client = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(f"{unique_name}-state")
    yield client
    if client.exists():
        client.delete_container()


def keys(count: int) -> list[bytes]:
    return [uuid.uuid4().bytes for _ in range(count)]


def state(ledger: SubmissionLedger, key: bytes) -> str | None:
    entry = ledger.lookup(key)
    return None if entry is None else entry.state


def test_what_one_worker_records_another_reads_and_later_appends_are_read_incrementally(container: ContainerClient) -> None:
    clock = Clock()
    writer, reader = SubmissionLedger(container, WINDOW, clock), SubmissionLedger(container, WINDOW, clock)
    first, second = keys(20), keys(3)
    writer.record(ACCEPTED, first)
    assert all(key in writer for key in first)
    reader.refresh()
    assert all(key in reader for key in first)
    assert not any(key in reader for key in second)
    writer.record(ACCEPTED, second)
    reader.refresh()
    assert all(key in reader for key in [*first, *second])
    reader.refresh()  # nothing new: the range read past the end is not an error
    blob = container.get_blob_client(slot_name(slot_start(START)))
    assert blob.get_blob_properties().size == HEAD_BYTES * 23


def test_a_cold_worker_reads_every_slot_of_the_window_and_nothing_older(container: ContainerClient) -> None:
    clock = Clock()
    writer = SubmissionLedger(container, WINDOW, clock)
    old = keys(2)
    writer.record(ACCEPTED, old)
    clock.now += WINDOW + 2 * SLOT_SECONDS
    recent = keys(2)
    writer.record(ACCEPTED, recent)
    clock.now += SLOT_SECONDS
    cold = SubmissionLedger(container, WINDOW, clock)
    cold.refresh()
    assert all(key in cold for key in recent)
    assert not any(key in cold for key in old)
    writer.refresh()  # the writer forgets what left the window too
    assert not any(key in writer for key in old)


def test_a_worker_idle_for_several_slots_catches_up_with_what_others_appended(container: ContainerClient) -> None:
    clock = Clock()
    idle, busy = SubmissionLedger(container, WINDOW, clock), SubmissionLedger(container, WINDOW, clock)
    idle.refresh()
    appended = []
    for _ in range(4):
        clock.now += SLOT_SECONDS
        batch = keys(1)
        busy.record(ACCEPTED, batch)
        appended += batch
    idle.refresh()
    assert all(key in idle for key in appended)


def test_housekeeping_deletes_slots_that_left_the_window_and_keeps_the_rest(container: ContainerClient) -> None:
    clock = Clock()
    ledger = SubmissionLedger(container, WINDOW, clock)
    ledger.record(ACCEPTED, keys(1))
    clock.now += WINDOW + SLOT_SECONDS
    ledger.record(ACCEPTED, keys(1))
    container.upload_blob(FIRST_FORMAT_PREFIX + "202001010000", b"")  # a slot of the first format, long expired
    assert ledger.forget_expired(WINDOW) == 2
    assert [blob.name for blob in container.list_blobs(name_starts_with=PREFIX)] == [slot_name(slot_start(clock.now))]
    assert list(container.list_blobs(name_starts_with=FIRST_FORMAT_PREFIX)) == []
    assert ledger.forget_expired(WINDOW) == 0


def test_an_accepted_record_names_its_operation_and_history_reads_it_back(container: ContainerClient) -> None:
    clock = Clock()
    ledger = SubmissionLedger(container, WINDOW, clock)
    (key,) = keys(1)
    ledger.record(SENDING, [key])
    clock.now += 1
    ledger.record(ACCEPTED, [key], "1;2;8c5a1f0e-6d0b-4d5e-9a39-2f0a7c0f5b11")
    history = ledger.history(key, since=START - SLOT_SECONDS)
    assert [(record.entry.state, record.operation_id) for record in history] == [
        (SENDING, ""),
        (ACCEPTED, "1;2;8c5a1f0e-6d0b-4d5e-9a39-2f0a7c0f5b11"),
    ]
    assert ledger.lookup(key) is not None and ledger.lookup(key).state == ACCEPTED  # type: ignore[union-attr]


def test_records_are_read_whole_only_and_an_id_too_long_to_keep_is_left_out() -> None:
    key = uuid.uuid4().bytes
    whole = encode(ACCEPTED, 5, key, "op-1") + encode(SENDING, 6, key)
    records, used = decode(whole + encode(ACCEPTED, 7, key, "op-2")[:-2])  # the last one still being appended
    assert used == len(whole)
    assert [(record.entry.state, record.entry.millis, record.operation_id) for record in records] == [
        (ACCEPTED, 5, "op-1"),
        (SENDING, 6, ""),
    ]
    assert len(encode(ACCEPTED, 1, key, "x" * (MAX_OPERATION_ID_BYTES + 1))) == HEAD_BYTES
    assert len(encode(ACCEPTED, 1, key, "é")) == HEAD_BYTES


def test_a_resubmission_has_its_own_key_and_next_attempt_skips_accepted_ones(container: ContainerClient) -> None:
    ledger = SubmissionLedger(container, WINDOW, Clock())
    source_id = str(uuid.uuid4())
    first = {"sourceId": source_id}
    assert ledger_key(first) == uuid.UUID(source_id).bytes
    assert ledger_key({**first, "attempt": 0}) == ledger_key(first)
    assert len({ledger_key({**first, "attempt": attempt}) for attempt in range(4)}) == 4
    ledger.record(ACCEPTED, [ledger_key(first)])
    assert ledger.next_attempt(source_id) == 1
    ledger.record(ACCEPTED, [ledger_key({**first, "attempt": 1}), ledger_key({**first, "attempt": 2})])
    assert ledger.next_attempt(source_id) == 3


def test_chunks_recorded_at_once_share_appends_and_every_key_is_stored(container: ContainerClient) -> None:
    clock = Clock()
    ledger = SubmissionLedger(container, WINDOW, clock)
    chunks = [keys(20) for _ in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda chunk: ledger.record(ACCEPTED, chunk), chunks))
    reader = SubmissionLedger(container, WINDOW, clock)
    reader.refresh()
    assert all(key in reader for chunk in chunks for key in chunk)
    properties = container.get_blob_client(slot_name(slot_start(START))).get_blob_properties()
    assert properties.size == HEAD_BYTES * 20 * 16
    assert 1 <= properties.append_blob_committed_block_count <= 16


def test_a_refused_append_reaches_every_chunk_that_shared_it(azurite: Azurite, unique_name: str) -> None:
    # An invalid container name: storage refuses the append, and the chunk must hear it (its caller logs it).
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    ledger = SubmissionLedger(service.get_container_client(f"{unique_name}--bad"), WINDOW, Clock())
    chunk = keys(1)
    with pytest.raises(HttpResponseError):
        ledger.record(ACCEPTED, chunk)
    assert chunk[0] not in ledger


def test_sending_then_an_answer_and_acceptance_is_final_whatever_order_the_records_are_read_in(
    container: ContainerClient,
) -> None:
    clock = Clock()
    writer = SubmissionLedger(container, WINDOW, clock)
    refused, accepted, in_flight = keys(1), keys(1), keys(1)
    writer.record(SENDING, [*refused, *accepted, *in_flight])
    clock.now += 1
    writer.record(NOT_ACCEPTED, refused)
    writer.record(ACCEPTED, accepted)
    # A later "sending" of an accepted key (another worker's stale view) does not undo the acceptance.
    clock.now += SLOT_SECONDS  # and the records span two slots
    writer.record(SENDING, accepted)
    reader = SubmissionLedger(container, WINDOW, clock)
    reader.refresh()
    for ledger in (writer, reader):
        assert [state(ledger, key[0]) for key in (refused, accepted, in_flight)] == [NOT_ACCEPTED, ACCEPTED, SENDING]
        entry = ledger.lookup(in_flight[0])
        assert entry is not None and ledger.age(entry) == SLOT_SECONDS + 1
    # Sent again after the refusal: "sending" once more, for everyone.
    writer.record(SENDING, refused)
    reader.refresh()
    assert state(reader, refused[0]) == SENDING
    assert reader.lookup(keys(1)[0]) is None


def test_a_refusal_written_in_the_same_millisecond_as_the_sending_wins(container: ContainerClient) -> None:
    clock = Clock()
    ledger = SubmissionLedger(container, WINDOW, clock)
    key = keys(1)
    ledger.record(NOT_ACCEPTED, key)
    ledger.record(SENDING, key)
    assert state(ledger, key[0]) == NOT_ACCEPTED
