"""`python -m bench --only latency-model`: the drain with Azure's round trips, beside the bound they allow.

Azurite and the emulator answer in about a millisecond; in Azure a storage request takes several and a Kusto
POST a good part of a second, and the drain spends most of its time waiting on them. Here every storage
request of the drain child waits `--storage-latency-ms` (default 8) and every Kusto request
`--kusto-latency-ms` (default 150) before it goes out (`bench.counting.DelayedTransport`, below the retry
policies), and one drain of `--latency-model-pending` blobs (default 2,000) runs at each SUBMIT_CONCURRENCY of
`--latency-model-levels` (default 1, 8, 32), one after another on one fresh stack.

Each figure stands beside the bound the latencies and the concurrency allow (`bound`), from what the drain
must do one request after another:

* a chunk holds one of C submit threads for its ledger mark "sending" (one append), the POST, the tracking
  record's send and its ledger mark "accepted" (one append): Lk + 3·Ls, plus the ledger's group-commit
  linger w before each of its two appends (`shared.submission_ledger.GROUP_COMMIT_LINGER_SECONDS`);
* then its b messages go, in one piece, to one of C delete threads, which deletes them one after another
  (b·Ls) while the submit thread takes the next chunk: C threads delete C/Ls messages a second;
* the main thread receives pages of 32, one request each: 32/Ls messages a second at most.

    bound(C) = min(C·b / (Lk + 3·Ls + 2·w), C / Ls, 32 / Ls)

b is the mean chunk of a receive round (max(32, 20·C) messages in chunks of 20: 16 at C = 1, else 20). The
bound leaves out what is not a round trip: the client's CPU (one interpreter for all the drain's threads),
Azurite's and the emulator's, all on the bench's cores, and a ledger mark that waits for an append already
under way before its own. A ratio well below 1 says which of those took the difference: beside it stand what
this machine added to each request beyond its delay (measured at the transport: Azurite's or the emulator's
answer, and the waits for a core and for the interpreter lock), the bound with those added, and the drain
child's CPU a blob and busy share.

The sustained ceiling of one deployment (`daily_ceiling`): the submission timer runs on one instance at a
time, and a run that outlasts the next tick is not overlapped (the next tick after it ends starts the next
run). A run under constant backlog drains for DRAIN_TIME_BUDGET_SECONDS, submitting for all but its last
second (a chunk that would start with less than a second left is put back), so a day holds as many runs as
the schedule fits, each `rate x (budget - 1 s)` blobs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import scenarios
from devhost.ncrontab import NcrontabSchedule
from shared.settings import Settings
from shared.storage import PAGE_SIZE
from shared.submission_ledger import GROUP_COMMIT_LINGER_SECONDS

STORAGE_LATENCY_MS = 8.0
KUSTO_LATENCY_MS = 150.0
LEVELS = (1, 8, 32)
PENDING = 2000
GOAL = 0.8
"""At the default SUBMIT_CONCURRENCY, the drain reaches at least this share of its bound."""
FORMULA = "min(C·b / (Lk + 3·Ls + 2·w), C / Ls, 32 / Ls)"
LAST_SECOND_PUT_BACK = 1.0
"""Seconds at the end of a run's budget in which a chunk is put back instead of sent (`shared.submission`)."""


@dataclass(frozen=True)
class Bound:
    """The most blobs a second one drain can reach with these latencies and C threads, and what sets it."""

    concurrency: int
    chunk: float
    """b: mean blobs per chunk of a receive round."""
    slot_seconds: float
    """Lk + 3·Ls + 2·w: how long one chunk holds a submit thread."""
    submit: float
    deletes: float
    receive: float

    @property
    def blobs_per_second(self) -> float:
        return min(self.submit, self.deletes, self.receive)

    @property
    def limit(self) -> str:
        """Which term sets the bound."""
        terms = {"submit threads": self.submit, "delete threads": self.deletes, "receiving": self.receive}
        return min(terms, key=terms.__getitem__)

    def as_json(self) -> dict[str, Any]:
        return {
            "chunk": self.chunk,
            "slotSeconds": self.slot_seconds,
            "submit": self.submit,
            "deletes": self.deletes,
            "receive": self.receive,
            "blobsPerSecond": self.blobs_per_second,
            "limit": self.limit,
        }


def bound(concurrency: int, storage_seconds: float, kusto_seconds: float, batch: int = Settings.max_blobs_per_batch) -> Bound:
    """`bound(C)` of the module docstring for one drain of the default batch size."""
    round_size = max(PAGE_SIZE, batch * concurrency)
    chunk = round_size / math.ceil(round_size / batch)
    slot = kusto_seconds + 3 * storage_seconds + 2 * GROUP_COMMIT_LINGER_SECONDS
    return Bound(
        concurrency=concurrency,
        chunk=chunk,
        slot_seconds=slot,
        submit=concurrency * chunk / slot,
        deletes=concurrency / storage_seconds if storage_seconds else math.inf,
        receive=PAGE_SIZE / storage_seconds if storage_seconds else math.inf,
    )


