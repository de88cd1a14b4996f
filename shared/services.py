"""The clients a worker process needs, created once and handed to every function body.

Clients hold connection pools and token caches, so they are built once per process (`get_services()`)
and passed in as arguments; nothing else in the app keeps a client in a module global. Tests build their
own `Services` with `build_services()` from explicit settings, a fake Kusto transport or a test credential.

`get_services(function)` is also where a function learns that its settings are invalid. Settings are read on
the first run, not while the worker indexes `function_app.py`, so the app is always indexed. A run whose
settings are invalid logs ONE line at ERROR (the setting, the fix, and that this function fails every run until
then) and raises it, so the host counts a failed run; the next run reads the settings again. A setting that only
disables a feature (`Settings.disabled`, see `shared.settings.FEATURES`) is logged at ERROR when the process first
reads the settings, and again by the runs of the functions that use the feature, at most once a minute per function
and feature (housekeeping, the periodic watcher, reports every disabled feature); a function that cannot work
without its feature (the blob trigger with an invalid BLOB_TRIGGER_SOURCE, a timer with an invalid schedule)
fails every run like one with an invalid required setting. Each of these ERROR records starts with LOG_KEY.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import HttpTransport
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from shared import storage
from shared.alert_markers import AlertMarkers
from shared.blob_access import BlobAccess
from shared.dm_resources import DataManagementClient, DmResourceCache
from shared.kusto_rest import BlobSource, KustoIngestClient, TryObserver, kusto_credential
from shared.queue_submitter import QueueSubmitter
from shared.routing import router_for
from shared.settings import FEATURES, Settings, SettingsError, load_settings
from shared.staging_area import StagingArea
from shared.submission_ledger import SubmissionLedger

logger = logging.getLogger(__name__)

LOG_KEY = "APP_SETTING_INVALID"
"""Stable first word of every record about an invalid app setting, so that one log query finds them all."""
REPORT_INTERVAL_SECONDS = 55
"""Least time between two reports of one disabled feature by one function: about a minute, a little less so that a
timer running every minute (housekeeping's default) reports on each run, however its runs are spaced."""


@dataclass(frozen=True)
class FunctionNeeds:
    """The `shared.settings.FEATURES` one function of `function_app.py` depends on."""

    needs: tuple[str, ...] = ()
    """Features it cannot run without: while one is disabled, every run fails with the reason."""
    uses: tuple[str, ...] = ()
    """Features it runs without, reporting them, while they are disabled."""


FUNCTIONS: dict[str, FunctionNeeds] = {
    "record_staged_blob": FunctionNeeds(needs=("blob_trigger",)),
    "submit_pending": FunctionNeeds(needs=("submit_timer",)),
    "track_outcomes": FunctionNeeds(needs=("track_timer",), uses=("quarantine", "delete_on_success")),
    "alert_on_failure": FunctionNeeds(uses=("webhook", "digest")),
    "housekeeping": FunctionNeeds(needs=("housekeeping_timer",), uses=tuple(FEATURES)),
}
"""Every function of `function_app.py` by name. Housekeeping uses the webhook and digests itself and reports every
other disabled feature too, so that one whose function never runs (a blob trigger on a source with no events) is
still reported every minute."""


class DisabledReports:
    """When each function last reported each disabled feature, so that it does at most every REPORT_INTERVAL_SECONDS."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def due(self, function: str, feature: str) -> bool:
        """True (and noted) when `function` should report `feature` now."""
        now = self._clock()
        with self._lock:
            last = self._last.get((function, feature))
            if last is not None and now - last < REPORT_INTERVAL_SECONDS:
                return False
            self._last[(function, feature)] = now
            return True


class Submitter(Protocol):
    """What the submission timer needs of a mode: the chunk size, and one call per chunk.

    `KustoIngestClient` (REST mode) and `QueueSubmitter` (queue mode) both fit; either returns an operation
    id or raises `TransientKustoError` / `PermanentKustoError`, so the drain handles both modes alike, and
    either tells `observer` when the chunk goes out (and, in REST mode, how each try was answered).
    """

    def effective_batch_size(self) -> int: ...

    def submit(
        self,
        database: str,
        table: str,
        blobs: Sequence[BlobSource],
        properties: Mapping[str, Any],
        *,
        timeout: float | None = None,
        observer: TryObserver | None = None,
    ) -> str: ...


@dataclass(frozen=True)
class Services:
    """Settings plus every client of one worker process."""

    settings: Settings
    pending_queue: QueueClient
    """Read raw: `shared.storage.decode_message` decodes each message, so one foreign message cannot block a page."""
    failures_queue: QueueClient
    tracking_queue: QueueClient
    pending_poison_queue: QueueClient
    blob_service: BlobServiceClient
    staging: StagingArea
    """The staging container: every blob the app acts on is reached through it, and every message is checked against it."""
    kusto: KustoIngestClient
    """The REST client: status polling in either mode, submission in REST mode."""
    submitter: Submitter
    """Submits chunks in the mode SUBMISSION_MODE names."""
    blob_access: BlobAccess
    ledger: SubmissionLedger
    """The blob versions Kusto accepted recently; the worker keeps what it read, so each drain reads only what is new."""
    alert_markers: AlertMarkers
    """Which failures were alerted recently, so a repeated notification is dropped."""
    dm_resources: DmResourceCache | None = None
    """Queue mode only: the Data Management service's queues and identity token, cached with an expiry."""
    disabled_reports: DisabledReports = field(default_factory=DisabledReports, repr=False, compare=False)
    """When each function last reported each feature `settings.disabled` names (`get_services`)."""

    @property
    def queues(self) -> tuple[QueueClient, ...]:
        return (self.pending_queue, self.failures_queue, self.tracking_queue, self.pending_poison_queue)


def build_services(
    settings: Settings,
    *,
    kusto_transport: HttpTransport | None = None,
    kusto_token_credential: TokenCredential | None = None,
    storage_credential: TokenCredential | None = None,
) -> Services:
    """Create every client from `settings`; credentials default to what the settings name.

    Routing rules are compiled here, so invalid ROUTING_RULES fail every run with the rule's index and field
    (a SettingsError), instead of failing blob by blob.
    """
    router_for(settings)
    connection = settings.staging
    if storage_credential is None:
        storage_credential = storage.staging_credential(connection)
    if kusto_token_credential is None:
        kusto_token_credential = kusto_credential(settings)
    blob_service = storage.blob_service_client(connection, storage_credential)
    staging = StagingArea(blob_service, settings.staging_container, settings.allowed_targets)
    state = blob_service.get_container_client(settings.state_container)
    kusto = KustoIngestClient(settings, credential=kusto_token_credential, transport=kusto_transport)
    dm_resources = None
    submitter: Submitter = kusto
    if settings.submission_mode == "queue":
        dm_resources = DmResourceCache(DataManagementClient(settings, kusto_token_credential, transport=kusto_transport))
        submitter = QueueSubmitter(settings, dm_resources)
    return Services(
        settings=settings,
        pending_queue=storage.queue_client(connection, settings.pending_queue, storage_credential, decode=False),
        failures_queue=storage.queue_client(connection, settings.failures_queue, storage_credential),
        tracking_queue=storage.queue_client(connection, settings.tracking_queue, storage_credential),
        pending_poison_queue=storage.queue_client(connection, settings.pending_poison_queue, storage_credential),
        blob_service=blob_service,
        staging=staging,
        kusto=kusto,
        submitter=submitter,
        blob_access=BlobAccess(settings, staging),
        ledger=SubmissionLedger(state, settings.duplicate_window_seconds),
        alert_markers=AlertMarkers(state, settings.duplicate_window_seconds),
        dm_resources=dm_resources,
    )


def ensure_queues(services: Services) -> None:
    """Create the app's queues if they are missing (first start of a new storage account)."""
    for queue in services.queues:
        storage.ensure_queue(queue)


_creation_lock = threading.Lock()


def get_services(function: str) -> Services:
    """The process's services for one run of `function` (a name in FUNCTIONS); the queues exist once this returns.

    Raises SettingsError, after logging its one line at ERROR, when a setting the function needs is invalid
    (see the module's docstring); that check needs no storage. The worker runs functions on several threads; the
    lock makes the first callers share one `Settings` and one `Services`. A failure (invalid settings, storage
    unreachable) is not cached: the next run tries again.
    """
    needs = FUNCTIONS[function]
    with _creation_lock:
        try:
            disabled = _process_settings().disabled
            for feature in needs.needs:
                if feature in disabled:
                    raise SettingsError(disabled[feature])
            services = _process_services()
        except SettingsError as error:
            raise _failed_run(function, str(error)) from None
    for feature in needs.uses:
        if feature in disabled and services.disabled_reports.due(function, feature):
            logger.error("%s %s; until it is fixed, %s (reported by %s)", LOG_KEY, disabled[feature], FEATURES[feature], function)
    return services


def _failed_run(function: str, reason: str) -> SettingsError:
    """The error that fails this run, logged first as one ERROR line: the reason names the setting and the fix."""
    line = f"{reason} ({function} fails every run until this app setting is fixed)"
    logger.error("%s %s", LOG_KEY, line)
    return SettingsError(line)


def forget_process_services() -> None:
    """Forget the process's settings and services, so that the next run reads the app settings again (tests)."""
    with _creation_lock:
        _process_services.cache_clear()
        _process_settings.cache_clear()


@functools.cache
def _process_settings() -> Settings:
    settings = load_settings(disable_invalid_features=True)
    for feature, reason in settings.disabled.items():
        logger.error("%s %s; until it is fixed, %s (read at start)", LOG_KEY, reason, FEATURES[feature])
    return settings


@functools.cache
def _process_services() -> Services:
    services = build_services(_process_settings())
    ensure_queues(services)
    return services
