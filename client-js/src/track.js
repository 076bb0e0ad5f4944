// Collectors: dwell, scroll depth, clicks, rage clicks, exit intent (desktop
// and touch), idle, form hesitation, copy, and single-page-app routes.
// Every listener is passive and cheap (a timestamp, or one measure a frame);
// nothing here reads a form field's value.

import { HOST_ID } from './overlay.js'
import { scrollPct, rage, flick, exitOk } from './signals.js'

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
  for (const { name, value } of el.attributes || []) {
    const k = name.slice(12)
    if (name.startsWith('data-kairos-') && k.length <= 32 && n++ < 8) (out = out || {})[k] = value.slice(0, 64)
  }
  return out
}

// The `click` fields for a click on `target`: the nearest element a visitor
// means to press, its tag, id, data-kairos and data-kairos-* attributes, a
// link's path and (with `text`) a short excerpt of a link's or button's own
// text. Never a form field's value. A field that is missing, or over the
// protocol's limits, is undefined, which the encoder leaves out (better than
// getting the event refused).
export function clickPayload (target, text) {
  const el = target && target.closest && (target.closest(ACTION) || target)
  return el ? {
    tag: el.tagName.toLowerCase().slice(0, 16),
    id: ok(el.id, 64),
    k: ok(el.closest('[data-kairos]')?.getAttribute('data-kairos'), 64),
    ka: kattrs(el),
    href: ok(el.closest('a[href]')?.pathname, 1024), // HTMLAnchorElement only (an SVG <a> has none)
    text: ok(text && NAMED.test(el.tagName) && el.textContent.replace(/\s+/g, ' ').trim().slice(0, 64), 64)
  } : null
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
// moments a single-page app changes its URL. Returns true (watching).
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
  return true
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
  const on = (target, types, fn) => {
    for (const type of types.split(' ')) target.addEventListener(type, safe(fn), { passive: true, capture: true })
  }

  // dwell: time with the tab visible and the visitor not idle, since the last
  // dwell event: `acc` ms counted before `since`, the start of the running
  // stretch (0 while not counting). Date.now() is whole ms: so are these.
  let acc = 0
  let since = visible() && now()
  const pending = () => acc + (since && now() - since)
  const pause = () => { acc = pending(); since = 0 }
  const dwell = () => {
    const ms = pending()
    acc = 0
    since = since && now()
    if (ms > 0) emit('dwell', { ms })
  }

  // The back button (exit_back): a landing page (the visitor came from another
  // site) marks its history entry kairos_back: 2, the real one, and adds one of
  // its own for the same URL, kairos_back: 1. Arriving on the real entry is the
  // exit; its mark is then spent (0), so the next back leaves. Both entries
  // share one document (HTML: pushState keeps the document state), so even when
  // the page is loaded again on ours (back from another page of the store,
  // without the back/forward cache), going back to the real one is a popstate.
  const h = win.history
  const mark = () => h.state?.kairos_back
  const put = (m, how = 'replaceState') => h[how]({ ...h.state, kairos_back: m }, '')
  const home = () => {
    if (mark() == 2) {
      put(0)
      exit('back')
    }
  }
  // per page (a single-page app starts these again on each route)
  let pageAt, maxPct, sentPct, hesitated, hes, raf, idle
  // only on the first page of a visit, and never again on a marked entry
  let armed = mark() >= 0 || !(doc.referrer + '/').indexOf(win.location.origin + '/')
  const stopHes = () => win.clearTimeout(hes)
  const newPage = () => { pageAt = now(); maxPct = sentPct = 0; hesitated = {}; stopHes() }
  newPage()

  // idle: no pointer, key, scroll or touch input for idle_ms (once per idle period)
  let lastInput = now()
  const input = () => {
    const t = now()
    if (idle) emit('idle_end', { ms: t - lastInput })
    idle = false
    lastInput = t
    if (!since && visible()) since = t
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
    const quiet = now() - lastInput
    if (since && s.idle_ms > 0 && quiet >= s.idle_ms) {
      idle = true
      pause()
      emit('idle', { ms: quiet })
    }
    // back-button exit intent (off by default), once the welcome says it is on
    if (s.exit_back && !armed) {
      armed = 1
      put(2)
      put(1, 'pushState')
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
  on(win, 'pointerdown pointermove keydown touchstart wheel', input)

  // only the real entry is the way out: an in-page #anchor (a popstate too) is not
  on(win, 'popstate', home)

  const rageAt = rage(s)
  on(doc, 'click', e => {
    const t = e.target
    if (t.id === HOST_ID) return // the overlay reports its own clicks
    const tr = t.closest?.('[data-kairos-track]')
    if (tr && onTrack) onTrack(tr.getAttribute('data-kairos-track'), trackProps(tr))
    const p = s.clicks && clickPayload(t, s.click_text)
    if (!p) return
    emit('click', p)
    const n = e.detail && rageAt(e.clientX, e.clientY, now())
    if (n) emit('rage_click', { n, ...p })
  })

  if (!touch) on(doc, 'mouseout', e => e.relatedTarget || e.clientY > 0 || exit('top'))

  // form hesitation: a field focused for hes_ms without leaving it or submitting;
  // once per field and page, and only its name
  on(doc, 'focusin', e => {
    const el = e.target
    const field = String(el.name || el.id || el.type).slice(0, 64)
    const ms = s.hes_ms
    stopHes()
    if (ms && /^(INPUT|SELECT|TEXTAREA)$/.test(el.tagName) && !/^(hidden|submit|button|reset|image)$/.test(el.type) && !hesitated[field]) {
      hes = win.setTimeout(safe(() => { hesitated[field] = 1; emit('hesitation', { field, ms }) }), ms)
    }
  })
  on(doc, 'focusout submit', stopHes)

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
