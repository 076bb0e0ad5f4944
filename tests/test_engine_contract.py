"""One contract, two engines: what every engine promises, run against memory and real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import msgpack
import pytest
import redis as sync_redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kairos.caps import Caps, Window
from kairos.engine import MemoryEngine
from kairos.engine import keys
from kairos.engine.base import LOG_MAX, Bus, Opening, SessionGone
from kairos.engine.keys import EmptyId
from kairos.engine.cluster import RedisClusterEngine
from kairos.engine.redis import RedisEngine
from kairos.rules.delayed import Timer
from kairos.session import KEEP_OVERLAYS, event_ops, hello_ops, log_entry, sockets_field
from kairos.wire import Event, Hello, Page
from kairos.ws import new_sid
from redis_monitor import Commands

TTL_S = 60
PRODUCT = {"name": "Linen shirt", "price": 59.9, "url": "https://shop.example/demo/products/linen-shirt?utm_source=news"}


def make_engine(kind: str, redis_url: str, ttl_s: int = TTL_S, pool_size: int = 8, archive_ttl_s: int = 3600):
    if kind == "memory":
        return MemoryEngine(session_ttl_s=ttl_s, archive_ttl_s=archive_ttl_s)
    if kind == "cluster":
        return RedisClusterEngine(redis_url, session_ttl_s=ttl_s, pool_size=pool_size, archive_ttl_s=archive_ttl_s)
    return RedisEngine(redis_url, session_ttl_s=ttl_s, pool_size=pool_size, archive_ttl_s=archive_ttl_s)


@pytest.fixture(params=["memory", "redis", "cluster"])
async def engine(request, redis_url):
    url = request.getfixturevalue("clean_cluster" if request.param == "cluster" else "clean_redis")
    e = make_engine(request.param, url)
    await e.start()
    yield e
    await e.close()


def session_id(name: str, vid: str = "v_visitor01") -> str:
    """A session id as a server makes one (ws.new_sid): in its visitor's hash slot, as Redis Cluster needs."""
    return f"{keys.visitor_tag(vid)}.{name}"


def hello(sid=session_id("contract1"), vid="v_visitor01", path="/demo/products/linen-shirt") -> Hello:
    page = Page(url=f"https://shop.example{path}?utm_source=news", path=path, title="Linen shirt",
                prod={"name": "Linen shirt", "price": 59.9} if "/products/" in path else None)
    return Hello(site="demo", vid=vid, sid=sid, page=page, consent=True, dnt=False, gpc=False, tz=60, lang="en")


def now() -> int:
    return int(time.time() * 1000)


async def open_session(engine, sid=session_id("contract1"), vid="v_visitor01", path="/demo/products/linen-shirt"):
    return await engine.apply(sid, hello_ops(hello(sid, vid, path), classify(path), now()), [log_entry("event", now(), e="page_view")], now())


def classify(path: str, declared: str = "") -> str:
    return "product" if path.startswith("/demo/products/") else "other"


async def test_a_new_session_holds_its_page_and_visitor(engine):
    state = await open_session(engine)
    assert (state.vid, state.site, state.path, state.page_type, state.pages) == ("v_visitor01", "demo", "/demo/products/linen-shirt", "product", 1)
    assert state.product == PRODUCT
    assert state.utm == {"utm_source": "news"}
    assert await engine.visitor_of(session_id("contract1")) == "v_visitor01"
    assert await engine.visitor_of(session_id("nobody000")) is None


async def test_state_survives_a_reconnect_with_the_same_session_id(engine):
    await open_session(engine)
    events = [Event("dwell", 1, {"ms": 4000}), Event("scroll", 2, {"pct": 55}), Event("click", 3, {"tag": "a"})]
    await engine.apply(session_id("contract1"), event_ops(events, classify, now()), [], now())
    await engine.apply(session_id("contract1"), [("incr", sockets_field(""), "-1")], [], now())  # the page unloads
    # The next page load of the same visit says hello with the same session id.
    state = await open_session(engine, path="/demo/cart")
    assert state.pages == 2
    assert state.dwell_ms == 4000 and state.clicks == 1
    assert state.scroll_pct == 0, "scroll depth is per page"
    assert state.product == PRODUCT, "the product looked at is remembered"
    assert state.connected == 1


async def test_first_visit_context_is_kept_from_the_first_page(engine):
    await open_session(engine)
    later = Hello(site="demo", vid="v_visitor01", sid=session_id("contract1"), consent=True, dnt=False, gpc=False,
                  page=Page(url="https://shop.example/demo/cart", path="/demo/cart", ref="https://shop.example/demo/"))
    state = await engine.apply(session_id("contract1"), hello_ops(later, "cart", now()), [], now())
    assert state.utm == {"utm_source": "news"}
    assert state.referrer == ""


async def test_every_stored_item_has_a_ttl(engine):
    await open_session(engine)
    ttls = await engine.ttl_s(session_id("contract1"))
    assert set(ttls) == {"state", "log"}
    assert all(0 < t <= TTL_S for t in ttls.values()), ttls


async def test_sessions_expire_after_their_ttl(clean_redis):
    for kind in ("memory", "redis"):
        e = make_engine(kind, clean_redis, ttl_s=1)
        await e.start()
        try:
            await open_session(e)
            assert await e.session(session_id("contract1")) is not None
            await asyncio.sleep(1.3)
            assert await e.session(session_id("contract1")) is None, kind
            assert await e.visitor_of(session_id("contract1")) is None, kind
        finally:
            await e.close()


async def test_concurrent_batches_for_one_session_lose_no_update(engine):
    await open_session(engine)
    batches = [[Event("click", i, {"tag": "a"}), Event("scroll", i, {"pct": i % 101}), Event("dwell", i, {"ms": 10})]
               for i in range(200)]
    await asyncio.gather(*(engine.apply(session_id("contract1"), event_ops(b, classify, now()), [], now()) for b in batches))
    state = await engine.session(session_id("contract1"))
    assert state.clicks == 200
    assert state.dwell_ms == 2000
    assert state.scroll_pct == 100


async def test_two_redis_clients_racing_on_one_session_lose_no_update(clean_redis):
    # Two server processes are two clients of one Redis.
    a, b = make_engine("redis", clean_redis), make_engine("redis", clean_redis)
    await a.start(), await b.start()
    try:
        await open_session(a)
        ops = event_ops([Event("click", 1, {"tag": "a"})], classify, now())
        await asyncio.gather(*(e.apply(session_id("contract1"), ops, [], now()) for _ in range(150) for e in (a, b)))
        assert (await b.session(session_id("contract1"))).clicks == 300
    finally:
        await a.close(), await b.close()


async def test_the_log_keeps_the_newest_entries_newest_first(engine):
    await open_session(engine)
    for i in range(LOG_MAX + 10):
        await engine.apply(session_id("contract1"), [], [log_entry("event", i, e="click", n=i)], now())
    entries = await engine.log(session_id("contract1"))
    assert len(entries) == LOG_MAX
    assert entries[0]["n"] == LOG_MAX + 9 and entries[-1]["n"] == 10


