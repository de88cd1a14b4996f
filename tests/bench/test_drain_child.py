"""What the drain child reports about itself: its own peak memory, its CPU per blob along the drain, and by part.

Peak memory: the bench process holds every message text of a drain (100,000 of them for the largest), and
Linux hands a parent's peak resident memory to a child it forks and execs through `ru_maxrss`; a figure
read that way grew with the drain's size although the drain did not.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from unittest.mock import patch

import pytest

from bench.drain_child import CallCpu, Sample, _until_received, cpu_by_tenth
from bench.report import trend_percent
from devhost.processes import ROOT

_PARENT_HOLDS_MB = 400
_CHILD = """
import sys
from bench.drain_child import peak_memory_mb
held = bytearray(int(sys.argv[1]) * 2**20)
held[:: 4096] = b"x" * len(held[:: 4096])  # touched, so resident
print(peak_memory_mb())
"""


def _child_peak_mb(child_holds_mb: int) -> float:
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, str(child_holds_mb)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(run.stdout)


def test_a_child_started_by_a_large_parent_reports_only_its_own_peak() -> None:
    parent = bytearray(_PARENT_HOLDS_MB * 2**20)
    parent[::4096] = b"x" * len(parent[::4096])

    child_alone = _child_peak_mb(0)
    child_holding = _child_peak_mb(150)

    assert 0 < child_alone < _PARENT_HOLDS_MB / 2
    assert 150 <= child_holding < 150 + child_alone + 20
    assert len(parent) == _PARENT_HOLDS_MB * 2**20  # still held while the children ran


def _samples(*points: tuple[int, float]) -> list[Sample]:
    """Samples of a drain whose every call received messages and none waited on an empty queue."""
    return [Sample(received, cpu, 0.0, calls, 0) for calls, (received, cpu) in enumerate(points)]


def test_cpu_per_blob_of_the_first_and_last_tenth_is_read_between_the_samples_around_them() -> None:
    # 100 blobs in runs of 10: 1 ms of CPU per blob for the first 50, then 3 ms.
    progress = _samples((0, 5.0), *((n, 5.0 + 0.001 * min(n, 50) + 0.003 * max(0, n - 50)) for n in range(10, 101, 10)))

    tenths = cpu_by_tenth(progress)

    assert tenths is not None
    assert [tenth["blobsPerCall"] for tenth in tenths] == [10] * 10
    assert [tenth["cpuMsPerBlob"] for tenth in tenths] == pytest.approx([1.0] * 5 + [3.0] * 5)


def test_the_cpu_of_calls_that_found_the_queue_empty_is_kept_apart() -> None:
    # 100 blobs in calls of 10 (1 ms each a blob); from the 80th on, each call is preceded by an empty one of 5 ms.
    cpu_of_call = iter([0.010] * 8 + [0.005, 0.010] * 2)
    got = iter([10] * 8 + [0, 10] * 2)
    clock = [0.0]

    def drain_once() -> int:
        clock[0] += next(cpu_of_call)
        return next(got)

    with patch("bench.drain_child._cpu_seconds", lambda: clock[0]), patch("bench.drain_child._EMPTY_PAUSE_SECONDS", 0):
        progress = _until_received(100, drain_once)

    tenths = cpu_by_tenth(progress)

    assert tenths is not None
    assert progress[-1] == Sample(100, pytest.approx(0.11), pytest.approx(0.01), 10, 2)
    assert tenths[0] == {
        "cpuMsPerBlob": pytest.approx(1.0),
        "idleCpuMsPerBlob": 0,
        "blobsPerCall": 10,
        "emptyCalls": 0,
    }
    assert tenths[-1] == {
        "cpuMsPerBlob": pytest.approx(1.5),
        "idleCpuMsPerBlob": pytest.approx(0.5),
        "blobsPerCall": 10,
        "emptyCalls": 1,
    }


@pytest.mark.parametrize(
    "points",
    [
        [(0, 1.0), (100, 2.0)],  # one run took the whole drain
        [(0, 1.0), (30, 1.1), (100, 2.0)],  # the first run took 30%: no first tenth to speak of
        [(0, 1.0), (10, 1.1), (70, 1.5), (100, 2.0)],  # the last run took 30%
        [(0, 1.0)],  # nothing received
    ],
)
def test_cpu_by_tenth_is_none_when_the_runs_are_too_coarse_to_tell(points: list[tuple[int, float]]) -> None:
    assert cpu_by_tenth(_samples(*points)) is None


@pytest.mark.parametrize(
    ("costs", "trend"),
    [
        ([2.0] * 10, 0.0),
        ([1.0, 2.0, 3.0], 100.0),  # fitted line 1 -> 3: a change of 2 on a mean of 2
        ([1.0, 1.0, 3.0, 3.0, 3.0, 1.0, 1.0, 1.0, 1.0, 3.0], 0.0),  # the last is three times the first, yet no growth
        ([2.2, 2.8, 3.4, 2.2, 3.2, 3.1, 2.5, 2.5, 3.0, 2.8], 6.1),  # shape of a measured 100,000-blob drain
    ],
)
def test_the_trend_along_a_drain_is_the_fitted_change_not_first_against_last(costs: list[float], trend: float) -> None:
    assert trend_percent(costs) == pytest.approx(trend, abs=0.05)


class _Worker:
    def spin(self, cpu_seconds: float) -> str:
        end = time.thread_time() + cpu_seconds
        while time.thread_time() < end:
            pass
        return "spun"

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)


def test_call_cpu_counts_what_each_call_computed_on_its_own_thread_and_the_parts_add_up() -> None:
    worker, meter = _Worker(), CallCpu()
    meter.wrap(worker, "spin", "spin")
    meter.wrap(worker, "wait", "wait")

    side = threading.Thread(target=worker.spin, args=(0.05,))
    side.start()
    assert worker.spin(0.02) == "spun"  # on the main thread, while the other thread spins too
    side.join()
    worker.wait(0.1)

    # Both spins counted, each on its own thread's clock (a process clock would count the overlap twice)...
    assert 0.07 <= meter.seconds["spin"] < 0.09
    # ...sleeping is no CPU, and the main thread's share is only its own call.
    assert meter.seconds["wait"] < 0.02
    assert 0.02 <= meter.on_main_thread < 0.035
    parts = meter.per_blob(10, process_cpu=1.0, main_thread_cpu=0.5)
    assert sum(parts.values()) == pytest.approx(100.0)  # ms a blob: 1 s of CPU over 10 blobs
    assert parts["mainThread"] == pytest.approx(100 * (0.5 - meter.on_main_thread))
    assert parts["spin"] == pytest.approx(100 * meter.seconds["spin"])
