"""Queue mode end to end: Azurite, the emulator's queue-based protocol, the real recorder, drain and relay.

Each test stages blobs in its own container, records them with the blob trigger's body, drains them with
the submission timer's body in queue mode, and counts rows through the emulator. The module runs its own
emulator, so its management-command counters and failure queue are this module's alone.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from devhost.processes import Azurite, Emulator
from kusto_emulator.identity_token import IdentityTokens, load_or_create_key
from shared import schemas
from shared.alerts import raise_alert
from shared.dm_resources import (
    CACHE_LIFETIME_SECONDS,
    DataManagementClient,
    DmResourceCache,
    IngestionResources,
)
from shared.error_codes import INVALID_KUSTO_IDENTITY_TOKEN as INVALID_TOKEN
from shared.queue_relay import relay_failures
from shared.queue_submitter import OPERATION_PREFIX, QueueSubmitter
from shared.recorder import PENDING, record_blob
from shared.redaction import plain_blob_url
from shared.services import Services, build_services, ensure_queues
from shared.settings import load_settings
from shared.submission import submit_pending_blobs
from tests.support.stack import AUTO_CREATE, app_settings, emulator_call, running_emulator
from tests.support.waiting import wait_for

DATABASE = "QueueModeDb"
RESOURCES = "get_ingestion_resources"
TOKEN = "get_kusto_identity_token"
ROWS = [{"name": "alpha", "value": 1}, {"name": "beta", "value": 2}, {"name": "gamma", "value": 3}]


def mgmt_counts(emulator: Emulator) -> dict[str, int]:
    return emulator_call(emulator, "GET", "/admin/stats")["mgmtCommands"]


def encode(fmt: str) -> bytes:
    if fmt == "csv":
        return "".join(f"{row['name']},{row['value']}\n" for row in ROWS).encode()
    if fmt == "tsv":
        return "".join(f"{row['name']}\t{row['value']}\n" for row in ROWS).encode()
    if fmt == "json":
        return "\n".join(json.dumps(row) for row in ROWS).encode()
    sink = io.BytesIO()
    if fmt == "parquet":
        pq.write_table(
            pa.table({"name": [r["name"] for r in ROWS], "value": pa.array([r["value"] for r in ROWS], pa.int64())}), sink
        )
    elif fmt == "avro":
        schema = {
            "type": "record",
            "name": "Row",
            "fields": [{"name": "name", "type": "string"}, {"name": "value", "type": "long"}],
        }
        fastavro.writer(sink, schema, ROWS)
    return sink.getvalue()


class FakeClock:
    """The cache's clock, moved by hand to expire resources and token without waiting an hour."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedDataManagement(DataManagementClient):
    """The real management client, except that the next answers can be altered on their way to the cache."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.alter_resources: list[Callable[[IngestionResources], IngestionResources]] = []
        self.alter_token: list[Callable[[str], str]] = []

    def fetch_resources(self) -> IngestionResources:
        resources = super().fetch_resources()
        return self.alter_resources.pop(0)(resources) if self.alter_resources else resources

    def fetch_identity_token(self) -> str:
        token = super().fetch_identity_token()
        return self.alter_token.pop(0)(token) if self.alter_token else token


@dataclasses.dataclass
class QueueMode:
    services: Services
    cache: DmResourceCache
    client: ScriptedDataManagement
    clock: FakeClock
    emulator: Emulator
    table: str

    def stage(self, name: str, data: bytes) -> str:
        """Upload a blob and record it with the blob trigger's body; returns its source id."""
        blob = self.services.blob_service.get_blob_client(
            self.services.settings.staging_container, f"{DATABASE}/{self.table}/{name}"
        )
        blob.upload_blob(data, overwrite=True)
        result = record_blob(blob, self.services)
        assert result.outcome == PENDING, result.message
        return result.message["sourceId"]

    def rows(self) -> int:
        answer = emulator_call(self.emulator, "POST", "/v1/rest/query", {"db": DATABASE, "csl": f"{self.table} | count"})
        return int(answer["Tables"][0]["Rows"][0][0])

    def drained(self) -> Any:
        report = submit_pending_blobs(self.services)
        assert report.deferred == 0 and report.rejected == 0, report
        return report

    def tracking_records(self) -> list[dict[str, Any]]:
        queue = self.services.tracking_queue
        records = []
        for message in queue.receive_messages(messages_per_page=32, visibility_timeout=30):
            records.append(schemas.parse(schemas.TRACKING_RECORD, message.content))
            queue.delete_message(message)
        return records

    def failures(self) -> list[tuple[str, Any]]:
        """(decoded text, message) of every notification on the app's failures queue, removed from it."""
        queue = self.services.failures_queue
        found = []
        for message in queue.receive_messages(messages_per_page=32, visibility_timeout=30):
            found.append((message.content, message))
            queue.delete_message(message)
        return found


