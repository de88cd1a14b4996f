"""The app keeps the Azure SDKs' per-request INFO records out of the log; the local host leaves that to the app.

Under the Python worker the root logger is at INFO and every record reaching its handler becomes an Application
Insights trace, which host.json no longer samples (no alert record may be sampled away). So importing
function_app.py must turn the SDK loggers down to WARNING, leave the app's own loggers alone, and the local host
must not do it for the app (else a regression would only show in Azure).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

from azure.storage.queue import QueueClient

from devhost.__main__ import configure_logging as configure_local_host_logging
from shared.app_logging import SDK_LOGGERS
from tests.unit.kusto_fakes import ScriptedTransport, answer
from tests.unit.test_function_app import ENVIRONMENT, import_fresh, logging_state_kept

HTTP_LOGGER = "azure.core.pipeline.policies.http_logging_policy"
# The loggers that write a record per request or per token, and the parents whose level they inherit.
PER_REQUEST_LOGGERS = (
    "azure",
    HTTP_LOGGER,
    "azure.identity",
    "azure.identity._internal.get_token_mixin",
    "azure.storage.blob",
    "azure.storage.queue",
    "urllib3",
    "urllib3.connectionpool",
    "msal",
    "msal.application",
)
APP_LOGGERS = ("shared", "shared.recorder", "shared.submission", "shared.tracking", "shared.alerts", "function_app")


@contextlib.contextmanager
def levels_kept(names: tuple[str, ...]) -> Iterator[None]:
    """Reset the levels of `names` and the root logger to the worker's (NOTSET, root at INFO); restore them after."""
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in names} | {"": root.level}
    for name in names:
        logging.getLogger(name).setLevel(logging.NOTSET)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name or None).setLevel(level)


@contextlib.contextmanager
def worker_logging() -> Iterator[io.StringIO]:
    """Logging as the Python worker leaves it before it imports function_app.py: the root logger at INFO with a
    handler that forwards every record (here: writes `logger level message` lines to the yielded buffer), no
    level on any other logger. Levels, handlers, the record factory and filters are restored on leaving."""
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    with levels_kept(PER_REQUEST_LOGGERS + APP_LOGGERS):
        root.addHandler(handler)
        try:
            with logging_state_kept():
                yield written
        finally:
            root.removeHandler(handler)


def create_a_queue() -> None:
    """One storage request through the real SDK pipeline (its HttpLoggingPolicy included), answered by a fake."""
    queue = QueueClient.from_connection_string(ENVIRONMENT["StagingStorage"], "q", transport=ScriptedTransport(answer(201)))
    queue.create_queue()


def test_importing_the_app_sets_every_per_request_sdk_logger_to_warning() -> None:
    with worker_logging():
        import_fresh(ENVIRONMENT)
        levels = {name: logging.getLevelName(logging.getLogger(name).getEffectiveLevel()) for name in PER_REQUEST_LOGGERS}
        assert levels == dict.fromkeys(PER_REQUEST_LOGGERS, "WARNING")
        # Set on the top-level loggers only, so a child's level can still be lowered by hand to troubleshoot.
        assert {name: logging.getLogger(name).level for name in SDK_LOGGERS} == dict.fromkeys(SDK_LOGGERS, logging.WARNING)


def test_after_the_import_sdk_requests_write_no_record_while_app_info_and_sdk_warnings_do() -> None:
    with worker_logging() as written:
        create_a_queue()
        assert f"{HTTP_LOGGER} INFO Request URL:" in written.getvalue()  # the trace per request the worker would send
        written.truncate(0)
        written.seek(0)

        import_fresh(ENVIRONMENT)
        create_a_queue()
        assert written.getvalue() == ""
        logging.getLogger("shared.recorder").info("blob pending %s", "staging/Sales/Orders/a.csv")
        logging.getLogger(HTTP_LOGGER).warning("pool is full")
        logging.getLogger("urllib3.connectionpool").warning("retrying")
        assert written.getvalue().splitlines() == [
            "shared.recorder INFO blob pending staging/Sales/Orders/a.csv",
            f"{HTTP_LOGGER} WARNING pool is full",
            "urllib3.connectionpool WARNING retrying",
        ]
        # The app's loggers keep no level of their own: they log at whatever the worker's root logger allows.
        assert {name: logging.getLogger(name).level for name in APP_LOGGERS} == dict.fromkeys(APP_LOGGERS, logging.NOTSET)


def test_the_local_host_logs_at_info_and_leaves_the_sdk_loggers_to_the_app() -> None:
    """As the worker: root at INFO and no SDK logger turned down, so an app that stopped doing it floods locally too."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    with levels_kept(PER_REQUEST_LOGGERS), logging_state_kept():
        root.setLevel(logging.WARNING)
        try:
            configure_local_host_logging(verbose=False)
            assert root.level == logging.INFO
            assert {name: logging.getLogger(name).level for name in PER_REQUEST_LOGGERS} == dict.fromkeys(
                PER_REQUEST_LOGGERS, logging.NOTSET
            )
        finally:
            root.handlers[:] = handlers
