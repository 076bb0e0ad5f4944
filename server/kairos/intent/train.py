"""`kairos train`: fit a purchase-intent model on a table of sessions (needs the `train` extra).

The table is a CSV with a header, one session per row, and a label column that
says whether the session bought (TRUE/FALSE, yes/no or 1/0). The feature spec is
inferred from the other columns (features.py) and the model is scikit-learn's
HistGradientBoostingClassifier on those inputs, exported tree by tree to the
model file the server scores in pure Python (model.py).
"""

from __future__ import annotations

import csv
import hashlib
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Sequence

import numpy as np
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from . import features as feat
from .model import Model, Node

# Chosen on the UCI Online Shoppers table (5-fold stratified CV, split seeds 1
# and 2; seed 0, the default, was kept out of the choice): over learning rates
# 0.02-0.1 (with 500-100 trees), 4-16 leaves, 20-100 sessions a leaf and L2 0 or
# 1, every setting scored 0.931-0.935 mean ROC AUC: the data, not the knobs,
# sets the ceiling. Calendar-ordered months and ratio features did not help.
# 200 trees of at most 16 leaves keep a score well under a millisecond.
PARAMS: dict[str, Any] = {
    "learning_rate": 0.05,
    "max_iter": 200,
    "max_leaf_nodes": 16,
    "min_samples_leaf": 100,
    "l2_regularization": 1.0,
    # A fixed number of trees: scikit-learn's "auto" would stop early above
    # 10,000 rows only, so the final fit and the CV folds would differ.
    "early_stopping": False,
}

_TRUE = {"true", "yes", "1", "1.0"}
_FALSE = {"false", "no", "0", "0.0"}


class TrainError(ValueError):
    """A table or option `kairos train` cannot use; the message says what and where."""


@dataclass
class Table:
    """A CSV as read: its columns, its rows (column -> text) and the file's digest."""

    name: str
    columns: list[str]
    rows: list[dict[str, str]]
    sha256: str


@dataclass
class Dataset:
    """A table turned into model inputs: X (one row per session), y (1 for a purchase)."""

    features: list[feat.Feature]
    X: np.ndarray
    y: np.ndarray
    label: str
    positive: str


@dataclass
class Fold:
    """One fold's scores on its held-out sessions."""

    roc_auc: float
    pr_auc: float
    f1: float
    threshold: float  # the cut chosen on the fold's training sessions


