// The whole snippet (src/index.js) in a fake browser: window.kairos, privacy
// gates, consent, the hello, batching after welcome, stub replay, errors.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { encode, decode } from '../src/codec.js'

let run = 0

// Builds a fake window/document, runs src/index.js in it, returns handles.
async function boot ({ attrs = { 'data-site': 'demo' }, nav = {}, pre, storage } = {}) {
  const sockets = []
  let timers = []
  const warnings = []
  class FakeWS {
    constructor (url) { this.url = url; this.sent = []; this.closedWith = null; sockets.push(this) }
    send (b) { this.sent.push(decode(b)) }
    close (code) { this.closedWith = code }
  }
  const mem = () => {
    const m = new Map()
    return { m, getItem: k => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), removeItem: k => m.delete(k) }
  }
  const script = { src: 'https://kairos.example/k.js', getAttribute: n => (n in attrs ? attrs[n] : null) }
  const doc = new EventTarget()
  Object.assign(doc, {
    currentScript: script,
    querySelector: sel => (sel === 'script[data-site]' ? script : null),
    referrer: 'https://www.example.org/',
    title: 'Linen shirt',
    visibilityState: 'visible',
    documentElement: { scrollHeight: 3000 },
    activeElement: null,
    body: { appendChild (el) { el.isConnected = true } },
    // just enough for the overlay: a host with a shadow root
    createElement: () => ({
      setAttribute () {},
      attachShadow () {
        const root = new EventTarget()
        const el = { setAttribute () {}, focus () {} }
        Object.defineProperty(root, 'innerHTML', { set (v) { root.html = v; root.firstChild = {} }, get () { return root.html } })
        root.querySelector = () => el
        return root
      }
    })
  })
  const win = new EventTarget()
  Object.assign(win, {
    location: { href: 'https://shop.example/p/1', pathname: '/p/1' },
    navigator: Object.assign({ language: 'en-GB' }, nav),
    localStorage: (storage && storage.local) || mem(),
    sessionStorage: (storage && storage.session) || mem(),
    innerWidth: 1280,
    innerHeight: 800,
    scrollY: 0,
    setInterval: () => 1,
    clearInterval: () => {},
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: t => clearTimeout(t),
    requestAnimationFrame: fn => fn(),
    matchMedia: () => ({ matches: true })
  })
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
    await import('../src/index.js?run=' + (++run))
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
  return { win, doc, sockets, ws, open, push, fireTimers, timers: () => timers, warnings, restore, k: win.kairos }
}

const WELCOME = {
  v: 1, t: 'welcome', sid: 's_8b1d0c3f55',
  track: { batch_ms: 500, dwell_ms: 5000, scroll_step: 10, idle_ms: 30000, exit: true },
  max_frame: 16384, max_events: 50
}

test('window.kairos: the API, and the only thing the snippet adds to window', async () => {
  const s = await boot()
  try {
    assert.deepStrictEqual(Object.keys(s.k).sort(), ['consent', 'page', 'sid', 'state', 'track', 'version'])
    assert.equal(s.k.version, '0.1.0')
    assert.equal(typeof s.k.track, 'function')
    assert.equal(s.k.state, 'connecting')
    assert.equal(s.k.sid, null)
  } finally { s.restore() }
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
    assert.deepStrictEqual(Object.keys(hello), ['v', 't', 'site', 'vid', 'sid', 'page', 'consent', 'dnt', 'gpc', 'sv', 'tz', 'lang', 'vp'])
    assert.equal(hello.site, 'demo')
    assert.match(hello.vid, /^v_[a-z0-9]{20}$/)
    assert.equal(hello.sid, null)
    assert.deepStrictEqual(hello.page, { url: 'https://shop.example/p/1', path: '/p/1', title: 'Linen shirt', ref: 'https://www.example.org/' })
    assert.equal(hello.consent, true)
    assert.equal(hello.sv, '0.1.0')
    assert.equal(hello.tz, -new Date().getTimezoneOffset() || 0)
    assert.deepStrictEqual(hello.vp, [1280, 800])
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
    const target = { tagName: 'BUTTON', id: 'b', closest: () => null, getAttribute: () => null }
    const click = new Event('click')
    Object.defineProperty(click, 'target', { value: target })
    s.doc.dispatchEvent(click)
    s.k.page()
    assert.equal(s.ws().sent.length, 2)
    assert.equal(s.timers().find(t => t.ms === 500) !== undefined, true)
    s.fireTimers()
    const batch = s.ws().sent[2]
    assert.equal(batch.seq, 1)
    // (page() first closes the previous page's dwell: a few ms here, or none)
    const ev = batch.ev.filter(e => e.e !== 'dwell')
    assert.deepStrictEqual(ev.map(e => e.e), ['click', 'page_view'])
    assert.deepStrictEqual(ev[0], { e: 'click', ts: ev[0].ts, tag: 'button', id: 'b' })
    assert.deepStrictEqual(ev[1], { e: 'page_view', ts: ev[1].ts, url: 'https://shop.example/p/1', path: '/p/1', title: 'Linen shirt', ref: 'https://www.example.org/' })
    // e and ts cannot be overwritten by the store's fields
    s.k.track('purchase', { value: 10, e: 'x', ts: 1 })
    const p = s.ws().sent[3].ev[0]
    assert.equal(p.e, 'purchase')
    assert.ok(p.ts > 1e12)
  } finally { s.restore() }
})

