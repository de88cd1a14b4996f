"""Bounded hand-off of invocations to the shared thread pool, and a clean way to stop them.

Each trigger listener owns one `InFlight`: it limits how many of its invocations run at once (batchSize,
maxDegreeOfParallelism, one for a timer) and, when the host stops, lets running calls finish within a grace
period and reports the ones that never started, so the listener can hand their work back (a queue message is
made visible again; a blob without a receipt simply fires again on the next start).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Executor, Future
from typing import Any


class InFlight:
    """Futures of one listener's running invocations, at most `limit` at a time."""

    def __init__(self, executor: Executor, limit: int) -> None:
        self._executor = executor
        self.limit = limit
        self._futures: dict[Future[Any], Any] = {}
        self._changed = threading.Condition()

    def __len__(self) -> int:
        with self._changed:
            return len(self._futures)

    def wait_below(self, count: int, stop: threading.Event, poll: float = 0.1) -> bool:
        """Block until fewer than `count` are in flight; False if the host is stopping."""
        with self._changed:
            while len(self._futures) >= count:
                if stop.is_set():
                    return False
                self._changed.wait(poll)
        return not stop.is_set()

    def submit(self, work: Callable[[], Any], token: Any = None) -> Future[Any]:
        """Run `work` in the pool; `token` identifies it if it has to be handed back unstarted."""
        future = self._executor.submit(work)
        with self._changed:
            self._futures[future] = token
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[Any]) -> None:
        with self._changed:
            self._futures.pop(future, None)
            self._changed.notify_all()

    def drain(self, grace: float) -> tuple[list[Any], int]:
        """Cancel what has not started and wait up to `grace` s for the rest: (unstarted tokens, still running)."""
        with self._changed:
            pending = list(self._futures.items())
        unstarted = [token for future, token in pending if future.cancel()]
        running = [future for future, _ in pending if not future.cancelled()]
        deadline = time.monotonic() + grace
        for future in running:
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except CancelledError:
                continue
            except TimeoutError:
                break
            except Exception:  # noqa: S112 - the invocation logged its own failure
                continue
        return unstarted, sum(1 for future in running if not future.done())
