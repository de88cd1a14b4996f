"""Removes credentials from text before it reaches a log line, an alert or a queue message.

Blob URLs handed to Kusto carry a SAS or a `;managed_identity=` suffix, error bodies may echo them, and a
connection string holds an account key. None of that may leave the process in a log or an alert, so every
string that does goes through `redact()`, which also sees through percent-encoding (`sig%3D…`, `%26sig%253D…`)
and through a text that is one base64 string (a queue message as stored).

Log records are covered without relying on each call site: `install_redaction()` (called through
`shared.app_logging.configure_app_logging()` when function_app.py is imported, and by the local host and the
emulator) redacts every record of the process and escapes its control and bidi
characters (`shared.names.printable`), so a crafted blob name cannot forge a log line either.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from shared.names import printable

REDACTED = "REDACTED"

# A character as it may appear once or several times percent-encoded: `%3D`, `%253D`, `%25253D` are all '='.
_ENCODED = r"%(?:25)*"
_EQUALS = rf"(?:=|{_ENCODED}3d)"
_NOT_ENCODED_AMPERSAND = rf"(?!{_ENCODED}26)"
_QUERY_VALUE = rf"(?:{_NOT_ENCODED_AMPERSAND}[^&\s\"'<>])*"
_SAS_PARAMETERS = "sig|signature|se|st|sp|sv|sr|skoid|sktid|skt|ske|sks|skv|spr|ss|srt"

# Each pattern with the words one of its matches must contain (lower case): a text holding none of them is
# not scanned by it, which keeps `redact` cheap on the many log lines that carry no credential at all.
_PATTERNS = (
    # SAS query parameters: the signature is the secret, but the rest says what it can do and for how long.
    (
        ("?", "&", "%"),
        re.compile(rf"(?i)((?:[?&]|{_ENCODED}(?:3f|26))(?:{_SAS_PARAMETERS}){_EQUALS}){_QUERY_VALUE}"),
    ),
    # A signature wherever it stands (`sig=…` cut out of its URL, or a URL's query encoded as a whole).
    (("sig",), re.compile(rf"(?i)((?<![\w%])(?:sig|signature){_EQUALS}){_QUERY_VALUE}")),
    # Account keys and shared keys in connection strings or ADLS suffixes.
    (
        ("accountkey", "sharedaccesssignature", "sharedkey", "token"),
        re.compile(rf"(?i)((?:AccountKey|SharedAccessSignature|sharedkey|token){_EQUALS})(?:(?!{_ENCODED}3b)[^;\s\"'<>])*"),
    ),
    # Bearer tokens in headers or error texts.
    (("bearer",), re.compile(rf"(?i)(Bearer(?:\s+|{_ENCODED}20))(?:[A-Za-z0-9\-_.~+/=]|{_ENCODED}(?:2b|2f|3d))+")),
    # A JWT anywhere (three base64url parts starting with the encoded '{"').
    (("eyj",), re.compile(r"()eyJ[A-Za-z0-9\-_]{8,}\.[A-Za-z0-9\-_]{8,}\.[A-Za-z0-9\-_]*")),
)

_DECODE_ROUNDS = 4
"""Percent-decodings looked through: `%253D` needs two; a text still changing after four is withheld."""
WITHHELD = REDACTED + " (text withheld: percent-encoded more than 4 times)"

_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
_BASE64_DEPTH = 2


def _redact_in_place(text: str) -> str:
    lowered = text.lower()
    for words, pattern in _PATTERNS:
        if any(word in lowered for word in words):
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def _holds_secret(text: str) -> bool:
    return _redact_in_place(text) != text


def _percent_decoded(text: str) -> str:
    """`text` when no decoding of it shows a secret; else its decoded form, redacted (or WITHHELD)."""
    forms = []
    form = text
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote(form)
        if decoded == form:
            break
        forms.append(decoded)
        form = decoded
    else:
        if unquote(form) != form:
            return WITHHELD
    if not any(_holds_secret(decoded) for decoded in forms):
        return text
    # An encoding the patterns did not match in place (`%73ig=`, say): give the decoded text, redacted.
    return _redact_in_place(form)


def _base64_decoded(text: str, depth: int) -> str:
    """A text that is one base64 string (a queue message): redacted inside, encoded again; else unchanged."""
    candidate = text.strip()
    if depth >= _BASE64_DEPTH or len(candidate) % 4 or not _BASE64_TEXT.fullmatch(candidate):
        return text
    try:
        inner = base64.b64decode(candidate, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return text
    cleaned = _redact(inner, depth + 1)
    return text if cleaned == inner else base64.b64encode(cleaned.encode("utf-8")).decode("ascii")


def _redact(text: str, depth: int) -> str:
    text = _redact_in_place(text)
    if "%" in text:
        text = _percent_decoded(text)
    return _base64_decoded(text, depth)


def redact(text: str) -> str:
    """Replace every SAS parameter value, account key and bearer token in `text` with REDACTED.

    Secrets are found as they are and percent-encoded any number of times up to four (`sig%3D…`,
    `%26sig%253D…`, `AccountKey%3D…`); the text keeps its form, except that a secret only visible after
    decoding (an unusual encoding) makes the result the decoded text, redacted. A text that is one base64
    string is looked into, and encoded again after redaction. Fast: without '%' no decoding is tried.
    """
    return _redact(text, 0)


def plain_blob_url(url: str) -> str:
    """The blob URL without query string, fragment or `;credential` suffix: safe to log and to store."""
    parts = urlsplit(url)
    path = parts.path.split(";", 1)[0]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def clean(text: str) -> str:
    """Text safe for one log line or one alert field: credentials redacted, control and bidi characters escaped."""
    return printable(redact(text))


# Attributes every LogRecord has. Of these only the message (and `message`, the formatted copy a handler may
# have left) is escaped; tracebacks and stack texts are redacted but keep their line breaks.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_REDACTED_ONLY = frozenset({"exc_text", "stack_info"})


def _clean_message(record: logging.LogRecord) -> None:
    """Format the message once, then redact and escape it; a message that cannot be formatted is kept, cleaned."""
    if record.args or not isinstance(record.msg, str):
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break the caller: logging itself never raises
            message = f"{record.msg!s} (arguments: {record.args!r})"
        record.msg, record.args = message, None
    record.msg = clean(record.msg)
    if record.exc_info and not record.exc_text:
        # The traceback a handler would print, formatted now so that the text it prints is the redacted one.
        with contextlib.suppress(Exception):
            record.exc_text = logging.Formatter().formatException(record.exc_info)
    for key in _REDACTED_ONLY:
        value = getattr(record, key, None)
        if isinstance(value, str):
            setattr(record, key, redact(value))


def clean_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact and escape a record in place: its message, its string extras and its `custom_dimensions`."""
    _clean_message(record)
    for key, value in list(vars(record).items()):
        if key == "message" and isinstance(value, str):
            record.message = clean(value)
        elif key in _STANDARD_ATTRIBUTES:
            continue
        elif isinstance(value, str):
            setattr(record, key, clean(value))
        elif isinstance(value, Mapping) and key == "custom_dimensions":
            setattr(record, key, {k: clean(v) if isinstance(v, str) else v for k, v in value.items()})
    return record


