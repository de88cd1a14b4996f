"""The whole pipeline through `python -m devhost`: blob lands -> pending -> submitted -> rows in Kusto, or one alert."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Pipeline, pause
from tests.e2e.samples import encode
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

EXTENSIONS = [
    "csv", "csv.gz", "tsv", "tsv.gz", "psv", "psv.gz", "scsv", "jsonl", "jsonl.gz", "json", "json.gz",
    "parquet", "avro", "orc",
]  # fmt: skip


def alert_codes(pipeline: Pipeline, blob_name: str) -> list[str]:
    return [alert["errorCode"] for alert in pipeline.host.alerts() if alert.get("blobName") == blob_name]


def test_every_format_lands_and_bad_blobs_alert_exactly_once(pipeline: Pipeline) -> None:
    expected = {}
    for index, extension in enumerate(EXTENSIONS):
        blob_id = f"b{index}-{extension}"
        expected[blob_id] = index + 1
        pipeline.stage(pipeline.target(f"{blob_id}.{extension}"), encode(extension, blob_id, index + 1))
    malformed = pipeline.target("broken.parquet")
    pipeline.stage(malformed, b"this is not parquet at all")
    pipeline.stage("no-route.csv", encode("csv", "lost", 1))

    assert pipeline.wait_for_rows(expected) == expected
    wait_for(lambda: alert_codes(pipeline, malformed) and alert_codes(pipeline, "no-route.csv"))
    pause(3)  # anything duplicated would arrive within a few more timer ticks
    assert pipeline.rows_per_blob() == expected
    assert alert_codes(pipeline, malformed) == ["BadRequest_NoRecordsOrWrongFormat"]
    assert alert_codes(pipeline, "no-route.csv") == ["Routing_NoRoute"]
    assert len(pipeline.host.alerts()) == 2


def test_with_half_the_requests_throttled_every_blob_lands_exactly_once(pipeline: Pipeline) -> None:
    pipeline.kusto.set_faults(throttleRate=0.5, retryAfterSeconds=1)
    expected = {f"t{index}": 3 for index in range(12)}
    for blob_id in expected:
        pipeline.stage(pipeline.target(f"{blob_id}.csv"), encode("csv", blob_id, 3))

    assert pipeline.wait_for_rows(expected, timeout=90) == expected
    assert pipeline.kusto.stats()  # the emulator is still answering
    pipeline.kusto.set_faults(throttleRate=0.0)
    pause(3)
    assert pipeline.rows_per_blob() == expected
    assert pipeline.host.alerts() == []


def test_a_killed_and_restarted_host_loses_nothing_and_duplicates_nothing(pipeline: Pipeline) -> None:
    expected = {f"k{index}": 2 for index in range(30)}
    names = list(expected)
    for blob_id in names[:15]:
        pipeline.stage(pipeline.target(f"{blob_id}.jsonl"), encode("jsonl", blob_id, 2))
    wait_for(pipeline.rows_per_blob, timeout=60)  # mid-run: some blobs in, others on their way
    for blob_id in names[15:]:
        pipeline.stage(pipeline.target(f"{blob_id}.jsonl"), encode("jsonl", blob_id, 2))
    pipeline.host.kill()
    pipeline.host.start()

    assert pipeline.wait_for_rows(expected, timeout=90) == expected
    pause(3)
    assert pipeline.rows_per_blob() == expected
    assert pipeline.host.alerts() == []
