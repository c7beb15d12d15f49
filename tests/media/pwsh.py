"""PowerShell syntax checks with tree-sitter-powershell."""

from __future__ import annotations

import tree_sitter
import tree_sitter_powershell

_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


def parse(source: str | bytes) -> tree_sitter.Tree:
    data = source.encode("utf-8") if isinstance(source, str) else source
    return _PARSER.parse(data.removeprefix(b"\xef\xbb\xbf"))


def problems(tree: tree_sitter.Tree) -> list[str]:
    """Every ERROR or MISSING node, as 'type at row:col'."""
    found = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            found.append(f"{node.type} at {node.start_point[0] + 1}:{node.start_point[1] + 1}")
        stack.extend(node.children)
    return found


def nodes(tree: tree_sitter.Tree, node_type: str) -> list[tree_sitter.Node]:
    out = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == node_type:
            out.append(node)
        stack.extend(node.children)
    return out


def verbatim_value(node: tree_sitter.Node) -> str | None:
    """The value of a single-quoted string literal node, or None for other strings."""
    raw = (node.text or b"").decode("utf-8")
    if len(raw) < 2 or raw[0] not in "'\u2018\u2019\u201a\u201b":
        return None
    body = raw[1:-1]
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        out.append(ch)
        # a doubled quote (of any of PowerShell's single-quote characters) is one quote
        i += 2 if ch in "'\u2018\u2019\u201a\u201b" and i + 1 < len(body) else 1
    return "".join(out)


def commands(source: str) -> list[str]:
    """The command names a script runs, in script order; the script must parse."""
    tree = parse(source)
    assert problems(tree) == []
    found = sorted(nodes(tree, "command_name"), key=lambda node: node.start_byte)
    return [(node.text or b"").decode() for node in found]


def function(source: str, name: str) -> str:
    """The text of ``function name { ... }`` (closed by a `}` at the start of a line)."""
    start = source.index(f"function {name} {{")
    return source[start:source.index("\n}\n", start) + 3]
