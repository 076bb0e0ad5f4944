"""Context conditions: device and browser, country and region, where the visit came from, the visitor's clock; and no IP kept."""

from __future__ import annotations

import asyncio
import calendar
import re
import textwrap
from pathlib import Path

import msgpack
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet
from websockets.asyncio.client import connect

from conftest import redis_contents

from kairos.context import GeoLookup, device_of, request_context
from kairos.rules import SIGNALS, RulesError, parse_rules
from kairos.session import SessionState
from kairos.traffic import traffic_source
from wsclient import hello_frame

DESKTOP_CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
IPAD = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
# Real strings as the devices send them: a Galaxy Tab S8 in Chrome and in Samsung
# Internet, Firefox on an Android tablet (MDN's documented form), a Pixel phone.
GALAXY_TAB = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
GALAXY_TAB_SAMSUNG = ("Mozilla/5.0 (Linux; Android 12; SM-T870) AppleWebKit/537.36 (KHTML, like Gecko) "
                      "SamsungBrowser/20.0 Chrome/106.0.5249.126 Safari/537.36")
FIREFOX_ANDROID_TABLET = "Mozilla/5.0 (Android 13; Tablet; rv:121.0) Gecko/121.0 Firefox/121.0"
FIREFOX_ANDROID_PHONE = "Mozilla/5.0 (Android 13; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0"
PIXEL = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Mobile Safari/537.36"
MAC_SAFARI = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Version/17.2 Safari/605.1.15")
BINGBOT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"


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
    (GALAXY_TAB, ("tablet", "chrome", "android")),
    (GALAXY_TAB_SAMSUNG, ("tablet", "samsung internet", "android")),
    (FIREFOX_ANDROID_TABLET, ("tablet", "firefox", "android")),
    (FIREFOX_ANDROID_PHONE, ("mobile", "firefox", "android")),
    (PIXEL, ("mobile", "chrome", "android")),
    (MAC_SAFARI, ("desktop", "safari", "macos")),
    (GOOGLEBOT, ("bot", "googlebot", "other")),
    (BINGBOT, ("bot", "bingbot", "other")),
    ("", ("other", "other", "other")),
])
def test_device_browser_and_os_from_the_user_agent(ua, expected):
    assert device_of(ua) == expected


def test_country_and_region_from_the_address(geo_db):
    geo = GeoLookup(geo_db)
    assert geo.lookup("127.0.0.1") == ("NL", "NH")
    assert geo.lookup("203.0.113.9") == ("DE", "BY")
    assert geo.lookup("198.51.100.1") == ("unknown", "unknown"), "not in the database"
    assert geo.lookup("not an address") == ("unknown", "unknown")
    assert GeoLookup(None).lookup("127.0.0.1") == ("unknown", "unknown"), "no database configured"


def test_a_country_database_knows_no_region(tmp_path):
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    w.insert_network(IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "DE", "names": {"en": "Germany"}}})
    w.to_db_file(str(tmp_path / "country.mmdb"))
    assert GeoLookup(tmp_path / "country.mmdb").lookup("203.0.113.9") == ("DE", "unknown")


