"""Wire protocol v1: decode and validate client frames, encode server frames.

Sans-I/O: bytes in, dataclasses or a `WireError` out; bytes out. Nothing here
raises on bad input — a refusal is a value the websocket endpoint turns into an
error frame or a close code. The protocol is specified in docs/protocol.md.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

VERSION = 1
MAX_FRAME_BYTES = 16 * 1024
# The websocket layer drops a connection sending more than this without reading it.
HARD_MAX_FRAME_BYTES = 64 * 1024
MAX_EVENTS = 50
HELLO_TIMEOUT_S = 10.0
# How much of an unknown type's name an error frame and the log repeat: enough to
# tell a typo or a newer snippet's type (the longest known is 11), never a
# client's 10 KB string copied into every refusal and log line.
ECHO_CHARS = 32

# Close codes (docs/protocol.md, "Errors and close codes"), every one the server
# sends: 1002, 1007 and 1009 over 64 KiB come from the websocket layer itself, and
# 1012 from uvicorn closing every socket at shutdown (SIGTERM), which the snippet
# reconnects after like any code it does not treat as terminal.
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL = 1002
CLOSE_BAD_UTF8 = 1007
CLOSE_TOO_LARGE = 1009
CLOSE_INTERNAL = 1011
CLOSE_RESTART = 1012
CLOSE_TRY_AGAIN = 1013
CLOSE_BAD_VERSION = 4001
CLOSE_NO_HELLO = 4002
CLOSE_ORIGIN = 4003
CLOSE_NO_CONSENT = 4004
CLOSE_FLOOD = 4008

# Bounds on the maps a click and a custom event carry: a few attributes, a few
# properties; anything bigger is not a moment, it is a data dump.
MAX_KAIROS_ATTRS = 8
MAX_PROPS = 16
EXIT_HOWS = frozenset({"top", "scroll", "back", "hidden"})
_CUSTOM_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

FEEDBACK_ACTS = frozenset({"shown", "clicked", "dismissed", "converted", "expired", "hidden"})
# Why an overlay was taken down (hide.why; feedback `hidden` says its own): the
# page or the page type was left, the rule's `until` held, its ttl passed, staff
# took it down, or a newer overlay replaced it.
HIDE_REASONS = ("page", "page_type", "until", "ttl", "staff", "replaced")
_ID = re.compile(r"^[A-Za-z0-9_.-]{8,64}$")
_SITE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class WireError:
    """A refused frame or event: the error code, a message, and the close code if fatal."""

    code: str
    msg: str
    close: int | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Page:
    url: str
    path: str
    title: str = ""
    ref: str = ""
    prod: dict[str, Any] | None = None
    # The page type the store declares (`kairos.page({type})`); used when the rules declare it.
    type: str = ""


@dataclass(frozen=True, slots=True)
class Hello:
    site: str
    vid: str
    sid: str | None
    page: Page
    consent: bool
    dnt: bool
    gpc: bool
    sv: str = ""
    tz: int = 0
    lang: str = ""
    vp: tuple[int, int] | None = None
    # A reconnection within the same page load: not another page view.
    re: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    """One visitor event: its type, the client's timestamp, and its typed fields."""

    type: str
    ts: int
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Events:
    seq: int
    events: list[Event]
    # Events refused inside an otherwise good batch; the rest is still applied.
    problems: list[WireError] = field(default_factory=list)
    # Events the snippet dropped from its bounded offline buffer since its last frame.
    lost: int = 0


@dataclass(frozen=True, slots=True)
class Feedback:
    oid: str
    act: str
    ts: int
    why: str = ""  # `hidden` only: one of HIDE_REASONS


Frame = Hello | Events | Feedback


# --- field checks -------------------------------------------------------------


class _Bad(Exception):
    pass


def _str(v: Any, name: str, max_len: int) -> str:
    if not isinstance(v, str):
        raise _Bad(f"{name}: expected a string, got {type(v).__name__}")
    if len(v) > max_len:
        raise _Bad(f"{name}: longer than {max_len} characters")
    return v


