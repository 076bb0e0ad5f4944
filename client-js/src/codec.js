// Minimal MessagePack, written by hand: just the types the Kairos protocol uses.
// encode() produces the same bytes as Python's msgpack.packb (use_bin_type=True):
// the smallest int encoding, float64 for every non-integer number, str8 for
// 32..255 bytes, maps in insertion order. decode() throws on anything it does
// not know (bin and ext types, 0xc1, truncated or trailing bytes, bad UTF-8):
// one message for all, as the snippet drops such a frame whatever is wrong with it.

const te = new TextEncoder()
const td = new TextDecoder(undefined, { fatal: true }) // utf-8, the default
const fail = m => { throw new Error('msgpack: ' + m) }

export function encode (value) {
  const out = []
  // a type byte, then n as a k-byte big-endian two's complement integer (exact up to 2^53)
  const put = (t, n, k) => { out.push(t); while (k--) out.push(Math.floor(n / 2 ** (8 * k)) & 255) }
  // a length: the fix form under `fix`, then the 8 (if t8), 16 and 32-bit forms
  const head = (n, f, fix, t8, t16) => n < fix ? out.push(f | n) : t8 && n < 256 ? put(t8, n, 1) : n < 65536 ? put(t16, n, 2) : put(t16 + 1, n, 4)
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
        put((v < 0 ? 0xd0 : 0xcc) + i, v, 1 << i)
      }
    } else if (typeof v === 'string') {
      const b = te.encode(v)
      head(b.length, 0xa0, 32, 0xd9, 0xda)
      out.push(...b)
    } else if (Array.isArray(v)) {
      head(v.length, 0x90, 16, 0, 0xdc)
      v.forEach(w)
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
  const bad = () => fail('bad input')
  const take = n => (p += n) > b.length ? bad() : p - n
  // a big-endian number read by DataView's get<kind><bits>, kind Int, Uint, BigInt, BigUint or Float
  const num = (kind, n) => Number(d['get' + (n > 4 && kind > 'G' ? 'Big' : '') + kind + n * 8](take(n)))
  const str = n => td.decode(b.subarray(take(n), p))
  const list = (n, map) => {
    const o = map ? {} : []
    while (n--) {
      if (!map) o.push(r())
      else {
        const k = r()
        const v = r()
        if (k !== '__proto__') o[k] = v // never touch the prototype
      }
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
              : (t | 1) === 0xc3 ? t === 0xc3 // 0xc2 false, 0xc3 true
                : (t | 1) === 0xcb ? num('Float', t & 1 ? 8 : 4) // 0xca float32, 0xcb float64
                  : t > 0xcb && t < 0xd4 ? num(t > 0xcf ? 'Int' : 'Uint', 1 << (t & 3))
                    : t > 0xd8 && t < 0xdc ? str(num('Uint', 1 << (t - 0xd9)))
                      : t > 0xdb ? list(num('Uint', t & 1 ? 4 : 2), t > 0xdd)
                        : bad()
  }
  const v = r()
  return p < b.length ? bad() : v
}
