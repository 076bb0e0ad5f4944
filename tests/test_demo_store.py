"""The demo storefront (kairos.demo) and the staff dashboard's page assets.

The store is tested the way the snippet sees it: rendered HTML (one script
tag in <head>, Open Graph product tags) and the shop's own store.js, which is
run in Node against a tiny fake DOM when Node is available.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.templating import Jinja2Templates
from starlette.testclient import TestClient

from kairos import demo_catalog as catalog
from kairos.demo import demo_routes

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "server" / "kairos" / "static"
STORE_JS = STATIC / "demo" / "store.js"
STORE_CSS = STATIC / "demo" / "store.css"
DASHBOARD_JS = STATIC / "dashboard" / "dashboard.js"
DASHBOARD_CSS = STATIC / "dashboard" / "dashboard.css"

SNIPPET_TAG = '<script src="/k.js" data-site="demo" async></script>'

PRODUCT_PAGES = [f"/demo/products/{p['slug']}" for p in catalog.PRODUCTS]
CATEGORY_PAGES = [f"/demo/category/{c['slug']}" for c in catalog.CATEGORIES]
STORE_PAGES = ["/demo/", *CATEGORY_PAGES, *PRODUCT_PAGES, "/demo/cart", "/demo/checkout", "/demo/thanks"]


# ---------------------------------------------------------------- helpers
class Page(HTMLParser):
    """Collects what the tests look at: scripts (and whether they sit in
    <head>), meta tags, elements by id, forms and inputs."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.in_head = False
        self.scripts: list[tuple[dict, bool]] = []
        self.meta: dict[str, list[str]] = {}
        self.ids: dict[str, tuple[str, dict]] = {}
        self.tags: list[tuple[str, dict]] = []
        self.links: list[str] = []
        self.text_parts: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "head":
            self.in_head = True
        elif tag == "script":
            self.scripts.append((a, self.in_head))
        elif tag == "meta" and "property" in a:
            self.meta.setdefault(a["property"], []).append(a.get("content", ""))
        elif tag == "a" and "href" in a:
            self.links.append(a["href"])
        if "id" in a:
            assert a["id"] not in self.ids, f"duplicate id {a['id']!r}"
            self.ids[a["id"]] = (tag, a)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        if tag == "head":
            self.in_head = False

    def handle_data(self, data):
        self.text_parts.append(data)

    @property
    def text(self) -> str:
        return re.sub(r"\s+", " ", " ".join(self.text_parts))

    def one_meta(self, prop: str) -> str:
        values = self.meta.get(prop, [])
        assert len(values) == 1, f"{prop}: {values!r}"
        return values[0]


def make_app() -> Starlette:
    return Starlette(routes=demo_routes(Jinja2Templates(directory=str(TEMPLATES))))


@pytest.fixture()
def client():
    with TestClient(make_app()) as c:
        yield c


# ---------------------------------------------------------------- pages
@pytest.mark.parametrize("path", STORE_PAGES)
def test_page_renders_and_embeds_snippet_once_in_head(client, path):
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.text.count(SNIPPET_TAG) == 1
    assert r.text.count("/k.js") == 1
    page = Page(r.text)
    kscripts = [(a, in_head) for a, in_head in page.scripts if a.get("src") == "/k.js"]
    assert len(kscripts) == 1
    attrs, in_head = kscripts[0]
    assert in_head, "the snippet belongs in <head>"
    assert attrs == {"src": "/k.js", "data-site": "demo", "async": ""}
    # The shop's chrome: nav, cart link with the count badge, the shop's JS.
    assert page.ids["cart-count"][0] == "span"
    assert "data-cart-count" in page.ids["cart-count"][1]
    assert page.ids["cart-link"][1]["href"] == "/demo/cart"
    assert any(a.get("src") == "/demo/static/store.js" for a, _ in page.scripts)
    for c in catalog.CATEGORIES:
        assert f"/demo/category/{c['slug']}" in page.links
    # The snippet and the shop's own script are the only scripts.
    assert [a["src"] for a, _ in page.scripts] == ["/k.js", "/demo/static/store.js"]


