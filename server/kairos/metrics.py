"""What /metrics exposes: counters, gauges and histograms, in prometheus_client's text format.

Each Runtime owns a registry of its own (never the library's global one), so
several servers in one process — the tests build many — keep their own counts.
Counters are declared with their known label values at zero: a scraper sees
every family before the first event, and `rate()` has a starting point.
The families, and the queries that matter, are in docs/operations.md.

The counters and histograms are this module's own (`Counter`, `LabelledCounter`,
`Histogram`, `LabelledHistogram`): plain numbers, no lock, handed to the registry
as custom collectors and read at scrape time. prometheus_client's own take a
threading.Lock on every inc and observe, and every batch makes several: in
py-spy under benchmarks/load.py, MutexValue.inc was 1.4 % of the server's CPU
(self) and Histogram.observe 2.0 % (inclusive) (issue 16).
No lock is needed because everything that counts runs on the server's one
event-loop thread (kairos serve is one asyncio loop; the rules parsed in a worker
thread count nothing), and the scrape reads on that thread too, between two
awaits, so it never sees half an update. Count from another thread and `+=`
is no longer safe: go through `loop.call_soon_threadsafe` instead.
Gauges stay prometheus_client's: they are set or read at scrape time only.
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from itertools import accumulate
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import INF, floatToGoString

from . import wire

# prometheus_client adds a `<name>_created` series beside every counter and
# histogram. In the text format Prometheus stores it as one more gauge per
# label set, which no query reads; off for the whole process (this server is it).
disable_created_metrics()

# Refusal codes: the table of docs/protocol.md ("Errors and close codes") and
# the beacon's own (`origin`, `unknown_session`). tests/test_metrics.py checks
# that every code the server can send is here.
REFUSAL_CODES = (
    "bad_frame", "unknown_type", "bad_field", "unknown_event", "bad_event", "too_many_events", "unknown_overlay",
    "unexpected_hello", "rate_limited", "too_large", "bad_version", "hello_required", "no_consent", "flood",
    "server_error", "origin", "unknown_session",
)
FRAME_TYPES = ("hello", "events", "feedback")
BEACON_TYPES = ("events", "forget")
# What becomes of a timer that came due (kairos.timers.TimerService.fire).
TIMER_OUTCOMES = ("shown", "forwarded", "held", "kept", "dropped", "capped", "cancelled", "replaced", "session_gone",
                  "rule_gone")
# Why a client too slow to read was let go (kairos.push): a frame would take its
# queue past its bound, or waited longer than the send timeout for its socket.
RELEASES = ("queue_full", "send_timeout")
# What started the clock of a push: an event batch (or page view) a rule answered,
# staff sending a nudge from the dashboard, a delayed rule's due time.
PUSH_VIA = ("rule", "staff", "timer")
# The Redis engine's Lua scripts, one engine call each (kairos.engine.redis).
# `apply_show` is a batch stored with the show it earned, in one call.
REDIS_CALLS = ("open", "apply", "apply_show", "visit", "claim_show", "feedback", "arm_timers", "claim_timers",
               "archive")
# The calls whose session write the process may apply itself, compared and set in Redis.
COMPARED_CALLS = ("apply", "apply_show", "claim_show", "feedback")
# The calls whose compare-and-set a stale copy can make Redis refuse (applied again, RedisEngine.stale).
STALE_CALLS = ("apply", "apply_show")

# Our promise is tens of milliseconds from an event batch to its push (the load
# benchmark's p50 is a few ms on an idle machine, ~30 ms with a browser taking a
# core): fine steps up to 100 ms, then coarse ones to see how bad a bad minute was.
PUSH_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
# The published figure to beat is BullMQ's: delayed jobs under 20 ms late at p99.
# The loop sleeps at most 1 s (timers.MAX_SLEEP_S), so a missed wake-up lands
# in the 1 s bucket and a backlog beyond it.
LATENESS_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A Redis on the same host or network answers in 0.1-0.5 ms; what adds up to
# the push budget above is a call in the milliseconds.
REDIS_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# The snippet flushes a batch each second or sooner; a batch holds at most
# wire.MAX_EVENTS (50) events.
BATCH_BUCKETS = (1, 2, 3, 5, 8, 13, 20, 30, 50)


class Metrics:
    """The server's counters, gauges and histograms, in a registry of its own."""

    def __init__(self, open_sockets: Callable[[], float] = lambda: 0) -> None:
        r = self.registry = CollectorRegistry()
        # Counter names leave out `_total`: the exposition appends it.
        self.frames = LabelledCounter("kairos_frames", "Frames received from browsers, by type.", "type", r)
        self.events = Counter("kairos_events", "Visitor events applied to sessions.", r)
        self.events_lost = Counter(
            "kairos_events_lost", "Events snippets dropped from their offline buffers (as they report in `lost`).", r)
        self.shows = LabelledCounter("kairos_shows", "Overlays pushed, by rule.", "rule", r)
        self.refused = LabelledCounter("kairos_refused", "Frames, events or beacons refused, by error code.", "code",
                                       r)
        self.feedback = LabelledCounter("kairos_feedback", "Overlay feedback, by act.", "act", r)
        self.connections = Counter("kairos_connections", "Websocket connections accepted.", r)
        self.released = LabelledCounter(
            "kairos_slow_clients_released",
            "Websockets closed with 1013 and aborted because their client read too slowly, by why.", "why", r)
        self.restored = Counter(
            "kairos_sessions_restored",
            "Sessions the store lost while their page was open, opened again from the page's hello.", r)
        self.beacons = LabelledCounter("kairos_beacons", "Beacons (POST /b) accepted, by type.", "type", r)
        self.timers = LabelledCounter("kairos_timers", "Delayed nudges that came due, by what became of them.",
                                      "outcome", r)
        self.push_latency = LabelledHistogram(
            "kairos_push_latency_seconds",
            "From what started a nudge (the event batch received, the staff request, the timer's due time) "
            "to its show frame written to the socket, by what started it.",
            "via", PUSH_BUCKETS_S, r)
        self.timer_lateness = Histogram(
            "kairos_timer_lateness_seconds", "From a delayed nudge's due time to the timer loop taking it up.",
            LATENESS_BUCKETS_S, r)
        self.redis_roundtrip = LabelledHistogram(
            "kairos_redis_roundtrip_seconds",
            "One Redis engine call, from sending it to its reply (waiting for a pipeline included), by script.",
            "call", REDIS_BUCKETS_S, r)
        self.batch_events = Histogram("kairos_batch_events", "Events in one batch (websocket frame or beacon).",
                                      BATCH_BUCKETS, r)
        self.open_sockets = Gauge("kairos_open_sockets", "Visitor websockets open on this process.", registry=r)
        self.open_sockets.set_function(open_sockets)
        self.timers_pending = Gauge("kairos_timers_pending", "Delayed nudges waiting in the queue.", registry=r)
        # A staff debug figure (kairos.gcpolicy): a full collection's pause grows with generations 0-2, not with
        # what is frozen. Read at scrape time; each read walks its generation's list once.
        self.gc_objects = Gauge(
            "kairos_gc_objects",
            "Objects the garbage collector tracks in this process, by generation (0, 1, 2; frozen: walked by no "
            "collection).", ["generation"], registry=r)
        for generation in range(3):
            self.gc_objects.labels(str(generation)).set_function(lambda g=generation: len(gc.get_objects(g)))
        self.gc_objects.labels("frozen").set_function(gc.get_freeze_count)
        self.gc_collections = _ReadCounter(
            "kairos_gc_collections",
            "Collections the garbage collector ran in this process, by the oldest generation each walked (2: a "
            "full collection, the event loop stopped while it walks every object not frozen).", "generation", r,
            _GcCollections())
        # Read from the engine's own tallies at scrape time (RedisEngine.applied_here, .stale):
        # no work per batch. Empty with the memory engine, which has nothing to compare.
        self.compared_and_set = _ReadCounter(
            "kairos_compared_and_set",
            "Engine calls whose session write this process applied itself and Redis stored by compare-and-set, "
            "by script; the rest of kairos_redis_roundtrip_seconds_count{call} were refused as stale "
            "(kairos_compared_and_set_stale_total) or applied in Redis.", "call", r)
        self.compared_stale = _ReadCounter(
            "kairos_compared_and_set_stale",
            "Compare-and-set writes Redis refused because the session had changed since this process read it "
            "(another tab, process or timer wrote it), by script: each applied again to the session as it was.",
            "call", r)
        for family, label, values in (
            (self.frames, "type", FRAME_TYPES), (self.refused, "code", REFUSAL_CODES),
            (self.feedback, "act", sorted(wire.FEEDBACK_ACTS)), (self.beacons, "type", BEACON_TYPES),
            (self.timers, "outcome", TIMER_OUTCOMES), (self.push_latency, "via", PUSH_VIA),
            (self.released, "why", RELEASES),
        ):
            for value in values:
                self.child(family, value)

    def child(self, family: Any, value: str) -> Any:
        """The series of a family with one label (all of ours) for `value`, made on first use.

        `family.labels(value)` itself: ours is one dict look-up, no lock, so there is no cache of its own here.
        """
        return family.labels(value)

    def declare_rules(self, rule_ids: Iterable[str]) -> None:
        """Show each rule's show counter (at zero until it shows): rules loaded at start or later."""
        for rule_id in rule_ids:
            self.shows.labels(rule=rule_id)

    def pushed(self, via: str, since_s: float) -> Callable[[], None]:
        """A callback for `Connection.send`: observes the push latency once the frame is written.

        `since_s` is on the `time.perf_counter()` clock.
        """
        child = self.child(self.push_latency, via)
        return lambda: child.observe(time.perf_counter() - since_s)

    def time_engine(self, engine: object) -> None:
        """Time the engine's calls when it makes any: the Redis engine's (the memory engine has no round trip)."""
        if hasattr(engine, "on_roundtrip"):
            engine.on_roundtrip = self.roundtrip
            for call in REDIS_CALLS:
                self.child(self.redis_roundtrip, call)
        for family, tally, calls in ((self.compared_and_set, "applied_here", COMPARED_CALLS),
                                     (self.compared_stale, "stale", STALE_CALLS)):
            counts = getattr(engine, tally, None)
            if counts is not None:
                family.read(counts, calls)

    def roundtrip(self, call: str, seconds: float) -> None:
        """Observe one Redis engine call."""
        self.redis_roundtrip.labels(call).observe(seconds)

    def render(self) -> bytes:
        """The exposition text, as prometheus_client writes it."""
        return generate_latest(self.registry)


