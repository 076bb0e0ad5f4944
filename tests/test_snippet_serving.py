"""The snippet as it travels: the precompressed file each request accepts (kairos.assets).

The budget for k.js is counted in compressed bytes, so these tests hold the
server to sending them: brotli or gzip as the request's Accept-Encoding
allows (RFC 9110 §12.5.3), never a stale variant, with headers that keep
caches from mixing the variants up. The last test checks it in Chromium.
"""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, connected
from kairos.app import create_app
from kairos.assets import choose_coding
from kairos.settings import Settings

DIST = ROOT / "client-js" / "dist"
PRODUCT = "/demo/products/linen-shirt"
# Brotli is not in the standard library: the test variant is marked bytes, and
# the test checks they are passed through untouched. Chromium decodes the real one.
FAKE_BR = b"\x0b\x80brotli-bytes-for-the-test"
T0_NS = 1_700_000_000 * 10**9


# --- choosing the coding: a pure function ------------------------------------

BOTH = ("br", "gzip")


@pytest.mark.parametrize("header, available, expected", [
    # what browsers send
    ("gzip, deflate, br, zstd", BOTH, "br"),
    ("gzip, deflate", BOTH, "gzip"),
    ("deflate", BOTH, "identity"),
    # absent or empty: identity
    (None, BOTH, "identity"),
    ("", BOTH, "identity"),
    ("  ", BOTH, "identity"),
    # q=0 means not acceptable
    ("br;q=0, gzip", BOTH, "gzip"),
    ("br;q=0, gzip;q=0", BOTH, "identity"),
    ("*;q=0", BOTH, "identity"),
    ("identity;q=0, *;q=0", BOTH, "identity"),  # nothing acceptable: identity anyway, not a 406
    ("identity;q=0", ("gzip",), "identity"),
    ("identity;q=0, gzip;q=0", BOTH, "identity"),
    # q first, then our preference for ties
    ("gzip;q=0.5, br;q=0.1", BOTH, "gzip"),
    ("gzip;q=0.5, br;q=0.5", BOTH, "br"),
    ("gzip, br", BOTH, "br"),
    ("gzip;q=1.0, identity;q=0.5, *;q=0", BOTH, "gzip"),
    ("identity, gzip;q=0.9", BOTH, "identity"),
    ("gzip;q=0.001", BOTH, "gzip"),  # any named coding beats an identity not named
    # the wildcard: every coding not named, identity included
    ("*", BOTH, "br"),
    ("br;q=0, *", BOTH, "gzip"),
    ("*;q=0, gzip", BOTH, "gzip"),
    ("gzip;q=0.5, *;q=0.8", BOTH, "br"),
    ("*;q=0.5, identity", BOTH, "identity"),
    # case-insensitive, whitespace and empty list elements
    ("GZIP, BR", BOTH, "br"),
    ("Br;Q=0, GZip", BOTH, "gzip"),
    ("  gzip ;  q=0.8 ,, ,br ; q=0.9  ", BOTH, "br"),
    ("x-gzip", BOTH, "gzip"),
    # only the variants on disk
    ("br", ("gzip",), "identity"),
    ("br, gzip", ("gzip",), "gzip"),
    ("br, gzip", (), "identity"),
    # a weight that is not a qvalue: as if the coding were not named
    ("br;q=high, gzip", BOTH, "gzip"),
    ("br;q=1.5, gzip", BOTH, "gzip"),
    ("br;q=0.0001, gzip", BOTH, "gzip"),
    ("br;q=, gzip;q=0.2", BOTH, "gzip"),
    # a coding named twice keeps its lower weight: a refusal is not outweighed
    ("br, br;q=0, gzip", BOTH, "gzip"),
])
def test_the_coding_follows_accept_encoding(header, available, expected):
    assert choose_coding(header, available) == expected


# --- over HTTP -----------------------------------------------------------------

K_JS = ("/* kairos */ (function(){ var x = 'the snippet'; " * 60 + "})();\n").encode()
OVERLAY_JS = ("/* overlay */ (function(){ var y = 'the overlay'; " * 20 + "})();\n").encode()


def build(directory: Path, name: str, plain: bytes, *, gz: bool = True, br: bool = True) -> dict[str, bytes]:
    """A built file and its siblings, all stamped with the same mtime; what each holds."""
    files = {"identity": plain}
    (directory / name).write_bytes(plain)
    if gz:
        files["gzip"] = gzip.compress(plain, mtime=0)
        (directory / f"{name}.gz").write_bytes(files["gzip"])
    if br:
        files["br"] = FAKE_BR + name.encode()
        (directory / f"{name}.br").write_bytes(files["br"])
    for suffix in ("", ".gz", ".br"):
        if (directory / f"{name}{suffix}").exists():
            os.utime(directory / f"{name}{suffix}", ns=(T0_NS, T0_NS))
    return files


