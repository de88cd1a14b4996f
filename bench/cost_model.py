"""`python -m bench --only cost`: what a million blobs cost in Azure, from counted operations at list prices.

Ours is counted, not estimated (`counted_run`): real blobs are recorded (the blob trigger's body, one
execution per blob, one after another), drained (the submission timer's body, run by run) and tracked (the
outcome tracker's body) with the counting clients of `bench.counting`. Each request is tallied by the REST
operation Azure bills (`bench.counting.rest_operation`), each body is timed, and the emulator's statistics
count the Kusto requests. Timer runs that found work are the blobs' cost; a run that found nothing would
have run anyway, so it prices the timers' floor a month instead (`floor`), with one idle housekeeping run and
one reconciliation run over the blobs just ingested (all recorded: it lists them and recovers none).

Prices, the billing class of each operation and Flex Consumption's billing rules are in `bench.prices`,
the only place they are written. Every operation the counting clients saw must have a price: one without
raises `UnpricedOperationError` rather than count as free. The instance memory and the timer schedules are read
from infra/main.bicep, the deployment priced.

Function time is billed two ways, and both are shown: an instance that stays busy is billed for the time
it executes (the bodies' measured time: "busy"); blobs that arrive one at a time each start a billing
period of their own, billed at least 1 s ("sparse"). Durations are measured here, against Azurite and the
emulator on this machine, so Azure's round trips are not in them.

Beside ours: the official SDK's path (one `QueuedIngestClient.ingest_from_blob` per blob from a function
that Event Grid triggers per blob, as ours is: its requests counted by `bench.sdk_ingest`), and Kusto's
Event Grid data connection (no function and no app storage; Event Grid's operations, Kusto's read of the
blob, and the event hub the connection needs, whose price was not found).
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.counting import RequestCounter, counted_services, rest_operation
from bench.prices import (
    FLEX_MINIMUM_SECONDS,
    FLEX_ROUNDING_SECONDS,
    PRICES,
    RETRIEVED,
    SECONDS_A_MONTH,
    STORAGE_ACCOUNT,
    STORAGE_OPERATION_CLASS,
)
from bench.stack import Stack, wait_for
from devhost.processes import ROOT
from shared import tracking
from shared.housekeeping import housekeep
from shared.ncrontab import parse_ncrontab
from shared.reconcile import reconcile_staging
from shared.recorder import record_blob
from shared.submission import submit_pending_blobs

INFRA = ROOT / "infra" / "main.bicep"
MILLION = 1_000_000
# Writes that create a blob raise a BlobCreated event on the account's system topic (the app's own state
# writes and quarantine copies); assumed an Event Grid ingress operation each, even when the subscription's
# filter (the staging container only) delivers none of them.
BLOB_CREATING = ("Put Blob", "Copy Blob", "Put Block List")
TIMERS = ("submit", "track", "housekeeping", "reconcile")


class UnpricedOperationError(LookupError):
    """A counted operation with no price in `bench.prices`: it is never priced at zero."""


@dataclass(frozen=True)
class Deployment:
    """What infra/main.bicep deploys, as far as the bill goes."""

    instance_memory_mb: int
    schedules: dict[str, str]  # timer -> NCRONTAB (defaults of the template's parameters)
    storage: tuple[str, str, str]  # kind, SKU, access tier

    @property
    def memory_gb(self) -> float:
        return self.instance_memory_mb / 1024


def read_deployment(path: Path = INFRA) -> Deployment:
    text = path.read_text(encoding="utf-8")

    def found(pattern: str) -> str:
        match = re.search(pattern, text)
        if not match:
            raise ValueError(f"{path.name}: nothing matches {pattern!r}; bench/cost_model.py reads the deployment from it")
        return match.group(1)

    schedules = {timer: found(rf"param {timer}Schedule string = '([^']+)'") for timer in TIMERS}
    storage_block = found(r"(?s)resource storage 'Microsoft\.Storage/storageAccounts@[^']+' = \{(.*?)\n\}")
    storage = (
        found(r"(?s)resource storage '[^']+' = \{.*?kind: '([^']+)'"),
        re.search(r"sku: \{\s*name: '([^']+)'", storage_block).group(1),  # type: ignore[union-attr]
        re.search(r"accessTier: '([^']+)'", storage_block).group(1),  # type: ignore[union-attr]
    )
    return Deployment(int(found(r"param instanceMemoryMB int = (\d+)")), schedules, storage)


def runs_a_month(schedule: str) -> int:
    """Runs in 30 days of a schedule that fires every day (day, month and day of week all `*`)."""
    second, minute, hour, day, month, weekday = parse_ncrontab(schedule)
    if len(day) != 31 or len(month) != 12 or len(weekday) != 7:
        raise ValueError(f"{schedule!r}: only schedules that fire every day are priced")
    return len(second) * len(minute) * len(hour) * SECONDS_A_MONTH // 86_400


def billable_seconds(seconds: float) -> float:
    """Flex Consumption's billed length of one activity period: at least 1 s, then up to the next 100 ms."""
    steps = math.ceil(round(seconds / FLEX_ROUNDING_SECONDS, 6))
    return max(FLEX_MINIMUM_SECONDS, steps * FLEX_ROUNDING_SECONDS)