def test_a_missing_or_broken_database_is_one_warning_not_a_crash(tmp_path, caplog):
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"not a MaxMind database")
    for path, says in ((None, "no GeoIP database configured"), (tmp_path / "absent.mmdb", "cannot be read"),
                       (broken, "cannot be read")):
        caplog.clear()
        geo = GeoLookup(path)
        assert geo.lookup("203.0.113.9") == ("unknown", "unknown")
        warnings = [r for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1 and says in warnings[0].getMessage(), [r.getMessage() for r in warnings]
        assert "'unknown'" in warnings[0].getMessage()


def test_the_context_keeps_no_address(geo_db):
    ctx = request_context(DESKTOP_CHROME, "203.0.113.9", GeoLookup(geo_db))
    assert ctx == {"device": "desktop", "browser": "chrome", "os": "windows", "country": "DE", "region": "BY"}
    assert "203.0.113.9" not in repr(ctx)


async def test_without_a_database_serving_works_and_geography_is_unknown(serve, tmp_path):
    rules = tmp_path / "unknown.yaml"
    rules.write_text(textwrap.dedent("""\
        version: 1
        rules:
          - id: somewhere
            when: exit_intent
            if: {country: unknown}
            then: {show: offer, template: offer.html, params: {headline: Hello, body: Welcome, code: HI10}}
    """))
    server = serve("memory", rules=rules)
    ws = await connect(server.ws_url, compression=None, user_agent_header=GALAXY_TAB)
    frame = hello_frame("v_context02")
    frame["page"]["url"] += "?utm_source=google&utm_medium=cpc"
    await ws.send(msgpack.packb(frame))
    sid = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))["sid"]
    await ws.send(msgpack.packb({"v": 1, "t": "events", "seq": 1, "ev": [{"e": "exit_intent", "ts": 1}]}))
    assert msgpack.unpackb(await asyncio.wait_for(ws.recv(), 5))["rule"] == "somewhere"
    await ws.close()
    state = server.session(sid)
    assert {k: state[k] for k in ("device", "country", "region", "traffic")} == {
        "device": "tablet", "country": "unknown", "region": "unknown", "traffic": "paid"}
    warnings = [line for line in server.output().splitlines() if "GeoIP" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and "'unknown'" in warnings[0], warnings


def test_the_visitors_clock_comes_from_their_utc_offset():
    now = calendar.timegm((2026, 11, 23, 23, 30, 0)) * 1000  # a Monday, 23:30 UTC
    hour, weekday = SIGNALS["local_hour"][1], SIGNALS["local_weekday"][1]
    berlin, new_york = SessionState(sid="s_x", tz=60), SessionState(sid="s_y", tz=-300)
    assert (hour(berlin, None, now), weekday(berlin, None, now)) == (0, "tue")
    assert (hour(new_york, None, now), weekday(new_york, None, now)) == (18, "mon")


def test_the_referrer_host_drops_www():
    assert SIGNALS["referrer_host"][1](SessionState(sid="s", referrer="https://www.google.com/search?q=x"), None, 0) == "google.com"


SHOP = "https://shop.example/demo/products/linen-shirt"

# (referrer, landing URL, class): what a store operator would call each visit
TRAFFIC = [
    ("", SHOP, "direct"),
    ("https://www.google.com/", SHOP, "search"),
    ("https://www.google.co.uk/search?q=linen", SHOP, "search"),
    ("https://www.google.de/", SHOP, "search"),
    ("https://www.bing.com/search?q=linen+shirt", SHOP, "search"),
    ("https://duckduckgo.com/", SHOP, "search"),
    ("https://yandex.ru/search/?text=x", SHOP, "search"),
    ("https://uk.search.yahoo.com/", SHOP, "search"),
    ("https://google.evil-site.com/", SHOP, "referral"),
    ("https://l.facebook.com/", SHOP, "social"),
    ("https://m.facebook.com/story.php", SHOP, "social"),
    ("https://t.co/AbC123", SHOP, "social"),
    ("https://www.instagram.com/", SHOP, "social"),
    ("https://www.pinterest.fr/pin/1/", SHOP, "social"),
    ("https://out.reddit.com/", SHOP, "social"),
    ("https://mail.google.com/", SHOP, "email"),
    ("https://outlook.live.com/", SHOP, "email"),
    ("https://webmail.example.net/", SHOP, "email"),
    ("https://www.some-blog.example/best-shirts", SHOP, "referral"),
    ("https://shop.example/demo/", SHOP, "internal"),
    ("https://www.shop.example/demo/", SHOP, "internal"),
    # UTM tags and click ids win over the referrer
    ("", SHOP + "?utm_source=newsletter&utm_medium=email&utm_campaign=june", "email"),
    ("https://www.google.com/", SHOP + "?utm_source=google&utm_medium=cpc", "paid"),
    ("https://www.google.com/", SHOP + "?gclid=EAIaIQobChMI", "paid"),
    ("", SHOP + "?msclkid=abc", "paid"),
    ("https://www.facebook.com/", SHOP + "?utm_source=facebook&utm_medium=paid_social", "paid"),
    ("", SHOP + "?utm_source=fb&utm_medium=PPC", "paid"),
    ("", SHOP + "?utm_medium=display", "paid"),
    ("", SHOP + "?fbclid=IwAR0x", "social"),
    ("", SHOP + "?utm_source=instagram&utm_medium=social", "social"),
    ("", SHOP + "?utm_source=google&utm_medium=organic", "search"),
    ("", SHOP + "?utm_source=google", "search"),
    ("", SHOP + "?mc_cid=1a2b&mc_eid=3c4d", "email"),
    ("", SHOP + "?utm_source=partner&utm_medium=affiliate", "referral"),
    ("", SHOP + "?utm_source=podcast&utm_campaign=spring", "referral"),
    ("not a url", "neither", "direct"),
    ("http://[::1", SHOP, "direct"),
]


@pytest.mark.parametrize("referrer,url,expected", TRAFFIC)
def test_where_a_visit_came_from(referrer, url, expected):
    assert traffic_source(referrer, url) == expected


def test_a_rule_can_name_where_the_visit_came_from():
    rules = "version: 1\nrules:\n  - id: welcome\n    when: page_view\n    if: {traffic: %s}\n    then: {show: bar, template: bar.html}\n"
    rule = parse_rules(rules % "[search, paid]").rules[0]
    from kairos.rules import matches

    assert matches(rule, SessionState(sid="s", traffic="search"), None, 0)
    assert not matches(rule, SessionState(sid="s", traffic="direct"), None, 0)
    with pytest.raises(RulesError) as err:
        parse_rules(rules % "serach")
    assert "traffic: unknown source 'serach'" in str(err.value) and "search" in str(err.value)


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
        for key, value in redis_contents(redis_url).items():
            assert "127.0.0.1" not in value, f"an IP address is stored in {key}"
    assert "WebSocket /ws" in server.output(), "uvicorn's accept lines are there, redacted"
    leaked = [line for line in server.output().splitlines() if re.search(r"127\.0\.0\.1:\d+ - ", line)]
    assert leaked == [], f"a visitor's address reached the log: {leaked}"
