"""The latency model: each request of the drain waits the set time, the bound and the daily ceiling follow their
formulas, and the section runs and prints its rows.

Nothing here asserts a throughput: the delays are checked to be at least what was asked (a behaviour, not a
timing goal), and the section is run at a toy size only to show it drains everything and reports it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest

from bench.__main__ import parse_args, run
from bench.counting import DelayedTransport, delayed_services
from bench.latency_model import bound, daily_ceiling
from bench.report import format_table, table_rows
from shared.settings import load_settings


class RecordingTransport(HttpTransport):
    """Answers nothing; remembers when each request reached it and whether it was opened and closed."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, float]] = []
        self.opened = self.closed = False

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.sent.append((request.url, time.monotonic()))
        return "answer"

    def open(self) -> None:
        self.opened = True

    def close(self) -> None:
        self.closed = True

    def __exit__(self, *args: Any) -> None:
        self.close()


@pytest.mark.parametrize("seconds", [0.02, 0.05])
def test_each_request_reaches_the_transport_beneath_no_sooner_than_the_delay(seconds: float) -> None:
    inner = RecordingTransport()
    delayed = DelayedTransport(inner, seconds)

    for index in range(3):
        started = time.monotonic()
        answer = delayed.send(HttpRequest("GET", f"http://127.0.0.1:1/{index}"))
        assert time.monotonic() - started >= seconds
        assert answer == "answer"
        assert inner.sent[-1][1] - started >= seconds  # held before it went out, not after the answer

    assert [url for url, _ in inner.sent] == [f"http://127.0.0.1:1/{index}" for index in range(3)]
    delayed.open()
    delayed.close()
    assert inner.opened and inner.closed


def test_the_drain_services_send_every_storage_and_kusto_request_through_its_delay() -> None:
    azurite = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;QueueEndpoint=http://127.0.0.1:2/devstoreaccount1;"
    )
    settings = load_settings(
        {
            "AzureWebJobsStorage": azurite,
            "StagingStorage": azurite,
            "KUSTO_INGEST_URI": "http://127.0.0.1:3",
            "KUSTO_CREDENTIAL": "none",
            "BLOB_ACCESS": "account_key_sas",
        }
    )

    services = delayed_services(settings, storage_seconds=0.008, kusto_seconds=0.15)

    storage = [*services.queues, services.tracking_reader, services.blob_service]
    delays = {delayed(client._pipeline._transport).seconds for client in storage}  # the transports they were built with
    assert delays == {0.008}
    assert delayed(services.kusto._pipeline._client._pipeline._transport).seconds == 0.15


def delayed(transport: Any) -> DelayedTransport:
    """The DelayedTransport under the wrappers that keep a shared transport open (`shared.transport.SharedTransport`)."""
    while not isinstance(transport, DelayedTransport):
        transport = transport._transport
    return transport


def test_the_bound_is_the_least_of_submit_threads_delete_threads_and_receiving() -> None:
    # 8 threads, 20 blobs a chunk, a chunk holds its thread 150 + 3 x 8 + 2 x 3 = 180 ms.
    at_8 = bound(8, 0.008, 0.150)
    assert at_8.slot_seconds == pytest.approx(0.180)
    assert at_8.blobs_per_second == pytest.approx(8 * 20 / 0.180)
    assert at_8.limit == "submit threads"
    # One thread receives 32 a round, in chunks of 20 and 12.
    assert bound(1, 0.008, 0.150).chunk == 16
    # Storage far slower than Kusto: deleting a chunk's messages one after another sets the pace.
    slow_storage = bound(8, 0.050, 0.010)
    assert (slow_storage.limit, slow_storage.blobs_per_second) == ("delete threads", pytest.approx(8 / 0.050))


def test_the_daily_ceiling_counts_the_runs_the_schedule_fits_after_each_budget() -> None:
    # A 60 s budget on a 10 s schedule: a run ends just after 60 s and the next starts on the next tick, 70 s on.
    default = daily_ceiling(100)
    assert default["runsPerDay"] == 1235  # ceil(86,400 / 70)
    assert default["blobsPerRun"] == 100 * 59
    assert default["blobsPerDay"] == 1235 * 5900
    # A budget just under a multiple of the schedule leaves no tick idle: a run a minute.
    assert daily_ceiling(100, budget_seconds=58)["runsPerDay"] == 1440


@pytest.mark.e2e
def test_the_section_drains_at_each_level_and_prints_each_beside_its_bound(tmp_path: Path) -> None:
    args = ["--only", "latency-model", "--latency-model-pending", "60", "--latency-model-levels", "1,8"]
    args += ["--storage-latency-ms", "1", "--kusto-latency-ms", "1", "--out", str(tmp_path)]

    results = run(parse_args(args))

    model = results["latencyModel"]
    assert (model["storageLatencyMs"], model["kustoLatencyMs"]) == (1, 1)
    assert [(point["concurrency"], point["blobs"], point["submitted"]) for point in model["levels"]] == [(1, 60, 60), (8, 60, 60)]
    assert all(point["blobsPerSecond"] > 0 and point["ratio"] > 0 for point in model["levels"])
    assert model["daily"]["measured"]["blobsPerDay"] > 0
    table = format_table(table_rows(results))
    assert "bound = min(C·b / (Lk + 3·Ls + 2·w), C / Ls, 32 / Ls)" in table
    assert "SUBMIT_CONCURRENCY=1, 60 blobs (blobs/s)" in table and "SUBMIT_CONCURRENCY=8, 60 blobs (blobs/s)" in table
    assert ">= 80% of bound" in table and "ratio " in table
    assert "sustained ceiling, one deployment, defaults (blobs/day, at 8)" in table
