"""The emulator's own speed targets: CSV rows ingested per second, and POSTs answered per second.

The emulator is a tool in its own right, so its two targets are measured beside the app's figures:

* CSV ingestion: one blob of `--csv-rows` rows (6 typed columns, a quoted text column), written by DuckDB
  into a scratch folder and uploaded to Azurite. Through the emulator, the time runs from the POST to the
  status endpoint saying the blob succeeded, so download, parse, conversion, insert and commit are all
  inside it. Beside it, the raw engine does the same work in a Python process of its own (`engine_run`):
  the same SDK download from Azurite into a file on the same disk, DuckDB's `read_csv` with the table's
  column types and `INSERT INTO ... SELECT` into a DuckDB file, committed; its process start, the CREATE
  TABLE and the count afterwards are outside its time, as the emulator's are. The two take turns
  (`--csv-repeats` pairs, the order flipped each pair); the goal is the emulator at >= 90% of the engine's
  rows/s. The emulator's own steps, timed in-process, match the engine's (docs/emulator.md, "Ingestion").
* POST handling: requests of 20 blobs each, sent by LOAD_PROCESSES processes of LOAD_THREADS keep-alive
  connections, while the emulator works behind them (their blob names fail at once, so each still costs
  the worker a status write). The load generator shares the two cores with the emulator, so the figure is
  a floor for what the emulator itself can answer; beside it, the emulator process's own CPU per POST
  over the same window (read from /proc, the ingestion threads running behind included). Ingestion gives
  way to requests (`kusto_emulator.activity`), so most of a burst's blobs are settled after it: the time
  from the last answer until every blob has its final status, and the emulator's CPU per blob over the
  whole run, say what that deferral costs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import requests
from azure.storage.blob import BlobClient, BlobSasPermissions, BlobServiceClient, generate_blob_sas

from bench.pending import FAIL_FAST_PATTERN
from bench.stack import Stack, cpu_difference, cpu_ms_per, process_cpu_seconds, wait_for
from devhost.processes import AZURITE_ACCOUNT, AZURITE_KEY, ROOT

DATABASE = "SpeedDb"
CSV_TABLE = "Requests"
CSV_SCHEMA = "id:long, ts:datetime, host:string, level:string, latency:real, msg:string"
# The same columns in DuckDB's types (as the emulator stores them: kusto_emulator/kusto_types.py), for the raw engine.
ENGINE_TYPES = (
    ("id", "BIGINT"),
    ("ts", "TIMESTAMP"),
    ("host", "VARCHAR"),
    ("level", "VARCHAR"),
    ("latency", "DOUBLE"),
    ("msg", "VARCHAR"),
)
ENGINE_COLUMNS = ", ".join(f"{name} {kind}" for name, kind in ENGINE_TYPES)
# A status GET costs the emulator about 1.5 ms of CPU: polled every 20 ms, that was 7% of a core taken from the
# ingestion it times (most of the CPU the emulator spent beyond DuckDB's); every 50 ms it is 3%, and the time
# is read at most 50 ms (under 2% of a 3,000,000-row run) after the blob succeeded.
STATUS_POLL_SECONDS = 0.05
LOAD_PROCESSES = 2
LOAD_THREADS = 8
BLOBS_PER_POST = 20


def write_csv(path: Path, rows: int) -> int:
    """Write `rows` records of CSV_SCHEMA to `path` and return its size. DuckDB writes them (millions a second,
    where Python took seconds a million); the fields are the ones Kusto clients send: ISO 8601 UTC datetimes
    with a `Z`, reals, and a text column with a comma in it, so every record has a quoted field to parse."""
    records = (
        "SELECT i AS id, strftime(TIMESTAMP '2026-01-01' + to_milliseconds(i), '%Y-%m-%dT%H:%M:%S.%gZ') AS ts, "
        "'host-' || (i % 50) AS host, CASE WHEN i % 10 = 0 THEN 'WARN' ELSE 'INFO' END AS level, "
        "(i % 997) / 10 AS latency, 'msg, ' || i AS msg FROM range($rows) r(i)"
    ).replace("$rows", str(int(rows)))
    target = str(path).replace("'", "''")
    with duckdb.connect() as con:
        con.execute(f"COPY ({records}) TO '{target}' (HEADER false)")
    return path.stat().st_size


def _upload(stack: Stack, path: Path) -> str:
    """Upload `path` to Azurite as a new blob; its URL with a read SAS."""
    service = BlobServiceClient.from_connection_string(stack.azurite.connection_string)
    container = service.get_container_client("speed")
    if not container.exists():
        container.create_container()
    blob = container.get_blob_client(f"csv-{uuid.uuid4().hex}.csv")
    with path.open("rb") as handle:
        blob.upload_blob(handle, length=path.stat().st_size, max_concurrency=2)
    sas = generate_blob_sas(
        AZURITE_ACCOUNT,
        container.container_name,
        blob.blob_name,
        account_key=AZURITE_KEY,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return f"{blob.url}?{sas}"


def _emulator_run(stack: Stack, table: str, blob_url: str) -> dict[str, Any]:
    """One ingestion through the emulator: POST, then its status every STATUS_POLL_SECONDS until Succeeded; rows
    counted after."""
    stack.create_table(DATABASE, table, CSV_SCHEMA)
    body = {"blobs": [{"url": blob_url}], "properties": {"format": "csv", "enableTracking": True}}
    pid = stack.emulator.process.pid
    cpu_before, started = process_cpu_seconds(pid), time.perf_counter()
    answer = stack.call("POST", f"/v1/rest/ingestion/queued/{DATABASE}/{table}", body)
    operation = requests.utils.quote(answer["ingestionOperationId"], safe="")
    while True:
        status = stack.call("GET", f"/v1/rest/ingestion/queued/{DATABASE}/{table}/{operation}?details=true")
        [detail] = status["details"]
        if detail["status"] in ("Succeeded", "Failed", "Canceled"):
            break
        time.sleep(STATUS_POLL_SECONDS)
    seconds, cpu = time.perf_counter() - started, cpu_difference(cpu_before, process_cpu_seconds(pid))
    if detail["status"] != "Succeeded":
        raise RuntimeError(f"the CSV blob was not ingested: {detail}")
    [[rows]] = stack.query(DATABASE, f"{table} | count")
    return {"seconds": seconds, "cpuSeconds": cpu, "rows": rows}


def engine_run(blob_url: str, database_path: str, table: str, scratch: str) -> dict[str, Any]:
    """The raw engine's side, run in a Python process of its own as the emulator is: the same blob downloaded
    from Azurite with the same SDK call into a file on the same disk, then DuckDB's `read_csv` with the table's
    column types, `INSERT INTO ... SELECT` into a table of a DuckDB file, committed. Its thread is niced as the
    emulator's ingestion threads are (`kusto_emulator.worker._lower_priority`), with DuckDB's own threads left
    as they are in both, so other work on the machine weighs on both sides alike."""
    with duckdb.connect(database_path) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"CREATE TABLE {table} ({ENGINE_COLUMNS})")
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        downloaded = Path(tempfile.mkdtemp(dir=scratch)) / "blob"
        cpu_before, started = time.process_time(), time.perf_counter()  # process_time: every thread's, DuckDB's too
        with downloaded.open("wb") as handle:
            BlobClient.from_blob_url(blob_url).download_blob(max_concurrency=1).readinto(handle)
        fetched = time.perf_counter()
        types = ", ".join(f"'{name}': '{kind}'" for name, kind in ENGINE_TYPES)
        con.execute("BEGIN")
        con.execute(
            f"INSERT INTO {table} SELECT * FROM read_csv(?, header = false, auto_detect = false, columns = {{{types}}}, "  # noqa: S608
            "delim = ',', quote = '\"', escape = '\"')",
            [str(downloaded)],
        )
        con.execute("COMMIT")
        done, cpu = time.perf_counter(), time.process_time() - cpu_before
        shutil.rmtree(downloaded.parent, ignore_errors=True)
        (counted,) = con.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - constant name
    return {
        "seconds": done - started,
        "downloadSeconds": fetched - started,
        "loadSeconds": done - fetched,
        "cpuSeconds": cpu,
        "rows": counted,
    }


def _engine_process(blob_url: str, database: Path, table: str, scratch: Path) -> dict[str, Any]:
    """`engine_run` in a new Python process (`python -m bench.emulator_speed`), as the emulator is one; the
    process's start and imports are not timed. The blob URL (with its SAS) goes through stdin."""
    job = {"blobUrl": blob_url, "database": str(database), "table": table, "scratch": str(scratch)}
    done = subprocess.run(
        [sys.executable, "-m", "bench.emulator_speed"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=900,
    )
    if done.returncode:
        raise RuntimeError(f"the raw engine's run failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def _cpu_ratio(runs: list[dict[str, Any]]) -> float | None:
    """Engine CPU over emulator CPU (medians), None without /proc: less moved by other work than wall time."""
    if any(run["emulatorCpuSeconds"] is None for run in runs):
        return None
    return statistics.median(run["engineCpuSeconds"] for run in runs) / statistics.median(
        run["emulatorCpuSeconds"] for run in runs
    )


def csv_ingestion(stack: Stack, rows: int, repeats: int = 3) -> dict[str, Any]:
    """Rows per second for one CSV blob of `rows` rows through the emulator (POST to status Succeeded), beside
    DuckDB's own `read_csv` of the same blob (`engine_run`, download included), `repeats` pairs taken in turn
    (the order flips every pair, so a drift on the machine favours neither). Figures are medians; the ratio
    is emulator rows/s over engine rows/s, and its spread over the pairs says how noisy the run was."""
    scratch = Path(tempfile.mkdtemp(prefix="csv-", dir=stack.work_dir))
    try:
        size = write_csv(scratch / "source.csv", rows)
        blob_url = _upload(stack, scratch / "source.csv")
        (scratch / "source.csv").unlink()  # both sides read the blob from Azurite, not this file
        engine_dir = stack.work_dir / "engine"
        engine_dir.mkdir(exist_ok=True)
        load_before = os.getloadavg()
        runs = []
        for index in range(repeats):
            table = f"{CSV_TABLE}{index}"
            if index % 2 == 0:
                emulated = _emulator_run(stack, table, blob_url)
                raw = _engine_process(blob_url, engine_dir / "engine.duckdb", table, scratch)
            else:
                raw = _engine_process(blob_url, engine_dir / "engine.duckdb", table, scratch)
                emulated = _emulator_run(stack, table, blob_url)
            if emulated["rows"] != rows or raw["rows"] != rows:
                raise RuntimeError(f"rows counted: emulator {emulated['rows']}, engine {raw['rows']}, written {rows}")
            runs.append(
                {
                    "emulatorSeconds": emulated["seconds"],
                    "engineSeconds": raw["seconds"],
                    "engineDownloadSeconds": raw["downloadSeconds"],
                    "engineLoadSeconds": raw["loadSeconds"],
                    "emulatorCpuSeconds": emulated["cpuSeconds"],
                    "engineCpuSeconds": raw["cpuSeconds"],
                    "ratio": raw["seconds"] / emulated["seconds"],
                }
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = statistics.median(run["emulatorSeconds"] for run in runs)
    engine_seconds = statistics.median(run["engineSeconds"] for run in runs)
    return {
        "rows": rows,
        "megabytes": size / 1e6,
        "repeats": repeats,
        "seconds": seconds,
        "rowsPerSecond": rows / seconds,
        "engine": {
            "seconds": engine_seconds,
            "rowsPerSecond": rows / engine_seconds,
            "downloadSeconds": statistics.median(run["engineDownloadSeconds"] for run in runs),
            "loadRowsPerSecond": rows / statistics.median(run["engineLoadSeconds"] for run in runs),
        },
        "ratio": engine_seconds / seconds,
        "cpuRatio": _cpu_ratio(runs),
        "ratioRange": [min(run["ratio"] for run in runs), max(run["ratio"] for run in runs)],
        "loadAverage": [load_before[0], os.getloadavg()[0]],
        "runs": runs,
    }


def _post_batch(url: str, count: int, tag: str) -> int:
    """One load process: `count` POSTs of BLOBS_PER_POST fail-fast blobs over LOAD_THREADS keep-alive sessions."""
    prefix = FAIL_FAST_PATTERN.split("*")[0]

    def send(session: requests.Session, index: int) -> None:
        names = [f"{prefix}{tag}-{index}-{j}.csv" for j in range(BLOBS_PER_POST)]
        blobs = [{"url": f"http://127.0.0.1/devstoreaccount1/c/{name}?sig=x"} for name in names]
        response = session.post(url, json={"blobs": blobs, "properties": {"format": "csv"}}, timeout=60)
        response.raise_for_status()

    sessions = [requests.Session() for _ in range(LOAD_THREADS)]
    with ThreadPoolExecutor(LOAD_THREADS) as pool:
        list(pool.map(lambda index: send(sessions[index % LOAD_THREADS], index), range(count)))
    return count


def post_rate(stack: Stack, requests_total: int, fail_fast: list[dict[str, str]]) -> dict[str, Any]:
    """POSTs of 20 blobs answered per second, with ingestion (fail-fast blobs) running behind, and the
    emulator's own CPU over the same window per POST, which the load generator's share of the cores does not
    blur. The window starts once earlier work is done and ends with the last answer: the backlog of failed
    blobs the emulator works off afterwards is not charged to the POSTs. It is waited out and reported
    apart: how long after the last answer every blob had its final status, and the CPU a blob of it all."""
    stack.create_table(DATABASE, "Posts", "name:string")
    stack.set_faults(failBlobs=fail_fast)
    stack.wait_until_idle()
    url = f"{stack.emulator.url}/v1/rest/ingestion/queued/{DATABASE}/Posts"
    share = requests_total // LOAD_PROCESSES
    pid = stack.emulator.process.pid
    settled_before = _settled_blobs(stack)
    cpu_before, started = process_cpu_seconds(pid), time.perf_counter()
    with ProcessPoolExecutor(LOAD_PROCESSES) as pool:
        sent = sum(
            pool.map(_post_batch, [url] * LOAD_PROCESSES, [share] * LOAD_PROCESSES, [str(i) for i in range(LOAD_PROCESSES)])
        )
    answered, cpu_answered = time.perf_counter(), process_cpu_seconds(pid)
    # Polled finely: the time to settle is itself a figure, of a few seconds.
    wait_for(lambda: _settled_blobs(stack) >= settled_before + sent * BLOBS_PER_POST, "every blob to settle", 600, 0.05)
    settled, cpu_settled = time.perf_counter(), process_cpu_seconds(pid)
    return {
        "requests": sent,
        "blobsPerRequest": BLOBS_PER_POST,
        "seconds": answered - started,
        "requestsPerSecond": sent / (answered - started),
        "emulatorCpuSeconds": cpu_difference(cpu_before, cpu_answered),
        "emulatorCpuMsPerRequest": cpu_ms_per(cpu_difference(cpu_before, cpu_answered), sent),
        "settledSecondsAfterLastAnswer": settled - answered,
        "emulatorCpuMsPerBlobSettled": cpu_ms_per(cpu_difference(cpu_before, cpu_settled), sent * BLOBS_PER_POST),
    }


def _settled_blobs(stack: Stack) -> int:
    """Blobs the emulator has given a final status (succeeded, failed or skipped) since it started."""
    return sum(stack.stats()["blobs"].values())


if __name__ == "__main__":  # the raw engine's side of `csv_ingestion`: one job as JSON on stdin, its figures on stdout
    job = json.load(sys.stdin)
    print(json.dumps(engine_run(job["blobUrl"], job["database"], job["table"], job["scratch"])))
