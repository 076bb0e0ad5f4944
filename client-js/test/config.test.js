import { test } from 'node:test'
import assert from 'node:assert/strict'
import { gate, endpoint, readConfig, beaconUrl } from '../src/config.js'

test('privacy gate: a plain browser may connect', () => {
  assert.equal(gate({ doNotTrack: null }, {}, false, false), '')
  assert.equal(gate({ doNotTrack: 'unspecified', globalPrivacyControl: false }, {}), '')
  assert.equal(gate({ doNotTrack: '0' }, { doNotTrack: '0' }), '')
})

test('privacy gate: Do Not Track blocks, on navigator or on window', () => {
  assert.equal(gate({ doNotTrack: '1' }, {}), 'dnt')
  assert.equal(gate({}, { doNotTrack: '1' }), 'dnt')
  // even with consent given
  assert.equal(gate({ doNotTrack: '1' }, {}, true, true), 'dnt')
})

test('privacy gate: Global Privacy Control blocks', () => {
  assert.equal(gate({ globalPrivacyControl: true }, {}), 'gpc')
  assert.equal(gate({ globalPrivacyControl: true }, {}, true, true), 'gpc')
  assert.equal(gate({ globalPrivacyControl: 'true' }, {}), '', 'only the boolean true counts')
})

test('endpoint: derived from the script src, ws on an http page, wss on an https page', () => {
  assert.equal(endpoint('', 'http://kairos.example:8000/k.js', 'http://shop.example/p/1'), 'ws://kairos.example:8000/ws')
  assert.equal(endpoint('', 'https://kairos.example/static/k.js?v=3#x', 'https://shop.example/'), 'wss://kairos.example/ws')
  // same host when the tag uses a path-relative src
  assert.equal(endpoint('', '/k.js', 'https://shop.example/cart'), 'wss://shop.example/ws')
  assert.equal(endpoint('', '/k.js', 'http://localhost:8000/'), 'ws://localhost:8000/ws')
  // no src at all (inline): the page's host
  assert.equal(endpoint('', '', 'http://shop.example/a'), 'ws://shop.example/ws')
})

test('endpoint: TLS as the script came', () => {
  // script served over https on an http page: the server speaks TLS
  assert.equal(endpoint('', 'https://kairos.example/k.js', 'http://shop.example/'), 'wss://kairos.example/ws')
  // a script from http://localhost may run on an https page (browsers exempt
  // localhost from mixed-content blocking, for ws:// too)
  assert.equal(endpoint('', 'http://localhost:8000/k.js', 'https://shop.example/'), 'ws://localhost:8000/ws')
  assert.equal(endpoint('', 'HTTPS://kairos.example/k.js', 'http://shop.example/'), 'wss://kairos.example/ws')
})

test('endpoint: an explicit data-endpoint wins', () => {
  assert.equal(endpoint('wss://rt.example/socket', 'https://cdn.example/k.js', 'https://shop.example/'), 'wss://rt.example/socket')
  assert.equal(endpoint('ws://127.0.0.1:9000/ws', 'https://cdn.example/k.js', 'https://shop.example/'), 'ws://127.0.0.1:9000/ws')
  assert.equal(endpoint('https://rt.example/ws', '', 'http://shop.example/'), 'wss://rt.example/ws')
  assert.equal(endpoint('/rt', 'http://kairos.example/k.js', 'http://shop.example/'), 'ws://kairos.example/rt')
})

// a document-like object holding one <script> element
function doc (attrs, src, { current = true } = {}) {
  const el = { src, getAttribute: n => (n in attrs ? attrs[n] : null) }
  return {
    currentScript: current ? el : null,
    querySelector: sel => (sel === 'script[data-site]' && 'data-site' in attrs ? el : null)
  }
}

test('beaconUrl: the same host over http(s), path b beside the websocket\'s', () => {
  assert.equal(beaconUrl('wss://k.example/ws'), 'https://k.example/b')
  assert.equal(beaconUrl('ws://localhost:8000/ws'), 'http://localhost:8000/b')
  assert.equal(beaconUrl('wss://rt.example/kairos/ws'), 'https://rt.example/kairos/b')
  assert.equal(beaconUrl('wss://rt.example/socket?token=1'), 'https://rt.example/b')
  assert.equal(beaconUrl(''), '', 'no endpoint, no beacon')
})

