// Event batching: events gather for wait() ms or until `max` of them, then go
// out as one `events` frame {v:1, t:"events", seq, ev, lost?}. Some types are
// flushed at once. While the connection is not ready the queue is the offline
// buffer: it keeps the newest `cap` events, and the ones it had to drop are
// counted and reported as `lost` with the next frame. Pure: sending,
// readiness and frame size are injected (timers are setTimeout and
// clearTimeout, which the tests replace).

// the store's events (kairos.track) that are not `custom`
export const STORE = ['cart', 'add_to_cart', 'checkout', 'purchase']
export const IMMEDIATE = ['exit_intent', 'rage_click', ...STORE]

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

  // Send what is queued, through `via` (the page-hide beacon) if given, else
  // through opts.send while the connection is ready.
  function flush (via) {
    clearTimeout(timer)
    timer = 0
    while (q.length && (via || opts.ready())) {
      let n = Math.min(max, q.length)
      let frame
      // halve the batch until it fits in a frame the server accepts
      while (!fits(frame = { v: 1, t: 'events', seq, ev: q.slice(0, n), ...lost && { lost } }) && n > 1) n = Math.ceil(n / 2)
      q.splice(0, n)
      // a single event too large for any frame is dropped, never sent
      if (fits(frame)) {
        seq++
        lost = 0
        ;(via || opts.send)(frame)
      } else lost++
    }
  }

  return {
    add (ev) {
      q.push(ev)
      if (q.length > cap) lost += q.splice(0, q.length - cap).length
      if (IMMEDIATE.includes(ev.e) || q.length >= max) flush()
      else timer = timer || setTimeout(flush, opts.wait())
    },
    flush,
    // a new connection: seq starts again at 0, the server may ask for smaller batches
    reset (maxEvents) {
      seq = 0
      if (maxEvents > 0) max = Math.min(opts.max || 20, maxEvents)
    },
    // an empty queue: flush() only stops the timer
    clear () { q = []; lost = 0; flush() }
  }
}
