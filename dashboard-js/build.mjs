// Bundles the rules editor (src/editor.js and the CodeMirror packages it uses)
// into one minified IIFE the dashboard serves:
//   ../server/kairos/static/dashboard/editor.js
// and prints its raw and gzip sizes. The bundled packages' licences (all MIT)
// head the file, as their licence asks of every copy.
import { build } from 'esbuild'
import { readFileSync, writeFileSync, existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'
import { gzipSync } from 'node:zlib'

const path = p => fileURLToPath(new URL(p, import.meta.url))
const OUT = path('../server/kairos/static/dashboard/editor.js')

const result = await build({
  entryPoints: [path('src/editor.js')],
  bundle: true,
  write: false,
  metafile: true,
  minify: true,
  format: 'iife',
  target: 'es2020',
  platform: 'browser',
  legalComments: 'none',
  logLevel: 'warning'
})

// Every package that has a file in the bundle, with its version and licence text.
const packages = new Map()
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input)
  if (!m || packages.has(m[1])) continue
  const dir = path(join('node_modules', m[1]))
  const meta = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
  const file = ['LICENSE', 'LICENSE.md', 'LICENSE.txt'].map(f => join(dir, f)).find(existsSync)
  packages.set(m[1], { version: meta.version, license: meta.license, text: file ? readFileSync(file, 'utf8').trim() : '' })
}
const texts = new Map() // one copy of each distinct licence text, naming the packages under it
for (const [name, p] of [...packages].sort()) texts.set(p.text, [...(texts.get(p.text) || []), `${name}@${p.version} (${p.license})`])
const header = '/*! Kairos rules editor. Bundled: CodeMirror 6 and its dependencies.\n' +
  [...texts].map(([text, names]) => `\n${names.join(', ')}:\n\n${text.replaceAll('*/', '* /')}\n`).join('') + '*/\n'

const code = header + result.outputFiles[0].text
writeFileSync(OUT, code)
const gz = gzipSync(code, { level: 9 }).length
console.log(`${OUT.slice(dirname(path('.')).length + 1)}  raw ${code.length} B  gzip -9 ${gz} B  (${packages.size} packages)`)
