"""The storage and Kusto clients the app builds honour the proxy environment, read once, against Azurite and the emulator."""

from __future__ import annotations

import pytest

from devhost.processes import Azurite, Emulator, free_port
from shared import storage
from shared.services import kusto_client
from shared.settings import StorageConnection, load_settings


@pytest.fixture
def dead_proxy_for_all_but_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request would go to a proxy nobody listens on, except those NO_PROXY exempts: the loopback host."""
    dead = f"http://127.0.0.2:{free_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("no_proxy", raising=False)


@pytest.mark.usefixtures("dead_proxy_for_all_but_loopback")
def test_queue_and_blob_clients_reach_azurite_directly_when_no_proxy_exempts_it(azurite: Azurite, unique_name: str) -> None:
    account = storage.storage_account(StorageConnection(connection_string=azurite.connection_string))
    queue = account.queue(unique_name)
    storage.ensure_queue(queue)
    queue.send_message("through the transport")
    assert [message.content for message in queue.receive_messages()] == ["through the transport"]
    container = account.blob_service.create_container(unique_name)
    container.upload_blob("a.csv", b"x,1\n")
    assert container.download_blob("a.csv").readall() == b"x,1\n"


@pytest.mark.usefixtures("dead_proxy_for_all_but_loopback")
def test_the_kusto_client_reaches_the_emulator_directly_when_no_proxy_exempts_it(azurite: Azurite, emulator: Emulator) -> None:
    settings = load_settings(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "StagingStorage": azurite.connection_string,
            "KUSTO_INGEST_URI": emulator.url,
            "KUSTO_CREDENTIAL": "none",
            "BLOB_ACCESS": "account_key_sas",
        }
    )
    client = kusto_client(settings, None)
    try:
        assert client.get_configuration().from_server
    finally:
        client.close()
