"""What a purchase-intent score costs the server: time per session of Model.predict.

    python benchmarks/intent.py [--model MODEL.json] [--data SESSIONS.csv]

Scores every session of the table (by default the UCI Online Shoppers table
in examples/data/) one at a time with the pure-Python
scorer the server uses, timing each call: encoding the row and walking every
tree. Without --model it first trains one with `kairos train`'s settings (needs
the train extra). Run: `make bench-intent`.
"""

from __future__ import annotations

import argparse
import csv
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import percentile, report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
UCI = ROOT / "examples" / "data" / "online_shoppers_intention.csv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a model file (default: train one on --data)")
    parser.add_argument("--data", type=Path, default=UCI, help=f"sessions to score (default: {UCI})")
    parser.add_argument("--label", default="Revenue", help="the label column, to train on --data (default: Revenue)")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the table; the first warms up (default 3)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()

    from kairos.intent import load, save

    if not args.data.is_file():
        sys.exit(f"{args.data}: not found")
    model_path = args.model
    if model_path is None:
        from kairos.intent import train

        model_path = Path(tempfile.mkdtemp()) / "model.json"
        save(train.train(train.read_table(args.data), args.label, echo=lambda _: None), model_path)
    model = load(model_path)
    with args.data.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))

    timings_us: list[float] = []
    gc.disable()  # a collection inside one call would be the collector's cost, not the scorer's
    try:
        for n in range(args.rounds):
            for row in rows:
                start = time.perf_counter_ns()
                model.predict(row)
                elapsed = (time.perf_counter_ns() - start) / 1000
                if n:
                    timings_us.append(elapsed)
    finally:
        gc.enable()
    depth = [_depth(t) for t in model.trees]
    report({
        "model": f"{model_path} ({len(model.trees)} trees, {len(model.inputs)} inputs, mean leaf depth {statistics.mean(depth):.1f})",
        "sessions": f"{len(rows):,} x {args.rounds - 1} timed rounds ({args.data.name})",
        "predict median": f"{statistics.median(timings_us):.1f} us",
        "predict p99": f"{percentile(timings_us, 99):.1f} us",
        "predict max": f"{max(timings_us):.1f} us",
        "python": sys.version.split()[0],
    }, args.json)
    return 0


def _depth(nodes) -> float:
    """Mean depth of a tree's leaves: the comparisons one score walks through, per tree."""
    depths, stack = [], [(0, 0)]
    while stack:
        i, d = stack.pop()
        if nodes[i][0] < 0:
            depths.append(d)
        else:
            stack += [(nodes[i][0], d + 1), (nodes[i][3], d + 1)]
    return statistics.mean(depths)


if __name__ == "__main__":
    sys.exit(main())
