"""No SAS signature, account key or bearer token leaves the process: logs, queue messages and alerts.

The submission runs with account-key SAS URLs, a bearer credential, and a Kusto that fails in ways that
echo the whole request back (the blob URLs with their SAS), against real Azurite queues. Messages nobody
valid wrote (malformed pending and tracking messages, poison messages) carry a SAS in plain text, in base64
and percent-encoded: their alerts, notifications and log lines show none of them.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from azure.core.credentials import AccessToken
from azure.core.rest import HttpRequest
from azure.storage.queue import QueueClient

from devhost.processes import AZURITE_KEY, Azurite
from shared import schemas
from shared.alerts import raise_alert
from shared.poison import watch_poison_queues
from shared.services import Services, build_services, ensure_queues
from shared.settings import load_settings
from shared.submission import submit_pending_blobs
from shared.tracking import poll_operations
from tests.integration.outcome_helpers import NO_KUSTO, app_settings
from tests.support.messages import pending_message
from tests.unit.kusto_fakes import ScriptedTransport, answer, one_api_error
from tests.unit.test_redaction import every_reading

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2t1c3RvIn0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
SIGNATURE = re.compile(r"sig=(?!REDACTED)[^&\s\"']+", re.IGNORECASE)


class BearerCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(TOKEN, int(time.time()) + 3600)


def echo(status: int, **headers: str) -> Any:
    """A Kusto answer that repeats the request body (blob URLs with SAS) and the Authorization header."""

    def respond(request: HttpRequest) -> tuple[int, Any, dict[str, str]]:
        leaked = f"{request.content!s} auth={request.headers.get('Authorization')}"
        return answer(status, one_api_error("BadRequest_InvalidBlobUri", leaked), **headers)

    return respond


@pytest.fixture
def services(azurite: Azurite, unique_name: str) -> Iterator[Services]:
    built: list[Services] = []

    def make(*script: Any) -> Services:
        values = app_settings(azurite, NO_KUSTO, unique_name, KUSTO_CREDENTIAL="managedidentity")
        configuration = answer(
            200, {"ingestionSettings": {"maxBlobsPerBatch": 20}, "containerSettings": {"refreshInterval": "01:00:00"}}
        )
        app = build_services(
            load_settings(values),
            kusto_transport=ScriptedTransport(configuration, *script),
            kusto_token_credential=BearerCredential(),
        )
        ensure_queues(app)
        built.append(app)
        return app

    yield make  # type: ignore[misc]
    for queue in built[0].queues if built else ():
        queue.delete_queue()


def stage(services: Services, count: int) -> None:
    container = services.settings.staging_container
    for index in range(count):
        blob = services.blob_service.get_blob_client(container, f"SecretDb/Events/{index}.csv")
        pending = pending_message(blob, etag="0x1", size=10, database="SecretDb", table="Events")
        services.pending_queue.send_message(schemas.dump(schemas.PENDING_BLOB, pending))


def everything_written(services: Services, caplog: pytest.LogCaptureFixture) -> str:
    """Every log line, every message in every queue, and the alert each failure notification becomes."""
    texts = [record.getMessage() + json.dumps(getattr(record, "custom_dimensions", {})) for record in caplog.records]
    for queue in services.queues:
        for message in queue.peek_messages(max_messages=32):
            texts.append(message.content)
            if queue is services.failures_queue:
                alert = raise_alert(message.content, queue_name=queue.queue_name, message_id=message.id, dequeue_count=1)
                texts += [alert.message, json.dumps(alert.dimensions)]
    texts += [record.getMessage() for record in caplog.records]
    return "\n".join(texts)


def assert_clean(text: str) -> None:
    assert not SIGNATURE.search(text), SIGNATURE.search(text)
    assert AZURITE_KEY not in text
    assert TOKEN not in text
    assert TOKEN.split(".")[2] not in text


def test_a_rejection_echoing_the_request_leaks_nothing(services: Any, caplog: pytest.LogCaptureFixture) -> None:
    app = services(echo(400))
    stage(app, 3)
    with caplog.at_level(logging.DEBUG):
        report = submit_pending_blobs(app)
    assert report.rejected == 3
    written = everything_written(app, caplog)
    assert "BadRequest_InvalidBlobUri" in written and "sig=REDACTED" in written, "the echoed body did reach the notifications"
    assert_clean(written)


def test_server_errors_and_auth_failures_leak_nothing(services: Any, caplog: pytest.LogCaptureFixture) -> None:
    app = services(*[echo(500)] * 4)
    stage(app, 2)
    with caplog.at_level(logging.DEBUG):
        assert submit_pending_blobs(app).deferred == 2
    assert_clean(everything_written(app, caplog))

    caplog.clear()
    unauthorized = services(echo(401))
    stage(unauthorized, 2)
    with caplog.at_level(logging.DEBUG):
        assert submit_pending_blobs(unauthorized).deferred == 2
    written = everything_written(unauthorized, caplog)
    assert "KUSTO_CREDENTIAL" in written
    assert_clean(written)


SECRET = "S3cretSigFromAForeignMessage"
LEAKY_URL = f"https://x.blob.core.windows.net/c/b.csv?sv=2022-11-02&se=2030-01-01&sp=r&sig={SECRET}"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unencoded(app: Services, queue_name: str) -> QueueClient:
    """The queue written without the base64 policy, as a foreign tool might: the content is stored as given."""
    return QueueClient.from_connection_string(app.settings.staging.connection_string or "", queue_name)


def assert_nothing_reveals_the_secret(written: str) -> None:
    """Neither the text nor any of its readings (percent-decoded, base64 runs decoded) holds the secret."""
    assert_clean(written)
    for reading in every_reading(written):
        assert SECRET not in reading, reading


def foreign_contents() -> list[str]:
    """One SAS URL as a foreign message may carry it: base64, plain, percent-encoded, both."""
    encoded = quote(LEAKY_URL, safe="")
    return [b64(LEAKY_URL), LEAKY_URL, encoded, b64(encoded), b64(b64(LEAKY_URL))]


def test_malformed_pending_messages_alert_without_their_secret(services: Any, caplog: pytest.LogCaptureFixture) -> None:
    app = services()
    for content in foreign_contents():
        unencoded(app, app.settings.pending_queue).send_message(content)
    with caplog.at_level(logging.DEBUG):
        report = submit_pending_blobs(app)
    assert report.malformed == len(foreign_contents())
    written = everything_written(app, caplog)
    assert written.count("Pending_Malformed") >= len(foreign_contents())
    # The alert shows the message as text (decoded), so a person can read what was sent.
    assert "https://x.blob.core.windows.net/c/b.csv?sv=REDACTED" in written
    assert_nothing_reveals_the_secret(written)


def test_malformed_tracking_messages_alert_without_their_secret(services: Any, caplog: pytest.LogCaptureFixture) -> None:
    app = services()
    for content in foreign_contents():
        unencoded(app, app.settings.tracking_queue).send_message(content)
    app.tracking_queue.send_message(json.dumps({"version": 1, "database": "X", "note": quote(LEAKY_URL)}))
    with caplog.at_level(logging.DEBUG):
        report = poll_operations(app)
    assert report.malformed == len(foreign_contents()) + 1
    written = everything_written(app, caplog)
    assert written.count("Tracking_MalformedRecord") >= report.malformed
    assert "https://x.blob.core.windows.net/c/b.csv?sv=REDACTED" in written
    assert_nothing_reveals_the_secret(written)


def test_poison_messages_alert_without_their_secret(services: Any, caplog: pytest.LogCaptureFixture) -> None:
    app = services()
    for content in foreign_contents():
        unencoded(app, app.settings.pending_poison_queue).send_message(content)
    with caplog.at_level(logging.DEBUG):
        alerted = watch_poison_queues(app)
    assert alerted >= len(foreign_contents())  # the blob trigger's poison queue is shared: it may hold more
    written = everything_written(app, caplog)
    assert written.count("Poison_PendingQueue") >= len(foreign_contents())
    assert "https://x.blob.core.windows.net/c/b.csv?sv=REDACTED" in written
    assert_nothing_reveals_the_secret(written)
