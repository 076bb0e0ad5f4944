// The collectors of src/track.js on a fake window and document (test/fake-dom.js)
// with a fake clock: every signal the snippet reports, and what it never reports.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { clickPayload as payload, kattrs, trackProps, watchRoutes, startTracking } from '../src/track.js'
import { encode, decode } from '../src/codec.js'
import { Document, Element, Target, parse, fire, installHistory } from './fake-dom.js'

// what the server gets: fields left undefined are not encoded
const wire = o => o && decode(encode(o))
const clickPayload = (...a) => wire(payload(...a))

// build a tree from markup; returns the element with id `pick` (or the first one)
function dom (html, pick) {
  const doc = new Document()
  for (const n of parse(html)) typeof n === 'string' ? doc.body.childNodes.push(n) : doc.body.appendChild(n)
  return pick ? doc.querySelector('#' + pick) || doc.querySelector(pick) : doc.body.children[0]
}

// --- clickPayload ----------------------------------------------------------

test('click: tag, id, data-kairos of the closest element, path of the link', () => {
  const a = dom('<div data-kairos="add-to-cart"><a href="/cart?x=1" id="buy"><span id="s">Add <b>now</b></span></a></div>', 'buy')
  assert.deepStrictEqual(clickPayload(a), { tag: 'a', id: 'buy', k: 'add-to-cart', href: '/cart' })
  assert.deepStrictEqual(clickPayload(new Element('button')), { tag: 'button' })
})

test('click: a click inside a link or button describes the link or button (the nearest actionable element)', () => {
  const span = dom('<div data-kairos="card"><a href="/cart" id="buy"><span id="s">Add <b id="b">now</b></span></a></div>', 's')
  assert.deepStrictEqual(clickPayload(span), { tag: 'a', id: 'buy', k: 'card', href: '/cart' })
  assert.deepStrictEqual(clickPayload(span.querySelector('b')), { tag: 'a', id: 'buy', k: 'card', href: '/cart' })
  for (const html of [
    '<button id="x"><i id="t">+</i></button>',
    '<summary id="x"><i id="t">More</i></summary>',
    '<label id="x"><i id="t">Size</i></label>',
    '<div role="button" id="x"><i id="t">Go</i></div>',
    '<div data-kairos="promo" id="x"><i id="t">50%</i></div>',
    '<div data-kairos-track="size_guide" id="x"><i id="t">Guide</i></div>'
  ]) {
    assert.equal(clickPayload(dom(html, 't')).id, 'x', html)
  }
  // nothing actionable around it: the element itself
  assert.deepStrictEqual(clickPayload(dom('<section id="sec"><p id="p">text</p></section>', 'p')), { tag: 'p', id: 'p' })
})

test('click text: with text=true, a link\'s, button\'s or summary\'s own text, whitespace collapsed, at most 64 characters', () => {
  const b = dom('<button id="b">\n   Add   to\tcart <span>(2)</span>  </button>', 'b')
  assert.equal(clickPayload(b, true).text, 'Add to cart (2)')
  assert.equal(clickPayload(b).text, undefined, 'no text unless asked for')
  assert.equal(clickPayload(b, false).text, undefined)
  const long = dom('<a href="/x" id="a">' + 'word '.repeat(40) + '</a>', 'a')
  assert.equal(clickPayload(long, true).text.length, 64)
  assert.equal(clickPayload(long, true).text, ('word '.repeat(13) + 'word').slice(0, 64))
  assert.equal(clickPayload(dom('<summary id="s">Delivery</summary>', 's'), true).text, 'Delivery')
  // an icon-only button: no text field rather than an empty one
  assert.equal('text' in clickPayload(dom('<button id="b"> <svg></svg> </button>', 'b'), true), false)
  // other actionable elements never send their text
  for (const html of ['<label id="x">Ms Jane Doe</label>', '<div role="button" id="x">Jane</div>', '<div data-kairos="k" id="x">Jane</div>', '<p id="x">Jane</p>']) {
    assert.equal(clickPayload(dom(html, 'x'), true).text, undefined, html)
  }
})

test('click payload never includes a form field\'s value nor its text, whatever the settings', () => {
  const SECRET = 'hunter2-4111111111111111'
  const form = dom(`<form data-kairos="checkout">
    <input id="card" type="text" value="${SECRET}" placeholder="${SECRET}">
    <input id="pw" type="password" value="${SECRET}">
    <textarea id="note">${SECRET}</textarea>
    <select id="country"><option selected>${SECRET}</option></select>
    <label id="lab">Card <input id="inner" value="${SECRET}"></label>
  </form>`)
  const fields = ['card', 'pw', 'note', 'country', 'inner'].map(id => form.querySelector('#' + id))
  for (const f of fields) {
    // what a real element also has
    Object.defineProperty(f, 'value', { value: SECRET })
    Object.defineProperty(f, 'defaultValue', { value: SECRET })
    Object.defineProperty(f, 'innerText', { value: SECRET })
  }
  for (const f of fields.concat(form.querySelector('#lab'))) {
    for (const text of [false, true]) {
      const p = clickPayload(f, text)
      assert.ok(!JSON.stringify(p).includes('hunter2'), JSON.stringify(p))
      for (const k of Object.keys(p)) assert.ok(['tag', 'id', 'k'].includes(k), k)
      assert.equal(p.k, 'checkout')
    }
  }
  assert.deepStrictEqual(clickPayload(fields[0], true), { tag: 'input', id: 'card', k: 'checkout' })
  assert.deepStrictEqual(clickPayload(fields[4], true), { tag: 'input', id: 'inner', k: 'checkout' }, 'the field itself, not its label')
})

test('click: ka holds the element\'s data-kairos-* attributes (8 at most, key <= 32, value cut to 64)', () => {
  const b = dom('<button id="b" data-kairos="buy" data-kairos-size="m" data-kairos-slot="size-picker" data-kairos-note="' + 'n'.repeat(80) + '">M</button>', 'b')
  assert.deepStrictEqual(clickPayload(b, true), { tag: 'button', id: 'b', k: 'buy', ka: { size: 'm', slot: 'size-picker', note: 'n'.repeat(64) }, text: 'M' })
  // only the clicked element's own attributes, not its ancestors'
  const inner = dom('<div data-kairos-zone="top"><button id="b">x</button></div>', 'b')
  assert.equal(clickPayload(inner).ka, undefined)

  const many = new Element('button', Object.fromEntries(Array.from({ length: 10 }, (_, i) => ['data-kairos-a' + i, String(i)])))
  assert.deepStrictEqual(kattrs(many), { a0: '0', a1: '1', a2: '2', a3: '3', a4: '4', a5: '5', a6: '6', a7: '7' })
  const keys = new Element('a', { ['data-kairos-' + 'k'.repeat(33)]: 'long key', ['data-kairos-' + 'k'.repeat(32)]: 'ok', 'data-kairos': 'plain', 'data-kairosx': 'no' })
  assert.deepStrictEqual(kattrs(keys), { ['k'.repeat(32)]: 'ok' })
  assert.equal(kattrs(new Element('a', { id: 'x' })), undefined)
  assert.equal(kattrs({}), undefined, 'no attributes at all')
  // over-long keys do not use up the 8 places
  const mixed = new Element('a', Object.assign({ ['data-kairos-' + 'x'.repeat(40)]: '1' }, Object.fromEntries(Array.from({ length: 8 }, (_, i) => ['data-kairos-b' + i, 'v']))))
  assert.equal(Object.keys(kattrs(mixed)).length, 8)
})

test('click fields over the protocol limits are left out rather than getting the event refused', () => {
  const a = new Element('a', { href: '/' + 'p'.repeat(1024), id: 'i'.repeat(65), 'data-kairos': 'k'.repeat(65) })
  assert.deepStrictEqual(clickPayload(a), { tag: 'a' })
  const ok = new Element('a', { href: '/' + 'p'.repeat(1023), id: 'i'.repeat(64), 'data-kairos': 'k'.repeat(64) })
  assert.deepStrictEqual(clickPayload(ok), { tag: 'a', id: 'i'.repeat(64), k: 'k'.repeat(64), href: '/' + 'p'.repeat(1023) })
  assert.equal(clickPayload(new Element('my-very-long-custom-element')).tag, 'my-very-long-cus')
  assert.equal(clickPayload(null), null)
  assert.equal(clickPayload({ nodeType: 9 }), null, 'the document itself')
})

// --- trackProps, watchRoutes -------------------------------------------------

test('trackProps: the other data-kairos-* attributes, numeric strings as numbers', () => {
  const el = new Element('button', {
    'data-kairos-track': 'add_to_cart',
    'data-kairos-sku': 'LS-01',
    'data-kairos-price': '59.90',
    'data-kairos-qty': '2',
    'data-kairos-delta': '-3',
    id: 'x'
  })
  assert.deepStrictEqual(trackProps(el), { sku: 'LS-01', price: 59.9, qty: 2, delta: -3 })
  const strings = new Element('a', { 'data-kairos-track': 't', 'data-kairos-zip': '007', 'data-kairos-exp': '1e3', 'data-kairos-half': '.5', 'data-kairos-ver': '1.2.3', 'data-kairos-x': '12a' })
  assert.deepStrictEqual(trackProps(strings), { zip: 7, exp: '1e3', half: '.5', ver: '1.2.3', x: '12a' })
  assert.deepStrictEqual(trackProps(new Element('a', { 'data-kairos-track': 'x' })), {})
  // the track name uses one of the 8 places
  const many = new Element('a', Object.assign({ 'data-kairos-track': 't' }, Object.fromEntries(Array.from({ length: 9 }, (_, i) => ['data-kairos-p' + i, String(i)]))))
  assert.equal(Object.keys(trackProps(many)).length, 7)
})

test('watchRoutes: pushState and replaceState call fn after the URL changed; so does popstate', () => {
  const win = new Target()
  const h = installHistory(win, 'https://shop.example/p/1')
  const seen = []
  watchRoutes(win, () => seen.push(win.location.pathname + win.location.search))
  const r = win.history.pushState({ a: 1 }, '', '/p/2?c=red')
  assert.equal(r, undefined)
  assert.equal(h.state.a, 1, 'the original ran, with its arguments')
  win.history.replaceState(null, '', '/p/3')
  win.history.back()
  assert.deepStrictEqual(seen, ['/p/2?c=red', '/p/3', '/p/1'])
  assert.equal(h.length, 2)
})

// --- startTracking ---------------------------------------------------------

// index.js DEFAULTS
const DEFAULTS = {
  batch_ms: 1000, dwell_ms: 5000, scroll_step: 10, idle_ms: 30000,
  exit: true, exit_min_ms: 3000, exit_gap_ms: 10000, exit_scroll: true, exit_back: false, exit_hidden: true,
  clicks: true, click_text: true, rage_n: 3, rage_ms: 1000, hes_ms: 15000, copy: false, spa: true
}

// A fake window and document on a fake clock. advance(ms) moves the clock and
// runs the 1 s tick and the timeouts that fall due, in order.
function world ({ fine = true, settings = {}, start = 1e6, entries, referrer = '' } = {}) {
  let now = start
  let timers = [] // { fn, at, every }
  let nextId = 1
  const rafs = []
  const win = new Target()
  const addTimer = (fn, ms, every) => { const t = { id: nextId++, fn, at: now + ms, every }; timers.push(t); return t.id }
  const dropTimer = id => { timers = timers.filter(t => t.id !== id) }
  Object.assign(win, {
    scrollY: 0,
    innerHeight: 1000,
    setInterval: (fn, ms) => addTimer(fn, ms, ms),
    clearInterval: dropTimer,
    setTimeout: (fn, ms) => addTimer(fn, ms),
    clearTimeout: dropTimer,
    requestAnimationFrame: fn => rafs.push(fn),
    matchMedia: q => ({ matches: q === '(pointer: fine)' && fine })
  })
  const history = installHistory(win, 'https://shop.example/p/1')
  // the history the page loads into: the states of the entries for its URL, the last one current
  if (entries) entries.forEach((st, i) => i ? history.pushState(st, '') : history.replaceState(st, ''))
  const doc = new Document()
  doc.referrer = referrer
  doc.documentElement.scrollHeight = 10000
  const events = []
  const tracked = []
  const leaves = [] // how many events there were at each leave()
  const s = Object.assign({}, DEFAULTS, settings)
  const tracker = startTracking(win, doc, s, (e, f) => events.push(wire(Object.assign({ e }, f))), () => leaves.push(events.length), () => now,
    (name, props) => tracked.push([name, props]))
  const advance = ms => {
    const end = now + ms
    for (;;) {
      const t = timers.filter(x => x.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0]
      if (!t) break
      now = t.at
      if (t.every) t.at += t.every
      else dropTimer(t.id)
      t.fn()
    }
    now = end
  }
  const frame = () => rafs.splice(0).forEach(f => f())
  // detail: the click count a pointer click carries (0 for keyboard and script clicks)
  const click = (target, x = 10, y = 10, detail = 1) => fire(doc, 'click', { target, clientX: x, clientY: y, detail })
  const hide = () => { doc.visibilityState = 'hidden'; fire(doc, 'visibilitychange') }
  const show = () => { doc.visibilityState = 'visible'; fire(doc, 'visibilitychange') }
  const of = type => events.filter(e => e.e === type)
  return {
    win, doc, s, tracker, events, tracked, history, advance, frame, click, hide, show, of,
    leaves: () => leaves.length,
    leftAt: () => leaves.at(-1),
    timers: () => timers,
    now: () => now,
    setNow: t => { now = t }
  }
}

test('dwell: visible time only, every dwell_ms and when the page is hidden', () => {
  const w = world()
  w.advance(5000)
  assert.deepStrictEqual(w.events, [{ e: 'dwell', ms: 5000 }])
  w.advance(2000)
  w.hide()
  assert.deepStrictEqual(w.events[1], { e: 'dwell', ms: 2000 })
  assert.equal(w.leaves(), 1, 'hidden: what is queued goes now')
  w.advance(60000) // hidden: nothing counts, no idle either
  assert.equal(w.events.length, 2)
  w.show()
  w.advance(3000)
  w.tracker.dwell() // what pagehide does
  assert.deepStrictEqual(w.events[2], { e: 'dwell', ms: 3000 })
  w.tracker.dwell()
  assert.equal(w.events.length, 3, 'nothing new to report')
})

