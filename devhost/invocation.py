"""Calls one registered function with its trigger argument and logs one line per invocation.

The Python worker passes the trigger value under the binding's `name`, plus a `context` argument when the
function declares one. Any other parameter would need a binding the local host does not provide, so such a
function is refused when the host starts rather than failing on every call.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

from devhost.config import ConfigError

logger = logging.getLogger(__name__)

CONTEXT_PARAMETER = "context"


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
    def thread_local_storage(self) -> threading.local:
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

    def __init__(self, function: Any, script_root: Path) -> None:
        self.name: str = function.get_function_name()
        self.trigger = function.get_trigger()
        self._user_function: Callable[..., Any] = function.get_user_function()
        self._script_root = script_root
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
        """Run the function once; True when it returned, False when it raised (the error is logged, not raised)."""
        arguments = {self.trigger.name: argument}
        if self._wants_context:
            arguments[CONTEXT_PARAMETER] = InvocationContext(self.name, str(self._script_root))
        started = time.perf_counter()
        try:
            self._user_function(**arguments)
        except Exception as error:
            elapsed = (time.perf_counter() - started) * 1000
            logger.error(
                "%s (%s) failed in %.0f ms: %s: %s",
                self.name,
                detail,
                elapsed,
                type(error).__name__,
                error,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )
            return False
        elapsed = (time.perf_counter() - started) * 1000
        logger.info("%s (%s) succeeded in %.0f ms", self.name, detail, elapsed)
        return True
