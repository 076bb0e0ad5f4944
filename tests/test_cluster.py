"""Redis Cluster (issues 16, 18): what a hello, a batch, a claim or a feedback touches is in its visitor's hash slot.

Redis Cluster runs a script or a multi-key command only on keys of one slot: these
tests drive the cluster engine against the run's 3-master cluster, where any step
that still crosses slots fails with CROSSSLOT, and one that reaches the wrong
master is redirected.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from redis.crc import key_slot

from conftest import raw_redis, redis_contents
from kairos.caps import Caps, Window, bucket
from kairos.engine import MemoryEngine, keys
from kairos.engine.base import Opening
from kairos.engine.cluster import RedisClusterEngine
from kairos.engine.redis import PAUSED_REFRESH_S, RedisEngine
from kairos.session import event_ops, hello_ops, log_entry
from kairos.wire import Event, Hello, Page
from kairos.ws import new_sid

HOUR_MS = 3600 * 1000


def now() -> int:
    return int(time.time() * 1000)


def classify(path: str, declared: str = "") -> str:
    return "product" if "/products/" in path else "other"


def opening(vid: str, sid: str | None, fresh: str, path: str = "/demo/products/linen-shirt", re: bool = False) -> Opening:
    """What ws.VisitorSocket._open asks of the engine for a page's hello."""
    page = Page(url=f"https://shop.example{path}", path=path, title="Linen shirt")
    h = Hello(site="demo", vid=vid, sid=sid, page=page, consent=True, dnt=False, gpc=False, tz=60, lang="en")
    return Opening(vid=vid, sid=sid, fresh=fresh, ops=hello_ops(h, classify(path), now()),
                   log=[log_entry("event", now(), e="page_view", path=path)], path=path, page_type=classify(path),
                   re_ops=hello_ops(dataclasses.replace(h, re=True), classify(path), now()) if re else None)


async def arrive(engine, vid: str, path: str = "/demo/products/linen-shirt") -> str:
    """A visitor's first page load: its new session's id."""
    opened = await engine.open_session(opening(vid, None, new_sid(vid), path), now())
    assert not opened.resumed
    return opened.sid


@pytest.fixture
def cluster(clean_cluster: str) -> str:
    """The run's Redis Cluster (3 masters, 3 replicas: tests/redis_cluster.py), flushed; its redis+cluster:// URL."""
    return clean_cluster


async def test_a_visit_runs_on_redis_cluster(cluster):
    e = RedisClusterEngine(cluster, session_ttl_s=60)
    await e.start()
    r = raw_redis(cluster, decode_responses=True)
    vid = "v_cluster001"
    try:
        sid = await arrive(e, vid)
        # Redis itself puts the session's keys in the slot of its visitor's.
        slot = r.execute_command("CLUSTER", "KEYSLOT", keys.visitor(vid, "shows"))
        assert {r.execute_command("CLUSTER", "KEYSLOT", k) for k in (keys.session(sid), keys.log(sid))} == {slot}

        # The next page load resumes the session, a reconnect too; batches apply.
        nxt = await e.open_session(opening(vid, sid, new_sid(vid), "/demo/cart"), now())
        assert (nxt.sid, nxt.resumed, nxt.state.pages) == (sid, True, 2)
        again = await e.open_session(opening(vid, sid, new_sid(vid), "/demo/cart", re=True), now())
        assert (again.sid, again.resumed, again.state.pages) == (sid, True, 2)
        state = await e.apply(sid, event_ops([Event("dwell", 1, {"ms": 4000}), Event("add_to_cart", 2, {})], classify,
                                             now()), [log_entry("event", now(), e="add_to_cart")], now())
        assert (state.dwell_ms, state.adds) == (4000, 1)
        assert [s.sid for s in await e.sessions(now())] == [sid]

        # A show under every cap, its feedback, the cooldown that follows, a staff hide.
        t = now()
        caps = Caps(per_session=2, priority=1, per_visitor=Window(2, HOUR_MS), all_per_visitor=Window(3, HOUR_MS),
                    per_rule=Window(5, HOUR_MS), cooldown_ms=HOUR_MS)
        assert await e.claim_show(sid, vid, "offer", "offer.1", caps, log_entry("show", t, oid="offer.1"), t) == "ok"
        assert await e.claim_show(sid, vid, "offer", "offer.1", caps, "{}", t) == "again"
        assert await e.record_feedback(sid, "offer.1", "clicked", log_entry("feedback", t, oid="offer.1"), t)
        assert await e.claim_show(sid, vid, "offer", "offer.2", caps, "{}", t) == "cooldown"
        assert await e.claim_show(sid, vid, "help", "help.1", Caps(), "{}", t) == "ok"
        assert await e.record_feedback(sid, "help.1", "hidden", log_entry("feedback", t, oid="help.1"), t)  # nudge.take_down
        assert not await e.record_feedback(sid, "nope.1", "clicked", "{}", t)
        await e.set_paused("help", True, t)
        assert await e.claim_show(sid, vid, "help", "help.2", Caps(), "{}", t) == "paused"
        assert (await e.session(sid)).onscreen is None
        assert [(x["rule"], x["why"]) for x in await e.log(sid) if x.get("kind") == "skip"] == [("help", "paused"),
                                                                                            ("offer", "cooldown")]
        assert r.get(keys.rule_window("offer", bucket(caps.per_rule, t))) == "1", "the refused claim gave its place back"
        assert await e.stats(t, t) == {keys_bucket(t): {"offer|triggered": 2, "offer|shown": 1, "offer|clicked": 1,
                                                        "help|triggered": 2, "help|shown": 1}}
        assert await e.record_conversion(vid, now(), HOUR_MS) == ["help", "offer"]

        # A hello naming a session of the old form (no tag) or someone else's opens a new one.
        old = await e.open_session(opening(vid, "s_oldform00001", new_sid(vid)), now())
        assert not old.resumed and old.sid != sid
        theirs = await e.open_session(opening("v_someone002", sid, new_sid("v_someone002")), now())
        assert not theirs.resumed and keys.session_tag(theirs.sid) == keys.visitor_tag("v_someone002")

        await e.archive(sid, '{"row": 1}', now())
        assert sorted(await e.forget(vid, sid)) == sorted([sid, old.sid])
        assert await e.session(sid) is None and await e.log(sid) == []
        assert [k for k in redis_contents(cluster) if vid in k or sid in k or old.sid in k] == []
        assert await e.session(theirs.sid) is not None, "another visitor's session stays"
    finally:
        r.close()
        await e.close()


