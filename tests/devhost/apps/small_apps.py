"""Small test-only apps for what the local host must do like the real one, beside the recording app.

* `build_monitorless_timer_app`: one timer with `use_monitor=False` that runs on start-up, recording the
  `TimerRequest` it gets (the real host sends `ScheduleStatus: null` for it).
* `build_half_bound_app`: the same timer plus a queue trigger bound to `%DEVHOST_TEST_NEVER_SET%`, a setting no
  test sets: on the real host that function is in error and the timer runs anyway.
"""

from __future__ import annotations

import azure.functions as func

from tests.devhost.apps.recording_app import CONNECTION, Recorder

MISSING_SETTING = "DEVHOST_TEST_NEVER_SET"


def _add_monitorless_timer(app: func.FunctionApp, recorder: Recorder) -> None:
    @app.timer_trigger(arg_name="timer", schedule="%DEVHOST_TEST_SCHEDULE%", run_on_startup=True, use_monitor=False)
    def on_tick(timer: func.TimerRequest) -> None:
        recorder.add("timer", timer)


def build_monitorless_timer_app(recorder: Recorder) -> func.FunctionApp:
    app = func.FunctionApp()
    _add_monitorless_timer(app, recorder)
    return app


def build_half_bound_app(recorder: Recorder) -> func.FunctionApp:
    app = func.FunctionApp()
    _add_monitorless_timer(app, recorder)

    @app.queue_trigger(arg_name="message", queue_name=f"%{MISSING_SETTING}%", connection=CONNECTION)
    def on_unbound(message: func.QueueMessage) -> None:
        recorder.add("queue", message)

    return app
