"""The purchase-intent model: trained by `kairos train` on real sessions, scored by the server in pure Python."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kairos import cli
from kairos.intent import FORMAT_VERSION, Model, ModelError, features, load, save

try:
    import numpy as np

    from kairos.intent import train
except ImportError as exc:  # a loud error at collection, never a skip
    raise ImportError(f"these tests need the train extra ({exc.name} is missing): "
                      "pip install -e '.[test,train]' (make test installs it)") from exc

ROOT = Path(__file__).resolve().parents[1]
# The UCI Online Shoppers Purchasing Intention table (CC BY 4.0, Sakar et al.
# 2019), kept in the repository with its attribution: examples/data/README.md.
UCI = ROOT / "examples" / "data" / "online_shoppers_intention.csv"
UCI_SHA256 = "d8e130ba51532985f93281a73ce299e6ce150cb915769a7962a11e595eadd6a1"


@pytest.fixture(scope="module")
def uci() -> Path:
    # A checkout that rewrote line endings or a half-fetched file would give other figures, not an error.
    assert hashlib.sha256(UCI.read_bytes()).hexdigest() == UCI_SHA256, f"{UCI} is not the published table"
    return UCI


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    """A model trained in a second on 300 made-up sessions, for what does not need the real table."""
    rng = random.Random(3)
    lines = ["PageValues,Month,Weekend,Revenue"]
    for _ in range(300):
        value = rng.choice([0.0, 0.0, rng.uniform(1, 80)])
        bought = value > 10 and rng.random() < 0.8
        lines.append(f"{value:.2f},{rng.choice(['Feb', 'May', 'Nov'])},{rng.choice(['TRUE', 'FALSE'])},{str(bought).upper()}")
    path = tmp_path_factory.mktemp("small") / "sessions.csv"
    path.write_text("\n".join(lines) + "\n")
    return train.train(train.read_table(path), "Revenue", echo=lambda _: None)


@pytest.fixture(scope="module")
def trained(uci: Path, tmp_path_factory: pytest.TempPathFactory):
    """The UCI table, scikit-learn's model fitted on all of it, and that model as the server loads it."""
    table = train.read_table(uci)
    data = train.prepare(table, "Revenue")
    clf = train.fit(data.X, data.y, seed=0)
    path = tmp_path_factory.mktemp("intent") / "model.json"
    save(train.to_model(clf, data, 0.5, {}), path)
    return table, data, clf, load(path)


def test_served_model_gives_scikit_learns_probability_for_500_uci_sessions(trained):
    table, data, clf, model = trained
    sample = random.Random(6).sample(range(len(table.rows)), 500)
    expected_raw = clf.decision_function(data.X[sample])
    expected = clf.predict_proba(data.X[sample])[:, 1]
    for i, raw, p in zip(sample, expected_raw, expected):
        row = table.rows[i]  # the CSV's text, encoded by the server's own code
        # The same float64 comparisons and additions in the same order: bit for bit.
        assert model.raw(row) == raw, f"row {i}"
        # 1/(1+exp(-x)) as scipy's expit; exp may differ by an ulp between C libraries.
        assert model.predict(row) == pytest.approx(p, rel=0, abs=1e-15), f"row {i}"


def test_served_model_reads_python_values_like_the_csv_text(trained):
    table, _, _, model = trained
    row = next(r for r in table.rows if r["Revenue"] == "TRUE" and float(r["PageValues"]) > 0)
    as_python = {"number": float, "flag": lambda v: v == "TRUE", "category": str}
    typed = {f.column: as_python[f.kind](row[f.column]) for f in model.features}
    assert typed["Weekend"] in (True, False) and isinstance(typed["PageValues"], float)
    assert model.predict(typed) == model.predict(row)


def test_absent_columns_and_unseen_categories_go_where_scikit_learn_sends_them(trained):
    _, data, clf, model = trained
    for row in ({}, {"PageValues": 30, "Month": "Someday", "VisitorType": None, "Weekend": "maybe"}):
        x = np.array([features.encoder(data.features)(row)])
        assert model.raw(row) == clf.decision_function(x)[0]
        assert 0 < model.predict(row) < 1


