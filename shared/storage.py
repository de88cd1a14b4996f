"""The staging storage account's clients, built one way for every part of the app, and the queue helpers.

The staging connection is either a connection string (local Azurite) or service URIs plus an identity (Azure),
exactly as the Functions host reads the `StagingStorage` connection for the triggers, so the app's own
clients and the host's triggers always talk to the same account. A connection string is read by the storage
SDK itself (`from_connection_string`), never taken apart here. The account's blob and queue service clients
send through one transport (`shared.transport`), and every queue and container client of the app is a child
of them (`StorageAccount`), so one connection pool per host serves them all.

Every queue message is base64 text, because that is what the queue trigger expects by default
(host.json `messageEncoding: base64`) while azure-storage-queue sends plain text unless told otherwise.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.core.pipeline.transport import HttpTransport
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import (
    ExponentialRetry,
    QueueClient,
    QueueMessage,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from shared.settings import StorageConnection
from shared.transport import SharedTransport, storage_transport

logger = logging.getLogger(__name__)

QUEUE_TEXT_LIMIT = 48 * 1024
"""Largest message text that still fits the 64 KiB queue limit once base64-encoded."""
PAGE_SIZE = 32
"""The most messages one receive request returns (the service refuses 33)."""


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


@dataclass(frozen=True)
class StorageAccount:
    """One storage account's service clients; its queue and container clients are their children (one transport)."""

    blob_service: BlobServiceClient
    queue_service: QueueServiceClient
    transport: HttpTransport
    """The one transport both send through (kept open for the process: no client of the account can close it)."""

    def queue(self, name: str, *, decode: bool = True) -> QueueClient:
        """A queue client that writes base64 text; with `decode=False` it hands back the raw base64 content.

        A reader that must survive a foreign message (plain text written by hand, say) reads raw and decodes
        each message with `decode_message`: the SDK's decode policy would fail the whole page instead.
        """
        return self.queue_service.get_queue_client(
            name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy() if decode else None,
        )

    def container(self, name: str) -> ContainerClient:
        return self.blob_service.get_container_client(name)


def storage_account(
    connection: StorageConnection, credential: TokenCredential | None = None, transport: HttpTransport | None = None
) -> StorageAccount:
    """The account's two service clients, sending through `transport` (by default a new `storage_transport()`)."""
    shared = transport or storage_transport()
    if connection.connection_string:
        return StorageAccount(
            BlobServiceClient.from_connection_string(connection.connection_string, transport=SharedTransport(shared)),
            QueueServiceClient.from_connection_string(connection.connection_string, transport=SharedTransport(shared)),
            shared,
        )
    return StorageAccount(
        BlobServiceClient(connection.blob_endpoint(), credential=credential, transport=SharedTransport(shared)),
        QueueServiceClient(connection.queue_service_uri or "", credential=credential, transport=SharedTransport(shared)),
        shared,
    )


def sas_queue_client(
    queue_url: str, transport: HttpTransport, *, short_retries: bool = False, encode: bool = True
) -> QueueClient:
    """A client for a queue of another account from its SAS URL (Kusto's queues), read raw.

    It writes base64, as Kusto reads its ingestion messages, unless `encode` is off: a reader that hands a message
    back unchanged (`update_message` without new content sends the content it read, already encoded) must not
    encode it twice. `short_retries`: the storage SDK's own retry stays the only retry loop, but with short
    back-offs, for a caller with a time budget (a drain).
    """
    options: dict[str, Any] = {"message_encode_policy": TextBase64EncodePolicy()} if encode else {}
    if short_retries:
        options["retry_policy"] = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2)
    return QueueClient.from_queue_url(queue_url, transport=SharedTransport(transport), **options)


def receive_pages(queue: QueueClient, *, limit: int, visibility_timeout: int) -> Iterator[list[QueueMessage]]:
    """Up to `limit` visible messages, one receive request (a page of at most PAGE_SIZE) at a time.

    `messages_per_page` makes each request return up to PAGE_SIZE (`max_messages` alone would fetch one per
    request). A page is fetched only when the caller asks for it, so a caller may stop early (a throttled
    tracker); after a page shorter than asked for the queue had no more visible messages, and asking again
    would only return an empty page.
    """
    pager = queue.receive_messages(messages_per_page=PAGE_SIZE, max_messages=limit, visibility_timeout=visibility_timeout)
    remaining = limit
    for page in pager.by_page():
        messages = list(page)
        yield messages
        if len(messages) < min(PAGE_SIZE, remaining):
            return
        remaining -= len(messages)


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
