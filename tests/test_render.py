"""The overlay's frame the server puts around a template (render.dress), and the CSS it sends."""

from __future__ import annotations

from pathlib import Path

from kairos.render import dress

ROOT = Path(__file__).resolve().parent.parent


def test_a_centered_offer_is_a_modal_dialog_named_by_its_heading():
    html = dress('<h2 id="k-title">10% off</h2>', "offer", "center")
    assert html.startswith('<dialog class="k-overlay k-place-center k-kind-offer" aria-labelledby="k-title" data-modal closedby="any">')
    assert '<button type="button" class="k-close" data-k-close aria-label="Close">\u00d7</button><h2 id="k-title">' in html
    assert html.endswith("</dialog>")


def test_a_corner_chat_is_a_non_modal_dialog_and_a_bar_is_a_status():
    chat = dress("<p>Hi</p>", "chat", "bubble")
    assert chat.startswith('<dialog class="k-overlay k-place-bubble k-kind-chat" aria-label="Chat">')
    assert "data-modal" not in chat and "closedby" not in chat
    for place in ("top", "bottom"):
        bar = dress("<p>Free shipping</p>", "bar", place)
        assert bar.startswith(f'<div class="k-overlay k-place-{place} k-kind-bar" aria-label="Notice" role="status">')
        assert bar.endswith("</div>") and "<dialog" not in bar


def test_the_base_css_undoes_the_browsers_dialog_styles_and_respects_reduced_motion():
    css = (ROOT / "templates" / "overlays" / "_base.css").read_text()
    assert ".k-overlay{margin:0;border:0;inset:auto;" in css
    assert "::backdrop" in css
    assert "@media (prefers-reduced-motion:reduce){*{animation:none!important" in css
