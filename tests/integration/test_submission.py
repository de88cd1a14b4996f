"""The submission timer body against Azurite and the Kusto emulator: rows land, throttling, rejection, poison."""

from __future__ import annotations

import base64
import contextlib
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from azure.core.exceptions import ServiceResponseError
from azure.storage.blob import BlobClient
from azure.storage.queue import QueueClient

from devhost.processes import Azurite, Emulator
from shared import schemas
from shared.kusto_rest import BlobSource
from shared.poison import watch_poison_queues
from shared.redaction import plain_blob_url
from shared.services import Services, kusto_client
from shared.storage import decode_message
from shared.submission import submit_pending_blobs
from shared.submission_ledger import ACCEPTED, NOT_ACCEPTED, SENDING, SubmissionLedger, decode, ledger_key
from shared.transport import EnvironmentOnceTransport
from tests.integration import outcome_helpers
from tests.integration.outcome_helpers import emulator_call, unreachable_container, unreachable_queue
from tests.support.messages import pending_message
from tests.support.waiting import wait_for

DATABASE = "SubmitDb"


def row_count(emulator: Emulator, table: str) -> int:
    answer = emulator_call(emulator, "POST", "/v1/rest/query", {"db": DATABASE, "csl": f"{table} | count"})
    return int(answer["Tables"][0]["Rows"][0][0])


@dataclass
class Pipeline:
    """One test's queues, container and table on the shared Azurite and emulator."""

    services: Services
    emulator: Emulator
    table: str

    def stage(self, name: str, data: bytes = b"a,1\nb,2\n", table: str | None = None, **properties: Any) -> BlobClient:
        """Upload a blob and write its pending message, as the blob trigger would."""
        settings = self.services.settings
        blob = self.services.blob_service.get_blob_client(settings.staging_container, f"{DATABASE}/{self.table}/{name}")
        etag = blob.upload_blob(data, overwrite=True)["etag"]
        self.services.pending_queue.send_message(
            schemas.dump(schemas.PENDING_BLOB, self.pending(blob, etag, len(data), table, **properties))
        )
        return blob

    def pending(self, blob: BlobClient, etag: str, size: int, table: str | None = None, **properties: Any) -> dict[str, Any]:
        return pending_message(blob, etag=etag, size=size, database=DATABASE, table=table or self.table, properties=properties)

    def messages(self, queue: str) -> list[str]:
        """Read and delete every message of one queue (decoded text)."""
        client = next(q for q in self.services.queues if q.queue_name == queue)
        texts = []
        for message in client.receive_messages(messages_per_page=32, visibility_timeout=30):
            content = message.content
            texts.append(content if queue != self.services.settings.pending_queue else decode_message(content))
            client.delete_message(message)
        return texts

    def tracking_records(self) -> list[dict[str, Any]]:
        return [schemas.parse(schemas.TRACKING_RECORD, text) for text in self.messages(self.services.settings.tracking_queue)]

    def failures(self) -> list[dict[str, Any]]:
        return [
            schemas.parse(schemas.FAILURE_NOTIFICATION, text) for text in self.messages(self.services.settings.failures_queue)
        ]

    def pending_left(self) -> int:
        return self.services.pending_queue.get_queue_properties().approximate_message_count


def make_services(azurite: Azurite, emulator: Emulator, prefix: str, **overrides: str) -> Services:
    """The integration tests' services, with a short visibility and budget so deferred blobs return within a test."""
    settings = {"PENDING_VISIBILITY_TIMEOUT_SECONDS": "5", "DRAIN_TIME_BUDGET_SECONDS": "30", "SUBMIT_CONCURRENCY": "4"}
    return outcome_helpers.make_services(azurite, emulator, prefix, **(settings | overrides))


@pytest.fixture
def make_pipeline(azurite: Azurite, emulator: Emulator, unique_name: str) -> Iterator[Callable[..., Pipeline]]:
    """One test's pipeline with setting overrides (PENDING_MAX_DEQUEUE_COUNT="1", ...); removed afterwards."""
    made: list[Services] = []

    def make(**overrides: str) -> Pipeline:
        services = make_services(azurite, emulator, unique_name, **overrides)
        made.append(services)
        table = f"T{unique_name}"
        mgmt = {"db": DATABASE, "csl": f".create table {table} (name:string, value:long)"}
        emulator_call(emulator, "POST", "/v1/rest/mgmt", mgmt)
        return Pipeline(services, emulator, table)

    yield make
    emulator_call(emulator, "PUT", "/admin/faults", {"throttleRate": 0, "errorRate": 0, "latencyMs": 0, "failBlobs": []})
    for services in made:
        services.blob_service.delete_container(services.settings.staging_container)
        with contextlib.suppress(Exception):
            services.blob_service.delete_container(services.settings.state_container)
        for queue in services.queues:
            with contextlib.suppress(Exception):
                queue.delete_queue()
        services.kusto.close()


