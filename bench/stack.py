"""The local services a benchmark or the soak runs against, started the way the tests start them.

Azurite and the Kusto emulator run as child processes on free ports (`devhost.processes`); every scenario
gets its own container, queues and table names, so scenarios sharing one Azurite never see each other's
messages. `Stack` also carries the little HTTP the benches need to steer the emulator: fault settings,
counters, management commands.

`stopped_on_signals` makes a SIGTERM (a CI time-out) or SIGHUP take the same way out as a Ctrl-C, so that
`make bench` and `make soak` leave no process behind when they are stopped.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devhost.processes import Azurite, Emulator, die_with_parent, kill_spawned, start_azurite, start_emulator

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


def app_settings(azurite: Azurite, kusto_uri: str, prefix: str, **overrides: str) -> dict[str, str]:
    """App settings on Azurite whose containers and queues are `prefix`'s alone, Kusto without a token."""
    return {
        "StagingStorage": azurite.connection_string,
        "KUSTO_INGEST_URI": kusto_uri,
        "KUSTO_CREDENTIAL": "none",
        "BLOB_ACCESS": "account_key_sas",
        "STAGING_CONTAINER": f"{prefix}-staging",
        "PENDING_QUEUE": f"{prefix}-pending",
        "FAILURES_QUEUE": f"{prefix}-failures",
        "TRACKING_QUEUE": f"{prefix}-tracking",
        "STATE_CONTAINER": f"{prefix}-state",
        **overrides,
    }


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
        """App settings for one scenario (`app_settings`), with the host's own storage for a local host."""
        return {"AzureWebJobsStorage": self.azurite.connection_string} | app_settings(
            self.azurite, self.emulator.url, prefix, **overrides
        )

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

    Azurite runs with its fast queue (`devhost/azurite_preload.js`): what the benches and the soak measure is
    the pace of a deep queue, which plain Azurite 3.35 sets itself, at a cost that grows with every message
    it holds (docs/performance.md, "Azurite's queue and the preload").
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    azurite = start_azurite(work_dir / "azurite", log_path=work_dir / "azurite.log", in_memory=in_memory, fast_queue=True)
    stack: Stack | None = None
    try:
        stack = Stack(azurite, _emulator(azurite, work_dir / "emulator", emulator_args), work_dir)
        yield stack
    finally:
        if stack is not None:
            stack.emulator.stop()
        azurite.stop()


# -- stopping everything on Ctrl-C, SIGTERM or SIGHUP ----------------------------------------------------

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_SECONDS = 30.0
"""How long the clean way out may take (each service gets SIGTERM, then SIGKILL after 10 s) before everything
still running is killed at once."""


def descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, process group) of every living descendant of `pid`, read from /proc; [] where there is none (macOS).

    A child in a session of its own (a service) is still a child here until it has been reaped.
    """
    children: dict[int, list[tuple[int, int]]] = {}
    try:
        entries = [entry.name for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:
        return []
    for name in entries:
        try:
            fields = Path("/proc", name, "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[0] not in ("Z", "X"):  # a zombie holds nothing: its parent reaps it
            children.setdefault(int(fields[1]), []).append((int(name), int(fields[2])))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child[0])
    return found


def kill_descendants(sig: int = signal.SIGKILL, *, own_group_only: bool = False) -> None:
    """Send `sig` to every descendant of this process (the whole group of one that leads a group of its own),
    or with `own_group_only` only to those in this process's group: the helpers a Ctrl-C at the terminal reaches."""
    own_group = os.getpgrp()
    for pid, group in descendants(os.getpid()):
        if own_group_only and group != own_group:
            continue
        with suppress(ProcessLookupError, PermissionError):
            if group == pid and group != own_group:
                os.killpg(group, sig)
            else:
                os.kill(pid, sig)


_handlers_before: dict[int, Any] = {}
"""While `stopped_on_signals` runs: the handlers it replaced, which a forked child gets back."""


