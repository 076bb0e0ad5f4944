import { test } from 'node:test'
import assert from 'node:assert/strict'
import { backoff, connect, terminal, MIN_DELAY, MAX_DELAY } from '../src/connection.js'
import { encode, decode } from '../src/codec.js'

test('backoff stays within 500 ms .. 20 s for every attempt and any random value', () => {
  for (let attempt = 0; attempt < 200; attempt++) {
    for (const r of [0, 1e-9, 0.25, 0.5, 0.999999, Math.random()]) {
      const d = backoff(attempt, () => r)
      assert.ok(d >= MIN_DELAY && d <= MAX_DELAY, `attempt ${attempt} r ${r}: ${d}`)
      assert.ok(Number.isInteger(d))
    }
  }
  assert.equal(MIN_DELAY, 500)
  assert.equal(MAX_DELAY, 20000)
  assert.equal(backoff(0, () => 0), 500)
  assert.equal(backoff(1e6, () => 0.999999), 20000)
  assert.equal(backoff(Infinity, () => 0.5), 10500)
})

test('backoff grows exponentially until the cap', () => {
  const top = a => backoff(a, () => 0.999999)
  assert.deepStrictEqual([0, 1, 2, 3, 4, 5].map(top), [999, 1499, 2499, 4499, 8499, 16499])
  assert.equal(top(6), 20000)
  for (let a = 1; a < 10; a++) assert.ok(top(a) >= top(a - 1))
})

test('backoff has full jitter: the same attempt spreads over its whole range', () => {
  const seen = new Set()
  for (let i = 0; i < 200; i++) seen.add(Math.floor(backoff(5) / 1000))
  assert.ok(seen.size > 8, 'delays for attempt 5 spread from 0.5 s to 16.5 s: ' + [...seen])
})

test('backoff: the floor stays at 500 ms for every attempt, the jitter covers [0, 500 ms * 2^attempt) above it', () => {
  for (let a = 0; a < 40; a++) {
    assert.equal(backoff(a, () => 0), 500, 'a retry may come quickly even after many failures: attempt ' + a)
    const span = Math.min(20000, 500 * 2 ** a)
    // the random part scales the whole span, then the total is capped
    assert.equal(backoff(a, () => 0.5), Math.min(20000, 500 + span / 2), 'attempt ' + a)
    assert.ok(backoff(a, () => 0.999999) <= Math.min(20000, 500 + span), 'attempt ' + a)
  }
  // without a random function it uses Math.random
  const saved = Math.random
  Math.random = () => 0.25
  try { assert.equal(backoff(2), 1000) } finally { Math.random = saved }
})

test('terminal close codes are 1000, 4001, 4002, 4003, 4004', () => {
  const codes = []
  for (let c = 0; c < 5000; c++) if (terminal(c)) codes.push(c)
  assert.deepStrictEqual(codes, [1000, 4001, 4002, 4003, 4004])
})

// A fake WebSocket and fake timers, installed on globalThis for one test.
function install () {
  const sockets = []
  let timers = []
  class FakeWS {
    constructor (url) {
      this.url = url
      this.sent = []
      this.closedWith = null
      sockets.push(this)
    }
    send (b) { this.sent.push(decode(b)) }
    close (code) { this.closedWith = code }
    // server side helpers
    accept () { this.onopen({}) }
    push (frame) { this.onmessage({ data: encode(frame).buffer }) }
    drop (code) { this.onclose({ code }) }
  }
  const saved = { WebSocket: globalThis.WebSocket, setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout }
  globalThis.WebSocket = FakeWS
  globalThis.setTimeout = (fn, ms) => { const t = { fn, ms }; timers.push(t); return t }
  globalThis.clearTimeout = t => { timers = timers.filter(x => x !== t) }
  return {
    sockets,
    timers: () => timers,
    fire () { const t = timers.shift(); t.fn(); return t.ms },
    restore () { Object.assign(globalThis, saved) }
  }
}

const WELCOME = { v: 1, t: 'welcome', sid: 's_8b1d0c3f55', track: {}, max_frame: 16384, max_events: 50 }
const HELLO = { v: 1, t: 'hello', site: 'demo' }

test('hello goes first; open only after welcome; frames reach onFrame', () => {
  const env = install()
  try {
    const got = []
    const c = connect('ws://k.example/ws', () => HELLO, f => got.push(f))
    assert.equal(c.state, 'idle')
    c.open()
    assert.equal(c.state, 'connecting')
    const ws = env.sockets[0]
    assert.equal(ws.url, 'ws://k.example/ws')
    assert.equal(ws.binaryType, 'arraybuffer')
    assert.equal(c.send({ v: 1, t: 'events' }), false, 'nothing before welcome')
    ws.accept()
    assert.deepStrictEqual(ws.sent, [HELLO])
    ws.push(WELCOME)
    assert.equal(c.state, 'open')
    assert.deepStrictEqual(got, [WELCOME])
    assert.equal(c.send({ v: 1, t: 'feedback' }), true)
    assert.deepStrictEqual(ws.sent[1], { v: 1, t: 'feedback' })
    // garbage, text and other versions are ignored, not thrown
    ws.onmessage({ data: new Uint8Array([0xc1]).buffer })
    ws.onmessage({ data: 'text' })
    ws.push({ v: 2, t: 'show' })
    assert.equal(got.length, 1)
  } finally { env.restore() }
})