async def test_a_rule_capped_at_once_per_session_is_shown_once(engine):
    await open_session(engine)
    first = await engine.claim_show(session_id("contract1"), "v_visitor01", "exit-offer", "exit-offer.1", Caps(1, 10), "{}", now())
    await engine.record_feedback(session_id("contract1"), "exit-offer.1", "expired", "{}", now())
    second = await engine.claim_show(session_id("contract1"), "v_visitor01", "exit-offer", "exit-offer.2", Caps(1, 10), "{}", now())
    assert (first, second) == ("ok", "capped")
    state = await engine.session(session_id("contract1"))
    assert state.fired == {"exit-offer": 1}
    assert state.overlays["exit-offer.1"].status == "expired"


async def test_concurrent_claims_never_exceed_the_cap(engine):
    await open_session(engine)
    results = await asyncio.gather(
        *(engine.claim_show(session_id("contract1"), "v_visitor01", "r", f"r.{i}", Caps(1, 0), "{}", now()) for i in range(50))
    )
    assert results.count("ok") == 1
    assert set(results) == {"ok", "capped"}


async def test_a_dismissed_rule_is_not_shown_again_in_the_session(engine):
    await open_session(engine)
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "r", "r.1", Caps(0, 0), "{}", now()) == "ok"
    assert await engine.record_feedback(session_id("contract1"), "r.1", "dismissed", "{}", now())
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "r", "r.2", Caps(0, 0), "{}", now()) == "dismissed"
    state = await engine.session(session_id("contract1"))
    assert state.dismissed == {"r"} and state.onscreen is None


async def test_one_overlay_at_a_time_and_the_higher_priority_wins(engine):
    await open_session(engine)
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "low", "low.1", Caps(0, 1), "{}", now()) == "ok"
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "same", "same.1", Caps(0, 1), "{}", now()) == "busy"
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "high", "high.1", Caps(0, 5), "{}", now()) == "ok"
    state = await engine.session(session_id("contract1"))
    assert state.onscreen == "high.1"
    assert state.overlays["low.1"].status == "replaced"


async def test_a_page_load_clears_the_overlay_on_screen(engine):
    await open_session(engine)
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "low", "low.1", Caps(0, 1), "{}", now()) == "ok"
    state = await open_session(engine, path="/demo/cart")
    assert state.onscreen is None


async def test_feedback_for_an_overlay_never_sent_is_refused(engine):
    await open_session(engine)
    assert not await engine.record_feedback(session_id("contract1"), "forged.1", "clicked", "{}", now())
    assert (await engine.session(session_id("contract1"))).overlays == {}


async def test_claims_on_a_missing_session_are_refused(engine):
    assert await engine.claim_show(session_id("gone00000"), "v_visitor01", "r", "r.1", Caps(0, 0), "{}", now()) == "gone"


async def test_a_batch_for_a_session_the_store_lost_writes_nothing_and_says_so(engine):
    # Redis restarted without persistence: the page's next batch must not make a
    # session of its own events alone, without its visitor (issue 15, finding 3).
    with pytest.raises(SessionGone):
        await engine.apply(session_id("lost00001"), event_ops([Event("click", 1, {"tag": "a"})], classify, now()), ["{}"], now())
    assert await engine.session(session_id("lost00001")) is None
    assert await engine.log(session_id("lost00001")) == []
    # A disconnect's count too: nothing to lower.
    with pytest.raises(SessionGone):
        await engine.apply(session_id("lost00001"), [("incr", "connected", "-1")], [], now())
    assert await engine.session(session_id("lost00001")) is None


async def test_the_redis_engine_closes_with_commands_in_flight(clean_redis):
    # A thousand batches in flight and one failing: the engine must still close (a
    # worker cancelled mid-pipeline once waited forever, and the server never exited).
    e = make_engine("redis", clean_redis)
    await e.start()
    with pytest.raises(SessionGone):
        await asyncio.gather(*(e.apply(session_id(f"gone{i:05d}"), [("incr", "n:click", "1")], [], now()) for i in range(1000)))
    await asyncio.wait_for(e.close(), 30)  # a hang detector, not a timing


async def test_no_session_or_visitor_is_stored_under_an_empty_id(engine):
    with pytest.raises((SessionGone, EmptyId)):
        await engine.apply("", hello_ops(hello(sid=""), "product", now()), [], now())
    await open_session(engine)
    with pytest.raises(EmptyId):
        await engine.claim_show(session_id("contract1"), "", "r", "r.1", Caps(per_session=1), "{}", now())
    with pytest.raises(EmptyId):
        await engine.visit("", session_id("contract1"), "/", "other", True, now())
    with pytest.raises(EmptyId):
        await engine.keep_for_next_page("", "r", now())


async def test_a_restored_session_holds_back_its_once_per_session_nudges(engine):
    # Opened again after the store lost it: what it was shown is unknown, so a
    # once-a-session offer is not risked twice; an uncapped nudge still shows.
    state = await engine.apply(session_id("contract1"), hello_ops(hello(), "product", now()) + [("set", "restored", str(now()))],
                               [], now())
    assert state.restored > 0
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "once", "once.1", Caps(per_session=1), "{}", now()) == "history_lost"
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "often", "often.1", Caps(per_session=0), "{}", now()) == "ok"
    await open_session(engine, sid=session_id("contract2"))
    assert await engine.claim_show(session_id("contract2"), "v_visitor01", "once", "once.2", Caps(per_session=1), "{}", now()) == "ok"


async def test_the_dashboard_lists_recent_sessions(engine):
    for i in range(3):
        await open_session(engine, sid=session_id(f"list0000{i}"))
        await engine.mark_live(session_id(f"list0000{i}"), now())
    listed = await engine.sessions(now())
    assert {s.sid for s in listed} == {session_id("list00000"), session_id("list00001"), session_id("list00002")}


async def test_redis_keys_are_hash_tagged_and_all_expire(clean_redis):
    e = make_engine("redis", clean_redis)
    await e.start()
    try:
        await open_session(e)
        await e.mark_live(session_id("contract1"), now())
        await e.claim_show(session_id("contract1"), "v_visitor01", "r", "r.1", Caps(0, 0), "{}", now())
        await e.archive(session_id("contract1"), "{}", now())
        r = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
        keys = r.keys("*")
        assert keys, "nothing was written"
        for key in keys:
            assert r.ttl(key) > 0, f"{key} has no TTL"
        session_keys = [k for k in keys if session_id("contract1") in k]
        tag = session_id("contract1").partition(".")[0]
        assert session_keys and all(k.startswith(f"kairos:{{{tag}}}:") for k in session_keys)
    finally:
        await e.close()


async def test_redis_pool_stays_bounded_under_1000_concurrent_sessions(clean_redis):
    e = make_engine("redis", clean_redis, pool_size=8)
    await e.start()
    r = sync_redis.Redis.from_url(clean_redis)
    before = r.info("clients")["connected_clients"]
    try:
        # Each opens its session (a session is created only with its visitor).
        ops = [("setnx", "vid", "v_many")] + event_ops([Event("dwell", 1, {"ms": 5})], classify, now())
        states = await asyncio.gather(*(e.apply(session_id(f"many{i:05d}"), ops, [], now()) for i in range(1000)))
        assert len(states) == 1000 and all(s.dwell_ms == 5 for s in states)
        during = r.info("clients")["connected_clients"]
        assert during - before <= 8
    finally:
        await e.close()


