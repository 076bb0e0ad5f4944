"""Ending an experiment by editing the rules document's text. Pure.

Ship and stop (the Experiments page) rewrite the rules document staff keep,
so the change is seen where the rules are read and edited, and survives a
restart. The edit is made in the text, not by dumping a parsed document
again: the operator's comments, key order, quoting and flow or block style
stay as written, and only the lines that say the experiment ended are new.
`yaml.compose` gives each node's place in the text; the edit goes there.
"""

from __future__ import annotations

from typing import Iterator

import yaml

from ..rules.model import HOLDOUT, parse_share


def end_experiment(text: str, rule_id: str, shipped: str | None, when: str) -> str:
    """The rules document with the experiment of rule `rule_id` ended at `when` (ISO, UTC: "2026-12-06T11:30Z"),
    shipping variant `shipped` to everyone, or none (stopped: the rule as written).

    `ended:` (and `shipped:`) are added to the rule's `experiment:` mapping, in its style; all
    else is kept as written. ValueError, in words for staff, when the rule is not in the
    document, runs no experiment, has ended already, or has no variant `shipped`.
    """
    root = _compose(text)
    rule = _rule(root, rule_id)
    x = _value(rule, "experiment")
    if x is None or _is_null(x):
        raise ValueError(f"rule {rule_id!r} runs no experiment")
    if not isinstance(x, yaml.MappingNode):
        raise ValueError(f"rule {rule_id!r}: its experiment is not a mapping of variants, holdout, …")
    ended = _value(x, "ended")
    if ended is not None and not _is_null(ended):
        was = _value(x, "shipped")
        how = f", shipped {_raw(text, was)}" if was is not None and not _is_null(was) else ""
        raise ValueError(f"the experiment of rule {rule_id!r} has already ended ({_raw(text, ended)}{how})")
    if shipped is not None:
        _check_arm(x, rule_id, shipped)
    edits: list[tuple[int, int, str]] = []
    adds: list[str] = []
    for key, value in (("ended", when), ("shipped", shipped)):
        node = _key(x, key)
        if node is not None:
            old = _value(x, key)
            if value is None and (old is None or _is_null(old)):
                continue  # a stop leaves an empty `shipped:` empty
            start, end = _entry_span(text, node, old)
            edits.append((start, end, f"{key}: {'null' if value is None else _scalar(value)}"))
        elif value is not None:
            adds.append(f"{key}: {_scalar(value)}")
    if adds:
        edits.append(_additions(text, x, adds))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def stop_holdout(text: str, when: str) -> str:
    """The rules document with the whole program's holdout stopped at `when`: the file's `holdout:`
    set to 0% (every visitor gets the nudges again), a comment above it saying when and what it was.

    Zeroed rather than removed: the line stays where the operator put it, to be raised again.
    ValueError when the document keeps no share of visitors from every nudge.
    """
    root = _compose(text)
    if not isinstance(root, yaml.MappingNode):
        raise ValueError("the rules document is not a mapping (version, rules, …)")
    key, value = _key(root, "holdout"), _value(root, "holdout")
    if key is None or value is None or _is_null(value) or _share(value) == 0:
        raise ValueError("the rules file keeps no visitors from every nudge (no `holdout:`, or 0%): nothing to stop")
    was = _raw(text, value)
    start, end = value.start_mark.index, value.end_mark.index
    line = text.rfind("\n", 0, key.start_mark.index) + 1
    indent = text[line:key.start_mark.index]
    indent = indent if not indent.strip() else ""
    note = f"{indent}# the program's holdout was {was}, stopped {when}: every visitor gets the nudges{_newline(text)}"
    return text[:line] + note + text[line:start] + "0%" + text[end:]


# --- finding things in the document -------------------------------------------------


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"the rules document is not valid YAML: {exc}") from None
    except RecursionError:
        raise ValueError("the rules document is nested too deeply to be a rules document") from None


def _rule(root: yaml.Node | None, rule_id: str) -> yaml.MappingNode:
    rules = _value(root, "rules") if isinstance(root, yaml.MappingNode) else None
    if isinstance(rules, yaml.SequenceNode):
        for item in rules.value:
            rid = _value(item, "id") if isinstance(item, yaml.MappingNode) else None
            if isinstance(rid, yaml.ScalarNode) and rid.value == rule_id:
                return item
    raise ValueError(f"no rule {rule_id!r} in the rules document")


