// Visitor id (localStorage) and session id (sessionStorage).
// Storage can be missing or throw (Safari private mode, sandboxed iframes,
// quotas): every error is swallowed and the ids then live in memory only.

export const ID_RE = /^[A-Za-z0-9_.-]{8,64}$/
export const VID_KEY = 'kairos.vid'
export const SID_KEY = 'kairos.sid'
const L = 'localStorage'
const S = 'sessionStorage'
// (typeof check first: RegExp.test(undefined) tests the string "undefined")
export const validId = s => typeof s === 'string' && ID_RE.test(s)

// prefix + 20 random base-36 characters (~103 bits)
export const randomId = (prefix, bytes) =>
  prefix + Array.from(bytes || crypto.getRandomValues(new Uint8Array(20)), b => (b % 36).toString(36)).join('')

// win: window-like, with localStorage and sessionStorage (reading which can itself throw)
export function createIds (win) {
  const get = (st, k) => {
    try {
      const v = win[st].getItem(k)
      return validId(v) ? v : null
    } catch (e) { return null }
  }
  const put = (st, k, v) => {
    try { v ? win[st].setItem(k, v) : win[st].removeItem(k) } catch (e) {}
  }
  let vid = null
  let sid = null
  return {
    vid () {
      if (!vid) {
        vid = get(L, VID_KEY)
        if (!vid) put(L, VID_KEY, vid = randomId('v_'))
      }
      return vid
    },
    sid () { return sid || (sid = get(S, SID_KEY)) },
    setSid (s) {
      if (validId(s)) put(S, SID_KEY, sid = s)
    },
    clear () {
      vid = sid = null
      put(L, VID_KEY)
      put(S, SID_KEY)
    }
  }
}
