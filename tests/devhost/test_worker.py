"""The worker side of the local host, as in Azure: one shared thread pool, functionTimeout, functions in error."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from pathlib import Path

import azure.functions as func
import pytest
from azure.functions.meta import Datum

from devhost.config import load_host_options
from devhost.invocation import FunctionInvoker, TypedData, WorkerPool, worker_thread_count
from tests.devhost.apps import small_apps
from tests.devhost.apps.recording_app import Recorder
from tests.devhost.conftest import HostFactory, Storage, peek_contents
from tests.support.waiting import wait_for

DEFAULT_THREADS = min(32, (os.cpu_count() or 1) + 4)
METADATA = {"Id": Datum("m1", "string"), "DequeueCount": Datum("1", "json")}


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def messages(caplog: pytest.LogCaptureFixture, level: int, start: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == level and record.getMessage().startswith(start)]


@pytest.mark.parametrize(
    ("value", "expected", "warning"),
    [
        (None, DEFAULT_THREADS, None),
        ("2", 2, None),
        ("64", 64, None),  # no upper bound in the worker
        ("0", DEFAULT_THREADS, "must be set to a value between 1 and sys.maxint"),
        ("-3", DEFAULT_THREADS, "must be set to a value between 1 and sys.maxint"),
        ("two", DEFAULT_THREADS, "must be an integer"),
        ("", DEFAULT_THREADS, "must be an integer"),
    ],
)
def test_the_pool_size_is_read_like_the_worker_reads_it(
    value: str | None, expected: int, warning: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    values = {} if value is None else {"PYTHON_THREADPOOL_THREAD_COUNT": value}
    assert worker_thread_count(values) == expected
    warnings = messages(caplog, logging.WARNING, "PYTHON_THREADPOOL_THREAD_COUNT")
    assert [warning in line for line in warnings] == ([] if warning is None else [True])


def test_functions_share_one_pool_of_thread_count_threads(
    storage: Storage, start_host: HostFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_THREADPOOL_THREAD_COUNT", "2")
    recorder = Recorder(block=threading.Event())
    host = start_host(recorder)  # the queue listener alone may run 6 at once, the blob listener 4
    assert host.worker.size == 2
    for n in range(3):
        storage.queue.send_message(encoded(f"message {n}"))
    for n in range(2):
        storage.container.upload_blob(f"in/blob-{n}.csv", b"x")

    wait_for(lambda: len(recorder.calls) >= 2)
    time.sleep(1.5)  # the queue is polled every 0.2 s and the container scanned every 0.1 s: the rest wait for a thread
    assert len(recorder.calls) == 2
    recorder.block.set()
    wait_for(lambda: len(recorder.of("queue")) == 3 and len(recorder.of("blob")) == 2)


def test_an_invocation_past_function_timeout_fails_and_its_message_is_retried_then_poisoned(
    storage: Storage, start_host: HostFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("PYTHON_THREADPOOL_THREAD_COUNT", "1")  # each retry runs on the thread that replaced the stuck one
    host_json = tmp_path / "host.json"
    host_json.write_text(
        json.dumps(
            {
                "version": "2.0",
                "functionTimeout": "00:00:01",
                "extensions": {"queues": {"batchSize": 4, "maxDequeueCount": 3, "maxPollingInterval": "00:00:00.2"}},
            }
        )
    )
    recorder = Recorder(block=threading.Event())
    start_host(recorder, options=load_host_options(host_json))
    storage.queue.send_message(encoded("never returns"))
    poison = storage.queues.get_queue_client(f"{storage.queue.queue_name}-poison")
    try:
        assert wait_for(lambda: peek_contents(poison), timeout=20) == [encoded("never returns")]
    finally:
        recorder.block.set()  # the abandoned calls end too

    assert [message.dequeue_count for message in recorder.of("queue")] == [1, 2, 3]
    assert len(messages(caplog, logging.ERROR, "Timeout value of 00:00:01 exceeded by function 'Functions.on_message'")) == 3
    failed = messages(caplog, logging.ERROR, f"on_message (queue {storage.queue.queue_name}, message ")
    assert len(failed) == 3
    assert all(
        "FunctionTimeoutException: Timeout value of 00:00:01 was exceeded by function: Functions.on_message" in f for f in failed
    )
    assert storage.queue.get_queue_properties().approximate_message_count == 0


def test_a_timed_out_call_gives_its_thread_back_and_a_queued_one_never_starts(caplog: pytest.LogCaptureFixture) -> None:
    app = func.FunctionApp()
    gates = {b"block": threading.Event(), b"hold": threading.Event()}
    ran: list[bytes] = []

    @app.queue_trigger(arg_name="message", queue_name="q", connection="C")
    def on_message(message: func.QueueMessage) -> None:
        gate = gates.get(message.get_body())
        if gate is not None:
            gate.wait(10)
        ran.append(message.get_body())

    def payload(body: str) -> TypedData:
        return TypedData(Datum(body, "string"), METADATA)

    (function,) = app.get_functions()
    worker = WorkerPool(1)
    unlimited = FunctionInvoker(function, Path(), worker, timeout=None)
    invoker = FunctionInvoker(function, Path(), worker, timeout=1.0)
    results: dict[str, bool] = {}
    try:
        blocker = threading.Thread(target=lambda: results.update(block=unlimited.invoke(payload("block"), "block")))
        blocker.start()
        time.sleep(0.2)
        # Queued behind the blocked call on the only thread: the wait counts toward the timeout, and it never runs.
        results["queued"] = invoker.invoke(payload("queued"), "queued")
        gates[b"block"].set()
        blocker.join()
        # A call past its timeout is abandoned to the background and a new thread takes its place.
        results["hold"] = invoker.invoke(payload("hold"), "hold")
        results["after"] = invoker.invoke(payload("after"), "after")
    finally:
        for gate in gates.values():
            gate.set()
        worker.shutdown()
    assert results == {"block": True, "queued": False, "hold": False, "after": True}
    wait_for(lambda: len(ran) == 3)
    assert ran == [b"block", b"after", b"hold"]
    warnings = messages(caplog, logging.WARNING, "A function timeout has occurred")
    assert "never started (all 1 worker threads were busy)" in warnings[0]
    assert "keeps running in the background" in warnings[1]


def test_a_function_bound_to_a_missing_setting_is_in_error_and_the_others_run(
    storage: Storage, start_host: HostFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(small_apps.MISSING_SETTING, raising=False)
    recorder = Recorder()
    host = start_host(app=small_apps.build_half_bound_app(recorder))

    assert wait_for(lambda: recorder.of("timer"))
    assert [listener.invoker.name for listener in host.listeners] == ["on_tick"]
    assert list(host.function_errors) == ["on_unbound"]
    expected = f"'%{small_apps.MISSING_SETTING}%' does not resolve to a value"
    assert expected in host.function_errors["on_unbound"]
    (line,) = messages(caplog, logging.ERROR, "The 'on_unbound' function is in error: ")
    assert expected in line
