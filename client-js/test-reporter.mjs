// `npm test`'s reporter: one line per test file, every failure in full, and
// node's own closing counts. `npm run test:spec` prints every test (node's spec reporter).
import { basename } from 'node:path';
import { inspect } from 'node:util';

export default async function* summary(source) {
  const files = new Map();  // file -> {pass, fail, ms}
  const failures = [];
  const of = (file) => {
    if (!files.has(file)) files.set(file, { pass: 0, fail: 0, skip: 0 });
    return files.get(file);
  };
  for await (const { type, data } of source) {
    if (type === 'test:pass' || type === 'test:fail') {
      if (data.details?.type === 'suite') continue;
      const counts = of(data.file ?? '(no file)');
      if (type === 'test:fail') {
        counts.fail++;
        failures.push(data);
      } else if (data.skip || data.todo) counts.skip++;
      else counts.pass++;
    } else if (type === 'test:diagnostic' && data.nesting === 0) {
      // The run's counts ("tests 271", "pass 271", "fail 0", …) come last, once every file has reported.
      if (files.size) yield perFile(files, failures);
      files.clear();
      failures.length = 0;
      yield `ℹ ${data.message}\n`;
    } else if (type === 'test:stderr') {
      yield data.message;
    }
  }
}

function perFile(files, failures) {
  const width = Math.max(...[...files.keys()].map((f) => basename(f).length));
  let out = '';
  for (const [file, { pass, fail, skip }] of [...files].sort()) {
    const parts = [`${pass} passed`, fail && `${fail} failed`, skip && `${skip} skipped`].filter(Boolean);
    out += `${fail ? '✖' : '✔'} ${basename(file).padEnd(width)}  ${parts.join(', ')}\n`;
  }
  for (const t of failures) {
    const err = t.details?.error;
    out += `\n✖ ${basename(t.file ?? '')}: ${t.name}\n${inspect(err?.cause ?? err, { depth: 4 }).replace(/^/gm, '    ')}\n`;
  }
  return out + (failures.length ? '\n' : '');
}
