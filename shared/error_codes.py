"""Every error code the app writes into a failure notification or an alert record, in one place.

An error code is a contract: alert rules, dashboards and the README's alert table name it, so each one is a
constant here and every module that raises one imports it from here. The codes the app coins start with the
stage that raises them (`APP_PREFIXES`); the README test checks that its alert table lists exactly those. The
app also reports under Kusto's own names where Kusto has one for the same failure (a blob that is gone), and
names a request its own clients refuse to send the way Kusto would refuse it; those come last.
"""

from __future__ import annotations

APP_PREFIXES = ("Routing_", "Pending_", "Submission_", "Tracking_", "Poison_", "DeadLetter_", "Reconcile_", "Alert_")
"""The first word of every code the app coins: the stage (or the queue) that raises it."""

# -- blob trigger: a blob that cannot be routed (shared.routing, shared.recorder) -------------------------------
ROUTING_NO_ROUTE = "Routing_NoRoute"
ROUTING_UNKNOWN_FORMAT = "Routing_UnknownFormat"
ROUTING_EMPTY_BLOB = "Routing_EmptyBlob"
ROUTING_TARGET_NOT_ALLOWED = "Routing_TargetNotAllowed"
ROUTING_INVALID_NAME = "Routing_InvalidName"
ROUTING_INVALID_METADATA = "Routing_InvalidMetadata"
ROUTING_INVALID_CREATION_TIME = "Routing_InvalidCreationTime"
ROUTING_COMPRESSION_MISMATCH = "Routing_CompressionMismatch"
ROUTING_MESSAGE_TOO_LARGE = "Routing_MessageTooLarge"

# -- submission timer: the pending queue and Kusto's answers (shared.submission) ---------------------------------
PENDING_MALFORMED = "Pending_Malformed"
PENDING_REFUSED = "Pending_Refused"
SUBMISSION_TIMED_OUT = "Submission_TimedOut"
SUBMISSION_IN_DOUBT = "Submission_InDoubt"
SUBMISSION_REJECTED = "Submission_Rejected"
"""A rejected request whose error carries no code of Kusto's."""

# -- outcome tracker (shared.tracking) -------------------------------------------------------------------------
TRACKING_MALFORMED_RECORD = "Tracking_MalformedRecord"
TRACKING_REFUSED = "Tracking_Refused"
TRACKING_TIMED_OUT = "Tracking_TimedOut"
TRACKING_STATUS_FAILED = "Tracking_StatusFailed"

# -- housekeeping: poison queues (shared.poison) ----------------------------------------------------------------
POISON_PENDING_QUEUE = "Poison_PendingQueue"
POISON_TRACKING_QUEUE = "Poison_TrackingQueue"
POISON_BLOB_TRIGGER = "Poison_BlobTrigger"
POISON_FAILURES_QUEUE = "Poison_FailuresQueue"

# -- housekeeping: Event Grid dead letters (shared.dead_letters) ------------------------------------------------
DEAD_LETTER_RECOVERED = "DeadLetter_Recovered"
"""Logged (WARNING), not alerted: the blob was recorded as the blob trigger would have recorded it."""
DEAD_LETTER_BLOB_GONE = "DeadLetter_BlobGone"
DEAD_LETTER_FOREIGN = "DeadLetter_Foreign"
DEAD_LETTER_UNREADABLE = "DeadLetter_Unreadable"

# -- reconciliation timer (shared.reconcile) -----------------------------------------------------------------
RECONCILE_RECOVERED = "Reconcile_Recovered"
"""Logged (WARNING), not alerted: a staged blob the app never recorded (its event was lost) was recorded now."""

# -- failure queue trigger (shared.alerts) ----------------------------------------------------------------------
ALERT_MALFORMED_NOTIFICATION = "Alert_MalformedNotification"

# -- Kusto's own codes, reported or recognised by the app -------------------------------------------------------
DOWNLOAD_SOURCE_NOT_FOUND = "Download_SourceNotFound"
"""Kusto's code for a blob that is gone: the blob trigger reports a blob deleted before it was read under it, so one
alert rule covers the app's and Kusto's reports alike."""
INVALID_KUSTO_IDENTITY_TOKEN = "BadRequest_InvalidKustoIdentityToken"  # noqa: S105 - an error code, not a secret
"""Queue mode: the identity token a message carried expired or was refused (`shared.queue_relay` resubmits)."""
ENTITY_NAME_IS_NOT_VALID = "BadRequest_EntityNameIsNotValid"
"""A database or table name Kusto would refuse: the REST client refuses to send it, as Kusto would answer."""

# -- requests the app's own Kusto clients refuse to send (PermanentKustoError codes) -----------------------------
INVALID_REQUEST = "InvalidRequest"
INVALID_INGESTION_MESSAGE = "InvalidIngestionMessage"
INVALID_OPERATION_ID = "InvalidOperationId"
MISSING_OPERATION_ID = "MissingOperationId"