def test_no_kairos_coupling_beyond_script_tag_and_data_kairos(client):
    for path in STORE_PAGES:
        html = client.get(path).text
        # Inline scripts would be coupling; the shop only loads files.
        page = Page(html)
        assert all("src" in a for a, _ in page.scripts), path


STRICT_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              "connect-src 'self' ws://testserver wss://testserver; base-uri 'none'; form-action 'self'; "
              "frame-ancestors 'none'; object-src 'none'")


@pytest.mark.parametrize("path", [*STORE_PAGES, "/demo/products/no-such-thing", "/demo/nowhere"])
def test_every_store_page_is_sent_with_a_strict_content_security_policy(client, path):
    r = client.get(path)
    assert r.headers["content-security-policy"] == STRICT_CSP


def test_the_policy_names_the_host_the_store_was_asked_for(client):
    r = client.get("/demo/", headers={"host": "shop.example:8443"})
    assert "connect-src 'self' ws://shop.example:8443 wss://shop.example:8443;" in r.headers["content-security-policy"]


def test_a_host_header_cannot_add_to_the_policy(client):
    policy = client.get("/demo/", headers={"host": "x; script-src *"}).headers["content-security-policy"]
    assert "script-src *" not in policy and "connect-src 'self';" in policy


@pytest.mark.parametrize("path", STORE_PAGES)
def test_store_pages_have_no_inline_script_or_style_the_policy_would_block(client, path):
    html = client.get(path).text
    page = Page(html)
    assert all("src" in a for a, _ in page.scripts), "inline <script>"
    assert not [t for t, _ in page.tags if t == "style"], "inline <style>"
    assert not [t for t, a in page.tags if "style" in a], "style= attribute"
    assert not [(t, k) for t, a in page.tags for k in a if k.startswith("on")], "inline event handler"
    assert "javascript:" not in html


def test_home_has_demo_notice_with_what_to_try_and_dashboard_link(client):
    page = Page(client.get("/demo/").text)
    assert "demo-notice" in page.ids
    text = page.text.lower()
    assert "kairos demo store" in text
    assert "move your mouse out through the top of the window" in text
    assert page.ids["dashboard-link"][1]["href"] == "/dashboard"
    # Every product is on the home page.
    for p in catalog.PRODUCTS:
        assert f"/demo/products/{p['slug']}" in page.links


def test_catalog_shape():
    assert len(catalog.CATEGORIES) >= 2
    slugs = [p["slug"] for p in catalog.PRODUCTS]
    skus = [p["sku"] for p in catalog.PRODUCTS]
    assert len(set(slugs)) == len(slugs) and len(set(skus)) == len(skus)
    for c in catalog.CATEGORIES:
        assert len(catalog.products_in(c["slug"])) >= 2
    for p in catalog.PRODUCTS:
        assert {"slug", "sku", "name", "price", "category", "description", "image"} <= p.keys()
        assert isinstance(p["price"], (int, float)) and p["price"] > 0
        assert catalog.category(p["category"]) is not None
        assert (STATIC / "demo" / "img" / p["image"]).is_file()


@pytest.mark.parametrize("slug", [c["slug"] for c in catalog.CATEGORIES])
def test_category_lists_exactly_its_products(client, slug):
    page = Page(client.get(f"/demo/category/{slug}").text)
    listed = {a["data-sku"] for t, a in page.tags if t == "article" and "product-card" in a.get("class", "")}
    assert listed == {p["sku"] for p in catalog.products_in(slug)}


@pytest.mark.parametrize("product", catalog.PRODUCTS, ids=lambda p: p["slug"])
def test_product_page_open_graph_tags(client, product):
    r = client.get(f"/demo/products/{product['slug']}")
    assert r.status_code == 200
    page = Page(r.text)
    assert page.one_meta("og:type") == "product"
    assert page.one_meta("og:title") == product["name"]
    assert page.one_meta("product:price:amount") == f"{product['price']:.2f}"
    assert float(page.one_meta("product:price:amount")) == pytest.approx(product["price"])
    assert page.one_meta("product:price:currency") == "EUR"
    assert page.one_meta("product:retailer_item_id") == product["sku"]
    image = page.one_meta("og:image")
    assert image == f"http://testserver/demo/static/img/{product['image']}"
    img = client.get(image)
    assert img.status_code == 200
    assert img.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in img.content


