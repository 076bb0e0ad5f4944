import { test } from 'node:test'
import assert from 'node:assert/strict'
import { clickPayload, scrollPct, startTracking } from '../src/track.js'

// A minimal element: tag, attributes, parent; closest() understands the two
// selectors the snippet uses.
function el (tagName, attrs = {}, parent = null, extra = {}) {
  const e = Object.assign({
    tagName: tagName.toUpperCase(),
    id: attrs.id || '',
    parent,
    getAttribute: n => (n in attrs ? attrs[n] : null),
    closest (sel) {
      for (let x = this; x; x = x.parent) {
        if (sel === '[data-kairos]' && x.getAttribute('data-kairos') !== null) return x
        if (sel === 'a[href]' && x.tagName === 'A' && x.getAttribute('href') !== null) return x
      }
      return null
    }
  }, extra)
  return e
}

test('click on a link: tag, id, data-kairos of the closest element, path of the link', () => {
  const card = el('div', { 'data-kairos': 'add-to-cart' })
  const a = el('a', { href: '/cart?x=1', id: 'buy' }, card, { pathname: '/cart' })
  const span = el('span', {}, a)
  assert.deepStrictEqual(clickPayload(a), { tag: 'a', id: 'buy', k: 'add-to-cart', href: '/cart' })
  assert.deepStrictEqual(clickPayload(span), { tag: 'span', k: 'add-to-cart', href: '/cart' })
  assert.deepStrictEqual(clickPayload(el('button')), { tag: 'button' })
})

test('click payload never includes form values nor any text content', () => {
  const SECRET = 'hunter2-4111111111111111'
  const form = el('form', { 'data-kairos': 'checkout' })
  const fields = [
    el('input', { id: 'card', type: 'text', value: SECRET, name: SECRET, placeholder: SECRET }, form,
      { value: SECRET, defaultValue: SECRET, textContent: SECRET, innerText: SECRET, innerHTML: SECRET }),
    el('textarea', { id: 'note' }, form, { value: SECRET, textContent: SECRET, innerHTML: SECRET }),
    el('select', { id: 'country' }, form, { value: SECRET, selectedOptions: [{ text: SECRET }], textContent: SECRET }),
    el('button', { id: 'pay' }, form, { textContent: SECRET, innerText: SECRET, value: SECRET })
  ]
  for (const f of fields) {
    const p = clickPayload(f)
    assert.ok(!JSON.stringify(p).includes('hunter2'), JSON.stringify(p))
    for (const k of Object.keys(p)) assert.ok(['tag', 'id', 'k', 'href'].includes(k), k)
    assert.equal(p.k, 'checkout')
  }
  assert.deepStrictEqual(clickPayload(fields[0]), { tag: 'input', id: 'card', k: 'checkout' })
})

test('click fields over the protocol limits are left out rather than getting the event refused', () => {
  const a = el('a', { href: '/x', id: 'i'.repeat(65), 'data-kairos': 'k'.repeat(65) }, null, { pathname: '/' + 'p'.repeat(1024) })
  assert.deepStrictEqual(clickPayload(a), { tag: 'a' })
  assert.equal(clickPayload(el('my-very-long-custom-element')).tag, 'my-very-long-cus')
  assert.equal(clickPayload(null), null)
  assert.equal(clickPayload({ nodeType: 9 }), null, 'the document itself')
})

test('scroll depth is an int percent 0..100', () => {
  assert.equal(scrollPct(0, 800, 4000), 20)
  assert.equal(scrollPct(1200, 800, 4000), 50)
  assert.equal(scrollPct(3200, 800, 4000), 100)
  assert.equal(scrollPct(3300, 800, 4000), 100, 'overscroll')
  assert.equal(scrollPct(-50, 100, 4000), 1, 'rubber band at the top')
  assert.equal(scrollPct(0, 800, 0), 0)
  assert.ok(Number.isInteger(scrollPct(1, 777, 3333)))
})

// fake window and document for the collectors
function world ({ fine = true } = {}) {
  let now = 0
  const intervals = []
  const rafs = []
  const win = new EventTarget()
  Object.assign(win, {
    scrollY: 0,
    innerHeight: 1000,
    setInterval: (fn, ms) => intervals.push({ fn, ms }),
    clearInterval: () => { intervals.length = 0 },
    requestAnimationFrame: fn => rafs.push(fn),
    matchMedia: q => ({ matches: q === '(pointer: fine)' && fine })
  })
  const doc = new EventTarget()
  doc.visibilityState = 'visible'
  doc.documentElement = { scrollHeight: 10000 }
  const events = []
  let flushes = 0
  const settings = { batch_ms: 1000, dwell_ms: 5000, scroll_step: 10, idle_ms: 30000, exit: true }
  const tracker = startTracking(win, doc, settings, (e, f) => events.push(Object.assign({ e }, f)), () => flushes++, () => now)
  const advance = ms => {
    for (let i = 0; i < ms / 1000; i++) {
      now += 1000
      intervals.forEach(t => t.fn())
    }
  }
  const fire = (target, type, props = {}) => {
    const ev = new Event(type)
    for (const k in props) Object.defineProperty(ev, k, { value: props[k] })
    target.dispatchEvent(ev)
  }
  const frame = () => rafs.splice(0).forEach(f => f())
  return { win, doc, settings, tracker, events, advance, fire, frame, flushes: () => flushes, setNow: t => { now = t }, getNow: () => now }
}

