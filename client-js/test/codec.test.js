// The MessagePack codec against the shared protocol fixtures (docs/frames/valid.json,
// invalid.json) and Python msgpack's bytes: boundaries, refusals, garbage.
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

test('invalid.json not_msgpack (0xc1) throws an Error', () => {
  const f = INVALID.find(x => x.name === 'not_msgpack')
  assert.throws(() => decode(bytes(f.hex)), { name: 'Error', message: 'msgpack: bad input' })
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

test('nil, bool, str, array and map headers match Python msgpack', () => {
  assert.equal(hex(encode(null)), 'c0')
  assert.equal(hex(encode(undefined)), 'c0')
  assert.equal(hex(encode(true)), 'c3')
  assert.equal(hex(encode(false)), 'c2')
  assert.equal(hex(encode('')), 'a0')
  assert.equal(hex(encode('é€😀')), 'a9c3a9e282acf09f9880')
  // the length in the header counts UTF-8 bytes, not UTF-16 units
  assert.equal(hex(encode('é'.repeat(16)).slice(0, 2)), 'd920')
  const heads = { 31: 'bf', 32: 'd920', 255: 'd9ff', 256: 'da0100', 65535: 'daffff', 65536: 'db00010000' }
  for (const [n, h] of Object.entries(heads)) {
    const s = 'x'.repeat(Number(n))
    const e = encode(s)
    assert.equal(hex(e.slice(0, h.length / 2)), h, 'str' + n)
    assert.equal(e.length, h.length / 2 + Number(n))
    assert.equal(decode(e), s)
  }
  assert.equal(hex(encode([])), '90')
  assert.equal(hex(encode({})), '80')
  const arr = n => Array.from({ length: n }, (_, i) => i & 127)
  assert.equal(hex(encode(arr(15)).slice(0, 1)), '9f')
  assert.equal(hex(encode(arr(16)).slice(0, 3)), 'dc0010')
  assert.equal(hex(encode(arr(65535)).slice(0, 3)), 'dcffff')
  assert.equal(hex(encode(arr(65536)).slice(0, 5)), 'dd00010000')
  assert.deepStrictEqual(decode(encode(arr(65536))), arr(65536))
  const map = n => Object.fromEntries(Array.from({ length: n }, (_, i) => ['k' + i, i & 127]))
  assert.equal(hex(encode(map(15)).slice(0, 1)), '8f')
  assert.equal(hex(encode(map(16)).slice(0, 3)), 'de0010')
  assert.equal(hex(encode(map(65536)).slice(0, 5)), 'df00010000')
  assert.deepStrictEqual(decode(encode(map(16))), map(16))
  assert.deepStrictEqual(decode(encode(map(65536))), map(65536))
})

test('NaN and the infinities go as float64, as Python packs them', () => {
  assert.equal(hex(encode(NaN)), 'cb7ff8000000000000')
  assert.equal(hex(encode(Infinity)), 'cb7ff0000000000000')
  assert.equal(hex(encode(-Infinity)), 'cbfff0000000000000')
  assert.ok(Number.isNaN(decode(bytes('cb7ff8000000000000'))))
  assert.equal(decode(bytes('cbfff0000000000000')), -Infinity)
})

test('bin and ext types are not part of the protocol: decode refuses them', () => {
  // bin 8/16/32 (what msgpack.packb(b"...") gives), ext, fixext
  for (const h of ['c403010203', 'c50003010203', 'c600000003010203', 'c70101ff', 'c8000101ff', 'c900000001' + '01ff', 'd40100', 'd5010000', 'd601' + '00'.repeat(4), 'd701' + '00'.repeat(8), 'd801' + '00'.repeat(16)]) {
    const t = h.slice(0, 2)
    assert.throws(() => decode(bytes(h)), { name: 'Error', message: 'msgpack: bad input' }, h)
  }
  // ...also deep inside a frame
  assert.throws(() => decode(bytes('81a162c40100')), { message: 'msgpack: bad input' })
})

test('64-bit integers decode to numbers (exact up to 2^53)', () => {
  assert.equal(decode(bytes('cf0020000000000000')), 2 ** 53)
  assert.equal(decode(bytes('cf001fffffffffffff')), Number.MAX_SAFE_INTEGER)
  assert.equal(decode(bytes('cfffffffffffffffff')), 2 ** 64, 'uint64 max, rounded')
  assert.equal(decode(bytes('d3ff00000000000000')), -(2 ** 56))
  assert.equal(decode(bytes('d38000000000000000')), -(2 ** 63))
  assert.equal(decode(bytes('d3ffe0000000000001')), -Number.MAX_SAFE_INTEGER)
  assert.equal(typeof decode(bytes('cf0000019b76daa800')), 'number', 'never a BigInt')
})

test('map keys keep their insertion order; undefined values are left out like JSON', () => {
  const e = encode({ z: 1, a: 2, m: undefined, b: [1, { y: null }] })
  assert.deepStrictEqual(Object.keys(decode(e)), ['z', 'a', 'b'])
  assert.deepStrictEqual(decode(e), { z: 1, a: 2, b: [1, { y: null }] })
})

test('array32, map32, str8/16/32, float32, signed and unsigned ints of every width decode', () => {
  assert.deepStrictEqual(decode(bytes('dd00000002' + '01' + 'a161')), [1, 'a'])
  assert.deepStrictEqual(decode(bytes('df00000001' + 'a16b' + 'c3')), { k: true })
  assert.deepStrictEqual(decode(bytes('de0001' + 'a16b' + 'c2')), { k: false })
  assert.deepStrictEqual(decode(bytes('dc0002' + 'c0' + 'e0')), [null, -32])
  assert.equal(decode(bytes('d9026869')), 'hi')
  assert.equal(decode(bytes('da00026869')), 'hi')
  assert.equal(decode(bytes('db00000002' + '6869')), 'hi')
  assert.equal(decode(bytes('ca3fc00000')), 1.5)
  assert.equal(decode(bytes('d3ffffffffffffffff')), -1)
  assert.equal(decode(bytes('cf0000019b76daa800')), 1767225600000)
  // non-canonical (wider than needed) forms, as another encoder may send them
  assert.equal(decode(bytes('cc05')), 5)
  assert.equal(decode(bytes('cd0005')), 5)
  assert.equal(decode(bytes('ce00000005')), 5)
  assert.equal(decode(bytes('d0ff')), -1)
  assert.equal(decode(bytes('d1ffff')), -1)
  assert.equal(decode(bytes('d2ffffffff')), -1)
  assert.equal(decode(bytes('d07f')), 127)
})

test('values msgpack cannot carry are refused on encode', () => {
  assert.throws(() => encode(() => 1), { name: 'Error', message: 'msgpack: cannot encode function' })
  assert.throws(() => encode({ a: Symbol('x') }), { message: 'msgpack: cannot encode symbol' })
  assert.throws(() => encode([1, 10n]), { message: 'msgpack: cannot encode bigint' })
})

// (one message for every refusal: the snippet drops the frame whatever is wrong with it)
test('decode rejects garbage with an Error', () => {
  const bad = {
    '': 'truncated input', // empty
    c1: 'bad type 0xc1', // never used
    d4017f: 'bad type 0xd4', // fixext 1
    c70101ff: 'bad type 0xc7', // ext 8
    a3616263ff: 'trailing bytes',
    c0c0: 'trailing bytes',
    a56162: 'truncated input', // str shorter than its header
    d9: 'truncated input', // str8 without its length
    cd01: 'truncated input', // uint16 cut short
    cb3ff0: 'truncated input', // float64 cut short
    dc0005: 'truncated input', // array16 claiming 5 items
    '82a16101': 'truncated input', // map missing its second pair
    '81a161': 'truncated input', // a key without its value
    ddffffffff: 'truncated input', // array32 claiming 4 billion items: refused at once
    dfffffffff: 'truncated input'
  }
  for (const [h, msg] of Object.entries(bad)) {
    assert.throws(() => decode(bytes(h)), { name: 'Error', message: 'msgpack: bad input' }, h + ': ' + msg)
  }
})

test('bad UTF-8 in a string is refused by the TextDecoder (a TypeError)', () => {
  for (const h of ['a2c328', 'a1ff', 'a3eda080' /* a lone surrogate */, 'a2c0af' /* overlong */]) {
    assert.throws(() => decode(bytes(h)), TypeError, h)
  }
  // ...also as a map key
  assert.throws(() => decode(bytes('81a1ffc0')), TypeError)
})

test('nesting: 1000 levels decode; absurd depth throws (a RangeError), it never hangs', () => {
  const deep = decode(bytes('91'.repeat(1000) + 'c0'))
  let d = 0
  for (let x = deep; Array.isArray(x); x = x[0]) d++
  assert.equal(d, 1000)
  assert.throws(() => decode(bytes('91'.repeat(1e6) + 'c0')), RangeError)
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
