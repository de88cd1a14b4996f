"""`make bench` and `make soak` leave no process behind when they are stopped (issue #27).

Each test starts `python -m bench` or `python -m bench.soak` as `make` would, in a session of its own, waits
until the services it starts are up (Azurite, the Kusto emulator, the local host: read from its process tree
in /proc, which is the only way to see them from outside), stops it the way a CI time-out (SIGTERM), a
Ctrl-C at the terminal (SIGINT to the whole foreground group), an impatient user (a second signal) or
`kill -9` would, and checks within a bounded time that it exited and that nothing it started is still
running: not one of the processes seen in its tree, nor any process whose command line names its folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devhost.processes import ROOT

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process trees from /proc (Linux)"),
]

SERVICES = ("azurite.js", "-m kusto_emulator", "-m devhost")
"""What each run starts, as its command line reads."""
STOPPED_WITHIN = 60.0
"""The bench's own grace period is 30 s (`bench.stack.GRACE_SECONDS`); its clean way out takes about a second."""

# SIGINT is ignored in a job a non-interactive shell starts in the background, and a child inherits that:
# the runs start with it at its default, as in a terminal, where Ctrl-C reaches the foreground job.
_WITH_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


@dataclass(frozen=True)
class Seen:
    pid: int
    started: int
    """Clock ticks after boot (field 22 of /proc/PID/stat): the same pid later is another process."""
    command: str


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()]


def _tree(root: int) -> dict[int, Seen]:
    """Every living descendant of `root`."""
    children: dict[int, list[int]] = {}
    started: dict[int, int] = {}
    for pid in _pids():
        fields = _stat(pid)
        if fields and fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(pid)
            started[pid] = int(fields[19])
    found: dict[int, Seen] = {}
    queue = [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found[child] = Seen(child, started[child], _command(child))
            queue.append(child)
    return found


def _alive(seen: Seen) -> bool:
    fields = _stat(seen.pid)
    return fields is not None and fields[0] not in ("Z", "X") and int(fields[19]) == seen.started  # a zombie is dead


def _naming(folder: Path) -> list[Seen]:
    """Living processes whose command line names `folder` (Azurite's data, the emulator's, the host's settings)."""
    found = []
    for pid in _pids():
        fields, command = _stat(pid), _command(pid)
        if fields and fields[0] not in ("Z", "X") and str(folder) in command and pid != os.getpid():
            found.append(Seen(pid, int(fields[19]), command))
    return found


@dataclass
class Run:
    process: subprocess.Popen
    log: Path
    folder: Path
    seen: dict[int, Seen]

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def wait_for_services(self, timeout: float = 180.0) -> None:
        """Until Azurite, an emulator and the local host all run in its tree (every process seen is kept)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the run ended before its services were up:\n{self.output()}"
            self.seen |= _tree(self.process.pid)
            running = [seen.command for seen in self.seen.values() if _alive(seen)]
            if all(any(name in command for command in running) for name in SERVICES):
                return
            time.sleep(0.2)
        pytest.fail(f"the services did not all start within {timeout:.0f} s:\n{self.output()}")

    def survivors(self) -> list[Seen]:
        return [seen for seen in self.seen.values() if _alive(seen)] + [
            seen for seen in _naming(self.folder) if seen.pid not in self.seen
        ]

    def assert_it_exits_leaving_nothing(self, timeout: float = STOPPED_WITHIN) -> int:
        """The run's exit code, once it has exited within `timeout` and nothing it started runs 5 s later."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {timeout:.0f} s after it was stopped:\n{self.output()}")
        deadline = time.monotonic() + 5
        while self.survivors() and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = self.survivors()
        assert not survivors, f"left running: {[f'{s.pid} {s.command[:120]}' for s in survivors]}\n{self.output()}"
        return code


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    """Starts a run in a session of its own; at the end kills whatever of it still runs."""
    runs: list[Run] = []

    def starting(command: list[str], folder: Path) -> Run:
        log = tmp_path / f"run-{len(runs)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, start_new_session=True
            )
        runs.append(Run(process, log, folder, {}))
        return runs[-1]

    yield starting
    for run in runs:
        for seen in [*run.seen.values(), *_naming(run.folder)]:
            if _alive(seen):
                os.kill(seen.pid, signal.SIGKILL)
        if run.process.poll() is None:
            os.killpg(run.process.pid, signal.SIGKILL)
        run.process.wait(10)


