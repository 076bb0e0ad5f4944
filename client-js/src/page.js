// The `page` map of hello and page_view: the URL, the page type and product
// the store declared with kairos.page(), and the page's Open Graph / product
// meta tags as they are (the server reads the product from them: wire.py
// page_fields). The server refuses over-long URLs and titles (it never
// truncates), so they are cut here to the protocol's limits.

const cut = (s, n) => String(s || '').slice(0, n)

// props: what the store passed to kairos.page(): { type, product: { name, price, cur, sku, img, cat } }
export function pageInfo (doc, loc, props = {}) {
  const meta = {}
  let n = 0
  // the tags a product is read from, bounded (16 tags of 512 characters) so a
  // hello stays far below the 16 KiB frame limit
  for (const m of doc.querySelectorAll('meta[property^="product:"],meta[property="og:type"],meta[property="og:title"],meta[property="og:image"]')) {
    if (n++ < 16) meta[cut(m.getAttribute('property'), 64)] = cut(m.getAttribute('content'), 512)
  }
  const page = { url: cut(loc.href, 2048), path: cut(loc.pathname, 1024), title: cut(doc.title, 256), ref: cut(doc.referrer, 2048) }
  if (props.type) page.type = cut(props.type, 32)
  if (props.product) page.prod = props.product
  page.meta = meta
  return page
}
