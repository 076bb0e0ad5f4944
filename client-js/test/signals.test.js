// The pure detectors of src/signals.js, driven with explicit clocks and geometry.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { scrollPct, rage, flick, exitOk } from '../src/signals.js'

test('scrollPct: the bottom of the viewport as an int percent of the page, 0..100', () => {
  assert.equal(scrollPct(0, 800, 4000), 20)
  assert.equal(scrollPct(1200, 800, 4000), 50)
  assert.equal(scrollPct(3200, 800, 4000), 100)
  assert.equal(scrollPct(3300, 800, 4000), 100, 'overscroll')
  assert.equal(scrollPct(-50, 100, 4000), 1, 'rubber band at the top')
  assert.equal(scrollPct(-500, 100, 4000), 0, 'never negative')
  assert.equal(scrollPct(0, 800, 0), 0, 'no page height')
  assert.equal(scrollPct(0, 800, undefined), 0)
  assert.equal(scrollPct(0, 800, NaN), 0)
  assert.equal(scrollPct(0, 1000, 500), 100, 'a page shorter than the screen is all seen')
  assert.equal(scrollPct(1, 777, 3333), 23)
  assert.ok(Number.isInteger(scrollPct(1, 777, 3333)))
})

test('rage: n clicks on the same spot within ms of the first: the count, once, at the nth click', () => {
  const click = rage({ rage_n: 3, rage_ms: 1000 })
  assert.equal(click(100, 100, 0), 0)
  assert.equal(click(105, 98, 300), 0)
  assert.equal(click(101, 103, 600), 3)
  assert.equal(click(100, 100, 700), 0, 'the 4th click of the same burst does not report again')
  assert.equal(click(100, 100, 900), 0)
})

test('rage: clicks spread over more than ms are no burst; the window starts at the first click', () => {
  const click = rage({ rage_n: 3, rage_ms: 1000 })
  assert.equal(click(0, 0, 0), 0)
  assert.equal(click(0, 0, 600), 0)
  assert.equal(click(0, 0, 1001), 0, '1001 ms after the first: a new burst starts here')
  assert.equal(click(0, 0, 1500), 0)
  assert.equal(click(0, 0, 2001), 3, 'the window of the new burst: 1001..2001')
  const edge = rage({ rage_n: 2, rage_ms: 500 })
  edge(0, 0, 0)
  assert.equal(edge(0, 0, 500), 2, 'exactly ms counts')
})

test('rage: a click farther than r px (on either axis) from the first starts a new burst there', () => {
  const click = rage({ rage_n: 3, rage_ms: 1000 }) // r defaults to 30 px
  click(100, 100, 0)
  click(130, 70, 100) // 30 px away on both axes: same spot
  assert.equal(click(70, 130, 200), 3)
  const moving = rage({ rage_n: 3, rage_ms: 1000 })
  moving(100, 100, 0)
  moving(100, 100, 100)
  assert.equal(moving(131, 100, 200), 0, '31 px right: a new burst')
  assert.equal(moving(131, 100, 300), 0)
  assert.equal(moving(131, 100, 400), 3, 'the new burst from (131, 100)')
  const wide = rage({ rage_n: 3, rage_ms: 1000 }, 100)
  wide(0, 0, 0)
  wide(90, -90, 10)
  assert.equal(wide(-100, 100, 20), 3, 'a radius of 100 px')
})

test('rage: a new burst can follow the previous one; n <= 1 never reports', () => {
  const click = rage({ rage_n: 2, rage_ms: 1000 })
  click(0, 0, 0)
  assert.equal(click(0, 0, 100), 2)
  assert.equal(click(0, 0, 2000), 0)
  assert.equal(click(0, 0, 2100), 2, 'a second burst reports again')
  const one = rage({ rage_n: 1, rage_ms: 1000 })
  assert.equal(one(0, 0, 0), 0)
  assert.equal(one(0, 0, 1), 0)
})

test('flick: an upward scroll of at least 1.5 px/ms that ends within one screen of the top', () => {
  const sample = flick()
  assert.equal(sample(2000, 0, 800), false, 'the first sample only sets the reference')
  assert.equal(sample(1000, 100, 800), false, '10 px/ms, but it ends 1000 px down: more than one screen')
  assert.equal(sample(700, 300, 800), true, '300 px up in 200 ms, ending within the first screen')
  assert.equal(sample(0, 400, 800), true, 'each fast sample near the top counts (the cooldown is exitOk\'s job)')
})

test('flick: the speed threshold, the direction and the screen', () => {
  // 1.5 px/ms: 300 px in 200 ms counts, 299 px does not
  let s = flick()
  s(1000, 0, 800)
  assert.equal(s(700, 200, 800), true)
  s = flick()
  s(1000, 0, 800)
  assert.equal(s(701, 200, 800), false)
  // downward, however fast: no
  s = flick()
  s(0, 0, 800)
  assert.equal(s(700, 10, 800), false)
  // ends exactly one screen down: no (y < viewport height)
  s = flick()
  s(5000, 0, 800)
  assert.equal(s(800, 10, 800), false)
  s = flick()
  s(5000, 0, 800)
  assert.equal(s(799, 10, 800), true)
  // a slow scroll up to the top: reading, not leaving
  s = flick()
  s(600, 0, 800)
  assert.equal(s(0, 1000, 800), false)
  // a custom speed
  s = flick(5)
  s(1000, 0, 800)
  assert.equal(s(600, 100, 800), false, '4 px/ms < 5')
  s(1000, 200, 800)
  assert.equal(s(500, 300, 800), true, '5 px/ms')
})

test('flick: compares consecutive samples only; two samples at the same ms are no flick', () => {
  const s = flick()
  s(3000, 0, 800)
  assert.equal(s(2990, 1000, 800), false, 'a long pause, then...')
  assert.equal(s(500, 1100, 800), true, '...a fast flick measured from the last sample')
  assert.equal(s(100, 1100, 800), false, 'same timestamp: no speed to measure')
  assert.equal(s(0, 1116, 800), true, 'but it became the reference: 100 px in 16 ms')
})

test('exitOk: the page shown for exit_min_ms, the last exit intent older than exit_gap_ms', () => {
  const s = { exit_min_ms: 3000, exit_gap_ms: 10000 }
  const never = -1e15
  assert.equal(exitOk(2999, 0, never, s), false, 'too early on the page')
  assert.equal(exitOk(3000, 0, never, s), true)
  assert.equal(exitOk(13000, 10000, never, s), true, 'counted from the page start')
  assert.equal(exitOk(12999, 10000, never, s), false)
  assert.equal(exitOk(19999, 0, 10000, s), false, 'within the gap after the last one')
  assert.equal(exitOk(20000, 0, 10000, s), true)
  assert.equal(exitOk(5000, 0, never, { exit_min_ms: 0, exit_gap_ms: 0 }), true)
  assert.equal(exitOk(5000, 0, 5000, { exit_min_ms: 0, exit_gap_ms: 0 }), true, 'no gap at all')
})
