// Calls the store made before k.js loaded:
//   window.kairos = window.kairos || { q: [] }; kairos.q.push(["track", "cart", { value: 42 }])
// or with a bare array: window.kairos = window.kairos || []; kairos.push([...]).
// Entries may also be `arguments` objects (a function stub pushing its arguments).

export function replay (prev, api) {
  for (const x of [].concat(prev?.q || prev || [])) {
    // junk entries, unknown names, getters and throwing calls end in the catch
    try {
      const [name, ...args] = x
      if (name[0] !== '_') api[name](...args)
    } catch (e) {}
  }
}
