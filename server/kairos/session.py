"""Session state and how an event batch changes it.

A session is stored as a flat hash of strings (a Redis hash, or a dict in the
memory engine). An event batch is reduced to a list of *ops* — set, increment,
running maximum, delete — that an engine applies atomically. Because the ops
commute where it matters (increments, maxima), two batches of one session that
race on two server processes lose nothing.

Pure: no I/O, time is a parameter.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

import msgspec

from .scores import ScoreDef, Scores, add_part, bias_ops, score_ops, signals_of
from .traffic import traffic_source
from .urls import clean_path, clean_url
from .wire import Event, Hello, Page

# An op is (kind, field, value); kinds: set, setnx, incr, max, del,
# copy (the field takes the value of the field named by `value`), count
# (add one to a named counter such as `c:<name>`; a name not counted yet is only
# taken while its family — `c` — has fewer than `value` names, tallied in `c#`),
# and incr_pt (add `value` to the field `field` + the session's page type as it
# is when the op runs: dwell counted to the page type it was spent on, even
# when the batch's page view changes the type half-way through).
Op = tuple[str, str, str]

# Custom events are counted by name (`c:<name>`) for the first this many names of
# a session; the names are the store's, and a session must not grow without bound.
MAX_CUSTOM_NAMES = 32

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


@dataclass(frozen=True, slots=True)
class Overlay:
    rule: str
    status: str
    priority: int = 0


@dataclass(frozen=True, slots=True)
class VisitorInfo:
    """What a rule can know of the visitor beyond this session (kept under the visitor, with a TTL)."""

    sessions: int = 1
    first_ms: int = 0
    page_views_24h: int = 0  # of the page they are on
    type_views_24h: int = 0  # of pages of its type
    # Delayed nudges that came due while they were away (`offline: next_page`),
    # taken by this page view.
    pending: tuple[str, ...] = ()
    # The arm recorded for them in each experiment they were exposed to (experiment id -> arm).
    arms: Mapping[str, str] = field(default_factory=dict)

    @property
    def returning(self) -> bool:
        return self.sessions > 1


@dataclass(slots=True)
class SessionState:
    """What the rules can see of one session."""

    sid: str
    vid: str = ""
    site: str = ""
    started_ms: int = 0
    seen_ms: int = 0
    url: str = ""
    path: str = ""
    title: str = ""
    page_type: str = "other"
    prev_page_type: str = ""
    prev_page_adds: int = 0
    page_adds: int = 0
    page_since_ms: int = 0
    pages: int = 0
    dwell_ms: int = 0
    page_dwell_ms: int = 0
    scroll_pct: int = 0
    clicks: int = 0
    rage_clicks: int = 0
    exit_intents: int = 0
    idle_ms: int = 0
    hesitations: int = 0
    copies: int = 0
    # A hash of the store's user id (kairos.identify), never the id itself.
    uid: str = ""
    # Events the snippet dropped from its offline buffer (it says so in `lost`).
    lost: int = 0
    cart_value: float = 0.0
    cart_items: int = 0
    currency: str = ""
    adds: int = 0
    checkout_step: str = ""
    purchases: int = 0
    product: dict[str, Any] | None = None
    referrer: str = ""
    utm: dict[str, str] = field(default_factory=dict)
    # Where the visit came from (traffic.py): search, social, email, paid, referral, internal, direct.
    traffic: str = ""
    tz: int = 0
    lang: str = ""
    # From the User-Agent and a GeoIP lookup at the session's first page; the IP
    # address itself is never stored.
    device: str = ""
    browser: str = ""
    os: str = ""
    country: str = ""
    region: str = ""
    # Open sockets of this session by the process holding them (node id): a count per
    # process, so a killed process's count, never taken back, is set aside with it
    # (keep_sockets) instead of leaving the session connected for good.
    sockets: dict[str, int] = field(default_factory=dict)
    # Not stored: sockets set aside by keep_sockets, their process dead. Its pages
    # did not leave; they are reconnecting to another process (kairos.timers waits).
    lost_sockets: int = 0
    onscreen: str | None = None
    # Where the overlay on screen lives and was shown (moment.Placed, packed); "" before scopes.
    onscreen_at: str = ""
    # The overlays' stored fields (o:, r:, p: by overlay id), read into `overlays` when
    # first asked for: most batches never look at them.
    overlay_fields: dict[str, str] = field(default_factory=dict, repr=False)
    _overlays: dict[str, Overlay] | None = field(default=None, repr=False)
    fired: dict[str, int] = field(default_factory=dict)
    dismissed: set[str] = field(default_factory=set)
    # Events of each type this session: delayed rules compare them with the
    # counts at arming time to see whether a cancelling event happened since.
    counts: dict[str, int] = field(default_factory=dict)
    # Custom events (kairos.track) by name, for the first MAX_CUSTOM_NAMES names.
    custom: dict[str, int] = field(default_factory=dict)
    node: str = ""
    timer_fires: dict[str, int] = field(default_factory=dict)
    # Intent scores: each signal's decaying part, and each score's bias (scores.py).
    scores: Scores = field(default_factory=Scores)
    # Per page type: page views and visible time (the purchase-intent model's features).
    type_pages: dict[str, int] = field(default_factory=dict)
    type_dwell_ms: dict[str, int] = field(default_factory=dict)
    # The visitor's sessions, this one included, as last read from the visitor's
    # keys (0: not read yet); kept so an ended session still says new or returning.
    visits: int = 0
    # When the store lost this session's state and its open page opened it again
    # (ms; 0: never). What it had been shown is unknown from then on.
    restored: int = 0
    # Not stored in the session: read from the visitor's keys at page views.
    visitor: VisitorInfo = field(default_factory=VisitorInfo)
    # Not stored either: the scores a trained model computes (intent.score.ModelScore,
    # by name), as the rules in force declare them, and their values once computed
    # for this state (a state is one batch's view: its features do not change).
    models: Mapping[str, Any] = field(default_factory=dict)
    rated: dict[str, float] = field(default_factory=dict)

    # Set by `from_hash`: the stored fields, read into the attributes above when first
    # asked for (__getattr__). A batch's rules read a handful of a session's ~50 fields;
    # parsing them all was ~11 µs of every batch (issue 16).
    _unread: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_hash(cls, sid: str, h: Mapping[str, str]) -> "SessionState":
        """The typed state of a stored hash (strings), each field parsed when first read.

        `h` is copied: what the caller does with it afterwards does not change the state.
        """
        s = object.__new__(cls)  # no __init__: every slot but these two stays unset until read
        s.sid = sid
        s._unread = dict(h)
        return s

    def __getattr__(self, name: str) -> Any:
        # Called only for a slot not set: a field of a state from `from_hash`, read now.
        read = _READ.get(name)
        h = self._unread if name != "_unread" else None
        if read is None or h is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        value = read(h)
        setattr(self, name, value)
        return value

    @property
    def overlays(self) -> dict[str, Overlay]:
        """The overlays the session keeps (KEEP_OVERLAYS), by overlay id."""
        if self._overlays is None:
            f = self.overlay_fields
            self._overlays = {
                key[2:]: Overlay(rule=f.get("r:" + key[2:], ""), status=status, priority=int(f.get("p:" + key[2:], 0)))
                for key, status in f.items() if key[:2] == "o:"
            }
        return self._overlays

    @property
    def connected(self) -> int:
        """Open sockets of the session (of live processes only, once `keep_sockets` has run)."""
        return sum(self.sockets.values())

    def keep_sockets(self, alive: set[str] | frozenset[str]) -> None:
        """Forget the sockets of processes that are not alive (their heartbeat lapsed)."""
        self.lost_sockets = sum(n for node, n in self.sockets.items() if node not in alive)
        self.sockets = {node: n for node, n in self.sockets.items() if node in alive}

    def to_json(self, now_ms: int | None = None) -> dict[str, Any]:
        """The dashboard's view of the session, its scores as they are at now_ms (default: now)."""
        out = {name: getattr(self, name) for name in ("sid", *_SCALARS, "product", "utm")}
        out["overlays"] = {oid: {"rule": o.rule, "status": o.status} for oid, o in self.overlays.items()}
        out["fired"] = dict(self.fired)
        out["dismissed"] = sorted(self.dismissed)
        out["onscreen"] = self.onscreen
        out["connected"] = self.connected > 0
        out["counts"] = dict(self.counts)
        out["custom"] = dict(self.custom)
        out["timer_fires"] = dict(self.timer_fires)
        out["type_pages"] = dict(self.type_pages)
        out["type_dwell_ms"] = dict(self.type_dwell_ms)
        out["scores"] = self.scores_json(int(time.time() * 1000) if now_ms is None else now_ms)
        return out

    def score(self, name: str, now_ms: int) -> float:
        """A declared score's value now, 0..1."""
        model = self.models.get(name)
        if model is None:
            return self.scores.value(name, now_ms)
        value = self.rated.get(name)
        if value is None:
            value = self.rated[name] = model.value(self)
        return value

    def scores_json(self, now_ms: int, top: int | None = None) -> dict[str, Any]:
        """Each score now, its bias and its parts (signal, log-odds), largest effect first.

        A model's score shows the model's baseline and the columns of the
        session's features that moved it most (`model`: the file; `rest`: what the
        columns not shown add up to).
        """
        out = {
            name: {"value": self.scores.value(name, now_ms), "bias": self.scores.bias(name),
                   "top": [[sig, v] for sig, v in self.scores.contributions(name, now_ms)[:top]]}
            for name in self.scores.names() if name not in self.models
        }
        for name, model in self.models.items():
            out[name] = model.explain(self)
        return out


