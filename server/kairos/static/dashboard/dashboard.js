/* Kairos staff dashboard: live sessions, polled from the server's JSON API.
 *
 *   GET /api/sessions        -> {"sessions": [session, ...]}
 *   GET /api/sessions/{sid}  -> session + {"log": [{ts, kind, what, ...}]}
 *
 * session = {sid, vid, site, started_ms, seen_ms, path, page_type, pages,
 *            dwell_ms, scroll_pct, clicks, exit_intents, cart_value,
 *            cart_items, traffic, device, country, connected,
 *            overlays: {oid: {rule, status}}}
 *
 * Staff only: the page and the API need a login (the session cookie goes
 * with every same-origin fetch). When it has expired the API answers 401 and
 * the page goes to the login form. Requests carry the CSRF cookie's value in
 * X-CSRF-Token, which the server requires of anything that changes state.
 *
 * Everything from the API is visitor-controlled data (paths, titles, …), so
 * it is only ever put in the page with textContent, never as HTML.
 * No dependencies, no framework.
 */
(function () {
  "use strict";

  var POLL_MS = 2000;
  var TIMEOUT_MS = 5000;
  var LIST_URL = "/api/sessions";
  var LOGIN_URL = "/dashboard/login";

  var selectedSid = null;
  var lastSessions = [];
  var timer = null;

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        if (Object.prototype.hasOwnProperty.call(attrs, k) && attrs[k] != null) node.setAttribute(k, attrs[k]);
      }
    }
    if (text != null) node.textContent = String(text);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  /* ---- formatting ---------------------------------------------------- */
  function num(v) {
    return typeof v === "number" && isFinite(v) ? v : 0;
  }

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function duration(ms) {
    var s = Math.floor(num(ms) / 1000);
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + "m " + pad(s % 60) + "s";
    return Math.floor(m / 60) + "h " + pad(m % 60) + "m";
  }

  function ago(ms) {
    if (!ms) return "—";
    var d = Date.now() - ms;
    if (d < 0) d = 0;
    return duration(d) + " ago";
  }

  function clock(ms) {
    if (!ms) return "—";
    var d = new Date(ms);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function stamp(ms) {
    if (!ms) return "—";
    var d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + clock(ms);
  }

  function money(v) {
    return "€" + num(v).toFixed(2);
  }

  function shortId(id) {
    id = String(id || "");
    return id.length > 10 ? id.slice(0, 10) + "…" : id;
  }

  function overlayList(overlays) {
    var out = [];
    if (!overlays || typeof overlays !== "object") return out;
    for (var oid in overlays) {
      if (Object.prototype.hasOwnProperty.call(overlays, oid)) {
        var o = overlays[oid] || {};
        out.push({ oid: oid, rule: o.rule || "?", status: o.status || "?" });
      }
    }
    return out;
  }

  /* ---- fetching ------------------------------------------------------ */
  function csrfToken() {
    var m = /(?:^|;\s*)kairos_csrf=([^;]*)/.exec(document.cookie);
    return m ? m[1] : "";
  }

  function toLogin() {
    location.assign(LOGIN_URL + "?next=" + encodeURIComponent(location.pathname + location.search));
  }

  function getJSON(url) {
    var ctrl = typeof AbortController === "function" ? new AbortController() : null;
    var t = ctrl
      ? setTimeout(function () {
          ctrl.abort();
        }, TIMEOUT_MS)
      : null;
    var headers = { Accept: "application/json", "X-CSRF-Token": csrfToken() };
    return fetch(url, { cache: "no-store", credentials: "same-origin", headers: headers, signal: ctrl ? ctrl.signal : undefined })
      .then(function (res) {
        if (res.status === 401) toLogin(); // the session expired, or the token changed
        if (!res.ok) {
          var err = new Error("HTTP " + res.status);
          err.status = res.status;
          throw err;
        }
        return res.json();
      })
      .finally(function () {
        if (t) clearTimeout(t);
      });
  }

  function setStatus(state, text) {
    var s = $("status");
    s.setAttribute("data-state", state);
    s.textContent = text;
    document.body.classList.toggle("stale", state === "error");
  }

  /* ---- sessions table ------------------------------------------------ */
  function cell(row, text, cls, title) {
    var td = el("td", { "class": cls || null, title: title || null }, text);
    row.appendChild(td);
    return td;
  }

  function renderSessions(sessions) {
    var body = $("sessions-body");
    var focusedSid = document.activeElement && document.activeElement.getAttribute
      ? document.activeElement.getAttribute("data-sid")
      : null;
    clear(body);
    sessions.forEach(function (s) {
      var row = el("tr", { "data-sid": s.sid, tabindex: "0", "class": "session-row" });
      if (s.sid === selectedSid) row.classList.add("selected");
      if (!s.connected) row.classList.add("disconnected");

      var sidCell = cell(row, "", "sid", s.sid);
      sidCell.appendChild(el("span", { "class": "dot " + (s.connected ? "on" : "off"), title: s.connected ? "connected" : "not connected" }));
      sidCell.appendChild(el("code", null, shortId(s.sid)));

      cell(row, s.site || "", "site");
      var page = cell(row, "", "page", s.path || "");
      page.appendChild(el("span", { "class": "path" }, s.path || "—"));
      if (s.page_type) page.appendChild(el("span", { "class": "tag" }, s.page_type));
      cell(row, num(s.pages), "num");
      cell(row, duration(s.dwell_ms), "num");
      cell(row, num(s.scroll_pct) + "%", "num");
      cell(row, num(s.clicks), "num");
      cell(row, num(s.exit_intents), "num");
      cell(row, num(s.cart_items) ? money(s.cart_value) + " · " + num(s.cart_items) : "—", "num");
      scoreCell(row, s.scores);

      var ov = cell(row, "", "overlays");
      var list = overlayList(s.overlays);
      if (!list.length) ov.textContent = "—";
      list.forEach(function (o) {
        ov.appendChild(el("span", { "class": "chip status-" + o.status, title: o.oid }, o.rule + ": " + o.status));
      });
      cell(row, ago(s.seen_ms), "seen", stamp(s.seen_ms));

      row.addEventListener("click", function () {
        select(s.sid);
      });
      row.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          select(s.sid);
        }
      });
      body.appendChild(row);
      if (focusedSid && focusedSid === s.sid) row.focus();
    });
    $("session-count").textContent = String(sessions.length);
    $("sessions-empty").hidden = sessions.length > 0;
  }

  // Intent scores (0..1) as meters: a glance tells who is about to buy or to leave.
  function scoreCell(row, scores) {
    var td = cell(row, "", "scores");
    var names = Object.keys(scores || {});
    if (!names.length) td.textContent = "—";
    names.forEach(function (name) {
      var v = scores[name].value;
      var item = el("span", { "class": "score", "data-score": name, title: name + " " + v.toFixed(3) });
      item.appendChild(el("meter", { min: "0", max: "1", low: "0.3", high: "0.7", optimum: "1", value: String(v), "aria-label": name }));
      item.appendChild(el("span", null, name.replace(/_/g, " ") + " " + v.toFixed(2)));
      td.appendChild(item);
    });
  }

  // A score and what makes it: "0.77 = bias -3.00 + add_to_cart +2.40 + ..."; a trained
  // model's: "0.64 from model.json: baseline -1.70, adds_to_cart=2 +1.10, ..."
  function scoreWords(score) {
    var parts = (score.top || []).map(function (p) {
      var seen = p.length > 2 ? "=" + (p[2] === null ? "missing" : String(p[2])) : "";
      return p[0] + seen + " " + (p[1] >= 0 ? "+" : "") + p[1].toFixed(2);
    });
    if (score.model) {
      return score.value.toFixed(3) + " from " + score.model + ": baseline " + score.bias.toFixed(2) +
        (parts.length ? ", " + parts.join(", ") : "");
    }
    return score.value.toFixed(3) + " = logistic(bias " + score.bias.toFixed(2) + (parts.length ? ", " + parts.join(", ") : "") + ")";
  }

  function markSelected() {
    var rows = document.querySelectorAll("#sessions-body tr");
    for (var i = 0; i < rows.length; i++) {
      rows[i].classList.toggle("selected", rows[i].getAttribute("data-sid") === selectedSid);
    }
  }

  /* ---- session detail ------------------------------------------------ */
  var FIELDS = [
    ["sid", "Session", String],
    ["vid", "Visitor", String],
    ["site", "Site", String],
    ["connected", "Connected", function (v) { return v ? "yes" : "no"; }],
    ["started_ms", "Started", stamp],
    ["seen_ms", "Last seen", function (v) { return stamp(v) + " (" + ago(v) + ")"; }],
    ["path", "Page", String],
    ["page_type", "Page type", String],
    ["pages", "Pages viewed", String],
    ["dwell_ms", "Dwell", duration],
    ["scroll_pct", "Deepest scroll", function (v) { return num(v) + "%"; }],
    ["clicks", "Clicks", String],
    ["exit_intents", "Exit intents", String],
    ["cart_value", "Cart value", money],
    ["cart_items", "Cart items", String],
    ["traffic", "Came from", String],
    ["device", "Device", String],
    ["country", "Country", String],
  ];

  // The headline of a log entry: the event type, the feedback act, or the rule shown.
  var HEADLINE = { event: "e", feedback: "act", show: "rule" };

  function what(entry) {
    return entry.what || entry[HEADLINE[entry.kind]] || "";
  }

  function extras(entry) {
    var parts = [];
    var headline = entry.what ? "what" : HEADLINE[entry.kind];
    for (var k in entry) {
      if (!Object.prototype.hasOwnProperty.call(entry, k) || k === "ts" || k === "kind" || k === "what" || k === headline) continue;
      var v = entry[k];
      parts.push(k + "=" + (v !== null && typeof v === "object" ? JSON.stringify(v) : String(v)));
    }
    return parts.join("  ");
  }

  function renderDetail(s) {
    $("detail-sid").textContent = s.sid || selectedSid;
    $("detail-status").textContent = "";
    $("detail-status").removeAttribute("data-state");

    var dl = $("detail-fields");
    clear(dl);
    FIELDS.forEach(function (f) {
      var v = s[f[0]];
      var item = el("div", { "class": "field" });
      item.appendChild(el("dt", null, f[1]));
      item.appendChild(el("dd", { "data-field": f[0] }, v == null || v === "" ? "—" : f[2](v)));
      dl.appendChild(item);
    });
    Object.keys(s.scores || {}).forEach(function (name) {
      var item = el("div", { "class": "field score-field" });
      item.appendChild(el("dt", null, name.replace(/_/g, " ")));
      item.appendChild(el("dd", { "data-score": name }, scoreWords(s.scores[name])));
      dl.appendChild(item);
    });

    var obody = $("detail-overlays").querySelector("tbody");
    clear(obody);
    var list = overlayList(s.overlays);
    list.forEach(function (o) {
      var tr = el("tr", { "data-oid": o.oid });
      tr.appendChild(el("td", null)).appendChild(el("code", null, o.oid));
      tr.appendChild(el("td", null, o.rule));
      tr.appendChild(el("td", null)).appendChild(el("span", { "class": "chip status-" + o.status }, o.status));
      obody.appendChild(tr);
    });
    $("detail-overlays").hidden = !list.length;
    $("detail-overlays-empty").hidden = list.length > 0;

    var lbody = $("detail-log").querySelector("tbody");
    clear(lbody);
    var log = Array.isArray(s.log) ? s.log : []; // the API sends the newest first
    log.forEach(function (entry) {
      entry = entry || {};
      var tr = el("tr", { "class": "kind-" + (entry.kind || "other") });
      tr.appendChild(el("td", { "class": "ts", title: stamp(entry.ts) }, clock(entry.ts)));
      tr.appendChild(el("td", null)).appendChild(el("span", { "class": "tag kind" }, entry.kind || "?"));
      tr.appendChild(el("td", { "class": "what" }, what(entry)));
      tr.appendChild(el("td", { "class": "extra" }, extras(entry)));
      lbody.appendChild(tr);
    });
    $("detail-log").hidden = !log.length;
    $("detail-log-empty").hidden = log.length > 0;
  }

  function loadDetail() {
    var sid = selectedSid;
    if (!sid) return Promise.resolve();
    return getJSON(LIST_URL + "/" + encodeURIComponent(sid)).then(
      function (s) {
        if (sid !== selectedSid) return;
        renderDetail(s || {});
      },
      function (err) {
        if (sid !== selectedSid) return;
        var st = $("detail-status");
        if (err && err.status === 404) {
          st.textContent = "This session is over: the server no longer knows it.";
          st.setAttribute("data-state", "gone");
        } else {
          st.textContent = "server unreachable — showing the last known details";
          st.setAttribute("data-state", "error");
        }
      }
    );
  }

  function select(sid) {
    selectedSid = sid;
    markSelected();
    var d = $("detail");
    d.hidden = false;
    $("detail-sid").textContent = sid;
    // Show what the list already knows at once, then the full record.
    for (var i = 0; i < lastSessions.length; i++) {
      if (lastSessions[i].sid === sid) renderDetail(lastSessions[i]);
    }
    $("detail-status").textContent = "loading…";
    if (d.scrollIntoView) d.scrollIntoView({ block: "nearest" });
    loadDetail();
  }

  function closeDetail() {
    selectedSid = null;
    $("detail").hidden = true;
    markSelected();
  }

  /* ---- polling ------------------------------------------------------- */
  function poll() {
    clearTimeout(timer);
    var list = getJSON(LIST_URL).then(
      function (data) {
        var sessions = data && Array.isArray(data.sessions) ? data.sessions.slice() : [];
        sessions.sort(function (a, b) {
          return num(b.seen_ms) - num(a.seen_ms);
        });
        lastSessions = sessions;
        renderSessions(sessions);
        setStatus("ok", "live · updated " + clock(Date.now()));
      },
      function (err) {
        var why = err && err.status ? " (HTTP " + err.status + ")" : "";
        setStatus("error", "server unreachable" + why + " · retrying");
      }
    );
    Promise.all([list, loadDetail()]).then(schedule, schedule);
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(poll, POLL_MS);
  }

  function init() {
    $("detail-close").addEventListener("click", closeDetail);
    document.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && selectedSid) closeDetail();
    });
    poll();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
