"""The rules file: its schema, and loading it with errors that name file, line and reason."""

from __future__ import annotations

import fnmatch
import math
import re
from functools import cached_property
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping, Union

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, PrivateAttr, Tag, ValidationError,
                      ValidationInfo, field_validator, model_validator)

from ..caps import Caps, Window
from ..scores import ScoreDef
from ..traffic import SOURCES
from ..wire import EVENT_FIELDS, EVENT_TYPES
from . import messages as say
from .bounds import MAX_DOCUMENT_BYTES, MAX_VALUES, Cycle, expanded_values
from .messages import Mistake
from .signals import SIGNALS
from .urls import is_url_name, url_refusal

KINDS = ("overlay", "offer", "chat", "bar")
PLACES = ("center", "top", "bottom", "corner", "bubble")
DEFAULT_PLACE = {"overlay": "center", "offer": "center", "chat": "corner", "bar": "bottom"}
# The page type of a path no pattern matches.
OTHER = "other"
_SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_SLUG_WORDS = "lower-case letters, digits, - and _ (such as exit-offer)"
# Event types in the order docs/rules.md lists them.
EVENTS = tuple(EVENT_FIELDS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Compare(_Strict):
    """An operator form of a condition: `{gt: 50}`, `{in: [a, b]}` …"""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=False)

    eq: str | float | bool | None = None
    ne: str | float | bool | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    in_: list[str | float] | None = Field(default=None, alias="in")
    not_in: list[str | float] | None = None

    @model_validator(mode="after")
    def _some(self) -> "Compare":
        if not self.model_fields_set:
            raise ValueError("expected at least one of eq, ne, gt, gte, lt, lte, in or not_in")
        return self

    def holds(self, value: Any) -> bool:
        try:
            return all(
                (
                    self.eq is None or value == self.eq,
                    self.ne is None or value != self.ne,
                    self.gt is None or value > self.gt,
                    self.gte is None or value >= self.gte,
                    self.lt is None or value < self.lt,
                    self.lte is None or value <= self.lte,
                    self.in_ is None or value in self.in_,
                    self.not_in is None or value not in self.not_in,
                )
            )
        except TypeError:
            return False


Condition = str | float | bool | list[str | float] | Compare


def _kind_of(v: Any) -> str:
    return "number" if isinstance(v, (int, float)) and not isinstance(v, bool) else "text"


def events_or_conditions(v: list[Any], info: ValidationInfo) -> list[Any]:
    """`unless:` and `until:` items: event names, or maps of conditions like `if`'s."""
    page_types = (info.context or {}).get("page_types")
    scores = (info.context or {}).get("scores")
    out: list[Any] = []
    for i, item in enumerate(v):
        if isinstance(item, str):
            if item not in EVENT_TYPES:
                raise Mistake(say.unknown("event", item, EVENTS, f"expected one of {say.prose(EVENTS)}"), i)
            out.append(item)
        elif isinstance(item, dict) and item:
            try:
                out.append({name: _condition(name, raw, page_types, scores) for name, raw in item.items()})
            except Mistake as exc:
                raise Mistake(str(exc), i, *exc.at) from None
        else:
            raise Mistake(f"expected an event (such as add_to_cart) or conditions (such as {{page_type: cart}}), "
                          f"got {say.shown(item)}", i)
    return out


SCOPES = ("page", "page_type", "session")
# Where an overlay lives unless the rule says: a chat invitation is a
# conversation the visitor may take up on any page; everything else belongs to
# the page that earned it (a basket reminder over the checkout form helps no one).
DEFAULT_SCOPE = {"overlay": "page", "offer": "page", "bar": "page", "chat": "session"}


