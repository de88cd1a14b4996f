"""The measurements of `make bench`, one function each; every one returns plain JSON-ready numbers.

Drains run in a child process (`bench.drain_child`) so that their CPU and memory are theirs alone; the
per-blob request counts run in this process with counting clients (`bench.counting`); the latency run
goes through the local host (`python -m devhost`) exactly as `make run` does.

Drains whose throughputs are compared (ours, the receive-and-delete baseline and ours at 150 ms in one
throughput round; ours and the baseline at one concurrency level) run one after another on one fresh stack
(`fresh_stack`): a new Azurite and a new emulator, stopped afterwards, each drain deleting its queues when it
ends. Azurite paces those drains, and its CPU a blob moves by up to 2x from one drain to the next, in one
process as much as across processes, so they share the server they are compared on. The CPU and memory
drains, whose figures are the client's own, each run on a fresh stack of their own (`fresh_drain`).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from azure.storage.blob import BlobSasPermissions, generate_blob_sas

from bench.counting import RequestCounter, counted_services
from bench.drain_child import KUSTO_LATENCY_ENV, STORAGE_LATENCY_ENV
from bench.pending import FAIL_FAST_PATTERN, fill_pending_queue, pending_messages, topped_up
from bench.stack import Stack, cpu_difference, cpu_ms_per, process_cpu_seconds, running_stack, wait_for
from devhost.processes import AZURITE_ACCOUNT, AZURITE_KEY, ROOT, Service, die_with_parent, spawn
from shared import tracking
from shared.reconcile import reconcile_staging
from shared.recorder import record_blob
from shared.redaction import plain_blob_url
from shared.services import Services, build_services, ensure_queues
from shared.settings import Settings, load_settings
from shared.staging_area import source_id
from shared.submission import submit_pending_blobs

DATABASE = "BenchDb"
TABLE = "Events"
TABLE_SCHEMA = "name:string, value:long"
SDK_PYTHON = ROOT / ".venv-sdk" / "bin" / "python"
FAIL_FAST = [{"pattern": FAIL_FAST_PATTERN, "errorCode": "BadRequest_BenchFailFast"}]
RECONCILE_INTERVAL_SECONDS = 1800
"""The default RECONCILE_SCHEDULE's spacing (every 30 minutes)."""
STAGING_LIST_PAGE = 5000
"""Blobs one List Blobs request returns at most: what listing the staging container costs a blob, per run."""


def prepare(stack: Stack) -> None:
    stack.create_table(DATABASE, TABLE, TABLE_SCHEMA)


def _services(values: dict[str, str]) -> Services:
    services = build_services(load_settings(values))
    ensure_queues(services)
    return services


