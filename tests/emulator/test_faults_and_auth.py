"""Bearer-token checks, injected throttling / errors / blob failures, and the admin counters."""

from __future__ import annotations

import http.client
import signal
import time

import requests

from tests.emulator.conftest import KustoCalls
from tests.support.waiting import wait_for

CSV = b"alpha,1,2024-01-01T00:00:00Z,true\n"


def test_require_token_refuses_other_tokens_with_401(start_own_emulator):
    emulator = start_own_emulator("--require-token", "s3cret", "--auto-create-databases")

    missing = requests.get(f"{emulator.url}/v1/rest/ingestion/configuration", timeout=10)
    wrong = requests.get(f"{emulator.url}/v1/rest/ingestion/configuration", headers={"Authorization": "Bearer nope"}, timeout=10)
    right = KustoCalls(emulator.url, token="s3cret").mgmt("D", ".show tables")

    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["error"]["code"] == "Unauthorized"
    assert right.status_code == 200
    assert "s3cret" not in (emulator.data_dir.parent / "emulator.log").read_text()


def test_any_token_is_accepted_by_default(kusto, db_table):
    database, _ = db_table()

    response = requests.post(
        f"{kusto.url}/v1/rest/mgmt",
        json={"db": database, "csl": ".show tables"},
        headers={"Authorization": "Bearer anything"},
        timeout=10,
    )

    assert response.status_code == 200


def test_throttle_rate_one_answers_429_with_retry_after(start_own_emulator):
    emulator = start_own_emulator("--throttle-rate", "1", "--retry-after-seconds", "7")

    response = requests.get(f"{emulator.url}/v1/rest/ingestion/configuration", timeout=10)
    admin = requests.get(f"{emulator.url}/admin/health", timeout=10)

    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert response.json()["error"]["@permanent"] is False
    assert admin.status_code == 200


def test_faults_change_at_run_time(start_own_emulator):
    emulator = start_own_emulator()
    faults_url = f"{emulator.url}/admin/faults"

    failing = requests.put(faults_url, json={"errorRate": 1.0}, timeout=10).json()
    refused = requests.get(f"{emulator.url}/v1/rest/ingestion/configuration", timeout=10)
    requests.put(faults_url, json={"errorRate": 0, "latencyMs": 1, "throttleRate": 0}, timeout=10)
    served = requests.get(f"{emulator.url}/v1/rest/ingestion/configuration", timeout=10)
    current = requests.get(faults_url, timeout=10).json()

    assert failing["errorRate"] == 1.0
    assert refused.status_code == 500 and refused.json()["error"]["@permanent"] is False
    assert served.status_code == 200
    assert current == {
        "throttleRate": 0.0,
        "errorRate": 0.0,
        "latencyMs": 1,
        "retryAfterSeconds": 1,
        "failBlobs": [],
        "errorBlobs": [],
        "holdIngestion": False,
    }


def test_bad_fault_settings_are_refused(kusto):
    for body in (
        {"throttleRate": 2},
        {"latencyMs": -1},
        {"failBlobs": [{"pattern": "*"}]},
        {"errorBlobs": "*"},
        {"errorBlobs": [""]},
        {"holdIngestion": 1},
        {"unknown": 1},
        [1],
    ):
        response = requests.put(f"{kusto.url}/admin/faults", json=body, timeout=10)
        assert response.status_code == 400, body
    assert requests.get(f"{kusto.url}/admin/faults", timeout=10).json()["throttleRate"] == 0.0


def test_fail_blobs_flag_forces_the_error_code(start_own_emulator, staging):
    emulator = start_own_emulator("--auto-create-databases", "--fail-blobs", "*poison*=Download_UnknownError")
    own = KustoCalls(emulator.url)
    own.mgmt_rows("D", ".create table T (name:string, n:long, ts:datetime, ok:bool)")

    outcome = own.ingest("D", "T", [staging.put("fine.csv", CSV), staging.put("poison-1.csv", CSV)])

    by_url = {blob["url"].rsplit("/", 1)[-1]: blob for blob in outcome["details"]}
    assert by_url["fine.csv"]["status"] == "Succeeded"
    assert (by_url["poison-1.csv"]["errorCode"], by_url["poison-1.csv"]["failureStatus"]) == (
        "Download_UnknownError",
        "Transient",
    )


def test_fail_blobs_set_at_run_time(kusto, staging, db_table):
    database, table = db_table()
    rule = {"pattern": f"{staging.container.container_name}/doomed-*", "errorCode": "BadRequest_InvalidBlob"}
    requests.put(f"{kusto.url}/admin/faults", json={"failBlobs": [rule]}, timeout=10)
    try:
        outcome = kusto.ingest(database, table, [staging.put("doomed-1.csv", CSV)])
    finally:
        requests.put(f"{kusto.url}/admin/faults", json={"failBlobs": []}, timeout=10)

    assert outcome["details"][0]["errorCode"] == "BadRequest_InvalidBlob"