def _float(v: str) -> float:
    return float(v)


# Stored fields "<prefix>:<name>" holding an integer, and the SessionState dict each fills.
_FAMILIES = {"f": "fired", "n": "counts", "x": "timer_fires", "c": "custom", "pt": "type_pages", "pd": "type_dwell_ms"}


_SCALARS: dict[str, Callable[[str], Any]] = {
    "vid": str, "site": str, "started_ms": int, "seen_ms": int, "url": str, "path": str,
    "title": str, "page_type": str, "prev_page_type": str, "prev_page_adds": int, "page_adds": int, "page_since_ms": int, "pages": int, "dwell_ms": int,
    "page_dwell_ms": int, "scroll_pct": int, "clicks": int, "exit_intents": int, "idle_ms": int,
    "rage_clicks": int, "hesitations": int, "copies": int, "uid": str, "lost": int,
    "cart_value": _float, "cart_items": int, "currency": str, "adds": int, "checkout_step": str,
    "purchases": int, "referrer": str, "traffic": str, "tz": int, "lang": str, "node": str,
    "device": str, "browser": str, "os": str, "country": str, "region": str, "visits": int, "restored": int,
}


def _reader(name: str, conv: Callable[[str], Any], default: Any) -> Callable[[Mapping[str, str]], Any]:
    return lambda h: conv(h[name]) if name in h else default


