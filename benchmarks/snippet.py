"""What the snippet costs a store's page: main-thread script time and long tasks.

Loads the demo store's product page in headless Chromium, with the snippet and
with /k.js blocked, runs the same visitor (scrolling, pointer moves, clicks)
and compares Chromium's own counters (CDP Performance.getMetrics: ScriptDuration,
TaskDuration) and the long tasks (> 50 ms, PerformanceObserver 'longtask')
seen by the page. Run: `make bench-snippet` (or `python benchmarks/snippet.py`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).parent))
from common import PRODUCT, free_port, report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]

OBSERVE = """
window.__long = [];
new PerformanceObserver(list => { for (const e of list.getEntries()) window.__long.push(e.duration) })
    .observe({type: 'longtask', buffered: true});
"""


def visit(page, base: str) -> None:
    """One visitor: scroll the product page, move about, click, go up to the top edge."""
    page.goto(base + PRODUCT)
    page.wait_for_load_state("load")
    page.mouse.move(400, 400)
    for _ in range(10):
        page.mouse.wheel(0, 300)
        page.mouse.move(420, 380, steps=5)
        page.wait_for_timeout(60)
    for _ in range(5):
        page.locator("#product-name").click()
        page.wait_for_timeout(40)
    page.mouse.move(640, 20, steps=5)
    page.wait_for_timeout(1200)  # the snippet's timers and a batch


def load(page, base: str) -> None:
    """A visitor who only loads the page and reads (the snippet's start-up and its timers)."""
    page.goto(base + PRODUCT)
    page.wait_for_load_state("load")
    page.wait_for_timeout(1500)


def measure(browser, base: str, snippet: bool, scenario=visit) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    if not snippet:
        page.route("**/k.js", lambda route: route.abort())
    page.add_init_script(OBSERVE)
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")
    started = time.perf_counter()
    scenario(page, base)
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    result = {
        "script_ms": metrics["ScriptDuration"] * 1000,
        "task_ms": metrics["TaskDuration"] * 1000,
        "long_tasks": len(page.evaluate("() => window.__long")),
        "longest_task_ms": max(page.evaluate("() => window.__long") or [0]),
        "wall_s": time.perf_counter() - started,
    }
    if snippet:
        # what crossed the wire for k.js, as the page's Resource Timing saw it
        # (encodedBodySize: the body before decoding, whatever the cache did)
        result["k.js encoded bytes"] = page.evaluate(
            "() => performance.getEntriesByType('resource').find(e => new URL(e.name).pathname === '/k.js')?.encodedBodySize")
    context.close()
    return result


def traced_loads(browser, base: str, runs: int) -> dict[str, float]:
    """What k.js costs the page's main thread while it loads, from Chromium's trace.

    - cpu_ms / wall_ms: per page load (its start-up, then 1.5 s of timers and
      frames), the median of the snippet's script tasks (EvaluateScript,
      FunctionCall, compiles) measured on the thread's own clock (`tdur`: time
      on a CPU) and on the wall clock (`dur`: also the time the thread waited
      for one, which on a busy 2-core machine is most of it);
    - layouts, layout_ms: synchronous layouts the snippet forced, in all loads
      (a script reading geometry such as innerWidth or scrollHeight after the
      page changed: the trace gives that Layout event the script's stack).
    """
    cpu, wall, layouts, layout_ms = [], [], 0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        for _ in range(runs):
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            browser.start_tracing(page=page, path=str(trace), categories=[
                "devtools.timeline", "disabled-by-default-devtools.timeline",
                "disabled-by-default-devtools.timeline.stack"])
            load(page, base)
            browser.stop_tracing()
            context.close()
            events = [e for e in json.loads(trace.read_text())["traceEvents"] if e.get("ph") == "X"]
            tasks, ends = [], -1
            for event in sorted(events, key=lambda e: e["ts"]):
                data = event.get("args", {}).get("data") or {}
                if event["name"] in ("EvaluateScript", "FunctionCall", "v8.compile") and _ours(data.get("url") or data.get("scriptName")):
                    if event["ts"] >= ends:  # not nested in one already counted
                        tasks.append(event)
                        ends = event["ts"] + event.get("dur", 0)
                elif event["name"] == "Layout":
                    stack = (event.get("args", {}).get("beginData") or {}).get("stackTrace") or []
                    if any(_ours(frame.get("url")) for frame in stack):
                        layouts += 1
                        layout_ms += event.get("dur", 0) / 1000
            cpu.append(sum(e.get("tdur", 0) for e in tasks) / 1000)
            wall.append(sum(e.get("dur", 0) for e in tasks) / 1000)
    return {"cpu_ms": statistics.median(cpu), "wall_ms": statistics.median(wall), "layouts": layouts, "layout_ms": layout_ms}


def _ours(url: str | None) -> bool:
    return bool(url) and Path(url.split("?")[0]).name in ("k.js", "k-overlay.js")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "kairos", "serve", "--engine", "memory", "--port", str(port),
                               "--rules", str(ROOT / "examples" / "demo.yaml"), "--log-level", "warning"], cwd=ROOT)
    try:
        for _ in range(100):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        size = len(httpx.get(base + "/k.js", headers={"Accept-Encoding": "identity"}).content)
        # what the server sends each kind of browser (Content-Encoding as asked)
        sent = {}
        for enc in ("gzip", "br"):
            with httpx.stream("GET", base + "/k.js", headers={"Accept-Encoding": enc}) as r:
                sent[enc] = len(b"".join(r.iter_raw()))
        overlay_size = len(httpx.get(base + "/k-overlay.js").content)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True)
            runs = {True: [], False: []}
            loads = {True: [], False: []}
            measure(browser, base, True)  # warm up the server and the browser's caches
            for _ in range(args.runs):  # alternate, so a busy moment of the machine hits both
                for snippet in (True, False):
                    runs[snippet].append(measure(browser, base, snippet))
                    loads[snippet].append(measure(browser, base, snippet, load))
            traced = traced_loads(browser, base, args.runs)
            browser.close()
    finally:
        server.terminate()
        server.wait(10)

    med = lambda snippet, key, of=runs: statistics.median(r[key] for r in of[snippet])  # noqa: E731
    report({
        "runs": args.runs,
        "k.js bytes (raw)": size,
        "k.js bytes sent, gzip / br": f"{sent['gzip']} / {sent['br']}",
        "k.js bytes Chromium received (Resource Timing)": runs[True][0]["k.js encoded bytes"],
        "k-overlay.js bytes (raw; fetched only when an overlay shows)": overlay_size,
        "snippet's script ms, page load only (median)": round(med(True, "script_ms", loads) - med(False, "script_ms", loads), 1),
        "script ms, page with snippet (median)": round(med(True, "script_ms"), 1),
        "script ms, page without snippet (median)": round(med(False, "script_ms"), 1),
        "snippet's script ms, load + 3 s of scrolling, moving, clicking": round(med(True, "script_ms") - med(False, "script_ms"), 1),
        "main-thread task ms, with / without": f"{med(True, 'task_ms'):.1f} / {med(False, 'task_ms'):.1f}",
        "long tasks (>50 ms), with snippet, all runs": sum(r["long_tasks"] for r in runs[True]),
        "long tasks (>50 ms), without, all runs": sum(r["long_tasks"] for r in runs[False]),
        "longest task ms, with snippet": round(max(r["longest_task_ms"] for r in runs[True]), 1),
        "snippet's main-thread ms per page load, on a CPU (trace, median)": round(traced["cpu_ms"], 1),
        "snippet's main-thread ms per page load, wall clock (trace, median)": round(traced["wall_ms"], 1),
        f"layouts forced by the snippet in {args.runs} page loads (count, ms)": f"{traced['layouts']}, {traced['layout_ms']:.1f}",
    }, args.json)


if __name__ == "__main__":
    main()