def _install_fork_hook() -> None:
    """Processes forked by this one (multiprocessing workers filling a queue) die with it (`die_with_parent`),
    and a signal does to them what it did before `stopped_on_signals`: SIGTERM ends such a worker at once, where
    a copy of the bench's handler would have it finish its share first."""
    hook: list[Callable[[], None] | None] = [None]

    def before() -> None:
        hook[0] = die_with_parent()

    def after_in_child() -> None:
        if hook[0] is not None:
            hook[0]()
        for sig, handler in _handlers_before.items():
            with suppress(ValueError, OSError):
                signal.signal(sig, handler)
        _handlers_before.clear()

    os.register_at_fork(before=before, after_in_child=after_in_child)


_fork_hook_installed = False


class _Stopper:
    """The signal handler of `stopped_on_signals`."""

    def __init__(self, name: str, grace: float) -> None:
        self.name = name
        self.grace = grace
        self.received: int | None = None
        self.unwound = False
        self._killing = threading.Lock()

    def _say(self, text: str) -> None:
        with suppress(OSError):
            os.write(2, f"{self.name}: {text}\n".encode())  # not print: the main thread may be inside a print

    def handle(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            self.kill_all_and_exit(f"{name} again: killing every process started at once")
            return  # the grace timer's thread is already killing them
        self.received = signum
        if self.unwound:  # past the block: nothing left to unwind, the way out dies by this signal
            return
        self._say(f"{name}: stopping every process started (another Ctrl-C or SIGTERM kills them at once)")
        timer = threading.Timer(self.grace, self.kill_all_and_exit, args=(f"still stopping after {self.grace:.0f} s: killing",))
        timer.daemon = True
        timer.start()
        kill_descendants(signal.SIGTERM, own_group_only=True)  # drain children, queue fillers: what Ctrl-C reaches
        raise KeyboardInterrupt(name)  # the finally blocks stop the services, in order

    def kill_all_and_exit(self, why: str) -> None:
        """SIGKILL every process started and leave at once (from the handler or the grace timer's thread)."""
        if not self._killing.acquire(blocking=False):
            return  # another thread is at it
        self._say(why)
        kill_spawned()
        kill_descendants(signal.SIGKILL)
        _flush()
        os._exit(128 + (self.received or signal.SIGTERM))

    def die(self) -> None:
        """After the block unwound: kill what is left (nothing, normally) and die by the signal received."""
        kill_spawned()
        kill_descendants(signal.SIGKILL)
        _flush()
        signum = self.received or signal.SIGTERM
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # the parent (make, a shell, CI) sees what stopped us
        os._exit(128 + signum)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()


@contextmanager
def stopped_on_signals(name: str, grace: float = GRACE_SECONDS) -> Iterator[None]:
    """Run the block so that SIGINT (Ctrl-C), SIGTERM (a CI time-out, `kill`, make passing its own on) and
    SIGHUP all end it the same way, and no process it started survives.

    The first signal raises KeyboardInterrupt in the main thread, so every `finally` and `with` stops what it
    started (the services get SIGTERM, then SIGKILL); the helpers in this process's group (drain children,
    queue fillers) get SIGTERM at once, as a Ctrl-C at the terminal would send them. Once the block has
    unwound, anything still running is killed and the process dies by that signal (exit status 128 + n for
    its parent). A second signal, or `grace` seconds without the block unwinding, SIGKILLs every process
    started at once and exits. Should this process be killed outright (SIGKILL), the kernel kills what it
    started (`devhost.processes.die_with_parent`, Linux). On another thread than the main one the block runs
    as it is (signals are handled on the main thread only); a signal ignored when it starts (SIGHUP under
    nohup, SIGINT in a background job) stays ignored. `name` starts the lines it writes to stderr.
    """
    global _fork_hook_installed  # noqa: PLW0603 - one hook per process
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if not _fork_hook_installed:
        _install_fork_hook()
        _fork_hook_installed = True
    stopper = _Stopper(name, grace)
    previous = {sig: signal.signal(sig, stopper.handle) for sig in STOP_SIGNALS if signal.getsignal(sig) != signal.SIG_IGN}
    _handlers_before.update(previous)
    try:
        yield
    finally:
        stopper.unwound = True
        if stopper.received is None:
            _handlers_before.clear()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if stopper.received is not None:  # also when it came in while the handlers were put back
            stopper.die()