@pytest.fixture(scope="module")
def queue_emulator(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with running_emulator(azurite, tmp_path_factory.mktemp("queue-mode-emulator"), AUTO_CREATE) as service:
        yield service


@pytest.fixture
def queue_mode(azurite: Azurite, queue_emulator: Emulator, unique_name: str) -> Iterator[QueueMode]:
    settings = load_settings(
        app_settings(
            azurite,
            queue_emulator.url,
            unique_name,
            SUBMISSION_MODE="queue",
            PENDING_VISIBILITY_TIMEOUT_SECONDS="5",
            DRAIN_TIME_BUDGET_SECONDS="30",
            MAX_BLOBS_PER_BATCH="4",
            SUBMIT_CONCURRENCY="2",
        )
    )
    clock = FakeClock()
    client = ScriptedDataManagement(settings.kusto_ingest_uri, None)
    cache = DmResourceCache(client, clock=clock)
    submitter = QueueSubmitter(
        cache,
        max_blobs_per_batch=settings.max_blobs_per_batch,
        report_level=settings.report_level,
        report_method=settings.report_method,
    )
    built = build_services(settings)
    assert isinstance(built.submitter, QueueSubmitter), "SUBMISSION_MODE=queue selects the queue submitter"
    # The same services with a cache on a fake clock and a counting client, so the tests can expire it.
    built.submitter.close()
    services = dataclasses.replace(built, submitter=submitter, dm_resources=cache)
    ensure_queues(services)
    services.blob_service.create_container(settings.staging_container)
    table = f"T{unique_name}"
    emulator_call(
        queue_emulator, "POST", "/v1/rest/mgmt", {"db": DATABASE, "csl": f".create table {table} (name:string, value:long)"}
    )
    yield QueueMode(services, cache, client, clock, queue_emulator, table)
    services.blob_service.delete_container(settings.staging_container)
    for queue in services.queues:
        with contextlib.suppress(Exception):
            queue.delete_queue()
    submitter.close()


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "parquet", "avro"])
def test_each_format_round_trips_through_the_ingestion_queues(queue_mode: QueueMode, fmt: str) -> None:
    source_ids = {queue_mode.stage(f"part-{index}.{fmt}", encode(fmt)) for index in range(2)}
    report = queue_mode.drained()
    assert (report.received, report.submitted, report.operations) == (2, 2, 1)
    [record] = queue_mode.tracking_records()
    assert record["operationId"].startswith(OPERATION_PREFIX)
    assert {blob["sourceId"] for blob in record["blobs"]} == source_ids
    wait_for(lambda: queue_mode.rows() == 2 * len(ROWS), f"{2 * len(ROWS)} {fmt} rows")
    assert queue_mode.services.pending_queue.get_queue_properties().approximate_message_count == 0


def test_resources_and_token_are_fetched_once_per_expiry_not_per_blob(queue_mode: QueueMode) -> None:
    before = mgmt_counts(queue_mode.emulator)
    for index in range(10):
        queue_mode.stage(f"a-{index}.csv", encode("csv"))
    assert queue_mode.drained().operations == 3, "10 blobs in chunks of 4"
    for index in range(3):
        queue_mode.stage(f"b-{index}.csv", encode("csv"))
    assert queue_mode.drained().submitted == 3
    middle = mgmt_counts(queue_mode.emulator)
    assert middle.get(RESOURCES, 0) - before.get(RESOURCES, 0) == 1
    assert middle.get(TOKEN, 0) - before.get(TOKEN, 0) == 1
    queue_mode.clock.now += CACHE_LIFETIME_SECONDS
    queue_mode.stage("c.csv", encode("csv"))
    queue_mode.drained()
    after = mgmt_counts(queue_mode.emulator)
    assert (after[RESOURCES] - middle[RESOURCES], after[TOKEN] - middle[TOKEN]) == (1, 1)
    wait_for(lambda: queue_mode.rows() == 14 * len(ROWS), "every blob's rows")