class _ReadCounter:
    """A counter family with one label whose values someone else keeps (an engine's tally
    of calls), read at each scrape: counting costs the counter's owner a dict increment."""

    def __init__(self, name: str, documentation: str, label: str, registry: CollectorRegistry,
                 counts: Mapping[str, int] | None = None) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self._counts: Mapping[str, int] = counts if counts is not None else {}
        registry.register(self)

    def read(self, counts: dict[str, int], declared: Iterable[str]) -> None:
        """Expose `counts` from now on, the `declared` label values at zero until counted."""
        for value in declared:
            counts.setdefault(value, 0)
        self._counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, n in self._counts.items():
            family.add_metric([value], n)
        yield family


class _GcCollections(Mapping[str, int]):
    """The collector's own count of collections by generation (gc.get_stats), read when asked."""

    def __getitem__(self, generation: str) -> int:
        return gc.get_stats()[int(generation)]["collections"]

    def __iter__(self) -> Iterator[str]:
        return iter(("0", "1", "2"))

    def __len__(self) -> int:
        return 3


# --- counters and histograms without locks (see the module's docstring) ---------------------------


class Counter:
    """A counter without labels: one number that only goes up, its own series."""

    __slots__ = ("name", "documentation", "value")

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name, self.documentation = name, documentation
        self.value: float = 0
        registry.register(self)

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter only goes up, expected an amount >= 0, got {amount!r}")
        self.value += amount

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.value)


