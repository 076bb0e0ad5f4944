"""What the request itself says about a visitor: device and browser, country and region.

The edge of the privacy promise: the IP address is used for one GeoIP lookup
here and goes no further — not into the session, not into a log.

Geography the server cannot tell — no database configured, an address the
database does not hold, a Country database asked for a region — is "unknown",
a value rules can name (`country: unknown`), never an empty string that reads
like a bug.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from user_agents import parse as parse_ua

log = logging.getLogger("kairos.context")


@lru_cache(maxsize=4096)  # many visitors share a User-Agent string; parsing one costs ~0.1 ms
def device_of(user_agent: str) -> tuple[str, str, str]:
    """(device, browser, os) in lower case: device is desktop, mobile, tablet, bot or other."""
    ua = parse_ua(user_agent or "")
    if ua.is_bot:
        device = "bot"
    # Firefox on an Android tablet says "(Android 13; Tablet; rv:…)" (MDN, "Firefox
    # user agent string reference"); user-agents 2.2 files it under mobile.
    elif ua.is_tablet or ua.device.family == "Generic Tablet":
        device = "tablet"
    elif ua.is_mobile:
        device = "mobile"
    elif ua.is_pc:
        device = "desktop"
    else:
        device = "other"
    browser = ua.browser.family.lower().removeprefix("mobile ").removeprefix("headless")
    browser = {"chrome mobile": "chrome", "chrome mobile ios": "chrome", "firefox mobile": "firefox"}.get(browser, browser)
    os = ua.os.family.lower().replace("mac os x", "macos")
    return device, browser, os


UNKNOWN = "unknown"


class GeoLookup:
    """Country and region from a MaxMind (GeoIP2/GeoLite2 City or Country) database, if one is configured.

    A missing or unreadable database is not fatal: the server says so once, at
    start-up, and every visitor's geography is "unknown".
    """

    def __init__(self, path: Path | None) -> None:
        self.reader = None
        self._city = False
        if path is None:
            log.warning("no GeoIP database configured (--geoip-db or KAIROS_GEOIP_DB): "
                        "country and region are 'unknown' for every visitor")
            return
        import geoip2.database
        import maxminddb.errors

        try:
            self.reader = geoip2.database.Reader(str(path))
        except (OSError, ValueError, maxminddb.errors.InvalidDatabaseError) as exc:
            log.warning("GeoIP database %s cannot be read (%s): country and region are 'unknown' for every visitor",
                        path, getattr(exc, "strerror", None) or exc)
            return
        self._city = "City" in self.reader.metadata().database_type

    def lookup(self, ip: str | None) -> tuple[str, str]:
        """(country ISO code, region ISO code); "unknown" for either when the database cannot tell."""
        if self.reader is None or not ip:
            return UNKNOWN, UNKNOWN
        import geoip2.errors

        try:
            if self._city:
                r = self.reader.city(ip)
                return r.country.iso_code or UNKNOWN, r.subdivisions.most_specific.iso_code or UNKNOWN
            return self.reader.country(ip).country.iso_code or UNKNOWN, UNKNOWN
        except (geoip2.errors.AddressNotFoundError, ValueError):
            return UNKNOWN, UNKNOWN

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


def request_context(user_agent: str, ip: str | None, geo: GeoLookup) -> dict[str, str]:
    """The session's context fields, from one request. The IP is not in the result."""
    device, browser, os = device_of(user_agent[:512])
    country, region = geo.lookup(ip)
    return {"device": device, "browser": browser, "os": os, "country": country, "region": region}
