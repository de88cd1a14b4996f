"""Command line of the emulator: `python -m kusto_emulator --help` documents every flag."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import uvicorn

from shared.redaction import install_redaction

from .app import create_app
from .config import DEFAULT_MAX_BLOBS_PER_BATCH, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DATA_SIZE, BlobFailureRule, EmulatorConfig


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability between 0 and 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must not be negative")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _failure_rule(text: str) -> BlobFailureRule:
    pattern, separator, code = text.rpartition("=")
    if not separator or not pattern or not code:
        raise argparse.ArgumentTypeError(f"{text!r} is not GLOB=ERRORCODE, e.g. '*bad*.csv=BadRequest_InvalidBlob'")
    return BlobFailureRule(pattern, code)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kusto_emulator",
        description="Local Kusto ingestion (DM) service backed by DuckDB, for development and tests only. "
        "Serves REST queued ingestion, the queue-based protocol, management commands and KQL queries.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="folder for kusto.duckdb and scratch files (kept across restarts)"
    )
    parser.add_argument(
        "--storage",
        required=True,
        help="storage connection string (Azurite): used for ';managed_identity=' blob URLs, the temp container and queues",
    )
    parser.add_argument("--auto-create-databases", action="store_true", help="create a database named in a request on first use")
    parser.add_argument(
        "--database", action="append", default=[], metavar="NAME", help="create this database at start (repeatable)"
    )
    parser.add_argument(
        "--max-blobs-per-batch",
        type=_positive,
        default=DEFAULT_MAX_BLOBS_PER_BATCH,
        metavar="N",
        help=f"maxBlobsPerBatch in the ingestion configuration; larger requests get 400 (default {DEFAULT_MAX_BLOBS_PER_BATCH})",
    )
    parser.add_argument(
        "--max-data-size",
        type=_positive,
        default=DEFAULT_MAX_DATA_SIZE,
        metavar="BYTES",
        help="maxDataSize in the configuration; larger blobs (uncompressed) fail with BadRequest_FileTooLarge (default 6 GiB)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=_positive,
        default=DEFAULT_MAX_BODY_BYTES,
        metavar="BYTES",
        help=f"larger request bodies get 413 (default {DEFAULT_MAX_BODY_BYTES})",
    )
    parser.add_argument("--require-token", metavar="TOKEN", help="answer requests without 'Authorization: Bearer TOKEN' with 401")
    parser.add_argument(
        "--throttle-rate", type=_probability, default=0.0, metavar="P", help="probability of answering 429 with Retry-After"
    )
    parser.add_argument("--error-rate", type=_probability, default=0.0, metavar="P", help="probability of answering 500")
    parser.add_argument("--latency-ms", type=_non_negative, default=0, metavar="N", help="latency added to every Kusto request")
    parser.add_argument(
        "--retry-after-seconds", type=_non_negative, default=1, metavar="N", help="Retry-After value on injected 429s (default 1)"
    )
    parser.add_argument(
        "--fail-blobs",
        type=_failure_rule,
        action="append",
        default=[],
        metavar="GLOB=ERRORCODE",
        help="blobs whose name (or path) matches GLOB fail ingestion with ERRORCODE (repeatable)",
    )
    parser.add_argument("--workers", type=_positive, default=2, metavar="N", help="ingestion worker threads (default 2)")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level (default INFO)"
    )
    return parser


def parse_args(argv: list[str] | None = None) -> EmulatorConfig:
    args = build_parser().parse_args(argv)
    return EmulatorConfig(
        data_dir=args.data_dir,
        storage_connection_string=args.storage,
        host=args.host,
        port=args.port,
        auto_create_databases=args.auto_create_databases,
        databases=tuple(args.database),
        max_blobs_per_batch=args.max_blobs_per_batch,
        max_data_size=args.max_data_size,
        max_body_bytes=args.max_body_bytes,
        require_token=args.require_token,
        throttle_rate=args.throttle_rate,
        error_rate=args.error_rate,
        latency_ms=args.latency_ms,
        retry_after_seconds=args.retry_after_seconds,
        fail_blobs=tuple(args.fail_blobs),
        workers=args.workers,
        log_level=args.log_level,
    )


def configure_logging(level: str) -> None:
    """One line per record on stderr, every record redacted (no SAS, key or token reaches the log)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    install_redaction()
    root.setLevel(level)
    logging.getLogger("azure").setLevel(logging.WARNING)


KEEP_ALIVE_SECONDS = 240
"""How long an idle client connection stays open: as behind Azure's load balancers (4 minutes by default), not
uvicorn's 5 s. With 5 s a client whose pooled connection was closed just as it sent a POST saw a reset, which a
client of Kusto must take for "the request may have arrived" (the app then holds the chunk for its sending lease
and announces it in doubt): a local artefact that a real cluster, keeping connections for minutes, makes rare."""


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    configure_logging(config.log_level)
    app = create_app(config)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
