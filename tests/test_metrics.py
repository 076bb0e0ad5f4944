"""/metrics on a running `kairos serve`, read with prometheus_client's own parser: what an operator's scraper sees."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import prometheus_client
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kairos import wire
from kairos.metrics import Metrics
from wsclient import Visitor

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "examples" / "scenarios"
REMINDER = SCENARIOS / "3-product-reminder.yaml"
# The example's 3-minute delay becomes 0.9 s.
SCALE = ["--delay-scale", "0.005"]

FAMILIES = {
    "kairos_frames": "counter", "kairos_events": "counter", "kairos_events_lost": "counter", "kairos_shows": "counter",
    "kairos_refused": "counter", "kairos_feedback": "counter", "kairos_connections": "counter",
    "kairos_beacons": "counter", "kairos_timers": "counter",
    "kairos_slow_clients_released": "counter", "kairos_sessions_restored": "counter",
    "kairos_push_latency_seconds": "histogram", "kairos_timer_lateness_seconds": "histogram",
    "kairos_redis_roundtrip_seconds": "histogram", "kairos_batch_events": "histogram",
    "kairos_open_sockets": "gauge", "kairos_timers_pending": "gauge", "kairos_gc_objects": "gauge",
    "kairos_compared_and_set": "counter", "kairos_compared_and_set_stale": "counter",
    "kairos_gc_collections": "counter",
}
# What becomes of a timer that came due (kairos.timers).
TIMER_OUTCOMES = {"shown", "forwarded", "held", "kept", "dropped", "capped", "cancelled", "replaced", "session_gone",
                  "rule_gone"}


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def labels_of(samples: Samples, name: str, label: str) -> dict[str, float]:
    """The values of one sample name by one label, e.g. kairos_refused_total by code."""
    return {dict(lab)[label]: v for (n, lab), v in samples.items() if n == name}


def scrape(server) -> Samples:
    return parse(server.metrics())


def scrape_when(server, check, timeout_s: float = 5.0) -> Samples:
    """/metrics once `check` holds: the server observes a push after writing it, a moment after the client reads it."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(server)
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def refusal_codes_documented() -> set[str]:
    """The codes of docs/protocol.md's table of errors, and those the beacon endpoint answers with."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    table = text.split("## Errors and close codes", 1)[1].split("Close codes:", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M)) | {"origin", "unknown_session"}


def refusal_codes_in_the_code() -> set[str]:
    """Every code the server's source refuses with: each `WireError("code", …)`."""
    source = "\n".join(p.read_text() for p in (ROOT / "server" / "kairos").rglob("*.py"))
    return set(re.findall(r'WireError\(\s*"([a-z_]+)"', source))


def assert_histogram_is_whole(samples: Samples, name: str, **labels: str) -> None:
    """Buckets only grow with their bound, and the last (+Inf) is the count."""
    buckets = sorted((float(dict(lab)["le"]), v) for (n, lab), v in samples.items()
                     if n == f"{name}_bucket" and {k: x for k, x in lab if k != "le"} == labels)
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), buckets
    assert buckets[-1] == (float("inf"), value(samples, f"{name}_count", **labels))


# --- a fresh server ------------------------------------------------------------------------


def test_a_fresh_server_lists_every_family_with_help_and_type_and_its_counters_at_zero(serve):
    server = serve("memory")
    r = httpx.get(f"{server.base}/metrics", headers=server.auth, timeout=5)
    assert r.status_code == 200 and r.headers["content-type"] == prometheus_client.CONTENT_TYPE_LATEST
    text = r.text

    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {name: f.type for name, f in families.items()} == FAMILIES
    assert all(f.documentation.strip() for f in families.values()), "every family says what it counts"
    # In the raw text too: a HELP line, then the TYPE line, before each family's samples.
    lines = text.splitlines()
    typed = [i for i, line in enumerate(lines) if line.startswith("# TYPE ")]
    assert len(typed) == len(FAMILIES)
    for i in typed:
        name = lines[i].split()[2]
        assert lines[i - 1].startswith(f"# HELP {name} "), lines[i - 1]
    for line in lines:
        if not line.startswith("#"):
            name = re.match(r"[a-z_]+", line)[0]
            assert any(name == typed_name or name.startswith(typed_name + "_")
                       for typed_name in (lines[i].split()[2] for i in typed)), f"{line!r} has no TYPE"

    samples = parse(text)
    assert labels_of(samples, "kairos_frames_total", "type") == {"hello": 0, "events": 0, "feedback": 0}
    assert labels_of(samples, "kairos_beacons_total", "type") == {"events": 0, "forget": 0}
    assert labels_of(samples, "kairos_feedback_total", "act") == dict.fromkeys(wire.FEEDBACK_ACTS, 0)
    assert labels_of(samples, "kairos_timers_total", "outcome") == dict.fromkeys(TIMER_OUTCOMES, 0)
    assert labels_of(samples, "kairos_shows_total", "rule") == dict.fromkeys(
        ["exit-offer", "cart-exit-shipping", "deep-scroll-proof"], 0), "the demo's rules, before any show"
    for name in ("kairos_events_total", "kairos_events_lost_total", "kairos_connections_total",
                 "kairos_open_sockets", "kairos_timers_pending", "kairos_timer_lateness_seconds_count",
                 "kairos_batch_events_count"):
        assert value(samples, name) == 0, name
    assert labels_of(samples, "kairos_push_latency_seconds_count", "via") == {"rule": 0, "staff": 0, "timer": 0}
    assert labels_of(samples, "kairos_slow_clients_released_total", "why") == {"queue_full": 0, "send_timeout": 0}
    assert labels_of(samples, "kairos_redis_roundtrip_seconds_count", "call") == {}, "the memory engine makes no round trip"
    assert labels_of(samples, "kairos_compared_and_set_total", "call") == {}, "nor compares anything"
    assert labels_of(samples, "kairos_compared_and_set_stale_total", "call") == {}


