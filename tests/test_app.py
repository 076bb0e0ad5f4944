"""The routes app.py wires that no other module owns: the snippet's two files."""

from __future__ import annotations

import httpx

from kairos.app import create_app
from kairos.settings import Settings


def client_for(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings)), base_url="http://testserver")


async def test_the_snippet_and_its_overlay_file_are_served_alike_from_beside_each_other(tmp_path):
    (tmp_path / "k.js").write_text("/* k */")
    (tmp_path / "k-overlay.js").write_text("/* overlay */")
    async with client_for(Settings(snippet_path=tmp_path / "k.js")) as c:
        k, overlay = await c.get("/k.js"), await c.get("/k-overlay.js")
    assert (k.status_code, k.text, overlay.status_code, overlay.text) == (200, "/* k */", 200, "/* overlay */")
    for r in (k, overlay):
        assert r.headers["content-type"].startswith("text/javascript")
        assert r.headers["cache-control"] == "public, max-age=300"


async def test_an_unbuilt_overlay_file_is_a_503_that_says_how_to_build_it(tmp_path):
    (tmp_path / "k.js").write_text("/* k */")
    async with client_for(Settings(snippet_path=tmp_path / "k.js")) as c:
        r = await c.get("/k-overlay.js")
    assert r.status_code == 503
    assert "make build" in r.text and "k-overlay.js" in r.text