def test_rotated_ingestion_queues_are_used_once_the_cache_expires(queue_mode: QueueMode) -> None:
    queue_mode.stage("before.csv", encode("csv"))
    queue_mode.drained()
    old = {plain_blob_url(url) for url in queue_mode.cache.resources().ingestion_queues}
    rotated = emulator_call(queue_mode.emulator, "POST", "/admin/rotate-ingestion-queues")
    new = set(rotated["ingestionQueues"])
    assert new and not new & old
    queue_mode.clock.now += CACHE_LIFETIME_SECONDS
    queue_mode.stage("after.csv", encode("csv"))
    queue_mode.drained()
    assert {plain_blob_url(url) for url in queue_mode.cache.resources().ingestion_queues} == new
    wait_for(lambda: queue_mode.rows() == 2 * len(ROWS), "rows of the blob posted to a rotated queue")


def test_a_queue_sas_that_no_longer_works_refreshes_the_resources_and_the_message_still_lands(queue_mode: QueueMode) -> None:
    def broken_sas(resources: IngestionResources) -> IngestionResources:
        return dataclasses.replace(
            resources, ingestion_queues=tuple(url.replace("sig=", "sig=AAAA") for url in resources.ingestion_queues)
        )

    queue_mode.client.alter_resources.append(broken_sas)
    before = mgmt_counts(queue_mode.emulator)
    queue_mode.stage("x.csv", encode("csv"))
    report = queue_mode.drained()
    assert report.submitted == 1
    assert mgmt_counts(queue_mode.emulator)[RESOURCES] - before.get(RESOURCES, 0) == 2, "fetched again after Azurite's 403"
    wait_for(lambda: queue_mode.rows() == len(ROWS), "rows after the refresh")


def relay_until(queue_mode: QueueMode, what: str, done: Callable[[Any], bool]) -> Any:
    """Run the relay until a run does what `done` checks (the emulator reports a moment after ingesting)."""
    totals: dict[str, int] = {"forwarded": 0, "resubmitted": 0}

    def run() -> bool:
        report = relay_failures(queue_mode.services, queue_mode.cache)
        totals["forwarded"] += report.forwarded
        totals["resubmitted"] += report.resubmitted
        return done(totals)

    wait_for(run, what)
    return totals


def test_a_bad_blob_becomes_a_relayed_failure_notification_and_an_alert(
    queue_mode: QueueMode, caplog: pytest.LogCaptureFixture
) -> None:
    source_id = queue_mode.stage("broken.parquet", b"this is not parquet")
    queue_mode.stage("fine.csv", encode("csv"))
    queue_mode.drained()
    relay_until(queue_mode, "the relayed failure", lambda totals: totals["forwarded"] == 1)
    [(text, message)] = queue_mode.failures()
    notification = schemas.parse(schemas.FAILURE_NOTIFICATION, text)
    assert (notification["Origin"], notification["IngestionSourceId"]) == ("relay", source_id)
    assert notification["BlobName"] == f"{DATABASE}/{queue_mode.table}/broken.parquet"
    assert "sig=" not in text
    alert = raise_alert(text, queue_name=queue_mode.services.settings.failures_queue, message_id=message.id, dequeue_count=1)
    assert alert.error_code == notification["ErrorCode"] and alert.dimensions["origin"] == "relay"
    assert any(record.getMessage().startswith("KUSTO_INGESTION_FAILURE") for record in caplog.records)
    wait_for(lambda: queue_mode.rows() == len(ROWS), "the good blob's rows")


