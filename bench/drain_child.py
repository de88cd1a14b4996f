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

Where the CPU went is kept too (`cpuMsPerBlobByPart`): the CPU each kind of storage or Kusto call took on
the thread that made it (`CallCpu`), the main thread's own (receiving pages; for `ours` also reading and
checking each message and handing chunks to the pool), and the rest. So a ratio below the goal says whether
the deletes both drains make, or the work only ours does, took the difference.

With BENCH_STORAGE_LATENCY_MS or BENCH_KUSTO_LATENCY_MS in the environment, every storage or Kusto request
of the drain waits that long before it goes out (`bench.counting.delayed_services`; `bench.latency_model`).

CPU and wall time are taken around the drain only; peak memory is the process's own high-water mark
(`peak_memory_mb`, which says why not `ru_maxrss`). What a worker does once per process is left out of the
clock, as it is not per blob: imports, client creation, the ingestion configuration GET (still counted among
the Kusto requests, which the parent reads from the emulator) and building the three schema validators the
drain uses (all of it 50-90 ms of CPU, once). The last stdout line is one JSON object.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

from azure.storage.queue import QueueClient, QueueMessage

from bench.counting import RoundTrips, delayed_services
from shared import schemas
from shared.services import Services, build_services
from shared.settings import load_settings
from shared.storage import PAGE_SIZE
from shared.submission import submit_pending_blobs

STORAGE_LATENCY_ENV = "BENCH_STORAGE_LATENCY_MS"
KUSTO_LATENCY_ENV = "BENCH_KUSTO_LATENCY_MS"
ROUND_TRIPS = {"storage": RoundTrips(), "kusto": RoundTrips()}
"""With a latency set: what each storage and Kusto request of the drain took beyond its delay."""
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


class Sample(NamedTuple):
    """Where a drain stood after a call that received messages (or before the first call)."""

    received: int
    """Messages received so far."""
    cpu: float
    """Process CPU seconds so far."""
    idle_cpu: float
    """Of `cpu`, the seconds spent in calls that received nothing: a topped-up drain waiting on its feeder."""
    calls: int
    """Calls so far that received messages (timer runs, for `ours`)."""
    empty_calls: int
    """Calls so far that received nothing."""


def _until_received(count: int, drain_once: Callable[[], int]) -> list[Sample]:
    """Call `drain_once` (which returns the messages it received) until `count` have been received in all.

    Returns a `Sample` before the first call and after each call that received some, from which
    `cpu_by_tenth` reads how the cost per blob moved along the drain. The CPU of calls that found the queue
    empty is kept apart: a drain that catches up with its feeder more often pays more of it per blob, which is
    the feeder's pace, not the cost of handling a blob.
    """
    received, empty_since = 0, None
    idle_cpu, calls, empty_calls = 0.0, 0, 0
    progress = [Sample(0, _cpu_seconds(), 0.0, 0, 0)]
    while received < count:
        before = _cpu_seconds()
        got = drain_once()
        received += got
        if got:
            calls += 1
            progress.append(Sample(received, _cpu_seconds(), idle_cpu, calls, empty_calls))
            empty_since = None
            continue
        idle_cpu += _cpu_seconds() - before
        empty_calls += 1
        empty_since = empty_since or time.monotonic()
        if time.monotonic() - empty_since > PATIENCE_SECONDS:
            break
        time.sleep(_EMPTY_PAUSE_SECONDS)
    return progress


def _span(start: Sample, end: Sample) -> dict[str, float]:
    blobs = end.received - start.received
    return {
        "cpuMsPerBlob": 1000 * (end.cpu - start.cpu) / blobs,
        "idleCpuMsPerBlob": 1000 * (end.idle_cpu - start.idle_cpu) / blobs,
        "blobsPerCall": blobs / (end.calls - start.calls),
        "emptyCalls": end.empty_calls - start.empty_calls,
    }


def cpu_by_tenth(progress: list[Sample]) -> list[dict[str, float]] | None:
    """How each tenth of a drain went, first to last, or None if its runs were too few to tell.

    Per tenth: CPU ms per blob, the part of it spent in calls that received nothing (`idleCpuMsPerBlob`),
    blobs per call that received some, and calls that received none. All from one process in one drain, so
    they show whether the cost per blob grows with the blobs handled (a growing cache, a lookup that slows)
    without the spread between separate runs. A tenth runs from the first sample at or past its start to the
    first at or past its end, so it needs calls of at most a tenth each.
    """
    total = progress[-1].received
    if total == 0:
        return None
    bounds = [progress[0]] + [next(sample for sample in progress if sample.received >= total * k / 10) for k in range(1, 11)]
    if any(not 0 < end.received - start.received <= total / 5 for start, end in pairwise(bounds)):
        return None
    return [_span(start, end) for start, end in pairwise(bounds)]