test('dwell stops while the visitor is idle and starts again with the next input', () => {
  const w = world({ settings: { dwell_ms: 5000, idle_ms: 12000 } })
  w.advance(12000)
  assert.deepStrictEqual(w.events, [{ e: 'dwell', ms: 5000 }, { e: 'dwell', ms: 5000 }, { e: 'idle', ms: 12000 }])
  w.advance(60000)
  w.tracker.dwell()
  assert.deepStrictEqual(w.events.at(-1), { e: 'dwell', ms: 2000 }, 'the 2 s before the idle, nothing of the idle minute')
  w.advance(1000)
  fire(w.win, 'pointermove')
  assert.deepStrictEqual(w.events.at(-1), { e: 'idle_end', ms: 73000 }, 'since the last input')
  w.advance(5000)
  assert.deepStrictEqual(w.events.at(-1), { e: 'dwell', ms: 5000 }, 'counting again from the input')
  // hidden while idle: still nothing counted, and the return is the input
  w.advance(12000)
  assert.equal(w.events.at(-1).e, 'idle')
  const n = w.events.length
  w.hide()
  w.advance(30000)
  w.show()
  assert.deepStrictEqual(w.events.slice(n).map(e => e.e), ['dwell', 'idle_end'])
  assert.equal(w.events[n].ms, 2000)
  w.advance(5000)
  assert.deepStrictEqual(w.events.at(-1), { e: 'dwell', ms: 5000 })
})

test('scroll: the deepest point, reported when it grew by scroll_step, throttled to one measure a frame', () => {
  const w = world()
  const scrollTo = y => { w.win.scrollY = y; fire(w.win, 'scroll'); fire(w.win, 'scroll'); w.frame() }
  w.win.scrollY = 500
  fire(w.win, 'scroll')
  fire(w.win, 'scroll')
  assert.equal(w.events.length, 0, 'measured in the next frame')
  w.frame()
  assert.deepStrictEqual(w.events, [{ e: 'scroll', pct: 15 }])
  scrollTo(1000) // 20%: +5 < 10
  assert.equal(w.events.length, 1)
  scrollTo(1500) // 25%
  assert.deepStrictEqual(w.events[1], { e: 'scroll', pct: 25 })
  scrollTo(0) // back up: the maximum stays
  scrollTo(1700) // 27%
  assert.equal(w.events.length, 2)
  w.s.scroll_step = 1
  scrollTo(1800)
  assert.deepStrictEqual(w.events[2], { e: 'scroll', pct: 28 })
  scrollTo(9000)
  assert.deepStrictEqual(w.events[3], { e: 'scroll', pct: 100 })
  w.tracker.newPage() // SPA navigation: depth starts again
  scrollTo(0)
  assert.deepStrictEqual(w.events.filter(e => e.e === 'scroll').at(-1), { e: 'scroll', pct: 10 })
})

test('idle: once after idle_ms without input, idle_end with the idle time on the next input', () => {
  const w = world({ settings: { dwell_ms: 1e9 } })
  w.advance(29000)
  assert.equal(w.events.length, 0)
  w.advance(1000)
  assert.deepStrictEqual(w.events, [{ e: 'idle', ms: 30000 }])
  w.advance(60000)
  assert.equal(w.events.length, 1, 'once per idle period')
  fire(w.win, 'keydown')
  assert.deepStrictEqual(w.events[1], { e: 'idle_end', ms: 90000 })
  fire(w.win, 'keydown')
  assert.equal(w.events.length, 2, 'idle_end once')
  // every kind of input keeps the visitor active
  for (const type of ['pointerdown', 'pointermove', 'keydown', 'touchstart', 'wheel', 'scroll']) {
    w.advance(20000)
    fire(w.win, type)
  }
  assert.equal(w.of('idle').length, 1, 'no idle while there is input every 20 s')
  w.advance(30000)
  assert.equal(w.of('idle').length, 2)
  // idle_ms from the welcome; 0 turns it off
  w.s.idle_ms = 0
  fire(w.win, 'keydown')
  w.advance(120000)
  assert.equal(w.of('idle').length, 2)
})

test('exit intent (desktop): the pointer leaving through the top, after exit_min_ms, at most once per exit_gap_ms', () => {
  const w = world()
  const out = (y, related = null) => fire(w.doc, 'mouseout', { relatedTarget: related, clientY: y })
  out(-2)
  assert.equal(w.events.length, 0, 'not in the first 3 s of the page')
  w.advance(3000)
  out(300) // leaving through a side or the bottom
  out(-5, new Element('div')) // moving onto another element
  assert.equal(w.of('exit_intent').length, 0)
  out(-2)
  assert.deepStrictEqual(w.of('exit_intent'), [{ e: 'exit_intent', how: 'top' }])
  w.advance(9999)
  out(0)
  assert.equal(w.of('exit_intent').length, 1, 'within the 10 s gap')
  w.advance(1)
  out(0)
  assert.equal(w.of('exit_intent').length, 2)
  w.s.exit = false // the welcome can turn it off
  w.advance(20000)
  out(0)
  assert.equal(w.of('exit_intent').length, 2)
  // other gaps from the welcome
  const v = world({ settings: { exit_min_ms: 0, exit_gap_ms: 500 } })
  fire(v.doc, 'mouseout', { relatedTarget: null, clientY: 0 })
  v.advance(500)
  fire(v.doc, 'mouseout', { relatedTarget: null, clientY: 0 })
  assert.equal(v.of('exit_intent').length, 2)
})

test('exit intent (desktop): no scroll or hidden exits, and a touch device ignores mouseout', () => {
  const w = world()
  w.advance(5000)
  w.win.scrollY = 5000
  fire(w.win, 'scroll')
  w.advance(100)
  w.win.scrollY = 0
  fire(w.win, 'scroll')
  w.hide()
  assert.equal(w.of('exit_intent').length, 0)
  const t = world({ fine: false })
  t.advance(5000)
  fire(t.doc, 'mouseout', { relatedTarget: null, clientY: -2 })
  assert.equal(t.of('exit_intent').length, 0)
})

test('exit intent (touch): a fast flick up near the top is how=scroll; gated like the others', () => {
  const t = world({ fine: false })
  const scroll = (y, dt) => { t.advance(dt); t.win.scrollY = y; fire(t.win, 'scroll') }
  scroll(4000, 0)
  scroll(500, 100) // 35 px/ms, ends within one screen: but the page is 100 ms old
  assert.equal(t.of('exit_intent').length, 0)
  scroll(4000, 5000)
  scroll(3000, 16) // fast, but far from the top
  scroll(2900, 1000) // slow
  scroll(200, 2000) // slow, to the top: reading
  assert.equal(t.of('exit_intent').length, 0)
  scroll(3000, 1000)
  scroll(600, 100)
  assert.deepStrictEqual(t.of('exit_intent'), [{ e: 'exit_intent', how: 'scroll' }])
  scroll(3000, 1000)
  scroll(0, 100)
  assert.equal(t.of('exit_intent').length, 1, 'within exit_gap_ms')
  scroll(3000, 10000)
  scroll(0, 100)
  assert.equal(t.of('exit_intent').length, 2)
  t.s.exit_scroll = false
  scroll(3000, 20000)
  scroll(0, 100)
  assert.equal(t.of('exit_intent').length, 2, 'exit_scroll off')
  t.s.exit_scroll = true
  t.s.exit = false
  scroll(3000, 20000)
  scroll(0, 100)
  assert.equal(t.of('exit_intent').length, 2, 'exit off')
})

test('exit intent (touch): the tab hidden is how=hidden, queued before the page leaves; exit_hidden and the gates apply', () => {
  const t = world({ fine: false })
  t.hide()
  assert.equal(t.of('exit_intent').length, 0, 'hidden within exit_min_ms of the page')
  t.show()
  t.advance(3000)
  t.hide()
  assert.deepStrictEqual(t.events.slice(-2), [{ e: 'dwell', ms: 3000 }, { e: 'exit_intent', how: 'hidden' }])
  assert.equal(t.leftAt(), t.events.length, 'both queued before leave() sends what is queued')
  t.show()
  t.advance(5000)
  t.hide()
  assert.equal(t.of('exit_intent').length, 1, 'within exit_gap_ms')
  t.show()
  t.advance(10000)
  t.s.exit_hidden = false
  t.hide()
  assert.equal(t.of('exit_intent').length, 1, 'exit_hidden off')
  t.show()
  t.s.exit_hidden = true
  t.s.exit = false
  t.hide()
  assert.equal(t.of('exit_intent').length, 1, 'exit off')
})

test('exit intent (back button, exit_back): one extra history entry on the first tick; going back to the real entry is how=back', () => {
  const w = world({ settings: { exit_back: true } })
  assert.equal(w.history.length, 1)
  w.advance(1000)
  assert.equal(w.history.length, 2, 'one entry pushed')
  assert.equal(w.history.entries[1].url, w.history.entries[0].url, 'for the same URL')
  w.advance(10000)
  assert.equal(w.history.length, 2, 'only once')
  w.history.back()
  assert.deepStrictEqual(w.of('exit_intent'), [{ e: 'exit_intent', how: 'back' }])
  assert.equal(w.win.location.href, 'https://shop.example/p/1', 'the visitor is still on the page')
  w.advance(20000)
  w.history.forward()
  w.history.back()
  assert.equal(w.of('exit_intent').length, 1, 'a second back is a real one: once per page')
})

