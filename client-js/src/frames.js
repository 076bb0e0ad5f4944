// Builders for the frames the snippet sends (key order as in docs/frames/).

export const VERSION = '0.1.0'

// nav: navigator-like; date: a Date (for the UTC offset); re (truthy): a reconnection
// within the same page load, which the server must not count as another page view.
// No `dnt` / `gpc`: the snippet does not connect under either (config.js gate),
// so they could only ever be false; the server reads the browser's DNT /
// Sec-GPC headers itself where it sends them.
export function helloFrame (site, vid, sid, page, nav, date, re) {
  const f = {
    v: 1,
    t: 'hello',
    site,
    vid,
    sid: sid || null,
    page,
    // the snippet connects only with consent (or when the store does not ask for it)
    consent: true,
    sv: VERSION,
    tz: -date.getTimezoneOffset(),
    lang: (nav.language || '').slice(0, 35)
    // no `vp`: reading innerWidth while the page is still loading forces a
    // synchronous layout (12-13 ms on the demo store's product page, in 2 of
    // 5 loads measured in Chromium), and the server has no use for it
  }
  if (re) f.re = true
  return f
}

// why: for `hidden`, what took the overlay down (the snippet says `page`)
export const feedbackFrame = (oid, act, ts, why) => why ? { v: 1, t: 'feedback', oid, act, ts, why } : { v: 1, t: 'feedback', oid, act, ts }
