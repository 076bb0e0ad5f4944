"""What is kept of a page's URL: its origin and path, and only the query parameters that say
where the visit came from.

A store's URLs carry whatever its platform puts there: an email address in a
newsletter link (`?email=bob@…`), a password-reset or order token, a search
for a person's name, an OAuth `#access_token=…`. None of it is Kairos's
business, and a session kept for 30 minutes, its activity log and the
dashboard would show it to staff. So a URL is cut to scheme, host, port and
path, plus the parameters in the allow-list below; its user name and password,
its fragment and every other parameter are dropped before anything is stored.

The rules can read no URL parameter but the UTM tags (the `utm_source`,
`utm_medium` and `utm_campaign` signals, from the first page's URL), and the
traffic source is worked out from the whole URL before it is cut; so the
allow-list holds everything a rules file can name. Pure.
"""

from __future__ import annotations

from urllib.parse import unquote_plus, urlsplit, urlunsplit

# Campaign tags (every utm_*: Google Analytics' five and the newer utm_id,
# utm_source_platform, …) and the two click ids stores most often look for.
KEPT_PARAMS = frozenset({"gclid", "fbclid"})
KEPT_PREFIXES = ("utm_",)


def kept_param(name: str) -> bool:
    """Whether a query parameter of this name is kept in a stored URL."""
    return name in KEPT_PARAMS or name.startswith(KEPT_PREFIXES)


def clean_url(url: str) -> str:
    """The URL as stored: origin, path and the kept parameters (in their order, as written).

    A URL that cannot be parsed is kept as nothing rather than as it came.
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return ""
    if ":" in host:  # an IPv6 address goes back between brackets
        host = f"[{host}]"
    query = "&".join(pair for pair in parts.query.split("&")
                     if pair and kept_param(unquote_plus(pair.partition("=")[0])))
    return urlunsplit((parts.scheme, host + port if host else "", parts.path, query, ""))


def clean_path(path: str) -> str:
    """A page's path as stored: nothing after a `?` or `#` (a store's own `kairos.page({path})` may hold one)."""
    return path.partition("?")[0].partition("#")[0]
