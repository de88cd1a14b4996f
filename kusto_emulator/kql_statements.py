"""A query text cut into the queries it runs: Kusto's `;`-separated statements.

A Kusto query is a list of statements separated by `;`. `let`, `declare`, `set` and `alias` statements
bind names for the statements after them; every other statement is a tabular expression and adds one
result table (`T | take 1; T | count` answers with two). The emulator's translator (duckdb-kql) takes one
tabular expression with its bindings, so each tabular statement is run as its own query, preceded by the
binding statements that come before it in the text.
"""

from __future__ import annotations

import re

from .errors import SyntaxError_
from .mgmt_syntax import STRING

# What the splitter steps over in one go: string literals (the same syntax as in commands) and `//` comments.
_OPAQUE = re.compile(rf"{STRING}|//[^\n]*", re.DOTALL)
_BINDING = re.compile(r"(?:let|declare|set|alias)\b")
_OPENING = {"(": ")", "[": "]", "{": "}"}


def split_statements(text: str) -> list[str]:
    """The non-empty statements of `text`, cut at the `;` that are outside literals, comments and brackets."""
    statements: list[str] = []
    depth = 0
    start = position = 0
    while position < len(text):
        opaque = _OPAQUE.match(text, position)
        if opaque:
            position = opaque.end()
            continue
        char = text[position]
        if char in _OPENING:
            depth += 1
        elif char in ")]}":
            depth = max(0, depth - 1)
        elif char == ";" and depth == 0:
            statements.append(text[start:position])
            start = position + 1
        position += 1
    statements.append(text[start:])
    return [statement.strip() for statement in statements if _meaningful(statement)]


def _meaningful(statement: str) -> bool:
    """Whether a statement holds more than whitespace and comments."""
    return bool(re.sub(r"//[^\n]*", "", statement).strip())


def tabular_queries(text: str) -> list[str]:
    """One query per tabular statement, each preceded by the binding statements written before it."""
    bindings: list[str] = []
    queries: list[str] = []
    for statement in split_statements(text):
        if _BINDING.match(statement):
            bindings.append(statement)
        else:
            queries.append(";\n".join([*bindings, statement]))
    if not queries:
        raise SyntaxError_("Syntax error: the query has no tabular statement to return a result")
    return queries


def is_sorted(query: str) -> bool:
    """Whether the query's last operator orders its result (`sort by`, `order by`, `top`): Kusto's IsQuerySorted."""
    last_operator = split_statements(query)[-1].rsplit("|", 1)[-1].strip()
    return bool(re.match(r"(?:(?:sort|order)\s+by|top)\b", last_operator))
