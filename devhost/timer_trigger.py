"""Timer trigger: NCRONTAB schedule in UTC, one run at a time, `run_on_startup` honoured.

Like the host, a run that lasts past the next occurrence is not overlapped: the next occurrence is computed
after the run ends, so missed occurrences are skipped, not queued. `past_due` is true when a run starts
noticeably later than its scheduled time (the machine slept, or the pool was busy).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.functions.timer import TimerRequest

from devhost.config import resolve
from devhost.inflight import InFlight
from devhost.invocation import FunctionInvoker
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
        following = self.schedule.next_after(scheduled)
        request = TimerRequest(
            past_due=past_due,
            schedule_status={
                "Last": self._last.isoformat() if self._last else None,
                "Next": following.isoformat(),
                "LastUpdated": datetime.now(UTC).isoformat(),
            },
            schedule={"AdjustForDST": False},
        )
        detail = f"timer {self.schedule.expression!r}, due {scheduled:%H:%M:%S}{', past due' if past_due else ''}"
        future = inflight.submit(lambda: self.invoker.invoke(request, detail), scheduled)
        self._last = scheduled
        # Waiting here, not in the pool, is what keeps two runs of this timer from overlapping.
        while not future.done() and not stop.is_set():
            stop.wait(0.05)
