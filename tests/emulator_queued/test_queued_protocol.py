"""The queue-based protocol end to end: Azurite queues, the emulator's consumer and its notifications."""

from __future__ import annotations

import base64
import json
import time
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient
from azure.storage.blob import BlobClient
from azure.storage.queue import QueueClient, QueueServiceClient

from kusto_emulator.identity_token import IdentityTokens, load_or_create_key
from tests.support.waiting import wait_for

from .conftest import ProtocolClient

CSV = b"1,a\n2,b\n3,a\n"


@pytest.mark.parametrize("command", [".get ingestion resources", ".show ingestion resources"])
def test_ingestion_resources_are_advertised_with_sas_urls_that_work(protocol: ProtocolClient, command: str) -> None:
    table = protocol.mgmt_table(command)
    assert [column["ColumnName"] for column in table["Columns"]] == ["ResourceTypeName", "StorageRoot"]
    kinds = [row[0] for row in table["Rows"]]
    assert kinds.count("SecuredReadyForAggregationQueue") == 2
    assert kinds.count("TempStorage") == 2
    for kind in ("FailedIngestionsQueue", "SuccessfulIngestionsQueue", "IngestionsStatusTable"):
        assert kinds.count(kind) == 1
    for _, url in table["Rows"]:
        assert urlsplit(url).hostname == "127.0.0.1"
        assert "sig=" in urlsplit(url).query
    queue_url = next(url for kind, url in table["Rows"] if kind == "SecuredReadyForAggregationQueue")
    QueueClient.from_queue_url(queue_url).send_message("probe")  # the SAS lets a client post
    status_url = next(url for kind, url in table["Rows"] if kind == "IngestionsStatusTable")
    TableClient.from_table_url(status_url).create_entity(
        {"PartitionKey": "probe", "RowKey": str(uuid.uuid4()), "Status": "Pending"}
    )


def test_identity_token_is_one_authorization_context_row(protocol: ProtocolClient) -> None:
    table = protocol.mgmt_table(".get kusto identity token")
    assert [column["ColumnName"] for column in table["Columns"]] == ["AuthorizationContext"]
    assert len(table["Rows"]) == 1 and table["Rows"][0][0]


def test_sdk_style_message_is_ingested_and_success_reported(protocol: ProtocolClient) -> None:
    protocol.create_table("qdb", "Plain")
    message = protocol.message("qdb", "Plain", protocol.blob("qsrc", "plain.csv", CSV), RawDataSize=len(CSV))
    protocol.post(message)
    success = protocol.notification("success", message["Id"])
    assert (success["Database"], success["Table"]) == ("qdb", "Plain")
    assert success["IngestionSourcePath"].endswith("/qsrc/plain.csv")  # no SAS in notifications
    assert protocol.count("qdb", "Plain") == 3


def test_java_style_message_camel_case_names_and_native_properties(protocol: ProtocolClient) -> None:
    protocol.create_table("qdb", "Camel")
    source_id = str(uuid.uuid4())
    message = {
        "id": source_id,
        "blobPath": protocol.blob("qsrc", "camel.csv", b"x,y\n7,z\n"),
        "databaseName": "qdb",
        "tableName": "Camel",
        "reportLevel": "FailuresAndSuccesses",
        "reportMethod": "Queue",
        "additionalProperties": {"authorizationContext": protocol.token(), "format": "csv", "ignoreFirstRecord": "true",
                                 "tags": ["ingest-by:camel"]},
    }  # fmt: skip
    protocol.post(message)
    protocol.notification("success", source_id)
    assert protocol.count("qdb", "Camel") == 1


def test_tampered_token_is_refused_and_nothing_is_ingested(protocol: ProtocolClient) -> None:
    protocol.create_table("qdb", "Tampered")
    token = protocol.token()
    prefix, _claims, signature = token.split(".")
    forged_claims = (
        base64.urlsafe_b64encode(json.dumps({"iss": prefix, "iat": 0, "exp": 4_000_000_000}).encode()).decode().rstrip("=")
    )
    message = protocol.message("qdb", "Tampered", protocol.blob("qsrc", "tampered.csv", CSV))
    message["AdditionalProperties"]["authorizationContext"] = f"{prefix}.{forged_claims}.{signature}"
    protocol.post(message)
    failure = protocol.notification("failure", message["Id"])
    assert failure["ErrorCode"] == "BadRequest_InvalidKustoIdentityToken"
    assert failure["FailureStatus"] == "Permanent"
    assert failure["ShouldRetry"] is False
    assert "signature" in failure["Details"]
    assert token not in json.dumps(failure)
    assert protocol.count("qdb", "Tampered") == 0
    failures = protocol.mgmt_table(".show ingestion failures", "qdb")
    assert any(message["Id"] in json.dumps(row) for row in failures["Rows"])


def test_expired_token_is_refused(protocol: ProtocolClient) -> None:
    protocol.create_table("qdb", "Expired")
    tokens = IdentityTokens(load_or_create_key(protocol.emulator.data_dir))
    message = protocol.message("qdb", "Expired", protocol.blob("qsrc", "expired.csv", CSV))
    message["AdditionalProperties"]["authorizationContext"] = tokens.issue(now=time.time() - 7200, lifetime_seconds=3600)
    protocol.post(message)
    failure = protocol.notification("failure", message["Id"])
    assert failure["ErrorCode"] == "BadRequest_InvalidKustoIdentityToken"
    assert "expired" in failure["Details"]


