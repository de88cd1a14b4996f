"""What the drain child reports about itself: its own peak memory, and its CPU per blob along the drain.

Peak memory: the bench process holds every message text of a drain (100,000 of them for the largest), and
Linux hands a parent's peak resident memory to a child it forks and execs through `ru_maxrss`; a figure
read that way grew with the drain's size although the drain did not.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.drain_child import cpu_by_tenth
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


def test_cpu_per_blob_of_the_first_and_last_tenth_is_read_between_the_samples_around_them() -> None:
    # 100 blobs in runs of 10: 1 ms of CPU per blob for the first 50, then 3 ms.
    progress = [(0, 5.0)] + [(n, 5.0 + 0.001 * min(n, 50) + 0.003 * max(0, n - 50)) for n in range(10, 101, 10)]

    tenths = cpu_by_tenth(progress)

    assert tenths == {"firstTenth": pytest.approx(1.0), "lastTenth": pytest.approx(3.0)}


@pytest.mark.parametrize(
    "progress",
    [
        [(0, 1.0), (100, 2.0)],  # one run took the whole drain
        [(0, 1.0), (30, 1.1), (100, 2.0)],  # the first run took 30%: no first tenth to speak of
        [(0, 1.0), (10, 1.1), (70, 1.5), (100, 2.0)],  # the last run took 30%
        [(0, 1.0)],  # nothing received
    ],
)
def test_cpu_by_tenth_is_none_when_the_runs_are_too_coarse_to_tell(progress: list[tuple[int, float]]) -> None:
    assert cpu_by_tenth(progress) is None
