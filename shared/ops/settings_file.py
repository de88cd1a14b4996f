"""The app's settings for the operator command: the process environment over a `local.settings.json` file.

The file is the one Core Tools and the local host read (`{"Values": {name: value}}`), so the command run from the
project folder talks to the stack `make run` started, and an operator can point it at a copy of a deployed app's
settings. A variable set in the environment wins over the file, as it does for the local host. This module is the
one reader of that file's format: the local host (`devhost.config`) reads it through `settings_file_values` too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from shared.settings import Settings, SettingsError, load_settings

SETTINGS_FILE = Path("local.settings.json")
"""The file read when no other is named, in the current folder (where `make run` writes it)."""


def settings_file_values(path: Path) -> dict[str, str]:
    """The `Values` of a local.settings.json file as text (booleans as true/false); SettingsError says what is wrong."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SettingsError(f"{path}: cannot read the settings file ({error.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        where = f"{error.msg} at line {error.lineno}" if isinstance(error, json.JSONDecodeError) else "not UTF-8"
        raise SettingsError(f"{path}: not valid JSON ({where})") from None
    values = document.get("Values") if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise SettingsError(f'{path}: expected an object with a "Values" object of app settings')
    if document.get("IsEncrypted") is True:
        # `func azure functionapp fetch-app-settings` writes them encrypted; the values would be read as garbage.
        raise SettingsError(f"{path}: its values are encrypted (IsEncrypted is true); run 'func settings decrypt' first")
    texts: dict[str, str] = {}
    for name, value in values.items():
        if not isinstance(value, str | int | float | bool):
            raise SettingsError(f"{path}: Values.{name} must be a string, not {type(value).__name__}")
        texts[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return texts


def settings_path(named: Path | None) -> Path | None:
    """The settings file to read: the one named (which must exist), else ./local.settings.json when present."""
    if named is not None:
        if not named.is_file():
            raise SettingsError(f"--settings {named}: no such file")
        return named
    return SETTINGS_FILE if SETTINGS_FILE.is_file() else None


def load_app_settings(path: Path | None, environ: Mapping[str, str] = os.environ) -> Settings:
    """The app's settings from `environ` over the file at `path` (if any), read as the worker reads them.

    As in the worker, an invalid setting of an optional feature (`shared.settings.FEATURES`) turns that feature off
    (`Settings.disabled` says why) instead of failing: a command that does not need the feature still runs, and one
    that needs it refuses with the reason. Any other invalid setting raises SettingsError naming it.
    """
    values = {**settings_file_values(path), **environ} if path is not None else environ
    return load_settings(values, disable_invalid_features=True)
