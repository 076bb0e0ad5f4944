"""Overlays rendered from Jinja2 templates in templates/overlays/, autoescaped, their addresses checked."""

from __future__ import annotations

import html as htmllib
import logging
import re
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, UndefinedError, select_autoescape

from .rules.messages import Mistake
from .rules.model import Then
from .rules.urls import URL_ATTRIBUTES, safe_url, url_refusal
from .session import SessionState

log = logging.getLogger("kairos.render")


class Renderer:
    """Turns a rule's `then` and the session into the HTML and CSS of a `show` frame.

    Every value from the session (the product name, the page title) is escaped;
    only the store's own template markup reaches the page as markup. A template's
    CSS is the file of the same name ending in .css, if any.
    """

    def __init__(self, overlays_dir: Path) -> None:
        self.dir = overlays_dir
        self.env = Environment(
            loader=FileSystemLoader(overlays_dir),
            autoescape=select_autoescape(default=True, default_for_string=True),
            # A typo in a template is a loud error, not a silently empty offer.
            undefined=StrictUndefined,
            auto_reload=True,
        )

    def names(self) -> set[str]:
        """Template names a rule may use."""
        return {p.name for p in self.dir.glob("*.html")}

    def problem(self, then: Then) -> str | Mistake | None:
        """Why a rule's nudge could not be rendered, found before it is put in force.

        A trial render for a session that knows nothing yet (no product, empty
        cart): a parameter the template needs and the rule does not give fails
        here, not in front of a visitor; so does a link that is not http(s) or
        a path on the store, whichever parameter the template puts in it.
        """
        try:
            body = self._template(then, SessionState(sid="s_trial"))
        except UndefinedError as exc:
            # A name the template reads at the top level is one of the rule's params.
            missing = re.fullmatch(r"'(\w+)' is undefined", str(exc))
            if missing:
                name = missing[1]
                return f"template {then.template!r} needs `{name}` under `params:`, such as `params: {{{name}: …}}`"
            return f"template {then.template!r} cannot be rendered: {exc}"
        except TemplateError as exc:
            return f"template {then.template!r} cannot be rendered: {exc}"
        for at in sorted(self.url_params(then), key=str):
            value = _get(then.params, at)
            reason = url_refusal(value) if isinstance(value, str) else None
            if reason:
                return Mistake(reason, "params", *at)
        _, dropped = scrub(body)
        if dropped:
            # No one parameter's doing: the template's own markup, or parameters put together.
            attribute, value = dropped[0]
            return Mistake(f"template {then.template!r} makes the link {attribute}={value!r}, which is not an http(s) "
                           "address or a path on the store: change the template, or the params it puts in the link",
                           "template")
        return None

    def url_params(self, then: Then) -> set[tuple[Any, ...]]:
        """The places in `then.params` whose text the template puts in an address (href, src, action …).

        Found by rendering: each text parameter is replaced by a marker of its
        own, and the markers found in the template's addresses are the answer.
        A template reaches its parameters in any way Jinja allows (`{% set href
        = link %}` in bar.html, a filter, a macro), which reading its source for
        `href="{{ … }}"` would miss.
        """
        places = [at for at, _ in _texts(then.params)]
        marks = {f"kairosparam{i}x": at for i, at in enumerate(places)}
        marked = _put(then.params, {at: mark for mark, at in marks.items()})
        try:
            body = self.env.get_template(then.template).render(context(marked, SessionState(sid="s_trial")))
        except (TemplateError, TypeError, ValueError):
            return set()
        found: set[tuple[Any, ...]] = set()
        for _, value in _addresses(body):
            low = value.lower()
            found |= {at for mark, at in marks.items() if mark in low}
        return found

    def render(self, then: Then, state: SessionState) -> tuple[str, str]:
        """The `show` frame's HTML (the template in its frame) and CSS (the frame's, then the template's).

        An address that is not http(s) or a path on the store is dropped from
        the HTML (the link stays, without it) and the log says so: a rule put
        in force past the check, a template edited since, a session's product
        address or a staff nudge's params cannot put one on the store's page.
        """
        body, dropped = scrub(self._template(then, state))
        for attribute, value in dropped:
            log.warning("overlay %s: dropped %s=%r: not an http(s) address or a path on the store",
                        then.template, attribute, value[:120])
        return dress(body, then.show, then.where), self._css("_base") + self._css(then.template)

    def _template(self, then: Then, state: SessionState) -> str:
        return self.env.get_template(then.template).render(context(then.params, state))

    @lru_cache(maxsize=64)
    def _css(self, template: str) -> str:
        css = self.dir / (Path(template).stem + ".css")
        return css.read_text(encoding="utf-8") if css.is_file() else ""


