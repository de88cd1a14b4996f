"""The Kusto REST client through a scripted azure-core transport: answers, errors, retries, caching."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)

from shared.kusto_errors import KustoAuthError, PermanentKustoError, TransientKustoError, UncertainKustoError
from shared.kusto_pipeline import parse_retry_after
from shared.kusto_rest import (
    FALLBACK_MAX_BLOBS_PER_BATCH,
    BlobSource,
    KustoIngestClient,
    parse_timespan,
)
from shared.services import kusto_client
from shared.settings import Settings, load_settings
from tests.unit.kusto_fakes import ScriptedTransport, answer, one_api_error

SOURCE_ID = "2b3f4a1e-0000-4000-8000-000000000001"
SAS_URL = "https://acct.blob.core.windows.net/staging/db/t/a.csv?sv=2025-07-05&sp=r&sig=SuperSecretSig%3D"
TOKEN = "eyJhbGciOiJub25lIn0.eyJhdWQiOiJrdXN0byJ9.signaturepart"


def settings(**overrides: str) -> Settings:
    values = {
        "StagingStorage": "UseDevelopmentStorage=true",
        "KUSTO_INGEST_URI": "http://127.0.0.1:9",
        "KUSTO_CREDENTIAL": "none",
    }
    return load_settings(values | overrides)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FixedTokenCredential:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        if self.fail:
            raise ClientAuthenticationError("ManagedIdentityCredential authentication unavailable")
        return AccessToken(TOKEN, int(time.time()) + 3600)


def client(
    *script: Any, credential: Any = None, clock: Any = time.monotonic, **overrides: str
) -> tuple[KustoIngestClient, ScriptedTransport]:
    transport = ScriptedTransport(*script)
    if credential is not None:
        overrides.setdefault("KUSTO_CREDENTIAL", "managedidentity")
    return kusto_client(settings(**overrides), credential, transport=transport, clock=clock), transport


def submit(kusto: KustoIngestClient, database: str = "Telemetry", table: str = "Events") -> str:
    return kusto.submit(database, table, [BlobSource(SAS_URL, SOURCE_ID, 1234)], {"format": "csv", "tags": ["x"]})


# -- submit ----------------------------------------------------------------------------------------------


def test_submit_posts_the_contract_body_and_returns_the_operation_id() -> None:
    kusto, transport = client(answer(200, {"ingestionOperationId": "00001111;11112222;op"}))
    assert submit(kusto, table="My Table") == "00001111;11112222;op"
    [request] = transport.requests
    assert request.method == "POST"
    assert request.url == "http://127.0.0.1:9/v1/rest/ingestion/queued/Telemetry/My%20Table"
    body = json.loads(request.content)
    assert body["blobs"] == [{"url": SAS_URL, "sourceId": SOURCE_ID, "rawSize": 1234}]
    assert body["properties"] == {"format": "csv", "tags": ["x"], "enableTracking": True}
    assert body["timestamp"].endswith("Z")


def test_every_request_carries_the_kusto_client_headers() -> None:
    kusto, transport = client(answer(200, {"ingestionOperationId": "op"}), answer(200, {"ingestionOperationId": "op"}))
    submit(kusto)
    submit(kusto)
    first, second = (request.headers for request in transport.requests)
    assert first["x-ms-client-request-id"].startswith("KIC.execute;")
    assert first["x-ms-client-request-id"] != second["x-ms-client-request-id"]
    assert first["x-ms-app"] == "kusto-blob-ingest"
    assert first["x-ms-client-version"].startswith("Kusto.BlobIngest.Functions:")
    assert first["x-ms-version"] == "2024-12-12"
    assert "kusto-blob-ingest" in first["User-Agent"]
    assert "Authorization" not in first


def test_operation_id_answer_is_read_case_insensitively() -> None:
    kusto, _ = client(answer(200, {"IngestionOperationId": "op-1"}))
    assert submit(kusto) == "op-1"


def test_an_empty_operation_id_is_a_permanent_error_because_the_outcome_cannot_be_tracked() -> None:
    kusto, _ = client(answer(200, {"ingestionOperationId": ""}))
    with pytest.raises(PermanentKustoError, match="no ingestionOperationId") as caught:
        submit(kusto)
    assert caught.value.code == "MissingOperationId"


@pytest.mark.parametrize(("database", "table"), [("Tele/metry", "Events"), ("Telemetry", "../x"), ("Telemetry", "")])
def test_invalid_names_are_refused_before_any_request(database: str, table: str) -> None:
    kusto, transport = client()
    with pytest.raises(PermanentKustoError, match="not a valid Kusto"):
        submit(kusto, database, table)
    assert transport.requests == []


def test_a_body_outside_the_contract_is_refused_before_any_request() -> None:
    kusto, transport = client()
    with pytest.raises(PermanentKustoError, match="invalid") as caught:
        kusto.submit("Telemetry", "Events", [BlobSource(SAS_URL, SOURCE_ID)], {"format": "xlsx"})
    assert caught.value.code == "InvalidRequest"
    assert "SuperSecretSig" not in str(caught.value)
    assert transport.requests == []


# -- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 403, 404])
def test_400_403_404_are_permanent_with_kustos_code_and_message(status: int) -> None:
    body = one_api_error("BadRequest_TableNotExist", f"Table 'Events' was not found; blob {SAS_URL}")
    kusto, transport = client(answer(status, body, x_ms_activity_id="act-1"))
    with pytest.raises(PermanentKustoError) as caught:
        submit(kusto)
    error = caught.value
    assert (error.status_code, error.code, error.activity_id) == (status, "BadRequest_TableNotExist", "act-1")
    assert "Table 'Events' was not found" in str(error)
    assert "SuperSecretSig" not in str(error), "an echoed SAS must not reach the error text"
    assert len(transport.requests) == 1, "a permanent answer is not retried"


def test_429_with_a_short_retry_after_is_retried_by_the_pipeline_after_that_wait() -> None:
    throttled = answer(429, one_api_error("TooManyRequests", "throttled"), Retry_After="3")
    kusto, transport = client(throttled, answer(200, {"ingestionOperationId": "op"}))
    assert submit(kusto) == "op"
    assert transport.sleeps == [3.0]


def test_429_with_a_long_retry_after_is_handed_back_at_once_with_that_delay() -> None:
    kusto, transport = client(answer(429, one_api_error("TooManyRequests", "throttled"), Retry_After="120"))
    with pytest.raises(TransientKustoError) as caught:
        submit(kusto)
    assert caught.value.retry_after == 120.0
    assert not isinstance(caught.value, KustoAuthError)
    assert len(transport.requests) == 1
    assert transport.sleeps == []


def test_persistent_throttling_ends_in_a_transient_error_after_the_bounded_retries() -> None:
    throttled = answer(429, one_api_error("TooManyRequests", "throttled"), Retry_After="1")
    kusto, transport = client(*[throttled] * 4)
    with pytest.raises(TransientKustoError) as caught:
        submit(kusto)
    assert caught.value.retry_after == 1.0
    assert len(transport.requests) == 4
    assert transport.sleeps == [1.0, 1.0, 1.0]


def test_500_is_retried_then_transient() -> None:
    failing = answer(500, one_api_error("InternalServiceError", "boom"))
    kusto, transport = client(*[failing] * 4)
    with pytest.raises(TransientKustoError) as caught:
        submit(kusto)
    assert caught.value.status_code == 500
    assert caught.value.retry_after is None
    assert len(transport.requests) == 4


def test_a_5xx_marked_permanent_is_permanent() -> None:
    failing = answer(500, one_api_error("General_BadRequest", "cannot ever work", permanent=True))
    kusto, _ = client(*[failing] * 4)
    with pytest.raises(PermanentKustoError, match="cannot ever work"):
        submit(kusto)


def test_a_non_json_error_body_still_gives_a_typed_error() -> None:
    kusto, _ = client(*[answer(502, "<html>Bad gateway</html>")] * 4)
    with pytest.raises(TransientKustoError, match="HTTP_502"):
        submit(kusto)


class Tries:
    def __init__(self) -> None:
        self.seen: list[str | int] = []

    def sending(self) -> None:
        self.seen.append("sending")

    def answered(self, status: int) -> None:
        self.seen.append(status)


def test_the_observer_hears_each_try_go_out_and_how_it_was_answered() -> None:
    throttled = answer(429, one_api_error("TooManyRequests", "throttled"), Retry_After="1")
    kusto, _ = client(throttled, answer(200, {"ingestionOperationId": "op-1"}))
    tries = Tries()
    kusto.submit("Telemetry", "Events", [BlobSource(SAS_URL, SOURCE_ID)], {"format": "csv"}, observer=tries)
    assert tries.seen == ["sending", 429, "sending", 200]


def test_the_observer_hears_no_answer_when_none_came() -> None:
    kusto, _ = client(ServiceResponseError("connection reset by peer"))
    tries = Tries()
    with pytest.raises(UncertainKustoError):
        kusto.submit("Telemetry", "Events", [BlobSource(SAS_URL, SOURCE_ID)], {"format": "csv"}, observer=tries)
    assert tries.seen == ["sending"]


def test_a_post_whose_answer_never_came_is_not_repeated_and_is_uncertain() -> None:
    kusto, transport = client(ServiceResponseTimeoutError("read timed out"))
    with pytest.raises(UncertainKustoError, match=r"no answer came back.*read timed out"):
        submit(kusto)
    assert len(transport.requests) == 1, "a POST that may have been accepted is not blindly repeated"


def test_a_dropped_connection_after_the_request_went_out_is_uncertain() -> None:
    kusto, _ = client(ServiceResponseError("connection reset by peer"))
    with pytest.raises(UncertainKustoError, match="connection reset by peer"):
        submit(kusto)


def test_a_connection_that_was_never_made_is_transient_and_certain() -> None:
    kusto, _ = client(ServiceRequestError("connection refused"))
    with pytest.raises(TransientKustoError, match="connection refused") as caught:
        submit(kusto)
    assert not isinstance(caught.value, UncertainKustoError)


def test_a_budget_spent_on_throttled_tries_is_a_certain_timeout() -> None:
    # azure-core raises a *response* timeout before a retry it never sends; every try that went out was answered.
    def slow_throttle(_request: Any) -> Any:
        time.sleep(0.6)
        return answer(429, one_api_error("TooManyRequests", "throttled"), Retry_After="1")

    kusto, transport = client(*[slow_throttle] * 4)
    with pytest.raises(TransientKustoError, match="timed out") as caught:
        kusto.submit("Telemetry", "Events", [BlobSource(SAS_URL, SOURCE_ID)], {"format": "csv"}, timeout=1.5)
    assert not isinstance(caught.value, UncertainKustoError)
    assert len(transport.requests) == 3


def test_a_get_that_timed_out_is_retried() -> None:
    status = {"status": {"succeeded": 1, "failed": 0, "inProgress": 0, "canceled": 0}}
    kusto, transport = client(ServiceResponseTimeoutError("read timed out"), answer(200, status))
    assert kusto.get_status("Telemetry", "Events", "op").succeeded == 1
    assert len(transport.requests) == 2


def test_401_is_an_auth_error_transient_for_the_batch_and_naming_the_fix() -> None:
    kusto, transport = client(answer(401, "", WWW_Authenticate="Bearer"))
    with pytest.raises(KustoAuthError, match="KUSTO_CREDENTIAL") as caught:
        submit(kusto)
    assert isinstance(caught.value, TransientKustoError)
    assert len(transport.requests) == 1


# -- authentication and logging --------------------------------------------------------------------------


def test_the_credential_gives_a_bearer_token_for_the_configured_scope() -> None:
    credential = FixedTokenCredential()
    kusto, transport = client(
        answer(200, {"ingestionOperationId": "op"}), credential=credential, KUSTO_TOKEN_SCOPE="https://kusto.example/.default"
    )
    submit(kusto)
    assert transport.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert credential.scopes == [("https://kusto.example/.default",)]


def test_a_credential_that_cannot_get_a_token_is_an_auth_error() -> None:
    kusto, transport = client(credential=FixedTokenCredential(fail=True))
    with pytest.raises(KustoAuthError, match="MANAGED_IDENTITY_CLIENT_ID"):
        submit(kusto)
    assert transport.requests == []


def test_http_logging_redacts_the_token_and_never_logs_the_body(caplog: pytest.LogCaptureFixture) -> None:
    kusto, _ = client(answer(400, one_api_error("BadRequest", f"bad blob {SAS_URL}")), credential=FixedTokenCredential())
    with caplog.at_level(logging.DEBUG, logger="shared.kusto_pipeline.http"), pytest.raises(PermanentKustoError):
        submit(kusto)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "x-ms-client-request-id" in logged, "the request/response log lines were written"
    assert TOKEN not in logged
    assert "SuperSecretSig" not in logged


def test_request_lines_are_not_logged_unless_the_http_logger_is_turned_up(caplog: pytest.LogCaptureFixture) -> None:
    kusto, _ = client(answer(400, one_api_error("BadRequest", "bad")))
    with caplog.at_level(logging.INFO), pytest.raises(PermanentKustoError):
        submit(kusto)
    assert not [record for record in caplog.records if record.name == "shared.kusto_pipeline.http"]


def test_the_credential_is_required_unless_the_setting_says_none() -> None:
    with pytest.raises(ValueError, match="KUSTO_CREDENTIAL"):
        kusto_client(settings(KUSTO_CREDENTIAL="managedidentity"), None, transport=ScriptedTransport())


# -- configuration ---------------------------------------------------------------------------------------


def configuration(max_blobs: Any = 20, refresh: str = "01:00:00") -> dict[str, Any]:
    return {
        "containerSettings": {"containers": [{"path": "https://x/c?sig=s"}], "refreshInterval": refresh},
        "ingestionSettings": {"maxBlobsPerBatch": max_blobs, "maxDataSize": 6442450944},
    }


def test_configuration_is_cached_for_its_refresh_interval() -> None:
    clock = FakeClock()
    kusto, transport = client(answer(200, configuration(15, "00:05:00")), answer(200, configuration(12)), clock=clock)
    assert kusto.get_configuration().max_blobs_per_batch == 15
    clock.now += 299
    assert kusto.get_configuration().max_blobs_per_batch == 15
    assert len(transport.requests) == 1
    clock.now += 2
    assert kusto.get_configuration().max_blobs_per_batch == 12
    assert transport.requests[0].url == "http://127.0.0.1:9/v1/rest/ingestion/configuration"


def test_configuration_is_refreshed_at_least_hourly() -> None:
    clock = FakeClock()
    kusto, _ = client(answer(200, configuration(15, "1.00:00:00")), answer(200, configuration(12)), clock=clock)
    kusto.get_configuration()
    clock.now += 3601
    assert kusto.get_configuration().max_blobs_per_batch == 12


def test_configuration_falls_back_to_20_when_the_call_fails_and_tries_again_later() -> None:
    clock = FakeClock()
    kusto, _ = client(answer(403, one_api_error("Forbidden", "no")), answer(200, configuration(30)), clock=clock)
    fallback = kusto.get_configuration()
    assert (fallback.max_blobs_per_batch, fallback.from_server) == (FALLBACK_MAX_BLOBS_PER_BATCH, False)
    assert kusto.get_configuration() is fallback, "a failure is not retried on every call"
    clock.now += 61
    assert kusto.get_configuration().max_blobs_per_batch == 30


@pytest.mark.parametrize(("server", "setting", "expected"), [(20, "20", 20), (70, "20", 20), (10, "20", 10), (70, "50", 50)])
def test_effective_batch_size_is_the_smaller_of_server_and_setting(server: int, setting: str, expected: int) -> None:
    kusto, _ = client(answer(200, configuration(server)), MAX_BLOBS_PER_BATCH=setting)
    assert kusto.effective_batch_size() == expected


@pytest.mark.parametrize("bad", [0, -1, "20", None, True])
def test_an_unusable_max_blobs_per_batch_gives_the_fallback(bad: Any) -> None:
    kusto, _ = client(answer(200, configuration(bad)))
    assert kusto.get_configuration().max_blobs_per_batch == FALLBACK_MAX_BLOBS_PER_BATCH


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("01:00:00", 3600), ("00:00:30", 30), ("1.02:03:04", 93784), ("00:00:01.5000000", 1.5), ("23:59:59", 86399)],
)
def test_timespans_parse(text: str, seconds: float) -> None:
    assert parse_timespan(text) == seconds


@pytest.mark.parametrize("text", ["", "1h", "01:00", "aa:bb:cc", "01:00:00:00"])
def test_bad_timespans_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="TimeSpan"):
        parse_timespan(text)


def test_retry_after_parses_seconds_and_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


# -- status ----------------------------------------------------------------------------------------------


def test_status_reads_the_spec_spelling() -> None:
    document = {
        "startTime": "2026-01-01T00:00:00Z",
        "lastUpdated": "2026-01-01T00:01:00Z",
        "status": {"succeeded": 1, "failed": 1, "inProgress": 1, "canceled": 0},
        "details": [
            {
                "sourceId": "s1",
                "status": "Succeeded",
                "startedAt": "2026-01-01T00:00:01Z",
                "lastUpdateTime": "2026-01-01T00:00:09Z",
            },
            {
                "sourceId": "s2",
                "status": "Failed",
                "errorCode": "BadRequest_EmptyBlob",
                "failureStatus": "Permanent",
                "details": f"empty {SAS_URL}",
            },
            {"sourceId": "s3", "status": "Queued"},
        ],
    }
    kusto, transport = client(answer(200, document))
    status = kusto.get_status("Telemetry", "My Events", "00001111;22223333;a/b")
    assert transport.requests[0].url == (
        "http://127.0.0.1:9/v1/rest/ingestion/queued/Telemetry/My%20Events/00001111%3B22223333%3Ba%2Fb?details=true"
    )
    assert (status.succeeded, status.failed, status.in_progress, status.canceled) == (1, 1, 1, 0)
    assert status.start_time == "2026-01-01T00:00:00Z"
    ok, failed, queued = status.blobs
    assert ok.finished and ok.started_at == "2026-01-01T00:00:01Z" and ok.last_updated == "2026-01-01T00:00:09Z"
    assert (failed.error_code, failed.failure_status) == ("BadRequest_EmptyBlob", "Permanent")
    assert "SuperSecretSig" not in (failed.details or "")
    assert not queued.finished


def test_status_reads_the_docs_spelling() -> None:
    document = {
        "Status": {"Succeeded": 2, "Failed": 0, "InProgress": 0, "Canceled": 1},
        "Details": [{"SourceId": "s1", "Status": "succeeded", "StartTime": "t1", "LastUpdated": "t2", "Url": SAS_URL}],
    }
    kusto, transport = client(answer(200, document))
    status = kusto.get_status("Telemetry", "Events", "op", details=False)
    assert transport.requests[0].url.endswith("/Telemetry/Events/op")
    assert (status.succeeded, status.canceled) == (2, 1)
    [blob] = status.blobs
    assert (blob.status, blob.started_at, blob.last_updated) == ("Succeeded", "t1", "t2")
    assert blob.url == "https://acct.blob.core.windows.net/staging/db/t/a.csv"


def test_an_operation_id_that_cannot_be_a_path_segment_is_refused() -> None:
    kusto, transport = client()
    with pytest.raises(PermanentKustoError, match="cannot be queried"):
        kusto.get_status("Telemetry", "Events", "..")
    assert transport.requests == []