test('dwell: counts visible time only, every dwell_ms and when the page is hidden', () => {
  const w = world()
  w.fire(w.win, 'pointermove') // keep idle out of this test
  w.advance(5000)
  assert.deepStrictEqual(w.events, [{ e: 'dwell', ms: 5000 }])
  w.advance(2000)
  w.doc.visibilityState = 'hidden'
  w.fire(w.doc, 'visibilitychange')
  assert.deepStrictEqual(w.events[1], { e: 'dwell', ms: 2000 })
  assert.equal(w.flushes(), 1, 'hidden flushes the batch at once')
  w.advance(60000) // hidden: nothing counts, no idle either
  assert.equal(w.events.length, 2)
  w.doc.visibilityState = 'visible'
  w.fire(w.doc, 'visibilitychange')
  w.advance(3000)
  w.tracker.dwell() // what pagehide does
  assert.deepStrictEqual(w.events[2], { e: 'dwell', ms: 3000 })
  w.tracker.dwell()
  assert.equal(w.events.length, 3, 'nothing new to report')
})

test('scroll: the deepest point, reported when it grew by scroll_step, throttled to one measure a frame', () => {
  const w = world()
  const scrollTo = y => { w.win.scrollY = y; w.fire(w.win, 'scroll'); w.fire(w.win, 'scroll'); w.frame() }
  scrollTo(500) // 15%
  assert.deepStrictEqual(w.events, [{ e: 'scroll', pct: 15 }])
  scrollTo(1000) // 20%: +5 < 10
  assert.equal(w.events.length, 1)
  scrollTo(1500) // 25%
  assert.deepStrictEqual(w.events[1], { e: 'scroll', pct: 25 })
  scrollTo(0) // back up: the maximum stays
  scrollTo(1700) // 27%
  assert.equal(w.events.length, 2)
  w.settings.scroll_step = 1
  scrollTo(1800)
  assert.deepStrictEqual(w.events[2], { e: 'scroll', pct: 28 })
  w.tracker.newPage() // SPA navigation: depth starts again
  scrollTo(0)
  assert.equal(w.events.at(-1).e, 'scroll')
  assert.equal(w.events.at(-1).pct, 10)
})

test('idle: once after idle_ms without input, again only after new input', () => {
  const w = world()
  w.settings.dwell_ms = 1e9
  w.advance(29000)
  assert.equal(w.events.length, 0)
  w.advance(1000)
  assert.deepStrictEqual(w.events, [{ e: 'idle', ms: 30000 }])
  w.advance(60000)
  assert.equal(w.events.length, 1, 'once per idle period')
  w.fire(w.win, 'keydown')
  w.advance(20000)
  w.fire(w.win, 'touchstart')
  w.advance(20000)
  assert.equal(w.events.length, 1)
  w.advance(10000)
  assert.equal(w.events.length, 2)
})

test('exit intent: pointer leaving through the top, at most once per 10 s, desktop only', () => {
  const w = world()
  w.fire(w.doc, 'mouseout', { relatedTarget: null, clientY: 300 })
  w.fire(w.doc, 'mouseout', { relatedTarget: {}, clientY: -5 })
  assert.equal(w.events.length, 0)
  w.fire(w.doc, 'mouseout', { relatedTarget: null, clientY: -2 })
  assert.deepStrictEqual(w.events, [{ e: 'exit_intent' }])
  w.setNow(w.getNow() + 9999)
  w.fire(w.doc, 'mouseout', { relatedTarget: null, clientY: 0 })
  assert.equal(w.events.length, 1)
  w.setNow(w.getNow() + 1)
  w.fire(w.doc, 'mouseout', { relatedTarget: null, clientY: 0 })
  assert.equal(w.events.length, 2)
  w.settings.exit = false // welcome can turn it off
  w.setNow(w.getNow() + 20000)
  w.fire(w.doc, 'mouseout', { relatedTarget: null, clientY: 0 })
  assert.equal(w.events.length, 2)

  const touch = world({ fine: false })
  touch.fire(touch.doc, 'mouseout', { relatedTarget: null, clientY: -2 })
  assert.equal(touch.events.length, 0)
})

test('clicks on the page are tracked, clicks on the overlay host are not', () => {
  const w = world()
  w.fire(w.doc, 'click', { target: el('button', { id: 'b1' }) })
  w.fire(w.doc, 'click', { target: el('div', { id: 'kairos-host' }) })
  assert.deepStrictEqual(w.events, [{ e: 'click', tag: 'button', id: 'b1' }])
})

test('stop() ends every collector', () => {
  const w = world()
  w.tracker.stop()
  w.advance(60000)
  w.fire(w.doc, 'click', { target: el('a') })
  w.fire(w.doc, 'mouseout', { relatedTarget: null, clientY: -1 })
  assert.equal(w.events.length, 0)
})