class RedactingFilter(logging.Filter):
    """A logging filter that redacts and escapes the message, string extras and custom dimensions of every record.

    On a handler it covers every record the handler emits, whichever logger made it; on a logger, only the
    records logged on that very logger (not those propagated from its children).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        clean_record(record)
        return True


class _RedactingRecordFactory:
    """Wraps the process's LogRecord factory: every record has its message redacted and escaped when it is made."""

    def __init__(self, wrapped: Callable[..., logging.LogRecord]) -> None:
        self.wrapped = wrapped

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.wrapped(*args, **kwargs)
        _clean_message(record)
        return record


def install_redaction(*handlers: logging.Handler) -> None:
    """Redact (and escape) every log record of this process, whatever logger makes it and whatever handler prints it.

    Two layers, both idempotent (calling again adds nothing twice):

    * the LogRecord factory (`logging.setLogRecordFactory`, wrapping the one in place) formats each record's
      message when the record is made, then redacts and escapes it. Every logger of the process makes its
      records through this factory, so the message is clean for every handler: those that exist now, those
      the Azure Functions worker attached to the root logger before importing function_app.py (its gRPC
      handler, the OpenTelemetry one), and any added later. A filter could not promise that: on a logger it
      applies only to records logged on that very logger, not to those propagated from child loggers, and on
      a handler only to handlers that exist when it is added.
    * a `RedactingFilter` on the root logger, on each handler the root logger has now and on `handlers`: it
      cleans what the factory cannot see, because `Logger.makeRecord` sets a record's `extra` fields (such as
      `custom_dimensions`) only after the factory returns.

    function_app.py calls this at import (through `shared.app_logging`); the local host and the emulator call it
    when they set up logging.
    """
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingRecordFactory):
        logging.setLogRecordFactory(_RedactingRecordFactory(factory))
    root = logging.getLogger()
    for target in (root, *root.handlers, *handlers):
        if not any(isinstance(existing, RedactingFilter) for existing in target.filters):
            target.addFilter(RedactingFilter())
