// The overlay's behaviour on the fake DOM of test/fake-dom.js, with the markup
// the server sends (server/kairos/render.py dress(): frame + template): the host,
// the constructed stylesheet, opening the dialog, focus, Escape, clicks, ttl,
// hide, replace. (How it looks, and the inert page behind a modal dialog, are
// for the browser tests.)
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createOverlay, HOST_ID } from '../src/overlay.js'
import { Document, Element, Target, fire, installHistory } from './fake-dom.js'

// what dress() makes of templates/overlays/offer.html, bar.html and chat.html
const OFFER_HTML = '<dialog class="k-overlay k-place-center k-kind-offer" aria-labelledby="k-title" data-modal closedby="any"><button type="button" class="k-close" data-k-close aria-label="Close">×</button><div class="k-offer"><h2 class="k-title" id="k-title">Still thinking about Linen shirt &amp; co?</h2><a class="k-cta" href="/cart" data-k-click><span>Go to cart</span></a><button type="button" class="k-cta" data-k-click="close">Got it</button></div></dialog>'
const BAR_HTML = '<div class="k-overlay k-place-top k-kind-bar" aria-label="Notice" role="status"><button type="button" class="k-close" data-k-close aria-label="Close">×</button><div class="k-bar"><p>Free shipping over 50 EUR</p></div></div>'
const CHAT_HTML = '<dialog class="k-overlay k-place-corner k-kind-chat" aria-labelledby="k-title"><button type="button" class="k-close" data-k-close aria-label="Close">×</button><div class="k-chat"><p class="k-agent" id="k-title">Customer care</p><a class="k-cta" href="#" data-k-click="close">Chat with us</a></div></dialog>'
const CSS = '.k-overlay{position:fixed}.k-offer{padding:24px}'

const SHOW = { v: 1, t: 'show', oid: 'exit-offer.1a2b3c', kind: 'offer', html: OFFER_HTML, css: CSS, place: 'center', ttl_ms: 0, rule: 'exit-offer' }
const BAR = { v: 1, t: 'show', oid: 'ship.1', kind: 'bar', html: BAR_HTML, css: '.k-bar{}', place: 'top', ttl_ms: 0, rule: 'ship' }
const CHAT = { v: 1, t: 'show', oid: 'chat.1', kind: 'chat', html: CHAT_HTML, css: '.k-chat{}', place: 'corner', ttl_ms: 0, rule: 'chat' }

function setup ({ sheets = true } = {}) {
  const timers = []
  const doc = new Document()
  // the page: a search field and a button, the visitor on the button
  const input = doc.body.appendChild(new Element('input', { name: 'q' }))
  const pageButton = doc.body.appendChild(new Element('button', { id: 'buy' }))
  pageButton.focus()
  class CSSStyleSheet {
    constructor () { this.text = null }
    replaceSync (t) { this.text = t }
  }
  const win = {
    setTimeout: (fn, ms) => { const t = { fn, ms }; timers.push(t); return t },
    clearTimeout: t => { const i = timers.indexOf(t); if (i >= 0) timers.splice(i, 1) }
  }
  if (sheets) win.CSSStyleSheet = CSSStyleSheet
  const fb = []
  const ov = createOverlay(doc, win, f => fb.push([f.oid, f.act]))
  const host = () => doc.body.children.find(c => c.id === HOST_ID)
  const root = () => host() && host().shadowRoot
  const q = sel => root().querySelector(sel)
  const click = el => fire(root(), 'click', { target: el })
  const key = (k, shiftKey = false) => fire(doc, 'keydown', { key: k, shiftKey })
  return { doc, win, timers, fb, ov, host, root, q, click, key, input, pageButton }
}

test('the host: div#kairos-host with all: initial !important, an open shadow root, appended to body once', () => {
  const d = setup()
  d.ov.show(SHOW)
  const host = d.host()
  assert.equal(host.tagName, 'DIV')
  assert.equal(host.id, 'kairos-host')
  assert.equal(HOST_ID, 'kairos-host')
  assert.deepStrictEqual(host.style.props, { all: ['initial', 'important'] })
  assert.equal(host.getAttribute('style'), null, 'not an inline style attribute (strict CSP)')
  assert.equal(host.shadowMode, 'open')
  d.ov.show(Object.assign({}, SHOW, { oid: 'x2' }))
  assert.equal(d.doc.body.children.filter(c => c.id === HOST_ID).length, 1)
  assert.equal(d.doc.created.length, 1, 'one host for the page')
  // a page that removed the host (a SPA re-rendering <body>) gets it back
  d.doc.body.childNodes = d.doc.body.childNodes.filter(c => c !== host)
  host.parentNode = null
  d.ov.show(Object.assign({}, SHOW, { oid: 'x3' }))
  assert.ok(host.isConnected)
  assert.equal(d.doc.created.length, 1)
})