def _bench(out: Path) -> list[str]:
    """A bench that runs long enough to be stopped: the latency section, its blobs landing for five minutes."""
    return ["--only", "latency", "--latency-seconds", "300", "--latency-rate", "1", "--out", str(out)]


def _python(*args: str) -> list[str]:
    return [sys.executable, "-c", _WITH_DEFAULT_SIGINT, *args]


def _send(run: Run, how: str) -> int:
    """`kill -TERM <pid>` (a CI time-out), or SIGINT to the whole group (a Ctrl-C at the terminal)."""
    if how == "sigterm":
        os.kill(run.process.pid, signal.SIGTERM)
        return signal.SIGTERM
    os.killpg(run.process.pid, signal.SIGINT)
    return signal.SIGINT


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_a_stopped_bench_stops_every_process_it_started(start, tmp_path: Path, how: str) -> None:
    run = start(_python("-m", "bench", *_bench(tmp_path / "out")), tmp_path / "out")
    run.wait_for_services()

    sent = _send(run, how)

    code = run.assert_it_exits_leaving_nothing()
    assert code == -sent  # it dies by the signal, so make or a shell knows what stopped it
    assert signal.Signals(sent).name in run.output()


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_a_stopped_soak_stops_every_process_it_started(start, tmp_path: Path, how: str) -> None:
    work_dir = tmp_path / "soak"
    # Three kills of the host 3-12 s apart: it is still killing and landing blobs when it is stopped.
    soak = ["--blobs", "2000", "--kills", "3", "--seed", "1", "--work-dir", str(work_dir)]
    run = start(_python("-m", "bench.soak", *soak), work_dir)
    run.wait_for_services()

    sent = _send(run, how)

    assert run.assert_it_exits_leaving_nothing() == -sent


def test_a_second_signal_while_it_stops_kills_everything_at_once(start, tmp_path: Path) -> None:
    run = start(_python("-m", "bench", *_bench(tmp_path / "out")), tmp_path / "out")
    run.wait_for_services()

    os.kill(run.process.pid, signal.SIGTERM)
    time.sleep(0.05)  # inside its clean way out: stopping the local host, then the emulator, then Azurite
    os.kill(run.process.pid, signal.SIGTERM)

    run.assert_it_exits_leaving_nothing(timeout=10)
    assert "again" in run.output()


def test_a_bench_killed_outright_takes_its_services_with_it(start, tmp_path: Path) -> None:
    run = start(_python("-m", "bench", *_bench(tmp_path / "out")), tmp_path / "out")
    run.wait_for_services()

    os.kill(run.process.pid, signal.SIGKILL)  # no handler runs: the kernel kills what it started

    assert run.assert_it_exits_leaving_nothing(timeout=10) == -signal.SIGKILL


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_terminating_make_stops_the_bench_it_runs_and_all_it_started(start, tmp_path: Path) -> None:
    # A recipe like `make bench`'s, without its set-up: make passes a SIGTERM on to the command it runs.
    makefile = tmp_path / "Makefile"
    recipe = " ".join([sys.executable, "-m", "bench", *_bench(tmp_path / "out")])
    makefile.write_text(f".PHONY: bench\nbench:\n\t{recipe}\n")
    run = start(["make", "--no-print-directory", "-f", str(makefile), "bench"], tmp_path / "out")
    run.wait_for_services()

    os.kill(run.process.pid, signal.SIGTERM)

    run.assert_it_exits_leaving_nothing()
