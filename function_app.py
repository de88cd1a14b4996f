"""The function app's triggers. Each function only hands its input to `shared/`, where the logic lives.

* `record_staged_blob`: a blob lands in the staging container -> one pending message (or a failure
  notification). The blob arrives as an SDK `BlobClient`, so the host never downloads its content.
* `submit_pending`: every SUBMIT_SCHEDULE tick, drain the pending queue into Kusto.
* `track_outcomes`: every TRACK_SCHEDULE tick, poll the status of accepted operations (and, in queue mode,
  relay Kusto's failure queue).
* `alert_on_failure`: every failure notification becomes one alert (log record, then the webhook); a repeat
  of a failure already alerted is dropped.
* `housekeeping`: every HOUSEKEEPING_SCHEDULE tick, alert on poison-queue messages, send due digests and
  delete expired state.
* `reconcile_staging`: every RECONCILE_SCHEDULE tick, record the staged blobs whose event never came (turned
  off with the host's own `AzureWebJobs.reconcile_staging.Disabled` setting, as the local defaults do).

Container, schedule and queue names are `%SETTING%` binding expressions, resolved by the host from the
same app settings `shared.settings` reads. The blob trigger's `source` cannot be an expression, so it is
the only setting read here, at indexing time, and an invalid value gives the fallback source instead of an
error: the app is always indexed, whatever the settings. The others are read by `get_services(<function>)`
on the first run; a run whose settings are invalid logs one ERROR line naming the setting and the fix, and
raises it (`shared.services`).

At import, `configure_app_logging()` makes every log record of the worker process redacted and its control
characters escaped, whichever logger writes it, and keeps the Azure SDK loggers at WARNING: the worker's
root logger is at INFO, and every storage request would otherwise be an App Insights trace
(`shared.app_logging`).

Timers run without the schedule monitor and never on start-up: a missed tick is worth nothing (the next
one, seconds later, does the same work), the monitor would only add storage writes, and a start-up run
would fire on every scale-out. (No `from __future__ import annotations` here: the worker must see the
real `BlobClient` class in the signature to bind the SDK type.)
"""

import logging

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_types

from shared.app_logging import configure_app_logging
from shared.housekeeping import housekeep
from shared.reconcile import reconcile_staging as reconcile_staged_blobs
from shared.recorder import record_blob
from shared.services import get_services
from shared.settings import STAGING_CONNECTION, blob_trigger_source_at_indexing
from shared.sinks import alert_once
from shared.submission import submit_pending_blobs
from shared.tracking import track_outcomes as track_accepted_operations

configure_app_logging()
logger = logging.getLogger(__name__)

app = func.FunctionApp()


@app.function_name("record_staged_blob")
@app.blob_trigger(
    arg_name="blob",
    path="%STAGING_CONTAINER%/{name}",
    connection=STAGING_CONNECTION,
    source=func.BlobSource(blob_trigger_source_at_indexing()),
)
def record_staged_blob(blob: blob_types.BlobClient) -> None:
    record_blob(blob, get_services("record_staged_blob"))


@app.function_name("submit_pending")
@app.timer_trigger(arg_name="timer", schedule="%SUBMIT_SCHEDULE%", run_on_startup=False, use_monitor=False)
def submit_pending(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logger.info("submission timer is past due; draining now")
    submit_pending_blobs(get_services("submit_pending"))


@app.function_name("track_outcomes")
@app.timer_trigger(arg_name="timer", schedule="%TRACK_SCHEDULE%", run_on_startup=False, use_monitor=False)
def track_outcomes(timer: func.TimerRequest) -> None:
    track_accepted_operations(get_services("track_outcomes"))


@app.function_name("alert_on_failure")
@app.queue_trigger(arg_name="message", queue_name="%FAILURES_QUEUE%", connection=STAGING_CONNECTION)
def alert_on_failure(message: func.QueueMessage) -> None:
    alert_once(
        message.get_body().decode("utf-8", errors="replace"),
        get_services("alert_on_failure"),
        message_id=message.id or "",
        dequeue_count=message.dequeue_count or 0,
    )


@app.function_name("housekeeping")
@app.timer_trigger(arg_name="timer", schedule="%HOUSEKEEPING_SCHEDULE%", run_on_startup=False, use_monitor=False)
def housekeeping(timer: func.TimerRequest) -> None:
    housekeep(get_services("housekeeping"))


@app.function_name("reconcile_staging")
@app.timer_trigger(arg_name="timer", schedule="%RECONCILE_SCHEDULE%", run_on_startup=False, use_monitor=False)
def reconcile_staging(timer: func.TimerRequest) -> None:
    reconcile_staged_blobs(get_services("reconcile_staging"))
