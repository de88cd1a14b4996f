"""Starts and stops the local services (Azurite, the Kusto emulator) as child processes.

Shared by `make run`, the tests and the benchmarks so that all three start the services the same way:
on chosen or free ports, bound to 127.0.0.1, each in its own process group so that stopping it also
stops anything it spawned.

Each service is in a session of its own, so a Ctrl-C at the terminal does not reach it: the process that
started it stops it (`Service.stop`), in order. Should that process die without doing so (SIGKILL, a crash),
the kernel kills the service with it (`die_with_parent`: Linux, started on the main thread).
`kill_spawned` kills every service this process started and has not stopped yet (a last resort on the way out).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE_JS = ROOT / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"
# Four fixes to the LokiJS behind Azurite's queue, for `start_azurite(..., fast_queue=True)` (why: the file's header).
AZURITE_PRELOAD = Path(__file__).resolve().parent / "azurite_preload.js"
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (not a secret: it is the same on every machine).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class ServiceError(RuntimeError):
    """A local service could not be started; the message says why and what to do."""


_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` after which the kernel SIGKILLs the child as soon as this process dies, however it dies.

    Linux only (`prctl(PR_SET_PDEATHSIG)`), and only when called on the main thread: the kernel watches the
    thread that started the child, not the process, and only the main thread lasts as long as the process. None
    where it cannot be had (macOS, another thread); the child then lives until it is stopped. The death signal
    reaches the child itself, not its own children: the services started here start none.
    """
    if _PRCTL is None or threading.current_thread() is not threading.main_thread():
        return None
    prctl, parent = _PRCTL, os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above took effect
            os._exit(1)

    return preexec


_spawned: list[subprocess.Popen] = []
_spawned_lock = threading.Lock()


def kill_spawned() -> None:
    """SIGKILL the process group of every child `spawn` started that has not been stopped (or has not exited)."""
    with _spawned_lock:
        running = [process for process in _spawned if process.poll() is None]
        _spawned[:] = running
    for process in running:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it; never one of Azurite's defaults)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in (10000, 10001, 10002):
            return port


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, process: subprocess.Popen, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"{name} exited with code {process.returncode} before listening on port {port}")
        if port_in_use(port):
            return
        time.sleep(0.05)
    raise ServiceError(f"{name} did not listen on port {port} within {timeout:.0f} s")


@dataclass
class Service:
    """A running child process and how to reach it."""

    name: str
    process: subprocess.Popen

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the process group at once (crash tests)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.process.wait(10)


@dataclass
class Azurite(Service):
    blob_port: int = 0
    queue_port: int = 0
    table_port: int = 0

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.blob_port}/{AZURITE_ACCOUNT}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.queue_port}/{AZURITE_ACCOUNT}"

    @property
    def table_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.table_port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};"
            f"TableEndpoint={self.table_endpoint};"
        )


def spawn(args: list[str], log_path: Path | None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `args` in a session (and process group) of its own, output appended to `log_path`, killed by the
    kernel if this process dies first (`die_with_parent`) and remembered for `kill_spawned`."""
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - a single foreign call before exec: see die_with_parent
            env=env,
            cwd=ROOT,
        )
    finally:
        if not isinstance(log, int):
            log.close()
    with _spawned_lock:
        _spawned[:] = [running for running in _spawned if running.returncode is None] + [process]
    return process


def start_azurite(
    location: Path,
    blob_port: int | None = None,
    queue_port: int | None = None,
    table_port: int | None = None,
    log_path: Path | None = None,
    in_memory: bool = False,
    fast_queue: bool = False,
) -> Azurite:
    """Start Azurite (blob, queue, table) with telemetry off, data under `location` (or in memory).

    `fast_queue` loads `AZURITE_PRELOAD`, so that a queue request stops costing Azurite in proportion to every
    message it holds: for the bench and the soak, whose figures are the pace of a deep queue. Everything else
    (`make run`, the tests) runs Azurite as published. The preload refuses an Azurite release other than the
    one it was written for, and Azurite then exits before it listens (the ServiceError quotes why).
    """
    node = shutil.which("node")
    if node is None:
        raise ServiceError("node is not on PATH: install Node.js 20 or newer")
    if not AZURITE_JS.exists():
        raise ServiceError(f"Azurite is not installed ({AZURITE_JS} is missing): run 'npm ci' (make does this)")
    ports = [blob_port or free_port(), queue_port or free_port(), table_port or free_port()]
    for port in ports:
        if port_in_use(port):
            raise ServiceError(f"port {port} is already in use: stop what holds it or choose other ports")
    location.mkdir(parents=True, exist_ok=True)
    args = [
        node,
        *(["--require", str(AZURITE_PRELOAD)] if fast_queue else []),
        str(AZURITE_JS),
        "--silent",
        "--blobHost",
        "127.0.0.1",
        "--queueHost",
        "127.0.0.1",
        "--tableHost",
        "127.0.0.1",
        "--blobPort",
        str(ports[0]),
        "--queuePort",
        str(ports[1]),
        "--tablePort",
        str(ports[2]),
        "--skipApiVersionCheck",
        "--loose",
        "--disableTelemetry",
    ]
    # Azurite refuses --location together with --inMemoryPersistence.
    args += ["--inMemoryPersistence"] if in_memory else ["--location", str(location)]
    process = spawn(args, log_path)
    azurite = Azurite("azurite", process, *ports)
    try:
        for port in ports:
            wait_for_port(port, process, "Azurite")
    except ServiceError as error:
        azurite.stop()
        raise ServiceError(f"{error}{_last_words(log_path)}") from None
    except BaseException:  # Ctrl-C / SIGTERM while it starts: not left running either way
        azurite.stop()
        raise
    return azurite


def _last_words(log_path: Path | None) -> str:
    """The last line a service wrote to its log (a refusal by the preload, a node error), to quote in an error."""
    if log_path is None or not log_path.exists():
        return ""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    return f"; its last line in {log_path}: {lines[-1]}" if lines else ""


@dataclass
class Emulator(Service):
    port: int = 0
    data_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_emulator(
    storage_connection_string: str,
    data_dir: Path,
    port: int | None = None,
    extra_args: list[str] | None = None,
    log_path: Path | None = None,
) -> Emulator:
    """Start the Kusto ingestion emulator (`python -m kusto_emulator`) on `port` or a free one."""
    port = port or free_port()
    if port_in_use(port):
        raise ServiceError(f"port {port} is already in use: stop what holds it or set another emulator port")
    args = [
        sys.executable,
        "-m",
        "kusto_emulator",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--storage",
        storage_connection_string,
        *(extra_args or []),
    ]
    process = spawn(args, log_path)
    emulator = Emulator("kusto-emulator", process, port, data_dir)
    try:
        wait_for_port(port, process, "Kusto emulator")
    except BaseException:  # a ServiceError, or Ctrl-C / SIGTERM while it starts: not left running either way
        emulator.stop()
        raise
    return emulator
