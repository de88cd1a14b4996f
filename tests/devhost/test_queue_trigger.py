"""Queue trigger through Azurite: base64 decoding, message metadata, retries, poison and hand-back on stop."""

from __future__ import annotations

import base64
import threading

from azure.functions.queue import QueueMessage

from devhost.config import QueueOptions
from tests.devhost.apps.recording_app import Recorder, wait_until
from tests.devhost.conftest import FAST_QUEUES, HostFactory, Storage, peek_contents


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def poison_contents(storage: Storage) -> list[str]:
    poison = storage.queues.get_queue_client(f"{storage.queue.queue_name}-poison")
    return peek_contents(poison)


def test_base64_messages_are_decoded_and_passed_with_their_metadata(storage: Storage, start_host: HostFactory) -> None:
    recorder = Recorder()
    start_host(recorder)
    sent = storage.queue.send_message(encoded('{"blob": "a.csv"}'))

    message = wait_until(lambda: recorder.of("queue"))[0]
    assert isinstance(message, QueueMessage)
    assert message.get_json() == {"blob": "a.csv"}
    assert (message.id, message.dequeue_count) == (sent.id, 1)
    assert message.insertion_time is not None and message.pop_receipt
    wait_until(lambda: storage.queue.get_queue_properties().approximate_message_count == 0)


def test_a_message_that_is_not_base64_goes_to_poison_without_a_call(storage: Storage, start_host: HostFactory) -> None:
    recorder = Recorder()
    start_host(recorder)
    storage.queue.send_message("{not base64}")
    storage.queue.send_message(encoded("after"))

    assert wait_until(lambda: poison_contents(storage)) == ["{not base64}"]
    wait_until(lambda: recorder.of("queue"))
    assert [message.get_body() for message in recorder.of("queue")] == [b"after"]


def test_a_failing_message_is_tried_max_dequeue_count_times_then_poisoned(storage: Storage, start_host: HostFactory) -> None:
    recorder = Recorder()
    start_host(recorder)  # maxDequeueCount 3, visibilityTimeout 0
    storage.queue.send_message(encoded("please fail"))

    assert wait_until(lambda: poison_contents(storage)) == [encoded("please fail")]
    assert [message.dequeue_count for message in recorder.of("queue")] == [1, 2, 3]
    assert storage.queue.get_queue_properties().approximate_message_count == 0


def test_messages_are_not_decoded_when_encoding_is_none(storage: Storage, start_host: HostFactory) -> None:
    recorder = Recorder()
    start_host(recorder, queues=QueueOptions(message_encoding="none", max_polling_interval=0.2))
    storage.queue.send_message("plain text")
    assert wait_until(lambda: recorder.of("queue"))[0].get_body() == b"plain text"


def test_a_message_abandoned_on_stop_reappears(storage: Storage, start_host: HostFactory) -> None:
    recorder = Recorder(block=threading.Event())
    host = start_host(recorder, queues=FAST_QUEUES, queue_lease_seconds=1)
    storage.queue.send_message(encoded("slow"))
    wait_until(lambda: recorder.of("queue"))

    assert host.stop(grace=0.1) == 1  # still running after the grace period: abandoned, its lease no longer renewed
    again = Recorder()
    start_host(again)
    message = wait_until(lambda: again.of("queue"))[0]
    recorder.block.set()
    assert (message.get_body(), message.dequeue_count) == (b"slow", 2)
