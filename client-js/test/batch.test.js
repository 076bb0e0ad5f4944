// Batching and the offline buffer (src/batch.js) on a fake clock.
import { test, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { createBatcher, IMMEDIATE, KEPT } from '../src/batch.js'
import { encode } from '../src/codec.js'

const real = { setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout }
afterEach(() => Object.assign(globalThis, real))

// A batcher on a fake clock: timers (the global setTimeout and clearTimeout,
// replaced until the test ends) only fire on tick().
function setup (over = {}) {
  let now = 0
  let timers = []
  const sent = []
  const state = { ready: true }
  globalThis.setTimeout = (fn, ms) => { const t = { fn, at: now + ms }; timers.push(t); return t }
  globalThis.clearTimeout = t => { timers = timers.filter(x => x !== t) }
  const at = [] // when each frame was sent
  const b = createBatcher(Object.assign({
    send: f => { sent.push(f); at.push(now) },
    ready: () => state.ready,
    wait: () => state.wait || 1000,
    fits: () => true
  }, over))
  const tick = ms => {
    now += ms
    for (const t of timers.filter(x => x.at <= now)) {
      timers = timers.filter(x => x !== t)
      t.fn()
    }
  }
  const ev = (i, e = 'click') => ({ e, ts: 1000 + i, i })
  return { b, sent, at, state, tick, ev, pending: () => timers.length }
}

test('events gather until batch_ms has passed, then go out as one events frame', () => {
  const { b, sent, tick, ev, pending } = setup()
  b.add(ev(0))
  b.add(ev(1, 'scroll'))
  b.add(ev(2, 'dwell'))
  assert.equal(sent.length, 0)
  assert.equal(pending(), 1, 'one timer for the whole batch')
  tick(999)
  assert.equal(sent.length, 0)
  tick(1)
  assert.equal(sent.length, 1)
  assert.deepStrictEqual(sent[0], { v: 1, t: 'events', seq: 0, ev: [ev(0), ev(1, 'scroll'), ev(2, 'dwell')] })
  assert.equal(pending(), 0)
})

test('the wait comes from wait() at the time the batch starts (welcome may change batch_ms)', () => {
  const { b, sent, state, tick, ev } = setup()
  state.wait = 250
  b.add(ev(0))
  tick(249)
  assert.equal(sent.length, 0)
  tick(1)
  assert.equal(sent.length, 1)
})

test('the 20th event flushes at once, without waiting for the timer', () => {
  const { b, sent, ev, pending } = setup()
  for (let i = 0; i < 19; i++) b.add(ev(i))
  assert.equal(sent.length, 0)
  b.add(ev(19))
  assert.equal(sent.length, 1)
  assert.equal(sent[0].ev.length, 20)
  assert.deepStrictEqual(sent[0].ev.map(e => e.i), Array.from({ length: 20 }, (_, i) => i))
  assert.equal(pending(), 0, 'the batch timer is cancelled')
})

for (const type of ['exit_intent', 'cart', 'add_to_cart', 'checkout', 'purchase', 'rage_click']) {
  test(`${type} flushes at once, with the events gathered before it`, () => {
    const { b, sent, ev } = setup()
    b.add(ev(0))
    b.add(ev(1, type))
    assert.equal(sent.length, 1)
    assert.deepStrictEqual(sent[0].ev.map(e => e.e), ['click', type])
  })
}

test('the immediate types are exactly these; every other type waits for batch_ms', () => {
  assert.deepStrictEqual([...IMMEDIATE].sort(), ['add_to_cart', 'cart', 'checkout', 'exit_intent', 'purchase', 'rage_click'])
  for (const type of ['click', 'dwell', 'scroll', 'idle', 'idle_end', 'page_view', 'hesitation', 'copy', 'identify', 'custom']) {
    const { b, sent, ev, pending } = setup()
    b.add(ev(0, type))
    assert.equal(sent.length, 0, type)
    assert.equal(pending(), 1, type)
  }
})

test('after a flush the next event starts a new batch_ms wait', () => {
  const { b, sent, tick, ev, pending } = setup()
  b.add(ev(0))
  b.add(ev(1, 'cart'))
  assert.equal(pending(), 0, 'the flush cancelled the wait')
  b.add(ev(2))
  assert.equal(pending(), 1)
  tick(999)
  assert.equal(sent.length, 1)
  tick(1)
  assert.deepStrictEqual(sent.map(f => f.ev.map(e => e.i)), [[0, 1], [2]])
})

test('seq increments with every frame and starts again at 0 on reset (a new connection)', () => {
  const { b, sent, ev } = setup()
  b.add(ev(0, 'cart'))
  b.add(ev(1, 'cart'))
  b.add(ev(2, 'cart'))
  assert.deepStrictEqual(sent.map(f => f.seq), [0, 1, 2])
  b.reset()
  b.add(ev(3, 'cart'))
  assert.equal(sent[3].seq, 0)
})

test('reset(max_events) lowers the batch size, never above 20', () => {
  const { b, sent, ev } = setup()
  b.reset(5)
  for (let i = 0; i < 5; i++) b.add(ev(i))
  assert.equal(sent.length, 1)
  assert.equal(sent[0].ev.length, 5)
  b.reset(50)
  for (let i = 0; i < 19; i++) b.add(ev(i))
  assert.equal(sent.length, 1, '50 from the server does not raise the batch above 20')
})

test('while not ready nothing is sent and the queue keeps only the newest 100 events', () => {
  const { b, sent, state, tick, ev } = setup()
  state.ready = false
  for (let i = 0; i < 150; i++) b.add(ev(i))
  b.add(ev(150, 'exit_intent'))
  tick(5000)
  assert.equal(sent.length, 0)
  state.ready = true
  b.flush()
  const got = sent.flatMap(f => f.ev.map(e => e.i))
  assert.deepStrictEqual(got, Array.from({ length: 100 }, (_, i) => 51 + i), 'the newest 100, oldest first')
  assert.ok(sent.every(f => f.ev.length <= 20))
  assert.deepStrictEqual(sent.map(f => f.seq), [0, 1, 2, 3, 4])
  assert.deepStrictEqual(sent.map(f => f.lost), [51, undefined, undefined, undefined, undefined])
  b.flush()
  assert.equal(sent.length, 5, 'nothing left')
})

test('the dropped events are reported as lost on the next frame only, then counted from 0 again', () => {
  const { b, sent, state, ev } = setup({ cap: 5 })
  state.ready = false
  for (let i = 0; i < 8; i++) b.add(ev(i)) // 5 kept, 3 lost
  state.ready = true
  b.add(ev(8, 'cart')) // flushes: 6 queued, the oldest (3) dropped for the cap
  assert.deepStrictEqual(sent.map(f => [f.ev.map(e => e.i), f.lost]), [[[4, 5, 6, 7, 8], 4]])
  b.add(ev(9, 'cart'))
  assert.equal('lost' in sent[1], false, 'reported once')
  // a second loss is counted from 0
  state.ready = false
  for (let i = 10; i < 17; i++) b.add(ev(i))
  state.ready = true
  b.flush()
  assert.equal(sent[2].lost, 2)
  assert.deepStrictEqual(sent[2].ev.map(e => e.i), [12, 13, 14, 15, 16])
})

test('the offline buffer cap defaults to 100 and the batch to 20; both can be set', () => {
  const { b, state, ev } = setup()
  state.ready = false
  const lost = () => { const f = []; b.flush(x => f.push(x)); return f[0].lost }
  for (let i = 0; i < 100; i++) b.add(ev(i))
  assert.equal(lost(), undefined)
  for (let i = 0; i <= 100; i++) b.add(ev(i))
  assert.equal(lost(), 1)
  const small = setup({ max: 3 })
  small.b.add(small.ev(0))
  small.b.add(small.ev(1))
  assert.equal(small.sent.length, 0)
  small.b.add(small.ev(2))
  assert.equal(small.sent[0].ev.length, 3)
})

test('a batch too large for max_frame is halved until it fits; a single oversized event is dropped and counted as lost', () => {
  let limit = 200
  const fits = []
  const { b, sent, state, ev } = setup({ fits: f => { fits.push(f.ev.length); return encode(f).length <= limit } })
  state.ready = false
  for (let i = 0; i < 8; i++) b.add(Object.assign(ev(i), { pad: 'x'.repeat(30) }))
  b.add(Object.assign(ev(99), { pad: 'y'.repeat(500) }))
  b.add(ev(100))
  state.ready = true
  b.flush()
  const got = sent.flatMap(f => f.ev.map(e => e.i))
  assert.deepStrictEqual(got, [0, 1, 2, 3, 4, 5, 6, 7, 100])
  assert.equal(fits[0], 10)
  assert.equal(fits[1], 5, 'halved')
  assert.ok(sent.length > 1)
  for (const f of sent) assert.ok(encode(f).length <= limit)
  assert.deepStrictEqual(sent.map(f => f.seq), sent.map((_, i) => i), 'no gaps in seq')
  assert.equal(sent.at(-1).lost, 1, 'the dropped event is reported with the frame after it')
  assert.equal(sent.filter(f => 'lost' in f).length, 1)
  limit = 1e6
})

test('the lost count is part of the frame whose size is checked', () => {
  const { b, sent, state, ev } = setup({ cap: 1, fits: f => !('lost' in f) || f.ev.length === 1 })
  state.ready = false
  b.add(ev(0))
  b.add(ev(1))
  state.ready = true
  b.flush()
  assert.deepStrictEqual(sent, [{ v: 1, t: 'events', seq: 0, ev: [ev(1)], lost: 1 }])
})

test('flush(via) sends through via (the page-hide beacon) even while not ready, with seq and lost', () => {
  const { b, sent, state, ev } = setup({ cap: 25 })
  state.ready = false
  for (let i = 0; i < 27; i++) b.add(ev(i))
  const beacons = []
  b.flush(f => beacons.push(f))
  assert.equal(sent.length, 0, 'not through the socket')
  assert.deepStrictEqual(beacons.map(f => [f.seq, f.ev.length, f.lost]), [[0, 20, 2], [1, 5, undefined]])
  assert.deepStrictEqual(beacons.flatMap(f => f.ev.map(e => e.i)), Array.from({ length: 25 }, (_, i) => i + 2))
  // the socket's frames carry on from there
  state.ready = true
  b.add(ev(30, 'cart'))
  assert.equal(sent[0].seq, 2)
  // nothing queued: via is not called
  b.flush(f => beacons.push(f))
  assert.equal(beacons.length, 2)
})

test('flush(via) cancels the batch timer: what it sent is not sent again', () => {
  const { b, sent, tick, ev, pending } = setup()
  b.add(ev(0))
  assert.equal(pending(), 1)
  const beacons = []
  b.flush(f => beacons.push(f))
  assert.equal(pending(), 0)
  tick(5000)
  assert.equal(sent.length, 0)
  assert.equal(beacons.length, 1)
})

test('clear() drops the queue, the lost count and the pending timer', () => {
  const { b, sent, state, tick, ev, pending } = setup({ cap: 1 })
  state.ready = false
  b.add(ev(0))
  b.add(ev(1)) // one lost
  state.ready = true
  b.clear()
  assert.equal(pending(), 0)
  tick(2000)
  b.flush()
  assert.equal(sent.length, 0)
  b.add(ev(2, 'cart'))
  assert.equal('lost' in sent[0], false)
})

// --- a batch the server failed to handle (server_error with its seq) ---------

const ids = frames => frames.map(f => f.ev.map(e => e.i))

test('a batch the server failed goes again after the batch wait, before the newer events, under a new seq', t => {
  t.mock.method(Math, 'random', () => 0) // the backoff's smallest: 500 ms
  const { b, sent, at, tick, ev } = setup()
  b.add(ev(0))
  b.add(ev(1, 'cart'))
  b.add(ev(2))
  b.retry(0)
  assert.equal(sent.length, 1, 'nothing goes again at once')
  tick(1499)
  assert.equal(sent.length, 1, 'the batch wait (1000 ms) and the backoff (500 ms) first')
  tick(1)
  assert.deepStrictEqual(ids(sent), [[0, 1], [0, 1, 2]])
  assert.deepStrictEqual(sent.map(f => f.seq), [0, 1])
  assert.deepStrictEqual(at, [0, 1500])
  assert.equal('lost' in sent[1], false, 'resent events are not lost')
  tick(10000)
  assert.equal(sent.length, 2, 'sent once')
})

test('several failed batches come back in the order they were sent, then the newer events', t => {
  t.mock.method(Math, 'random', () => 0)
  const { b, sent, tick, ev } = setup()
  for (let i = 0; i < 40; i++) b.add(ev(i)) // two full batches, seq 0 and 1
  b.add(ev(40))
  b.retry(0)
  b.retry(1)
  tick(1500)
  assert.deepStrictEqual(sent.slice(2).flatMap(f => f.ev.map(e => e.i)), Array.from({ length: 41 }, (_, i) => i))
  assert.deepStrictEqual(sent.map(f => f.ev.length), [20, 20, 20, 20, 1])
})

test('an error for a seq that was not sent, or is no longer kept, or came twice resends nothing', t => {
  t.mock.method(Math, 'random', () => 0)
  const { b, sent, tick, ev, pending } = setup()
  b.retry(0)
  assert.equal(pending(), 0)
  for (let i = 0; i <= KEPT; i++) b.add(ev(i, 'cart')) // seq 0 .. KEPT
  b.retry(KEPT + 1)
  b.retry(0) // forgotten: the last KEPT are 1 .. KEPT
  tick(60000)
  assert.equal(sent.length, KEPT + 1)
  b.retry(1)
  b.retry(1)
  tick(60000)
  assert.deepStrictEqual(ids(sent.slice(KEPT + 1)), [[1]])
})

test('a new connection (reset) forgets the batches kept: an old seq never resends a new batch', t => {
  t.mock.method(Math, 'random', () => 0)
  const { b, sent, tick, ev } = setup()
  b.add(ev(0, 'cart'))
  b.add(ev(1, 'cart'))
  b.reset()
  b.retry(1)
  tick(60000)
  assert.equal(sent.length, 2)
  b.add(ev(2, 'cart')) // seq 0 on the new connection
  b.retry(0)
  tick(1500)
  assert.deepStrictEqual(ids(sent), [[0], [1], [2], [2]])
  assert.deepStrictEqual(sent.map(f => f.seq), [0, 1, 0, 1])
})

test('events that come back keep to the offline buffer\'s cap: the oldest are dropped and counted as lost', t => {
  t.mock.method(Math, 'random', () => 0)
  const { b, sent, state, tick, ev } = setup({ cap: 5 })
  b.add(ev(0))
  b.add(ev(1))
  b.add(ev(2, 'cart')) // seq 0: 0, 1, 2
  state.ready = false
  for (let i = 3; i < 7; i++) b.add(ev(i))
  b.retry(0) // 7 events for 5 places
  state.ready = true
  tick(1500)
  assert.deepStrictEqual(sent.slice(1).map(f => [f.ev.map(e => e.i), f.lost]), [[[2, 3, 4, 5, 6], 2]])
})

test('the lost count of a failed batch goes again with its events', t => {
  t.mock.method(Math, 'random', () => 0)
  const { b, sent, state, tick, ev } = setup({ cap: 2 })
  state.ready = false
  for (let i = 0; i < 5; i++) b.add(ev(i))
  state.ready = true
  b.flush()
  assert.equal(sent[0].lost, 3)
  b.retry(0)
  tick(1500)
  assert.deepStrictEqual([sent[1].ev.map(e => e.i), sent[1].lost], [[3, 4], 3])
})

test('while failed events wait, neither a full batch nor an immediate type sends anything before the wait is over', t => {
  t.mock.method(Math, 'random', () => 0)
  const { b, sent, tick, ev } = setup()
  b.add(ev(0, 'cart'))
  b.retry(0)
  for (let i = 1; i < 30; i++) b.add(ev(i))
  b.add(ev(30, 'purchase'))
  assert.equal(sent.length, 1)
  tick(1500)
  assert.deepStrictEqual(sent.slice(1).flatMap(f => f.ev.map(e => e.i)), Array.from({ length: 31 }, (_, i) => i))
  // then they flush at once again
  b.add(ev(31, 'cart'))
  assert.deepStrictEqual(ids(sent.slice(-1)), [[31]])
})

test('flush() (the page being hidden, a new connection) sends the failed events at once', t => {
  t.mock.method(Math, 'random', () => 0)
  const { b, sent, ev, pending } = setup()
  b.add(ev(0, 'cart'))
  b.retry(0)
  b.flush()
  assert.deepStrictEqual(ids(sent), [[0], [0]])
  assert.equal(pending(), 0)
})

test('a server failing every batch gets no resend loop: each resend waits the batch wait and more, longer while the errors go on', t => {
  t.mock.method(Math, 'random', () => 0.999999) // the backoff's longest
  const { b, sent, at, tick, ev } = setup()
  // the server answers every batch with a server_error at once
  let seen = 0
  const answer = () => { while (seen < sent.length) b.retry(sent[seen++].seq) }
  b.add(ev(0, 'cart'))
  answer()
  for (let step = 0; step < 1200; step++) { // 2 minutes, in 100 ms steps
    if (step % 100 === 0) b.add(ev(step)) // the visitor goes on
    tick(100)
    answer()
  }
  const flushes = [...new Set(at)]
  const gaps = flushes.slice(1).map((t, i) => t - flushes[i])
  assert.ok(gaps.length >= 5, 'it keeps trying: ' + gaps)
  for (const g of gaps) assert.ok(g >= 1000 + 500, 'at least the batch wait and the backoff floor: ' + gaps)
  for (let i = 1; i < gaps.length; i++) assert.ok(gaps[i] >= gaps[i - 1], 'the wait never shrinks while the errors go on: ' + gaps)
  assert.ok(gaps.at(-1) >= 20000, 'it grows to the backoff\'s cap: ' + gaps)
  // nothing is lost meanwhile: the last resend carries every event, in order
  const last = sent.filter((f, i) => at[i] === flushes.at(-1)).flatMap(f => f.ev.map(e => e.i))
  assert.deepStrictEqual(last, [0, ...Array.from({ length: Math.ceil(flushes.at(-1) / 10000) }, (_, i) => i * 100)])
})

test('after a batch goes through, the next error waits the shortest time again', t => {
  t.mock.method(Math, 'random', () => 0.999999)
  const { b, sent, at, tick, ev } = setup()
  b.add(ev(0, 'cart'))
  b.retry(0) // 1000 + 999
  tick(1999)
  b.retry(1) // 1000 + 1499
  tick(2499)
  assert.equal(sent.length, 3)
  // the resend (seq 2) goes through: no error; the next batch is an ordinary one
  b.add(ev(1, 'cart'))
  b.retry(3)
  tick(1999)
  assert.deepStrictEqual(at, [0, 1999, 4498, 4498, 6497])
})
