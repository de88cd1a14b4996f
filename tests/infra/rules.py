"""The rules the templates in infra/ must follow, each a function from a parsed file to a list of problems.

Every rule returns human-readable problems (empty list = pass) so a failing test says what to fix, and
every rule is also run against a deliberately broken snippet in `test_rules_catch_breakage.py`, which
proves it can fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tree_sitter import Node

from tests.infra.bicep import (
    BicepFile,
    Resource,
    app_settings,
    call_arguments,
    called_functions,
    identifiers,
    literal,
    member_names,
    object_properties,
    string_literal,
    text,
    walk,
)

STORAGE_ACCOUNT = "Microsoft.Storage/storageAccounts"
CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers"
QUEUE_SERVICE = "Microsoft.Storage/storageAccounts/queueServices"
QUEUE = "Microsoft.Storage/storageAccounts/queueServices/queues"
APP_INSIGHTS = "Microsoft.Insights/components"
KEY_VAULT = "Microsoft.KeyVault/vaults"
KEY_VAULT_SECRET = "Microsoft.KeyVault/vaults/secrets"

# Storage account properties that must be these literal values (not parameters someone can flip).
STORAGE_HARDENING: dict[str, object] = {
    "allowSharedKeyAccess": False,
    "allowBlobPublicAccess": False,
    "minimumTlsVersion": "TLS1_2",
    "supportsHttpsTrafficOnly": True,
}


@dataclass(frozen=True)
class RoleRule:
    """Where a role may be assigned: the narrowest scopes that still let its holder do its job."""

    name: str
    scopes: frozenset[str]
    why: str
    conditional: bool = False


# Built-in role definition id -> the scope rule for that role. A role assignment naming any other role
# fails until a rule is written here, so no role slips in without someone deciding its scope.
ROLE_RULES: dict[str, RoleRule] = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": RoleRule(
        "Storage Blob Data Owner",
        frozenset({STORAGE_ACCOUNT, CONTAINER}),
        "the host creates its own containers (receipts, locks, keys), so the account at most; a container where possible",
    ),
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": RoleRule(
        "Storage Blob Data Reader",
        frozenset({CONTAINER}),
        "the Kusto cluster only reads staged blobs: the staging container only",
    ),
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": RoleRule(
        "Storage Blob Data Contributor",
        frozenset({CONTAINER}),
        "Event Grid's system topic writes undeliverable events to the dead-letter container: that container only",
    ),
    "db58b8e5-c6ad-4a2a-8342-4190687cbf4a": RoleRule(
        "Storage Blob Delegator",
        frozenset({STORAGE_ACCOUNT}),
        "a user-delegation key is per account; only when BLOB_ACCESS=user_delegation_sas",
        conditional=True,
    ),
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": RoleRule(
        "Storage Queue Data Contributor",
        frozenset({STORAGE_ACCOUNT, QUEUE_SERVICE, QUEUE}),
        "the app's queues and the host's blob-trigger queues: the queue service or the account at most",
    ),
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": RoleRule(
        "Storage Table Data Contributor",
        frozenset({STORAGE_ACCOUNT}),
        "host diagnostic events in AzureWebJobsStorage's table service (tables have no narrower scope here)",
    ),
    "3913510d-42f4-4e42-8a64-420c390055eb": RoleRule(
        "Monitoring Metrics Publisher",
        frozenset({APP_INSIGHTS}),
        "telemetry with local auth disabled: the Application Insights component only",
    ),
    "4633458b-17de-408a-b874-0445c86b69e6": RoleRule(
        "Key Vault Secrets User",
        frozenset({KEY_VAULT, KEY_VAULT_SECRET}),
        "Key Vault references: a vault holding only the app's secrets, or one secret; only when a secret is configured",
        conditional=True,
    ),
}

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

# Property names that hold credentials; none may be read into an output or an app setting.
_SECRET_MEMBER = re.compile(r"(connectionstring|key|secret|password|sas|token)", re.IGNORECASE)
# Text that only appears inside credential-bearing connection strings or SAS URLs.
_SECRET_TEXT = re.compile(r"(AccountKey=|SharedAccessSignature=|[?&]sig=|SharedAccessKey=)", re.IGNORECASE)

# The one app setting that may read a connection-string property: the App Insights connection string is an
# ingestion address, not a credential, once local auth is disabled (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
APP_SETTING_CONNECTION_STRING_ALLOWED = frozenset({"APPLICATIONINSIGHTS_CONNECTION_STRING"})

# App settings Flex Consumption rejects or ignores (its runtime and deployment live in functionAppConfig).
FLEX_DEPRECATED_SETTINGS = frozenset(
    {
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "FUNCTIONS_WORKER_RUNTIME_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_NODE_DEFAULT_VERSION",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "ENABLE_ORYX_BUILD",
        "WEBSITE_TIME_ZONE",
        "TZ",
        "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
        "AzureWebJobsStorage",
    }
)


def _where(parsed: BicepFile, resource: Resource) -> str:
    return f"{parsed.name}: resource {resource.symbol} ({resource.type})"


def check_parameter_descriptions(parsed: BicepFile) -> list[str]:
    """Every parameter carries a non-empty @description."""
    problems = []
    for param in parsed.parameters.values():
        call = param.decorators.get("description")
        description = string_literal(call_arguments(call)[0]) if call is not None and call_arguments(call) else None
        if not description or not description.strip():
            problems.append(f"{parsed.name}: parameter {param.name} has no @description('...')")
    return problems


def check_storage_hardening(parsed: BicepFile) -> list[str]:
    """Storage accounts declared here: no shared keys, no public blobs, HTTPS only, TLS 1.2; containers private."""
    problems = []
    for account in parsed.resources_of_type(STORAGE_ACCOUNT):
        if account.existing:
            continue
        settings = object_properties(account.properties.get("properties"))
        for key, wanted in STORAGE_HARDENING.items():
            actual = literal(settings.get(key))
            if actual != wanted or isinstance(actual, bool) != isinstance(wanted, bool):
                found = text(settings[key]) if key in settings else "not set"
                problems.append(f"{_where(parsed, account)}: properties.{key} must be the literal {wanted!r} (found {found})")
    for container in parsed.resources_of_type(CONTAINER):
        access = container.property_path("properties", "publicAccess")
        if access is not None and string_literal(access) != "None":
            problems.append(f"{_where(parsed, container)}: properties.publicAccess must be 'None' (found {text(access)})")
    for site in parsed.resources_of_type("Microsoft.Web/sites"):
        if site.existing:
            continue
        https_only = site.property_path("properties", "httpsOnly")
        if literal(https_only) is not True:
            problems.append(f"{_where(parsed, site)}: properties.httpsOnly must be the literal true")
    return problems


def check_no_key_listing(parsed: BicepFile) -> list[str]:
    """No list* call (listKeys, listAccountSas, listSecrets...) anywhere: keys never pass through a template."""
    return [
        f"{parsed.name}:{call.start_point.row + 1}: {name}() reads a key or secret; use identities instead"
        for name, call in called_functions(parsed.root)
        if name.lower().startswith("list")
    ]


def check_outputs_carry_no_secrets(parsed: BicepFile) -> list[str]:
    """Outputs are stored in plain text in the deployment history: no secure parameter, key or connection string."""
    secure = {name for name, param in parsed.parameters.items() if param.is_secure}
    problems = []
    for name, value in parsed.outputs.items():
        leaked = identifiers(value) & secure
        if leaked:
            problems.append(f"{parsed.name}: output {name} exposes @secure() parameter(s) {sorted(leaked)}")
        secret_members = sorted(m for m in member_names(value) if _SECRET_MEMBER.search(m))
        if secret_members:
            problems.append(f"{parsed.name}: output {name} reads credential-like properties {secret_members}")
        if _SECRET_TEXT.search(text(value)):
            problems.append(f"{parsed.name}: output {name} contains connection-string or SAS text")
    return problems


def check_app_settings_carry_no_secrets(parsed: BicepFile) -> list[str]:
    """App settings use identity-based connections: no keys, SAS, secure parameters or storage connection strings."""
    secure = {name for name, param in parsed.parameters.items() if param.is_secure}
    problems = []
    for name, value in app_settings(parsed).items():
        leaked = identifiers(value) & secure
        if leaked:
            problems.append(f"{parsed.name}: app setting {name} is set from @secure() parameter(s) {sorted(leaked)}")
        secret_members = sorted(m for m in member_names(value) if _SECRET_MEMBER.search(m))
        if secret_members and name not in APP_SETTING_CONNECTION_STRING_ALLOWED:
            problems.append(f"{parsed.name}: app setting {name} reads credential-like properties {secret_members}")
        if _SECRET_TEXT.search(text(value)):
            problems.append(f"{parsed.name}: app setting {name} contains connection-string or SAS text")
    return problems


def check_flex_settings(parsed: BicepFile) -> list[str]:
    """No app setting that Flex Consumption deprecates, and no storage connection-string setting."""
    return [
        f"{parsed.name}: app setting {name} is not allowed on Flex Consumption (or is a connection string); remove it"
        for name in app_settings(parsed)
        if name in FLEX_DEPRECATED_SETTINGS
    ]


def _scope_type(parsed: BicepFile, scope: Node) -> str | None:
    """Resource type a role assignment's `scope:` points at (a symbol or a `parent::child` accessor)."""
    if scope.type == "identifier":
        symbol = text(scope)
    elif scope.type == "resource_expression":
        symbol = text(scope.named_children[-1])
    else:
        return None
    resource = parsed.resource(symbol)
    return resource.type if resource is not None else None


