"""Each rule, run on a small deliberately broken template, reports the breakage: the checks can fail."""

from __future__ import annotations

import pytest

from tests.infra import rules
from tests.infra.bicep import app_settings, parse_source
from tests.infra.drift import alternatives_problems, azure_drift, local_drift

STORAGE = """
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'st'
  properties: {
    allowSharedKeyAccess: %(shared)s
    allowBlobPublicAccess: false
    minimumTlsVersion: %(tls)s
    supportsHttpsTrafficOnly: true
  }
  resource blobService 'blobServices' = {
    name: 'default'
    resource staging 'containers' = {
      name: 'staging'
      properties: {
        publicAccess: %(access)s
      }
    }
  }
}
"""

SAFE_STORAGE = {"shared": "false", "tls": "'TLS1_2'", "access": "'None'"}

ROLE = """
param principalId string
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataReaderRoleId = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
var storageBlobDelegatorRoleId = 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a'
var contributorRoleId = 'b24988ac-6180-42a0-ab88-20f7382dd24c'
resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi'
}
resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = %(condition)s{
  name: %(name)s
  scope: %(scope)s
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', %(role)s)
    principalId: principalId
  }
}
"""

SAFE_ROLE = {
    "condition": "",
    "name": "guid(storage.id, principalId, storageBlobDataOwnerRoleId)",
    "scope": "storage",
    "role": "storageBlobDataOwnerRoleId",
}


def _storage(**overrides: str) -> str:
    return STORAGE % {**SAFE_STORAGE, **overrides}


def _role(**overrides: str) -> str:
    return _storage() + ROLE % {**SAFE_ROLE, **overrides}


def test_safe_snippets_pass() -> None:
    """The baselines the broken variants start from pass every rule (so a failure below is the breakage)."""
    parsed = parse_source(_role())
    assert parsed.syntax_errors() == []
    for rule in rules.SECURITY_RULES:
        assert rule(parsed) == [], rule.__name__


def test_syntax_errors_are_found() -> None:
    parsed = parse_source("resource x 'A/b@1' = {\n  name: 'x'\n  properties: {\n")
    assert parsed.syntax_errors()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"shared": "true"}, "allowSharedKeyAccess"),
        ({"shared": "allowKeys"}, "allowSharedKeyAccess"),
        ({"tls": "'TLS1_0'"}, "minimumTlsVersion"),
        ({"access": "'Blob'"}, "publicAccess"),
    ],
)
def test_storage_weakening_is_caught(override: dict[str, str], expected: str) -> None:
    problems = rules.check_storage_hardening(parse_source(_storage(**override)))
    assert any(expected in p for p in problems), problems


def test_missing_storage_property_is_caught() -> None:
    snippet = _storage().replace("    supportsHttpsTrafficOnly: true\n", "")
    problems = rules.check_storage_hardening(parse_source(snippet))
    assert any("supportsHttpsTrafficOnly" in p for p in problems), problems


def test_site_without_https_only_is_caught() -> None:
    snippet = "resource site 'Microsoft.Web/sites@2024-04-01' = {\n  name: 'f'\n  properties: {\n    httpsOnly: false\n  }\n}\n"
    assert rules.check_storage_hardening(parse_source(snippet))


def test_parameter_without_description_is_caught() -> None:
    snippet = "@description('Described.')\nparam a string\n@minLength(1)\nparam b string\n"
    problems = rules.check_parameter_descriptions(parse_source(snippet))
    assert problems == ["<snippet>: parameter b has no @description('...')"]


def test_key_listing_is_caught() -> None:
    snippet = _storage() + "var keys = storage.listKeys().keys\nvar sas = listAccountSas(storage.id, '2023-05-01', {})\n"
    problems = rules.check_no_key_listing(parse_source(snippet))
    assert len(problems) == 2, problems


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("output leaked string = webhook", "@secure()"),
        ("output leaked string = 'https://x?${webhook}'", "@secure()"),
        ("output leaked string = insights.properties.ConnectionString", "credential-like"),
        ("output leaked string = 'DefaultEndpointsProtocol=https;AccountKey=abc'", "connection-string"),
    ],
)
def test_secrets_in_outputs_are_caught(output: str, expected: str) -> None:
    snippet = (
        "@secure()\n@description('A secret.')\nparam webhook string\n" + ROLE.split("resource assignment", maxsplit=1)[0] + output
    )
    problems = rules.check_outputs_carry_no_secrets(parse_source(snippet))
    assert any(expected in p for p in problems), problems


SITE_SETTINGS = """
@secure()
@description('A secret.')
param webhook string
resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi'
}
resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: 'f'
  properties: {
    httpsOnly: true
  }
  resource appSettings 'config' = {
    name: 'appsettings'
    properties: {
      APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString
      %s
    }
  }
}
"""


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("ALERT_WEBHOOK_URL: webhook", "@secure()"),
        ("OTHER: insights.properties.ConnectionString", "credential-like"),
        ("StagingStorage: 'DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k'", "connection-string"),
    ],
)
def test_secrets_in_app_settings_are_caught(setting: str, expected: str) -> None:
    parsed = parse_source(SITE_SETTINGS % setting)
    assert parsed.syntax_errors() == []
    problems = rules.check_app_settings_carry_no_secrets(parsed)
    assert any(expected in p for p in problems), problems


