import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { encode, decode } from '../src/codec.js'

const load = name => JSON.parse(readFileSync(new URL('../../docs/frames/' + name, import.meta.url), 'utf8'))
const VALID = load('valid.json')
const INVALID = load('invalid.json')
const hex = bytes => Buffer.from(bytes).toString('hex')
const bytes = h => new Uint8Array(Buffer.from(h, 'hex'))

test('the shared fixtures are there', () => {
  assert.ok(VALID.length >= 9)
  assert.ok(INVALID.some(f => f.name === 'not_msgpack'))
})

for (const f of VALID) {
  test(`encode(${f.name}) is byte-identical to Python msgpack`, () => {
    assert.equal(hex(encode(f.frame)), f.hex)
  })
  test(`decode(${f.name}) deep-equals the frame`, () => {
    assert.deepStrictEqual(decode(bytes(f.hex)), f.frame)
    // an ArrayBuffer (what a binary websocket message carries) works too
    assert.deepStrictEqual(decode(bytes(f.hex).buffer), f.frame)
  })
}

test('invalid.json not_msgpack (0xc1) throws a clear Error', () => {
  const f = INVALID.find(x => x.name === 'not_msgpack')
  assert.throws(() => decode(bytes(f.hex)), { name: 'Error', message: /msgpack: bad type 0xc1/ })
})

test('the other invalid frames are well-formed MessagePack (refused by the server, not by the codec)', () => {
  for (const f of INVALID.filter(x => x.name !== 'not_msgpack')) {
    assert.equal(hex(encode(decode(bytes(f.hex)))), f.hex, f.name)
  }
})

// expected bytes computed with Python msgpack 1.x (msgpack.packb(x).hex())
const PY = {
  0: '00', 1: '01', 127: '7f', 128: 'cc80', 255: 'ccff', 256: 'cd0100', 65535: 'cdffff',
  65536: 'ce00010000', 4294967295: 'ceffffffff', 4294967296: 'cf0000000100000000',
  9007199254740991: 'cf001fffffffffffff', '-1': 'ff', '-32': 'e0', '-33': 'd0df', '-128': 'd080',
  '-129': 'd1ff7f', '-32768': 'd18000', '-32769': 'd2ffff7fff', '-2147483648': 'd280000000',
  '-2147483649': 'd3ffffffff7fffffff', '-9007199254740991': 'd3ffe0000000000001',
  0.5: 'cb3fe0000000000000', '-1.25': 'cbbff4000000000000', 1e300: 'cb7e37e43c8800759c',
  3.141592653589793: 'cb400921fb54442d18'
}

test('numbers: smallest int encoding at every boundary, float64 otherwise', () => {
  for (const [k, h] of Object.entries(PY)) {
    const n = Number(k)
    assert.equal(hex(encode(n)), h, k)
    assert.equal(decode(bytes(h)), n, k)
  }
})

test('nil, bool, str, bin, array and map headers match Python msgpack', () => {
  assert.equal(hex(encode(null)), 'c0')
  assert.equal(hex(encode(undefined)), 'c0')
  assert.equal(hex(encode(true)), 'c3')
  assert.equal(hex(encode(false)), 'c2')
  assert.equal(hex(encode('é€😀')), 'a9c3a9e282acf09f9880')
  const heads = { 31: 'bf', 32: 'd920', 255: 'd9ff', 256: 'da0100', 65535: 'daffff', 65536: 'db00010000' }
  for (const [n, h] of Object.entries(heads)) {
    const s = 'x'.repeat(Number(n))
    const e = encode(s)
    assert.equal(hex(e.slice(0, h.length / 2)), h, 'str' + n)
    assert.equal(decode(e), s)
  }
  assert.equal(hex(encode(new Uint8Array([1, 2, 3]))), 'c403010203')
  assert.equal(hex(encode(new Uint8Array(256)).slice(0, 3)), 'c50100')
  assert.equal(hex(encode(new Uint8Array(65536)).slice(0, 5)), 'c600010000')
  assert.equal(hex(encode([])), '90')
  assert.equal(hex(encode({})), '80')
  assert.equal(hex(encode(Array.from({ length: 15 }, (_, i) => i)).slice(0, 1)), '9f')
  assert.equal(hex(encode(Array.from({ length: 16 }, (_, i) => i)).slice(0, 3)), 'dc0010')
  const m16 = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [String(i), i]))
  assert.equal(hex(encode(m16)).slice(0, 6), 'de0010')
  assert.deepStrictEqual(decode(encode(m16)), m16)
})

