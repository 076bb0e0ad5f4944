"""Overlays rendered from Jinja2 templates in templates/overlays/, autoescaped."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, UndefinedError, select_autoescape

from .rules.model import Then
from .session import SessionState


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

    def problem(self, then: Then) -> str | None:
        """Why a rule's nudge could not be rendered, found before it is put in force.

        A trial render for a session that knows nothing yet (no product, empty
        cart): a parameter the template needs and the rule does not give fails
        here, not in front of a visitor.
        """
        try:
            self.render(then, SessionState(sid="s_trial"))
        except UndefinedError as exc:
            # A name the template reads at the top level is one of the rule's params.
            missing = re.fullmatch(r"'(\w+)' is undefined", str(exc))
            if missing:
                name = missing[1]
                return f"template {then.template!r} needs `{name}` under `params:`, such as `params: {{{name}: …}}`"
            return f"template {then.template!r} cannot be rendered: {exc}"
        except TemplateError as exc:
            return f"template {then.template!r} cannot be rendered: {exc}"
        return None

    def render(self, then: Then, state: SessionState) -> tuple[str, str]:
        """The `show` frame's HTML (the template in its frame) and CSS (the frame's, then the template's)."""
        html = self.env.get_template(then.template).render(context(then.params, state))
        return dress(html, then.show, then.where), self._css("_base") + self._css(then.template)

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
