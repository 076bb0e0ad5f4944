"""The rules history: each change staff put in force — when, through what, and what it did.

One JSON line per change in STATE_DIR/rules-history.jsonl, appended by the
process that made the change: the editor's Apply, an experiment shipped or
stopped, a PUT to /admin/rules. Processes that share a state directory share
the history, as they share the admin token. A file the operator edits by hand
is not recorded here: every process watching it would record it once.

A line that cannot be written is logged and the change stays in force: the
rules are what matters; the history only says how they came to be.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("kairos")

FILE = "rules-history.jsonl"
# Enough for years of hand-made changes; past twice this, the oldest lines go.
KEEP_LINES = 500
# What the API and the rules page show, newest first.
SHOWN = 50


def path(state_dir: Path) -> Path:
    return Path(state_dir) / FILE


def record(state_dir: Path, what: str, text: str, version: int, source: str, via: str, node: str) -> dict[str, Any]:
    """Append one change to the history; the entry (also when it could not be written)."""
    entry = {"at_ms": int(time.time() * 1000), "what": what, "version": version, "source": source, "via": via,
             "node": node, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    file = path(state_dir)
    try:
        file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # One write of one line in append mode: lines from two processes do not interleave.
        with open(file, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, separators=(",", ":")) + "\n")
        _trim(file)
    except OSError as exc:
        log.warning("rules history: could not record %r in %s: %s", what, file, exc.strerror or exc)
    return entry


def recent(state_dir: Path, n: int = SHOWN) -> list[dict[str, Any]]:
    """The last `n` changes, newest first; [] when there is no history (or it cannot be read)."""
    try:
        lines = path(state_dir).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by a full disk
        if isinstance(entry, dict):
            out.append(entry)
        if len(out) >= n:
            break
    return out


def _trim(file: Path) -> None:
    lines = file.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    if len(lines) <= 2 * KEEP_LINES:
        return
    tmp = file.with_name(f".{file.name}.{os.getpid()}")
    tmp.write_text("".join(lines[-KEEP_LINES:]), encoding="utf-8")
    # A line another process appends between the read and the rename is lost; rare, and only history.
    os.replace(tmp, file)