def _line(item: str, per_blob: float, price: str) -> dict[str, Any]:
    """One priced quantity a blob: `usdPerMillion` is None when the price was not found."""
    found = PRICES[price]
    each = None if found.usd is None else found.each()
    return {
        "item": item,
        "perBlob": per_blob,
        "unit": found.unit,
        "usdEach": each,
        "usdPerMillion": None if each is None else each * per_blob * MILLION,
    }


def storage_lines(operations: Mapping[str, float]) -> list[dict[str, Any]]:
    """One line a billing class, from REST operations a blob; raises UnpricedOperationError for one without a price."""
    by_class: dict[str, float] = {}
    detail: dict[str, list[str]] = {}
    for operation, count in sorted(operations.items()):
        billing_class = STORAGE_OPERATION_CLASS.get(operation)
        if billing_class is None:
            raise UnpricedOperationError(
                f"the counting clients saw {operation!r}, which bench/prices.py gives no price: add its class there"
            )
        by_class[billing_class] = by_class.get(billing_class, 0.0) + count
        detail.setdefault(billing_class, []).append(f"{operation} {count:.3g}")
    lines = []
    for billing_class, count in by_class.items():
        line = _line(f"storage: {billing_class}", count, billing_class)
        line["operations"] = ", ".join(detail[billing_class])
        lines.append(line)
    return lines


def path_cost(
    *,
    storage: Mapping[str, float],
    kusto_requests: float,
    event_grid_operations: float,
    executions: float,
    busy_seconds: float | None,
    sparse_seconds: float | None,
    memory_gb: float,
    event_hubs_events: float = 0.0,
) -> dict[str, Any]:
    """The lines of one path, a blob, and its total a million blobs with function time billed busy and sparse.

    Kusto reads each blob once on every path (one Get Blob, assumed: the emulator's reads are not counted).
    """
    common = storage_lines(Counter(storage) + Counter({"Get Blob": 1.0}))
    for line in common:
        if line["item"] == "storage: blob read":
            line["item"] += " (incl. Kusto's read of the blob, 1 a blob, assumed)"
    common.append(_line("Kusto requests (counted)", kusto_requests, "kusto request"))
    common.append(_line("Event Grid operations", event_grid_operations, "event grid operation"))
    if event_hubs_events:
        common.append(_line("Event Hubs ingress events", event_hubs_events, "event hubs ingress event"))
    if executions:
        common.append(_line("function executions", executions, "function execution"))
    function_time = {}
    for regime, seconds in (("busy", busy_seconds), ("sparse", sparse_seconds)):
        if seconds is not None:
            function_time[regime] = _line(f"function GB-s ({regime})", seconds * memory_gb, "function GB-second")
    priced = sum(line["usdPerMillion"] for line in common if line["usdPerMillion"] is not None)
    return {
        "lines": common,
        "functionTime": function_time,
        "unpriced": [line["item"] for line in common if line["usdPerMillion"] is None],
        "usdPerMillion": {regime: priced + line["usdPerMillion"] for regime, line in function_time.items()} or {"all": priced},
    }


# -- counting ours ----------------------------------------------------------------------------------------