test('markup: the server\'s html as given, its css as a constructed stylesheet, data-oid on the dialog', () => {
  const d = setup()
  d.ov.show(SHOW)
  const root = d.root()
  assert.equal(root.innerHTML, OFFER_HTML)
  assert.equal(root.adoptedStyleSheets.length, 1)
  assert.equal(root.adoptedStyleSheets[0].text, CSS)
  assert.equal(root.querySelector('style'), null, 'no <style> element (blocked under a strict CSP)')
  const dialog = d.q('.k-overlay')
  assert.equal(dialog.getAttribute('data-oid'), SHOW.oid)
  assert.equal(dialog.tagName, 'DIALOG')
  assert.ok(dialog.hasAttribute('open') && dialog.modal, 'opened with showModal()')
  // the next overlay brings its own stylesheet
  d.ov.show(BAR)
  assert.equal(root.innerHTML, BAR_HTML)
  assert.deepStrictEqual(root.adoptedStyleSheets.map(s => s.text), ['.k-bar{}'])
  assert.equal(d.q('.k-overlay').getAttribute('data-oid'), BAR.oid)
  d.ov.show(Object.assign({}, BAR, { oid: 'nocss', css: undefined }))
  assert.deepStrictEqual(root.adoptedStyleSheets.map(s => s.text), [''])
})

test('a browser without constructable stylesheets still shows the overlay (unstyled) and reports it', () => {
  const d = setup({ sheets: false })
  d.ov.show(SHOW)
  assert.equal(d.root().innerHTML, OFFER_HTML)
  assert.deepStrictEqual(d.fb, [[SHOW.oid, 'shown']])
  d.key('Escape')
  assert.deepStrictEqual(d.fb.at(-1), [SHOW.oid, 'dismissed'])
})

test('shown once rendered; the close button, the backdrop or Escape: dismissed and removed', () => {
  const d = setup()
  d.ov.show(SHOW)
  assert.deepStrictEqual(d.fb, [[SHOW.oid, 'shown']])
  d.click(d.q('.k-close'))
  assert.deepStrictEqual(d.fb.at(-1), [SHOW.oid, 'dismissed'])
  assert.equal(d.root().innerHTML, '')
  d.ov.show(Object.assign({}, SHOW, { oid: 'o2' }))
  d.q('dialog').close() // the browser light-dismisses it: a click on the backdrop (closedby="any")
  assert.deepStrictEqual(d.fb.at(-1), ['o2', 'dismissed'])
  assert.equal(d.root().innerHTML, '')
  d.ov.show(Object.assign({}, SHOW, { oid: 'o3' }))
  d.key('Enter')
  d.key('Tab')
  assert.equal(d.fb.at(-1)[1], 'shown')
  d.key('Escape')
  assert.deepStrictEqual(d.fb.at(-1), ['o3', 'dismissed'])
  assert.equal(d.root().innerHTML, '')
  d.key('Escape')
  assert.equal(d.fb.length, 6, 'nothing more once closed')
  // Escape closes a status bar too
  d.ov.show(BAR)
  d.key('Escape')
  assert.deepStrictEqual(d.fb.at(-1), [BAR.oid, 'dismissed'])
})

test('[data-k-click]: clicked (also from inside it), closed without dismissed when its value is close; other clicks do nothing', () => {
  const d = setup()
  d.ov.show(SHOW)
  d.click(d.q('a.k-cta').querySelector('span')) // a click on the link's inner span
  assert.deepStrictEqual(d.fb.at(-1), [SHOW.oid, 'clicked'])
  assert.notEqual(d.root().innerHTML, '', 'still open')
  d.click(d.q('.k-title'))
  d.click(d.q('.k-offer'))
  assert.equal(d.fb.length, 2, 'text and the card itself: nothing')
  d.click(d.q('button.k-cta'))
  assert.deepStrictEqual(d.fb, [[SHOW.oid, 'shown'], [SHOW.oid, 'clicked'], [SHOW.oid, 'clicked']])
  assert.equal(d.root().innerHTML, '')
  d.click(new Element('button', { 'data-k-close': '' })) // a late click: no overlay, nothing
  assert.equal(d.fb.length, 3)
})

