"""The local services a benchmark or the soak runs against, started the way the tests start them.

Azurite and the Kusto emulator run as child processes on free ports (`devhost.processes`); every scenario
gets its own container, queues and table names, so scenarios sharing one Azurite never see each other's
messages. `Stack` also carries the little HTTP the benches need to steer the emulator: fault settings,
counters, management commands.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devhost.processes import Azurite, Emulator, start_azurite, start_emulator

NO_FAULTS = {"throttleRate": 0, "errorRate": 0, "latencyMs": 0, "failBlobs": [], "holdIngestion": False}


def wait_for(condition: Callable[[], bool], what: str, timeout: float, interval: float = 0.5) -> None:
    """Poll `condition` every `interval` seconds until it holds; RuntimeError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(interval)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process, all its threads, from /proc/PID/stat; None where there is no /proc (macOS)."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return None
    fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14 and 15


def cpu_difference(before: float | None, after: float | None) -> float | None:
    """CPU seconds between two `process_cpu_seconds` readings, None if either could not be read."""
    return None if before is None or after is None else after - before


def cpu_ms_per(cpu_seconds: float | None, count: int) -> float | None:
    """CPU milliseconds per item (request, blob) of a `cpu_difference`, None if it could not be read."""
    return None if cpu_seconds is None else 1000 * cpu_seconds / count


def emulator_call(url: str, method: str, path: str, body: Any = None, timeout: float = 60.0) -> Any:
    """One JSON call to the emulator (admin routes, management commands, queries)."""
    data = None if body is None else json.dumps(body).encode()
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"not the local emulator: {url}")
    request = urllib.request.Request(url + path, data=data, method=method, headers={"Content-Type": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - checked above: the emulator we started
        text = response.read().decode()
    return json.loads(text) if text else None


@dataclass
class Stack:
    """Azurite plus one emulator; `start_emulator` replaces the emulator (a fresh DuckDB file per scenario)."""

    azurite: Azurite
    emulator: Emulator
    work_dir: Path

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return emulator_call(self.emulator.url, method, path, body)

    def query(self, database: str, kql: str, attempts: int = 20) -> list[list[Any]]:
        """Rows of a KQL query; injected 429s and 500s (the soak's faults hit queries too) are asked again."""
        for _ in range(attempts - 1):
            try:
                return self.call("POST", "/v1/rest/query", {"db": database, "csl": kql})["Tables"][0]["Rows"]
            except urllib.error.HTTPError as error:
                if error.code not in (429, 500):
                    raise
                time.sleep(0.2)
        return self.call("POST", "/v1/rest/query", {"db": database, "csl": kql})["Tables"][0]["Rows"]

    def set_faults(self, **faults: Any) -> None:
        self.call("PUT", "/admin/faults", {**NO_FAULTS, **faults})

    @contextmanager
    def ingestion_held(self, **faults: Any) -> Iterator[None]:
        """`faults` in force, with the emulator holding what it accepts (`holdIngestion`) for the block.

        The emulator still answers every request, as Kusto would, but ingests nothing while a client is
        measured: a real cluster ingests on machines of its own, never on the client's two cores. After the
        block the held blobs are worked off under `faults` (fail-fast rules stay), and the next scenario's
        `wait_until_idle` waits for that.
        """
        self.set_faults(**faults, holdIngestion=True)
        try:
            yield
        finally:
            self.set_faults(**faults)

    def stats(self) -> dict[str, Any]:
        return self.call("GET", "/admin/stats")

    def wait_until_idle(self, quiet_seconds: float = 2.0, timeout: float = 600.0) -> None:
        """Wait until the emulator has finished ingesting what earlier scenarios submitted.

        Its background ingestion shares its DuckDB writer with the POST handler: measuring while a backlog
        is still being written would charge the emulator's catch-up to the scenario that follows.
        """
        deadline = time.monotonic() + timeout
        last, quiet_since = None, time.monotonic()
        while time.monotonic() < deadline:
            blobs = self.stats()["blobs"]
            if blobs != last:
                last, quiet_since = blobs, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_seconds:
                return
            time.sleep(0.25)

    def mgmt(self, database: str, command: str) -> Any:
        return self.call("POST", "/v1/rest/mgmt", {"db": database, "csl": command})

    def create_table(self, database: str, table: str, schema: str) -> None:
        self.mgmt(database, f".create table {table} ({schema})")

    def app_settings(self, prefix: str, **overrides: str) -> dict[str, str]:
        """App settings for one scenario: its own container and queues, the emulator without a token."""
        return {
            "AzureWebJobsStorage": self.azurite.connection_string,
            "StagingStorage": self.azurite.connection_string,
            "KUSTO_INGEST_URI": self.emulator.url,
            "KUSTO_CREDENTIAL": "none",
            "BLOB_ACCESS": "account_key_sas",
            "STAGING_CONTAINER": f"{prefix}-staging",
            "PENDING_QUEUE": f"{prefix}-pending",
            "FAILURES_QUEUE": f"{prefix}-failures",
            "TRACKING_QUEUE": f"{prefix}-tracking",
            "STATE_CONTAINER": f"{prefix}-state",
            **overrides,
        }

    def replace_emulator(self, name: str, extra_args: list[str] | None = None) -> Emulator:
        """Stop the current emulator and start a new one with its own data folder."""
        self.emulator.stop()
        self.emulator = _emulator(self.azurite, self.work_dir / name, extra_args)
        return self.emulator


def _emulator(azurite: Azurite, data_dir: Path, extra_args: list[str] | None) -> Emulator:
    data_dir.mkdir(parents=True, exist_ok=True)
    return start_emulator(
        azurite.connection_string,
        data_dir,
        extra_args=["--auto-create-databases", "--log-level", "WARNING", *(extra_args or [])],
        log_path=data_dir / "emulator.log",
    )


@contextmanager
def running_stack(work_dir: Path, emulator_args: list[str] | None = None, *, in_memory: bool = False) -> Iterator[Stack]:
    """Start Azurite and an emulator, with their data under `work_dir` (Azurite's in memory if `in_memory`);
    stop both however the block ends.

    The drains run Azurite on disk: in memory (`in_memory`), every message body is an extent of its own,
    and the queue's garbage collector (every minute) removes the extents of deleted messages one at a time
    from an indexed collection, holding Azurite's one thread for as long as the square of their number
    (8,600 extents: 112 s without an answer to any request). On disk, messages share extent files and the
    sweep finds nothing to remove. The soak, which also uploads 10,000 blobs, stays in memory: its one run on
    disk did not settle within 900 s (Azurite at 94% CPU), where its runs in memory had passed in 725 s.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    azurite = start_azurite(work_dir / "azurite", log_path=work_dir / "azurite.log", in_memory=in_memory)
    stack: Stack | None = None
    try:
        stack = Stack(azurite, _emulator(azurite, work_dir / "emulator", emulator_args), work_dir)
        yield stack
    finally:
        if stack is not None:
            stack.emulator.stop()
        azurite.stop()
