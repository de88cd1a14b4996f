"""Queue trigger through Azurite: base64 decoding, the worker's converter, metadata, retries, poison, hand-back on stop."""

from __future__ import annotations

import base64
import logging
import threading
from pathlib import Path

import azure.functions as func
import pytest
from azure.functions.meta import Datum
from azure.functions.queue import QueueMessage, QueueMessageInConverter

from devhost.config import QueueOptions
from devhost.invocation import FunctionInvoker, TypedData, WorkerPool
from tests.devhost.apps.recording_app import Recorder
from tests.devhost.conftest import FAST_QUEUES, HostFactory, Storage, peek_contents
from tests.support.waiting import wait_for


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def poison_contents(storage: Storage) -> list[str]:
    poison = storage.queues.get_queue_client(f"{storage.queue.queue_name}-poison")
    return peek_contents(poison)


def test_base64_messages_are_decoded_and_passed_with_their_metadata(storage: Storage, start_host: HostFactory) -> None:
    recorder = Recorder()
    start_host(recorder)
    sent = storage.queue.send_message(encoded('{"blob": "a.csv"}'))

    message = wait_for(lambda: recorder.of("queue"))[0]
    assert isinstance(message, QueueMessage)
    assert message.get_json() == {"blob": "a.csv"}
    assert (message.id, message.dequeue_count) == (sent.id, 1)
    assert message.insertion_time is not None and message.pop_receipt
    wait_for(lambda: storage.queue.get_queue_properties().approximate_message_count == 0)


def test_a_message_that_is_not_base64_goes_to_poison_without_a_call(storage: Storage, start_host: HostFactory) -> None:
    recorder = Recorder()
    start_host(recorder)
    storage.queue.send_message("{not base64}")
    storage.queue.send_message(encoded("after"))

    assert wait_for(lambda: poison_contents(storage)) == ["{not base64}"]
    wait_for(lambda: recorder.of("queue"))
    assert [message.get_body() for message in recorder.of("queue")] == [b"after"]


def test_a_failing_message_is_tried_max_dequeue_count_times_then_poisoned(storage: Storage, start_host: HostFactory) -> None:
    recorder = Recorder()
    start_host(recorder)  # maxDequeueCount 3, visibilityTimeout 0
    storage.queue.send_message(encoded("please fail"))

    assert wait_for(lambda: poison_contents(storage)) == [encoded("please fail")]
    assert [message.dequeue_count for message in recorder.of("queue")] == [1, 2, 3]
    assert storage.queue.get_queue_properties().approximate_message_count == 0


def test_messages_are_not_decoded_when_encoding_is_none(storage: Storage, start_host: HostFactory) -> None:
    recorder = Recorder()
    start_host(recorder, queues=QueueOptions(message_encoding="none", max_polling_interval=0.2))
    storage.queue.send_message("plain text")
    assert wait_for(lambda: recorder.of("queue"))[0].get_body() == b"plain text"


def test_a_message_abandoned_on_stop_reappears(storage: Storage, start_host: HostFactory) -> None:
    recorder = Recorder(block=threading.Event())
    host = start_host(recorder, queues=FAST_QUEUES, queue_lease_seconds=1)
    storage.queue.send_message(encoded("slow"))
    wait_for(lambda: recorder.of("queue"))

    assert host.stop(grace=0.1) == 1  # still running after the grace period: abandoned, its lease no longer renewed
    again = Recorder()
    start_host(again)
    message = wait_for(lambda: again.of("queue"))[0]
    recorder.block.set()
    assert (message.get_body(), message.dequeue_count) == (b"slow", 2)


def test_messages_reach_the_function_through_the_library_converter(
    storage: Storage, start_host: HostFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[tuple[Datum, dict[str, Datum], QueueMessage]] = []
    original = QueueMessageInConverter.decode

    def spy(data: Datum, *, trigger_metadata: dict[str, Datum]) -> QueueMessage:
        message = original(data, trigger_metadata=trigger_metadata)
        decoded.append((data, trigger_metadata, message))
        return message

    monkeypatch.setattr(QueueMessageInConverter, "decode", staticmethod(spy))
    recorder = Recorder()
    start_host(recorder)
    sent = storage.queue.send_message(encoded("h\u00e9llo"))

    received = wait_for(lambda: recorder.of("queue"))[0]
    ((payload, metadata, built),) = decoded
    assert received is built
    assert (payload.type, payload.value) == ("string", "h\u00e9llo")  # a string, as the host sends it without dataType
    assert {name: datum.type for name, datum in metadata.items()} == {
        "QueueTrigger": "string",
        "Id": "string",
        "PopReceipt": "string",
        "DequeueCount": "json",
        "InsertionTime": "json",
        "ExpirationTime": "json",
        "NextVisibleTime": "json",
    }
    assert (received.id, received.dequeue_count, received.get_body()) == (sent.id, 1, "h\u00e9llo".encode())
    assert (received.insertion_time, received.expiration_time) == (sent.inserted_on, sent.expires_on)


def test_a_json_payload_fails_the_invocation_as_the_workers_converter_refuses_it(caplog: pytest.LogCaptureFixture) -> None:
    app = func.FunctionApp()
    calls: list[QueueMessage] = []

    @app.queue_trigger(arg_name="message", queue_name="q", connection="C")
    def on_message(message: func.QueueMessage) -> None:
        calls.append(message)

    (function,) = app.get_functions()
    worker = WorkerPool(1)
    invoker = FunctionInvoker(function, Path(), worker)
    metadata = {"Id": Datum("m1", "string"), "DequeueCount": Datum("1", "json")}
    try:
        assert invoker.invoke(TypedData(Datum('{"blob": "a.csv"}', "json"), metadata), "json payload") is False
        assert invoker.invoke(TypedData(Datum('{"blob": "a.csv"}', "string"), metadata), "string payload") is True
    finally:
        worker.shutdown()
    assert [(message.id, message.get_json()) for message in calls] == [("m1", {"blob": "a.csv"})]
    (failure,) = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert failure.startswith("on_message (json payload) failed in ")
    assert failure.endswith(" ms: NotImplementedError: unsupported queue payload type: json")
