"""`make upload FILE=path TO=db/table/`: stage a file of your own while `make run` is running.

`TO` ending in `/` is a folder (the file keeps its name); otherwise it is the full blob name. The blob name
is checked like the app checks it, so a name the app would refuse is refused here with the same reason.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from azure.core.exceptions import AzureError

from devhost import connections
from devhost.config import ConfigError, load_local_settings
from devhost.run import SETTINGS_FILE
from shared.names import blob_name_problem
from shared.settings import STAGING_CONNECTION, SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make upload", description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="the file to stage")
    parser.add_argument("to", help="db/table/ (a folder) or a full blob name in the staging container")
    args = parser.parse_args(argv)
    if not args.file.is_file():
        print(f"FILE={args.file}: no such file", file=sys.stderr)
        return 2
    blob_name = args.to + args.file.name if args.to.endswith("/") else args.to
    problem = blob_name_problem(blob_name)
    if problem:
        print(f"TO={args.to}: {problem}", file=sys.stderr)
        return 2
    try:
        if SETTINGS_FILE.exists():
            load_local_settings(SETTINGS_FILE)
        settings = load_settings()
        container = connections.blob_service(STAGING_CONNECTION, os.environ).get_container_client(settings.staging_container)
        with args.file.open("rb") as data:
            container.upload_blob(blob_name, data, overwrite=True)
    except (ConfigError, SettingsError) as error:
        print(f"cannot upload: {error}", file=sys.stderr)
        return 2
    except AzureError as error:
        print(f"cannot upload to the staging container (is 'make run' running?): {type(error).__name__}", file=sys.stderr)
        return 1
    print(f"staged {args.file} as {settings.staging_container}/{blob_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
