// The whole snippet (src/index.js) in a fake browser: window.kairos, privacy
// gates, consent, the hello, batching after welcome, stub replay, errors, SPA
// routes, the page-hide beacon, the forget beacon, the cookie store, overlays.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { encode, decode } from '../src/codec.js'
import { createOverlay } from '../src/overlay.js'
import { Document, Element, Target, fire, installHistory } from './fake-dom.js'

let run = 0

// test/dist.test.js runs these tests again on the built files: the minifiers
// must not change what the snippet does
const DIST = globalThis.KAIROS_DIST === true
let overlayFactory = createOverlay
if (DIST) {
  const saved = globalThis.document
  globalThis.document = { currentScript: { kairos: f => { overlayFactory = f } } }
  await import('../dist/k-overlay.js')
  globalThis.document = saved
}

const mem = () => {
  const m = new Map()
  return { m, getItem: k => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), removeItem: k => m.delete(k) }
}

// Builds a fake window/document, runs src/index.js in it, returns handles.
// overlay: what becomes of the overlay file's <script> (src/lazy.js): 'load'
// runs it at once, 'fail' fails it, 'wait' leaves it to the test (loadOverlay)
async function boot ({ attrs = { 'data-site': 'demo' }, nav = {}, pre, storage, meta = {}, href = 'https://shop.example/p/1', fine = true, winProps, overlay = 'load', layoutReads } = {}) {
  const sockets = []
  let timers = []
  const intervals = []
  const warnings = []
  const beacons = [] // [url, decoded body]
  class FakeWS {
    constructor (url) { this.url = url; this.sent = []; this.closedWith = null; sockets.push(this) }
    send (b) { this.sent.push(decode(b)) }
    close (code) { this.closedWith = code }
  }
  const doc = new Document()
  const scripts = [] // the <script> elements the snippet added
  doc.head.appendChild = function (el) {
    Element.prototype.appendChild.call(this, el)
    scripts.push(el)
    if (overlay === 'load') el.kairos(overlayFactory)
    if (overlay === 'fail') el.onerror(new Event('error'))
    return el
  }
  const script = doc.body.appendChild(new Element('script', attrs, { src: 'https://kairos.example/k.js' }))
  for (const p in meta) doc.documentElement.appendChild(new Element('meta', { property: p, content: meta[p] }))
  Object.assign(doc, { currentScript: script, referrer: 'https://www.example.org/', title: 'Linen shirt' })
  doc.documentElement.scrollHeight = 3000
  const jar = new Map()
  Object.defineProperty(doc, 'cookie', {
    get: () => [...jar].map(([k, v]) => k + '=' + v).join('; '),
    set (s) {
      const [nv] = s.split(';')
      const [k, v] = nv.split('=')
      if (/max-age=0(;|$)/.test(s)) jar.delete(k)
      else jar.set(k, v)
    }
  })
  const win = new Target()
  installHistory(win, href)
  Object.assign(win, {
    navigator: Object.assign({
      language: 'en-GB',
      sendBeacon (url, body) {
        assert.equal(this, win.navigator, 'called as a method')
        beacons.push([url, decode(body)])
        return true
      }
    }, nav),
    localStorage: (storage && storage.local) || mem(),
    sessionStorage: (storage && storage.session) || mem(),
    innerWidth: 1280,
    innerHeight: 800,
    scrollY: 0,
    setInterval: fn => intervals.push(fn),
    clearInterval: () => {},
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: t => clearTimeout(t),
    requestAnimationFrame: fn => fn(),
    matchMedia: q => ({ matches: q === '(pointer: fine)' && fine }),
    CSSStyleSheet: class { replaceSync (t) { this.text = t } }
  })
  if (winProps) Object.assign(win, winProps)
  // properties whose reading makes the browser lay the page out first (when it
  // has changed since): each read is noted in layoutReads
  if (layoutReads) {
    for (const [o, k] of [[win, 'innerWidth'], [win, 'innerHeight'], [win, 'scrollY'], [doc.documentElement, 'scrollHeight']]) {
      const v = o[k]
      Object.defineProperty(o, k, { get: () => { layoutReads.push(k); return v }, configurable: true })
    }
  }
  if (pre) win.kairos = pre
  const saved = {
    window: globalThis.window,
    document: globalThis.document,
    WebSocket: globalThis.WebSocket,
    setTimeout: globalThis.setTimeout,
    clearTimeout: globalThis.clearTimeout,
    warn: console.warn
  }
  Object.assign(globalThis, {
    window: win,
    document: doc,
    WebSocket: FakeWS,
    setTimeout: (fn, ms) => { const t = { fn, ms }; timers.push(t); return t },
    clearTimeout: t => { timers = timers.filter(x => x !== t) }
  })
  console.warn = m => warnings.push(m)
  try {
    await import((DIST ? '../dist/k.js' : '../src/index.js') + '?run=' + (++run))
  } finally {
    Object.assign(globalThis, { window: saved.window, document: saved.document })
  }
  const restore = () => {
    Object.assign(globalThis, saved)
    console.warn = saved.warn
  }
  const ws = () => sockets.at(-1)
  const open = () => ws().onopen({})
  const push = f => ws().onmessage({ data: encode(f).buffer })
  const fireTimers = () => { const ts = timers; timers = []; ts.forEach(t => t.fn()); return ts.length }
  // run the timers set for `ms` (100: the route timer, 500: the batch timer...)
  const fireMs = ms => { const ts = timers.filter(t => t.ms === ms); timers = timers.filter(t => t.ms !== ms); ts.forEach(t => t.fn()); return ts.length }
  const tick = () => intervals.forEach(f => f())
  // every event the socket carried, without the dwell events (their ms depend on the real clock)
  const sentEvents = () => sockets.flatMap(s => s.sent).filter(f => f.t === 'events').flatMap(f => f.ev).filter(e => e.e !== 'dwell')
  const hide = () => { doc.visibilityState = 'hidden'; fire(doc, 'visibilitychange') }
  const loadOverlay = () => scripts.at(-1).kairos(overlayFactory)
  return {
    scripts, loadOverlay,
    win, doc, jar, sockets, ws, open, push, fireTimers, fireMs, tick, beacons, sentEvents, hide,
    timers: () => timers, warnings, restore, k: win.kairos
  }
}

