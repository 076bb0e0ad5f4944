import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createIds, randomId, validId, VID_KEY, SID_KEY } from '../src/ids.js'

const ID = /^[A-Za-z0-9_.-]{8,64}$/

function memStorage () {
  const m = new Map()
  return {
    m,
    getItem: k => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => m.set(k, String(v)),
    removeItem: k => m.delete(k)
  }
}
const throwing = {
  getItem () { throw new Error('SecurityError') },
  setItem () { throw new Error('QuotaExceededError') },
  removeItem () { throw new Error('SecurityError') }
}

test('randomId: prefix plus 20 random characters of the protocol alphabet', () => {
  const seen = new Set()
  for (let i = 0; i < 200; i++) {
    const id = randomId('v_')
    assert.match(id, /^v_[a-z0-9]{20}$/)
    assert.match(id, ID)
    seen.add(id)
  }
  assert.equal(seen.size, 200)
  assert.equal(randomId('v_', new Uint8Array(20).fill(35)), 'v_' + 'z'.repeat(20))
})

test('validId follows the protocol: 8-64 chars of [A-Za-z0-9_.-]', () => {
  assert.ok(validId('s_8b1d0c3f55'))
  assert.ok(!validId('short'))
  assert.ok(!validId('has space__'))
  assert.ok(!validId(undefined), 'not the string "undefined"')
  assert.ok(!validId(null))
  assert.ok(!validId('x'.repeat(65)))
})

test('the visitor id is created once and kept in localStorage kairos.vid', () => {
  const win = { localStorage: memStorage(), sessionStorage: memStorage() }
  const a = createIds(win)
  const vid = a.vid()
  assert.match(vid, /^v_/)
  assert.match(vid, ID)
  assert.equal(win.localStorage.m.get(VID_KEY), vid)
  assert.equal(a.vid(), vid)
  assert.equal(createIds(win).vid(), vid, 'the next page load reads it back')
})

test('a corrupt stored visitor id is replaced', () => {
  const win = { localStorage: memStorage(), sessionStorage: memStorage() }
  win.localStorage.setItem(VID_KEY, 'bad id!')
  const vid = createIds(win).vid()
  assert.match(vid, /^v_[a-z0-9]{20}$/)
  assert.equal(win.localStorage.m.get(VID_KEY), vid)
})

test('the session id comes from welcome and is kept in sessionStorage kairos.sid', () => {
  const win = { localStorage: memStorage(), sessionStorage: memStorage() }
  const a = createIds(win)
  assert.equal(a.sid(), null)
  a.setSid('s_8b1d0c3f55')
  assert.equal(a.sid(), 's_8b1d0c3f55')
  assert.equal(win.sessionStorage.m.get(SID_KEY), 's_8b1d0c3f55')
  assert.equal(createIds(win).sid(), 's_8b1d0c3f55')
  a.setSid('<bad>')
  assert.equal(a.sid(), 's_8b1d0c3f55', 'an invalid id from the server is ignored')
})

test('clear() (consent withdrawn) removes both ids', () => {
  const win = { localStorage: memStorage(), sessionStorage: memStorage() }
  const a = createIds(win)
  const vid = a.vid()
  a.setSid('s_8b1d0c3f55')
  a.clear()
  assert.equal(win.localStorage.m.size, 0)
  assert.equal(win.sessionStorage.m.size, 0)
  assert.equal(a.sid(), null)
  assert.notEqual(a.vid(), vid, 'a new visitor id afterwards')
})

test('storage errors are swallowed: ids live in memory (Safari private mode, sandboxed iframes)', () => {
  const win = { localStorage: throwing, sessionStorage: throwing }
  const a = createIds(win)
  const vid = a.vid()
  assert.match(vid, ID)
  assert.equal(a.vid(), vid)
  a.setSid('s_12345678')
  assert.equal(a.sid(), 's_12345678')
  a.clear()
  // reading window.localStorage itself may throw
  const hostile = {}
  Object.defineProperty(hostile, 'localStorage', { get () { throw new Error('SecurityError') } })
  Object.defineProperty(hostile, 'sessionStorage', { get () { throw new Error('SecurityError') } })
  const b = createIds(hostile)
  assert.match(b.vid(), ID)
  b.setSid('s_12345678')
  assert.equal(b.sid(), 's_12345678')
  b.clear()
  // no storage at all
  assert.match(createIds({}).vid(), ID)
})
