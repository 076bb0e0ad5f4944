// Renders `show` frames in an open shadow root, one overlay at a time.
//
// <div id="kairos-host">                    (all: initial, set through the CSSOM)
//   #shadow-root (open)                     the frame's css as a constructed stylesheet
//     ...the frame's html: the server's frame around the template (render.py dress()):
//     <dialog class="k-overlay k-place-center k-kind-offer" aria-labelledby="k-title"
//             data-modal closedby="any"> <button data-k-close aria-label="Close">×</button> … </dialog>
//     (a top or bottom bar is a <div role="status"> instead)
//
// The server owns the markup and the styles (templates/overlays/); this file
// owns the behaviour. A centered overlay is a modal <dialog>: the browser puts
// it in the top layer above any z-index of the store, makes the page behind it
// inert (Tab stays in the dialog), closes it on Escape or a click on the
// backdrop, and gives the focus back when it closes. A constructed stylesheet
// is not inline style, so a page with a strict Content-Security-Policy (no
// 'unsafe-inline') shows the overlay styled.

import { feedbackFrame } from './frames.js'

export const HOST_ID = 'kairos-host'

// An attribute that can run script: an event handler, or an address the
// browser would not follow as http(s) or a path on the store (`javascript:`
// runs as the store when clicked). The server refuses and drops these
// (server/kairos/rules/urls.py); this is the last layer. The browser's own URL
// parser reads the address, tabs, padding and letter case as it would.
export function unsafe (name, v) {
  if (/^on/i.test(name)) return true
  if (!/^(href|src|action|formaction|data|xlink:href)$/i.test(name)) return false
  try { return !/^https?:$/.test(new URL(v, 'http://a').protocol) } catch (e) { return true }
}

// send(frame): hands a feedback frame to the connection
export function createOverlay (doc, win, send) {
  const feedback = (oid, act, why) => send(feedbackFrame(oid, act, Date.now(), why))
  let host = null
  let root = null
  let cur = null // { oid, el, timer, prev, scope, at }
  // Every overlay shown on this page: a delayed nudge is sent again under the
  // same oid when the process that first sent it died (the server cannot tell
  // whether its frame went out), and must be neither shown twice nor brought
  // back after the visitor closed it.
  const shown = new Set()
  const loc = win.location
  const here = () => loc && loc.pathname + loc.search

  function remove (act, why) {
    const c = cur
    if (!c) return
    cur = null
    win.clearTimeout(c.timer)
    root.innerHTML = ''
    // give focus back if it was ours
    const a = doc.activeElement
    if (c.prev && c.prev.focus && (!a || a === host || a === doc.body)) c.prev.focus({ preventScroll: true })
    if (act) feedback(c.oid, act, why)
  }

  const guard = fn => e => { try { if (cur) fn(e) } catch (err) {} }

  // A page-scoped overlay goes as soon as a single-page store moves to another
  // page, with no round trip to the server (which hides the other scopes when
  // the page view reaches it). Removal shifts nothing: the host's content is
  // position: fixed. Watched from here, so k.js pays nothing for it; the same
  // URL again (a router's replaceState) or a new #fragment is the same page.
  const moved = guard(() => cur.scope === 'page' && here() !== cur.at && remove('hidden', 'page'))
  const h = win.history
  if (h) {
    for (const m of ['pushState', 'replaceState']) {
      const orig = h[m]
      h[m] = function () {
        const r = orig.apply(this, arguments)
        moved()
        return r
      }
    }
    win.addEventListener('popstate', moved)
  }

  function show (f) {
    if (!f.oid || typeof f.html !== 'string' || shown.has(f.oid)) return
    shown.add(f.oid)
    remove() // a new show silently replaces the current overlay
    if (!host) {
      host = doc.createElement('div')
      host.id = HOST_ID
      host.style.setProperty('all', 'initial', 'important')
      root = host.attachShadow({ mode: 'open' })
      root.addEventListener('click', guard(e => {
        const t = e.target.closest('[data-k-click],[data-k-close]')
        if (!t) return
        const v = t.getAttribute('data-k-click')
        if (v === null) return remove('dismissed')
        feedback(cur.oid, 'clicked')
        if (v === 'close') remove()
      }))
      doc.addEventListener('keydown', guard(e => {
        if (e.key === 'Escape') remove('dismissed')
      }), true)
    }
    if (!host.isConnected) (doc.body || doc.documentElement).appendChild(host)

    root.innerHTML = f.html
    // an event handler attribute runs script too: the server's templates have none
    for (const el of root.querySelectorAll('*')) for (const a of [...el.attributes]) if (unsafe(a.name, a.value)) el.removeAttribute(a.name)
    try {
      const sheet = new win.CSSStyleSheet()
      sheet.replaceSync(f.css || '')
      root.adoptedStyleSheets = [sheet]
    } catch (e) {}
    const el = root.firstElementChild || host
    el.setAttribute('data-oid', f.oid)
    const prev = doc.activeElement
    const c = cur = { oid: f.oid, el, prev, scope: f.scope, at: here() }
    // closed by the browser (a click on the backdrop): the visitor dismissed it
    el.onclose = guard(() => cur === c && remove('dismissed'))
    if (el.show) {
      if (el.hasAttribute('data-modal')) el.showModal()
      else {
        el.show()
        // a corner card does not take the keyboard from someone typing in a form
        if (prev && /^(INPUT|TEXTAREA|SELECT)$/.test(prev.tagName)) prev.focus({ preventScroll: true })
      }
    }
    feedback(f.oid, 'shown')
    if (f.ttl_ms > 0) c.timer = win.setTimeout(() => cur === c && remove('expired'), f.ttl_ms)
  }

  return {
    show,
    hide (oid) { if (cur && cur.oid === oid) remove() },
    clear () { remove() }
  }
}
