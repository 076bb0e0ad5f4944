// Visitor id (localStorage, or a first-party cookie with data-vid-store="cookie")
// and session id (sessionStorage). Storage can be missing or throw (Safari
// private mode, sandboxed iframes, quotas): every error is swallowed and the
// ids then live in memory only.

export const ID_RE = /^[\w.-]{8,64}$/
export const VID_KEY = 'kairos.vid'
export const SID_KEY = 'kairos.sid'
export const COOKIE = 'kairos_vid'
// 400 days: the longest a cookie may live in Chrome (and RFC 6265bis's cap)
const COOKIE_AGE = 34560000
const L = 'localStorage'
const S = 'sessionStorage'
// (typeof check first: RegExp.test(undefined) tests the string "undefined")
export const validId = s => typeof s === 'string' && ID_RE.test(s)

// prefix + 20 random base-36 characters (~103 bits)
export const randomId = (prefix, bytes) =>
  prefix + Array.from(bytes || crypto.getRandomValues(new Uint8Array(20)), b => (b % 36).toString(36)).join('')

// win: window-like, with localStorage and sessionStorage (reading which can
// itself throw); doc: document-like, with cookie; cookie: keep the visitor id there
export function createIds (win, doc, cookie) {
  const get = (st, k) => {
    try {
      const v = st ? win[st].getItem(k) : doc.cookie.match(/(?:^|;\s*)kairos_vid=([^;]*)/)?.[1]
      return validId(v) ? v : null
    } catch (e) { return null }
  }
  const put = (st, k, v) => {
    try {
      if (st) v ? win[st].setItem(k, v) : win[st].removeItem(k)
      else {
        doc.cookie = COOKIE + '=' + (v || '') + ';path=/;max-age=' + (v ? COOKIE_AGE : 0) + ';samesite=lax' +
          (win.location.protocol === 'https:' ? ';secure' : '')
      }
    } catch (e) {}
  }
  const where = cookie ? '' : L
  let vid = null
  let sid = null
  return {
    // the visitor id, made and kept on first use; with `peek`, null rather than a new one
    vid (peek) {
      if (!vid) {
        vid = get(where, VID_KEY)
        if (!vid && !peek) put(where, VID_KEY, vid = randomId('v_'))
      }
      return vid
    },
    sid () { return sid || (sid = get(S, SID_KEY)) },
    setSid (s) {
      if (validId(s)) put(S, SID_KEY, sid = s)
    },
    clear () {
      vid = sid = null
      put(where, VID_KEY)
      put(S, SID_KEY)
    }
  }
}