def _family(prefix: str) -> Callable[[Mapping[str, str]], dict[str, int]]:
    n = len(prefix)
    return lambda h: {k[n:]: int(v) for k, v in h.items() if k.startswith(prefix)}


def _scores(h: Mapping[str, str]) -> Scores:
    return Scores(stored={k[3:]: v for k, v in h.items() if k.startswith("sp:")},
                  stored_bias={k[3:]: v for k, v in h.items() if k.startswith("sb:")})


def _onscreen_at(h: Mapping[str, str]) -> str:
    on = h.get("on")
    return h.get("w:" + on, "") if on else ""


# How SessionState.__getattr__ reads each field of a state from `from_hash`, when
# first asked for: a scalar from its stored field, a family in one pass over the
# fields with its prefix (a batch's rules read one or two families), and what is
# not stored as its default (a fresh one, for a field of mutable type).
_READ: dict[str, Callable[[Mapping[str, str]], Any]] = {
    f.name: (lambda h, make=f.default_factory: make()) if f.default_factory is not MISSING
    else (lambda h, v=f.default: v)
    for f in fields(SessionState) if f.name not in ("sid", "_unread")
}
_READ.update({name: _reader(name, conv, _READ[name]({})) for name, conv in _SCALARS.items()})
_READ.update({attr: _family(prefix + ":") for prefix, attr in _FAMILIES.items()})
_READ.update(
    product=lambda h: json.loads(h["product"]) if "product" in h else None,
    utm=lambda h: json.loads(h["utm"]) if "utm" in h else {},
    onscreen=lambda h: h.get("on") or None,
    onscreen_at=_onscreen_at,
    overlay_fields=lambda h: {k: v for k, v in h.items() if k[:2] in ("o:", "r:", "p:")},
    dismissed=lambda h: {k[2:] for k in h if k.startswith("d:")},
    scores=_scores,
    sockets=lambda h: {k[3:]: int(v) for k, v in h.items() if k.startswith("cn:") and int(v) > 0},
)


