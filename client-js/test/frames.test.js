import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { helloFrame, feedbackFrame, VERSION } from '../src/frames.js'
import { pageInfo, product } from '../src/page.js'
import { encode } from '../src/codec.js'

const VALID = JSON.parse(readFileSync(new URL('../../docs/frames/valid.json', import.meta.url), 'utf8'))
const fixture = name => VALID.find(f => f.name === name)
const hex = b => Buffer.from(b).toString('hex')

// a document-like object with <meta property=... content=...> tags
function doc ({ title = '', referrer = '', meta = {} } = {}) {
  return {
    title,
    referrer,
    querySelector (sel) {
      const m = /^meta\[property="(.+)"\]$/.exec(sel)
      return m && m[1] in meta ? { getAttribute: a => (a === 'content' ? meta[m[1]] : null) } : null
    }
  }
}
const OG = {
  'og:type': 'product',
  'og:title': 'Linen shirt',
  'product:price:amount': '59.90',
  'product:price:currency': 'EUR',
  'product:retailer_item_id': 'LS-01',
  'og:image': '/static/shirt.svg'
}

test('snippet version matches package.json', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  assert.equal(VERSION, pkg.version)
  assert.equal(VERSION, '0.1.0')
})

test('hello built from a browser-like page is byte-identical to the hello fixture', () => {
  const f = fixture('hello')
  const page = pageInfo(
    doc({ title: 'Linen shirt — Demo store', referrer: 'https://www.example.org/', meta: OG }),
    { href: 'https://shop.example/products/linen-shirt?utm_source=news', pathname: '/products/linen-shirt' }
  )
  const nav = { language: 'en-GB', doNotTrack: null, globalPrivacyControl: false }
  const win = { innerWidth: 1280, innerHeight: 800 }
  const date = { getTimezoneOffset: () => -60 }
  const frame = helloFrame('demo', 'v_4f9c2a7d1e', null, page, nav, win, date)
  assert.deepStrictEqual(frame, f.frame)
  assert.equal(hex(encode(frame)), f.hex)
})

test('hello with a stored session id, no product, west of UTC: byte-identical to hello_resume', () => {
  const f = fixture('hello_resume')
  const page = pageInfo(doc({ title: 'Cart' }), { href: 'https://shop.example/cart', pathname: '/cart' })
  const frame = helloFrame('demo', 'v_4f9c2a7d1e', 's_8b1d0c3f55', page,
    { language: 'en-US' }, { innerWidth: 390, innerHeight: 844 }, { getTimezoneOffset: () => 300 })
  assert.equal(hex(encode(frame)), f.hex)
})

test('hello reports dnt and gpc honestly (the server closes with 4004 on them)', () => {
  const page = pageInfo(doc(), { href: 'https://a.example/', pathname: '/' })
  const d = { getTimezoneOffset: () => 0 }
  assert.equal(helloFrame('s', 'v_12345678', null, page, { doNotTrack: '1' }, {}, d).dnt, true)
  assert.equal(helloFrame('s', 'v_12345678', null, page, {}, { doNotTrack: '1' }, d).dnt, true)
  assert.equal(helloFrame('s', 'v_12345678', null, page, { globalPrivacyControl: true }, {}, d).gpc, true)
  assert.equal(helloFrame('s', 'v_12345678', null, page, { language: 'x'.repeat(50) }, {}, d).lang.length, 35)
})

test('feedback frame is byte-identical to the fixture', () => {
  const f = fixture('feedback')
  assert.equal(hex(encode(feedbackFrame('exit-offer.1a2b3c', 'dismissed', 1767225702000))), f.hex)
})

const ogPage = meta => pageInfo(doc({ title: 'T', meta }), { href: 'https://shop.example/p', pathname: '/p' })

test('Open Graph product: read only when og:type is product, absent tags omitted, price a number', () => {
  assert.equal(ogPage({ 'og:title': 'X' }).prod, undefined)
  assert.equal(ogPage(Object.assign({}, OG, { 'og:type': 'website' })).prod, undefined)
  assert.deepStrictEqual(ogPage(OG).prod, { name: 'Linen shirt', price: 59.9, cur: 'EUR', sku: 'LS-01', img: '/static/shirt.svg' })
  assert.deepStrictEqual(ogPage({ 'og:type': ' Product ', 'og:title': 'Mug', 'product:price:amount': '12,50', 'product:category': 'Kitchen' }).prod,
    { name: 'Mug', price: 12.5, cat: 'Kitchen' }, 'og:type in any case; a decimal comma')
  assert.equal(ogPage({ 'og:type': 'product', 'product:price:amount': 'call us' }).prod, undefined, 'nothing usable: no prod at all')
  assert.deepStrictEqual(ogPage({ 'og:type': 'product', 'product:price:amount': '0' }).prod, { price: 0 }, 'free is a price')
  assert.equal(ogPage({ 'og:type': 'product', 'product:price:amount': '-5' }).prod, undefined, 'a negative price is not one')
  assert.equal(ogPage(OG).type, undefined, 'Open Graph does not set the page type')
})

