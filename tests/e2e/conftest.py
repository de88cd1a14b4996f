"""End-to-end fixtures: the real function_app.py in `python -m devhost` (a subprocess), Azurite, the emulator.

Each test gets its own staging container, queues, host id and Kusto database, so the tests of this folder share
one Azurite and one emulator without seeing each other's blobs, receipts or rows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import ContainerClient

from devhost.emulator_client import EmulatorClient
from devhost.processes import ROOT, Azurite, Emulator
from devhost.provision import create_staging_storage, create_tables
from shared.settings import load_settings
from tests.support.stack import running_azurite, running_emulator
from tests.support.waiting import wait_for

COLUMNS = "(blob_id:string, n:long, word:string)"


def spawn_local_host(script_root: Path, settings_path: Path, log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    """`python -m devhost` on the app in `script_root`, in a session of its own, its output appended to `log_path`."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "devhost", "--script-root", str(script_root), "--settings", str(settings_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )


@dataclass
class LocalHostProcess:
    """`python -m devhost` on the real app, with a settings file and an alerts file of its own."""

    settings_path: Path
    log_path: Path
    alerts_path: Path
    process: subprocess.Popen | None = None
    starts: int = 0

    def start(self) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("DEVHOST_", "PYTEST_"))}
        env["DEVHOST_ALERTS_FILE"] = str(self.alerts_path)
        marker = f"local host running (start {self.starts})"
        with self.log_path.open("ab") as log:
            log.write(f"--- {marker}\n".encode())
        self.process = spawn_local_host(ROOT, self.settings_path, self.log_path, env)
        self.starts += 1
        wait_for(lambda: self._running_since(marker), "the local host to start", timeout=60)

    def _running_since(self, marker: str) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"the local host exited with {self.process.returncode}:\n{self.log()[-3000:]}")
        text = self.log()
        return "local host running" in text[text.rfind(marker) :]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alerts(self) -> list[dict[str, Any]]:
        if not self.alerts_path.exists():
            return []
        return [json.loads(line) for line in self.alerts_path.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@dataclass
class Pipeline:
    """One test's pipeline: where to stage blobs, the host process, and how to count rows in Kusto."""

    container: ContainerClient
    host: LocalHostProcess
    kusto: EmulatorClient
    database: str
    table: str = "Rows"
    values: dict[str, str] = field(default_factory=dict)

    def stage(self, name: str, data: bytes) -> None:
        self.container.upload_blob(name, data, overwrite=True)

    def target(self, file_name: str) -> str:
        return f"{self.database}/{self.table}/{file_name}"

    def rows_per_blob(self) -> dict[str, int]:
        rows = self.kusto.query_rows(self.database, f"['{self.table}'] | summarize rows = count() by blob_id")
        return {blob_id: int(count) for blob_id, count in rows}

    def wait_for_rows(self, expected: dict[str, int], timeout: float = 60) -> dict[str, int]:
        """Wait until every expected blob has landed; returns what landed (the test compares it exactly)."""
        wait_for(lambda: set(self.rows_per_blob()) >= set(expected), "every expected blob's rows", timeout=timeout)
        return self.rows_per_blob()


def settings_values(azurite: Azurite, emulator: Emulator, name: str) -> dict[str, str]:
    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    values.update(
        AzureWebJobsStorage=azurite.connection_string,
        StagingStorage=azurite.connection_string,
        KUSTO_INGEST_URI=emulator.url,
        AzureFunctionsWebHost__hostid=f"e2e-{name}",
        STAGING_CONTAINER=name,
        PENDING_QUEUE=f"{name}-pending",
        FAILURES_QUEUE=f"{name}-failures",
        TRACKING_QUEUE=f"{name}-tracking",
        BLOB_TRIGGER_SOURCE="LogsAndContainerScan",
        SUBMIT_SCHEDULE="*/1 * * * * *",
        PENDING_VISIBILITY_TIMEOUT_SECONDS="5",
    )
    for key in ("TRACK_SCHEDULE", "HOUSEKEEPING_SCHEDULE"):
        if key in values:
            values[key] = "*/1 * * * * *"
    for key in ("TRACKING_POLL_INITIAL_SECONDS",):
        if key in values:
            values[key] = "1"
    if "STATE_CONTAINER" in values:
        values["STATE_CONTAINER"] = f"{name}-state"
    return values


@pytest.fixture(scope="module")
def e2e_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Azurite of the end-to-end tests alone: the app drains account-wide queues such as the blob poison queue."""
    with running_azurite(tmp_path_factory.mktemp("e2e-azurite")) as service:
        yield service


@pytest.fixture(scope="module")
def e2e_emulator(e2e_azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with running_emulator(e2e_azurite, tmp_path_factory.mktemp("e2e-emulator")) as service:
        yield service


def prepare_pipeline(azurite: Azurite, emulator: Emulator, name: str, tmp_path: Path, **overrides: str) -> Pipeline:
    """A pipeline's settings file, staging storage and Kusto table, with its host not started yet."""
    values = settings_values(azurite, emulator, name) | overrides
    settings_path = tmp_path / "local.settings.json"
    settings_path.write_text(json.dumps({"IsEncrypted": False, "Values": values}, indent=2))
    create_staging_storage(load_settings(values), values)
    kusto = EmulatorClient(emulator.url)
    database = f"E2E_{name}"
    create_tables(kusto, {f"{database}.Rows": COLUMNS})
    host = LocalHostProcess(settings_path, tmp_path / "devhost.log", tmp_path / "alerts.jsonl")
    container = ContainerClient.from_connection_string(azurite.connection_string, name)
    return Pipeline(container, host, kusto, database, values=values)


@pytest.fixture
def pipeline(e2e_azurite: Azurite, e2e_emulator: Emulator, unique_name: str, tmp_path: Path) -> Iterator[Pipeline]:
    started = prepare_pipeline(e2e_azurite, e2e_emulator, unique_name, tmp_path)
    started.host.start()
    yield started
    started.host.stop()
    started.kusto.set_faults(throttleRate=0.0)


def pause(seconds: float) -> None:
    """Let the pipeline run for a while (never used to assert a duration)."""
    time.sleep(seconds)
