"""Blob trigger: scan the bound container, fire once per blob version, keep receipts like the host.

Azurite emits no Event Grid events, so every blob trigger is served by scanning the container. A blob version
is identified by its ETag: a receipt blob `blobreceipts/<hostId>/<functionId>/<etag>/<container>/<blob name>`
in container `azure-webjobs-hosts` of `AzureWebJobsStorage` records that the function succeeded for it, so a
restart does not fire again and an overwritten blob (new ETag) does. The receipt is written only after the
function returned (at-least-once). A failing blob is retried on the next scans; after `poisonBlobThreshold`
failures a message goes to `webjobs-blobtrigger-poison` and a receipt stops further attempts, as the host does.

`source=LogsAndContainerScan` (or none) fires for every blob the scan finds. `source=EventGrid` behaves like the
Event Grid subscription that feeds the trigger in Azure (`LocalEventGrid`):

* the subscription is created when the host first starts (a record in `azure-webjobs-hosts`, so it outlives the
  host like the real one): only blobs created or overwritten after it fire; blobs that were already there never
  do (in Azure no event exists for them: backfill is their path). A blob written while the host was stopped
  fires when it starts again, as Event Grid's retries would deliver it;
* a delivery is the host accepting the event. In Azure the extension's webhook queues the event and answers
  202 before the function runs (`EventGridHttpRequestProcessor`), so a function that raises is retried and
  poisoned by the host as above, never dead-lettered. A delivery the endpoint refuses (`EventGridOptions.
  delivery_fault`, a test hook standing for a host that is down or answers 5xx) is retried on Event Grid's
  schedule and, after `max_delivery_attempts` or `event_time_to_live`, dead-lettered: a JSON array holding the
  event, in the Event Grid schema with `deadLetterReason`, `deliveryAttempts`, `lastDeliveryOutcome`,
  `publishTime` and `lastDeliveryAttemptTime`, written to `<SUBSCRIPTION NAME>/<y>/<m>/<d>/<h>/<uuid>.json` in
  container DEAD_LETTER_CONTAINER of the trigger's storage account, as Event Grid writes it. The hook can also
  drop an event (no dead-letter destination) or dead-letter it at once (a 400 answer). A dropped or
  dead-lettered blob version gets a receipt, so it never fires.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobProperties, ContainerClient, ContentSettings
from azure.storage.queue import TextBase64EncodePolicy
from azurefunctions.extensions.base import Datum, get_binding_registry

from devhost import connections
from devhost.config import (
    DELIVERY_DEAD_LETTERED,
    DELIVERY_DROPPED,
    DELIVERY_FAILS,
    BlobOptions,
    ConfigError,
    EventGridOptions,
    resolve,
)
from devhost.inflight import InFlight
from devhost.invocation import FunctionInvoker

logger = logging.getLogger(__name__)

RECEIPTS_CONTAINER = "azure-webjobs-hosts"
POISON_QUEUE = "webjobs-blobtrigger-poison"
SUBSCRIPTIONS_PREFIX = "eventgrid-subscriptions/"
"""Records of the local Event Grid subscriptions, in the receipts container: `<prefix><hostId>/<functionId>/<container>.json`."""
DEAD_LETTER_SETTING = "DEAD_LETTER_CONTAINER"
DEFAULT_DEAD_LETTER_CONTAINER = "ingest-deadletter"
BLOB_CREATED = "Microsoft.Storage.BlobCreated"
LOCAL_AZURE_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
"""The Azure subscription id in a local event's `topic` (Azurite has none)."""
CLOCK_MARGIN = timedelta(minutes=2)
"""Blobs modified this close before the subscription was created are named in its record, so a clock difference
between the host and the storage service (or a timestamp's whole seconds) cannot make them fire."""
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


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def subscription_name(container: str) -> str:
    """The name infra/eventgrid.bicep gives the subscription that feeds the blob trigger of `container`."""
    return f"blob-created-{container}"


def dead_letter_blob_name(subscription: str, when: datetime) -> str:
    """Where Event Grid writes a dead letter: the subscription's name in upper case, then the UTC date and hour
    without zero padding, then a GUID (manage-event-delivery docs: `MY-BLOB-SUBSCRIPTION/2019/8/8/5/<guid>.json`)."""
    when = when.astimezone(UTC)
    return f"{subscription.upper()}/{when.year}/{when.month}/{when.day}/{when.hour}/{uuid.uuid4()}.json"


