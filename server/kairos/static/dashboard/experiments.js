/* Kairos staff dashboard: the Experiments page (/dashboard/experiments).
 *
 * GET /api/experiments every REFRESH_MS: each experiment's report
 * (kairos.experiments.report). Ship and Stop POST /api/experiments/{id}/ship
 * ({arm}) and …/stop, which rewrite the rules the way the rules editor's Apply
 * does. The helpers (call, el, svg, …) are dashboard.js's, which runs first and
 * lends them through window.KairosDashboard. As there, everything from the
 * server goes into the page as text, never as HTML; no dependencies.
 */
(() => {
  "use strict";

  const K = window.KairosDashboard;
  if (!K || document.body.getAttribute("data-page") !== "experiments") return;
  const { $, el, svg, clear, call, postJSON, setStatus, clock } = K;

  // Results move with each visitor who reaches a moment: fresh enough to watch, light
  // enough for a tab left open all day (one read of the day counters per refresh).
  const REFRESH_MS = 10000;
  const DAY_MS = 86400000;
  // An early day's range can span thousands of percent; the chart is drawn within these, and
  // what lies beyond is drawn at the edge (each point's title has the true figures).
  const LIFT_MIN = -100;
  const LIFT_MAX = 300;

  const pct = (v, digits) => (v == null ? "—" : (v * 100).toFixed(digits == null ? 1 : digits) + "%");
  const signed = (v) => (v == null ? "—" : (v > 0 ? "+" : "") + (v * 100).toFixed(Math.abs(v) < 0.1 ? 1 : 0) + "%");
  const count = (n) => Number(n || 0).toLocaleString("en");
  const amount = (v) => (v == null ? "—" : v.toFixed(2));
  const notShown = (a, v) => (a.name === "holdout" ? "shown nothing" : pct(v));
  const dayLabel = (ms) => new Date(ms).toLocaleDateString("en", { day: "numeric", month: "short", timeZone: "UTC" });

  // The rows of the arms table: what each arm counted, side by side.
  const METRICS = [
    ["share", "Share of visitors", (a) => pct(a.share, 0)],
    ["exposed", "Reached the moment", (a) => count(a.exposed)],
    ["converted", "Converted", (a) => count(a.converted)],
    ["rate", "Conversion rate", (a) => pct(a.rate)],
    ["revenue_per_visitor", "Revenue per visitor", (a) => amount(a.revenue_per_visitor)],
    ["click_rate", "Clicked (of shown)", (a) => notShown(a, a.click_rate)],
    ["dismiss_rate", "Dismissed (of shown)", (a) => notShown(a, a.dismiss_rate)],
    ["left_rate", "Left within 10 s", (a) => pct(a.left_rate)],
  ];

  let last = ""; // the reports drawn: the same again leaves the page (and its focus) alone

  async function load() {
    let res;
    try {
      res = await call("/api/experiments");
    } catch (err) {
      setStatus("error", "results unavailable · retrying");
      return;
    }
    setStatus("ok", "updated " + clock(Date.now()));
    const list = res.experiments || [];
    const text = JSON.stringify(list);
    if (text === last) return;
    last = text;
    render(list);
  }

  function render(list) {
    const box = $("experiments");
    const focused = document.activeElement && document.activeElement.closest ? document.activeElement.closest("button[data-key]") : null;
    const key = focused ? focused.getAttribute("data-key") : null;
    clear(box);
    $("experiments-empty").hidden = list.length > 0;
    for (const x of list) box.appendChild(experiment(x));
    if (key) {
      const again = box.querySelector('button[data-key="' + CSS.escape(key) + '"]');
      if (again) again.focus({ preventScroll: true });
    }
  }

  function experiment(x) {
    const sec = el("section", { class: "panel experiment", "data-experiment": x.id, "data-state": x.running ? "running" : "ended" });
    const head = sec.appendChild(el("div", { class: "panel-head" }));
    const h = head.appendChild(el("h2"));
    if (x.program) h.append("The program's holdout");
    else {
      h.append("Experiment ");
      h.appendChild(el("code", null, x.id));
    }
    h.appendChild(el("span", { class: "summary" }, x.program ? " every rule together, against no nudge at all" : " on rule " + x.rule));
    const days = x.days === 1 ? "1 day" : x.days + " days";
    head.appendChild(el("span", { class: "tag state" }, x.running ? "running · " + days
      : "ended " + x.ended + (x.shipped ? " · shipped " + x.shipped : " · stopped")));
    if (x.srm && x.srm.mismatch) {
      sec.appendChild(el("p", { class: "srm-warning", role: "alert" }, "Sample-ratio mismatch (p = " + Number(x.srm.p).toPrecision(2)
        + "): the arms did not get the shares they were set up for. Until the cause is found (bots, a page that fails in one arm, "
        + "weights changed mid-way), these numbers cannot be trusted."));
    }
    sec.appendChild(armsTable(x));
    const verdicts = sec.appendChild(el("ul", { class: "verdicts" }));
    for (const c of x.comparisons) {
      const li = verdicts.appendChild(el("li", { "data-arm": c.arm, class: c.significant ? (c.lift > 0 ? "better" : "worse") : "unclear" }));
      // "b beats holdout: …" names its arm; "not enough data: …" does not, so it is said whose.
      const said = c.verdict.startsWith(c.arm + " ") ? c.verdict : c.arm + " against " + c.control + ": " + c.verdict;
      li.appendChild(el("span", { class: "verdict" }, said));
      if (c.revenue_lift != null) {
        const range = c.revenue_low != null ? " (" + signed(c.revenue_low) + " to " + signed(c.revenue_high) + ")" : "";
        li.appendChild(el("span", { class: "revenue" }, " Revenue per visitor: " + signed(c.revenue_lift) + range + "."));
      }
    }
    const charts = sec.appendChild(el("div", { class: "lift-charts" }));
    for (const c of x.comparisons) charts.appendChild(liftChart(c));
    if (x.running) sec.appendChild(actions(x));
    else {
      sec.appendChild(el("p", { class: "ended" }, "Ended " + x.ended + ": " + (x.program ? "every visitor gets the nudges."
        : x.shipped ? "everyone who reaches the moment sees " + x.shipped + "." : "everyone sees the rule as written.")));
    }
    return sec;
  }

  function armsTable(x) {
    const wrap = el("div", { class: "table-scroll" });
    const table = wrap.appendChild(el("table", { class: "arms" }));
    const hr = table.appendChild(el("thead")).appendChild(el("tr"));
    hr.appendChild(el("th", { scope: "col" }, "Arm"));
    for (const a of x.arms) {
      const th = hr.appendChild(el("th", { scope: "col", class: "num", "data-arm": a.name }));
      th.appendChild(el("span", { class: "arm-name" }, a.name));
      if (a.control) th.append(" ", el("span", { class: "tag" }, "control"));
      if (x.shipped === a.name) th.append(" ", el("span", { class: "tag shipped" }, "shipped"));
    }
    const tbody = table.appendChild(el("tbody"));
    for (const [key, label, fmt] of METRICS) {
      const tr = tbody.appendChild(el("tr", { "data-metric": key }));
      tr.appendChild(el("th", { scope: "row" }, label));
      for (const a of x.arms) tr.appendChild(el("td", { class: "num", "data-arm": a.name }, fmt(a)));
    }
    return wrap;
  }

  // The cumulative lift at the end of each day with its 95% range as a band, against a line at 0.
  function liftChart(c) {
    const title = "Lift of " + c.arm + " over " + c.control + " (conversion), from the start to each day's end, with its 95% range";
    const fig = el("figure", { class: "chart-box lift", "data-arm": c.arm });
    fig.appendChild(el("figcaption", null, title));
    const W = 720, H = 240, L = 70, R = 16, T = 14, B = 44;
    const chart = fig.appendChild(svg("svg", { class: "lift-chart", role: "img", "aria-label": title, viewBox: "0 0 " + W + " " + H,
                                               preserveAspectRatio: "xMidYMid meet" }));
    const history = c.history || [];
    const pts = history.filter((p) => p.lift != null);
    chart.setAttribute("data-points", String(pts.length));
    const first = history.length ? Math.min(...history.map((p) => p.day)) : Math.floor(Date.now() / DAY_MS) * DAY_MS;
    const lastDay = history.length ? Math.max(...history.map((p) => p.day)) : first;
    const n = Math.round((lastDay - first) / DAY_MS) + 1;
    const x = (day) => L + ((day - first) / DAY_MS + 0.5) * (W - L - R) / n;

    const clamp = (v) => Math.max(LIFT_MIN, Math.min(LIFT_MAX, v));
    const values = pts.flatMap((p) => [p.lift, p.low, p.high]).filter((v) => v != null).map((v) => clamp(v * 100));
    let lo = Math.min(0, ...values);
    let hi = Math.max(0, ...values);
    if (hi - lo < 1) {
      lo = Math.min(lo, -10);
      hi = Math.max(hi, 10);
    }
    const step = niceStep((hi - lo) / 4);
    const top = Math.ceil(hi / step) * step;
    const bottom = Math.floor(lo / step) * step;
    const y = (v) => T + ((H - T - B) * (top - clamp(v))) / (top - bottom);

    for (let v = bottom; v <= top; v += step) {
      chart.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      chart.appendChild(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "tick y" }, (v > 0 ? "+" : "") + v + "%"));
    }
    chart.appendChild(svg("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
    chart.appendChild(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
    const every = Math.max(1, Math.ceil(n / 8));
    for (let i = 0; i < n; i += every) {
      const day = first + i * DAY_MS;
      chart.appendChild(svg("line", { x1: x(day), x2: x(day), y1: H - B, y2: H - B + 4, class: "axis" }));
      chart.appendChild(svg("text", { x: x(day), y: H - B + 16, "text-anchor": "middle", class: "tick x" }, dayLabel(day)));
    }
    chart.appendChild(svg("text", { x: L + (W - L - R) / 2, y: H - 6, "text-anchor": "middle", class: "axis-label x" }, "day (UTC)"));
    const mid = T + (H - T - B) / 2;
    chart.appendChild(svg("text", { x: 14, y: mid, "text-anchor": "middle", class: "axis-label y", transform: "rotate(-90 14 " + mid + ")" }, "lift (%)"));

    const ranged = pts.filter((p) => p.low != null && p.high != null);
    if (ranged.length > 1) {
      const upper = ranged.map((p) => x(p.day) + "," + y(p.high * 100));
      const lower = ranged.slice().reverse().map((p) => x(p.day) + "," + y(p.low * 100));
      chart.appendChild(svg("polygon", { points: upper.concat(lower).join(" "), class: "band" }));
    }
    for (const p of ranged) chart.appendChild(svg("line", { x1: x(p.day), x2: x(p.day), y1: y(p.low * 100), y2: y(p.high * 100), class: "range" }));
    chart.appendChild(svg("line", { x1: L, x2: W - R, y1: y(0), y2: y(0), class: "zero" }));
    if (!pts.length) {
      chart.appendChild(svg("text", { x: L + (W - L - R) / 2, y: T + 24, "text-anchor": "middle", class: "nothing" },
        "No lift yet: " + c.control + " has no conversions to compare with."));
      return fig;
    }
    chart.appendChild(svg("polyline", { points: pts.map((p) => x(p.day) + "," + y(p.lift * 100)).join(" "), fill: "none", class: "lift-line" }));
    for (const p of pts) {
      const dot = chart.appendChild(svg("circle", { cx: x(p.day), cy: y(p.lift * 100), r: 3.5, class: "lift-dot" }));
      const range = p.low != null ? " (" + signed(p.low) + " to " + signed(p.high) + ")" : "";
      dot.appendChild(svg("title", null, dayLabel(p.day) + ": " + signed(p.lift) + range + ", " + count(p.exposed) + " visitors so far"));
    }
    return fig;
  }

  function niceStep(raw) {
    for (const s of [1, 2, 5, 10, 20, 25, 50, 100, 200]) if (raw <= s) return s;
    return 500;
  }

  function actions(x) {
    const box = el("div", { class: "actions" });
    if (!x.program) {
      for (const a of x.arms) {
        if (a.name === "holdout") continue; // shown nothing: there is nothing to ship
        box.appendChild(el("button", { type: "button", class: "ship", "data-action": "ship", "data-arm": a.name, "data-key": x.id + "/ship/" + a.name }, "Ship " + a.name));
      }
    }
    box.appendChild(el("button", { type: "button", class: "stop", "data-action": "stop", "data-key": x.id + "/stop" }, "Stop"));
    box.appendChild(el("span", { class: "hint" }, x.program
      ? "Stop: every visitor gets the nudges again (the rules file's holdout becomes 0%)."
      : "Ship: everyone who reaches the moment sees that arm. Stop: everyone sees the rule as written. Either ends the experiment; its results stay here."));
    return box;
  }

  $("experiments").addEventListener("click", async (e) => {
    const b = e.target.closest("button[data-action]");
    if (!b) return;
    const sec = b.closest("[data-experiment]");
    const id = sec.getAttribute("data-experiment");
    const action = b.getAttribute("data-action");
    const arm = b.getAttribute("data-arm");
    const name = id === "*" ? "the program's holdout" : "experiment " + id;
    const question = (action === "ship"
      ? "Ship " + arm + " and end " + name + "? Everyone who reaches the moment will see " + arm + "."
      : "Stop " + name + "? " + (id === "*" ? "Every visitor will get the nudges again." : "Everyone will see the rule as written."))
      + " The rules are rewritten, and the change is listed in the rules history.";
    if (!window.confirm(question)) return;
    const out = $("experiments-result");
    const buttons = sec.querySelectorAll("button[data-action]");
    for (const btn of buttons) btn.disabled = true;
    try {
      const res = await postJSON("/api/experiments/" + encodeURIComponent(id) + "/" + action, action === "ship" ? { arm } : {});
      out.textContent = (action === "ship" ? "Shipped " + arm + ": " : "Stopped: ") + name + " has ended; rules version " + res.version + " is in force.";
      out.setAttribute("data-state", "ok");
    } catch (err) {
      const body = (err && err.body) || {};
      const problems = (body.problems || []).map((p) => (p.line ? "line " + p.line + ": " : "") + (p.path ? p.path + ": " : "") + p.reason);
      out.textContent = "Not done: " + (body.error || (problems.length
        ? "the rules document has problems; fix them on the rules page first.\n" + problems.join("\n")
        : "the server did not answer."));
      out.setAttribute("data-state", "error");
      for (const btn of buttons) btn.disabled = false;
    }
    last = "";
    load();
  });

  load();
  setInterval(() => {
    if (!document.hidden) load();
  }, REFRESH_MS);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) load();
  });
})();
