"""How big a rules document may be: its text, and its values once YAML's aliases are expanded. Pure: no I/O.

A YAML alias (`*a`) repeats the value its anchor (`&a`) names without
repeating its text, so nine lines of anchors can name ten million values: a
607-byte document took 2–4 s and 458 MB to read, then to validate. The text
bound alone does not stop that; counting the values of the composed document
(each alias counted as the values it stands for, each shared value counted
once per use but walked once) does, before anything is built from it.
"""

from __future__ import annotations

import yaml

# The text. Also the body limit of a document sent to the admin API or the
# editor (kairos.bodies.RULES_BYTES), so a file that loads can be edited and
# applied there too; YAML that reaches 256 KiB is a mistake or an attack.
MAX_DOCUMENT_BYTES = 256 * 1024
# Values (scalars, lists and mappings, keys included) once aliases are expanded.
# examples/demo.yaml, the biggest rules file in the repository, has 170; a file
# filling the text bound at its density (15 bytes a value) has about 17,500.
# Ten thousand rules' worth of headroom over the demo, and a bound on what the
# values cost to build and validate: a few MB (458 MB was 10^7 values).
MAX_VALUES = 100_000


class Cycle(Exception):
    """An alias inside the anchor it names: the value contains itself."""


def expanded_values(root: yaml.Node | None, stop_over: int = MAX_VALUES) -> tuple[int, int]:
    """(values once aliases are expanded, distinct nodes) of a composed document; Cycle if one contains itself.

    Each node is walked once (its expanded count is remembered), so a bomb costs
    as much as its text. Counting stops past `stop_over`: the first number is
    then `stop_over + 1`, not the (perhaps astronomical) whole.
    """
    if root is None:
        return 0, 0
    size: dict[int, int] = {}
    on_path: set[int] = set()
    # Iterative, depth first: a document nested thousands deep does not reach Python's recursion limit.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(size[id(c)] for c in _children(node))
            size[key] = min(total, stop_over + 1)
            continue
        if key in size:
            continue
        if key in on_path:
            raise Cycle()
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise Cycle()
            if id(child) not in size:
                stack.append((child, False))
    return size[id(root)], len(size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []
