"""The core stays sans-I/O: decoding, session ops and rules import no network, Redis or event loop."""

from __future__ import annotations

import subprocess
import sys

CORE = ["kairos.wire", "kairos.session", "kairos.rules", "kairos.rules.evaluate", "kairos.rules.model", "kairos.traffic",
        "kairos.intent.model", "kairos.intent.sessions", "kairos.intent.score", "kairos.experiments.assign",
        "kairos.experiments.stats", "kairos.experiments.report", "kairos.experiments.edit"]
# (socket itself is pulled in by the standard library via pydantic -> email.utils.)
FORBIDDEN = ["redis", "starlette", "uvicorn", "asyncio", "websockets", "httpx", "jinja2"]


def test_core_modules_import_no_io():
    code = (
        "import sys\n"
        f"for m in {CORE!r}: __import__(m)\n"
        f"print(sorted(m for m in {FORBIDDEN!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"the core pulled in {out}"
