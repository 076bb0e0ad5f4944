// Pure detectors: the clock and the geometry are passed in, so each one is a
// small state machine the node tests drive directly.

// Deepest scroll of the page, int percent 0..100.
export const scrollPct = (scrollY, viewH, pageH) =>
  pageH > 0 ? Math.max(0, Math.min(100, Math.round((scrollY + viewH) / pageH * 100))) : 0

// Rage clicks: s.rage_n clicks within s.rage_ms of the first one, each within
// `r` CSS px of it (s: the live settings). Returns click(x, y, t): the count
// when a burst reaches rage_n (once per burst, so the event goes out while the
// visitor is still clicking), else 0.
// r = 30 px: a thumb's width; Microsoft Clarity and FullStory both use "the
// same spot", neither publishes a radius.
export function rage (s, r = 30) {
  let x0, y0, t0
  let c = 0
  return (x, y, t) => {
    if (c && t - t0 <= s.rage_ms && Math.abs(x - x0) <= r && Math.abs(y - y0) <= r) c++
    else { x0 = x; y0 = y; t0 = t; c = 1 }
    return s.rage_n > 1 && c === s.rage_n ? c : 0
  }
}

// Mobile exit intent: a fast upward scroll (at least `speed` px/ms between two
// scroll samples, 1.5 px/ms = a flick, not reading) that ends within one screen
// of the top, where the browser shows its address bar and tabs.
// Returns sample(y, t, viewH) -> true on such a flick.
export function flick (speed = 1.5) {
  let py = -1
  let pt = 0
  return (y, t, vh) => {
    const hit = py >= 0 && t > pt && py - y >= speed * (t - pt) && y < vh
    py = y
    pt = t
    return hit
  }
}

// Whether an exit intent counts at time t: the page has been shown for
// exit_min_ms, and the last exit intent is older than exit_gap_ms.
export const exitOk = (t, pageAt, lastAt, s) => t - pageAt >= s.exit_min_ms && t - lastAt >= s.exit_gap_ms