def test_held_ingestion_accepts_blobs_and_works_them_off_once_released(start_own_emulator, staging):
    emulator = start_own_emulator("--auto-create-databases")
    own = KustoCalls(emulator.url)
    own.mgmt_rows("D", ".create table T (name:string, n:long, ts:datetime, ok:bool)")
    requests.put(f"{emulator.url}/admin/faults", json={"holdIngestion": True}, timeout=10)

    accepted = own.submit("D", "T", [{"url": staging.put("held.csv", CSV), "sourceId": "s0"}])
    operation = accepted.json()["ingestionOperationId"]
    time.sleep(1.5)  # three of the held workers' looks at their stop signal
    while_held = own.status("D", "T", operation).json()["status"]
    rows_while_held = own.count("D", "T")
    requests.put(f"{emulator.url}/admin/faults", json={"holdIngestion": False}, timeout=10)
    released = own.wait("D", "T", operation)

    assert accepted.status_code == 200
    assert (while_held["inProgress"], rows_while_held) == (1, 0)
    assert released["status"]["succeeded"] == 1 and own.count("D", "T") == 1


def test_a_held_emulator_stops_on_sigterm_leaving_its_blobs_to_resume(start_own_emulator, staging):
    emulator = start_own_emulator("--auto-create-databases")
    own = KustoCalls(emulator.url)
    own.mgmt_rows("D", ".create table T (name:string, n:long, ts:datetime, ok:bool)")
    requests.put(f"{emulator.url}/admin/faults", json={"holdIngestion": True}, timeout=10)
    blobs = [{"url": staging.put(f"held-{index}.csv", CSV), "sourceId": f"s{index}"} for index in range(60)]
    operations = [own.submit("D", "T", blobs[start : start + 20]).json()["ingestionOperationId"] for start in (0, 20, 40)]

    emulator.stop()  # SIGTERM, then SIGKILL after 10 s: 60 held blobs waiting 0.5 s each would take 15 s
    restarted = KustoCalls(start_own_emulator("--auto-create-databases", data_dir=emulator.data_dir).url)
    resumed = [restarted.wait("D", "T", operation)["status"]["succeeded"] for operation in operations]

    assert emulator.process.returncode == -signal.SIGTERM  # ended on the SIGTERM, not by the SIGKILL 10 s later
    assert resumed == [20, 20, 20] and restarted.count("D", "T") == 60


def test_stats_count_requests_per_route_and_blobs(start_own_emulator, staging):
    emulator = start_own_emulator("--auto-create-databases")
    own = KustoCalls(emulator.url)
    own.mgmt_rows("D", ".create table T (name:string, n:long, ts:datetime, ok:bool)")
    own.ingest("D", "T", [staging.put("one.csv", CSV), staging.put("two.csv", b"")])

    stats = wait_for(
        lambda: (body := requests.get(f"{emulator.url}/admin/stats", timeout=10).json())["blobs"]["failed"] == 1 and body
    )

    assert stats["requests"]["POST /v1/rest/ingestion/queued/{database}/{table}"] == 1
    assert stats["requests"]["POST /v1/rest/mgmt"] == 1
    assert stats["blobs"] == {"succeeded": 1, "failed": 1, "skipped": 0}
    assert stats["rowsIngested"] == 1


def test_log_has_one_line_per_request_and_per_ingestion_without_sas(start_own_emulator, staging):
    emulator = start_own_emulator("--auto-create-databases")
    own = KustoCalls(emulator.url)
    own.mgmt_rows("D", ".create table T (name:string, n:long, ts:datetime, ok:bool)")
    url = staging.put("logged.csv", CSV)
    own.ingest("D", "T", [url])

    line = f"ingestion D.T {staging.plain_url('logged.csv')} succeeded: 1 rows"

    def log_with_line() -> str:
        text = (emulator.data_dir.parent / "emulator.log").read_text()
        return text if line in text else ""

    log = wait_for(log_with_line)

    assert "POST /v1/rest/ingestion/queued/D/T 200" in log
    assert url.split("?", 1)[1] not in log and "sig=" not in log


def test_an_idle_connection_stays_open_as_behind_azures_load_balancers(emulator):
    """A pooled connection idle for more than uvicorn's default 5 s must still take the next request: a reset on a
    POST is, for a Kusto client, a request that may have arrived (the app then holds the chunk and announces it)."""
    host, port = emulator.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for _ in range(2):
            connection.request("GET", "/v1/rest/ingestion/configuration")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            assert response.getheader("connection", "").lower() != "close"
            time.sleep(6)
    finally:
        connection.close()
