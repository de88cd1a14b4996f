"""The emulator's own speed targets: CSV rows ingested per second, and POSTs answered per second.

The emulator is a tool in its own right, so its two targets are measured beside the app's figures:

* CSV ingestion: one blob of ROWS rows (6 columns, quoted text) submitted once; the time runs from the POST
  to the status endpoint saying the blob succeeded, so download, parse and insert are all inside it.
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

import io
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

from bench.pending import FAIL_FAST_PATTERN
from bench.stack import Stack, cpu_difference, cpu_ms_per, process_cpu_seconds, wait_for
from devhost.processes import AZURITE_ACCOUNT, AZURITE_KEY

DATABASE = "SpeedDb"
CSV_TABLE = "Requests"
CSV_SCHEMA = "id:long, ts:datetime, host:string, level:string, latency:real, msg:string"
LOAD_PROCESSES = 2
LOAD_THREADS = 8
BLOBS_PER_POST = 20


def _csv(rows: int) -> bytes:
    out = io.StringIO()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for index in range(rows):
        ts = (start + timedelta(milliseconds=index)).isoformat().replace("+00:00", "Z")
        out.write(f'{index},{ts},host-{index % 50},{"INFO" if index % 10 else "WARN"},{index % 997 / 10},"msg, {index}"\n')
    return out.getvalue().encode()


def csv_ingestion(stack: Stack, rows: int) -> dict[str, Any]:
    """Rows per second for one CSV blob of `rows` rows, POST to status Succeeded."""
    stack.create_table(DATABASE, CSV_TABLE, CSV_SCHEMA)
    service = BlobServiceClient.from_connection_string(stack.azurite.connection_string)
    container = service.get_container_client("speed")
    if not container.exists():
        container.create_container()
    blob = container.get_blob_client(f"csv-{uuid.uuid4().hex}.csv")
    data = _csv(rows)
    blob.upload_blob(data)
    sas = generate_blob_sas(
        AZURITE_ACCOUNT,
        container.container_name,
        blob.blob_name,
        account_key=AZURITE_KEY,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    body = {"blobs": [{"url": f"{blob.url}?{sas}"}], "properties": {"format": "csv", "enableTracking": True}}
    started = time.perf_counter()
    answer = stack.call("POST", f"/v1/rest/ingestion/queued/{DATABASE}/{CSV_TABLE}", body)
    operation = requests.utils.quote(answer["ingestionOperationId"], safe="")
    while True:
        status = stack.call("GET", f"/v1/rest/ingestion/queued/{DATABASE}/{CSV_TABLE}/{operation}?details=true")
        [detail] = status["details"]
        if detail["status"] in ("Succeeded", "Failed", "Canceled"):
            break
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    if detail["status"] != "Succeeded":
        raise RuntimeError(f"the CSV blob was not ingested: {detail}")
    return {"rows": rows, "megabytes": len(data) / 1e6, "seconds": seconds, "rowsPerSecond": rows / seconds}


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