const WELCOME = {
  v: 1, t: 'welcome', sid: 's_8b1d0c3f55',
  track: { batch_ms: 500, dwell_ms: 5000, scroll_step: 10, idle_ms: 30000, exit: true },
  max_frame: 16384, max_events: 50
}
// a dressed overlay, as server/kairos/render.py sends it
const OVERLAY = '<div class="k-backdrop" data-k-close></div><div class="k-overlay k-place-center k-kind-offer" role="dialog" aria-label="Offer" aria-modal="true" tabindex="-1"><button type="button" class="k-close" data-k-close aria-label="Close">×</button><p>x</p></div>'

// boot, open, welcome: a running snippet
async function running (opts) {
  const s = await boot(opts)
  s.open()
  s.push(WELCOME)
  return s
}

test('window.kairos: the API, and the only thing the snippet adds to window', async () => {
  const s = await boot()
  try {
    assert.deepStrictEqual(Object.keys(s.k).sort(), ['consent', 'identify', 'page', 'sid', 'state', 'track', 'version'])
    assert.equal(s.k.version, '0.1.0')
    for (const f of ['track', 'identify', 'page', 'consent']) assert.equal(typeof s.k[f], 'function', f)
    assert.equal(s.k.state, 'connecting')
    assert.equal(s.k.sid, null)
  } finally { s.restore() }
})

test('loading, the hello and the welcome read nothing that makes the browser lay the page out', async () => {
  // k.js runs while the store's page is still loading: one such read there is
  // a forced synchronous layout of the whole page (12-13 ms on the demo store)
  const reads = []
  const s = await boot({ layoutReads: reads })
  try {
    s.open()
    s.push(WELCOME)
    s.tick()
    assert.equal(s.ws().sent[0].t, 'hello')
    assert.deepStrictEqual(reads, [])
    // the scroll depth does read them, in the next animation frame after a scroll
    fire(s.win, 'scroll')
    assert.ok(reads.includes('scrollHeight'))
  } finally {
    s.restore()
  }
})

test('connects to the derived endpoint, says hello, adopts the welcome, then sends batched events', async () => {
  const s = await boot()
  try {
    assert.equal(s.sockets.length, 1)
    assert.equal(s.ws().url, 'wss://kairos.example/ws')
    s.k.track('cart', { value: 42.5, items: 2, cur: 'EUR' })
    s.open()
    const hello = s.ws().sent[0]
    assert.equal(hello.t, 'hello')
    assert.deepStrictEqual(Object.keys(hello), ['v', 't', 'site', 'vid', 'sid', 'page', 'consent', 'sv', 'tz', 'lang'])
    assert.equal(hello.site, 'demo')
    assert.match(hello.vid, /^v_[a-z0-9]{20}$/)
    assert.equal(s.win.localStorage.m.get('kairos.vid'), hello.vid)
    assert.equal(hello.sid, null)
    assert.deepStrictEqual(hello.page, { url: 'https://shop.example/p/1', path: '/p/1', title: 'Linen shirt', ref: 'https://www.example.org/', meta: {} })
    assert.equal(hello.consent, true)
    assert.equal(hello.sv, '0.1.0')
    assert.equal(hello.tz, -new Date().getTimezoneOffset() || 0)
    assert.equal(s.ws().sent.length, 1, 'events wait for the welcome')

    s.push(WELCOME)
    assert.equal(s.k.state, 'open')
    assert.equal(s.k.sid, 's_8b1d0c3f55')
    assert.equal(s.win.sessionStorage.m.get('kairos.sid'), 's_8b1d0c3f55')
    const queued = s.ws().sent[1]
    assert.equal(queued.t, 'events')
    assert.equal(queued.seq, 0)
    assert.deepStrictEqual(queued.ev.map(e => e.e), ['cart'])
    assert.deepStrictEqual(Object.keys(queued.ev[0]), ['e', 'ts', 'value', 'items', 'cur'])

    // a click gathers for batch_ms (500 from the welcome)
    fire(s.doc, 'click', { target: new Element('button', { id: 'b' }), clientX: 1, clientY: 1 })
    s.k.page()
    assert.equal(s.ws().sent.length, 2)
    assert.ok(s.timers().some(t => t.ms === 500))
    s.fireMs(500)
    const batch = s.ws().sent[2]
    assert.equal(batch.seq, 1)
    // (page() first closes the previous page's dwell: a few ms here, or none)
    const ev = batch.ev.filter(e => e.e !== 'dwell')
    assert.deepStrictEqual(ev.map(e => e.e), ['click', 'page_view'])
    assert.deepStrictEqual(ev[0], { e: 'click', ts: ev[0].ts, tag: 'button', id: 'b' })
    assert.deepStrictEqual(ev[1], { e: 'page_view', ts: ev[1].ts, url: 'https://shop.example/p/1', path: '/p/1', title: 'Linen shirt', ref: 'https://www.example.org/', meta: {} })
    // e and ts cannot be overwritten by the store's fields
    s.k.track('purchase', { value: 10, e: 'x', ts: 1 })
    const p = s.ws().sent[3].ev[0]
    assert.equal(p.e, 'purchase')
    assert.ok(p.ts > 1e12)
  } finally { s.restore() }
})

