"""No SAS signature, account key or bearer token leaves the process: logs, queue messages and alerts.

The submission runs with account-key SAS URLs, a bearer credential, and a Kusto that fails in ways that
echo the whole request back (the blob URLs with their SAS), against real Azurite queues.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.rest import HttpRequest

from devhost.processes import AZURITE_KEY, Azurite
from shared import schemas
from shared.alerts import raise_alert
from shared.notifications import utc_now_iso
from shared.redaction import plain_blob_url
from shared.services import Services, build_services, ensure_queues
from shared.settings import load_settings
from shared.submission import submit_pending_blobs
from tests.integration.outcome_helpers import NO_KUSTO, app_settings
from tests.unit.kusto_fakes import ScriptedTransport, answer, one_api_error

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
    for index in range(count):
        url = f"{services.blob_service.url}staging/SecretDb/Events/{index}.csv"
        pending = {
            "version": 1,
            "blobUrl": plain_blob_url(url),
            "container": "staging",
            "blobName": f"SecretDb/Events/{index}.csv",
            "etag": "0x1",
            "size": 10,
            "sourceId": str(uuid.uuid4()),
            "database": "SecretDb",
            "table": "Events",
            "properties": {"format": "csv"},
            "recordedAt": utc_now_iso(),
        }
        services.pending_queue.send_message(schemas.dump(schemas.PENDING_BLOB, pending))


def everything_written(services: Services, caplog: pytest.LogCaptureFixture) -> str:
    """Every log line, every message in every queue, and the alert each failure notification becomes."""
    texts = [record.getMessage() + json.dumps(getattr(record, "custom_dimensions", {})) for record in caplog.records]
    for queue in services.queues:
        for message in queue.peek_messages(max_messages=32):
            texts.append(message.content)
            if queue is services.failures_queue:
                alert = raise_alert(
                    message.content, services, queue_name=queue.queue_name, message_id=message.id, dequeue_count=1
                )
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