DELETES = "deletes"
KUSTO_POSTS = "kustoPosts"
LEDGER_MARKS = "ledgerMarks"
TRACKING_SENDS = "trackingSends"
MAIN_THREAD = "mainThread"
REST = "rest"


class CallCpu:
    """The CPU each kind of call took on the thread that made it, summed over a drain.

    Thread CPU time (`time.thread_time`) around each call counts only what the calling thread computed: its
    waits for Azurite, for the emulator or for the interpreter lock add nothing, so the figures add up to the
    process's CPU with no overlap. The measuring costs about 3 µs a call (two reads of the clock, the lock),
    against 2-2.5 ms of CPU a delete, and the same for every delete of both drains.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}
        self.on_main_thread = 0.0
        """Of `seconds`, what calls made on the main thread took (a duplicate's delete, say)."""

    def wrap(self, owner: Any, method: str, part: str) -> None:
        """Measure every later call of `owner.method` as `part` (the instance's attribute hides the method)."""
        original = getattr(owner, method)

        def measured(*args: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.thread_time() - start
                with self._lock:
                    self.seconds[part] = self.seconds.get(part, 0.0) + spent
                    if threading.current_thread() is threading.main_thread():
                        self.on_main_thread += spent

        setattr(owner, method, measured)

    def per_blob(self, blobs: int, *, process_cpu: float, main_thread_cpu: float) -> dict[str, float]:
        """Milliseconds a blob of each measured part, of the main thread's own work, and of the rest of `process_cpu`."""
        main_thread = main_thread_cpu - self.on_main_thread
        parts = self.seconds | {MAIN_THREAD: main_thread, REST: process_cpu - main_thread - sum(self.seconds.values())}
        return {part: 1000 * seconds / max(blobs, 1) for part, seconds in parts.items()}


Drain = Callable[[int], dict[str, Any]]
"""Drains COUNT messages and says what it did; made by a `_prepare_*` that has done the per-process set-up."""


def _services() -> Services:
    """The app's services, or with each request delayed when the environment names a latency (ms)."""
    settings = load_settings()
    storage_ms = float(os.environ.get(STORAGE_LATENCY_ENV) or 0)
    kusto_ms = float(os.environ.get(KUSTO_LATENCY_ENV) or 0)
    if storage_ms or kusto_ms:
        return delayed_services(
            settings,
            storage_seconds=storage_ms / 1000,
            kusto_seconds=kusto_ms / 1000,
            storage_round_trips=ROUND_TRIPS["storage"],
            kusto_round_trips=ROUND_TRIPS["kusto"],
        )
    return build_services(settings)


def _prepare_ours(meter: CallCpu) -> Drain:
    services = _services()
    meter.wrap(services.pending_queue, "delete_message", DELETES)
    meter.wrap(services.submitter, "submit", KUSTO_POSTS)
    meter.wrap(services.ledger, "record", LEDGER_MARKS)
    meter.wrap(services.tracking_queue, "send_message", TRACKING_SENDS)
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
        return totals | {"blobs": totals["submitted"], "cpuByTenth": cpu_by_tenth(progress)}

    return drain


def _delete_all(queue: QueueClient, messages: list[QueueMessage]) -> None:
    for message in messages:
        queue.delete_message(message)


def _prepare_baseline(meter: CallCpu) -> Drain:
    settings = load_settings()
    queue = _services().pending_queue
    meter.wrap(queue, "delete_message", DELETES)
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
    meter = CallCpu()
    drain = {"ours": _prepare_ours, "baseline": _prepare_baseline}[mode](meter)
    for round_trips in ROUND_TRIPS.values():
        round_trips.reset()  # the set-up's requests (the configuration GET) are not the drain's
    cpu, wall, main_thread_cpu = _cpu_seconds(), time.perf_counter(), time.thread_time()
    result = drain(count)
    wall, cpu, main_thread_cpu = time.perf_counter() - wall, _cpu_seconds() - cpu, time.thread_time() - main_thread_cpu
    by_part = meter.per_blob(result["blobs"], process_cpu=cpu, main_thread_cpu=main_thread_cpu)
    return result | {
        "mode": mode,
        "seconds": wall,
        "cpuSeconds": cpu,
        "cpuMsPerBlobByPart": by_part,
        "peakMemoryMb": peak_memory_mb(),
        "roundTripExtraMs": {kind: round_trips.mean_extra_ms() for kind, round_trips in ROUND_TRIPS.items()},
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