def _int(v: Any, name: str, lo: int, hi: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise _Bad(f"{name}: expected an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise _Bad(f"{name}: {v} is outside {lo}..{hi}")
    return v


def _num(v: Any, name: str, lo: float, hi: float) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise _Bad(f"{name}: expected a number, got {type(v).__name__}")
    if not math.isfinite(v) or not lo <= v <= hi:
        raise _Bad(f"{name}: {v} is outside {lo}..{hi}")
    return float(v)


def _bool(v: Any, name: str) -> bool:
    if not isinstance(v, bool):
        raise _Bad(f"{name}: expected true or false, got {type(v).__name__}")
    return v


def _quote(v: Any) -> str:
    # A refusal quotes the value for the developer, but a frame may hold 16 KiB of it.
    text = repr(v)
    return text if len(text) <= 40 else text[:39] + "…"


def _one_of(choices: frozenset[str]) -> Any:
    def check(v: Any, name: str) -> str:
        if not isinstance(v, str) or v not in choices:
            raise _Bad(f"{name}: expected one of {sorted(choices)}, got {_quote(v)}")
        return v

    return check


def _matching(rx: re.Pattern[str], what: str) -> Any:
    def check(v: Any, name: str) -> str:
        if not isinstance(v, str) or not rx.fullmatch(v):
            raise _Bad(f"{name}: expected {what}, got {_quote(v)}")
        return v

    return check


def _uid(v: Any, name: str) -> str:
    # The refusal never quotes the value: a store's user id must not reach the logs.
    if not isinstance(v, str) or not 1 <= len(v) <= 128:
        raise _Bad(f"{name}: expected a string of 1-128 characters")
    return v


def _small_map(v: Any, name: str, most: int) -> dict[str, Any]:
    """A map of at most `most` entries with string keys of at most 32 characters."""
    if not isinstance(v, dict):
        raise _Bad(f"{name}: expected a map, got {type(v).__name__}")
    if len(v) > most:
        raise _Bad(f"{name}: {len(v)} entries, at most {most}")
    for key in v:
        _str(key, f"{name} key", 32)
    return v


def _kairos_attrs(v: Any, name: str) -> dict[str, str]:
    """A clicked element's data-kairos-* attributes: name after the prefix -> value."""
    for key, value in _small_map(v, name, MAX_KAIROS_ATTRS).items():
        _str(value, f"{name}.{key}", 64)
    return dict(v)


def _props(v: Any, name: str) -> dict[str, Any]:
    """A custom event's properties: short keys, and strings, finite numbers, booleans or nil."""
    for key, value in _small_map(v, name, MAX_PROPS).items():
        where = f"{name}.{key}"
        if isinstance(value, str):
            _str(value, where, 256)
        elif isinstance(value, float) and not math.isfinite(value):
            raise _Bad(f"{where}: {value} is not a finite number")
        elif isinstance(value, int) and not isinstance(value, bool) and not -(2**53) <= value <= 2**53:
            raise _Bad(f"{where}: {value} is outside -2^53..2^53")
        elif not (value is None or isinstance(value, (bool, int, float, str))):
            raise _Bad(f"{where}: expected a string, number, true/false or nil, got {type(value).__name__}")
    return dict(v)


# Event field specs: name -> (checker, required). Unknown keys are ignored.
_S = lambda n: (lambda v, f: _str(v, f, n))  # noqa: E731
_I = lambda lo, hi: (lambda v, f: _int(v, f, lo, hi))  # noqa: E731
_N = lambda lo, hi: (lambda v, f: _num(v, f, lo, hi))  # noqa: E731
_MONEY = _N(0, 1e9)
_DAY_MS = 86_400_000


# The product on a page comes from the store (kairos.page({product})) or from
# its Open Graph tags, typed by people: it is read leniently, never refused —
# a price written "1,299.00" must not cost the visitor their session.
PROD_TEXT = {"name": 256, "cur": 3, "sku": 64, "img": 2048, "cat": 128}
# prod field -> the Open Graph / product meta tag it is read from (ogp.me, and
# Facebook's product catalogue tags)
OG_PRODUCT = {
    "name": "og:title",
    "price": "product:price:amount",
    "cur": "product:price:currency",
    "sku": "product:retailer_item_id",
    "img": "og:image",
    "cat": "product:category",
}
MAX_META = 32
_SEPARATORS = re.compile(r"[\s'\u00a0\u202f]")


def price(v: Any) -> float | None:
    """A price from a number or a string: the last "." or "," is the decimal point.

    "1,299.00" and "1.299,00" are both 1299.0; "49" is 49.0; anything else None.
    """
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        n = float(v)
    elif isinstance(v, str):
        s = _SEPARATORS.sub("", v)
        i = max(s.rfind("."), s.rfind(","))
        if i >= 0:
            s = re.sub(r"[.,]", "", s[:i]) + "." + s[i + 1:]
        try:
            n = float(s)
        except ValueError:
            return None
    else:
        return None
    return n if math.isfinite(n) and 0 <= n <= 1e9 else None


def product(get: Any) -> dict[str, Any] | None:
    """The normalised `prod` map from get(field) (a store's map, or meta tags): text cut to its limits."""
    out: dict[str, Any] = {}
    for name in OG_PRODUCT:
        v = get(name)
        if v is None:
            continue
        if name == "price":
            p = price(v)
            if p is not None:
                out[name] = p
        elif isinstance(v, (str, int, float)) and not isinstance(v, bool):
            text = str(v).strip()[: PROD_TEXT[name]]
            if text:
                out[name] = text
    return out or None


def _prod(v: Any, name: str) -> dict[str, Any] | None:
    return product(v.get) if isinstance(v, dict) else None


def _meta(v: Any, name: str) -> dict[str, str]:
    """The page's Open Graph and product meta tags, as the snippet read them."""
    if not isinstance(v, dict):
        raise _Bad(f"{name}: expected a map, got {type(v).__name__}")
    tags = [(k[:64], val[:2048]) for k, val in v.items() if isinstance(k, str) and isinstance(val, str)]
    return dict(tags[:MAX_META])


def page_fields(raw: dict, where: str = "page") -> dict[str, Any]:
    """A page map's fields; without a `prod`, the product read from the page's meta tags."""
    out = _fields(raw, _PAGE_FIELDS, where)
    meta = out.pop("meta", None)
    if out.get("prod") is None:
        out.pop("prod", None)
        if meta and meta.get("og:type", "").strip().lower() == "product":
            prod = product(lambda f: meta.get(OG_PRODUCT[f]))
            if prod:
                out["prod"] = prod
    return out

_PAGE_FIELDS = {
    "url": (_S(2048), True),
    "path": (_S(1024), True),
    "title": (_S(256), False),
    "ref": (_S(2048), False),
    "prod": (_prod, False),
    "type": (_S(32), False),
    "meta": (_meta, False),
}

# What a click and a rage click say about the element: never a form field's text.
_ELEMENT_FIELDS = {
    "tag": (_S(16), True),
    "id": (_S(64), False),
    "k": (_S(64), False),
    "href": (_S(1024), False),
    "text": (_S(64), False),
    "ka": (_kairos_attrs, False),
}

EVENT_FIELDS: dict[str, dict[str, tuple[Any, bool]]] = {
    "page_view": _PAGE_FIELDS,
    "dwell": {"ms": (_I(0, _DAY_MS), True)},
    "scroll": {"pct": (_I(0, 100), True)},
    "click": _ELEMENT_FIELDS,
    "rage_click": {"n": (_I(2, 100), True), **_ELEMENT_FIELDS},
    "exit_intent": {"how": (_one_of(EXIT_HOWS), False)},
    "idle": {"ms": (_I(0, _DAY_MS), True)},
    "idle_end": {"ms": (_I(0, _DAY_MS), True)},
    "hesitation": {"field": (_S(64), True), "ms": (_I(0, _DAY_MS), True)},
    "copy": {"tag": (_S(16), False), "k": (_S(64), False)},
    "identify": {"uid": (_uid, True)},
    "custom": {
        "name": (_matching(_CUSTOM_NAME, "1-64 characters of [A-Za-z0-9_.:-]"), True),
        "props": (_props, False),
    },
    "cart": {"value": (_MONEY, True), "items": (_I(0, 100_000), True), "cur": (_S(3), False)},
    "add_to_cart": {
        "sku": (_S(64), False),
        "name": (_S(256), False),
        "price": (_MONEY, False),
        "qty": (_I(1, 100_000), False),
    },
    "checkout": {"step": (_S(32), True)},
    "purchase": {"value": (_MONEY, True), "cur": (_S(3), False)},
}
EVENT_TYPES = frozenset(EVENT_FIELDS)


def _fields(raw: dict, spec: dict[str, tuple[Any, bool]], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (check, required) in spec.items():
        if name not in raw or raw[name] is None:
            if required:
                raise _Bad(f"{where}.{name}: missing")
            continue
        out[name] = check(raw[name], f"{where}.{name}")
    return out


# --- decoding ---------------------------------------------------------------


def decode(data: bytes, *, max_bytes: int = MAX_FRAME_BYTES, max_events: int = MAX_EVENTS) -> Frame | WireError:
    """Decode one client frame; a refusal comes back as a `WireError`, never raised."""
    raw = _unpack(data, max_bytes)
    if isinstance(raw, WireError):
        return raw
    return _decode_with(raw, _DECODERS, max_events)


def _unpack(data: bytes, max_bytes: int) -> dict | WireError:
    """The frame's map, checked for size, MessagePack, `v` and `t`."""
    if len(data) > max_bytes:
        return WireError("too_large", f"frame of {len(data)} bytes is over the {max_bytes}-byte limit", CLOSE_TOO_LARGE)
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        return WireError("bad_frame", f"not a MessagePack frame ({type(exc).__name__})")
    if not isinstance(raw, dict):
        return WireError("bad_frame", f"expected a map, got {type(raw).__name__}")
    if "v" not in raw or "t" not in raw:
        return WireError("bad_frame", "frame without 'v' and 't'")
    # Only the integer 1: msgpack's true and 1.0 compare equal to it in Python.
    if type(raw["v"]) is not int or raw["v"] != VERSION:
        return WireError("bad_version", f"protocol version {_echo(raw['v'])} is not supported, expected {VERSION}", CLOSE_BAD_VERSION)
    return raw


def _echo(value: Any) -> str:
    """A client's value as an error repeats it: its repr, cut to ECHO_CHARS characters."""
    text = repr(value)
    return text if len(text) <= ECHO_CHARS else f"{text[:ECHO_CHARS]}… ({len(text)} chars)"


def _decode_with(raw: dict, decoders: dict[str, Any], max_events: int) -> Any:
    kind = raw["t"]
    decoder = decoders.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        return WireError("unknown_type", f"unknown frame type {_echo(kind)}")
    try:
        return decoder(raw, max_events)
    except _Bad as exc:
        seq = raw.get("seq") if isinstance(raw.get("seq"), int) else None
        return WireError("bad_field", f"{kind}: {exc}", seq=seq)


def _who(raw: dict) -> tuple[str, str, str | None]:
    """The site, visitor and (optional) session a frame names, checked."""
    site = _str(raw.get("site"), "site", 64)
    if not _SITE.match(site):
        raise _Bad("site: expected 1-64 characters of [A-Za-z0-9_.-]")
    vid = _str(raw.get("vid"), "vid", 64)
    if not _ID.match(vid):
        raise _Bad("vid: expected 8-64 characters of [A-Za-z0-9_.-]")
    sid = raw.get("sid")
    if sid is not None and not (isinstance(sid, str) and _ID.match(sid)):
        raise _Bad("sid: expected nil or 8-64 characters of [A-Za-z0-9_.-]")
    return site, vid, sid


def privacy_signal(headers: Mapping[str, str]) -> str | None:
    """"dnt" or "gpc" when a request's headers say the visitor does not want to be tracked, else None.

    A browser with Do-Not-Track on sends `DNT: 1`, one with Global Privacy
    Control on `Sec-GPC: 1`, with its requests (W3C Tracking Preference
    Expression §5.2; GPC §3.1): the wishes navigator.doNotTrack and
    navigator.globalPrivacyControl show a page, which k.js checks before it
    connects. Read here, they hold whatever a client's code says. Chromium
    (156) sends DNT with sendBeacon's POST but not with a websocket handshake
    (tests/test_browser.py). `headers` is case-insensitive (Starlette's).
    """
    if headers.get("dnt", "").strip() == "1":
        return "dnt"
    if headers.get("sec-gpc", "").strip() == "1":
        return "gpc"
    return None


def _decode_hello(raw: dict, _max_events: int) -> Hello:
    site, vid, sid = _who(raw)
    page_raw = raw.get("page")
    if not isinstance(page_raw, dict):
        raise _Bad("page: expected a map")
    page = Page(**page_fields(page_raw))
    vp = raw.get("vp")
    if vp is not None:
        if not (isinstance(vp, list) and len(vp) == 2):
            raise _Bad("vp: expected [width, height]")
        vp = (_int(vp[0], "vp[0]", 0, 100_000), _int(vp[1], "vp[1]", 0, 100_000))
    return Hello(
        site=site,
        vid=vid,
        sid=sid,
        page=page,
        consent=_bool(raw.get("consent"), "consent"),
        dnt=_bool(raw.get("dnt", False), "dnt"),
        gpc=_bool(raw.get("gpc", False), "gpc"),
        sv=_str(raw.get("sv", ""), "sv", 32),
        tz=_int(raw.get("tz", 0), "tz", -840, 840),
        lang=_str(raw.get("lang", ""), "lang", 35),
        vp=vp,
        re=_bool(raw.get("re", False), "re"),
    )


def _decode_events(raw: dict, max_events: int) -> Events:
    seq = _int(raw.get("seq"), "seq", 0, 2**53)
    lost = 0 if raw.get("lost") is None else _int(raw["lost"], "lost", 0, 2**31)
    batch = raw.get("ev")
    if not isinstance(batch, list):
        raise _Bad("ev: expected a list of events")
    if not batch:
        raise _Bad(f"ev: expected 1-{max_events} events, got none")
    problems: list[WireError] = []
    if len(batch) > max_events:
        problems.append(WireError("too_many_events", f"{len(batch)} events in one batch, the first {max_events} were applied", seq=seq))
        batch = batch[:max_events]
    events: list[Event] = []
    for i, item in enumerate(batch):
        decoded = decode_event(item, i)
        if isinstance(decoded, WireError):
            problems.append(WireError(decoded.code, decoded.msg, seq=seq))
        else:
            events.append(decoded)
    return Events(seq=seq, events=events, problems=problems, lost=lost)


def decode_event(item: Any, index: int = 0) -> Event | WireError:
    """Validate one event of a batch."""
    if not isinstance(item, dict):
        return WireError("bad_event", f"event {index}: expected a map")
    kind = item.get("e")
    spec = EVENT_FIELDS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        return WireError("unknown_event", f"event {index}: unknown event type {_echo(kind)}")
    try:
        ts = _int(item.get("ts"), "ts", 0, 2**53)
        return Event(kind, ts, page_fields(item, kind) if kind == "page_view" else _fields(item, spec, kind))
    except _Bad as exc:
        return WireError("bad_event", f"event {index}: {exc}")


def _decode_feedback(raw: dict, _max_events: int) -> Feedback:
    act = _str(raw.get("act"), "act", 16)
    if act not in FEEDBACK_ACTS:
        raise _Bad(f"act: expected one of {sorted(FEEDBACK_ACTS)}, got {act!r}")
    why = raw.get("why")
    if why is not None and (act != "hidden" or why not in HIDE_REASONS):
        raise _Bad(f"why: expected one of {list(HIDE_REASONS)} with act hidden, got {why!r}")
    return Feedback(oid=_str(raw.get("oid"), "oid", 64), act=act, ts=_int(raw.get("ts"), "ts", 0, 2**53), why=why or "")


_DECODERS = {"hello": _decode_hello, "events": _decode_events, "feedback": _decode_feedback}


# --- beacons -------------------------------------------------------------------
# A page being hidden cannot wait for a websocket: the snippet POSTs its last
# batch (or a consent withdrawal) to /b with navigator.sendBeacon, one frame per
# request, naming the site, visitor and session a websocket would have said hello with.


@dataclass(frozen=True, slots=True)
class BeaconEvents:
    site: str
    vid: str
    sid: str
    batch: Events


@dataclass(frozen=True, slots=True)
class Forget:
    """`kairos.consent(false)`: erase what is stored about the visitor (and the session)."""

    site: str
    vid: str
    sid: str | None


Beacon = BeaconEvents | Forget


def decode_beacon(data: bytes, *, max_bytes: int = MAX_FRAME_BYTES, max_events: int = MAX_EVENTS) -> Beacon | WireError:
    """Decode the body of a beacon; a refusal comes back as a `WireError`, never raised."""
    raw = _unpack(data, max_bytes)
    if isinstance(raw, WireError):
        return raw
    return _decode_with(raw, _BEACON_DECODERS, max_events)


def _decode_beacon_events(raw: dict, max_events: int) -> BeaconEvents:
    site, vid, sid = _who(raw)
    if sid is None:
        raise _Bad("sid: expected 8-64 characters of [A-Za-z0-9_.-]")
    return BeaconEvents(site, vid, sid, _decode_events(raw, max_events))


def _decode_forget(raw: dict, _max_events: int) -> Forget:
    return Forget(*_who(raw))


_BEACON_DECODERS = {"events": _decode_beacon_events, "forget": _decode_forget}


# --- encoding ----------------------------------------------------------------


def _pack(t: str, **fields: Any) -> bytes:
    return msgpack.packb({"v": VERSION, "t": t, **fields})


def welcome(sid: str, track: dict[str, Any], *, max_frame: int = MAX_FRAME_BYTES, max_events: int = MAX_EVENTS) -> bytes:
    return _pack("welcome", sid=sid, track=track, max_frame=max_frame, max_events=max_events)


def show(oid: str, kind: str, html: str, css: str, place: str, ttl_ms: int, rule: str, scope: str = "") -> bytes:
    """`scope`: where the overlay lives (page, page_type, session); a snippet that predates it ignores it."""
    more = {"scope": scope} if scope else {}
    return _pack("show", oid=oid, kind=kind, html=html, css=css, place=place, ttl_ms=ttl_ms, rule=rule, **more)


def hide(oid: str, why: str = "") -> bytes:
    """Take an overlay down; `why` is one of HIDE_REASONS."""
    return _pack("hide", oid=oid, **({"why": why} if why else {}))


def error(err: WireError) -> bytes:
    fields: dict[str, Any] = {"code": err.code, "msg": err.msg}
    if err.seq is not None:
        fields["seq"] = err.seq
    return _pack("error", **fields)


# --- flow control ------------------------------------------------------------


class RateLimit:
    """Token bucket per connection: `burst` frames at once, `per_s` sustained.

    Time is passed in, so the limiter is testable without a clock.
    """

    __slots__ = ("burst", "per_s", "_tokens", "_at")

    def __init__(self, burst: int = 20, per_s: float = 10.0) -> None:
        self.burst = burst
        self.per_s = per_s
        self._tokens = float(burst)
        self._at: float | None = None

    def allow(self, now_s: float) -> bool:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now_s - self._at) * self.per_s)
        self._at = now_s
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class RateLimits:
    """A `RateLimit` per key (a visitor id, for beacons, which have no connection).

    Only the `max_keys` most recently seen keys are remembered, so a stream of
    made-up keys costs bounded memory; a key forgotten starts with a full bucket.
    """

    __slots__ = ("burst", "per_s", "max_keys", "_limits")

    def __init__(self, burst: int = 20, per_s: float = 10.0, max_keys: int = 10_000) -> None:
        self.burst = burst
        self.per_s = per_s
        self.max_keys = max_keys
        self._limits: OrderedDict[str, RateLimit] = OrderedDict()

    def allow(self, key: str, now_s: float) -> bool:
        limit = self._limits.get(key)
        if limit is None:
            limit = self._limits[key] = RateLimit(self.burst, self.per_s)
            if len(self._limits) > self.max_keys:
                self._limits.popitem(last=False)
        else:
            self._limits.move_to_end(key)
        return limit.allow(now_s)

    def __len__(self) -> int:
        return len(self._limits)
