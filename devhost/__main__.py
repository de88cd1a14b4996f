"""`python -m devhost`: run function_app.py locally against Azurite, an offline stand-in for `func start`.

Settings come from local.settings.json (`Values`) when it exists, else from the environment; variables already
set in the environment win. Ctrl-C or SIGTERM stops cleanly: running calls get a grace period, unstarted
queue messages are handed back, and anything still running after that is abandoned (its queue message
reappears when its lease ends, its blob has no receipt and fires again on the next start).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from devhost.config import LOSE_EVENTS_SETTING, ConfigError, load_host_options, load_local_settings, lose_events
from devhost.connections import connection_string
from devhost.events import install_event_handlers
from devhost.host import LocalHost, default_host_id, load_app
from shared.redaction import install_redaction

logger = logging.getLogger("devhost")

DEFAULT_SETTINGS = "local.settings.json"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__.splitlines()[0])
    parser.add_argument("--script-root", type=Path, default=Path.cwd(), help="folder of function_app.py and host.json")
    parser.add_argument("--settings", type=Path, help=f"settings file (default: {DEFAULT_SETTINGS} in the script root, if any)")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds running calls may take to finish on stop")
    parser.add_argument("--verbose", action="store_true", help="debug logging, with tracebacks of failed calls")
    return parser.parse_args(argv)


def configure_logging(verbose: bool) -> None:
    """Log as the Python worker does: the root logger at INFO (DEBUG with --verbose), no other logger's level set.

    The SDK loggers (`azure`, `urllib3`, `msal`) are turned down by the app itself when function_app.py is
    imported (`shared.app_logging`), not here, so an app that floods the log with SDK requests does so locally
    too. Redaction is installed now as well (the app installs it again, idempotently), for the host's own lines
    written before the app is imported.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.addHandler(handler)
    install_redaction()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    configure_logging(args.verbose)
    script_root = args.script_root.resolve()
    settings_path = args.settings or script_root / DEFAULT_SETTINGS
    try:
        if args.settings or settings_path.exists():
            load_local_settings(settings_path)
            logger.info("settings from %s (environment variables win)", settings_path)
        else:
            logger.info("no %s: settings come from the environment", DEFAULT_SETTINGS)
        connection_string("AzureWebJobsStorage")
        options = load_host_options(script_root / "host.json")
        if lost := os.environ.get(LOSE_EVENTS_SETTING, ""):
            logger.warning("%s=%s: Event Grid drops the events of blobs matching it (a test hook)", LOSE_EVENTS_SETTING, lost)
            event_grid = lose_events(options.blobs.event_grid, lost)
            options = dataclasses.replace(options, blobs=dataclasses.replace(options.blobs, event_grid=event_grid))
        install_event_handlers(os.environ)
        app = load_app(script_root)
        host = LocalHost(app, options, default_host_id(script_root, os.environ), script_root)
    except ConfigError as error:
        logger.error("cannot start: %s", error)
        return 2
    stopping = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("%s received: stopping", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    host.start()
    logger.info("local host running %d functions; Ctrl-C stops", len(host.listeners))
    while not stopping.wait(1.0):
        pass
    still_running = host.stop(args.grace)
    if still_running:
        logger.warning("abandoning %d calls still running after %.0f s", still_running, args.grace)
        logging.shutdown()
        os._exit(1)
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