# --- across sessions: the visitor's caps and history ---------------------------------

HOUR_MS = 3600 * 1000


async def test_a_visitor_cap_holds_across_sessions(engine):
    caps = Caps(per_session=0, per_visitor=Window(2, HOUR_MS))
    results = []
    for n in range(3):
        sid = session_id(f"visit000{n}")
        await open_session(engine, sid=sid)
        results.append(await engine.claim_show(sid, "v_visitor01", "r", f"r.{n}", caps, "{}", now()))
    assert results == ["ok", "ok", "visitor_capped"]
    await open_session(engine, sid=session_id("other0000", "v_someone2"), vid="v_someone2")
    assert await engine.claim_show(session_id("other0000", "v_someone2"), "v_someone2", "r", "r.9", caps, "{}", now()) == "ok", "another visitor"


async def test_the_global_cap_counts_every_rule_together(engine):
    caps = Caps(per_session=0, all_per_visitor=Window(2, HOUR_MS))
    await open_session(engine)
    got = []
    for rule in ("a", "b", "c"):
        got.append(await engine.claim_show(session_id("contract1"), "v_visitor01", rule, f"{rule}.1", caps, "{}", now()))
        await engine.record_feedback(session_id("contract1"), f"{rule}.1", "expired", "{}", now())
    assert got == ["ok", "ok", "globally_capped"]


async def test_the_visitor_window_rolls(engine):
    caps = Caps(per_session=0, per_visitor=Window(1, HOUR_MS))
    await open_session(engine)
    t0 = now()
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "r", "r.1", caps, "{}", t0 - HOUR_MS - 1) == "ok"
    await engine.record_feedback(session_id("contract1"), "r.1", "expired", "{}", now())
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "r", "r.2", caps, "{}", t0) == "ok", "an hour later"
    await engine.record_feedback(session_id("contract1"), "r.2", "expired", "{}", now())
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "r", "r.3", caps, "{}", t0 + 1000) == "visitor_capped"


async def test_a_cooldown_spaces_the_shows_of_a_rule(engine):
    caps = Caps(per_session=0, cooldown_ms=60_000)
    await open_session(engine)
    t0 = now()
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "r", "r.1", caps, "{}", t0) == "ok"
    await engine.record_feedback(session_id("contract1"), "r.1", "expired", "{}", t0)
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "r", "r.2", caps, "{}", t0 + 30_000) == "cooldown"
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "r", "r.3", caps, "{}", t0 + 61_000) == "ok"


async def test_a_rule_wide_cap_counts_every_visitor(engine):
    caps = Caps(per_session=0, per_rule=Window(3, HOUR_MS))
    got = []
    for n in range(5):
        await open_session(engine, sid=session_id(f"crowd000{n}", f"v_crowd000{n}"), vid=f"v_crowd000{n}")
        got.append(await engine.claim_show(session_id(f"crowd000{n}", f"v_crowd000{n}"), f"v_crowd000{n}", "launch", f"l.{n}", caps, "{}", now()))
    assert got == ["ok", "ok", "ok", "rule_capped", "rule_capped"]


async def test_concurrent_claims_never_pass_the_global_cap(engine):
    caps = Caps(per_session=0, all_per_visitor=Window(2, HOUR_MS))
    for n in range(20):
        await open_session(engine, sid=session_id(f"race0000{n:02d}"))
    results = await asyncio.gather(*(
        engine.claim_show(session_id(f"race0000{n:02d}"), "v_visitor01", f"rule{n}", f"x.{n}", caps, "{}", now()) for n in range(20)))
    assert results.count("ok") == 2


async def test_page_views_are_counted_under_the_visitor_for_a_day(engine):
    t0 = now()
    info = None
    for n, (sid, path, ptype) in enumerate([(session_id("day00001"), "/c/shirts", "category"), (session_id("day00001"), "/c/shoes", "category"),
                                            (session_id("day00002"), "/c/shirts", "category"), (session_id("day00002"), "/p/x", "product")]):
        info = await engine.visit("v_visitor01", sid, path, ptype, True, t0 + n)
    assert (info.sessions, info.page_views_24h, info.type_views_24h, info.returning) == (2, 1, 1, True)
    info = await engine.visit("v_visitor01", session_id("day00002"), "/c/shirts", "category", True, t0 + 10)
    assert (info.page_views_24h, info.type_views_24h) == (3, 4)
    later = await engine.visit("v_visitor01", session_id("day00003"), "/c/shirts", "category", False, t0 + 24 * HOUR_MS + 11)
    assert (later.page_views_24h, later.sessions) == (0, 3), "a day later the window is empty; the visits remain"
    new = await engine.visit("v_newcomer1", session_id("day00009", "v_newcomer1"), "/", "home", True, t0)
    assert (new.sessions, new.returning, new.page_views_24h) == (1, False, 1)


async def test_visitor_keys_expire_in_redis(clean_redis):
    e = make_engine("redis", clean_redis)
    await e.start()
    try:
        await open_session(e)
        await e.visit("v_visitor01", session_id("contract1"), "/p", "product", True, now())
        caps = Caps(per_session=0, per_visitor=Window(2, HOUR_MS), per_rule=Window(5, HOUR_MS))
        assert await e.claim_show(session_id("contract1"), "v_visitor01", "r", "r.1", caps, "{}", now()) == "ok"
        r = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
        keys = r.keys("*")
        assert any(k.startswith("kairos:{v:v_visitor01}:") for k in keys)
        assert any(k.startswith("kairos:rule:r:") for k in keys)
        for key in keys:
            assert r.ttl(key) > 0, f"{key} has no TTL"
    finally:
        await e.close()


async def test_a_page_view_remembers_the_page_it_left_and_its_adds_to_cart(engine):
    await open_session(engine)  # a product page
    await engine.apply(session_id("contract1"), event_ops([Event("add_to_cart", 1, {})], classify, now()), [], now())
    state = await open_session(engine, path="/demo/cart")
    assert (state.prev_page_type, state.prev_page_adds, state.page_adds) == ("product", 1, 0)
    state = await open_session(engine, path="/demo/")
    assert (state.prev_page_type, state.prev_page_adds) == ("other", 0)


async def test_a_nudge_kept_for_the_next_page_is_taken_once_by_any_session(engine):
    await engine.keep_for_next_page("v_visitor01", "cart-recovery", now())
    assert await engine.pending_for("v_visitor01") == ["cart-recovery"]
    looked = await engine.visit("v_visitor01", session_id("newtab001"), "/", "home", False, now())
    assert looked.pending == (), "a reconnection is not a page view"
    taken = await engine.visit("v_visitor01", session_id("newtab001"), "/", "home", True, now())
    assert taken.pending == ("cart-recovery",)
    again = await engine.visit("v_visitor01", session_id("newtab002"), "/", "home", True, now())
    assert again.pending == () and await engine.pending_for("v_visitor01") == []