test('ttl_ms > 0: removed after ttl with expired; a dismissal, a hide or a new show cancels the timer', () => {
  const d = setup()
  d.ov.show(Object.assign({}, SHOW, { ttl_ms: 8000 }))
  assert.deepStrictEqual(d.timers.map(t => t.ms), [8000])
  d.timers.shift().fn()
  assert.deepStrictEqual(d.fb.at(-1), [SHOW.oid, 'expired'])
  assert.equal(d.root().innerHTML, '')
  d.ov.show(Object.assign({}, SHOW, { oid: 'o3', ttl_ms: 8000 }))
  d.key('Escape')
  assert.equal(d.timers.length, 0)
  d.ov.show(Object.assign({}, SHOW, { oid: 'o4', ttl_ms: 8000 }))
  d.ov.hide('o4')
  assert.equal(d.timers.length, 0)
  d.ov.show(Object.assign({}, SHOW, { oid: 'o5', ttl_ms: 8000 }))
  const old = d.timers[0]
  d.ov.show(Object.assign({}, BAR, { ttl_ms: 0 }))
  assert.equal(d.timers.length, 0, 'the replaced overlay\'s ttl goes with it')
  old.fn() // even if it fired anyway, it is not the current overlay's
  assert.notEqual(d.root().innerHTML, '')
  assert.equal(d.fb.filter(f => f[1] === 'expired').length, 1)
  assert.equal(d.ov.show(Object.assign({}, BAR, { oid: 'neg', ttl_ms: -1 })), undefined)
  assert.equal(d.timers.length, 0, 'no ttl for ttl_ms <= 0')
})

test('hide removes silently, only the overlay it names; a new show silently replaces the current one; clear()', () => {
  const d = setup()
  d.ov.show(SHOW)
  d.ov.hide('someone-else')
  assert.notEqual(d.root().innerHTML, '')
  d.ov.hide(SHOW.oid)
  assert.equal(d.root().innerHTML, '')
  d.ov.show(Object.assign({}, SHOW, { oid: 'o3' }))
  d.ov.show(Object.assign({}, CHAT, { oid: 'o4' }))
  assert.deepStrictEqual(d.fb, [[SHOW.oid, 'shown'], ['o3', 'shown'], ['o4', 'shown']])
  assert.equal(d.root().innerHTML, CHAT_HTML)
  assert.equal(d.q('.k-overlay').getAttribute('data-oid'), 'o4')
  d.ov.clear()
  assert.equal(d.root().innerHTML, '')
  assert.equal(d.fb.length, 3)
  d.key('Escape')
  assert.equal(d.fb.length, 3)
})

test('focus: a modal dialog takes it (the browser focuses its first control) and gives it back on close', () => {
  const d = setup()
  d.ov.show(SHOW)
  assert.equal(d.root().activeElement, d.q('.k-close'))
  assert.equal(d.doc.activeElement, d.host())
  d.key('Escape')
  assert.equal(d.doc.activeElement, d.pageButton)
  assert.deepStrictEqual(d.pageButton.focusedWith, { preventScroll: true })
})
test('focus: a modal dialog takes it even from someone typing; a non-modal dialog does not; a status bar never does', () => {
  const d = setup()
  d.input.focus()
  d.ov.show(CHAT)
  assert.equal(d.doc.activeElement, d.input, 'a corner chat does not interrupt typing')
  d.ov.show(BAR)
  assert.equal(d.doc.activeElement, d.input)
  d.ov.show(SHOW)
  assert.equal(d.doc.activeElement, d.host(), 'a modal dialog does')
  d.key('Escape')
  assert.equal(d.doc.activeElement, d.input, 'and gives it back')
  // not typing: the corner dialog takes the focus, the bar still does not
  d.pageButton.focus()
  d.ov.show(CHAT)
  assert.equal(d.root().activeElement, d.q('.k-close'))
  d.ov.hide(CHAT.oid)
  assert.equal(d.doc.activeElement, d.pageButton)
  d.ov.show(BAR)
  assert.equal(d.doc.activeElement, d.pageButton)
  assert.equal(d.root().activeElement, null)
  for (const tag of ['textarea', 'select']) {
    const f = d.doc.body.appendChild(new Element(tag))
    f.focus()
    d.ov.show(CHAT)
    assert.equal(d.doc.activeElement, f, tag)
  }
})