test('a session id from an earlier page load is resumed in hello', async () => {
  const local = mem()
  const session = mem()
  local.setItem('kairos.vid', 'v_abcdefghij')
  session.setItem('kairos.sid', 's_8b1d0c3f55')
  const s = await boot({ storage: { local, session } })
  try {
    s.open()
    assert.equal(s.ws().sent[0].vid, 'v_abcdefghij')
    assert.equal(s.ws().sent[0].sid, 's_8b1d0c3f55')
  } finally { s.restore() }
})

test('the page type and product from a queued kairos.page() ride in the hello', async () => {
  const pre = { q: [['page', { type: 'product', product: { sku: 'SH-1', name: 'Linen shirt', price: '49.00', cur: 'EUR' } }]] }
  const s = await boot({ pre })
  try {
    s.open()
    const hello = s.ws().sent[0]
    assert.deepStrictEqual(hello.page, {
      url: 'https://shop.example/p/1',
      path: '/p/1',
      title: 'Linen shirt',
      ref: 'https://www.example.org/',
      type: 'product',
      prod: { sku: 'SH-1', name: 'Linen shirt', price: '49.00', cur: 'EUR' }, // as given: the server normalises it
      meta: {}
    })
    s.push(WELCOME)
    s.fireTimers()
    assert.deepStrictEqual(s.sentEvents(), [], 'no page_view besides the hello')
  } finally { s.restore() }
})

test('without kairos.page(), the hello carries the product page\'s Open Graph tags (the server reads the product)', async () => {
  const s = await boot({ meta: { 'og:type': 'product', 'og:title': 'Mug', 'og:description': 'A mug', 'product:price:amount': '12.50', 'product:price:currency': 'EUR' } })
  try {
    s.open()
    assert.deepStrictEqual(s.ws().sent[0].page.meta, { 'og:type': 'product', 'og:title': 'Mug', 'product:price:amount': '12.50', 'product:price:currency': 'EUR' })
    assert.equal('prod' in s.ws().sent[0].page, false)
    assert.equal('type' in s.ws().sent[0].page, false)
  } finally { s.restore() }
})

test('kairos.page() after the hello is a page view (before the welcome it waits in the queue)', async () => {
  const s = await boot()
  try {
    s.open()
    s.k.page({ type: 'cart' })
    assert.equal(s.ws().sent.length, 1)
    s.push(WELCOME)
    s.fireTimers()
    const pv = s.sentEvents().filter(e => e.e === 'page_view')
    assert.equal(pv.length, 1)
    assert.equal(pv[0].type, 'cart')
    assert.equal(pv[0].path, '/p/1')
  } finally { s.restore() }
})

test('track(): the four store events as themselves, any other valid name as custom {name, props}', async () => {
  const s = await running()
  try {
    s.k.track('size_guide.open', { from: 'product', rating: 4.5, first: true, ref: null })
    s.k.track('newsletter:signup')
    s.k.track('checkout', { step: 'payment' })
    for (const bad of ['signed up!', '', 'x'.repeat(65), 'ü', 'a b', 'a/b']) s.k.track(bad, { a: 1 })
    s.k.track('cart', { f () {} }) // msgpack cannot carry it: dropped, not thrown
    s.fireTimers()
    const ev = s.sentEvents().map(({ ts, ...e }) => e)
    assert.deepStrictEqual(ev, [
      { e: 'custom', name: 'size_guide.open', props: { from: 'product', rating: 4.5, first: true, ref: null } },
      { e: 'custom', name: 'newsletter:signup', props: {} },
      { e: 'checkout', step: 'payment' }
    ])
    assert.ok(s.warnings.some(w => /^\[kairos\] track: /.test(w)), 'a bad name is reported on the console')
    s.k.track('x'.repeat(64))
    s.fireTimers()
    assert.equal(s.sentEvents().at(-1).name, 'x'.repeat(64))
  } finally { s.restore() }
})

test('identify(id): {uid} as a string cut to 128; empty ids are ignored', async () => {
  const s = await running()
  try {
    s.k.identify(1042)
    s.k.identify('')
    s.k.identify(null)
    s.k.identify()
    s.k.identify('u'.repeat(200))
    s.fireTimers()
    assert.deepStrictEqual(s.sentEvents().map(e => e.uid), ['1042', 'u'.repeat(128)])
    assert.ok(s.sentEvents().every(e => e.e === 'identify'))
  } finally { s.restore() }
})

test('a click on a data-kairos-track element sends its store event, props as numbers, and the click', async () => {
  const s = await running()
  try {
    const b = s.doc.body.appendChild(new Element('button', { 'data-kairos-track': 'add_to_cart', 'data-kairos-sku': 'SH-1', 'data-kairos-price': '49.00', 'data-kairos-qty': '1' }))
    fire(s.doc, 'click', { target: b, clientX: 5, clientY: 5 })
    s.fireTimers()
    const ev = s.sentEvents()
    assert.deepStrictEqual(ev.map(e => e.e), ['add_to_cart', 'click'], 'add_to_cart goes at once, the click after batch_ms')
    assert.deepStrictEqual(ev[0], { e: 'add_to_cart', ts: ev[0].ts, sku: 'SH-1', price: 49, qty: 1 })
  } finally { s.restore() }
})

