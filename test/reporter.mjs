// node:test reporter: one line per test, failures with their error, and a closing
// "N passed, N failed" line (what CI reads).
export default async function* reporter(source) {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const failures = [];
  for await (const ev of source) {
    const d = ev.data;
    if (ev.type === 'test:pass' || ev.type === 'test:fail') {
      if (d.details?.type === 'suite') continue;
      const ms = d.details?.duration_ms ? ` (${Math.round(d.details.duration_ms)} ms)` : '';
      const where = d.file ? ` [${d.file.replace(process.cwd() + '/', '')}]` : '';
      if (d.skip || d.todo) {
        skipped++;
        yield `- ${d.name} (skipped)${where}\n`;
      } else if (ev.type === 'test:pass') {
        passed++;
        yield `ok ${d.name}${ms}\n`;
      } else {
        failed++;
        const err = d.details?.error;
        const msg = String(err?.cause?.stack ?? err?.cause?.message ?? err?.message ?? err).split('\n').slice(0, 12).join('\n    ');
        failures.push(`${d.name}${where}\n    ${msg}`);
        yield `FAIL ${d.name}${ms}${where}\n    ${msg}\n`;
      }
    } else if (ev.type === 'test:diagnostic' && /^(tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) /.test(d.message)) {
      // node's own summary; ours follows
    } else if (ev.type === 'test:stderr' || ev.type === 'test:stdout') {
      // keep child output quiet unless a test fails; it is in the failure message
    }
  }
  if (failures.length) yield `\nFailures:\n${failures.map((f) => `- ${f}`).join('\n')}\n`;
  yield `\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`;
}
