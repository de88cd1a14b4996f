"""`process_cpu_seconds` reads another process's CPU from /proc; checked against the process's own account."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.emulator_speed import process_cpu_seconds


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="/proc is Linux's")
def test_it_reads_the_same_user_and_system_time_the_process_counts_for_itself() -> None:
    sum(i * i for i in range(2_000_000))  # some CPU, so a wrong field would not read as a matching zero

    times = os.times()
    read = process_cpu_seconds(os.getpid())

    assert read is not None
    assert abs(read - (times.user + times.system)) < 0.05  # the two are read a few clock ticks apart


def test_a_process_without_proc_entry_reads_as_unknown() -> None:
    assert process_cpu_seconds(2**22 + 1) is None  # above Linux's pid_max: never a live process