test('single-page app: a route change is a page_view 100 ms later, with the new URL; a #hash change is not', async () => {
  const s = await running()
  try {
    s.win.history.pushState({}, '', '/p/2?color=red')
    assert.equal(s.sentEvents().length, 0)
    assert.equal(s.fireMs(100), 1, 'one route timer')
    s.fireMs(500)
    const [pv] = s.sentEvents()
    assert.deepStrictEqual(pv, { e: 'page_view', ts: pv.ts, url: 'https://shop.example/p/2?color=red', path: '/p/2', title: 'Linen shirt', ref: 'https://www.example.org/', meta: {} })
    // a hash, or the same URL again: no page view
    s.win.history.pushState({}, '', '/p/2?color=red#reviews')
    s.win.history.replaceState({ scroll: 5 }, '', '/p/2?color=red')
    assert.equal(s.fireMs(100), 0)
    // the query counts
    s.win.history.replaceState({}, '', '/p/2?color=blue')
    s.fireMs(100)
    // back and forward
    s.win.history.go(-2)
    s.fireMs(100)
    s.fireMs(500)
    assert.deepStrictEqual(s.sentEvents().filter(e => e.e === 'page_view').map(e => e.url), [
      'https://shop.example/p/2?color=red', 'https://shop.example/p/2?color=blue', 'https://shop.example/p/1'
    ])
  } finally { s.restore() }
})

test('single-page app: kairos.page() within the 100 ms replaces the automatic page view; a route forgets the last page() props', async () => {
  const s = await running()
  try {
    s.k.page({ type: 'product' }) // the first page's type, declared late: a page view of its own
    s.win.history.pushState({}, '', '/cart')
    s.k.page({ type: 'cart' })
    assert.equal(s.fireMs(100), 0, 'the automatic one is cancelled')
    s.win.history.pushState({}, '', '/p/3') // a route without page()
    s.fireMs(100)
    s.fireMs(500)
    const pv = s.sentEvents().filter(e => e.e === 'page_view')
    assert.deepStrictEqual(pv.map(e => [e.path, e.type]), [['/p/1', 'product'], ['/cart', 'cart'], ['/p/3', undefined]])
  } finally { s.restore() }
})

test('single-page app: spa:false from the welcome turns the automatic page views off', async () => {
  const s = await boot()
  try {
    s.open()
    s.push(Object.assign({}, WELCOME, { track: Object.assign({}, WELCOME.track, { spa: false }) }))
    s.win.history.pushState({}, '', '/p/2')
    assert.equal(s.fireMs(100), 0)
  } finally { s.restore() }
})

test('the welcome\'s track settings drive the running collectors', async () => {
  const s = await boot()
  try {
    s.open()
    s.push(Object.assign({}, WELCOME, { track: { batch_ms: 250, clicks: false, copy: true } }))
    fire(s.doc, 'click', { target: new Element('button', { id: 'b' }) })
    fire(s.doc, 'copy', { target: new Element('code', { 'data-kairos': 'coupon' }) })
    assert.equal(s.fireMs(250), 1, 'batch_ms 250')
    assert.deepStrictEqual(s.sentEvents().map(({ ts, ...e }) => e), [{ e: 'copy', tag: 'code', k: 'coupon' }])
  } finally { s.restore() }
})

test('exit_back from the welcome: the extra history entry is no page view; going back sends exit_intent at once', async () => {
  const s = await boot()
  try {
    s.open()
    s.push(Object.assign({}, WELCOME, { track: Object.assign({}, WELCOME.track, { exit_back: true, exit_min_ms: 0 }) }))
    s.tick()
    assert.equal(s.win.history.length, 2)
    assert.equal(s.fireMs(100), 0, 'same URL: no route change')
    s.win.history.back()
    assert.equal(s.fireMs(100), 0)
    const ev = s.sentEvents()
    assert.deepStrictEqual(ev.map(e => [e.e, e.how]), [['exit_intent', 'back']], 'sent without waiting for batch_ms')
  } finally { s.restore() }
})

test('exit_back in a single-page app: land, visit another page, back, back: the second back is the exit', async () => {
  const s = await boot()
  try {
    s.open()
    s.push(Object.assign({}, WELCOME, { track: Object.assign({}, WELCOME.track, { exit_back: true, exit_min_ms: 0 }) }))
    s.tick() // our entry
    s.win.history.pushState({}, '', '/p/2') // a related product
    s.fireMs(100)
    s.win.history.back() // returns to /p/1 (our entry): a page view
    s.fireMs(100)
    s.win.history.back() // to the real entry: the exit, and the visitor stays
    assert.equal(s.win.location.pathname, '/p/1')
    assert.equal(s.fireMs(100), 0, 'no page view')
    s.fireMs(500)
    assert.deepStrictEqual(s.sentEvents().map(e => [e.e, e.path || e.how]), [
      ['page_view', '/p/2'], ['page_view', '/p/1'], ['exit_intent', 'back']
    ])
    assert.equal(s.win.history.index, 0, 'the next back leaves the store')
  } finally { s.restore() }
})

