"""Ingestion gives way to requests being answered, but never for longer than its limit."""

from __future__ import annotations

import threading
import time

from kusto_emulator.activity import RequestActivity


def test_with_no_request_being_answered_ingestion_goes_on_at_once() -> None:
    activity = RequestActivity()

    started = time.monotonic()
    quiet = activity.give_way(limit=5)

    assert quiet and time.monotonic() - started < 1


def test_ingestion_waits_for_the_last_request_being_answered_to_finish() -> None:
    activity = RequestActivity()
    finished_at: list[float] = []
    first, second = activity.answering(), activity.answering()
    first.__enter__()
    second.__enter__()

    def finish_both() -> None:
        time.sleep(0.1)
        first.__exit__(None, None, None)
        time.sleep(0.1)
        finished_at.append(time.monotonic())
        second.__exit__(None, None, None)

    threading.Thread(target=finish_both).start()
    quiet = activity.give_way(limit=5)

    assert quiet and finished_at  # not back before the second request was over


def test_under_endless_requests_ingestion_waits_no_longer_than_its_limit() -> None:
    activity = RequestActivity()

    with activity.answering():
        started = time.monotonic()
        quiet = activity.give_way(limit=0.05)
        waited = time.monotonic() - started

    assert not quiet and waited >= 0.05
    assert activity.give_way(limit=0)  # the request is over
