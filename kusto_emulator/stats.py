"""Counters for `GET /admin/stats`: requests per route and status, blobs ingested, failed and skipped.

Benchmarks divide Kusto requests by blobs to measure the cost per blob, so every request is counted.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._statuses: Counter[str] = Counter()
        self._blobs: Counter[str] = Counter()
        self._mgmt_commands: Counter[str] = Counter()
        self._rows = 0

    def count_request(self, route: str, status: int) -> None:
        with self._lock:
            self._requests[route] += 1
            self._statuses[str(status)] += 1

    def count_mgmt_command(self, handler_name: str) -> None:
        """One management command, keyed by the handler that answered it (tests count SDK round trips)."""
        with self._lock:
            self._mgmt_commands[handler_name] += 1

    def count_blob(self, status: str, rows: int = 0) -> None:
        with self._lock:
            self._blobs[status] += 1
            self._rows += rows

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self._requests),
                "requestsTotal": sum(self._requests.values()),
                "responsesByStatus": dict(self._statuses),
                "blobs": {
                    "succeeded": self._blobs["Succeeded"],
                    "failed": self._blobs["Failed"],
                    "skipped": self._blobs["Skipped"],
                },
                "rowsIngested": self._rows,
                "mgmtCommands": dict(self._mgmt_commands),
            }
