// Minimal MessagePack, written by hand: just the types the Kairos protocol uses.
// encode() produces the same bytes as Python's msgpack.packb (use_bin_type=True):
// the smallest int encoding, float64 for every non-integer number, str8 for
// 32..255 bytes, maps in insertion order. decode() throws an Error on anything
// it does not know (ext types, 0xc1, truncated or trailing bytes, bad UTF-8).

const te = new TextEncoder()
const td = new TextDecoder('utf-8', { fatal: true })
const MAX_DEPTH = 64
const fail = (m, p) => { throw new Error('msgpack: ' + m + (p >= 0 ? ' at byte ' + p : '')) }

export function encode (value) {
  const out = []
  // v as an n-byte big-endian two's complement integer (exact up to 2^53)
  const be = (v, n) => { while (n--) out.push(Math.floor(v / 2 ** (8 * n)) & 255) }
  // a length header: fixed form under fixEnd, then 8 (if t8), 16 and 32 bit forms
  const hdr = (n, fix, fixEnd, t8, t16) => {
    if (n < fixEnd) out.push(fix | n)
    else if (t8 && n < 256) out.push(t8, n)
    else if (n < 65536) { out.push(t16); be(n, 2) } else { out.push(t16 + 1); be(n, 4) }
  }
  const bytes = (b, fix, fixEnd, t8, t16) => {
    hdr(b.length, fix, fixEnd, t8, t16)
    for (let i = 0; i < b.length; i++) out.push(b[i])
  }
  const str = s => bytes(te.encode(s), 0xa0, 32, 0xd9, 0xda)

  const w = v => {
    if (v == null) out.push(0xc0)
    else if (v === false || v === true) out.push(v ? 0xc3 : 0xc2)
    else if (typeof v === 'number') {
      if (!Number.isSafeInteger(v)) {
        const d = new DataView(new ArrayBuffer(8))
        d.setFloat64(0, v)
        out.push(0xcb, ...new Uint8Array(d.buffer))
      } else if (v >= -32 && v < 128) out.push(v & 255)
      else {
        // sizes 1, 2, 4, 8 bytes: uint8..uint64 (0xcc..) or int8..int64 (0xd0..)
        let i = 0
        while (i < 3 && (v < 0 ? v < -(2 ** ((8 << i) - 1)) : v >= 2 ** (8 << i))) i++
        out.push((v < 0 ? 0xd0 : 0xcc) + i)
        be(v, 1 << i)
      }
    } else if (typeof v === 'string') str(v)
    else if (v instanceof Uint8Array || v instanceof ArrayBuffer) bytes(new Uint8Array(v), 0, 0, 0xc4, 0xc5)
    else if (Array.isArray(v)) {
      hdr(v.length, 0x90, 16, 0, 0xdc)
      v.forEach(x => w(x))
    } else if (typeof v === 'object') {
      // like JSON, keys whose value is undefined are left out
      const keys = Object.keys(v).filter(k => v[k] !== undefined)
      hdr(keys.length, 0x80, 16, 0, 0xde)
      for (const k of keys) { str(k); w(v[k]) }
    } else fail('cannot encode ' + typeof v)
  }

  w(value)
  return new Uint8Array(out)
}

export function decode (input) {
  const b = input instanceof Uint8Array ? input : new Uint8Array(input)
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength)
  let p = 0

  const take = n => {
    if (p + n > b.length) fail('truncated input', p)
    p += n
    return p - n
  }
  // a big-endian int of n = 1, 2, 4 or 8 bytes
  const num = (n, signed) => {
    const s = take(n)
    if (n < 8) return dv[(signed ? 'getInt' : 'getUint') + n * 8](s)
    const v = (signed ? dv.getInt32(s) : dv.getUint32(s)) * 4294967296 + dv.getUint32(s + 4)
    return Number.isSafeInteger(v) ? v : fail('int beyond 2^53', s)
  }
  const str = n => {
    const s = take(n)
    try { return td.decode(b.subarray(s, s + n)) } catch (e) { return fail('invalid UTF-8', s) }
  }
  // each item needs at least one byte: refuse impossible counts at once
  const items = (n, d, isMap) => {
    if (n > b.length - p) fail('truncated input', p)
    const out = isMap ? {} : []
    while (n--) {
      if (!isMap) { out.push(r(d)); continue }
      const k = r(d)
      const v = r(d)
      if (k !== '__proto__') out[k] = v // never touch the prototype
    }
    return out
  }

  const r = d => {
    if (d > MAX_DEPTH) fail('too deep', p)
    const t = b[take(1)]
    if (t < 0x80) return t
    if (t < 0xa0) return items(t & 15, d + 1, t < 0x90)
    if (t < 0xc0) return str(t & 31)
    if (t >= 0xe0) return t - 256
    if (t === 0xc0) return null
    if (t === 0xc2 || t === 0xc3) return t === 0xc3
    if (t >= 0xc4 && t <= 0xc6) { const n = num(1 << (t - 0xc4)); return b.slice(take(n), p) }
    if (t === 0xca) return dv.getFloat32(take(4))
    if (t === 0xcb) return dv.getFloat64(take(8))
    if (t >= 0xcc && t <= 0xd3) return num(1 << (t & 3), t >= 0xd0)
    if (t >= 0xd9 && t <= 0xdb) return str(num(1 << (t - 0xd9)))
    if (t >= 0xdc) return items(num(t & 1 ? 4 : 2), d + 1, t >= 0xde)
    return fail('bad type 0x' + t.toString(16), p - 1)
  }

  const v = r(0)
  if (p !== b.length) fail('trailing bytes', p)
  return v
}
