// Configuration from the script tag, and the privacy gate.

export const SITE_RE = /^[A-Za-z0-9_.-]{1,64}$/

// Why the snippet must not connect, or '' when it may.
// nav and win are navigator- and window-like objects, so this stays pure.
export function gate (nav, win, consentRequired, consented) {
  nav = nav || {}
  if (nav.doNotTrack === '1' || (win && win.doNotTrack === '1')) return 'dnt'
  if (nav.globalPrivacyControl === true) return 'gpc'
  if (consentRequired && !consented) return 'consent'
  return ''
}

// The websocket URL. An explicit data-endpoint wins (relative ones resolve
// against the script's URL, http(s) becomes ws(s)); otherwise it is the
// script's host at /ws, over wss when the page or the script is on https.
export function endpoint (explicit, src, pageHref) {
  const u = new URL(explicit || '/ws', new URL(src || pageHref, pageHref))
  u.protocol = /^(https|wss):/.test(u.protocol) || (!explicit && /^https:/i.test(pageHref)) ? 'wss:' : 'ws:'
  return u.href
}

const ep = (a, b, c) => { try { return endpoint(a, b, c) } catch (e) { return '' } }
const url = (rel, base) => { try { return new URL(rel, base).href } catch (e) { return '' } }

// The beacon URL for a websocket URL: same host over http(s), path .../b
// beside .../ws (wss://k.example/ws -> https://k.example/b).
export const beaconUrl = ws => ws && new URL('b', 'http' + ws.slice(2)).href

// Read data-* attributes of the snippet's own <script> tag.
export function readConfig (doc, loc) {
  const el = doc.currentScript || doc.querySelector('script[data-site]')
  const attr = n => (el && el.getAttribute('data-' + n)) || ''
  const site = attr('site')
  const ws = ep(attr('endpoint'), el && el.src, loc.href)
  return {
    site: SITE_RE.test(site) ? site : '',
    endpoint: ws,
    beacon: beaconUrl(ws),
    // the overlay code (lazy.js) lives beside k.js; an inlined snippet takes it
    // from the Kairos server's root
    overlay: url('k-overlay.js', (el && el.src) || beaconUrl(ws)),
    consentRequired: attr('consent') === 'required',
    // where the visitor id lives: localStorage (default) or a first-party cookie
    cookie: attr('vid-store') === 'cookie'
  }
}
