"""A purchase-intent model as the server scores it: gradient-boosted trees in pure Python.

`kairos train` writes the model file; this module reads it and scores a session
with no numpy or scikit-learn, so serving adds no dependency. The file (JSON):

    format: kairos-intent-model      format_version: 1
    label, positive                  the column trained on and the value that counts as a purchase
    features                         the spec (features.py): column, kind, category values
    inputs                           the input names the trees' feature numbers refer to
    baseline                         the log-odds before any tree
    trees: [{feature, threshold, missing_left, left, right, value}]
        one list per field, one entry per node, node 0 the root; left/right
        are child nodes (-1 on a leaf); a number goes left when it is <=
        threshold (null: +infinity), a missing one where missing_left says;
        a leaf's value is added to the log-odds
    threshold                        the probability cut that gave the best F1 in training
    training                         data, parameters, library versions, cross-validation

probability = 1 / (1 + e^-(baseline + the leaf value of every tree)), the same
arithmetic, in the same order, as scikit-learn's HistGradientBoostingClassifier.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import features as feat
from .features import Feature, FeatureError

FORMAT = "kairos-intent-model"
FORMAT_VERSION = 1

# One node: (left, feature, threshold, right, missing_left, value); left < 0 on a leaf.
Node = tuple[int, int, float, int, bool, float]


class ModelError(ValueError):
    """A model file Kairos cannot use; the message says which file and why."""


class Model:
    """A trained purchase-intent model: `predict(row)` is the probability of a purchase."""

    def __init__(self, features: Sequence[Feature], baseline: float, trees: Sequence[Sequence[Node]], *,
                 label: str, positive: str, threshold: float = 0.5, training: Mapping[str, Any] | None = None):
        self.features = list(features)
        self.inputs = feat.input_names(self.features)
        self.baseline = float(baseline)
        # Tuples of tuples: the fastest walk plain Python offers (no attribute lookups per node).
        self.trees: tuple[tuple[Node, ...], ...] = tuple(tuple(t) for t in trees)
        self.label = label
        self.positive = positive
        self.threshold = threshold
        self.training = dict(training or {})
        self._encode = feat.encoder(self.features)
        # scikit-learn shrinks only the leaves by the learning rate; inner nodes keep
        # their unshrunk value, so contributions() shrinks those itself.
        params = self.training.get("params") if isinstance(self.training.get("params"), dict) else {}
        rate = params.get("learning_rate", 1.0)
        self._shrink = float(rate) if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0 else 1.0
        self._column_of = [f.column for f in self.features for _ in f.inputs()]

    def raw(self, row: Mapping[str, Any]) -> float:
        """The log-odds of a purchase for one session (column -> value)."""
        x = self._encode(row)
        total = self.baseline
        for nodes in self.trees:
            node = nodes[0]
            while node[0] >= 0:
                v = x[node[1]]
                if v <= node[2]:
                    node = nodes[node[0]]
                elif v > node[2]:
                    node = nodes[node[3]]
                else:  # NaN: neither comparison holds
                    node = nodes[node[0] if node[4] else node[3]]
            total += node[5]
        return total

    def predict(self, row: Mapping[str, Any]) -> float:
        """The probability (0..1) that this session ends in a purchase."""
        return sigmoid(self.raw(row))

    def contributions(self, row: Mapping[str, Any]) -> dict[str, float]:
        """How much each column moved this session's log-odds away from the baseline.

        Each split along a session's path through a tree is credited with the
        change in the node's value it led to (the "Saabas" attribution, as
        treeinterpreter computes it); the changes add up, tree by tree, to the
        leaf, so baseline + the sum of the contributions is `raw(row)`.
        """
        x = self._encode(row)
        shrink, by_input = self._shrink, [0.0] * len(self.inputs)
        for nodes in self.trees:
            node = nodes[0]
            value = node[5] * shrink
            while node[0] >= 0:
                v = x[node[1]]
                if v <= node[2]:
                    child = nodes[node[0]]
                elif v > node[2]:
                    child = nodes[node[3]]
                else:
                    child = nodes[node[0] if node[4] else node[3]]
                child_value = child[5] if child[0] < 0 else child[5] * shrink
                by_input[node[1]] += child_value - value
                node, value = child, child_value
        out: dict[str, float] = {}
        for column, c in zip(self._column_of, by_input):
            if c:
                out[column] = out.get(column, 0.0) + c
        return out

    def to_json(self) -> dict[str, Any]:
        """The model file's content."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "label": self.label,
            "positive": self.positive,
            "features": feat.to_json(self.features),
            "inputs": self.inputs,
            "baseline": self.baseline,
            "trees": [_tree_to_json(t) for t in self.trees],
            "threshold": self.threshold,
            "training": self.training,
        }

    @classmethod
    def from_json(cls, data: Any) -> "Model":
        """A model from a model file's content; ModelError says what is wrong with it."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelError(f"not a Kairos purchase-intent model (expected format {FORMAT!r})")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelError(f"format version {version!r}, this Kairos reads version {FORMAT_VERSION}: "
                             "train it again with this version's `kairos train`")
        try:
            features = feat.from_json(data.get("features"))
        except FeatureError as exc:
            raise ModelError(str(exc)) from None
        n_inputs = len(feat.input_names(features))
        if data.get("inputs") is not None and data["inputs"] != feat.input_names(features):
            raise ModelError("inputs do not match the features")
        for key in ("label", "positive"):
            if not isinstance(data.get(key), str):
                raise ModelError(f"{key}: expected a string, got {data.get(key)!r:.40}")
        baseline = _finite(data.get("baseline"), "baseline")
        threshold = _finite(data.get("threshold", 0.5), "threshold")
        trees = data.get("trees")
        if not isinstance(trees, list) or not trees:
            raise ModelError("trees: expected a non-empty list")
        nodes = [_tree_from_json(t, n_inputs, f"trees[{i}]") for i, t in enumerate(trees)]
        training = data.get("training") if isinstance(data.get("training"), dict) else {}
        return cls(features, baseline, nodes, label=data["label"], positive=data["positive"],
                   threshold=threshold, training=training)


def sigmoid(x: float) -> float:
    """1 / (1 + e^-x), as scipy.special.expit computes it (scikit-learn's predict_proba)."""
    try:
        return 1.0 / (1.0 + math.exp(-x))
    except OverflowError:  # e^-x beyond a double: the probability rounds to 0
        return 0.0


def load(path: str | Path) -> Model:
    """Read a model file written by `kairos train`; ModelError names the file and the problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ModelError(f"{path}: not JSON ({exc})") from None
    try:
        return Model.from_json(data)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None


def save(model: Model, path: str | Path) -> None:
    """Write a model file (strict JSON: no NaN or Infinity, which other readers refuse)."""
    Path(path).write_text(json.dumps(model.to_json(), allow_nan=False, separators=(",", ":")) + "\n", encoding="utf-8")


_FIELDS = ("left", "feature", "threshold", "right", "missing_left", "value")


def _tree_to_json(nodes: Sequence[Node]) -> dict[str, list]:
    left, feature, threshold, right, missing_left, value = zip(*nodes)
    return {
        "feature": list(feature),
        "threshold": [None if t == math.inf else t for t in threshold],
        "missing_left": [int(m) for m in missing_left],
        "left": list(left),
        "right": list(right),
        "value": list(value),
    }


def _tree_from_json(tree: Any, n_inputs: int, where: str) -> list[Node]:
    if not isinstance(tree, dict) or any(not isinstance(tree.get(k), list) for k in _FIELDS):
        raise ModelError(f"{where}: expected lists {', '.join(_FIELDS)}")
    n = len(tree["left"])
    if n == 0 or any(len(tree[k]) != n for k in _FIELDS):
        raise ModelError(f"{where}: expected {', '.join(_FIELDS)} of one non-zero length")
    nodes: list[Node] = []
    for i in range(n):
        left, right, feature = tree["left"][i], tree["right"][i], tree["feature"][i]
        threshold = tree["threshold"][i]
        value = _finite(tree["value"][i], f"{where}.value[{i}]")
        if left == -1:
            nodes.append((-1, 0, math.inf, -1, True, value))
            continue
        # Children after their parent: the walk down a tree always ends.
        if not (_int(left) and _int(right) and i < left < n and i < right < n):
            raise ModelError(f"{where}: node {i}: left and right expected nodes after {i}, got {left!r}, {right!r}")
        if not (_int(feature) and 0 <= feature < n_inputs):
            raise ModelError(f"{where}: node {i}: feature expected 0 to {n_inputs - 1}, got {feature!r}")
        threshold = math.inf if threshold is None else _finite(threshold, f"{where}.threshold[{i}]")
        nodes.append((left, feature, threshold, right, bool(tree["missing_left"][i]), value))
    return nodes


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _finite(x: Any, where: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ModelError(f"{where}: expected a finite number, got {x!r:.40}")
    return float(x)
