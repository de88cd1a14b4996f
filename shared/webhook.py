"""Sends alerts to a webhook: generic JSON, a Microsoft Teams workflow (Adaptive Card) or Slack (blocks).

The log record written by `shared.alerts` is the alert of record; the webhook is how a human hears about it.
Requests go through an azure-core `PipelineClient` whose `RetryPolicy` retries 5xx answers, 429 with
Retry-After and connection errors; there is no second retry loop here. When the retries run out,
`WebhookError` is raised so that the queue trigger retries the whole failure message later and, if the
webhook stays down, the message reaches the poison queue, which alerts by itself (`shared.poison`).

Every text taken from the alert is redacted and has its control and bidi characters escaped
(`shared.redaction.clean`) here too, whoever built the dimensions: a chat message never shows a secret, and
a crafted blob name cannot add lines to it or reorder its text.

The webhook URL is treated as a secret (a Slack URL or a Teams workflow URL carries its key in the path or
the query), so errors and logs name only its host. azure-core's `HttpLoggingPolicy` is left out on purpose:
it would log the URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from azure.core import PipelineClient
from azure.core.exceptions import AzureError
from azure.core.pipeline.policies import HeadersPolicy, RetryPolicy, UserAgentPolicy
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest

from shared.redaction import clean
from shared.transport import EnvironmentOnceTransport
from shared.url_checks import Resolver, resolved_address_problem, system_resolver

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Signature-SHA256"
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 15
RETRY_TOTAL = 3
RETRY_BACKOFF_SECONDS = 0.5
USER_AGENT = "kusto-blob-ingest-alerts"

# Chat tools cut long texts or reject them; these limits keep a payload valid (Slack: 150/3000 characters).
_TITLE_LIMIT = 150
_DETAILS_LIMIT = 2800
_SAMPLES_SHOWN = 10


class WebhookError(RuntimeError):
    """The webhook did not accept an alert after the pipeline's retries (the text names only the host)."""


@dataclass(frozen=True)
class AlertContent:
    """What one webhook message says: one alert, or a digest of `count` more alerts like `dimensions`.

    `dimensions` are an alert's dimensions (`alert.schema.json`, built by `shared.alerts`): already
    redacted, escaped and cut to size, and present even for a malformed notification. Every text read from
    them is cleaned again all the same (`_text`).
    """

    dimensions: Mapping[str, Any]
    count: int = 1
    samples: tuple[str, ...] = ()
    window_start: str = ""
    window_end: str = ""

    @property
    def is_digest(self) -> bool:
        return bool(self.window_end)

    @property
    def title(self) -> str:
        d = self.dimensions
        target = f"{d.get('database') or '?'}.{d.get('table') or '?'}"
        if self.is_digest:
            return _text(f"{self.count} more ingestion failure(s): {d['errorCode']} on {target}")[:_TITLE_LIMIT]
        return _text(f"Ingestion failure: {d['errorCode']} on {target}")[:_TITLE_LIMIT]

    def facts(self) -> list[tuple[str, str]]:
        """Label/value pairs shown by every format, in a fixed order; empty values are left out."""
        d = self.dimensions
        pairs = [
            ("Error code", d.get("errorCode", "")),
            ("Failure status", d.get("failureStatus", "")),
            ("Origin", d.get("origin", "")),
            ("Database", d.get("database", "")),
            ("Table", d.get("table", "")),
        ]
        if self.is_digest:
            pairs += [("Failures", str(self.count)), ("Window", f"{self.window_start} .. {self.window_end}")]
        else:
            pairs += [
                ("Blob", d.get("blobPath", "") or d.get("blobName", "")),
                ("Operation id", d.get("operationId", "")),
                ("Failed on", d.get("failedOn", "")),
            ]
        return [(label, _text(value)) for label, value in pairs if value]

    @property
    def details(self) -> str:
        return _text(self.dimensions.get("details", ""))[:_DETAILS_LIMIT]

    @property
    def shown_samples(self) -> list[str]:
        return [_text(sample) for sample in self.samples[:_SAMPLES_SHOWN]]


def _text(value: Any) -> str:
    """A value shown in a webhook message: text, credentials redacted, control and bidi characters escaped."""
    return clean("" if value is None else str(value))


