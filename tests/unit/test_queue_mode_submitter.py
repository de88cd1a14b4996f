"""Queue mode: posting a chunk, through real storage and Kusto clients over scripted azure-core transports.

These cover the HTTP edge cases Azurite cannot be made to produce on demand (a 403 on one queue only, a
500 half-way through a chunk); the same paths run against Azurite and the emulator in the integration tests.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from azure.core.exceptions import ServiceResponseError
from azure.core.rest import HttpRequest
from azure.storage.queue import ExponentialRetry, QueueClient, TextBase64EncodePolicy

from shared.dm_resources import DataManagementClient, DmResourceCache
from shared.kusto_errors import KustoAuthError, PermanentKustoError, TransientKustoError, UncertainKustoError
from shared.kusto_rest import BlobSource
from shared.queue_submitter import OPERATION_PREFIX, QueueSubmitter
from tests.unit.kusto_fakes import ScriptedTransport, answer
from tests.unit.test_queue_mode_resources import SETTINGS, FakeClock, resources_answer, token_answer

SENT = """<?xml version="1.0" encoding="utf-8"?><QueueMessagesList><QueueMessage><MessageId>{id}</MessageId>
<InsertionTime>Mon, 01 Jan 2024 00:00:00 GMT</InsertionTime><ExpirationTime>Mon, 08 Jan 2024 00:00:00 GMT</ExpirationTime>
<PopReceipt>receipt-{id}</PopReceipt><TimeNextVisible>Mon, 01 Jan 2024 00:00:00 GMT</TimeNextVisible>
</QueueMessage></QueueMessagesList>"""


def sent(request: HttpRequest) -> tuple[int, Any, dict[str, str]]:
    return 201, SENT.format(id=f"m{abs(hash(request.url)) % 1000}"), {"Content-Type": "application/xml"}


def storage_error(status: int, code: str) -> tuple[int, Any, dict[str, str]]:
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>no</Message></Error>'
    return status, body, {"Content-Type": "application/xml", "x-ms-error-code": code}


class Harness:
    def __init__(self, *storage_script: Any, kusto_script: tuple[Any, ...] | None = None) -> None:
        self.kusto = ScriptedTransport(*(kusto_script or (answer(200, token_answer("tok")), answer(200, resources_answer(0)))))
        self.storage = ScriptedTransport(*storage_script)
        self.cache = DmResourceCache(DataManagementClient(SETTINGS.kusto_ingest_uri, transport=self.kusto), clock=FakeClock())
        self.submitter = QueueSubmitter(
            self.cache, max_blobs_per_batch=SETTINGS.max_blobs_per_batch, queue_client_for=self.queue_client
        )

    def queue_client(self, url: str) -> QueueClient:
        return QueueClient.from_queue_url(
            url,
            transport=self.storage,
            message_encode_policy=TextBase64EncodePolicy(),
            retry_policy=ExponentialRetry(initial_backoff=0, retry_total=0),
        )

    def submit(self, count: int) -> str:
        blobs = [
            BlobSource(
                url=f"http://127.0.0.1:5/acct/staging/b{i}.csv?sig=S", source_id=f"00000000-0000-4000-8000-{i:012}", raw_size=3
            )
            for i in range(count)
        ]
        return self.submitter.submit("Db", "T", blobs, {"format": "csv"}, timeout=10)

    def posts(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(method, queue path, decoded message) of each storage request."""
        result = []
        for request in self.storage.requests:
            path = request.url.split("?")[0].split("/acct/")[1].split("/")[0]
            body: dict[str, Any] = {}
            if request.method == "POST":
                text = request.content.decode() if isinstance(request.content, bytes) else str(request.content)
                encoded = text.split("<MessageText>")[1].split("</MessageText>")[0]
                body = json.loads(base64.b64decode(encoded))
            result.append((request.method, path, body))
        return result


def test_messages_go_round_robin_over_the_ingestion_queues_one_per_blob() -> None:
    harness = Harness(*[sent] * 6)
    operation = harness.submit(5)
    assert operation.startswith(OPERATION_PREFIX)
    posts = harness.posts()
    assert [path for _, path, _ in posts] == ["ready-g0-0", "ready-g0-1", "ready-g0-0", "ready-g0-1", "ready-g0-0"]
    assert [body["Id"] for _, _, body in posts] == [f"00000000-0000-4000-8000-{i:012}" for i in range(5)]
    assert all(body["AdditionalProperties"]["authorizationContext"] == "tok" for _, _, body in posts)
    harness.submit(1)
    assert harness.posts()[-1][1] == "ready-g0-1", "the turn carries over from chunk to chunk"
    assert len(harness.kusto.requests) == 2, "token and resources fetched once for both chunks"