@pytest.fixture
def pipeline(make_pipeline: Callable[..., Pipeline]) -> Pipeline:
    return make_pipeline()


def test_pending_blobs_are_submitted_in_chunks_and_their_rows_land(pipeline: Pipeline) -> None:
    for index in range(25):
        pipeline.stage(f"part-{index:02}.csv", f"row{index},{index}\n".encode())
    report = submit_pending_blobs(pipeline.services)
    assert (report.received, report.submitted, report.operations, report.deferred) == (25, 25, 2, 0)
    assert pipeline.pending_left() == 0
    records = pipeline.tracking_records()
    assert sorted(len(record["blobs"]) for record in records) == [5, 20]
    for record in records:
        assert (record["database"], record["table"], record["mode"]) == (DATABASE, pipeline.table, "rest")
        assert all(blob["pending"]["sourceId"] == blob["sourceId"] for blob in record["blobs"])
        assert all("?" not in blob["blobUrl"] for blob in record["blobs"])
    wait_for(lambda: row_count(pipeline.emulator, pipeline.table) == 25, "25 rows in the emulator")
    for record in records:
        status = pipeline.services.kusto.get_status(DATABASE, pipeline.table, record["operationId"])
        assert status.succeeded == len(record["blobs"]) or status.in_progress > 0
        assert {blob.source_id for blob in status.blobs} == {blob["sourceId"] for blob in record["blobs"]}


def test_a_blob_recorded_twice_is_submitted_once_even_when_the_copies_meet_in_different_runs(
    pipeline: Pipeline, azurite: Azurite, unique_name: str
) -> None:
    blob = pipeline.stage("twice.csv")
    first = submit_pending_blobs(pipeline.services)
    assert (first.submitted, first.duplicates) == (1, 0)
    # The trigger fired again for the same blob version (its receipt was never stored); a fresh worker drains it.
    copy = pipeline.pending(blob, blob.get_blob_properties().etag, 8)
    pipeline.services.pending_queue.send_message(schemas.dump(schemas.PENDING_BLOB, copy))
    cold_worker = make_services(azurite, pipeline.emulator, unique_name)
    second = submit_pending_blobs(cold_worker)
    assert (second.received, second.submitted, second.operations, second.duplicates) == (1, 0, 0, 1)
    assert pipeline.pending_left() == 0
    assert len(pipeline.tracking_records()) == 1
    wait_for(lambda: row_count(pipeline.emulator, pipeline.table) == 2, "the blob's 2 rows")
    time.sleep(0.5)
    assert row_count(pipeline.emulator, pipeline.table) == 2


def test_a_resubmission_after_a_transient_failure_is_not_taken_for_a_duplicate(pipeline: Pipeline) -> None:
    blob = pipeline.stage("again.csv")
    assert submit_pending_blobs(pipeline.services).submitted == 1
    retry = {**pipeline.pending(blob, blob.get_blob_properties().etag, 8), "attempt": 1}
    pipeline.services.pending_queue.send_message(schemas.dump(schemas.PENDING_BLOB, retry))
    report = submit_pending_blobs(pipeline.services)
    assert (report.submitted, report.duplicates) == (1, 0)
    records = pipeline.tracking_records()
    assert [blob["pending"].get("attempt", 0) for record in records for blob in record["blobs"]] == [0, 1]


def test_a_ledger_that_cannot_be_reached_never_holds_a_blob_back(pipeline: Pipeline, caplog: pytest.LogCaptureFixture) -> None:
    unreachable = replace(pipeline.services, ledger=SubmissionLedger(unreachable_container(), 3600))
    pipeline.stage("anyway.csv")
    report = submit_pending_blobs(unreachable)
    assert (report.submitted, report.deferred) == (1, 0)
    assert "submission ledger not readable" in caplog.text
    assert "submission ledger not written (sending for 1 blobs" in caplog.text
    assert "submission ledger not written (accepted for 1 blobs" in caplog.text
    assert pipeline.pending_left() == 0


def state_ledger(pipeline: Pipeline, clock: Callable[[], float] = time.time) -> SubmissionLedger:
    """Another worker's view of the pipeline's submission ledger, on its own clock."""
    settings = pipeline.services.settings
    container = pipeline.services.blob_service.get_container_client(settings.state_container)
    return SubmissionLedger(container, settings.duplicate_window_seconds, clock)