@dataclass
class _Delivery:
    """Event Grid's side of one blob version's event: the event and how its delivery is going."""

    event: dict[str, Any]
    published: datetime
    attempts: int = 0
    due: float = 0.0
    """When the next attempt may be made (time.monotonic())."""
    last_attempt: datetime | None = None
    last_outcome: str = ""
    last_status: int | None = None
    dead_letter_reason: str | None = None
    """Set once Event Grid gave up on the event: it is written to the dead-letter container (retried until that works)."""


@dataclass
class LocalEventGrid:
    """The local stand-in for the Event Grid subscription that feeds one EventGrid-source blob trigger.

    Only the listener's thread calls it. `subscribe()` loads the subscription's record, or creates it: the time
    it was created and the blobs modified within CLOCK_MARGIN before it (they were there already). A blob version
    has an event when it is neither one of those nor older than that margin; its delivery is then decided by
    `deliver()`, with Event Grid's retry policy, and a dead letter written when Event Grid would give up.
    """

    watched: ContainerClient
    prefix: str
    receipts: ContainerClient
    record_name: str
    dead_letters: ContainerClient
    options: EventGridOptions
    name: str
    created_at: datetime | None = None
    _existing: set[tuple[str, str]] = field(default_factory=set)
    _deliveries: dict[tuple[str, str], _Delivery] = field(default_factory=dict)
    delivered: set[tuple[str, str]] = field(default_factory=set)
    """Versions the host accepted: their function runs (and is retried, then poisoned) as for any blob trigger."""
    _sequencer: itertools.count = field(default_factory=lambda: itertools.count(1))

    def subscribe(self) -> bool:
        """Load or create the subscription; False (logged) while storage cannot be reached."""
        record = self.receipts.get_blob_client(self.record_name)
        try:
            with contextlib.suppress(ResourceExistsError):
                self.receipts.create_container()
            for _ in range(2):
                with contextlib.suppress(ResourceNotFoundError):
                    document = json.loads(record.download_blob().readall())
                    self.created_at = datetime.fromisoformat(document["createdAt"])
                    self._existing = {(name, etag) for name, etag in document["existing"]}
                    return True
                created_at = datetime.now(UTC)
                existing = []
                with contextlib.suppress(ResourceNotFoundError):  # no container yet: nothing was there before
                    for blob in self.watched.list_blobs(name_starts_with=self.prefix or None):
                        if blob.last_modified >= created_at - CLOCK_MARGIN:
                            existing.append([blob.name, _etag(blob)])
                document = {"subscription": self.name, "createdAt": created_at.isoformat(), "existing": existing}
                with contextlib.suppress(ResourceExistsError):
                    record.upload_blob(json.dumps(document), overwrite=False)
                    self.created_at, self._existing = created_at, {(name, etag) for name, etag in existing}
                    logger.info("local Event Grid subscription %s created: blobs written from now on fire", self.name)
                    return True
                # Another host with the same id created it at the same moment: read theirs.
        except AzureError as error:
            logger.warning("local Event Grid subscription %s not ready (%s); retrying", self.name, type(error).__name__)
        except (KeyError, TypeError, ValueError) as error:
            logger.error(
                "local Event Grid subscription %s: its record %s/%s is unreadable (%s); delete it to subscribe anew",
                self.name,
                self.receipts.container_name,
                self.record_name,
                type(error).__name__,
            )
        return False

    def has_event(self, properties: BlobProperties) -> bool:
        """True when this blob version was written after the subscription existed (Event Grid has an event for it)."""
        if self.created_at is None or (properties.name, _etag(properties)) in self._existing:
            return False
        return properties.last_modified is not None and properties.last_modified >= self.created_at - CLOCK_MARGIN

    def forget(self, key: tuple[str, str]) -> None:
        """The version has a receipt: nothing more to remember about its event."""
        self.delivered.discard(key)
        self._deliveries.pop(key, None)

    def deliver(self, properties: BlobProperties, url: str) -> str | None:
        """One turn of Event Grid for a version with an event: None while nothing happens yet, else what happened
        (DELIVERED: the host accepted it; DELIVERY_DROPPED or DELIVERY_DEAD_LETTERED: Event Grid is done with it)."""
        key = (properties.name, _etag(properties))
        delivery = self._deliveries.get(key)
        if delivery is None:
            delivery = self._deliveries[key] = _Delivery(self._event(properties, url), properties.last_modified or _now())
        if delivery.dead_letter_reason is None:
            if time.monotonic() < delivery.due:
                return None
            if _now() - delivery.published >= timedelta(seconds=self.options.event_time_to_live):
                self._expire(delivery)
            else:
                outcome = self._attempt(key, delivery)
                if outcome is not None or delivery.dead_letter_reason is None:
                    return outcome
        return DELIVERY_DEAD_LETTERED if self._write_dead_letter(key, delivery) else None

    def _expire(self, delivery: _Delivery) -> None:
        """The event outlived its time to live. First seen now (the host was stopped all that time), it counts the
        attempts Event Grid's schedule would have made meanwhile, none of which the stopped host answered."""
        if delivery.attempts == 0:
            attempts = range(1, self.options.max_delivery_attempts)
            offsets = itertools.accumulate(self.options.retry_delay(attempt) for attempt in attempts)
            within = itertools.takewhile(lambda offset: offset < self.options.event_time_to_live, offsets)
            delivery.attempts = min(1 + sum(1 for _ in within), self.options.max_delivery_attempts)
            delivery.last_outcome = "TimedOut"
        if delivery.attempts >= self.options.max_delivery_attempts:
            delivery.dead_letter_reason = "MaxDeliveryAttemptsExceeded"
        else:
            delivery.dead_letter_reason = "TimeToLiveExceeded"

    def _attempt(self, key: tuple[str, str], delivery: _Delivery) -> str | None:
        name = key[0]
        fault = self.options.delivery_fault(name) if self.options.delivery_fault is not None else None
        delivery.attempts += 1
        delivery.last_attempt = _now()
        if fault is None:
            self._deliveries.pop(key, None)
            self.delivered.add(key)
            return DELIVERED
        if fault == DELIVERY_DROPPED:
            self._deliveries.pop(key, None)
            logger.warning(
                "local Event Grid dropped the event of blob %s/%s (told to): it never fires", self.watched.container_name, name
            )
            return DELIVERY_DROPPED
        if fault == DELIVERY_DEAD_LETTERED:
            delivery.last_outcome, delivery.last_status = "BadRequest", 400
            delivery.dead_letter_reason = "UndeliverableDueToHttpBadRequest"
            return None
        if fault != DELIVERY_FAILS:
            raise ConfigError(
                f"EventGridOptions.delivery_fault returned {fault!r}; expected None or one of {DELIVERY_FAILS!r}, "
                f"{DELIVERY_DROPPED!r}, {DELIVERY_DEAD_LETTERED!r}"
            )
        delivery.last_outcome, delivery.last_status = "GenericError", 500
        if delivery.attempts >= self.options.max_delivery_attempts:
            delivery.dead_letter_reason = "MaxDeliveryAttemptsExceeded"
            return None
        delivery.due = time.monotonic() + self.options.retry_delay(delivery.attempts)
        logger.info(
            "local Event Grid: delivery %d of blob %s/%s refused; next try in %.1f s",
            delivery.attempts,
            self.watched.container_name,
            name,
            self.options.retry_delay(delivery.attempts),
        )
        return None

    def _event(self, properties: BlobProperties, url: str) -> dict[str, Any]:
        """The BlobCreated event Azure Storage publishes for this version (Event Grid schema)."""
        account = self.watched.account_name
        return {
            "topic": f"/subscriptions/{LOCAL_AZURE_SUBSCRIPTION}/resourceGroups/local/providers/Microsoft.Storage/"
            f"storageAccounts/{account}",
            "subject": f"/blobServices/default/containers/{self.watched.container_name}/blobs/{properties.name}",
            "eventType": BLOB_CREATED,
            "id": str(uuid.uuid4()),
            "data": {
                "api": "PutBlob",
                "clientRequestId": str(uuid.uuid4()),
                "requestId": str(uuid.uuid4()),
                "eTag": _etag(properties),
                "contentType": properties.content_settings.content_type or "application/octet-stream",
                "contentLength": properties.size,
                "blobType": _blob_type(properties),
                "url": url,
                "sequencer": f"{next(self._sequencer):048x}",
                "storageDiagnostics": {"batchId": str(uuid.uuid4())},
            },
            "dataVersion": "",
            "metadataVersion": "1",
            "eventTime": _iso(properties.last_modified or _now()),
        }

    def _write_dead_letter(self, key: tuple[str, str], delivery: _Delivery) -> bool:
        """Write the dead letter (the event plus Event Grid's delivery fields); False to try again on the next scan."""
        now = _now()
        event = {
            **delivery.event,
            "deadLetterReason": delivery.dead_letter_reason,
            "deliveryAttempts": delivery.attempts,
            "lastDeliveryOutcome": delivery.last_outcome or "TimedOut",
            "publishTime": _iso(delivery.published),
            "lastDeliveryAttemptTime": _iso(delivery.last_attempt or now),
        }
        if delivery.last_status is not None:
            event["lastHttpStatusCode"] = delivery.last_status
        name = dead_letter_blob_name(self.name, now)
        try:
            with contextlib.suppress(ResourceExistsError):
                self.dead_letters.create_container()
            self.dead_letters.upload_blob(
                name, json.dumps([event], indent=2), content_settings=ContentSettings(content_type="application/json")
            )
        except AzureError as error:
            logger.warning("local Event Grid: dead letter of blob %s not written (%s); retrying", key[0], type(error).__name__)
            return False
        self._deliveries.pop(key, None)
        logger.error(
            "local Event Grid gave up on blob %s/%s after %d delivery attempt(s) (%s): dead-lettered to %s/%s",
            self.watched.container_name,
            key[0],
            delivery.attempts,
            delivery.dead_letter_reason,
            self.dead_letters.container_name,
            name,
        )
        return True