test('readConfig reads data-site, data-endpoint, data-consent and data-vid-store; the beacon URL follows the endpoint', () => {
  const c = readConfig(doc({ 'data-site': 'demo', 'data-consent': 'required' }, 'https://k.example/k.js'), { href: 'https://shop.example/' })
  assert.deepStrictEqual(c, { site: 'demo', endpoint: 'wss://k.example/ws', beacon: 'https://k.example/b', overlay: 'https://k.example/k-overlay.js', consentRequired: true, cookie: false })
  const d = readConfig(doc({ 'data-site': 'demo', 'data-endpoint': 'ws://localhost:9/x' }, 'https://k.example/k.js'), { href: 'https://shop.example/' })
  assert.equal(d.endpoint, 'ws://localhost:9/x')
  assert.equal(d.beacon, 'http://localhost:9/b')
  assert.equal(d.consentRequired, false)
  assert.equal(readConfig(doc({ 'data-site': 'demo', 'data-consent': 'yes' }, ''), { href: 'https://shop.example/' }).consentRequired, false, 'only "required" counts')
})

test('readConfig: data-vid-store="cookie" keeps the visitor id in a cookie; anything else in localStorage', () => {
  const loc = { href: 'https://shop.example/' }
  assert.equal(readConfig(doc({ 'data-site': 'demo', 'data-vid-store': 'cookie' }, '/k.js'), loc).cookie, true)
  assert.equal(readConfig(doc({ 'data-site': 'demo', 'data-vid-store': 'local' }, '/k.js'), loc).cookie, false)
  assert.equal(readConfig(doc({ 'data-site': 'demo', 'data-vid-store': 'Cookie' }, '/k.js'), loc).cookie, false)
  assert.equal(readConfig(doc({ 'data-site': 'demo' }, '/k.js'), loc).cookie, false)
})

test('readConfig: the overlay file is beside k.js, or at the endpoint\'s host for a snippet with no src', () => {
  const loc = { href: 'https://shop.example/p/1' }
  assert.equal(readConfig(doc({ 'data-site': 'demo' }, 'https://cdn.example/kairos/k.js?v=1'), loc).overlay, 'https://cdn.example/kairos/k-overlay.js')
  assert.equal(readConfig(doc({ 'data-site': 'demo', 'data-endpoint': 'wss://k.example/ws' }, 'https://cdn.example/k.js'), loc).overlay, 'https://cdn.example/k-overlay.js')
  assert.equal(readConfig(doc({ 'data-site': 'demo', 'data-endpoint': 'wss://k.example/ws' }, ''), loc).overlay, 'https://k.example/k-overlay.js')
  assert.equal(readConfig(doc({ 'data-site': 'demo', 'data-endpoint': 'http://[::1' }, ''), loc).overlay, '')
})

test('readConfig: an endpoint that cannot be parsed gives no endpoint and no beacon, never an exception', () => {
  const c = readConfig(doc({ 'data-site': 'demo', 'data-endpoint': 'http://[::1' }, 'https://k.example/k.js'), { href: 'https://shop.example/' })
  assert.equal(c.endpoint, '')
  assert.equal(c.beacon, '')
  assert.equal(c.site, 'demo')
})

test('readConfig falls back to script[data-site] when currentScript is gone', () => {
  const c = readConfig(doc({ 'data-site': 'shop_1' }, 'http://k.example/k.js', { current: false }), { href: 'http://shop.example/' })
  assert.equal(c.site, 'shop_1')
  assert.equal(c.endpoint, 'ws://k.example/ws')
})

test('readConfig refuses a missing or malformed site key (the server would close with 4002)', () => {
  const loc = { href: 'http://shop.example/' }
  assert.equal(readConfig(doc({}, ''), loc).site, '')
  assert.equal(readConfig(doc({ 'data-site': 'my shop' }, ''), loc).site, '')
  assert.equal(readConfig(doc({ 'data-site': 'x'.repeat(65) }, ''), loc).site, '')
  assert.equal(readConfig(doc({ 'data-site': 'x'.repeat(64) }, ''), loc).site, 'x'.repeat(64))
})
