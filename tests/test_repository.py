"""The repository stands alone: a stranger's clone has every file its tests, benchmarks and demo read."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".git", ".venv", "node_modules", "dist", "artefacts", ".kairos", ".pytest_cache", ".hypothesis", "__pycache__"}
# The folder our own machines keep beside the clone, however a file would reach it
# (a relative path, or a Path walked up out of the repository). Spelled in pieces
# so that this file does not find itself.
BESIDE = re.compile(r"\.\./" + "shared" + r"|(parent|parents\[\d\])\s*/\s*[\"']" + "shared" + r"[\"']")


def _text_files() -> list[Path]:
    out = []
    for path in ROOT.rglob("*"):
        if path.is_file() and not SKIP.intersection(path.relative_to(ROOT).parts):
            if path.suffix in {".py", ".md", ".mjs", ".js", ".json", ".yaml", ".yml", ".toml", ".html", ".cfg", ".txt", ""}:
                out.append(path)
    return out


def test_nothing_in_the_repository_reads_a_folder_beside_it():
    files = _text_files()
    assert any(p.name == "Makefile" for p in files) and any(p.suffix == ".py" for p in files)
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in files
                 for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
                 if BESIDE.search(line)]
    assert offenders == [], f"these read a folder that a clone does not have: {offenders}"


def test_the_uci_table_is_in_the_repository_with_its_attribution():
    data = ROOT / "examples" / "data"
    readme = (data / "README.md").read_text(encoding="utf-8")
    assert (data / "online_shoppers_intention.csv").stat().st_size > 1_000_000
    for must in ("CC BY 4.0", "Sakar", "sha256 d8e130ba51532985f93281a73ce299e6ce150cb915769a7962a11e595eadd6a1"):
        assert must in readme
