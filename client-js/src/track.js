// Collectors: dwell, scroll depth, clicks, rage clicks, exit intent (desktop
// and touch), idle, form hesitation, copy, and single-page-app routes.
// Every listener is passive and cheap (a timestamp, or one measure a frame);
// nothing here reads a form field's value.

import { HOST_ID } from './overlay.js'
import { scrollPct, rage, flick, exitOk } from './signals.js'

const FIELD = /^(INPUT|SELECT|TEXTAREA)$/
// what a click is "on": the nearest element a visitor means to press
const ACTION = 'a,button,summary,label,[role=button],[data-kairos],[data-kairos-track],input,select,textarea'
// elements whose own text names them (a button or link cannot contain form fields)
const NAMED = /^(A|BUTTON|SUMMARY)$/

// s when it is a non-empty string of at most n characters
const ok = (s, n) => s && s.length <= n ? s : undefined

// The element's data-kairos-* attributes as { name: value } (8 at most), or undefined.
export function kattrs (el) {
  let out
  let n = 0
  for (const a of el.attributes || []) {
    const k = a.name.slice(12)
    if (a.name.slice(0, 12) === 'data-kairos-' && k.length <= 32 && n++ < 8) (out = out || {})[k] = a.value.slice(0, 64)
  }
  return out
}

// The `click` fields for a click on `target`: the nearest element a visitor
// means to press, its tag, id, data-kairos and data-kairos-* attributes, a
// link's path and (with `text`) a short excerpt of a link's or button's own
// text. Never a form field's value. Fields over the protocol's limits are left
// out rather than getting the event refused.
export function clickPayload (target, text) {
  const el = target && target.closest && (target.closest(ACTION) || target)
  if (!el) return null
  const k = el.closest('[data-kairos]')
  const a = el.closest('a[href]')
  const p = {
    tag: el.tagName.toLowerCase().slice(0, 16),
    id: ok(el.id, 64),
    k: ok(k && k.getAttribute('data-kairos'), 64),
    ka: kattrs(el),
    href: ok(a && a.pathname, 1024), // HTMLAnchorElement only (an SVG <a> has none)
    text: ok(text && NAMED.test(el.tagName) && el.textContent.replace(/\s+/g, ' ').trim().slice(0, 64), 64)
  }
  for (const x in p) if (p[x] === undefined) delete p[x]
  return p
}

// The fields of a `data-kairos-track` element's event: its other data-kairos-*
// attributes, numbers as numbers (data-kairos-price="59.90" -> price: 59.9).
export function trackProps (el) {
  const p = kattrs(el) || {}
  delete p.track
  for (const k in p) if (/^-?\d+(\.\d+)?$/.test(p[k])) p[k] = +p[k]
  return p
}

// Calls fn after every history.pushState / replaceState and on popstate: the
// moments a single-page app changes its URL.
export function watchRoutes (win, fn) {
  const h = win.history
  for (const m of ['pushState', 'replaceState']) {
    const orig = h[m]
    h[m] = function () {
      const r = orig.apply(this, arguments)
      fn()
      return r
    }
  }
  win.addEventListener('popstate', fn)
}