def test_malformed_messages_go_to_the_poison_queue_and_the_consumer_keeps_going(protocol: ProtocolClient) -> None:
    queue_url = protocol.resources()["SecuredReadyForAggregationQueue"][1]
    garbage = [
        "%%% not base64 %%%",
        base64.b64encode(b"not json at all").decode(),
        base64.b64encode(b"[1, 2, 3]").decode(),
        base64.b64encode(json.dumps({"DatabaseName": "qdb", "TableName": "T"}).encode()).decode(),  # no Id
    ]
    for text in garbage:
        protocol.post(text, queue_url)
    protocol.create_table("qdb", "AfterPoison")
    message = protocol.message("qdb", "AfterPoison", protocol.blob("qsrc", "after.csv", CSV))
    protocol.post(message, queue_url)
    protocol.notification("success", message["Id"])

    queue_name = urlsplit(queue_url).path.rsplit("/", 1)[-1]
    poison = QueueServiceClient.from_connection_string(protocol.connection_string).get_queue_client(f"{queue_name}-poison")

    def poisoned() -> list[str] | None:
        texts = [item.content for item in poison.peek_messages(max_messages=32)]
        return texts if len(texts) >= len(garbage) else None

    assert sorted(wait_for(poisoned, "moving the malformed messages to the poison queue")) == sorted(garbage)


def test_message_without_database_is_reported_as_a_failure(protocol: ProtocolClient) -> None:
    message = protocol.message("qdb", "Whatever", protocol.blob("qsrc", "nodb.csv", CSV))
    del message["DatabaseName"]
    protocol.post(message)
    failure = protocol.notification("failure", message["Id"])
    assert failure["ErrorCode"] == "BadRequest_EmptyDatabaseName"


def test_missing_blob_fails_with_download_error(protocol: ProtocolClient) -> None:
    protocol.create_table("qdb", "Missing")
    message = protocol.message("qdb", "Missing", protocol.blob("qsrc", "never-uploaded.csv", None))
    protocol.post(message)
    failure = protocol.notification("failure", message["Id"])
    assert failure["ErrorCode"] == "Download_SourceNotFound"
    assert "sig=" not in json.dumps(failure)


def test_report_method_table_fills_in_the_status_rows(protocol: ProtocolClient) -> None:
    protocol.create_table("qdb", "Tabled")
    status_url = protocol.resources()["IngestionsStatusTable"][0]
    status_table = TableClient.from_table_url(status_url)

    own_row = protocol.message("qdb", "Tabled", protocol.blob("qsrc", "tabled.csv", CSV), ReportMethod=1)
    protocol.post(own_row)

    client_row_key = str(uuid.uuid4())
    status_table.create_entity({"PartitionKey": client_row_key, "RowKey": client_row_key, "Status": "Pending"})
    named_row = protocol.message(
        "qdb",
        "Tabled",
        protocol.blob("qsrc", "tabled-missing.csv", None),
        ReportMethod="QueueAndTable",
        IngestionStatusInTable={"TableConnectionString": status_url, "PartitionKey": client_row_key, "RowKey": client_row_key},
    )
    protocol.post(named_row)

    def entity(key: str, status: str):
        try:
            found = status_table.get_entity(key, key)
        except ResourceNotFoundError:
            return None
        return found if found["Status"] == status else None

    succeeded = wait_for(lambda: entity(own_row["Id"], "Succeeded"), "the status row of the table-reported success")
    assert succeeded["IngestionSourceId"] == own_row["Id"]
    failed = wait_for(lambda: entity(client_row_key, "Failed"), "the status row the client created")
    assert failed["ErrorCode"] == "Download_SourceNotFound"
    assert failed["FailureStatus"] == "Permanent"
    assert protocol.notification("failure", named_row["Id"])["ErrorCode"] == "Download_SourceNotFound"  # and the queue


def test_blob_is_deleted_after_success_unless_retained(protocol: ProtocolClient) -> None:
    protocol.create_table("qdb", "Deleted")
    blob_url = protocol.blob("qsrc", "delete-me.csv", CSV)
    message = protocol.message("qdb", "Deleted", blob_url, RetainBlobOnSuccess=False)
    protocol.post(message)
    protocol.notification("success", message["Id"])
    assert not BlobClient.from_blob_url(blob_url).exists()


def test_rotation_advertises_new_queues_and_old_ones_are_still_read(protocol: ProtocolClient) -> None:
    before = protocol.resources()["SecuredReadyForAggregationQueue"]
    response = requests.post(f"{protocol.emulator.url}/admin/rotate-ingestion-queues", timeout=30)
    assert response.status_code == 200, response.text
    after = protocol.resources()["SecuredReadyForAggregationQueue"]
    assert {url.split("?")[0] for url in after}.isdisjoint(url.split("?")[0] for url in before)
    assert {url.split("?")[0] for url in after} == set(response.json()["ingestionQueues"])
    assert "sig=" not in response.text

    protocol.create_table("qdb", "Rotated")
    old = protocol.message("qdb", "Rotated", protocol.blob("qsrc", "old.csv", CSV))
    new = protocol.message("qdb", "Rotated", protocol.blob("qsrc", "new.csv", CSV))
    protocol.post(old, before[0])
    protocol.post(new, after[0])
    protocol.notification("success", old["Id"])
    protocol.notification("success", new["Id"])
    assert protocol.count("qdb", "Rotated") == 6


def test_mgmt_commands_are_counted_in_stats(protocol: ProtocolClient) -> None:
    def counts() -> dict[str, int]:
        return requests.get(f"{protocol.emulator.url}/admin/stats", timeout=30).json()["mgmtCommands"]

    before = counts()
    protocol.resources()
    protocol.token()
    after = counts()
    assert after["get_ingestion_resources"] == before.get("get_ingestion_resources", 0) + 1
    assert after["get_kusto_identity_token"] == before.get("get_kusto_identity_token", 0) + 1
