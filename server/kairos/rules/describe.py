"""A rule in plain words, for the people who run the store: `kairos check`, the dashboard, the admin API.

    describe(rule) ->
    "When a visitor shows exit intent on a product page and their cart value is
     over 50, show offer 'offer.html' (center), at most once per session, priority 10."

Pure, and forgiving: it reads the rule's attributes with defaults, so a rule
with fields this module does not know yet still gets a sentence (and a value it
cannot phrase is shown as it is written) rather than an exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .signals import SIGNALS

# What a visitor does, after "When a visitor …". Every event type of the wire
# protocol has one (tests/test_describe.py checks it against wire.EVENT_TYPES).
EVENT_PHRASES: dict[str, str] = {
    "page_view": "views a page",
    "dwell": "stays on a page",
    "scroll": "scrolls",
    "click": "clicks",
    "rage_click": "rage-clicks",
    "exit_intent": "shows exit intent",
    "idle": "goes idle",
    "idle_end": "comes back from idle",
    "hesitation": "hesitates over a form field",
    "copy": "copies text",
    "identify": "is identified by the store",
    "custom": "triggers a custom event",
    "cart": "updates their cart",
    "add_to_cart": "adds to cart",
    "checkout": "reaches a checkout step",
    "purchase": "places an order",
}

# Signals as the subject of a sentence, where signals.py's description does not
# read as one ("clicks this session is over 3"). Others use that description.
SUBJECTS: dict[str, str] = {
    "pages": "the number of pages viewed in the session",
    "dwell_s": "the visible time on this page",
    "session_dwell_s": "the visible time on the site this session",
    "scroll_pct": "the deepest scroll on this page",
    "clicks": "the number of clicks this session",
    "rage_clicks": "the number of rage clicks this session",
    "exit_intents": "the number of exit intents this session",
    "exit_how": "the way the exit intent showed",
    "hesitations": "the number of form fields hesitated over this session",
    "copies": "the number of copies this session",
    "custom_count": "the number of custom events of this name this session",
    "idle_s": "the idle time",
    "cart_value": "their cart value",
    "cart_items": "the number of items in their cart",
    "adds_to_cart": "the number of adds to cart this session",
    "purchases": "the number of orders this session",
    "referrer": "the referrer of the visit",
    "traffic": "the visit's traffic source",
    "click_target": "the clicked element (data-kairos or id)",
}

# Yes-or-no signals as a whole clause: (when true, when false).
FLAGS: dict[str, tuple[str, str]] = {
    "identified": ("the store has identified them", "the store has not identified them"),
}

UNITS: dict[str, str] = {"dwell_s": " s", "session_dwell_s": " s", "idle_s": " s", "scroll_pct": "%"}

# Compare fields, in the order they are read out.
OPERATORS: tuple[tuple[str, str], ...] = (
    ("eq", "is"),
    ("ne", "is not"),
    ("gt", "is over"),
    ("gte", "is at least"),
    ("lt", "is under"),
    ("lte", "is at most"),
    ("in_", "is one of"),
    ("not_in", "is not one of"),
)

OTHER = "other"  # the page type of a path no pattern matches (model.OTHER)
NO_TYPE = "a page of no declared type"
_TIMES = {1: "once", 2: "twice"}


def summaries(ruleset: Any) -> list[dict[str, str]]:
    """Each rule of a ruleset, by id, in one sentence: as the dashboard and the admin API list them."""
    return [{"id": r.id, "summary": describe(r, ruleset.page_types)} for r in ruleset.rules]


def describe(rule: Any, page_types: Iterable[str] | Mapping[str, Any] | Any | None = None) -> str:
    """The rule as one sentence.

    `page_types` is optional: the declared page type names (a list, the
    `page_types` mapping of the file, or a Ruleset's PageTypes). With it, a
    condition on the `other` page type names the types it excludes.
    """
    names = _page_type_names(page_types)
    when = getattr(rule, "when", None)
    crossing = getattr(rule, "crossing", None)
    does = (f"'s {crossing[0].replace('_', ' ')} rises past {crossing[1]:g}" if crossing
            else EVENT_PHRASES.get(when) or _unknown_event(when))
    conditions = dict(getattr(rule, "if_", None) or {})
    parts = []
    if "page_type" in conditions:
        page = conditions.pop("page_type")
        try:
            does = _on_pages(does, _pages(page, names))
        except Exception:
            parts.append(_as_written("page_type", page))
    parts += [_safe(lambda n=n, c=c: _condition(n, c), n, c) for n, c in conditions.items()]
    clause = f"When a visitor{'' if crossing else ' '}{does}" + "".join(f" and {p}" for p in parts)

    # Delayed rules: `after` a while, `unless` something happened in between.
    after = getattr(rule, "after", None)
    if after:
        clause += f", after {_duration(after)}"
        if getattr(rule, "offline", None) == "next_page":
            clause += " (or on their next page if none is open then)"
    unless = getattr(rule, "unless", None)
    if unless:
        clause += ", unless " + _safe(lambda: _unless(unless, names), "unless", unless)

    then = getattr(rule, "then", None)
    tail = [_show(then) + _lives(then, conditions_page(rule), names)] if then is not None else ["show nothing"]
    tail += _limits(getattr(rule, "limit", None))
    tail.append(f"priority {_number(getattr(rule, 'priority', 0))}")
    sentence = f"{clause}, {', '.join(tail)}."
    if getattr(rule, "experiment", None) is not None:
        sentence += " " + _safe(lambda: experiment_words(rule), "experiment", rule.experiment)
    if getattr(rule, "enabled", True) is False:
        sentence = "(disabled) " + sentence
    return sentence


def experiment_words(rule: Any) -> str:
    """A rule's experiment in words: each arm, its share and what it changes."""
    x = rule.experiment
    name = getattr(rule, "experiment_id", None) or rule.id
    if x.ended is not None:
        return (f"Experiment {name} ended {x.ended}: " +
                (f"variant {x.shipped} is shown to everyone." if x.shipped else "the rule as written is shown to everyone."))
    arms = []
    for arm, share in x.arms():
        if arm == "holdout":
            arms.append(f"holdout {share * 100:g}%: shown nothing, recorded as if shown (caps and all)")
            continue
        variant = x.variants[arm]
        changes = [f"{key} {value!r}" for key, value in variant.then.get("params", {}).items()]
        changes += [f"{key} {value!r}" for key, value in variant.then.items() if key != "params"]
        if variant.after is not None:
            changes.append(f"after {_duration(variant.after)}")
        arms.append(f"{arm} {share * 100:g}%: " + (", ".join(changes) if changes else "as written"))
    return (f"Experiment {name}, counted from the moment in every arm — " + "; ".join(arms) + ".")


# --- conditions -------------------------------------------------------------------


def condition_words(name: str, cond: Any) -> str:
    """One condition of a rule's `if` in plain words."""
    return _safe(lambda: _condition(name, cond), name, cond)


def _condition(name: str, cond: Any) -> str:
    """`their cart value is over 50`, `the checkout step is one of 'shipping' or 'payment'`."""
    if name == "page_type":
        return f"they are on {_pages(cond, None)}"
    if name in FLAGS and isinstance(cond, bool):
        return FLAGS[name][0 if cond else 1]
    subject = SUBJECTS.get(name) or _subject_from_signals(name)
    unit = UNITS.get(name, "")
    return f"{subject} {_predicate(cond, unit)}"


def _predicate(cond: Any, unit: str = "") -> str:
    if isinstance(cond, (list, tuple)):
        return "is " + _value(cond[0], unit) if len(cond) == 1 else "is one of " + _either(cond, unit)
    if _is_compare(cond):
        out = []
        for field, words in OPERATORS:
            value = getattr(cond, field, None)
            if value is None:
                continue
            if isinstance(value, (list, tuple)):
                out.append(f"{words} {_either(value, unit)}" if len(value) != 1 else
                           f"{'is not' if field == 'not_in' else 'is'} {_value(value[0], unit)}")
            else:
                out.append(f"{words} {_value(value, unit)}")
        if out:
            # "is at least 10 and at most 20": say "is" once.
            return out[0] + "".join(" and " + p.removeprefix("is ") for p in out[1:])
    if isinstance(cond, Mapping):
        return "matches " + ", ".join(f"{k}: {_value(v, unit)}" for k, v in cond.items())
    return "is " + _value(cond, unit)


def _pages(cond: Any, names: list[str] | None) -> str:
    """The pages a page_type condition means: `a product page`, `a cart or checkout page`,
    `a page that is not a product page`."""
    if isinstance(cond, (list, tuple)):
        return _pages_among(list(cond), names)
    if _is_compare(cond):
        parts = []
        for field, negate in (("eq", False), ("in_", False), ("ne", True), ("not_in", True)):
            value = getattr(cond, field, None)
            if value is not None:
                types = list(value) if isinstance(value, (list, tuple)) else [value]
                parts.append(_pages_besides(types, names) if negate else _pages_among(types, names))
        if parts:
            return " and ".join(parts)
        raise ValueError("no page type operator")
    return _pages_among([cond], names)


def _pages_among(types: list[Any], names: list[str] | None) -> str:
    declared = [str(t) for t in types if t != OTHER]
    phrases = [_a_page(declared)] if declared else []
    if len(declared) < len(types):
        others = [n for n in (names or []) if n != OTHER]
        phrases.append(f"a page that is not {_a_page(others)}" if others else NO_TYPE)
    return " or ".join(phrases)


def _pages_besides(types: list[Any], names: list[str] | None) -> str:
    declared = [str(t) for t in types if t != OTHER]
    if len(declared) == len(types):
        return f"a page that is not {_a_page(declared)}"
    rest = [n for n in (names or []) if n != OTHER and n not in declared]
    if names is not None:
        return _a_page(rest) if rest else "no page"
    return f"a page of a declared type other than {_a_page(declared)}" if declared else "a page of a declared type"


def _a_page(types: list[str]) -> str:
    """`a product page`, `an order or cart page`."""
    words = [t.replace("-", " ").replace("_", " ") for t in types]
    return f"{_article(words[0])} {_or(words)} page"


def _on_pages(event_phrase: str, pages: str) -> str:
    """`views a page` + `a product page` -> `views a product page`; `scrolls` -> `scrolls on a product page`."""
    if " a page" in event_phrase:
        return event_phrase.replace(" a page", " " + pages, 1)
    return f"{event_phrase} on {pages}"


def _unless(unless: Any, names: list[str] | None) -> str:
    """What cancels a delayed rule: event names, and maps of conditions like `if`'s."""
    groups = unless if isinstance(unless, (list, tuple)) else [unless]
    out = []
    for group in groups:
        if isinstance(group, Mapping):
            conds = [f"they are on {_pages(c, names)}" if n == "page_type" else _condition(n, c) for n, c in group.items()]
            out.append(" and ".join(conds))
        elif group in EVENT_PHRASES:
            out.append(f"the visitor {EVENT_PHRASES[group]}")
        else:
            out.append(str(group))
    return " or ".join(out)


# --- then and limit ------------------------------------------------------------------


def _show(then: Any) -> str:
    kind = getattr(then, "show", "overlay")
    template = getattr(then, "template", "?")
    where = getattr(then, "where", None) or getattr(then, "place", None)
    text = f"show {kind} {str(template)!r}" + (f" ({where})" if where else "")
    ttl = getattr(then, "ttl_s", 0)
    if ttl:
        text += f" for {_number(ttl)} s"
    return text


def conditions_page(rule: Any) -> Any:
    return (getattr(rule, "if_", None) or {}).get("page_type")


def _lives(then: Any, page: Any, names: list[str] | None) -> str:
    """How long the overlay stays: `shown until the visitor leaves the page, or until they start checkout`."""
    # Said when the rule writes it: the defaults by kind are in docs/rules.md,
    # and saying them in every sentence would bury what each rule decides.
    if not getattr(then, "scope", None) and not getattr(then, "until", None):
        return ""
    scope = getattr(then, "lives", None) or getattr(then, "scope", None)
    if scope == "page":
        text = "shown until the visitor leaves the page"
    elif scope == "page_type":
        # The type is the page's at show time: named when the rule's `if` fixes it.
        kinds = f"{page} pages" if isinstance(page, str) and page != OTHER else "pages of that type"
        text = f"shown until the visitor leaves {kinds}"
    elif scope == "session":
        text = "shown until the visitor closes it"
    else:
        return ""
    until = getattr(then, "until", None)
    if until:
        words = _safe(lambda: _unless(until, names), "until", until)
        text += ", or until " + words
    return ", " + text


def _limits(limit: Any) -> list[str]:
    """`at most once per session`, `with no session cap`; and any other `per_…` cap a limit has."""
    if limit is None:
        return []
    out = []
    per_session = getattr(limit, "per_session", None)
    out.append(f"at most {_times(per_session)} per session" if per_session else "with no session cap")
    whom = {"per_visitor": "to one visitor", "per_rule": "to all visitors together"}
    fields = getattr(type(limit), "model_fields", None) or {}
    for name in fields:
        if name.startswith("per_") and name != "per_session":
            cap = getattr(limit, name, None)
            if cap:
                out.append(window_words(cap, whom.get(name, name[4:].replace("_", " "))))
    cooldown = getattr(limit, "cooldown", None)
    if cooldown:
        out.append(f"at least {_duration(cooldown)} apart for one visitor")
    return out


def window_words(cap: Any, whom: str) -> str:
    """`at most twice per 1 h to one visitor` from a {max, per} cap."""
    if hasattr(cap, "max") and hasattr(cap, "per"):
        return f"at most {_times(cap.max)} per {_duration(cap.per)} {whom}"
    return f"at most {_times(cap)} {whom}"


def _times(n: Any) -> str:
    return _TIMES.get(n) or f"{_number(n)} times"


# --- words ------------------------------------------------------------------------------


def _subject_from_signals(name: str) -> str:
    desc = SIGNALS.get(name, (None, None, name.replace("_", " ")))[2]
    return desc if desc.split(" ", 1)[0] in ("the", "their", "a", "an") else f"the {desc}"


def _unknown_event(when: Any) -> str:
    return f"triggers {when!r}"


def _is_compare(cond: Any) -> bool:
    return any(hasattr(cond, f) for f in ("gt", "gte", "lt", "lte", "eq", "ne")) and not isinstance(cond, Mapping)


def _number(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _value(v: Any, unit: str = "") -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return _number(v) + unit
    return repr(str(v))


def _either(values: Iterable[Any], unit: str = "") -> str:
    return _or([_value(v, unit) for v in values])


def _or(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _duration(v: Any) -> str:
    """`45 s`, `3 min`, `1 h 30 min`; anything else as written."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return str(v)
    if v < 60 or v % 60:
        return f"{_number(v)} s"
    h, m = divmod(int(v) // 60, 60)
    return " ".join(p for p in (f"{h} h" if h else "", f"{m} min" if m else "") if p)


def _safe(fn: Any, name: str, raw: Any) -> str:
    """A phrase, or the condition as written when it cannot be put into words."""
    try:
        return fn()
    except Exception:  # a shape this module does not know: show it rather than fail
        return _as_written(name, raw)


def _as_written(name: str, raw: Any) -> str:
    return f"{name} is {raw!r}"


def _page_type_names(page_types: Any) -> list[str] | None:
    if page_types is None:
        return None
    patterns = getattr(page_types, "patterns", None)
    if patterns is not None:  # a PageTypes: ((name, regex), …)
        page_types = [name for name, _ in patterns]
    try:
        return list(dict.fromkeys(str(n) for n in page_types))
    except TypeError:
        return None