test('bin decodes to a Uint8Array, in all three sizes', () => {
  for (const n of [3, 300, 70000]) {
    const b = new Uint8Array(n).map((_, i) => i & 255)
    const out = decode(encode(b))
    assert.ok(out instanceof Uint8Array)
    assert.deepStrictEqual(Array.from(out), Array.from(b))
  }
})

test('map keys keep their insertion order; undefined values are left out like JSON', () => {
  const e = encode({ z: 1, a: 2, m: undefined, b: [1, { y: null }] })
  assert.deepStrictEqual(Object.keys(decode(e)), ['z', 'a', 'b'])
  assert.deepStrictEqual(decode(e), { z: 1, a: 2, b: [1, { y: null }] })
})

test('array32, map32, str32, float32 and int64 decode', () => {
  assert.deepStrictEqual(decode(bytes('dd00000002' + '01' + 'a161')), [1, 'a'])
  assert.deepStrictEqual(decode(bytes('df00000001' + 'a16b' + 'c3')), { k: true })
  assert.equal(decode(bytes('db00000002' + '6869')), 'hi')
  assert.equal(decode(bytes('ca3fc00000')), 1.5)
  assert.equal(decode(bytes('d3ffffffffffffffff')), -1)
  assert.equal(decode(bytes('cf0000019b76daa800')), 1767225600000)
})

test('values msgpack cannot carry are refused on encode', () => {
  assert.throws(() => encode(() => 1), /cannot encode function/)
  assert.throws(() => encode({ a: Symbol('x') }), /cannot encode symbol/)
  assert.throws(() => encode(10n), /cannot encode bigint/)
})

test('decode rejects garbage with a clear Error', () => {
  const bad = {
    '': /truncated/, // empty
    c1: /bad type 0xc1/, // never used
    d4017f: /bad type 0xd4/, // fixext 1
    c70101ff: /bad type 0xc7/, // ext 8
    a3616263ff: /trailing bytes/,
    a56162: /truncated/, // str shorter than its header
    dc0005: /truncated/, // array16 claiming 5 items
    ddffffffff: /truncated/, // array32 claiming 4 billion items: refused at once
    dfffffffff: /truncated/,
    a2c328: /invalid UTF-8/,
    cf0020000000000000: /beyond 2\^53/,
    d3ff00000000000000: /beyond 2\^53/,
    ['91'.repeat(100) + 'c0']: /too deep/
  }
  for (const [h, re] of Object.entries(bad)) {
    assert.throws(() => decode(bytes(h)), err => err instanceof Error && /^msgpack: /.test(err.message) && re.test(err.message), h)
  }
})

test('every strict prefix of every fixture frame throws (never hangs, never returns)', () => {
  for (const f of VALID) {
    const b = bytes(f.hex)
    for (let n = 0; n < b.length; n++) assert.throws(() => decode(b.subarray(0, n)), Error, f.name + ' prefix ' + n)
  }
})

test('random bytes either decode or throw an Error, quickly', () => {
  let seed = 12345
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296
  const t0 = Date.now()
  for (let i = 0; i < 20000; i++) {
    const b = new Uint8Array(1 + Math.floor(rnd() * 40)).map(() => Math.floor(rnd() * 256))
    try { decode(b) } catch (e) { assert.ok(e instanceof Error) }
  }
  assert.ok(Date.now() - t0 < 5000)
})

test('a __proto__ key never changes the decoded object\'s prototype', () => {
  const out = decode(bytes('81a95f5f70726f746f5f5f81a178c3')) // {"__proto__": {"x": true}}
  assert.equal(Object.getPrototypeOf(out), Object.prototype)
  assert.equal(out.x, undefined)
})