def test_the_free_shipping_threshold_is_the_same_on_product_pages_and_in_the_demo_offer(client):
    from kairos.rules import load_rules

    rule = load_rules(ROOT / "examples" / "demo.yaml").rule("cart-exit-shipping")
    threshold = rule.if_["cart_value"].gt
    assert threshold == catalog.FREE_SHIPPING_OVER
    said = f"€{threshold:g}"
    assert said in rule.then.params["body"]
    for product in catalog.PRODUCTS:
        assert f"Free shipping over {said}<" in client.get(f"/demo/products/{product['slug']}").text
    # Every price the store shows is in the currency the snippet reports.
    assert re.search(r'var CUR = "([A-Z]{3})"', (ROOT / "server/kairos/static/demo/store.js").read_text())[1] == catalog.CURRENCY == "EUR"


@pytest.mark.parametrize("product", catalog.PRODUCTS, ids=lambda p: p["slug"])
def test_product_page_add_to_cart_button(client, product):
    page = Page(client.get(f"/demo/products/{product['slug']}").text)
    tag, a = page.ids["add-to-cart"]
    assert tag == "button"
    assert a["type"] == "button"
    assert a["data-kairos"] == "add-to-cart"
    assert a["data-sku"] == product["sku"]
    assert a["data-slug"] == product["slug"]
    assert a["data-name"] == product["name"]
    assert float(a["data-price"]) == pytest.approx(product["price"])
    assert page.ids["product-price"][1]["data-amount"] == f"{product['price']:.2f}"
    assert "hidden" in page.ids["added-notice"][1]


@pytest.mark.parametrize("path", ["/demo/", *CATEGORY_PAGES, "/demo/cart", "/demo/checkout", "/demo/thanks"])
def test_non_product_pages_do_not_claim_to_be_products(client, path):
    page = Page(client.get(path).text)
    assert "og:type" not in page.meta
    assert "product:price:amount" not in page.meta


@pytest.mark.parametrize(
    "path",
    ["/demo/products/no-such-thing", "/demo/category/hats", "/demo/products/LINEN-SHIRT", "/demo/nowhere"],
)
def test_unknown_pages_are_a_404_store_page(client, path):
    r = client.get(path)
    assert r.status_code == 404
    page = Page(r.text)
    assert "not-found" in page.ids
    assert r.text.count(SNIPPET_TAG) == 1
    assert "og:type" not in page.meta


def test_demo_without_slash_redirects_to_home(client):
    r = client.get("/demo", follow_redirects=False)
    assert r.status_code in (301, 302, 307, 308)
    assert r.headers["location"].endswith("/demo/")
    r = client.get("/demo/cart/", follow_redirects=False)
    assert r.status_code in (301, 302, 307, 308)
    assert r.headers["location"].endswith("/demo/cart")


def test_templates_autoescape_catalog_text(client, monkeypatch):
    evil = {**catalog.PRODUCTS[0], "name": 'Shirt <img src=x onerror=alert(1)> "q"', "description": "<b>x</b>"}
    monkeypatch.setattr(catalog, "PRODUCTS", [evil, *catalog.PRODUCTS[1:]])
    r = client.get(f"/demo/products/{evil['slug']}")
    assert r.status_code == 200
    assert "<img src=x" not in r.text and "<b>x</b>" not in r.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in r.text
    page = Page(r.text)
    assert page.one_meta("og:title") == evil["name"]  # escaped in HTML, intact once parsed
    assert page.ids["add-to-cart"][1]["data-name"] == evil["name"]


def test_cart_page_elements(client):
    page = Page(client.get("/demo/cart").text)
    assert page.ids["cart-items"][0] == "tbody"
    assert page.ids["cart-total"][0] == "td"
    tag, a = page.ids["checkout-button"]
    assert tag == "a" and a["href"] == "/demo/checkout"
    assert "cart-empty" in page.ids