async def test_custom_events_are_counted_by_name_up_to_the_limit(engine):
    from kairos.session import MAX_CUSTOM_NAMES

    await open_session(engine)
    batch = [Event("custom", i, {"name": f"promo:{i}"}) for i in range(MAX_CUSTOM_NAMES + 3)]
    await engine.apply(session_id("contract1"), event_ops(batch, classify, now()), [], now())
    state = await engine.apply(session_id("contract1"), event_ops([Event("custom", 1, {"name": "promo:0"})], classify, now()), [], now())
    assert len(state.custom) == MAX_CUSTOM_NAMES and state.custom["promo:0"] == 2
    assert f"promo:{MAX_CUSTOM_NAMES}" not in state.custom
    assert state.counts["custom"] == MAX_CUSTOM_NAMES + 4


async def test_the_new_counters_and_the_lost_count_are_kept(engine):
    await open_session(engine)
    events = [Event("rage_click", 1, {"tag": "a", "n": 3}), Event("hesitation", 2, {"field": "email", "ms": 9000}),
              Event("copy", 3, {}), Event("idle", 4, {"ms": 30000}), Event("idle_end", 5, {"ms": 31000}),
              Event("identify", 6, {"uid": "customer-1042"})]
    state = await engine.apply(session_id("contract1"), event_ops(events, classify, now(), "demo", identify_key=b"k") + [("incr", "lost", "4")], [], now())
    assert (state.rage_clicks, state.hesitations, state.copies, state.idle_ms, state.lost) == (1, 1, 1, 0, 4)
    assert len(state.uid) == 32 and state.uid != "customer-1042"


# --- forgetting a visitor (kairos.consent(false)) ---------------------------------------


async def visitor_with_two_tabs(engine, vid="v_forget001"):
    """A visitor with a session in each of two tabs, a show, a kept nudge, a timer and a page view each."""
    for sid in (session_id("tabone001", "v_forget001"), session_id("tabtwo001", "v_forget001")):
        await open_session(engine, sid=sid, vid=vid)
        await engine.visit(vid, sid, "/demo/products/linen-shirt", "product", True, now())
        await engine.mark_live(sid, now())
    caps = Caps(1, 0, per_visitor=Window(3, 3_600_000))
    assert await engine.claim_show(session_id("tabone001", "v_forget001"), vid, "exit-offer", "exit-offer.1", caps, "{}", now()) == "ok"
    await engine.keep_for_next_page(vid, "cart-recovery", now())
    await engine.arm_timers([Timer(session_id("tabone001", "v_forget001"), "reminder", now() + 60_000, now()),
                             Timer(session_id("tabtwo001", "v_forget001"), "reminder", now() + 60_000, now())])


async def test_forgetting_a_visitor_erases_their_keys_sessions_and_timers(engine):
    await visitor_with_two_tabs(engine)
    await open_session(engine, sid=session_id("bystander", "v_bystander"), vid="v_bystander")
    await engine.mark_live(session_id("bystander", "v_bystander"), now())
    await engine.arm_timers([Timer(session_id("bystander", "v_bystander"), "reminder", now() + 60_000, now())])
    erased = await engine.forget("v_forget001", session_id("tabtwo001", "v_forget001"))
    assert erased == [session_id("tabone001", "v_forget001"), session_id("tabtwo001", "v_forget001")], "every tab's session, not only the one that asked"
    for sid in erased:
        assert await engine.session(sid) is None and await engine.log(sid) == []
    assert await engine.pending_for("v_forget001") == []
    assert [s.sid for s in await engine.sessions(now())] == [session_id("bystander", "v_bystander")]
    assert await engine.pending_timers() == 1
    fresh = await engine.visit("v_forget001", session_id("tabthree1", "v_forget001"), "/", "home", True, now())
    assert (fresh.sessions, fresh.page_views_24h, fresh.type_views_24h) == (1, 1, 1), "they start over"
    caps = Caps(1, 0, per_visitor=Window(1, 3_600_000))
    await open_session(engine, sid=session_id("tabthree1", "v_forget001"), vid="v_forget001")
    assert await engine.claim_show(session_id("tabthree1", "v_forget001"), "v_forget001", "exit-offer", "exit-offer.2", caps, "{}", now()) == "ok", \
        "their show history went too"
    assert (await engine.session(session_id("bystander", "v_bystander"))).vid == "v_bystander"


async def test_forgetting_spares_a_session_of_another_visitor(engine):
    await open_session(engine, sid=session_id("notyours1", "v_owner0001"), vid="v_owner0001")
    assert await engine.forget("v_stranger1", session_id("notyours1", "v_owner0001")) == []
    assert (await engine.session(session_id("notyours1", "v_owner0001"))).vid == "v_owner0001"


async def test_forgetting_in_redis_leaves_no_key_or_member_naming_the_visitor_or_session(clean_redis):
    from conftest import redis_contents

    e = make_engine("redis", clean_redis)
    await e.start()
    try:
        await visitor_with_two_tabs(e)
        await open_session(e, sid=session_id("bystander", "v_bystander"), vid="v_bystander")
        await e.mark_live(session_id("bystander", "v_bystander"), now())
        before = redis_contents(clean_redis)
        assert any("v_forget001" in k for k in before) and any(session_id("tabone001", "v_forget001") in k for k in before)
        await e.forget("v_forget001", session_id("tabone001", "v_forget001"))
        after = redis_contents(clean_redis)
        for needle in ("v_forget001", session_id("tabone001", "v_forget001"), session_id("tabtwo001", "v_forget001")):
            assert not [k for k, v in after.items() if needle in k or needle in v], needle
        assert any(session_id("bystander", "v_bystander") in k for k in after), "other visitors keep theirs"
    finally:
        await e.close()


async def visitor_with_sessions(engine, vid: str, n: int) -> list[str]:
    """A visitor with `n` sessions, each with a page view, an identify, a show, a log, a timer,
    a live-set entry and a row kept for training; their ids, oldest first."""
    sids = [session_id(f"{vid[2:]}_{i:04d}", vid) for i in range(n)]
    identify = [Event("identify", 1, {"uid": "bob@example.com"})]
    for i, sid in enumerate(sids):
        await open_session(engine, sid=sid, vid=vid)
        await engine.visit(vid, sid, "/demo/products/linen-shirt", "product", True, now())
        await engine.mark_live(sid, now())
        await engine.apply(sid, event_ops(identify, classify, now(), "demo", identify_key=b"k"),
                           [log_entry("event", now(), e="identify")], now())
        assert await engine.claim_show(sid, vid, "exit-offer", f"exit-offer.{i:04x}", Caps(0, 0), "{}", now()) == "ok"
        await engine.archive(sid, '{"features":{},"purchased":false}', now())
    await engine.arm_timers([Timer(sid, "reminder", now() + 60_000, now()) for sid in sids])
    return sids


def memory_contents(engine: MemoryEngine) -> dict[str, str]:
    """Every structure of the memory engine, as text: to look for what must not be kept."""
    return {name: repr(value) for name, value in vars(engine).items()}


