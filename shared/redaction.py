"""Removes credentials from text before it reaches a log line, an alert or a queue message.

Blob URLs handed to Kusto carry a SAS or a `;managed_identity=` suffix, error bodies may echo them, and a
connection string holds an account key. None of that may leave the process in a log or an alert, so every
string that does goes through `redact()`.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "REDACTED"

_PATTERNS = (
    # SAS query parameters: the signature is the secret, but the rest says what it can do and for how long.
    re.compile(r"(?i)([?&](?:sig|signature|se|st|sp|sv|sr|skoid|sktid|skt|ske|sks|skv|spr|ss|srt)=)[^&\s\"'<>]*"),
    # Account keys and shared keys in connection strings or ADLS suffixes.
    re.compile(r"(?i)((?:AccountKey|SharedAccessSignature|sharedkey|token)=)[^;\s\"'<>]*"),
    # Bearer tokens in headers or error texts.
    re.compile(r"(?i)(Bearer\s+)[A-Za-z0-9\-_.~+/=]+"),
    # A JWT anywhere (three base64url parts starting with the encoded '{"').
    re.compile(r"()eyJ[A-Za-z0-9\-_]{8,}\.[A-Za-z0-9\-_]{8,}\.[A-Za-z0-9\-_]*"),
)


def redact(text: str) -> str:
    """Replace every SAS parameter value, account key and bearer token in `text` with REDACTED."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def plain_blob_url(url: str) -> str:
    """The blob URL without query string, fragment or `;credential` suffix: safe to log and to store."""
    parts = urlsplit(url)
    path = parts.path.split(";", 1)[0]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message and string extras of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        for key, value in list(vars(record).items()):
            if isinstance(value, str) and key not in ("msg", "name", "levelname", "pathname", "filename", "module", "funcName"):
                setattr(record, key, redact(value))
            elif isinstance(value, dict) and key == "custom_dimensions":
                setattr(record, key, {k: redact(v) if isinstance(v, str) else v for k, v in value.items()})
        return True