test('focus is not taken back on close when the visitor has moved it elsewhere on the page', () => {
  const d = setup()
  d.ov.show(CHAT)
  d.input.focus() // the visitor clicked into the search field
  d.ov.hide(CHAT.oid)
  assert.equal(d.doc.activeElement, d.input)
})

test('a centered overlay opens modal (the browser keeps Tab inside it); a corner one non-modal; a bar is no dialog', () => {
  const d = setup()
  d.ov.show(SHOW)
  assert.equal(d.q('dialog').modal, true)
  d.ov.show(CHAT)
  assert.equal(d.q('dialog').modal, false)
  assert.ok(d.q('dialog').hasAttribute('open'))
  d.ov.show(BAR)
  assert.equal(d.q('dialog'), null)
  assert.equal(d.q('.k-overlay').getAttribute('role'), 'status')
})
test('frames without an oid or a string html are ignored', () => {
  const d = setup()
  d.ov.show({ v: 1, t: 'show', html: OFFER_HTML })
  d.ov.show({ v: 1, t: 'show', oid: 'x' })
  d.ov.show({ v: 1, t: 'show', oid: 'x', html: { toString: () => OFFER_HTML } })
  assert.equal(d.fb.length, 0)
  assert.equal(d.doc.created.length, 0, 'no host either')
})

test('a show whose html is not the server\'s frame (the protocol fixture\'s show frame, plain text) is still reported and expires', () => {
  const VALID = JSON.parse(readFileSync(new URL('../../docs/frames/valid.json', import.meta.url), 'utf8'))
  for (const html of [VALID.find(x => x.name === 'show').frame.html, 'just text']) {
    const f = Object.assign({}, VALID.find(x => x.name === 'show').frame, { html, ttl_ms: 5000 })
    const d = setup()
    assert.doesNotThrow(() => d.ov.show(f))
    assert.deepStrictEqual(d.fb, [[f.oid, 'shown']])
    assert.equal(d.timers.length, 1)
  }
})
test('odd markup or events never throw into the page', () => {
  const d = setup()
  d.ov.show(Object.assign({}, SHOW, { html: '<dialog class="k-overlay" data-modal><p>Nothing to press</p></dialog>' }))
  assert.doesNotThrow(() => fire(d.root(), 'click', { target: {} }))
  assert.doesNotThrow(() => fire(d.root(), 'click', { target: null }))
  d.key('Escape')
  assert.deepStrictEqual(d.fb.at(-1), [SHOW.oid, 'dismissed'], 'and it still works')
})

// what the server must never send and the snippet must not show if it does:
// each address as a browser's URL parser would read it (case, padding, tabs)
const HOSTILE = [
  ['a', 'href', 'javascript:window.__pwned=1'],
  ['a', 'href', ' JaVaScRiPt:window.__pwned=1'],
  ['a', 'href', 'java\tscript:window.__pwned=1'],
  ['a', 'href', '\x01javascript:window.__pwned=1'],
  ['a', 'href', 'vbscript:msgbox(1)'],
  ['a', 'href', 'data:text/html,<script>parent.__pwned=1</script>'],
  ['a', 'href', 'mailto:shop@example.com'],
  ['form', 'action', 'javascript:window.__pwned=1'],
  ['button', 'formaction', 'javascript:window.__pwned=1'],
  ['iframe', 'src', 'javascript:window.__pwned=1'],
  ['img', 'onerror', 'window.__pwned=1']
]
const KEPT = ['/cart', 'cart', '?q=shirt', '#top', '//cdn.example/x.png', 'https://shop.example/sale', 'HTTP://shop.example/']