test('a session id from an earlier page load is resumed in hello', async () => {
  const mem = () => { const m = new Map(); return { m, getItem: k => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, v), removeItem: k => m.delete(k) } }
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

for (const [name, nav] of [['navigator.doNotTrack', { doNotTrack: '1' }], ['navigator.globalPrivacyControl', { globalPrivacyControl: true }]]) {
  test(`${name}: no connection, no storage, kairos.track and consent(true) do nothing`, async () => {
    const s = await boot({ nav })
    try {
      assert.equal(s.sockets.length, 0)
      s.k.track('cart', { value: 1 })
      s.k.consent(true)
      assert.equal(s.sockets.length, 0)
      assert.equal(s.k.state, 'idle')
      assert.equal(s.win.localStorage.m.size, 0)
    } finally { s.restore() }
  })
}

test('data-consent="required": nothing until kairos.consent(true); consent(false) forgets and disconnects', async () => {
  const s = await boot({ attrs: { 'data-site': 'demo', 'data-consent': 'required' } })
  try {
    assert.equal(s.sockets.length, 0)
    assert.equal(s.k.state, 'idle')
    s.k.track('add_to_cart', { sku: 'LS-01' }) // waits in memory
    assert.equal(s.win.localStorage.m.size, 0, 'no visitor id before consent')
    s.k.consent(true)
    assert.equal(s.sockets.length, 1)
    s.open()
    assert.equal(s.ws().sent[0].consent, true)
    s.push(WELCOME)
    assert.deepStrictEqual(s.ws().sent[1].ev.map(e => e.e), ['add_to_cart'])
    assert.ok(s.win.localStorage.m.has('kairos.vid'))
    assert.ok(s.win.sessionStorage.m.has('kairos.sid'))

    const ws = s.ws()
    s.k.consent(false)
    assert.equal(ws.closedWith, 1000)
    assert.equal(s.k.state, 'idle')
    assert.equal(s.k.sid, null)
    assert.equal(s.win.localStorage.m.size, 0)
    assert.equal(s.win.sessionStorage.m.size, 0)
    s.k.track('cart', { value: 1 })
    assert.equal(ws.sent.length, 2)
    assert.equal(s.sockets.length, 1, 'no reconnect')
  } finally { s.restore() }
})

test('a stub queue set up before the script loaded is replayed', async () => {
  const pre = { q: [['track', 'cart', { value: 9, items: 1 }], ['consent', true], ['page']] }
  const s = await boot({ attrs: { 'data-site': 'demo', 'data-consent': 'required' }, pre })
  try {
    assert.notEqual(s.k, pre)
    assert.equal(s.sockets.length, 1, 'the queued consent(true) connected')
    s.open()
    s.push(WELCOME)
    s.fireTimers()
    const evs = s.ws().sent.filter(f => f.t === 'events').flatMap(f => f.ev.map(e => e.e))
    // (page() also closes the previous page's dwell, a few ms here)
    assert.deepStrictEqual(evs.filter(e => e !== 'dwell'), ['cart', 'page_view'])
  } finally { s.restore() }
})

test('an error frame is logged once per code; bad input never throws into the page', async () => {
  const s = await boot()
  try {
    s.open()
    s.push(WELCOME)
    s.push({ v: 1, t: 'error', code: 'unknown_event', msg: 'event 0: unknown event type', seq: 0 })
    s.push({ v: 1, t: 'error', code: 'unknown_event', msg: 'again' })
    s.push({ v: 1, t: 'error', code: 'bad_event', msg: 'x' })
    assert.deepStrictEqual(s.warnings, ['[kairos] unknown_event: event 0: unknown event type', '[kairos] bad_event: x'])
    s.push({ v: 1, t: 'teleport' })
    s.k.track('cart', { f () {} }) // not encodable: dropped, not thrown
    s.k.track(42)
    s.k.track()
    assert.equal(s.ws().sent.filter(f => f.t === 'events').length, 0)
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

test('pagehide sends the last dwell and closes; a page restored from the bfcache reconnects', async () => {
  const s = await boot()
  try {
    s.open()
    s.push(WELCOME)
    const ws = s.ws()
    s.win.dispatchEvent(new Event('pagehide'))
    assert.equal(ws.closedWith, 1000)
    assert.equal(s.k.state, 'closed')
    const show = new Event('pageshow')
    Object.defineProperty(show, 'persisted', { value: true })
    s.win.dispatchEvent(show)
    assert.equal(s.sockets.length, 2)
    assert.equal(s.k.state, 'connecting')
    s.open()
    assert.equal(s.ws().sent[0].re, undefined, 'coming back from the bfcache is a new page view')
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

test('feedback is sent at once while open, and queued across a reconnect', async () => {
  const s = await boot()
  try {
    s.open()
    s.push(WELCOME)
    s.push({ v: 1, t: 'show', oid: 'o1', kind: 'offer', html: '<p>x</p>', css: '', place: 'center', ttl_ms: 1000, rule: 'r' })
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