def _key(mapping: yaml.Node, name: str) -> yaml.ScalarNode | None:
    if isinstance(mapping, yaml.MappingNode):
        for k, _ in mapping.value:
            if isinstance(k, yaml.ScalarNode) and k.value == name:
                return k
    return None


def _value(mapping: yaml.Node | None, name: str) -> yaml.Node | None:
    if isinstance(mapping, yaml.MappingNode):
        for k, v in mapping.value:
            if isinstance(k, yaml.ScalarNode) and k.value == name:
                return v
    return None


def _is_null(node: yaml.Node) -> bool:
    return node.tag == "tag:yaml.org,2002:null"


def _raw(text: str, node: yaml.Node) -> str:
    return text[node.start_mark.index:node.end_mark.index].strip()


def _share(node: yaml.Node) -> float | None:
    try:
        return parse_share(yaml.safe_load(f"x: {node.value}")["x"]) if isinstance(node, yaml.ScalarNode) else None
    except (ValueError, yaml.YAMLError, TypeError):
        return None  # not a share: the rules' validation says so in its own words


def _check_arm(x: yaml.MappingNode, rule_id: str, arm: str) -> None:
    variants = _value(x, "variants")
    names = [k.value for k, _ in variants.value if isinstance(k, yaml.ScalarNode)] \
        if isinstance(variants, yaml.MappingNode) else []
    listed = ", ".join(names) or "none"
    if arm == HOLDOUT:
        raise ValueError(f"the holdout is shown nothing, so it cannot be shipped: ship a variant of rule "
                         f"{rule_id!r} ({listed}), or stop the experiment")
    if arm not in names:
        raise ValueError(f"the experiment of rule {rule_id!r} has no variant {arm!r}: its variants are {listed}")


# --- writing the edit ---------------------------------------------------------------


def _scalar(value: str) -> str:
    """`value` as a YAML scalar that reads back as this string: plain when it does, else double-quoted."""
    try:
        plain = yaml.safe_load(f"x: {value}")
    except yaml.YAMLError:
        plain = None
    if isinstance(plain, dict) and plain.get("x") == value and isinstance(plain["x"], str) and "#" not in value:
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _entry_span(text: str, key: yaml.Node, value: yaml.Node | None) -> tuple[int, int]:
    """Where a mapping entry `key: value` is written, from its key to the end of its value."""
    start = key.start_mark.index
    colon = text.find(":", key.end_mark.index)
    end = colon + 1
    if value is not None and value.end_mark.index > value.start_mark.index:
        end = max(end, value.end_mark.index)
    return start, end


def _leaves(node: yaml.Node) -> Iterator[yaml.Node]:
    """The nodes whose marks end where their text does: scalars and flow collections, not block ones."""
    if isinstance(node, yaml.ScalarNode) or getattr(node, "flow_style", False):
        if node.end_mark.index > node.start_mark.index:
            yield node
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            yield from _leaves(k)
            yield from _leaves(v)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            yield from _leaves(v)


def _additions(text: str, x: yaml.MappingNode, entries: list[str]) -> tuple[int, int, str]:
    """The new entries written at the end of the experiment's mapping: inside its braces when in
    flow style, else on lines of their own after its last line, at its keys' indentation."""
    last = max((n for k, v in x.value for n in (*_leaves(k), *_leaves(v))), key=lambda n: n.end_mark.index)
    at = last.end_mark.index
    if x.flow_style:
        return at, at, "".join(f", {e}" for e in entries)
    indent = " " * x.value[0][0].start_mark.column
    nl = _newline(text)
    if at > 0 and text[at - 1] == "\n":
        # A block scalar (`|`, `>`) ends at the start of the line after it, past its
        # trailing blank lines; the entries go right after its text, unless `|+`
        # keeps those blank lines as part of the value.
        header = text[last.start_mark.index:text.find("\n", last.start_mark.index)]
        if "+" not in header:
            at = text.find("\n", len(text[:at].rstrip())) + 1
        return at, at, "".join(f"{indent}{e}{nl}" for e in entries)
    # After the rest of the last line: a comment there stays on its line.
    end = text.find("\n", at)
    end = len(text) if end < 0 else end - (1 if end > 0 and text[end - 1] == "\r" else 0)
    return end, end, "".join(f"{nl}{indent}{e}" for e in entries)


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"
