"""What the benchmarks share: ports, percentiles, a visitor's hello."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import msgpack

PRODUCT = "/demo/products/linen-shirt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def hello(vid: str, path: str = PRODUCT) -> bytes:
    """A first-page hello of a new session on the demo store's product page."""
    return msgpack.packb({
        "v": 1, "t": "hello", "site": "demo", "vid": vid, "sid": None,
        "page": {"url": f"http://bench{path}", "path": path, "title": "Linen shirt", "ref": "",
                 "prod": {"name": "Linen shirt", "price": 49.0}},
        "consent": True, "dnt": False, "gpc": False, "sv": "bench", "tz": 0, "lang": "en", "vp": [1280, 800],
    })


def report(result: dict[str, Any], json_path: Path | None) -> None:
    """Print a result as aligned lines (quoted in issue notes), and write it as JSON if asked."""
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=1) + "\n")
