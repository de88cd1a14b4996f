"""Queue trigger: peek-lock like the host, with batches, retries, poison queue and polling back-off.

Messages are received in pages of `batchSize` under a short lease that is renewed while the function runs,
so a crashed local host gives its messages back within the lease (`LEASE_SECONDS`) instead of the 10-minute storage
default. Success deletes the message; failure makes it visible again after `visibilityTimeout`; after
`maxDequeueCount` reads it moves to `<queue>-poison` with its original text. With `messageEncoding` base64 (the
default) a message that is not valid base64 cannot be decoded, so it goes to the poison queue at once.

The function gets its `func.QueueMessage` the way the worker builds it: the host sends the message as a string
(bytes with `dataType: binary`) plus trigger metadata (`Id`, `DequeueCount`, `InsertionTime`, `ExpirationTime`,
`NextVisibleTime`, `PopReceipt`, `QueueTrigger`, typed as the host's RPC conversion types them: strings as
strings, the count and the times as JSON), and `azure.functions`' queue converter decodes them on the worker
thread (`devhost.invocation.TypedData`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import azure.functions as func
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.meta import Datum
from azure.storage.queue import QueueClient, QueueMessage

from devhost import connections
from devhost.config import QueueOptions, resolve
from devhost.inflight import InFlight
from devhost.invocation import FunctionInvoker, InvocationCancelled, TypedData

logger = logging.getLogger(__name__)

LEASE_SECONDS = 30
FIRST_POLLING_INTERVAL = 0.1


@dataclass
class _Lease:
    """A received message and its current pop receipt (renewing the lease changes it)."""

    message: QueueMessage
    pop_receipt: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    settled: bool = False


class QueueTriggerListener:
    """Runs one queue-trigger function for every message of its queue."""

    kind = "queue"

    def __init__(
        self,
        invoker: FunctionInvoker,
        options: QueueOptions,
        values: Mapping[str, str] | None = None,
        lease_seconds: int = LEASE_SECONDS,
    ) -> None:
        values = os.environ if values is None else values
        self._lease_seconds = lease_seconds
        self.invoker = invoker
        trigger = invoker.trigger
        self.queue_name = resolve(trigger.queue_name, values)
        service = connections.queue_service(trigger.connection, values)
        self._queue: QueueClient = service.get_queue_client(self.queue_name)
        self.poison_queue_name = f"{self.queue_name}-poison"
        self._poison: QueueClient = service.get_queue_client(self.poison_queue_name)
        self._options = options
        self.limit = options.batch_size + options.fetch_threshold
        self._leases: dict[str, _Lease] = {}
        self._leases_lock = threading.Lock()
        self._unavailable = False

    def run(self, inflight: InFlight, stop: threading.Event) -> None:
        renewer = threading.Thread(target=self._renew_leases, args=(stop,), name=f"lease-{self.invoker.name}", daemon=True)
        renewer.start()
        delay = FIRST_POLLING_INTERVAL
        while not stop.is_set():
            if not inflight.wait_below(self._options.fetch_threshold + 1, stop):
                return
            received = self._receive()
            for message in received:
                lease = _Lease(message, message.pop_receipt or "")
                with self._leases_lock:
                    self._leases[message.id] = lease
                inflight.submit(functools.partial(self._handle, lease), lease)
            delay = FIRST_POLLING_INTERVAL if received else min(delay * 2, self._options.max_polling_interval)
            if not received:
                stop.wait(delay)

    def abandon(self, tokens: list[Any]) -> None:
        """Messages received but never started: make them visible again at once."""
        for lease in tokens:
            try:
                self._settle(lease, visibility_timeout=0)
            except AzureError as error:
                logger.warning("message %s not handed back (%s); it reappears when its lease ends", lease.message.id, error)

    def _receive(self) -> list[QueueMessage]:
        try:
            pages = self._queue.receive_messages(
                messages_per_page=self._options.batch_size, visibility_timeout=self._lease_seconds
            ).by_page()
            received = list(next(pages, []))
        except ResourceNotFoundError:
            self._report_unavailable("queue %s does not exist yet; waiting for it", self.queue_name)
            return []
        except AzureError as error:
            self._report_unavailable("cannot read queue %s (%s); retrying", self.queue_name, type(error).__name__)
            return []
        self._unavailable = False
        return received

    def _report_unavailable(self, message: str, *args: Any) -> None:
        if not self._unavailable:
            logger.warning("%s: " + message, self.invoker.name, *args)
        self._unavailable = True

    def _handle(self, lease: _Lease) -> None:
        message = lease.message
        try:
            if (message.dequeue_count or 0) > self._options.max_dequeue_count:
                self._to_poison(lease, f"read {message.dequeue_count} times (a host stopped while running it)")
                return
            body = self._decode(message.content)
            if body is None:
                logger.error(
                    "%s: message %s on queue %s is not valid base64 (messageEncoding is base64): moved to %s",
                    self.invoker.name,
                    message.id,
                    self.queue_name,
                    self.poison_queue_name,
                )
                self._to_poison(lease, None)
                return
            detail = f"queue {self.queue_name}, message {message.id}, dequeue count {message.dequeue_count}"
            try:
                succeeded = self.invoker.invoke(self._typed_data(message, body, lease.pop_receipt), detail)
            except InvocationCancelled:
                self._settle(lease, visibility_timeout=0)  # never started: handed back at once, as on stop
                return
            if succeeded:
                self._settle(lease, delete=True)
            elif (message.dequeue_count or 0) >= self._options.max_dequeue_count:
                self._to_poison(lease, f"failed {message.dequeue_count} times")
            else:
                self._settle(lease, visibility_timeout=int(self._options.visibility_timeout))
        except AzureError as error:
            logger.warning(
                "%s: message %s could not be settled (%s); it reappears when its lease ends",
                self.invoker.name,
                message.id,
                type(error).__name__,
            )

    def _typed_data(self, message: QueueMessage, body: bytes, pop_receipt: str) -> TypedData:
        """The message as the host sends it to the worker: a string payload (bytes for `dataType: binary`)."""
        text = body.decode("utf-8", errors="replace")  # as .NET's UTF-8 decoding of the message body
        binary = self.invoker.trigger.data_type == func.DataType.BINARY
        metadata = {
            "QueueTrigger": Datum(text, "string"),
            "Id": Datum(message.id, "string"),
            "PopReceipt": Datum(pop_receipt, "string"),
            "DequeueCount": Datum(json.dumps(message.dequeue_count), "json"),
        }
        times = {
            "InsertionTime": message.inserted_on,
            "ExpirationTime": message.expires_on,
            "NextVisibleTime": message.next_visible_on,
        }
        metadata.update({name: _json_time(moment) for name, moment in times.items() if moment is not None})
        return TypedData(Datum(body, "bytes") if binary else Datum(text, "string"), metadata)

    def _decode(self, content: str | None) -> bytes | None:
        text = content or ""
        if self._options.message_encoding == "none":
            return text.encode("utf-8")
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None

    def _to_poison(self, lease: _Lease, reason: str | None) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._poison.create_queue()
        self._poison.send_message(lease.message.content or "")
        if reason:
            logger.error(
                "%s: message %s on queue %s %s: moved to %s",
                self.invoker.name,
                lease.message.id,
                self.queue_name,
                reason,
                self.poison_queue_name,
            )
        self._settle(lease, delete=True)

    def _settle(self, lease: _Lease, delete: bool = False, visibility_timeout: int = 0) -> None:
        """Delete the message or make it visible again; under the lease lock so renewal cannot race it."""
        with lease.lock:
            lease.settled = True
            with self._leases_lock:
                self._leases.pop(lease.message.id, None)
            if delete:
                self._queue.delete_message(lease.message.id, lease.pop_receipt)
            else:
                self._queue.update_message(lease.message.id, lease.pop_receipt, visibility_timeout=visibility_timeout)

    def _renew_leases(self, stop: threading.Event) -> None:
        """Keep running messages hidden; stops with the host, so an abandoned call's message comes back."""
        while not stop.wait(self._lease_seconds / 3):
            with self._leases_lock:
                leases = list(self._leases.values())
            for lease in leases:
                with lease.lock:
                    if lease.settled:
                        continue
                    try:
                        receipt = self._queue.update_message(
                            lease.message.id, lease.pop_receipt, visibility_timeout=self._lease_seconds
                        )
                        lease.pop_receipt = receipt.pop_receipt or lease.pop_receipt
                    except AzureError as error:
                        logger.warning("lease of message %s not renewed: %s", lease.message.id, type(error).__name__)


def _json_time(moment: datetime) -> Datum:
    """A DateTimeOffset as the host's RPC conversion sends it: a JSON string such as "2024-05-01T10:20:30+00:00"."""
    return Datum(json.dumps(moment.isoformat()), "json")
