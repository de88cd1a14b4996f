"""Settings and host.json, read the way the Functions host reads them.

`local.settings.json` `Values` become environment variables before `function_app.py` is imported, as Core
Tools does; a variable already set in the environment wins (so tests and `make run` can override one value
without editing the file). `%NAME%` binding expressions are resolved from the same values.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_SETTING_EXPRESSION = re.compile(r"%([^%]+)%")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")


class ConfigError(ValueError):
    """A settings file, host.json value or binding expression is wrong; the message says which and how to fix it."""


def load_local_settings(path: Path, environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Export the `Values` of a local.settings.json file to `environ` (existing variables win) and return them."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the settings file ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    values = document.get("Values") if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise ConfigError(f'{path}: expected an object with a "Values" object of app settings')
    exported: dict[str, str] = {}
    for name, value in values.items():
        if not isinstance(value, str | int | float | bool):
            raise ConfigError(f"{path}: Values.{name} must be a string, not {type(value).__name__}")
        text = str(value).lower() if isinstance(value, bool) else str(value)
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
            raise ConfigError(f"binding expression {expression!r}: app setting {name} is not set")
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


@dataclass(frozen=True)
class BlobOptions:
    """`extensions.blobs` of host.json."""

    max_degree_of_parallelism: int = 8 * (os.cpu_count() or 1)
    poison_blob_threshold: int = 5


@dataclass(frozen=True)
class HostOptions:
    queues: QueueOptions
    blobs: BlobOptions


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
    )
