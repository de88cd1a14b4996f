"""One typed settings object, read once when the worker starts.

Every setting the app reads is named here and nowhere else (the README table, `local.settings.example.json`
and the Bicep app settings are checked against `SETTING_NAMES` by the drift test). A missing or invalid
value raises `SettingsError` naming the setting and the fix, so a misconfigured deployment fails at start-up
with one readable line instead of failing blob by blob later.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

STAGING_CONNECTION = "StagingStorage"
"""Connection-name prefix of the staging storage account (blobs and the app's queues)."""

SUBMISSION_MODES = ("rest", "queue")
KUSTO_CREDENTIALS = ("managedidentity", "default", "none")
BLOB_ACCESS_MODES = ("managed_identity", "user_delegation_sas", "account_key_sas")
BLOB_TRIGGER_SOURCES = ("EventGrid", "LogsAndContainerScan")
REPORT_LEVELS = ("FailuresOnly", "None", "FailuresAndSuccesses")
REPORT_METHODS = ("Queue", "Table", "QueueAndTable")
WEBHOOK_FORMATS = ("json", "teams", "slack")
SENDING_LEASE_MARGIN_SECONDS = 60

# Queue names follow Azure's rules: 3-63 characters, lowercase letters, digits and single hyphens.
_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
_CONTAINER_NAME = _QUEUE_NAME
_TARGET_PATTERN = re.compile(r"^[A-Za-z0-9_.\- *?]+\.[A-Za-z0-9_.\- *?]+$")


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
        """The account key inside a connection string, if any (only local Azurite should have one)."""
        if not self.connection_string:
            return None
        parts = _connection_string_parts(self.connection_string)
        return parts.get("accountkey")

    def blob_endpoint(self) -> str:
        """The blob service endpoint, whichever way the connection is given."""
        if self.blob_service_uri:
            return self.blob_service_uri.rstrip("/")
        parts = _connection_string_parts(self.connection_string or "")
        if "blobendpoint" in parts:
            return parts["blobendpoint"].rstrip("/")
        if parts.get("usedevelopmentstorage", "").lower() == "true":
            return "http://127.0.0.1:10000/devstoreaccount1"
        account = parts.get("accountname", "")
        protocol = parts.get("defaultendpointsprotocol", "https")
        suffix = parts.get("endpointsuffix", "core.windows.net")
        return f"{protocol}://{account}.blob.{suffix}"


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
}


