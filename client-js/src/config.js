// Configuration from the script tag, and the privacy gate.

export const SITE_RE = /^[\w.-]{1,64}$/

// Why the snippet must not connect ('dnt', 'gpc'), or '' when it may.
// nav and win are navigator- and window-like objects, so this stays pure.
export const gate = (nav, win) =>
  nav.doNotTrack === '1' || win.doNotTrack === '1' ? 'dnt' : nav.globalPrivacyControl === true ? 'gpc' : ''

// The websocket URL. An explicit data-endpoint wins (relative ones resolve
// against the script's URL); otherwise it is the script's host at /ws. Over
// TLS when the script came over TLS: http(s) becomes ws(s). (An http script
// on an https page is not a case: the browser blocks it as mixed content,
// localhost aside, where ws:// is allowed too.)
export function endpoint (explicit, src, pageHref) {
  const u = new URL(explicit || '/ws', new URL(src || pageHref, pageHref))
  u.protocol = u.protocol.replace('http', 'ws')
  return u.href
}

// The beacon URL for a websocket URL: same host over http(s), path .../b
// beside .../ws (wss://k.example/ws -> https://k.example/b).
export const beaconUrl = ws => ws && new URL('b', 'http' + ws.slice(2)).href

// a URL that cannot be parsed is no URL
const tried = fn => { try { return fn() } catch (e) { return '' } }

// Read data-* attributes of the snippet's own <script> tag.
export function readConfig (doc, loc) {
  const el = doc.currentScript || doc.querySelector('script[data-site]')
  const attr = n => el?.getAttribute('data-' + n) || ''
  const src = el?.src
  const site = attr('site')
  const ws = tried(() => endpoint(attr('endpoint'), src, loc.href))
  const beacon = beaconUrl(ws)
  return {
    site: SITE_RE.test(site) ? site : '',
    endpoint: ws,
    beacon,
    // the overlay code (lazy.js) lives beside k.js; an inlined snippet takes it
    // from the Kairos server's root
    overlay: tried(() => new URL('k-overlay.js', src || beacon).href),
    consentRequired: attr('consent') === 'required',
    // where the visitor id lives: localStorage (default) or a first-party cookie
    cookie: attr('vid-store') === 'cookie'
  }
}
