"""The README is the user's manual: its settings table and its commands must stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

from shared import error_codes
from shared.settings import SETTING_NAMES

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_the_settings_table_lists_exactly_the_settings_the_code_reads() -> None:
    rows = re.findall(r"^\| `([A-Za-z_]+)` \|", _section("Settings"), flags=re.MULTILINE)
    assert len(rows) == len(set(rows)), "a setting is listed twice"
    assert set(rows) == set(SETTING_NAMES), (
        f"missing from the README: {sorted(set(SETTING_NAMES) - set(rows))}; "
        f"not read by the code: {sorted(set(rows) - set(SETTING_NAMES))}"
    )


def test_the_alert_table_lists_exactly_the_error_codes_the_app_coins() -> None:
    coined = {
        value
        for name, value in vars(error_codes).items()
        if name.isupper() and isinstance(value, str) and value.startswith(error_codes.APP_PREFIXES)
    }
    table = "\n".join(line for line in _section("What happens to a blob, and every alert").splitlines() if line.startswith("|"))
    listed = set(re.findall(rf"`((?:{'|'.join(error_codes.APP_PREFIXES)})[A-Za-z]+)`", table))
    assert coined == listed, (
        f"missing from the README's alert table: {sorted(coined - listed)}; "
        f"not in shared/error_codes.py: {sorted(listed - coined)}"
    )


def test_the_quick_start_shows_the_two_commands_and_ci_runs_the_test_command() -> None:
    quick_start = _section("Quick start")
    assert "make run" in quick_start
    assert "make test" in quick_start
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, flags=re.MULTILINE), ".ci/run must run exactly the README's test command"


def test_every_linked_document_exists() -> None:
    for link in re.findall(r"\]\(((?:docs/)[^)#]+)\)", README):
        assert (ROOT / link).is_file(), f"README links to {link}, which does not exist"
