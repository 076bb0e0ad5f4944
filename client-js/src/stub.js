// Calls the store made before k.js loaded:
//   window.kairos = window.kairos || { q: [] }; kairos.q.push(["track", "cart", { value: 42 }])
// or with a bare array: window.kairos = window.kairos || []; kairos.push([...]).
// Entries may also be `arguments` objects (a function stub pushing its arguments).

export function replay (prev, api) {
  const q = Array.isArray(prev) ? prev : (prev && Array.isArray(prev.q) && prev.q) || []
  for (const x of q) {
    const args = x && typeof x === 'object' ? [].slice.call(x) : []
    const fn = api[args[0]]
    if (typeof fn === 'function' && args[0][0] !== '_') {
      try { fn.apply(api, args.slice(1)) } catch (e) {}
    }
  }
}
