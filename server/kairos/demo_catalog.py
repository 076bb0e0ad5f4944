"""The demo store's catalog: plain data, no behaviour.

Prices are in EUR. ``image`` is a file name under ``static/demo/img/`` (small
inline SVG illustrations shipped with the package; the demo never fetches
anything from the internet).
"""

from __future__ import annotations

CURRENCY = "EUR"
# The store's free-shipping threshold, in CURRENCY: the product pages say it, and
# examples/demo.yaml's cart-exit-shipping rule offers it (a test holds them together).
FREE_SHIPPING_OVER = 50

CATEGORIES: list[dict] = [
    {
        "slug": "shirts",
        "name": "Shirts",
        "blurb": "Breathable everyday shirts, cut for a relaxed fit.",
    },
    {
        "slug": "shoes",
        "name": "Shoes",
        "blurb": "Comfortable shoes built to be walked in, and resoled.",
    },
]

PRODUCTS: list[dict] = [
    {
        "slug": "linen-shirt",
        "sku": "KS-SH-001",
        "name": "Linen Shirt",
        "price": 49.00,
        "category": "shirts",
        "description": "A washed linen shirt in sky blue that gets softer with every wear.",
        "image": "linen-shirt.svg",
    },
    {
        "slug": "oxford-shirt",
        "sku": "KS-SH-002",
        "name": "Oxford Shirt",
        "price": 39.90,
        "category": "shirts",
        "description": "A classic button-down oxford in white cotton, for the office and the weekend.",
        "image": "oxford-shirt.svg",
    },
    {
        "slug": "canvas-sneaker",
        "sku": "KS-SO-001",
        "name": "Canvas Sneaker",
        "price": 59.00,
        "category": "shoes",
        "description": "Low-top sneakers in sturdy canvas with a natural rubber sole.",
        "image": "canvas-sneaker.svg",
    },
    {
        "slug": "leather-boot",
        "sku": "KS-SO-002",
        "name": "Leather Boot",
        "price": 129.00,
        "category": "shoes",
        "description": "A Goodyear-welted ankle boot in brown leather that lasts for years.",
        "image": "leather-boot.svg",
    },
]


def category(slug: str) -> dict | None:
    """The category with this slug, or None."""
    return next((c for c in CATEGORIES if c["slug"] == slug), None)


def product(slug: str) -> dict | None:
    """The product with this slug, or None."""
    return next((p for p in PRODUCTS if p["slug"] == slug), None)


def products_in(category_slug: str) -> list[dict]:
    """The products of a category, in catalog order."""
    return [p for p in PRODUCTS if p["category"] == category_slug]
