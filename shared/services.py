"""The clients a worker process needs, created once and handed to every function body.

Clients hold connection pools and token caches, so they are built once per process (`get_services()`)
and passed in as arguments: every client and long-lived helper of the app (the storage account's queue and
container clients, the Kusto clients, the router, the webhook, the digest windows) is built here and nowhere
else, and nothing keeps one in a module global. The clients of the staging account are children of its two
service clients and share one transport (`shared.storage`). Tests build their own `Services` with
`build_services()` from explicit settings, a fake transport or a test credential.

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
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient, QueueServiceClient

from shared import storage
from shared.alert_markers import AlertMarkers
from shared.blob_access import BlobAccess
from shared.digest import DigestBook
from shared.dm_resources import DataManagementClient, DmResourceCache
from shared.kusto_pipeline import TryObserver
from shared.kusto_rest import BlobSource, KustoIngestClient
from shared.queue_submitter import QueueSubmitter
from shared.routing import Router, compile_rules
from shared.settings import FEATURES, Settings, SettingsError, load_settings
from shared.staging_area import StagingArea
from shared.submission_ledger import SubmissionLedger
from shared.webhook import WebhookSink

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
    "reconcile_staging": FunctionNeeds(needs=("reconcile_timer",)),
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
    """Settings plus every client and long-lived helper of one worker process."""

    settings: Settings
    account: storage.StorageAccount
    """The staging storage account: every queue and container client below is a child of its service clients."""
    pending_queue: QueueClient
    """Read raw: `shared.storage.decode_message` decodes each message, so one foreign message cannot block a page."""
    failures_queue: QueueClient
    tracking_queue: QueueClient
    tracking_reader: QueueClient
    """The tracking queue read raw, as the tracker reads it: a message that is not base64 alerts, it does not break a page."""
    pending_poison_queue: QueueClient
    staging: StagingArea
    """The staging container: every blob the app acts on is reached through it, and every message is checked against it."""
    router: Router
    """ROUTING_RULES compiled, with ALLOWED_TARGETS: where each staged blob goes."""
    kusto: KustoIngestClient
    """The REST client: status polling in either mode, submission in REST mode."""
    submitter: Submitter
    """Submits chunks in the mode SUBMISSION_MODE names."""
    blob_access: BlobAccess
    ledger: SubmissionLedger
    """The blob versions Kusto accepted recently; the worker keeps what it read, so each drain reads only what is new."""
    alert_markers: AlertMarkers
    """Which failures were alerted recently, so a repeated notification is dropped."""
    recorded_ledger: SubmissionLedger
    """The same ledger over the reconciliation look-back: what the reconciler read stays, so each run reads only what
    is new (`shared.reconcile`)."""
    digests: DigestBook
    """The open digest windows (ALERT_DIGEST_WINDOW_SECONDS) in STATE_CONTAINER."""
    webhook: WebhookSink | None = None
    """The alert webhook; None when ALERT_WEBHOOK_URL is not set (alerts are log records only)."""
    dm_resources: DmResourceCache | None = None
    """Queue mode only: the Data Management service's queues and identity token, cached with an expiry."""
    disabled_reports: DisabledReports = field(default_factory=DisabledReports, repr=False, compare=False)
    """When each function last reported each feature `settings.disabled` names (`get_services`)."""

    @property
    def blob_service(self) -> BlobServiceClient:
        return self.account.blob_service

    @property
    def queue_service(self) -> QueueServiceClient:
        return self.account.queue_service

    @property
    def queues(self) -> tuple[QueueClient, ...]:
        return (self.pending_queue, self.failures_queue, self.tracking_queue, self.pending_poison_queue)

    def raw_queue(self, name: str) -> QueueClient:
        """Any queue of the staging account, read raw (a poison queue: its messages are decoded one by one)."""
        return self.account.queue(name, decode=False)

    def kusto_queue(self, queue_url: str) -> QueueClient:
        """A queue of the Data Management service (queue mode) that the app only reads, from its SAS URL: read raw and
        handed back unchanged (`shared.queue_relay`), on the storage transport."""
        return storage.sas_queue_client(queue_url, self.account.transport, encode=False)


def kusto_credential(settings: Settings) -> TokenCredential | None:
    """The identity that calls Kusto, as KUSTO_CREDENTIAL says (None: no Authorization header, emulator only)."""
    if settings.kusto_credential == "managedidentity":
        return ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
    if settings.kusto_credential == "default":
        return DefaultAzureCredential(managed_identity_client_id=settings.managed_identity_client_id)
    return None


