"""The emulator's speed section (`bench/emulator_speed.py`) and the two emulator changes its CSV run led to.

`process_cpu_seconds` reads another process's CPU from /proc; checked against the process's own account. The
CSV run ingests one blob through the emulator beside DuckDB's own `read_csv` of it: on a small file, both must
land every row and the table must print the ratio beside its goal. The emulator's datetime conversion was
rewritten for speed (no ICU cast per value) and must give the instants the old expression gave; its blob
downloads must read in the SDK's own block size (a transport passed in defaulted to 4 KiB).
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from bench.emulator_speed import csv_ingestion, process_cpu_seconds, write_csv
from bench.report import format_table, table_rows
from bench.stack import running_stack
from devhost.processes import AZURITE_KEY
from kusto_emulator.formats import _convert
from kusto_emulator.storage import DOWNLOAD_BLOCK_SIZE, BlobAccess


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="/proc is Linux's")
def test_it_reads_the_same_user_and_system_time_the_process_counts_for_itself() -> None:
    sum(i * i for i in range(2_000_000))  # some CPU, so a wrong field would not read as a matching zero

    times = os.times()
    read = process_cpu_seconds(os.getpid())

    assert read is not None
    assert abs(read - (times.user + times.system)) < 0.05  # the two are read a few clock ticks apart


def test_a_process_without_proc_entry_reads_as_unknown() -> None:
    assert process_cpu_seconds(2**22 + 1) is None  # above Linux's pid_max: never a live process


def test_the_generated_csv_has_one_record_per_row_with_a_quoted_field(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"

    size = write_csv(path, 1000)

    lines = path.read_text().splitlines()
    assert size == path.stat().st_size and len(lines) == 1000
    assert lines[1] == '1,2026-01-01T00:00:00.001Z,host-1,INFO,0.1,"msg, 1"'


@pytest.mark.e2e
def test_the_csv_run_lands_every_row_on_both_sides_and_prints_the_ratio(tmp_path: Path) -> None:
    with running_stack(tmp_path / "stack") as stack:
        result = csv_ingestion(stack, 2000, repeats=2)  # raises unless both sides count 2000 rows every time

    assert result["rows"] == 2000 and result["repeats"] == len(result["runs"]) == 2
    assert result["engine"]["rowsPerSecond"] > 0 and result["rowsPerSecond"] > 0
    assert all(run["engineDownloadSeconds"] > 0 for run in result["runs"])
    rows = table_rows({"emulator": {"csv": result, "posts": _NO_POSTS}})
    [ratio] = [row for row in rows if "emulator / DuckDB rows/s" in row[0]]
    assert ratio[1:3] == (f"{result['ratio']:.0%}", ">= 90%")
    assert "DuckDB read_csv of the same blob" in format_table(rows)


_NO_POSTS = {"requestsPerSecond": 0, "settledSecondsAfterLastAnswer": 0}

_TIMES = [
    "2026-01-01T00:00:00.000Z",
    "2026-01-01T12:00:00+02:00",
    "2026-01-01T12:00:00-05:30",
    "2026-01-01T12:00:00.1234567Z",
    "2026-01-01 12:00:00 America/New_York",
    "2026-06-01 12:00:00 Europe/Berlin",
    "2026-01-01T12:00:00+14:00",
    "2026-01-01",
    "infinity",
    "-infinity",
    "epoch",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.9999999Z",
    "1969-12-31T23:59:59.999999Z",
    "2026-13-01T00:00:00Z",
    "garbage",
    "",
    None,
]


def test_datetimes_convert_to_the_instants_the_icu_cast_gave() -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # as the emulator's catalog sets it
    con.execute("CREATE TABLE v (x VARCHAR)")
    con.executemany("INSERT INTO v VALUES (?)", [[value] for value in _TIMES])
    old = "TRY_CAST(TRY_CAST(x AS TIMESTAMPTZ) AS TIMESTAMP)"  # the expression before the change

    rows = con.execute(f"SELECT x, {old}, {_convert('x', 'datetime')} FROM v").fetchall()  # noqa: S608 - constant SQL

    assert [(x, new) for x, before, new in rows if before != new] == []
    random_instants = (
        "SELECT strftime(TIMESTAMP '0001-01-01' + to_microseconds((random() * 315537897599999999)::BIGINT), "
        "'%Y-%m-%dT%H:%M:%S.%f') || (['Z', '', '+05:45', '-11:00', ' Asia/Tokyo'])[1 + (i % 5)::INT] AS x FROM range(20000) t(i)"
    )
    [[differing]] = con.execute(
        f"SELECT count(*) FILTER (WHERE {old} IS DISTINCT FROM {_convert('x', 'datetime')}) FROM ({random_instants})"  # noqa: S608
    ).fetchall()
    assert differing == 0


def test_blob_downloads_read_in_the_sdks_own_block_size() -> None:
    storage = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    access = BlobAccess(storage, 2)
    try:
        client = access.client("http://127.0.0.1:9/devstoreaccount1/c/blob.csv?sig=x")
        assert client._pipeline._transport.connection_config.data_block_size == DOWNLOAD_BLOCK_SIZE == 256 * 1024
    finally:
        access.close()
