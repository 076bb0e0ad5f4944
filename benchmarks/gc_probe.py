"""Run a server with its full garbage collections timed, from inside its own process.

    python benchmarks/gc_probe.py --out gc.log -m kairos serve …
    python benchmarks/gc_probe.py --out gc.log benchmarks/floor.py --port 8081 …

A collection stops the event loop, and every visitor's push waits behind it;
only the process itself can see how long. This installs a `gc.callbacks` hook,
then runs the module or script in-process as `python -m` or `python SCRIPT`
would, so the server's code is unchanged. Each collection appends one line to
`--out` as it ends, written through at once (a killed server loses none):

    <wall-clock start, s since the epoch> <pause ms> <objects collected> <generation>

The benchmark reads the lines whose start falls in its measured window.
"""

from __future__ import annotations

import gc
import os
import runpy
import sys
import time


def install(path: str) -> None:
    """Append a line to `path` for every collection from now on."""
    out = open(path, "a", buffering=1)  # line-buffered: each pause is on disk when written
    started: list[float] = [0.0, 0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started[0], started[1] = time.time(), time.perf_counter()
        else:
            pause_ms = (time.perf_counter() - started[1]) * 1000
            out.write(f"{started[0]:.3f} {pause_ms:.3f} {info['collected']} {info['generation']}\n")

    gc.callbacks.append(on_gc)


def read(path: str, since_s: float, until_s: float, generations: tuple[int, ...] = (2,)) -> list[float]:
    """The pauses (ms) of the collections of `generations` that started within [since_s, until_s]."""
    pauses = []
    try:
        with open(path) as f:
            for line in f:
                start, ms, _, generation = line.split()
                if int(generation) in generations and since_s <= float(start) <= until_s:
                    pauses.append(float(ms))
    except FileNotFoundError:
        pass
    return pauses


def main() -> None:
    args = sys.argv[1:]
    if len(args) < 3 or args[0] != "--out":
        raise SystemExit("usage: gc_probe.py --out FILE (-m MODULE | SCRIPT) [ARGS…]")
    install(args[1])
    rest = args[2:]
    if rest[0] == "-m":
        sys.argv = [rest[1], *rest[2:]]
        runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = rest
        sys.path[0] = os.path.dirname(os.path.abspath(rest[0]))  # as `python SCRIPT` sets it
        runpy.run_path(rest[0], run_name="__main__")


if __name__ == "__main__":
    main()
