"""A rules file's mistakes in a store operator's words: the closest name, the allowed words as prose.

Pure: no I/O. pydantic's own errors are translated here by their type, in one
place (`explain`), with what the schema (model.py's classes, read by `walk`
and `place_at`) allowed where the error is, so that no message reads "Extra
inputs are not permitted" or shows a Python list.

Names the operator must type go in backticks (`limit`); what they typed is
quoted as they typed it ('limt').
"""

from __future__ import annotations

import difflib
import re
import types
from dataclasses import dataclass, field
from typing import Annotated, Any, Iterable, Literal, Mapping, Sequence, Union, get_args, get_origin

from pydantic import BaseModel

# Close enough to be the word the operator meant: difflib's ratio is 2·matches/length
# of both. 0.7 takes "limt" → "limit" (0.89) and "prodcut" → "product" (0.86); difflib's
# default of 0.6 also took "hesitation_ms" → "exit_min_ms" (0.67), a wrong lead.
CUTOFF = 0.7


class Mistake(ValueError):
    """A validator's refusal that lies below the field it checks: `at` continues the place.

    `if:`'s validator refusing `cart_value: {gt: lots}` raises Mistake(reason,
    "cart_value", "gt"), so the problem reads `rules[0].if.cart_value.gt` and
    carries the line of `gt`, not of `if:`.
    """

    def __init__(self, reason: str, *at: str | int) -> None:
        super().__init__(reason)
        self.at = at


def prose(words: Iterable[Any], last: str = "or") -> str:
    """`a, b or c`: a list as a sentence says it."""
    items = [str(w) for w in words]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def closest(word: Any, choices: Iterable[Any], n: int = 1) -> list[str]:
    """The choices the operator probably meant by `word`, best first; [] when none is close.

    Besides spelling, a word that is one part of a longer name counts, and the
    other way round (`exit` → `exit_intent`, `bottom-right` → `bottom`): people
    shorten and embellish names as often as they misspell them.
    """
    names = [str(c) for c in choices]
    typed = str(word).strip().lower().replace("-", "_").replace(" ", "_")
    if typed in names and typed != str(word):
        return [typed]
    found = difflib.get_close_matches(typed, names, n=n, cutoff=CUTOFF)
    if not found and len(typed) >= 3:
        parts = set(re.split(r"[_.]", typed))
        found = [c for c in names if typed in re.split(r"[_.\-]", c) or (len(c) >= 3 and c in parts)][:n]
    return found


def ticks(names: Sequence[str]) -> str:
    """`a` or `b`."""
    return prose([f"`{n}`" for n in names])


def did_you_mean(word: Any, choices: Iterable[Any], n: int = 1) -> str:
    """' — did you mean `x`?', or '' when nothing is close."""
    found = closest(word, choices, n)
    return f" — did you mean {ticks(found)}?" if found else ""


def shown(v: Any) -> str:
    """A value as the operator wrote it, in a sentence."""
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "a mapping" if v else "an empty mapping {}"
    if isinstance(v, list):
        return f"a list [{', '.join(str(x) for x in v)}]" if v else "an empty list []"
    if isinstance(v, float) and v.is_integer():
        return repr(v)
    return repr(v) if isinstance(v, str) else str(v)


def unknown(what: str, word: Any, choices: Iterable[Any], otherwise: str = "", n: int = 1) -> str:
    """"unknown event 'exit' — did you mean `exit_intent`?"; when nothing is close, `otherwise` (what is allowed)."""
    found = closest(word, choices, n)
    head = f"unknown {what} {shown(word)}"
    if found:
        return f"{head} — did you mean {ticks(found)}?"
    return f"{head}: {otherwise}" if otherwise else head


def one_of(word: Any, choices: Sequence[Any]) -> str:
    """An enum's refusal: "expected one of offer, chat or bar, got 'ofer' — did you mean `offer`?"."""
    allowed = prose(choices) if len(choices) > 1 else str(choices[0]) if choices else "nothing"
    head = f"expected one of {allowed}" if len(choices) > 1 else f"expected {allowed}"
    return f"{head}, got {shown(word)}{did_you_mean(word, choices)}"


