import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { helloFrame, feedbackFrame, VERSION } from '../src/frames.js'
import { pageInfo } from '../src/page.js'
import { encode } from '../src/codec.js'

const VALID = JSON.parse(readFileSync(new URL('../../docs/frames/valid.json', import.meta.url), 'utf8'))
const fixture = name => VALID.find(f => f.name === name)
const hex = b => Buffer.from(b).toString('hex')

// a document-like object with <meta property=... content=...> tags
function doc ({ title = '', referrer = '', meta = {} } = {}) {
  return {
    title,
    referrer,
    // the snippet's selector: og:type, og:title, og:image and every product:* tag, in document order
    querySelectorAll (sel) {
      assert.equal(sel, 'meta[property^="product:"],meta[property="og:type"],meta[property="og:title"],meta[property="og:image"]')
      return Object.keys(meta).filter(k => /^product:|^og:(type|title|image)$/.test(k))
        .map(k => ({ getAttribute: a => (a === 'property' ? k : a === 'content' ? meta[k] : null) }))
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
  const date = { getTimezoneOffset: () => -60 }
  const frame = helloFrame('demo', 'v_4f9c2a7d1e', null, page, nav, date)
  assert.deepStrictEqual(frame, f.frame)
  assert.equal(hex(encode(frame)), f.hex)
})

test('hello with a stored session id, no product, west of UTC: byte-identical to hello_resume', () => {
  const f = fixture('hello_resume')
  const page = pageInfo(doc({ title: 'Cart' }), { href: 'https://shop.example/cart', pathname: '/cart' })
  const frame = helloFrame('demo', 'v_4f9c2a7d1e', 's_8b1d0c3f55', page, { language: 'en-US' }, { getTimezoneOffset: () => 300 })
  assert.equal(hex(encode(frame)), f.hex)
})

test('hello: the language cut to the protocol\'s 35 characters; no dnt or gpc (the server reads the headers)', () => {
  const page = pageInfo(doc(), { href: 'https://a.example/', pathname: '/' })
  const d = { getTimezoneOffset: () => 0 }
  const f = helloFrame('s', 'v_12345678', null, page, { language: 'x'.repeat(50), doNotTrack: '1', globalPrivacyControl: true }, d)
  assert.equal(f.lang.length, 35)
  assert.equal('dnt' in f || 'gpc' in f, false)
})

test('feedback frame is byte-identical to the fixture', () => {
  const f = fixture('feedback')
  assert.equal(hex(encode(feedbackFrame('exit-offer.1a2b3c', 'dismissed', 1767225702000))), f.hex)
})

const ogPage = meta => pageInfo(doc({ title: 'T', meta }), { href: 'https://shop.example/p', pathname: '/p' })

test('meta tags go as they are (the server reads the product from them): og:type, og:title, og:image, product:*', () => {
  assert.deepStrictEqual(ogPage(OG).meta, OG)
  assert.deepStrictEqual(ogPage({ 'og:description': 'd', 'og:locale': 'de', 'og:title': 'X', 'product:brand': 'B' }).meta,
    { 'og:title': 'X', 'product:brand': 'B' }, 'only the tags a product is read from')
  assert.deepStrictEqual(ogPage({}).meta, {})
  assert.equal(ogPage(OG).prod, undefined, 'no product of its own: the server reads the tags')
  assert.equal(ogPage(OG).type, undefined, 'Open Graph does not set the page type')
})

test('meta tags are bounded: 16 tags, 512 characters each, so a hello stays far below the frame limit', () => {
  const many = {}
  for (let i = 0; i < 40; i++) many['product:x' + i] = 'v'.repeat(3000)
  const meta = ogPage(many).meta
  assert.equal(Object.keys(meta).length, 16)
  assert.ok(Object.values(meta).every(v => v.length === 512))
  assert.ok(encode(helloFrame('demo', 'v_12345678', null, ogPage(many), {}, new Date())).length < 10000)
})

test('kairos.page() props: type (cut to 32) and the store\'s product as given (the server normalises it)', () => {
  const loc = { href: 'https://shop.example/p/1', pathname: '/p/1' }
  const d = doc({ title: 'Linen shirt', meta: OG })
  const product = { name: '  Linen shirt ', price: '59,90', sku: 'LS-01' }
  const p = pageInfo(d, loc, { type: 'product', product })
  assert.deepStrictEqual(p, { url: 'https://shop.example/p/1', path: '/p/1', title: 'Linen shirt', ref: '', type: 'product', prod: product, meta: OG })
  assert.deepStrictEqual(Object.keys(encode(p)).length > 0, true)
  assert.equal(pageInfo(d, loc, { type: 't'.repeat(40) }).type, 't'.repeat(32))
  assert.equal(pageInfo(d, loc, { type: '' }).type, undefined)
  assert.equal(pageInfo(d, loc).type, undefined)
})

test('page strings are cut to the protocol limits (an over-long hello would be refused with 4002)', () => {
  const long = 'https://shop.example/?q=' + 'x'.repeat(5000)
  const p = pageInfo(doc({ title: 't'.repeat(999), referrer: long }), { href: long, pathname: '/' + 'p'.repeat(2000) })
  assert.equal(p.url.length, 2048)
  assert.equal(p.path.length, 1024)
  assert.equal(p.title.length, 256)
  assert.equal(p.ref.length, 2048)
})

test('a reconnection within the page load says so, the first hello does not', () => {
  const d = new Date(0)
  const page = { url: 'http://x/', path: '/', title: '', ref: '' }
  assert.equal('re' in helloFrame('s', 'v_12345678', null, page, {}, d), false)
  assert.equal(helloFrame('s', 'v_12345678', 's_12345678', page, {}, d, true).re, true)
})

test('a hidden feedback carries its why, byte-identical to the fixture', () => {
  const f = fixture('feedback_hidden')
  assert.equal(hex(encode(feedbackFrame('basket-saved.7c6b5a', 'hidden', 1767225703000, 'page'))), f.hex)
})