LABELS = {"overlay": "Message", "offer": "Offer", "chat": "Chat", "bar": "Notice"}


def dress(body: str, kind: str, place: str) -> str:
    """A template's HTML in the overlay's frame: a dialog (or a status bar) with a close button.

    A centered overlay is a modal <dialog> (the snippet opens it with
    showModal(): top layer, the page behind it inert, Escape and a click on the
    backdrop close it). A corner card or chat bubble is a non-modal <dialog>;
    a top or bottom bar is a status the visitor may ignore. A template that
    marks its heading `id="k-title"` names the dialog by it.
    """
    bar = place in ("top", "bottom")
    tag = "div" if bar else "dialog"
    name = 'aria-labelledby="k-title"' if 'id="k-title"' in body else f'aria-label="{LABELS.get(kind, "Message")}"'
    extra = ' role="status"' if bar else (' data-modal closedby="any"' if place == "center" else "")
    return (
        f'<{tag} class="k-overlay k-place-{place} k-kind-{kind}" {name}{extra}>'
        '<button type="button" class="k-close" data-k-close aria-label="Close">\u00d7</button>'
        + body
        + f"</{tag}>"
    )


def context(params: dict[str, Any], state: SessionState) -> dict[str, Any]:
    """The personalization tokens a template sees, beside the rule's own params."""
    return {
        **params,
        "params": params,
        "product": state.product,
        "page": {"path": state.path, "title": state.title, "type": state.page_type},
        "cart": {"value": state.cart_value, "items": state.cart_items, "currency": state.currency or ""},
        "visitor": {"pages": state.pages},
    }


# --- addresses in the rendered HTML ------------------------------------------------------

# A start tag: where it starts (line from 1, column), its text, its name, its attributes, and whether it ends in />.
_Tag = tuple[tuple[int, int], str, str, list[tuple[str, "str | None"]], bool]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[_Tag] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((self.getpos(), self.get_starttag_text() or "", tag, attrs, False))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((self.getpos(), self.get_starttag_text() or "", tag, attrs, True))


def _start_tags(text: str) -> list[_Tag]:
    parser = _Tags()
    parser.feed(text)
    parser.close()
    return parser.tags


def _addresses(text: str) -> Iterator[tuple[str, str]]:
    """(attribute, value) of every address in an HTML text, each value as the browser reads it."""
    for *_, attrs, _ in _start_tags(text):
        for name, value in attrs:
            if name in URL_ATTRIBUTES and value is not None:
                yield name, value


# Pure, and most renders of a rule give the same HTML (params and the product
# the session looks at): parsing every render again cost ~5 % of the server's CPU
# under the load benchmark. 1,024 overlays of a few KB: a few MB at most.
@lru_cache(maxsize=1024)
def scrub(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The HTML without the addresses a browser would not follow as http(s) or relative, and those dropped.

    Only a tag that loses an attribute is written again; the rest of the text
    stays as the template made it.
    """
    starts = [0, *(m.end() for m in re.finditer("\n", text))]
    out: list[str] = []
    dropped: list[tuple[str, str]] = []
    done = 0
    for (line, col), raw, tag, attrs, closed in _start_tags(text):
        bad = [(n, v) for n, v in attrs if n in URL_ATTRIBUTES and v is not None and not safe_url(v, n)]
        if not bad:
            continue
        at = starts[line - 1] + col
        kept = "".join(f" {n}" if v is None else f' {n}="{htmllib.escape(v)}"' for n, v in attrs if (n, v) not in bad)
        out += [text[done:at], f"<{tag}{kept}{' /' if closed else ''}>"]
        done = at + len(raw)
        dropped += bad
    return "".join(out) + text[done:], tuple(dropped)


def _texts(params: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(place, text) of every text in a rule's params, at any depth."""
    if isinstance(params, str):
        yield at, params
    elif isinstance(params, (dict, list)):
        for key, value in (params.items() if isinstance(params, dict) else enumerate(params)):
            yield from _texts(value, (*at, key))


def _put(params: Any, marks: dict[tuple[Any, ...], str], at: tuple[Any, ...] = ()) -> Any:
    """A copy of `params` with the text at each place in `marks` replaced by its marker."""
    if at in marks:
        return marks[at]
    if isinstance(params, dict):
        return {k: _put(v, marks, (*at, k)) for k, v in params.items()}
    if isinstance(params, list):
        return [_put(v, marks, (*at, i)) for i, v in enumerate(params)]
    return params


def _get(params: Any, at: tuple[Any, ...]) -> Any:
    for key in at:
        params = params[key]
    return params
