// Bundles src/index.js into dist/k.js (one minified IIFE, es2019), prints its
// raw / gzip / brotli sizes and fails when the gzip size is over the budget.
import { build } from 'esbuild'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { gzipSync, brotliCompressSync, constants } from 'node:zlib'

const BUDGET_GZIP = 6144
const path = p => fileURLToPath(new URL(p, import.meta.url))
const out = path('dist/k.js')
const { version } = JSON.parse(readFileSync(path('package.json'), 'utf8'))

await build({
  entryPoints: [path('src/index.js')],
  outfile: out,
  bundle: true,
  minify: true,
  format: 'iife',
  target: 'es2019',
  platform: 'browser',
  legalComments: 'none',
  banner: { js: `/*! Kairos ${version} AGPL-3.0 */` },
  logLevel: 'warning'
})

const code = readFileSync(out)
const gz = gzipSync(code).length // zlib's default level (6), what most servers use
const br = brotliCompressSync(code, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length
console.log(`dist/k.js  raw ${code.length} B  gzip ${gz} B  brotli ${br} B  (budget: gzip ${BUDGET_GZIP} B)`)
if (gz > BUDGET_GZIP) {
  console.error(`FAIL: dist/k.js is ${gz} B gzipped, over the budget of ${BUDGET_GZIP} B`)
  process.exit(1)
}
