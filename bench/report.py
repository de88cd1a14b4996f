"""Turns the benchmark results into the printed table, a JSON file and the concurrency chart (PNG)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: the chart is only written to a file
import matplotlib.pyplot as plt

from bench import latency_model
from bench.drain_child import DELETES, KUSTO_POSTS, LEDGER_MARKS, MAIN_THREAD, REST, TRACKING_SENDS


def _row(measure: str, value: str, goal: str, baseline: str = "") -> tuple[str, str, str, str]:
    return measure, value, goal, baseline


def _reconcile_rows(reconcile: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """A reconciliation run's storage requests over the blobs just ingested, and what they come to per blob."""
    return [
        _row(
            f"reconciliation run over {reconcile['staged']} staged blobs: storage requests, first / next run",
            f"{reconcile['requestsFirstRun']} / {reconcile['requestsNextRun']}",
            "",
            f"{reconcile['recovered']} recovered (none expected)",
        ),
        _row(
            f"  per staged blob over its look-back ({reconcile['runsPerLookBack']:.0f} runs)",
            f"{reconcile['perBlobOverLookBack']:.3f}",
            "<= 0.1",
            f"listing alone {reconcile['listingPerBlobOverLookBack']:.4f}; the rest is per run, whatever the blob count",
        ),
    ]


def _post_note(posts: dict[str, Any]) -> str:
    note = "load client on the same 2 cores"
    cpu_ms = posts.get("emulatorCpuMsPerRequest")
    if cpu_ms:
        note += f"; emulator CPU {cpu_ms:.2f} ms a POST"
    return note + f"; all blobs settled {posts['settledSecondsAfterLastAnswer']:.1f} s after the last answer"


