"""`python -m bench` (`make bench`): throughput, requests per blob, latency, CPU and memory, SDK comparison.

Starts Azurite and the Kusto emulator on free ports, runs every measurement, prints one table (each figure
beside its goal and the baseline measured in the same run) and writes `.bench/results.json` and
`.bench/concurrency.png`. Nothing is asserted on timing: these are measurements, not tests.

Plain Azurite 3.35's queue slows down as it gets deeper (each request walks or re-sorts every message it holds),
so every Azurite started here runs with its fast queue (`devhost/azurite_preload.js`): with it a queue of
20,000 drains at 200-500 messages a second on 2 cores (9-15 without it), and the throughput runs drain 20,000
pending blobs, a deep backlog, in a few minutes a round (docs/performance.md). The CPU and memory drains
handle 1,000 and 100,000 blobs, with at most `--resource-depth` queued at a time: the queue is topped up as it
drains, so the drain handles every blob while Azurite never holds more than that.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import cost_model, emulator_speed, latency_model, scenarios
from bench.report import format_table, table_rows, write_outputs
from bench.stack import running_stack, stopped_on_signals
from devhost.processes import ROOT

SECTIONS = ("throughput", "requests", "latency", "resources", "sdk", "concurrency", "emulator", "latency-model", "cost")


def _integers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=20000, help="pending blobs of the throughput runs (default 20000)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="throughput rounds (baseline, ours, 150 ms; each on a fresh stack; default 3)"
    )
    parser.add_argument(
        "--cost-blobs", type=int, default=200, help="real blobs recorded, drained and tracked with counting clients"
    )
    parser.add_argument("--latency-seconds", type=float, default=45, help="how long blobs keep landing in the latency run")
    parser.add_argument("--latency-rate", type=float, default=4, help="blobs landing per second in the latency run")
    parser.add_argument(
        "--resource-sizes", type=_integers, default=[1000, 100000], help="drain sizes for CPU and memory (default 1000,100000)"
    )
    parser.add_argument(
        "--resource-depth",
        type=int,
        default=1000,
        help="most messages queued at once in the CPU and memory drains; larger drains are topped up as they go (default 1000)",
    )
    parser.add_argument("--sdk-blobs", type=int, default=500, help="blobs submitted one by one with QueuedIngestClient")
    parser.add_argument("--sweep-size", type=int, default=1000, help="pending blobs per point of the concurrency chart")
    parser.add_argument(
        "--sweep-levels",
        type=_integers,
        default=[1, 2, 4, 8, 16],
        help="SUBMIT_CONCURRENCY of each point of the concurrency chart (default 1,2,4,8,16)",
    )
    parser.add_argument(
        "--csv-rows", type=int, default=3_000_000, help="rows of the emulator's CSV ingestion run (default 3000000)"
    )
    parser.add_argument(
        "--csv-repeats",
        type=int,
        default=7,
        help="CSV ingestions through the emulator, each beside one by DuckDB's read_csv (default 7)",
    )
    parser.add_argument("--posts", type=int, default=3000, help="POSTs of 20 blobs in the emulator's request-rate run")
    parser.add_argument(
        "--storage-latency-ms",
        type=float,
        default=latency_model.STORAGE_LATENCY_MS,
        help="latency-model: wait before each storage request of the drain (default 8)",
    )
    parser.add_argument(
        "--kusto-latency-ms",
        type=float,
        default=latency_model.KUSTO_LATENCY_MS,
        help="latency-model: wait before each Kusto request of the drain (default 150)",
    )
    parser.add_argument(
        "--latency-model-pending", type=int, default=latency_model.PENDING, help="latency-model: blobs per drain (default 2000)"
    )
    parser.add_argument(
        "--latency-model-levels",
        type=_integers,
        default=list(latency_model.LEVELS),
        help="latency-model: SUBMIT_CONCURRENCY of each drain (default 1,8,32)",
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=ROOT / ".bench", help="where results.json and concurrency.png go")
    return parser.parse_args(argv)


def machine() -> dict[str, Any]:
    memory = ""
    if Path("/proc/meminfo").exists():
        first = Path("/proc/meminfo").read_text().splitlines()[0].split()
        memory = f"{int(first[1]) / 1024 / 1024:.1f} GiB"
    return {
        "cpus": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadAverageAtStart": os.getloadavg(),
    }


def throughput_round(work_dir: Path, index: int, pending: int) -> dict[str, Any]:
    """The three throughput drains of one round, one after another on one fresh Azurite and emulator.

    Azurite paces these drains, and its CPU a blob moves by up to 2x from one drain to the next, within one
    process as much as between processes (docs/performance.md, "Azurite's queue and the preload"): a process per
    drain buys nothing, so the drains whose ratios are taken share the round's (each deletes its queues when
    it ends, and no drain was seen to slow the next). Odd rounds run the three in the opposite order, so a
    drift along the round (other work on the machine) does not always favour the same scenario.
    """
    plan = [("baseline", "baseline", 0), ("ours", "ours", 0), ("latency150", "ours", 150)]
    if index % 2:
        plan.reverse()
    with scenarios.fresh_stack(work_dir, f"tp{index}") as stack:
        return {key: scenarios.drain(stack, f"tp{index}-{key}", pending, mode, latency_ms=latency) for key, mode, latency in plan}


def run(args: argparse.Namespace) -> dict[str, Any]:  # noqa: PLR0915 (one block a section)
    sections = {section.strip() for section in args.only.split(",") if section.strip()}
    unknown = sections - set(SECTIONS)
    if unknown:
        raise SystemExit(f"--only: unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    results: dict[str, Any] = {"machine": machine(), "arguments": {k: str(v) for k, v in vars(args).items()}}
    work_dir = Path(tempfile.mkdtemp(prefix="bench-", dir=args.out if args.out.exists() else None))
    started = time.monotonic()

    def step(name: str) -> None:
        print(f"[{time.monotonic() - started:6.0f} s] {name}", flush=True)

    with running_stack(work_dir) as stack:
        scenarios.prepare(stack)
        if "throughput" in sections:
            results["throughput"] = {"rounds": []}
            for index in range(args.rounds):
                step(f"throughput round {index + 1}/{args.rounds}: baseline, ours, ours at 150 ms ({args.pending} pending each)")
                results["throughput"]["rounds"].append(throughput_round(work_dir, index, args.pending))
            results["throughput"]["summary"] = scenarios.summarise_throughput(results["throughput"]["rounds"])
        if "requests" in sections or "sdk" in sections:
            step(f"requests per blob: record, drain and track {args.cost_blobs} real blobs with counting clients")
            results["requests"] = scenarios.requests_per_blob(stack, args.cost_blobs)
        if "resources" in sections:
            results["resources"] = []
            for size in args.resource_sizes:
                step(f"CPU and peak memory: drain of {size} ({args.resource_depth} queued at most), then its baseline")
                ours = scenarios.fresh_drain(work_dir, f"res-{size}", size, "ours", depth=args.resource_depth)
                base = scenarios.fresh_drain(work_dir, f"res-base-{size}", size, "baseline", depth=args.resource_depth)
                results["resources"].append(ours | {"baselineCpuMsPerBlob": base["cpuMsPerBlob"], "baselineBlobs": base["blobs"]})
        if "sdk" in sections:
            step(f"official SDK: QueuedIngestClient, {args.sdk_blobs} blobs one by one, and ours on the same count")
            results["sdk"] = {
                "sdk": scenarios.sdk_queued_ingest(stack, args.sdk_blobs),
                "ours": scenarios.drain(stack, "sdk-ours", args.sdk_blobs, "ours"),
                "oursStoragePerBlob": results["requests"]["storagePerBlob"],
                "oursKustoPerBlob": results["requests"]["kustoSubmitPerBlob"] + results["requests"]["kustoStatusPollsPerBlob"],
            }
        if "cost" in sections:  # after the SDK section, whose counts it prices when it ran
            step(f"cost per million blobs: {args.cost_blobs} real blobs recorded, drained and tracked, counted and timed")
            results["cost"] = cost_model.cost_per_million(stack, args.cost_blobs, sdk=results.get("sdk", {}).get("sdk"))
        if "concurrency" in sections:
            results["concurrency"] = []
            for level in args.sweep_levels:
                step(f"concurrency sweep: SUBMIT_CONCURRENCY={level}, {args.sweep_size} pending")
                with scenarios.fresh_stack(work_dir, f"cc-{level}") as pair:
                    ours = scenarios.drain(pair, f"cc-{level}-ours", args.sweep_size, "ours", concurrency=level)
                    base = scenarios.drain(pair, f"cc-{level}-base", args.sweep_size, "baseline", concurrency=level)
                results["concurrency"].append(
                    {
                        "concurrency": level,
                        "blobs": args.sweep_size,
                        "ours": ours["blobsPerSecond"],
                        "baseline": base["blobsPerSecond"],
                    }
                )
        if "emulator" in sections:
            step(
                f"emulator: one CSV blob of {args.csv_rows} rows {args.csv_repeats} times, each beside DuckDB's "
                f"read_csv of it, then {args.posts} POSTs of 20 blobs"
            )
            results["emulator"] = {
                "csv": emulator_speed.csv_ingestion(stack, args.csv_rows, args.csv_repeats),
                "posts": emulator_speed.post_rate(stack, args.posts, scenarios.FAIL_FAST),
            }
        if "latency" in sections:
            step(f"latency: {args.latency_rate:g} blobs/s for {args.latency_seconds:g} s through the local host")
            results["latency"] = scenarios.landing_to_accepted(stack, args.latency_seconds, args.latency_rate)
    if "latency-model" in sections:  # on a stack of its own, once the shared one has stopped
        step(
            f"latency model: +{args.storage_latency_ms:g} ms a storage request, +{args.kusto_latency_ms:g} ms a Kusto "
            f"request; drains of {args.latency_model_pending} at SUBMIT_CONCURRENCY {args.latency_model_levels}"
        )
        results["latencyModel"] = latency_model.measure(
            work_dir,
            args.latency_model_pending,
            args.latency_model_levels,
            storage_ms=args.storage_latency_ms,
            kusto_ms=args.kusto_latency_ms,
        )
    # Only drains of a queue filled beforehand: a topped-up drain's timer runs end whenever a round comes back
    # short while the feeder refills, so its chunks are partial more often than any real drain's.
    drains_of_ours = [run["ours"] for run in results.get("throughput", {}).get("rounds", [])]
    drains_of_ours += [run for run in results.get("resources", []) if not run["toppedUp"]]
    if drains_of_ours:
        results["kustoPerBlob"] = scenarios.largest_drain_kusto(drains_of_ours)
    # Kept when a step failed: the service and local host logs are in it.
    shutil.rmtree(work_dir, ignore_errors=True)
    results["wallSeconds"] = time.monotonic() - started
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with stopped_on_signals("bench"):  # Ctrl-C, SIGTERM (a CI time-out), SIGHUP: every process started is stopped
        results = run(args)
    info = results["machine"]
    print()
    print(f"machine: {info['cpus']} CPUs, {info['memory']}, Python {info['python']}, load at start {info['loadAverageAtStart']}")
    print(format_table(table_rows(results)))
    print(f"total {results['wallSeconds']:.0f} s")
    for path in write_outputs(results, args.out):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