test('reconnects with growing backoff after a non-terminal close, backoff reset by welcome', () => {
  const env = install()
  try {
    const c = connect('ws://k/ws', () => HELLO, () => {})
    c.open()
    const delays = []
    for (let i = 0; i < 4; i++) {
      env.sockets.at(-1).drop(1006)
      assert.equal(c.state, 'closed')
      assert.equal(env.timers().length, 1)
      delays.push(env.timers()[0].ms)
      env.fire()
      assert.equal(c.state, 'connecting')
    }
    assert.equal(env.sockets.length, 5)
    assert.ok(delays[0] >= 500 && delays[0] <= 1000)
    assert.ok(delays[3] >= 500 && delays[3] <= 8500)
    // welcome resets the attempt counter
    env.sockets.at(-1).accept()
    env.sockets.at(-1).push(WELCOME)
    env.sockets.at(-1).drop(1001)
    assert.ok(env.timers()[0].ms <= 1000, 'first attempt again: ' + env.timers()[0].ms)
  } finally { env.restore() }
})

for (const code of [1000, 4001, 4002, 4003, 4004]) {
  test(`close code ${code} stops reconnecting`, () => {
    const env = install()
    try {
      const c = connect('ws://k/ws', () => HELLO, () => {})
      c.open()
      env.sockets[0].accept()
      env.sockets[0].push(WELCOME)
      env.sockets[0].drop(code)
      assert.equal(c.state, 'closed')
      assert.equal(env.timers().length, 0)
      c.online()
      assert.equal(env.sockets.length, 1, 'not even when back online')
    } finally { env.restore() }
  })
}

test('a refused origin (4003, right after the handshake) stops for the page and is reported once', () => {
  const env = install()
  try {
    const got = []
    const c = connect('ws://k/ws', () => HELLO, f => got.push(f))
    c.open()
    env.sockets[0].accept()
    env.sockets[0].onclose({ code: 4003, reason: 'origin not allowed' })
    assert.equal(c.state, 'closed')
    assert.equal(env.timers().length, 0, 'no retry scheduled')
    c.online()
    assert.equal(env.sockets.length, 1, 'one handshake for the page')
    assert.deepStrictEqual(got, [{ t: 'error', code: 4003, msg: 'origin not allowed' }])
  } finally { env.restore() }
})

for (const code of [1001, 1006, 1009, 1011, 1013, 4008]) {
  test(`close code ${code} reconnects`, () => {
    const env = install()
    try {
      const c = connect('ws://k/ws', () => HELLO, () => {})
      c.open()
      env.sockets[0].drop(code)
      assert.equal(env.timers().length, 1)
    } finally { env.restore() }
  })
}

test('back online: reconnect at once instead of waiting for the backoff', () => {
  const env = install()
  try {
    const c = connect('ws://k/ws', () => HELLO, () => {})
    c.open()
    env.sockets[0].drop(1006)
    assert.equal(env.timers().length, 1)
    c.online()
    assert.equal(env.timers().length, 0, 'the backoff timer is cancelled')
    assert.equal(env.sockets.length, 2)
    assert.equal(c.state, 'connecting')
    c.online()
    assert.equal(env.sockets.length, 2, 'no second socket while one is connecting')
  } finally { env.restore() }
})

test('close() stops for good: state idle, socket closed with 1000, no reconnect', () => {
  const env = install()
  try {
    const c = connect('ws://k/ws', () => HELLO, () => {})
    c.open()
    const ws = env.sockets[0]
    c.close()
    assert.equal(c.state, 'idle')
    assert.equal(ws.closedWith, 1000)
    ws.drop(1000) // the late close event of the old socket changes nothing
    assert.equal(c.state, 'idle')
    assert.equal(env.timers().length, 0)
    c.open() // and it can start again (consent given again, page restored from bfcache)
    assert.equal(env.sockets.length, 2)
  } finally { env.restore() }
})

test('a malformed URL is not retried', () => {
  const env = install()
  globalThis.WebSocket = class { constructor () { throw new SyntaxError('bad url') } }
  try {
    const c = connect('nope', () => HELLO, () => {})
    c.open()
    assert.equal(c.state, 'closed')
    assert.equal(env.timers().length, 0)
  } finally { env.restore() }
})