# --- reduction ----------------------------------------------------------------


def _num(v: float | int) -> str:
    # repr keeps full precision and is what HINCRBYFLOAT parses.
    return repr(float(v)) if isinstance(v, float) else str(v)


def page_ops(page: Page | dict[str, Any], page_type: str, now_ms: int) -> list[Op]:
    """A new page: counters for the page start again, the product is the page's.

    The URL is stored cut to origin, path and campaign tags (urls.clean_url).
    """
    p = page if isinstance(page, dict) else {"url": page.url, "path": page.path, "title": page.title, "prod": page.prod}
    p = {**p, "url": clean_url(p["url"]), "path": clean_path(p["path"])}
    ops: list[Op] = [
        # What the page being left was, and whether its product went into the cart.
        ("copy", "prev_page_type", "page_type"),
        ("copy", "prev_page_adds", "page_adds"),
        # A counter starting again is deleted, not set to "0": a field absent reads as 0
        # (SessionState), and each one stored costs its name and value in every session
        # (issue 16: Redis memory per open session).
        ("del", "page_adds", ""),
        ("set", "url", p["url"]),
        ("set", "path", p["path"]),
        ("set", "title", p.get("title") or ""),
        ("set", "page_type", page_type),
        ("set", "page_since_ms", str(now_ms)),
        ("incr", "pages", "1"),
        ("incr", f"pt:{page_type}", "1"),
        ("del", "page_dwell_ms", ""),
        ("del", "scroll_pct", ""),
        ("del", "idle_ms", ""),
        ("incr", "n:page_view", "1"),
    ]
    prod = p.get("prod")
    # The last product looked at stays in the state after leaving its page:
    # "still thinking about X?" is the point of remembering it.
    if prod:
        prod = {**prod, "url": p["url"]}  # so a reminder can link back to it
        ops.append(("set", "product", json.dumps(prod, separators=(",", ":"), sort_keys=True)))
    return ops


def sockets_field(node: str) -> str:
    """The session's field counting its sockets held by the process `node` (SessionState.sockets)."""
    return f"cn:{node or '-'}"


