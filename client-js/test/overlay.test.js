// The overlay's protocol behaviour on a tiny fake DOM (the real rendering is
// exercised by the browser tests): markup, one overlay at a time, feedback
// acts, Escape, ttl, hide, focus.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createOverlay, HOST_ID } from '../src/overlay.js'

function fakeDom () {
  const timers = []
  const doc = new EventTarget()
  const focusable = name => ({ name, focus () { doc.activeElement = this }, isConnected: true })
  let overlayEl = null
  const root = new EventTarget()
  let html = ''
  Object.defineProperty(root, 'innerHTML', {
    get: () => html,
    set (v) {
      html = v
      overlayEl = v ? Object.assign(focusable('overlay'), { attrs: {}, setAttribute (k, val) { this.attrs[k] = String(val) } }) : null
      root.firstChild = v ? { textContent: '' } : null
    }
  })
  root.querySelector = sel => (sel === '.k-overlay' ? overlayEl : null)
  const host = {
    attrs: {},
    isConnected: false,
    setAttribute (k, v) { this.attrs[k] = v },
    attachShadow (o) { this.mode = o.mode; return root }
  }
  // focus inside the shadow root shows as the host on the document
  const page = focusable('page-input')
  page.tagName = 'BUTTON'
  Object.assign(doc, {
    activeElement: page,
    body: { appendChild (el) { el.isConnected = true; this.child = el } },
    createElement: tag => { assert.equal(tag, 'div'); return host }
  })
  const win = {
    setTimeout: (fn, ms) => { const t = { fn, ms }; timers.push(t); return t },
    clearTimeout: t => { const i = timers.indexOf(t); if (i >= 0) timers.splice(i, 1) }
  }
  const fb = []
  const ov = createOverlay(doc, win, (oid, act) => fb.push([oid, act]))
  // focusing the overlay element moves document focus to the host
  const show = f => {
    ov.show(f)
    if (doc.activeElement && doc.activeElement.name === 'overlay') doc.activeElement = host
  }
  const click = attrs => {
    const t = { getAttribute: n => (n in attrs ? attrs[n] : null) }
    t.closest = () => t
    const e = new Event('click')
    Object.defineProperty(e, 'target', { value: t })
    root.dispatchEvent(e)
  }
  const key = k => {
    const e = new Event('keydown')
    Object.defineProperty(e, 'key', { value: k })
    doc.dispatchEvent(e)
  }
  return { doc, win, host, root, page, timers, fb, ov, show, click, key, el: () => overlayEl }
}

const SHOW = {
  v: 1, t: 'show', oid: 'exit-offer.1a2b3c', kind: 'offer',
  html: '<div class="k-card"><p>Still thinking about Linen shirt &amp; co?</p><button data-k-close aria-label="Close">×</button></div>',
  css: '.k-card{padding:24px}', place: 'center', ttl_ms: 0, rule: 'exit-offer'
}

test('the host: div#kairos-host, style all:initial, an open shadow root, appended to body once', () => {
  const d = fakeDom()
  d.show(SHOW)
  assert.equal(d.host.id, HOST_ID)
  assert.equal(HOST_ID, 'kairos-host')
  assert.match(d.host.attrs.style, /^all:initial/)
  assert.equal(d.host.mode, 'open')
  assert.equal(d.doc.body.child, d.host)
  d.show(Object.assign({}, SHOW, { oid: 'x2' }))
  assert.equal(d.doc.body.child, d.host)
})

test('markup: backdrop for center, overlay div with place/kind classes and role, close button, then the frame html', () => {
  const d = fakeDom()
  d.show(SHOW)
  const html = d.root.innerHTML
  assert.ok(html.startsWith('<style></style><div class="k-backdrop" data-k-close></div>'))
  assert.ok(html.includes('<div class="k-overlay k-place-center k-kind-offer" role="dialog" aria-label="Offer" aria-modal="true" tabindex="-1">'))
  assert.ok(html.includes('<button type="button" class="k-close" data-k-close aria-label="Close">×</button>' + SHOW.html + '</div>'))
  assert.equal(d.el().attrs['data-oid'], SHOW.oid)
  const css = d.root.firstChild.textContent
  assert.ok(css.includes('.k-overlay{'))
  assert.ok(css.includes('prefers-reduced-motion'))
  assert.ok(css.endsWith(SHOW.css), 'the frame css comes last')
})

