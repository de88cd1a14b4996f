"""A small reading layer over tree-sitter-bicep syntax trees.

The Bicep CLI cannot run offline (and the public registry modules cannot be restored), so the infra tests
read the templates with the tree-sitter grammar instead: it gives a full syntax tree, which lets the
checks look at what a property *is* (a literal `false`, a call to `guid`, a reference to a parameter)
rather than grepping text that a comment or a string could fool.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import tree_sitter_bicep
from tree_sitter import Language, Node, Parser

INFRA_DIR = Path(__file__).resolve().parents[2] / "infra"


@cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_bicep.language()))


def text(node: Node) -> str:
    return node.text.decode("utf-8") if node.text is not None else ""


def walk(node: Node) -> Iterator[Node]:
    """Every node under `node` (itself included), depth first."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def string_literal(node: Node | None) -> str | None:
    """The value of a plain string literal; None for anything else (interpolated strings included)."""
    if node is None or node.type != "string":
        return None
    parts: list[str] = []
    for child in node.named_children:
        if child.type == "string_content":
            parts.append(text(child))
        elif child.type == "escape_sequence":
            parts.append(text(child)[1:])
        else:
            return None
    return "".join(parts)


def literal(node: Node | None) -> object:
    """A literal's Python value (str, bool, int), or None when the node is an expression."""
    if node is None:
        return None
    if node.type == "boolean":
        return text(node) == "true"
    if node.type == "number":
        return int(text(node))
    return string_literal(node)


def property_key(prop: Node) -> str | None:
    """The key of an object_property: an identifier or a plain string (None when interpolated)."""
    key = prop.named_children[0]
    if key.type == "identifier":
        return text(key)
    return string_literal(key)


def object_properties(obj: Node | None) -> dict[str, Node]:
    """Key -> value node of an object literal (nested resource declarations are left out)."""
    if obj is None or obj.type != "object":
        return {}
    found: dict[str, Node] = {}
    for prop in obj.named_children:
        if prop.type != "object_property" or prop.named_children[0].type == "resource_declaration":
            continue
        key = property_key(prop)
        if key is not None:
            found[key] = prop.named_children[-1]
    return found


def identifiers(node: Node) -> set[str]:
    """Names referenced in an expression (identifiers, not property names after a dot)."""
    return {text(n) for n in walk(node) if n.type == "identifier"}


def called_functions(node: Node) -> Iterator[tuple[str, Node]]:
    """(function name, call node) for every call in an expression, including `x.listKeys()` member calls."""
    for candidate in walk(node):
        if candidate.type != "call_expression":
            continue
        target = candidate.named_children[0]
        if target.type == "identifier":
            yield text(target), candidate
        elif target.type == "member_expression":
            yield text(target.named_children[-1]), candidate


def member_names(node: Node) -> set[str]:
    """Property names accessed with a dot anywhere in an expression (`x.properties.ConnectionString`)."""
    return {text(n) for n in walk(node) if n.type == "property_identifier"}


def decorator_calls(declaration: Node) -> dict[str, Node]:
    """Decorator name -> its call node, for the decorators written just before a declaration."""
    previous = declaration.prev_named_sibling
    if previous is None or previous.type != "decorators":
        return {}
    calls: dict[str, Node] = {}
    for decorator in previous.named_children:
        call = decorator.named_children[0]
        if call.type != "call_expression":
            continue
        target = call.named_children[0]
        name = text(target.named_children[-1]) if target.type == "member_expression" else text(target)
        calls[name] = call
    return calls


def call_arguments(call: Node) -> list[Node]:
    args = call.named_children[-1]
    return list(args.named_children) if args.type == "arguments" else []


@dataclass(frozen=True)
class Parameter:
    name: str
    node: Node
    decorators: dict[str, Node]

    @property
    def is_secure(self) -> bool:
        return "secure" in self.decorators


@dataclass(frozen=True)
class Resource:
    """A resource declaration, top-level or nested, with its full type (`Microsoft.X/parent/child`)."""

    symbol: str
    type: str
    node: Node
    body: Node | None
    existing: bool
    condition: Node | None
    parent: Resource | None = None

    @property
    def properties(self) -> dict[str, Node]:
        return object_properties(self.body)

    def property_path(self, *keys: str) -> Node | None:
        """The value at properties.a.b... of the resource body (None when any step is missing)."""
        value: Node | None = self.body
        for key in keys:
            value = object_properties(value).get(key)
            if value is None:
                return None
        return value


