"""The storage resources the queue-based protocol hands out with `.get ingestion resources`.

A real Data Management service owns queues, temp containers and a status table in its own storage
accounts; the emulator creates them in the `--storage` account (Azurite) and signs SAS URLs for them with
that account's key. Every name carries a short namespace derived from the data directory, so two
emulators on one Azurite never read each other's queues, while a restarted emulator finds its own again.

Ingestion queues come in generations: `POST /admin/rotate-ingestion-queues` creates a new set and
advertises only that one, as a real service does when it rotates resources, while the consumer keeps
reading every generation so no message posted to an older queue is lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableSasPermissions, TableServiceClient, generate_table_sas
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas
from azure.storage.queue import QueueSasPermissions, QueueServiceClient, generate_queue_sas

logger = logging.getLogger(__name__)

INGESTION_QUEUE_BASE = "readyforaggregation-secured"
QUEUES_PER_GENERATION = 2
TEMP_CONTAINERS = 2
SAS_LIFETIME = timedelta(days=7)
POISON_SUFFIX = "-poison"


class StorageConfigurationError(RuntimeError):
    """The `--storage` connection string cannot be used to create and sign the ingestion resources."""


def namespace_for(data_dir: Path) -> str:
    """8 hex characters naming this emulator's resources, stable for one data directory."""
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class ResourceNames:
    """Storage names of one emulator's resources (queue and container names: lowercase, digits, '-')."""

    namespace: str

    @property
    def ingestion_prefix(self) -> str:
        return f"{INGESTION_QUEUE_BASE}-{self.namespace}-g"

    def ingestion_queues(self, generation: int) -> list[str]:
        return [f"{self.ingestion_prefix}{generation}-{index}" for index in range(QUEUES_PER_GENERATION)]

    @property
    def temp_containers(self) -> list[str]:
        return [f"tempstorage-{self.namespace}-{index}" for index in range(TEMP_CONTAINERS)]

    @property
    def failed_queue(self) -> str:
        return f"failedingestions-{self.namespace}"

    @property
    def succeeded_queue(self) -> str:
        return f"successfulingestions-{self.namespace}"

    @property
    def status_table(self) -> str:
        return f"ingestionsstatus{self.namespace}"

    def generation_of(self, queue_name: str) -> int | None:
        """The generation of one of our ingestion queues, None for any other queue (poison queues included)."""
        match = re.fullmatch(re.escape(self.ingestion_prefix) + r"(\d+)-\d+", queue_name)
        return int(match.group(1)) if match else None


class IngestionResources:
    """Creates the resources, signs their URLs and rotates the ingestion queues (thread-safe)."""

    def __init__(self, connection_string: str, names: ResourceNames) -> None:
        self.names = names
        self.queues = QueueServiceClient.from_connection_string(connection_string)
        self.blobs = BlobServiceClient.from_connection_string(connection_string)
        self.tables = TableServiceClient.from_connection_string(connection_string)
        credential = self.queues.credential
        account_key = getattr(credential, "account_key", None)
        if not account_key:
            raise StorageConfigurationError(
                "the --storage connection string has no AccountKey: the emulator needs one to sign the SAS URLs of its "
                "ingestion resources (Azurite's connection string has it)"
            )
        self._account_name: str = credential.account_name
        self._account_key: str = account_key
        self._lock = threading.Lock()
        self._generation = 0
        self._known_generations: set[int] = set()

    def provision(self) -> None:
        """Create every resource that does not exist yet and find the queue generations left by earlier runs."""
        found = {
            generation
            for queue in self.queues.list_queues(name_starts_with=self.names.ingestion_prefix)
            if (generation := self.names.generation_of(queue.name)) is not None
        }
        with self._lock:
            self._known_generations = found or {0}
            self._generation = max(self._known_generations)
        for name in [*self.names.ingestion_queues(self._generation), self.names.failed_queue, self.names.succeeded_queue]:
            self._create_queue(name)
        for name in self.names.temp_containers:
            with contextlib.suppress(ResourceExistsError):
                self.blobs.create_container(name)
        self.tables.create_table_if_not_exists(self.names.status_table)
        logger.info(
            "ingestion resources ready: namespace %s, ingestion queue generation %d", self.names.namespace, self._generation
        )

    def _create_queue(self, name: str) -> None:
        with contextlib.suppress(ResourceExistsError):
            self.queues.create_queue(name)

    @property
    def generation(self) -> int:
        with self._lock:
            return self._generation

    def queues_to_read(self) -> list[str]:
        """Every generation's ingestion queues: the advertised ones and those advertised before a rotation."""
        with self._lock:
            generations = sorted(self._known_generations)
        return [name for generation in generations for name in self.names.ingestion_queues(generation)]

    def rotate(self) -> list[str]:
        """Advertise a new set of ingestion queues; returns their names."""
        with self._lock:
            generation = self._generation + 1
        names = self.names.ingestion_queues(generation)
        for name in names:
            self._create_queue(name)
        with self._lock:
            self._known_generations.add(generation)
            self._generation = max(self._generation, generation)
        logger.info("ingestion queues rotated to generation %d", generation)
        return names

    def queue_url(self, name: str) -> str:
        """A queue URL without credentials (for logs and admin answers)."""
        return f"{self.queues.url.rstrip('/')}/{name}"

    def _expiry(self) -> datetime:
        return datetime.now(UTC) + SAS_LIFETIME

    def _signed_queue(self, name: str) -> str:
        sas = generate_queue_sas(
            self._account_name,
            name,
            self._account_key,
            permission=QueueSasPermissions(read=True, add=True, update=True, process=True),
            expiry=self._expiry(),
        )
        return f"{self.queue_url(name)}?{sas}"

    def _signed_container(self, name: str) -> str:
        sas = generate_container_sas(
            self._account_name,
            name,
            account_key=self._account_key,
            permission=ContainerSasPermissions(read=True, add=True, create=True, write=True, delete=True, list=True),
            expiry=self._expiry(),
        )
        return f"{self.blobs.url.rstrip('/')}/{name}?{sas}"

    def _signed_table(self, name: str) -> str:
        sas = generate_table_sas(
            AzureNamedKeyCredential(self._account_name, self._account_key),
            name,
            permission=TableSasPermissions(read=True, add=True, update=True, delete=True),
            expiry=self._expiry(),
        )
        return f"{self.tables.url.rstrip('/')}/{name}?{sas}"

    def rows(self) -> list[list[str]]:
        """(ResourceTypeName, StorageRoot) rows, each URL with a fresh SAS; the advertised queues only."""
        with self._lock:
            generation = self._generation
        rows = [["SecuredReadyForAggregationQueue", self._signed_queue(name)] for name in self.names.ingestion_queues(generation)]
        rows += [["TempStorage", self._signed_container(name)] for name in self.names.temp_containers]
        rows.append(["FailedIngestionsQueue", self._signed_queue(self.names.failed_queue)])
        rows.append(["SuccessfulIngestionsQueue", self._signed_queue(self.names.succeeded_queue)])
        rows.append(["IngestionsStatusTable", self._signed_table(self.names.status_table)])
        return rows
