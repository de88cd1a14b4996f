"""Typed errors of the Kusto ingestion endpoint: the caller decides what to do from the type, never the text.

A failed request is either *transient* (throttling, a server error, a timeout, a dropped connection: the
same request may succeed later, so the blobs wait in the pending queue) or *permanent* (the request itself
is wrong: retrying cannot help, so every blob becomes a failure notification). A transient failure with no
answer at all is *uncertain*: the request may have reached Kusto, which the submission ledger must know.
Kusto answers 4xx/5xx with a OneApi body (`{"error": {"code", "message", "@message", "@permanent", ...}}`),
parsed here once. Every message is redacted: an error body may echo a blob URL with its SAS.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypedDict

from shared.redaction import redact

# Answers that always mean "this request, as sent, will never succeed": a bad request, a refused caller, no such target.
_PERMANENT_STATUS = frozenset({400, 403, 404})
# Answers that always mean "ask again later", whatever the body says.
_TRANSIENT_STATUS = frozenset({408, 429})


class KustoError(Exception):
    """A request to the Kusto ingestion endpoint failed."""

    def __init__(self, message: str, *, status_code: int | None = None, code: str = "", activity_id: str = "") -> None:
        super().__init__(redact(message))
        self.status_code = status_code
        self.code = code
        self.activity_id = activity_id


class TransientKustoError(KustoError):
    """The request may succeed later (throttled, server error, timeout, connection lost)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class UncertainKustoError(TransientKustoError):
    """The request went out and no answer came back (a read timeout, a dropped connection): Kusto may have taken it."""


class KustoAuthError(TransientKustoError):
    """Kusto refused our identity (401) or no token could be had: the blobs wait, an operator must act."""


class PermanentKustoError(KustoError):
    """Kusto rejected the request as sent (400/403/404 or `@permanent: true`); retrying cannot help."""


def _error_object(body: str) -> Mapping[str, Any]:
    """The `error` object of a OneApi body (plain or wrapped in a one-item array), or {} if there is none."""
    try:
        document = json.loads(body)
    except (ValueError, TypeError):
        return {}
    if isinstance(document, list) and document:
        document = document[0]
    if isinstance(document, Mapping) and isinstance(document.get("error"), Mapping):
        return document["error"]
    return {}


def error_from_response(
    status_code: int, body: str, *, retry_after: float | None = None, activity_id: str = "", operation: str = "request"
) -> KustoError:
    """Classify a non-2xx answer; the error's text says what was asked, the status and Kusto's own words."""
    error = _error_object(body)
    code = str(error.get("code") or f"HTTP_{status_code}")
    detail = str(error.get("@message") or error.get("message") or body.strip()[:500] or "no error body")
    message = f"Kusto {operation} failed with HTTP {status_code} {code}: {detail}"
    if activity_id:
        message += f" (activity id {activity_id})"
    common = _Answer(status_code=status_code, code=code, activity_id=activity_id)
    if status_code == 401:
        return KustoAuthError(message + "; check KUSTO_CREDENTIAL and that the identity has the Table Ingestor role", **common)
    permanent = error.get("@permanent")
    if status_code in _TRANSIENT_STATUS:
        return TransientKustoError(message, retry_after=retry_after, **common)
    if status_code in _PERMANENT_STATUS or permanent is True:
        return PermanentKustoError(message, **common)
    if status_code >= 500 or permanent is False:
        return TransientKustoError(message, retry_after=retry_after, **common)
    # Any other 4xx: the request is wrong, and Kusto did not say otherwise.
    return PermanentKustoError(message, **common)


class _Answer(TypedDict):
    """What every KustoError made from an answer carries."""

    status_code: int
    code: str
    activity_id: str
