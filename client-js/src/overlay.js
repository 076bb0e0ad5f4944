// Renders `show` frames in an open shadow root, one overlay at a time.
//
// <div id="kairos-host">                    (all: initial, set through the CSSOM)
//   #shadow-root (open)                     the frame's css as a constructed stylesheet
//     ...the frame's html: the server's frame around the template, e.g.
//     <div class="k-backdrop" data-k-close></div>
//     <div class="k-overlay k-place-center k-kind-offer" role="dialog" aria-labelledby="k-title"
//          aria-modal="true" tabindex="-1"> <button data-k-close aria-label="Close">×</button> … </div>
//
// The server owns the markup and the styles (templates/overlays/); this file
// owns the behaviour: focus, keyboard, clicks, expiry and the feedback. A
// constructed stylesheet is not inline style, so a page with a strict
// Content-Security-Policy (no 'unsafe-inline') shows the overlay styled.

export const HOST_ID = 'kairos-host'
const FOCUSABLE = 'a[href],button,input,select,textarea,[tabindex="0"]'

// feedback(oid, act) sends a feedback frame
export function createOverlay (doc, win, feedback) {
  let host = null
  let root = null
  let cur = null // { oid, el, timer, prev }

  function remove (act) {
    const c = cur
    if (!c) return
    cur = null
    win.clearTimeout(c.timer)
    root.innerHTML = ''
    // give focus back if it was ours
    const a = doc.activeElement
    if (c.prev && c.prev.focus && (!a || a === host || a === doc.body)) c.prev.focus({ preventScroll: true })
    if (act) feedback(c.oid, act)
  }

  const guard = fn => e => { try { if (cur) fn(e) } catch (err) {} }

  function show (f) {
    if (!f.oid || typeof f.html !== 'string') return
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
      root.addEventListener('keydown', guard(e => {
        // Tab goes round inside a modal dialog
        if (e.key !== 'Tab' || !cur.el.getAttribute('aria-modal')) return
        const all = root.querySelectorAll(FOCUSABLE)
        const first = all[0]
        const last = all[all.length - 1]
        const a = root.activeElement
        if (e.shiftKey ? a === first || a === cur.el : a === last) {
          e.preventDefault()
          ;(e.shiftKey ? last : first).focus()
        }
      }))
      doc.addEventListener('keydown', guard(e => {
        if (e.key === 'Escape') remove('dismissed')
      }), true)
    }
    if (!host.isConnected) (doc.body || doc.documentElement).appendChild(host)

    root.innerHTML = f.html
    try {
      const sheet = new win.CSSStyleSheet()
      sheet.replaceSync(f.css || '')
      root.adoptedStyleSheets = [sheet]
    } catch (e) {}
    const el = root.querySelector('[tabindex="-1"]') || root.firstElementChild || host
    el.setAttribute('data-oid', f.oid)

    const prev = doc.activeElement
    cur = { oid: f.oid, el, prev }
    // only a dialog takes the keyboard, and not from someone typing in a form
    if (el.getAttribute('aria-modal') || (el.getAttribute('role') === 'dialog' && !(prev && /^(INPUT|TEXTAREA|SELECT)$/.test(prev.tagName)))) {
      el.focus({ preventScroll: true })
    }
    feedback(f.oid, 'shown')
    if (f.ttl_ms > 0) {
      const c = cur
      c.timer = win.setTimeout(() => cur === c && remove('expired'), f.ttl_ms)
    }
  }

  return {
    show,
    hide (oid) { if (cur && cur.oid === oid) remove() },
    clear () { remove() }
  }
}
