// Collectors: dwell, scroll depth, clicks, exit intent, idle.
// Listeners are passive; nothing here reads form values or text content.

import { HOST_ID } from './overlay.js'

const PASSIVE = { passive: true, capture: true }
const EXIT_GAP = 10000
const TICK = 1000

// The `click` event's fields for a click on `target` (an Element).
// Only the tag name, id, data-kairos and a link's path: never a form field's
// value nor any text of the page.
export function clickPayload (target) {
  if (!target || !target.tagName) return null
  const p = { tag: target.tagName.toLowerCase().slice(0, 16) }
  const id = target.id
  if (id && id.length <= 64) p.id = id
  const kEl = target.closest('[data-kairos]')
  const k = kEl && kEl.getAttribute('data-kairos')
  if (k && k.length <= 64) p.k = k
  const a = target.closest('a[href]')
  const path = a && a.pathname // HTMLAnchorElement only (an SVG <a> has none)
  if (path && path.length <= 1024) p.href = path
  return p
}

// Deepest scroll of the page, int percent 0..100.
export function scrollPct (scrollY, viewH, pageH) {
  if (!(pageH > 0)) return 0
  return Math.max(0, Math.min(100, Math.round((scrollY + viewH) / pageH * 100)))
}

// win, doc: window and document (or look-alikes in tests)
// settings: live object with dwell_ms, scroll_step, idle_ms, exit (updated by welcome)
// emit(type, fields), flush(): hand events to the batcher
// now: clock, Date.now by default
export function startTracking (win, doc, settings, emit, flush, now) {
  now = now || Date.now
  const visible = () => doc.visibilityState !== 'hidden'
  let live = true
  // handlers never throw into the page, and do nothing once stopped
  const safe = fn => e => { try { if (live) fn(e) } catch (err) {} }
  const on = (target, type, fn) => target.addEventListener(type, safe(fn), PASSIVE)

  // dwell: visible time since the last dwell event
  let acc = 0 // visible ms before `since`, not yet reported
  let since = now()
  let shown = visible()
  const pending = () => acc + (shown ? now() - since : 0)
  const dwell = () => {
    const ms = Math.round(pending())
    acc = 0
    since = now()
    if (ms > 0) emit('dwell', { ms })
  }

  // scroll: report when the maximum grew by scroll_step points
  let maxPct = 0
  let sentPct = 0
  let raf = 0
  const measure = () => {
    raf = 0
    const pct = scrollPct(win.scrollY, win.innerHeight, doc.documentElement.scrollHeight)
    if (pct > maxPct) maxPct = pct
    if (maxPct - sentPct >= (settings.scroll_step || 1)) {
      sentPct = maxPct
      emit('scroll', { pct: maxPct })
    }
  }

  // idle: no pointer, key, scroll or touch input for idle_ms (once per idle period)
  let lastInput = now()
  let idleSent = false
  const input = () => { lastInput = now(); idleSent = false }

  let lastExit = -Infinity

  const tick = () => {
    if (pending() >= settings.dwell_ms) dwell()
    if (visible() && !idleSent && settings.idle_ms > 0 && now() - lastInput >= settings.idle_ms) {
      idleSent = true
      emit('idle', { ms: Math.round(now() - lastInput) })
    }
  }
  const iv = win.setInterval(safe(tick), TICK)

  on(doc, 'visibilitychange', () => {
    if (visible()) {
      if (!shown) since = now()
      shown = true
      input()
    } else {
      acc = pending()
      shown = false
      dwell()
      flush()
    }
  })

  on(win, 'scroll', () => {
    input()
    if (!raf) raf = win.requestAnimationFrame(safe(measure))
  })
  for (const t of ['pointerdown', 'pointermove', 'keydown', 'touchstart', 'wheel']) on(win, t, input)

  on(doc, 'click', e => {
    const t = e.target
    if (t && t.id === HOST_ID) return // the overlay reports its own clicks
    const p = clickPayload(t)
    if (p) emit('click', p)
  })

  // desktop only: a device with a fine pointer
  if (win.matchMedia('(pointer: fine)').matches) {
    on(doc, 'mouseout', e => {
      if (!settings.exit || e.relatedTarget || e.clientY > 0) return
      const t = now()
      if (t - lastExit < EXIT_GAP) return
      lastExit = t
      emit('exit_intent', {})
    })
  }

  return {
    // report the visible time not yet reported (the page is going away)
    dwell,
    // a single-page navigation: close the old page's dwell, start a new scroll depth
    newPage () { dwell(); maxPct = sentPct = 0 },
    stop () { live = false; win.clearInterval(iv) }
  }
}