def _connection_string_parts(value: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in value.split(";"):
        if "=" in item:
            key, _, val = item.partition("=")
            parts[key.strip().lower()] = val.strip()
    return parts


def is_loopback_url(url: str) -> bool:
    """True when the URL points at this machine: the only place keyless access is allowed."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Reader:
    """Reads raw values and turns bad ones into SettingsError with the setting's name."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def raw(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default)
        for option in allowed:
            if value.lower() == option.lower():
                return option
        raise SettingsError(f"{name}: {value!r} is not one of {', '.join(allowed)}")

    def number(self, name: str, default: float, low: float, high: float, integer: bool = True) -> Any:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            kind = "a whole number" if integer else "a number"
            raise SettingsError(f"{name}: {raw!r} is not {kind}; set it to {kind} from {low} to {high}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}: {value} is out of range; set it from {low} to {high}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.raw(name)
        if raw is None:
            return default
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise SettingsError(f"{name}: {raw!r} is not a boolean; set it to true or false")

    def schedule(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if len(value.split()) not in (5, 6):
            raise SettingsError(f"{name}: {value!r} is not an NCRONTAB expression ('*/10 * * * * *' = every 10 s)")
        return value

    def container(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if value and not _CONTAINER_NAME.match(value):
            raise SettingsError(f"{name}: {value!r} is not a valid container name (3-63 lowercase letters, digits, hyphens)")
        return value

    def queue(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not _QUEUE_NAME.match(value) or len(value) > 63 - len("-poison"):
            raise SettingsError(
                f"{name}: {value!r} is not a valid queue name (3-56 lowercase letters, digits and single hyphens, "
                "so that '<name>-poison' is valid too)"
            )
        return value


def _staging_connection(reader: _Reader) -> StorageConnection:
    connection_string = reader.raw(STAGING_CONNECTION)
    blob_uri = reader.raw(f"{STAGING_CONNECTION}__blobServiceUri")
    queue_uri = reader.raw(f"{STAGING_CONNECTION}__queueServiceUri")
    if connection_string:
        if "=" not in connection_string:
            raise SettingsError(f"{STAGING_CONNECTION}: not a storage connection string (expected 'Key=Value;...' pairs)")
        return StorageConnection(connection_string=connection_string)
    if not blob_uri or not queue_uri:
        raise SettingsError(
            f"{STAGING_CONNECTION}: set {STAGING_CONNECTION}__blobServiceUri and {STAGING_CONNECTION}__queueServiceUri "
            f"(identity-based, in Azure) or {STAGING_CONNECTION} to a connection string (local development)"
        )
    for name, uri in ((f"{STAGING_CONNECTION}__blobServiceUri", blob_uri), (f"{STAGING_CONNECTION}__queueServiceUri", queue_uri)):
        parts = urlsplit(uri)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.query:
            raise SettingsError(f"{name}: {uri!r} is not a service URL like https://<account>.blob.core.windows.net")
        if parts.scheme == "http" and not is_loopback_url(uri):
            raise SettingsError(f"{name}: plain http is only allowed for a local emulator; use https")
    return StorageConnection(
        blob_service_uri=blob_uri,
        queue_service_uri=queue_uri,
        credential=reader.raw(f"{STAGING_CONNECTION}__credential"),
        client_id=reader.raw(f"{STAGING_CONNECTION}__clientId"),
    )


def _kusto_uri(reader: _Reader) -> str:
    uri = reader.raw("KUSTO_INGEST_URI")
    if uri is None:
        raise SettingsError("KUSTO_INGEST_URI: missing; set it to https://ingest-<cluster>.<region>.kusto.windows.net")
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise SettingsError(f"KUSTO_INGEST_URI: {uri!r} is not a URL like https://ingest-<cluster>.<region>.kusto.windows.net")
    if parts.scheme == "http" and not is_loopback_url(uri):
        raise SettingsError("KUSTO_INGEST_URI: plain http is only allowed for the local emulator; use https")
    return uri.rstrip("/")


def _routing_rules(reader: _Reader) -> tuple[Mapping[str, Any], ...]:
    raw = reader.raw("ROUTING_RULES")
    if raw is None:
        return ()
    if raw.lstrip().startswith(("[", "{")):
        text, origin = raw, "inline JSON"
    else:
        path = Path(raw)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise SettingsError(f"ROUTING_RULES: cannot read rules file {raw!r}: {error.strerror}") from None
        origin = f"file {raw!r}"
    try:
        rules = json.loads(text)
    except json.JSONDecodeError as error:
        raise SettingsError(f"ROUTING_RULES: {origin} is not valid JSON ({error.msg} at line {error.lineno})") from None
    if isinstance(rules, dict) and "rules" in rules:
        rules = rules["rules"]
    if not isinstance(rules, list):
        raise SettingsError(f"ROUTING_RULES: {origin} must be a JSON array of rules")
    return tuple(rules)


def _allowed_targets(reader: _Reader) -> tuple[str, ...]:
    raw = reader.text("ALLOWED_TARGETS", "*")
    if raw.strip() == "*":
        return ("*",)
    targets = tuple(item.strip() for item in raw.split(",") if item.strip())
    for target in targets:
        if not _TARGET_PATTERN.match(target):
            raise SettingsError(
                f"ALLOWED_TARGETS: {target!r} is not a 'database.table' pattern (use * and ? as wildcards, "
                "for example 'Telemetry.*')"
            )
    if not targets:
        raise SettingsError("ALLOWED_TARGETS: empty; use * to allow every target or list database.table patterns")
    return targets


def _webhook_url(reader: _Reader) -> str:
    url = reader.raw("ALERT_WEBHOOK_URL")
    if url is None:
        return ""
    parts = urlsplit(url)
    # The URL itself may be the secret (Slack, Teams workflows), so the errors below never quote it.
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SettingsError("ALERT_WEBHOOK_URL: not an http(s) URL; set it to the webhook address your chat tool gave you")
    if parts.scheme == "http" and not is_loopback_url(url):
        raise SettingsError("ALERT_WEBHOOK_URL: plain http is only allowed for a local receiver; use https")
    return url


def _outcome_settings(reader: _Reader, staging_container: str) -> dict[str, Any]:
    """Settings of the outcome tracker, blob outcomes and alert sinks (validated together: some depend on others)."""
    initial = reader.number("TRACKING_POLL_INITIAL_SECONDS", 10, 1, 3600)
    longest = reader.number("TRACKING_POLL_MAX_SECONDS", 300, 1, 24 * 3600)
    if longest < initial:
        raise SettingsError(
            f"TRACKING_POLL_MAX_SECONDS: {longest} is below TRACKING_POLL_INITIAL_SECONDS ({initial}); raise it or lower that"
        )
    quarantine = reader.container("QUARANTINE_CONTAINER", "")
    if quarantine == staging_container:
        raise SettingsError("QUARANTINE_CONTAINER: must differ from STAGING_CONTAINER (quarantined blobs would be re-ingested)")
    state = reader.container("STATE_CONTAINER", "ingest-state")
    if state in (staging_container, quarantine):
        raise SettingsError("STATE_CONTAINER: must differ from STAGING_CONTAINER and QUARANTINE_CONTAINER")
    return {
        "track_schedule": reader.schedule("TRACK_SCHEDULE", "*/15 * * * * *"),
        "tracking_horizon_seconds": reader.number("TRACKING_HORIZON_SECONDS", 6 * 3600, 1, 7 * 24 * 3600),
        "tracking_poll_initial_seconds": initial,
        "tracking_poll_max_seconds": longest,
        "tracking_max_per_run": reader.number("TRACKING_MAX_PER_RUN", 512, 1, 100_000),
        "resubmit_max_attempts": reader.number("RESUBMIT_MAX_ATTEMPTS", 3, 0, 100),
        "quarantine_container": quarantine,
        "delete_on_success": reader.flag("DELETE_ON_SUCCESS", False),
        "alert_webhook_url": _webhook_url(reader),
        "alert_webhook_format": reader.choice("ALERT_WEBHOOK_FORMAT", "json", WEBHOOK_FORMATS),
        "alert_webhook_secret": reader.raw("ALERT_WEBHOOK_SECRET") or "",
        "alert_digest_window_seconds": reader.number("ALERT_DIGEST_WINDOW_SECONDS", 900, 0, 7 * 24 * 3600),
        "state_container": state,
        "duplicate_window_seconds": reader.number("DUPLICATE_WINDOW_SECONDS", 3600, 300, 7 * 24 * 3600),
        "housekeeping_schedule": reader.schedule("HOUSEKEEPING_SCHEDULE", "0 * * * * *"),
    }


def load_settings(values: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting from `values` (default: the process environment)."""
    reader = _Reader(os.environ if values is None else values)
    staging = _staging_connection(reader)
    ingest_uri = _kusto_uri(reader)
    container = reader.text("STAGING_CONTAINER", "staging")
    if not _CONTAINER_NAME.match(container):
        raise SettingsError(
            f"STAGING_CONTAINER: {container!r} is not a valid container name (3-63 lowercase letters, digits, hyphens)"
        )
    credential = reader.choice("KUSTO_CREDENTIAL", "managedidentity", KUSTO_CREDENTIALS)
    if credential == "none" and not is_loopback_url(ingest_uri):
        raise SettingsError("KUSTO_CREDENTIAL: 'none' is only allowed with a local emulator (a loopback KUSTO_INGEST_URI)")
    blob_access = reader.choice("BLOB_ACCESS", "managed_identity", BLOB_ACCESS_MODES)
    if blob_access == "account_key_sas":
        if staging.account_key() is None:
            raise SettingsError(
                "BLOB_ACCESS: 'account_key_sas' needs StagingStorage to be a connection string with an AccountKey"
            )
        if not is_loopback_url(staging.blob_endpoint()):
            raise SettingsError(
                "BLOB_ACCESS: 'account_key_sas' is for local storage only; use managed_identity or user_delegation_sas in Azure"
            )
    identity = reader.text("BLOB_ACCESS_IDENTITY", "system")
    if identity != "system" and not re.fullmatch(r"[0-9a-fA-F-]{36}", identity):
        raise SettingsError(f"BLOB_ACCESS_IDENTITY: {identity!r} is neither 'system' nor an object id (a GUID)")
    client_id = reader.raw("MANAGED_IDENTITY_CLIENT_ID")
    if client_id is not None and not re.fullmatch(r"[0-9a-fA-F-]{36}", client_id):
        raise SettingsError(f"MANAGED_IDENTITY_CLIENT_ID: {client_id!r} is not a client id (a GUID)")
    queues = {
        "pending_queue": reader.queue("PENDING_QUEUE", "ingest-pending"),
        "failures_queue": reader.queue("FAILURES_QUEUE", "ingest-failures"),
        "tracking_queue": reader.queue("TRACKING_QUEUE", "ingest-tracking"),
    }
    if len(set(queues.values())) != len(queues):
        raise SettingsError("PENDING_QUEUE, FAILURES_QUEUE and TRACKING_QUEUE must be three different queues")
    schedule = reader.text("SUBMIT_SCHEDULE", "*/10 * * * * *")
    if len(schedule.split()) not in (5, 6):
        raise SettingsError(f"SUBMIT_SCHEDULE: {schedule!r} is not an NCRONTAB expression ('*/10 * * * * *' = every 10 s)")
    settings = Settings(
        staging=staging,
        kusto_ingest_uri=ingest_uri,
        staging_container=container,
        blob_trigger_source=reader.choice("BLOB_TRIGGER_SOURCE", "EventGrid", BLOB_TRIGGER_SOURCES),
        submit_schedule=schedule,
        drain_time_budget_seconds=reader.number("DRAIN_TIME_BUDGET_SECONDS", 60.0, 1, 3600, integer=False),
        submit_concurrency=reader.number("SUBMIT_CONCURRENCY", 8, 1, 64),
        max_blobs_per_batch=reader.number("MAX_BLOBS_PER_BATCH", 20, 1, 1000),
        pending_visibility_timeout_seconds=reader.number("PENDING_VISIBILITY_TIMEOUT_SECONDS", 300, 5, 7 * 24 * 3600),
        pending_max_dequeue_count=reader.number("PENDING_MAX_DEQUEUE_COUNT", 5, 1, 100),
        pending_max_age_seconds=reader.number("PENDING_MAX_AGE_SECONDS", 21600, 60, 6 * 24 * 3600),
        kusto_token_scope=reader.text("KUSTO_TOKEN_SCOPE", f"{ingest_uri}/.default"),
        kusto_credential=credential,
        managed_identity_client_id=client_id,
        kusto_request_timeout_seconds=reader.number("KUSTO_REQUEST_TIMEOUT_SECONDS", 30.0, 1, 600, integer=False),
        blob_access=blob_access,
        blob_access_identity=identity,
        sas_lifetime_minutes=reader.number("SAS_LIFETIME_MINUTES", 360, 5, 7 * 24 * 60),
        routing_rules=_routing_rules(reader),
        allowed_targets=_allowed_targets(reader),
        submission_mode=reader.choice("SUBMISSION_MODE", "rest", SUBMISSION_MODES),
        report_level=reader.choice("REPORT_LEVEL", "FailuresOnly", REPORT_LEVELS),
        report_method=reader.choice("REPORT_METHOD", "Queue", REPORT_METHODS),
        **queues,
        **_outcome_settings(reader, container),
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
