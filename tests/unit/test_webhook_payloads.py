"""Webhook payload shapes, signature and retries (azure-core fake transport: no network)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError

from shared.webhook import SIGNATURE_HEADER, AlertContent, WebhookError, WebhookSink, signature
from tests.unit.kusto_fakes import ScriptedTransport, answer

DIMENSIONS = {
    "errorCode": "BadRequest_InvalidMapping",
    "failureStatus": "Permanent",
    "origin": "ingestion",
    "database": "Db",
    "table": "Events",
    "blobPath": "https://acct.blob.core.windows.net/staging/Db/Events/a.csv",
    "blobName": "Db/Events/a.csv",
    "operationId": "op-1",
    "sourceId": "2f1e3c59-5d4c-4f63-9a0e-4b7a8a0f0001",
    "failedOn": "2026-01-01T00:00:00Z",
    "details": "mapping 'm1' does not fit; url https://x/y?sig=SECRET <b>",
}
URL = "https://hooks.example.com/services/T000/B000/PATHSECRET"


def sent_json(transport: ScriptedTransport, index: int = -1) -> dict:
    return json.loads(transport.requests[index].content)


def test_json_payload_is_flat_and_redacted() -> None:
    transport = ScriptedTransport(answer(200))
    WebhookSink(URL, "json", transport=transport).send(AlertContent(DIMENSIONS))
    body = sent_json(transport)
    assert body["type"] == "ingestion-failure"
    assert (body["errorCode"], body["database"], body["table"], body["count"]) == ("BadRequest_InvalidMapping", "Db", "Events", 1)
    assert "SECRET" not in transport.requests[0].content.decode()
    assert SIGNATURE_HEADER not in transport.requests[0].headers


def test_teams_payload_is_an_adaptive_card() -> None:
    transport = ScriptedTransport(answer(202))
    WebhookSink(URL, "teams", transport=transport).send(AlertContent(DIMENSIONS))
    body = sent_json(transport)
    attachment = body["attachments"][0]
    assert body["type"] == "message"
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    facts = {fact["title"]: fact["value"] for fact in card["body"][1]["facts"]}
    assert facts["Error code"] == "BadRequest_InvalidMapping" and facts["Table"] == "Events"


def test_slack_payload_uses_blocks_and_escapes() -> None:
    transport = ScriptedTransport(answer(200))
    digest = AlertContent(DIMENSIONS, count=7, samples=("https://a/b.csv",), window_start="s", window_end="e")
    WebhookSink(URL, "slack", transport=transport).send(digest)
    body = sent_json(transport)
    assert body["text"].startswith("7 more ingestion failure(s): BadRequest_InvalidMapping on Db.Events")
    assert [block["type"] for block in body["blocks"]] == ["header", "section", "section", "section"]
    assert len(body["blocks"][1]["fields"]) <= 10
    assert "&lt;b&gt;" in body["blocks"][2]["text"]["text"]
    assert "https://a/b.csv" in body["blocks"][3]["text"]["text"]


def test_signature_is_hmac_sha256_over_the_exact_body() -> None:
    transport = ScriptedTransport(answer(200))
    WebhookSink(URL, "json", secret="s3cret", transport=transport).send(AlertContent(DIMENSIONS))
    request = transport.requests[0]
    expected = "sha256=" + hmac.new(b"s3cret", request.content, hashlib.sha256).hexdigest()
    assert request.headers[SIGNATURE_HEADER] == expected == signature("s3cret", request.content)


def test_server_errors_are_retried_by_the_pipeline() -> None:
    transport = ScriptedTransport(answer(500), answer(503), answer(200))
    WebhookSink(URL, "json", transport=transport).send(AlertContent(DIMENSIONS))
    assert len(transport.requests) == 3


def test_refusal_after_retries_raises_without_the_url() -> None:
    transport = ScriptedTransport(*[answer(500)] * 4)
    with pytest.raises(WebhookError) as caught:
        WebhookSink(URL, "json", transport=transport).send(AlertContent(DIMENSIONS))
    assert "hooks.example.com" in str(caught.value) and "PATHSECRET" not in str(caught.value)


def test_unreachable_webhook_raises_without_the_url() -> None:
    error = ServiceRequestError(f"connection refused for {URL}")
    transport = ScriptedTransport(*[error] * 4)
    with pytest.raises(WebhookError) as caught:
        WebhookSink(URL, "json", transport=transport).send(AlertContent(DIMENSIONS))
    assert "PATHSECRET" not in str(caught.value) and caught.value.__cause__ is None


def test_client_error_is_not_retried() -> None:
    transport = ScriptedTransport(answer(400))
    with pytest.raises(WebhookError):
        WebhookSink(URL, "json", transport=transport).send(AlertContent(DIMENSIONS))
    assert len(transport.requests) == 1


def test_control_and_bidi_characters_never_reach_a_payload_raw() -> None:
    """Even dimensions nobody escaped (and digest samples) are shown escaped, in every format."""
    forged = "a.csv\nKUSTO_INGESTION_FAILURE errorCode=Fake\u202evsc.exe\x1b[2J\u2028"
    dimensions = {**DIMENSIONS, "blobName": forged, "blobPath": "", "details": forged, "database": "Db\u200b"}
    for payload_format in ("json", "teams", "slack"):
        for alert in (
            AlertContent(dimensions),
            AlertContent(dimensions, count=2, samples=(forged,), window_start="s\r", window_end="e"),
        ):
            transport = ScriptedTransport(answer(200))
            WebhookSink(URL, payload_format, transport=transport).send(alert)
            texts = texts_in(sent_json(transport))
            for raw in ("a.csv\nKUSTO", "\u202e", "\x1b", "\u2028", "\u200b", "\r"):
                assert not any(raw in text for text in texts), (payload_format, raw)
            assert any("a.csv\\nKUSTO_INGESTION_FAILURE" in text for text in texts), payload_format


def texts_in(value: Any) -> list[str]:
    """Every string in a decoded JSON payload."""
    if isinstance(value, dict):
        return [text for item in value.values() for text in texts_in(item)]
    if isinstance(value, list):
        return [text for item in value for text in texts_in(item)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize(
    ("addresses", "problem"),
    [
        (["169.254.169.254"], "link-local"),
        (["203.0.113.7", "fe80::1%eth0"], "link-local"),
        (["168.63.129.16"], "WireServer"),
        (["::ffff:169.254.169.254"], "link-local"),
        (["0.0.0.0"], "unspecified"),
    ],
)
def test_a_webhook_name_that_resolves_to_a_metadata_or_link_local_address_is_never_called(
    addresses: list[str], problem: str
) -> None:
    transport = ScriptedTransport(answer(200))
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return addresses

    sink = WebhookSink("https://169.254.169.254.nip.io/hook", "json", transport=transport, resolve=resolve)
    with pytest.raises(WebhookError, match=problem):
        sink.send(AlertContent(DIMENSIONS))
    assert transport.requests == []
    assert asked == [("169.254.169.254.nip.io", 443)]


def test_a_webhook_name_that_resolves_to_public_or_unresolvable_addresses_is_called() -> None:
    transport = ScriptedTransport(answer(200), answer(200))
    WebhookSink(URL, "json", transport=transport, resolve=lambda host, port: ["203.0.113.7", "2001:db8::7"]).send(
        AlertContent(DIMENSIONS)
    )

    def unresolvable(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    WebhookSink(URL, "json", transport=transport, resolve=unresolvable).send(AlertContent(DIMENSIONS))
    assert len(transport.requests) == 2