@pytest.mark.parametrize("n", [20, 100, 201])
async def test_forgetting_a_visitor_reaches_every_one_of_their_sessions(engine, clean_redis, n):
    # Issue 13, finding 5: only the newest 16 sessions were erased; with 20, four survived.
    from conftest import redis_contents

    vid = f"v_many{n:04d}"
    sids = await visitor_with_sessions(engine, vid, n)
    await open_session(engine, sid=session_id("bystander", "v_bystander"), vid="v_bystander")
    await engine.mark_live(session_id("bystander", "v_bystander"), now())
    await engine.archive(session_id("bystander", "v_bystander"), "not theirs", now())
    await engine.arm_timers([Timer(session_id("bystander", "v_bystander"), "reminder", now() + 60_000, now())])

    def contents() -> dict[str, str]:
        return redis_contents(engine.url) if engine.name == "redis" else memory_contents(engine)

    assert all(any(sid in k or sid in v for k, v in contents().items()) for sid in (sids[0], sids[-1]))
    erased = await engine.forget(vid, sids[-1])
    assert erased == sids, "every session, however many"
    left = contents()
    for needle in (vid, *sids):
        assert not [k for k, v in left.items() if needle in k or needle in v], f"{needle} is still stored"
    for sid in (sids[0], sids[n // 2], sids[-1]):
        assert await engine.session(sid) is None and await engine.log(sid) == []
    assert [s.sid for s in await engine.sessions(now())] == [session_id("bystander", "v_bystander")]
    assert await engine.pending_timers() == 1
    assert await engine.archived(now() + 1) == ["not theirs"]
    assert (await engine.visit(vid, session_id("newvisit1"), "/", "home", True, now())).sessions == 1, "they start over"


async def test_a_session_of_theirs_that_expired_still_has_its_row_kept_for_training_erased(clean_redis):
    # The row outlives the session (30 days against 30 minutes): the index must still lead to it.
    for kind in ("memory", "redis"):
        e = make_engine(kind, clean_redis, ttl_s=1)
        await e.start()
        try:
            await open_session(e, sid=session_id("expired01", "v_expired01"), vid="v_expired01")
            await e.visit("v_expired01", session_id("expired01", "v_expired01"), "/", "home", True, now())
            await e.archive(session_id("expired01", "v_expired01"), "theirs", now())
            await asyncio.sleep(1.2)
            assert await e.session(session_id("expired01", "v_expired01")) is None
            assert await e.forget("v_expired01", None) == []
            assert await e.archived(now() + 1) == [], kind
        finally:
            await e.close()


# --- what the dashboard reads: skipped moments, paused rules, counters ------------------------


def skips(log: list[dict]) -> list[tuple[str, str]]:
    return [(e["rule"], e["why"]) for e in log if e.get("kind") == "skip"]


async def test_a_moment_blocked_for_the_same_reason_is_logged_and_counted_once(engine):
    await open_session(engine)
    t = now()
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "high", "high.1", Caps(0, 5), "{}", t) == "ok"
    for n in range(3):  # the same rule, blocked by the overlay on screen, batch after batch
        assert await engine.claim_show(session_id("contract1"), "v_visitor01", "low", f"low.{n}", Caps(0, 1), "{}", t) == "busy"
    assert skips(await engine.log(session_id("contract1"))) == [("low", "busy")]
    await engine.record_feedback(session_id("contract1"), "high.1", "dismissed", "{}", t)
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "low", "low.9", Caps(0, 1), "{}", t) == "ok"
    # shown now: the next block is a new moment, logged again
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "low", "low.10", Caps(1, 1), "{}", t) == "capped"
    assert skips(await engine.log(session_id("contract1"))) == [("low", "capped"), ("low", "busy")]
    counts = (await engine.stats(t, t))
    assert list(counts.values()) == [{"high|triggered": 1, "high|shown": 1, "high|dismissed": 1,
                                      "low|triggered": 3, "low|shown": 1}]


async def test_a_paused_rule_is_refused_until_it_is_resumed(engine):
    await open_session(engine)
    t = now()
    await engine.set_paused("r", True, t)
    await engine.set_paused("r", True, t + 5)  # pausing again keeps the first time
    assert await engine.paused() == {"r": t}
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "r", "r.1", Caps(0, 0), "{}", t) == "paused"
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "other", "other.1", Caps(0, 0), "{}", t) == "ok"
    await engine.set_paused("r", False, t)
    assert await engine.paused() == {}
    await engine.record_feedback(session_id("contract1"), "other.1", "clicked", "{}", t)  # off the screen
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "r", "r.2", Caps(0, 0), "{}", t) == "ok"
    assert skips(await engine.log(session_id("contract1"))) == [("r", "paused")]


async def test_a_purchase_converts_for_the_rules_shown_to_the_visitor_within_the_window(engine):
    t = now()
    await open_session(engine)
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "old", "old.1", Caps(0, 0), "{}", t - 3 * HOUR_MS) == "ok"
    await engine.record_feedback(session_id("contract1"), "old.1", "clicked", "{}", t)
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "new", "new.1", Caps(0, 0), "{}", t - 60_000) == "ok"
    await open_session(engine, sid=session_id("other0000", "v_someone2"), vid="v_someone2")
    assert await engine.claim_show(session_id("other0000", "v_someone2"), "v_someone2", "theirs", "theirs.1", Caps(0, 0), "{}", t) == "ok"
    assert await engine.record_conversion("v_visitor01", t, 2 * HOUR_MS) == ["new"]
    assert await engine.record_conversion("v_nobody000", t, 2 * HOUR_MS) == []
    counts = await engine.stats(t - 4 * HOUR_MS, t)
    total: dict[str, int] = {}
    for bucket in counts.values():
        for key, n in bucket.items():
            total[key] = total.get(key, 0) + n
    assert total["new|converted"] == 1 and "old|converted" not in total and "theirs|converted" not in total
    assert total["*|purchases"] == 2
    assert total["old|clicked"] == 1 and total["old|shown"] == 1
    assert len(counts) >= 2, "shows three hours apart fall in different buckets"


async def test_counters_and_pauses_expire_in_redis(clean_redis):
    e = make_engine("redis", clean_redis)
    await e.start()
    try:
        await open_session(e)
        await e.set_paused("r", True, now())
        await e.claim_show(session_id("contract1"), "v_visitor01", "q", "q.1", Caps(0, 0), "{}", now())
        await e.record_conversion("v_visitor01", now(), HOUR_MS)
        r = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
        for key in r.keys("kairos:stats:*") + ["kairos:paused"]:
            assert r.ttl(key) > 0, key
    finally:
        await e.close()


async def test_lines_added_after_a_batch_join_the_log_of_a_live_session_only(engine):
    await open_session(engine)
    await engine.append_log(session_id("contract1"), ['{"ts":1,"kind":"score","score":"x"}'], now())
    assert (await engine.log(session_id("contract1")))[0] == {"ts": 1, "kind": "score", "score": "x"}
    await engine.append_log(session_id("nosession"), ['{"ts":1,"kind":"score"}'], now())
    assert await engine.log(session_id("nosession")) == []


# --- session features: what a purchase-intent model reads -------------------------------------