test('page hidden while the socket is down: the queue goes by sendBeacon to /b, with site, vid and sid', async () => {
  const s = await running()
  try {
    const vid = s.ws().sent[0].vid
    s.k.track('cart', { value: 1, items: 1 }) // seq 0 over the socket
    s.ws().onclose({ code: 1006 })
    assert.equal(s.k.state, 'closed')
    s.k.track('size_guide.open')
    s.k.track('newsletter')
    s.win.dispatchEvent(new Event('pagehide'))
    assert.equal(s.beacons.length, 1)
    const [url, body] = s.beacons[0]
    assert.equal(url, 'https://kairos.example/b')
    assert.deepStrictEqual(Object.keys(body), ['v', 't', 'seq', 'ev', 'site', 'vid', 'sid'])
    assert.deepStrictEqual([body.v, body.t, body.seq, body.site, body.vid, body.sid], [1, 'events', 1, 'demo', vid, 's_8b1d0c3f55'])
    assert.deepStrictEqual(body.ev.filter(e => e.e !== 'dwell').map(e => e.name), ['size_guide.open', 'newsletter'])
    // nothing is sent twice (a second pagehide may only add its own dwell)
    s.win.dispatchEvent(new Event('pagehide'))
    s.fireMs(500)
    const names = s.beacons.flatMap(b => b[1].ev).filter(e => e.e !== 'dwell').map(e => e.name)
    assert.deepStrictEqual(names, ['size_guide.open', 'newsletter'])
    assert.equal(s.ws().sent.filter(f => f.t === 'events').length, 1, 'and nothing over the socket')
  } finally { s.restore() }
})

test('tab hidden while the socket is down (a phone switching apps): the same beacon, with lost when events were dropped', async () => {
  const s = await running()
  try {
    s.ws().onclose({ code: 1006 })
    for (let i = 0; i < 105; i++) s.k.track('e' + i)
    s.hide()
    const bodies = s.beacons.map(b => b[1])
    assert.ok(bodies.length >= 5)
    assert.equal(bodies[0].lost >= 5, true, 'the dropped events are counted: ' + bodies[0].lost)
    assert.ok(bodies.slice(1).every(b => !('lost' in b)))
    assert.deepStrictEqual(bodies.map(b => b.seq), bodies.map((_, i) => i))
    assert.equal(bodies.flatMap(b => b.ev).filter(e => e.e === 'custom').at(-1).name, 'e104')
  } finally { s.restore() }
})

test('page hidden with the socket open: flushed over the socket, no beacon; closed on pagehide', async () => {
  const s = await running()
  try {
    s.k.track('size_guide.open')
    s.hide()
    assert.equal(s.beacons.length, 0)
    assert.deepStrictEqual(s.ws().sent.at(-1).ev.filter(e => e.e !== 'dwell').map(e => e.name), ['size_guide.open'])
    s.k.track('late')
    s.win.dispatchEvent(new Event('pagehide'))
    assert.equal(s.beacons.length, 0)
    assert.equal(s.sentEvents().at(-1).name, 'late')
    assert.equal(s.ws().closedWith, 1000)
  } finally { s.restore() }
})

test('page hidden before the first welcome (no session yet): no beacon, the events wait for the socket', async () => {
  const s = await boot()
  try {
    s.k.track('early')
    s.hide()
    s.win.dispatchEvent(new Event('pagehide'))
    assert.equal(s.beacons.length, 0)
  } finally { s.restore() }
})

test('a beacon is never larger than the server\'s max_frame', async () => {
  const s = await boot()
  try {
    s.open()
    s.push(Object.assign({}, WELCOME, { max_frame: 400 }))
    s.ws().onclose({ code: 1006 })
    for (let i = 0; i < 12; i++) s.k.track('e' + i, { pad: 'x'.repeat(10) })
    s.win.dispatchEvent(new Event('pagehide'))
    assert.ok(s.beacons.length > 1)
    for (const [, body] of s.beacons) assert.ok(encode(body).length <= 400, 'beacon of ' + encode(body).length + ' bytes')
  } finally { s.restore() }
})

test('consent(false): a forget beacon {v, t, site, vid, sid}, then stop, disconnect and clear', async () => {
  const s = await running()
  try {
    const vid = s.ws().sent[0].vid
    const ws = s.ws()
    s.k.track('queued')
    s.k.consent(false)
    assert.deepStrictEqual(s.beacons, [['https://kairos.example/b', { v: 1, t: 'forget', site: 'demo', vid, sid: 's_8b1d0c3f55' }]])
    assert.equal(ws.closedWith, 1000)
    assert.equal(s.k.state, 'idle')
    assert.equal(s.k.sid, null)
    assert.equal(s.win.localStorage.m.size, 0)
    assert.equal(s.win.sessionStorage.m.size, 0)
    s.fireTimers()
    assert.equal(s.sentEvents().length, 0, 'the queue went with it')
    // stopped: no collectors, no route page views
    fire(s.doc, 'click', { target: new Element('button') })
    s.win.history.pushState({}, '', '/p/9')
    s.fireTimers()
    s.win.dispatchEvent(new Event('pagehide'))
    assert.deepStrictEqual(ws.sent.map(f => f.t), ['hello'], 'nothing more over the old socket')
    assert.equal(s.beacons.length, 1)
    assert.equal(s.sockets.length, 1, 'no reconnect')
  } finally { s.restore() }
})

test('consent(false) without a stored visitor id sends no forget (and creates no id)', async () => {
  const s = await boot({ attrs: { 'data-site': 'demo', 'data-consent': 'required' } })
  try {
    s.k.consent(false)
    assert.equal(s.beacons.length, 0)
    assert.equal(s.win.localStorage.m.size, 0)
  } finally { s.restore() }
})

for (const [name, nav, winProps] of [
  ['navigator.doNotTrack', { doNotTrack: '1' }],
  ['window.doNotTrack', {}, { doNotTrack: '1' }],
  ['navigator.globalPrivacyControl', { globalPrivacyControl: true }]
]) {
  test(`${name}: nothing is sent or stored, whatever the page or the store does`, async () => {
    const s = await boot({ nav, winProps })
    try {
      s.k.track('cart', { value: 1, items: 1 })
      s.k.identify('u1')
      s.k.page({ type: 'x' })
      s.k.consent(true)
      fire(s.doc, 'click', { target: new Element('button') })
      s.win.history.pushState({}, '', '/p/2')
      s.hide()
      s.win.dispatchEvent(new Event('pagehide'))
      s.k.consent(false)
      s.fireTimers()
      assert.equal(s.sockets.length, 0)
      assert.equal(s.beacons.length, 0)
      assert.equal(s.k.state, 'idle')
      assert.equal(s.win.localStorage.m.size, 0)
      assert.equal(s.win.sessionStorage.m.size, 0)
      assert.equal(s.jar.size, 0)
    } finally { s.restore() }
  })
}