def test_page_values_carry_the_signal(trained):
    _, _, _, model = trained
    visitor = {"ProductRelated": 20, "ProductRelated_Duration": 900, "ExitRates": 0.02, "Month": "Nov",
               "VisitorType": "Returning_Visitor"}
    assert model.predict({**visitor, "PageValues": 40}) > 0.5 > model.predict({**visitor, "PageValues": 0})


def test_kairos_train_cv_5_on_uci_reaches_issue_6s_roc_auc_and_writes_a_loadable_model(uci: Path, tmp_path: Path):
    out = tmp_path / "model.json"
    run = subprocess.run([sys.executable, "-m", "kairos", "train", str(uci), "--label", "Revenue", "--cv", "5",
                          "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "12,330 sessions, 1,908 with Revenue = TRUE" in run.stdout
    folds = re.findall(r"^\s+[1-5]\s+(0\.\d{4})\s+(0\.\d{4})\s+(0\.\d{4})", run.stdout, re.M)
    assert len(folds) == 5, run.stdout
    mean = re.search(r"^\s+mean\s+(0\.\d{4})\s+(0\.\d{4})\s+(0\.\d{4})$", run.stdout, re.M)
    assert mean, run.stdout
    roc_auc, pr_auc, f1 = map(float, mean.groups())
    # Issue 6's bar (published gradient-boosted trees: about 0.93). This run
    # measured 0.9346 with scikit-learn 1.9; a model that lost PageValues falls to
    # about 0.78, one with shuffled labels to 0.5.
    assert roc_auc >= 0.93
    assert pr_auc > 0.6 and f1 > 0.55  # 15 % of sessions buy: a coin scores PR AUC 0.15
    model = load(out)
    assert len(model.trees) == train.PARAMS["max_iter"]
    assert model.training["cv"]["roc_auc"]["mean"] == pytest.approx(roc_auc, abs=5e-5)
    assert model.training["libraries"]["scikit-learn"]
    assert json.loads(out.read_text())["format_version"] == FORMAT_VERSION


def test_kairos_predict_scores_a_csv_with_the_served_model(trained, tmp_path: Path, capsys):
    table, _, _, model = trained
    path = tmp_path / "model.json"
    save(model, path)
    sessions = tmp_path / "sessions.csv"
    lines = UCI.read_text().splitlines()
    sessions.write_text("\n".join(lines[:21]) + "\n")
    assert cli.main(["predict", str(path), str(sessions)]) == 0
    out = capsys.readouterr().out.split()
    assert out[0] == "purchase_intent"
    assert [float(p) for p in out[1:]] == [pytest.approx(model.predict(r), abs=1e-6) for r in table.rows[:20]]


def _csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "sessions.csv"
    path.write_text(text)
    return str(path)


# `d()` is the UCI table's path: only the cases that read it ask for it.
@pytest.mark.parametrize("argv, message", [
    (lambda d, t: ["train", d(), "--label", "Bought"], "no column 'Bought'; the columns are Administrative,"),
    (lambda d, t: ["train", _csv(t, "pages,bought\n3,FALSE\n5,FALSE\n"), "--label", "bought"],
     "the label 'bought' is FALSE in every row"),
    (lambda d, t: ["train", _csv(t, "pages,bought\n3,no\n5,maybe\n"), "--label", "bought"],
     "expected two: TRUE/FALSE, yes/no or 1/0"),
    (lambda d, t: ["train", _csv(t, "pages,bought\n3,0\n5,\n"), "--label", "bought"], "line 3: no value in the label"),
    (lambda d, t: ["train", str(t / "nowhere.csv"), "--label", "Revenue"], "nowhere.csv: cannot read it (No such file"),
    (lambda d, t: ["train", d(), "--label", "Revenue", "--cv", "1"], "--cv 1: expected 2 to 1908"),
    (lambda d, t: ["train", d(), "--label", "Revenue", "--ignore", "Nope"], "--ignore Nope: no such column"),
    (lambda d, t: ["train", _csv(t, "sid,bought\n" + "".join(f"s{i},{i % 2}\n" for i in range(60))), "--label", "bought"],
     "column 'sid' has more than 50 different text values"),
], ids=["no-label-column", "one-class", "not-a-yes-no-label", "empty-label", "no-file", "cv-1", "ignore-unknown",
        "id-column"])
def test_bad_training_input_gets_a_clear_message_and_a_non_zero_exit(request, tmp_path, capsys, argv, message):
    assert cli.main(argv(lambda: str(request.getfixturevalue("uci")), tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.startswith("kairos train: ") and message in err, err


def _model_file(tmp_path: Path, model: Model, **change) -> str:
    data = model.to_json() | change
    path = tmp_path / "model.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("content, message", [
    (lambda t, m: _model_file(t, m(), format_version=99), "format version 99, this Kairos reads version 1: train it again"),
    (lambda t, m: _model_file(t, m(), format="something-else"), "not a Kairos purchase-intent model"),
    (lambda t, m: _csv(t, "{not json"), "not JSON"),
    (lambda t, m: str(t / "absent.json"), "absent.json: cannot read it"),
], ids=["format-version", "format", "not-json", "no-file"])
def test_an_unusable_model_file_gets_a_clear_message_and_a_non_zero_exit(request, tmp_path, capsys, content, message):
    sessions = tmp_path / "to-score.csv"
    sessions.write_text("PageValues,Month,Weekend\n12.5,May,TRUE\n")
    # `m()` is a real model: only the cases that change one ask for it.
    assert cli.main(["predict", content(tmp_path, lambda: request.getfixturevalue("small_model")), str(sessions)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kairos predict: ") and message in err, err


def test_a_tree_that_could_loop_is_refused(trained):
    data = trained[3].to_json()
    tree = data["trees"][0]
    inner = next(i for i in range(1, len(tree["left"])) if tree["left"][i] >= 0)
    tree["left"][inner] = inner
    with pytest.raises(ModelError, match=r"trees\[0\]: node \d: left and right expected nodes after"):
        Model.from_json(data)


def test_model_file_is_strict_json_and_round_trips(small_model, tmp_path):
    model = small_model
    path = tmp_path / "model.json"
    save(model, path)
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    again = load(path)
    row = {"PageValues": 12.5, "Month": "May", "Weekend": True}
    assert again.predict(row) == model.predict(row)
    assert again.inputs == model.inputs and again.positive == "TRUE" and again.label == "Revenue"


def test_feature_kinds_are_inferred_from_the_values():
    rows = [{"pages": "3", "weekend": "TRUE", "month": "Feb", "ref": ""},
            {"pages": "", "weekend": "false", "month": "Mar", "ref": ""}]
    spec = features.infer(["pages", "weekend", "month", "ref", "bought"], rows, skip={"bought"})
    assert spec == [features.Feature("pages", "number"), features.Feature("weekend", "flag"),
                    features.Feature("month", "category", ("Feb", "Mar")), features.Feature("ref", "number")]
    encode = features.encoder(spec)
    assert features.input_names(spec) == ["pages", "weekend", "month=Feb", "month=Mar", "ref"]
    x = encode({"pages": "7", "weekend": True, "month": "Mar"})
    assert x[:4] == [7.0, 1.0, 0.0, 1.0] and math.isnan(x[4])
    x = encode({"pages": "seven", "weekend": "perhaps", "month": "Apr", "ref": math.inf})
    assert all(math.isnan(v) for v in (x[0], x[1], x[4])) and x[2:4] == [0.0, 0.0]


def test_serving_imports_neither_numpy_nor_scikit_learn():
    code = ("import sys, kairos.app, kairos.cli, kairos.intent\n"
            "print(sorted(m for m in ('numpy', 'sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"serving pulled in {out}"
