"""Where a visit came from: one word from its first page's referrer and URL.

Pure. `traffic_source(referrer, url)` is one of

    paid      an ad click: a paid UTM medium, or an ad network's click id in the URL
    email     a newsletter or mail: UTM medium/source "email", Mailchimp's mc_cid, a webmail host
    search    a search engine's result page (organic), or UTM medium "organic"
    social    a social network, or a social UTM medium, or fbclid / igshid on the URL
    referral  any other site (or UTM medium "referral" / "affiliate")
    internal  the store's own pages (a session that timed out and went on from a link)
    direct    no referrer and no campaign tag: typed, bookmarked, or a link from an app

UTM tags win over the referrer, as in Google Analytics: a store that tags its
newsletter links knows better than a referrer that webmail often strips.
The order of the checks follows GA4's default channel group
(https://support.google.com/analytics/answer/9756891): paid before the rest.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

SOURCES = ("paid", "email", "search", "social", "referral", "internal", "direct")

# GA4's "Paid Search / Paid Social / Paid Other": medium ^(.*cp.*|ppc|retargeting|paid.*)$;
# display, banner and cpm are GA4's "Display" channel, also paid for.
_PAID_MEDIUM = re.compile(r"^(.*cp.*|ppc|retargeting|paid.*|display|banner|interstitial)$")
_EMAIL = re.compile(r"^(email|e-mail|e_mail|e mail|newsletter)$")
_SOCIAL_MEDIUM = re.compile(r"^(social|social-network|social-media|sm|social network|social media)$")
# Click ids that only ads add (auto-tagging): Google Ads (gclid, and gbraid / wbraid
# on iOS), Google Display & Video 360 (dclid), Microsoft Advertising (msclkid),
# TikTok Ads (ttclid), LinkedIn Ads (li_fat_id). Not fbclid: Facebook adds it to
# every outbound link, ads or not, so it says "social", not "paid".
_AD_CLICK_IDS = frozenset({"gclid", "gbraid", "wbraid", "dclid", "msclkid", "ttclid", "li_fat_id"})
_SOCIAL_CLICK_IDS = frozenset({"fbclid", "igshid"})
# Mailchimp adds mc_cid / mc_eid to the links of its campaigns.
_EMAIL_IDS = frozenset({"mc_cid", "mc_eid"})

# Hosts by class. `name.*` matches the name under any country domain (google.de,
# google.co.uk); `name.` any host that starts with it (webmail.example.net); a
# plain entry matches that domain and its subdomains. Drawn from
# the engines and networks of Matomo's searchengine-and-social-list
# (github.com/matomo-org/searchengine-and-social-list) and GA4's source categories,
# cut to the ones that send shoppers in numbers; anything else is a referral.
SEARCH_HOSTS = (
    "google.*", "bing.com", "duckduckgo.com", "search.yahoo.com", "search.yahoo.co.jp", "yandex.*", "ya.ru", "baidu.com",
    "ecosia.org", "search.brave.com", "qwant.com", "startpage.com", "naver.com", "seznam.cz", "ask.com",
    "search.aol.com", "sogou.com", "so.com", "daum.net", "kagi.com", "yippy.com", "dogpile.com", "mojeek.com",
)
SOCIAL_HOSTS = (
    "facebook.com", "fb.com", "fb.me", "messenger.com", "instagram.com", "threads.net", "t.co", "twitter.com",
    "x.com", "linkedin.com", "lnkd.in", "pinterest.*", "pin.it", "reddit.com", "tiktok.com", "youtube.com",
    "youtu.be", "snapchat.com", "tumblr.com", "bsky.app", "mastodon.social", "vk.com", "ok.ru", "weibo.com",
    "whatsapp.com", "wa.me", "t.me", "telegram.org", "discord.com", "quora.com", "xing.com", "line.me",
)
# Webmail that passes a referrer (many clients send none, and then only a UTM tag tells).
EMAIL_HOSTS = (
    "mail.google.com", "outlook.live.com", "outlook.office.com", "outlook.office365.com", "mail.yahoo.com",
    "mail.aol.com", "mail.proton.me", "mail.zoho.com", "webmail.", "mail.yandex.ru", "e.mail.ru",
)
# UTM sources by name, for a tag without a medium (utm_source=google).
_SEARCH_NAMES = frozenset({"google", "bing", "duckduckgo", "yahoo", "yandex", "baidu", "ecosia", "brave", "qwant",
                           "startpage", "naver", "seznam", "kagi"})
_SOCIAL_NAMES = frozenset({"facebook", "fb", "instagram", "ig", "twitter", "x", "linkedin", "pinterest", "reddit",
                           "tiktok", "youtube", "snapchat", "threads", "bluesky", "whatsapp", "telegram"})


def _matches(host: str, pattern: str) -> bool:
    if pattern.endswith("."):
        return host.startswith(pattern)
    if pattern.endswith(".*"):
        # name.tld or name.co.uk, with any subdomain in front; the country part is
        # one or two short labels (so google.evil-site.com is not Google)
        labels = host.split(".")
        name = pattern[:-2]
        for i, label in enumerate(labels):
            rest = labels[i + 1:]
            if label == name and 1 <= len(rest) <= 2 and all(0 < len(x) <= 3 for x in rest):
                return True
        return False
    return host == pattern or host.endswith("." + pattern)


def host_class(host: str) -> str:
    """search, social or email for a known host; referral for any other."""
    host = host.lower().rstrip(".")
    for cls, patterns in (("email", EMAIL_HOSTS), ("search", SEARCH_HOSTS), ("social", SOCIAL_HOSTS)):
        if any(_matches(host, p) for p in patterns):
            return cls
    return "referral"


def _host(url: str) -> str:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:  # a malformed IPv6 literal, say
        return ""
    return host.lower().removeprefix("www.")


def traffic_source(referrer: str, url: str) -> str:
    """The class of a visit, from its first page's referrer and URL (with its query string)."""
    try:
        query = dict((k.lower(), v.strip().lower()) for k, v in parse_qsl(urlsplit(url).query))
    except ValueError:
        query = {}
    medium, source = query.get("utm_medium", ""), query.get("utm_source", "")
    if _PAID_MEDIUM.match(medium) or _AD_CLICK_IDS & query.keys():
        return "paid"
    if _EMAIL.match(medium) or _EMAIL.match(source) or _EMAIL_IDS & query.keys():
        return "email"
    if medium == "organic":
        return "search"
    if _SOCIAL_MEDIUM.match(medium) or _SOCIAL_CLICK_IDS & query.keys():
        return "social"
    if medium in ("referral", "affiliate", "affiliates"):
        return "referral"
    if source and not medium:
        if source in _SEARCH_NAMES:
            return "search"
        if source in _SOCIAL_NAMES:
            return "social"
    ref_host = _host(referrer)
    if ref_host:
        if ref_host == _host(url):
            return "internal"
        return host_class(ref_host)
    if source or medium:
        return "referral"  # tagged, but with words no channel claims: a campaign from somewhere
    return "direct"
