"""Which columns of a session table a purchase-intent model reads, and how each becomes numbers.

The spec is inferred from the training table and written into the model file,
so the server encodes a session exactly as training did. Each column is one of:

- ``number``: every non-empty value in training reads as a number. One input.
- ``flag``: every non-empty value is TRUE or FALSE (any case). One input, 1 or 0.
- ``category``: any other text. One input per value seen in training (one-hot);
  a value training never saw sets none of them.

An empty cell, an absent key, None or a value that does not read as its kind is
*missing* (NaN): the trees send it down the branch they learned for missing
values, so a session with a column absent still gets a score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

KINDS = ("number", "flag", "category")
# One-hot beyond this many values is an id or free text, not a category: one
# input per visitor id would only learn the training set by heart.
MAX_CATEGORY_VALUES = 50

_FLAGS = {"true": 1.0, "false": 0.0}
MISSING = math.nan


class FeatureError(ValueError):
    """A table or spec Kairos cannot turn into model inputs; the message says which column and why."""


@dataclass(frozen=True)
class Feature:
    """One column of the table and how it becomes inputs."""

    column: str
    kind: str
    values: tuple[str, ...] = ()  # category only: one input each, in this order

    def inputs(self) -> list[str]:
        """The names of this column's inputs, as the trees number them (`Month=Feb` for a category)."""
        if self.kind == "category":
            return [f"{self.column}={v}" for v in self.values]
        return [self.column]


def infer(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], skip: Collection[str] = ()) -> list[Feature]:
    """The spec for a table: every column but those in `skip`, kind from the values seen."""
    names = [c for c in columns if c not in skip]
    numeric = {c: True for c in names}
    flag = {c: True for c in names}
    seen: dict[str, set[str]] = {c: set() for c in names}
    for row in rows:
        for c in names:
            text = _text(row.get(c))
            if text == "":
                continue
            if numeric[c] and _number(text) is None:
                numeric[c] = False
            if flag[c] and text.lower() not in _FLAGS:
                flag[c] = False
            if not numeric[c] and len(seen[c]) <= MAX_CATEGORY_VALUES:
                seen[c].add(text)
    features = []
    for c in names:
        if numeric[c]:
            features.append(Feature(c, "number"))
        elif flag[c]:
            features.append(Feature(c, "flag"))
        elif len(seen[c]) > MAX_CATEGORY_VALUES:
            raise FeatureError(f"column {c!r} has more than {MAX_CATEGORY_VALUES} different text values "
                               f"(an id or free text?); leave it out with --ignore {c}")
        else:
            features.append(Feature(c, "category", tuple(sorted(seen[c]))))
    return features


def input_names(features: Sequence[Feature]) -> list[str]:
    """Every input's name, in the order of the model's input vector."""
    return [name for f in features for name in f.inputs()]


def encoder(features: Sequence[Feature]) -> Callable[[Mapping[str, Any]], list[float]]:
    """A function from a row (column -> value) to the model's input vector."""
    steps: list[Callable[[Any, list[float]], None]] = []
    columns = [f.column for f in features]
    for f in features:
        if f.kind == "number":
            steps.append(_put_number)
        elif f.kind == "flag":
            steps.append(_put_flag)
        else:
            steps.append(_one_hot(f.values))
    pairs = list(zip(columns, steps))

    def encode(row: Mapping[str, Any]) -> list[float]:
        out: list[float] = []
        get = row.get
        for column, put in pairs:
            put(get(column), out)
        return out

    return encode


def to_json(features: Sequence[Feature]) -> list[dict[str, Any]]:
    """The spec as the model file holds it."""
    return [{"column": f.column, "kind": f.kind, **({"values": list(f.values)} if f.kind == "category" else {})}
            for f in features]


def from_json(data: Any) -> list[Feature]:
    """The spec from a model file; FeatureError says what is wrong with it."""
    if not isinstance(data, list) or not data:
        raise FeatureError("features: expected a non-empty list")
    features = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("column"), str):
            raise FeatureError(f"features[{i}]: expected {{column: NAME, kind: KIND}}, got {item!r:.60}")
        kind = item.get("kind")
        if kind not in KINDS:
            raise FeatureError(f"features[{i}] ({item['column']}): kind expected one of {', '.join(KINDS)}, got {kind!r}")
        values = item.get("values", [])
        if kind == "category" and (not isinstance(values, list) or not all(isinstance(v, str) for v in values)):
            raise FeatureError(f"features[{i}] ({item['column']}): values expected a list of strings")
        features.append(Feature(item["column"], kind, tuple(values) if kind == "category" else ()))
    return features


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _put_number(value: Any, out: list[float]) -> None:
    if isinstance(value, (int, float)):  # bool too: True is 1
        number: float | None = float(value)
    else:
        number = _number(_text(value)) if value is not None else None
    # Infinity too: scikit-learn refuses it in training, so no tree has a branch for it.
    out.append(number if number is not None and math.isfinite(number) else MISSING)


def _put_flag(value: Any, out: list[float]) -> None:
    if isinstance(value, (bool, int, float)):
        out.append(MISSING if value != value else float(bool(value)))
        return
    out.append(_FLAGS.get(_text(value).lower(), MISSING))


def _one_hot(values: tuple[str, ...]) -> Callable[[Any, list[float]], None]:
    width = len(values)
    index = {v: i for i, v in enumerate(values)}

    def put(value: Any, out: list[float]) -> None:
        start = len(out)
        out.extend([0.0] * width)
        i = index.get(_text(value))
        if i is not None:
            out[start + i] = 1.0

    return put
