"""Fault injection: throttling, server errors, latency and forced blob failures, changeable at run time.

Tests and benchmarks use this to see how a client copes with an unreliable ingestion service. The
settings start from the command-line flags and are replaced through `PUT /admin/faults`. One setting is
not a fault but a stand-in for distance: `holdIngestion` keeps accepted blobs queued, unworked, until it is
turned off, as if ingestion ran on another machine (a real cluster's ingestion never takes its clients'
CPU); the benchmarks use it so the emulator's work is not charged to the client being measured.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from .config import BlobFailureRule, EmulatorConfig
from .errors import BadRequest

_FAULT_KEYS = ("throttleRate", "errorRate", "latencyMs", "retryAfterSeconds", "failBlobs", "errorBlobs", "holdIngestion")
_HOLD_CHECK_SECONDS = 0.5
"""How often a held worker thread looks at its stop signal, so a shutdown is never held up for long."""


@dataclass(frozen=True)
class FaultSettings:
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    latency_ms: int = 0
    retry_after_seconds: int = 1
    fail_blobs: tuple[BlobFailureRule, ...] = field(default_factory=tuple)
    error_blobs: tuple[str, ...] = ()
    """Globs: a queued-ingestion request naming a matching blob answers 500, as for a blob the service cannot take."""
    hold_ingestion: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "throttleRate": self.throttle_rate,
            "errorRate": self.error_rate,
            "latencyMs": self.latency_ms,
            "retryAfterSeconds": self.retry_after_seconds,
            "failBlobs": [{"pattern": rule.pattern, "errorCode": rule.error_code} for rule in self.fail_blobs],
            "errorBlobs": list(self.error_blobs),
            "holdIngestion": self.hold_ingestion,
        }


def _probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise BadRequest(f"{name} must be a number between 0 and 1, got {value!r}")
    return float(value)


def _non_negative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(f"{name} must be a non-negative integer, got {value!r}")
    return value


def parse_fail_blob_rules(value: Any) -> tuple[BlobFailureRule, ...]:
    if not isinstance(value, list):
        raise BadRequest("failBlobs must be a list of {pattern, errorCode} objects")
    rules = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("pattern"), str) or not isinstance(item.get("errorCode"), str):
            raise BadRequest(f"failBlobs[{index}] must be an object with string 'pattern' and 'errorCode'")
        if not item["pattern"] or not item["errorCode"]:
            raise BadRequest(f"failBlobs[{index}]: pattern and errorCode must not be empty")
        rules.append(BlobFailureRule(item["pattern"], item["errorCode"]))
    return tuple(rules)


def _parse_error_blobs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise BadRequest("errorBlobs must be a list of non-empty glob patterns")
    return tuple(value)


def _blob_matches(plain_url: str, pattern: str) -> bool:
    """A glob matched against the blob name, `container/name` and the whole URL path (`*bad*.csv`, `staging/2024/*`)."""
    path = unquote(urlsplit(plain_url).path).lstrip("/")
    segments = path.split("/")
    return any(fnmatch.fnmatchcase(candidate, pattern) for candidate in {segments[-1], path, "/".join(segments[1:])})


class Faults:
    """The current fault settings (thread-safe) and the decisions drawn from them."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._lock = threading.Lock()
        self._settings = FaultSettings(
            config.throttle_rate, config.error_rate, config.latency_ms, config.retry_after_seconds, config.fail_blobs
        )
        self._released = threading.Event()
        self._released.set()

    @property
    def settings(self) -> FaultSettings:
        with self._lock:
            return self._settings

    def update(self, changes: Any) -> FaultSettings:
        """Apply a `PUT /admin/faults` body: any subset of the keys; unknown keys are an error."""
        if not isinstance(changes, dict):
            raise BadRequest("the faults body must be a JSON object")
        unknown = sorted(set(changes) - set(_FAULT_KEYS))
        if unknown:
            raise BadRequest(f"unknown fault settings {unknown}: use {list(_FAULT_KEYS)}")
        values: dict[str, Any] = {}
        if "throttleRate" in changes:
            values["throttle_rate"] = _probability("throttleRate", changes["throttleRate"])
        if "errorRate" in changes:
            values["error_rate"] = _probability("errorRate", changes["errorRate"])
        if "latencyMs" in changes:
            values["latency_ms"] = _non_negative_int("latencyMs", changes["latencyMs"])
        if "retryAfterSeconds" in changes:
            values["retry_after_seconds"] = _non_negative_int("retryAfterSeconds", changes["retryAfterSeconds"])
        if "failBlobs" in changes:
            values["fail_blobs"] = parse_fail_blob_rules(changes["failBlobs"])
        if "errorBlobs" in changes:
            values["error_blobs"] = _parse_error_blobs(changes["errorBlobs"])
        if "holdIngestion" in changes:
            if not isinstance(changes["holdIngestion"], bool):
                raise BadRequest(f"holdIngestion must be true or false, got {changes['holdIngestion']!r}")
            values["hold_ingestion"] = changes["holdIngestion"]
        with self._lock:
            self._settings = replace(self._settings, **values)
            if self._settings.hold_ingestion:
                self._released.clear()
            else:
                self._released.set()
            return self._settings

    def wait_while_held(self, stopping: threading.Event) -> None:
        """Block while `holdIngestion` is on; returns at once when it is off, and soon after `stopping` is set."""
        while not stopping.is_set() and not self._released.wait(_HOLD_CHECK_SECONDS):
            pass

    def should_throttle(self) -> bool:
        rate = self.settings.throttle_rate
        return rate > 0 and random.random() < rate

    def should_fail(self) -> bool:
        rate = self.settings.error_rate
        return rate > 0 and random.random() < rate

    def forced_blob_error(self, plain_url: str) -> str | None:
        """The error code a `failBlobs` rule forces on this blob (see `_blob_matches` for what a glob is tried on)."""
        for rule in self.settings.fail_blobs:
            if _blob_matches(plain_url, rule.pattern):
                return rule.error_code
        return None

    def request_error_blob(self, plain_urls: list[str]) -> str | None:
        """The first blob of a request that an `errorBlobs` glob matches: that request answers 500."""
        patterns = self.settings.error_blobs
        return next((url for url in plain_urls if any(_blob_matches(url, pattern) for pattern in patterns)), None)