# --- durations ---------------------------------------------------------------------

_UNITS = {
    "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "d": "d", "day": "d", "days": "d",
    "w": "w", "week": "w", "weeks": "w",
}


def duration_fix(v: Any) -> str | None:
    """How to write a duration written in words: '3 minutes' → '3m', '1 week' → '7d'; None if not one."""
    if not isinstance(v, str):
        return None
    parts = re.findall(r"(\d+)\s*([a-z]+)", v.lower().replace(" and ", " ").replace(",", " "))
    rest = re.sub(r"(\d+)\s*([a-z]+)", "", v.lower().replace(" and ", " ").replace(",", " ")).strip()
    if not parts or rest:
        return None
    out = []
    for amount, unit in parts:
        letter = _UNITS.get(unit)
        if letter is None:
            return None
        out.append(f"{int(amount) * 7}d" if letter == "w" else f"{amount}{letter}")
    fix = "".join(out)
    return fix if fix != v else None


def duration_words(seconds: float) -> str:
    """A limit in the unit an operator thinks in: `7 days`, `24 h`."""
    if seconds % 86400 == 0 and seconds > 86400:
        return f"{seconds / 86400:g} days"
    return f"{seconds / 3600:g} h"


# --- pydantic's errors ------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """What the schema allows where an error was found; model.py fills it in from the schema."""

    # "a rule setting": what an unknown key is not
    noun: str = "a setting here"
    # "a rule": what misses a required key
    owner: str = "this"
    # "the settings of a rule are": how the allowed keys are introduced
    listing: str = "the settings here are"
    keys: tuple[str, ...] = ()
    # keys of the settings nested here, by the setting they belong under (`per_session` → `limit`)
    nested: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # said of an unknown key nothing is close to
    hint: str = ""
    # an enum's allowed values
    choices: tuple[Any, ...] = ()
    # what a text field's pattern asks for, in words
    pattern: str = ""
    # what a mapping expected here is ("a rule"), for a scalar found in its place
    expected: str = "settings"


# What a missing key is for, said with it: "a rule needs `then:` (what to show, …)".
NEEDS = {
    "version": "add `version: 1` at the top of the file",
    "id": "a name of lower-case letters, digits, - and _, such as `id: exit-offer`",
    "when": "the moment that triggers it, such as `when: exit_intent`",
    "then": "what to show, such as `then: {show: offer, template: offer.html}`",
    "show": "one of overlay, offer, chat or bar",
    "template": "a file in templates/overlays/, such as `template: offer.html`",
    "max": "how many shows, such as `{max: 3, per: 7d}`",
    "per": "the window, such as `{max: 3, per: 7d}`",
    "half_life": "how fast a part fades, such as `half_life: 10m`",
    "weights": "what counts and how much, such as `weights: {add_to_cart: 1.5}`",
    "model": "the model file, such as `{model: models/intent.json}`",
}


def unknown_key(key: str, place: Place) -> str:
    """"`limt` is not a rule setting — did you mean `limit`?"; else where it belongs, else what is allowed."""
    found = closest(key, place.keys)
    if found:
        return f"`{key}` is not {place.noun} — did you mean {ticks(found)}?"
    home = [parent for parent, keys in place.nested.items() if key in keys]
    if home:
        return f"`{key}` is not {place.noun}: it belongs under `{home[0]}:`, indented below it"
    head = f"`{key}` is not {place.noun}; {place.listing} {prose(place.keys, 'and')}"
    return f"{head} ({place.hint})" if place.hint else head


def needs(key: str, place: Place) -> str:
    """"a rule needs `then:` (what to show, …)"."""
    why = NEEDS.get(key)
    return f"{place.owner} needs `{key}:`" + (f" ({why})" if why else "")


def _colon_fix(v: Any) -> str:
    # `per_session:2` is a string to YAML: a key needs a space after its colon.
    if isinstance(v, str) and (m := re.fullmatch(r"\s*([A-Za-z_][\w.-]*):(\S.*)", v)):
        return f" — put a space after the colon: `{m[1]}: {m[2]}`"
    return ""


