"""`python -m shared.ops <command>`: the operator command, run with the app's own settings and identity.

Settings come from the environment over `local.settings.json` (`shared.ops.settings_file`); the clients are the
worker's own (`shared.services.build_services`): the connection string locally, the identity the settings name in
Azure (DefaultAzureCredential when `StagingStorage__credential` and KUSTO_CREDENTIAL say so). Each command is a
module of this package with `add_arguments(parser)` and `run(args, services) -> exit code`, imported only when it
is the one asked for, so one command's imports never slow or break another.

Exit codes: 0 done; 1 something was left undone (each such item has its line on stderr) or storage failed; 2 a
usage or settings error, one line naming the option or setting; 130 interrupted (Ctrl-C). Log records go to
stderr through the app's own logging set-up (`shared.app_logging`), so they are redacted like the worker's.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path
from types import ModuleType

from azure.core.exceptions import AzureError

from shared.app_logging import configure_app_logging
from shared.ops.progress import BarSafeHandler, warn
from shared.ops.settings_file import SETTINGS_FILE, load_app_settings, settings_path
from shared.services import build_services
from shared.settings import SettingsError

PROG = "python -m shared.ops"
COMMANDS: dict[str, str] = {
    "backfill": "record the blobs already in the staging container, as the blob trigger would",
    "status": "where one staging blob is: pending, sent, ingested, failed, alerted or never seen",
    "replay": "send quarantined blobs, kept poison messages or dead-lettered events back through the pipeline",
}
"""Command -> what it does; the command's module is `shared.ops.<command>`."""
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
ERROR_LINES = 20
"""Most lines of one storage or identity error printed (DefaultAzureCredential's lists every credential it tried)."""


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--settings",
        type=Path,
        metavar="FILE",
        help=f"a local.settings.json file of app settings (default: ./{SETTINGS_FILE} if present); "
        "environment variables win over it",
    )
    common.add_argument("--verbose", action="store_true", help="also print the app's INFO log records (on stderr)")
    return common


def parse_arguments(argv: list[str] | None = None) -> tuple[argparse.Namespace, ModuleType]:
    """The parsed arguments and the chosen command's module. Usage errors exit with code 2 (argparse)."""
    common = _common_options()
    listing = "\n".join(f"  {name:<10}{summary}" for name, summary in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog=PROG,
        parents=[common],
        description="The operator command, run with the app's own settings and identity.",
        epilog=f"commands:\n{listing}\n\n'{PROG} <command> --help' shows a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=COMMANDS, metavar="command", help=", ".join(COMMANDS))
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    module = importlib.import_module(f"shared.ops.{args.command}")
    command_parser = argparse.ArgumentParser(
        prog=f"{PROG} {args.command}", parents=[common], description=(module.__doc__ or "").split("\n\n", 1)[0]
    )
    module.add_arguments(command_parser)
    # Into the same namespace: common options given before the command keep their values.
    command_parser.parse_args(args.arguments, namespace=args)
    return args, module


def _configure_logging(verbose: bool) -> None:
    """Records at WARNING and above (INFO with --verbose) on stderr, redacted by the app's logging set-up."""
    handler = BarSafeHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    configure_app_logging()  # after the handler is added, so that its redacting filter covers that handler too


def main(argv: list[str] | None = None) -> int:
    args, command = parse_arguments(argv)
    _configure_logging(args.verbose)
    try:
        settings = load_app_settings(settings_path(args.settings))
        for reason in settings.disabled.values():
            warn(f"warning: {reason}")
        return command.run(args, build_services(settings))
    except SettingsError as error:
        warn(f"settings error: {error}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        warn("interrupted: what was done is kept; the same command run again goes on with the rest")
        return EXIT_INTERRUPTED
    except AzureError as error:
        warn(f"stopped by a storage or identity error ({type(error).__name__}):")
        for line in str(error).splitlines()[:ERROR_LINES]:
            warn(f"  {line}")
        return EXIT_FAILED
