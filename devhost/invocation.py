"""The worker side: one shared thread pool that calls registered functions, as Microsoft's Python worker does.

The host side (the trigger listeners) decides *what* runs; this module runs it the way the worker would:

* every synchronous function of the app shares one pool of `PYTHON_THREADPOOL_THREAD_COUNT` threads (Python's
  `ThreadPoolExecutor` default, CPU count + 4 capped at 32, when unset), so a busy function delays the others;
* a trigger payload sent as typed data (`TypedData`: a `Datum` plus trigger metadata, as the host sends it
  over gRPC) is turned into the argument by the `azure.functions` converter registered for the trigger type,
  on the pool thread, so a payload the converter refuses fails the invocation as it does in Azure;
* `functionTimeout` is enforced from the moment the host hands the invocation over (time queued in a busy pool
  counts, as it does in Azure). A Python thread cannot be killed: where the host would restart the worker
  process, the timed-out call is left running in the background, its outcome ignored, and a new thread takes
  its place in the pool.

The worker passes the trigger value under the binding's `name`, plus a `context` argument when the function
declares one. Any other parameter would need a binding the local host does not provide, so such a function is
refused when the host starts rather than failing on every call.
"""

from __future__ import annotations

import inspect
import logging
import os
import queue
import threading
import time
import typing
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions import meta

from devhost.config import ConfigError

logger = logging.getLogger(__name__)

CONTEXT_PARAMETER = "context"
THREAD_COUNT_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"


def worker_thread_count(values: Mapping[str, str] = os.environ) -> int:
    """The size of the worker's synchronous thread pool, read and checked as the worker reads it.

    A whole number of at least 1 is used as given; anything else is ignored with a warning, as the worker does,
    and the pool gets `ThreadPoolExecutor`'s default size: CPU count + 4, at most 32.
    """
    default = min(32, (os.cpu_count() or 1) + 4)
    raw = values.get(THREAD_COUNT_SETTING)
    if raw is None:
        return default
    try:
        count = int(raw)
    except ValueError:
        logger.warning("%s must be an integer; using the default, %d threads", THREAD_COUNT_SETTING, default)
        return default
    if count < 1:
        logger.warning(
            "%s must be set to a value between 1 and sys.maxint; using the default, %d threads", THREAD_COUNT_SETTING, default
        )
        return default
    return count


class InvocationCancelled(Exception):  # noqa: N818 - it names what happened, like the standard CancelledError
    """The host stopped before the invocation started: nothing ran, the work is handed back."""


@dataclass
class _Call:
    work: Callable[[], Any]
    future: Future[Any] = field(default_factory=Future)
    thread: threading.Thread | None = None


class WorkerPool:
    """The worker's one synchronous thread pool, shared by every function of the app.

    Unlike `ThreadPoolExecutor`, a thread whose call timed out can be retired: it finishes its call in the
    background and then exits, and a new thread is started so the pool keeps its size, as a restarted worker
    process would have a full pool again.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._retired: set[threading.Thread] = set()
        self._closed = False
        self._started = 0
        with self._lock:
            for _ in range(size):
                self._start_thread()

    def _start_thread(self) -> None:
        self._started += 1
        thread = threading.Thread(target=self._work, name=f"worker-{self._started}", daemon=True)
        self._threads.add(thread)
        thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            call = self._calls.get()
            if call is None:
                break
            call.thread = me  # before the call is marked running, so a timeout always finds its thread
            if not call.future.set_running_or_notify_cancel():
                continue
            try:
                result = call.work()
            except BaseException as error:  # the worker reports whatever the function raised
                call.future.set_exception(error)
            else:
                call.future.set_result(result)
            with self._lock:
                if me in self._retired:
                    break
        with self._lock:
            self._retired.discard(me)
            self._threads.discard(me)

    def submit(self, work: Callable[[], Any]) -> _Call:
        """Queue one call; once the pool refuses new work, the call comes back already cancelled."""
        call = _Call(work)
        with self._lock:
            if self._closed:
                call.future.cancel()
                return call
            self._calls.put(call)
        return call

    def give_up(self, call: _Call) -> str:
        """After a timeout: "unstarted" (cancelled in the queue), "finished" (it just ended) or "abandoned"."""
        if call.future.cancel():
            return "unstarted"
        with self._lock:
            if call.future.done():
                return "finished"
            if call.thread is not None:
                self._retired.add(call.thread)
                if not self._closed:
                    self._start_thread()
        return "abandoned"

    def refuse_new(self) -> None:
        """Stop taking calls and cancel the queued ones (their callers hand the work back)."""
        with self._lock:
            self._closed = True
        while True:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                return
            if call is not None:
                call.future.cancel()

    def shutdown(self) -> None:
        """Let every idle thread exit; threads still running a call exit when it returns."""
        self.refuse_new()
        with self._lock:
            for _ in self._threads:
                self._calls.put(None)


@dataclass(frozen=True)
class TypedData:
    """An invocation's trigger data as the host sends it to the worker: the payload and the trigger metadata."""

    payload: meta.Datum
    metadata: dict[str, meta.Datum] = field(default_factory=dict)


def decode_trigger(trigger_type: str, data: TypedData) -> Any:
    """The trigger argument the worker builds: the `azure.functions` converter registered for the trigger type."""
    converter = meta.get_binding_registry().get(trigger_type)
    if converter is None:
        raise ConfigError(f"azure.functions has no converter for trigger type {trigger_type}")
    return converter.decode(data.payload, trigger_metadata=data.metadata)


