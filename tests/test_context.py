"""Context conditions: device and browser, country and region, the visitor's clock; and no IP kept."""

from __future__ import annotations

import asyncio
import calendar
import re
import textwrap
from pathlib import Path

import msgpack
import pytest
import redis
from mmdb_writer import MMDBWriter
from netaddr import IPSet
from websockets.asyncio.client import connect

from kairos.context import GeoLookup, device_of, request_context
from kairos.rules import SIGNALS
from kairos.session import SessionState
from wsclient import hello_frame

DESKTOP_CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
IPAD = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.fixture(scope="module")
def geo_db(tmp_path_factory) -> Path:
    """A small City database: loopback is in North Holland, 203.0.113.0/24 (TEST-NET-3) in Bavaria."""
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City")
    w.insert_network(IPSet(["127.0.0.0/8", "::1/128"]), {
        "country": {"iso_code": "NL", "names": {"en": "Netherlands"}},
        "subdivisions": [{"iso_code": "NH", "names": {"en": "North Holland"}}]})
    w.insert_network(IPSet(["203.0.113.0/24"]), {
        "country": {"iso_code": "DE", "names": {"en": "Germany"}},
        "subdivisions": [{"iso_code": "BY", "names": {"en": "Bavaria"}}]})
    path = tmp_path_factory.mktemp("geo") / "test-city.mmdb"
    w.to_db_file(str(path))
    return path


@pytest.mark.parametrize("ua,expected", [
    (DESKTOP_CHROME, ("desktop", "chrome", "windows")),
    (IPHONE, ("mobile", "safari", "ios")),
    (IPAD, ("tablet", "safari", "ios")),
    (GOOGLEBOT, ("bot", "googlebot", "other")),
])
def test_device_browser_and_os_from_the_user_agent(ua, expected):
    assert device_of(ua) == expected


def test_country_and_region_from_the_address(geo_db):
    geo = GeoLookup(geo_db)
    assert geo.lookup("127.0.0.1") == ("NL", "NH")
    assert geo.lookup("203.0.113.9") == ("DE", "BY")
    assert geo.lookup("198.51.100.1") == ("", ""), "not in the database"
    assert geo.lookup("not an address") == ("", "")
    assert GeoLookup(None).lookup("127.0.0.1") == ("", ""), "no database configured"


def test_the_context_keeps_no_address(geo_db):
    ctx = request_context(DESKTOP_CHROME, "203.0.113.9", GeoLookup(geo_db))
    assert ctx == {"device": "desktop", "browser": "chrome", "os": "windows", "country": "DE", "region": "BY"}
    assert "203.0.113.9" not in repr(ctx)


def test_the_visitors_clock_comes_from_their_utc_offset():
    now = calendar.timegm((2026, 11, 23, 23, 30, 0)) * 1000  # a Monday, 23:30 UTC
    hour, weekday = SIGNALS["local_hour"][1], SIGNALS["local_weekday"][1]
    berlin, new_york = SessionState(sid="s_x", tz=60), SessionState(sid="s_y", tz=-300)
    assert (hour(berlin, None, now), weekday(berlin, None, now)) == (0, "tue")
    assert (hour(new_york, None, now), weekday(new_york, None, now)) == (18, "mon")


def test_the_referrer_host_drops_www():
    assert SIGNALS["referrer_host"][1](SessionState(sid="s", referrer="https://www.google.com/search?q=x"), None, 0) == "google.com"


RULES = textwrap.dedent("""\
    version: 1
    page_types: {product: /demo/products/*}
    rules:
      - id: dutch-desktop
        when: exit_intent
        if: {country: NL, region: NH, device: desktop, browser: chrome}
        then: {show: offer, template: offer.html, params: {headline: Hallo, body: Tot ziens!, code: NL10}}
      - id: germany
        when: exit_intent
        if: {country: DE}
        then: {show: offer, template: offer.html, params: {headline: Hallo, body: Bis bald!, code: DE10}}
        priority: 5
""")


async def say_hello(server, ua: str) -> tuple:
    ws = await connect(server.ws_url, compression=None, user_agent_header=ua)
    await ws.send(msgpack.packb(hello_frame("v_context01")))
    welcome = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))
    return ws, welcome["sid"]


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_a_rule_on_country_and_device_reaches_the_right_visitors(serve, engine, geo_db, tmp_path, redis_url):
    rules = tmp_path / "context.yaml"
    rules.write_text(RULES)
    server = serve(engine, rules=rules, extra=["--geoip-db", str(geo_db)])
    ws, sid = await say_hello(server, DESKTOP_CHROME)  # from 127.0.0.1: North Holland
    await ws.send(msgpack.packb({"v": 1, "t": "events", "seq": 1, "ev": [{"e": "exit_intent", "ts": 1}]}))
    show = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))
    assert show["rule"] == "dutch-desktop"
    state = server.session(sid)
    assert {k: state[k] for k in ("device", "browser", "os", "country", "region")} == {
        "device": "desktop", "browser": "chrome", "os": "windows", "country": "NL", "region": "NH"}
    await ws.close()
    phone, _ = await say_hello(server, IPHONE)  # a phone in the same place: no rule for it
    await phone.send(msgpack.packb({"v": 1, "t": "events", "seq": 1, "ev": [{"e": "exit_intent", "ts": 1}]}))
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(phone.recv(), 0.5)
    await phone.close()
    if engine == "redis":
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        for key in r.keys("kairos:*"):
            kind = r.type(key)
            values = (r.hgetall(key).values() if kind == "hash" else r.lrange(key, 0, -1) if kind == "list"
                      else r.zrange(key, 0, -1) if kind == "zset" else [r.get(key) or ""])
            assert not any("127.0.0.1" in str(v) for v in values), f"an IP address is stored in {key}"
    assert "WebSocket /ws" in server.output(), "uvicorn's accept lines are there, redacted"
    leaked = [line for line in server.output().splitlines() if re.search(r"127\.0\.0\.1:\d+ - ", line)]
    assert leaked == [], f"a visitor's address reached the log: {leaked}"
