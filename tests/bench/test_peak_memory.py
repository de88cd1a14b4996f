"""The drain child's peak memory is its own: neither the bench that starts it nor less than it really held.

The bench process holds every message text of a drain (100,000 of them for the largest), and Linux hands a
parent's peak resident memory to a child it forks and execs through `ru_maxrss`; a figure read that way
grew with the drain's size although the drain did not.
"""

from __future__ import annotations

import subprocess
import sys

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
    del parent
