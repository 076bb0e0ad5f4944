"""What is kept of a page's URL (issue 13, finding 8: `?email=bob@…` was stored verbatim).

Origin and path, and only the campaign parameters: utm_*, gclid, fbclid.
"""

from __future__ import annotations

import json

import msgpack
import pytest
from conftest import redis_contents
from websockets.asyncio.client import connect
from wsclient import Visitor, hello_frame

from kairos.session import SessionState, apply_ops, event_log, event_ops, hello_ops
from kairos.urls import clean_path, clean_url
from kairos.wire import Event, Hello, Page


@pytest.mark.parametrize("url, kept", [
    ("https://shop.example/demo/?email=bob@example.com&utm_source=news", "https://shop.example/demo/?utm_source=news"),
    ("https://shop.example/p?gclid=Cj0&fbclid=IwAR&q=bob+smith&utm_campaign=june",
     "https://shop.example/p?gclid=Cj0&fbclid=IwAR&utm_campaign=june"),
    ("https://shop.example/reset?token=9f8e7d", "https://shop.example/reset"),
    ("https://shop.example/account#access_token=abc", "https://shop.example/account"),
    ("https://bob:hunter2@Shop.Example:8443/p?utm_medium=email", "https://shop.example:8443/p?utm_medium=email"),
    ("https://shop.example/p?utm_source=a%20b&e%6Dail=bob", "https://shop.example/p?utm_source=a%20b"),
    ("https://shop.example/p?utm_source", "https://shop.example/p?utm_source"),
    ("/relative/path?order=1042&utm_id=7", "/relative/path?utm_id=7"),
    ("", ""),
    ("http://[::1/broken?email=bob@example.com", ""),
])
def test_a_url_keeps_its_origin_path_and_campaign_parameters_only(url, kept):
    assert clean_url(url) == kept


def test_a_path_keeps_nothing_after_a_question_mark_or_a_hash():
    assert clean_path("/search?q=bob") == "/search"
    assert clean_path("/p#email=bob") == "/p"
    assert clean_path("/demo/") == "/demo/"


def test_the_session_keeps_the_cut_url_and_referrer_but_reads_the_campaign_from_the_whole_url():
    page = Page(url="https://s.example/p?email=bob@example.com&utm_source=news&gclid=x", path="/p",
                ref="https://mail.example/inbox?user=bob@example.com", prod={"name": "Shirt"})
    h: dict[str, str] = {}
    apply_ops(h, hello_ops(Hello("demo", "v_12345678", None, page, True, False, False), "product", 5))
    s = SessionState.from_hash("s_x", h)
    assert s.url == "https://s.example/p?utm_source=news&gclid=x"
    assert s.referrer == "https://mail.example/inbox"
    assert s.product["url"] == s.url, "a reminder links back without the visitor's data"
    assert s.utm == {"utm_source": "news"}
    assert s.traffic == "paid", "the click id still says where the visit came from"
    assert "bob" not in json.dumps(h)


def test_a_single_page_stores_page_view_is_cut_in_the_state_and_in_the_log():
    view = Event("page_view", 1, {"url": "https://s.example/cart?email=bob@example.com&utm_source=news",
                                  "path": "/cart?email=bob@example.com", "title": "Cart",
                                  "ref": "https://s.example/p?email=bob@example.com"})
    h: dict[str, str] = {}
    apply_ops(h, event_ops([view], lambda path, declared: "cart", 1000))
    assert (h["url"], h["path"]) == ("https://s.example/cart?utm_source=news", "/cart")
    [line] = event_log([view], 1000)
    logged = json.loads(line)
    assert (logged["url"], logged["path"], logged["ref"]) == ("https://s.example/cart?utm_source=news", "/cart",
                                                              "https://s.example/p")
    assert "bob" not in line and "bob" not in json.dumps(h)


async def test_a_running_server_stores_the_path_and_utm_source_only(serve, redis_url):
    server = serve("redis")
    frame = hello_frame("v_urlstest01", path="/demo/")
    frame["page"].update(url="http://shop.test/demo/?email=bob@example.com&utm_source=news",
                         ref="https://mail.example/read?to=bob@example.com")
    ws = await connect(server.ws_url, compression=None)
    await ws.send(msgpack.packb(frame))
    sid = msgpack.unpackb(await ws.recv())["sid"]
    v = Visitor(ws, sid, "v_urlstest01")
    assert server.session(sid)["url"] == "http://shop.test/demo/?utm_source=news"
    await v.events({"e": "page_view", "url": "http://shop.test/demo/cart?email=bob@example.com&utm_source=news",
                    "path": "/demo/cart", "title": "Cart", "ref": "http://shop.test/demo/?email=bob@example.com"})
    state = server.session_when(sid, lambda s: s["path"] == "/demo/cart")
    assert state["url"] == "http://shop.test/demo/cart?utm_source=news"
    assert state["referrer"] == "https://mail.example/read"
    assert state["utm"] == {"utm_source": "news"}
    [view] = [e for e in state["log"] if e.get("e") == "page_view" and "url" in e]
    assert view["url"] == "http://shop.test/demo/cart?utm_source=news"
    await v.leave()
    stored = redis_contents(redis_url)
    assert not [k for k, value in stored.items() if "bob@example.com" in k or "bob@example.com" in value]
    assert any("?utm_source=news" in value for value in stored.values())
