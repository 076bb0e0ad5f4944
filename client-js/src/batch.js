// Event batching: events gather for wait() ms or until `max` of them, then go
// out as one `events` frame {v:1, t:"events", seq, ev, lost?}. Some types are
// flushed at once. While the connection is not ready the queue is the offline
// buffer: it keeps the newest `cap` events, and the ones it had to drop are
// counted and reported as `lost` with the next frame. A batch the server
// failed to handle (a `server_error` with its seq: Redis away) goes back to the
// front of the queue and out again after a wait that grows while the errors go
// on. Pure: sending, readiness and frame size are injected (timers are
// setTimeout and clearTimeout, which the tests replace).

import { backoff } from './connection.js'

// the store's events (kairos.track) that are not `custom`
export const STORE = ['cart', 'add_to_cart', 'checkout', 'purchase']
export const IMMEDIATE = ['exit_intent', 'rage_click', ...STORE]

// How many of the last batches sent are kept for a resend. A server_error
// comes back within one round trip of its batch; the most one flush sends
// back to back is the whole offline buffer after a reconnect (100 events at
// 20 a batch: 5 batches), and 8 leaves room for the next ones.
export const KEPT = 8

// opts: send(frame), ready() -> bool, wait() -> ms,
//       fits(frame) -> bool (whether the server takes a frame that size),
//       max (20), cap (100)
export function createBatcher (opts) {
  const fits = opts.fits
  const cap = opts.cap || 100
  let max = opts.max || 20
  let q = []
  let seq = 0
  let lost = 0
  let timer = 0
  let sent = {} // the last KEPT frames sent, by seq
  let back = 0 // events at the front of q that came back from server errors
  let errors = 0 // server errors in a row, for the wait before a resend

  // Send what is queued, through `via` (the page-hide beacon) if given, else
  // through opts.send while the connection is ready.
  function flush (via) {
    clearTimeout(timer)
    // a flush with nothing to resend ends a run of errors
    if (!back) errors = 0
    timer = back = 0
    // the offline buffer's cap, kept here as failed batches come back here too
    lost += q.splice(0, q.length - cap).length
    while (q.length && (via || opts.ready())) {
      let n = Math.min(max, q.length)
      let frame
      // halve the batch until it fits in a frame the server accepts
      while (!fits(frame = { v: 1, t: 'events', seq, ev: q.slice(0, n), ...lost && { lost } }) && n > 1) n = Math.ceil(n / 2)
      q.splice(0, n)
      // a single event too large for any frame is dropped, never sent
      if (fits(frame)) {
        sent[seq] = frame
        delete sent[seq - KEPT]
        seq++
        lost = 0
        ;(via || opts.send)(frame)
      } else lost++
    }
  }

  return {
    add (ev) {
      q.push(ev)
      // while events wait out a server error, none go before that wait is over
      if (!back && (IMMEDIATE.includes(ev.e) || q.length >= max)) flush()
      else timer = timer || setTimeout(flush, opts.wait())
    },
    flush,
    // The server failed to handle batch `n` (a server_error): its events go
    // back before every newer one (after those of earlier failed batches), with
    // its lost count, and out again after the batch wait plus a backoff with
    // full jitter that grows with the errors in a row (connection.js), so that
    // a server in an outage gets no burst of resends from every page at once.
    // The offline buffer's cap holds (the oldest go first, counted as lost). A
    // batch no longer kept, or not sent on this connection, has nothing to resend.
    retry (n) {
      const f = sent[n]
      if (!f) return
      delete sent[n] // one resend per failure
      q.splice(back, 0, ...f.ev)
      back += f.ev.length
      lost += f.lost | 0
      clearTimeout(timer)
      timer = setTimeout(flush, opts.wait() + backoff(errors++))
    },
    // a new connection: seq starts again at 0 (so the batches kept from the
    // last one are forgotten: their seq may come again), the server may ask
    // for smaller batches
    reset (maxEvents) {
      seq = errors = 0
      sent = {}
      if (maxEvents > 0) max = Math.min(opts.max || 20, maxEvents)
    },
    // an empty queue: flush() only stops the timer
    clear () { q = []; lost = 0; flush() }
  }
}
