"""Regenerate the example frames: `python docs/frames/make.py`.

The JSON files are the fixtures both test suites read; the `hex` of each frame is
what Python's msgpack (the reference encoder) produces, and the snippet's encoder
must produce the same bytes.
"""

import json
from pathlib import Path

import msgpack

HERE = Path(__file__).parent

PAGE = {
    "url": "https://shop.example/products/linen-shirt?utm_source=news",
    "path": "/products/linen-shirt",
    "title": "Linen shirt — Demo store",
    "ref": "https://www.example.org/",
    # the page's Open Graph and product meta tags, as they are: the server reads the product from them
    "meta": {"og:type": "product", "og:title": "Linen shirt", "product:price:amount": "59.90",
             "product:price:currency": "EUR", "product:retailer_item_id": "LS-01", "og:image": "/static/shirt.svg"},
}

VALID = [
    ("hello", "c2s", {"v": 1, "t": "hello", "site": "demo", "vid": "v_4f9c2a7d1e", "sid": None,
                      "page": PAGE, "consent": True, "sv": "0.1.0", "tz": 60, "lang": "en-GB"}),
    ("hello_resume", "c2s", {"v": 1, "t": "hello", "site": "demo", "vid": "v_4f9c2a7d1e",
                             "sid": "s_8b1d0c3f55", "page": {"url": "https://shop.example/cart",
                             "path": "/cart", "title": "Cart", "ref": "", "meta": {}}, "consent": True,
                             "sv": "0.1.0", "tz": -300, "lang": "en-US"}),
    # kairos.page({type, product}) before the hello: the store's own words, read leniently by the server.
    # With `dnt`, `gpc` and the viewport (`vp`), as an earlier k.js sent them: still accepted.
    ("hello_declared", "c2s", {"v": 1, "t": "hello", "site": "demo", "vid": "v_4f9c2a7d1e", "sid": None,
                               "page": {"url": "https://shop.example/app/p/42", "path": "/app/p/42", "title": "Shop",
                                        "ref": "", "type": "product",
                                        "prod": {"sku": "LS-01", "name": "Linen shirt", "price": "1,299.00", "cur": "EUR"},
                                        "meta": {}},
                               "consent": True, "dnt": False, "gpc": False, "sv": "0.1.0", "tz": 60, "lang": "en-GB",
                               "vp": [1280, 800]}),
    ("events", "c2s", {"v": 1, "t": "events", "seq": 3, "ev": [
        {"e": "dwell", "ts": 1767225600000, "ms": 5000},
        {"e": "scroll", "ts": 1767225600400, "pct": 70},
        {"e": "click", "ts": 1767225601000, "tag": "a", "id": "buy", "k": "add-to-cart", "href": "/cart"},
        {"e": "idle", "ts": 1767225631000, "ms": 30000},
        {"e": "cart", "ts": 1767225632000, "value": 119.8, "items": 2, "cur": "EUR"},
        {"e": "add_to_cart", "ts": 1767225632001, "sku": "LS-01", "name": "Linen shirt", "price": 59.9, "qty": 1},
        {"e": "checkout", "ts": 1767225640000, "step": "payment"},
        {"e": "purchase", "ts": 1767225650000, "value": 119.8, "cur": "EUR"},
        {"e": "page_view", "ts": 1767225651000, "url": "https://shop.example/thanks", "path": "/thanks",
         "title": "Thank you", "ref": "https://shop.example/checkout"},
    ]}),
    ("exit_intent", "c2s", {"v": 1, "t": "events", "seq": 4, "ev": [{"e": "exit_intent", "ts": 1767225700000}]}),
    # The events added to v1 later, and `lost`: 3 events fell out of the offline buffer.
    ("events_more", "c2s", {"v": 1, "t": "events", "seq": 5, "lost": 3, "ev": [
        {"e": "page_view", "ts": 1767225800000, "url": "https://shop.example/p/linen-shirt", "path": "/p/linen-shirt",
         "title": "Linen shirt", "ref": "https://shop.example/", "type": "product"},
        {"e": "click", "ts": 1767225801000, "tag": "button", "id": "size-m", "text": "M",
         "ka": {"size": "m", "slot": "size-picker"}},
        {"e": "rage_click", "ts": 1767225802000, "n": 4, "tag": "button", "text": "Add to cart", "k": "add-to-cart"},
        {"e": "idle_end", "ts": 1767225840000, "ms": 35000},
        {"e": "hesitation", "ts": 1767225850000, "field": "email", "ms": 16000},
        {"e": "copy", "ts": 1767225851000, "tag": "code", "k": "coupon"},
        {"e": "identify", "ts": 1767225852000, "uid": "customer-1042"},
        {"e": "custom", "ts": 1767225853000, "name": "size_guide.open",
         "props": {"from": "product", "rating": 4.5, "first": True, "ref": None}},
        {"e": "exit_intent", "ts": 1767225860000, "how": "top"},
    ]}),
    ("feedback", "c2s", {"v": 1, "t": "feedback", "oid": "exit-offer.1a2b3c", "act": "dismissed", "ts": 1767225702000}),
    ("feedback_hidden", "c2s", {"v": 1, "t": "feedback", "oid": "basket-saved.7c6b5a", "act": "hidden",
                                "ts": 1767225703000, "why": "page"}),
    ("welcome", "s2c", {"v": 1, "t": "welcome", "sid": "s_8b1d0c3f55",
                        "track": {"batch_ms": 1000, "dwell_ms": 5000, "scroll_step": 10, "idle_ms": 30000,
                                  "exit": True, "exit_min_ms": 3000, "exit_gap_ms": 10000, "exit_scroll": True,
                                  "exit_back": False, "exit_hidden": True, "clicks": True, "click_text": True,
                                  "rage_n": 4, "rage_ms": 1000, "hes_ms": 15000, "copy": False, "spa": True},
                        "max_frame": 16384, "max_events": 50}),
    ("show", "s2c", {"v": 1, "t": "show", "oid": "exit-offer.1a2b3c", "kind": "offer",
                     "html": "<div class=\"k-card\"><p>Still thinking about Linen shirt &amp; co?</p>"
                             "<button data-k-click=\"close\">Keep shopping</button></div>",
                     "css": ".k-card{padding:24px}", "place": "center", "ttl_ms": 0, "rule": "exit-offer",
                     "scope": "page"}),
    ("show_bubble", "s2c", {"v": 1, "t": "show", "oid": "size-help.9f8e7d", "kind": "chat",
                            "html": "<div class=\"k-chat\"><p class=\"k-message\">Not sure about the size?</p></div>",
                            "css": ".k-chat{padding:12px}", "place": "bubble", "ttl_ms": 30000,
                            "rule": "size-help", "scope": "session"}),
    ("hide", "s2c", {"v": 1, "t": "hide", "oid": "exit-offer.1a2b3c", "why": "page"}),
    # a server from before scopes: no scope in the show, no why in the hide
    ("show_unscoped", "s2c", {"v": 1, "t": "show", "oid": "exit-offer.4d5e6f", "kind": "offer",
                              "html": "<div class=\"k-card\"><p>Hello</p></div>", "css": "", "place": "center",
                              "ttl_ms": 0, "rule": "exit-offer"}),
    ("hide_unexplained", "s2c", {"v": 1, "t": "hide", "oid": "exit-offer.4d5e6f"}),
    ("error", "s2c", {"v": 1, "t": "error", "code": "unknown_event", "msg": "event 0: unknown event type 'teleport'", "seq": 7}),
]

