"""Settings and host.json, read the way the Functions host reads them.

`local.settings.json` `Values` become environment variables before `function_app.py` is imported, as Core
Tools does; a variable already set in the environment wins (so tests and `make run` can override one value
without editing the file). `%NAME%` binding expressions are resolved from the same values.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.ops.settings_file import settings_file_values
from shared.settings import SettingsError

logger = logging.getLogger(__name__)

_SETTING_EXPRESSION = re.compile(r"%([^%]+)%")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")


class ConfigError(ValueError):
    """A settings file, host.json value or binding expression is wrong; the message says which and how to fix it."""


def load_local_settings(path: Path, environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Export the `Values` of a local.settings.json file to `environ` (existing variables win) and return them.

    The file is read by the operator command's reader (`shared.ops.settings_file`), the one reader of its format."""
    try:
        values = settings_file_values(path)
    except SettingsError as error:
        raise ConfigError(str(error)) from None
    exported: dict[str, str] = {}
    for name, text in values.items():
        if name in environ:
            logger.info("setting %s comes from the environment, not from %s", name, path.name)
            continue
        environ[name] = text
        exported[name] = text
    return exported


def resolve(expression: str, values: Mapping[str, str] = os.environ) -> str:
    """Replace every `%NAME%` in a binding expression with the app setting NAME."""

    def setting(match: re.Match[str]) -> str:
        name = match.group(1)
        value = values.get(name)
        if value is None or value == "":
            raise ConfigError(
                f"binding expression {expression!r}: '%{name}%' does not resolve to a value (app setting {name} is not set)"
            )
        return value

    return _SETTING_EXPRESSION.sub(setting, expression)


def parse_timespan(value: str, name: str) -> float:
    """Seconds in a host.json TimeSpan such as "00:00:30" or "1.00:00:00" (days.hours:minutes:seconds)."""
    match = _TIMESPAN.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(f"host.json {name}: {value!r} is not a TimeSpan like 00:00:30")
    days, hours, minutes, seconds, fraction = match.groups()
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return total + (float(f"0.{fraction}") if fraction else 0.0)


@dataclass(frozen=True)
class QueueOptions:
    """`extensions.queues` of host.json, with the host's defaults (maxPollingInterval: the local default)."""

    batch_size: int = 16
    new_batch_threshold: int | None = None
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = 2.0
    message_encoding: str = "base64"

    @property
    def fetch_threshold(self) -> int:
        """Fetch the next batch when fewer than this many messages are in flight (the host's default: batchSize/2)."""
        return self.new_batch_threshold if self.new_batch_threshold is not None else self.batch_size // 2


DELIVERY_FAILS = "fail"
"""`EventGridOptions.delivery_fault`: the endpoint refuses this delivery attempt (as a 5xx would); retried, then dead-lettered."""
DELIVERY_DROPPED = "drop"
"""`EventGridOptions.delivery_fault`: Event Grid drops the event silently (a subscription without a dead-letter destination)."""
DELIVERY_DEAD_LETTERED = "dead-letter"
"""`EventGridOptions.delivery_fault`: Event Grid dead-letters the event at once (as after a 400 answer)."""
DELIVERY_FAULTS = (DELIVERY_FAILS, DELIVERY_DROPPED, DELIVERY_DEAD_LETTERED)

EVENT_GRID_RETRY_DELAYS = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0)
"""Event Grid's retry schedule (delivery-and-retry docs): 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then
every 12 h (the last delay repeats)."""