def read_table(path: str | Path) -> Table:
    """Read a CSV with a header row."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TrainError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TrainError(f"{path}: not UTF-8 text ({exc})") from None
    reader = csv.DictReader(text.splitlines())
    columns = list(reader.fieldnames or [])
    if not columns:
        raise TrainError(f"{path}: empty, expected a header row and one row per session")
    rows = [row for row in reader if any(v for v in row.values())]
    return Table(path.name, columns, rows, hashlib.sha256(raw).hexdigest())


def prepare(table: Table, label: str, ignore: Collection[str] = ()) -> Dataset:
    """The inputs and labels of a table, with the feature spec inferred from it."""
    if label not in table.columns:
        raise TrainError(f"{table.name}: no column {label!r}; the columns are {', '.join(table.columns)}")
    unknown = [c for c in ignore if c not in table.columns]
    if unknown:
        raise TrainError(f"{table.name}: --ignore {unknown[0]}: no such column")
    positive = _positive(table, label)
    try:
        features = feat.infer(table.columns, table.rows, skip={label, *ignore})
    except feat.FeatureError as exc:
        raise TrainError(f"{table.name}: {exc}") from None
    if not features:
        raise TrainError(f"{table.name}: no column left to learn from besides the label")
    encode = feat.encoder(features)
    X = np.array([encode(row) for row in table.rows], dtype=np.float64)
    y = np.array([row[label].strip() == positive for row in table.rows], dtype=np.int64)
    return Dataset(features, X, y, label, positive)


def _positive(table: Table, label: str) -> str:
    """The label value that means a purchase."""
    seen: dict[str, int] = {}
    for i, row in enumerate(table.rows):
        value = (row.get(label) or "").strip()
        if not value:
            raise TrainError(f"{table.name}: line {i + 2}: no value in the label column {label!r}")
        seen[value] = seen.get(value, 0) + 1
    if len(seen) < 2:
        only = next(iter(seen), "nothing")
        raise TrainError(f"{table.name}: the label {label!r} is {only} in every row; "
                         "a model needs sessions of both kinds, with and without a purchase")
    if len(seen) == 2:
        a, b = seen
        if a.lower() in _TRUE and b.lower() in _FALSE:
            return a
        if b.lower() in _TRUE and a.lower() in _FALSE:
            return b
    shown = ", ".join(sorted(seen)[:5]) + (", …" if len(seen) > 5 else "")
    raise TrainError(f"{table.name}: the label {label!r} has the values {shown}; "
                     "expected two: TRUE/FALSE, yes/no or 1/0")


def fit(X: np.ndarray, y: np.ndarray, seed: int = 0) -> HistGradientBoostingClassifier:
    """Gradient-boosted trees on these inputs, with PARAMS."""
    return HistGradientBoostingClassifier(**PARAMS, random_state=seed).fit(X, y)


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability cut with the best F1 on these sessions."""
    precision, recall, thresholds = precision_recall_curve(y, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def f1_at(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """F1 of calling every session with p >= threshold a purchase."""
    predicted = p >= threshold
    tp = int(np.sum(predicted & (y == 1)))
    return 2 * tp / (int(predicted.sum()) + int(y.sum())) if tp else 0.0


def cross_validate(data: Dataset, k: int, seed: int = 0) -> list[Fold]:
    """Stratified k-fold: fit on k-1 folds, score the held-out one, k times.

    F1 uses the cut that maximises F1 on the fold's own training sessions, so
    the held-out sessions choose nothing.
    """
    positives = int(data.y.sum())
    if k < 2 or k > min(positives, len(data.y) - positives):
        raise TrainError(f"--cv {k}: expected 2 to {min(positives, len(data.y) - positives)} "
                         f"(each fold needs sessions with and without a purchase)")
    folds = []
    for train_idx, test_idx in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(data.X, data.y):
        clf = fit(data.X[train_idx], data.y[train_idx], seed)
        threshold = best_f1_threshold(data.y[train_idx], clf.predict_proba(data.X[train_idx])[:, 1])
        y, p = data.y[test_idx], clf.predict_proba(data.X[test_idx])[:, 1]
        folds.append(Fold(float(roc_auc_score(y, p)), float(average_precision_score(y, p)), f1_at(y, p, threshold), threshold))
    return folds


def to_model(clf: HistGradientBoostingClassifier, data: Dataset, threshold: float,
             training: dict[str, Any]) -> Model:
    """The fitted trees as the server's pure-Python model."""
    trees = []
    for (predictor,) in clf._predictors:  # one tree per iteration for two classes
        nodes: list[Node] = []
        for node in predictor.nodes:
            if node["is_categorical"]:
                # Categories reach the trees one-hot, never as scikit-learn categoricals.
                raise TrainError("a tree splits on a categorical input, which the model file cannot hold")
            if node["is_leaf"]:
                nodes.append((-1, 0, float("inf"), -1, True, float(node["value"])))
            else:
                nodes.append((int(node["left"]), int(node["feature_idx"]), float(node["num_threshold"]),
                              int(node["right"]), bool(node["missing_go_to_left"]), float(node["value"])))
        trees.append(nodes)
    baseline = float(np.asarray(clf._baseline_prediction).ravel()[0])
    return Model(data.features, baseline, trees, label=data.label, positive=data.positive,
                 threshold=threshold, training=training)


def train(table: Table, label: str, *, cv: int = 0, seed: int = 0, ignore: Collection[str] = (),
          echo: Callable[[str], None] = print) -> Model:
    """Cross-validate if asked, then fit on every session; print what a store operator needs to judge it."""
    data = prepare(table, label, ignore)
    n, positives = len(data.y), int(data.y.sum())
    echo(f"{table.name}: {n:,} sessions, {positives:,} with {label} = {data.positive} ({positives / n:.1%}); "
         f"{len(data.features)} columns -> {data.X.shape[1]} inputs")
    folds: list[Fold] = []
    if cv:
        folds = cross_validate(data, cv, seed)
        echo(_fold_table(folds, cv, seed))
    clf = fit(data.X, data.y, seed)
    threshold = best_f1_threshold(data.y, clf.predict_proba(data.X)[:, 1])
    training = {
        "data": {"file": table.name, "sha256": table.sha256, "sessions": n, "positives": positives},
        "estimator": "scikit-learn HistGradientBoostingClassifier",
        "params": {**PARAMS, "random_state": seed},
        "libraries": {"python": platform.python_version(), "scikit-learn": sklearn.__version__, "numpy": np.__version__},
        "cv": _cv_summary(folds, cv, seed) if folds else None,
    }
    return to_model(clf, data, threshold, training)


_METRICS = ("roc_auc", "pr_auc", "f1")


def _fold_table(folds: Sequence[Fold], k: int, seed: int) -> str:
    lines = [f"{k}-fold stratified cross-validation (seed {seed}); F1 at the cut with the best F1 on the fold's training sessions",
             f"{'fold':>5}  {'ROC AUC':>7}  {'PR AUC':>7}  {'F1':>7}  {'cut':>5}"]
    for i, f in enumerate(folds, 1):
        lines.append(f"{i:>5}  {f.roc_auc:7.4f}  {f.pr_auc:7.4f}  {f.f1:7.4f}  {f.threshold:5.3f}")
    for name, stat in (("mean", np.mean), ("std", np.std)):
        values = [float(stat([getattr(f, m) for f in folds])) for m in _METRICS]
        lines.append(f"{name:>5}  " + "  ".join(f"{v:7.4f}" for v in values))
    return "\n".join(lines)


def _cv_summary(folds: Sequence[Fold], k: int, seed: int) -> dict[str, Any]:
    summary: dict[str, Any] = {"folds": k, "seed": seed, "f1_cut": "best F1 on each fold's training sessions"}
    for m in _METRICS:
        values = [getattr(f, m) for f in folds]
        summary[m] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_fold": values}
    summary["cut_per_fold"] = [f.threshold for f in folds]
    return summary
