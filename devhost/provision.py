"""Creates what the app expects to exist locally: the staging container, its queues, the Kusto tables.

In Azure these come from `infra/`; locally `make run` and the end-to-end tests call this once before the
local host starts, so both start from the same state.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

from azure.core.exceptions import ResourceExistsError

from devhost import connections
from devhost.emulator_client import EmulatorClient
from shared.settings import STAGING_CONNECTION, Settings

logger = logging.getLogger(__name__)


def create_staging_storage(settings: Settings, values: Mapping[str, str]) -> None:
    """The staging container and every app queue with its poison queue (existing ones are kept)."""
    blobs = connections.blob_service(STAGING_CONNECTION, values)
    with contextlib.suppress(ResourceExistsError):
        blobs.create_container(settings.staging_container)
    queues = connections.queue_service(STAGING_CONNECTION, values)
    for name in (settings.pending_queue, settings.failures_queue, settings.tracking_queue):
        for queue in (name, f"{name}-poison"):
            with contextlib.suppress(ResourceExistsError):
                queues.create_queue(queue)


def create_tables(emulator: EmulatorClient, tables: Mapping[str, str]) -> None:
    """Create `{"Database.Table": "(col:type, ...)"}` in the emulator; `.create-merge` keeps existing tables."""
    for target, columns in tables.items():
        database, _, table = target.partition(".")
        emulator.mgmt(None, f".create database ['{database}'] ifnotexists")
        emulator.mgmt(database, f".create-merge table ['{table}'] {columns}")
        logger.info("table %s ready", target)
