"""Security and least-privilege rules over every template (rules in tests/infra/rules.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.infra.bicep import INFRA_DIR, BicepFile, infra_files, parse_file
from tests.infra.rules import SECURITY_RULES, check_parameter_descriptions

TEMPLATES = infra_files()


@pytest.mark.parametrize("rule", SECURITY_RULES, ids=lambda r: r.__name__)
@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_follows_rule(path: Path, rule: Callable[[BicepFile], list[str]]) -> None:
    assert rule(parse_file(path)) == []


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_parameter_is_described(path: Path) -> None:
    assert check_parameter_descriptions(parse_file(path)) == []


def test_main_template_hardens_its_storage_account_and_assigns_roles() -> None:
    """Guards against the rules passing vacuously: main.bicep must contain what they inspect."""
    main = parse_file(INFRA_DIR / "main.bicep")
    assert len(main.resources_of_type("Microsoft.Storage/storageAccounts")) == 1
    assert len(main.resources_of_type("Microsoft.Authorization/roleAssignments")) >= 5
    assert main.outputs


def test_event_grid_key_is_a_secure_parameter() -> None:
    eventgrid = parse_file(INFRA_DIR / "eventgrid.bicep")
    assert eventgrid.parameters["blobsExtensionKey"].is_secure


def test_webhook_parameters_are_secure() -> None:
    main = parse_file(INFRA_DIR / "main.bicep")
    alerting = parse_file(INFRA_DIR / "alerting.bicep")
    for name in ("alertWebhookUrl", "alertWebhookSecret", "actionGroupWebhookUrl"):
        assert main.parameters[name].is_secure, name
    assert alerting.parameters["actionGroupWebhookUrl"].is_secure
