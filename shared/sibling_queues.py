"""Queue clients for queues the app does not hold a client for (poison queues, a raw reader of its own queue).

They are built from a client `Services` already holds, so they reach the same account with the same
credential (shared key locally, the managed identity in Azure) without creating a second credential.
"""

from __future__ import annotations

from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy


def sibling_queue(client: QueueClient, queue_name: str, *, decode: bool = False) -> QueueClient:
    """A client for `queue_name` in `client`'s account: writes base64; reads raw unless `decode` is set.

    Reading raw lets the caller decode each message with `shared.storage.decode_message`, so one message
    that is not base64 is reported on its own instead of failing the whole page.
    """
    account_url = client.url.split("?", 1)[0].rsplit("/", 1)[0]
    return QueueClient.from_queue_url(
        f"{account_url}/{queue_name}",
        credential=client.credential,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy() if decode else None,
    )