def json_payload(alert: AlertContent) -> dict[str, Any]:
    """The generic shape: flat fields a script or a monitoring tool can read without parsing text."""
    d = alert.dimensions
    return {
        "type": "ingestion-failure-digest" if alert.is_digest else "ingestion-failure",
        "title": alert.title,
        **{key: _text(d.get(key, "")) for key in _JSON_FIELDS},
        "details": alert.details,
        "count": alert.count,
        "samples": alert.shown_samples,
        "windowStart": _text(alert.window_start),
        "windowEnd": _text(alert.window_end),
    }


_JSON_FIELDS = (
    "errorCode",
    "failureStatus",
    "origin",
    "database",
    "table",
    "blobPath",
    "blobName",
    "sourceId",
    "operationId",
    "failedOn",
)


def teams_payload(alert: AlertContent) -> dict[str, Any]:
    """A message with one Adaptive Card, the shape a Teams workflow ("When a Teams webhook request is received") posts."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": alert.title, "weight": "Bolder", "size": "Medium", "wrap": True, "color": "Attention"},
        {"type": "FactSet", "facts": [{"title": label, "value": value} for label, value in alert.facts()]},
    ]
    if alert.details:
        body.append({"type": "TextBlock", "text": alert.details, "wrap": True, "fontType": "Monospace", "size": "Small"})
    if alert.samples:
        body.append({"type": "TextBlock", "text": "Sample blobs:\n\n" + "\n\n".join(alert.shown_samples), "wrap": True})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    return {
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}],
    }


def slack_payload(alert: AlertContent) -> dict[str, Any]:
    """Block Kit: a header, the facts as fields (Slack allows 10), the details as code; `text` is the notification line."""
    fields = [{"type": "mrkdwn", "text": f"*{label}*\n{_slack_escape(value)}"} for label, value in alert.facts()[:10]]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": alert.title}},
        {"type": "section", "fields": fields},
    ]
    if alert.details:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{_slack_escape(alert.details)}```"}})
    if alert.samples:
        listed = "\n".join(f"• {_slack_escape(sample)}" for sample in alert.shown_samples)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Sample blobs*\n{listed}"[:3000]}})
    return {"text": alert.title, "blocks": blocks}


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


PAYLOADS = {"json": json_payload, "teams": teams_payload, "slack": slack_payload}


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes sent, and signed: compact UTF-8 JSON."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    """`sha256=<hex>` HMAC of the body, the convention GitHub and most receivers verify."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class WebhookSink:
    """Posts alerts to one webhook URL in one format, optionally signed; the worker builds one (`shared.services`)."""

    def __init__(
        self,
        url: str,
        payload_format: str = "json",
        secret: str = "",
        transport: HttpTransport | None = None,
        resolve: Resolver = system_resolver,
    ) -> None:
        if payload_format not in PAYLOADS:
            raise ValueError(f"webhook format {payload_format!r} is not one of {', '.join(PAYLOADS)}")
        self._url = url
        self._format = payload_format
        self._secret = secret
        self._resolve = resolve
        self.host = urlsplit(url).hostname or "?"
        policies = [
            HeadersPolicy({"Content-Type": "application/json; charset=utf-8"}),
            UserAgentPolicy(base_user_agent=USER_AGENT),
            RetryPolicy(retry_total=RETRY_TOTAL, retry_backoff_factor=RETRY_BACKOFF_SECONDS, retry_backoff_max=30),
        ]
        self._client: PipelineClient = PipelineClient(
            base_url=url, policies=policies, transport=transport or EnvironmentOnceTransport()
        )

    def body(self, alert: AlertContent) -> bytes:
        return encode_body(PAYLOADS[self._format](alert))

    def send(self, alert: AlertContent) -> None:
        """Post the alert; raise WebhookError when the webhook still refuses it after the retries."""
        problem = resolved_address_problem(self._url, self._resolve)
        if problem is not None:
            raise WebhookError(f"webhook at {self.host} not called: {problem}")
        body = self.body(alert)
        headers = {SIGNATURE_HEADER: signature(self._secret, body)} if self._secret else {}
        request = HttpRequest("POST", self._url, content=body, headers=headers)
        try:
            response = self._client.send_request(
                request, connection_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS
            )
        except AzureError as error:
            # The error text of the HTTP stack quotes the URL (and so its secret): keep only the error type.
            raise WebhookError(f"webhook at {self.host} unreachable ({type(error).__name__})") from None
        if not 200 <= response.status_code < 300:
            raise WebhookError(f"webhook at {self.host} answered HTTP {response.status_code} after {RETRY_TOTAL} retries")
        logger.info("alert sent to webhook at %s: %s", self.host, alert.title)