test('an address that is not http(s) or a path on the store, or an event handler, is removed before the overlay shows', () => {
  const html = '<dialog class="k-overlay" data-modal><button data-k-close>×</button>' +
    HOSTILE.map(([tag, name, v], i) => `<${tag} id="h${i}" ${name}="${v.replace(/"/g, '&quot;')}" class="c">x</${tag}>`).join('') +
    KEPT.map((v, i) => `<a id="k${i}" href="${v}" data-k-click>ok</a>`).join('') + '</dialog>'
  const d = setup()
  d.ov.show(Object.assign({}, SHOW, { html }))
  HOSTILE.forEach(([tag, name, v], i) => {
    const el = d.q('#h' + i)
    assert.equal(el.getAttribute(name), null, `${tag} ${name}=${JSON.stringify(v)} is removed`)
    assert.equal(el.getAttribute('class'), 'c', 'the element and its other attributes stay')
  })
  KEPT.forEach((v, i) => assert.equal(d.q('#k' + i).getAttribute('href'), v, v + ' is kept'))
  assert.deepStrictEqual(d.fb, [[SHOW.oid, 'shown']], 'and the overlay is shown')
})

// --- where an overlay lives: the route of a single-page store -------------------------

function spa (href = 'https://shop.test/shop/basket') {
  const doc = new Document()
  const win = new Target()
  win.setTimeout = () => 0
  win.clearTimeout = () => {}
  win.CSSStyleSheet = class { replaceSync () {} }
  const history = installHistory(win, href)
  const fb = []
  const ov = createOverlay(doc, win, f => fb.push(f))
  const host = () => doc.body.children.find(c => c.id === HOST_ID)
  const shown = () => !!host().shadowRoot.querySelector('[data-oid]')
  return { doc, win, history, fb, ov, shown }
}

test('a page-scoped overlay leaves on a route change to another page and says hidden, why page', () => {
  const d = spa()
  d.ov.show(Object.assign({}, BAR, { scope: 'page' }))
  d.history.replaceState({ y: 120 }, '', '/shop/basket') // a router keeping its scroll position
  d.history.pushState(null, '', '/shop/basket#reviews')
  assert.ok(d.shown(), 'the same page (same URL, a fragment) keeps it')
  d.history.pushState(null, '', '/shop/checkout')
  assert.ok(!d.shown())
  assert.deepStrictEqual(d.fb.map(f => [f.act, f.why]), [['shown', undefined], ['hidden', 'page']])
  assert.equal(d.fb[1].oid, BAR.oid)
  d.history.pushState(null, '', '/shop/p/1')
  assert.equal(d.fb.length, 2, 'one hidden per overlay')
})

test('back and forward move the page too', () => {
  const d = spa()
  d.history.pushState(null, '', '/shop/p/1')
  d.ov.show(Object.assign({}, BAR, { scope: 'page' }))
  d.history.back()
  assert.ok(!d.shown())
  assert.deepStrictEqual(d.fb.at(-1).why, 'page')
})

test('a session or page-type overlay, or one from a server that sends no scope, stays: the server decides', () => {
  for (const scope of ['session', 'page_type', undefined]) {
    const d = spa()
    d.ov.show(Object.assign({}, CHAT, scope ? { scope } : {}))
    d.history.pushState(null, '', '/shop/checkout')
    assert.ok(d.shown(), String(scope))
    d.ov.hide(CHAT.oid) // the server's hide
    assert.ok(!d.shown())
    assert.deepStrictEqual(d.fb.map(f => f.act), ['shown'], 'a hide the server sent is not reported back')
  }
})

test('a show sent again under an oid already shown on this page is ignored, on screen or closed', () => {
  const d = setup()
  d.ov.show(SHOW)
  const first = d.q('.k-overlay')
  d.ov.show(SHOW) // a delayed nudge sent again after its first sender died
  assert.equal(d.q('.k-overlay'), first, 'the overlay on screen is left as it is')
  assert.deepStrictEqual(d.fb, [[SHOW.oid, 'shown']], 'shown once')
  d.key('Escape')
  assert.equal(d.q('.k-overlay'), null)
  d.ov.show(SHOW) // the same again after the visitor closed it
  assert.equal(d.q('.k-overlay'), null, 'a closed overlay does not come back')
  d.ov.show(BAR)
  assert.ok(d.q('.k-overlay'), 'another overlay still shows')
})
