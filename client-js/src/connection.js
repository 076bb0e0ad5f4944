// One websocket per page load, with centrifuge-js style reconnects.
//
// state: idle       not started, or stopped by the snippet (consent withdrawn)
//        connecting socket opening, hello sent, waiting for welcome
//        open       welcome received: events and feedback flow
//        closed     socket closed; a reconnect is scheduled unless the close
//                   code was terminal

import { encode, decode } from './codec.js'

export const MIN_DELAY = 500
export const MAX_DELAY = 20000
// The close codes after which the snippet does not reconnect: 1000, 4001,
// 4002, 4003, 4004 (docs/protocol.md). 4003: the page's origin is not allowed
// (sent by the server just after the handshake, as a refused handshake reaches
// a page as 1006, a network fault).
export const terminal = code => code === 1000 || (code > 4000 && code < 4005)

// Exponential backoff with full jitter (as centrifuge-js): a random delay on
// top of the 500 ms floor, the random part at most 500 ms * 2^attempt, the
// whole capped at 20 s.
export const backoff = (attempt, random = Math.random) =>
  Math.min(MAX_DELAY, MIN_DELAY + Math.floor(random() * Math.min(MAX_DELAY, MIN_DELAY * 2 ** attempt)))

// hello() builds the hello frame, onFrame(frame) gets every frame from the server.
// (Uses the global WebSocket, setTimeout and clearTimeout.)
export function connect (url, hello, onFrame) {
  let state = 'idle'
  let ws, timer
  let attempt = 0
  let stopped = true

  const raw = frame => ws.send(encode(frame))

  function open () {
    clearTimeout(timer)
    stopped = false
    if (ws) return
    state = 'connecting'
    let s
    try {
      s = new WebSocket(url)
    } catch (e) {
      // a malformed URL will not heal by retrying
      stopped = true
      state = 'closed'
      return
    }
    ws = s
    s.binaryType = 'arraybuffer'
    s.onopen = () => ws === s && raw(hello())
    s.onmessage = e => {
      if (ws !== s || typeof e.data === 'string') return
      let f
      try { f = decode(e.data) } catch (err) { return }
      if (!f || f.v !== 1) return
      if (f.t === 'welcome') { attempt = 0; state = 'open' }
      onFrame(f)
    }
    s.onclose = e => {
      if (ws !== s) return
      ws = null
      if (terminal(e.code)) stopped = true
      // the one console line for a refused origin: the server gives a reason
      // ("origin not allowed") to that close alone
      e.reason && onFrame({ t: 'error', code: e.code, msg: e.reason })
      state = 'closed'
      if (!stopped) timer = setTimeout(open, backoff(attempt++))
    }
  }

  return {
    open,
    // Stop (until open() again): the socket is closed with 1000, no reconnect.
    // close() leaves the state idle (consent withdrawn), close(1000) closed (pagehide).
    close (code) {
      const was = !stopped
      stopped = true
      clearTimeout(timer)
      try { ws?.close(1000) } catch (e) {}
      ws = null
      state = code ? 'closed' : 'idle'
      return was
    },
    // the browser is back online: skip the backoff wait
    online () {
      if (!stopped && !ws) { attempt = 0; open() }
    },
    // send a frame; false when not open (nothing sent)
    send (frame) {
      if (state !== 'open') return false
      raw(frame)
      return true
    },
    get state () { return state }
  }
}