def timespan(seconds: float) -> str:
    """Seconds as .NET prints a TimeSpan: [d.]hh:mm:ss[.fffffff], as in the host's timeout messages."""
    ticks = round(seconds * 10_000_000)
    days, rest = divmod(ticks, 86_400 * 10_000_000)
    hours, rest = divmod(rest, 3_600 * 10_000_000)
    minutes, rest = divmod(rest, 60 * 10_000_000)
    whole, fraction = divmod(rest, 10_000_000)
    text = f"{hours:02d}:{minutes:02d}:{whole:02d}"
    return (f"{days}." if days else "") + text + (f".{fraction:07d}" if fraction else "")


@dataclass
class InvocationContext(func.Context):
    """The `context` argument: what the worker tells a function about its own invocation."""

    _function_name: str
    _function_directory: str
    _invocation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _thread_local_storage: threading.local = field(default_factory=threading.local)

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]  # the worker's own Context has an instance
        return self._thread_local_storage

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None

    @property
    def method(self) -> str:
        return ""

    @property
    def url(self) -> str:
        return ""


class FunctionInvoker:
    """One registered function: its trigger binding, the trigger parameter's annotation, and how to call it."""

    def __init__(self, function: Any, script_root: Path, worker: WorkerPool, timeout: float | None = None) -> None:
        self.name: str = function.get_function_name()
        self.trigger = function.get_trigger()
        self._user_function: Callable[..., Any] = function.get_user_function()
        self._script_root = script_root
        self._worker = worker
        self.timeout = timeout
        extra_bindings = [binding.name for binding in function.get_bindings() if binding is not self.trigger]
        if extra_bindings:
            raise ConfigError(
                f"function {self.name}: bindings {', '.join(extra_bindings)} are not supported by the local host "
                "(only the trigger is); use the storage SDK inside the function instead"
            )
        parameters = inspect.signature(self._user_function).parameters
        if self.trigger.name not in parameters:
            raise ConfigError(f"function {self.name}: no parameter named {self.trigger.name!r} for its trigger")
        unknown = [name for name in parameters if name not in (self.trigger.name, CONTEXT_PARAMETER)]
        if unknown:
            raise ConfigError(f"function {self.name}: parameters {', '.join(unknown)} have no binding")
        self._wants_context = CONTEXT_PARAMETER in parameters
        try:
            hints = typing.get_type_hints(self._user_function)
        except (NameError, TypeError):
            hints = {}
        annotation = hints.get(self.trigger.name, parameters[self.trigger.name].annotation)
        self.trigger_annotation: Any = None if annotation is inspect.Parameter.empty else annotation

    def invoke(self, argument: Any, detail: str) -> bool:
        """Run the function once in the worker pool; True when it returned, False when it failed or timed out.

        `argument` is the trigger value itself, or `TypedData` for the trigger type's converter to decode on the
        worker thread. A failure is logged, not raised; `InvocationCancelled` is raised when the host stopped
        before the call started.
        """
        context = InvocationContext(self.name, str(self._script_root))
        started = time.perf_counter()
        call = self._worker.submit(lambda: self._call(argument, context))
        wait([call.future], timeout=self.timeout)
        if not call.future.done():
            outcome = self._worker.give_up(call)
            if outcome != "finished":
                self._log_timeout(context, detail, started, outcome)
                return False
        if call.future.cancelled():
            raise InvocationCancelled(f"{self.name} ({detail}): the host stopped before it started")
        elapsed = (time.perf_counter() - started) * 1000
        error = call.future.exception()
        if error is not None:
            logger.error(
                "%s (%s) failed in %.0f ms: %s: %s",
                self.name,
                detail,
                elapsed,
                type(error).__name__,
                error,
                exc_info=error if logger.isEnabledFor(logging.DEBUG) else None,
            )
            return False
        logger.info("%s (%s) succeeded in %.0f ms", self.name, detail, elapsed)
        return True

    def _call(self, argument: Any, context: InvocationContext) -> Any:
        if isinstance(argument, TypedData):
            argument = decode_trigger(self.trigger.type, argument)
        arguments = {self.trigger.name: argument}
        if self._wants_context:
            arguments[CONTEXT_PARAMETER] = context
        return self._user_function(**arguments)

    def _log_timeout(self, context: InvocationContext, detail: str, started: float, outcome: str) -> None:
        """The host's lines for a timeout, then what the local host does instead of restarting the worker."""
        limit = timespan(self.timeout or 0)
        elapsed = (time.perf_counter() - started) * 1000
        logger.error(
            "Timeout value of %s exceeded by function 'Functions.%s' (Id: '%s'). Initiating cancellation.",
            limit,
            self.name,
            context.invocation_id,
        )
        logger.error(
            "%s (%s) failed in %.0f ms: FunctionTimeoutException: Timeout value of %s was exceeded by function: Functions.%s",
            self.name,
            detail,
            elapsed,
            limit,
            self.name,
        )
        if outcome == "abandoned":
            logger.warning(
                "A function timeout has occurred: Azure restarts the worker process here. A Python thread cannot be "
                "stopped, so invocation %s of %s keeps running in the background, its outcome ignored, and a new "
                "thread takes its place in the pool",
                context.invocation_id,
                self.name,
            )
        else:
            logger.warning(
                "A function timeout has occurred: invocation %s of %s never started (all %d worker threads were busy)",
                context.invocation_id,
                self.name,
                self._worker.size,
            )
