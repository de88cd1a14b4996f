"""The emulator's configuration, as given on the command line (see `cli.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MAX_BLOBS_PER_BATCH = 20
DEFAULT_MAX_DATA_SIZE = 6 * 1024**3  # 6 GiB, the documented per-file limit
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class BlobFailureRule:
    """Blobs whose name matches `pattern` (a glob) fail ingestion with `error_code`."""

    pattern: str
    error_code: str


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything the emulator needs to start; built by `cli.parse_args` or directly by tests."""

    data_dir: Path
    storage_connection_string: str
    host: str = "127.0.0.1"
    port: int = 8080
    auto_create_databases: bool = False
    databases: tuple[str, ...] = ()
    max_blobs_per_batch: int = DEFAULT_MAX_BLOBS_PER_BATCH
    max_data_size: int = DEFAULT_MAX_DATA_SIZE
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    require_token: str | None = None
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    latency_ms: int = 0
    retry_after_seconds: int = 1
    fail_blobs: tuple[BlobFailureRule, ...] = field(default_factory=tuple)
    workers: int = 2
    log_level: str = "INFO"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "kusto.duckdb"
