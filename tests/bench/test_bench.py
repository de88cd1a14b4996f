"""`make bench` itself at toy sizes: the sections it reports must still run against today's app and emulator.

Nothing here is timed: the figures are measurements, printed by `make bench`, never asserted. What is checked
is that a run completes and that the counts it reports are the ones a drain must produce (every pending
blob drained by ours and by the baseline, one Kusto POST per 20 blobs, the blob trigger's two storage
requests per blob), so a change to the settings' rules or to the emulator cannot leave the benchmark broken
until someone next runs it (a settings check once did, unnoticed for a release).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.storage.queue import QueueServiceClient

from bench.__main__ import parse_args, run
from bench.report import format_table, table_rows, write_outputs
from bench.scenarios import drain, fresh_stack

pytestmark = pytest.mark.e2e


def test_throughput_and_request_counts_run_and_count_what_the_drain_does(tmp_path: Path) -> None:
    args = ["--only", "throughput,requests", "--pending", "40", "--rounds", "1", "--cost-blobs", "20", "--out", str(tmp_path)]

    results = run(parse_args(args))

    drains = results["throughput"]["rounds"][0]
    assert {name: drain["blobs"] for name, drain in drains.items()} == {"baseline": 40, "ours": 40, "latency150": 40}
    assert drains["ours"]["submitted"] == drains["latency150"]["submitted"] == 40
    assert results["kustoPerBlob"]["postsPerBlob"] == 2 / 40
    cost = results["requests"]
    assert cost["operations"] == 1
    assert sum(cost["storageByStage"]["record (blob trigger)"].values()) == 2 * 20
    drain_posts = {route: n for route, n in cost["kustoByStage"]["drain (submission timer)"].items() if route.startswith("POST")}
    assert list(drain_posts.values()) == [1]
    assert cost["kustoByStage"]["record (blob trigger)"] == {}
    table = format_table(table_rows(results))
    assert "ratio drain / baseline" in table and "storage requests per blob (counted, 20 blobs)" in table
    # The drain child did the drain's work on the clock: its CPU a blob and its busy share are never zero.
    assert all(drain["cpuMsPerBlob"] > 0 and 0 < drain["childBusy"] <= 2 for drain in drains.values())
    assert "drain child CPU per blob, drain / baseline" in table and "baseline / drain CPU" in table
    # Where that CPU went: the deletes in both, the calls only ours makes in ours alone, and the parts add up.
    for name, scenario in drains.items():
        parts = scenario["cpuMsPerBlobByPart"]
        assert parts["deletes"] > 0 and parts["mainThread"] > 0
        assert sum(parts.values()) == pytest.approx(scenario["cpuMsPerBlob"])
        only_ours = {"kustoPosts", "ledgerMarks", "trackingSends"}
        assert only_ours & parts.keys() == (set() if name == "baseline" else only_ours)
        assert all(parts[part] > 0 for part in only_ours & parts.keys())
    assert "deleting the pending messages" in table and "Kusto POSTs: building, checking, sending" in table
    if Path("/proc/self/stat").exists():
        # Azurite answered every receive and delete of each drain: its CPU over the drain is never zero.
        assert all(drain["azuriteCpuSeconds"] > 0 and 0 < drain["azuriteBusy"] <= 2 for drain in drains.values())
        assert results["throughput"]["summary"]["azuriteCpuMsPerBlob"]["ours"] > 0
        assert "Azurite CPU per blob, drain / baseline" in table


def test_drains_that_share_an_azurite_each_leave_it_without_their_queues(tmp_path: Path) -> None:
    with fresh_stack(tmp_path, "pair") as stack:
        queues = QueueServiceClient.from_connection_string(stack.azurite.connection_string)
        before = {queue.name for queue in queues.list_queues()}
        ours = drain(stack, "first", 30, "ours")
        baseline = drain(stack, "second", 30, "baseline")
        left = {queue.name for queue in queues.list_queues()} - before

    assert ours["submitted"] == baseline["blobs"] == 30
    assert left == set()  # ours' 2 tracking records went with its queues: the next drain walks none of them
    assert not (tmp_path / "pair").exists()


def test_the_concurrency_sweep_drains_every_level_and_charts_it(tmp_path: Path) -> None:
    assert parse_args([]).sweep_levels == [1, 2, 4, 8, 16]  # the chart's levels by default; two are enough here
    args = ["--only", "concurrency", "--sweep-size", "20", "--sweep-levels", "1,16", "--out", str(tmp_path)]

    results = run(parse_args(args))

    points = results["concurrency"]
    assert [point["concurrency"] for point in points] == [1, 16]
    assert all(point["blobs"] == 20 and point["ours"] > 0 and point["baseline"] > 0 for point in points)
    chart = tmp_path / "concurrency.png"
    assert chart in write_outputs(results, tmp_path) and chart.stat().st_size > 0
    table = format_table(table_rows(results))
    assert "SUBMIT_CONCURRENCY=1 (blobs/s)" in table and "SUBMIT_CONCURRENCY=16 (blobs/s)" in table


def test_a_resource_drain_larger_than_its_queue_depth_handles_every_blob(tmp_path: Path) -> None:
    args = ["--only", "resources", "--resource-sizes", "60", "--resource-depth", "5", "--out", str(tmp_path)]

    results = run(parse_args(args))

    (drain,) = results["resources"]
    assert drain["blobs"] == drain["submitted"] == drain["baselineBlobs"] == 60
    assert drain["runs"] >= 12  # never more than 5 queued
    assert len(drain["cpuByTenth"]) == 10 and all(tenth["cpuMsPerBlob"] > 0 for tenth in drain["cpuByTenth"])
    table = format_table(table_rows(results))
    assert "peak memory, drain of 60" in table and "CPU per blob along the drain of 60, by tenth" in table


def test_the_emulator_section_ingests_its_csv_and_charges_the_emulator_for_its_posts(tmp_path: Path) -> None:
    args = ["--only", "emulator", "--csv-rows", "500", "--posts", "40", "--out", str(tmp_path)]

    results = run(parse_args(args))

    csv, posts = results["emulator"]["csv"], results["emulator"]["posts"]
    assert csv["rows"] == 500 and csv["megabytes"] > 0
    assert posts["requests"] == 40
    assert "all blobs settled" in format_table(table_rows(results))  # post_rate waited for all 800 blobs
    if Path("/proc/self/stat").exists():
        assert posts["emulatorCpuSeconds"] > 0  # answering 40 POSTs costs the emulator some CPU
        assert posts["emulatorCpuMsPerBlobSettled"] > 0
        assert "ms a POST" in format_table(table_rows(results))
