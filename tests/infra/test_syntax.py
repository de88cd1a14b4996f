"""Every template parses, references only local files, and uses nothing the offline checks cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.bicep import INFRA_DIR, called_functions, infra_files, parse_file, string_literal, text

TEMPLATES = infra_files()


def test_the_expected_templates_exist() -> None:
    names = {path.relative_to(INFRA_DIR).as_posix() for path in TEMPLATES}
    assert {"main.bicep", "eventgrid.bicep", "kusto-access.bicep", "alerting.bicep"} <= names
    assert not list(INFRA_DIR.rglob("*.bicepparam")), "use main.parameters.json: .bicepparam cannot be checked offline"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_parses_without_errors(path: Path) -> None:
    parsed = parse_file(path)
    assert parsed.syntax_errors() == []
    assert parsed.resources or parsed.modules, f"{path.name} declares nothing"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_modules_are_local_files(path: Path) -> None:
    """Registry modules (br:, ts:) cannot be restored offline; every module is a file in infra/."""
    parsed = parse_file(path)
    for module in parsed.modules:
        target = string_literal(module.named_children[1]) or text(module.named_children[1])
        assert ":" not in target, f"{path.name}: module {target} is a registry module"
        assert (path.parent / target).is_file(), f"{path.name}: module file {target} does not exist"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_loaded_files_exist(path: Path) -> None:
    parsed = parse_file(path)
    for name, call in called_functions(parsed.root):
        if name in ("loadTextContent", "loadJsonContent"):
            target = string_literal(call.named_children[-1].named_children[0])
            assert target is not None, f"{path.name}: {name} needs a literal path"
            assert (path.parent / target).is_file(), f"{path.name}: {name}('{target}') does not exist"