test('data-consent="required": nothing sent or stored before kairos.consent(true); then the waiting events go', async () => {
  const s = await boot({ attrs: { 'data-site': 'demo', 'data-consent': 'required', 'data-vid-store': 'cookie' } })
  try {
    assert.equal(s.sockets.length, 0)
    assert.equal(s.k.state, 'idle')
    s.k.track('add_to_cart', { sku: 'LS-01' }) // waits in memory
    s.k.identify('u1')
    fire(s.doc, 'click', { target: new Element('button') }) // not collected
    s.win.history.pushState({}, '', '/p/2') // no page view
    s.hide()
    s.win.dispatchEvent(new Event('pagehide'))
    s.fireTimers()
    assert.equal(s.sockets.length, 0)
    assert.equal(s.beacons.length, 0)
    assert.equal(s.win.localStorage.m.size, 0, 'no visitor id before consent')
    assert.equal(s.jar.size, 0)
    s.doc.visibilityState = 'visible'
    s.k.consent(true)
    assert.equal(s.sockets.length, 1)
    s.open()
    assert.equal(s.ws().sent[0].consent, true)
    assert.equal(s.ws().sent[0].page.path, '/p/2', 'the hello is for the page the visitor is on')
    s.push(WELCOME)
    s.fireTimers()
    assert.deepStrictEqual(s.sentEvents().map(e => e.e), ['add_to_cart', 'identify'])
    assert.ok(s.jar.has('kairos_vid'))
    assert.ok(s.win.sessionStorage.m.has('kairos.sid'))
    s.k.consent(true)
    assert.equal(s.sockets.length, 1, 'consent(true) twice: still one connection')
  } finally { s.restore() }
})

test('data-consent="required": after a move in the app and consent, a same-URL history call is no second page view, and exit intent is armed from consent', async () => {
  const s = await boot({ attrs: { 'data-site': 'demo', 'data-consent': 'required' } })
  const realNow = Date.now
  let t = 1e12
  Date.now = () => t
  try {
    s.win.history.pushState({}, '', '/p/2') // the store's router, before consent
    t += 5000
    s.k.consent(true)
    s.open()
    assert.equal(s.ws().sent[0].page.path, '/p/2')
    s.push(Object.assign({}, WELCOME, { track: Object.assign({}, WELCOME.track, { exit_back: true, exit_min_ms: 3000, exit_gap_ms: 10000 }) }))
    s.win.history.replaceState({ scroll: 120 }, '', '/p/2') // the router keeps its scroll position
    s.tick() // the snippet's own back-button entry, same URL
    assert.equal(s.win.history.length, 3)
    assert.equal(s.fireMs(100), 0, 'no route timer: the URL is the one the hello reported')
    t += 3300 // an exit 3.3 s after consent, with 3 s arming
    fire(s.doc, 'mouseout', { relatedTarget: null, clientY: -1 })
    s.fireMs(500)
    assert.deepStrictEqual(s.sentEvents().map(e => [e.e, e.how]), [['exit_intent', 'top']])
  } finally { Date.now = realNow; s.restore() }
})

test('single-page app: a move away and back within 100 ms (a redirect) is no page view', async () => {
  const s = await running()
  try {
    s.win.history.pushState({}, '', '/login')
    s.win.history.replaceState({}, '', '/p/1')
    s.fireMs(100)
    s.fireMs(500)
    assert.deepStrictEqual(s.sentEvents(), [])
  } finally { s.restore() }
})

test('data-vid-store="cookie": the visitor id is the kairos_vid cookie, localStorage stays empty', async () => {
  const s = await running({ attrs: { 'data-site': 'demo', 'data-vid-store': 'cookie' } })
  try {
    const vid = s.ws().sent[0].vid
    assert.equal(s.jar.get('kairos_vid'), vid)
    assert.equal(s.win.localStorage.m.size, 0)
    s.k.consent(false)
    assert.equal(s.beacons[0][1].vid, vid)
    assert.equal(s.jar.size, 0, 'withdrawing consent expires the cookie')
  } finally { s.restore() }
})

test('a stub queue set up before the script loaded is replayed', async () => {
  const pre = { q: [['track', 'cart', { value: 9, items: 1 }], ['consent', true], ['identify', 'c-1']] }
  const s = await boot({ attrs: { 'data-site': 'demo', 'data-consent': 'required' }, pre })
  try {
    assert.notEqual(s.k, pre)
    assert.equal(s.sockets.length, 1, 'the queued consent(true) connected')
    s.open()
    s.push(WELCOME)
    s.fireTimers()
    assert.deepStrictEqual(s.sentEvents().map(e => e.e), ['cart', 'identify'])
  } finally { s.restore() }
})