def daily_ceiling(
    blobs_per_second: float,
    *,
    schedule: str = Settings.submit_schedule,
    budget_seconds: float = Settings.drain_time_budget_seconds,
    tail_seconds: float = 0.5,
) -> dict[str, Any]:
    """Blobs one deployment drains in a day of constant backlog: runs of `budget_seconds` on `schedule`, none overlapped.

    A run ends `tail_seconds` after its budget (its last chunks finish); the next starts at the schedule's
    first tick after that. Each run submits `blobs_per_second` for `budget_seconds` less the last second.
    """
    timer = NcrontabSchedule(schedule)
    day = datetime(2025, 1, 1, tzinfo=UTC)
    start, runs = timer.next_after(day - timedelta(microseconds=1)), 0
    while start < day + timedelta(days=1):
        runs += 1
        start = timer.next_after(start + timedelta(seconds=budget_seconds + tail_seconds))
    per_run = blobs_per_second * max(0.0, budget_seconds - LAST_SECOND_PUT_BACK)
    return {
        "schedule": schedule,
        "budgetSeconds": budget_seconds,
        "runsPerDay": runs,
        "secondsPerRun": 86400 / runs,
        "blobsPerRun": per_run,
        "blobsPerDay": runs * per_run,
    }


def measure(
    work_dir: Path,
    pending: int = PENDING,
    levels: tuple[int, ...] | list[int] = LEVELS,
    *,
    storage_ms: float = STORAGE_LATENCY_MS,
    kusto_ms: float = KUSTO_LATENCY_MS,
) -> dict[str, Any]:
    """One drain of `pending` at each SUBMIT_CONCURRENCY of `levels`, with the latencies, each beside its bound."""
    points = []
    with scenarios.fresh_stack(work_dir, "latency-model") as stack:
        for level in levels:
            run = scenarios.drain(
                stack, f"lm-{level}", pending, "ours", concurrency=level, client_latency_ms=(storage_ms, kusto_ms)
            )
            limit = bound(level, storage_ms / 1000, kusto_ms / 1000)
            extra = run.get("roundTripExtraMs") or {}
            local = None
            if extra.get("storage") is not None and extra.get("kusto") is not None:
                local = bound(level, (storage_ms + extra["storage"]) / 1000, (kusto_ms + extra["kusto"]) / 1000)
            points.append(
                {
                    "concurrency": level,
                    "blobs": run["blobs"],
                    "submitted": run["submitted"],
                    "seconds": run["seconds"],
                    "blobsPerSecond": run["blobsPerSecond"],
                    "bound": limit.as_json(),
                    "ratio": run["blobsPerSecond"] / limit.blobs_per_second,
                    "roundTripExtraMs": extra,
                    "localBound": None if local is None else local.as_json(),
                    "cpuMsPerBlob": run["cpuMsPerBlob"],
                    "childBusy": run["childBusy"],
                    "azuriteCpuMsPerBlob": run["azuriteCpuMsPerBlob"],
                    "azuriteBusy": run["azuriteBusy"],
                }
            )
    default = next((point for point in points if point["concurrency"] == Settings.submit_concurrency), None)
    result: dict[str, Any] = {
        "storageLatencyMs": storage_ms,
        "kustoLatencyMs": kusto_ms,
        "pending": pending,
        "formula": FORMULA,
        "linger": GROUP_COMMIT_LINGER_SECONDS,
        "levels": points,
    }
    if default is not None:
        result["daily"] = {
            "measured": daily_ceiling(default["blobsPerSecond"]),
            "bound": daily_ceiling(default["bound"]["blobsPerSecond"]),
        }
    return result


def _millions(blobs: float) -> str:
    return f"{blobs / 1e6:.1f} M"


def table_rows(model: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, value, goal, note) rows of the section: the formula, one row a level, the daily ceiling."""
    storage, kusto = model["storageLatencyMs"], model["kustoLatencyMs"]
    linger = model["linger"] * 1000
    rows = [
        (
            f"latency model: +{storage:g} ms a storage request, +{kusto:g} ms a Kusto request",
            "",
            "",
            f"bound = {model['formula']}; Lk {kusto:g} ms, Ls {storage:g} ms, w {linger:g} ms (ledger linger), "
            "b blobs a chunk, C = SUBMIT_CONCURRENCY",
        )
    ]
    for point in model["levels"]:
        limit = point["bound"]
        goal = f">= {GOAL:.0%} of bound" if point["concurrency"] == Settings.submit_concurrency else ""
        note = (
            f"bound {limit['blobsPerSecond']:.0f} ({limit['limit']}; b {limit['chunk']:g}, "
            f"chunk slot {1000 * limit['slotSeconds']:.0f} ms), ratio {point['ratio']:.0%}"
        )
        local, extra = point.get("localBound"), point.get("roundTripExtraMs") or {}
        if local:
            rate = point["blobsPerSecond"]
            note += (
                f"; this machine added {extra['storage']:.1f} / {extra['kusto']:.1f} ms a storage / Kusto request: "
                f"bound with them {local['blobsPerSecond']:.0f}, ratio {rate / local['blobsPerSecond']:.0%}"
            )
        note += f"; drain child CPU {point['cpuMsPerBlob']:.2f} ms a blob, busy {point['childBusy']:.2f} of a core"
        rows.append(
            (
                f"  SUBMIT_CONCURRENCY={point['concurrency']}, {point['blobs']} blobs (blobs/s)",
                f"{point['blobsPerSecond']:.0f}",
                goal,
                note,
            )
        )
    daily = model.get("daily")
    if daily:
        measured, at_bound = daily["measured"], daily["bound"]
        rows.append(
            (
                f"  sustained ceiling, one deployment, defaults (blobs/day, at {Settings.submit_concurrency})",
                _millions(measured["blobsPerDay"]),
                "",
                f"{measured['runsPerDay']:,} runs a day (one every {measured['secondsPerRun']:.0f} s: "
                f"{measured['schedule']}, budget {measured['budgetSeconds']:g} s, the next tick after a run ends) x "
                f"{measured['blobsPerRun']:,.0f} blobs (budget - 1 s at the measured rate); "
                f"at the bound {_millions(at_bound['blobsPerDay'])}",
            )
        )
    return rows