test('exit intent (back button): off by default; within exit_min_ms the back press is not an exit', () => {
  const off = world()
  off.advance(5000)
  assert.equal(off.history.length, 1, 'no history entry without exit_back')
  const early = world({ settings: { exit_back: true, exit_min_ms: 3000 } })
  early.advance(1000)
  early.history.back()
  assert.equal(early.of('exit_intent').length, 0)
  early.advance(5000)
  early.history.forward()
  early.history.back()
  assert.equal(early.of('exit_intent').length, 0, 'disarmed by the first back')
  const gated = world({ settings: { exit_back: true, exit: false } })
  gated.advance(5000)
  gated.history.back()
  assert.equal(gated.of('exit_intent').length, 0, 'exit off')
})

test('exit intent (back button): the app\'s own back is no exit; back past the entry page is', () => {
  const w = world({ settings: { exit_back: true } })
  w.advance(5000)
  w.history.pushState(null, '', '/p/2') // the app routes
  w.tracker.newPage()
  w.advance(5000)
  w.history.back() // to our entry of /p/1: the app's navigation
  assert.equal(w.of('exit_intent').length, 0)
  w.history.back() // from /p/1 (ours) to the real entry of /p/1: trying to leave the store
  assert.deepStrictEqual(w.of('exit_intent'), [{ e: 'exit_intent', how: 'back' }])
})

test('exit intent (back button): only the first page of a visit adds the entry, not a page reached from the store', () => {
  const w = world({ settings: { exit_back: true }, referrer: 'https://shop.example/p/0' })
  w.advance(5000)
  assert.equal(w.history.length, 1, 'the back button is left alone here')
  const landed = world({ settings: { exit_back: true }, referrer: 'https://shop.example.evil.test/' })
  landed.advance(1000)
  assert.equal(landed.history.length, 2, 'another site (whose name starts like the store\'s) is a landing')
})

test('exit intent (back button): back to the landing page after a real page load: the next back is the exit, the one after leaves', () => {
  // land on /p/1: its entry is marked real, ours pushed after it
  const land = world({ settings: { exit_back: true } })
  land.advance(1000)
  assert.deepStrictEqual(land.history.entries.map(e => e.state), [{ kairos_back: 2 }, { kairos_back: 1 }])
  // a link to /p/2, then back: /p/1 loads again on our entry (no back/forward cache)
  const ours = world({ settings: { exit_back: true }, entries: [{ kairos_back: 2, app: 7 }, { kairos_back: 1 }], referrer: 'https://www.example.org/' })
  ours.advance(5000)
  assert.equal(ours.history.length, 2, 'no second entry of ours')
  assert.equal(ours.of('exit_intent').length, 0)
  ours.history.back() // the real entry: the exit, and the visitor stays on the page
  assert.deepStrictEqual(ours.of('exit_intent'), [{ e: 'exit_intent', how: 'back' }])
  assert.deepStrictEqual(ours.history.state, { kairos_back: 0, app: 7 }, 'the mark is spent, the app\'s state kept')
  assert.equal(ours.history.index, 0, 'the next back leaves')
  // a reload there is no exit and adds no entry
  const again = world({ settings: { exit_back: true }, entries: [{ kairos_back: 0 }], referrer: 'https://www.example.org/' })
  again.advance(5000)
  assert.equal(again.history.length, 1)
  assert.equal(again.of('exit_intent').length, 0)
})

test('exit intent (back button): following an in-page #anchor link is not an exit', () => {
  const w = world({ settings: { exit_back: true } })
  w.advance(5000)
  w.history.fragment('#reviews') // <a href="#reviews">: a new entry and popstate
  assert.equal(w.of('exit_intent').length, 0, 'the visitor went down the page, not back')
  w.history.back() // to our entry (#reviews gone)
  w.history.back() // to the real entry: now they are leaving
  assert.deepStrictEqual(w.of('exit_intent'), [{ e: 'exit_intent', how: 'back' }])
})

test('clicks: every click with its element; clicks on the overlay host are not tracked; clicks:false stops them', () => {
  const w = world()
  const b = dom('<button id="b1" data-kairos-size="m">Size M</button>', 'b1')
  w.click(b)
  w.click(new Element('div', { id: 'kairos-host' }))
  assert.deepStrictEqual(w.events, [{ e: 'click', tag: 'button', id: 'b1', ka: { size: 'm' }, text: 'Size M' }])
  w.s.click_text = false
  w.click(b)
  assert.deepStrictEqual(w.events[1], { e: 'click', tag: 'button', id: 'b1', ka: { size: 'm' } })
  w.s.clicks = false
  w.click(b)
  assert.equal(w.events.length, 2)
  fire(w.doc, 'click', { target: null }) // nothing to describe: nothing thrown
  fire(w.doc, 'click', { target: {} })
  assert.equal(w.events.length, 2)
})

