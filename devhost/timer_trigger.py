"""Timer trigger: NCRONTAB schedule in UTC, one run at a time, `run_on_startup` honoured.

Like the host, a run that lasts past the next occurrence is not overlapped: the next occurrence is computed
after the run ends, so missed occurrences are skipped, not queued. `past_due` is true when a run starts
noticeably later than its scheduled time (the machine slept, or the pool was busy).

The function gets its `func.TimerRequest` the way the worker builds it: the host sends the TimerInfo as JSON
(`{"Schedule": {"AdjustForDST": true}, "ScheduleStatus": ..., "IsPastDue": ...}`) and `azure.functions`' timer
converter decodes it. `ScheduleStatus` is null when the schedule monitor is off: `use_monitor=False`, or a
six-field schedule firing more than once a minute (the host turns the monitor off for those). With the monitor
on, Last/Next/LastUpdated are kept in memory only, not in storage as the host keeps them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.functions.meta import Datum

from devhost.config import resolve
from devhost.inflight import InFlight
from devhost.invocation import FunctionInvoker, TypedData
from devhost.ncrontab import NcrontabSchedule

logger = logging.getLogger(__name__)

PAST_DUE_TOLERANCE = timedelta(seconds=1)


class TimerTriggerListener:
    """Runs one timer-trigger function on its schedule."""

    kind = "timer"
    limit = 1

    def __init__(self, invoker: FunctionInvoker, values: Mapping[str, str] | None = None) -> None:
        self.invoker = invoker
        trigger = invoker.trigger
        self.schedule = NcrontabSchedule(resolve(trigger.schedule, os.environ if values is None else values))
        self._run_on_startup = bool(trigger.run_on_startup)
        self.use_monitor = trigger.use_monitor is not False and not _too_frequent_for_monitor(self.schedule)
        self._last: datetime | None = None

    def run(self, inflight: InFlight, stop: threading.Event) -> None:
        now = datetime.now(UTC)
        if self._run_on_startup:
            self._fire(inflight, stop, scheduled=now, past_due=False)
        while not stop.is_set():
            due = self.schedule.next_after(datetime.now(UTC))
            if stop.wait(max(0.0, (due - datetime.now(UTC)).total_seconds())):
                return
            self._fire(inflight, stop, scheduled=due, past_due=datetime.now(UTC) - due > PAST_DUE_TOLERANCE)

    def abandon(self, tokens: list[Any]) -> None:
        """A timer run that never started is simply skipped, as when the host is down at an occurrence."""

    def _fire(self, inflight: InFlight, stop: threading.Event, scheduled: datetime, past_due: bool) -> None:
        status = None
        if self.use_monitor:
            status = {
                "Last": self._last.isoformat() if self._last else None,
                "Next": self.schedule.next_after(scheduled).isoformat(),
                "LastUpdated": datetime.now(UTC).isoformat(),
            }
        # The cron schedule's AdjustForDST is always true in the timer extension.
        info = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": status, "IsPastDue": past_due}
        request = TypedData(Datum(json.dumps(info), "json"))
        detail = f"timer {self.schedule.expression!r}, due {scheduled:%H:%M:%S}{', past due' if past_due else ''}"
        future = inflight.submit(lambda: self.invoker.invoke(request, detail), scheduled)
        self._last = scheduled
        # Waiting here, not in the pool, is what keeps two runs of this timer from overlapping.
        while not future.done() and not stop.is_set():
            stop.wait(0.05)


def _too_frequent_for_monitor(schedule: NcrontabSchedule) -> bool:
    """The host's rule: a six-field schedule with only the seconds restricted that fires twice within a minute."""
    fields = schedule.expression.split()
    if len(fields) != 6 or any(part != "*" for part in fields[1:]):
        return False
    now = datetime.now(UTC)
    return schedule.next_after(schedule.next_after(now)) < now + timedelta(minutes=1)
