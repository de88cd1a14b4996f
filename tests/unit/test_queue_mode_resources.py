"""Queue mode: the management calls, the v1 answers read by column name, and the cache's expiry (fake clock)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.dm_resources import (
    CACHE_LIFETIME_SECONDS,
    REFRESH_MARGIN_SECONDS,
    DataManagementClient,
    DmResourceCache,
    parse_identity_token,
    parse_ingestion_resources,
)
from shared.kusto_errors import KustoAuthError, PermanentKustoError, TransientKustoError
from shared.settings import load_settings
from tests.unit.kusto_fakes import ScriptedTransport, answer, one_api_error

SETTINGS = load_settings(
    {"StagingStorage": "UseDevelopmentStorage=true", "KUSTO_INGEST_URI": "http://127.0.0.1:9", "KUSTO_CREDENTIAL": "none"}
)


def v1(columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {
        "Tables": [
            {
                "TableName": "Table_0",
                "Columns": [{"ColumnName": name, "DataType": "String", "ColumnType": "string"} for name in columns],
                "Rows": rows,
            }
        ]
    }


def resources_answer(generation: int = 0) -> dict[str, Any]:
    return v1(
        ["ResourceTypeName", "StorageRoot"],
        [
            ["SecuredReadyForAggregationQueue", f"http://127.0.0.1:1/acct/ready-g{generation}-0?sig=a"],
            ["SecuredReadyForAggregationQueue", f"http://127.0.0.1:1/acct/ready-g{generation}-1?sig=b"],
            ["TempStorage", "http://127.0.0.1:2/acct/temp?sig=c"],
            ["FailedIngestionsQueue", "http://127.0.0.1:1/acct/failed?sig=d"],
            ["SuccessfulIngestionsQueue", "http://127.0.0.1:1/acct/ok?sig=e"],
            ["IngestionsStatusTable", "http://127.0.0.1:3/acct/status?sig=f"],
        ],
    )


def token_answer(value: str = "t0") -> dict[str, Any]:
    return v1(["AuthorizationContext"], [[value]])


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache_over(transport: ScriptedTransport, clock: FakeClock) -> DmResourceCache:
    return DmResourceCache(DataManagementClient(SETTINGS.kusto_ingest_uri, transport=transport), clock=clock)


def commands(transport: ScriptedTransport) -> list[str]:
    return [json.loads(request.content)["csl"] for request in transport.requests]


def test_resources_are_read_by_column_name_whatever_the_column_order() -> None:
    swapped = v1(["StorageRoot", "ResourceTypeName"], [[row[1], row[0]] for row in resources_answer()["Tables"][0]["Rows"]])
    for document in (resources_answer(), swapped):
        resources = parse_ingestion_resources(document)
        assert [url.split("?")[0] for url in resources.ingestion_queues] == [
            "http://127.0.0.1:1/acct/ready-g0-0",
            "http://127.0.0.1:1/acct/ready-g0-1",
        ]
        assert resources.failure_queue.startswith("http://127.0.0.1:1/acct/failed?")
        assert resources.success_queue is not None and resources.status_table is not None
        assert len(resources.temp_containers) == 1


@pytest.mark.parametrize("missing", ["SecuredReadyForAggregationQueue", "FailedIngestionsQueue"])
def test_an_answer_without_a_needed_queue_is_transient_and_names_it(missing: str) -> None:
    document = resources_answer()
    document["Tables"][0]["Rows"] = [row for row in document["Tables"][0]["Rows"] if row[0] != missing]
    with pytest.raises(TransientKustoError, match=missing):
        parse_ingestion_resources(document)


@pytest.mark.parametrize("document", [{}, {"Tables": []}, {"Tables": [{"Columns": [{"ColumnName": "a"}], "Rows": [[1, 2]]}]}])
def test_an_answer_that_is_not_a_v1_table_is_transient(document: Any) -> None:
    with pytest.raises(TransientKustoError, match="v1 result table"):
        parse_ingestion_resources(document)


def test_the_identity_token_is_read_from_authorization_context() -> None:
    assert parse_identity_token(token_answer("abc")) == "abc"
    with pytest.raises(TransientKustoError, match="AuthorizationContext"):
        parse_identity_token(v1(["AuthorizationContext"], []))


def test_management_calls_post_the_sdk_body_to_v1_rest_mgmt() -> None:
    transport = ScriptedTransport(answer(200, resources_answer()), answer(200, token_answer()))
    cache = cache_over(transport, FakeClock())
    cache.resources()
    cache.identity_token()
    for request in transport.requests:
        assert (request.method, request.url) == ("POST", "http://127.0.0.1:9/v1/rest/mgmt")
        assert json.loads(request.content)["db"] == "NetDefaultDB"
        assert request.headers["x-ms-client-request-id"].startswith("KIC.execute;")
    assert commands(transport) == [".get ingestion resources", ".get kusto identity token"]


def test_resources_and_token_are_fetched_once_per_expiry_and_refreshed_before_the_hour() -> None:
    clock = FakeClock()
    transport = ScriptedTransport(
        answer(200, resources_answer(0)),
        answer(200, token_answer("t1")),
        answer(200, resources_answer(1)),
        answer(200, token_answer("t2")),
    )
    cache = cache_over(transport, clock)
    for _ in range(50):
        assert cache.resources().ingestion_queues[0].startswith("http://127.0.0.1:1/acct/ready-g0-0")
        assert cache.identity_token() == "t1"
    assert len(transport.requests) == 2
    clock.now += CACHE_LIFETIME_SECONDS - REFRESH_MARGIN_SECONDS - 1
    assert cache.identity_token() == "t1"
    clock.now += 1
    assert "ready-g1-0" in cache.resources().ingestion_queues[0]
    assert cache.identity_token() == "t2"
    assert commands(transport)[2:] == [".get ingestion resources", ".get kusto identity token"]


def test_invalidating_refetches_at_once_but_only_the_stale_value() -> None:
    transport = ScriptedTransport(
        answer(200, resources_answer(0)), answer(200, resources_answer(1)), answer(200, token_answer("t1"))
    )
    cache = cache_over(transport, FakeClock())
    old = cache.resources()
    cache.invalidate_resources(old)
    new = cache.resources()
    assert new != old
    cache.invalidate_resources(old)  # another thread's stale view: the fresh value stays
    assert cache.resources() is new
    assert cache.identity_token() == "t1"
    assert len(transport.requests) == 3


def test_a_token_rejection_drops_the_token_and_counts_per_source() -> None:
    transport = ScriptedTransport(answer(200, token_answer("t1")), answer(200, token_answer("t2")))
    cache = cache_over(transport, FakeClock())
    assert cache.identity_token() == "t1"
    assert cache.record_token_rejection("s1") == 1
    assert cache.record_token_rejection("s1") == 2
    assert cache.record_token_rejection("s2") == 1
    assert cache.identity_token() == "t2"


def test_a_failed_fetch_is_not_cached_and_a_5xx_is_retried_by_the_pipeline() -> None:
    transport = ScriptedTransport(
        answer(400, one_api_error("BadRequest", "no", permanent=True)),
        answer(503, one_api_error("ServiceUnavailable", "busy")),
        answer(200, token_answer("t1")),
    )
    cache = cache_over(transport, FakeClock())
    with pytest.raises(PermanentKustoError):
        cache.identity_token()
    assert cache.identity_token() == "t1"
    assert len(transport.requests) == 3


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, KustoAuthError), (403, PermanentKustoError), (429, TransientKustoError)],
)
def test_errors_are_typed_like_the_rest_client(status: int, error: type[Exception]) -> None:
    transport = ScriptedTransport(*[answer(status, one_api_error("Nope", "no"), Retry_After="1")] * 4)
    with pytest.raises(error):
        cache_over(transport, FakeClock()).resources()
