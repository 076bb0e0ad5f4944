// The `page` map of hello and page_view, with the product from Open Graph tags.
// The server refuses over-long strings (it never truncates), so they are cut
// here to the protocol's limits: a shortened URL beats a refused hello.

const cut = (s, n) => String(s || '').slice(0, n)

function meta (doc, prop) {
  const el = doc.querySelector('meta[property="' + prop + '"]')
  const v = el && el.getAttribute('content')
  return v ? v.trim() : ''
}

// key order as in docs/frames/valid.json
export function product (doc) {
  if (meta(doc, 'og:type').toLowerCase() !== 'product') return undefined
  const p = {}
  const name = meta(doc, 'og:title')
  const price = parseFloat(meta(doc, 'product:price:amount').replace(',', '.'))
  const cur = meta(doc, 'product:price:currency')
  const sku = meta(doc, 'product:retailer_item_id')
  const img = meta(doc, 'og:image')
  if (name) p.name = cut(name, 256)
  if (price >= 0 && isFinite(price)) p.price = price
  if (cur) p.cur = cut(cur, 3)
  if (sku) p.sku = cut(sku, 64)
  if (img) p.img = cut(img, 2048)
  return Object.keys(p).length ? p : undefined
}

export function pageInfo (doc, loc) {
  const page = {
    url: cut(loc.href, 2048),
    path: cut(loc.pathname, 1024),
    title: cut(doc.title, 256),
    ref: cut(doc.referrer, 2048)
  }
  const prod = product(doc)
  if (prod) page.prod = prod
  return page
}