@pytest.fixture
def built(tmp_path: Path) -> dict[str, dict[str, bytes]]:
    return {"/k.js": build(tmp_path, "k.js", K_JS), "/k-overlay.js": build(tmp_path, "k-overlay.js", OVERLAY_JS)}


def client_for(directory: Path, **settings) -> httpx.AsyncClient:
    app = create_app(Settings(snippet_path=directory / "k.js", **settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def fetch(c: httpx.AsyncClient, path: str, accept: str | None, method: str = "GET",
                **headers: str) -> tuple[httpx.Response, bytes]:
    """The response and its body exactly as sent (httpx would otherwise decode gzip)."""
    sent = {"If-None-Match": headers["if_none_match"]} if "if_none_match" in headers else {}
    if accept is not None:
        sent["Accept-Encoding"] = accept
    request = c.build_request(method, path, headers=sent)
    if accept is None:
        del request.headers["Accept-Encoding"]  # httpx adds its own otherwise
    r = await c.send(request, stream=True)
    raw = b"".join([chunk async for chunk in r.aiter_raw()])
    await r.aclose()
    return r, raw


@pytest.mark.parametrize("path", ["/k.js", "/k-overlay.js"])
@pytest.mark.parametrize("accept, coding", [
    ("gzip, deflate, br", "br"),
    ("gzip, deflate", "gzip"),
    ("deflate", "identity"),
    (None, "identity"),
    ("br;q=0, gzip", "gzip"),
    ("gzip;q=0.5, br;q=0.1", "gzip"),
    ("*;q=0", "identity"),
])
async def test_each_file_is_sent_in_the_best_coding_the_request_accepts(tmp_path, built, path, accept, coding):
    async with client_for(tmp_path) as c:
        r, raw = await fetch(c, path, accept)
    assert r.status_code == 200
    assert r.headers.get("content-encoding") == (None if coding == "identity" else coding)
    assert raw == built[path][coding]
    assert r.headers["content-length"] == str(len(raw))
    assert r.headers["vary"] == "Accept-Encoding"
    assert r.headers["content-type"] == "text/javascript; charset=utf-8"
    assert r.headers["cache-control"] == "public, max-age=300"


async def test_the_gzip_body_decompresses_to_the_plain_file_byte_for_byte(tmp_path, built):
    async with client_for(tmp_path) as c:
        r, raw = await fetch(c, "/k.js", "gzip")
        _, plain = await fetch(c, "/k.js", "identity")
    assert r.headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw) == K_JS == plain
    assert len(raw) < len(K_JS) / 5


def test_the_built_precompressed_files_hold_the_built_snippet():
    for name in ("k.js", "k-overlay.js"):
        plain = DIST / name
        assert plain.is_file(), f"{plain} is missing: run `make build`"
        assert gzip.decompress((DIST / f"{name}.gz").read_bytes()) == plain.read_bytes()
        # not older: the server would not send them otherwise
        for suffix in (".gz", ".br"):
            assert (DIST / f"{name}{suffix}").stat().st_mtime_ns >= plain.stat().st_mtime_ns


async def test_the_built_snippet_is_served_as_built():
    # the real dist files, through the default settings' path
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(Settings())),
                                 base_url="http://testserver") as c:
        sent = {accept: await fetch(c, "/k.js", accept) for accept in ("br", "gzip", "identity")}
    for accept, suffix in (("br", ".br"), ("gzip", ".gz"), ("identity", "")):
        r, raw = sent[accept]
        assert raw == (DIST / f"k.js{suffix}").read_bytes()
        assert r.headers["content-length"] == str(len(raw))
    assert len(sent["br"][1]) < len(sent["gzip"][1]) < len(sent["identity"][1])


async def test_a_variant_older_than_the_plain_file_is_never_sent_and_is_reported_once(tmp_path, built, caplog):
    # a new k.js beside the .br and .gz of an earlier build
    new = K_JS.replace(b"the snippet", b"a new build")
    (tmp_path / "k.js").write_bytes(new)
    os.utime(tmp_path / "k.js", ns=(T0_NS + 10**9, T0_NS + 10**9))
    caplog.set_level(logging.WARNING, logger="kairos")
    async with client_for(tmp_path) as c:
        for _ in range(3):
            r, raw = await fetch(c, "/k.js", "br, gzip")
            assert (r.headers.get("content-encoding"), raw) == (None, new)
            assert r.headers["vary"] == "Accept-Encoding"
        stale = [rec.getMessage() for rec in caplog.records if "older than" in rec.getMessage()]
        assert len(stale) == 2 and any("k.js.br" in m for m in stale) and any("k.js.gz" in m for m in stale)

        # the build writes the gzip again: it is sent, and the old .br still is not
        (tmp_path / "k.js.gz").write_bytes(gzip.compress(new))
        os.utime(tmp_path / "k.js.gz", ns=(T0_NS + 10**9, T0_NS + 10**9))
        r, raw = await fetch(c, "/k.js", "br, gzip")
        assert r.headers["content-encoding"] == "gzip" and gzip.decompress(raw) == new
    assert len([rec for rec in caplog.records if "older than" in rec.getMessage()]) == 2


