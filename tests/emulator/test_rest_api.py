"""The REST queued-ingestion endpoints: submit, status, configuration, auth metadata, and refusals."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import requests
from azure.storage.blob import ContainerClient

from tests.emulator.conftest import KustoCalls
from tests.support.waiting import wait_for

CSV = b"alpha,1,2024-01-01T00:00:00Z,true\nbeta,2,2024-01-02T00:00:00Z,false\n"


def error_of(response: requests.Response) -> dict:
    body = response.json()
    assert set(body["error"]) >= {"code", "message", "@type", "@message", "@context", "@permanent"}, body
    return body["error"]


def test_submit_returns_an_operation_id_and_status_reports_each_blob(kusto, staging, db_table):
    database, table = db_table()
    urls = [staging.put(f"part{i}.csv", CSV) for i in range(3)]

    response = kusto.submit(
        database, table, [{"url": url, "sourceId": f"src-{i}", "rawSize": len(CSV)} for i, url in enumerate(urls)]
    )
    operation_id = response.json()["ingestionOperationId"]
    final = kusto.wait(database, table, operation_id)

    assert response.status_code == 200 and ";" in operation_id
    assert final["status"] == {"succeeded": 3, "failed": 0, "inProgress": 0, "canceled": 0}
    assert final["startTime"].endswith("Z") and final["lastUpdated"] >= final["startTime"]
    assert [blob["sourceId"] for blob in final["details"]] == ["src-0", "src-1", "src-2"]
    for blob, name in zip(final["details"], ["part0.csv", "part1.csv", "part2.csv"], strict=True):
        assert blob["url"] == staging.plain_url(name)
        assert blob["status"] == "Succeeded"
        assert blob["startedAt"] == blob["startTime"] and blob["lastUpdateTime"] == blob["lastUpdated"]
        assert blob["errorCode"] is None and blob["failureStatus"] is None
    assert kusto.count(database, table) == 6


def test_status_without_details_has_counts_only(kusto, staging, db_table):
    database, table = db_table()
    response = kusto.submit(database, table, [{"url": staging.put("a.csv", CSV)}])
    operation_id = response.json()["ingestionOperationId"]
    kusto.wait(database, table, operation_id)

    body = kusto.status(database, table, operation_id, details=False).json()

    assert "details" not in body and body["status"]["succeeded"] == 1


def test_operation_id_may_arrive_url_encoded_or_not(kusto, staging, db_table):
    database, table = db_table()
    operation_id = kusto.submit(database, table, [{"url": staging.put("a.csv", CSV)}]).json()["ingestionOperationId"]

    raw = requests.get(f"{kusto.url}/v1/rest/ingestion/queued/{database}/{table}/{operation_id}", timeout=10)
    encoded = requests.get(f"{kusto.url}/v1/rest/ingestion/queued/{database}/{table}/{quote(operation_id, safe='')}", timeout=10)

    assert raw.status_code == encoded.status_code == 200


def test_untracked_submission_returns_empty_id_and_still_ingests(kusto, staging, db_table):
    database, table = db_table()

    response = kusto.submit(database, table, [{"url": staging.put("a.csv", CSV)}], enableTracking=False)

    assert response.json() == {"ingestionOperationId": ""}
    wait_for(lambda: kusto.count(database, table), "the untracked blob's rows", timeout=60)
    assert kusto.count(database, table) == 2


def test_unknown_operation_is_404(kusto, db_table):
    database, table = db_table()

    response = kusto.status(database, table, "1;2;no-such-operation")

    assert response.status_code == 404
    assert error_of(response)["code"] == "BadRequest_EntityNotFound"


def test_unknown_table_is_404_with_kusto_error(kusto, db_table):
    database, _ = db_table()

    response = kusto.submit(database, "NoSuchTable", [{"url": "http://127.0.0.1/devstoreaccount1/c/a.csv"}])

    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "BadRequest_TableNotExist" and "NoSuchTable" in error["@message"] and error["@permanent"] is True


def test_unknown_database_is_404_without_auto_create(start_own_emulator):
    own = KustoCalls(start_own_emulator("--database", "Known").url)

    response = own.submit("Unknown", "T", [{"url": "http://127.0.0.1/devstoreaccount1/c/a.csv"}])
    known = own.mgmt("Known", ".show tables")

    assert response.status_code == 404 and error_of(response)["code"] == "BadRequest_DatabaseNotExist"
    assert known.status_code == 200


def test_configuration_reports_limits_and_a_usable_container(kusto, staging):
    body = requests.get(f"{kusto.url}/v1/rest/ingestion/configuration", timeout=10).json()

    assert body["ingestionSettings"]["maxBlobsPerBatch"] == 20
    assert body["ingestionSettings"]["maxDataSize"] == 6 * 1024**3
    container_url = body["containerSettings"]["containers"][0]["path"]
    ContainerClient.from_container_url(container_url).upload_blob("probe.csv", b"x", overwrite=True)
    assert body["containerSettings"]["refreshInterval"] == "01:00:00"


def test_auth_metadata_is_served_without_a_token(start_own_emulator):
    emulator = start_own_emulator("--require-token", "s3cret")

    response = requests.get(f"{emulator.url}/v1/rest/auth/metadata", timeout=10)

    assert response.status_code == 200
    assert response.json()["AzureAD"]["KustoServiceResourceId"].startswith("https://")


def _post_raw(kusto, path: str, data: bytes, content_type: str = "application/json") -> requests.Response:
    return requests.post(f"{kusto.url}{path}", data=data, headers={"Content-Type": content_type}, timeout=30)


BAD_BODIES = [
    ("malformed", b'{"blobs": [', "not valid JSON"),
    ("not-utf8", b'{"blobs": "\xff\xfe"}', "not valid UTF-8"),
    ("empty", b"", "empty"),
    ("array", b"[]", "is not of type 'object'"),
    ("no-blobs-key", json.dumps({"properties": {"format": "csv"}}).encode(), "'blobs' is a required property"),
    ("no-blobs", json.dumps({"blobs": [], "properties": {"format": "csv"}}).encode(), "$.blobs"),
    ("wrong-type", json.dumps({"blobs": [{"url": 5}], "properties": {"format": "csv"}}).encode(), "$.blobs[0].url"),
    (
        "raw-size",
        json.dumps({"blobs": [{"url": "http://x/a/b", "rawSize": "big"}], "properties": {"format": "csv"}}).encode(),
        "rawSize",
    ),
    (
        "tracking-type",
        json.dumps({"blobs": [{"url": "http://x/a/b"}], "properties": {"format": "csv", "enableTracking": "yes"}}).encode(),
        "enableTracking",
    ),
    ("no-format", json.dumps({"blobs": [{"url": "http://x/a/b"}], "properties": {}}).encode(), "'format' is a required property"),
    (
        "bad-format",
        json.dumps({"blobs": [{"url": "http://x/a/b"}], "properties": {"format": "xlsx"}}).encode(),
        "unknown format 'xlsx'",
    ),
    (
        "bad-time",
        json.dumps({"blobs": [{"url": "http://x/a/b"}], "properties": {"format": "csv", "creationTime": "yesterday"}}).encode(),
        "creationTime",
    ),
    (
        "duplicates",
        json.dumps(
            {"blobs": [{"url": "http://x/a/b?sig=1"}, {"url": "http://x/a/b?sig=2"}], "properties": {"format": "csv"}}
        ).encode(),
        "appears more than once",
    ),
    (
        "two-mappings",
        json.dumps(
            {
                "blobs": [{"url": "http://x/a/b"}],
                "properties": {"format": "csv", "ingestionMapping": "[]", "ingestionMappingReference": "m"},
            }
        ).encode(),
        "not both",
    ),
    (
        "too-many",
        json.dumps({"blobs": [{"url": f"http://x/a/{i}"} for i in range(21)], "properties": {"format": "csv"}}).encode(),
        "at most 20",
    ),
]


@pytest.mark.parametrize(("body", "fragment"), [case[1:] for case in BAD_BODIES], ids=[case[0] for case in BAD_BODIES])
def test_bad_submission_is_400_naming_the_problem(kusto, db_table, body, fragment):
    database, table = db_table()

    response = _post_raw(kusto, f"/v1/rest/ingestion/queued/{database}/{table}", body)

    assert response.status_code == 400, response.text
    assert fragment in error_of(response)["@message"]
    assert kusto.healthy()


def test_sas_never_echoed_in_errors(kusto, db_table):
    database, table = db_table()
    body = {
        "blobs": [{"url": "http://x/a/b?sv=1&sig=TOPSECRET"}, {"url": "http://x/a/b?sig=TOPSECRET"}],
        "properties": {"format": "csv"},
    }

    response = _post_raw(kusto, f"/v1/rest/ingestion/queued/{database}/{table}", json.dumps(body).encode())

    assert response.status_code == 400 and "TOPSECRET" not in response.text


def test_huge_body_is_413(kusto, db_table):
    database, table = db_table()
    huge = json.dumps({"blobs": [{"url": "http://x/" + "a" * (2 * 1024 * 1024)}], "properties": {"format": "csv"}}).encode()

    response = _post_raw(kusto, f"/v1/rest/ingestion/queued/{database}/{table}", huge)

    assert response.status_code == 413 and error_of(response)["code"] == "BadRequest_RequestTooLarge"
    assert kusto.healthy()


@pytest.mark.parametrize("name", ["%FF%FE", "trailing%20", "semi%3Bcolon", "%E2%9C%93", "%0Anewline"])
def test_invalid_entity_names_in_the_path_are_400(kusto, name):
    response = _post_raw(
        kusto, f"/v1/rest/ingestion/queued/{name}/T", b'{"blobs":[{"url":"http://x/a/b"}],"properties":{"format":"csv"}}'
    )

    assert response.status_code in (400, 404)
    assert error_of(response)["code"] in ("BadRequest_EntityNameIsNotValid", "BadRequest_EntityNotFound")
    assert kusto.healthy()


def test_unknown_route_and_method_get_kusto_errors(kusto):
    missing = requests.get(f"{kusto.url}/v1/rest/nothing-here", timeout=10)
    wrong_method = requests.delete(f"{kusto.url}/v1/rest/ingestion/configuration", timeout=10)

    assert missing.status_code == 404 and error_of(missing)
    assert wrong_method.status_code == 405 and error_of(wrong_method)


def test_responses_echo_the_client_request_id_and_name_an_activity(kusto):
    response = requests.get(
        f"{kusto.url}/v1/rest/ingestion/configuration", headers={"x-ms-client-request-id": "KIC.execute;1234"}, timeout=10
    )

    assert response.headers["x-ms-client-request-id"] == "KIC.execute;1234"
    assert len(response.headers["x-ms-activity-id"]) == 36