# Beacon bodies (POST /b): the last batch of a page whose socket is closed, and
# kairos.consent(false). Direction "beacon": client to server, over HTTP.
VALID += [
    ("beacon_events", "beacon", {"v": 1, "t": "events", "site": "demo", "vid": "v_4f9c2a7d1e", "sid": "s_8b1d0c3f55",
                                 "seq": 6, "lost": 1, "ev": [
                                     {"e": "dwell", "ts": 1767225900000, "ms": 2500},
                                     {"e": "exit_intent", "ts": 1767225900100, "how": "hidden"}]}),
    ("beacon_forget", "beacon", {"v": 1, "t": "forget", "site": "demo", "vid": "v_4f9c2a7d1e", "sid": "s_8b1d0c3f55"}),
]

# Frames the server must refuse: what it answers, and whether it closes.
INVALID = [
    ("not_msgpack", "c1", "bad_frame", None),   # 0xc1 is "never used" in the msgpack spec
    ("not_a_map", msgpack.packb([1, "events"]).hex(), "bad_frame", None),
    ("no_type", msgpack.packb({"v": 1}).hex(), "bad_frame", None),
    ("unknown_type", msgpack.packb({"v": 1, "t": "teleport"}).hex(), "unknown_type", None),
    ("bad_version", msgpack.packb({"v": 2, "t": "events", "seq": 1, "ev": []}).hex(), "bad_version", 4001),
    # Only the integer 1 is version 1: msgpack's true is not (nor 1.0, tested in
    # tests/test_wire.py alone, since JavaScript has no 1.0 apart from 1 to encode).
    ("version_true", msgpack.packb({"v": True, "t": "events", "seq": 1, "ev": [{"e": "dwell", "ts": 1, "ms": 1}]}).hex(),
     "bad_version", 4001),
    ("events_empty", msgpack.packb({"v": 1, "t": "events", "seq": 1, "ev": []}).hex(), "bad_field", None),
    ("events_not_a_list", msgpack.packb({"v": 1, "t": "events", "seq": 1, "ev": "x"}).hex(), "bad_field", None),
    ("unknown_event", msgpack.packb({"v": 1, "t": "events", "seq": 7, "ev": [
        {"e": "teleport", "ts": 1}, {"e": "scroll", "ts": 2, "pct": 40}]}).hex(), "unknown_event", None),
    ("bad_event", msgpack.packb({"v": 1, "t": "events", "seq": 8, "ev": [
        {"e": "scroll", "ts": 1, "pct": "lots"}, {"e": "dwell", "ts": 2, "ms": 1000}]}).hex(), "bad_event", None),
    ("bad_exit_how", msgpack.packb({"v": 1, "t": "events", "seq": 9, "ev": [
        {"e": "exit_intent", "ts": 1, "how": "sideways"}, {"e": "dwell", "ts": 2, "ms": 1000}]}).hex(), "bad_event", None),
    ("bad_custom_name", msgpack.packb({"v": 1, "t": "events", "seq": 10, "ev": [
        {"e": "custom", "ts": 1, "name": "signed up!"}, {"e": "dwell", "ts": 2, "ms": 1000}]}).hex(), "bad_event", None),
    ("bad_lost", msgpack.packb({"v": 1, "t": "events", "seq": 11, "lost": -1, "ev": [
        {"e": "dwell", "ts": 2, "ms": 1000}]}).hex(), "bad_field", None),
    ("bad_feedback_act", msgpack.packb({"v": 1, "t": "feedback", "oid": "x", "act": "loved", "ts": 1}).hex(), "bad_field", None),
    ("bad_hidden_why", msgpack.packb({"v": 1, "t": "feedback", "oid": "x", "act": "hidden", "ts": 1,
                                      "why": "bored"}).hex(), "bad_field", None),
]


def main() -> None:
    valid = [
        {"name": name, "dir": direction, "frame": frame, "hex": msgpack.packb(frame).hex()}
        for name, direction, frame in VALID
    ]
    invalid = [{"name": n, "hex": h, "error": code, "close": close} for n, h, code, close in INVALID]
    for fname, data in (("valid.json", valid), ("invalid.json", invalid)):
        (HERE / fname).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
