// The overlay behaviour (overlay.js) is a second file, dist/k-overlay.js,
// fetched on the first `show`: most page views show no overlay, and every page
// loads k.js (DESIGN.md: "overlay renderer loaded on first use").
//
// The file is a classic <script> from beside k.js, so a strict CSP that lets
// k.js in lets it in too, with no eval and no module CORS. It hands its
// createOverlay to the function on its own <script> element (k-overlay.js):
// no global. Until then the latest `show` waits (one overlay at a time, so a
// newer one replaces it); a failed fetch drops it, and the next `show` tries again.

// src: the file's URL; send(frame) as for createOverlay
export function lazyOverlay (doc, win, src, send) {
  let ov, waiting, script
  return {
    show (f) {
      waiting = f
      if (ov) ov.show(f)
      else if (!script) {
        script = doc.createElement('script')
        script.src = src
        script.kairos = create => {
          ov = create(doc, win, send)
          if (waiting) ov.show(waiting)
        }
        script.onerror = () => { script.remove(); script = waiting = 0 }
        doc.head.appendChild(script)
      }
    },
    hide (oid) {
      if (ov) ov.hide(oid)
      else if (waiting && waiting.oid === oid) waiting = 0
    },
    clear () {
      waiting = 0
      if (ov) ov.clear()
    }
  }
}
