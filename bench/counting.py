"""The bench's instrumented clients: storage requests counted by kind, or every request delayed as Azure would.

`counted_services()` builds a `Services` with `shared.services.build_services` itself, handing it a
`CountingTransport` as the storage transport, which every storage client of the app sends through.
The transport sits below the SDK's retry policy, so a retried request counts each time it goes out.

`delayed_services()` builds the same `Services` with every storage request and every Kusto request held
for a fixed time before it goes out (`DelayedTransport`, also below the retry policies, so each try waits):
Azure's round trips, on a local Azurite and emulator that answer in a millisecond (`bench.latency_model`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.core.pipeline.transport import HttpTransport

from shared.services import Services, build_services
from shared.settings import Settings
from shared.transport import (
    STORAGE_CONNECTION_TIMEOUT,
    STORAGE_DATA_BLOCK_SIZE,
    STORAGE_READ_TIMEOUT,
    EnvironmentOnceTransport,
    storage_transport,
)


class RequestCounter:
    """Thread-safe tally of storage requests, keyed like `queue:ingest-pending receive` or `blob properties`,
    and beside it by REST operation (`rest_operation`: `Put Message`, `Get Blob Properties`), the unit Azure
    prices a storage transaction by."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.operations: Counter[str] = Counter()

    def add(self, key: str, operation: str | None = None) -> None:
        with self._lock:
            self.counts[key] += 1
            if operation is not None:
                self.operations[operation] += 1

    def reset(self) -> Counter[str]:
        with self._lock:
            counts, self.counts = self.counts, Counter()
            return counts

    def reset_operations(self) -> Counter[str]:
        with self._lock:
            operations, self.operations = self.operations, Counter()
            return operations


def request_kind(method: str, url: str) -> str:
    """Name one storage request by what it does (the URL path says which queue or blob, the method what)."""
    parts = urlsplit(url)
    segments = [segment for segment in parts.path.split("/") if segment][1:]  # drop the account name
    query = parts.query
    if "messages" in segments:
        queue = segments[0]
        action = {"GET": "receive", "POST": "enqueue", "DELETE": "delete", "PUT": "update"}.get(method, method)
        return f"queue {queue}: {action}"
    if len(segments) == 1 and "comp=metadata" in query:
        return f"queue {segments[0]}: properties"
    if len(segments) >= 2:
        action = {"HEAD": "properties", "GET": "read", "PUT": "write", "DELETE": "delete"}.get(method, method)
        return f"blob: {action}"
    return f"{method} {'/'.join(segments) or '/'}?{query.split('&')[0]}"


# Every name `rest_operation` can give: the REST API's operation names (learn.microsoft.com/rest/api/storageservices).
QUEUE_OPERATIONS = (
    "Put Message",
    "Get Messages",
    "Peek Messages",
    "Delete Message",
    "Clear Messages",
    "Update Message",
    "Get Queue Metadata",
    "Set Queue Metadata",
    "Create Queue",
    "Delete Queue",
)
BLOB_OPERATIONS = (
    "Get Blob",
    "Get Blob Properties",
    "Get Blob Metadata",
    "Get Block List",
    "Get Blob Tags",
    "Put Blob",
    "Copy Blob",
    "Put Block",
    "Put Block List",
    "Append Block",
    "Append Blob Seal",
    "Set Blob Metadata",
    "Set Blob Properties",
    "Set Blob Tags",
    "Set Blob Tier",
    "Lease Blob",
    "Delete Blob",
    "Create Container",
    "Get Container Properties",
    "Get Container Metadata",
    "List Blobs",
    "Delete Container",
)
REST_OPERATIONS = QUEUE_OPERATIONS + BLOB_OPERATIONS
UNRECOGNISED = "unrecognised request"

_BLOB_PUTS = {
    "block": "Put Block",
    "blocklist": "Put Block List",
    "appendblock": "Append Block",
    "seal": "Append Blob Seal",
    "metadata": "Set Blob Metadata",
    "properties": "Set Blob Properties",
    "tags": "Set Blob Tags",
    "tier": "Set Blob Tier",
    "lease": "Lease Blob",
}
_BLOB_GETS = {"metadata": "Get Blob Metadata", "blocklist": "Get Block List", "tags": "Get Blob Tags"}