def _unwrap_body(value: Node) -> tuple[Node | None, Node | None]:
    """(object body, if-condition) of a declaration's value: `{...}`, `if (c) {...}`, `[for ...: ...]`."""
    condition = None
    while value.type in ("if_statement", "for_statement"):
        if value.type == "if_statement":
            condition = value.named_children[0]
        value = value.named_children[-1]
    return (value if value.type == "object" else None), condition


@dataclass
class BicepFile:
    """A parsed template with its declarations indexed by kind."""

    name: str
    source: bytes
    root: Node
    parameters: dict[str, Parameter] = field(default_factory=dict)
    variables: dict[str, Node] = field(default_factory=dict)
    resources: list[Resource] = field(default_factory=list)
    modules: list[Node] = field(default_factory=list)
    outputs: dict[str, Node] = field(default_factory=dict)

    def resource(self, symbol: str) -> Resource | None:
        return next((r for r in self.resources if r.symbol == symbol), None)

    def resources_of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.resources if r.type.lower() == resource_type.lower()]

    def syntax_errors(self) -> list[str]:
        """ERROR and MISSING nodes as 'file:line:col' strings; empty when the file parsed cleanly."""
        return [
            f"{self.name}:{n.start_point.row + 1}:{n.start_point.column + 1}: {'missing' if n.is_missing else 'syntax error'} "
            f"near {text(n)[:40]!r}"
            for n in walk(self.root)
            if n.is_error or n.is_missing
        ]


def _collect_resources(declaration: Node, parent: Resource | None, into: list[Resource]) -> None:
    children = declaration.named_children
    symbol = text(children[0])
    type_with_version = string_literal(children[1]) or ""
    declared_type = type_with_version.split("@", 1)[0]
    full_type = f"{parent.type}/{declared_type}" if parent is not None and "/" not in declared_type else declared_type
    body, condition = _unwrap_body(children[-1])
    existing = any(not c.is_named and c.type == "existing" for c in declaration.children)
    resource = Resource(symbol, full_type, declaration, body, existing, condition, parent)
    into.append(resource)
    if body is not None:
        for prop in body.named_children:
            if prop.type == "object_property" and prop.named_children[0].type == "resource_declaration":
                _collect_resources(prop.named_children[0], resource, into)


def parse_source(source: str | bytes, name: str = "<snippet>") -> BicepFile:
    data = source.encode("utf-8") if isinstance(source, str) else source
    root = _parser().parse(data).root_node
    parsed = BicepFile(name=name, source=data, root=root)
    for node in root.named_children:
        if node.type == "parameter_declaration":
            param_name = text(node.named_children[0])
            parsed.parameters[param_name] = Parameter(param_name, node, decorator_calls(node))
        elif node.type == "variable_declaration":
            parsed.variables[text(node.named_children[0])] = node.named_children[-1]
        elif node.type == "resource_declaration":
            _collect_resources(node, None, parsed.resources)
        elif node.type == "module_declaration":
            parsed.modules.append(node)
        elif node.type == "output_declaration":
            parsed.outputs[text(node.named_children[0])] = node.named_children[-1]
    return parsed


def parse_file(path: Path) -> BicepFile:
    return parse_source(path.read_bytes(), name=str(path.relative_to(INFRA_DIR.parent)))


def infra_files() -> list[Path]:
    return sorted(INFRA_DIR.rglob("*.bicep"))


def app_settings(parsed: BicepFile) -> dict[str, Node]:
    """App settings of every function/web app in the file: `config 'appsettings'` children and siteConfig.appSettings."""
    settings: dict[str, Node] = {}
    for resource in parsed.resources_of_type("Microsoft.Web/sites/config"):
        if string_literal(object_properties(resource.body).get("name")) == "appsettings":
            settings.update(object_properties(resource.properties.get("properties")))
    for site in parsed.resources_of_type("Microsoft.Web/sites"):
        listed = site.property_path("properties", "siteConfig", "appSettings")
        if listed is not None and listed.type == "array":
            for item in listed.named_children:
                entry = object_properties(item)
                name = string_literal(entry.get("name"))
                if name is not None and "value" in entry:
                    settings[name] = entry["value"]
    return settings