def test_failure_notifications_about_other_blobs_are_left_alone(queue_mode: QueueMode) -> None:
    failed_queue = QueueClient.from_queue_url(queue_mode.cache.resources().failure_queue)
    foreign = {
        "OperationId": "x",
        "IngestionSourceId": "y",
        "IngestionSourcePath": "https://elsewhere.blob.core.windows.net/c/b.csv",
    }
    failed_queue.send_message(base64.b64encode(json.dumps(foreign).encode()).decode())
    report = relay_failures(queue_mode.services, queue_mode.cache)
    assert report.foreign >= 1 and report.forwarded == 0
    assert queue_mode.failures() == []
    left = [json.loads(base64.b64decode(m.content)) for m in failed_queue.peek_messages(max_messages=32)]
    assert foreign in left, "still there for its owner, visible at once"
    for message in failed_queue.receive_messages(messages_per_page=32, visibility_timeout=5):
        if json.loads(base64.b64decode(message.content)) == foreign:
            failed_queue.delete_message(message)


def forged_expired_token(emulator: Emulator) -> Callable[[str], str]:
    """A token signed with the emulator's own key but already expired (as if cached past its lifetime)."""
    assert emulator.data_dir is not None
    key = load_or_create_key(Path(emulator.data_dir))
    return lambda _token: IdentityTokens(key).issue(now=time.time() - 7200, lifetime_seconds=60)


def tampered(token: str) -> str:
    head, _, signature = token.rpartition(".")
    return f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


@pytest.mark.parametrize("spoil", ["tampered", "expired"])
def test_a_refused_identity_token_is_replaced_and_the_blob_recovers(queue_mode: QueueMode, spoil: str) -> None:
    queue_mode.client.alter_token.append(tampered if spoil == "tampered" else forged_expired_token(queue_mode.emulator))
    before = mgmt_counts(queue_mode.emulator)
    queue_mode.stage("guarded.csv", encode("csv"))
    queue_mode.drained()
    relay_until(queue_mode, "the token rejection", lambda totals: totals["resubmitted"] == 1)
    assert queue_mode.failures() == [], "a refused token is recovered, not alerted"
    assert queue_mode.drained().submitted == 1, "the blob was recorded again"
    wait_for(lambda: queue_mode.rows() == len(ROWS), "rows after the new token")
    assert mgmt_counts(queue_mode.emulator)[TOKEN] - before.get(TOKEN, 0) == 2, "one token refused, one fresh"


@pytest.mark.parametrize("escape", ["../", "..%2F"])
def test_a_forged_relay_notification_cannot_make_the_app_record_a_blob_outside_staging(
    queue_mode: QueueMode, escape: str, unique_name: str
) -> None:
    services = queue_mode.services
    other = services.blob_service.get_blob_client(f"{unique_name}-other", f"{DATABASE}/{queue_mode.table}/secret.csv")
    with contextlib.suppress(ResourceExistsError):
        services.blob_service.create_container(other.container_name)
    other.upload_blob(encode("csv"), overwrite=True)
    # Kusto "refused the identity token" for a path that starts in staging and climbs out of it: the relay would
    # record that blob again, through whatever name follows the staging prefix.
    forged = {
        "OperationId": "op",
        "Database": DATABASE,
        "Table": queue_mode.table,
        "IngestionSourceId": "6f1c3a52-9d2e-4b7a-8c1d-2e3f4a5b6c7d",
        "IngestionSourcePath": f"{services.staging.url_prefix}{escape}{other.container_name}/{other.blob_name}",
        "ErrorCode": INVALID_TOKEN,
        "FailureStatus": "Transient",
    }
    QueueClient.from_queue_url(queue_mode.cache.resources().failure_queue).send_message(
        base64.b64encode(json.dumps(forged).encode()).decode()
    )
    try:
        report = relay_failures(services, queue_mode.cache)
        assert (report.forwarded, report.resubmitted) == (1, 0)
        [(text, _)] = queue_mode.failures()
        assert json.loads(text)["ErrorCode"] == INVALID_TOKEN, "one relayed alert, no blob recorded for it"
        assert services.pending_queue.get_queue_properties().approximate_message_count == 0
        assert other.exists()
    finally:
        services.blob_service.delete_container(other.container_name)