def test_checkout_page_steps_and_fields_cannot_be_submitted(client):
    r = client.get("/demo/checkout")
    page = Page(r.text)
    assert page.ids["step-shipping"][0] == "section"
    assert "hidden" not in page.ids["step-shipping"][1]
    assert page.ids["step-payment"][0] == "section"
    assert "hidden" in page.ids["step-payment"][1]
    for bid in ("to-payment", "place-order", "back-to-shipping"):
        tag, a = page.ids[bid]
        assert tag == "button" and a["type"] == "button", bid
    inputs = [a for t, a in page.tags if t == "input"]
    assert {a["id"] for a in inputs} >= {"ship-name", "ship-email", "pay-card"}
    # Nothing to submit: no <form>, and no input has a name a form could send.
    assert not any(t == "form" for t, _ in page.tags)
    assert all("name" not in a for a in inputs)


# ---------------------------------------------------------------- static
@pytest.mark.parametrize(
    "path,ctype",
    [
        ("/demo/static/store.js", "javascript"),
        ("/demo/static/store.css", "text/css"),
        ("/demo/static/img/logo.svg", "image/svg+xml"),
        ("/demo/static/img/favicon.svg", "image/svg+xml"),
        ("/demo/static/img/bag.svg", "image/svg+xml"),
    ],
)
def test_static_files_served(client, path, ctype):
    r = client.get(path)
    assert r.status_code == 200
    assert ctype in r.headers["content-type"]
    assert r.content == (STATIC / "demo" / path.removeprefix("/demo/static/")).read_bytes()


def test_static_missing_file_is_404(client):
    assert client.get("/demo/static/nope.js").status_code == 404


def test_every_asset_referenced_by_pages_is_served(client):
    for path in STORE_PAGES:
        page = Page(client.get(path).text)
        refs = [a.get("src") or a.get("href") for t, a in page.tags if t in ("img", "script", "link")]
        for ref in refs:
            if ref and ref.startswith("/demo/static/"):
                assert client.get(ref).status_code == 200, (path, ref)


def test_assets_make_no_external_fetches(client):
    for f in (STATIC / "demo").rglob("*"):
        if f.is_file():
            body = f.read_text()
            for url in re.findall(r"(?:https?:)?//[\w.-]+[^\s\"')]*", body):
                assert url.startswith("http://www.w3.org/2000/svg"), (f.name, url)
    for path in STORE_PAGES:
        page = Page(client.get(path).text)
        for t, a in page.tags:
            for attr in ("src", "href"):
                v = a.get(attr, "")
                assert not re.match(r"^(https?:)?//", v), (path, t, v)


def test_store_css_uses_broad_serif_element_selectors():
    css = STORE_CSS.read_text()
    # Rules whose selector list is exactly a bare element: the kind of theme
    # CSS the overlay's shadow root must be immune to.
    rules = dict(re.findall(r"(?m)^(button|div|p|body)\s*\{([^}]*)\}", css))
    for sel in ("button", "div", "p", "body"):
        assert sel in rules, sel
        assert "Georgia" in rules[sel], sel


# ---------------------------------------------------------------- store.js: static checks
TRACK_FIELDS = {
    "cart": {"value", "items", "cur"},
    "add_to_cart": {"sku", "name", "price", "qty"},
    "checkout": {"step"},
    "purchase": {"value", "cur"},
}


def _js_code_only(src: str) -> str:
    """store.js without comments (they may well mention 'email')."""
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    return re.sub(r"(?m)^\s*//.*$|\s//[^\n\"']*$", "", src)


def test_store_js_tracks_only_protocol_events_and_fields():
    code = _js_code_only(STORE_JS.read_text())
    calls = re.findall(r"kTrack\(\s*\"(\w+)\"\s*,\s*\{([^{}]*)\}\s*\)", code)
    assert {t for t, _ in calls} == set(TRACK_FIELDS)
    for etype, body in calls:
        keys = set(re.findall(r"(\w+)\s*:", body))
        assert keys <= TRACK_FIELDS[etype], (etype, keys)
    # Every kTrack call is one of the literal calls checked above…
    assert len(re.findall(r"kTrack\(", code)) - 1 == len(calls)  # minus the definition
    # …and the helper is the only place that touches kairos.track.
    assert len(re.findall(r"\.track\(", code)) == 1