def view(path: str) -> Event:
    return Event("page_view", 0, {"url": f"https://shop.example{path}", "path": path, "title": ""})


def dwell(ms: int) -> Event:
    return Event("dwell", 0, {"ms": ms})


PAGE_TYPES = ("other", "product")
# name: (batches after the hello on a product page, the features expected)
FEATURES = {
    "a glance of 3 s is a bounce": ([[dwell(3000)]], {
        "pages": 1, "pages_product": 1, "dwell_s_product": 3.0, "pages_other": 0, "dwell_s_other": 0.0,
        "dwell_s": 3.0, "bounce": True, "page_type": "product"}),
    "one page read for 30 s is not": ([[dwell(30_000)]], {"pages": 1, "dwell_s_product": 30.0, "bounce": False}),
    "dwell goes to the page type it was spent on, inside one batch": (
        [[dwell(5000), view("/demo/cart"), dwell(4000)], [dwell(2000)]],
        {"pages": 2, "pages_product": 1, "pages_other": 1, "dwell_s_product": 5.0, "dwell_s_other": 6.0,
         "dwell_s": 11.0, "page_type": "other", "bounce": False}),
    "two route changes in one batch": (
        [[view("/demo/"), view("/demo/products/boot"), dwell(1500)]],
        {"pages": 3, "pages_product": 2, "pages_other": 1, "dwell_s_product": 1.5, "dwell_s_other": 0.0}),
    "adds, exits and clicks": (
        [[Event("add_to_cart", 0, {}), Event("exit_intent", 0, {}), Event("click", 0, {"tag": "a"})]],
        {"adds_to_cart": 1, "exit_intents": 1, "clicks": 1, "bounce": False}),
}


@pytest.mark.parametrize("case", list(FEATURES))
async def test_both_engines_keep_the_same_session_features(case, clean_redis):
    from kairos.intent.sessions import features

    batches, want = FEATURES[case]
    rows = {}
    for kind in ("memory", "redis"):
        e = make_engine(kind, clean_redis)
        await e.start()
        try:
            state = await open_session(e, sid=session_id(f"feat_{kind}"))
            for events in batches:
                state = await e.apply(state.sid, event_ops(events, classify, now()), [], now())
            rows[kind] = features(state, PAGE_TYPES)
        finally:
            await e.close()
    assert rows["memory"] == rows["redis"]
    assert {k: rows["memory"][k] for k in want} == want


async def test_ended_sessions_are_kept_for_training_newest_row_per_session(engine):
    t = now()
    await engine.archive(session_id("archive_a"), "a1", t - 3000)
    await engine.archive(session_id("archive_b"), "b1", t - 2000)
    await engine.archive(session_id("archive_a"), "a2", t - 1000)  # the same session, later: replaces its row
    assert await engine.archived(t) == ["b1", "a2"]
    assert await engine.archived(t - 1500) == ["b1"], "only sessions quiet since then"


async def test_rows_kept_for_training_expire_with_the_retention(clean_redis):
    for kind in ("memory", "redis"):
        e = make_engine(kind, clean_redis, archive_ttl_s=2)
        await e.start()
        try:
            await e.archive(session_id("old"), "old", now() - 3000)
            await e.archive(session_id("new"), "new", now())
            assert await e.archived(now() + 1) == ["new"], kind
        finally:
            await e.close()
    r = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    assert r.keys("*archive*") and all(0 < r.ttl(k) <= 2 for k in r.keys("*archive*"))


async def test_forgetting_a_visitor_drops_their_sessions_rows_for_training(engine):
    await visitor_with_two_tabs(engine)
    await engine.archive(session_id("tabone001", "v_forget001"), "theirs", now())
    await engine.archive(session_id("bystander", "v_bystander"), "not theirs", now())
    await engine.forget("v_forget001", None)
    assert await engine.archived(now() + 1) == ["not theirs"]


# --- staff access: wrong tokens per client, logins ------------------------------------------


async def test_a_client_is_locked_out_after_its_wrong_tokens_until_its_window_ends(engine):
    for _ in range(3):
        assert await engine.staff_attempt("client_a", True, 3, 60) == 0
    wait = await engine.staff_attempt("client_a", False, 3, 60)
    assert 0 < wait <= 60, "even the right token waits"
    assert 0 < await engine.staff_attempt("client_a", True, 3, 60) <= wait
    assert await engine.staff_attempt("client_b", False, 3, 60) == 0, "another client is not held back"


async def test_right_tokens_are_not_counted_and_do_not_clear_the_count(engine):
    for _ in range(2):
        assert await engine.staff_attempt("client_a", True, 3, 60) == 0
    for _ in range(20):
        assert await engine.staff_attempt("client_a", False, 3, 60) == 0
    assert await engine.staff_attempt("client_a", True, 3, 60) == 0
    assert await engine.staff_attempt("client_a", False, 3, 60) > 0


async def test_concurrent_wrong_tokens_are_answered_no_more_than_the_limit(engine):
    waits = await asyncio.gather(*(engine.staff_attempt("client_a", True, 10, 60) for _ in range(60)))
    assert sum(1 for w in waits if w == 0) == 10


async def test_a_lockout_ends_with_its_window(engine):
    for _ in range(2):
        await engine.staff_attempt("client_a", True, 2, 1)
    assert await engine.staff_attempt("client_a", False, 2, 1) > 0
    await asyncio.sleep(1.2)
    assert await engine.staff_attempt("client_a", False, 2, 1) == 0
    assert await engine.staff_attempt("client_a", True, 2, 1) == 0, "a new window, counted from one"


async def test_a_staff_login_is_kept_until_it_ends_or_expires(engine):
    record = {"fp": "0123456789abcdef", "created_ms": "1000", "expires_ms": "2000"}
    await engine.add_staff_session("login_a", record, 60)
    await engine.add_staff_session("login_b", record, 1)
    assert await engine.staff_session("login_a") == record
    assert await engine.staff_session("login_none") is None
    await engine.end_staff_session("login_a")
    assert await engine.staff_session("login_a") is None
    await engine.end_staff_session("login_a")  # twice: nothing left to end
    await asyncio.sleep(1.2)
    assert await engine.staff_session("login_b") is None


async def test_staff_keys_in_redis_expire(clean_redis):
    e = make_engine("redis", clean_redis)
    await e.start()
    try:
        await e.staff_attempt("client_a", True, 10, 300)
        await e.add_staff_session("login_a", {"fp": "f", "created_ms": "1", "expires_ms": "2"}, 3600)
    finally:
        await e.close()
    r = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
    ttls = {k: r.ttl(k) for k in r.scan_iter("kairos:staff:*")}
    assert len(ttls) == 2 and all(0 < t <= 3600 for t in ttls.values()), ttls


async def raw_field_count(engine, sid: str) -> int:
    """How many fields the session holds as stored (every batch reads them all back)."""
    if isinstance(engine, MemoryEngine):
        return len(engine._sessions[sid].h)
    return len(await engine._read(sid) or {})