test('an error frame is logged once per code; bad input never throws into the page', async () => {
  const s = await running()
  try {
    s.push({ v: 1, t: 'error', code: 'unknown_event', msg: 'event 0: unknown event type', seq: 0 })
    s.push({ v: 1, t: 'error', code: 'unknown_event', msg: 'again' })
    s.push({ v: 1, t: 'error', code: 'bad_event', msg: 'x' })
    assert.deepStrictEqual(s.warnings, ['[kairos] unknown_event: event 0: unknown event type', '[kairos] bad_event: x'])
    s.push({ v: 1, t: 'teleport' })
    s.push({ v: 1, t: 'show', oid: 'o', html: 42 })
    s.k.track('cart', { f () {} })
    s.k.track('cart', { n: 1n })
    s.k.identify({ toString () { throw new Error('no') } })
    s.fireTimers()
    assert.equal(s.sentEvents().length, 0)
  } finally { s.restore() }
})

test('a batch the server failed to handle (server_error with its seq) goes again after the batch wait; another error code resends nothing', async () => {
  const s = await running()
  try {
    const events = () => s.ws().sent.filter(f => f.t === 'events')
    s.k.track('cart', { value: 1 })
    assert.deepStrictEqual(events().map(f => [f.seq, f.ev.map(e => e.e)]), [[0, ['cart']]])
    const cart = events()[0].ev[0]
    // refused for what it holds: sending it again would only be refused again
    s.push({ v: 1, t: 'error', code: 'bad_event', msg: 'event 0: bad value', seq: 0 })
    s.fireTimers()
    assert.equal(events().length, 1)
    // Redis away: the server dropped the batch
    s.push({ v: 1, t: 'error', code: 'server_error', msg: 'the server failed to handle this frame; it was dropped', seq: 0 })
    assert.equal(events().length, 1, 'not at once')
    s.k.track('purchase', { value: 1 })
    assert.equal(events().length, 1, 'newer events wait behind it')
    assert.ok(s.timers().some(t => t.ms >= 500 + 500), 'the batch wait (500 ms from the welcome) and the backoff')
    s.fireTimers()
    const again = events().slice(1)
    assert.deepStrictEqual(again.map(f => f.seq), [1])
    assert.deepStrictEqual(again[0].ev.filter(e => e.e !== 'dwell').map(e => e.e), ['cart', 'purchase'])
    assert.deepStrictEqual(again[0].ev[0], cart, 'the same event, as it was')
    assert.equal('lost' in again[0], false)
    // an error for a batch of an earlier connection finds nothing on this one
    s.ws().onclose({ code: 1012 })
    s.fireTimers()
    s.open()
    s.push(WELCOME)
    s.push({ v: 1, t: 'error', code: 'server_error', msg: 'x', seq: 1 })
    s.fireTimers()
    assert.equal(s.ws().sent.filter(f => f.t === 'events' && f.ev.some(e => e.e === 'cart')).length, 0)
    assert.deepStrictEqual(s.warnings, ['[kairos] bad_event: event 0: bad value', '[kairos] server_error: the server failed to handle this frame; it was dropped'])
  } finally { s.restore() }
})

test('track() with a name that is not a string sends nothing', async () => {
  const s = await running()
  try {
    s.k.track(42, { a: 1 }) // goes as {name: 42}: refused by the server (bad_event)
    s.k.track() // goes without a name: refused too
    s.k.track(null)
    s.fireTimers()
    assert.deepStrictEqual(s.sentEvents(), [])
  } finally { s.restore() }
})

test('one track() call with an object for a name does not stop the events that follow', async () => {
  const s = await running()
  try {
    s.k.track({ name: 'x', toString: () => 'sneaky' })
    assert.doesNotThrow(() => s.fireTimers(), 'the batch timer throws into the page')
    s.k.track('cart', { value: 1, items: 1 })
    s.fireTimers()
    assert.deepStrictEqual(s.sentEvents().map(e => e.e), ['cart'])
  } finally { s.restore() }
})

test('terminal close 4004 from the server stops the snippet', async () => {
  const s = await boot()
  try {
    s.open()
    s.ws().onclose({ code: 4004 })
    assert.equal(s.k.state, 'closed')
    assert.equal(s.timers().length, 0)
    s.win.dispatchEvent(new Event('online'))
    assert.equal(s.sockets.length, 1)
  } finally { s.restore() }
})

test('pagehide sends the last dwell and closes; a page restored from the bfcache reconnects as a new page view', async () => {
  const s = await running()
  try {
    const ws = s.ws()
    s.win.dispatchEvent(new Event('pagehide'))
    assert.equal(ws.closedWith, 1000)
    assert.equal(s.k.state, 'closed')
    const plain = new Event('pageshow') // not from the bfcache: nothing
    s.win.dispatchEvent(plain)
    assert.equal(s.sockets.length, 1)
    const show = new Event('pageshow')
    Object.defineProperty(show, 'persisted', { value: true })
    s.win.dispatchEvent(show)
    assert.equal(s.sockets.length, 2)
    assert.equal(s.k.state, 'connecting')
    s.open()
    assert.equal(s.ws().sent[0].re, undefined, 'coming back from the bfcache is a new page view')
  } finally { s.restore() }
})

test('pagehide while waiting to reconnect: a page restored from the bfcache says hello as a new page view', async () => {
  const s = await running()
  try {
    s.ws().onclose({ code: 1006 }) // the network dropped; a retry is scheduled
    s.win.dispatchEvent(new Event('pagehide'))
    const show = new Event('pageshow')
    Object.defineProperty(show, 'persisted', { value: true })
    s.win.dispatchEvent(show)
    s.fireTimers() // whatever was pending
    assert.equal(s.sockets.length, 2)
    s.open()
    assert.equal(s.ws().sent[0].re, undefined)
  } finally { s.restore() }
})

test('no data-site: a warning, no connection', async () => {
  const s = await boot({ attrs: {} })
  try {
    assert.equal(s.sockets.length, 0)
    assert.match(s.warnings[0], /data-site/)
  } finally { s.restore() }
})

