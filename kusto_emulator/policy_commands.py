"""Management commands on the streaming ingestion policy, and the schema-cache command that goes with it.

Supported (any case), for `table T` and for `database D` alike:
`.alter table T policy streamingingestion enable | disable | '<json>'`,
`.alter-merge table T policy streamingingestion '<json>'`, `.delete table T policy streamingingestion`,
`.show table T policy streamingingestion`, and `.clear database cache streamingingestion schema` /
`.clear table T cache streamingingestion schema` (the emulator caches no schema, so there is nothing to
clear; the command answers as Kusto does, one row per node).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from .errors import BadRequest
from .mgmt_request import MgmtHandler, MgmtRequest, command
from .mgmt_syntax import NAME, STRINGS, entity, string_value
from .policies import STREAMING_INGESTION, streaming_policy
from .responses import V1Table

_POLICY_COLUMNS = [
    ("PolicyName", "string"),
    ("EntityName", "string"),
    ("Policy", "string"),
    ("ChildEntities", "string"),
    ("EntityType", "string"),
]


def _target(request: MgmtRequest, match: re.Match[str]) -> tuple[str, str]:
    """(database, table) the command names; table is "" for a database's policy. Both must exist."""
    if match.group("scope").lower() == "database":
        database = entity(match.group("entity"))
        request.state.use_database(database)
        return database, ""
    database = request.context_database()
    table = entity(match.group("entity"))
    request.state.catalog.require_table(database, table)
    return database, table


def _policy_table(request: MgmtRequest, database: str, table: str) -> V1Table:
    policy = request.state.policies.get(STREAMING_INGESTION, database, table)
    shown = None if policy is None else json.dumps(policy)
    if table:
        row = ["StreamingIngestionPolicy", f"[{database}].[{table}]", shown, None, "Table"]
    else:
        children = json.dumps(request.state.catalog.list_tables(database))
        row = ["StreamingIngestionPolicy", f"[{database}]", shown, children, "Database"]
    return V1Table("Table_0", _POLICY_COLUMNS, [row])


def _policy_text(text: str) -> Any:
    try:
        return json.loads(string_value(text))
    except ValueError:
        raise BadRequest("the streaming ingestion policy is not valid JSON") from None


def alter_policy(request: MgmtRequest, match: re.Match[str]) -> Sequence[V1Table]:
    database, table = _target(request, match)
    value = match.group("value")
    if value.lower() in ("enable", "disable"):
        policy = {"IsEnabled": value.lower() == "enable", "HintAllocatedRate": None}
    else:
        policy = streaming_policy(_policy_text(value))
    request.state.policies.put(STREAMING_INGESTION, policy, database, table)
    return [_policy_table(request, database, table)]


def alter_merge_policy(request: MgmtRequest, match: re.Match[str]) -> Sequence[V1Table]:
    """`.alter-merge`: the given properties replace those of the current policy, the others stay."""
    database, table = _target(request, match)
    change = _policy_text(match.group("value"))
    if not isinstance(change, dict):
        raise BadRequest("the streaming ingestion policy must be a JSON object")
    current = request.state.policies.get(STREAMING_INGESTION, database, table) or {}
    request.state.policies.put(STREAMING_INGESTION, streaming_policy({**current, **change}), database, table)
    return [_policy_table(request, database, table)]


def delete_policy(request: MgmtRequest, match: re.Match[str]) -> Sequence[V1Table]:
    database, table = _target(request, match)
    request.state.policies.put(STREAMING_INGESTION, None, database, table)
    return [_policy_table(request, database, table)]


def show_policy(request: MgmtRequest, match: re.Match[str]) -> Sequence[V1Table]:
    database, table = _target(request, match)
    return [_policy_table(request, database, table)]


def clear_schema_cache(request: MgmtRequest, match: re.Match[str]) -> Sequence[V1Table]:
    return [V1Table("Table_0", [("NodeId", "string"), ("Status", "string")], [["KustoEmulator", "Succeeded"]])]


_SCOPE = rf"(?P<scope>table|database)\s+(?P<entity>{NAME})\s+policy\s+streamingingestion"

COMMANDS: list[tuple[re.Pattern[str], MgmtHandler]] = [
    (command(rf"\.alter\s+{_SCOPE}\s+(?P<value>enable|disable|{STRINGS})\s*"), alter_policy),
    (command(rf"\.alter-merge\s+{_SCOPE}\s+(?P<value>{STRINGS})\s*"), alter_merge_policy),
    (command(rf"\.delete\s+{_SCOPE}\s*"), delete_policy),
    (command(rf"\.show\s+{_SCOPE}\s*"), show_policy),
    (command(rf"\.clear\s+(?:database|table\s+{NAME})\s+cache\s+streamingingestion\s+schema\s*"), clear_schema_cache),
]