async def test_a_slot_moved_to_another_master_keeps_its_sessions_served(cluster, redis_cluster):
    # A reshard (redis-cli --cluster reshard does these steps): while the slot moves the
    # old master answers ASK, once it has moved MOVED; both are followed, and the engine
    # learns the new map, so the commands after it go straight to the new master.
    from redis_cluster import command

    e = RedisClusterEngine(cluster, session_ttl_s=60)
    await e.start()
    vid = "v_moving0001"
    try:
        sid = await arrive(e, vid)
        click = event_ops([Event("click", 1, {"tag": "a"})], classify, now())
        assert (await e.apply(sid, click, [], now())).clicks == 1
        slot = key_slot(keys.session(sid).encode())
        _, src = redis_cluster.master_of(keys.session(sid))
        dst = next(port for _, port in redis_cluster.masters() if port != src)
        src_id, dst_id = command(src, "CLUSTER", "MYID"), command(dst, "CLUSTER", "MYID")
        command(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        command(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        moving = command(src, "CLUSTER", "GETKEYSINSLOT", slot, 1000)
        assert keys.session(sid) in moving and keys.visitor(vid, "info") in moving
        command(src, "MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *moving)

        # Moving: the keys are at the new master, the slot still the old one's (ASK).
        assert (await e.apply(sid, click, [], now())).clicks == 2
        assert e.pipe.redirects >= 1

        for _, port in redis_cluster.masters():
            command(port, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        # Moved (MOVED): served, and the map is read again.
        assert (await e.apply(sid, click, [], now())).clicks == 3
        assert await e.claim_show(sid, vid, "offer", "offer.1", Caps(), "{}", now()) == "ok"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            node = e.r.nodes_manager.get_node_from_slot(slot)
            if node.port == dst:
                break
            await asyncio.sleep(0.05)
        assert node.port == dst, "the engine learnt where the slot is now"
        before = e.pipe.redirects
        assert (await e.apply(sid, click, [], now())).clicks == 4
        assert e.pipe.redirects == before, "sent straight to the new master"
        assert (await e.session(sid)).onscreen is not None
    finally:
        await e.close()


async def test_three_hundred_pages_closing_at_once_are_all_archived(cluster):
    # A campaign's visitors leaving together: each closed socket archives its session and
    # appends to its log at once; then a dashboard reads all their timelines. redis-py's
    # cluster pool refuses a command when it is full (it does not wait, as one Redis's
    # does): none of this may pass for a Redis outage.
    e = RedisClusterEngine(cluster, session_ttl_s=60)
    await e.start()
    try:
        vids = [f"v_leave{i:05d}" for i in range(300)]
        sids = await asyncio.gather(*(arrive(e, v) for v in vids))
        await asyncio.gather(*(e.append_log(sid, [log_entry("event", now(), e="page_close")], now()) for sid in sids))
        await asyncio.gather(*(e.archive(sid, f'{{"row": "{sid}"}}', now()) for sid in sids))
        assert len(await e.archived(now() + 1)) == 300
        logs = await asyncio.gather(*(e.log(sid) for sid in sids))
        assert all(log and log[0].get("e") == "page_close" for log in logs), "the line appended is the newest"
        assert not e.outage.down and e.outage.refused == 0
    finally:
        await e.close()


async def test_rows_kept_for_training_spread_over_the_masters_and_come_back_oldest_first(cluster, redis_cluster):
    # Every ended page load writes its row: 16 archives ({archive:k}), read together.
    from redis_cluster import command

    e = RedisClusterEngine(cluster, session_ttl_s=60)
    await e.start()
    try:
        t = now()
        sids = [new_sid(f"v_row{i:05d}") for i in range(40)]
        for i, sid in enumerate(sids):
            await e.archive(sid, f"row{i:02d}", t - 40_000 + i * 1000)
        assert await e.archived(t) == [f"row{i:02d}" for i in range(40)]
        assert await e.archived(t, limit=10) == [f"row{i:02d}" for i in range(10)], "the oldest, in order"
        assert await e.archived(t - 30_500) == [f"row{i:02d}" for i in range(10)], "only those quiet since then"
        holding = [port for _, port in redis_cluster.masters() if command(port, "KEYS", "kairos:{archive:*")]
        assert len(holding) >= 2, "the archives are spread over the masters"
    finally:
        await e.close()


def keys_bucket(t: int) -> int:
    from kairos.engine.base import stats_bucket

    return stats_bucket(t)


async def test_a_rule_wide_cap_stays_exact_under_concurrent_claims_on_redis_cluster(cluster):
    # The rule's window is shared by every visitor (another slot than any of theirs): a
    # place is reserved before each claim and given back when the claim is refused.
    e = RedisClusterEngine(cluster, session_ttl_s=60)
    await e.start()
    r = raw_redis(cluster, decode_responses=True)
    try:
        vids = [f"v_crowd{i:05d}" for i in range(12)]
        sids = await asyncio.gather(*(arrive(e, v) for v in vids))
        t = now()
        caps = Caps(per_rule=Window(5, HOUR_MS))
        verdicts = await asyncio.gather(*(e.claim_show(s, v, "flash", f"flash.{i}", caps, "{}", t)
                                          for i, (s, v) in enumerate(zip(sids, vids))))
        assert sorted(verdicts) == ["ok"] * 5 + ["rule_capped"] * 7
        assert r.get(keys.rule_window("flash", bucket(caps.per_rule, t))) == "5"
        # A claim refused by another cap gives its place back too.
        await e.set_paused("flash", True, t)
        late = await arrive(e, "v_late00001")
        assert await e.claim_show(late, "v_late00001", "flash", "flash.x", caps, "{}", t) == "paused"
        assert r.get(keys.rule_window("flash", bucket(caps.per_rule, t))) == "5"
        assert 0 < r.pttl(keys.rule_window("flash", bucket(caps.per_rule, t))) <= HOUR_MS
    finally:
        r.close()
        await e.close()


async def test_a_pause_holds_at_once_where_it_was_made_and_within_a_second_elsewhere(cluster):
    # The claim cannot read the paused rules (another slot): each process keeps a view.
    here, there = RedisClusterEngine(cluster, session_ttl_s=60), RedisClusterEngine(cluster, session_ttl_s=60)
    await here.start()
    await there.start()
    try:
        async def claim(engine, n: int) -> str:
            vid = f"v_pause{n:05d}"
            sid = await arrive(engine, vid)
            return await engine.claim_show(sid, vid, "promo", f"promo.{n}", Caps(), "{}", now())

        assert (await claim(here, 1), await claim(there, 2)) == ("ok", "ok")
        await here.set_paused("promo", True, now())
        assert await claim(here, 3) == "paused"
        await asyncio.sleep(PAUSED_REFRESH_S + 0.5)
        assert await claim(there, 4) == "paused"
        await there.set_paused("promo", False, now())
        assert await claim(there, 5) == "ok"
        await asyncio.sleep(PAUSED_REFRESH_S + 0.5)
        assert await claim(here, 6) == "ok"
        assert await here.paused() == {} == await there.paused()
    finally:
        await here.close()
        await there.close()


async def test_a_session_opened_before_the_upgrade_keeps_its_keys_and_takes_batches(clean_redis):
    # Pages open across the upgrade name a session id of the old form ("s_" + random, no
    # tag): on a single Redis it is still resumed and still takes batches, under its old keys.
    e = RedisEngine(clean_redis, session_ttl_s=60)
    await e.start()
    r = raw_redis(clean_redis, decode_responses=True)
    vid, old = "v_upgrade01", "s_Xk3-pQ_9zLmN2aB"
    try:
        await e.open_session(opening(vid, None, old), now())  # as the old server opened it
        assert r.exists(f"kairos:{{{old}}}:s", f"kairos:{{{old}}}:log") == 2
        state = await e.apply(old, event_ops([Event("dwell", 1, {"ms": 1500})], classify, now()), [], now())
        assert state.dwell_ms == 1500
        resumed = await e.open_session(opening(vid, old, new_sid(vid), "/demo/cart"), now())
        assert (resumed.sid, resumed.resumed, resumed.state.pages) == (old, True, 2)
        t = now()
        assert await e.claim_show(old, vid, "offer", "offer.1", Caps(per_rule=Window(3, HOUR_MS)), "{}", t) == "ok"
        assert await e.record_feedback(old, "offer.1", "dismissed", "{}", t)
        assert (await e.session(old)).dismissed == {"offer"}
        # Its visitor's next session is in the visitor's slot, as Redis Cluster computes slots.
        fresh = await arrive(e, vid)
        assert fresh != old and key_slot(keys.session(fresh).encode()) == key_slot(keys.visitor(vid, "info").encode())
        assert await e.forget(vid, None) == sorted([old, fresh])
        assert r.keys("*") == [] or all(vid not in k and old not in k and fresh not in k for k in r.keys("*"))
    finally:
        r.close()
        await e.close()


def colliding(vid: str) -> str:
    """Another visitor id whose sessions carry the same tag (their keys share a slot)."""
    for i in range(1_000_000):
        other = f"v_twin{i:07d}"
        if keys.visitor_tag(other) == keys.visitor_tag(vid):
            return other
    raise AssertionError("no visitor id shares the tag")


@pytest.fixture(params=["memory", "redis"])
async def engine(request, clean_redis):
    e = MemoryEngine(session_ttl_s=60) if request.param == "memory" else RedisEngine(clean_redis, session_ttl_s=60)
    await e.start()
    yield e
    await e.close()


async def test_a_page_naming_a_session_of_another_visitor_gets_its_own(engine):
    vid = "v_owner0001"
    sid = await arrive(engine, vid)
    await engine.open_session(opening(vid, sid, new_sid(vid), "/demo/cart"), now())
    # Another tag: not theirs, whatever is stored under it.
    stranger = await engine.open_session(opening("v_strange01", sid, new_sid("v_strange01")), now())
    assert not stranger.resumed and stranger.sid != sid and stranger.state.vid == "v_strange01"
    assert keys.session_tag(stranger.sid) == keys.visitor_tag("v_strange01")
    # The same tag (two visitors in one slot): the session still says whose it is.
    twin = colliding(vid)
    other = await engine.open_session(opening(twin, sid, new_sid(twin)), now())
    assert not other.resumed and other.sid != sid and other.state.vid == twin
    state = await engine.session(sid)
    assert (state.vid, state.pages) == (vid, 2), "the owner's session is untouched"
    # A session id of their own tag that is gone opens a new session too.
    gone = await engine.open_session(opening(vid, new_sid(vid), new_sid(vid)), now())
    assert not gone.resumed and gone.state.pages == 1
    listed = {s.sid for s in await engine.sessions(now())}
    assert listed == {sid, stranger.sid, other.sid, gone.sid}, "the dashboard lists the sessions opened, no other"


def test_kairos_serve_runs_on_the_cluster_named_by_redis_cluster(redis_cluster, clean_cluster, tmp_path):
    import subprocess
    import sys

    import httpx

    from conftest import ROOT, free_port

    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "kairos", "serve", "--redis-cluster", redis_cluster.startup,
                             "--port", str(port), "--admin-token", "t" * 32, "--state-dir", str(tmp_path)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        assert health.status_code == 200 and health.json()["engine"] == "redis", health.text
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("flags, said", [
    (["--redis-cluster", "127.0.0.1"], "expected redis+cluster://host:port[,host:port...], got '127.0.0.1'"),
    (["--redis-cluster", "127.0.0.1:7000", "--redis-url", "redis://127.0.0.1:6379/0"], "leave out --redis-url"),
    (["--redis-cluster", "127.0.0.1:7000", "--engine", "memory"], "leave out --redis-url and --engine memory"),
    (["--engine", "redis", "--redis-url", "redis+cluster://127.0.0.1:7000/3"], "Redis Cluster has database 0 only"),
])
def test_a_cluster_named_wrong_is_refused_with_the_form_expected(flags, said):
    import subprocess
    import sys

    from conftest import ROOT, free_port

    out = subprocess.run([sys.executable, "-m", "kairos", "serve", "--port", str(free_port()), *flags],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and said in out.stderr, out.stderr
