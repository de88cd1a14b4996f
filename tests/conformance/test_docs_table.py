"""The conformance table of docs/emulator.md names the tests that keep each row true: those tests must exist,
and every conformance module must back at least one row."""

from __future__ import annotations

import re
from pathlib import Path

from devhost.processes import ROOT

HERE = Path(__file__).parent


def _table_rows() -> list[str]:
    text = (ROOT / "docs" / "emulator.md").read_text()
    section = text.split("## Conformance with the official clients", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| feature")]


def test_every_row_names_tests_that_exist_and_every_module_backs_a_row() -> None:
    named = {name for row in _table_rows() for name in re.findall(r"`(test_\w+|tests/\w+)`", row.rsplit("|", 2)[-2])}
    modules = {path.stem for path in HERE.glob("test_*.py")} - {Path(__file__).stem}
    assert named, "the conformance table lost its rows"
    for name in named:
        assert (ROOT / name).is_dir() if name.startswith("tests/") else name in modules, f"{name} is not a test of this tier"
    assert modules <= named, f"conformance modules no row names: {sorted(modules - named)}"