test('rage clicks: rage_n clicks within rage_ms on one spot add rage_click {n, ...the click fields}, once per burst', () => {
  const w = world()
  const b = dom('<div data-kairos="add-to-cart"><button id="add">Add to cart</button></div>', 'add')
  w.click(b, 200, 300)
  w.advance(200)
  w.click(b, 210, 290)
  assert.equal(w.of('rage_click').length, 0)
  w.advance(200)
  w.click(b, 205, 305)
  assert.deepStrictEqual(w.events.map(e => e.e), ['click', 'click', 'click', 'rage_click'])
  assert.deepStrictEqual(w.of('rage_click')[0], { e: 'rage_click', n: 3, tag: 'button', id: 'add', k: 'add-to-cart', text: 'Add to cart' })
  w.advance(100)
  w.click(b, 205, 305)
  assert.equal(w.of('rage_click').length, 1, 'the 4th click of the burst')
  // slow clicks, or clicks on different spots, are no rage
  w.advance(5000)
  for (let i = 0; i < 5; i++) { w.click(b, 200, 300); w.advance(600) }
  for (let i = 0; i < 5; i++) { w.click(b, 100 * i, 300); w.advance(10) }
  assert.equal(w.of('rage_click').length, 1)
})

test('rage clicks: keyboard and script clicks (detail 0, at 0,0) are never rage', () => {
  const w = world()
  const b = new Element('button', { id: 'x' })
  for (let i = 0; i < 5; i++) w.click(b, 0, 0, 0) // Enter on a focused button, or el.click()
  assert.equal(w.of('click').length, 5)
  assert.equal(w.of('rage_click').length, 0)
})

test('rage clicks: rage_n and rage_ms from the welcome; rage_n < 2 turns them off', () => {
  const w = world({ settings: { rage_n: 5, rage_ms: 2000 } })
  const b = new Element('button', { id: 'x' })
  for (let i = 0; i < 4; i++) { w.click(b); w.advance(400) }
  assert.equal(w.of('rage_click').length, 0)
  w.click(b)
  assert.deepStrictEqual(w.of('rage_click').map(e => e.n), [5])
  w.advance(5000)
  w.s.rage_n = 2 // changed live
  w.s.rage_ms = 300
  w.click(b)
  w.advance(300)
  w.click(b)
  assert.deepStrictEqual(w.of('rage_click').map(e => e.n), [5, 2])
  w.advance(5000)
  w.s.rage_n = 0
  for (let i = 0; i < 5; i++) w.click(b)
  w.s.rage_n = 1
  for (let i = 0; i < 5; i++) w.click(b)
  assert.equal(w.of('rage_click').length, 2)
})

test('data-kairos-track: a click calls onTrack(name, the other data-kairos-* as props, numbers as numbers)', () => {
  const w = world()
  const el = dom('<button id="add" data-kairos-track="add_to_cart" data-kairos-sku="LS-01" data-kairos-price="59.90" data-kairos-qty="1"><span id="in">Add</span></button>', 'in')
  w.click(el)
  assert.deepStrictEqual(w.tracked, [['add_to_cart', { sku: 'LS-01', price: 59.9, qty: 1 }]])
  assert.deepStrictEqual(w.of('click')[0].ka, { track: 'add_to_cart', sku: 'LS-01', price: '59.90', qty: '1' }, 'the click itself also goes')
  w.s.clicks = false
  w.click(el)
  assert.equal(w.tracked.length, 2, 'the store asked for it: even with clicks off')
  assert.equal(w.of('click').length, 1)
  w.click(new Element('button'))
  assert.equal(w.tracked.length, 2, 'other elements: no onTrack')
})

test('form hesitation: a field focused for hes_ms without leaving it: hesitation {field, ms}, once per field and page', () => {
  const w = world()
  const form = dom('<form><input name="email" type="email"><input id="phone" type="tel"><input type="number"><select name="size"></select><textarea name="note"></textarea></form>')
  const [email, phone, num, size, note] = form.children
  fire(w.doc, 'focusin', { target: email })
  w.advance(14999)
  assert.equal(w.of('hesitation').length, 0)
  w.advance(1)
  assert.deepStrictEqual(w.of('hesitation'), [{ e: 'hesitation', field: 'email', ms: 15000 }])
  fire(w.doc, 'focusout', { target: email })
  fire(w.doc, 'focusin', { target: email })
  w.advance(30000)
  assert.equal(w.of('hesitation').length, 1, 'once per field')
  for (const f of [phone, num, size, note]) {
    fire(w.doc, 'focusin', { target: f })
    w.advance(15000)
  }
  assert.deepStrictEqual(w.of('hesitation').map(e => e.field), ['email', 'phone', 'number', 'size', 'note'], 'name, else id, else type')
  w.tracker.newPage()
  fire(w.doc, 'focusin', { target: email })
  w.advance(15000)
  assert.equal(w.of('hesitation').length, 6, 'again on a new page')
  assert.ok(!JSON.stringify(w.events).includes('@'), 'never a value')
})