class _CounterSeries:
    """One label value's series of a `LabelledCounter`."""

    __slots__ = ("name", "value")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value: float = 0

    inc = Counter.inc


class _Labelled:
    """A family with one label (all of ours): a series per label value, in the order they were first used."""

    def __init__(self, name: str, documentation: str, label: str, registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self._series: dict[str, Any] = {}
        registry.register(self)

    def labels(self, *values: str, **named: str) -> Any:
        """The series for one label value, by position or by name (`labels("x")`, `labels(rule="x")`)."""
        if named:
            if values or len(named) != 1 or self.label not in named:
                raise ValueError(f"{self.name}: expected the label {self.label!r} alone, got {sorted(named)}")
            value = named[self.label]
        elif len(values) == 1:
            value = values[0]
        else:
            raise ValueError(f"{self.name}: expected one value for {self.label!r}, got {len(values)}")
        series = self._series.get(value)
        if series is None:
            # prometheus_client labels by str(value): a value that is no str gets its series by its text.
            key = str(value)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = self._new()
        return series

    def _new(self) -> Any:
        raise NotImplementedError


class LabelledCounter(_Labelled):
    """A counter family with one label: `labels(value).inc()`."""

    def _new(self) -> _CounterSeries:
        return _CounterSeries(self.name)

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, series in self._series.items():
            family.add_metric([value], series.value)
        yield family


class _Buckets:
    """A histogram's bounds: sorted, +Inf last, and their `le` label values as prometheus_client writes them."""

    __slots__ = ("bounds", "les")

    def __init__(self, buckets: Sequence[float]) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError(f"expected bucket bounds in ascending order, got {list(buckets)}")
        if not bounds or bounds[-1] != INF:
            bounds.append(INF)
        self.bounds = tuple(bounds)
        self.les = tuple(floatToGoString(b) for b in bounds)


class _HistogramSeries:
    """One series of a histogram: a count per bucket (not cumulative: one add per observation) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        # The first bound >= amount, as prometheus_client's `amount <= bound`. (A NaN, which nothing here
        # observes, would count in the first bucket, where prometheus_client counts it in none.)
        self.sum += amount
        self.counts[bisect_left(self.bounds, amount)] += 1

    def add_to(self, family: HistogramMetricFamily, labels: list[str], les: tuple[str, ...]) -> None:
        family.add_metric(labels, list(zip(les, accumulate(self.counts))), self.sum)


class Histogram(_HistogramSeries):
    """A histogram without labels: its own series."""

    __slots__ = ("name", "documentation", "les")

    def __init__(self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry) -> None:
        b = _Buckets(buckets)
        super().__init__(b.bounds)
        self.name, self.documentation, self.les = name, documentation, b.les
        registry.register(self)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[])
        self.add_to(family, [], self.les)
        yield family


class LabelledHistogram(_Labelled):
    """A histogram family with one label: `labels(value).observe(x)`."""

    def __init__(self, name: str, documentation: str, label: str, buckets: Sequence[float],
                 registry: CollectorRegistry) -> None:
        self._buckets = _Buckets(buckets)
        super().__init__(name, documentation, label, registry)

    def _new(self) -> _HistogramSeries:
        return _HistogramSeries(self._buckets.bounds)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, series in self._series.items():
            series.add_to(family, [value], self._buckets.les)
        yield family
