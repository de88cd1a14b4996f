"""Test-only function apps for the local host: a blob trigger (SDK client and InputStream), a timer and a queue
trigger that record what they receive, and fail or block on request.

`get_functions()` works once per FunctionApp object, so every host under test gets a fresh app from
`build_app()`. Bindings use `%SETTING%` expressions, so the tests also prove the host resolves them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_types

CONNECTION = "DevhostTestStorage"


@dataclass
class Recorder:
    """What the functions saw, shared with the test; `fail_marker` in a blob name or body makes a call raise."""

    fail_marker: str = "fail"
    timer_seconds: float = 0.0
    block: threading.Event | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)
    running_timers: int = 0
    max_running_timers: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, value: Any) -> None:
        with self.lock:
            self.calls.append((kind, value))

    def of(self, kind: str) -> list[Any]:
        with self.lock:
            return [value for seen, value in self.calls if seen == kind]


def build_app(recorder: Recorder, run_on_startup: bool = False) -> func.FunctionApp:
    app = func.FunctionApp()

    @app.blob_trigger(arg_name="client", path="%DEVHOST_TEST_CONTAINER%/in/{name}", connection=CONNECTION)
    def on_blob(client: blob_types.BlobClient) -> None:
        properties = client.get_blob_properties()
        recorder.add("blob", {"client": client, "name": client.blob_name, "etag": properties.etag})
        if recorder.block is not None:
            recorder.block.wait(30)
        if recorder.fail_marker in client.blob_name:
            raise RuntimeError(f"asked to fail for {client.blob_name}")

    @app.blob_trigger(arg_name="stream", path="%DEVHOST_TEST_CONTAINER%/streams/{stem}.txt", connection=CONNECTION)
    def on_stream(stream: func.InputStream, context: func.Context) -> None:
        recorder.add("stream", {"name": stream.name, "data": stream.read(), "function": context.function_name})

    @app.timer_trigger(arg_name="timer", schedule="%DEVHOST_TEST_SCHEDULE%", run_on_startup=run_on_startup)
    def on_timer(timer: func.TimerRequest) -> None:
        with recorder.lock:
            recorder.running_timers += 1
            recorder.max_running_timers = max(recorder.max_running_timers, recorder.running_timers)
        recorder.add("timer", timer)
        time.sleep(recorder.timer_seconds)
        with recorder.lock:
            recorder.running_timers -= 1

    @app.queue_trigger(arg_name="message", queue_name="%DEVHOST_TEST_QUEUE%", connection=CONNECTION)
    def on_message(message: func.QueueMessage) -> None:
        recorder.add("queue", message)
        if recorder.block is not None:
            recorder.block.wait(30)
        if recorder.fail_marker.encode() in message.get_body():
            raise RuntimeError("asked to fail")

    return app
