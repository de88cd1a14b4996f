"""The code, the Bicep app settings and local.settings.example.json name the same settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.settings import SETTING_NAMES
from tests.infra.bicep import INFRA_DIR, app_settings, parse_file
from tests.infra.drift import alternatives_problems, azure_drift, local_drift
from tests.infra.rules import check_flex_settings

LOCAL_SETTINGS_EXAMPLE = INFRA_DIR.parent / "local.settings.example.json"


def _code_settings() -> set[str]:
    """The live list from shared/settings.py, never a copy, so settings added by anyone are checked."""
    return set(SETTING_NAMES)


def test_exempted_alternatives_are_still_settings_the_code_reads() -> None:
    assert alternatives_problems(_code_settings()) == []


def test_bicep_app_settings_match_the_code() -> None:
    bicep = app_settings(parse_file(INFRA_DIR / "main.bicep"))
    assert bicep, "no app settings found in infra/main.bicep"
    assert azure_drift(_code_settings(), bicep) == []


def test_bicep_app_settings_use_no_flex_deprecated_names() -> None:
    assert check_flex_settings(parse_file(INFRA_DIR / "main.bicep")) == []


def test_local_settings_example_matches_the_code() -> None:
    if not LOCAL_SETTINGS_EXAMPLE.exists():
        pytest.skip("local.settings.example.json is not written yet (the submit-side helper owns it)")
    values = json.loads(Path(LOCAL_SETTINGS_EXAMPLE).read_text(encoding="utf-8")).get("Values")
    assert isinstance(values, dict), "local.settings.example.json has no Values object"
    assert local_drift(_code_settings(), values) == []
