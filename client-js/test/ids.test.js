import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createIds, randomId, validId, VID_KEY, SID_KEY, COOKIE } from '../src/ids.js'

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

// document.cookie as a browser exposes it: writing sets one cookie (max-age=0
// deletes it), reading gives "name=value; name=value"
function cookieDoc (initial = {}) {
  const jar = new Map(Object.entries(initial).map(([k, v]) => [k, { value: v, attrs: {} }]))
  const writes = []
  return {
    jar,
    writes,
    get cookie () { return [...jar].map(([k, c]) => k + '=' + c.value).join('; ') },
    set cookie (s) {
      writes.push(s)
      const [nv, ...rest] = s.split(';')
      const i = nv.indexOf('=')
      const attrs = Object.fromEntries(rest.map(a => { const [k, v] = a.trim().split('='); return [k.toLowerCase(), v === undefined ? true : v] }))
      if (attrs['max-age'] === '0') jar.delete(nv.slice(0, i))
      else jar.set(nv.slice(0, i), { value: nv.slice(i + 1), attrs })
    }
  }
}
const page = protocol => ({ localStorage: memStorage(), sessionStorage: memStorage(), location: { protocol } })

test('with cookie=true the visitor id lives in a first-party cookie kairos_vid for 400 days, not in localStorage', () => {
  const win = page('https:')
  const doc = cookieDoc({ theme: 'dark' })
  const vid = createIds(win, doc, true).vid()
  assert.match(vid, /^v_[a-z0-9]{20}$/)
  assert.equal(COOKIE, 'kairos_vid')
  assert.deepStrictEqual(doc.writes, [`kairos_vid=${vid};path=/;max-age=34560000;samesite=lax;secure`])
  assert.equal(34560000 / 86400, 400)
  assert.equal(win.localStorage.m.size, 0)
  // the next page load reads it back, among the site's other cookies
  doc.jar.set('z', { value: '1', attrs: {} })
  assert.equal(createIds(page('https:'), doc, true).vid(), vid)
  assert.equal(doc.writes.length, 1, 'not written again')
  // the session id stays in sessionStorage
  const ids = createIds(win, doc, true)
  ids.setSid('s_8b1d0c3f55')
  assert.equal(win.sessionStorage.m.get(SID_KEY), 's_8b1d0c3f55')
  assert.equal(doc.jar.size, 3)
})

test('the cookie is Secure on https only', () => {
  const doc = cookieDoc()
  createIds(page('http:'), doc, true).vid()
  assert.doesNotMatch(doc.writes[0], /secure/i)
  assert.match(doc.writes[0], /;path=\/;max-age=34560000;samesite=lax$/)
})

test('cookie store: a corrupt value is replaced; a similar-named cookie is not taken for it', () => {
  const doc = cookieDoc({ kairos_vid: 'bad id!' })
  const vid = createIds(page('https:'), doc, true).vid()
  assert.match(vid, /^v_/)
  assert.equal(doc.jar.get('kairos_vid').value, vid)
  const other = cookieDoc({ xkairos_vid: 'v_abcdefghij' })
  assert.notEqual(createIds(page('https:'), other, true).vid(), 'v_abcdefghij')
})

test('vid(true) peeks: the stored id or null, never a new one (localStorage and cookie)', () => {
  const win = page('https:')
  const doc = cookieDoc()
  for (const cookie of [false, true]) {
    const ids = createIds(win, doc, cookie)
    assert.equal(ids.vid(true), null)
    assert.equal(win.localStorage.m.size, 0)
    assert.equal(doc.jar.size, 0)
    const vid = ids.vid()
    assert.equal(ids.vid(true), vid)
    assert.equal(createIds(win, doc, cookie).vid(true), vid, 'a stored one')
    ids.clear()
  }
})

test('clear() (consent withdrawn) expires the cookie and removes the session id', () => {
  const win = page('https:')
  const doc = cookieDoc({ other: '1' })
  const ids = createIds(win, doc, true)
  const vid = ids.vid()
  ids.setSid('s_8b1d0c3f55')
  ids.clear()
  assert.equal(doc.writes.at(-1), 'kairos_vid=;path=/;max-age=0;samesite=lax;secure')
  assert.deepStrictEqual([...doc.jar.keys()], ['other'])
  assert.equal(win.sessionStorage.m.size, 0)
  assert.equal(ids.vid(true), null)
  assert.notEqual(ids.vid(), vid)
})

test('cookies blocked (document.cookie throws in a sandboxed iframe): the id lives in memory', () => {
  const doc = {}
  Object.defineProperty(doc, 'cookie', { get () { throw new Error('SecurityError') }, set () { throw new Error('SecurityError') } })
  const ids = createIds(page('https:'), doc, true)
  const vid = ids.vid()
  assert.match(vid, ID)
  assert.equal(ids.vid(), vid)
  ids.clear()
  assert.equal(ids.vid(true), null)
})