class _Tally:
    """Operations, Kusto requests and seconds of the executions of one body, apart for runs with and without work."""

    def __init__(self) -> None:
        self.busy: dict[str, Any] = {"executions": 0, "seconds": [], "operations": Counter(), "kusto": Counter()}
        self.idle: dict[str, Any] = {"executions": 0, "seconds": [], "operations": Counter(), "kusto": Counter()}

    def add(self, worked: bool, seconds: float, operations: Counter[str], kusto: Mapping[str, int]) -> None:
        side = self.busy if worked else self.idle
        side["executions"] += 1
        side["seconds"].append(seconds)
        side["operations"].update(operations)
        side["kusto"].update(kusto)

    def as_json(self) -> dict[str, Any]:
        return {
            name: {**side, "operations": dict(side["operations"]), "kusto": dict(side["kusto"]), "seconds": side["seconds"]}
            for name, side in (("busy", self.busy), ("idle", self.idle))
        }


def counted_run(stack: Stack, blobs: int) -> dict[str, Any]:
    """Record, drain and track `blobs` real blobs with counting clients, timing every execution of each body."""
    stack.set_faults()
    values = stack.app_settings("costmodel", TRACKING_POLL_INITIAL_SECONDS="1")
    plain = scenarios._services(values)
    settings = plain.settings
    for container in (settings.staging_container, settings.state_container):
        plain.blob_service.create_container(container)  # both deployed by infra/main.bicep in Azure
    names = [f"{scenarios.DATABASE}/{scenarios.TABLE}/costmodel/part-{index:05d}.csv" for index in range(blobs)]
    scenarios._upload_blobs(plain, names, lambda name: f"{name},1\n".encode())
    counter = RequestCounter()
    services = counted_services(settings, counter)
    bodies = {"record": _Tally(), "submit": _Tally(), "track": _Tally(), "housekeeping": _Tally(), "reconcile": _Tally()}

    def execute(body: str, run: Any, worked: Any) -> Any:
        counter.reset_operations()
        before = stack.stats()
        started = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - started
        kusto = scenarios._kusto_requests(before, stack.stats())
        bodies[body].add(worked(result), seconds, counter.reset_operations(), kusto)
        return result

    succeeded_before = stack.stats()["blobs"]["succeeded"]
    for name in names:  # one blob-trigger execution a blob, one at a time
        blob = services.blob_service.get_blob_client(settings.staging_container, name)
        execute("record", lambda blob=blob: record_blob(blob, services), lambda _: True)
    operations = 0
    while (report := execute("submit", lambda: submit_pending_blobs(services), lambda r: r.received > 0)).received:
        operations += report.operations
    wait_for(
        lambda: stack.stats()["blobs"]["succeeded"] >= succeeded_before + blobs, "the emulator to ingest the cost blobs", 300
    )
    finished, deadline = 0, time.monotonic() + 300
    while finished < operations and time.monotonic() < deadline:
        finished += execute("track", lambda: tracking.track_outcomes(services), lambda r: r.received > 0).finished
        time.sleep(0.5)
    if finished < operations:
        raise RuntimeError(f"the tracker finished {finished} of {operations} operations in 300 s")
    execute("track", lambda: tracking.track_outcomes(services), lambda r: r.received > 0)  # an idle run for the floor
    execute("housekeeping", lambda: housekeep(services), lambda _: False)
    # A reconciliation run once every blob is recorded: it lists them all and recovers none.
    after_grace = datetime.now(UTC) + timedelta(seconds=settings.reconcile_grace_seconds + 60)
    execute("reconcile", lambda: reconcile_staging(services, now=after_grace), lambda _: False)
    for client in (plain.kusto, services.kusto):
        client.close()
    for client in services.queues:
        client.delete_queue()
    return {"blobs": blobs, "operations": operations, "bodies": {name: tally.as_json() for name, tally in bodies.items()}}


# -- the three paths ---------------------------------------------------------------------------------------