def test_every_refusal_code_is_listed_at_zero_before_the_first_refusal(serve):
    server = serve("memory")
    codes = labels_of(scrape(server), "kairos_refused_total", "code")
    documented, sent = refusal_codes_documented(), refusal_codes_in_the_code()
    assert len(documented) >= 15 and sent <= documented, f"refused but not documented: {sent - documented}"
    assert codes == dict.fromkeys(documented, 0)


def test_two_servers_in_one_process_keep_their_own_counts():
    first, second = Metrics(), Metrics()
    first.events.inc(5)
    first.refused.labels(code="bad_frame").inc()
    assert value(parse(first.render().decode()), "kairos_events_total") == 5
    theirs = parse(second.render().decode())
    assert value(theirs, "kairos_events_total") == 0 and value(theirs, "kairos_refused_total", code="bad_frame") == 0
    assert b"kairos_" not in prometheus_client.generate_latest(), "nothing goes to the library's global registry"


def test_the_operations_guide_lists_the_families_served_and_a_scrape_config_prometheus_reads(serve):
    server = serve("memory")
    guide = (ROOT / "docs" / "operations.md").read_text()
    listed = dict(re.findall(r"^\| `(kairos_\w+)` \| (\w+) \|", guide, re.M))
    served = {f.name + ("_total" if f.type == "counter" else ""): f.type
              for f in text_string_to_metric_families(server.metrics())}
    assert listed == served
    config = yaml.safe_load(re.search(r"```yaml\n(.*?)```", guide, re.S)[1])
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "kairos" and job["static_configs"][0]["targets"] == ["127.0.0.1:8000"]
    for query in ("histogram_quantile(0.99, sum by (le) (rate(kairos_push_latency_seconds_bucket[5m])))",
                  "histogram_quantile(0.99, sum by (le) (rate(kairos_timer_lateness_seconds_bucket[5m])))",
                  "sum by (code) (rate(kairos_refused_total[5m]))"):
        assert f"```promql\n{query}\n```" in guide, query


# --- after nudges --------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_a_rule_nudge_and_a_staff_nudge_are_timed_to_the_push(serve, engine):
    server = serve(engine)
    shopper = await Visitor.arrive(server.ws_url)
    await shopper.events({"e": "dwell", "ms": 3000}, {"e": "exit_intent"})
    assert (await shopper.expect("show"))["rule"] == "exit-offer"
    chatter = await Visitor.arrive(server.ws_url)
    async with httpx.AsyncClient(base_url=server.base, headers=server.auth, timeout=5) as c:
        r = await c.post(f"/api/sessions/{chatter.sid}/nudge", json={"chat": "Need a hand with sizes?"})
    assert r.status_code == 200, r.text
    assert (await chatter.expect("show"))["rule"] == "staff"

    samples = await asyncio.to_thread(scrape_when, server, lambda s: all(
        value(s, "kairos_push_latency_seconds_count", via=via) for via in ("rule", "staff")))
    for via in ("rule", "staff"):
        assert value(samples, "kairos_push_latency_seconds_count", via=via) == 1, via
        assert value(samples, "kairos_push_latency_seconds_sum", via=via) > 0, via
        assert_histogram_is_whole(samples, "kairos_push_latency_seconds", via=via)
    assert value(samples, "kairos_push_latency_seconds_count", via="timer") == 0
    assert value(samples, "kairos_shows_total", rule="exit-offer") == 1
    assert value(samples, "kairos_shows_total", rule="staff") == 1
    # One batch of two events (the page views come with the hellos, not in batches).
    assert value(samples, "kairos_batch_events_count") == 1 and value(samples, "kairos_batch_events_sum") == 2
    assert value(samples, "kairos_batch_events_bucket", le="1.0") == 0
    assert value(samples, "kairos_batch_events_bucket", le="2.0") == 1
    assert value(samples, "kairos_frames_total", type="hello") == 2
    assert value(samples, "kairos_frames_total", type="events") == 1
    await shopper.leave()
    await chatter.leave()