def hello_ops(hello: Hello, page_type: str, now_ms: int, node: str = "", context: dict[str, str] | None = None,
              scores: Iterable[ScoreDef] = ()) -> list[Op]:
    """Ops for a connection's hello: first-visit context once, then the page view.

    A reconnection within the page load (`hello.re`) only counts the connection:
    the page, its counters and the overlay on screen are still as they were.
    `scores`: the declared intent scores, which the page view feeds.
    """
    if hello.re:
        return [("incr", sockets_field(node), "1"), ("set", "node", node)]
    utm = {k: v[:128] for k, v in parse_qsl(urlsplit(hello.page.url).query) if k in UTM_KEYS}
    ops: list[Op] = [
        ("setnx", "vid", hello.vid),
        ("setnx", "site", hello.site),
        ("setnx", "started_ms", str(now_ms)),
        ("set", "seen_ms", str(now_ms)),
        # Where the visit came from is the first page's referrer, not an internal link's.
        ("setnx", "referrer", clean_url(hello.page.ref)),
        ("setnx", "traffic", traffic_source(hello.page.ref, hello.page.url)),
        ("set", "tz", str(hello.tz)) if hello.tz else ("del", "tz", ""),
        ("set", "lang", hello.lang),
        ("incr", sockets_field(node), "1"),
        # The process holding the socket: where a timer that fires elsewhere sends its nudge.
        ("set", "node", node),
        # A page load wipes whatever overlay the previous page had on screen.
        ("del", "on", ""),
    ]
    if utm:
        ops.append(("setnx", "utm", json.dumps(utm, separators=(",", ":"), sort_keys=True)))
    ops += [("setnx", name, value) for name, value in (context or {}).items()]
    scores = list(scores)
    return (ops + page_ops(hello.page, page_type, now_ms) + bias_ops(scores)
            + score_ops(scores, signals_of("page_view", {}, page_type), now_ms))


def uid_hash(key: bytes, site: str, uid: str) -> str:
    """What is kept of a store's user id: enough to tell identified visitors apart, not the id.

    Keyed (HMAC-SHA256) with the installation's identify secret, never shown to
    visitors: without it, a list of email addresses cannot be hashed to find whose
    a stored hash is. 128 bits of it.
    """
    if not key:
        raise ValueError("expected the installation's identify key (Settings.identify_secret), got none")
    return hmac.new(key, f"{site}:{uid}".encode(), hashlib.sha256).hexdigest()[:32]


# Events that only count, and the session field that counts them.
_COUNTED = {"click": "clicks", "rage_click": "rage_clicks", "exit_intent": "exit_intents",
            "hesitation": "hesitations", "copy": "copies"}


def event_ops(events: Iterable[Event], classify: Callable[[str, str], str], now_ms: int, site: str = "",
              scores: Iterable[ScoreDef] = (), identify_key: bytes = b"") -> list[Op]:
    """Reduce an event batch to ops, in batch order.

    `classify(path, declared_type)` gives a page view's page type; `scores` are
    the declared intent scores the events feed; an `identify` event stores the
    hash of its id keyed by `identify_key` (and the `site`): see uid_hash.
    """
    scores = list(scores)
    ops: list[Op] = []
    signals: list[tuple[str, float]] = []
    for ev in events:
        f = ev.fields
        page_type = classify(f["path"], f.get("type", "")) if ev.type == "page_view" else ""
        if ev.type != "page_view":  # page_ops counts page views, hello's included
            ops.append(("incr", f"n:{ev.type}", "1"))
        if scores:
            signals += signals_of(ev.type, f, page_type)
        match ev.type:
            case "page_view":
                ops += page_ops(f, page_type, now_ms)
            case "dwell":
                ops += [("incr", "dwell_ms", str(f["ms"])), ("incr", "page_dwell_ms", str(f["ms"])),
                        ("incr_pt", "pd:", str(f["ms"]))]
            case "scroll":
                ops.append(("max", "scroll_pct", str(f["pct"])))
            case "click" | "rage_click" | "exit_intent" | "hesitation" | "copy":
                ops.append(("incr", _COUNTED[ev.type], "1"))
            case "idle":
                ops.append(("set", "idle_ms", str(f["ms"])))
            case "idle_end":
                ops.append(("del", "idle_ms", ""))
            case "identify":
                ops.append(("set", "uid", uid_hash(identify_key, site, f["uid"])))
            case "custom":
                ops.append(("count", f"c:{f['name']}", str(MAX_CUSTOM_NAMES)))
            case "cart":
                ops += [("set", "cart_value", _num(f["value"])), ("set", "cart_items", str(f["items"]))]
                if "cur" in f:
                    ops.append(("set", "currency", f["cur"]))
            case "add_to_cart":
                ops += [("incr", "adds", "1"), ("incr", "page_adds", "1")]
            case "checkout":
                ops.append(("set", "checkout_step", f["step"]))
            case "purchase":
                ops += [("incr", "purchases", "1"), ("set", "cart_value", "0.0"), ("set", "cart_items", "0")]
    ops.append(("set", "seen_ms", str(now_ms)))
    return ops + score_ops(scores, signals, now_ms)


