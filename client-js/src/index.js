// k.js entry: wires config, ids, connection, tracking and overlays together.
// The only global is window.kairos. Nothing here throws into the host page.

import { encode } from './codec.js'
import { readConfig, gate } from './config.js'
import { createIds } from './ids.js'
import { connect } from './connection.js'
import { createBatcher, STORE } from './batch.js'
import { startTracking, watchRoutes } from './track.js'
import { lazyOverlay } from './lazy.js'
import { pageInfo } from './page.js'
import { VERSION, helloFrame } from './frames.js'
import { replay } from './stub.js'

// until the server's welcome says otherwise (docs/protocol.md, welcome `track`);
// exit_back and copy are off: left out
const DEFAULTS = {
  batch_ms: 1000, dwell_ms: 5000, scroll_step: 10, idle_ms: 30000,
  exit: true, exit_min_ms: 3000, exit_gap_ms: 10000, exit_scroll: true, exit_hidden: true,
  clicks: true, click_text: true, rage_n: 4, rage_ms: 1000, hes_ms: 15000, spa: true
}
// a route change is announced after this long, unless kairos.page() comes first
const ROUTE_MS = 100

function main (w, d) {
  const prev = w.kairos
  if (prev?.version) return // loaded twice

  const warned = {}
  const warn = (code, msg) => warned[code] || (warned[code] = 1, console.warn('[kairos] ' + code + ': ' + msg))
  const safe = fn => (a, b) => { try { return fn(a, b) } catch (e) { warn('error', e.message) } }

  const cfg = readConfig(d, w.location)
  if (!cfg.site) warn('config', 'data-site missing or invalid')
  const nav = w.navigator
  const loc = w.location
  // DNT / GPC: no connection, no tracking, nothing kept, for the whole page load
  const privacy = gate(nav, w)
  const s = { ...DEFAULTS }
  const ids = createIds(w, d, cfg.cookie)
  let consented = !cfg.consentRequired
  let conn, tracker, suspended, watching, routeTimer
  let sid = null
  let hellos = 0 // hellos sent for this page view; the first one is the page view
  let maxFrame = 16384
  let fb = [] // feedback waiting for the (re)connection, the newest 10
  let props = {} // what kairos.page() said about the current page
  const here = () => loc.pathname + loc.search
  let announced // the URL of the last page view (hash changes are not page views)

  const isOpen = () => conn?.state === 'open'
  const batcher = createBatcher({
    send: f => conn.send(f),
    ready: isOpen,
    wait: () => s.batch_ms,
    // room for the site, visitor and session ids a beacon adds
    fits: f => encode(f).length <= maxFrame - 200
  })
  // e and ts first, and never overwritten by the fields
  const emit = (e, fields) => {
    const ts = Date.now()
    batcher.add(Object.assign({ e, ts }, fields, { e, ts }))
  }
  const beacon = f => cfg.beacon && nav.sendBeacon?.(cfg.beacon, encode(f))
  // the page is hidden or going away: what the socket cannot take now goes by
  // beacon to the session it belongs to (or waits, when there is none yet)
  const leave = () => {
    const known = ids.sid()
    if (isOpen()) batcher.flush()
    else if (known) batcher.flush(f => beacon({ ...f, site: cfg.site, vid: ids.vid(), sid: known }))
  }

  const overlay = lazyOverlay(d, w, cfg.overlay, f => {
    if (!conn?.send(f) && fb.push(f) > 10) fb.shift()
  })

  const announce = () => {
    clearTimeout(routeTimer)
    announced = here()
    tracker?.newPage()
    emit('page_view', pageInfo(d, loc, props))
  }
  // a single-page app changed its URL (pushState, replaceState, back/forward)
  const routed = () => {
    if (!tracker || !s.spa || here() === announced) return
    props = {}
    clearTimeout(routeTimer)
    // a move away and back within the wait (a router's redirect) is no new page
    routeTimer = setTimeout(safe(() => here() !== announced && announce()), ROUTE_MS)
  }

  function onFrame (f) {
    if (f.t === 'welcome') {
      ids.setSid(f.sid)
      sid = ids.sid()
      Object.assign(s, f.track)
      if (f.max_frame > 0) maxFrame = f.max_frame
      batcher.reset(f.max_events) // seq counts the batches of one connection
      fb.splice(0).forEach(conn.send)
      batcher.flush()
    } else if (f.t === 'show') overlay.show(f)
    else if (f.t === 'hide') overlay.hide(f.oid)
    else if (f.t === 'error') {
      // a batch the server failed to handle (Redis away) goes again; one it
      // refused for what it holds would only be refused again
      if (f.code === 'server_error') batcher.retry(f.seq)
      warn(f.code, f.msg)
    }
  }

  function start () {
    if (conn || !cfg.site || privacy || !consented) return
    if (!watching) watching = watchRoutes(w, safe(routed))
    // the hello is this page's view: the page the visitor is on when consent
    // comes, not the one the script loaded on (a router may have moved since)
    announced = here()
    tracker = startTracking(w, d, s, emit, leave, 0, api.track)
    conn = connect(
      cfg.endpoint,
      () => helloFrame(cfg.site, ids.vid(), ids.sid(), pageInfo(d, loc, props), nav, new Date(), hellos++),
      safe(onFrame)
    )
    conn.open()
  }

  const on = (type, fn) => w.addEventListener(type, safe(fn))
  on('online', () => conn?.online())
  // close on pagehide so the page can enter the back/forward cache; reopen if it comes back
  on('pagehide', () => {
    if (!conn) return
    tracker.dwell()
    leave()
    suspended = conn.close(1000)
  })
  on('pageshow', e => {
    // back from the back/forward cache: the visitor came back, a new page view
    if (e.persisted && suspended && conn) { suspended = hellos = 0; conn.open() }
  })

  const api = w.kairos = {
    version: VERSION,
    // a store-reported event: kairos.track('add_to_cart', { sku, price, qty });
    // a name that is not one of STORE goes as { e: 'custom', name, props }.
    // Before consent it waits in memory (newest 100); under DNT/GPC it is dropped.
    track: safe((name, fields = {}) => {
      if (privacy) return
      encode(fields) // throws (and the event is dropped) on values msgpack cannot carry
      if (STORE.includes(name)) emit(name, fields)
      else if (typeof name === 'string' && /^[\w.:-]{1,64}$/.test(name)) emit('custom', { name, props: fields })
      else warn('track', 'bad event name')
    }),
    // the store's own id for the visitor (the server keeps only a hash of it)
    identify: safe(id => {
      if (!privacy && id != null && id !== '') emit('identify', { uid: String(id).slice(0, 128) })
    }),
    // this page's type and product: kairos.page({ type: 'product', product: { sku, name, price, cur } });
    // before the connection's hello it rides in the hello, after it is a page view
    page: safe(p => {
      if (privacy) return
      encode(p || 0) // throws (nothing changes) on what msgpack cannot carry, before it can spoil a hello
      props = p && typeof p === 'object' ? p : {}
      if (hellos) announce()
    }),
    consent: safe(ok => {
      consented = !!ok
      if (ok) return start()
      // ask the server to erase what it keeps about this visitor
      const vid = ids.vid(true)
      if (vid && cfg.site) beacon({ v: 1, t: 'forget', site: cfg.site, vid, sid: ids.sid() })
      tracker?.stop()
      conn?.close()
      tracker = conn = sid = null
      batcher.clear()
      fb = []
      overlay.clear()
      ids.clear()
    }),
    get sid () { return sid },
    get state () { return conn?.state || 'idle' }
  }

  start()
  replay(prev, api)
}

if (typeof window !== 'undefined') {
  try { main(window, document) } catch (e) {}
}
