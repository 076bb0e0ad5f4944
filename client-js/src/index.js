// k.js entry: wires config, ids, connection, tracking and overlays together.
// The only global is window.kairos. Nothing here throws into the host page.

import { encode } from './codec.js'
import { readConfig, gate } from './config.js'
import { createIds } from './ids.js'
import { connect } from './connection.js'
import { createBatcher } from './batch.js'
import { startTracking } from './track.js'
import { createOverlay } from './overlay.js'
import { pageInfo } from './page.js'
import { VERSION, helloFrame, feedbackFrame } from './frames.js'
import { replay } from './stub.js'

// until the server's welcome says otherwise
const DEFAULTS = { batch_ms: 1000, dwell_ms: 5000, scroll_step: 10, idle_ms: 30000, exit: true }

function main (w, d) {
  const prev = w.kairos
  if (prev && prev.version) return // loaded twice

  const warned = {}
  const warn = (code, msg) => warned[code] || (warned[code] = 1, console.warn('[kairos] ' + code + ': ' + msg))
  const safe = fn => (a, b) => { try { return fn(a, b) } catch (e) { warn('error', e.message) } }

  const cfg = readConfig(d, w.location)
  if (!cfg.site) warn('config', 'data-site missing or invalid')
  const nav = w.navigator
  // DNT / GPC: no connection, no tracking, nothing kept, for the whole page load
  const privacy = gate(nav, w)
  const settings = Object.assign({}, DEFAULTS)
  const ids = createIds(w)
  let consented = !cfg.consentRequired
  let conn = null
  let tracker = null
  let sid = null
  let suspended = false
  let hellos = 0 // hellos sent for this page view; the first one is the page view
  let maxFrame = 16384
  let fb = [] // feedback waiting for the (re)connection

  const batcher = createBatcher({
    send: f => conn.send(f),
    ready: () => !!conn && conn.state === 'open',
    wait: () => settings.batch_ms,
    fits: f => encode(f).length <= maxFrame
  })
  // e and ts first, and never overwritten by the fields
  const emit = (e, fields, ts) => batcher.add(Object.assign({ e, ts: ts = Date.now() }, fields, { e, ts }))
  const flush = () => batcher.flush()

  const overlay = createOverlay(d, w, (oid, act) => {
    const f = feedbackFrame(oid, act, Date.now())
    if (!conn || !conn.send(f)) fb = fb.concat(f).slice(-10)
  })

  function onFrame (f) {
    if (f.t === 'welcome') {
      ids.setSid(f.sid)
      sid = ids.sid()
      Object.assign(settings, f.track)
      if (f.max_frame > 0) maxFrame = f.max_frame
      batcher.reset(f.max_events) // seq counts the batches of one connection
      fb.splice(0).forEach(conn.send)
      flush()
    } else if (f.t === 'show') overlay.show(f)
    else if (f.t === 'hide') overlay.hide(f.oid)
    else if (f.t === 'error') warn(f.code, f.msg)
  }

  function start () {
    if (conn || !cfg.site || privacy || !consented) return
    tracker = startTracking(w, d, settings, emit, flush)
    conn = connect(
      cfg.endpoint,
      () => helloFrame(cfg.site, ids.vid(), ids.sid(), pageInfo(d, w.location), nav, w, new Date(), hellos++ > 0),
      safe(onFrame)
    )
    conn.open()
  }

  const on = (type, fn) => w.addEventListener(type, safe(fn))
  on('online', () => conn && conn.online())
  // close on pagehide so the page can enter the back/forward cache; reopen if it comes back
  on('pagehide', () => {
    if (!conn) return
    tracker.dwell()
    flush()
    if (conn.state !== 'closed') { suspended = true; conn.close(1000) }
  })
  on('pageshow', e => {
    // back from the back/forward cache: the visitor came back, a new page view
    if (e.persisted && suspended && conn) { suspended = false; hellos = 0; conn.open() }
  })

  w.kairos = {
    version: VERSION,
    // a store-reported event: kairos.track("cart", { value: 42.5, items: 2, cur: "EUR" });
    // before consent it waits in memory (newest 100), under DNT/GPC it is dropped
    track: safe((type, fields) => {
      if (privacy) return
      if (typeof type !== 'string') return warn('track', 'bad type')
      encode(fields || 0) // throws (and the event is dropped) on values msgpack cannot carry
      emit(type, fields)
    }),
    // a single-page navigation
    page: safe(() => {
      if (privacy) return
      if (tracker) tracker.newPage()
      emit('page_view', pageInfo(d, w.location))
    }),
    consent: safe(ok => {
      consented = !!ok
      if (ok) return start()
      if (tracker) tracker.stop()
      if (conn) conn.close()
      tracker = conn = sid = null
      batcher.clear()
      fb = []
      overlay.clear()
      ids.clear()
    }),
    get sid () { return sid },
    get state () { return conn ? conn.state : 'idle' }
  }

  start()
  replay(prev, w.kairos)
}

if (typeof window !== 'undefined') {
  try { main(window, document) } catch (e) {}
}
