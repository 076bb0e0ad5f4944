// Minimal MessagePack, written by hand: just the types the Kairos protocol uses.
// encode() produces the same bytes as Python's msgpack.packb (use_bin_type=True):
// the smallest int encoding, float64 for every non-integer number, str8 for
// 32..255 bytes, maps in insertion order. decode() throws on anything it does
// not know (bin and ext types, 0xc1, truncated or trailing bytes, bad UTF-8).

const te = new TextEncoder()
const td = new TextDecoder('utf-8', { fatal: true })
const fail = m => { throw new Error('msgpack: ' + m) }

export function encode (value) {
  const out = []
  // n as a k-byte big-endian two's complement integer (exact up to 2^53)
  const be = (n, k) => { while (k--) out.push(Math.floor(n / 2 ** (8 * k)) & 255) }
  // a length: the fix form under `fix`, then the 8 (if t8), 16 and 32-bit forms
  const head = (n, f, fix, t8, t16) => n < fix
    ? out.push(f | n)
    : t8 && n < 256 ? out.push(t8, n) : n < 65536 ? (out.push(t16), be(n, 2)) : (out.push(t16 + 1), be(n, 4))
  const w = v => {
    if (v == null) out.push(0xc0)
    else if (v === !!v) out.push(v ? 0xc3 : 0xc2)
    else if (typeof v === 'number') {
      if (!Number.isSafeInteger(v)) {
        const b = new Uint8Array(8)
        new DataView(b.buffer).setFloat64(0, v)
        out.push(0xcb, ...b)
      } else if (v >= -32 && v < 128) out.push(v & 255)
      else {
        // 1, 2, 4 or 8 bytes: uint8..uint64 (0xcc..) or int8..int64 (0xd0..)
        let i = 0
        while (i < 3 && (v < 0 ? v < -(2 ** ((8 << i) - 1)) : v >= 2 ** (8 << i))) i++
        out.push((v < 0 ? 0xd0 : 0xcc) + i)
        be(v, 1 << i)
      }
    } else if (typeof v === 'string') {
      const b = te.encode(v)
      head(b.length, 0xa0, 32, 0xd9, 0xda)
      for (const x of b) out.push(x)
    } else if (Array.isArray(v)) {
      head(v.length, 0x90, 16, 0, 0xdc)
      v.forEach(x => w(x))
    } else if (typeof v === 'object') {
      // like JSON, keys whose value is undefined are left out
      const keys = Object.keys(v).filter(k => v[k] !== undefined)
      head(keys.length, 0x80, 16, 0, 0xde)
      keys.forEach(k => { w(k); w(v[k]) })
    } else fail('cannot encode ' + typeof v)
  }
  w(value)
  return new Uint8Array(out)
}

export function decode (input) {
  const b = new Uint8Array(input)
  const d = new DataView(b.buffer)
  let p = 0
  const take = n => (p += n) > b.length ? fail('truncated input') : p - n
  // a big-endian int of n = 1, 2, 4 or 8 bytes
  const int = (n, signed) => {
    const at = take(n)
    return n > 4 ? Number(d[signed ? 'getBigInt64' : 'getBigUint64'](at)) : d[(signed ? 'getInt' : 'getUint') + n * 8](at)
  }
  const str = n => td.decode(b.subarray(take(n), p))
  const list = (n, isMap) => {
    const o = isMap ? {} : []
    while (n--) {
      if (!isMap) { o.push(r()); continue }
      const k = r()
      const v = r()
      if (k !== '__proto__') o[k] = v // never touch the prototype
    }
    return o
  }
  const r = () => {
    const t = b[take(1)]
    return t < 0x80 ? t
      : t < 0xa0 ? list(t & 15, t < 0x90)
        : t < 0xc0 ? str(t & 31)
          : t > 0xdf ? t - 256
            : t === 0xc0 ? null
              : t === 0xc2 || t === 0xc3 ? t === 0xc3
                : t === 0xcb ? d.getFloat64(take(8))
                  : t === 0xca ? d.getFloat32(take(4))
                    : t > 0xcb && t < 0xd4 ? int(1 << (t & 3), t > 0xcf)
                      : t > 0xd8 && t < 0xdc ? str(int(1 << (t - 0xd9)))
                        : t > 0xdb ? list(int(t & 1 ? 4 : 2), t > 0xdd)
                          : fail('bad type 0x' + t.toString(16))
  }
  const v = r()
  return p < b.length ? fail('trailing bytes') : v
}