def rest_operation(method: str, url: str, headers: Any = None) -> str:
    """The Storage REST operation one request is (what Azure bills it as), from its method, URL path (Azurite's:
    the account is the first segment) and query; `headers` tells Copy Blob from Put Blob. Anything else is
    `unrecognised request: METHOD shape`, a name no price is given for."""
    parts = urlsplit(url)
    segments = [segment for segment in parts.path.split("/") if segment][1:]  # drop the account name
    query = parse_qs(parts.query)
    comp = query.get("comp", [""])[0]
    if len(segments) >= 2 and segments[1] == "messages":  # like request_kind: <queue>/messages[/<id>]
        with_id = len(segments) > 2
        if method == "POST" and not with_id:
            return "Put Message"
        if method == "GET" and not with_id:
            return "Peek Messages" if query.get("peekonly", [""])[0].lower() == "true" else "Get Messages"
        if method == "DELETE":
            return "Delete Message" if with_id else "Clear Messages"
        if method == "PUT" and with_id:
            return "Update Message"
    elif len(segments) == 1 and query.get("restype", [""])[0] == "container":
        container = {
            ("PUT", ""): "Create Container",
            ("GET", ""): "Get Container Properties",
            ("HEAD", ""): "Get Container Properties",
            ("DELETE", ""): "Delete Container",
            ("GET", "list"): "List Blobs",
            ("GET", "metadata"): "Get Container Metadata",
            ("HEAD", "metadata"): "Get Container Metadata",
        }
        if (method, comp) in container:
            return container[(method, comp)]
    elif len(segments) == 1:  # a queue itself
        queue = {
            ("PUT", ""): "Create Queue",
            ("DELETE", ""): "Delete Queue",
            ("GET", "metadata"): "Get Queue Metadata",
            ("HEAD", "metadata"): "Get Queue Metadata",
            ("PUT", "metadata"): "Set Queue Metadata",
        }
        if (method, comp) in queue:
            return queue[(method, comp)]
    elif len(segments) >= 2:  # a blob
        if method == "HEAD" and not comp:
            return "Get Blob Properties"
        if method == "GET":
            return _BLOB_GETS.get(comp, "Get Blob") if comp in _BLOB_GETS or not comp else _unrecognised(method, segments, comp)
        if method == "PUT" and not comp:
            copy = any(str(name).lower() == "x-ms-copy-source" for name in (headers or {}))
            return "Copy Blob" if copy else "Put Blob"
        if method == "PUT" and comp in _BLOB_PUTS:
            return _BLOB_PUTS[comp]
        if method == "DELETE" and not comp:
            return "Delete Blob"
    return _unrecognised(method, segments, comp)


def _unrecognised(method: str, segments: list[str], comp: str) -> str:
    shape = {0: "account", 1: "queue or container"}.get(len(segments), "message or blob")
    return f"{UNRECOGNISED}: {method} {shape}" + (f" comp={comp}" if comp else "")


class CountingTransport(EnvironmentOnceTransport):
    """The app's storage transport (`shared.transport.storage_transport`), tallying each request it sends."""

    def __init__(self, counter: RequestCounter) -> None:
        super().__init__(
            connection_timeout=STORAGE_CONNECTION_TIMEOUT,
            read_timeout=STORAGE_READ_TIMEOUT,
            connection_data_block_size=STORAGE_DATA_BLOCK_SIZE,
        )
        self._counter = counter

    def send(self, request: Any, **kwargs: Any) -> Any:
        operation = rest_operation(request.method, request.url, request.headers)
        self._counter.add(request_kind(request.method, request.url), operation)
        return super().send(request, **kwargs)


class RoundTrips:
    """Requests sent through some `DelayedTransport`s, and the time they took beyond their delay, in all (thread-safe).

    That time is what the local machine adds to each round trip: the answer of Azurite or the emulator, the
    transport's own work, and the wait for a core and for the interpreter lock when the sleep ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.extra_seconds = 0.0

    def add(self, extra_seconds: float) -> None:
        with self._lock:
            self.requests += 1
            self.extra_seconds += extra_seconds

    def reset(self) -> None:
        with self._lock:
            self.requests, self.extra_seconds = 0, 0.0

    def mean_extra_ms(self) -> float | None:
        """Milliseconds a request took beyond its delay, on average; None before the first request."""
        with self._lock:
            return 1000 * self.extra_seconds / self.requests if self.requests else None


class DelayedTransport(HttpTransport):
    """Sends through `inner` after holding each request for `seconds`: a fixed network round trip, per try.

    The wait is a sleep on the sending thread, as a real round trip is a wait on the socket: the thread holds
    no interpreter lock meanwhile, so other threads of the drain run, and the drain pays the latency only where
    its own structure makes one request wait for another. `round_trips`, when given, tallies what each request
    took beyond the delay.
    """

    def __init__(self, inner: HttpTransport, seconds: float, round_trips: RoundTrips | None = None) -> None:
        self.inner = inner
        self.seconds = seconds
        self.round_trips = round_trips

    def send(self, request: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        time.sleep(self.seconds)
        try:
            return self.inner.send(request, **kwargs)
        finally:
            if self.round_trips is not None:
                self.round_trips.add(time.perf_counter() - started - self.seconds)

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> DelayedTransport:
        self.inner.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        self.inner.__exit__(*args)


def instrumented_services(
    settings: Settings, storage: HttpTransport, *, kusto_transport: HttpTransport | None = None
) -> Services:
    """`build_services(settings)` with every storage client on the transport `storage`: they all are children of
    the staging account's two service clients, which send through it (`shared.storage`)."""
    return build_services(settings, storage_transport=storage, kusto_transport=kusto_transport)


def counted_services(settings: Settings, counter: RequestCounter) -> Services:
    """`build_services(settings)` with every storage client swapped for one that counts (connection strings only)."""
    return instrumented_services(settings, CountingTransport(counter))


def delayed_services(
    settings: Settings,
    *,
    storage_seconds: float,
    kusto_seconds: float,
    storage_round_trips: RoundTrips | None = None,
    kusto_round_trips: RoundTrips | None = None,
) -> Services:
    """`build_services(settings)` with each storage request held `storage_seconds` and each Kusto request `kusto_seconds`.

    The Kusto transport underneath is the one `shared.kusto_pipeline.KustoPipeline` makes by default. The round
    trips, when given, tally what the storage and the Kusto requests took beyond their delays.
    """
    timeout = settings.kusto_request_timeout_seconds
    kusto = EnvironmentOnceTransport(connection_timeout=min(10.0, timeout), read_timeout=timeout)
    return instrumented_services(
        settings,
        DelayedTransport(storage_transport(), storage_seconds, storage_round_trips),
        kusto_transport=DelayedTransport(kusto, kusto_seconds, kusto_round_trips),
    )
