// The overlay code fetched on first use (src/lazy.js): nothing is fetched
// before a `show`, one <script> for any number of them, the `show` that came
// before the code is shown once it arrives, and a failed fetch is harmless.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { lazyOverlay } from '../src/lazy.js'
import { createOverlay, HOST_ID } from '../src/overlay.js'
import { Document } from './fake-dom.js'

const SRC = 'https://kairos.example/k-overlay.js'
const show = (oid, extra) => Object.assign({ v: 1, t: 'show', oid, kind: 'bar', html: '<div role="status"><button data-k-close>×</button>' + oid + '</div>', css: '', place: 'top', ttl_ms: 0 }, extra)

function setup () {
  const doc = new Document()
  const timers = []
  const win = {
    setTimeout: (fn, ms) => { const t = { fn, ms }; timers.push(t); return t },
    clearTimeout: () => {}
  }
  const fb = []
  const ov = lazyOverlay(doc, win, SRC, f => fb.push([f.oid, f.act]))
  const scripts = () => doc.head.children.filter(c => c.tagName === 'SCRIPT')
  // what the browser does once the file has run (src/k-overlay.js)
  const load = () => scripts()[0].kairos(createOverlay)
  const fail = () => scripts()[0].onerror(new Event('error'))
  const host = () => doc.body.children.find(c => c.id === HOST_ID)
  return { doc, win, timers, fb, ov, scripts, load, fail, host }
}

test('nothing is fetched until the first show', () => {
  const d = setup()
  d.ov.hide('x')
  d.ov.clear()
  assert.equal(d.scripts().length, 0)
  assert.equal(d.doc.created.length, 0)
})

test('the first show adds one classic <script> for the overlay file; later shows add none', () => {
  const d = setup()
  d.ov.show(show('a'))
  d.ov.show(show('b'))
  const [s, ...more] = d.scripts()
  assert.equal(more.length, 0)
  assert.equal(s.src, SRC)
  assert.equal(s.getAttribute('type'), null, 'a classic script, not a module (no CORS needed)')
  assert.equal(typeof s.kairos, 'function')
  assert.equal(d.host(), undefined, 'nothing shown before the code arrives')
})

test('a show that arrived before the code is shown when it arrives; a newer one replaces it', () => {
  const d = setup()
  d.ov.show(show('a'))
  d.ov.show(show('b'))
  d.load()
  assert.match(d.host().shadowRoot.innerHTML, />b</)
  assert.deepStrictEqual(d.fb, [['b', 'shown']])
  // from now on the overlay code does the work
  d.ov.show(show('c'))
  assert.match(d.host().shadowRoot.innerHTML, />c</)
  d.ov.hide('c')
  assert.equal(d.host().shadowRoot.innerHTML, '')
  assert.deepStrictEqual(d.fb, [['b', 'shown'], ['c', 'shown']])
  assert.equal(d.scripts().length, 1)
})

test('hide or clear before the code arrives: nothing is shown when it does', () => {
  const d = setup()
  d.ov.show(show('a'))
  d.ov.hide('other')
  d.ov.hide('a')
  d.load()
  assert.equal(d.host(), undefined)
  const e = setup()
  e.ov.show(show('a'))
  e.ov.clear() // consent withdrawn
  e.load()
  assert.equal(e.host(), undefined)
  assert.deepStrictEqual([...d.fb, ...e.fb], [])
})

test('a failed fetch drops the waiting show, throws nothing, and the next show tries again', () => {
  const d = setup()
  d.ov.show(show('a'))
  d.fail()
  assert.equal(d.scripts().length, 0, 'the failed <script> is removed')
  assert.deepStrictEqual(d.fb, [])
  d.ov.hide('a')
  d.ov.clear()
  d.ov.show(show('b'))
  assert.equal(d.scripts().length, 1)
  d.load()
  assert.match(d.host().shadowRoot.innerHTML, />b</)
  assert.deepStrictEqual(d.fb, [['b', 'shown']])
})