test('Open Graph product: over-long values are cut to the protocol limits', () => {
  const p = ogPage({
    'og:type': 'product',
    'og:title': 'n'.repeat(300),
    'product:price:currency': 'EURO',
    'product:retailer_item_id': 's'.repeat(100),
    'og:image': 'https://cdn.example/' + 'i'.repeat(3000),
    'product:category': 'c'.repeat(200)
  }).prod
  assert.deepStrictEqual(Object.fromEntries(Object.entries(p).map(([k, v]) => [k, v.length])), { name: 256, cur: 3, sku: 64, img: 2048, cat: 128 })
})

test('kairos.page() props: type (cut to 32) and product, normalised like Open Graph; a given product wins over the tags', () => {
  const loc = { href: 'https://shop.example/p/1', pathname: '/p/1' }
  const d = doc({ title: 'Linen shirt', meta: OG })
  const p = pageInfo(d, loc, { type: 'product', product: { name: '  Linen shirt ', price: '59.90', cur: 'EUR', sku: 'LS-01', img: '/i.png', cat: 'Shirts', extra: 'x' } })
  assert.deepStrictEqual(p, {
    url: 'https://shop.example/p/1',
    path: '/p/1',
    title: 'Linen shirt',
    ref: '',
    type: 'product',
    prod: { name: 'Linen shirt', price: 59.9, cur: 'EUR', sku: 'LS-01', img: '/i.png', cat: 'Shirts' }
  })
  assert.deepStrictEqual(Object.keys(p), ['url', 'path', 'title', 'ref', 'type', 'prod'], 'key order as in the fixtures')
  assert.deepStrictEqual(pageInfo(d, loc, { product: { price: 19 } }).prod, { price: 19 }, 'the store\'s product, not the tags')
  assert.deepStrictEqual(pageInfo(d, loc, { product: { name: 'n'.repeat(300), cur: 'EURO', sku: 's'.repeat(70) } }).prod, { name: 'n'.repeat(256), cur: 'EUR', sku: 's'.repeat(64) })
  assert.equal(pageInfo(d, loc, { type: 't'.repeat(40) }).type, 't'.repeat(32))
  assert.equal(pageInfo(d, loc, { type: 'cart' }).prod.sku, 'LS-01', 'no product given: Open Graph')
  assert.equal(pageInfo(doc(), loc, { type: 'cart', product: {} }).prod, undefined, 'an empty product: no prod')
  assert.equal(pageInfo(d, loc, { product: 'LS-01' }).prod.name, 'Linen shirt', 'not an object: Open Graph')
  assert.equal('type' in pageInfo(d, loc, { type: '' }), false)
  assert.equal('type' in pageInfo(d, loc), false)
})

test('product(get): the prod map from a getter, or undefined', () => {
  const seen = []
  const p = product((k, og) => { seen.push([k, og]); return { name: 'Mug', price: 12 }[k] })
  assert.deepStrictEqual(p, { name: 'Mug', price: 12 })
  assert.deepStrictEqual(seen, [['name', 'og:title'], ['price', 'product:price:amount'], ['cur', 'product:price:currency'],
    ['sku', 'product:retailer_item_id'], ['img', 'og:image'], ['cat', 'product:category']])
  assert.equal(product(() => null), undefined)
  assert.equal(product(() => '   '), undefined)
})

test('a price written with a thousands separator is read as the whole amount', () => {
  assert.equal(ogPage({ 'og:type': 'product', 'product:price:amount': '1,299.00' }).prod.price, 1299)
  assert.equal(ogPage({ 'og:type': 'product', 'product:price:amount': '1.299,00' }).prod.price, 1299)
})

test('page strings are cut to the protocol limits (an over-long hello would be refused with 4002)', () => {
  const long = 'https://shop.example/?q=' + 'x'.repeat(5000)
  const p = pageInfo(doc({ title: 't'.repeat(999), referrer: long }), { href: long, pathname: '/' + 'p'.repeat(2000) })
  assert.equal(p.url.length, 2048)
  assert.equal(p.path.length, 1024)
  assert.equal(p.title.length, 256)
  assert.equal(p.ref.length, 2048)
  assert.equal(p.prod, undefined)
})

test('a reconnection within the page load says so, the first hello does not', () => {
  const d = new Date(0)
  const page = { url: 'http://x/', path: '/', title: '', ref: '' }
  assert.equal('re' in helloFrame('s', 'v_12345678', null, page, {}, {}, d), false)
  assert.equal(helloFrame('s', 'v_12345678', 's_12345678', page, {}, {}, d, true).re, true)
})
