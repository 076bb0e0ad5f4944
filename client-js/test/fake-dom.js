// A tiny DOM for the node tests: elements with attributes, children and text,
// a small HTML parser (for the markup the server sends in `show` frames),
// compound selectors (tag, #id, .class, [attr], [attr=v], [attr="v"], comma
// lists: what the snippet and the tests ask for), an open shadow root, focus, and event dispatch with a
// target. Not a browser: the real rendering is covered by the browser tests.
//
// The test runner treats every .js file under test/ as a test file; run on its
// own, this file tests itself (the harness must be right for the tests that use
// it to mean anything).
import { pathToFileURL } from 'node:url'

const BASE = 'https://shop.example/'
const VOID = /^(AREA|BR|HR|IMG|INPUT|META|LINK|SOURCE|WBR|COL|EMBED)$/
const ENT = { amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'", apos: "'" }
const unescape = s => s.replace(/&(amp|lt|gt|quot|#39|apos);/g, (_, e) => ENT[e])

// one compound selector: tag, then [attr] / [attr=value] / [attr="value"] / [attr^="prefix"]
function compound (sel) {
  const m = /^([a-zA-Z*]*)((?:[#.][\w-]+)*)((?:\[[^\]]+\])*)$/.exec(sel.trim())
  if (!m) throw new Error('fake-dom: unsupported selector ' + sel)
  const tag = m[1] && m[1] !== '*' ? m[1].toUpperCase() : ''
  const conds = [...m[3].matchAll(/\[([^\]=^]+)(?:(\^?)=(?:"([^"]*)"|([^\]]*)))?\]/g)]
    .map(c => [c[1], c[3] !== undefined ? c[3] : c[4], c[2] === '^'])
  const ids = [...m[2].matchAll(/#([\w-]+)/g)].map(x => x[1])
  const classes = [...m[2].matchAll(/\.([\w-]+)/g)].map(x => x[1])
  return el => (!tag || el.tagName === tag) &&
    ids.every(id => el.getAttribute('id') === id) &&
    classes.every(c => (el.getAttribute('class') || '').split(/\s+/).includes(c)) &&
    conds.every(([n, v, prefix]) => el.hasAttribute(n) &&
      (v === undefined || (prefix ? el.getAttribute(n).startsWith(v) : el.getAttribute(n) === v)))
}
export const matcher = sel => {
  const parts = sel.split(',').map(compound)
  return el => parts.some(p => p(el))
}

// An event target that runs its listeners synchronously and lets an exception
// out: a listener that would throw into the page fails the test that fires it
// (node's own EventTarget only reports it later as an uncaught exception).
export class Target {
  constructor () { this.listeners = [] }
  addEventListener (type, fn) { this.listeners.push([type, fn]) }
  removeEventListener (type, fn) { this.listeners = this.listeners.filter(l => l[0] !== type || l[1] !== fn) }
  dispatchEvent (e) {
    for (const [type, fn] of this.listeners.slice()) if (type === e.type) fn.call(this, e)
    return !e.defaultPrevented
  }
}

export class Element {
  constructor (tag, attrs = {}, props = {}) {
    this.tagName = tag.toUpperCase()
    this._attrs = new Map()
    for (const k in attrs) this._attrs.set(k, String(attrs[k]))
    this.childNodes = [] // Elements and strings
    this.parentNode = null
    this.style = { props: {}, setProperty (k, v, prio) { this.props[k] = [v, prio || ''] } }
    // own properties that shadow the getters (value, textContent, ...), for tests
    for (const k in props) Object.defineProperty(this, k, { value: props[k], writable: true, configurable: true })
    if (this.tagName === 'DIALOG') {
      // HTMLDialogElement: open it (the dialog focusing steps focus its first
      // focusable element); close() fires `close` as the browser does when a
      // click on the backdrop or Escape light-dismisses it
      const open = modal => {
        this.setAttribute('open', '')
        this.modal = modal
        const first = this.querySelector('a[href],button,input,select,textarea')
        if (first) first.focus()
      }
      this.show = () => open(false)
      this.showModal = () => open(true)
      this.close = () => {
        this.removeAttribute('open')
        if (this.onclose) this.onclose(new Event('close'))
      }
    }
  }

  getAttribute (n) { return this._attrs.has(n) ? this._attrs.get(n) : null }
  setAttribute (n, v) { this._attrs.set(n, String(v)) }
  removeAttribute (n) { this._attrs.delete(n) }
  hasAttribute (n) { return this._attrs.has(n) }
  get attributes () { return [...this._attrs].map(([name, value]) => ({ name, value })) }
  get id () { return this.getAttribute('id') || '' }
  set id (v) { this.setAttribute('id', v) }
  get name () { return this.getAttribute('name') || '' }
  get type () {
    const t = (this.getAttribute('type') || '').toLowerCase()
    return { INPUT: t || 'text', BUTTON: t || 'submit', SELECT: 'select-one', TEXTAREA: 'textarea' }[this.tagName] || t
  }

  // HTMLAnchorElement only
  get pathname () {
    return this.tagName === 'A' && this.hasAttribute('href') ? new URL(this.getAttribute('href'), BASE).pathname : undefined
  }

  get textContent () { return this.childNodes.map(c => (typeof c === 'string' ? c : c.textContent)).join('') }
  set textContent (v) { this.childNodes.forEach(c => { if (typeof c !== 'string') c.parentNode = null }); this.childNodes = [String(v)] }

  get children () { return this.childNodes.filter(c => typeof c !== 'string') }
  get firstElementChild () { return this.children[0] || null }
  appendChild (el) {
    if (el.parentNode) el.parentNode.childNodes = el.parentNode.childNodes.filter(c => c !== el)
    el.parentNode = this
    this.childNodes.push(el)
    return el
  }

  remove () {
    if (this.parentNode) this.parentNode.childNodes = this.parentNode.childNodes.filter(c => c !== this)
    this.parentNode = null
  }

  append (...xs) { for (const x of xs) typeof x === 'string' ? this.childNodes.push(x) : this.appendChild(x); return this }
  // the document or shadow root at the top
  get root () { let x = this; while (x.parentNode) x = x.parentNode; return x }
  get isConnected () {
    const r = this.root
    return r.isDocument === true || (r.host ? r.host.isConnected : false)
  }

  matches (sel) { return matcher(sel)(this) }
  closest (sel) {
    const m = matcher(sel)
    for (let x = this; x && x instanceof Element; x = x.parentNode) if (m(x)) return x
    return null
  }

  querySelectorAll (sel) { return descendants(this).filter(matcher(sel)) }
  querySelector (sel) { return this.querySelectorAll(sel)[0] || null }
  focus (opts) { this.focusedWith = opts; const r = this.root; if (r.focusIn) r.focusIn(this) }
  attachShadow (o) { this.shadowMode = o.mode; return (this.shadowRoot = new ShadowRoot(this)) }
}

function descendants (node) {
  const out = []
  const walk = n => n.childNodes.forEach(c => { if (typeof c !== 'string') { out.push(c); walk(c) } })
  walk(node)
  return out
}

// HTML -> a list of nodes (Elements and strings); enough for the overlay markup
export function parse (html) {
  const top = new Element('#fragment')
  let cur = top
  for (const m of html.matchAll(/<(\/?)([a-zA-Z][\w-]*)((?:\s+[^\s=>/]+(?:=(?:"[^"]*"|[^\s">]+))?)*)\s*\/?>|([^<]+)/g)) {
    if (m[4] !== undefined) { cur.childNodes.push(unescape(m[4])); continue }
    if (m[1]) { // end tag: close up to the matching element
      let x = cur
      while (x !== top && x.tagName !== m[2].toUpperCase()) x = x.parentNode
      if (x !== top) cur = x.parentNode
      continue
    }
    const attrs = {}
    for (const a of m[3].matchAll(/([^\s=>/]+)(?:=(?:"([^"]*)"|([^\s">]+)))?/g)) attrs[a[1]] = unescape(a[2] !== undefined ? a[2] : a[3] || '')
    const el = cur.appendChild(new Element(m[2], attrs))
    if (!VOID.test(el.tagName)) cur = el
  }
  const nodes = top.childNodes
  nodes.forEach(n => { if (typeof n !== 'string') n.parentNode = null })
  return nodes
}

// an open shadow root: innerHTML parses, activeElement is its focused element
export class ShadowRoot extends Target {
  constructor (host) {
    super()
    this.host = host
    this.childNodes = []
    this.activeElement = null
    this.adoptedStyleSheets = []
    this.html = ''
  }

  get innerHTML () { return this.html }
  set innerHTML (v) {
    this.html = String(v)
    this.childNodes.forEach(n => { if (typeof n !== 'string') n.parentNode = null })
    this.childNodes = parse(this.html)
    this.childNodes.forEach(n => { if (typeof n !== 'string') n.parentNode = this })
    // focus inside removed markup is lost, as in a browser
    if (this.activeElement && this.activeElement.root !== this) this.blurAll()
  }

  querySelectorAll (sel) { return descendants(this).filter(matcher(sel)) }
  querySelector (sel) { return this.querySelectorAll(sel)[0] || null }
  get firstElementChild () { return this.childNodes.find(c => typeof c !== 'string') || null }
  focusIn (el) {
    const doc = this.host.root
    this.activeElement = el
    // seen from the document, focus inside a shadow root is on its host
    if (doc.isDocument) doc.activeElement = this.host
  }

  blurAll () {
    this.activeElement = null
    const doc = this.host.root
    if (doc.isDocument && doc.activeElement === this.host) doc.activeElement = doc.body
  }
}

// a document: <html><head><body>, activeElement, createElement, focus
export class Document extends Target {
  constructor () {
    super()
    this.isDocument = true
    this.documentElement = new Element('html')
    this.documentElement.parentNode = this
    this.head = this.documentElement.appendChild(new Element('head'))
    this.body = this.documentElement.appendChild(new Element('body'))
    this.activeElement = this.body
    this.visibilityState = 'visible'
    this.title = ''
    this.referrer = ''
    this.created = []
  }

  get childNodes () { return [this.documentElement] }
  createElement (tag) { const el = new Element(tag); this.created.push(el); return el }
  querySelectorAll (sel) { return [this.documentElement, ...descendants(this.documentElement)].filter(matcher(sel)) }
  querySelector (sel) { return this.querySelectorAll(sel)[0] || null }
  focusIn (el) { this.activeElement = el }
}

// dispatch an event of `type` at a listener target (window, document or a
// shadow root), with e.target and other fields set; returns the event
export function fire (at, type, fields = {}) {
  const e = new Event(type, { cancelable: true })
  for (const k in fields) Object.defineProperty(e, k, { value: fields[k] })
  at.dispatchEvent(e)
  return e
}

// window.location and window.history for `win` (a Target): pushState and
// replaceState change the URL without an event; back(), forward() and go()
// move in the entries and fire popstate, as a browser does.
export function installHistory (win, href) {
  const loc = {}
  const setUrl = u => {
    const url = new URL(u, loc.href || href)
    Object.assign(loc, { href: url.href, origin: url.origin, pathname: url.pathname, search: url.search, hash: url.hash, protocol: url.protocol, host: url.host })
  }
  setUrl(href)
  const entries = [{ state: null, url: loc.href }]
  let i = 0
  const h = {
    entries,
    get index () { return i },
    get length () { return entries.length },
    get state () { return entries[i].state },
    pushState (state, title, url) {
      entries.splice(i + 1)
      setUrl(url == null ? loc.href : url)
      entries.push({ state, url: loc.href })
      i++
    },
    replaceState (state, title, url) {
      setUrl(url == null ? loc.href : url)
      entries[i] = { state, url: loc.href }
    },
    go (n) {
      if (!entries[i + n]) return
      i += n
      setUrl(entries[i].url)
      const e = new Event('popstate')
      Object.defineProperty(e, 'state', { value: entries[i].state })
      win.dispatchEvent(e)
    },
    back () { this.go(-1) },
    forward () { this.go(1) },
    // a click on <a href="#x">: a new entry for the fragment, and popstate (HTML: "navigate to a fragment")
    fragment (hash) {
      entries.splice(i + 1)
      setUrl(hash)
      entries.push({ state: null, url: loc.href })
      i++
      const e = new Event('popstate')
      Object.defineProperty(e, 'state', { value: null })
      win.dispatchEvent(e)
    }
  }
  win.location = loc
  win.history = h
  return h
}

// ---------------------------------------------------------------------------
// self-tests, run only when this file is the test file
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { test } = await import('node:test')
  const assert = (await import('node:assert/strict')).default

  test('fake-dom: parses nested markup, void elements, entities and bare attributes', () => {
    const [a, b] = parse('<div class="x" data-k-close></div><p id="p">A &amp; B<input name="q"><b>c</b></p>')
    assert.equal(a.tagName, 'DIV')
    assert.equal(a.getAttribute('data-k-close'), '')
    assert.equal(a.getAttribute('class'), 'x')
    assert.equal(b.id, 'p')
    assert.equal(b.textContent, 'A & Bc')
    assert.deepStrictEqual(b.children.map(c => c.tagName), ['INPUT', 'B'])
    assert.equal(b.children[0].type, 'text')
  })

  test('fake-dom: selectors, closest and querySelectorAll in document order', () => {
    const d = new Document()
    const [root] = parse('<div data-kairos="card"><a href="/cart?x=1"><span>go</span></a><div role=button tabindex="-1">r</div></div>')
    d.body.appendChild(root)
    const span = d.querySelector('span')
    assert.equal(span.closest('a[href]').pathname, '/cart')
    assert.equal(span.closest('[data-kairos]'), root)
    assert.equal(span.closest('button,[role=button]'), null)
    assert.equal(d.querySelector('[role=button]').textContent, 'r')
    assert.equal(d.querySelector('[tabindex="-1"]').textContent, 'r')
    assert.equal(d.querySelector('[tabindex="0"]'), null)
    const [c] = parse('<p class="a  b" id="x"></p>')
    assert.ok(c.matches('p.a.b#x'))
    assert.ok(c.matches('.b'))
    assert.ok(!c.matches('.c,div#x,#y'))
    assert.deepStrictEqual(d.querySelectorAll('a[href],div').map(e => e.tagName), ['DIV', 'A', 'DIV'])
    assert.ok(span.isConnected)
    assert.equal(new Element('p').isConnected, false)
  })

  test('fake-dom: Target runs listeners in order, synchronously, and lets their exceptions out', () => {
    const t = new Target()
    const seen = []
    t.addEventListener('a', e => seen.push(1))
    t.addEventListener('a', e => { seen.push(2); e.preventDefault() })
    t.addEventListener('b', () => seen.push(3))
    const e = fire(t, 'a')
    assert.deepStrictEqual(seen, [1, 2])
    assert.equal(e.defaultPrevented, true)
    t.addEventListener('c', () => { throw new Error('boom') })
    assert.throws(() => fire(t, 'c'), /boom/)
  })

  test('fake-dom: history: pushState without an event, back/forward/fragment with popstate', () => {
    const win = new Target()
    const h = installHistory(win, 'https://shop.example/a')
    const pops = []
    win.addEventListener('popstate', e => pops.push([win.location.href, e.state]))
    h.pushState({ n: 1 }, '', '/b?x=1')
    assert.equal(win.location.pathname + win.location.search, '/b?x=1')
    assert.equal(pops.length, 0)
    h.back()
    h.forward()
    h.fragment('#top')
    assert.deepStrictEqual(pops, [['https://shop.example/a', null], ['https://shop.example/b?x=1', { n: 1 }], ['https://shop.example/b?x=1#top', null]])
    assert.equal(h.length, 3)
  })

  test('fake-dom: focus in a shadow root shows as the host on the document', () => {
    const d = new Document()
    const host = d.body.appendChild(d.createElement('div'))
    const root = host.attachShadow({ mode: 'open' })
    root.innerHTML = '<button>x</button>'
    root.querySelector('button').focus()
    assert.equal(d.activeElement, host)
    assert.equal(root.activeElement.tagName, 'BUTTON')
    root.innerHTML = ''
    assert.equal(d.activeElement, d.body, 'removing the focused markup blurs it')
  })
}
