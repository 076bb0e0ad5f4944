// Bundles src/index.js into dist/k.js (one minified IIFE, es2020), prints its
// raw / gzip / brotli sizes and fails when the gzip size is over the budget.
//
// esbuild bundles; terser then minifies (three compress passes): on this code
// terser's output is about 3 % smaller gzipped than esbuild's own minifier.
import { build } from 'esbuild'
import { minify } from 'terser'
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { gzipSync, brotliCompressSync, constants } from 'node:zlib'

// Issue 4 asks for 5 KB (5,120 B). With every signal of issue 4 the snippet is
// over that (README, "Size"); this budget stops it from growing further.
export const BUDGET_GZIP = 6500
const path = p => fileURLToPath(new URL(p, import.meta.url))
const out = path('dist/k.js')
const { version } = JSON.parse(readFileSync(path('package.json'), 'utf8'))

const bundled = await build({
  entryPoints: [path('src/index.js')],
  bundle: true,
  write: false,
  format: 'iife',
  target: 'es2020',
  platform: 'browser',
  legalComments: 'none',
  logLevel: 'warning'
})
const min = await minify(bundled.outputFiles[0].text, {
  ecma: 2020,
  toplevel: true,
  compress: { passes: 3, unsafe_arrows: true, pure_getters: true },
  format: { preamble: `/*! Kairos ${version} AGPL-3.0 */` }
})
mkdirSync(path('dist'), { recursive: true })
writeFileSync(out, min.code)

const code = readFileSync(out)
const gz = gzipSync(code, { level: 9 }).length // what `gzip -9` and a precompressing server give
const br = brotliCompressSync(code, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length
console.log(`dist/k.js  raw ${code.length} B  gzip ${gz} B  brotli ${br} B  (budget: gzip ${BUDGET_GZIP} B)`)
if (gz > BUDGET_GZIP) {
  console.error(`FAIL: dist/k.js is ${gz} B gzipped, over the budget of ${BUDGET_GZIP} B`)
  process.exit(1)
}
