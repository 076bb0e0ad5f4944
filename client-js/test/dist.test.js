// The whole-snippet tests (snippet.test.js) again, on dist/k.js and
// dist/k-overlay.js as `npm run build` made them: the minifiers must not
// change what the snippet does.
import { test } from 'node:test'
import { existsSync, statSync, readdirSync, readFileSync } from 'node:fs'
import { gunzipSync, brotliDecompressSync } from 'node:zlib'

const at = p => new URL(p, import.meta.url)
const built = ['../dist/k.js', '../dist/k-overlay.js'].map(at)
const sources = readdirSync(at('../src/')).map(f => at('../src/' + f)).concat(at('../build.mjs'))

if (!built.every(existsSync)) {
  test('the built snippet (run npm run build first)', { skip: 'dist/ is not built' }, () => {})
} else if (Math.min(...built.map(f => statSync(f).mtimeMs)) < Math.max(...sources.map(f => statSync(f).mtimeMs))) {
  test('the built snippet is older than its source: run npm run build', () => { throw new Error('dist/ is stale') })
} else {
  globalThis.KAIROS_DIST = true
  await import('./snippet.test.js')
}

// What the server sends (server/kairos/assets.py): each file's .gz and .br hold its bytes exactly
if (built.every(existsSync)) {
  test('the precompressed files decompress to the built files', () => {
    for (const f of built) {
      const js = readFileSync(f)
      if (!gunzipSync(readFileSync(new URL(f.href + '.gz'))).equals(js)) throw new Error(f.pathname + '.gz differs')
      if (!brotliDecompressSync(readFileSync(new URL(f.href + '.br'))).equals(js)) throw new Error(f.pathname + '.br differs')
    }
  })
}