async def test_a_session_with_3000_shows_holds_a_bounded_state_and_its_caps(engine):
    # Issue 15, finding 4: every show stayed in the session hash, and each batch read it all back.
    state = await open_session(engine)
    fresh = await raw_field_count(engine, session_id("contract1"))
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "once", "once.1", Caps(1, 10), "{}", now()) == "ok"
    await engine.record_feedback(session_id("contract1"), "once.1", "expired", "{}", now())
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "gone", "gone.1", Caps(0, 10), "{}", now()) == "ok"
    await engine.record_feedback(session_id("contract1"), "gone.1", "dismissed", "{}", now())
    for i in range(3000):
        rule = f"rule{i % 3}"
        assert await engine.claim_show(session_id("contract1"), "v_visitor01", rule, f"{rule}.{i}", Caps(0, 1), "{}", now()) == "ok"
        assert await engine.record_feedback(session_id("contract1"), f"{rule}.{i}", "expired", "{}", now())
    old = await raw_field_count(engine, session_id("contract1"))
    assert old - fresh <= 4 * KEEP_OVERLAYS + 10, (fresh, old)  # the last overlays, the rules' counters, the list
    state = await engine.apply(session_id("contract1"), [("incr", "n:click", "1")], [], now())
    assert len(state.overlays) == KEEP_OVERLAYS and "rule2.2999" in state.overlays
    assert state.fired == {"once": 1, "gone": 1, "rule0": 1000, "rule1": 1000, "rule2": 1000}
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "once", "once.2", Caps(1, 10), "{}", now()) == "capped"
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "gone", "gone.2", Caps(0, 10), "{}", now()) == "dismissed"
    # The newest overlay still takes its feedback; one forgotten long ago is refused, as a forged one is.
    assert await engine.claim_show(session_id("contract1"), "v_visitor01", "rule0", "rule0.last", Caps(0, 1), "{}", now()) == "ok"
    assert await engine.record_feedback(session_id("contract1"), "rule0.last", "clicked", "{}", now())
    assert not await engine.record_feedback(session_id("contract1"), "rule0.0", "clicked", "{}", now())


# --- opening a session from a hello: one engine call (issue 16, a cheap hello) --------------


def opening(sid: str | None = session_id("contract1"), vid: str = "v_visitor01", path: str = "/demo/products/linen-shirt",
            re: bool = False, fresh: str = session_id("fresh0001")) -> Opening:
    """What ws.VisitorSocket._open asks of the engine for a hello."""
    h = hello(sid, vid, path)
    return Opening(vid=vid, sid=sid, fresh=fresh, ops=hello_ops(h, classify(path), now()),
                   log=[log_entry("event", now(), e="page_view", path=path)], path=path, page_type=classify(path),
                   re_ops=hello_ops(dataclasses.replace(h, re=True), classify(path), now()) if re else None)


async def page_views(engine, sid: str) -> list[dict]:
    return [line for line in await engine.log(sid) if line.get("e") == "page_view"]


async def test_a_hello_resumes_its_own_live_session_and_counts_the_page(engine):
    first = await engine.open_session(opening(sid=None, fresh=session_id("contract1")), now())
    assert (first.sid, first.resumed, first.state.pages, first.visitor.sessions) == (session_id("contract1"), False, 1, 1)
    again = await engine.open_session(opening(path="/demo/cart"), now())
    assert (again.sid, again.resumed, again.state.pages, again.state.path) == (session_id("contract1"), True, 2, "/demo/cart")
    assert again.visitor.sessions == 1, "the same visit"
    assert len(await page_views(engine, session_id("contract1"))) == 2
    assert await engine.session(session_id("fresh0001")) is None, "no session opened under the spare id"
    assert {s.sid for s in await engine.sessions(now())} == {session_id("contract1")}, "listed for the dashboard"


async def test_a_session_named_by_another_visitor_is_not_resumed(engine):
    await engine.open_session(opening(sid=None, fresh=session_id("contract1")), now())
    theirs = await engine.open_session(opening(vid="v_intruder1", fresh=session_id("intruder", "v_intruder1")), now())
    assert (theirs.sid, theirs.resumed, theirs.state.vid, theirs.state.pages) == (session_id("intruder", "v_intruder1"), False, "v_intruder1", 1)
    mine = await engine.session(session_id("contract1"))
    assert (mine.vid, mine.pages) == ("v_visitor01", 1), "the named session is untouched"
    assert len(await page_views(engine, session_id("contract1"))) == 1


async def test_an_expired_session_id_gets_a_new_session(clean_redis):
    for kind in ("memory", "redis"):
        e = make_engine(kind, clean_redis, ttl_s=1)
        await e.start()
        try:
            await e.open_session(opening(sid=None, fresh=session_id("contract1")), now())
            await asyncio.sleep(1.3)
            opened = await e.open_session(opening(fresh=session_id("contract2")), now())
            assert (opened.sid, opened.resumed, opened.state.pages) == (session_id("contract2"), False, 1), kind
            assert opened.visitor.sessions == 2, kind
            assert await e.session(session_id("contract1")) is None, kind
        finally:
            await e.close()


async def test_a_reconnect_counts_no_page_view_in_its_own_session_only(engine):
    await engine.open_session(opening(sid=None, fresh=session_id("contract1")), now())
    back = await engine.open_session(opening(re=True), now())
    assert (back.sid, back.resumed, back.state.pages, back.state.connected) == (session_id("contract1"), True, 1, 2)
    assert back.visitor.page_views_24h == 1, "no page view recorded under the visitor"
    assert len(await page_views(engine, session_id("contract1"))) == 1
    # A reconnect naming a session that is gone (or not theirs) opens a new one, with its page view.
    lost = await engine.open_session(opening(sid=session_id("gone00000"), re=True, fresh=session_id("contract2")), now())
    assert (lost.sid, lost.resumed, lost.state.pages, lost.state.vid) == (session_id("contract2"), False, 1, "v_visitor01")
    assert lost.visitor.page_views_24h == 2 and len(await page_views(engine, session_id("contract2"))) == 1


async def test_a_session_is_opened_only_with_its_visitor(engine):
    with pytest.raises(ValueError):
        Opening(vid="v_visitor01", sid=None, fresh=session_id("contract1"), ops=[("incr", "pages", "1")], log=[], path="/",
                page_type="other")
    with pytest.raises(ValueError):
        opening(sid=None, vid="", fresh=session_id("contract1"))
    assert await engine.session(session_id("contract1")) is None


async def test_a_hello_is_one_round_trip(clean_redis):
    # The script, and beside it the dashboard's list (one key for all, in another hash
    # slot), go to Redis in one pipeline.
    e = make_engine("redis", clean_redis)
    await e.start()
    mine = new_sid("v_visitor01")
    try:
        await e.open_session(opening(sid=None, fresh=mine), now())
        for o in (opening(sid=mine, path="/demo/cart"), opening(sid=mine, re=True),
                  opening(sid=mine, vid="v_intruder1", fresh=new_sid("v_intruder1"))):
            pipelines = e.pipe.batches
            with Commands(clean_redis) as seen:
                opened = await e.open_session(o, now())
            sent = seen.naming(o.vid, o.fresh, mine)
            assert [c.split()[0] for c in sent] == ["EVALSHA", "ZADD"], sent
            assert e.pipe.batches - pipelines == 1
            assert opened.resumed == (o.vid == "v_visitor01")
    finally:
        await e.close()


