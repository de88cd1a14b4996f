"""One typed settings object, read once when the worker starts.

Every setting the app reads is named here and nowhere else (the README table, `local.settings.example.json`
and the Bicep app settings are checked against `SETTING_NAMES` by the drift test). A missing or invalid
value raises `SettingsError` naming the setting and the fix, so a misconfigured deployment fails with one
readable line instead of failing blob by blob later.

The worker loads them with `disable_invalid_features=True` (`shared.services`): then an invalid setting of one
of the `FEATURES` (the webhook, digests, quarantine, deletion on success, the blob trigger's source, a timer's
schedule) does not raise. The feature gets its "off" value and `Settings.disabled` maps it to the one-line
reason, so a bad optional setting turns off only its own feature (or fails only its own function) and never
ingestion or the log alert. A value Azure left as an unresolved `@Microsoft.KeyVault(...)` reference is named
as such, in any setting.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import stat
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import SplitResult

from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from shared.names import quoted
from shared.ncrontab import NcrontabError, parse_ncrontab
from shared.url_checks import URL_TEXT, UrlError, checked_url, is_loopback_url

STAGING_CONNECTION = "StagingStorage"
"""Connection-name prefix of the staging storage account (blobs and the app's queues)."""

SUBMISSION_MODES = ("rest", "queue")
KUSTO_CREDENTIALS = ("managedidentity", "default", "none")
BLOB_ACCESS_MODES = ("managed_identity", "user_delegation_sas", "account_key_sas")
BLOB_TRIGGER_SOURCES = ("EventGrid", "LogsAndContainerScan")
REPORT_LEVELS = ("FailuresOnly", "None", "FailuresAndSuccesses")
REPORT_METHODS = ("Queue", "Table", "QueueAndTable")
QUEUE_MODE_REPORT_LEVELS = ("FailuresOnly", "FailuresAndSuccesses")
"""What queue mode accepts: with `None` Kusto would report no failure, so none could alert."""
QUEUE_MODE_REPORT_METHODS = ("Queue", "QueueAndTable")
"""What queue mode accepts: with `Table` failure reports never reach the queue that queue mode relays as alerts."""
WEBHOOK_FORMATS = ("json", "teams", "slack")
BLOB_TRIGGER_FALLBACK = "EventGrid"
"""The blob trigger's source when BLOB_TRIGGER_SOURCE is unset, and at indexing when it is invalid (its function
then fails every run): the source the Azure deployment uses and the only one Flex Consumption runs, so the trigger
still fires and each run says what is wrong (polling would not run at all on Flex Consumption)."""
KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("
"""How an app setting Azure could not resolve from Key Vault reaches the app: the reference's own text."""
FEATURES: dict[str, str] = {
    "webhook": "the webhook is off: alerts are log records only",
    "digest": "digests are off: each alert goes to the webhook on its own",
    "quarantine": "quarantine is off: permanently failed blobs stay in the staging container",
    "delete_on_success": "deletion on success is off: ingested blobs stay in the staging container",
    "blob_trigger": f"the blob trigger is indexed with source {BLOB_TRIGGER_FALLBACK} and every run of it fails",
    "submit_timer": "the submission timer does not run, or fails every run",
    "track_timer": "the outcome tracker does not run, or fails every run",
    "housekeeping_timer": "the housekeeping timer does not run, or fails every run",
    "reconcile_timer": "the reconciliation timer does not run, or fails every run: a blob whose event was lost stays unrecorded",
}
"""Feature -> what the app does while an invalid setting disables it (`Settings.disabled`). The first four are
optional: their functions run without them. The others are settings of one function only, which fails every
run (or which the host cannot start), while the other functions run."""
SENDING_LEASE_MARGIN_SECONDS = 60
ROUTING_RULES_MAX_BYTES = 1024 * 1024
"""Largest rules file read (a path to a device or a huge file must not hang or exhaust the worker at start)."""
ROUTING_RULES_MAX_DEPTH = 32
"""Deepest JSON nesting of ROUTING_RULES; real rules nest 3 or 4 levels, hostile ones would overflow the parser."""

# Queue names follow Azure's rules: 3-63 characters, lowercase letters, digits and single hyphens.
_QUEUE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_CONTAINER_NAME = _QUEUE_NAME
_TARGET_CHARACTERS = re.compile(r"[A-Za-z0-9_.\- *?]+")
"""A target pattern is 'database.table' in these characters; the dot is looked for separately, since one regex
with the dot inside both classes backtracks quadratically on a long value without a usable dot."""
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_STORAGE_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
# Numbers are plain ASCII digits ([0-9], never \d, which also matches Arabic-Indic or fullwidth digits).
_INTEGER = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_MAX_DIGITS = 15
_ASCII_SPACE = " \t\r\n\f\v"


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it and says how to fix it."""


@dataclass(frozen=True)
class StorageConnection:
    """How to reach a storage account: a connection string (local) or service URIs plus an identity."""

    connection_string: str | None = None
    blob_service_uri: str | None = None
    queue_service_uri: str | None = None
    credential: str | None = None
    client_id: str | None = None

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None

    def account_key(self) -> str | None:
        """The account key of a connection string, as the storage SDK reads it (only local Azurite should have one)."""
        if not self.connection_string:
            return None
        return getattr(BlobServiceClient.from_connection_string(self.connection_string).credential, "account_key", None) or None

    def blob_endpoint(self) -> str:
        """The blob service endpoint, whichever way the connection is given (a connection string read by the SDK)."""
        if self.blob_service_uri:
            return self.blob_service_uri.rstrip("/")
        return BlobServiceClient.from_connection_string(self.connection_string or "").url.rstrip("/")


@dataclass(frozen=True)
class Settings:
    """Every setting of the app, typed and validated. Build it with `load_settings()`."""

    staging: StorageConnection
    kusto_ingest_uri: str
    staging_container: str = "staging"
    blob_trigger_source: str = "EventGrid"
    pending_queue: str = "ingest-pending"
    failures_queue: str = "ingest-failures"
    tracking_queue: str = "ingest-tracking"
    submit_schedule: str = "*/10 * * * * *"
    drain_time_budget_seconds: float = 60.0
    submit_concurrency: int = 8
    max_blobs_per_batch: int = 20
    pending_visibility_timeout_seconds: int = 300
    pending_max_dequeue_count: int = 5
    pending_max_age_seconds: int = 21600
    kusto_token_scope: str = ""
    kusto_credential: str = "managedidentity"
    managed_identity_client_id: str | None = None
    kusto_request_timeout_seconds: float = 30.0
    blob_access: str = "managed_identity"
    blob_access_identity: str = "system"
    sas_lifetime_minutes: int = 360
    routing_rules: tuple[Mapping[str, Any], ...] = ()
    allowed_targets: tuple[str, ...] = ("*",)
    submission_mode: str = "rest"
    report_level: str = "FailuresOnly"
    report_method: str = "Queue"
    track_schedule: str = "*/15 * * * * *"
    tracking_horizon_seconds: int = 6 * 3600
    tracking_poll_initial_seconds: int = 10
    tracking_poll_max_seconds: int = 300
    tracking_max_per_run: int = 512
    resubmit_max_attempts: int = 3
    quarantine_container: str = ""
    delete_on_success: bool = False
    alert_webhook_url: str = field(default="", repr=False)
    alert_webhook_format: str = "json"
    alert_webhook_secret: str = field(default="", repr=False)
    alert_digest_window_seconds: int = 900
    state_container: str = "ingest-state"
    duplicate_window_seconds: int = 3600
    housekeeping_schedule: str = "0 * * * * *"
    dead_letter_container: str = "ingest-deadletter"
    reconcile_schedule: str = "0 */30 * * * *"
    reconcile_lookback_seconds: int = 24 * 3600
    reconcile_grace_seconds: int = 1800
    disabled: Mapping[str, str] = field(default_factory=dict)
    """Feature (a key of `FEATURES`) -> the one-line reason an invalid setting disabled it; its fields above hold
    the feature's "off" value. Filled only by `load_settings(disable_invalid_features=True)`."""

    @property
    def pending_poison_queue(self) -> str:
        return f"{self.pending_queue}-poison"

    @property
    def failures_poison_queue(self) -> str:
        return f"{self.failures_queue}-poison"

    @property
    def sending_lease_seconds(self) -> float:
        """How long after a drain began sending a chunk it may still be at work on it: every request of a drain
        ends within its time budget, and the margin covers the storage writes that follow Kusto's answer.
        A chunk still marked as being sent after that was sent by a worker that died (`shared.submission`)."""
        return self.drain_time_budget_seconds + SENDING_LEASE_MARGIN_SECONDS

    @property
    def tracking_poison_queue(self) -> str:
        return f"{self.tracking_queue}-poison"

    @property
    def state_retention_seconds(self) -> int:
        """How long the ledger and the alert markers are kept: the duplicate window, or the reconciliation look-back
        when longer, since they are also what tells the reconciler a blob version was recorded (`shared.reconcile`);
        one more hour covers the 5-minute ledger slots and a late housekeeping run."""
        return max(self.duplicate_window_seconds, self.reconcile_lookback_seconds + 3600)


# name -> meaning. The README settings table, local.settings.example.json and infra are checked against it.
SETTING_NAMES: dict[str, str] = {
    "StagingStorage": "connection string of the staging account (local only; use the identity form in Azure)",
    "StagingStorage__blobServiceUri": "blob endpoint of the staging account (identity-based connection)",
    "StagingStorage__queueServiceUri": "queue endpoint of the staging account (identity-based connection)",
    "StagingStorage__credential": "'managedidentity' to use a managed identity for the staging account",
    "StagingStorage__clientId": "client id of the user-assigned identity for the staging account",
    "STAGING_CONTAINER": "container watched by the blob trigger",
    "BLOB_TRIGGER_SOURCE": "EventGrid (required on Flex Consumption) or LogsAndContainerScan (polling)",
    "PENDING_QUEUE": "queue of blobs waiting to be submitted",
    "FAILURES_QUEUE": "queue of failure notifications that become alerts",
    "TRACKING_QUEUE": "queue of accepted operations whose outcome is not known yet",
    "SUBMIT_SCHEDULE": "NCRONTAB schedule (UTC, 6 fields) of the submission timer",
    "DRAIN_TIME_BUDGET_SECONDS": "how long one timer run may drain the pending queue",
    "SUBMIT_CONCURRENCY": "how many submissions run at once",
    "MAX_BLOBS_PER_BATCH": "cap on blobs per request (the server's maxBlobsPerBatch is used when lower)",
    "PENDING_VISIBILITY_TIMEOUT_SECONDS": "how long a received pending message stays hidden before it is retried",
    "PENDING_MAX_DEQUEUE_COUNT": "reads of a pending message before it moves to the poison queue and alerts",
    "PENDING_MAX_AGE_SECONDS": "how long a blob Kusto keeps deferring is retried before it alerts as Submission_TimedOut",
    "KUSTO_INGEST_URI": "ingestion (Data Management) endpoint, https://ingest-<cluster>.<region>.kusto.windows.net",
    "KUSTO_TOKEN_SCOPE": "token scope for Kusto requests",
    "KUSTO_CREDENTIAL": "managedidentity, default (DefaultAzureCredential) or none (local emulator only)",
    "MANAGED_IDENTITY_CLIENT_ID": "client id of the user-assigned identity that calls Kusto",
    "KUSTO_REQUEST_TIMEOUT_SECONDS": "timeout of one request to Kusto",
    "BLOB_ACCESS": "how Kusto reads blobs: managed_identity, user_delegation_sas or account_key_sas (local only)",
    "BLOB_ACCESS_IDENTITY": "identity named in ';managed_identity=...': 'system' or an object id",
    "SAS_LIFETIME_MINUTES": "lifetime of the read-only SAS handed to Kusto (SAS modes)",
    "ROUTING_RULES": "routing rules: inline JSON or a path to a JSON file",
    "ALLOWED_TARGETS": "comma-separated database.table patterns blobs may be routed to (* and ? wildcards)",
    "SUBMISSION_MODE": "rest (queued-ingestion REST endpoint) or queue (queue-based protocol)",
    "REPORT_LEVEL": "queue mode: FailuresOnly, None or FailuresAndSuccesses",
    "REPORT_METHOD": "queue mode: Queue, Table or QueueAndTable",
    "TRACK_SCHEDULE": "NCRONTAB schedule of the outcome tracker (status polling, and the status-queue relay in queue mode)",
    "TRACKING_HORIZON_SECONDS": "how long an operation is tracked before its pending blobs alert as Tracking_TimedOut",
    "TRACKING_POLL_INITIAL_SECONDS": "delay before the first status poll of an operation (doubles after each poll)",
    "TRACKING_POLL_MAX_SECONDS": "longest delay between two status polls of one operation",
    "TRACKING_MAX_PER_RUN": "cap on operations polled by one tracker run (bounds the polling cost under load)",
    "RESUBMIT_MAX_ATTEMPTS": "resubmissions of a transiently failed blob before it alerts as Exhausted (0 = never resubmit)",
    "QUARANTINE_CONTAINER": "container permanently failed blobs are moved to (empty = leave them in staging)",
    "DELETE_ON_SUCCESS": "true to delete a staged blob once Kusto confirms it was ingested",
    "ALERT_WEBHOOK_URL": "webhook that receives alerts (empty = log records only); treat it as a secret",
    "ALERT_WEBHOOK_FORMAT": "payload shape of the webhook: json, teams (Adaptive Card) or slack (blocks)",
    "ALERT_WEBHOOK_SECRET": "optional HMAC-SHA256 key; the body signature goes in X-Signature-SHA256",
    "ALERT_DIGEST_WINDOW_SECONDS": "repeats of one (database, table, error code) within this window become one digest (0 = off)",
    "STATE_CONTAINER": "container of the app's own state: digest windows, the submission ledger, alert markers",
    "DUPLICATE_WINDOW_SECONDS": "how long a submitted blob version or a raised alert is remembered, so a repeat is dropped",
    "HOUSEKEEPING_SCHEDULE": "NCRONTAB schedule of the poison-queue watcher, the digest flush and state clean-up",
    "DEAD_LETTER_CONTAINER": "container of the staging account where Event Grid dead-letters BlobCreated events it gave up on",
    "RECONCILE_SCHEDULE": "NCRONTAB schedule of the reconciliation timer (off: AzureWebJobs.reconcile_staging.Disabled)",
    "RECONCILE_LOOKBACK_SECONDS": "how far back the reconciler looks for staged blobs the app never recorded",
    "RECONCILE_GRACE_SECONDS": "how old a staged blob must be before the reconciler may take its event for lost",
}


def check_queue_report_settings(report_level: str, report_method: str) -> None:
    """Refuse the report settings under which Kusto's failures could never become alerts in queue mode."""
    if report_level not in QUEUE_MODE_REPORT_LEVELS:
        if report_level == "None":
            raise SettingsError(
                "REPORT_LEVEL: 'None' makes Kusto report no failed ingestions, so queue mode could not alert on them; "
                "use FailuresOnly or FailuresAndSuccesses"
            )
        raise SettingsError(f"REPORT_LEVEL: {quoted(report_level)} is not one of {', '.join(QUEUE_MODE_REPORT_LEVELS)}")
    if report_method not in QUEUE_MODE_REPORT_METHODS:
        if report_method == "Table":
            raise SettingsError(
                "REPORT_METHOD: 'Table' keeps Kusto's failure reports out of its failure queue, which queue mode relays "
                "as alerts; use Queue (or QueueAndTable)"
            )
        raise SettingsError(f"REPORT_METHOD: {quoted(report_method)} is not one of {', '.join(QUEUE_MODE_REPORT_METHODS)}")


def _checked_url(name: str, url: str, *, fix: str, subject: str | None = None, secret: bool = False) -> tuple[SplitResult, str]:
    """`checked_url` for the setting `name`: its error names the setting and ends with `fix`."""
    try:
        return checked_url(url, subject=subject, secret=secret)
    except UrlError as error:
        raise SettingsError(f"{name}: {error}; {fix}") from None


def _guid(name: str, value: str, what: str) -> str:
    """A GUID exactly as Entra ID writes it: 8-4-4-4-12 hex digits (no braces, urn: prefix or other layout), not nil."""
    try:
        valid = _GUID.fullmatch(value) is not None and uuid.UUID(value).int != 0
    except ValueError:
        valid = False
    if not valid:
        raise SettingsError(
            f"{name}: {quoted(value)} is not {what} (a GUID like 00000000-0000-0000-0000-000000000000 with hex digits, "
            "not all zero); copy it from the identity's overview page"
        )
    return value


def _optional_guid(reader: _Reader, name: str, what: str) -> str | None:
    """An optional GUID setting (`_guid`); None when it is not set."""
    value = reader.raw(name)
    return None if value is None else _guid(name, value, what)


_T = TypeVar("_T")
_UNREADABLE = (ArithmeticError, LookupError, OSError, RecursionError, TypeError, ValueError)
"""What a hostile value might still raise while being parsed (SettingsError is a ValueError too)."""


def _unreadable(name: str, error: Exception) -> SettingsError:
    """`error` as one line naming the setting `name`: a SettingsError as it is, any other error by its type only."""
    if isinstance(error, SettingsError):
        return error
    # Never chained or quoted: the value may be a secret.
    return SettingsError(
        f"{name}: its value could not be read ({type(error).__name__}); check it against the README settings table"
    )


class _Reader:
    """Reads raw values and turns bad ones into SettingsError with the setting's name."""

    def __init__(self, values: Mapping[str, str] | None, disable_invalid_features: bool = False) -> None:
        self._values = os.environ if values is None else values
        self._disable_invalid_features = disable_invalid_features
        self.current = "settings"
        """The setting being read: the last-resort error in `load_settings` names it."""
        self.disabled: dict[str, str] = {}
        """Feature -> reason, for `Settings.disabled`."""

    def optional(self, feature: str, off: _T, read: Callable[[], _T]) -> _T:
        """`read()`, the value(s) of one of the `FEATURES`; when it refuses them, see `disable`."""
        try:
            return read()
        except _UNREADABLE as error:
            return self.disable(feature, off, error)

    def disable(self, feature: str, off: _T, error: Exception) -> _T:
        """Raise `error` as a SettingsError naming the setting; or, when invalid features are disabled, record the
        feature as disabled with that one line (the first reason is kept) and return its `off` value."""
        reason = _unreadable(self.current, error)
        if not self._disable_invalid_features:
            raise reason from None
        self.disabled.setdefault(feature, str(reason))
        return off

    def raw(self, name: str) -> str | None:
        """The value without surrounding ASCII spaces, tabs and line breaks; None when that leaves nothing.

        Other characters (no-break spaces, zero-width or control characters) are kept, so the value's own check
        refuses them instead of their being silently read as something else.
        """
        self.current = name
        value = self._values.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise SettingsError(f"{name}: is a {type(value).__name__}, not text; set it to text")
        value = value.strip(_ASCII_SPACE)
        if value[: len(KEY_VAULT_REFERENCE)].lower() == KEY_VAULT_REFERENCE.lower():
            # Azure hands over the reference's text when it cannot resolve it; never quoted (it names the secret).
            raise SettingsError(
                f"{name}: is an unresolved Key Vault reference (the app got the @Microsoft.KeyVault(...) text, not the "
                "secret); give the app's managed identity the Key Vault Secrets User role on the vault, check the "
                "reference's secret URI and that the secret exists, then restart the app"
            )
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value.isascii():
            for option in allowed:
                if value.lower() == option.lower():
                    return option
        raise SettingsError(f"{name}: {quoted(value)} is not one of {', '.join(allowed)}")

    def number(self, name: str, default: float, low: float, high: float, integer: bool = True) -> Any:
        """A number in plain ASCII digits: no '_', '+', exponent, inf/nan, other scripts' digits; '-' only if low < 0."""
        raw = self.raw(name)
        if raw is None:
            return default
        kind = "a whole number" if integer else "a number"
        written = "plain digits 0-9" if integer else "plain digits 0-9 and at most one decimal point"
        pattern = _INTEGER if integer else _DECIMAL
        if not pattern.fullmatch(raw) or (raw.startswith("-") and low >= 0):
            raise SettingsError(f"{name}: {quoted(raw)} is not {kind} in {written}; set it to {kind} from {low} to {high}")
        if len(raw.lstrip("-").partition(".")[0].lstrip("0")) > _MAX_DIGITS:
            raise SettingsError(f"{name}: {quoted(raw)} is out of range; set it from {low} to {high}")
        value = int(raw) if integer else float(raw)
        if not low <= value <= high:
            raise SettingsError(f"{name}: {value} is out of range; set it from {low} to {high}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.raw(name)
        if raw is None:
            return default
        if raw.isascii() and raw.lower() in ("true", "1", "yes"):
            return True
        if raw.isascii() and raw.lower() in ("false", "0", "no"):
            return False
        raise SettingsError(f"{name}: {quoted(raw)} is not a boolean; set it to true or false")

    def schedule(self, name: str, default: str) -> str:
        """An NCRONTAB schedule, checked as the host reads it: unstripped, since it resolves `%NAME%` itself."""
        if self.raw(name) is None:
            return default
        value = self._values[name]
        try:
            parse_ncrontab(value)
        except NcrontabError as error:
            raise SettingsError(
                f"{name}: {quoted(value)} is not a valid NCRONTAB schedule (six fields: second minute hour day month "
                f"day-of-week): {error}; e.g. '*/10 * * * * *' runs every 10 s"
            ) from None
        return value.strip(" ")

    def container(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if value and not _CONTAINER_NAME.fullmatch(value):
            raise SettingsError(
                f"{name}: {quoted(value)} is not a valid container name (3-63 lowercase letters, digits, single hyphens)"
            )
        return value

    def queue(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not _QUEUE_NAME.fullmatch(value) or len(value) > 63 - len("-poison-alerted"):
            raise SettingsError(
                f"{name}: {quoted(value)} is not a valid queue name (3-48 lowercase letters, digits and single hyphens, "
                "so that '<name>-poison-alerted', where the poison watcher keeps what it alerted, is valid too)"
            )
        return value


def _connection_string(value: str) -> StorageConnection:
    """A connection string, read by the storage SDK exactly as the app's clients read it (keys as written, no
    spaces trimmed; the queue service needs a key or a SAS); what it read is checked like every other setting:
    the endpoints as URLs, the account name, the key. Its text is never quoted: it may hold an account key."""
    name = STAGING_CONNECTION
    try:
        blob_service = BlobServiceClient.from_connection_string(value)
        queue_service = QueueServiceClient.from_connection_string(value)
    except (LookupError, TypeError, ValueError):
        # The SDK's own words are left out: they could quote a part of the value.
        raise SettingsError(
            f"{name}: not a storage connection string the storage SDK can use; set it to "
            "'AccountName=<account>;AccountKey=<key>' (keys written without spaces) or UseDevelopmentStorage=true (Azurite)"
        ) from None
    fix = "set BlobEndpoint and QueueEndpoint like http://127.0.0.1:10000/devstoreaccount1 (Azurite) or leave them out"
    for endpoint, url, account in (
        ("BlobEndpoint", blob_service.url, blob_service.account_name),
        ("QueueEndpoint", queue_service.url, queue_service.account_name),
    ):
        _checked_url(name, url, fix=fix, subject=f"its {endpoint}", secret=True)
        if not _STORAGE_ACCOUNT.fullmatch(account or ""):
            raise SettingsError(f"{name}: AccountName is not a storage account name (3-24 lowercase letters and digits)")
    key: str | None = getattr(blob_service.credential, "account_key", None)
    if key is not None:
        try:
            decoded = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if not decoded:
            raise SettingsError(f"{name}: AccountKey is not a base64 key; copy the key from the account's Access keys page")
    return StorageConnection(connection_string=value)


def _staging_connection(reader: _Reader) -> StorageConnection:
    connection_string = reader.raw(STAGING_CONNECTION)
    blob_name, queue_name = f"{STAGING_CONNECTION}__blobServiceUri", f"{STAGING_CONNECTION}__queueServiceUri"
    blob_uri = reader.raw(blob_name)
    queue_uri = reader.raw(queue_name)
    if connection_string:
        return _connection_string(connection_string)
    if not blob_uri or not queue_uri:
        raise SettingsError(
            f"{STAGING_CONNECTION}: set {blob_name} and {queue_name} "
            f"(identity-based, in Azure) or {STAGING_CONNECTION} to a connection string (local development)"
        )
    for name, uri, service in ((blob_name, blob_uri, "blob"), (queue_name, queue_uri, "queue")):
        parts, _ = _checked_url(name, uri, fix=f"set it to a URL like https://<account>.{service}.core.windows.net")
        if parts.query or parts.fragment:
            raise SettingsError(f"{name}: {quoted(uri)} is not a service URL like https://<account>.{service}.core.windows.net")
        if parts.scheme == "http" and not is_loopback_url(uri):
            raise SettingsError(f"{name}: plain http is only allowed for a local emulator; use https")
    credential = reader.raw(f"{STAGING_CONNECTION}__credential")
    if credential is not None and credential.lower() != "managedidentity":
        raise SettingsError(
            f"{STAGING_CONNECTION}__credential: {quoted(credential)} is not 'managedidentity'; set it to managedidentity "
            "or leave it out (DefaultAzureCredential)"
        )
    client_id = _optional_guid(reader, f"{STAGING_CONNECTION}__clientId", "a client id")
    return StorageConnection(
        blob_service_uri=blob_uri,
        queue_service_uri=queue_uri,
        credential=credential and "managedidentity",
        client_id=client_id,
    )


def _kusto_uri(reader: _Reader) -> str:
    example = "https://ingest-<cluster>.<region>.kusto.windows.net"
    uri = reader.raw("KUSTO_INGEST_URI")
    if uri is None:
        raise SettingsError(f"KUSTO_INGEST_URI: missing; set it to {example}")
    parts, _ = _checked_url("KUSTO_INGEST_URI", uri, fix=f"set it to a URL like {example}")
    if parts.query or parts.fragment:
        raise SettingsError(f"KUSTO_INGEST_URI: {quoted(uri)} is not a URL like {example}")
    if parts.scheme == "http" and not is_loopback_url(uri):
        raise SettingsError("KUSTO_INGEST_URI: plain http is only allowed for the local emulator; use https")
    return uri.rstrip("/")


def _token_scope(reader: _Reader, ingest_uri: str) -> str:
    scope = reader.text("KUSTO_TOKEN_SCOPE", f"{ingest_uri}/.default")
    if not URL_TEXT.fullmatch(scope):
        raise SettingsError(
            f"KUSTO_TOKEN_SCOPE: {quoted(scope)} is not one scope (printable ASCII without spaces); set it like "
            "https://kusto.kusto.windows.net/.default or leave it empty"
        )
    return scope


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON text, counted without recursion (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _read_rules_file(raw: str) -> str:
    """The text of a rules file: a regular file of at most ROUTING_RULES_MAX_BYTES, UTF-8 (a BOM is allowed)."""
    try:
        # Non-blocking open: a FIFO must not hang the start-up before fstat can refuse it.
        descriptor = os.open(raw, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(descriptor, "rb") as file:
            regular = stat.S_ISREG(os.fstat(file.fileno()).st_mode)
            data = file.read(ROUTING_RULES_MAX_BYTES + 1) if regular else b""
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise SettingsError(f"ROUTING_RULES: cannot read rules file {quoted(raw)}: {reason}") from None
    except ValueError:  # a NUL or an unencodable character in the path
        raise SettingsError(f"ROUTING_RULES: {quoted(raw)} is neither inline JSON nor a usable file path") from None
    if not regular:
        raise SettingsError(f"ROUTING_RULES: {quoted(raw)} is not a regular file; point it at a JSON rules file")
    if len(data) > ROUTING_RULES_MAX_BYTES:
        raise SettingsError(f"ROUTING_RULES: rules file {quoted(raw)} is larger than {ROUTING_RULES_MAX_BYTES} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SettingsError(f"ROUTING_RULES: rules file {quoted(raw)} is not UTF-8 text; save it as UTF-8") from None


def _routing_rules(reader: _Reader) -> tuple[Mapping[str, Any], ...]:
    raw = reader.raw("ROUTING_RULES")
    if raw is None:
        return ()
    if raw.startswith(("[", "{")):
        text, origin = raw, "inline JSON"
    else:
        text, origin = _read_rules_file(raw), f"file {quoted(raw)}"
    if _json_depth(text) > ROUTING_RULES_MAX_DEPTH:
        raise SettingsError(
            f"ROUTING_RULES: {origin} nests arrays and objects more than {ROUTING_RULES_MAX_DEPTH} deep; "
            "write rules as a flat array of objects"
        )
    try:
        rules = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise SettingsError(f"ROUTING_RULES: {origin} is not valid JSON ({error.msg} at line {error.lineno})") from None
    except _DuplicateKeyError as error:
        raise SettingsError(f"ROUTING_RULES: {origin} repeats the key {quoted(str(error))} in one object; keep one") from None
    except RecursionError:  # not reached after the depth check, kept so that no traceback can name no setting
        raise SettingsError(f"ROUTING_RULES: {origin} nests too deeply; write rules as a flat array of objects") from None
    except ValueError:
        # NaN/Infinity, or a number too long for Python to convert (more than 4300 digits).
        raise SettingsError(
            f"ROUTING_RULES: {origin} holds a number that is not plain JSON (NaN, Infinity or over 4300 digits)"
        ) from None
    if isinstance(rules, dict) and "rules" in rules:
        rules = rules["rules"]
    if not isinstance(rules, list):
        raise SettingsError(f"ROUTING_RULES: {origin} must be a JSON array of rules")
    return tuple(rules)


def _allowed_targets(reader: _Reader) -> tuple[str, ...]:
    raw = reader.text("ALLOWED_TARGETS", "*")
    if raw == "*":
        return ("*",)
    targets = tuple(item.strip(_ASCII_SPACE) for item in raw.split(",") if item.strip(_ASCII_SPACE))
    for target in targets:
        if not _TARGET_CHARACTERS.fullmatch(target) or "." not in target[1:-1]:
            raise SettingsError(
                f"ALLOWED_TARGETS: {quoted(target)} is not a 'database.table' pattern (use * and ? as wildcards, "
                "for example 'Telemetry.*')"
            )
    if not targets:
        raise SettingsError("ALLOWED_TARGETS: empty; use * to allow every target or list database.table patterns")
    return targets


def _webhook_url(reader: _Reader, local: bool) -> str:
    """The alert webhook. `local`: the staging storage is on this machine (Azurite), the app's test for "not in Azure".

    In Azure the webhook must be https and must not point at this machine; locally, plain http is allowed to a
    receiver on loopback. Metadata, link-local and other addresses no receiver has are refused everywhere.
    """
    name = "ALERT_WEBHOOK_URL"
    url = reader.raw(name)
    if url is None:
        return ""
    # The URL itself may be the secret (Slack, Teams workflows), so the errors below never quote it.
    parts, host = _checked_url(name, url, fix="set it to the https address your chat tool gave you", secret=True)
    loopback = is_loopback_url(url) or host.endswith(".localhost")
    if parts.scheme == "http" and not local:
        raise SettingsError(f"{name}: plain http is refused in Azure ({STAGING_CONNECTION} is not local storage); use https")
    if parts.scheme == "http" and not loopback:
        raise SettingsError(f"{name}: plain http is only allowed for a local receiver on this machine; use https")
    if loopback and not local:
        raise SettingsError(
            f"{name}: {host} is this machine, allowed only in local development ({STAGING_CONNECTION} on Azurite); "
            "use the receiver's https address"
        )
    return url


def _webhook_secret(reader: _Reader) -> str:
    secret = reader.raw("ALERT_WEBHOOK_SECRET") or ""
    try:
        secret.encode("utf-8")
    except UnicodeEncodeError:
        # Never quoted: it is a key.
        raise SettingsError("ALERT_WEBHOOK_SECRET: holds characters that are not valid Unicode text; set a new key") from None
    return secret


def _webhook(reader: _Reader, local: bool) -> dict[str, str]:
    """The webhook's settings, one feature: with an invalid format or secret the webhook is not used at all (never
    sent unsigned, or in a shape its receiver refuses)."""
    return {
        "alert_webhook_url": _webhook_url(reader, local),
        "alert_webhook_format": reader.choice("ALERT_WEBHOOK_FORMAT", "json", WEBHOOK_FORMATS),
        "alert_webhook_secret": _webhook_secret(reader),
    }


def _quarantine_container(reader: _Reader, staging_container: str) -> str:
    quarantine = reader.container("QUARANTINE_CONTAINER", "")
    if quarantine == staging_container:
        raise SettingsError("QUARANTINE_CONTAINER: must differ from STAGING_CONTAINER (quarantined blobs would be re-ingested)")
    return quarantine


def _outcome_settings(reader: _Reader, staging_container: str, local: bool) -> dict[str, Any]:
    """Settings of the outcome tracker, blob outcomes and alert sinks (validated together: some depend on others)."""
    initial = reader.number("TRACKING_POLL_INITIAL_SECONDS", 10, 1, 3600)
    longest = reader.number("TRACKING_POLL_MAX_SECONDS", 300, 1, 24 * 3600)
    if longest < initial:
        raise SettingsError(
            f"TRACKING_POLL_MAX_SECONDS: {longest} is below TRACKING_POLL_INITIAL_SECONDS ({initial}); raise it or lower that"
        )
    quarantine = reader.optional("quarantine", "", lambda: _quarantine_container(reader, staging_container))
    state = reader.container("STATE_CONTAINER", "ingest-state")
    if state == staging_container:
        raise SettingsError("STATE_CONTAINER: must differ from STAGING_CONTAINER and QUARANTINE_CONTAINER")
    if quarantine and quarantine == state:
        # Blamed on the optional setting, so that it turns off quarantine only.
        quarantine = reader.disable(
            "quarantine", "", SettingsError("QUARANTINE_CONTAINER: must differ from STATE_CONTAINER (the app's own state)")
        )
    dead_letter = reader.container("DEAD_LETTER_CONTAINER", "ingest-deadletter")
    if dead_letter in (staging_container, state, quarantine):
        # Housekeeping deletes every blob of this container once it has read it.
        raise SettingsError("DEAD_LETTER_CONTAINER: must differ from STAGING_CONTAINER, STATE_CONTAINER and QUARANTINE_CONTAINER")
    return {
        "track_schedule": _timer_schedule(reader, "track_timer", "TRACK_SCHEDULE", "*/15 * * * * *"),
        "tracking_horizon_seconds": reader.number("TRACKING_HORIZON_SECONDS", 6 * 3600, 1, 7 * 24 * 3600),
        "tracking_poll_initial_seconds": initial,
        "tracking_poll_max_seconds": longest,
        "tracking_max_per_run": reader.number("TRACKING_MAX_PER_RUN", 512, 1, 100_000),
        "resubmit_max_attempts": reader.number("RESUBMIT_MAX_ATTEMPTS", 3, 0, 100),
        "quarantine_container": quarantine,
        "delete_on_success": reader.optional("delete_on_success", False, lambda: reader.flag("DELETE_ON_SUCCESS", False)),
        **reader.optional("webhook", {"alert_webhook_url": ""}, lambda: _webhook(reader, local)),
        "alert_digest_window_seconds": reader.optional(
            "digest", 0, lambda: reader.number("ALERT_DIGEST_WINDOW_SECONDS", 900, 0, 7 * 24 * 3600)
        ),
        "state_container": state,
        "duplicate_window_seconds": reader.number("DUPLICATE_WINDOW_SECONDS", 3600, 300, 7 * 24 * 3600),
        "housekeeping_schedule": _timer_schedule(reader, "housekeeping_timer", "HOUSEKEEPING_SCHEDULE", "0 * * * * *"),
        "dead_letter_container": dead_letter,
        **reader.optional("reconcile_timer", {}, lambda: _reconcile(reader)),
    }


def _reconcile(reader: _Reader) -> dict[str, Any]:
    """The reconciliation timer's settings: the grace must leave a window to look in."""
    lookback = reader.number("RECONCILE_LOOKBACK_SECONDS", 24 * 3600, 600, 7 * 24 * 3600)
    grace = reader.number("RECONCILE_GRACE_SECONDS", 1800, 0, 24 * 3600)
    if grace >= lookback:
        raise SettingsError(
            f"RECONCILE_GRACE_SECONDS: {grace} leaves nothing to look at within RECONCILE_LOOKBACK_SECONDS ({lookback}); "
            "make the grace shorter than the look-back"
        )
    return {
        "reconcile_schedule": reader.schedule("RECONCILE_SCHEDULE", "0 */30 * * * *"),
        "reconcile_lookback_seconds": lookback,
        "reconcile_grace_seconds": grace,
    }


def load_settings(values: Mapping[str, str] | None = None, *, disable_invalid_features: bool = False) -> Settings:
    """Read and validate every setting from `values` (default: the process environment).

    Every invalid value raises SettingsError, one line naming the setting: the checks below name it themselves,
    and any other error a hostile value might still raise while being parsed is turned into one naming the
    setting being read. With `disable_invalid_features` (the worker), an invalid setting of one of the
    `FEATURES` does not raise: the feature is off and `Settings.disabled` says why.
    """
    reader = _Reader(values, disable_invalid_features)
    try:
        return _load(reader)
    except _UNREADABLE as error:
        raise _unreadable(reader.current, error) from None


def blob_trigger_source_at_indexing(values: Mapping[str, str] | None = None) -> str:
    """The blob trigger's source, for `function_app.py` to index with: BLOB_TRIGGER_SOURCE alone is read, and an
    invalid value gives `BLOB_TRIGGER_FALLBACK` instead of an error, so that the app is always indexed (the
    worker then fails every run of the blob trigger with the reason, `Settings.disabled["blob_trigger"]`)."""
    try:
        return _blob_trigger_source(_Reader(values))
    except _UNREADABLE:
        return BLOB_TRIGGER_FALLBACK


def _blob_trigger_source(reader: _Reader) -> str:
    return reader.choice("BLOB_TRIGGER_SOURCE", BLOB_TRIGGER_FALLBACK, BLOB_TRIGGER_SOURCES)


def _timer_schedule(reader: _Reader, feature: str, name: str, default: str) -> str:
    """A timer's schedule: only that timer needs it (the host reads it from `%NAME%`), so it is one of the `FEATURES`."""
    return reader.optional(feature, default, lambda: reader.schedule(name, default))


def _kusto_settings(reader: _Reader) -> dict[str, Any]:
    """Where Kusto is and who the app is to it."""
    ingest_uri = _kusto_uri(reader)
    credential = reader.choice("KUSTO_CREDENTIAL", "managedidentity", KUSTO_CREDENTIALS)
    if credential == "none" and not is_loopback_url(ingest_uri):
        raise SettingsError("KUSTO_CREDENTIAL: 'none' is only allowed with a local emulator (a loopback KUSTO_INGEST_URI)")
    return {
        "kusto_ingest_uri": ingest_uri,
        "kusto_credential": credential,
        "managed_identity_client_id": _optional_guid(reader, "MANAGED_IDENTITY_CLIENT_ID", "a client id"),
        "kusto_token_scope": _token_scope(reader, ingest_uri),
        "kusto_request_timeout_seconds": reader.number("KUSTO_REQUEST_TIMEOUT_SECONDS", 30.0, 1, 600, integer=False),
    }


def _blob_access_settings(reader: _Reader, staging: StorageConnection, local: bool) -> dict[str, Any]:
    """How Kusto may read a staged blob (BLOB_ACCESS and what each mode needs)."""
    blob_access = reader.choice("BLOB_ACCESS", "managed_identity", BLOB_ACCESS_MODES)
    if blob_access == "account_key_sas":
        if staging.account_key() is None:
            raise SettingsError(
                "BLOB_ACCESS: 'account_key_sas' needs StagingStorage to be a connection string with an AccountKey"
            )
        if not local:
            raise SettingsError(
                "BLOB_ACCESS: 'account_key_sas' is for local storage only; use managed_identity or user_delegation_sas in Azure"
            )
    identity = reader.text("BLOB_ACCESS_IDENTITY", "system")
    if identity != "system":
        _guid("BLOB_ACCESS_IDENTITY", identity, "'system' nor an object id")
    return {
        "blob_access": blob_access,
        "blob_access_identity": identity,
        "sas_lifetime_minutes": reader.number("SAS_LIFETIME_MINUTES", 360, 5, 7 * 24 * 60),
    }


def _queue_names(reader: _Reader) -> dict[str, Any]:
    queues = {
        "pending_queue": reader.queue("PENDING_QUEUE", "ingest-pending"),
        "failures_queue": reader.queue("FAILURES_QUEUE", "ingest-failures"),
        "tracking_queue": reader.queue("TRACKING_QUEUE", "ingest-tracking"),
    }
    if len(set(queues.values())) != len(queues):
        raise SettingsError("PENDING_QUEUE, FAILURES_QUEUE and TRACKING_QUEUE must be three different queues")
    return queues


def _submission_settings(reader: _Reader) -> dict[str, Any]:
    """The submission timer's: its schedule and pace, the mode and, in queue mode, what Kusto reports back."""
    submission_mode = reader.choice("SUBMISSION_MODE", "rest", SUBMISSION_MODES)
    report_level = reader.choice("REPORT_LEVEL", "FailuresOnly", REPORT_LEVELS)
    report_method = reader.choice("REPORT_METHOD", "Queue", REPORT_METHODS)
    if submission_mode == "queue":
        check_queue_report_settings(report_level, report_method)
    return {
        "submission_mode": submission_mode,
        "report_level": report_level,
        "report_method": report_method,
        "submit_schedule": _timer_schedule(reader, "submit_timer", "SUBMIT_SCHEDULE", "*/10 * * * * *"),
        "drain_time_budget_seconds": reader.number("DRAIN_TIME_BUDGET_SECONDS", 60.0, 1, 3600, integer=False),
        "submit_concurrency": reader.number("SUBMIT_CONCURRENCY", 8, 1, 64),
        "max_blobs_per_batch": reader.number("MAX_BLOBS_PER_BATCH", 20, 1, 1000),
        "pending_visibility_timeout_seconds": reader.number("PENDING_VISIBILITY_TIMEOUT_SECONDS", 300, 5, 7 * 24 * 3600),
        "pending_max_dequeue_count": reader.number("PENDING_MAX_DEQUEUE_COUNT", 5, 1, 100),
        "pending_max_age_seconds": reader.number("PENDING_MAX_AGE_SECONDS", 21600, 60, 6 * 24 * 3600),
    }


def _load(reader: _Reader) -> Settings:
    staging = _staging_connection(reader)
    local = is_loopback_url(staging.blob_endpoint())
    kusto = _kusto_settings(reader)
    container = reader.container("STAGING_CONTAINER", "staging")
    settings = Settings(
        staging=staging,
        staging_container=container,
        blob_trigger_source=reader.optional("blob_trigger", BLOB_TRIGGER_FALLBACK, lambda: _blob_trigger_source(reader)),
        **kusto,
        **_blob_access_settings(reader, staging, local),
        **_queue_names(reader),
        **_submission_settings(reader),
        routing_rules=_routing_rules(reader),
        allowed_targets=_allowed_targets(reader),
        **_outcome_settings(reader, container, local),
        disabled=dict(reader.disabled),
    )
    if settings.duplicate_window_seconds < settings.pending_visibility_timeout_seconds:
        # A pending message held by a run that died comes back after the visibility timeout: the ledger must still know it.
        raise SettingsError(
            f"DUPLICATE_WINDOW_SECONDS: {settings.duplicate_window_seconds} is below PENDING_VISIBILITY_TIMEOUT_SECONDS "
            f"({settings.pending_visibility_timeout_seconds}); raise it or lower that"
        )
    if settings.duplicate_window_seconds < settings.sending_lease_seconds:
        # A chunk a dead run was sending is judged once its lease has passed: the ledger must still know it then.
        raise SettingsError(
            f"DUPLICATE_WINDOW_SECONDS: {settings.duplicate_window_seconds} is below DRAIN_TIME_BUDGET_SECONDS + "
            f"{SENDING_LEASE_MARGIN_SECONDS} ({settings.sending_lease_seconds:g}); raise it or lower the budget"
        )
    return settings