def test_app_insights_connection_string_alone_is_allowed() -> None:
    parsed = parse_source(SITE_SETTINGS % "STAGING_CONTAINER: 'staging'")
    assert set(app_settings(parsed)) == {"APPLICATIONINSIGHTS_CONNECTION_STRING", "STAGING_CONTAINER"}
    assert rules.check_app_settings_carry_no_secrets(parsed) == []


@pytest.mark.parametrize("name", ["FUNCTIONS_WORKER_RUNTIME", "WEBSITE_RUN_FROM_PACKAGE", "AzureWebJobsStorage"])
def test_flex_deprecated_settings_are_caught(name: str) -> None:
    problems = rules.check_flex_settings(parse_source(SITE_SETTINGS % f"{name}: 'x'"))
    assert any(name in p for p in problems), problems


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"name": "'fixed-name'"}, "guid(...)"),
        ({"name": "'${guid(storage.id)}'"}, "guid(...)"),
        ({"role": "'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'"}, "inline"),
        ({"role": "contributorRoleId"}, "no scope rule"),
        ({"scope": "insights"}, "Storage Blob Data Owner is scoped to insights"),
        ({"role": "storageBlobDataReaderRoleId"}, "Storage Blob Data Reader is scoped to storage"),
        ({"role": "storageBlobDelegatorRoleId"}, "must be conditional"),
    ],
)
def test_role_assignment_breakage_is_caught(override: dict[str, str], expected: str) -> None:
    parsed = parse_source(_role(**override))
    assert parsed.syntax_errors() == []
    problems = rules.check_role_assignments(parsed)
    assert any(expected in p for p in problems), problems


def test_role_assignment_without_scope_is_caught() -> None:
    snippet = _role().replace("  scope: storage\n", "")
    problems = rules.check_role_assignments(parse_source(snippet))
    assert any("whole resource group" in p for p in problems), problems


def test_narrow_scopes_pass() -> None:
    """A reader on the container and a conditional delegator on the account are what the rules ask for."""
    reader = _role(role="storageBlobDataReaderRoleId", scope="storage::blobService::staging")
    delegator = _role(role="storageBlobDelegatorRoleId", condition="if (!empty(principalId)) ")
    assert rules.check_role_assignments(parse_source(reader)) == []
    assert rules.check_role_assignments(parse_source(delegator)) == []


def test_drift_is_caught_in_both_directions() -> None:
    code = {"StagingStorage", "StagingStorage__blobServiceUri", "KUSTO_INGEST_URI", "BLOB_ACCESS"}
    azure = azure_drift(code, {"StagingStorage", "KUSTO_INGEST_URI", "UNUSED_SETTING", "AzureWebJobsStorage__credential"})
    assert any("StagingStorage__blobServiceUri is read by the code but not set" in p for p in azure), azure
    assert any("BLOB_ACCESS is read by the code but not set" in p for p in azure), azure
    assert any("StagingStorage is local-only" in p for p in azure), azure
    assert any("UNUSED_SETTING is set in Bicep but the code does not read it" in p for p in azure), azure
    assert not any("AzureWebJobsStorage__credential" in p for p in azure), azure

    local = local_drift(code, {"StagingStorage": "", "KUSTO_INGEST_URI": "", "FUNCTIONS_WORKER_RUNTIME": "python", "X": ""})
    assert local == [
        "local.settings.example.json: BLOB_ACCESS is read by the code but missing from Values",
        "local.settings.example.json: X is set but the code does not read it (and it is not a host setting)",
    ]


def test_stale_alternatives_are_caught() -> None:
    problems = alternatives_problems({"StagingStorage"})
    assert any("StagingStorage__blobServiceUri" in p for p in problems), problems


ALERT_RULE = """
resource group 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag'
  location: 'global'
}
resource rule 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'r'
  properties: {
%(skip)s
    actions: {
      actionGroups: %(groups)s
    }
  }
}
"""


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"skip": ""}, "skipQueryValidation must be the literal true (found not set)"),
        ({"skip": "    skipQueryValidation: false"}, "skipQueryValidation must be the literal true (found false)"),
        ({"groups": "[]"}, "must name an action group"),
        ({"groups": "['/subscriptions/x/some/other/group']"}, "must name an action group"),
    ],
)
def test_alert_rule_breakage_is_caught(override: dict[str, str], expected: str) -> None:
    values = {"skip": "    skipQueryValidation: true", "groups": "[group.id]", **override}
    parsed = parse_source(ALERT_RULE % values)
    assert parsed.syntax_errors() == []
    problems = rules.check_scheduled_query_rules(parsed)
    assert any(expected in p for p in problems), problems


def test_a_well_formed_alert_rule_passes() -> None:
    parsed = parse_source(ALERT_RULE % {"skip": "    skipQueryValidation: true", "groups": "hasReceivers ? [group.id] : []"})
    assert rules.check_scheduled_query_rules(parsed) == []


def test_a_dead_letter_writer_outside_its_container_is_caught() -> None:
    """Storage Blob Data Contributor (Event Grid's dead-letter writer) may only sit on a container."""
    snippet = _role(role="storageBlobDataContributorRoleId").replace(
        "var contributorRoleId",
        "var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'\nvar contributorRoleId",
    )
    problems = rules.check_role_assignments(parse_source(snippet))
    assert any("Storage Blob Data Contributor is scoped to storage" in p for p in problems), problems
    on_container = snippet.replace("scope: storage\n", "scope: storage::blobService::staging\n")
    assert rules.check_role_assignments(parse_source(on_container)) == []