def ours(run: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
    """Ours a blob: the record executions and the timer runs that found work, all counted."""
    blobs, bodies = run["blobs"], run["bodies"]
    worked = [bodies["record"]["busy"], bodies["submit"]["busy"], bodies["track"]["busy"]]
    storage = sum((Counter(side["operations"]) for side in worked), Counter())
    kusto = sum(sum(side["kusto"].values()) for side in worked)
    record_seconds = bodies["record"]["busy"]["seconds"]
    busy = sum(sum(side["seconds"]) for side in worked)
    created = sum(storage[operation] for operation in BLOB_CREATING)
    cost = path_cost(
        storage={operation: count / blobs for operation, count in storage.items()},
        kusto_requests=kusto / blobs,
        # The staging blob's BlobCreated: its ingress and its delivery to the blob trigger (maxEventsPerBatch 1).
        event_grid_operations=2 + created / blobs,
        executions=len(record_seconds) / blobs,
        busy_seconds=busy / blobs,
        # Blobs one at a time: each record execution is a billing period of its own; the timer runs that
        # drain and track them stay inside the 1 s each timer run is billed anyway (`floor`).
        sparse_seconds=sum(billable_seconds(seconds) for seconds in record_seconds) / blobs,
        memory_gb=deployment.memory_gb,
    )
    cost["measured"] = {
        "recordMsPerBlob": 1000 * sum(record_seconds) / len(record_seconds),
        "submitMsPerBlob": 1000 * sum(bodies["submit"]["busy"]["seconds"]) / blobs,
        "trackMsPerBlob": 1000 * sum(bodies["track"]["busy"]["seconds"]) / blobs,
        "storagePerBlob": sum(storage.values()) / blobs,
        "blobCreatingWritesPerBlob": created / blobs,
    }
    return cost


def floor(run: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
    """The timers a month with no blob at all: each run billed at least 1 s, its idle run's requests priced."""
    timers = {}
    for timer in TIMERS:
        idle = run["bodies"][timer]["idle"]
        if not idle["executions"]:
            raise RuntimeError(f"no idle {timer} run was measured")
        runs = runs_a_month(deployment.schedules[timer])
        seconds = max(billable_seconds(seconds) for seconds in idle["seconds"])
        storage = storage_lines({op: count / idle["executions"] for op, count in idle["operations"].items()})
        run_usd = (
            seconds * deployment.memory_gb * PRICES["function GB-second"].each()
            + PRICES["function execution"].each()
            + sum(line["usdPerMillion"] for line in storage) / MILLION
        )
        timers[timer] = {
            "schedule": deployment.schedules[timer],
            "runsAMonth": runs,
            "idleMs": 1000 * max(idle["seconds"]),
            "billedSeconds": seconds,
            "storage": storage,
            "usdAMonth": runs * run_usd,
        }
    return {"timers": timers, "usdAMonth": sum(timer["usdAMonth"] for timer in timers.values())}


def sdk_path(sdk: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
    """The official SDK a blob: what `bench.sdk_ingest` counted, from a function Event Grid triggers per blob."""
    blobs = sdk["blobs"]
    operations: Counter[str] = Counter()
    for key, count in sdk["storageRequestsByUrl"].items():
        method, url = key.split(" ", 1)
        operations[rest_operation(method, url)] += count
    seconds = sdk["seconds"] / blobs
    cost = path_cost(
        storage={operation: count / blobs for operation, count in operations.items()},
        kusto_requests=sum(sdk["kustoRequests"].values()) / blobs,
        event_grid_operations=2,
        executions=1,
        busy_seconds=seconds,
        sparse_seconds=billable_seconds(seconds),  # each call is well under the 1 s minimum
        memory_gb=deployment.memory_gb,
    )
    cost["measured"] = {"msPerBlob": 1000 * seconds, "storagePerBlob": sum(operations.values()) / blobs, "blobs": blobs}
    return cost


def event_grid_connection() -> dict[str, Any]:
    """Kusto's Event Grid data connection a blob: the event's ingress and its delivery to the event hub, the
    event hub's ingress event, and Kusto's read. The connection itself is assumed to have no charge of its own
    (no meter for it was found); the event hub's throughput units are a charge by the hour, not by the blob."""
    return path_cost(
        storage={},
        kusto_requests=0,
        event_grid_operations=2,
        executions=0,
        busy_seconds=None,
        sparse_seconds=None,
        memory_gb=0,
        event_hubs_events=1,
    )


def cost_per_million(stack: Stack, blobs: int, sdk: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `cost` section: count ours, take (or run) the SDK's count, price the three paths and our timers' floor."""
    deployment = read_deployment()
    if deployment.storage != STORAGE_ACCOUNT:
        raise ValueError(f"bench/prices.py prices a {STORAGE_ACCOUNT} account; infra/main.bicep deploys {deployment.storage}")
    run = counted_run(stack, blobs)
    if sdk is None:
        sdk = scenarios.sdk_queued_ingest(stack, blobs)
    return {
        "blobs": blobs,
        "retrieved": RETRIEVED,
        "instanceMemoryMB": deployment.instance_memory_mb,
        "ours": ours(run, deployment),
        "floor": floor(run, deployment),
        "sdk": sdk_path(sdk, deployment),
        "eventGridConnection": event_grid_connection(),
        "run": run,
    }