test('bars and the corner bubble: no backdrop, not modal; unknown place/kind fall back safely', () => {
  const d = fakeDom()
  d.show(Object.assign({}, SHOW, { place: 'bottom', kind: 'bar' }))
  assert.ok(!d.root.innerHTML.includes('k-backdrop'))
  assert.ok(!d.root.innerHTML.includes('aria-modal'))
  assert.ok(d.root.innerHTML.includes('class="k-overlay k-place-bottom k-kind-bar" role="dialog" aria-label="Notice"'))
  d.show(Object.assign({}, SHOW, { place: 'corner', kind: 'chat' }))
  assert.ok(d.root.innerHTML.includes('k-place-corner k-kind-chat'))
  d.show(Object.assign({}, SHOW, { place: '"><script>', kind: 'constructor' }))
  assert.ok(d.root.innerHTML.includes('class="k-overlay k-place-center k-kind-overlay" role="dialog" aria-label="Message"'))
})

test('after rendering: shown; the close button, any [data-k-close] or Escape: dismissed', () => {
  const d = fakeDom()
  d.show(SHOW)
  assert.deepStrictEqual(d.fb, [[SHOW.oid, 'shown']])
  d.click({ 'data-k-close': '' })
  assert.deepStrictEqual(d.fb.at(-1), [SHOW.oid, 'dismissed'])
  assert.equal(d.root.innerHTML, '')
  d.show(Object.assign({}, SHOW, { oid: 'o2' }))
  d.key('Enter')
  assert.equal(d.fb.at(-1)[1], 'shown')
  d.key('Escape')
  assert.deepStrictEqual(d.fb.at(-1), ['o2', 'dismissed'])
  assert.equal(d.root.innerHTML, '')
  d.key('Escape')
  d.click({ 'data-k-close': '' })
  assert.equal(d.fb.length, 4, 'nothing more once closed')
})

test('[data-k-click]: clicked, and closed (without dismissed) when its value is close', () => {
  const d = fakeDom()
  d.show(SHOW)
  d.click({ 'data-k-click': 'yes' })
  assert.deepStrictEqual(d.fb.at(-1), [SHOW.oid, 'clicked'])
  assert.notEqual(d.root.innerHTML, '', 'still open')
  d.click({ 'data-k-click': 'close' })
  assert.deepStrictEqual(d.fb.slice(1), [[SHOW.oid, 'clicked'], [SHOW.oid, 'clicked']])
  assert.equal(d.root.innerHTML, '')
})

test('ttl_ms > 0: removed after ttl with expired; a dismissal first cancels the timer', () => {
  const d = fakeDom()
  d.show(Object.assign({}, SHOW, { ttl_ms: 8000 }))
  assert.equal(d.timers.length, 1)
  assert.equal(d.timers[0].ms, 8000)
  d.timers.shift().fn()
  assert.deepStrictEqual(d.fb.at(-1), [SHOW.oid, 'expired'])
  assert.equal(d.root.innerHTML, '')
  d.show(Object.assign({}, SHOW, { oid: 'o3', ttl_ms: 8000 }))
  d.key('Escape')
  assert.equal(d.timers.length, 0)
})

test('hide removes silently, only the overlay it names; a new show silently replaces the current one', () => {
  const d = fakeDom()
  d.show(SHOW)
  d.ov.hide('someone-else')
  assert.notEqual(d.root.innerHTML, '')
  d.ov.hide(SHOW.oid)
  assert.equal(d.root.innerHTML, '')
  d.show(SHOW)
  d.show(Object.assign({}, SHOW, { oid: 'o4' }))
  assert.deepStrictEqual(d.fb, [[SHOW.oid, 'shown'], [SHOW.oid, 'shown'], ['o4', 'shown']])
  assert.equal(d.el().attrs['data-oid'], 'o4')
})

test('focus moves to the dialog on show and back where it was on close', () => {
  const d = fakeDom()
  d.show(SHOW)
  assert.equal(d.doc.activeElement, d.host)
  d.key('Escape')
  assert.equal(d.doc.activeElement, d.page)
})

test('a bar does not take the focus from someone typing in a field; a centered dialog does', () => {
  const d = fakeDom()
  d.page.tagName = 'INPUT'
  d.show(Object.assign({}, SHOW, { place: 'top', kind: 'bar' }))
  assert.equal(d.doc.activeElement, d.page)
  d.show(SHOW)
  assert.equal(d.doc.activeElement, d.host)
})

test('frames without an oid or html are ignored', () => {
  const d = fakeDom()
  d.show({ v: 1, t: 'show', html: '<p>x</p>' })
  d.show({ v: 1, t: 'show', oid: 'x' })
  assert.equal(d.fb.length, 0)
})
