"""One drain in a process of its own, so its CPU time and peak memory are the drain's and nothing else's.

    python -m bench.drain_child ours|baseline COUNT      (app settings come from the environment)

Both drain until they have received COUNT messages, so a queue the bench tops up while it drains
(`bench.pending.topped_up`) is drained to the end even when the drain briefly catches up with the feeder;
a queue that stays empty for PATIENCE_SECONDS ends the drain early, and the parent reports the shortfall.

* `ours`: the timer's real work, `shared.submission.submit_pending_blobs(services)`, called again and
  again (as successive timer ticks would).
* `baseline`: the floor any drain of this queue pays: receive pages of 32 the same way the drain does
  (same SDK client, same `messages_per_page`, same round size) and delete every message on a pool of
  SUBMIT_CONCURRENCY threads, in chunks of MAX_BLOBS_PER_BATCH. No parsing, no Kusto, no tracking.

CPU and wall time are taken around the drain only; peak memory is the process's own high-water mark
(`peak_memory_mb`, which says why not `ru_maxrss`). What a worker does once per process is left out of the
clock, as it is not per blob: imports, client creation, the ingestion configuration GET (still counted among
the Kusto requests, which the parent reads from the emulator) and building the three schema validators the
drain uses (all of it 50-90 ms of CPU, once). The last stdout line is one JSON object.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from azure.storage.queue import QueueClient, QueueMessage

from shared import schemas
from shared.services import build_services
from shared.settings import load_settings
from shared.submission import PAGE_SIZE, submit_pending_blobs

PATIENCE_SECONDS = 10.0
"""How long an empty queue is waited on before the drain gives up short of its count (a top-up takes < 1 s)."""
_EMPTY_PAUSE_SECONDS = 0.05


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_memory_mb() -> float:
    """The most resident memory this process has held, in MiB: the kernel's VmHWM of its own address space.

    Not `ru_maxrss`: Linux carries a parent's peak into a child it forks and execs, so a drain started by
    a bench that holds 100,000 message texts was charged for the bench's memory (166 MB reported, 75 MB its
    own). Where /proc is missing (macOS), `ru_maxrss` (bytes there) is the best the system offers.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _until_received(count: int, drain_once: Callable[[], int]) -> list[tuple[int, float]]:
    """Call `drain_once` (which returns the messages it received) until `count` have been received in all.

    Returns (messages received so far, process CPU seconds) before the first call and after each call
    that received some, from which `cpu_by_tenth` reads how the cost per blob moved along the drain.
    """
    received, empty_since = 0, None
    progress = [(0, _cpu_seconds())]
    while received < count:
        got = drain_once()
        received += got
        if got:
            progress.append((received, _cpu_seconds()))
            empty_since = None
            continue
        empty_since = empty_since or time.monotonic()
        if time.monotonic() - empty_since > PATIENCE_SECONDS:
            break
        time.sleep(_EMPTY_PAUSE_SECONDS)
    return progress


def cpu_by_tenth(progress: list[tuple[int, float]]) -> dict[str, float] | None:
    """CPU ms per blob over the first and the last tenth of a drain, or None if its runs were too few to tell.

    Both figures come from one process in one drain, so they show whether the cost per blob grows with
    the blobs handled (a growing cache, a lookup that slows) without the spread between separate runs.
    A tenth is measured between the samples that bracket it, so it needs runs of at most a tenth each.
    """
    total = progress[-1][0]
    if total == 0:
        return None
    tenth = total / 10
    first_end = next(sample for sample in progress if sample[0] >= tenth)  # the last sample qualifies
    last_start = next(sample for sample in reversed(progress) if sample[0] <= total - tenth)  # so does (0, ...)
    if first_end[0] > 2 * tenth or last_start[0] < total - 2 * tenth:
        return None

    def per_blob(start: tuple[int, float], end: tuple[int, float]) -> float:
        return 1000 * (end[1] - start[1]) / (end[0] - start[0])

    return {"firstTenth": per_blob(progress[0], first_end), "lastTenth": per_blob(last_start, progress[-1])}


Drain = Callable[[int], dict[str, Any]]
"""Drains COUNT messages and says what it did; made by a `_prepare_*` that has done the per-process set-up."""


def _prepare_ours() -> Drain:
    services = build_services(load_settings())
    services.kusto.effective_batch_size()  # the configuration call is made once per worker, not per drain
    for schema in (schemas.PENDING_BLOB, schemas.TRACKING_RECORD, schemas.INGEST_REQUEST):
        schemas.validator(schema)  # built once per worker, like the configuration

    def drain(count: int) -> dict[str, Any]:
        totals = {"received": 0, "submitted": 0, "deferred": 0, "rejected": 0, "malformed": 0, "runs": 0}

        def one_run() -> int:
            report = submit_pending_blobs(services)
            totals["runs"] += 1
            for key in ("received", "submitted", "deferred", "rejected", "malformed"):
                totals[key] += getattr(report, key)
            return report.received

        progress = _until_received(count, one_run)
        return totals | {"blobs": totals["submitted"], "cpuMsPerBlobByTenth": cpu_by_tenth(progress)}

    return drain


def _delete_all(queue: QueueClient, messages: list[QueueMessage]) -> None:
    for message in messages:
        queue.delete_message(message)


def _prepare_baseline() -> Drain:
    settings = load_settings()
    queue = build_services(settings).pending_queue
    concurrency, batch = settings.submit_concurrency, settings.max_blobs_per_batch
    round_limit = max(PAGE_SIZE, batch * concurrency)

    def drain(count: int) -> dict[str, Any]:
        slots = threading.Semaphore(concurrency)
        deleted = 0
        with ThreadPoolExecutor(concurrency) as pool:  # leaving it waits for the last deletes, on the clock

            def one_round() -> int:
                nonlocal deleted
                pager = queue.receive_messages(
                    messages_per_page=PAGE_SIZE,
                    visibility_timeout=settings.pending_visibility_timeout_seconds,
                    max_messages=round_limit,
                )
                messages = [message for page in pager.by_page() for message in page]
                for start in range(0, len(messages), batch):
                    slots.acquire()
                    pool.submit(_delete_all, queue, messages[start : start + batch]).add_done_callback(lambda _: slots.release())
                deleted += len(messages)
                return len(messages)

            _until_received(count, one_round)
        return {"blobs": deleted}

    return drain


def main(mode: str, count: int) -> dict[str, Any]:
    drain = {"ours": _prepare_ours, "baseline": _prepare_baseline}[mode]()
    cpu, wall = _cpu_seconds(), time.perf_counter()
    result = drain(count)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    return result | {"mode": mode, "seconds": wall, "cpuSeconds": cpu, "peakMemoryMb": peak_memory_mb()}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