def test_store_js_never_reads_or_sends_form_fields(client):
    code = _js_code_only(STORE_JS.read_text())
    for banned in ("fetch(", "XMLHttpRequest", "sendBeacon", "WebSocket", ".submit(", "FormData", "new Image"):
        assert banned not in code, banned
    assert not re.search(r"\.value\b", code), "store.js must not read input values"
    assert not re.search(r"email|card|address|querySelectorAll\(\s*[\"']input", code, re.I)
    # The ids of the checkout inputs never appear in the shop's JS.
    page = Page(client.get("/demo/checkout").text)
    for t, a in page.tags:
        if t == "input":
            assert a["id"] not in code, a["id"]


# ---------------------------------------------------------------- store.js: behaviour (Node)
HARNESS = r"""
const vm = require("vm");
const fs = require("fs");
const src = fs.readFileSync(process.argv[2], "utf8");
const scenario = process.argv[3];

const valueReads = [];
function makeEl(tag, id, attrs) {
  const listeners = {};
  const classes = new Set();
  const el = {
    tagName: String(tag).toUpperCase(), id: id || null, hidden: false, disabled: false,
    textContent: "", attrs: Object.assign({}, attrs || {}), children: [], firstChild: null,
    classList: {
      add: (c) => classes.add(c), remove: (c) => classes.delete(c), contains: (c) => classes.has(c),
      toggle: (c, on) => { if (on === undefined) on = !classes.has(c); on ? classes.add(c) : classes.delete(c); return on; },
    },
    getAttribute(n) { return Object.prototype.hasOwnProperty.call(this.attrs, n) ? this.attrs[n] : null; },
    setAttribute(n, v) { this.attrs[n] = String(v); },
    addEventListener(t, fn) { (listeners[t] = listeners[t] || []).push(fn); },
    click() { (listeners.click || []).forEach((fn) => fn.call(this, { type: "click", preventDefault() {} })); },
    appendChild(c) { this.children.push(c); this.firstChild = this.children[0]; return c; },
    removeChild(c) { this.children.splice(this.children.indexOf(c), 1); this.firstChild = this.children[0] || null; return c; },
  };
  return el;
}
function makeInput(id) {
  const el = makeEl("input", id);
  Object.defineProperty(el, "value", { get() { valueReads.push(id); return "secret-" + id; }, set() {} });
  return el;
}

const byId = {};
const selectors = {};
const add = (el) => { byId[el.id] = el; return el; };
const storage = {};
const localStorage = {
  getItem: (k) => (k in storage ? storage[k] : null),
  setItem: (k, v) => { storage[k] = String(v); },
  removeItem: (k) => { delete storage[k]; },
};
// Most scenarios are a page later in the visit: the kept cart was reported already.
// "new_tab" is the first page of a new session.
const session = process.argv[3] === "new_tab" ? {} : { "demo.cartReported": "1" };
const sessionStorage = {
  getItem: (k) => (k in session ? session[k] : null),
  setItem: (k, v) => { session[k] = String(v); },
};
const timers = [];
const navigations = [];
const direct = [];
const countBadge = makeEl("span", "cart-count", { "data-cart-count": "" });
selectors["[data-cart-count]"] = [countBadge];
add(countBadge);
const inputs = ["ship-name", "ship-email", "ship-address", "pay-card", "pay-expiry"].map((id) => add(makeInput(id)));
selectors["input"] = inputs;

const document = {
  readyState: "complete",
  getElementById: (id) => byId[id] || null,
  querySelectorAll: (sel) => selectors[sel] || [],
  querySelector: (sel) => (selectors[sel] || [])[0] || null,
  createElement: (tag) => makeEl(tag),
  addEventListener() {},
};
const window = {
  document, localStorage, sessionStorage,
  location: { assign: (u) => navigations.push(u), href: "" },
  console: { warn() {}, log() {} },
};
window.window = window;
const context = {
  window, document, localStorage, sessionStorage, console: window.console, JSON, Math, Date, Object, Array, String, parseFloat, encodeURIComponent,
  setTimeout: (fn, ms) => { timers.push({ fn, ms }); return timers.length; },
  clearTimeout() {},
};

function run() { vm.createContext(context); vm.runInContext(src, context); }
function flushTimers() { while (timers.length) timers.shift().fn(); }
const cart = () => JSON.parse(storage["demo.cart"] || "null");

const out = {};
if (scenario === "new_tab") {
  storage["demo.cart"] = JSON.stringify([{ sku: "KS-SO-002", slug: "leather-boot", name: "Leather Boot", price: 129, qty: 2 }]);
  window.kairos = { track: (type, fields) => direct.push([type, fields]) };
  run();
  out.direct = direct.slice();
  run();  // the next page of the same session
  out.directAfterSecondPage = direct.slice();
} else if (scenario === "product_before_snippet") {
  add(makeEl("button", "add-to-cart", {
    "data-sku": "KS-SO-001", "data-slug": "canvas-sneaker", "data-name": "Canvas Sneaker",
    "data-price": "59.00", "data-image": "/demo/static/img/canvas-sneaker.svg", "data-kairos": "add-to-cart",
  }));
  add(makeEl("p", "added-notice")).hidden = true;
  run();
  out.countAtLoad = countBadge.textContent;
  byId["add-to-cart"].click();
  byId["add-to-cart"].click();
  out.queue = window.kairos.q;
  out.cart = cart();
  out.count = countBadge.textContent;
  out.noticeHidden = byId["added-notice"].hidden;
} else if (scenario === "product_after_snippet") {
  storage["demo.cart"] = JSON.stringify([{ sku: "KS-SH-001", slug: "linen-shirt", name: "Linen Shirt", price: 49, qty: 1 }]);
  window.kairos = { track: (t, f) => direct.push([t, f]) };
  add(makeEl("button", "add-to-cart", {
    "data-sku": "KS-SH-002", "data-slug": "oxford-shirt", "data-name": "Oxford Shirt", "data-price": "39.90", "data-image": "",
  }));
  run();
  out.countAtLoad = countBadge.textContent;
  byId["add-to-cart"].click();
  out.direct = direct;
  out.hasQueue = "q" in window.kairos;
  out.cart = cart();
  out.count = countBadge.textContent;
} else if (scenario === "cart_remove") {
  storage["demo.cart"] = JSON.stringify([
    { sku: "KS-SH-001", slug: "linen-shirt", name: "Linen Shirt", price: 49, qty: 2 },
    { sku: "KS-SO-002", slug: "leather-boot", name: "Leather Boot", price: 129, qty: 1 },
  ]);
  window.kairos = { q: [] };
  const tbody = add(makeEl("tbody", "cart-items"));
  add(makeEl("td", "cart-total"));
  add(makeEl("p", "cart-empty"));
  add(makeEl("table", "cart-table"));
  add(makeEl("div", "cart-actions"));
  run();
  out.rowsAtLoad = tbody.children.length;
  out.totalAtLoad = byId["cart-total"].textContent;
  out.emptyHiddenAtLoad = byId["cart-empty"].hidden;
  out.queueAtLoad = window.kairos.q.slice();
  const firstRow = tbody.children[0];
  const rm = firstRow.children[firstRow.children.length - 1].children[0];
  out.removeSku = rm.getAttribute("data-sku");
  rm.click();
  out.rowsAfter = tbody.children.length;
  out.totalAfter = byId["cart-total"].textContent;
  out.queue = window.kairos.q;
  out.cart = cart();
  const rm2 = tbody.children[0].children[tbody.children[0].children.length - 1].children[0];
  rm2.click();
  out.emptyShown = !byId["cart-empty"].hidden;
  out.tableHidden = byId["cart-table"].hidden;
} else if (scenario === "checkout") {
  storage["demo.cart"] = JSON.stringify([
    { sku: "KS-SH-002", slug: "oxford-shirt", name: "Oxford Shirt", price: 39.9, qty: 2 },
    { sku: "KS-SO-001", slug: "canvas-sneaker", name: "Canvas Sneaker", price: 59, qty: 1 },
  ]);
  window.kairos = { track: (t, f) => direct.push([t, f]) };
  add(makeEl("div", "checkout-form"));
  add(makeEl("p", "checkout-empty")).hidden = true;
  const ship = add(makeEl("section", "step-shipping", { "data-step": "shipping" }));
  const pay = add(makeEl("section", "step-payment", { "data-step": "payment" }));
  pay.hidden = true;
  selectors[".checkout-step"] = [ship, pay];
  for (const id of ["to-payment", "back-to-shipping", "place-order"]) add(makeEl("button", id));
  add(makeEl("ul", "summary-items"));
  add(makeEl("span", "summary-total"));
  run();
  out.afterLoad = direct.slice();
  byId["to-payment"].click();
  out.paymentVisible = !pay.hidden && ship.hidden;
  byId["place-order"].click();
  out.beforeTimers = { navigations: navigations.slice(), cart: cart() };
  flushTimers();
  out.direct = direct;
  out.navigations = navigations;
  out.cart = cart();
  out.summaryTotal = byId["summary-total"].textContent;
} else if (scenario === "checkout_empty") {
  window.kairos = { q: [] };
  add(makeEl("div", "checkout-form"));
  add(makeEl("p", "checkout-empty")).hidden = true;
  for (const id of ["to-payment", "back-to-shipping", "place-order"]) add(makeEl("button", id));
  run();
  out.formHidden = byId["checkout-form"].hidden;
  out.emptyShown = !byId["checkout-empty"].hidden;
  out.queue = window.kairos.q;
}
out.valueReads = valueReads;
process.stdout.write(JSON.stringify(out));
"""