def mapping_expected(key: Any, v: Any, what: str = "settings") -> str:
    """A scalar or nothing where settings were due: usually the indentation or a missing space."""
    if isinstance(key, int) or not key:
        return f"expected {what} (`key: value` settings), got {shown(v)}{_colon_fix(v)}"
    if v is None:
        return f"expected settings indented under `{key}:`, got nothing — indent them more than `{key}:`"
    fix = _colon_fix(v)
    if fix:
        return f"expected settings under `{key}:`, got {shown(v)}{fix}"
    return f"expected settings under `{key}:` (`key: value` lines indented below it, or {{key: value}}), got {shown(v)}"


def list_expected(key: Any, v: Any) -> str:
    """A scalar or a mapping where a list was due."""
    if isinstance(v, str):
        return f"expected a list, got {shown(v)} — write `[{v}]`"
    if isinstance(v, dict):
        return "expected a list (one item per line, each starting with `- `), got a mapping"
    if v is None and isinstance(key, str):
        return f"expected a list indented under `{key}:` (items starting with `- `), got nothing — write `{key}: []` for none"
    return f"expected a list, got {shown(v)}"


def explain(err: Mapping[str, Any], place: Place) -> str:
    """One of pydantic's errors in plain words, by its type; `place` says what was allowed there."""
    kind = err["type"]
    loc = err.get("loc") or ()
    key = loc[-1] if loc else ""
    got = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "value_error":
        return str(ctx.get("error") or err["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return unknown_key(str(key), place)
    if kind == "missing":
        return needs(str(key), place)
    if kind in ("int_type", "int_parsing", "int_from_float", "int_parsing_size"):
        return f"expected a whole number, got {shown(got)}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"expected a number, got {shown(got)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {shown(got)}"
    if kind in ("string_type", "string_unicode"):
        return f"expected one value, got {shown(got)}" if isinstance(got, list) else f"expected text, got {shown(got)}"
    if kind == "literal_error":
        return one_of(got, place.choices)
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound, words = next((ctx[k], w) for k, w in (("ge", "at least"), ("gt", "more than"), ("le", "at most"),
                                                     ("lt", "less than")) if k in ctx)
        return f"expected {words} {bound}, got {shown(got)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return mapping_expected(key, got, place.expected)
    if kind == "list_type":
        return list_expected(key, got)
    if kind == "string_pattern_mismatch":
        return f"expected {place.pattern or 'text matching ' + str(ctx.get('pattern'))}, got {shown(got)}"
    if kind == "string_too_short":
        return f"expected some text, got {shown(got)}"
    msg = str(err.get("msg") or kind)
    return msg[:1].lower() + msg[1:]


# --- where in the schema ----------------------------------------------------------


def _bare(t: Any) -> Any:
    """A field's type without `| None` and without Annotated's notes."""
    while get_origin(t) is Annotated:
        t = get_args(t)[0]
    if get_origin(t) in (Union, types.UnionType):
        members = [m for m in get_args(t) if m is not type(None)]
        if len(members) == 1:
            return _bare(members[0])
    return t


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def walk(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
    """pydantic's `loc` as the file's place (union members left out), and the schema's type there.

    The type is None where the schema has nothing to say (a free-form `params`).
    """
    t: Any = root
    place: list[Any] = []
    for part in loc:
        t = _bare(t)
        if _is_model(t):
            found = next((f for n, f in t.model_fields.items() if part in (n, f.alias)), None)
            t = found.annotation if found else None
        elif get_origin(t) is list and isinstance(part, int):
            t = get_args(t)[0]
        elif get_origin(t) is dict:
            t = get_args(t)[1]
        elif get_origin(t) in (Union, types.UnionType) and isinstance(part, str):
            # pydantic names the member of a union it tried: a Tag, or the member's type.
            t = next((get_args(m)[0] for m in get_args(t) if get_origin(m) is Annotated
                      and any(getattr(x, "tag", None) == part for x in get_args(m)[1:])), None)
            continue
        else:
            t = None
        place.append(part)
    return tuple(place), t


# How a place in the schema is named in a message, by the schema's class; a nested
# setting is named by its key ("a `limit` setting").
_PLACES = {
    "RulesFile": ("a top-level key", "the file", "the top-level keys are", ""),
    "Rule": ("a rule setting", "a rule", "the settings of a rule are", ""),
    "Then": ("a `then` setting", "`then`", "the settings of `then` are", "values for the template go under `params:`"),
    "ScoreSpec": ("a score setting", "a score", "the settings of a score are", "or `{model: model.json}` for a trained model"),
    "ModelSpec": ("a setting of a score from a model", "a score from a model", "it has only", ""),
    "Compare": ("an operator", "a condition", "the operators are", ""),
}


def place_at(root: type[BaseModel], loc: tuple[Any, ...]) -> Place:
    """What the schema allows at pydantic's `loc`, for explain: the keys of the mapping, an enum's values …"""
    parent_place, parent = walk(root, loc[:-1])
    _, here = walk(root, loc)
    parent = _bare(parent)
    kw: dict[str, Any] = {}
    if _is_model(parent):
        fields = parent.model_fields
        keys = tuple(f.alias or n for n, f in fields.items())
        nested = {f.alias or n: tuple(g.alias or m for m, g in _bare(f.annotation).model_fields.items())
                  for n, f in fields.items() if _is_model(_bare(f.annotation))}
        name = next((str(p) for p in reversed(parent_place) if isinstance(p, str)), "")
        noun, owner, listing, hint = _PLACES.get(
            parent.__name__, (f"a `{name}` setting", f"`{name}`", f"the settings of `{name}` are", ""))
        kw.update(noun=noun, owner=owner, listing=listing, hint=hint, keys=keys, nested=nested)
        field_info = next((f for n, f in fields.items() if loc and loc[-1] in (n, f.alias)), None)
        if field_info is not None and field_info.description:
            kw["pattern"] = field_info.description
    if _is_model(_bare(here)):
        kw["expected"] = _PLACES.get(_bare(here).__name__, ("", "settings"))[1]
    if get_origin(_bare(here)) is Literal:
        kw["choices"] = get_args(_bare(here))
    return Place(**kw)


def reason(err: Mapping[str, Any], root: type[BaseModel]) -> str:
    """One pydantic error in the operator's words (explain), with what the schema allowed there."""
    return explain(err, place_at(root, tuple(err["loc"])))


# --- YAML -------------------------------------------------------------------------

# PyYAML's problems, by the words that start them, in a store operator's words; True when
# the mistake is where PyYAML began reading the thing it could not finish (an unclosed
# `{`, a line without its colon), not where it gave up.
_YAML = (
    ("found character '\\t'", "a tab character: YAML indents with spaces only", False),
    ("mapping values are not allowed", "a `:` where YAML expected none — is this line indented more than the "
                                       "one above it, or does a value with `: ` in it need quotes?", False),
    ("could not find expected ':'", "a line that is not `key: value` — is a colon missing?", True),
    ("expected <block end>", "this line is not indented like the lines above it", False),
    ("did not find expected key", "this line is not indented like the lines above it", False),
    ("did not find expected '-' indicator", "a list item that is not indented like the items above it", False),
    ("expected ',' or '}', but got '<stream end>'", "a `{` that is not closed by `}`", True),
    ("expected ',' or ']', but got '<stream end>'", "a `[` that is not closed by `]`", True),
    ("found unexpected end of stream", "a quote that is not closed", True),
    ("expected the node content, but found '<stream end>'", "the file ends inside a `[` or `{` that is not closed", False),
    ("found undefined alias", "a value starting with `*` (YAML reads an alias): put it in quotes", False),
    ("could not determine a constructor", "a value starting with `!` (YAML reads a tag): put it in quotes", False),
)


def yaml_reason(problem: str, began: str = "", before: str = "") -> tuple[str, str]:
    """Why PyYAML could not read a document, in plain words, and which line to name.

    `began`: the text of the line PyYAML began reading the broken thing at;
    `before`: the line before the one it gave up at. The line to name is
    "problem" (where it gave up), "began" or "before". PyYAML's own words for
    a problem not listed here.
    """
    if problem.startswith("could not find expected ':'") and (fix := _colon_fix(began.strip().removeprefix("- "))):
        return f"not valid YAML: a line that is not `key: value`{fix}", "began"
    # `- id:r` is text to YAML, so the `when:` under it is a key where none may be.
    if problem.startswith("mapping values are not allowed") and (fix := _colon_fix(before.strip().removeprefix("- "))):
        return f"not valid YAML: a line that is not `key: value`{fix}", "before"
    for start, words, at_start in _YAML:
        if problem.startswith(start):
            return f"not valid YAML: {words}", "began" if at_start else "problem"
    if m := re.match(r"found character (.+) that cannot start any token", problem):
        return f"not valid YAML: a value cannot start with {m[1]}: put it in quotes", "problem"
    if m := re.match(r"expected ',' or '([]}])', but got (.+)", problem):
        # Inside {…} and […], `?`, `:`, `[` and `{` mean something: "Found it?}" is not text there.
        opening = "{" if m[1] == "}" else "["
        return (f"not valid YAML: {m[2]} inside `{opening}…{m[1]}` — put the value in quotes, "
                f"or close the `{opening}` with `{m[1]}`"), "began"
    return f"not valid YAML: {problem}", "problem"


# --- size -------------------------------------------------------------------------


def too_long(size: int, limit: int) -> str:
    """A document over the text bound (rules/bounds.py)."""
    return f"{size:,} bytes: a rules document is at most {limit:,} bytes (examples/demo.yaml is 2.5 KB)"


def too_many_values(limit: int, aliased: bool) -> str:
    """A document over the values bound (rules/bounds.py), through aliases or not."""
    head = (f"expands to more than {limit:,} values through YAML anchors (&) and aliases (*)" if aliased
            else f"has more than {limit:,} values")
    return (f"{head}: a rules file has a few hundred (examples/demo.yaml has 170); "
            + ("write the values out, or use fewer aliases" if aliased else "split the rules, or remove unused values"))


ALIAS_CYCLE = ("an alias (*) inside the value its anchor (&) names: the value would contain itself; "
               "write the value out instead")


# --- addresses --------------------------------------------------------------------

ADDRESS_FIX = "write an https:// address or a path on the store, such as `/cart` or `https://shop.example/sale`"


def address_invisible(value: str) -> str:
    """An address with a control character in it (rules/urls.py)."""
    return (f"{value!r} has an invisible character (a tab, line break or control character) in it, which a browser "
            f"drops before it reads the address: {ADDRESS_FIX}")


def address_refused(value: str, scheme: str, decoded: bool) -> str:
    """An address whose scheme is not http or https (rules/urls.py): what it would do, and the fix."""
    if scheme in ("javascript", "vbscript"):
        why = "runs code on the store's page when it is clicked"
    elif scheme == "data":
        why = "carries a page or a script of its own"
    else:
        why = "is not a web address; an overlay links only to http, https or a path on the store"
    spelt = " once its &…; codes are read" if decoded else ""
    return f"{value!r} is a {scheme}: link{spelt}, which {why}: {ADDRESS_FIX}"


# --- model files ------------------------------------------------------------------


def model_outside(written: str, has_dir: bool) -> str:
    """A `{model: …}` path that leaves the models directory, or a server without one (rules/model.py model_path).

    The same words whether or not a file is there: the editor must not tell
    staff which files exist elsewhere on the server.
    """
    if not has_dir:
        return ("a model file is read from the rules file's folder, and these rules have no file (the server was "
                "started without --rules): start it with --rules FILE and put the model beside that file")
    return (f"{written!r} is not a path inside the rules file's folder: name the model file by its path from there, "
            "such as `models/intent.json` (no leading /, ~ or .. out of the folder)")
