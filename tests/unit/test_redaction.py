"""Redaction through percent-encoding and base64, escaping of control and bidi characters, the log filter."""

from __future__ import annotations

import base64
import io
import logging
import re
from urllib.parse import quote, unquote

import pytest

from shared.names import printable
from shared.redaction import REDACTED, WITHHELD, RedactingFilter, install_redaction, redact
from shared.storage import readable_text
from tests.unit.test_function_app import logging_state_kept

SECRET = "S3cretSigValue"
URL = f"https://acct.blob.core.windows.net/c/b.csv?sv=2022-11-02&se=2030-01-01&sp=r&sig={SECRET}%2B%3D"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def every_reading(text: str) -> list[str]:
    """The text, each of its percent-decodings, and whatever its base64-looking runs decode to."""
    readings = [text]
    for run in re.findall(r"[A-Za-z0-9+/]{16,}={0,2}", text):
        try:
            readings.append(base64.b64decode(run + "=" * (-len(run) % 4)).decode("utf-8", "ignore"))
        except ValueError:
            continue
    for reading in list(readings):
        decoded = reading
        for _ in range(6):
            decoded = unquote(decoded)
            readings.append(decoded)
    return readings


@pytest.mark.parametrize(
    "text",
    [
        f"sig%3D{SECRET}",
        f"https%3A%2F%2Fa%2Fc%2Fb%3Fsv%3D1%26sig%3D{SECRET}%26se%3D2",
        f"x%26sig%3D{SECRET}",
        f"x%3Fsig%3D{SECRET}",
        f"u=https%253A%252F%252Fa%252Fc%253Fsv%253D1%2526sig%253D{SECRET}",
        quote(quote(quote(URL, safe=""), safe=""), safe=""),
        f"DefaultEndpointsProtocol=https%3BAccountName%3Da%3BAccountKey%3D{SECRET}%3D%3D%3BEndpointSuffix%3Dx",
        f"Authorization: Bearer%20{SECRET}",
        f"odd encoder: https://a/c/b?sv=1&%73ig={SECRET}&x=1",
        b64(URL),
        b64(quote(URL, safe="")),
        f"error for {quote(URL, safe='')}: not found",
    ],
)
def test_a_secret_is_found_in_every_encoding(text: str) -> None:
    redacted = redact(text)
    assert REDACTED in "".join(every_reading(redacted))
    for reading in every_reading(redacted):
        assert SECRET not in reading, (redacted, reading)


def test_an_encoded_text_keeps_its_form() -> None:
    assert redact(f"u=a%3Fsv%3D1%26sig%3D{SECRET}%26x%3D1") == "u=a%3Fsv%3DREDACTED%26sig%3DREDACTED%26x%3D1"
    assert redact(f"AccountKey%253D{SECRET}%253Bx") == "AccountKey%253DREDACTED%253Bx"
    assert redact(f"?sv=1&sig={SECRET}") == "?sv=REDACTED&sig=REDACTED"


def test_a_secret_in_a_base64_message_is_redacted_inside_it() -> None:
    redacted = redact(b64(f'{{"blobUrl": "{URL}"}}'))
    assert (
        base64.b64decode(redacted).decode()
        == '{"blobUrl": "https://acct.blob.core.windows.net/c/b.csv?sv=REDACTED&se=REDACTED&sp=REDACTED&sig=REDACTED"}'
    )


@pytest.mark.parametrize(
    "text",
    ["disk 90% full", "a%20b%2Fc.csv", "100%25 done", "%zz", "plain text", "design=1 assign=2", b64("nothing to hide here")],
)
def test_text_without_a_secret_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_a_text_encoded_past_the_bound_is_withheld() -> None:
    text = f"?sig={SECRET}"
    for _ in range(6):
        text = quote(text, safe="")
    assert redact(text) == WITHHELD


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\nKUSTO_INGESTION_FAILURE fake", "a\\nKUSTO_INGESTION_FAILURE fake"),
        ("a\rb", "a\\rb"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("evil\u202egnp.exe", "evil\\u202egnp.exe"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("line\u2028separator\u2029", "line\\u2028separator\\u2029"),
        ("tab\tnul\x00del\x7fc1\x85", "tab\\tnul\\x00del\\x7fc1\\x85"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("naïve café 日本 a\\nb", "naïve café 日本 a\\nb"),
    ],
)
def test_printable_escapes_control_format_and_separator_characters(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert printable(shown) == shown


def test_readable_text_decodes_base64_messages_and_keeps_anything_else() -> None:
    assert readable_text(b64(URL)) == URL
    assert readable_text(b64(b64(URL))) == URL
    assert readable_text(URL) == URL
    assert readable_text("this is not base64!") == "this is not base64!"
    assert readable_text(b64("test1234")) == "test1234"
    assert readable_text(None) == ""
    assert readable_text(b64("x").encode()) == "x"


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_filter_cleans_message_extras_and_dimensions_but_not_the_traceback() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.redaction.filter")
    logger.addHandler(handler)
    logger.propagate = False
    kept = Kept()
    kept.addFilter(RedactingFilter())
    logger.addHandler(kept)
    try:
        logger.warning("blob %s done", "a\nKUSTO_INGESTION_FAILURE fake")
        try:
            raise ValueError(f"read failed: https://a/c/b?sv=1&sig={SECRET}")
        except ValueError:
            logger.exception(
                "failed %s",
                f"x%26sig%3D{SECRET}",
                extra={"note": "n\u202e", "custom_dimensions": {"blobName": "b\nc", "details": f"AccountKey%3D{SECRET}", "n": 1}},
            )
    finally:
        logger.removeHandler(handler)
        logger.removeHandler(kept)
        logger.propagate = True
    written = stream.getvalue()
    assert SECRET not in written
    assert written.splitlines()[0] == "blob a\\nKUSTO_INGESTION_FAILURE fake done"
    assert "Traceback (most recent call last):\n" in written  # the traceback keeps its lines
    record = kept.records[1]
    assert record.note == "n\\u202e"
    assert record.custom_dimensions == {"blobName": "b\\nc", "details": "AccountKey%3DREDACTED", "n": 1}


def test_installed_redaction_covers_child_loggers_and_handlers_added_later() -> None:
    root = logging.getLogger()
    with logging_state_kept():
        install_redaction()
        install_redaction()  # idempotent: one filter each, one factory layer
        assert sum(isinstance(f, RedactingFilter) for f in root.filters) == 1
        late = Kept()  # no filter of its own, added after the installation
        root.addHandler(late)
        try:
            logging.getLogger("some.library").warning("a %s", "b\nKUSTO_INGESTION_FAILURE fake sig%3D" + SECRET)
        finally:
            root.removeHandler(late)
    [record] = late.records
    assert record.getMessage() == "a b\\nKUSTO_INGESTION_FAILURE fake sig%3DREDACTED"
