"""Data, mappings, policies, failures and operations survive a restart; blobs accepted before a crash are resumed."""

from __future__ import annotations

import asyncio
import json

from kusto_emulator.catalog import utc_now
from kusto_emulator.config import EmulatorConfig
from kusto_emulator.operations import BlobRef, Operation
from kusto_emulator.state import EmulatorState
from tests.emulator.conftest import KustoCalls

CSV = b"alpha,1,2024-01-01T00:00:00Z,true\nbeta,2,2024-01-02T00:00:00Z,false\n"
TABLE = ".create table T (name:string, n:long, ts:datetime, ok:bool)"


def test_everything_survives_a_graceful_restart(start_own_emulator, staging, tmp_path):
    data_dir = tmp_path / "data"
    first = start_own_emulator("--auto-create-databases", data_dir=data_dir)
    calls = KustoCalls(first.url)
    calls.mgmt_rows("D", TABLE)
    mapping = json.dumps([{"column": "name", "Properties": {"Ordinal": "0"}}])
    calls.mgmt_rows("D", f".create table T ingestion csv mapping 'm' '{mapping}'")
    calls.mgmt_rows("D", ".alter table T policy streamingingestion enable")
    response = calls.submit("D", "T", [{"url": staging.put("a.csv", CSV)}, {"url": staging.put("empty.csv", b"")}])
    operation_id = response.json()["ingestionOperationId"]
    before = calls.wait("D", "T", operation_id)
    first.stop()

    second = KustoCalls(start_own_emulator(data_dir=data_dir).url)

    assert second.count("D", "T") == 2
    assert second.wait("D", "T", operation_id)["details"] == before["details"]
    assert [row["Name"] for row in second.mgmt_rows("D", ".show table T ingestion csv mappings")] == ["m"]
    [policy] = second.mgmt_rows("D", ".show table T policy streamingingestion")
    assert json.loads(policy["Policy"])["IsEnabled"] is True
    assert [row["ErrorCode"] for row in second.mgmt_rows("D", ".show ingestion failures")] == ["BadRequest_EmptyBlob"]


def test_blobs_accepted_before_a_crash_are_ingested_once_after_restart(start_own_emulator, staging, tmp_path):
    data_dir = tmp_path / "data"
    first = start_own_emulator("--auto-create-databases", "--workers", "1", data_dir=data_dir)
    calls = KustoCalls(first.url)
    calls.mgmt_rows("D", TABLE)
    urls = [staging.put(f"part-{i}.csv", CSV) for i in range(20)]
    operation_id = calls.submit("D", "T", [{"url": url} for url in urls]).json()["ingestionOperationId"]
    first.kill()

    second = KustoCalls(start_own_emulator("--workers", "2", data_dir=data_dir).url)
    outcome = second.wait("D", "T", operation_id)

    assert outcome["status"] == {"succeeded": 20, "failed": 0, "inProgress": 0, "canceled": 0}
    assert second.count("D", "T") == 40


def test_recorded_but_unfinished_blobs_are_resumed_at_start(azurite, staging, tmp_path):
    """Deterministic form of the crash case: an operation on disk with no blob outcome is ingested at start."""
    config = EmulatorConfig(data_dir=tmp_path, storage_connection_string=azurite.connection_string, auto_create_databases=True)
    url = staging.put("pending.csv", CSV)
    plain, credential = url.split("?", 1)
    state = EmulatorState.open(config)
    state.use_database("D")
    state.catalog.create_table("D", "T", [("name", "string"), ("n", "long"), ("ts", "datetime"), ("ok", "bool")])
    operation = Operation(
        "1;2;resume-me", "D", "T", True, utc_now(), {"format": "csv"}, (BlobRef(plain, "?" + credential, "src", None),)
    )
    asyncio.run(state.operations.record(operation))
    state.close()

    reopened = EmulatorState.open(config)
    try:
        resumed = reopened.resume_unfinished()
        assert reopened.worker.wait_idle(60)
        results = reopened.operations.results("1;2;resume-me")
        with reopened.catalog.cursor() as cursor:
            (rows,) = cursor.execute('SELECT count(*) FROM "D"."T"').fetchone()
    finally:
        reopened.close()
    assert resumed == 1
    assert results[0].status == "Succeeded" and rows == 2
