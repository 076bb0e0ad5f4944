"""Every file the server sends from disk says `X-Content-Type-Options: nosniff`.

A browser that sniffs may run a file served as text, or a stylesheet as a
script; with nosniff it takes the declared type or refuses the file.
"""

from __future__ import annotations

import httpx
import pytest

from conftest import Server

STATIC = [
    "/static/dashboard/dashboard.js", "/static/dashboard/dashboard.css",
    "/demo/static/store.js", "/demo/static/store.css", "/k.js", "/k-overlay.js",
]


@pytest.fixture(scope="module")
def server(redis_url: str):
    s = Server("memory", redis_url)
    yield s
    s.stop()


@pytest.mark.parametrize("path", STATIC)
@pytest.mark.parametrize("encoding", [None, "br", "gzip"])
def test_static_files_are_sent_nosniff(server, path, encoding):
    headers = {"Accept-Encoding": encoding} if encoding else {"Accept-Encoding": "identity"}
    r = httpx.get(server.base + path, headers=headers, timeout=5)
    assert r.status_code == 200
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", STATIC)
def test_a_revalidated_static_file_is_sent_nosniff_too(server, path):
    first = httpx.get(server.base + path, timeout=5)
    r = httpx.get(server.base + path, headers={"If-None-Match": first.headers["etag"]}, timeout=5)
    assert r.status_code in (200, 304)
    assert r.headers["x-content-type-options"] == "nosniff"



@pytest.mark.parametrize("path", ["/static/dashboard/nothing.js", "/demo/static/nothing.css"])
def test_a_missing_static_file_is_a_404_sent_nosniff(server, path):
    r = httpx.get(server.base + path, timeout=5)
    assert r.status_code == 404 and r.text == "Not Found"
    assert r.headers["x-content-type-options"] == "nosniff"