def _role_variables(parsed: BicepFile, expression: Node) -> list[str]:
    return [name for name in identifiers(expression) if string_literal(parsed.variables.get(name)) is not None]


def check_role_assignments(parsed: BicepFile) -> list[str]:
    """Role ids come from named variables, names from guid(), and each role sits at a scope its rule allows."""
    problems = []
    for assignment in parsed.resources_of_type("Microsoft.Authorization/roleAssignments"):
        where = _where(parsed, assignment)
        name = object_properties(assignment.body).get("name")
        if name is None or name.type != "call_expression" or text(name.named_children[0]) != "guid":
            problems.append(f"{where}: name must be guid(...) so redeployments are idempotent")
        role_id = assignment.property_path("properties", "roleDefinitionId")
        if role_id is None:
            problems.append(f"{where}: properties.roleDefinitionId is missing")
            continue
        if any(n.type == "string_content" and _GUID.match(text(n)) for n in walk(role_id)):
            problems.append(f"{where}: role definition id is written inline; put it in a named variable")
        role_vars = _role_variables(parsed, role_id)
        if len(role_vars) != 1:
            problems.append(f"{where}: roleDefinitionId must name exactly one role-id variable (found {role_vars})")
            continue
        role_guid = (string_literal(parsed.variables[role_vars[0]]) or "").lower()
        rule = ROLE_RULES.get(role_guid)
        if rule is None:
            problems.append(f"{where}: role {role_vars[0]} ({role_guid}) has no scope rule in tests/infra/rules.py ROLE_RULES")
            continue
        scope = object_properties(assignment.body).get("scope")
        scope_type = _scope_type(parsed, scope) if scope is not None else None
        if scope_type not in rule.scopes:
            shown = text(scope) if scope is not None else "the whole resource group (no scope)"
            problems.append(
                f"{where}: {rule.name} is scoped to {shown} ({scope_type}); allowed: {sorted(rule.scopes)} - {rule.why}"
            )
        if rule.conditional and assignment.condition is None:
            problems.append(f"{where}: {rule.name} must be conditional ({rule.why})")
    return problems


