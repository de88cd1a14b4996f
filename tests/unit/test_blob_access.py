"""The URL handed to Kusto in each BLOB_ACCESS mode: identity suffix, user-delegation SAS, account-key SAS."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.credentials import AccessToken
from azure.storage.blob import BlobServiceClient

from shared.blob_access import BlobAccess
from shared.settings import Settings, load_settings
from shared.staging_area import RefusedMessageError, StagingArea
from tests.unit.kusto_fakes import ScriptedTransport

KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
LOCAL = f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;"
LOCAL_URL = "http://127.0.0.1:1/devstoreaccount1/staging/Telemetry/Events/a%20b.csv"
AZURE_URL = "https://acct.blob.core.windows.net/staging/Telemetry/Events/a%20b.csv"
OBJECT_ID = "6f1c3a52-9d2e-4b7a-8c1d-2e3f4a5b6c7d"
IDENTITY = {
    "StagingStorage__blobServiceUri": "https://acct.blob.core.windows.net",
    "StagingStorage__queueServiceUri": "https://acct.queue.core.windows.net",
    "StagingStorage__credential": "managedidentity",
}


def settings(values: dict[str, str]) -> Settings:
    return load_settings({"KUSTO_INGEST_URI": "https://ingest-c.westeurope.kusto.windows.net", **values})


def blob_access(values: Settings, service: BlobServiceClient, **options: Any) -> BlobAccess:
    return BlobAccess(
        StagingArea(service, values.staging_container, values.allowed_targets),
        mode=values.blob_access,
        identity=values.blob_access_identity,
        sas_lifetime_minutes=values.sas_lifetime_minutes,
        account_key=values.staging.account_key(),
        **options,
    )


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class StorageToken:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("storage-token", int(time.time()) + 3600)


def delegation_key(request: Any) -> tuple[int, str, dict[str, str]]:
    body = (
        '<?xml version="1.0" encoding="utf-8"?><UserDelegationKey><SignedOid>oid-1</SignedOid><SignedTid>tid-1</SignedTid>'
        "<SignedStart>2026-11-23T11:55:00Z</SignedStart><SignedExpiry>2026-11-24T11:55:00Z</SignedExpiry>"
        "<SignedService>b</SignedService><SignedVersion>2025-07-05</SignedVersion>"
        "<Value>c2VjcmV0LWRlbGVnYXRpb24ta2V5LXZhbHVlLTMyYnl0ZXM=</Value></UserDelegationKey>"
    )
    return 200, body, {"Content-Type": "application/xml"}


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def test_managed_identity_mode_appends_the_identity_suffix_and_no_secret() -> None:
    service = BlobServiceClient("https://acct.blob.core.windows.net", credential=StorageToken())
    system = blob_access(settings(IDENTITY), service)
    assert system.url_for("Telemetry/Events/a b.csv") == f"{AZURE_URL};managed_identity=system"
    user_assigned = blob_access(settings(IDENTITY | {"BLOB_ACCESS_IDENTITY": OBJECT_ID}), service)
    assert user_assigned.url_for("x").endswith(f";managed_identity={OBJECT_ID}")


def test_account_key_mode_gives_a_short_lived_read_only_blob_sas() -> None:
    clock = Clock()
    values = {
        "StagingStorage": LOCAL,
        "BLOB_ACCESS": "account_key_sas",
        "SAS_LIFETIME_MINUTES": "30",
        "KUSTO_INGEST_URI": "http://127.0.0.1:2",
    }
    access = blob_access(load_settings(values), BlobServiceClient.from_connection_string(LOCAL), now=clock)
    url = access.url_for("Telemetry/Events/a b.csv")
    assert url.startswith(LOCAL_URL + "?")
    sas = query(url)
    assert (sas["sp"], sas["sr"]) == ("r", "b")
    assert sas["se"] == "2026-11-23T12:30:00Z"
    assert sas["st"] == "2026-11-23T11:55:00Z"
    assert sas["sig"]


def test_user_delegation_mode_fetches_one_key_and_reuses_it_until_it_nears_its_end() -> None:
    clock = Clock()
    transport = ScriptedTransport(delegation_key, delegation_key)
    service = BlobServiceClient("https://acct.blob.core.windows.net", credential=StorageToken(), transport=transport)
    access = blob_access(
        settings(IDENTITY | {"BLOB_ACCESS": "user_delegation_sas", "SAS_LIFETIME_MINUTES": "60"}), service, now=clock
    )
    first = access.url_for("Telemetry/Events/a b.csv")
    second = access.url_for("Telemetry/Events/c.csv")
    assert len(transport.requests) == 1, "one key serves many blobs"
    assert "comp=userdelegationkey" in transport.requests[0].url
    sas = query(first)
    assert (sas["sp"], sas["sr"], sas["skoid"], sas["spr"]) == ("r", "b", "oid-1", "https")
    assert sas["se"] == "2026-11-23T13:00:00Z"
    assert query(second)["skoid"] == "oid-1"
    clock.now += timedelta(hours=23)  # a SAS signed now would outlive the key: a new key is fetched
    access.url_for("Telemetry/Events/a b.csv")
    assert len(transport.requests) == 2


def test_account_key_mode_is_refused_for_remote_storage() -> None:
    remote = LOCAL.replace("http://127.0.0.1:1", "https://acct.blob.core.windows.net")
    with pytest.raises(ValueError, match="BLOB_ACCESS"):
        load_settings(
            {"StagingStorage": remote, "BLOB_ACCESS": "account_key_sas", "KUSTO_INGEST_URI": "https://ingest-c.kusto.windows.net"}
        )


@pytest.mark.parametrize("name", ["../other/secret.csv", "a/./b.csv", "a//b.csv", "a%2Fb.csv", "a?b.csv", "a\nb.csv"])
def test_access_is_granted_only_to_a_blob_of_the_staging_container(name: str) -> None:
    values = {"StagingStorage": LOCAL, "BLOB_ACCESS": "account_key_sas", "KUSTO_INGEST_URI": "http://127.0.0.1:2"}
    access = blob_access(load_settings(values), BlobServiceClient.from_connection_string(LOCAL))
    with pytest.raises(RefusedMessageError):
        access.url_for(name)
    assert access.url_for("Telemetry/Events/a b.csv").startswith(LOCAL_URL + "?")