def kusto_client(
    settings: Settings, credential: TokenCredential | None, *, transport: HttpTransport | None = None, **options: Any
) -> KustoIngestClient:
    """The REST client the settings describe; `credential` must be the one KUSTO_CREDENTIAL names (`options`: the
    client's own, such as a test clock)."""
    _check_kusto_credential(settings, credential)
    return KustoIngestClient(
        settings.kusto_ingest_uri,
        credential,
        token_scope=settings.kusto_token_scope,
        request_timeout=settings.kusto_request_timeout_seconds,
        max_blobs_per_batch=settings.max_blobs_per_batch,
        transport=transport,
        **options,
    )


def _check_kusto_credential(settings: Settings, credential: TokenCredential | None) -> None:
    if credential is None and settings.kusto_credential != "none":
        raise ValueError(f"KUSTO_CREDENTIAL is {settings.kusto_credential!r}: pass the credential it names")


def _queue_mode(
    settings: Settings, credential: TokenCredential | None, kusto_transport: HttpTransport | None, queues: HttpTransport
) -> tuple[DmResourceCache, QueueSubmitter]:
    """Queue mode's resource cache and submitter; the ingestion queues' clients send through `queues`."""
    management = DataManagementClient(
        settings.kusto_ingest_uri,
        credential,
        token_scope=settings.kusto_token_scope,
        request_timeout=settings.kusto_request_timeout_seconds,
        transport=kusto_transport,
    )
    cache = DmResourceCache(management)
    submitter = QueueSubmitter(
        cache,
        max_blobs_per_batch=settings.max_blobs_per_batch,
        report_level=settings.report_level,
        report_method=settings.report_method,
        queue_client_for=functools.partial(storage.sas_queue_client, transport=queues, short_retries=True),
    )
    return cache, submitter


def build_services(
    settings: Settings,
    *,
    kusto_transport: HttpTransport | None = None,
    kusto_token_credential: TokenCredential | None = None,
    storage_credential: TokenCredential | None = None,
    storage_transport: HttpTransport | None = None,
) -> Services:
    """Create every client and helper from `settings`; credentials default to what the settings name, transports to
    the app's own (one for every storage client, Kusto's queues included; each Kusto client has its own).

    Routing rules are compiled here, so invalid ROUTING_RULES fail every run with the rule's index and field
    (a SettingsError), instead of failing blob by blob.
    """
    router = Router(rules=compile_rules(settings.routing_rules), allowed_targets=settings.allowed_targets)
    if storage_credential is None:
        storage_credential = storage.staging_credential(settings.staging)
    if kusto_token_credential is None:
        kusto_token_credential = kusto_credential(settings)
    account = storage.storage_account(settings.staging, storage_credential, storage_transport)
    staging = StagingArea(account.blob_service, settings.staging_container, settings.allowed_targets)
    state = account.container(settings.state_container)
    kusto = kusto_client(settings, kusto_token_credential, transport=kusto_transport)
    dm_resources = None
    submitter: Submitter = kusto
    if settings.submission_mode == "queue":
        dm_resources, submitter = _queue_mode(settings, kusto_token_credential, kusto_transport, account.transport)
    webhook = None
    if settings.alert_webhook_url:
        webhook = WebhookSink(settings.alert_webhook_url, settings.alert_webhook_format, settings.alert_webhook_secret)
    return Services(
        settings=settings,
        account=account,
        pending_queue=account.queue(settings.pending_queue, decode=False),
        failures_queue=account.queue(settings.failures_queue),
        tracking_queue=account.queue(settings.tracking_queue),
        tracking_reader=account.queue(settings.tracking_queue, decode=False),
        pending_poison_queue=account.queue(settings.pending_poison_queue),
        staging=staging,
        router=router,
        kusto=kusto,
        submitter=submitter,
        blob_access=BlobAccess(
            staging,
            mode=settings.blob_access,
            identity=settings.blob_access_identity,
            sas_lifetime_minutes=settings.sas_lifetime_minutes,
            account_key=settings.staging.account_key(),
        ),
        ledger=SubmissionLedger(state, settings.duplicate_window_seconds),
        alert_markers=AlertMarkers(state, settings.duplicate_window_seconds),
        recorded_ledger=SubmissionLedger(state, settings.reconcile_lookback_seconds),
        digests=DigestBook(state, settings.alert_digest_window_seconds),
        webhook=webhook,
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
