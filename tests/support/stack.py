"""The local stack the tests run on, and the app's settings and services on it.

Azurite and the Kusto emulator run as child processes on free ports (`devhost.processes`), stopped however the
block that started them ends. Azurite runs as published, without the bench's fast queue: no test measures its
pace, and the queues a test fills stay shallow. Every test names its own containers, queues and tables
(`unique_name`), so tests share one Azurite and one emulator without seeing each other's data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError

from bench import stack as bench_stack
from bench.stack import app_settings
from devhost.processes import Azurite, Emulator, start_azurite, start_emulator
from shared.services import Services, build_services, ensure_queues
from shared.settings import load_settings

AUTO_CREATE = "--auto-create-databases"
"""The emulator flag that creates a database on its first use, so a test's database needs no set-up."""

NO_KUSTO = "http://127.0.0.1:9"
"""A Kusto endpoint for tests that never reach Kusto (nothing listens on port 9)."""


@contextlib.contextmanager
def running_azurite(location: Path) -> Iterator[Azurite]:
    """Azurite (blob, queue, table) on free ports, its data and `azurite.log` under `location`."""
    service = start_azurite(location, log_path=location / "azurite.log")
    try:
        yield service
    finally:
        service.stop()


@contextlib.contextmanager
def running_emulator(azurite: Azurite, data_dir: Path, *extra_args: str, log_path: Path | None = None) -> Iterator[Emulator]:
    """A Kusto emulator on a free port reading blobs from `azurite`, its data in `data_dir`, its log in `log_path`
    (default `data_dir/emulator.log`)."""
    service = start_emulator(
        azurite.connection_string, data_dir, extra_args=list(extra_args), log_path=log_path or data_dir / "emulator.log"
    )
    try:
        yield service
    finally:
        service.stop()


def make_services(azurite: Azurite, emulator: Emulator, prefix: str, **overrides: str) -> Services:
    """Services on Azurite + the emulator with queues and containers unique to one test, the tracker polling
    every second (its defaults are minutes)."""
    polls = {"TRACKING_POLL_INITIAL_SECONDS": "1", "TRACKING_POLL_MAX_SECONDS": "1"}
    services = build_services(load_settings(app_settings(azurite, emulator.url, prefix, **(polls | overrides))))
    ensure_queues(services)
    with contextlib.suppress(ResourceExistsError):
        services.blob_service.create_container(services.settings.staging_container)
    return services


def emulator_call(emulator: Emulator, method: str, path: str, body: Any = None) -> Any:
    """One JSON call to the emulator (its admin routes, management commands, queries); None for an empty answer."""
    return bench_stack.emulator_call(emulator.url, method, path, body, timeout=30)
