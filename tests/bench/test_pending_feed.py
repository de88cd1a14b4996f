"""The bench's top-up feeder, through Azurite: a large drain must see every blob with a bounded queue.

The CPU and memory figures of a 100,000-blob drain are only worth printing if the drain really handled all
of them and Azurite never held more than the depth asked for; and if the drain outruns the feeder, the run
must fail rather than report a figure taken over fewer blobs.
"""

from __future__ import annotations

import time

import pytest

from bench.pending import fill_pending_queue, topped_up
from devhost.processes import Azurite
from shared.settings import StorageConnection
from shared.storage import storage_account

pytestmark = pytest.mark.e2e


def test_the_feeder_keeps_the_queue_under_its_depth_and_delivers_every_message(azurite: Azurite, unique_name: str) -> None:
    texts = [f"message {index}" for index in range(120)]
    depth = 20
    queue = storage_account(StorageConnection(connection_string=azurite.connection_string)).queue(unique_name)
    fill_pending_queue(azurite.connection_string, unique_name, texts[:depth])
    received: list[str] = []
    deepest = 0
    deadline = time.monotonic() + 60  # a feeder that stopped sending fails the assertions below, not the run

    with topped_up(azurite.connection_string, unique_name, texts[depth:], depth):
        while len(received) < len(texts) and time.monotonic() < deadline:
            deepest = max(deepest, queue.get_queue_properties().approximate_message_count)
            for message in queue.receive_messages(messages_per_page=8, max_messages=8):
                received.append(message.content)
                queue.delete_message(message)

    assert sorted(received) == sorted(texts)
    assert deepest <= depth
    queue.delete_queue()


def test_a_drain_that_ends_before_the_top_up_is_sent_is_an_error(azurite: Azurite, unique_name: str) -> None:
    texts = [f"message {index}" for index in range(60)]
    fill_pending_queue(azurite.connection_string, unique_name, texts[:10])

    # A drain that stops at once: the queue stays full, so the feeder never has room to send anything.
    with (
        pytest.raises(RuntimeError, match=r"50 of 50 top-up messages unsent"),
        topped_up(azurite.connection_string, unique_name, texts[10:], 10),
    ):
        pass

    storage_account(StorageConnection(connection_string=azurite.connection_string)).queue(unique_name).delete_queue()
