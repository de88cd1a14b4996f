"""The streaming ingestion policy of tables and databases, kept in the catalog's DuckDB file.

Kusto takes streaming ingestion into a table only when the table's policy, or else its database's, has
`IsEnabled: true`; with neither, the request is refused. The policy is the JSON Kusto shows
(`{"IsEnabled": true, "HintAllocatedRate": null}`); a database's row has an empty table name.
"""

from __future__ import annotations

import json
from typing import Any

from .catalog import Catalog
from .errors import BadRequest

STREAMING_INGESTION = "streamingingestion"


def streaming_policy(value: Any) -> dict[str, Any]:
    """A streaming ingestion policy as Kusto defines it: IsEnabled (mandatory bool), HintAllocatedRate (number or null)."""
    if not isinstance(value, dict):
        raise BadRequest("the streaming ingestion policy must be a JSON object such as '{\"IsEnabled\": true}'")
    fields = {str(key).lower(): field for key, field in value.items()}
    enabled = fields.get("isenabled")
    if not isinstance(enabled, bool):
        raise BadRequest("the streaming ingestion policy needs IsEnabled: true or false (it has no default)")
    rate = fields.get("hintallocatedrate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)):
        raise BadRequest("HintAllocatedRate of the streaming ingestion policy must be a number (gigabytes per hour) or null")
    return {"IsEnabled": enabled, "HintAllocatedRate": rate}


class Policies:
    """Reads and writes policies; an absent row means no policy (Kusto shows it as null)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def get(self, kind: str, database: str, table: str = "") -> dict[str, Any] | None:
        with self._catalog.cursor() as cursor:
            row = cursor.execute(
                'SELECT policy FROM _emulator.policies WHERE kind = ? AND database = ? AND "table" = ?', [kind, database, table]
            ).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, kind: str, policy: dict[str, Any] | None, database: str, table: str = "") -> None:
        """Set the policy of the table (or, with no table, the database); None deletes it."""
        with self._catalog.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(
                'DELETE FROM _emulator.policies WHERE kind = ? AND database = ? AND "table" = ?', [kind, database, table]
            )
            if policy is not None:
                cursor.execute("INSERT INTO _emulator.policies VALUES (?, ?, ?, ?)", [database, table, kind, json.dumps(policy)])
            cursor.execute("COMMIT")

    def streaming_enabled(self, database: str, table: str) -> bool:
        """Whether streaming ingestion into the table is allowed: its own policy decides, else its database's."""
        policy = self.get(STREAMING_INGESTION, database, table) or self.get(STREAMING_INGESTION, database)
        return bool(policy and policy.get("IsEnabled"))