def _csv_rows(csv: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The emulator's CSV ingestion, and beside it DuckDB's own read_csv of the same blob (`emulator_speed.csv_ingestion`)."""
    rows = [_row(f"emulator: CSV rows/s ({csv['rows']:,} rows, POST to Succeeded)", f"{csv['rowsPerSecond']:,.0f}", ">= 500,000")]
    engine = csv.get("engine")
    if engine:
        low, high = csv["ratioRange"]
        cpu = f"; DuckDB's CPU {csv['cpuRatio']:.0%} of the emulator's" if csv.get("cpuRatio") else ""
        rows += [
            _row(
                "  DuckDB read_csv of the same blob (rows/s, download incl.)",
                f"{engine['rowsPerSecond']:,.0f}",
                "",
                f"read_csv + insert alone {engine['loadRowsPerSecond']:,.0f}, after a {engine['downloadSeconds']:.1f} s download",
            ),
            _row(
                f"  emulator / DuckDB rows/s (medians of {csv['repeats']} pairs)",
                f"{csv['ratio']:.0%}",
                ">= 90%",
                f"pairs {low:.0%}-{high:.0%}{cpu}; load average {csv['loadAverage'][0]:.1f} -> {csv['loadAverage'][1]:.1f}",
            ),
        ]
    return rows


def trend_percent(values: list[float]) -> float:
    """The least-squares line through `values`, as its change from the first to the last point, in % of their mean.

    One drain's tenths have spread by about a fifth either way with no order to it, so the first and the last
    alone can show a growth that is not there; the fitted line uses all of them.
    """
    slope = statistics.linear_regression(range(len(values)), values).slope
    return 100 * slope * (len(values) - 1) / statistics.mean(values)


def _idle_note(tenths: list[dict[str, float]]) -> str:
    idle = statistics.mean(tenth["idleCpuMsPerBlob"] for tenth in tenths)
    return f"{idle:.2f} ms a blob polling an empty queue" if idle else "no empty polls"


_PARTS = (
    (DELETES, "deleting the pending messages"),
    (MAIN_THREAD, "main thread: receiving pages (ours: reading, checking, chunking too)"),
    (KUSTO_POSTS, "Kusto POSTs: building, checking, sending the request"),
    (LEDGER_MARKS, "submission ledger marks"),
    (TRACKING_SENDS, "tracking records: sending"),
    (REST, "the rest: tracking records' building and checking, SAS, threads"),
)


def _cpu_by_part_rows(by_part: dict[str, dict[str, float]]) -> list[tuple[str, str, str, str]]:
    """Where the drain child's CPU a blob went, drain beside baseline ("-" for work only the drain does)."""
    ours, baseline = by_part["ours"], by_part["baseline"]
    rows = []
    for part, label in _PARTS:
        mine = ours.get(part, 0.0)
        value = f"{mine:.2f} / {baseline[part]:.2f} ms" if part in baseline else f"{mine:.2f} ms / -"
        rows.append(_row(f"    {label}", value, "", ""))
    return rows


def _usd(value: float | None) -> str:
    return "not found" if value is None else f"${value:,.2f}"


def _cost_rows(priced: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The `cost` section: $ a million blobs for ours (each priced line under it), the SDK's path and Kusto's
    Event Grid connection; function time billed busy (measured) / sparse (each blob its own >= 1 s period)."""
    ours, sdk, connection, floor = priced["ours"], priced["sdk"], priced["eventGridConnection"], priced["floor"]

    def both(path: dict[str, Any]) -> str:
        return f"{_usd(path['usdPerMillion']['busy'])} / {_usd(path['usdPerMillion']['sparse'])}"

    rows = [
        _row(
            f"$ a million blobs, ours ({priced['blobs']} blobs counted), busy / sparse",
            both(ours),
            "",
            f"list prices, USD, retrieved {priced['retrieved']} (bench/prices.py); {priced['instanceMemoryMB']} MB instances",
        )
    ]
    for line in [*ours["lines"], *ours["functionTime"].values()]:
        detail = f"{line['perBlob']:.4g} a blob" + (f": {line['operations']}" if "operations" in line else "")
        rows.append(_row(f"    {line['item']}", _usd(line["usdPerMillion"]), "", detail))
    storage = "; ".join(line["operations"] for line in sdk["lines"] if "operations" in line)
    rows += [
        _row(
            "  official SDK, one ingest_from_blob a blob, busy / sparse",
            both(sdk),
            "",
            f"{sdk['measured']['msPerBlob']:.1f} ms a call; storage a blob: {storage} (the read is Kusto's)",
        ),
        _row(
            "  Kusto's Event Grid data connection",
            _usd(connection["usdPerMillion"]["all"]),
            "",
            "2 Event Grid operations + Kusto's read; not priced (not found): " + ", ".join(connection["unpriced"]),
        ),
        _row(
            "  ours with no blobs: the timers, a month",
            _usd(floor["usdAMonth"]),
            "",
            ", ".join(f"{name} {timer['runsAMonth']:,} runs" for name, timer in floor["timers"].items()) + ", each billed >= 1 s",
        ),
    ]
    return rows


def table_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, value, goal, baseline or note) rows: throughput, requests per blob, the emulator, latency, CPU and
    memory, the official SDK, the latency model, cost, the concurrency sweep (the order docs/performance.md follows)."""
    rows = [("measure", "value", "goal", "baseline / note")]
    main = results.get("throughput")
    if main:
        summary, rounds = main["summary"], main["rounds"]
        per_round = ", ".join(f"{run['ours']['blobsPerSecond']:.0f}" for run in rounds)
        rows += [
            _row(
                f"drain-and-submit, {summary['blobs']} pending (blobs/s)",
                f"{summary['oursBlobsPerSecond']:.0f}",
                "",
                f"median of {summary['rounds']} rounds: {per_round}",
            ),
            _row("  raw receive+delete, same queue size, SDK", f"{summary['baselineBlobsPerSecond']:.0f}", "", "baseline"),
            _row(
                "  ratio drain / baseline (one stack a round)",
                f"{summary['ratioOursToBaseline']:.0%}",
                "",
                "information, not a goal; per round: " + ", ".join(f"{ratio:.0%}" for ratio in summary["ratiosOursToBaseline"]),
            ),
        ]
        # Who set the pace: Azurite answers on one thread, the drain child's threads share one interpreter.
        for who, cpu, busy in (
            ("Azurite", summary["azuriteCpuMsPerBlob"], summary["azuriteBusy"]),
            ("drain child", summary["childCpuMsPerBlob"], summary["childBusy"]),
        ):
            if cpu and busy:
                note = f"busy {busy['ours']:.2f} / {busy['baseline']:.2f} of a core"
                if who == "drain child":  # the ratio the drain would reach if this CPU alone set the pace
                    note += f"; baseline / drain CPU {cpu['baseline'] / cpu['ours']:.0%}"
                value = f"{cpu['ours']:.1f} / {cpu['baseline']:.1f} ms"
                rows.append(_row(f"  {who} CPU per blob, drain / baseline", value, "", note))
        rows += _cpu_by_part_rows(summary["childCpuMsPerBlobByPart"])
        rows += [
            _row("drain with Kusto answering after 150 ms (blobs/s)", f"{summary['latency150BlobsPerSecond']:.0f}", "", ""),
            _row(
                "  ratio 150 ms / 0 ms (one stack a round)",
                f"{summary['ratio150To0']:.0%}",
                ">= 80%",
                "per round: " + ", ".join(f"{ratio:.0%}" for ratio in summary["ratios150To0"]),
            ),
        ]
        if summary["notReceived"]:
            missing = str(summary["notReceived"])
            rows.append(_row("  pending messages Azurite never handed out", missing, "0", "setup, not the drain"))
    kusto = results.get("kustoPerBlob")
    if kusto:
        rows += [
            _row(f"Kusto submission POSTs per blob (drain of {kusto['blobs']})", f"{kusto['postsPerBlob']:.4f}", "<= 0.05", ""),
            _row(
                f"Kusto requests per blob, all (drain of {kusto['blobs']})",
                f"{kusto['allPerBlob']:.4f}",
                "<= 0.05",
                "incl. 1 configuration GET per process",
            ),
        ]
    cost = results.get("requests")
    if cost:
        rows += [
            _row(f"storage requests per blob (counted, {cost['blobs']} blobs)", f"{cost['storagePerBlob']:.2f}", "<= 3.2", ""),
            _row(
                f"Kusto requests per blob, record + drain of {cost['blobs']} real blobs",
                f"{cost['kustoSubmitPerBlob']:.3f}",
                "",
                "incl. 1 configuration GET",
            ),
            _row("Kusto requests per blob, status polls", f"{cost['kustoStatusPollsPerBlob']:.3f}", "(tracking)", ""),
            *_reconcile_rows(cost["reconcile"]),
        ]
    speed = results.get("emulator")
    if speed:
        csv, posts = speed["csv"], speed["posts"]
        rows += [
            *_csv_rows(csv),
            _row("emulator: POSTs of 20 blobs per second", f"{posts['requestsPerSecond']:.0f}", ">= 500", _post_note(posts)),
        ]
    latency = results.get("latency")
    if latency:
        rows += [
            _row(f"landing -> accepted p50 ({latency['blobs']} blobs, local host)", f"{latency['p50Seconds']:.1f} s", "", ""),
            _row("landing -> accepted p99", f"{latency['p99Seconds']:.1f} s", "<= 13 s", "schedule every 10 s + 3 s"),
        ]
    for size in results.get("resources", []):
        rows += [
            _row(
                f"CPU per blob, drain of {size['blobs']}",
                f"{size['cpuMsPerBlob']:.2f} ms",
                "flat",
                f"baseline {size['baselineCpuMsPerBlob']:.2f} ms",
            ),
            _row(f"peak memory, drain of {size['blobs']}", f"{size['peakMemoryMb']:.0f} MB", "<= 200 MB", "drain process VmHWM"),
        ]
        tenths = size["cpuByTenth"]
        if tenths:
            costs = [tenth["cpuMsPerBlob"] for tenth in tenths]
            rows.append(
                _row(
                    f"  CPU per blob along the drain of {size['blobs']}, by tenth",
                    f"{min(costs):.2f}-{max(costs):.2f} ms, trend {trend_percent(costs):+.0f}%",
                    "flat",
                    f"same process; {_idle_note(tenths)}",
                )
            )
    sdk = results.get("sdk")
    if sdk:
        ours = sdk["ours"]
        rows += [
            _row(
                f"QueuedIngestClient one by one, {sdk['sdk']['blobs']} blobs (blobs/s)",
                f"{sdk['sdk']['blobsPerSecond']:.0f}",
                "",
                f"ours {ours['blobsPerSecond']:.0f} blobs/s, same blobs",
            ),
            _row(
                "  SDK storage / Kusto requests per blob",
                f"{sdk['sdk']['storagePerBlob']:.2f} / {sdk['sdk']['kustoPerBlob']:.3f}",
                "",
                f"ours {sdk['oursStoragePerBlob']:.2f} / {sdk['oursKustoPerBlob']:.3f} (incl. durable pending + tracking)",
            ),
        ]
    if "latencyModel" in results:
        rows += latency_model.table_rows(results["latencyModel"])
    priced = results.get("cost")
    if priced:
        rows += _cost_rows(priced)
    for point in results.get("concurrency", []):
        rows.append(
            _row(
                f"SUBMIT_CONCURRENCY={point['concurrency']} (blobs/s)",
                f"{point['ours']:.0f}",
                "",
                f"baseline {point['baseline']:.0f}",
            )
        )
    return rows


def format_table(rows: list[tuple[str, str, str, str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = []
    for index, row in enumerate(rows):
        lines.append(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def write_outputs(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """results.json always; concurrency.png when the sweep ran."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "results.json"]
    written[0].write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    points = results.get("concurrency")
    if points:
        figure, axes = plt.subplots(figsize=(7, 4.2))
        levels = [point["concurrency"] for point in points]
        axes.plot(levels, [point["ours"] for point in points], marker="o", label="drain and submit (ours)")
        axes.plot(
            levels, [point["baseline"] for point in points], marker="s", linestyle="--", label="receive + delete (baseline)"
        )
        axes.set_xscale("log", base=2)
        axes.set_xticks(levels, [str(level) for level in levels])
        axes.set_xlabel("SUBMIT_CONCURRENCY")
        axes.set_ylabel("blobs per second")
        axes.set_title(f"Drain throughput, {points[0]['blobs']} pending blobs per point")
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        chart = out_dir / "concurrency.png"
        figure.savefig(chart, dpi=120)
        plt.close(figure)
        written.append(chart)
    return written
