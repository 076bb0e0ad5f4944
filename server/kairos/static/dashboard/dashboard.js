/* Kairos staff dashboard: the live page, a session's view and the rules page
 * (the experiments page is experiments.js, which borrows the helpers below
 * through window.KairosDashboard).
 *
 * The live feed is a websocket (/dashboard/feed): a snapshot of the recent
 * sessions, then every change as it happens, a few times a second (kairos.feed):
 *   {t: "snapshot", rows, paused, rules, version, summary}
 *   {t: "rows", rows, gone?}      {t: "summary", summary}
 *   {t: "paused", paused}         {t: "rules", version, rules}
 * The JSON API (/api/...) answers the rest; changes carry the CSRF cookie's value
 * in X-CSRF-Token. A 401 means the login expired: back to the login form.
 *
 * Everything from the server is visitor-controlled data (paths, titles, …), so
 * it is only ever put in the page with textContent, never as HTML.
 * No dependencies, no framework.
 */
(() => {
  "use strict";

  const LOGIN_URL = "/dashboard/login";
  const TIMEOUT_MS = 8000;
  const ROW_H = 44; // px; the live table's rows have this fixed height (dashboard.css)
  const OVERSCAN = 8; // rows drawn beyond the visible ones, for smooth scrolling

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null && v !== false) node.setAttribute(k, v === true ? "" : v);
    if (text != null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text != null) node.textContent = String(text);
    return node;
  }

  const clear = (node) => node.replaceChildren();

  /* ---- formatting ---------------------------------------------------- */
  const num = (v) => (typeof v === "number" && isFinite(v) ? v : 0);
  const pad = (n) => (n < 10 ? "0" : "") + n;

  function duration(ms) {
    const s = Math.floor(num(ms) / 1000);
    if (s < 60) return s + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m " + pad(s % 60) + "s";
    return Math.floor(m / 60) + "h " + pad(m % 60) + "m";
  }

  const ago = (ms) => (ms ? duration(Math.max(0, Date.now() - ms)) + " ago" : "—");

  function clock(ms) {
    if (!ms) return "—";
    const d = new Date(ms);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function stamp(ms) {
    if (!ms) return "—";
    const d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + clock(ms);
  }

  const money = (v, cur) => (cur === "USD" ? "$" : cur === "GBP" ? "£" : "€") + num(v).toFixed(2);
  // Session ids the server makes are 18 characters and are shown whole; an id a page
  // brought itself may have up to 64, shown by its ends (the link's title and the copy button have it all).
  const sidText = (id) => ((id = String(id || "")).length > 24 ? id.slice(0, 12) + "…" + id.slice(-8) : id);
  const words = (name) => String(name).replace(/_/g, " ");

  function midnight() {
    const d = new Date();
    d.setHours(0, 0, 0, 0);
    return d.getTime();
  }

  /* ---- copying an id or the script tag ------------------------------ */
  const copiedUntil = new Map(); // text -> ms: a button drawn again soon after still says "copied"
  const COPIED_MS = 1500;

  // A page served over plain http has no navigator.clipboard: copy through a selection then.
  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    const area = el("textarea", { readonly: true, class: "offscreen", "aria-hidden": "true" });
    area.value = text;
    document.body.appendChild(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    if (!ok) throw new Error("the browser refused to copy");
  }

  function copyButton(text, label) {
    const b = el("button", { type: "button", class: "copy icon", "data-copy": text, "aria-label": label, title: label });
    const icon = b.appendChild(svg("svg", { viewBox: "0 0 16 16", width: "14", height: "14", "aria-hidden": "true", focusable: "false" }));
    icon.appendChild(svg("rect", { x: "5.5", y: "5.5", width: "8", height: "8", rx: "1.5" }));
    icon.appendChild(svg("path", { d: "M10.5 3.5v-1a1 1 0 0 0-1-1h-6a1 1 0 0 0-1 1v6a1 1 0 0 0 1 1h1" }));
    if ((copiedUntil.get(text) || 0) > Date.now()) b.setAttribute("data-copied", "");
    return b;
  }

  async function copyClicked(e) {
    const b = e.target.closest && e.target.closest("button.copy");
    if (!b) return;
    e.preventDefault();
    const text = b.getAttribute("data-copy") || "";
    const label = b.getAttribute("aria-label");
    try {
      await copyText(text);
    } catch (err) {
      b.setAttribute("title", "Could not copy: select the text and copy it yourself");
      return;
    }
    copiedUntil.set(text, Date.now() + COPIED_MS);
    b.setAttribute("data-copied", "");
    b.setAttribute("aria-label", "Copied");
    if (!b.classList.contains("icon")) b.textContent = "Copied";
    setTimeout(() => {
      for (const other of document.querySelectorAll("button.copy[data-copied]")) {
        if (other.getAttribute("data-copy") !== text) continue;
        other.removeAttribute("data-copied");
        if (other === b) {
          b.setAttribute("aria-label", label);
          if (!b.classList.contains("icon")) b.textContent = "Copy";
        }
      }
    }, COPIED_MS);
  }

  /* ---- talking to the server ---------------------------------------- */
  function csrfToken() {
    const m = /(?:^|;\s*)kairos_csrf=([^;]*)/.exec(document.cookie);
    return m ? m[1] : "";
  }

  function toLogin() {
    location.assign(LOGIN_URL + "?next=" + encodeURIComponent(location.pathname + location.search));
  }

  // JSON from the API; rejects with {status, body} on an HTTP error.
  async function call(url, options) {
    const opts = options || {};
    const ctrl = new AbortController();
    const t = setTimeout(() => ctrl.abort(), TIMEOUT_MS);
    const headers = { Accept: "application/json", "X-CSRF-Token": csrfToken(), ...(opts.headers || {}) };
    try {
      const res = await fetch(url, { cache: "no-store", credentials: "same-origin", ...opts, headers, signal: ctrl.signal });
      if (res.status === 401) toLogin(); // the login expired, or the token changed
      const body = await res.json().catch(() => ({}));
      if (!res.ok) throw { status: res.status, body };
      return body;
    } finally {
      clearTimeout(t);
    }
  }

  const postJSON = (url, data) =>
    call(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });
  const postText = (url, text) =>
    call(url, { method: "POST", headers: { "Content-Type": "text/plain; charset=utf-8" }, body: text });

  function setStatus(state, text) {
    const s = $("status");
    if (!s) return;
    s.setAttribute("data-state", state);
    s.textContent = text;
    document.body.classList.toggle("stale", state === "error");
  }

  // The feed socket, reconnected with backoff; `on` maps message types to handlers.
  function openFeed(on) {
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    let backoff = 500;
    let messages = 0;
    const connect = () => {
      const ws = new WebSocket(proto + location.host + "/dashboard/feed?day=" + midnight());
      ws.onopen = () => {
        backoff = 500;
        setStatus("ok", "live");
      };
      ws.onmessage = (e) => {
        const msg = JSON.parse(e.data);
        messages += 1;
        window.kairosFeed = { messages, last: msg.t }; // for the browser tests and the curious
        if (on[msg.t]) on[msg.t](msg);
        setStatus("ok", "live · " + clock(Date.now()));
      };
      ws.onclose = () => {
        setStatus("error", "feed lost · reconnecting");
        // A refused handshake looks like any other close: ask the API whether the login expired.
        call("/api/rules").catch(() => {});
        setTimeout(connect, backoff + Math.random() * 250);
        backoff = Math.min(backoff * 2, 10000);
      };
    };
    connect();
  }

  // Intent scores (0..1) as meters: a glance tells who is about to buy or to leave.
  function scoreMeters(scores) {
    const box = el("span", { class: "scores" });
    const names = Object.keys(scores || {});
    if (!names.length) box.textContent = "—";
    for (const name of names) {
      const v = num(scores[name]);
      const item = el("span", { class: "score", "data-score": name, title: words(name) + " " + v.toFixed(3) });
      item.appendChild(el("meter", { min: "0", max: "1", low: "0.3", high: "0.7", optimum: "1", value: String(v), "aria-label": words(name) }));
      item.appendChild(el("span", null, words(name) + " " + v.toFixed(2)));
      box.appendChild(item);
    }
    return box;
  }

  function nudgeChips(nudges) {
    const box = el("span", { class: "nudges" });
    if (!nudges || !nudges.length) box.textContent = "—";
    for (const [rule, status] of nudges || []) box.appendChild(el("span", { class: "chip status-" + status, "data-rule": rule }, rule + ": " + status));
    return box;
  }

  /* ==== the live page =================================================== */
  function livePage() {
    const rows = new Map(); // sid -> row
    let order = []; // the rows shown, filtered and sorted
    let summary = { shown_1h: 0, conversions_today: 0 };
    let scoreNames = [];
    let ttlMs = 30 * 60 * 1000; // the server's session TTL, from the snapshot
    let known = false; // a snapshot came: before it, an empty list means nothing yet
    let dirty = false;
    const viewport = $("sessions-viewport");
    const body = $("sessions-body");

    function changed() {
      if (!dirty) {
        dirty = true;
        requestAnimationFrame(render);
      }
    }

    function take(list) {
      for (const r of list || []) rows.set(r.sid, r);
      for (const r of list || []) {
        for (const name of Object.keys(r.scores || {})) {
          if (!scoreNames.includes(name)) {
            scoreNames.push(name);
            $("sort").appendChild(el("option", { value: "score:" + name }, words(name) + ", highest first"));
          }
        }
      }
    }

    function matches(r, text, view) {
      if (view === "live" && !r.connected) return false;
      if (view === "checkout" && !(r.connected && (r.page_type === "checkout" || r.checkout_step))) return false;
      if (view === "cart" && !num(r.cart_items)) return false;
      if (view === "nudged" && !(r.nudges && r.nudges.length)) return false;
      if (!text) return true;
      const hay = [r.sid, r.path, r.title, r.page_type, r.country, r.region, r.device, r.browser, r.traffic, r.site].join(" ").toLowerCase();
      return hay.includes(text);
    }

    function sortKey(mode) {
      if (mode === "cart") return (r) => num(r.cart_value);
      if (mode === "time") return (r) => num(r.seen_ms) - num(r.started_ms);
      if (mode.startsWith("score:")) {
        const name = mode.slice(6);
        return (r) => num((r.scores || {})[name]);
      }
      return (r) => num(r.seen_ms);
    }

    function render() {
      dirty = false;
      const text = $("filter-text").value.trim().toLowerCase();
      const view = $("filter-view").value;
      const key = sortKey($("sort").value);
      order = [];
      let live = 0;
      const expired = Date.now() - ttlMs;
      for (const r of rows.values()) {
        if (!r.connected && num(r.seen_ms) < expired) {
          rows.delete(r.sid); // the server has forgotten it by now
          continue;
        }
        if (r.connected) live += 1;
        if (matches(r, text, view)) order.push(r);
      }
      order.sort((a, b) => key(b) - key(a) || (a.sid < b.sid ? -1 : 1));
      $("count-live").textContent = String(live);
      $("count-shown").textContent = String(num(summary.shown_1h));
      $("count-conversions").textContent = String(num(summary.conversions_today));
      $("count-rows").textContent = String(order.length);
      // Nobody yet: what to do about it. Nobody left by the filters: say which, and offer to clear them.
      const nobody = known && rows.size === 0;
      const noMatch = !nobody && order.length === 0;
      $("sessions-empty").hidden = !nobody;
      $("sessions-no-match").hidden = !noMatch;
      viewport.hidden = nobody || noMatch;
      if (noMatch) $("no-match-why").textContent = noMatchWhy(text, view);
      draw();
    }

    const VIEWS = { live: "is connected now", checkout: "is on checkout now", cart: "has a cart", nudged: "was nudged" };

    function noMatchWhy(text, view) {
      const why = [VIEWS[view], text && "mentions “" + $("filter-text").value.trim() + "”"].filter(Boolean).join(" and ");
      const n = rows.size;
      return n + (n === 1 ? " session is" : " sessions are") + " listed, but none " + why + ".";
    }

    // Only the rows in view (and a few beyond) are in the page: 1,000 sessions cost what 25 do.
    function draw() {
      const top = viewport.scrollTop;
      const height = viewport.clientHeight || 600;
      const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
      const last = Math.min(order.length, Math.ceil((top + height) / ROW_H) + OVERSCAN);
      const focused = document.activeElement && document.activeElement.closest ? document.activeElement.closest("tr[data-sid]") : null;
      const focusedSid = focused ? focused.getAttribute("data-sid") : null;
      const frag = document.createDocumentFragment();
      frag.appendChild(spacer(first * ROW_H));
      for (let i = first; i < last; i++) frag.appendChild(rowFor(order[i]));
      frag.appendChild(spacer((order.length - last) * ROW_H));
      body.replaceChildren(frag);
      if (focusedSid) {
        const again = body.querySelector('tr[data-sid="' + CSS.escape(focusedSid) + '"] a');
        if (again) again.focus({ preventScroll: true });
      }
    }

    function spacer(h) {
      const tr = el("tr", { class: "spacer", "aria-hidden": "true" });
      tr.style.height = h + "px";
      return tr;
    }

    function rowFor(r) {
      const tr = el("tr", { "data-sid": r.sid, class: "session-row" + (r.connected ? "" : " disconnected") });
      const sid = tr.appendChild(el("td", { class: "sid" }));
      sid.appendChild(el("span", { class: "dot " + (r.connected ? "on" : "off"), title: r.connected ? "connected" : "not connected" }));
      sid.appendChild(el("a", { href: "/dashboard/sessions/" + encodeURIComponent(r.sid), title: r.sid }, sidText(r.sid)));
      sid.appendChild(copyButton(r.sid, "Copy session id " + r.sid));
      // Two short lines, the device and where from, so the column stays narrow and nothing is cut.
      const where = r.region && r.region !== "unknown" ? r.country + " " + r.region : r.country || "unknown";
      const who = tr.appendChild(el("td", { class: "who", title: [r.os, r.site].filter(Boolean).join(" · ") }));
      who.appendChild(el("span", null, [r.device, r.browser].filter(Boolean).join(" · ") || "—"));
      who.appendChild(el("span", null, [where, r.traffic].filter(Boolean).join(" · ")));
      const page = tr.appendChild(el("td", { class: "page", title: r.title || r.path || "" }));
      page.appendChild(el("span", { class: "path" }, r.path || "—"));
      // The page's type and how far down it they got, under its path: one column fewer to fit in 1,280 px.
      const more = page.appendChild(el("span", { class: "more" }));
      if (r.page_type) more.appendChild(el("span", { class: "tag", "data-page-type": r.page_type }, r.page_type));
      more.appendChild(el("span", { class: "depth", title: "deepest scroll on this page" }, "scrolled " + num(r.scroll_pct) + "%"));
      tr.appendChild(el("td", { class: "num" }, duration(num(r.seen_ms) - num(r.started_ms))));
      tr.appendChild(el("td", { class: "num cart" }, num(r.cart_items) ? money(r.cart_value, r.currency) + " · " + num(r.cart_items) : "—"));
      tr.appendChild(el("td", { class: "intent" })).appendChild(scoreMeters(r.scores));
      tr.appendChild(el("td", { class: "nudges-cell" })).appendChild(nudgeChips(r.nudges));
      tr.appendChild(el("td", { class: "seen", title: stamp(r.seen_ms) }, ago(r.seen_ms)));
      return tr;
    }

    viewport.addEventListener("scroll", () => requestAnimationFrame(draw), { passive: true });
    window.addEventListener("resize", changed, { passive: true });
    for (const id of ["filter-text", "filter-view", "sort"]) $(id).addEventListener("input", changed);
    $("filters").addEventListener("submit", (e) => e.preventDefault());
    $("filters-clear").addEventListener("click", () => {
      $("filter-text").value = "";
      $("filter-view").value = "all";
      changed();
      $("filter-text").focus();
    });
    const tag = '<script src="' + location.origin + '/k.js" data-site="mystore" async></script>';
    $("snippet-tag").textContent = tag;
    $("snippet-copy").setAttribute("data-copy", tag);
    setInterval(changed, 5000); // "seen 5 s ago" ages even when nothing happens

    openFeed({
      snapshot(m) {
        rows.clear();
        known = true;
        ttlMs = num(m.session_ttl_s) * 1000 || ttlMs;
        take(m.rows);
        summary = m.summary || summary;
        changed();
      },
      rows(m) {
        take(m.rows);
        for (const sid of m.gone || []) rows.delete(sid);
        changed();
      },
      summary(m) {
        summary = m.summary || summary;
        changed();
      },
    });
  }

  /* ==== one session's view ============================================== */
  const FIELDS = [
    ["vid", "Visitor", String],
    ["site", "Site", String],
    ["connected", "Connected", (v) => (v ? "yes" : "no")],
    ["device", "Device", String],
    ["browser", "Browser", String],
    ["os", "OS", String],
    ["country", "Country", String],
    ["traffic", "Came from", String],
    ["referrer", "Referrer", String],
    ["started_ms", "Started", stamp],
    ["seen_ms", "Last seen", (v) => stamp(v) + " (" + ago(v) + ")"],
    ["path", "Page", String],
    ["page_type", "Page type", String],
    ["pages", "Pages viewed", String],
    ["dwell_ms", "Time on site (visible)", duration],
    ["scroll_pct", "Deepest scroll", (v) => num(v) + "%"],
    ["clicks", "Clicks", String],
    ["exit_intents", "Exit intents", String],
    ["cart_value", "Cart value", (v) => money(v)],
    ["cart_items", "Cart items", String],
    ["checkout_step", "Checkout step", String],
    ["purchases", "Purchases", String],
  ];

  // A timeline entry's headline: the event, the rule shown, held or skipped, the visitor's act.
  const HEADLINE = { event: "e", feedback: "act", show: "rule", held: "rule", skip: "rule", timer: "rule" };
  const SKIPPED = {
    paused: "paused", busy: "another nudge on screen", cooldown: "in cooldown", visitor_capped: "visitor cap spent",
    globally_capped: "global cap spent", rule_capped: "rule cap spent", capped: "session cap spent", dismissed: "dismissed before",
    history_lost: "session's history lost",
  };

  // What became of a delayed rule's timer (kairos.rules.delayed.TIMELINE_OUTCOMES), in words.
  const inSeconds = (ms) => (num(ms) < 60000 ? (num(ms) / 1000).toFixed(1) + " s" : duration(ms));
  const TIMER = {
    armed: (e) => "armed, due in " + inSeconds(e.after_ms) + " (" + clock(e.due_ms) + ")",
    fired: (e) => "fired, " + num(e.late_ms) + " ms late: shown",
    cancelled: (e) => "cancelled: " + e.why,
    dropped: (e) => "dropped: " + (e.why || "no page open") + ", and its rule drops nudges offline",
    kept: () => "kept for the visitor's next page view (no page open)",
    capped: (e) => "came due, not shown: " + (SKIPPED[e.why] || e.why),
    replaced: (e) => "replaced: armed again before it came due (" + clock(e.due_ms) + ")",
    session_gone: () => "came due after the session ended",
    rule_gone: () => "came due, but its rule is no longer in force",
  };

  function timerWords(entry) {
    const say = TIMER[entry.outcome];
    // Lines written before outcomes were logged say only that the timer came due.
    return (entry.rule || "") + " " + (say ? say(entry) : "came due, " + num(entry.late_ms) + " ms late");
  }

  // Why an overlay was taken down (kairos.wire.HIDE_REASONS), in words.
  const HIDDEN = {
    page: "the visitor left the page", page_type: "the visitor left pages of that type", until: "its rule's until held",
    ttl: "its time was up", staff: "taken down by staff", replaced: "a newer nudge replaced it",
  };

  // Which arm of which experiment a show (or a held-out show) was in.
  function armWords(entry) {
    if (entry.experiment === "*") return entry.arm === "holdout" ? "the program's holdout" : "not in the program's holdout";
    return "experiment " + entry.experiment + ", arm " + entry.arm;
  }

  function headline(entry) {
    if (entry.kind === "timer") return timerWords(entry);
    if (entry.kind === "held") return "held out: " + entry.rule + (entry.experiment ? " (" + armWords(entry) + ")" : "") + " — would have shown";
    if (entry.kind === "feedback" && entry.act === "hidden") return "hidden: " + (HIDDEN[entry.why] || entry.why || "its moment passed");
    if (entry.kind === "score") {
      const top = (entry.top || []).map((p) => p[0] + " " + (p[1] >= 0 ? "+" : "") + p[1].toFixed(2)).join(", ");
      return words(entry.score) + " " + num(entry.before).toFixed(2) + " → " + num(entry.after).toFixed(2) + (top ? " (" + top + ")" : "");
    }
    const h = entry[HEADLINE[entry.kind]] || entry.what || "";
    if (entry.kind === "skip") return h + " not shown: " + (SKIPPED[entry.why] || entry.why);
    if (entry.kind === "show" && entry.by) return (h === "staff" ? "chat invitation" : h) + " sent by " + entry.by;
    if (entry.kind === "show" && entry.arm && entry.experiment) return h + " (" + armWords(entry) + ")";
    return h;
  }

  function extras(entry) {
    if (entry.kind === "score") return "";
    const skip = new Set(["ts", "kind", "what", HEADLINE[entry.kind], entry.kind === "skip" ? "why" : "", entry.kind === "show" ? "by" : ""]);
    if (entry.kind === "timer") ["outcome", "why", "after_ms", "due_ms"].forEach((k) => skip.add(k));
    if (entry.kind === "feedback") skip.add("why");
    if ((entry.kind === "show" || entry.kind === "held") && entry.experiment) ["arm", "experiment"].forEach((k) => skip.add(k));
    return Object.entries(entry)
      .filter(([k]) => !skip.has(k))
      .map(([k, v]) => k + "=" + (v !== null && typeof v === "object" ? JSON.stringify(v) : String(v)))
      .join("  ");
  }

  // "0.77 = logistic(bias -3.00, add_to_cart +2.40, …)"; a trained model's:
  // "0.64 from model.json: baseline -1.70, adds_to_cart=2 +1.10, …"
  function scoreWords(score) {
    const parts = (score.top || []).map((p) => {
      const seen = p.length > 2 ? "=" + (p[2] === null ? "missing" : String(p[2])) : "";
      return p[0] + seen + " " + (p[1] >= 0 ? "+" : "") + p[1].toFixed(2);
    });
    const list = parts.length ? ", " + parts.join(", ") : "";
    if (score.model) return score.value.toFixed(3) + " from " + score.model + ": baseline " + score.bias.toFixed(2) + list;
    return score.value.toFixed(3) + " = logistic(bias " + score.bias.toFixed(2) + list + ")";
  }

  function sessionPage() {
    const sid = $("detail").getAttribute("data-sid");
    let loading = false;
    let again = false;

    function render(s) {
      $("detail-status").textContent = s.open ? "" : "No page open: a nudge sent now would reach nobody.";
      $("detail-status").setAttribute("data-state", s.open ? "ok" : "gone");
      const dl = $("detail-fields");
      clear(dl);
      for (const [key, label, fmt] of FIELDS) {
        const v = s[key];
        const item = el("div", { class: "field" });
        item.appendChild(el("dt", null, label));
        item.appendChild(el("dd", { "data-field": key }, v == null || v === "" ? "—" : fmt(v)));
        dl.appendChild(item);
      }
      $("onscreen").hidden = !s.onscreen;
      $("onscreen-oid").textContent = s.onscreen || "";
      renderScores(s.scores || {});
      renderExperiments(s.experiments || []);
      renderRules(s.rules || []);
      renderLog(Array.isArray(s.log) ? s.log : []);
    }

    function renderScores(scores) {
      const box = $("detail-scores");
      clear(box);
      const names = Object.keys(scores);
      $("detail-scores-empty").hidden = names.length > 0;
      for (const name of names) {
        const sc = scores[name];
        const item = el("div", { class: "score-field" });
        item.appendChild(el("meter", { min: "0", max: "1", low: "0.3", high: "0.7", optimum: "1", value: String(sc.value), "aria-label": words(name) }));
        item.appendChild(el("strong", null, words(name)));
        item.appendChild(el("span", { "data-score": name }, scoreWords(sc)));
        box.appendChild(item);
      }
    }

    // The visitor's arm in each running experiment: recorded at their first exposure, or the one they would get.
    function renderExperiments(list) {
      const box = $("detail-experiments");
      clear(box);
      $("detail-experiments-empty").hidden = list.length > 0;
      for (const x of list) {
        const item = box.appendChild(el("li", { "data-experiment": x.id, "data-exposed": String(!!x.exposed) }));
        item.appendChild(el("strong", null, x.id === "*" ? "The program's holdout" : "Experiment " + x.id));
        if (x.rule) item.appendChild(el("span", { class: "summary" }, " on rule " + x.rule));
        item.append(": ");
        let says;
        if (x.held_by_program) says = "none: the program's holdout keeps this visitor from every nudge";
        else if (x.exposed && x.id === "*") says = "arm " + x.arm + (x.arm === "holdout" ? " (shown no nudge at all)" : " (gets the rules' nudges)");
        else if (x.exposed) says = "arm " + x.arm + (x.arm === "holdout" ? " (shown nothing)" : "");
        else says = "would be " + x.arm + " (not yet exposed)";
        item.appendChild(el("span", { class: "arm" }, says));
      }
    }

    function renderRules(rules) {
      const tbody = $("rules-now").querySelector("tbody");
      clear(tbody);
      for (const r of rules) {
        const tr = el("tr", { "data-rule": r.rule });
        tr.appendChild(el("th", { scope: "row" }, r.rule));
        tr.appendChild(el("td", null, r.when + (r.after_s ? " + " + r.after_s + " s" : "")));
        const conds = tr.appendChild(el("td", { class: "conds" }));
        if (!r.conditions.length) conds.textContent = "none";
        for (const c of r.conditions) {
          const value = c.value === "" || c.value == null ? "(read at the event)" : String(c.value);
          conds.appendChild(el("div", { class: c.ok ? "ok" : "no" }, (c.ok ? "✓ " : "✗ ") + c.want + " — now " + value));
        }
        tr.appendChild(el("td", { class: "num" }, r.fired + (r.per_session ? " of " + r.per_session : "")));
        const verdict = r.blocked ? "blocked: " + (SKIPPED[r.blocked] || r.blocked) : r.holds ? "fires at its next " + r.when : "waits: a condition does not hold";
        tr.appendChild(el("td", { class: "verdict " + (r.blocked ? "blocked" : r.holds ? "ready" : "waiting") }, verdict));
        tbody.appendChild(tr);
      }
    }

    function renderLog(log) {
      const tbody = $("detail-log").querySelector("tbody");
      clear(tbody);
      for (const entry of log) {
        const tr = el("tr", { class: "kind-" + (entry.kind || "other") });
        tr.appendChild(el("td", { class: "ts", title: stamp(entry.ts) }, clock(entry.ts)));
        tr.appendChild(el("td", null)).appendChild(el("span", { class: "tag kind" }, entry.kind || "?"));
        tr.appendChild(el("td", { class: "what" }, headline(entry)));
        tr.appendChild(el("td", { class: "extra" }, extras(entry)));
        tbody.appendChild(tr);
      }
      $("detail-log").hidden = !log.length;
      $("detail-log-empty").hidden = log.length > 0;
    }

    // One request at a time; a change that comes meanwhile asks for one more.
    async function load() {
      if (loading) {
        again = true;
        return;
      }
      loading = true;
      try {
        render(await call("/api/sessions/" + encodeURIComponent(sid)));
      } catch (err) {
        const st = $("detail-status");
        st.textContent = err && err.status === 404 ? "This session is over: the server no longer knows it." : "server unreachable — showing the last known details";
        st.setAttribute("data-state", err && err.status === 404 ? "gone" : "error");
      } finally {
        loading = false;
        if (again) {
          again = false;
          load();
        }
      }
    }

    // The overlay staff see on the visitor's screen, taken down (POST …/hide names it,
    // so one that replaced it meanwhile stays).
    $("take-down").addEventListener("click", async () => {
      const out = $("take-down-result");
      $("take-down").disabled = true;
      try {
        await postJSON("/api/sessions/" + encodeURIComponent(sid) + "/hide", { oid: $("onscreen-oid").textContent });
        out.textContent = "Taken down.";
        out.setAttribute("data-state", "ok");
      } catch (err) {
        out.textContent = (err && err.body && err.body.error) || "not taken down: the server did not answer";
        out.setAttribute("data-state", "error");
      } finally {
        $("take-down").disabled = false;
        load();
      }
    });

    const form = $("nudge-form");
    const kind = () => form.querySelector("input[name=kind]:checked").value;
    form.addEventListener("change", () => {
      for (const n of form.querySelectorAll(".for-chat")) n.hidden = kind() !== "chat";
      for (const n of form.querySelectorAll(".for-rule")) n.hidden = kind() !== "rule";
    });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const out = $("nudge-result");
      const data = kind() === "chat" ? { chat: $("nudge-message").value, agent: $("nudge-agent").value } : { rule: $("nudge-rule").value };
      $("nudge-send").disabled = true;
      out.textContent = "sending…";
      out.removeAttribute("data-state");
      try {
        await postJSON("/api/sessions/" + encodeURIComponent(sid) + "/nudge", data);
        out.textContent = "Sent: it is on the visitor's page.";
        out.setAttribute("data-state", "ok");
      } catch (err) {
        out.textContent = (err && err.body && err.body.error) || "not sent: the server did not answer";
        out.setAttribute("data-state", "error");
      } finally {
        $("nudge-send").disabled = false;
        load();
      }
    });

    openFeed({
      snapshot: load,
      rows(m) {
        if ((m.rows || []).some((r) => r.sid === sid) || (m.gone || []).includes(sid)) load();
      },
      paused: load,
      rules: load,
    });
  }

  /* ==== the rules page =================================================== */
  const COUNTERS = ["triggered", "shown", "clicked", "dismissed", "converted"];
  const DAY_MS = 86400000;
  const COLOURS = { triggered: "#9aa4b2", shown: "#2f5bd3", clicked: "#1f9d55", dismissed: "#c27c0e", converted: "#8b3fd1" };

  function rulesPage() {
    let stats = null;
    let picked = null; // a rule id, or null for all rules together
    let paused = {};

    async function loadStats() {
      try {
        // tz: bins start on round times of this clock (the server's may differ)
        const tz = -new Date().getTimezoneOffset();
        stats = await call("/api/stats?period=" + encodeURIComponent($("period").value) + "&tz=" + tz);
        paused = stats.paused || paused;
        $("attribution").textContent = Math.round(num(stats.attribution_s) / 3600) + " h";
        renderStats();
      } catch (err) {
        setStatus("error", "counters unavailable");
      }
    }

    function renderStats() {
      for (const tr of document.querySelectorAll("#rule-stats tbody tr[data-rule]")) {
        const rule = tr.getAttribute("data-rule");
        const totals = (stats && stats.totals[rule]) || {};
        for (const c of COUNTERS) tr.querySelector('[data-counter="' + c + '"]').textContent = String(num(totals[c]));
        tr.classList.toggle("picked", rule === picked);
        const btn = tr.querySelector("button.pause");
        if (!btn) continue; // nudges sent by hand cannot be paused
        const isPaused = Object.prototype.hasOwnProperty.call(paused, rule);
        btn.textContent = isPaused ? "Resume" : "Pause";
        btn.setAttribute("aria-pressed", String(isPaused));
        tr.classList.toggle("paused", isPaused);
      }
      drawChart();
    }

    function series() {
      const n = stats ? stats.starts.length : 0;
      const out = {};
      for (const c of COUNTERS) out[c] = new Array(n).fill(0);
      if (!stats) return out;
      for (const [rule, per] of Object.entries(stats.series)) {
        if (rule === "*" || (picked && rule !== picked)) continue;
        for (const c of COUNTERS) (per[c] || []).forEach((v, i) => (out[c][i] += v));
      }
      return out;
    }

    // A line per counter over the stretch of the period that has counts (the server picks
    // the bin size from it), with axes, ticks on round times, and a legend.
    function drawChart() {
      const chart = $("chart");
      clear(chart);
      const period = $("period").selectedOptions[0].textContent;
      $("chart-title").textContent = (picked ? "Rule " + picked : "All rules") + ", over the last " + period;
      if (!stats) return;
      const W = 900, H = 260, L = 48, R = 130, T = 16, B = 36;
      const n = stats.starts.length;
      chart.setAttribute("data-bins", String(n));
      chart.setAttribute("data-bin-ms", String(stats.bin_ms));
      if (!n) {
        chart.appendChild(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "nothing" }, "Nothing counted in the last " + period + " yet."));
        return;
      }
      const data = series();
      const max = Math.max(1, ...COUNTERS.flatMap((c) => data[c]));
      const step = niceStep(max);
      const top = Math.ceil(max / step) * step;
      const x = (i) => L + (i * (W - L - R)) / n; // where bin i starts; x(n) is where the last one ends
      const y = (v) => T + (H - T - B) * (1 - v / top);
      for (let v = 0; v <= top; v += step) {
        chart.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
        chart.appendChild(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, v));
      }
      chart.appendChild(svg("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
      chart.appendChild(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
      const tickMs = tickEvery(stats.bin_ms, n);
      let lastDay = null;
      for (let i = 0; i <= n; i++) {
        const t = stats.starts[0] + i * stats.bin_ms;
        if (!onTick(t, tickMs, i * stats.bin_ms)) continue;
        const d = new Date(t);
        const day = d.toDateString();
        // Times of day for bins under a day, and the date where a new day starts.
        const label = stats.bin_ms >= DAY_MS || (lastDay !== null && day !== lastDay && !d.getHours() && !d.getMinutes())
          ? d.toLocaleDateString(undefined, { day: "numeric", month: "short" })
          : pad(d.getHours()) + ":" + pad(d.getMinutes());
        lastDay = day;
        chart.appendChild(svg("line", { x1: x(i), x2: x(i), y1: H - B, y2: H - B + 4, class: "axis" }));
        chart.appendChild(svg("text", { x: x(i), y: H - B + 16, "text-anchor": "middle", class: "tick x" }, label));
      }
      chart.appendChild(svg("text", { x: L, y: H - 2, class: "axis-label" }, "time (bins of " + (stats.bin || duration(stats.bin_ms)) + ")"));
      chart.appendChild(svg("text", { x: 12, y: T + (H - T - B) / 2, class: "axis-label", transform: "rotate(-90 12 " + (T + (H - T - B) / 2) + ")", "text-anchor": "middle" }, "count"));
      COUNTERS.forEach((c, k) => {
        // Each bin's count at its middle; dots too, so a lone bin still shows.
        const pts = data[c].map((v, i) => x(i + 0.5) + "," + y(v));
        chart.appendChild(svg("polyline", { points: pts.join(" "), fill: "none", stroke: COLOURS[c], "stroke-width": 2, "data-counter": c }));
        if (n <= 60) for (const p of pts) chart.appendChild(svg("circle", { cx: p.split(",")[0], cy: p.split(",")[1], r: 2.5, fill: COLOURS[c] }));
        chart.appendChild(svg("rect", { x: W - R + 16, y: T + k * 20, width: 12, height: 12, fill: COLOURS[c] }));
        chart.appendChild(svg("text", { x: W - R + 34, y: T + k * 20 + 10, class: "legend" }, c + " " + data[c].reduce((a, b) => a + b, 0)));
      });
    }

    // The time between labels on the time axis: a round multiple of the bin, at most 8 labels.
    function tickEvery(binMs, n) {
      const MIN = 60000;
      const steps = [5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080].map((m) => m * MIN);
      return steps.find((t) => t >= binMs && t % binMs === 0 && (n * binMs) / t <= 8) || binMs * Math.ceil(n / 8);
    }

    // A label goes where the local clock is on a round multiple of the step (every few days: from the first day).
    function onTick(t, tickMs, sinceFirst) {
      if (tickMs > DAY_MS) return sinceFirst % tickMs === 0;
      return (t - new Date(t).getTimezoneOffset() * 60000) % tickMs === 0;
    }

    function niceStep(max) {
      const raw = max / 4;
      const mag = Math.pow(10, Math.floor(Math.log10(raw)));
      for (const m of [1, 2, 5, 10]) if (raw <= m * mag) return Math.max(1, m * mag);
      return Math.max(1, 10 * mag);
    }

    $("period").addEventListener("change", loadStats);
    $("rule-stats").addEventListener("click", async (e) => {
      const pick = e.target.closest("button.pick");
      if (pick) {
        picked = picked === pick.getAttribute("data-rule") ? null : pick.getAttribute("data-rule");
        renderStats();
        return;
      }
      const btn = e.target.closest("button.pause");
      if (!btn) return;
      const rule = btn.getAttribute("data-rule");
      btn.disabled = true;
      try {
        const res = await postJSON("/api/rules/" + encodeURIComponent(rule) + "/pause", { paused: btn.getAttribute("aria-pressed") !== "true" });
        paused = res.all;
        renderStats();
      } catch (err) {
        setStatus("error", (err && err.body && err.body.error) || "could not change the rule");
      } finally {
        btn.disabled = false;
      }
    });

    /* -- the editor: checked as you type, applied whole or not at all -- */
    const editor = rulesEditor();
    let inForce = null; // the document as the server gave it: Apply needs an edit of it
    let valid = null; // the last text the server checked and found valid
    let applying = false;
    let reloading = false;
    // Once: after an Apply both its answer and the feed's word of new rules ask for a
    // reload, and a second reload aborts the first one's navigation.
    const reload = () => {
      if (!reloading) {
        reloading = true;
        location.reload();
      }
    };
    let checkTimer = null;
    let checked = 0;

    // Apply: an edit of what is in force, checked by the server as it is now, and valid.
    function updateApply() {
      const text = editor.text();
      $("rules-apply").disabled = applying || inForce === null || text === inForce || text !== valid;
    }

    // CodeMirror (editor.js) when it loaded, else the page's textarea, behind the same calls.
    // The hidden textarea keeps CodeMirror's text, as the document's form field.
    function rulesEditor() {
      const area = $("rules-editor");
      if (window.KairosEditor) {
        const host = $("rules-editor-view");
        const ed = window.KairosEditor.mount(host, {
          label: "Rules file (YAML)",
          onChange(text) {
            area.value = text;
            edited();
          },
        });
        host.hidden = false;
        area.hidden = true;
        $("rules-keys").hidden = false;
        return {
          ...ed,
          setText(text) {
            ed.setText(text);
            area.value = text;
          },
          invalid() {}, // the editor marks itself (aria-invalid) from the problems it is given
        };
      }
      area.addEventListener("input", edited);
      return {
        text: () => area.value,
        setText: (text) => (area.value = text),
        setProblems() {},
        goTo(n) {
          const at = area.value.split("\n").slice(0, n - 1).reduce((sum, line) => sum + line.length + 1, 0);
          area.focus();
          area.setSelectionRange(at, at);
        },
        invalid: (bad) => (bad ? area.setAttribute("aria-invalid", "true") : area.removeAttribute("aria-invalid")),
      };
    }

    function showProblems(res) {
      const out = $("rules-problems");
      const problems = res.ok ? [] : res.problems || [];
      clear(out);
      out.removeAttribute("aria-busy");
      editor.setProblems(problems.map((p) => ({ line: p.line, message: (p.path ? p.path + ": " : "") + p.reason })));
      editor.invalid(!res.ok);
      out.setAttribute("data-state", res.ok ? "ok" : "error");
      if (res.ok) {
        out.textContent = "Valid: " + res.rules.length + " rule" + (res.rules.length === 1 ? "" : "s") + ".";
        return;
      }
      const list = out.appendChild(el("ul", { class: "problem-list" }));
      for (const p of problems) {
        const item = list.appendChild(el("li"));
        if (p.line) {
          item.appendChild(el("button", { type: "button", class: "linkish goto", "data-line": p.line, title: "Go to line " + p.line }, "line " + p.line));
          item.append(": ");
        }
        item.append((p.path ? p.path + ": " : "") + p.reason);
      }
    }

    async function check() {
      const text = editor.text();
      const ticket = ++checked;
      let res;
      try {
        res = await postText("/api/rules/check", text);
      } catch (err) {
        res = { ok: false, problems: [{ reason: (err && err.body && err.body.error) || "could not check: the server did not answer" }] };
      }
      if (ticket !== checked) return; // the text changed meanwhile: a newer check answers for it
      valid = res.ok ? text : null;
      showProblems(res);
      updateApply();
    }

    // The old problems stay marked (they follow the text) until the check of this text answers.
    function edited() {
      updateApply();
      $("rules-problems").setAttribute("aria-busy", "true");
      clearTimeout(checkTimer);
      checkTimer = setTimeout(check, 300);
    }

    $("rules-problems").addEventListener("click", (e) => {
      const go = e.target.closest("button.goto");
      if (go) editor.goTo(Number(go.getAttribute("data-line")));
    });

    $("rules-apply").addEventListener("click", async () => {
      const out = $("rules-result");
      applying = true;
      updateApply();
      try {
        const res = await postText("/api/rules/apply", editor.text());
        out.textContent = "Version " + res.version + " is in force: " + res.rules.length + " rules.";
        out.setAttribute("data-state", "ok");
        reload(); // the counters table lists the rules in force
      } catch (err) {
        applying = false;
        const body = (err && err.body) || {};
        if (body.problems) {
          valid = null;
          showProblems(body);
        }
        out.textContent = "Not applied: " + (body.error || "the document has problems; the rules in force did not change.");
        out.setAttribute("data-state", "error");
        updateApply();
      }
    });

    // The latest changes made from the dashboard or the admin API (an Apply reloads the page, and so this).
    (async () => {
      let list = [];
      try {
        list = (await call("/api/rules/history")).history || [];
      } catch (err) {
        return;
      }
      const tbody = $("rules-history").querySelector("tbody");
      for (const h of list) {
        const tr = tbody.appendChild(el("tr"));
        tr.appendChild(el("td", { class: "ts", title: stamp(h.at_ms) }, stamp(h.at_ms)));
        tr.appendChild(el("td", null, h.what));
        tr.appendChild(el("td", { class: "num" }, h.version));
        tr.appendChild(el("td", null, h.via));
      }
      $("rules-history").hidden = !list.length;
      $("rules-history-empty").hidden = list.length > 0;
    })();

    (async () => {
      try {
        const state = await call("/api/rules");
        inForce = state.text || "";
        editor.setText(inForce);
        paused = state.paused || {};
        $("rules-source").textContent = state.file
          ? "Apply writes " + state.file + ", which the server reloads (and so does any other server watching it)."
          : "No rules file (the server was started without --rules): Apply changes the rules in memory only, and a restart loses them.";
        if (inForce) check();
        else $("rules-problems").textContent = "No rules in force yet: write a rules document here (docs/rules.md describes the format).";
      } catch (err) {
        $("rules-problems").textContent = "could not read the rules";
      }
    })();
    loadStats();
    openFeed({
      summary: loadStats, // counters moved, perhaps: the feed says so every few seconds
      paused(m) {
        paused = m.paused || {};
        renderStats();
      },
      rules(m) {
        if (applying || editor.text() === inForce) return reload();
        // Someone else put new rules in force: keep this edit, and say so.
        const out = $("rules-result");
        out.textContent = "Rules version " + m.version + " was put in force elsewhere. Your edit is kept: applying it replaces them.";
        out.setAttribute("data-state", "error");
      },
    });
  }

  // For the pages kept in files of their own (experiments.js); they run after this one.
  window.KairosDashboard = { $, el, svg, clear, call, postJSON, setStatus, stamp, clock };

  function init() {
    document.addEventListener("click", copyClicked);
    const page = document.body.getAttribute("data-page");
    if (page === "live") livePage();
    else if (page === "session") sessionPage();
    else if (page === "rules") rulesPage();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