async def test_installations_on_two_databases_of_one_redis_do_not_hear_each_other(clean_redis):
    # Pub/sub channels are per Redis server, not per database: a dashboard feed published
    # on one database reached the dashboards of a Kairos on another.
    base, db = clean_redis.rsplit("/", 1)
    engines = [make_engine("redis", clean_redis), make_engine("redis", f"{base}/{(int(db) + 1) % 16}")]
    heard: list[list[str]] = [[], []]

    class Ears(Bus):
        def __init__(self, into: list[str]) -> None:
            self.into = into

        def on_feed(self, text: str) -> None:
            self.into.append(text)

        def on_wake(self, due_ms: int) -> None:
            self.into.append(f"wake {due_ms}")

    for e in engines:
        await e.start()
    listening = [asyncio.create_task(e.listen(f"n{i}", Ears(heard[i]))) for i, e in enumerate(engines)]
    try:
        r = sync_redis.Redis.from_url(clean_redis)
        while sum(n for _, n in r.pubsub_numsub(engines[0].feed_channel, engines[1].feed_channel)) < 2:
            await asyncio.sleep(0.02)
        for i, e in enumerate(engines):
            await e.publish_feed(f"rows of {i}")
            await e.pipe.execute("PUBLISH", e.wake_channel, 1000 + i)
        while sum(map(len, heard)) < 4:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # anything crossing over would be here by now
        assert heard == [["rows of 0", "wake 1000"], ["rows of 1", "wake 1001"]]
    finally:
        for task in listening:
            task.cancel()
        await asyncio.gather(*listening, return_exceptions=True)
        for e in engines:
            await e.close()


async def test_a_session_stored_as_a_hash_by_an_older_kairos_is_read_and_rewritten(clean_redis):
    # An older Kairos kept a session as a Redis hash; an upgrade during a visit must not lose it.
    e = make_engine("redis", clean_redis)
    await e.start()
    try:
        r = sync_redis.Redis.from_url(clean_redis, decode_responses=True)
        key = keys.session(session_id("upgraded1"))
        r.hset(key, mapping={"vid": "v_visitor01", "site": "demo", "started_ms": "1", "clicks": "4", "f:exit": "1"})
        r.expire(key, 60)
        assert (await e.session(session_id("upgraded1"))).clicks == 4
        assert await e.visitor_of(session_id("upgraded1")) == "v_visitor01"
        state = await e.apply(session_id("upgraded1"), event_ops([Event("click", 1, {"tag": "a"})], classify, now()), [], now())
        assert (state.vid, state.clicks, state.fired) == ("v_visitor01", 5, {"exit": 1})
        assert r.type(key) == "string" and 0 < r.ttl(key) <= TTL_S
        assert await e.claim_show(session_id("upgraded1"), "v_visitor01", "exit", "exit.2", Caps(1, 0), "{}", now()) == "capped"
    finally:
        await e.close()


async def test_a_session_costs_redis_its_bytes_whatever_its_product_and_url(clean_redis):
    # A hash with one value over 64 bytes (a product, a long URL) is no longer a listpack:
    # ~60 B a field. Stored as one MessagePack string, a session costs about its bytes.
    e = make_engine("redis", clean_redis)
    await e.start()
    try:
        long_path = "/demo/products/" + "linen-shirt-" * 12
        state = await open_session(e, path=long_path)
        assert len(state.url) > 64 and state.product
        r = sync_redis.Redis.from_url(clean_redis)
        stored = r.get(keys.session(session_id("contract1")))
        used = r.memory_usage(keys.session(session_id("contract1")), samples=0)
        print(f"\nsession: {len(stored)} B stored, {used} B in Redis")
        assert used < len(stored) * 1.3 + 100
    finally:
        await e.close()


# --- the ops in Lua and in Python, op for op ---------------------------------------------

# Fields as the real ops use them: numbers, words, named counters.
_NUMBERS, _WORDS = ("a", "b", "pages"), ("page_type", "prev_page_type")
_NUMBER = st.one_of(st.integers(-10**12, 10**12).map(str), st.sampled_from(["2.5", "1796502865341"]))
_OPS = st.one_of(
    st.tuples(st.sampled_from(["set", "setnx"]), st.sampled_from(_NUMBERS), st.integers(-10**6, 10**6).map(str)),
    st.tuples(st.sampled_from(["set", "setnx"]), st.sampled_from(_WORDS), st.sampled_from(["product", "cart", "", "é"])),
    # up to 15 digits, and sums exact in a double (< 2**53): Lua must not switch to exponents
    st.tuples(st.just("incr"), st.sampled_from(_NUMBERS),
              st.one_of(st.integers(-10**12, 10**12), st.sampled_from([123456789012345, -98765432109876])).map(str)),
    st.tuples(st.just("max"), st.sampled_from(("scroll_pct", "x")), _NUMBER),
    st.tuples(st.just("del"), st.sampled_from(_NUMBERS + _WORDS + ("c:x",)), st.just("")),
    st.tuples(st.just("copy"), st.just("prev_page_type"), st.just("page_type")),
    st.tuples(st.just("copy"), st.just("a"), st.just("b")),
    st.tuples(st.just("incr_pt"), st.just("pd:"), st.integers(0, 10**6).map(str)),
    st.tuples(st.just("count"), st.sampled_from(("c:x", "c:y", "c:z")), st.sampled_from(["2", "3"])),
    st.tuples(st.just("score"), st.sampled_from(("sp:s|one", "sp:s|two")),
              st.tuples(st.sampled_from(["0.7", "-1.2", "0.1"]), st.integers(0, 10**6), st.sampled_from([60000, 600000]))
              .map(lambda t: f"{t[0]} {1796502865341 + t[1]} {t[2]}")),
)


def _comparable(h: dict[str, str]) -> dict[str, object]:
    # A score part's value is written by repr() in Python and %.17g in Lua: the same double.
    return {k: (float(v.split(" ")[0]), v.split(" ", 1)[1]) if k.startswith("sp:") else v for k, v in h.items()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(_OPS, max_size=12), min_size=1, max_size=5))
def test_lua_applies_ops_exactly_as_python_does(clean_redis, batches):
    # lib/ops.lua and kairos.session.apply_ops are two implementations of one semantics;
    # a batch's stored state must not depend on the engine that applied it.
    from conftest import stored_map
    from kairos.engine.redis import _script
    from kairos.session import apply_ops

    r = sync_redis.Redis.from_url(clean_redis)
    apply = r.register_script(_script("apply.lua"))
    key, log = keys.session(session_id("ops0000001")), keys.log(session_id("ops0000001"))
    r.delete(key, log)
    opened = [("set", "vid", "v_visitor01")]
    expected: dict[str, str] = {}
    for ops in [opened, *batches]:
        apply_ops(expected, ops)
        apply(keys=[key, log], args=[60, LOG_MAX, msgpack.packb([x for op in ops for x in op])])
        assert _comparable(stored_map(r.get(key))) == _comparable(expected), ops
