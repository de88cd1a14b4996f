"""Queue and blob clients for the staging storage account, built one way for every part of the app.

The staging connection is either a connection string (local Azurite) or service URIs plus an identity (Azure),
exactly as the Functions host reads the `StagingStorage` connection for the triggers, so the app's own
clients and the host's triggers always talk to the same account. Each client sends through its own
`shared.transport.storage_transport()`, which reads the proxy environment once instead of per request.

Every queue message is base64 text, because that is what the queue trigger expects by default
(host.json `messageEncoding: base64`) while azure-storage-queue sends plain text unless told otherwise.
"""

from __future__ import annotations

import base64
import binascii
import logging

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.settings import StorageConnection
from shared.transport import storage_transport

logger = logging.getLogger(__name__)

QUEUE_TEXT_LIMIT = 48 * 1024
"""Largest message text that still fits the 64 KiB queue limit once base64-encoded."""


def staging_credential(connection: StorageConnection) -> TokenCredential | None:
    """The identity for an identity-based connection (None for a connection string).

    Mirrors the host: `__credential=managedidentity` means a managed identity (user-assigned when
    `__clientId` is set); without it the host falls back to DefaultAzureCredential, and so do we.
    """
    if not connection.uses_identity:
        return None
    if (connection.credential or "").lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=connection.client_id)
    return DefaultAzureCredential()


def blob_service_client(connection: StorageConnection, credential: TokenCredential | None = None) -> BlobServiceClient:
    """A blob service client for the staging account."""
    if connection.connection_string:
        return BlobServiceClient.from_connection_string(connection.connection_string, transport=storage_transport())
    return BlobServiceClient(connection.blob_endpoint(), credential=credential, transport=storage_transport())


def queue_client(
    connection: StorageConnection, queue_name: str, credential: TokenCredential | None = None, *, decode: bool = True
) -> QueueClient:
    """A queue client that writes base64 text; with `decode=False` it hands back the raw base64 content.

    A reader that must survive a foreign message (plain text written by hand, say) reads raw and decodes
    each message with `decode_message`: the SDK's decode policy would fail the whole page instead.
    """
    options = {
        "message_encode_policy": TextBase64EncodePolicy(),
        "message_decode_policy": TextBase64DecodePolicy() if decode else None,
        "transport": storage_transport(),
    }
    if connection.connection_string:
        return QueueClient.from_connection_string(connection.connection_string, queue_name, **options)
    return QueueClient(connection.queue_service_uri or "", queue_name, credential=credential, **options)


def decode_message(content: str) -> str:
    """Decode one raw base64 queue message to text; ValueError says why when it is not base64 UTF-8 text."""
    try:
        return base64.b64decode(content, validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"the message is not base64-encoded UTF-8 text ({error})") from None


_NESTED_DECODINGS = 2
"""Further base64 layers looked through (a message a tool encoded itself before the SDK encoded it again)."""


def readable_text(content: object) -> str:
    """A raw queue message as a person (and `redact`) should read it: the decoded text when it is base64 UTF-8,
    as the app and the host write messages, else the content as it is (plain text some tool wrote).

    A decoded text that is itself base64 of printable text is decoded again (at most twice more). Every place
    that puts a message's content into an alert, a notification or a log line goes through this first, then
    redacts: a SAS inside base64 text is invisible to redaction.
    """
    if content is None:
        return ""
    if isinstance(content, bytes | bytearray):
        content = bytes(content).decode("utf-8", errors="replace")
    text = content if isinstance(content, str) else str(content)
    try:
        text = decode_message(text)
    except ValueError:
        return text
    for _ in range(_NESTED_DECODINGS):
        try:
            inner = decode_message(text.strip())
        except ValueError:
            break
        if not inner or not all(char.isprintable() or char in "\n\r\t" for char in inner):
            break
        text = inner
    return text


def ensure_queue(client: QueueClient) -> None:
    """Create the queue if it does not exist yet (several workers may race: 'already exists' is fine)."""
    try:
        client.create_queue()
        logger.info("created queue %s", client.queue_name)
    except ResourceExistsError:
        pass