async def test_a_missing_variant_falls_back_to_the_next_coding(tmp_path):
    files = build(tmp_path, "k.js", K_JS, br=False)
    async with client_for(tmp_path) as c:
        r, raw = await fetch(c, "/k.js", "br, gzip")
    assert (r.headers["content-encoding"], raw) == ("gzip", files["gzip"])


async def test_each_variant_has_its_own_etag_and_a_matching_one_gets_a_304(tmp_path, built):
    async with client_for(tmp_path) as c:
        sent = {accept: (await fetch(c, "/k.js", accept))[0] for accept in ("br", "gzip", "identity")}
        tags = {accept: r.headers["etag"] for accept, r in sent.items()}
        assert len(set(tags.values())) == 3, tags
        # even two variants of one size and one mtime
        (tmp_path / "k.js.br").write_bytes(b"b" * len(built["/k.js"]["gzip"]))
        os.utime(tmp_path / "k.js.br", ns=(T0_NS, T0_NS))
        br, _ = await fetch(c, "/k.js", "br")
        assert br.headers["etag"] != tags["gzip"]
        (tmp_path / "k.js.br").write_bytes(built["/k.js"]["br"])
        os.utime(tmp_path / "k.js.br", ns=(T0_NS, T0_NS))

        for accept, tag in tags.items():
            r, raw = await fetch(c, "/k.js", accept, if_none_match=tag)
            assert (r.status_code, raw) == (304, b"")
            assert (r.headers["etag"], r.headers["vary"], r.headers["cache-control"]) == (
                tag, "Accept-Encoding", "public, max-age=300")
        # a weak form and a list of tags match too
        r, _ = await fetch(c, "/k.js", "gzip", if_none_match=f'"other", W/{tags["gzip"]}')
        assert r.status_code == 304
        # the gzip's tag does not answer for the br: the client has not got those bytes
        r, raw = await fetch(c, "/k.js", "br", if_none_match=tags["gzip"])
        assert (r.status_code, r.headers["content-encoding"], raw) == (200, "br", built["/k.js"]["br"])

        # a new build changes the tag
        build(tmp_path, "k.js", K_JS + b"//", br=False, gz=False)
        os.utime(tmp_path / "k.js", ns=(T0_NS + 10**9, T0_NS + 10**9))
        r, raw = await fetch(c, "/k.js", "identity", if_none_match=tags["identity"])
        assert (r.status_code, raw) == (200, K_JS + b"//")


async def test_head_sends_the_headers_of_the_variant_and_no_body(tmp_path, built):
    async with client_for(tmp_path) as c:
        for accept, coding in (("br", "br"), ("gzip", "gzip"), ("identity", "identity")):
            head, raw = await fetch(c, "/k.js", accept, method="HEAD")
            get, _ = await fetch(c, "/k.js", accept)
            assert (head.status_code, raw) == (200, b"")
            assert head.headers["content-length"] == str(len(built["/k.js"][coding]))
            for name in ("content-encoding", "etag", "vary", "content-type", "cache-control"):
                assert head.headers.get(name) == get.headers.get(name), name


async def test_an_unbuilt_snippet_is_still_a_503_that_says_how_to_build_it(tmp_path):
    # variants without their plain file are no snippet either
    (tmp_path / "k.js.gz").write_bytes(gzip.compress(K_JS))
    async with client_for(tmp_path) as c:
        r, raw = await fetch(c, "/k.js", "gzip")
    assert r.status_code == 503
    assert b"make build" in raw and b"k.js" in raw
    assert "content-encoding" not in r.headers


# --- in Chromium -----------------------------------------------------------------


@pytest.mark.browser
def test_chromium_gets_the_built_snippet_compressed_and_runs_it(serve, page):
    server = serve("memory")
    with page.expect_response(lambda r: r.url == server.base + "/k.js") as got:
        page.goto(server.base + PRODUCT)
    k = got.value
    headers = k.all_headers()
    coding = headers.get("content-encoding")
    assert coding in ("br", "gzip"), f"k.js came {coding or 'uncompressed'}: {headers}"
    assert headers["vary"] == "Accept-Encoding"
    sent = (DIST / ("k.js.br" if coding == "br" else "k.js.gz")).read_bytes()
    assert headers["content-length"] == str(len(sent))
    # Chromium decoded the bytes it was sent into the built file, byte for byte
    assert k.body() == (DIST / "k.js").read_bytes()

    connected(page)
    assert page.evaluate("() => typeof window.kairos.version") == "string"
    timing = page.evaluate("""() => {
        const e = performance.getEntriesByType('resource').find(e => new URL(e.name).pathname === '/k.js');
        return [e.encodedBodySize, e.decodedBodySize];
    }""")
    assert timing == [len(sent), (DIST / "k.js").stat().st_size]
