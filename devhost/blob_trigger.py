"""Blob trigger: scan the bound container, fire once per blob version, keep receipts like the host.

Azurite emits no Event Grid events, so every blob trigger is served by scanning the container, whatever its
`source` says. A blob version is identified by its ETag: a receipt blob
`blobreceipts/<hostId>/<functionId>/<etag>/<container>/<blob name>` in container `azure-webjobs-hosts` of
`AzureWebJobsStorage` records that the function succeeded for it, so a restart does not fire again and an
overwritten blob (new ETag) does. The receipt is written only after the function returned (at-least-once).
A failing blob is retried on the next scans; after `poisonBlobThreshold` failures a message goes to
`webjobs-blobtrigger-poison` and a receipt stops further attempts, as the host does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobProperties, ContainerClient
from azure.storage.queue import TextBase64EncodePolicy
from azurefunctions.extensions.base import Datum, get_binding_registry

from devhost import connections
from devhost.config import BlobOptions, ConfigError, resolve
from devhost.inflight import InFlight
from devhost.invocation import FunctionInvoker

logger = logging.getLogger(__name__)

RECEIPTS_CONTAINER = "azure-webjobs-hosts"
POISON_QUEUE = "webjobs-blobtrigger-poison"
_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class BlobPath:
    """A blob trigger path such as `staging/{name}` or `input/{folder}/{name}.csv`, split and compiled."""

    container: str
    prefix: str
    pattern: re.Pattern[str]

    @classmethod
    def parse(cls, path: str) -> BlobPath:
        container, separator, blob_part = path.partition("/")
        if not container or "{" in container:
            raise ConfigError(f"blob trigger path {path!r}: the container part must be a fixed name")
        if not separator or not blob_part:
            blob_part = "{name}"
        regex, position = [], 0
        for match in _PARAMETER.finditer(blob_part):
            regex.append(re.escape(blob_part[position : match.start()]))
            regex.append(f"(?P<{match.group(1)}>.+?)")
            position = match.end()
        regex.append(re.escape(blob_part[position:]))
        prefix = blob_part.split("{", 1)[0]
        return cls(container, prefix, re.compile("".join(regex), re.DOTALL))

    def matches(self, blob_name: str) -> bool:
        return self.pattern.fullmatch(blob_name) is not None


@dataclass(frozen=True)
class _ModelBindingData:
    """What the host hands an SDK-type converter: which connection, container and blob to build a client for."""

    content: str
    version: str = "1.0"
    source: str = "AzureStorageBlobs"
    content_type: str = "application/json"


def _etag(properties: BlobProperties) -> str:
    return properties.etag.strip('"')


def _blob_type(properties: BlobProperties) -> str:
    return str(getattr(properties.blob_type, "value", properties.blob_type))


class BlobTriggerListener:
    """Runs one blob-trigger function for every new or changed blob under its path."""

    kind = "blob"

    def __init__(
        self,
        invoker: FunctionInvoker,
        options: BlobOptions,
        host_id: str,
        scan_interval: float = 1.0,
        values: Mapping[str, str] | None = None,
    ) -> None:
        values = os.environ if values is None else values
        self.invoker = invoker
        trigger = invoker.trigger
        self.path = BlobPath.parse(resolve(trigger.path, values))
        self._connection = trigger.connection
        self._container: ContainerClient = connections.blob_service(trigger.connection, values).get_container_client(
            self.path.container
        )
        self._receipts: ContainerClient = connections.blob_service(connections.HOST_STORAGE, values).get_container_client(
            RECEIPTS_CONTAINER
        )
        self._poison = connections.queue_service(trigger.connection, values).get_queue_client(
            POISON_QUEUE, message_encode_policy=TextBase64EncodePolicy()
        )
        self.function_id = f"Host.Functions.{invoker.name}"
        self._receipt_prefix = f"blobreceipts/{host_id}/{self.function_id}/"
        self._options = options
        self._scan_interval = scan_interval
        self.limit = options.max_degree_of_parallelism
        self._handled: set[tuple[str, str]] = set()
        self._running: set[tuple[str, str]] = set()
        self._failures: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._unavailable = False
        if trigger.source == func.BlobSource.EVENT_GRID.value:
            logger.info(
                "%s: source is EventGrid, but Azurite emits no events, so the local host scans container %s instead",
                invoker.name,
                self.path.container,
            )

    def run(self, inflight: InFlight, stop: threading.Event) -> None:
        """Scan until the host stops; then let running invocations finish within the host's grace period."""
        self._load_receipts()
        while not stop.is_set():
            self._scan(inflight, stop)
            stop.wait(self._scan_interval)

    def abandon(self, tokens: list[Any]) -> None:
        """Blobs whose invocation never started: nothing to do, they have no receipt and fire on the next start."""
        with self._lock:
            self._running.difference_update(tokens)

    def _load_receipts(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._receipts.create_container()
        for receipt in self._receipts.list_blobs(name_starts_with=self._receipt_prefix):
            etag, _, blob_path = receipt.name[len(self._receipt_prefix) :].partition("/")
            container, _, name = blob_path.partition("/")
            if container == self.path.container:
                self._handled.add((name, etag))
        logger.debug("%s: %d blob receipts found", self.invoker.name, len(self._handled))

    def _scan(self, inflight: InFlight, stop: threading.Event) -> None:
        try:
            for properties in self._container.list_blobs(name_starts_with=self.path.prefix or None, include=["metadata"]):
                if stop.is_set():
                    return
                key = (properties.name, _etag(properties))
                with self._lock:
                    if key in self._handled or key in self._running or not self.path.matches(properties.name):
                        continue
                    self._running.add(key)
                if not inflight.wait_below(self.limit, stop):
                    self.abandon([key])
                    return
                inflight.submit(lambda properties=properties, key=key: self._fire(properties, key), key)
            self._unavailable = False
        except ResourceNotFoundError:
            self._report_unavailable("container %s does not exist yet; waiting for it", self.path.container)
        except AzureError as error:
            self._report_unavailable("cannot list container %s (%s); retrying", self.path.container, type(error).__name__)

    def _report_unavailable(self, message: str, *args: Any) -> None:
        if not self._unavailable:
            logger.warning("%s: " + message, self.invoker.name, *args)
        self._unavailable = True

    def _fire(self, properties: BlobProperties, key: tuple[str, str]) -> None:
        name, etag = key
        detail = f"blob {self.path.container}/{name}, etag {etag}"
        try:
            try:
                argument = self._argument(self._container.get_blob_client(name), properties)
            except Exception as error:  # a trigger value that cannot be built fails the attempt, as in the host
                logger.error(
                    "%s (%s) failed: cannot build the %s argument: %s: %s",
                    self.invoker.name,
                    detail,
                    self.invoker.trigger.name,
                    type(error).__name__,
                    error,
                )
                succeeded = False
            else:
                succeeded = self.invoker.invoke(argument, detail)
            if succeeded:
                self._write_receipt(name, etag)
                return
            with self._lock:
                failures = self._failures[key] = self._failures.get(key, 0) + 1
            if failures >= self._options.poison_blob_threshold:
                self._poison_blob(properties, etag, failures)
        except AzureError as error:
            logger.warning("%s: blob %s will be retried: storage error %s", self.invoker.name, name, type(error).__name__)
        finally:
            with self._lock:
                self._running.discard(key)

    def _argument(self, blob: BlobClient, properties: BlobProperties) -> Any:
        """The trigger value for the parameter's annotation: an SDK client, the content, or an InputStream."""
        annotation = self.invoker.trigger_annotation
        registry = get_binding_registry()
        if registry.check_supported_type(annotation):
            converter = registry.get("blobTrigger")
            if converter is None:
                raise ConfigError(f"{self.invoker.name}: annotation {annotation!r} needs the blob SDK-type extension")
            content = json.dumps(
                {"Connection": self._connection, "ContainerName": blob.container_name, "BlobName": blob.blob_name}
            )
            return converter.decode(
                Datum(_ModelBindingData(content), "model_binding_data"), trigger_metadata=None, pytype=annotation
            )
        data = blob.download_blob().readall()
        if annotation is bytes:
            return data
        if annotation is str:
            return data.decode("utf-8")
        return func.blob.InputStream(
            data=data,
            name=f"{blob.container_name}/{blob.blob_name}",
            uri=blob.url,
            length=properties.size,
            blob_properties={
                "ContentLength": properties.size,
                "ContentType": properties.content_settings.content_type,
                "ETag": properties.etag,
                "LastModified": properties.last_modified.isoformat() if properties.last_modified else None,
                "BlobType": _blob_type(properties),
            },
            metadata=dict(properties.metadata or {}),
        )

    def _write_receipt(self, name: str, etag: str) -> None:
        receipt = f"{self._receipt_prefix}{etag}/{self.path.container}/{name}"
        self._receipts.upload_blob(receipt, b"", overwrite=True)
        with self._lock:
            self._handled.add((name, etag))
            self._failures.pop((name, etag), None)

    def _poison_blob(self, properties: BlobProperties, etag: str, failures: int) -> None:
        message = {
            "Type": "BlobTrigger",
            "FunctionId": self.function_id,
            "BlobType": _blob_type(properties),
            "ContainerName": self.path.container,
            "BlobName": properties.name,
            "ETag": etag,
        }
        with contextlib.suppress(ResourceExistsError):
            self._poison.create_queue()
        self._poison.send_message(json.dumps(message))
        logger.error(
            "%s: blob %s/%s failed %d times: moved to queue %s",
            self.invoker.name,
            self.path.container,
            properties.name,
            failures,
            POISON_QUEUE,
        )
        self._write_receipt(properties.name, etag)
