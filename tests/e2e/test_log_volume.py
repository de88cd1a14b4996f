"""How many log records one blob costs on the happy path, under the local host logging as the Python worker does.

In Azure every record at INFO or above becomes an Application Insights trace, and traces are not sampled (so
that no alert record is ever dropped, see host.json): the per-blob count is what the app pays per blob.
Measured with `.venv/bin/python -m pytest tests/e2e/test_log_volume.py` (`.local/logs/devhost.log` of `make run`
reads the same), a blob that lands alone costs 5 records:

* `shared.recorder`   blob pending '<container>/<name>' -> <db>.<table> (...)
* `devhost.invocation` record_staged_blob (blob ...) succeeded in N ms   (in Azure: the host's Executing/Executed)
* `shared.submission`  submitted 1 blobs to <db>.<table> as operation ...     (one per operation)
* `shared.tracking`    operation ... finished after N s: 1 succeeded, ...     (one per operation)
* `shared.tracking`    tracker run: 1 received, 1 finished, ...               (one per tracker run with work)

and ten blobs landing together 23 (2.3 each): the first two lines are per blob, the others per operation. A
tracker run that finds the operation not finished yet adds one `tracker run: ... rescheduled` line. The timers'
own lines (`devhost.invocation` "<timer> (timer ...) succeeded") come every tick, blob or no blob, and the drain's
summary (`drain finished: received ...`, written only by a drain that received something) sums up a tick: neither
is counted. No `azure.*`, `urllib3` or `msal` record below WARNING appears at all: the
app keeps those loggers at WARNING (`shared.app_logging`), and the local host does not do it for the app, which
the last test checks with an app that forgets to.
"""

from __future__ import annotations

import json
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from devhost.processes import Azurite
from tests.e2e.conftest import Pipeline, pause, spawn_local_host
from tests.e2e.samples import encode
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

# The local host's line format: "%(asctime)s %(levelname)-7s %(name)s: %(message)s" with "%H:%M:%S".
RECORD = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +([\w.]+): (.*)$")
TIMERS = ("submit_pending", "track_outcomes", "housekeeping")
SDK_LOGGERS = ("azure", "urllib3", "msal")
LONE_BLOB_RECORDS = 5
"""Measured: pending + blob invocation per blob; submitted, operation finished, tracker run per operation."""
BATCH_RECORDS_PER_BLOB = 3.0
"""Ten blobs together measured 2.3 each (one operation); 3 leaves room for them to be split over two drains."""


@dataclass(frozen=True)
class Record:
    level: str
    logger: str
    message: str


def records(text: str) -> list[Record]:
    """The log records in `text` (continuation lines of a traceback are part of their record, not counted)."""
    return [Record(*match.groups()) for line in text.splitlines() if (match := RECORD.match(line))]


def is_tick(record: Record) -> bool:
    """A record every timer tick writes, whether or not a blob is on its way."""
    if record.logger == "devhost.invocation":
        return record.message.startswith(tuple(f"{timer} (timer " for timer in TIMERS))
    return record.logger == "shared.submission" and record.message.startswith("drain finished: ")


def is_sdk(record: Record) -> bool:
    return any(record.logger == name or record.logger.startswith(f"{name}.") for name in SDK_LOGGERS)


def succeeded(text: str) -> int:
    return sum(int(n) for n in re.findall(r"^.* shared\.tracking: operation .* finished after .*: (\d+) succeeded", text, re.M))


def blob_records(pipeline: Pipeline, blob_ids: list[str]) -> list[Record]:
    """Stage one csv blob per id, wait until the tracker has seen all of them succeed, return the records written
    meanwhile, tick records left out."""
    start = len(pipeline.host.log())
    for blob_id in blob_ids:
        pipeline.stage(pipeline.target(f"{blob_id}.csv"), encode("csv", blob_id, 3))
    process = pipeline.host.process
    assert process is not None
    wait_for(lambda: succeeded(pipeline.host.log()[start:]) >= len(blob_ids) or process.poll() is not None, timeout=60)
    assert process.poll() is None, f"the local host exited:\n{pipeline.host.log()[-3000:]}"
    pause(1.5)  # the tracker run's own summary line follows its operations' lines
    return [record for record in records(pipeline.host.log()[start:]) if not is_tick(record)]


def test_a_blob_costs_a_handful_of_records_and_the_sdks_none(pipeline: Pipeline) -> None:
    pause(3)
    idle = records(pipeline.host.log())
    ticks = [record for record in idle if is_tick(record)]
    assert ticks and all(is_tick(record) for record in idle if record.logger.startswith(("shared.", "devhost.invocation"))), (
        pipeline.host.log()
    )

    lone = blob_records(pipeline, ["lone"])
    rescheduled = sum(1 for record in lone if record.message.startswith("tracker run:") and " 0 finished," in record.message)
    assert len(lone) - rescheduled <= LONE_BLOB_RECORDS, "\n".join(map(str, lone))
    assert [record.logger for record in lone if record.message.startswith("blob pending")] == ["shared.recorder"]

    batch = [f"b{index}" for index in range(10)]
    together = blob_records(pipeline, batch)
    assert len(together) / len(batch) <= BATCH_RECORDS_PER_BLOB, "\n".join(map(str, together))
    assert pipeline.rows_per_blob() == dict.fromkeys(["lone", *batch], 3)

    pipeline.host.stop()
    everything = records(pipeline.host.log())
    assert not [r for r in everything if is_sdk(r) and r.level in ("DEBUG", "INFO")], "SDK records below WARNING"
    assert not [r for r in everything if r.level in ("ERROR", "CRITICAL")]


FORGETFUL_APP = """
import os

import azure.functions as func
from azure.storage.queue import QueueServiceClient

app = func.FunctionApp()


@app.timer_trigger(arg_name="timer", schedule="*/1 * * * * *", run_on_startup=False, use_monitor=False)
def one_request(timer: func.TimerRequest) -> None:
    QueueServiceClient.from_connection_string(os.environ["AzureWebJobsStorage"]).get_service_properties()
"""


def test_the_local_host_shows_the_sdk_requests_of_an_app_that_does_not_turn_them_down(
    e2e_azurite: Azurite, tmp_path: Path
) -> None:
    """The local host sets no SDK logger's level: an app that forgets to logs every request, as under the worker."""
    (tmp_path / "function_app.py").write_text(FORGETFUL_APP, encoding="utf-8")
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": {"AzureWebJobsStorage": e2e_azurite.connection_string}}))
    log_path = tmp_path / "devhost.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DEVHOST_", "PYTEST_", "AzureWebJobs"))}
    process = spawn_local_host(tmp_path, settings, log_path, env)
    try:
        wait_for(lambda: "one_request (timer " in log_path.read_text(errors="replace") or process.poll() is not None, timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
    written = records(log_path.read_text(errors="replace"))
    assert any(r.logger == "devhost.invocation" and r.message.startswith("one_request (timer ") for r in written), written
    http = [r for r in written if r.logger == "azure.core.pipeline.policies.http_logging_policy"]
    assert {r.level for r in http} == {"INFO"} and any(r.message.startswith("Request URL:") for r in http), written