async def test_the_redis_engine_times_each_script_call(serve):
    server = serve("redis")
    v = await Visitor.arrive(server.ws_url)  # open
    await v.events({"e": "exit_intent"})  # apply, then claim_show for the offer
    await v.expect("show")
    samples = scrape(server)
    calls = labels_of(samples, "kairos_redis_roundtrip_seconds_count", "call")
    assert set(calls) == {"open", "apply", "apply_show", "visit", "claim_show", "feedback", "arm_timers",
                          "claim_timers", "archive"}
    assert calls["open"] == 1 and calls["apply"] >= 1 and calls["claim_show"] == 1
    assert calls["claim_timers"] >= 1, "the timer loop claims at start"
    assert calls["feedback"] == 0 and calls["visit"] == 0, "a hello's visit is part of its open"
    for call in ("open", "apply", "claim_show"):
        assert value(samples, "kairos_redis_roundtrip_seconds_sum", call=call) > 0
        assert_histogram_is_whole(samples, "kairos_redis_roundtrip_seconds", call=call)
    await v.leave()


async def test_the_redis_engine_counts_the_writes_it_applied_itself(serve):
    server = serve("redis")
    before = labels_of(scrape(server), "kairos_compared_and_set_total", "call")
    assert before == {"apply": 0, "apply_show": 0, "claim_show": 0, "feedback": 0}
    v = await Visitor.arrive(server.ws_url)
    await v.events({"e": "scroll", "pct": 30})  # the first batch: applied in Redis, its result kept
    await v.events({"e": "exit_intent"})  # compared and set, with the offer it earned: one call
    shown = await v.expect("show")
    await v.send({"v": 1, "t": "feedback", "oid": shown["oid"], "act": "clicked", "ts": int(time.time() * 1000)})
    deadline = time.monotonic() + 5
    while True:
        samples = scrape(server)
        counted = labels_of(samples, "kairos_compared_and_set_total", "call")
        if counted["feedback"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert counted == {"apply": 0, "apply_show": 1, "claim_show": 0, "feedback": 1}
    calls = labels_of(samples, "kairos_redis_roundtrip_seconds_count", "call")
    assert (calls["apply"], calls["apply_show"], calls["claim_show"]) == (1, 1, 0), \
        "the first batch applied in Redis; the second compared and set with its show, in one round trip"
    assert labels_of(samples, "kairos_compared_and_set_stale_total", "call") == {"apply": 0, "apply_show": 0}, \
        "nobody else wrote"
    await v.leave()


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_a_delayed_nudge_observes_its_lateness_and_its_push(serve, engine):
    server = serve(engine, rules=REMINDER, extra=SCALE)
    v = await Visitor.arrive(server.ws_url)  # on a product page
    await v.leave()
    # Going on to a category page without adding the product arms the reminder.
    v = await Visitor.arrive(server.ws_url, vid=v.vid, sid=v.sid, path="/demo/category/shirts")
    pending = await asyncio.to_thread(scrape_when, server, lambda s: value(s, "kairos_timers_pending"))
    assert value(pending, "kairos_timers_pending") == 1
    assert (await v.expect("show", timeout=10))["rule"] == "product-reminder"

    samples = await asyncio.to_thread(
        scrape_when, server, lambda s: value(s, "kairos_push_latency_seconds_count", via="timer"))
    assert value(samples, "kairos_timers_total", outcome="shown") == 1
    assert value(samples, "kairos_timer_lateness_seconds_count") == 1
    assert_histogram_is_whole(samples, "kairos_timer_lateness_seconds")
    assert value(samples, "kairos_push_latency_seconds_count", via="timer") == 1
    # The push is timed from the due time, so it takes at least as long as the timer was late.
    assert value(samples, "kairos_push_latency_seconds_sum", via="timer") >= value(
        samples, "kairos_timer_lateness_seconds_sum")
    assert value(samples, "kairos_timers_pending") == 0
    if engine == "redis":
        assert value(samples, "kairos_redis_roundtrip_seconds_count", call="arm_timers") == 1
        assert value(samples, "kairos_redis_roundtrip_seconds_count", call="claim_timers") >= 1
    await v.leave()


async def test_open_sockets_count_the_pages_open_now(serve):
    server = serve("memory")
    a = await Visitor.arrive(server.ws_url)
    b = await Visitor.arrive(server.ws_url)
    assert server.metric("kairos_open_sockets") == 2
    await a.leave()
    samples = await asyncio.to_thread(scrape_when, server, lambda s: value(s, "kairos_open_sockets") == 1)
    assert value(samples, "kairos_open_sockets") == 1
    assert value(samples, "kairos_connections_total") == 2, "the counter keeps those that closed"
    await b.leave()


# --- the text, exactly (one process, no server) --------------------------------------------


def series_lines(text: str, *names: str) -> list[str]:
    """The sample lines of the named series, in the order served."""
    return [line for line in text.splitlines() if not line.startswith("#") and line.split("{")[0].split(" ")[0] in names]


def test_counters_and_histograms_serve_exactly_what_was_counted():
    """Our own lock-free counters and histograms (issue 16) write what prometheus_client's wrote."""
    m = Metrics()
    for _ in range(3):
        m.child(m.frames, "hello").inc()
    m.child(m.frames, "events").inc()
    m.events.inc(7)
    m.events.inc()
    m.refused.labels(code="flood").inc(2)
    m.refused.labels("flood").inc()
    m.shows.labels(rule="late-rule").inc()  # a rule first seen at its show: its series starts there
    # Values a binary float holds exactly, so the sums are exact too; 0.25 and 0.001 sit on a bound (le is <=).
    for seconds in (2**-14, 2**-12, 0.25, 0.25, 4.0):
        m.roundtrip("apply", seconds)
    m.roundtrip("open", 0.001)
    for n in (1, 2, 50, 51):
        m.batch_events.observe(n)
    m.child(m.push_latency, "staff").observe(0.0025)
    text = m.render().decode()

    assert series_lines(text, "kairos_frames_total", "kairos_events_total", "kairos_shows_total") == [
        'kairos_frames_total{type="hello"} 3.0',
        'kairos_frames_total{type="events"} 1.0',
        'kairos_frames_total{type="feedback"} 0.0',
        "kairos_events_total 8.0",
        'kairos_shows_total{rule="late-rule"} 1.0',
    ]
    assert 'kairos_refused_total{code="flood"} 3.0' in text.splitlines()
    apply_le = {"0.0001": 1, "0.00025": 2, "0.0005": 2, "0.001": 2, "0.0025": 2, "0.005": 2, "0.01": 2, "0.025": 2,
                "0.05": 2, "0.1": 2, "0.25": 4, "1.0": 4, "+Inf": 5}
    open_le = dict.fromkeys(apply_le, 1) | {"0.0001": 0, "0.00025": 0, "0.0005": 0}
    assert series_lines(text, *(f"kairos_redis_roundtrip_seconds{s}" for s in ("_bucket", "_count", "_sum"))) == [
        *(f'kairos_redis_roundtrip_seconds_bucket{{call="apply",le="{le}"}} {n}.0' for le, n in apply_le.items()),
        'kairos_redis_roundtrip_seconds_count{call="apply"} 5.0',
        'kairos_redis_roundtrip_seconds_sum{call="apply"} 4.50030517578125',
        *(f'kairos_redis_roundtrip_seconds_bucket{{call="open",le="{le}"}} {n}.0' for le, n in open_le.items()),
        'kairos_redis_roundtrip_seconds_count{call="open"} 1.0',
        'kairos_redis_roundtrip_seconds_sum{call="open"} 0.001',
    ]
    batch_le = {"1.0": 1, "2.0": 2, "3.0": 2, "5.0": 2, "8.0": 2, "13.0": 2, "20.0": 2, "30.0": 2, "50.0": 3, "+Inf": 4}
    assert series_lines(text, "kairos_batch_events_bucket", "kairos_batch_events_count", "kairos_batch_events_sum") == [
        *(f'kairos_batch_events_bucket{{le="{le}"}} {n}.0' for le, n in batch_le.items()),
        "kairos_batch_events_count 4.0",
        "kairos_batch_events_sum 104.0",
    ]
    staff = [line for line in series_lines(text, "kairos_push_latency_seconds_bucket") if 'via="staff"' in line]
    assert staff[:3] == ['kairos_push_latency_seconds_bucket{le="0.001",via="staff"} 0.0',
                         'kairos_push_latency_seconds_bucket{le="0.0025",via="staff"} 1.0',
                         'kairos_push_latency_seconds_bucket{le="0.005",via="staff"} 1.0']
    assert "_created" not in text


def test_a_counter_refuses_to_go_down_and_a_family_its_wrong_label():
    m = Metrics()
    with pytest.raises(ValueError):
        m.events.inc(-1)
    with pytest.raises(ValueError):
        m.shows.labels(code="exit-offer")
    with pytest.raises(ValueError):
        m.shows.labels()
    assert m.shows.labels(rule="exit-offer") is m.shows.labels("exit-offer") is m.child(m.shows, "exit-offer")
    assert value(parse(m.render().decode()), "kairos_events_total") == 0
