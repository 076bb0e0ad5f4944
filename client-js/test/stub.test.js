import { test } from 'node:test'
import assert from 'node:assert/strict'
import { replay } from '../src/stub.js'

function api () {
  const calls = []
  return {
    calls,
    version: '0.1.0',
    track (...a) { calls.push(['track', ...a]) },
    page (...a) { calls.push(['page', ...a]) },
    consent (...a) { calls.push(['consent', ...a]) },
    _debug () { calls.push(['_debug']) },
    get sid () { return null }
  }
}

test('replays a {q: [...]} stub in order', () => {
  const a = api()
  replay({ q: [['consent', true], ['track', 'cart', { value: 42, items: 2 }], ['page']] }, a)
  assert.deepStrictEqual(a.calls, [['consent', true], ['track', 'cart', { value: 42, items: 2 }], ['page']])
})

test('replays a bare array stub and arguments objects', () => {
  const a = api()
  const args = (function () { return arguments })('track', 'checkout', { step: 'payment' })
  replay([['page'], args], a)
  assert.deepStrictEqual(a.calls, [['page'], ['track', 'checkout', { step: 'payment' }]])
})

test('unknown methods, private methods, getters and junk entries are skipped; a throwing call does not stop the rest', () => {
  const a = api()
  a.page = () => { throw new Error('boom') }
  replay({ q: [['nope'], ['_debug'], ['sid'], ['version'], null, 42, 'track', [], ['page'], ['track', 'cart', {}]] }, a)
  assert.deepStrictEqual(a.calls, [['track', 'cart', {}]])
})

test('nothing to replay is fine', () => {
  const a = api()
  replay(undefined, a)
  replay(null, a)
  replay({}, a)
  replay({ q: 'x' }, a)
  assert.deepStrictEqual(a.calls, [])
})
