"""Which addresses an overlay may link to: http, https, or a path on the store. Pure: no I/O.

An overlay runs on the store's own page, often one without a Content-Security-Policy,
so a `javascript:` link in it runs code as the store when clicked. Three layers keep
such an address out, each on its own: `kairos check` (and the hot reload and the
editor) refuse the rule (`url_refusal`), the renderer drops an attribute that
`safe_url` refuses from the HTML it sends, and the snippet drops it again before
showing (client-js/src/overlay.js).

A protocol-relative address (`//cdn.example/x`) is allowed: it takes the page's
own scheme, http or https, so it can go nowhere an `https://` address could not.
"""

from __future__ import annotations

import html
import re

from . import messages as say

# Attributes whose value the browser loads or follows as an address (HTML, SVG).
URL_ATTRIBUTES = frozenset({
    "href", "src", "action", "formaction", "srcset", "imagesrcset", "xlink:href", "poster", "data",
    "cite", "background", "longdesc", "lowsrc", "manifest", "ping",
})
# Attributes holding a comma-separated list of "address descriptor" candidates.
URL_LISTS = frozenset({"srcset", "imagesrcset"})

SCHEMES = ("http", "https")

# What the URL standard's parser reads as a scheme: a letter, then letters, digits, + - .
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# The parser drops tabs and line breaks anywhere, and C0 controls and spaces at either end:
# `java\tscript:` and `\x01javascript:` are `javascript:` to a browser.
_DROPPED = re.compile(r"[\t\n\r]")
_ENDS = "".join(map(chr, range(0x21)))
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# A parameter is known to hold an address by its name, whatever template uses it
# now (templates and rules change at different times); the renderer finds the
# others by where a template puts them (render.Renderer.url_params).
URL_NAMES = frozenset({"href", "url", "src", "link", "action", "formaction", "srcset"})
URL_SUFFIXES = ("_url", "_href", "_link", "_src")


def is_url_name(name: object) -> bool:
    """Whether a parameter's name says it holds an address: href, url, src, link, *_url …"""
    n = str(name).lower().replace("-", "_")
    return n in URL_NAMES or n.endswith(URL_SUFFIXES)


def scheme(value: str) -> str:
    """The scheme a browser reads in an address, lower-case; "" for a relative one (`/cart`, `//cdn.example/x`)."""
    m = _SCHEME.match(_DROPPED.sub("", value).strip(_ENDS))
    return m[1].lower() if m else ""


def safe_url(value: str, attribute: str = "href") -> bool:
    """Whether a browser would follow `value` as an http(s) or relative address.

    `value` is the attribute's value as the browser has it (character references
    decoded); decoding once more refuses what a second decoding would reveal.
    """
    for form in {value, html.unescape(value)}:
        parts = form.split(",") if attribute in URL_LISTS else [form]
        if any(scheme(p) not in ("", *SCHEMES) for p in parts):
            return False
    return True


def url_refusal(value: str) -> str | None:
    """Why a rule may not put `value` in an overlay's address, in a store operator's words; None if it may.

    Stricter than `safe_url`: an address with an invisible character in it is
    refused too, since what the operator reads is not what the browser follows.
    """
    for form in (value, html.unescape(value)):
        if _CONTROL.search(form):
            return say.address_invisible(value)
        found = scheme(form)
        if found not in ("", *SCHEMES):
            return say.address_refused(value, found, decoded=form != value)
    return None
