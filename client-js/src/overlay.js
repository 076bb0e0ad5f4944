// Renders `show` frames in an open shadow root, one overlay at a time.
//
// <div id="kairos-host" style="all:initial!important">
//   #shadow-root (open)
//     <style>base CSS + frame css</style>
//     <div class="k-backdrop" data-k-close></div>            (place center only)
//     <div class="k-overlay k-place-P k-kind-K" role="dialog" aria-label=".." [aria-modal="true"] tabindex="-1" data-oid="..">
//       <button class="k-close" data-k-close aria-label="Close">×</button>
//       ...frame html...
//     </div>

export const HOST_ID = 'kairos-host'
const PLACES = ['center', 'top', 'bottom', 'corner']
const KINDS = ['overlay', 'offer', 'chat', 'bar']
const LABELS = ['Message', 'Offer', 'Chat', 'Notice'] // aria-label per kind

const CSS =
  '.k-overlay{position:fixed;z-index:2147483647;box-sizing:border-box;max-height:90vh;overflow:auto;padding:22px;' +
  'background:#fff;color:#222;border-radius:14px;box-shadow:0 16px 48px #0004;outline:0;font:15px/1.5 system-ui,sans-serif}' +
  '.k-close{position:absolute;top:6px;right:8px;border:0;background:none;color:inherit;font:24px/1 sans-serif;cursor:pointer;opacity:.6}' +
  '.k-close:hover,.k-close:focus{opacity:1}.k-close+*{margin-top:0}:last-child{margin-bottom:0}button{font:inherit}' +
  '.k-backdrop{position:fixed;inset:0;z-index:2147483646;background:#0006;animation:k-f .2s}' +
  '.k-place-center{top:50%;left:50%;width:min(440px,92vw);transform:translate(-50%,-50%);animation:k-f .2s}' +
  '.k-place-top,.k-place-bottom{left:0;right:0;border-radius:0;padding:14px 48px 14px 20px;text-align:center}' +
  '.k-place-top{top:0;animation:k-d .3s}' +
  '.k-place-bottom,.k-place-corner{bottom:0;animation:k-u .3s}' +
  '.k-place-corner{right:16px;bottom:16px;width:min(340px,92vw)}' +
  '@keyframes k-f{from{opacity:0}}' +
  '@keyframes k-d{from{transform:translateY(-100%)}}' +
  '@keyframes k-u{from{transform:translateY(100%);opacity:0}}' +
  '@media (prefers-reduced-motion:reduce){*{animation:none!important}}'

// feedback(oid, act) sends a feedback frame
export function createOverlay (doc, win, feedback) {
  let host = null
  let root = null
  let cur = null // { oid, timer, prev }

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
      host.setAttribute('style', 'all:initial!important')
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

    const place = PLACES.indexOf(f.place) >= 0 ? f.place : 'center'
    const k = Math.max(0, KINDS.indexOf(f.kind)) // unknown kinds render as 'overlay'
    const modal = place === 'center'
    root.innerHTML = '<style></style>' +
      (modal ? '<div class="k-backdrop" data-k-close></div>' : '') +
      '<div class="k-overlay k-place-' + place + ' k-kind-' + KINDS[k] + '" role="dialog" aria-label="' + LABELS[k] + '"' +
      (modal ? ' aria-modal="true"' : '') + ' tabindex="-1">' +
      '<button type="button" class="k-close" data-k-close aria-label="Close">\u00d7</button>' + f.html + '</div>'
    root.firstChild.textContent = CSS + (typeof f.css === 'string' ? f.css : '')
    const el = root.querySelector('.k-overlay')
    el.setAttribute('data-oid', f.oid)

    const prev = doc.activeElement
    cur = { oid: f.oid, prev }
    // a bar or bubble does not take the keyboard from someone typing in a form
    if (modal || !prev || !(/^(INPUT|TEXTAREA|SELECT)$/.test(prev.tagName) || prev.isContentEditable)) {
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
