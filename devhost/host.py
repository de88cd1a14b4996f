"""The local host: indexes a FunctionApp once and runs one listener per function, with one worker for the app.

Everything comes from the app's own declarations (`app.get_functions()`, called once per app object because
the library re-validates names on a second call) and from host.json; nothing about the functions is repeated
here. Listeners (the host side) hand invocations to one `WorkerPool` (the worker side) shared by every function,
sized like the Python worker's (`PYTHON_THREADPOOL_THREAD_COUNT`), and `functionTimeout` applies to each
invocation. As on the real host, a function whose binding cannot be set up (a `%SETTING%` that does not
resolve, a missing connection, a bad schedule) is in error and does not run; the others do. Stopping lets
running invocations finish within a grace period and hands back the work that never started.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import re
import socket
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import azure.functions as func

from devhost.blob_trigger import BlobTriggerListener
from devhost.config import ConfigError, HostOptions
from devhost.inflight import InFlight
from devhost.invocation import FunctionInvoker, WorkerPool, timespan, worker_thread_count
from devhost.queue_trigger import LEASE_SECONDS, QueueTriggerListener
from devhost.timer_trigger import TimerTriggerListener

logger = logging.getLogger(__name__)

SCRIPT_FILE = "function_app"
HOST_ID_SETTING = "AzureFunctionsWebHost__hostid"


class Listener(Protocol):
    kind: str
    limit: int
    invoker: FunctionInvoker

    def run(self, inflight: InFlight, stop: threading.Event) -> None: ...

    def abandon(self, tokens: list[Any]) -> None: ...


def disabled_setting(function: str) -> str:
    """The app setting that turns one function off, on the real host as here."""
    return f"AzureWebJobs.{function}.Disabled"


def function_disabled(function: str, values: Mapping[str, str]) -> bool:
    """Whether `AzureWebJobs.<function>.Disabled` is true (or 1), as the host reads it."""
    return values.get(disabled_setting(function), "").strip().lower() in ("true", "1")


def default_host_id(script_root: Path, values: Mapping[str, str]) -> str:
    """`AzureFunctionsWebHost__hostid` if set, else a stable id from this machine and app folder (at most 32 chars)."""
    configured = values.get(HOST_ID_SETTING)
    if configured:
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?", configured):
            raise ConfigError(f"{HOST_ID_SETTING}: {configured!r} must be 1-32 lowercase letters, digits and hyphens")
        return configured
    machine = re.sub(r"[^a-z0-9]", "", socket.gethostname().lower())[:22] or "local"
    digest = hashlib.sha1(str(script_root.resolve()).encode(), usedforsecurity=False).hexdigest()[:9]
    return f"{machine}-{digest}"


def load_app(script_root: Path) -> func.FunctionApp:
    """Import `function_app.py` from `script_root` and find its FunctionApp, as the Python worker does."""
    if str(script_root) not in sys.path:
        sys.path.insert(0, str(script_root))
    module: ModuleType = importlib.import_module(SCRIPT_FILE)
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionApp)]
    if len(apps) != 1:
        raise ConfigError(f"{script_root / (SCRIPT_FILE + '.py')}: expected exactly one FunctionApp, found {len(apps)}")
    return apps[0]


@dataclass
class _Running:
    listener: Listener
    inflight: InFlight
    thread: threading.Thread


class LocalHost:
    """Runs every function of one FunctionApp against local storage until `stop()`."""

    def __init__(
        self,
        app: func.FunctionApp,
        options: HostOptions,
        host_id: str,
        script_root: Path,
        values: Mapping[str, str] | None = None,
        blob_scan_interval: float = 1.0,
        queue_lease_seconds: int = LEASE_SECONDS,
    ) -> None:
        values = os.environ if values is None else values
        self.worker = WorkerPool(worker_thread_count(values))
        self.listeners: list[Listener] = []
        self.function_errors: dict[str, str] = {}  # function name -> why its binding could not be set up
        try:
            self._index(app, options, host_id, script_root, values, blob_scan_interval, queue_lease_seconds)
        except BaseException:
            self.worker.shutdown()
            raise
        limit = "no limit" if options.function_timeout is None else timespan(options.function_timeout)
        logger.info("worker: %d threads shared by all functions; functionTimeout %s", self.worker.size, limit)
        self._stop = threading.Event()
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, sum(listener.limit for listener in self.listeners)), thread_name_prefix="dispatch"
        )
        self._running: list[_Running] = []

    def _index(
        self,
        app: func.FunctionApp,
        options: HostOptions,
        host_id: str,
        script_root: Path,
        values: Mapping[str, str],
        blob_scan_interval: float,
        queue_lease_seconds: int,
    ) -> None:
        invokers = [
            FunctionInvoker(function, script_root, self.worker, options.function_timeout) for function in app.get_functions()
        ]
        for invoker in invokers:
            if function_disabled(invoker.name, values):
                # As the real host: a function turned off by AzureWebJobs.<name>.Disabled is indexed, never triggered.
                logger.info("Function '%s' is disabled (%s)", invoker.name, disabled_setting(invoker.name))
                continue
            kind = invoker.trigger.type
            if kind not in ("blobTrigger", "timerTrigger", "queueTrigger"):
                raise ConfigError(f"function {invoker.name}: trigger type {kind} is not supported by the local host")
            try:
                if kind == "blobTrigger":
                    self.listeners.append(BlobTriggerListener(invoker, options.blobs, host_id, blob_scan_interval, values))
                elif kind == "timerTrigger":
                    self.listeners.append(TimerTriggerListener(invoker, values))
                else:
                    self.listeners.append(QueueTriggerListener(invoker, options.queues, values, queue_lease_seconds))
            except ConfigError as error:
                # The host indexes each function on its own: one that cannot bind is reported and left out.
                self.function_errors[invoker.name] = str(error)
                logger.error("The '%s' function is in error: %s", invoker.name, error)
        if not self.listeners:
            logger.warning("No job functions found.")

    def start(self) -> None:
        for listener in self.listeners:
            inflight = InFlight(self._executor, listener.limit)
            thread = threading.Thread(
                target=self._listen, args=(listener, inflight), name=f"listener-{listener.invoker.name}", daemon=True
            )
            self._running.append(_Running(listener, inflight, thread))
            logger.info("function %s: %s trigger listening", listener.invoker.name, listener.kind)
            thread.start()

    def _listen(self, listener: Listener, inflight: InFlight) -> None:
        try:
            listener.run(inflight, self._stop)
        except Exception:
            logger.exception("function %s: the %s listener stopped on an error", listener.invoker.name, listener.kind)

    def stop(self, grace: float = 10.0) -> int:
        """Stop listening, finish running calls within `grace` s, hand back unstarted work; returns calls still running."""
        self._stop.set()
        for running in self._running:
            running.thread.join(timeout=grace)
        self.worker.refuse_new()  # calls still queued for a worker thread never start: their work is handed back
        still_running = 0
        for running in self._running:
            unstarted, busy = running.inflight.drain(grace)
            running.listener.abandon(unstarted)
            still_running += busy
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.worker.shutdown()
        return still_running