NODE = shutil.which("node")


def needs_node(test):
    """Node runs store.js here; the snippet's build needs it anyway, so its absence is a failure."""

    def run(*args, **kwargs):
        if NODE is None:
            pytest.fail("Node.js is needed to run store.js (make test needs node for the snippet too)")
        return test(*args, **kwargs)

    return functools.wraps(test)(run)


def run_store_js(tmp_path: Path, scenario: str) -> dict:
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS)
    proc = subprocess.run(
        [NODE, str(harness), str(STORE_JS), scenario], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out.pop("valueReads") == [], "store.js read a form field's value"
    return out


@needs_node
def test_add_to_cart_before_snippet_loads_uses_stub_queue(tmp_path):
    out = run_store_js(tmp_path, "product_before_snippet")
    assert out["countAtLoad"] == "0"
    add = ["add_to_cart", {"sku": "KS-SO-001", "name": "Canvas Sneaker", "price": 59, "qty": 1}]
    assert out["queue"] == [
        ["track", *add],
        ["track", "cart", {"value": 59, "items": 1, "cur": "EUR"}],
        ["track", *add],
        ["track", "cart", {"value": 118, "items": 2, "cur": "EUR"}],
    ]
    assert out["cart"] == [
        {
            "sku": "KS-SO-001",
            "slug": "canvas-sneaker",
            "name": "Canvas Sneaker",
            "price": 59,
            "img": "/demo/static/img/canvas-sneaker.svg",
            "qty": 2,
        }
    ]
    assert out["count"] == "2"
    assert out["noticeHidden"] is False


@needs_node
def test_add_to_cart_after_snippet_loads_calls_track_directly(tmp_path):
    out = run_store_js(tmp_path, "product_after_snippet")
    assert out["countAtLoad"] == "1"
    assert out["direct"] == [
        ["add_to_cart", {"sku": "KS-SH-002", "name": "Oxford Shirt", "price": 39.9, "qty": 1}],
        ["cart", {"value": 88.9, "items": 2, "cur": "EUR"}],
    ]
    assert out["hasQueue"] is False
    assert [i["sku"] for i in out["cart"]] == ["KS-SH-001", "KS-SH-002"]
    assert out["count"] == "2"


@needs_node
def test_cart_page_renders_and_remove_reports_new_cart(tmp_path):
    out = run_store_js(tmp_path, "cart_remove")
    assert out["rowsAtLoad"] == 2
    assert out["totalAtLoad"] == "€227.00"
    assert out["emptyHiddenAtLoad"] is True
    assert out["queueAtLoad"] == []  # viewing the cart reports nothing
    assert out["removeSku"] == "KS-SH-001"
    assert out["rowsAfter"] == 1
    assert out["totalAfter"] == "€129.00"
    assert out["queue"][0] == ["track", "cart", {"value": 129, "items": 1, "cur": "EUR"}]
    assert out["queue"][-1] == ["track", "cart", {"value": 0, "items": 0, "cur": "EUR"}]
    assert len(out["queue"]) == 2
    assert out["cart"] == [{"sku": "KS-SO-002", "slug": "leather-boot", "name": "Leather Boot", "price": 129, "qty": 1}]
    assert out["emptyShown"] is True and out["tableHidden"] is True


@needs_node
def test_checkout_steps_purchase_and_thanks(tmp_path):
    out = run_store_js(tmp_path, "checkout")
    assert out["afterLoad"] == [["checkout", {"step": "shipping"}]]
    assert out["paymentVisible"] is True
    assert out["direct"] == [
        ["checkout", {"step": "shipping"}],
        ["checkout", {"step": "payment"}],
        ["checkout", {"step": "place_order"}],
        ["purchase", {"value": 138.8, "cur": "EUR"}],
        ["cart", {"value": 0, "items": 0, "cur": "EUR"}],
    ]
    # The cart is cleared at once; the page leaves for /demo/thanks only after
    # a pause that lets the snippet send its batch.
    assert out["beforeTimers"] == {"navigations": [], "cart": []}
    assert out["navigations"] == ["/demo/thanks"]
    assert out["cart"] == []
    assert out["summaryTotal"] == "€138.80"
    # Nothing the visitor typed went anywhere.
    assert "secret" not in json.dumps(out)


@needs_node
def test_checkout_with_empty_cart_reports_nothing(tmp_path):
    out = run_store_js(tmp_path, "checkout_empty")
    assert out == {"formHidden": True, "emptyShown": True, "queue": []}


# ---------------------------------------------------------------- dashboard pages
def render_dashboard(name: str = "rules.html", **ctx) -> str:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    return templates.get_template(f"dashboard/{name}").render(**ctx)


def test_the_rules_page_lists_each_rule_escaped_with_a_pause_button():
    html = render_dashboard(
        engine="redis", page="rules",
        rules=[
            {"id": "exit_offer", "summary": "Exit intent with a cart ≥ €50 → 10% offer"},
            {"id": "xss", "summary": "<script>alert(1)</script>"},
        ],
    )
    page = Page(html)
    assert page.ids["engine"][1]["data-engine"] == "redis"
    assert [a["data-rule"] for t, a in page.tags if t == "button" and "pause" in a.get("class", "")] == ["exit_offer", "xss"]
    assert "Exit intent with a cart ≥ €50 → 10% offer" in page.text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    srcs = [a["src"] for a, _ in page.scripts]
    assert srcs == ["/static/dashboard/editor.js", "/static/dashboard/dashboard.js"]
    assert "/static/dashboard/dashboard.css" in [a.get("href") for t, a in page.tags if t == "link"]
    # No CDN, no framework: the page works offline.
    assert not re.search(r"(src|href)=\"(https?:)?//", html)


def test_every_dashboard_page_shares_one_head_and_says_which_page_it_is():
    for name, page_name in (("index.html", "live"), ("session.html", "session"), ("rules.html", "rules")):
        html = render_dashboard(name, engine="memory", page=page_name, rules=[], sid="s_1", nudges=[])
        page = Page(html)
        assert [a for t, a in page.tags if t == "body"][0]["data-page"] == page_name
        # The rules page alone loads the editor (CodeMirror, 113 KB gzipped), before the page's own script.
        editor = ["/static/dashboard/editor.js"] if page_name == "rules" else []
        assert [a["src"] for a, _ in page.scripts] == [*editor, "/static/dashboard/dashboard.js"]
        assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "rules-empty" in Page(render_dashboard(engine="memory", page="rules", rules=[])).ids


def test_dashboard_js_never_injects_html():
    js = DASHBOARD_JS.read_text()
    assert DASHBOARD_CSS.is_file()
    # Session data is visitor-controlled: it must never be parsed as HTML.
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert banned not in js, banned


@needs_node
def test_a_new_tab_reports_the_kept_cart_once(tmp_path):
    out = run_store_js(tmp_path, "new_tab")
    assert out["direct"] == [["cart", {"value": 258, "items": 2, "cur": "EUR"}]]
    assert out["directAfterSecondPage"] == out["direct"], "not again on the next page of the session"