// win, doc: window and document (or look-alikes in tests)
// s: the live settings (DEFAULTS, then welcome.track: docs/protocol.md)
// emit(type, fields): hand an event to the batcher; leave(): the page is hidden,
// send what is queued now; now: clock (Date.now); onTrack(name, fields): a
// click on a [data-kairos-track] element
export function startTracking (win, doc, s, emit, leave, now, onTrack) {
  now = now || Date.now
  const visible = () => doc.visibilityState !== 'hidden'
  // no fine pointer: a phone or tablet, whose exits look different
  const touch = !win.matchMedia('(pointer: fine)').matches
  let live = 1
  // handlers never throw into the page, and do nothing once stopped
  const safe = fn => e => { try { live && fn(e) } catch (err) {} }
  const on = (target, type, fn) => target.addEventListener(type, safe(fn), { passive: true, capture: true })

  // dwell: time with the tab visible and the visitor not idle, since the last dwell event
  let acc = 0 // counted ms before `since`, not yet reported
  let since = now()
  let counting = visible()
  const pending = () => acc + (counting && now() - since)
  const pause = () => { acc = pending(); counting = false }
  const dwell = () => {
    const ms = Math.round(pending())
    acc = 0
    since = now()
    if (ms > 0) emit('dwell', { ms })
  }

  // per page (a single-page app starts these again on each route)
  let pageAt, maxPct, sentPct, hesitated, hes, raf, idle, rageAt, rageKey, armed, onOurEntry, armedAt
  const stopHes = () => win.clearTimeout(hes)
  const newPage = () => { pageAt = now(); maxPct = sentPct = 0; hesitated = {}; onOurEntry = false; stopHes() }
  newPage()

  // idle: no pointer, key, scroll or touch input for idle_ms (once per idle period)
  let lastInput = now()
  const input = () => {
    const t = now()
    if (idle) emit('idle_end', { ms: Math.round(t - lastInput) })
    idle = false
    lastInput = t
    if (!counting && visible()) { since = t; counting = true }
  }

  let lastExit = -1e15
  const exit = how => {
    const t = now()
    if (s.exit && exitOk(t, pageAt, lastExit, s)) {
      lastExit = t
      emit('exit_intent', { how })
    }
  }

  const iv = win.setInterval(safe(() => {
    if (pending() >= s.dwell_ms) dwell()
    if (counting && s.idle_ms > 0 && now() - lastInput >= s.idle_ms) {
      idle = true
      pause()
      emit('idle', { ms: Math.round(now() - lastInput) })
    }
    // back-button exit intent (off by default): one extra history entry for
    // this page; coming back to the real one is the visitor trying to leave
    if (s.exit_back && !armed) {
      armed = onOurEntry = true
      armedAt = win.location.href
      win.history.pushState(Object.assign({}, win.history.state, { kairos_back: 1 }), '', armedAt)
    }
  }), 1000)

  on(doc, 'visibilitychange', () => {
    if (visible()) return input()
    pause()
    dwell()
    if (touch && s.exit_hidden) exit('hidden')
    leave()
  })

  const flicked = flick()
  on(win, 'scroll', () => {
    input()
    raf = raf || win.requestAnimationFrame(safe(() => {
      raf = 0
      maxPct = Math.max(maxPct, scrollPct(win.scrollY, win.innerHeight, doc.documentElement.scrollHeight))
      if (maxPct - sentPct >= (s.scroll_step || 1)) emit('scroll', { pct: sentPct = maxPct })
    }))
    if (touch && s.exit_scroll && flicked(win.scrollY, now(), win.innerHeight)) exit('scroll')
  })
  for (const t of ['pointerdown', 'pointermove', 'keydown', 'touchstart', 'wheel']) on(win, t, input)

  // our entry is marked: an in-page #anchor (a popstate too) is not the way back
  on(win, 'popstate', () => {
    const ours = !!(win.history.state || 0).kairos_back
    if (onOurEntry && !ours && win.location.href === armedAt) {
      armedAt = 0 // once per page: the next back leaves
      exit('back')
    }
    onOurEntry = ours
  })

  on(doc, 'click', e => {
    const t = e.target
    if (t.id === HOST_ID) return // the overlay reports its own clicks
    const tr = t.closest && t.closest('[data-kairos-track]')
    if (tr && onTrack) onTrack(tr.getAttribute('data-kairos-track'), trackProps(tr))
    const p = s.clicks && clickPayload(t, s.click_text)
    if (!p) return
    emit('click', p)
    const key = s.rage_n + ' ' + s.rage_ms
    if (key !== rageKey) { rageKey = key; rageAt = rage(s.rage_n, s.rage_ms) }
    const n = e.detail && rageAt(e.clientX, e.clientY, now())
    if (n) emit('rage_click', Object.assign({ n }, p))
  })

  if (!touch) on(doc, 'mouseout', e => e.relatedTarget || e.clientY > 0 || exit('top'))

  // form hesitation: a field focused for hes_ms without leaving it or submitting;
  // once per field and page, and only its name
  on(doc, 'focusin', e => {
    const el = e.target
    const field = String(el.name || el.id || el.type).slice(0, 64)
    const ms = s.hes_ms
    stopHes()
    if (ms && FIELD.test(el.tagName) && !/^(hidden|submit|button|reset|image)$/.test(el.type) && !hesitated[field]) {
      hes = win.setTimeout(safe(() => { hesitated[field] = 1; emit('hesitation', { field, ms }) }), ms)
    }
  })
  on(doc, 'focusout', stopHes)
  on(doc, 'submit', stopHes)

  on(doc, 'copy', e => {
    const p = s.copy && clickPayload(e.target)
    if (p) emit('copy', { tag: p.tag, k: p.k })
  })

  return {
    // report the counted time not yet reported (the page is going away)
    dwell,
    // a single-page navigation: close the old page's dwell, start the page's signals again
    // (and no back-button trap: the entry page is behind the visitor now)
    newPage () { dwell(); newPage(); armed = true },
    stop () { live = 0; win.clearInterval(iv); stopHes() }
  }
}