def _kusto_requests(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Kusto requests between two `/admin/stats` snapshots, admin routes left out."""
    delta = {}
    for route, count in after["requests"].items():
        if "/admin/" not in route and count - before["requests"].get(route, 0):
            delta[route] = count - before["requests"].get(route, 0)
    return delta


def _measured_child(
    stack: Stack, what: str, command: list[str], *, env: dict[str, str] | None = None, **faults: Any
) -> dict[str, Any]:
    """Run one measured client process with the emulator's ingestion held and return its last stdout line (JSON),
    with what it cost the services added: `kustoRequests`, the Kusto requests it made (`/admin/stats` deltas
    around it), and `azuriteCpuSeconds` over `childWallSeconds`, the CPU Azurite spent while it ran (None
    without /proc). Azurite answers on one thread, so a drain that keeps it near one core is paced by
    Azurite's cost per request, not by the client.

    The emulator first works off what earlier steps left it, so none of that runs beside the measure.
    """
    stack.wait_until_idle()
    azurite = stack.azurite.process.pid
    with stack.ingestion_held(**faults):
        before = stack.stats()
        azurite_before, started = process_cpu_seconds(azurite), time.perf_counter()
        # Killed with the bench (`die_with_parent`); a Ctrl-C or SIGTERM here kills it on the way out (`subprocess.run`).
        child = subprocess.run(
            command, env=env, capture_output=True, text=True, cwd=ROOT, check=False, preexec_fn=die_with_parent()
        )
        wall, azurite_after = time.perf_counter() - started, process_cpu_seconds(azurite)
        after = stack.stats()
    if child.returncode != 0 or not child.stdout.strip():
        raise RuntimeError(f"{what} failed with code {child.returncode}:\n{child.stderr[-4000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1]) | {
        "kustoRequests": _kusto_requests(before, after),
        "childWallSeconds": wall,
        "azuriteCpuSeconds": cpu_difference(azurite_before, azurite_after),
    }


def drain(
    stack: Stack,
    prefix: str,
    count: int,
    mode: str,
    *,
    concurrency: int = 8,
    latency_ms: int = 0,
    depth: int | None = None,
    client_latency_ms: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Drain `count` pending messages in a child process (`ours` or `baseline`) from a fresh queue.

    `latency_ms` makes the emulator answer each request that late; `client_latency_ms` (storage, Kusto) makes
    the child's own clients wait that long before each request goes out (`bench.counting.delayed_services`).

    The queue starts full, or, with `depth`, with at most `depth` messages and is topped up as it drains
    (`bench.pending.topped_up`), so a large drain does not measure Azurite's cost of a deep queue. The
    scenario's queues are deleted afterwards (with the tracking records ours left in them): each queue request
    of Azurite walks every message it holds, so a next drain on the same Azurite walks only its own.
    """
    # One timer run drains the whole queue: the budget guards production runs, here it would cut the measure.
    # The ledger's window must outlast a sender's lease (budget + 60 s), or the settings are refused.
    values = stack.app_settings(
        prefix, SUBMIT_CONCURRENCY=str(concurrency), DRAIN_TIME_BUDGET_SECONDS="3600", DUPLICATE_WINDOW_SECONDS="7200"
    )
    services = _services(values)
    services.kusto.close()
    connection, queue = stack.azurite.connection_string, values["PENDING_QUEUE"]
    texts = pending_messages(stack.azurite.blob_endpoint, values["STAGING_CONTAINER"], DATABASE, TABLE, count, prefix)
    first = count if depth is None else min(count, depth)
    fill_pending_queue(connection, queue, texts[:first])
    with topped_up(connection, queue, texts[first:], first):
        result = _measured_child(
            stack,
            f"drain child ({mode})",
            [sys.executable, "-m", "bench.drain_child", mode, str(count)],
            env=os.environ | values | _client_latency_env(client_latency_ms),
            latencyMs=latency_ms,
            failBlobs=FAIL_FAST,
        )
    for client in services.queues:
        client.delete_queue()
    # Fewer than `count`: Azurite did not hand some messages out (seen under load with deep queues); more: the
    # SDK retried a send that had reached Azurite while filling. Both are reported beside the figure, not hidden.
    result["setupDuplicates"] = max(0, result["blobs"] - count)
    result["notReceived"] = max(0, count - result["blobs"])
    result["blobsPerSecond"] = result["blobs"] / result["seconds"]
    result["cpuMsPerBlob"] = 1000 * result["cpuSeconds"] / result["blobs"]
    result["childBusy"] = result["cpuSeconds"] / result["seconds"]
    azurite_cpu = result["azuriteCpuSeconds"]
    result["azuriteCpuMsPerBlob"] = cpu_ms_per(azurite_cpu, result["blobs"])
    result["azuriteBusy"] = None if azurite_cpu is None else azurite_cpu / result["childWallSeconds"]
    result["concurrency"] = concurrency
    result["latencyMs"] = latency_ms
    result["clientLatencyMs"] = client_latency_ms
    result["toppedUp"] = first < count
    return result


def _client_latency_env(client_latency_ms: tuple[float, float] | None) -> dict[str, str]:
    if client_latency_ms is None:
        return {}
    storage_ms, kusto_ms = client_latency_ms
    return {STORAGE_LATENCY_ENV: str(storage_ms), KUSTO_LATENCY_ENV: str(kusto_ms)}


@contextmanager
def fresh_stack(work_dir: Path, name: str) -> Iterator[Stack]:
    """A new Azurite and a new emulator (same setup every time) with the bench's table, stopped and removed after."""
    scenario_dir = work_dir / name
    with running_stack(scenario_dir) as stack:
        prepare(stack)
        yield stack
    shutil.rmtree(scenario_dir, ignore_errors=True)


def fresh_drain(
    work_dir: Path, name: str, count: int, mode: str, *, concurrency: int = 8, latency_ms: int = 0, depth: int | None = None
) -> dict[str, Any]:
    """`drain` on a `fresh_stack` of its own."""
    with fresh_stack(work_dir, name) as stack:
        return drain(stack, name, count, mode, concurrency=concurrency, latency_ms=latency_ms, depth=depth)


def kusto_per_blob(run: dict[str, Any]) -> dict[str, float]:
    """Kusto requests per blob of one drain: the submission POSTs alone, and every request the drain made.

    The second figure includes the configuration GET the child makes once before draining (a worker makes
    it once an hour), so it tends to the first as the drain grows; both are reported, neither is adjusted.
    """
    posts = sum(count for route, count in run["kustoRequests"].items() if route.startswith("POST"))
    return {"postsPerBlob": posts / run["blobs"], "allPerBlob": sum(run["kustoRequests"].values()) / run["blobs"]}


def summarise_throughput(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds: of each scenario's blobs/s, and of the ratios taken within each round."""
    ratios = [run["ours"]["blobsPerSecond"] / run["baseline"]["blobsPerSecond"] for run in rounds]
    slow_ratios = [run["latency150"]["blobsPerSecond"] / run["ours"]["blobsPerSecond"] for run in rounds]
    return {
        "blobs": rounds[0]["ours"]["blobs"],
        "rounds": len(rounds),
        **{
            f"{key}BlobsPerSecond": statistics.median(run[key]["blobsPerSecond"] for run in rounds)
            for key in ("baseline", "ours", "latency150")
        },
        "ratioOursToBaseline": statistics.median(ratios),
        "ratiosOursToBaseline": ratios,
        "ratio150To0": statistics.median(slow_ratios),
        "ratios150To0": slow_ratios,
        "notReceived": sum(run[key].get("notReceived", 0) for run in rounds for key in run),
        "azuriteCpuMsPerBlob": _medians(rounds, "azuriteCpuMsPerBlob"),
        "azuriteBusy": _medians(rounds, "azuriteBusy"),
        "childCpuMsPerBlob": _medians(rounds, "cpuMsPerBlob"),
        "childBusy": _medians(rounds, "childBusy"),
        "childCpuMsPerBlobByPart": {
            key: {
                part: statistics.median(run[key]["cpuMsPerBlobByPart"].get(part, 0.0) for run in rounds)
                for part in rounds[0][key]["cpuMsPerBlobByPart"]
            }
            for key in ("baseline", "ours", "latency150")
        },
    }


def _medians(rounds: list[dict[str, Any]], figure: str) -> dict[str, float] | None:
    """Each scenario's median of `figure` over the rounds; None when a drain could not measure it (no /proc)."""
    values = {key: [run[key][figure] for run in rounds] for key in ("baseline", "ours", "latency150")}
    if any(value is None for column in values.values() for value in column):
        return None
    return {key: statistics.median(column) for key, column in values.items()}


def largest_drain_kusto(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Kusto requests per blob of the largest drain of ours in the run (the configuration GET weighs least there)."""
    largest = max(runs, key=lambda run: run["blobs"])
    return {"blobs": largest["blobs"], "requests": largest["kustoRequests"], **kusto_per_blob(largest)}


# -- storage and Kusto requests per blob -----------------------------------------------------------------


def _upload_blobs(services: Services, names: list[str], body: Any) -> dict[str, tuple[str, datetime]]:
    """Upload blobs on 8 threads; returns name -> (sourceId, landing time)."""
    container = services.blob_service.get_container_client(services.settings.staging_container)
    landed: dict[str, tuple[str, datetime]] = {}
    lock = threading.Lock()

    def upload(name: str) -> None:
        blob = container.get_blob_client(name)
        etag = blob.upload_blob(body(name), overwrite=True)["etag"]
        with lock:
            landed[name] = (source_id(plain_blob_url(blob.url), etag), datetime.now(UTC))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, names))
    return landed


def requests_per_blob(stack: Stack, blobs: int) -> dict[str, Any]:
    """Record, drain and track `blobs` real blobs with counting clients; count storage and Kusto requests."""
    stack.set_faults()
    values = stack.app_settings("cost", TRACKING_POLL_INITIAL_SECONDS="1")
    plain = _services(values)
    plain.blob_service.create_container(plain.settings.staging_container)
    plain.blob_service.create_container(plain.settings.state_container)  # deployed by infra/main.bicep in Azure
    names = [f"{DATABASE}/{TABLE}/cost/part-{index:05d}.csv" for index in range(blobs)]
    _upload_blobs(plain, names, lambda name: f"{name},1\n".encode())
    counter = RequestCounter()
    services = counted_services(plain.settings, counter)
    stages: dict[str, dict[str, int]] = {}
    kusto: dict[str, dict[str, int]] = {}

    before = stack.stats()
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda name: record_blob(services.blob_service.get_blob_client(plain.settings.staging_container, name), services),
                names,
            )
        )
    stages["record (blob trigger)"] = dict(counter.reset())
    kusto["record (blob trigger)"], before = _kusto_requests(before, stack.stats()), stack.stats()

    operations = 0
    while (report := submit_pending_blobs(services)).received:
        operations += report.operations
    stages["drain (submission timer)"] = dict(counter.reset())
    kusto["drain (submission timer)"], before = _kusto_requests(before, stack.stats()), stack.stats()

    wait_for(lambda: stack.stats()["blobs"]["succeeded"] >= blobs, "the emulator to ingest the cost blobs", 300)
    finished, deadline = 0, time.monotonic() + 300
    while finished < operations and time.monotonic() < deadline:
        finished += tracking.track_outcomes(services).finished
        time.sleep(0.5)
    stages["track (outcome timer)"] = dict(counter.reset())
    kusto["track (outcome timer)"] = _kusto_requests(before, stack.stats())
    reconciliation = reconcile_cost(plain.settings, counter, blobs)
    storage_total = sum(sum(stage.values()) for stage in stages.values())
    status_polls = sum(count for route, count in kusto["track (outcome timer)"].items() if route.startswith("GET"))
    submit_requests = sum(sum(stage.values()) for name, stage in kusto.items() if not name.startswith("track"))
    for client in (plain.kusto, services.kusto):
        client.close()
    return {
        "blobs": blobs,
        "operations": operations,
        "storageByStage": stages,
        "kustoByStage": kusto,
        "storagePerBlob": storage_total / blobs,
        "kustoSubmitPerBlob": submit_requests / blobs,
        "kustoStatusPollsPerBlob": status_polls / blobs,
        "reconcile": reconciliation,
    }


def reconcile_cost(settings: Settings, counter: RequestCounter, staged: int) -> dict[str, Any]:
    """Storage requests of reconciliation runs over `staged` blobs the app recorded: a worker's first run (it reads
    the whole look-back of the ledger) and its next one (only what grew), and what the next one costs each blob over
    its look-back at the default schedule. The happy path (record, drain, track) makes no request for it."""
    counter.reset()
    services = counted_services(settings, counter)
    after_grace = datetime.now(UTC) + timedelta(seconds=settings.reconcile_grace_seconds + 60)
    first = reconcile_staging(services, now=after_grace)
    cold = dict(counter.reset())
    second = reconcile_staging(services, now=after_grace)
    warm = dict(counter.reset())
    runs_per_look_back = settings.reconcile_lookback_seconds / RECONCILE_INTERVAL_SECONDS
    return {
        "staged": staged,
        "recovered": first.recovered + second.recovered,
        "known": second.known,
        "firstRun": cold,
        "nextRun": warm,
        "requestsFirstRun": sum(cold.values()),
        "requestsNextRun": sum(warm.values()),
        "runsPerLookBack": runs_per_look_back,
        "perBlobOverLookBack": runs_per_look_back * sum(warm.values()) / staged,
        "listingPerBlobOverLookBack": runs_per_look_back / STAGING_LIST_PAGE,
    }


# -- latency through the local host ----------------------------------------------------------------------


def start_local_host(values: dict[str, str], work_dir: Path, name: str, extra_env: dict[str, str] | None = None) -> Service:
    """`python -m devhost` with the example settings overridden by `values`, its log in `work_dir`.

    The settings go in a file of their own (as `make run` writes local.settings.json) and none of them is
    left in the environment, so a developer's own local.settings.json or variables cannot leak in.
    """
    example = json.loads((ROOT / "local.settings.example.json").read_text(encoding="utf-8"))["Values"]
    settings_file = work_dir / f"{name}.settings.json"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": example | values}), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key not in example and key not in values}
    # Its own process group (Service.kill() takes any child with it), killed with the bench (`spawn`).
    process = spawn(
        [sys.executable, "-m", "devhost", "--script-root", str(ROOT), "--settings", str(settings_file)],
        work_dir / f"{name}.log",
        env | (extra_env or {}),
    )
    return Service(name, process)


def landing_to_accepted(stack: Stack, seconds: float, rate: float) -> dict[str, Any]:
    """Upload `rate` blobs a second for `seconds` while the local host runs on its default schedule."""
    stack.replace_emulator("emulator-latency")
    prepare(stack)
    values = stack.app_settings("latency")
    plain = _services(values)
    plain.blob_service.create_container(plain.settings.staging_container)
    host = start_local_host(values, stack.work_dir, "devhost-latency")
    landed: dict[str, tuple[str, datetime]] = {}
    try:
        # Blobs land only once the host runs: its start-up is not part of a blob's latency.
        log_file = stack.work_dir / "devhost-latency.log"
        wait_for(lambda: "local host running" in log_file.read_text(errors="replace"), "the local host to start", 60)
        total = int(seconds * rate)
        started = time.monotonic()
        for index in range(total):
            time.sleep(max(0.0, started + index / rate - time.monotonic()))
            name = f"{DATABASE}/{TABLE}/latency/part-{index:05d}.csv"
            landed |= _upload_blobs(plain, [name], lambda n: f"{n},1\n".encode())
        wait_for(lambda: stack.stats()["blobs"]["succeeded"] >= total, "the local host to submit every latency blob", 120)
    finally:
        host.stop()
        plain.kusto.close()
    data_dir = stack.emulator.data_dir
    stack.replace_emulator("emulator-after-latency")
    prepare(stack)
    accepted = _accepted_times(data_dir / "kusto.duckdb")
    latencies = sorted((accepted[sid] - at).total_seconds() for sid, at in landed.values() if sid in accepted)
    if len(latencies) != len(landed):
        raise RuntimeError(f"{len(landed) - len(latencies)} of {len(landed)} latency blobs were never accepted")
    return {
        "blobs": len(latencies),
        "p50Seconds": statistics.median(latencies),
        "p99Seconds": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
        "maxSeconds": latencies[-1],
        "schedule": "*/10 * * * * * (default)",
    }


def _accepted_times(database_file: Path) -> dict[str, datetime]:
    """sourceId -> when the emulator accepted the operation carrying it (read from its stopped DuckDB file)."""
    with duckdb.connect(str(database_file), read_only=True) as connection:
        rows = connection.execute(
            "SELECT blob.source_id, start_time FROM (SELECT unnest(blobs) AS blob, start_time FROM _emulator.operations)"
        ).fetchall()
    return {sid: start.replace(tzinfo=UTC) for sid, start in rows}


# -- the official SDK path -------------------------------------------------------------------------------


def sdk_queued_ingest(stack: Stack, count: int) -> dict[str, Any]:
    """The same kind of blobs submitted one by one by azure-kusto-ingest's QueuedIngestClient (in .venv-sdk)."""
    if not SDK_PYTHON.exists():
        raise RuntimeError(f"{SDK_PYTHON} is missing: run 'make setup' to create the official SDK environment")
    container = "sdk-staging"
    expiry = datetime.now(UTC) + timedelta(hours=2)
    urls = []
    for index in range(count):
        name = f"{DATABASE}/{TABLE}/sdk/bench-{index:07d}.csv"
        sas = generate_blob_sas(
            AZURITE_ACCOUNT, container, name, account_key=AZURITE_KEY, permission=BlobSasPermissions(read=True), expiry=expiry
        )
        urls.append(f"{stack.azurite.blob_endpoint}/{container}/{name}?{sas}")
    url_file = stack.work_dir / "sdk-urls.json"
    url_file.write_text(json.dumps(urls), encoding="utf-8")
    result = _measured_child(
        stack,
        "SDK run",
        [str(SDK_PYTHON), str(Path(__file__).parent / "sdk_ingest.py"), stack.emulator.url, DATABASE, TABLE, str(url_file)],
        failBlobs=FAIL_FAST,
    )
    result["blobsPerSecond"] = result["blobs"] / result["seconds"]
    result["kustoPerBlob"] = sum(result["kustoRequests"].values()) / result["blobs"]
    result["storagePerBlob"] = result["storageRequests"] / result["blobs"]
    return result