test('loaded twice: the second copy leaves the first alone', async () => {
  const s = await boot()
  try {
    const first = s.k
    const s2 = await boot({ pre: first })
    s2.restore()
    assert.equal(s2.k, first)
    assert.equal(s2.sockets.length, 0)
  } finally { s.restore() }
})

test('a show frame is rendered in the page\'s shadow host and reported; hide removes it', async () => {
  const s = await running()
  try {
    s.push({ v: 1, t: 'show', oid: 'o1', kind: 'offer', html: OVERLAY, css: '.k-overlay{}', place: 'center', ttl_ms: 0, rule: 'r' })
    const host = s.doc.body.children.find(c => c.id === 'kairos-host')
    assert.equal(host.shadowRoot.innerHTML, OVERLAY)
    assert.equal(host.shadowRoot.adoptedStyleSheets[0].text, '.k-overlay{}')
    assert.deepStrictEqual(s.ws().sent.at(-1), { v: 1, t: 'feedback', oid: 'o1', act: 'shown', ts: s.ws().sent.at(-1).ts })
    // a click inside the overlay reaches the document as a click on the host: not tracked
    fire(s.doc, 'click', { target: host })
    s.push({ v: 1, t: 'hide', oid: 'o1' })
    assert.equal(host.shadowRoot.innerHTML, '')
    s.fireTimers()
    assert.equal(s.sentEvents().filter(e => e.e === 'click').length, 0)
    assert.equal(s.ws().sent.filter(f => f.t === 'feedback').length, 1, 'hide is silent')
  } finally { s.restore() }
})

test('feedback is sent at once while open, and queued across a reconnect', async () => {
  const s = await running()
  try {
    s.push({ v: 1, t: 'show', oid: 'o1', kind: 'offer', html: OVERLAY, css: '', place: 'center', ttl_ms: 1000, rule: 'r' })
    assert.deepStrictEqual(s.ws().sent.at(-1), { v: 1, t: 'feedback', oid: 'o1', act: 'shown', ts: s.ws().sent.at(-1).ts })
    s.ws().onclose({ code: 1006 })
    assert.equal(s.k.state, 'closed')
    // the overlay expires while the connection is down
    const ttl = s.timers().find(t => t.ms === 1000)
    assert.ok(ttl, 'the ttl timer')
    ttl.fn()
    const backoff = s.timers().find(t => t.ms >= 500 && t !== ttl)
    backoff.fn()
    assert.equal(s.sockets.length, 2)
    s.open()
    assert.equal(s.ws().sent[0].sid, 's_8b1d0c3f55', 'the reconnect resumes the session')
    assert.equal(s.sockets[0].sent[0].re, undefined, 'the first hello is the page view')
    assert.equal(s.ws().sent[0].re, true, 'the reconnect is not another page view')
    s.push(WELCOME)
    assert.deepStrictEqual(s.ws().sent.slice(1).map(f => [f.t, f.act]), [['feedback', 'expired']])
  } finally { s.restore() }
})

test('the overlay file is fetched only on the first show, beside k.js; a show before it arrives is shown then', async () => {
  const s = await running({ overlay: 'wait' })
  try {
    fire(s.doc, 'click', { target: new Element('button', { id: 'b' }), clientX: 1, clientY: 1 })
    assert.equal(s.scripts.length, 0, 'no overlay, no fetch')
    s.push({ v: 1, t: 'show', oid: 'o1', kind: 'offer', html: OVERLAY, css: '', place: 'center', ttl_ms: 0, rule: 'r' })
    s.push({ v: 1, t: 'show', oid: 'o2', kind: 'offer', html: OVERLAY.replace('<p>x', '<p>y'), css: '', place: 'center', ttl_ms: 0, rule: 'r' })
    assert.equal(s.scripts.length, 1)
    assert.equal(s.scripts[0].src, 'https://kairos.example/k-overlay.js')
    assert.equal(s.ws().sent.filter(f => f.t === 'feedback').length, 0, 'not shown yet')
    s.loadOverlay()
    const host = s.doc.body.children.find(c => c.id === 'kairos-host')
    assert.match(host.shadowRoot.innerHTML, /<p>y/, 'the newest show waiting')
    assert.deepStrictEqual(s.ws().sent.filter(f => f.t === 'feedback').map(f => [f.oid, f.act]), [['o2', 'shown']])
    assert.equal(Object.keys(s.win).includes('kairos'), true)
    assert.deepStrictEqual(Object.keys(s.k).sort(), ['consent', 'identify', 'page', 'sid', 'state', 'track', 'version'])
  } finally { s.restore() }
})

test('an overlay file that fails to load breaks nothing: events flow, the next show tries again', async () => {
  const s = await running({ overlay: 'fail' })
  try {
    s.push({ v: 1, t: 'show', oid: 'o1', kind: 'offer', html: OVERLAY, css: '', place: 'center', ttl_ms: 0, rule: 'r' })
    assert.equal(s.scripts.length, 1)
    assert.equal(s.scripts[0].parentNode, null, 'the failed <script> is gone')
    assert.deepStrictEqual(s.warnings, [])
    s.k.track('cart', { value: 1, items: 1, cur: 'EUR' })
    assert.deepStrictEqual(s.sentEvents().map(e => e.e), ['cart'])
    s.push({ v: 1, t: 'show', oid: 'o2', kind: 'offer', html: OVERLAY, css: '', place: 'center', ttl_ms: 0, rule: 'r' })
    assert.equal(s.scripts.length, 2)
    assert.equal(s.ws().sent.filter(f => f.t === 'feedback').length, 0)
    assert.equal(s.k.state, 'open')
  } finally { s.restore() }
})
