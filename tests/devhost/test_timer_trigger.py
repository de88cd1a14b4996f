"""Timer trigger: run on startup, a schedule from a %SETTING%, and no overlap of runs."""

from __future__ import annotations

import pytest
from azure.functions.timer import TimerRequest

from tests.devhost.apps.recording_app import Recorder, wait_until
from tests.devhost.conftest import HostFactory, Storage


def test_run_on_startup_fires_at_once_even_with_a_yearly_schedule(storage: Storage, start_host: HostFactory) -> None:
    recorder = Recorder()
    start_host(recorder, run_on_startup=True)  # DEVHOST_TEST_SCHEDULE is once a year
    timer = wait_until(lambda: recorder.of("timer"))[0]
    assert isinstance(timer, TimerRequest)
    assert timer.past_due is False
    assert timer.schedule_status["Next"].startswith("20")


def test_runs_never_overlap_when_a_run_outlasts_the_interval(
    storage: Storage, start_host: HostFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVHOST_TEST_SCHEDULE", "*/1 * * * * *")
    recorder = Recorder(timer_seconds=1.5)
    start_host(recorder)
    wait_until(lambda: len(recorder.of("timer")) >= 3, timeout=20)
    assert recorder.max_running_timers == 1
