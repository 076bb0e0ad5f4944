"""Counters for /metrics, in the Prometheus text format."""

from __future__ import annotations

from collections import Counter
from typing import Callable

_HELP = {
    "kairos_frames_total": "Frames received from browsers, by type.",
    "kairos_events_total": "Visitor events applied to sessions.",
    "kairos_events_lost_total": "Events snippets dropped from their offline buffers (as they report in `lost`).",
    "kairos_shows_total": "Overlays pushed, by rule.",
    "kairos_refused_total": "Frames or events refused, by error code.",
    "kairos_feedback_total": "Overlay feedback, by act.",
    "kairos_connections_total": "Websocket connections accepted.",
    "kairos_beacons_total": "Beacons (POST /b) accepted, by type.",
}


class Metrics:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self.gauges: dict[str, Callable[[], float]] = {}

    def inc(self, name: str, n: int = 1, **labels: str) -> None:
        self.counts[(name, tuple(sorted(labels.items())))] += n

    def get(self, name: str, **labels: str) -> int:
        return self.counts[(name, tuple(sorted(labels.items())))]

    def render(self) -> str:
        lines: list[str] = []
        for name in sorted({n for n, _ in self.counts}):
            lines += [f"# HELP {name} {_HELP.get(name, name)}", f"# TYPE {name} counter"]
            for (n, labels), value in sorted(self.counts.items()):
                if n == name:
                    lab = ",".join(f'{k}="{v}"' for k, v in labels)
                    lines.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")
        for name, fn in sorted(self.gauges.items()):
            lines += [f"# TYPE {name} gauge", f"{name} {fn()}"]
        return "\n".join(lines) + "\n"