# One encoder for every line. msgspec's, not the json module's: 0.5 against 4.2 µs for a
# click's line (python -m timeit, this project's machine), and a batch writes one or more.
# It writes UTF-8 where json escapes (\u00e9): the same text once parsed.
_line = msgspec.json.Encoder().encode


def log_entry(kind: str, now_ms: int, **what: Any) -> str:
    """One line of the session's activity log, as the dashboard shows it."""
    return _line({"ts": now_ms, "kind": kind, **what}).decode()


# Events that change a counter every few seconds (dwell, scroll, idle) show in the
# session's state; the log keeps the moments a person reading it cares about: page
# views, the cart, clicks on what the store marked (data-kairos: `k`, `ka`), rage
# clicks, exit intent, the rules' decisions and the nudges. A click on an unmarked
# element is counted (`clicks`), not logged: such clicks were most of a session's
# log lines, and of its Redis memory (issue 16).
QUIET_EVENTS = frozenset({"dwell", "scroll", "idle", "idle_end"})


def _logged(ev: Event) -> bool:
    if ev.type == "click":
        return "k" in ev.fields or "ka" in ev.fields
    return ev.type not in QUIET_EVENTS


def event_log(events: Iterable[Event], now_ms: int, site: str = "", identify_key: bytes = b"") -> list[str]:
    """Log lines for a batch, keeping what the session keeps: an `identify`'s hash, not the id;
    a page view's URLs cut as stored (urls.clean_url)."""
    out = []
    for ev in events:
        if not _logged(ev):
            continue
        fields = ev.fields
        if ev.type == "identify":
            fields = {"uid": uid_hash(identify_key, site, ev.fields["uid"])}
        elif ev.type == "page_view":
            fields = {**fields, "url": clean_url(fields["url"]), "path": clean_path(fields["path"]),
                      **({"ref": clean_url(fields["ref"])} if fields.get("ref") else {})}
        out.append(log_entry("event", now_ms, e=ev.type, **fields))
    return out


# --- op semantics ---------------------------------------------------------------
# The memory engine runs these; lua/apply.lua does the same inside Redis. The
# contract tests hold the two to one behaviour.


def apply_ops(h: dict[str, str], ops: Iterable[Op]) -> None:
    """Apply ops to a stored hash in place."""
    for kind, name, value in ops:
        if kind == "set":
            h[name] = value
        elif kind == "setnx":
            h.setdefault(name, value)
        elif kind == "incr":
            h[name] = str(int(h.get(name, "0")) + int(value))
        elif kind == "max":
            if name not in h or float(value) > float(h[name]):
                h[name] = value
        elif kind == "del":
            h.pop(name, None)
        elif kind == "score":
            h[name] = add_part(h.get(name), value)
        elif kind == "incr_pt":
            key = name + h.get("page_type", "other")
            h[key] = str(int(h.get(key, "0")) + int(value))
        elif kind == "copy":
            if value in h:
                h[name] = h[value]
            else:
                h.pop(name, None)
        elif kind == "count":
            if name in h:
                h[name] = str(int(h[name]) + 1)
            else:
                tally = name.partition(":")[0] + "#"
                if int(h.get(tally, "0")) < int(value):
                    h[tally] = str(int(h.get(tally, "0")) + 1)
                    h[name] = "1"
        else:
            raise ValueError(f"unknown op {kind!r}")