class Then(_Strict):
    show: Literal["overlay", "offer", "chat", "bar"]
    template: str
    # bubble: a chat bubble in the bottom corner.
    place: Literal["center", "top", "bottom", "corner", "bubble"] | None = None
    ttl_s: float = Field(default=0, ge=0, le=3600)
    params: dict[str, Any] = {}
    scope: Literal["page", "page_type", "session"] | None = None
    # Events or conditions that end the moment early: the server takes the overlay down.
    until: list[Any] = []

    @field_validator("until", mode="before")
    @classmethod
    def _until(cls, v: Any, info: ValidationInfo) -> list[Any]:
        if isinstance(v, (str, dict)):
            v = [v]  # `until: checkout` and `until: {cart_value: {gte: 100}}` read as one item
        if not isinstance(v, list):
            raise Mistake(f"expected events (such as [checkout]) or conditions (such as {{cart_value: {{gte: 100}}}}), "
                          f"got {say.shown(v)}")
        return events_or_conditions(v, info)

    @property
    def lives(self) -> str:
        """The overlay's scope: the rule's, else its kind's default."""
        return self.scope or DEFAULT_SCOPE[self.show]

    @property
    def until_events(self) -> tuple[str, ...]:
        return tuple(x for x in self.until if isinstance(x, str))

    @property
    def until_conditions(self) -> tuple[dict[str, Any], ...]:
        return tuple(x for x in self.until if isinstance(x, dict))

    @field_validator("template")
    @classmethod
    def _template_exists(cls, v: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get("templates")
        if known is not None and v not in known:
            has = f"templates/overlays has {say.prose(sorted(known), 'and')}" if known else "templates/overlays has none"
            # Compared without `.html`, which every name shares: nope.html is not close to offer.html.
            stems = {k.removesuffix(".html"): k for k in known}
            meant = say.closest(v.removesuffix(".html"), sorted(stems))
            raise ValueError(f"unknown template {v!r} — did you mean `{stems[meant[0]]}`?" if meant
                             else f"unknown template {v!r}: {has}")
        return v

    @field_validator("params")
    @classmethod
    def _addresses(cls, v: dict[str, Any]) -> dict[str, Any]:
        """A parameter named as an address (href, url, link, *_url …) is http(s) or a path on the store."""
        for at, value in _named_addresses(v):
            reason = url_refusal(value)
            if reason:
                raise Mistake(reason, *at)
        return v

    @property
    def where(self) -> str:
        return self.place or DEFAULT_PLACE[self.show]


def _named_addresses(params: Any, at: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """(place, text) of each text in `params` under a key named as an address, at any depth."""
    out: list[tuple[tuple[Any, ...], str]] = []
    items = params.items() if isinstance(params, dict) else enumerate(params) if isinstance(params, list) else ()
    for key, value in items:
        if isinstance(value, str) and (is_url_name(key) or (isinstance(key, int) and at and is_url_name(at[-1]))):
            out.append(((*at, key), value))
        else:
            out += _named_addresses(value, (*at, key))
    return out


MAX_CAP_WINDOW_S = 7 * 24 * 3600


class Per(_Strict):
    """At most `max` shows in any `per` (a duration, up to 7 days)."""

    max: int = Field(ge=1)
    per: float

    @field_validator("per", mode="before")
    @classmethod
    def _window(cls, v: Any) -> float:
        seconds = parse_duration(v, MAX_CAP_WINDOW_S)
        return seconds

    def window(self) -> Window:
        return Window(self.max, int(self.per * 1000))


class Limit(_Strict):
    # One show per rule per session unless the store says otherwise: a nudge
    # repeated on every exit intent is how visitors learn to hate overlays.
    per_session: int | None = Field(default=1, ge=1)
    per_visitor: Per | None = None  # this rule, one visitor, across sessions
    per_rule: Per | None = None  # this rule, all visitors together
    cooldown: float | None = None  # between two shows of this rule to one visitor

    @field_validator("cooldown", mode="before")
    @classmethod
    def _cooldown(cls, v: Any) -> float | None:
        return None if v is None else parse_duration(v, MAX_CAP_WINDOW_S)


class GlobalCaps(_Strict):
    """Caps over every rule together."""

    per_visitor: Per | None = None


_DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$")
MAX_DELAY_S = 24 * 3600


def parse_share(v: Any) -> float:
    """A share of visitors from `10%` (or the fraction 0.1): at least 0 and under 1."""
    if isinstance(v, str) and (m := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", v)):
        share = float(m[1]) / 100
    elif isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1:
        share = float(v)
    elif isinstance(v, (int, float)) and not isinstance(v, bool) and 1 <= v < 100:
        raise ValueError(f"expected a share such as 10% or 0.1, got {say.shown(v)} — write `{v:g}%`")
    else:
        raise ValueError(f"expected a share such as 10% or 0.1, got {say.shown(v)}")
    if not 0 <= share < 1:
        raise ValueError(f"expected a share from 0% to under 100%, got {say.shown(v)}")
    return share


# A share of visitors as a field: `10%` or 0.1 (parse_share).
Share = Annotated[float, BeforeValidator(parse_share)]

# The arm that is shown nothing; a variant may not take its name.
HOLDOUT = "holdout"
# The overrides a variant may make to the rule's `then`.
VARIANT_THEN_KEYS = ("show", "template", "params", "place", "ttl_s", "scope")


class Variant(_Strict):
    """One arm of a rule's experiment: a share of the visitors (`weight`, relative to the
    other variants') and what it changes in the rule (none: the rule as written)."""

    weight: float = Field(default=1, gt=0, le=1000)
    # A partial `then`: its keys replace the rule's, `params` merged key by key.
    then: dict[str, Any] = {}
    # A delayed rule's delay for this arm (timing is tested like content).
    after: float | None = None

    @field_validator("then")
    @classmethod
    def _partial(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if key not in VARIANT_THEN_KEYS:
                raise Mistake(say.unknown("key of a variant's then", key, VARIANT_THEN_KEYS,
                                          f"a variant may change {say.prose(VARIANT_THEN_KEYS, 'and')}"), key)
        return v

    @field_validator("after", mode="before")
    @classmethod
    def _delay(cls, v: Any) -> float | None:
        return None if v is None else parse_duration(v)


class Experiment(_Strict):
    """A rule's experiment: its variants and a holdout (shown nothing), all counted from the moment.

    Every visitor who reaches the rule's moment is assigned an arm (kairos.experiments.assign)
    and goes through the same claim; the holdout's show is recorded, not sent.
    """

    # Its name in the results; another id is another experiment (assignments start afresh).
    id: str | None = Field(default=None, pattern=_SLUG, description=_SLUG_WORDS)
    variants: dict[str, Variant]
    holdout: Share = 0.0
    # Set when it ended (ship or stop): the rule then shows `shipped`'s arm (or the rule as
    # written) to everyone, and the results stay readable.
    ended: str | None = None
    shipped: str | None = None
    # arms(), worked out once: it is read at every show of the rule.
    _arms: tuple[tuple[str, float], ...] = PrivateAttr(default=())

    @field_validator("variants")
    @classmethod
    def _names(cls, v: dict[str, Variant]) -> dict[str, Variant]:
        if not v:
            raise ValueError("expected at least one variant, such as `a: {}` (the rule as written)")
        if len(v) > 8:
            raise ValueError(f"{len(v)} variants, at most 8: each needs its share of the visitors")
        for name in v:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", str(name)):
                raise Mistake(f"variant {name!r}: expected lower-case letters, digits, - and _", str(name))
            if name == HOLDOUT:
                raise Mistake("`holdout` is the arm shown nothing: set its share with `holdout: 10%` beside "
                              "`variants:`, and give the variants other names", str(name))
        return v

    @model_validator(mode="after")
    def _arms(self) -> "Experiment":
        if len(self.variants) == 1 and not self.holdout:
            raise Mistake("one variant and no holdout compares nothing: add a variant, or `holdout: 10%`", "variants")
        if self.shipped is not None and self.shipped not in self.variants:
            raise Mistake(say.unknown("variant", self.shipped, list(self.variants)), "shipped")
        total = sum(v.weight for v in self.variants.values())
        arms = [(name, (1 - self.holdout) * v.weight / total) for name, v in self.variants.items()]
        self._arms = tuple(arms + ([(HOLDOUT, self.holdout)] if self.holdout else []))
        return self

    @property
    def running(self) -> bool:
        return self.ended is None

    def arms(self) -> tuple[tuple[str, float], ...]:
        """(arm, share of the visitors) in order: the variants, then the holdout; shares sum to 1."""
        return self._arms


def parse_duration(v: Any, max_s: float = MAX_DELAY_S) -> float:
    """Seconds from `90`, `"90s"`, `"3m"`, `"1h30m"`, `"2m30s"` or `"7d"`."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        seconds = float(v)
    elif isinstance(v, str) and (m := _DURATION.match(v)) and any(m.groups()):
        d, h, mins, s = m.groups()
        seconds = int(d or 0) * 86400 + int(h or 0) * 3600 + int(mins or 0) * 60 + float(s or 0)
    else:
        fix = say.duration_fix(v)
        raise ValueError(f"expected a duration such as 90s, 3m or 1h30m, got {say.shown(v)}"
                         + (f" — write `{fix}`" if fix else ""))
    if not 0 < seconds <= max_s:
        raise ValueError(f"expected a duration over 0 s and at most {say.duration_words(max_s)}, got {say.shown(v)}")
    return seconds


class Rule(_Strict):
    id: str = Field(pattern=_SLUG, description=_SLUG_WORDS)
    name: str = ""
    enabled: bool = True
    when: str
    if_: dict[str, Any] = Field(default={}, alias="if")
    # A delayed rule: `when` (and `if`) arm a timer; the nudge comes `after` this
    # long unless one of `unless` happened in between. Arming again restarts it.
    after: float | None = None
    unless: list[Any] = []
    # When the timer fires and the visitor has no page open: forget the nudge,
    # or show it on their next page view.
    offline: Literal["drop", "next_page"] = "drop"
    then: Then
    limit: Limit = Limit()
    priority: int = Field(default=0, ge=-1000, le=1000)
    experiment: Experiment | None = None
    # Each variant's whole `then` (the rule's with the variant's changes), made at load.
    _variant_thens: dict[str, Then] = PrivateAttr(default_factory=dict)

    @field_validator("after", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float | None:
        return None if v is None else parse_duration(v)

    @field_validator("unless")
    @classmethod
    def _cancels(cls, v: list[Any], info: ValidationInfo) -> list[Any]:
        """Each item is an event that cancels, or a condition over the session at firing time."""
        return events_or_conditions(v, info)

    @model_validator(mode="after")
    def _delay_needs_after(self) -> "Rule":
        if self.after is not None and _CROSSES.fullmatch(self.when):
            raise Mistake("a score crossing shows at once: remove `after:`, or trigger the rule on an event", "after")
        if self.unless and self.after is None:
            raise Mistake("`unless` cancels a delayed rule: add `after:` (such as `after: 3m`), or remove `unless:`",
                          "unless")
        if self.offline != "drop" and self.after is None:
            raise Mistake("`offline` applies to a delayed rule: add `after:` (such as `after: 3m`), or remove `offline:`",
                          "offline")
        return self

    @model_validator(mode="after")
    def _variants(self, info: ValidationInfo) -> "Rule":
        x = self.experiment
        if x is None:
            return self
        if x.id is not None and x.id == "*":
            raise Mistake("`*` names the whole program's holdout", "experiment", "id")
        base = self.then.model_dump(exclude_unset=True)
        for name, variant in x.variants.items():
            if variant.after is not None and self.after is None:
                raise Mistake("a variant's `after` changes a delayed rule's delay: add `after:` to the rule, or "
                              "remove it from the variant", "experiment", "variants", name, "after")
            merged = {**base, **variant.then}
            if "params" in variant.then and isinstance(variant.then["params"], dict):
                merged["params"] = {**self.then.params, **variant.then["params"]}
            try:
                self._variant_thens[name] = Then.model_validate(merged, context=info.context)
            except ValidationError as exc:
                err = exc.errors()[0]
                at = (*err.get("loc", ()), *getattr((err.get("ctx") or {}).get("error"), "at", ()))
                raise Mistake(say.explain(err, say.place_at(Then, at)) if err.get("type") != "value_error"
                              else str(err.get("msg", "")).removeprefix("Value error, "),
                              "experiment", "variants", name, "then", *at) from None
        return self

    @property
    def experiment_id(self) -> str | None:
        """The id its experiment is counted under (the rule's own unless it names one), or None."""
        x = self.experiment
        return (x.id or self.id) if x is not None else None

    def then_for(self, arm: str | None) -> Then:
        """What the rule shows in `arm` (the rule's own `then` for none, or the holdout's record)."""
        return self._variant_thens.get(arm, self.then) if arm else self.then

    def after_for(self, arm: str | None) -> float | None:
        """The rule's delay in `arm`: the variant's when it sets one."""
        variant = self.experiment.variants.get(arm) if self.experiment and arm else None
        return variant.after if variant is not None and variant.after is not None else self.after

    @property
    def cancel_events(self) -> tuple[str, ...]:
        return tuple(x for x in self.unless if isinstance(x, str))

    @property
    def cancel_conditions(self) -> tuple[dict[str, Any], ...]:
        return tuple(x for x in self.unless if isinstance(x, dict))

    @field_validator("when")
    @classmethod
    def _known_event(cls, v: str, info: ValidationInfo) -> str:
        if v in EVENT_TYPES:
            return v
        scores = sorted((info.context or {}).get("scores") or ())
        crossing = _CROSSES.fullmatch(v)
        if crossing:
            if crossing[1] not in scores:
                declared = (f"; the file's scores are {say.prose(scores, 'and')}" if scores
                            else f" — the file declares no `scores:`; declare {crossing[1]} there first")
                raise ValueError(f"{v!r}: no such score" + (say.did_you_mean(crossing[1], scores) or declared))
            if not 0 < float(crossing[2]) < 1:
                raise ValueError(f"{v!r}: a score is between 0 and 1, so it crosses a value between them")
            return v
        if re.fullmatch(r"\S+ crosses \S+", v):
            raise ValueError(f"unknown event {v!r}: a score crosses a value between 0 and 1, such as "
                             f"`{v.split()[0]} crosses 0.6`")
        raise ValueError(say.unknown("event", v, EVENTS, f"expected one of {say.prose(EVENTS)}, "
                                                         "or `<score> crosses <value>`"))

    @property
    def crossing(self) -> tuple[str, float] | None:
        """(score, value) for a rule whose trigger is a score rising past a value; else None."""
        m = _CROSSES.fullmatch(self.when)
        return (m[1], float(m[2])) if m else None

    @field_validator("if_")
    @classmethod
    def _conditions(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Condition]:
        page_types = (info.context or {}).get("page_types")
        scores = (info.context or {}).get("scores")
        return {name: _condition(name, raw, page_types, scores) for name, raw in v.items()}

    def limit_per_session(self) -> int:
        """The session cap as the engines take it: 0 means none."""
        return self.limit.per_session or 0

    def caps(self, global_caps: "GlobalCaps") -> Caps:
        """Every limit on this rule's show, as the engines check them."""
        lim = self.limit
        return Caps(
            per_session=lim.per_session or 0,
            priority=self.priority,
            per_visitor=lim.per_visitor.window() if lim.per_visitor else None,
            all_per_visitor=global_caps.per_visitor.window() if global_caps.per_visitor else None,
            per_rule=lim.per_rule.window() if lim.per_rule else None,
            cooldown_ms=int((lim.cooldown or 0) * 1000),
        )


def _condition(name: str, raw: Any, page_types: set[str] | None, scores: set[str] | None = None) -> Condition:
    """Parse one `if` entry: a value (equals), a list (one of), or an operator map.

    `name` is a built-in signal or an intent score the file declares (a number, 0 to 1).
    A refusal is a Mistake placed at the signal (and the operator), so it names their line.
    """
    if name in SIGNALS:
        kind = SIGNALS[name][0]
    elif scores and name in scores:
        kind = "number"
    else:
        raise Mistake(_unknown_signal(name, scores), name)
    if isinstance(raw, dict):
        try:
            cond: Condition = Compare.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc, _ = say.walk(Compare, first["loc"])
            raise Mistake(say.reason(first, Compare), name, *loc) from None
        for op in ("gt", "gte", "lt", "lte"):
            if kind != "number" and getattr(cond, op) is not None:
                words = "text" if kind == "text" else "true or false"
                raise Mistake(f"`{op}` compares numbers and {name} is {words}: use a value, a list, or eq, ne, in "
                              "or not_in", name, op)
    elif isinstance(raw, list):
        if not raw or any(isinstance(x, (dict, list)) or x is None for x in raw):
            raise Mistake(f"expected a non-empty list of values, such as [a, b], got {say.shown(raw)}", name)
        cond = list(raw)
    elif isinstance(raw, (str, int, float, bool)):
        cond = raw
    else:
        raise Mistake(f"expected a value, a list of values or an operator map such as {{gt: 50}}, "
                      f"got {say.shown(raw)}", name)
    for value in _condition_values(cond):
        if kind == "bool" and not isinstance(value, bool):
            raise Mistake(f"expected true or false, got {say.shown(value)}", name)
        if kind != "bool" and _kind_of(value) != kind:
            raise Mistake(f"expected {'a number' if kind == 'number' else 'text'}, got {say.shown(value)}", name)
    if name == "traffic":
        for value in _condition_values(cond):
            if value not in SOURCES:
                raise Mistake(say.unknown("source", value, SOURCES, f"expected one of {say.prose(SOURCES)}"), name)
    if name in ("page_type", "previous_page_type") and page_types is not None:
        for value in _condition_values(cond):
            if value not in page_types:
                raise Mistake(_unknown_page_type(value, page_types), name)
    return cond


def _unknown_signal(name: str, scores: set[str] | None) -> str:
    names = [*SIGNALS, *sorted(scores or ())]
    declared = f"; the file's scores are {say.prose(sorted(scores), 'and')}" if scores else ""
    # Forty-odd signals are too many for one line: the nearest few, else where they are listed.
    return say.unknown("signal", name, names, f"not a built-in signal (docs/rules.md lists them) "
                                              f"nor a score under `scores:`{declared}", n=3)


_NO_PAGE_TYPES = ("the file declares no `page_types:`, so every page is `other`; declare the page types the rules "
                  "use, such as `page_types: {product: /products/*}`")


def _unknown_page_type(value: Any, page_types: set[str]) -> str:
    declared = sorted(page_types - {OTHER})
    if not declared:
        # Without page_types every page is `other`: a type the store's page names is
        # only taken when the rules declare it (PageTypes.classify).
        return f"unknown page type {say.shown(value)}: {_NO_PAGE_TYPES}"
    return say.unknown("page type", value, sorted(page_types),
                       f"the file's page_types are {say.prose(declared, 'and')} (and `other` for a page none matches)")


def _condition_values(cond: Condition) -> list[Any]:
    if isinstance(cond, list):
        return list(cond)
    if isinstance(cond, Compare):
        vals: list[Any] = [x for x in (cond.eq, cond.ne, cond.gt, cond.gte, cond.lt, cond.lte) if x is not None]
        return vals + list(cond.in_ or []) + list(cond.not_in or [])
    return [cond]


def _off_or(lo: int, hi: int) -> Callable[[int | None], int | None]:
    def check(v: int | None) -> int | None:
        if v is not None and v != 0 and not lo <= v <= hi:
            raise ValueError(f"expected 0 (off) or {lo} to {hi}, got {v}")
        return v

    return check


class Track(_Strict):
    """What the snippet measures, sent to it in `welcome.track`; unset keys keep the server's defaults.

    Bounded so that a slip of the keyboard cannot make every visitor's browser
    send a batch every millisecond.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    batch_ms: int | None = Field(default=None, ge=100, le=10_000)
    dwell_ms: int | None = Field(default=None, ge=1000, le=600_000)
    scroll_step: int | None = Field(default=None, ge=1, le=100)
    idle_ms: int | None = None  # 0 = off, else 1000..3600000
    exit: bool | None = None
    exit_min_ms: int | None = Field(default=None, ge=0, le=600_000)
    exit_gap_ms: int | None = Field(default=None, ge=0, le=3_600_000)
    exit_scroll: bool | None = None
    exit_back: bool | None = None
    exit_hidden: bool | None = None
    clicks: bool | None = None
    click_text: bool | None = None
    rage_n: int | None = None  # 0 = off, else 2..20
    rage_ms: int | None = Field(default=None, ge=100, le=5000)
    hes_ms: int | None = None  # 0 = off, else 1000..600000
    copy_: bool | None = Field(default=None, alias="copy")
    spa: bool | None = None

    _idle = field_validator("idle_ms")(_off_or(1000, 3_600_000))
    _rage = field_validator("rage_n")(_off_or(2, 20))
    _hes = field_validator("hes_ms")(_off_or(1000, 600_000))

    def settings(self) -> dict[str, Any]:
        """The keys the file sets, as the welcome frame names them."""
        return self.model_dump(by_alias=True, exclude_none=True)


# `when: purchase_intent crosses 0.6`: the score rises past the value
_CROSSES = re.compile(r"([a-z][a-z0-9_]{0,31}) crosses (0?\.[0-9]+|[01])")
MAX_SCORES = 8
MAX_SCORE_WEIGHTS = 32
MAX_HALF_LIFE_S = 24 * 3600


class ScoreSpec(_Strict):
    """An intent score: log-odds `bias` plus a weight per signal, each part halving every `half_life`.

    A weight applies per event of a type (`add_to_cart`), per page view of a
    page type (`page_view.product`), per custom event of a name
    (`custom.wishlist_add`), or per second of visible time (`dwell_s`).
    """

    half_life: float
    bias: float = Field(default=0.0, ge=-20, le=20)
    weights: dict[str, float]

    @field_validator("half_life", mode="before")
    @classmethod
    def _half_life(cls, v: Any) -> float:
        return parse_duration(v, MAX_HALF_LIFE_S)

    @field_validator("bias", mode="before")
    @classmethod
    def _number(cls, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"expected a number, got {say.shown(v)}")
        return float(v)

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, v: Any, info: ValidationInfo) -> dict[str, float]:
        if not isinstance(v, dict) or not v:
            raise ValueError(f"expected signal: weight lines, such as {{add_to_cart: 1.5}}, got {say.shown(v)}")
        if len(v) > MAX_SCORE_WEIGHTS:
            raise ValueError(f"{len(v)} weights, at most {MAX_SCORE_WEIGHTS}")
        page_types = (info.context or {}).get("page_types")
        out = {}
        for signal, w in v.items():
            kind, _, what = str(signal).partition(".")
            if signal == "dwell_s" or (signal in EVENT_TYPES and not what):
                pass
            elif kind == "page_view" and what and (page_types is None or what in page_types):
                pass
            elif kind == "custom" and re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", what):
                pass
            elif kind == "page_view" and what and page_types is not None:
                # The page type is what may be misspelt: page_view.blog is not close to page_view.other.
                meant = say.closest(what, sorted(page_types))
                declared = sorted(page_types - {OTHER})
                otherwise = (f": {what!r} is not one of the file's page types ({say.prose(declared, 'and')})" if declared
                             else f": {_NO_PAGE_TYPES}")
                raise Mistake(f"unknown signal {str(signal)!r}"
                              + (f" — did you mean `page_view.{meant[0]}`?" if meant else otherwise), str(signal))
            else:
                known = [*EVENTS, "dwell_s", *(f"page_view.{t}" for t in sorted(page_types or ()))]
                raise Mistake(say.unknown("signal", signal, known, "expected an event type (such as add_to_cart), "
                                                                   "page_view.<page type>, custom.<name> or dwell_s"),
                              str(signal))
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or abs(w) > 100:
                raise Mistake(f"expected a weight between -100 and 100, got {say.shown(w)}", str(signal))
            out[signal] = float(w)
        return out

    def define(self, name: str) -> ScoreDef:
        return ScoreDef(name, int(self.half_life * 1000), self.bias, dict(self.weights))


class ModelSpec(_Strict):
    """A score a trained model computes from the session's features: `{model: model.json}`.

    The path is relative to the rules file's directory and stays inside it
    (model_path). The file is read when the rules are loaded (parse_rules), so
    a missing or broken model refuses the rules file.
    """

    model: str = Field(min_length=1)


def _score_kind(v: Any) -> str:
    # Upper-case tags: parse_rules leaves them out of the place it reports.
    return "Model" if isinstance(v, ModelSpec) or (isinstance(v, dict) and "model" in v) else "Weights"


ScoreEntry = Annotated[Union[Annotated[ScoreSpec, Tag("Weights")], Annotated[ModelSpec, Tag("Model")]],
                       Discriminator(_score_kind)]


class RulesFile(_Strict):
    version: Literal[1]
    page_types: dict[str, Any] = {}
    caps: GlobalCaps = GlobalCaps()
    track: Track = Track()
    scores: dict[str, ScoreEntry] = {}
    # A share of visitors kept from every nudge, to measure what the rules together earn.
    holdout: Share = 0.0
    rules: list[Rule] = []

    @field_validator("scores")
    @classmethod
    def _score_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        if len(v) > MAX_SCORES:
            raise ValueError(f"{len(v)} scores, at most {MAX_SCORES}")
        for name in v:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
                raise Mistake(f"score {name!r}: expected lower-case letters, digits and _, starting with a letter", name)
            if name in SIGNALS:
                raise Mistake(f"score {name!r}: the name of a built-in signal; give the score a name of its own", name)
        return v

    @field_validator("page_types")
    @classmethod
    def _names(cls, v: dict[str, Any]) -> dict[str, str | list[str]]:
        for name, pats in v.items():
            if not re.match(_SLUG, str(name)):
                raise Mistake(f"page type {name!r}: expected lower-case letters, digits, - and _", str(name))
            if not (isinstance(pats, str) or isinstance(pats, list) and pats and all(isinstance(p, str) for p in pats)):
                raise Mistake(f"expected a path pattern such as /products/* or a list of them, got {say.shown(pats)}",
                              str(name))
        return v

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, v: list[Rule]) -> list[Rule]:
        seen: dict[str, int] = {}
        for i, rule in enumerate(v):
            if rule.id in seen:
                raise Mistake(f"rule id {rule.id!r} is used twice (rules[{seen[rule.id]}] has it too): give each rule "
                              "an id of its own", i, "id")
            seen[rule.id] = i
        return v


# --- page types ----------------------------------------------------------------


@dataclass(frozen=True)
class PageTypes:
    """URL path patterns (globs, `*` within and across segments) to page types; first match wins."""

    patterns: tuple[tuple[str, re.Pattern[str]], ...]
    names: frozenset[str] = frozenset({OTHER})

    @classmethod
    def build(cls, declared: dict[str, str | list[str]]) -> "PageTypes":
        out = []
        for name, pats in declared.items():
            for pat in [pats] if isinstance(pats, str) else pats:
                out.append((name, re.compile(fnmatch.translate(pat))))
        return cls(tuple(out), frozenset(declared) | {OTHER})

    def classify(self, path: str, declared: str = "") -> str:
        """The page type of a path; the one the store declares for the page, if the rules know it.

        A type the rules do not declare is ignored rather than refused: the store's
        templates and the rules file change at different times.
        """
        if declared in self.names:
            return declared
        for name, rx in self.patterns:
            if rx.match(path):
                return name
        return OTHER


# --- loading ---------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    path: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.reason}" if self.path else f"{where}: {self.reason}"


class RulesError(Exception):
    """A rules document that cannot be used; `problems` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Ruleset:
    """Rules in force: validated, with page types compiled. Immutable; swapped whole."""

    rules: tuple[Rule, ...]
    page_types: PageTypes
    source: str
    by_event: dict[str, tuple[Rule, ...]]
    caps: GlobalCaps = GlobalCaps()
    # The file's `track:` settings (only the keys it sets); the runtime merges them over its defaults.
    track: dict[str, Any] = field(default_factory=dict)
    # The intent scores the file declares (`scores:`).
    scores: tuple[ScoreDef, ...] = ()
    # The rules triggered by a score crossing a value: (rule, score, value), read once at load.
    crossings: tuple[tuple[Rule, str, float], ...] = ()
    # The scores trained models compute (`{model: model.json}`), by name: intent.score.ModelScore.
    models: Mapping[str, Any] = field(default_factory=dict)
    # The share of visitors the file keeps from every nudge (`holdout:`), counted as experiment "*".
    holdout: float = 0.0

    @classmethod
    def empty(cls) -> "Ruleset":
        return cls((), PageTypes(()), "(no rules)", {})

    def rule(self, rule_id: str) -> Rule | None:
        return self._by_id.get(rule_id)

    @cached_property
    def _by_id(self) -> dict[str, Rule]:
        # Looked up at every batch with an overlay on screen (batch.ends_moment): not a walk of the rules.
        return {r.id: r for r in self.rules}

    def classify(self, path: str, declared: str = "") -> str:
        """The page type of a page: the store's declared type if the rules declare it, else the path's."""
        return self.page_types.classify(path, declared)


def _loc_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = "if" if part == "if_" else "in" if part == "in_" else part
            out += f".{part}" if out else str(part)
    return out


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The YAML line of the deepest node along `loc` (1-based): of its key, when it has one.

    The key's line, not its value's: `limit:` is where an editor should point,
    not the first line indented under it.
    """
    node, line = root, (root.start_mark.line + 1 if root else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            key = {"if_": "if", "in_": "in"}.get(part, part)
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(key)), None)
            if match is None:
                # A missing key: stay on the parent.
                continue
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
    return line


def _duplicate_keys(node: yaml.Node | None, source: str, loc: tuple[Any, ...] = ()) -> list[Problem]:
    """Keys given twice in one mapping: YAML keeps the last silently, so half of what was meant is lost."""
    out: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for k, v in node.value:
            key = getattr(k, "value", None)
            if key in seen and isinstance(key, str):
                out.append(Problem(source, k.start_mark.line + 1, _loc_path(loc + (key,)),
                                   f"`{key}` is given twice here and only the last would count: keep one"))
            seen.add(key)
            out += _duplicate_keys(v, source, loc + (key,))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out += _duplicate_keys(item, source, loc + (i,))
    return out


def _problems(exc: ValidationError, root: yaml.Node | None, source: str) -> list[Problem]:
    """Every error of a validation, with its line, place and reason."""
    errors = exc.errors()
    # A misspelt key is also a missing one (`thn` for `then`): say it once, as the misspelling.
    meant = set()
    for err in errors:
        if err["type"] == "extra_forbidden":
            place = say.place_at(RulesFile, tuple(err["loc"]))
            for key in say.closest(err["loc"][-1], place.keys):
                meant.add((*err["loc"][:-1], key))
    problems = []
    for err in errors:
        if err["type"] == "missing" and tuple(err["loc"]) in meant:
            continue
        loc, _ = say.walk(RulesFile, tuple(err["loc"]))
        loc += getattr((err.get("ctx") or {}).get("error"), "at", ())
        problems.append(Problem(source, _line_of(root, loc), _loc_path(loc), say.reason(err, RulesFile)))
    # A union reports one error per member; keep the first of each place.
    seen: set[tuple[Any, ...]] = set()
    return [p for p in problems if not ((p.line, p.path) in seen or seen.add((p.line, p.path)))]


# Checks a rule's `then` beyond the schema (the renderer trial-renders its
# template): a reason it cannot be shown (a Mistake to name a place below
# `then`, such as a parameter), or None.
ThenCheck = Callable[[Then], "str | Mistake | None"]


def parse_rules(
    text: str, source: str = "<rules>", templates: set[str] | None = None, check_then: ThenCheck | None = None,
    base_dir: str | Path | None = None,
) -> Ruleset:
    """Validate a rules document fully; raise RulesError naming every problem.

    `base_dir`: the models directory, where the files of `{model: …}` scores
    are looked for and which they may not leave (load_rules: the rules file's
    directory). Without one (rules kept in memory, no rules file) a score from
    a model is refused.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_DOCUMENT_BYTES:
        raise RulesError([Problem(source, None, "", say.too_long(size, MAX_DOCUMENT_BYTES))])
    try:
        root = yaml.compose(text)
        # Counted before anything is built from it: aliases can make a short text huge.
        values, nodes = expanded_values(root)
        if values > MAX_VALUES:
            raise RulesError([Problem(source, None, "", say.too_many_values(MAX_VALUES, aliased=nodes < values))])
        data = yaml.safe_load(text)
    except Cycle:
        raise RulesError([Problem(source, None, "", say.ALIAS_CYCLE)]) from None
    except yaml.YAMLError as exc:
        lines = text.splitlines()
        began, gave_up = getattr(exc, "context_mark", None), getattr(exc, "problem_mark", None)
        began_text = lines[began.line] if began and began.line < len(lines) else ""
        before = gave_up.line - 1 if gave_up else -1
        reason, where = say.yaml_reason(str(getattr(exc, "problem", None) or exc), began_text,
                                        lines[before] if 0 <= before < len(lines) else "")
        line_no = {"began": began.line if began else None, "before": before}.get(where)
        line_no = line_no if line_no is not None else gave_up.line if gave_up else None
        # PyYAML marks the end of a file after its last line break: name the last line instead.
        line = min(line_no + 1, max(len(lines), 1)) if line_no is not None else None
        raise RulesError([Problem(source, line, "", reason)]) from None
    except RecursionError:
        raise RulesError([Problem(source, None, "", "not valid YAML: nested too deeply")]) from None
    if not isinstance(data, dict):
        got = "the file is empty" if data is None else f"got {say.shown(data)}"
        raise RulesError([Problem(source, 1, "", f"expected `version: 1` and `rules:` at the top level; {got}")])
    twice = _duplicate_keys(root, source)
    declared = data.get("page_types") if isinstance(data.get("page_types"), dict) else {}
    scores = data.get("scores") if isinstance(data.get("scores"), dict) else {}
    context = {"templates": templates, "page_types": set(declared) | {OTHER}, "scores": {str(k) for k in scores}}
    try:
        doc = RulesFile.model_validate(data, context=context)
    except ValidationError as exc:
        raise RulesError(twice + _problems(exc, root, source)) from None
    if twice:
        raise RulesError(twice)
    page_types = PageTypes.build(doc.page_types)
    models, problems = _load_models(doc, root, source, Path(base_dir) if base_dir is not None else None, page_types)
    if check_then is not None:
        for i, rule in enumerate(doc.rules):
            thens = [(("then",), rule.then)] + [(("experiment", "variants", name, "then"), rule.then_for(name))
                                                  for name, v in (rule.experiment.variants.items() if rule.experiment
                                                                  else ()) if v.then]
            for at, then in thens:
                reason = check_then(then)
                if reason:
                    loc = ("rules", i, *at, *getattr(reason, "at", ()))
                    problems.append(Problem(source, _line_of(root, loc), _loc_path(loc), str(reason)))
    if problems:
        raise RulesError(problems)
    enabled = tuple(r for r in doc.rules if r.enabled)
    by_event: dict[str, list[Rule]] = {}
    for rule in enabled:
        by_event.setdefault(rule.when, []).append(rule)
    return Ruleset(
        rules=enabled,
        page_types=page_types,
        source=source,
        by_event={k: tuple(v) for k, v in by_event.items()},
        caps=doc.caps,
        track=doc.track.settings(),
        scores=tuple(spec.define(name) for name, spec in doc.scores.items() if isinstance(spec, ScoreSpec)),
        crossings=tuple((r, *r.crossing) for r in enabled if r.crossing),
        models=models,
        holdout=doc.holdout,
    )


def _load_models(doc: RulesFile, root: yaml.Node | None, source: str, base_dir: Path | None,
                 page_types: PageTypes) -> tuple[dict[str, Any], list[Problem]]:
    """Read the model file of every `{model: …}` score; a problem with its line for each one that cannot be used."""
    from ..intent import ModelError, load
    from ..intent.score import ModelScore

    models: dict[str, Any] = {}
    problems = []
    for name, spec in doc.scores.items():
        if not isinstance(spec, ModelSpec):
            continue
        loc = ("scores", name, "model")
        path = model_path(spec.model, base_dir)
        if path is None:
            problems.append(Problem(source, _line_of(root, loc), _loc_path(loc),
                                    say.model_outside(spec.model, base_dir is not None)))
            continue
        try:
            model = load(path)
        except ModelError as exc:
            problems.append(Problem(source, _line_of(root, loc), _loc_path(loc), str(exc)))
            continue
        score = ModelScore(name, spec.model, model, tuple(sorted(page_types.names)))
        if not score.columns_read():
            loc = ("scores", name, "model")
            columns = [f.column for f in model.features]
            problems.append(Problem(source, _line_of(root, loc), _loc_path(loc),
                                    f"{spec.model} reads none of a session's features (it reads {', '.join(columns[:6])}"
                                    f"{', …' if len(columns) > 6 else ''}): it would give every visitor the same score; "
                                    "train it on what `kairos export-sessions` writes"))
            continue
        models[name] = score
    return models, problems


def model_path(written: str, base_dir: Path | None) -> Path | None:
    """Where a `{model: …}` score's file is: inside `base_dir` (the models directory), else None.

    Only a relative path that stays inside the directory, once `..` and
    symbolic links are resolved, names a model; anything else is refused
    before the file is looked at, so the answer never says whether a file
    elsewhere exists (staff reach this through the editor).
    """
    if base_dir is None or not written or re.search(r"[\x00-\x1f]", written) or written.startswith("~"):
        return None
    try:
        if Path(written).is_absolute():
            return None
        home = base_dir.resolve()
        path = (home / written).resolve()
    except (OSError, RuntimeError, ValueError):  # a symbolic link loop, a name the system refuses
        return None
    return path if path.is_relative_to(home) else None


def load_rules(path: str | Path, templates: set[str] | None = None, check_then: ThenCheck | None = None) -> Ruleset:
    """Read and validate a rules file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError([Problem(str(p), None, "", f"cannot read: {exc.strerror}")]) from None
    return parse_rules(text, str(p), templates, check_then, p.parent)