SCHEDULED_QUERY_RULE = "Microsoft.Insights/scheduledQueryRules"
ACTION_GROUP = "Microsoft.Insights/actionGroups"


def check_scheduled_query_rules(parsed: BicepFile) -> list[str]:
    """Log alert rules skip query validation and notify a declared action group.

    On a first deployment the App Insights component a rule queries was created moments earlier and ARM's
    validation of the query against it can fail the whole deployment, so `skipQueryValidation` must be the
    literal true. A rule that names no action group fires into the portal only.
    """
    action_groups = {group.symbol for group in parsed.resources_of_type(ACTION_GROUP) if not group.existing}
    problems = []
    for rule in parsed.resources_of_type(SCHEDULED_QUERY_RULE):
        if rule.existing:
            continue
        skip = rule.property_path("properties", "skipQueryValidation")
        if literal(skip) is not True:
            found = text(skip) if skip is not None else "not set"
            problems.append(f"{_where(parsed, rule)}: properties.skipQueryValidation must be the literal true (found {found})")
        groups = rule.property_path("properties", "actions", "actionGroups")
        if groups is None or not identifiers(groups) & action_groups:
            problems.append(f"{_where(parsed, rule)}: properties.actions.actionGroups must name an action group declared here")
    return problems


SECURITY_RULES = (
    check_storage_hardening,
    check_no_key_listing,
    check_outputs_carry_no_secrets,
    check_app_settings_carry_no_secrets,
    check_flex_settings,
    check_role_assignments,
)

ALERTING_RULES = (check_scheduled_query_rules,)