def test_a_403_from_an_expired_queue_sas_refreshes_the_resources_and_retries_that_message_once() -> None:
    kusto = (answer(200, token_answer("tok")), answer(200, resources_answer(0)), answer(200, resources_answer(1)))
    harness = Harness(sent, storage_error(403, "AuthenticationFailed"), sent, sent, kusto_script=kusto)
    harness.submit(3)
    assert [path for _, path, _ in harness.posts()] == ["ready-g0-0", "ready-g0-1", "ready-g1-0", "ready-g1-1"]
    assert [body["Id"][-1] for _, _, body in harness.posts()] == ["0", "1", "1", "2"]
    assert len(harness.kusto.requests) == 3


def test_a_queue_rotated_away_404_is_treated_like_an_expired_sas() -> None:
    kusto = (answer(200, token_answer("tok")), answer(200, resources_answer(0)), answer(200, resources_answer(1)))
    harness = Harness(storage_error(404, "QueueNotFound"), sent, kusto_script=kusto)
    harness.submit(1)
    assert [path for _, path, _ in harness.posts()] == ["ready-g0-0", "ready-g1-1"]


def test_a_second_403_after_the_refresh_is_an_auth_error_and_nothing_stays_posted() -> None:
    kusto = (answer(200, token_answer("tok")), answer(200, resources_answer(0)), answer(200, resources_answer(1)))
    harness = Harness(
        sent,
        storage_error(403, "AuthenticationFailed"),
        storage_error(403, "AuthenticationFailed"),
        (204, "", {}),
        kusto_script=kusto,
    )
    with pytest.raises(KustoAuthError, match="even with freshly fetched ingestion resources") as caught:
        harness.submit(3)
    assert isinstance(caught.value, TransientKustoError), "the blobs wait in the pending queue"
    methods = [(method, path) for method, path, _ in harness.posts()]
    assert methods[-1] == ("DELETE", "ready-g0-0"), "the message already posted is withdrawn"
    assert "receipt-" in harness.storage.requests[-1].url


def test_a_server_error_half_way_withdraws_the_posted_messages_and_is_transient() -> None:
    harness = Harness(sent, sent, storage_error(500, "InternalError"), (204, "", {}), (204, "", {}))
    with pytest.raises(TransientKustoError, match="HTTP 500") as caught:
        harness.submit(4)
    assert not isinstance(caught.value, UncertainKustoError), "every posted message was withdrawn"
    assert [method for method, _, _ in harness.posts()] == ["POST", "POST", "POST", "DELETE", "DELETE"]


def test_a_posted_message_that_cannot_be_withdrawn_makes_the_failure_uncertain() -> None:
    # Kusto's DM service already took the first message (its delete finds nothing): that blob may be ingested.
    harness = Harness(sent, storage_error(500, "InternalError"), storage_error(404, "MessageNotFound"))
    with pytest.raises(UncertainKustoError, match="could not be withdrawn"):
        harness.submit(3)


def test_a_post_whose_answer_never_came_is_uncertain() -> None:
    harness = Harness(sent, ServiceResponseError("connection reset by peer"), (204, "", {}))
    with pytest.raises(UncertainKustoError, match="no answer to a posted message"):
        harness.submit(2)
    assert [method for method, _, _ in harness.posts()] == ["POST", "POST", "DELETE"]


def test_a_message_the_queue_refuses_as_too_large_is_permanent() -> None:
    harness = Harness(storage_error(413, "RequestBodyTooLarge"))
    with pytest.raises(PermanentKustoError) as caught:
        harness.submit(1)
    assert caught.value.code == "RequestBodyTooLarge"
    assert "sig=S" not in str(caught.value)


def test_an_invalid_chunk_is_rejected_before_anything_is_posted() -> None:
    harness = Harness()
    blobs = [BlobSource(url="http://127.0.0.1:5/acct/staging/b.csv", source_id="00000000-0000-4000-8000-000000000001")]
    with pytest.raises(PermanentKustoError, match="format"):
        harness.submitter.submit("Db", "T", blobs, {"format": "xlsx"})
    assert harness.storage.requests == []


def test_the_batch_size_is_the_setting() -> None:
    assert Harness().submitter.effective_batch_size() == SETTINGS.max_blobs_per_batch