def send_as_another_run(pipeline: Pipeline, pending: dict[str, Any]) -> None:
    """The request a run that then died had sent: Kusto took it."""
    url = pipeline.services.blob_access.url_for(pending["blobName"])
    pipeline.services.kusto.submit(DATABASE, pipeline.table, [BlobSource(url, pending["sourceId"])], {"format": "csv"})


def test_a_blob_a_dead_run_was_sending_is_announced_in_doubt_then_sent_again(pipeline: Pipeline) -> None:
    blob = pipeline.stage("in-doubt.csv")
    pending = pipeline.pending(blob, blob.get_blob_properties().etag, 8)
    lease = pipeline.services.settings.sending_lease_seconds
    sent_at = time.time() - lease - 5
    state_ledger(pipeline, clock=lambda: sent_at).record(SENDING, [ledger_key(pending)])
    send_as_another_run(pipeline, pending)
    report = submit_pending_blobs(pipeline.services)
    assert (report.submitted, report.in_doubt, report.duplicates, report.deferred) == (1, 1, 0, 0)
    [notification] = pipeline.failures()
    assert (notification["ErrorCode"], notification["FailureStatus"], notification["Origin"]) == (
        "Submission_InDoubt",
        "Unknown",
        "submission",
    )
    assert (notification["IngestionSourceId"], notification["BlobName"]) == (pending["sourceId"], blob.blob_name)
    assert "rows are in the table twice" in notification["Details"]
    # Both requests reached Kusto: the duplicate exists, and it was announced before it was made.
    wait_for(lambda: row_count(pipeline.emulator, pipeline.table) == 4, "the blob's 2 rows, twice")
    reader = state_ledger(pipeline)
    reader.refresh()
    assert (reader.lookup(ledger_key(pending)) or pytest.fail("no record")).state == ACCEPTED


def test_a_blob_another_run_is_still_sending_is_held_back_not_sent_and_not_announced(pipeline: Pipeline) -> None:
    blob = pipeline.stage("being-sent.csv")
    pending = pipeline.pending(blob, blob.get_blob_properties().etag, 8)
    state_ledger(pipeline).record(SENDING, [ledger_key(pending)])  # just now: that run may well be alive
    report = submit_pending_blobs(pipeline.services)
    assert (report.received, report.submitted, report.deferred, report.in_doubt) == (1, 0, 1, 0)
    assert pipeline.failures() == []
    assert pipeline.services.pending_queue.peek_messages() == [], "hidden until the sender's lease has passed"
    assert pipeline.pending_left() == 1, "and still there"


def test_a_chunk_whose_tracking_record_was_not_written_is_not_marked_accepted(pipeline: Pipeline) -> None:
    # "Accepted" lets the ledger drop later copies as repeats; it must never mark a chunk nobody tracks.
    blob = pipeline.stage("untracked.csv")
    pending = pipeline.pending(blob, blob.get_blob_properties().etag, 8)
    report = submit_pending_blobs(replace(pipeline.services, tracking_queue=unreachable_queue()))
    assert (report.submitted, report.deferred) == (0, 1)
    assert (pipeline.services.ledger.lookup(ledger_key(pending)) or pytest.fail("no record")).state == SENDING
    assert pipeline.pending_left() == 1, "the message stays, to come back in doubt"


