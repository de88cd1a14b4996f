"""The cost section prices every operation the bench's counting clients can see, and none at zero by default.

The figures it prints are measurements at list prices, never asserted; what is checked is that nothing the
counting transport tallies goes unpriced (an operation without a price raises instead), that each operation
adds its class's price, and that a small run of the section prints its rows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import cost_model, prices
from bench.__main__ import parse_args, run
from bench.counting import REST_OPERATIONS, UNRECOGNISED, RequestCounter, rest_operation
from bench.report import format_table, table_rows

Q = "http://127.0.0.1:10001/devstoreaccount1"  # Azurite's URLs: the account is the path's first segment
B = "http://127.0.0.1:10000/devstoreaccount1"
COPY = ("x-ms-copy-source",)  # the names of the headers that matter

# One request of each kind the counting transport names: (method, url, header names) -> REST operation.
REQUESTS = {
    ("POST", f"{Q}/q/messages", ()): "Put Message",
    ("GET", f"{Q}/q/messages?numofmessages=32&visibilitytimeout=60", ()): "Get Messages",
    ("GET", f"{Q}/q/messages?peekonly=true", ()): "Peek Messages",
    ("DELETE", f"{Q}/q/messages/id-1?popreceipt=r", ()): "Delete Message",
    ("DELETE", f"{Q}/q/messages", ()): "Clear Messages",
    ("PUT", f"{Q}/q/messages/id-1?popreceipt=r&visibilitytimeout=0", ()): "Update Message",
    ("GET", f"{Q}/q?comp=metadata", ()): "Get Queue Metadata",
    ("PUT", f"{Q}/q?comp=metadata", ()): "Set Queue Metadata",
    ("PUT", f"{Q}/q", ()): "Create Queue",
    ("DELETE", f"{Q}/q", ()): "Delete Queue",
    ("GET", f"{B}/c/db/t/a.csv", ()): "Get Blob",
    ("HEAD", f"{B}/c/db/t/a.csv", ()): "Get Blob Properties",
    ("GET", f"{B}/c/a.csv?comp=metadata", ()): "Get Blob Metadata",
    ("GET", f"{B}/c/a.csv?comp=blocklist", ()): "Get Block List",
    ("GET", f"{B}/c/a.csv?comp=tags", ()): "Get Blob Tags",
    ("PUT", f"{B}/c/a.csv", ()): "Put Blob",
    ("PUT", f"{B}/quarantine/a.csv", COPY): "Copy Blob",
    ("PUT", f"{B}/c/a.csv?comp=block&blockid=x", ()): "Put Block",
    ("PUT", f"{B}/c/a.csv?comp=blocklist", ()): "Put Block List",
    ("PUT", f"{B}/state/submitted/202612020720?comp=appendblock", ()): "Append Block",
    ("PUT", f"{B}/c/a.csv?comp=seal", ()): "Append Blob Seal",
    ("PUT", f"{B}/c/a.csv?comp=metadata", ()): "Set Blob Metadata",
    ("PUT", f"{B}/c/a.csv?comp=properties", ()): "Set Blob Properties",
    ("PUT", f"{B}/c/a.csv?comp=tags", ()): "Set Blob Tags",
    ("PUT", f"{B}/c/a.csv?comp=tier", ()): "Set Blob Tier",
    ("PUT", f"{B}/c/a.csv?comp=lease", ()): "Lease Blob",
    ("DELETE", f"{B}/c/a.csv", ()): "Delete Blob",
    ("PUT", f"{B}/c?restype=container", ()): "Create Container",
    ("GET", f"{B}/c?restype=container", ()): "Get Container Properties",
    ("GET", f"{B}/c?restype=container&comp=metadata", ()): "Get Container Metadata",
    ("GET", f"{B}/c?restype=container&comp=list&prefix=submitted/", ()): "List Blobs",
    ("DELETE", f"{B}/c?restype=container", ()): "Delete Container",
}


def _operation(method: str, url: str, headers: tuple[str, ...]) -> str:
    return rest_operation(method, url, dict.fromkeys(headers, "x"))


def test_the_counting_transport_names_each_request_by_its_rest_operation_and_names_no_other() -> None:
    assert {request: _operation(*request) for request in REQUESTS} == REQUESTS
    assert set(REQUESTS.values()) == set(REST_OPERATIONS)
    assert rest_operation("GET", f"{Q}/?comp=list").startswith(UNRECOGNISED)
    assert rest_operation("POST", f"{B}/c/a.csv?comp=query").startswith(UNRECOGNISED)


def test_a_counter_with_one_of_each_operation_has_each_priced_and_adding_its_price() -> None:
    counter = RequestCounter()
    for request in REQUESTS:
        counter.add("kind", _operation(*request))

    lines = cost_model.storage_lines(counter.reset_operations())

    priced = [operation for line in lines for operation in (part.rsplit(" ", 1)[0] for part in line["operations"].split(", "))]
    assert sorted(priced) == sorted(REST_OPERATIONS)  # every operation is in exactly one priced line
    for operation in REST_OPERATIONS:
        (line,) = cost_model.storage_lines({operation: 1})
        billing_class = prices.STORAGE_OPERATION_CLASS[operation]
        assert line["usdPerMillion"] == pytest.approx(prices.PRICES[billing_class].each() * 1_000_000)
        # Deletes are documented free on general purpose v2: the only zero, and a written one.
        assert line["usdPerMillion"] > 0 or billing_class == "blob free"
    assert sum(line["usdPerMillion"] for line in lines) == pytest.approx(
        sum(cost_model.storage_lines({operation: 1})[0]["usdPerMillion"] for operation in REST_OPERATIONS)
    )


def test_an_operation_without_a_price_raises_instead_of_costing_nothing() -> None:
    unknown = rest_operation("GET", f"{Q}/?comp=list")
    with pytest.raises(cost_model.UnpricedOperationError, match="no price"):
        cost_model.storage_lines({"Put Message": 1, unknown: 1})
    with pytest.raises(LookupError):
        prices.PRICES["event hubs ingress event"].each()  # not found: never a silent zero


@pytest.mark.parametrize(("seconds", "billed"), [(0.004, 1.0), (0.999, 1.0), (1.0, 1.0), (1.2, 1.2), (1.23, 1.3), (7.01, 7.1)])
def test_flex_bills_an_activity_period_at_least_a_second_then_by_the_next_100_ms(seconds: float, billed: float) -> None:
    assert cost_model.billable_seconds(seconds) == pytest.approx(billed)


def test_the_deployment_priced_is_the_one_infra_deploys() -> None:
    deployment = cost_model.read_deployment()

    assert deployment.storage == prices.STORAGE_ACCOUNT
    assert deployment.instance_memory_mb in (512, 2048, 4096)
    assert cost_model.runs_a_month("*/10 * * * * *") == 259_200
    assert {timer: cost_model.runs_a_month(schedule) > 0 for timer, schedule in deployment.schedules.items()} == dict.fromkeys(
        cost_model.TIMERS, True
    )


@pytest.mark.e2e
def test_a_small_cost_run_prices_all_three_paths_and_prints_their_rows(tmp_path: Path) -> None:
    results = run(parse_args(["--only", "cost", "--cost-blobs", "12", "--out", str(tmp_path)]))

    priced = results["cost"]
    ours = priced["ours"]
    assert priced["run"]["bodies"]["record"]["busy"]["executions"] == 12
    assert ours["unpriced"] == [] and priced["sdk"]["unpriced"] == []
    assert priced["eventGridConnection"]["unpriced"] == ["Event Hubs ingress events"]
    assert 0 < ours["usdPerMillion"]["busy"] < ours["usdPerMillion"]["sparse"]
    assert all(timer["usdAMonth"] > 0 for timer in priced["floor"]["timers"].values())
    table = format_table(table_rows(results))
    assert "$ a million blobs, ours (12 blobs counted), busy / sparse" in table
    assert "official SDK, one ingest_from_blob a blob" in table and "Kusto's Event Grid data connection" in table
    assert "ours with no blobs: the timers, a month" in table and "storage: queue class 1" in table