test('form hesitation: cancelled by focusout, by submit, by focusing another field; not for buttons or hidden fields', () => {
  const w = world({ settings: { hes_ms: 10000 } })
  const form = dom('<form><input name="a"><input name="b"><input type="hidden" name="h"><input type="submit" name="s"><input type="button" name="bt"><input type="reset" name="r"><input type="image" name="i"><button name="btn"></button><div name="d" tabindex="0"></div></form>')
  const [a, b, ...others] = form.children
  fire(w.doc, 'focusin', { target: a })
  w.advance(9000)
  fire(w.doc, 'focusout', { target: a })
  w.advance(5000)
  fire(w.doc, 'focusin', { target: a })
  w.advance(9000)
  fire(w.doc, 'submit', { target: form })
  w.advance(5000)
  fire(w.doc, 'focusin', { target: a })
  w.advance(9000)
  fire(w.doc, 'focusin', { target: b }) // a's timer goes, b's starts
  w.advance(9000)
  assert.equal(w.of('hesitation').length, 0)
  w.advance(1000)
  assert.deepStrictEqual(w.of('hesitation'), [{ e: 'hesitation', field: 'b', ms: 10000 }])
  for (const f of others) {
    fire(w.doc, 'focusin', { target: f })
    w.advance(20000)
  }
  assert.equal(w.of('hesitation').length, 1)
  w.s.hes_ms = 0 // off
  fire(w.doc, 'focusin', { target: a })
  w.advance(60000)
  assert.equal(w.of('hesitation').length, 1)
})

test('copy: off by default; with copy on, {tag, k} of where it happened, never the text', () => {
  const w = world()
  const code = dom('<p>Use <code id="c" data-kairos="coupon">SAVE10</code></p>', 'c')
  fire(w.doc, 'copy', { target: code })
  assert.equal(w.events.length, 0)
  w.s.copy = true
  fire(w.doc, 'copy', { target: code })
  fire(w.doc, 'copy', { target: dom('<p id="p">Jane</p>', 'p') })
  // (an undefined field is left out on the wire, as JSON does)
  assert.deepStrictEqual(JSON.parse(JSON.stringify(w.events)), [{ e: 'copy', tag: 'code', k: 'coupon' }, { e: 'copy', tag: 'p' }])
  assert.ok(!JSON.stringify(w.events).includes('SAVE10'))
})

test('newPage(): closes the old page\'s dwell and starts the per-page signals again', () => {
  const w = world()
  w.advance(2000)
  w.tracker.newPage()
  assert.deepStrictEqual(w.events, [{ e: 'dwell', ms: 2000 }])
  // exit_min_ms counts from the new page
  fire(w.doc, 'mouseout', { relatedTarget: null, clientY: 0 })
  assert.equal(w.of('exit_intent').length, 0)
  w.advance(3000)
  fire(w.doc, 'mouseout', { relatedTarget: null, clientY: 0 })
  assert.equal(w.of('exit_intent').length, 1)
  // a pending hesitation belongs to the old page
  const input = new Element('input', { name: 'q' })
  fire(w.doc, 'focusin', { target: input })
  w.advance(10000)
  w.tracker.newPage()
  w.advance(10000)
  assert.equal(w.of('hesitation').length, 0)
})

test('stop() ends every collector', () => {
  const w = world({ fine: false, settings: { copy: true, exit_back: true } })
  w.tracker.stop()
  assert.equal(w.timers().length, 0, 'no tick left')
  w.advance(60000)
  w.click(new Element('a', { 'data-kairos-track': 'x' }))
  fire(w.doc, 'mouseout', { relatedTarget: null, clientY: -1 })
  fire(w.doc, 'focusin', { target: new Element('input') })
  fire(w.doc, 'copy', { target: new Element('p') })
  w.win.scrollY = 3000
  fire(w.win, 'scroll')
  w.frame()
  w.hide()
  w.advance(60000)
  assert.deepStrictEqual(w.events, [])
  assert.deepStrictEqual(w.tracked, [])
  assert.equal(w.history.length, 1)
})

test('a failing emit never throws into the page', () => {
  const win = new Target()
  installHistory(win, 'https://shop.example/')
  Object.assign(win, { scrollY: 0, innerHeight: 800, setInterval: () => 1, clearInterval () {}, setTimeout: () => 1, clearTimeout () {}, requestAnimationFrame: f => f(), matchMedia: () => ({ matches: true }) })
  const doc = new Document()
  doc.documentElement.scrollHeight = 1000
  let calls = 0
  startTracking(win, doc, Object.assign({}, DEFAULTS, { copy: true }), () => { calls++; throw new Error('boom') }, () => { throw new Error('boom') }, Date.now)
  // (an exception in a listener would fail this test as an uncaught error)
  fire(doc, 'click', { target: new Element('button') })
  fire(doc, 'copy', { target: new Element('p') })
  win.scrollY = 500
  fire(win, 'scroll')
  doc.visibilityState = 'hidden'
  fire(doc, 'visibilitychange')
  assert.ok(calls >= 3)
})