def test_each_throttled_try_is_marked_so_a_crash_in_a_back_off_leaves_no_doubt(pipeline: Pipeline) -> None:
    blob = pipeline.stage("throttled.csv")
    key = ledger_key(pipeline.pending(blob, blob.get_blob_properties().etag, 8))
    emulator_call(pipeline.emulator, "PUT", "/admin/faults", {"throttleRate": 1.0, "retryAfterSeconds": 1})
    report = submit_pending_blobs(pipeline.services)
    assert (report.submitted, report.deferred) == (0, 1)
    container = pipeline.services.blob_service.get_container_client(pipeline.services.settings.state_container)
    slots = [container.download_blob(slot.name).readall() for slot in container.list_blobs()]
    records = [record.entry.state for data in slots for record in decode(data)[0] if record.key == key]
    # Every try the pipeline made (the first and its retries) went out as "sending" and came back "not accepted".
    assert len(records) >= 4 and records == [SENDING, NOT_ACCEPTED] * (len(records) // 2)
    assert (pipeline.services.ledger.lookup(key) or pytest.fail("no record")).state == NOT_ACCEPTED


class AnswerLostTransport(EnvironmentOnceTransport):
    """Delivers every request; the answer to a POST is lost on the way back (a connection reset)."""

    def send(self, request: Any, **kwargs: Any) -> Any:
        response = super().send(request, **kwargs)
        if request.method == "POST":
            raise ServiceResponseError("connection reset by peer after the request went out")
        return response


def test_a_submission_whose_answer_was_lost_stays_marked_as_sending(pipeline: Pipeline) -> None:
    blob = pipeline.stage("answer-lost.csv")
    pending = pipeline.pending(blob, blob.get_blob_properties().etag, 8)
    kusto = kusto_client(pipeline.services.settings, None, transport=AnswerLostTransport())
    with contextlib.closing(kusto):
        report = submit_pending_blobs(replace(pipeline.services, kusto=kusto, submitter=kusto))
    assert (report.submitted, report.deferred) == (0, 1)
    wait_for(lambda: row_count(pipeline.emulator, pipeline.table) == 2, "the rows of the request Kusto did get")
    # Not "not accepted": the copy that comes back is judged in doubt once the lease has passed.
    assert (pipeline.services.ledger.lookup(ledger_key(pending)) or pytest.fail("no record")).state == SENDING
    assert pipeline.pending_left() == 1


def test_an_empty_queue_is_a_quiet_run(pipeline: Pipeline) -> None:
    report = submit_pending_blobs(pipeline.services)
    assert (report.received, report.submitted, report.operations) == (0, 0, 0)


def test_throttled_blobs_reappear_and_are_later_ingested_once_each(pipeline: Pipeline) -> None:
    for index in range(6):
        pipeline.stage(f"t-{index}.csv", f"row{index},{index}\n".encode())
    emulator_call(pipeline.emulator, "PUT", "/admin/faults", {"throttleRate": 1.0, "retryAfterSeconds": 1})
    throttled = submit_pending_blobs(pipeline.services)
    assert (throttled.submitted, throttled.deferred) == (0, 6)
    assert throttled.blocked_targets == [f"{DATABASE}.{pipeline.table}"]
    assert pipeline.tracking_records() == []
    assert pipeline.failures() == []
    emulator_call(pipeline.emulator, "PUT", "/admin/faults", {"throttleRate": 0})
    submitted = 0
    deadline = time.monotonic() + 60
    while submitted < 6:
        assert time.monotonic() < deadline, "throttled blobs did not come back"
        submitted += submit_pending_blobs(pipeline.services).submitted
        time.sleep(0.3)
    records = pipeline.tracking_records()
    source_ids = [blob["sourceId"] for record in records for blob in record["blobs"]]
    assert len(source_ids) == len(set(source_ids)) == 6
    wait_for(lambda: row_count(pipeline.emulator, pipeline.table) == 6, "6 rows")
    assert pipeline.pending_left() == 0


def test_throttling_for_more_runs_than_the_poison_limit_never_poisons_a_good_blob(make_pipeline: Callable[..., Pipeline]) -> None:
    pipeline = make_pipeline(PENDING_MAX_DEQUEUE_COUNT="1")
    services, table, emulator = pipeline.services, pipeline.table, pipeline.emulator
    pipeline.stage("busy.csv")
    emulator_call(emulator, "PUT", "/admin/faults", {"throttleRate": 1.0, "retryAfterSeconds": 1})
    for _ in range(3):
        wait_for(services.pending_queue.peek_messages, "the deferred message to become visible")
        report = submit_pending_blobs(services)
        assert (report.deferred, report.poisoned) == (1, 0)
    emulator_call(emulator, "PUT", "/admin/faults", {"throttleRate": 0})
    wait_for(services.pending_queue.peek_messages, "the deferred message to become visible")
    assert submit_pending_blobs(services).submitted == 1
    assert services.pending_poison_queue.peek_messages() == []
    assert pipeline.failures() == []
    wait_for(lambda: row_count(emulator, table) == 2, "2 rows")


def test_a_blob_kusto_keeps_deferring_past_its_max_age_alerts_once_as_timed_out(make_pipeline: Callable[..., Pipeline]) -> None:
    pipeline = make_pipeline(PENDING_MAX_AGE_SECONDS="60")
    services, table, emulator = pipeline.services, pipeline.table, pipeline.emulator
    blob = services.blob_service.get_blob_client(services.settings.staging_container, f"{DATABASE}/{table}/old.csv")
    etag = blob.upload_blob(b"a,1\n", overwrite=True)["etag"]
    stale = pipeline.pending(blob, etag, 4) | {"recordedAt": "2020-01-01T00:00:00Z"}
    services.pending_queue.send_message(schemas.dump(schemas.PENDING_BLOB, stale))
    pipeline.stage("fresh.csv")
    emulator_call(emulator, "PUT", "/admin/faults", {"throttleRate": 1.0, "retryAfterSeconds": 1})
    report = submit_pending_blobs(services)
    assert (report.timed_out, report.deferred) == (1, 1)
    [failure] = pipeline.failures()
    assert (failure["ErrorCode"], failure["FailureStatus"], failure["BlobName"]) == (
        "Submission_TimedOut",
        "Exhausted",
        f"{DATABASE}/{table}/old.csv",
    )
    assert "PENDING_MAX_AGE_SECONDS=60" in failure["Details"]
    assert pipeline.pending_left() == 1, "only the fresh blob is kept for a later run"


def test_a_permanent_rejection_gives_exactly_one_notification_per_blob(pipeline: Pipeline) -> None:
    for index in range(3):
        pipeline.stage(f"gone-{index}.csv", table="NoSuchTable")
    pipeline.stage("fine.csv")
    report = submit_pending_blobs(pipeline.services)
    assert (report.rejected, report.submitted) == (3, 1)
    failures = pipeline.failures()
    assert len(failures) == 3
    assert {failure["BlobName"] for failure in failures} == {f"{DATABASE}/{pipeline.table}/gone-{i}.csv" for i in range(3)}
    for failure in failures:
        assert (failure["Origin"], failure["FailureStatus"], failure["Table"]) == ("submission", "Permanent", "NoSuchTable")
        assert "NotFound" in failure["ErrorCode"] or "NotExist" in failure["ErrorCode"]
        assert "sig=" not in json.dumps(failure)
    assert pipeline.pending_left() == 0
    assert submit_pending_blobs(pipeline.services).received == 0, "rejected messages are gone, not retried"


def test_a_message_read_too_often_moves_to_the_poison_queue_and_the_watcher_alerts_once(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(PENDING_MAX_DEQUEUE_COUNT="1")
    services, table = pipeline.services, pipeline.table
    pipeline.stage("stuck.csv")
    # A run that died mid-way: the message was read once and never settled.
    [first_read] = services.pending_queue.receive_messages(visibility_timeout=1)
    raw = decode_message(first_read.content)
    wait_for(services.pending_queue.peek_messages, "the message to become visible again")
    report = submit_pending_blobs(services)
    assert (report.poisoned, report.submitted) == (1, 0)
    assert [m.content for m in services.pending_poison_queue.peek_messages(max_messages=32)] == [raw]
    assert pipeline.failures() == [], "the submission timer only moves it; the poison watcher alerts"
    assert pipeline.pending_left() == 0
    assert watch_poison_queues(services) == 1
    [failure] = pipeline.failures()
    assert (failure["ErrorCode"], failure["Origin"], failure["FailureStatus"]) == (
        "Poison_PendingQueue",
        "poison",
        "Exhausted",
    )
    assert failure["BlobName"] == f"{DATABASE}/{table}/stuck.csv"
    assert watch_poison_queues(services) == 0, "one alert per poisoned message"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("this is not base64!", "not base64"),
        (base64.b64encode(b"{not json").decode(), "not valid JSON"),
        (base64.b64encode(b'{"version": 1, "blobUrl": "x?sig=SECRETSIG"}').decode(), "pending-blob.schema.json"),
    ],
)
def test_a_malformed_pending_message_is_reported_with_its_redacted_text_and_removed(
    pipeline: Pipeline, content: str, problem: str
) -> None:
    # Written raw, bypassing the base64 policy, as a foreign tool might.
    plain = QueueClient.from_connection_string(
        pipeline.services.settings.staging.connection_string or "", pipeline.services.settings.pending_queue
    )
    plain.send_message(content)
    pipeline.stage("ok.csv")
    report = submit_pending_blobs(pipeline.services)
    assert (report.malformed, report.submitted) == (1, 1)
    [failure] = pipeline.failures()
    assert (failure["ErrorCode"], failure["Origin"]) == ("Pending_Malformed", "submission")
    assert problem in failure["Details"]
    assert "SECRETSIG" not in failure["Details"]
    assert pipeline.pending_left() == 0


def test_the_account_key_sas_handed_to_kusto_reads_the_blob(pipeline: Pipeline) -> None:
    blob = pipeline.stage("readable.csv", b"x,1\n")
    url = pipeline.services.blob_access.url_for(blob.blob_name)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"x,1\n"
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(plain_blob_url(url), timeout=10)
