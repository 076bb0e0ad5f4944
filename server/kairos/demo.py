"""The demo storefront: a tiny shop that embeds the Kairos snippet like any
real store would (one ``<script src="/k.js" data-site="demo" async>`` in the
head, Open Graph product tags on product pages, ``kairos.track`` calls from
the shop's own JavaScript).

The app mounts the routes returned by :func:`demo_routes` at the root, so all
paths here are absolute. The shop's cart lives in the visitor's
``localStorage`` (see ``static/demo/store.js``); the server side only renders
the catalog.
"""

from __future__ import annotations

import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from . import demo_catalog as catalog
from .assets import NoSniff

STATIC_DIR = Path(__file__).resolve().parent / "static" / "demo"
STATIC_URL = "/demo/static"

# The demo store is also the proof that Kairos runs under a strict
# Content-Security-Policy: no inline script or style, nothing from elsewhere.
# The websocket is named by its host as well: CSP 3 lets 'self' cover ws(s) to
# the same host, older Safari does not.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self' ws://{host} wss://{host}; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'; object-src 'none'")
# What a Host header may hold (a name or an address, and a port); anything else
# stays out of the policy rather than be able to add directives to it.
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def content_security_policy(host: str) -> str:
    """The demo store's policy for a request to `host` (the Host header)."""
    if not _HOST.match(host):
        return CSP.replace(" ws://{host} wss://{host}", "")
    return CSP.format(host=host)


def _money(amount: float) -> str:
    """``49.0`` -> ``"49.00"`` (the form Open Graph's price:amount wants)."""
    return f"{amount:.2f}"


def _product_view(p: dict) -> dict:
    """A catalog product plus the derived strings the templates need."""
    return {
        **p,
        "amount": _money(p["price"]),
        "display_price": f"€{_money(p['price'])}",
        "currency": catalog.CURRENCY,
        "url": f"/demo/products/{p['slug']}",
        "image_url": f"{STATIC_URL}/img/{p['image']}",
        "category_name": (catalog.category(p["category"]) or {}).get("name", ""),
    }


def _category_view(c: dict) -> dict:
    return {**c, "url": f"/demo/category/{c['slug']}"}


def demo_routes(templates: Jinja2Templates) -> list[BaseRoute]:
    """The demo store's routes, to be mounted at the application's root."""

    def render(request: Request, name: str, context: dict | None = None, status_code: int = 200) -> Response:
        ctx = {
            "categories": [_category_view(c) for c in catalog.CATEGORIES],
            "currency": catalog.CURRENCY,
            "free_shipping_over": f"€{catalog.FREE_SHIPPING_OVER:g}",
            "static": STATIC_URL,
            # Snippet options to try on any demo page: ?consent=required waits for
            # kairos.consent(true); ?vid=cookie keeps the visitor id in a cookie.
            "consent_required": request.query_params.get("consent") == "required",
            "vid_cookie": request.query_params.get("vid") == "cookie",
        }
        ctx.update(context or {})
        response = templates.TemplateResponse(request, name, ctx, status_code=status_code)
        response.headers["Content-Security-Policy"] = content_security_policy(request.headers.get("host", ""))
        return response

    def not_found(request: Request, what: str = "page") -> Response:
        return render(request, "store/404.html", {"what": what}, status_code=404)

    async def home(request: Request) -> Response:
        return render(
            request,
            "store/home.html",
            {"products": [_product_view(p) for p in catalog.PRODUCTS], "page_type": "home"},
        )

    async def category_page(request: Request) -> Response:
        c = catalog.category(request.path_params["slug"])
        if c is None:
            return not_found(request, "category")
        return render(
            request,
            "store/category.html",
            {
                "category": _category_view(c),
                "products": [_product_view(p) for p in catalog.products_in(c["slug"])],
            },
        )

    async def product_page(request: Request) -> Response:
        p = catalog.product(request.path_params["slug"])
        if p is None:
            return not_found(request, "product")
        view = _product_view(p)
        # Open Graph wants an absolute image URL.
        view["image_abs"] = str(request.base_url).rstrip("/") + view["image_url"]
        related = [_product_view(o) for o in catalog.products_in(p["category"]) if o["slug"] != p["slug"]]
        c = catalog.category(p["category"])
        return render(
            request,
            "store/product.html",
            {"product": view, "related": related, "category": _category_view(c) if c else None},
        )

    async def cart(request: Request) -> Response:
        return render(request, "store/cart.html")

    async def checkout(request: Request) -> Response:
        return render(request, "store/checkout.html")

    async def thanks(request: Request) -> Response:
        return render(request, "store/thanks.html")

    async def to_home(request: Request) -> Response:
        return RedirectResponse("/demo/", status_code=307)

    async def unknown(request: Request) -> Response:
        rest = request.path_params.get("rest", "")
        if rest.endswith("/") and rest.strip("/"):
            # /demo/cart/ -> /demo/cart (the catch-all would otherwise hide
            # Starlette's own trailing-slash redirect).
            return RedirectResponse("/demo/" + rest.strip("/"), status_code=307)
        return not_found(request)

    return [
        Route("/demo", to_home, methods=["GET", "HEAD"], name="demo_root"),
        Route("/demo/", home, methods=["GET", "HEAD"], name="demo_home"),
        Route("/demo/category/{slug}", category_page, methods=["GET", "HEAD"], name="demo_category"),
        Route("/demo/products/{slug}", product_page, methods=["GET", "HEAD"], name="demo_product"),
        Route("/demo/cart", cart, methods=["GET", "HEAD"], name="demo_cart"),
        Route("/demo/checkout", checkout, methods=["GET", "HEAD"], name="demo_checkout"),
        Route("/demo/thanks", thanks, methods=["GET", "HEAD"], name="demo_thanks"),
        Mount(STATIC_URL, app=NoSniff(StaticFiles(directory=STATIC_DIR)), name="demo_static"),
        # Anything else under /demo/ gets the shop's own 404 page.
        Route("/demo/{rest:path}", unknown, methods=["GET", "HEAD"], name="demo_unknown"),
    ]
