"""Everything the request handlers share, created once per emulator process."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .activity import RequestActivity
from .catalog import Catalog
from .config import EmulatorConfig
from .errors import DatabaseNotFound
from .faults import Faults
from .ingestion_job import IngestionJob
from .operations import OperationStore
from .policies import Policies
from .stats import Stats
from .worker import IngestionWorker

logger = logging.getLogger(__name__)


@dataclass
class EmulatorState:
    """Config, catalog, worker, faults, stats, operations, policies and request activity, handed to every `routes(state)`."""

    config: EmulatorConfig
    catalog: Catalog
    worker: IngestionWorker
    faults: Faults
    stats: Stats
    operations: OperationStore
    activity: RequestActivity
    policies: Policies

    @property
    def storage_connection_string(self) -> str:
        return self.config.storage_connection_string

    @classmethod
    def open(cls, config: EmulatorConfig) -> EmulatorState:
        catalog = Catalog(config.database_path)
        for database in config.databases:
            catalog.ensure_database(database)
        faults = Faults(config)
        stats = Stats()
        activity = RequestActivity()
        worker = IngestionWorker(
            catalog,
            config.storage_connection_string,
            faults,
            stats,
            config.workers,
            config.data_dir / "tmp",
            config.max_data_size,
            activity,
        )
        return cls(config, catalog, worker, faults, stats, OperationStore(catalog), activity, Policies(catalog))

    def use_database(self, database: str) -> None:
        """Make sure `database` exists: create it with `--auto-create-databases`, else DatabaseNotFound."""
        if self.catalog.database_exists(database):
            return
        if not self.config.auto_create_databases:
            raise DatabaseNotFound(f"database '{database}' does not exist (start the emulator with --auto-create-databases?)")
        if self.catalog.ensure_database(database):
            logger.info("created database %s on first use", database)

    def resume_unfinished(self) -> int:
        """Resubmit the blobs that were queued or in flight when the emulator last stopped."""
        pending = self.operations.unfinished()
        for operation, index in pending:
            blob = operation.blobs[index]
            self.worker.submit(
                IngestionJob(
                    operation.database,
                    operation.table,
                    blob.url + blob.credential,
                    blob.source_id,
                    blob.raw_size,
                    operation.properties,
                    operation.operation_id,
                    index,
                )
            )
        if pending:
            logger.info("resumed %d unfinished blobs from before the last stop", len(pending))
        return len(pending)

    def close(self) -> None:
        self.worker.shutdown()
        self.operations.close()
        self.catalog.close()
