// The `page` map of hello and page_view: the URL, the page type and product
// the store declared with kairos.page(), else the product from Open Graph tags.
// The server refuses over-long strings (it never truncates), so they are cut
// here to the protocol's limits: a shortened URL beats a refused hello.

const cut = (s, n) => String(s == null ? '' : s).trim().slice(0, n)

// product fields: [Open Graph property, length limit] (price is a number)
const OG = {
  name: ['og:title', 256],
  price: ['product:price:amount'],
  cur: ['product:price:currency', 3],
  sku: ['product:retailer_item_id', 64],
  img: ['og:image', 2048],
  cat: ['product:category', 128]
}

// The `prod` map from get(field) -> string, or undefined when it is empty.
export function product (get) {
  const p = {}
  for (const k in OG) {
    const v = cut(get(k, OG[k][0]), 2048)
    if (OG[k][1]) { if (v) p[k] = v.slice(0, OG[k][1]) } else {
      const i = Math.max(v.lastIndexOf('.'), v.lastIndexOf(','))
      const n = parseFloat(i < 0 ? v : v.slice(0, i).replace(/\D/g, '') + '.' + v.slice(i + 1))
      if (n >= 0 && isFinite(n)) p[k] = n
    }
  }
  for (const k in p) return p
}

function meta (doc, prop) {
  const el = doc.querySelector('meta[property="' + prop + '"]')
  return el && el.getAttribute('content')
}

// props: what the store passed to kairos.page(): { type, product: { name, price, cur, sku, img, cat } }
export function pageInfo (doc, loc, props) {
  props = props || {}
  const page = {
    url: cut(loc.href, 2048),
    path: cut(loc.pathname, 1024),
    title: cut(doc.title, 256),
    ref: cut(doc.referrer, 2048)
  }
  if (props.type) page.type = cut(props.type, 32)
  const given = props.product
  const prod = given && typeof given === 'object'
    ? product(k => given[k])
    : cut(meta(doc, 'og:type'), 16).toLowerCase() === 'product' ? product((k, og) => meta(doc, og)) : undefined
  if (prod) page.prod = prod
  return page
}