@dataclass(frozen=True)
class EventGridOptions:
    """The local Event Grid subscription of an EventGrid-source blob trigger: its retry policy, and a test hook.

    Not host.json's: these are the Event Grid subscription's settings (`retryPolicy`), with its defaults (30
    attempts, 24 h time to live, whichever ends first). A delivery the endpoint does not accept is retried after
    `retry_delays` (the last one repeats), then dead-lettered. `delivery_fault` (tests) decides per blob name how
    the endpoint answers: None delivers, or one of DELIVERY_FAULTS.
    """

    max_delivery_attempts: int = 30
    event_time_to_live: float = 24 * 3600.0
    retry_delays: tuple[float, ...] = EVENT_GRID_RETRY_DELAYS
    delivery_fault: Callable[[str], str | None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.max_delivery_attempts <= 30:
            raise ConfigError(f"Event Grid max delivery attempts: {self.max_delivery_attempts} is not from 1 to 30")
        if not 0 < self.event_time_to_live <= 24 * 3600:
            raise ConfigError(f"Event Grid event time to live: {self.event_time_to_live} s is not above 0 and at most 24 h")
        if not self.retry_delays or min(self.retry_delays) < 0:
            raise ConfigError("Event Grid retry delays: give at least one delay, none negative")

    def retry_delay(self, failed_attempts: int) -> float:
        """Seconds before the next attempt after `failed_attempts` failed ones (1 or more)."""
        return self.retry_delays[min(failed_attempts, len(self.retry_delays)) - 1]


LOSE_EVENTS_SETTING = "DEVHOST_LOSE_EVENTS"
"""A test hook of the local host alone (an environment variable or a local.settings.json value): Event Grid drops
the BlobCreated event of every blob whose name matches this glob, as a subscription without a dead-letter
destination does after its retries, so the reconciler and the soak can show a lost event is recovered."""


def lose_events(event_grid: EventGridOptions, pattern: str) -> EventGridOptions:
    """`event_grid` with its deliveries dropped for blob names matching `pattern` (LOSE_EVENTS_SETTING)."""
    if not pattern:
        return event_grid
    return dataclasses.replace(
        event_grid, delivery_fault=lambda name: DELIVERY_DROPPED if fnmatch.fnmatchcase(name, pattern) else None
    )


@dataclass(frozen=True)
class BlobOptions:
    """`extensions.blobs` of host.json, and the local Event Grid subscription of EventGrid-source blob triggers."""

    max_degree_of_parallelism: int = 8 * (os.cpu_count() or 1)
    poison_blob_threshold: int = 5
    event_grid: EventGridOptions = EventGridOptions()


DEFAULT_FUNCTION_TIMEOUT = 1800.0
"""The host's functionTimeout when host.json sets none, on every plan but Consumption (which gets 5 minutes)."""
MIN_FUNCTION_TIMEOUT = 1.0


@dataclass(frozen=True)
class HostOptions:
    queues: QueueOptions
    blobs: BlobOptions
    function_timeout: float | None = DEFAULT_FUNCTION_TIMEOUT
    """host.json `functionTimeout` in seconds; None for "-1" (no limit)."""


def parse_function_timeout(value: Any) -> float | None:
    """host.json `functionTimeout` as the host reads it off Consumption: "-1" means no limit, at least 1 s otherwise."""
    if value is None:
        return DEFAULT_FUNCTION_TIMEOUT
    if isinstance(value, str) and value.strip() in ("-1", "-1.00:00:00"):
        return None
    seconds = parse_timespan(value, "functionTimeout")
    if seconds < MIN_FUNCTION_TIMEOUT:
        raise ConfigError(f"host.json functionTimeout: {value!r} must be at least 00:00:01, or -1 for no limit")
    return seconds


def _integer(section: Mapping[str, Any], key: str, default: int, low: int, high: int, prefix: str) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"host.json {prefix}.{key}: {value!r} is not a whole number from {low} to {high}")
    return value


def _section(document: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    node: Any = document
    for key in keys:
        node = node.get(key, {}) if isinstance(node, Mapping) else {}
    if not isinstance(node, Mapping):
        raise ConfigError(f"host.json {'.'.join(keys)} must be an object")
    return node


def load_host_options(path: Path) -> HostOptions:
    """Read the trigger options of host.json; a missing file means the host's defaults."""
    document: Mapping[str, Any] = {}
    if path.exists():
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    queues = _section(document, "extensions", "queues")
    blobs = _section(document, "extensions", "blobs")
    prefix = "extensions.queues"
    encoding = str(queues.get("messageEncoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise ConfigError(f"host.json {prefix}.messageEncoding: {encoding!r} is neither base64 nor none")
    threshold = queues.get("newBatchThreshold")
    return HostOptions(
        queues=QueueOptions(
            batch_size=_integer(queues, "batchSize", 16, 1, 32, prefix),
            new_batch_threshold=None if threshold is None else _integer(queues, "newBatchThreshold", 0, 0, 1000, prefix),
            max_dequeue_count=_integer(queues, "maxDequeueCount", 5, 1, 1000, prefix),
            visibility_timeout=parse_timespan(queues.get("visibilityTimeout", "00:00:00"), f"{prefix}.visibilityTimeout"),
            max_polling_interval=max(
                0.1, parse_timespan(queues.get("maxPollingInterval", "00:00:02"), f"{prefix}.maxPollingInterval")
            ),
            message_encoding=encoding,
        ),
        blobs=BlobOptions(
            max_degree_of_parallelism=_integer(
                blobs, "maxDegreeOfParallelism", BlobOptions.max_degree_of_parallelism, 1, 1000, "extensions.blobs"
            ),
            poison_blob_threshold=_integer(blobs, "poisonBlobThreshold", 5, 1, 1000, "extensions.blobs"),
        ),
        function_timeout=parse_function_timeout(document.get("functionTimeout")),
    )
