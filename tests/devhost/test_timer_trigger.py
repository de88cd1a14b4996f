"""Timer trigger: run on startup, a schedule from a %SETTING%, no overlap of runs, the payload the worker gets."""

from __future__ import annotations

from pathlib import Path

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from devhost.config import BlobOptions, HostOptions, QueueOptions
from devhost.host import LocalHost
from tests.devhost.apps import small_apps
from tests.devhost.apps.recording_app import Recorder
from tests.devhost.conftest import HostFactory, Storage
from tests.support.waiting import wait_for


def test_run_on_startup_fires_at_once_even_with_a_yearly_schedule(storage: Storage, start_host: HostFactory) -> None:
    recorder = Recorder()
    start_host(recorder, run_on_startup=True)  # DEVHOST_TEST_SCHEDULE is once a year
    timer = wait_for(lambda: recorder.of("timer"))[0]
    assert isinstance(timer, TimerRequest)
    assert timer.past_due is False
    assert timer.schedule_status["Next"].startswith("20")


def test_runs_never_overlap_when_a_run_outlasts_the_interval(
    storage: Storage, start_host: HostFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVHOST_TEST_SCHEDULE", "*/1 * * * * *")
    recorder = Recorder(timer_seconds=1.5)
    start_host(recorder)
    wait_for(lambda: len(recorder.of("timer")) >= 3, timeout=20)
    assert recorder.max_running_timers == 1


def test_without_the_schedule_monitor_the_timer_gets_no_schedule_status(storage: Storage, start_host: HostFactory) -> None:
    recorder = Recorder()
    start_host(app=small_apps.build_monitorless_timer_app(recorder))
    timer = wait_for(lambda: recorder.of("timer"))[0]
    assert isinstance(timer, TimerRequest)
    # The host sends "ScheduleStatus": null, which the library's converter turns into an empty dict.
    assert (timer.schedule_status, timer.schedule, timer.past_due) == ({}, {"AdjustForDST": True}, False)


@pytest.mark.parametrize(
    ("schedule", "use_monitor", "expected"),
    [
        ("0 */5 * * * *", None, True),  # the monitor is on by default
        ("0 */5 * * * *", False, False),
        ("0 * * * * *", None, True),  # once a minute is not too frequent
        ("*/10 * * * * *", None, False),  # more than once a minute: the host turns the monitor off
        ("*/10 * * * * *", True, False),
        ("*/10 5 * * * *", None, True),  # a restricted minute or hour keeps it on, as in the host
        ("* * * * *", None, True),  # five fields: at most once a minute
    ],
)
def test_the_schedule_monitor_follows_the_hosts_rule(schedule: str, use_monitor: bool | None, expected: bool) -> None:
    app = func.FunctionApp()

    @app.timer_trigger(arg_name="timer", schedule=schedule, use_monitor=use_monitor)
    def on_timer(timer: func.TimerRequest) -> None:
        pass

    options = HostOptions(queues=QueueOptions(), blobs=BlobOptions())
    host = LocalHost(app, options, "test-monitor", Path(__file__).parent, values={})
    try:
        assert [listener.use_monitor for listener in host.listeners] == [expected]
    finally:
        host.stop(grace=0)


def test_a_function_turned_off_by_its_disabled_setting_is_indexed_but_never_runs(
    storage: Storage, start_host: HostFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on the real host, `AzureWebJobs.<function>.Disabled` = true starts no listener for that function only."""
    monkeypatch.setenv("AzureWebJobs.on_timer.Disabled", "True")
    recorder = Recorder()
    host = start_host(recorder, run_on_startup=True)
    listening = {listener.invoker.name for listener in host.listeners}
    assert "on_timer" not in listening and "on_message" in listening
    assert "on_timer" not in host.function_errors
    host.stop(grace=1)
    assert recorder.of("timer") == []  # run_on_startup would have fired it at once

    monkeypatch.setenv("AzureWebJobs.on_timer.Disabled", "false")
    enabled = Recorder()
    start_host(enabled, run_on_startup=True)
    wait_for(lambda: enabled.of("timer"))
