"""The live page under load: a logged-in dashboard in headless Chromium while benchmarks/load.py runs.

Used by `load.py --dashboard`. It reports what a merchandiser would feel: feed
messages received, the sessions listed, the main thread's long tasks (> 50 ms,
from the browser's own PerformanceObserver) during the measured window, and how
long the table takes to re-sort and redraw when staff change the sort order.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]

# Registered before the page's own script, so no long task escapes it.
WATCH_LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longTasks.push([e.startTime, e.duration]);
}).observe({type: "longtask", buffered: true});
"""

# Change the sort order and wait for the frame that shows it: the page's answer to staff.
RESORT = """async (mode) => {
  const sort = document.getElementById("sort");
  const t0 = performance.now();
  sort.value = mode;
  sort.dispatchEvent(new Event("input"));
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  return performance.now() - t0;
}"""


class Dashboard:
    """A staff browser on the live page; `start` once the visitors are connected, `stop` after the window."""

    def __init__(self, base: str, token: str, chromium: str = CHROMIUM) -> None:
        self.base, self.token, self.chromium = base, token, chromium

    async def open(self, expect_live: int) -> None:
        from playwright.async_api import async_playwright

        self._pw = await async_playwright().start()
        self._browser = await self._pw.chromium.launch(executable_path=self.chromium, args=CHROMIUM_ARGS, headless=True)
        self.page = await self._browser.new_page(viewport={"width": 1400, "height": 900})
        await self.page.add_init_script(WATCH_LONG_TASKS)
        await self.page.goto(f"{self.base}/dashboard/login")
        await self.page.fill("#token", self.token)
        await self.page.click("#login button[type=submit]")
        await self.page.wait_for_url(f"{self.base}/dashboard")
        await self.page.wait_for_function(
            "(n) => Number(document.getElementById('count-live').textContent) >= n", arg=expect_live, timeout=60_000)

    async def measure(self, duration_s: float) -> dict[str, Any]:
        page = self.page
        t0 = await page.evaluate("() => performance.now()")
        before = await page.evaluate("() => (window.kairosFeed || {messages: 0}).messages")
        resorts: list[float] = []
        steps = 5
        for i in range(steps):
            await asyncio.sleep(duration_s / steps)
            resorts.append(await page.evaluate(RESORT, "cart" if i % 2 == 0 else "recent"))
        t1 = await page.evaluate("() => performance.now()")
        after = await page.evaluate("() => window.kairosFeed.messages")
        tasks = [d for start, d in await page.evaluate("() => window.__longTasks") if t0 <= start <= t1]
        live = int(await page.evaluate("() => document.getElementById('count-live').textContent"))
        rows = int(await page.evaluate("() => document.getElementById('count-rows').textContent"))
        drawn = await page.evaluate("() => document.querySelectorAll('#sessions-body tr.session-row').length")
        window_s = (t1 - t0) / 1000
        return {
            "dashboard_feed_messages_per_s": round((after - before) / window_s, 1),
            "dashboard_live_visitors": live,
            "dashboard_sessions_listed": rows,
            "dashboard_rows_in_the_page": drawn,
            "dashboard_long_tasks": len(tasks),
            "dashboard_long_task_ms_total": round(sum(tasks)),
            "dashboard_long_task_ms_max": round(max(tasks)) if tasks else 0,
            "dashboard_main_thread_blocked_share": round(sum(tasks) / (t1 - t0), 3),
            "dashboard_resort_ms_median": round(statistics.median(resorts), 1),
            "dashboard_resort_ms_max": round(max(resorts), 1),
        }

    async def close(self) -> None:
        await self._browser.close()
        await self._pw.stop()
