"""Storage clients for a binding's `connection` name, built from the app settings like the host does.

Locally every connection is a connection string (Azurite's, or `UseDevelopmentStorage=true`); the
identity-based form (`<name>__blobServiceUri` ...) is for Azure and is refused here with a clear message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from devhost.config import ConfigError

HOST_STORAGE = "AzureWebJobsStorage"


def connection_string(connection: str, values: Mapping[str, str] = os.environ) -> str:
    """The connection string behind a binding's connection name (empty name = the host's own storage)."""
    name = connection or HOST_STORAGE
    value = values.get(name) or values.get(f"ConnectionStrings:{name}")
    if value:
        return value
    if any(key.startswith(f"{name}__") for key in values):
        raise ConfigError(
            f"connection {name}: the local host needs a connection string in setting {name} (Azurite's, or "
            "UseDevelopmentStorage=true); identity-based connections only work in Azure"
        )
    raise ConfigError(f"connection {name}: app setting {name} is not set; add it to local.settings.json Values")


def blob_service(connection: str, values: Mapping[str, str] = os.environ) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(connection_string(connection, values))


def queue_service(connection: str, values: Mapping[str, str] = os.environ) -> QueueServiceClient:
    """A queue client that sends and receives the raw text; the host decodes base64 itself."""
    return QueueServiceClient.from_connection_string(connection_string(connection, values))