def session_verdict(h: dict[str, str], rule: str, max_per_session: int, priority: int) -> str:
    """The session's own checks for a show: "ok" or why not.

    One overlay at a time: a new one needs a higher priority than the one on
    screen. A rule the visitor dismissed stays quiet for the session.
    """
    if not h:
        return "gone"
    if f"d:{rule}" in h:
        return "dismissed"
    if max_per_session > 0 and "restored" in h:
        # The store lost what this session was shown: a once-per-session offer
        # it may have seen is held back rather than shown twice.
        return "history_lost"
    if max_per_session > 0 and int(h.get(f"f:{rule}", "0")) >= max_per_session:
        return "capped"
    on = h.get("on")
    if on and priority <= int(h.get(f"p:{on}", "0")):
        return "busy"
    return "ok"


# Overlays a session keeps field by field (status, rule, priority, placement),
# the newest last in the hash's "ol" field; older ones are forgotten, so a batch,
# which reads the whole hash, costs the same at the 3,000th show as at the first.
# The caps need none of them: per-session counts (f:), dismissals (d:) and the
# overlay on screen (on) are kept apart. 4 is the overlay on screen and the
# three before it, whose feedback (a click or a dismissal sent as a replacement
# arrived) may still be on its way; the timeline keeps every show. Each kept
# field costs the batch about a microsecond: at 16 a session's 3,000th batch
# cost 1.34x its first, at 4 1.08x (benchmarks/old_session.py).
# claim_show.lua keeps the same number.
KEEP_OVERLAYS = 4
OVERLAY_FIELDS = ("o", "r", "p", "w")


def record_show(h: dict[str, str], rule: str, oid: str, priority: int, placed: str = "") -> None:
    """Record a show that passed every cap: counted, on screen, replacing what was.

    `placed`: where it lives (moment.Placed, packed), read back as `onscreen_at`.
    Only the last KEEP_OVERLAYS overlays are kept field by field.
    """
    h.pop(f"k:{rule}", None)
    on = h.get("on")
    if on:
        h[f"o:{on}"] = "replaced"
        h.pop(f"w:{on}", None)  # where an overlay lives is kept while it is on screen
    h[f"f:{rule}"] = str(int(h.get(f"f:{rule}", "0")) + 1)
    h[f"o:{oid}"] = "sent"
    h[f"r:{oid}"] = rule
    h[f"p:{oid}"] = str(priority)
    if placed:
        h[f"w:{oid}"] = placed
    h["on"] = oid
    kept = [*h.get("ol", "").split(), oid]
    for old in kept[:-KEEP_OVERLAYS]:
        for prefix in OVERLAY_FIELDS:
            h.pop(f"{prefix}:{old}", None)
    h["ol"] = " ".join(kept[-KEEP_OVERLAYS:])


def note_skip(h: dict[str, str], rule: str, verdict: str) -> bool:
    """Remember why a rule's moment came and went unshown; True when the reason is new.

    A rule blocked for the same reason batch after batch (an overlay stays on
    screen, a cap stays spent) is one moment for the timeline and the counters,
    not one per batch. A show clears it (record_show).
    """
    if h.get(f"k:{rule}") == verdict:
        return False
    h[f"k:{rule}"] = verdict
    return True


def claim_show(h: dict[str, str], rule: str, oid: str, max_per_session: int, priority: int) -> str:
    """Check the session caps and record the show; returns "ok" or why not."""
    verdict = session_verdict(h, rule, max_per_session, priority)
    if verdict == "ok":
        record_show(h, rule, oid, priority)
    return verdict


def record_feedback(h: dict[str, str], oid: str, act: str) -> bool:
    """Record what the visitor did with an overlay; False if it was never sent here."""
    rule = h.get(f"r:{oid}")
    if rule is None:
        return False
    h[f"o:{oid}"] = act
    if act != "shown" and h.get("on") == oid:
        del h["on"]
        h.pop(f"w:{oid}", None)
    if act == "dismissed":
        h[f"d:{rule}"] = "1"
    return True