DELIVERED = "delivered"


def _now() -> datetime:
    return datetime.now(UTC)


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
        self.event_grid: LocalEventGrid | None = None
        if trigger.source == func.BlobSource.EVENT_GRID.value:
            self.event_grid = self._local_event_grid(host_id, values)
            # Subscribed now, before the host starts: a blob written once the host is up always has an event.
            subscribed = self.event_grid.subscribe()
            logger.info(
                "%s: source is EventGrid: the local Event Grid subscription %s%s delivers the blobs of container %s "
                "written after it (Azurite emits no events, so the host finds them by scanning)",
                invoker.name,
                self.event_grid.name,
                "" if subscribed else " (not created yet: storage unavailable)",
                self.path.container,
            )

    def _local_event_grid(self, host_id: str, values: Mapping[str, str]) -> LocalEventGrid:
        dead_letters = values.get(DEAD_LETTER_SETTING) or DEFAULT_DEAD_LETTER_CONTAINER
        return LocalEventGrid(
            watched=self._container,
            prefix=self.path.prefix,
            receipts=self._receipts,
            record_name=f"{SUBSCRIPTIONS_PREFIX}{host_id}/{self.function_id}/{self.path.container}.json",
            dead_letters=connections.blob_service(self._connection, values).get_container_client(dead_letters),
            options=self._options.event_grid,
            name=subscription_name(self.path.container),
        )

    def run(self, inflight: InFlight, stop: threading.Event) -> None:
        """Scan until the host stops; then let running invocations finish within the host's grace period."""
        self._load_receipts()
        while not stop.is_set():
            if self.event_grid is None or self.event_grid.created_at is not None or self.event_grid.subscribe():
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
                if self.event_grid is not None and not self._event_delivered(properties, key):
                    continue
                with self._lock:
                    self._running.add(key)
                if not inflight.wait_below(self.limit, stop):
                    self.abandon([key])
                    return
                inflight.submit(functools.partial(self._fire, properties, key), key)
            self._unavailable = False
        except ResourceNotFoundError:
            self._report_unavailable("container %s does not exist yet; waiting for it", self.path.container)
        except AzureError as error:
            self._report_unavailable("cannot list container %s (%s); retrying", self.path.container, type(error).__name__)

    def _event_delivered(self, properties: BlobProperties, key: tuple[str, str]) -> bool:
        """EventGrid source: True when the host has (or now accepts) this version's event, so the function runs."""
        grid = self.event_grid
        assert grid is not None
        if key in grid.delivered:
            return True  # accepted before: the function failed and is retried, as the host retries it
        if not grid.has_event(properties):
            return False
        outcome = grid.deliver(properties, self._container.get_blob_client(properties.name).url)
        if outcome in (DELIVERY_DROPPED, DELIVERY_DEAD_LETTERED):
            # Event Grid is done with it: the receipt keeps it from ever firing (as a poisoned blob's does).
            self._write_receipt(*key)
        return outcome == DELIVERED

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
            if self.event_grid is not None:
                self.event_grid.forget((name, etag))

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
