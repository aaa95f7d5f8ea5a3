// Issue 5, part 4: bad input gets one clear line and the right exit code, and changes nothing
// on disk; names and sizes through the mount fail like tmpfs (or EFBIG) and leave files alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { badInputs, badNamesAndSizes } from './lib/badinput.ts';

test('bad volumes, devices, headers, databases, mountpoints and CLI arguments are refused cleanly', async () => {
  const r = await badInputs({ quick: true });
  console.error(`bad input: ${r.tried} tried`);
  assert.deepEqual(r.problems, []);
  assert.ok(r.tried > 45);
});

test('bad names and absurd sizes through the mount: same errno as tmpfs, file unchanged', async () => {
  const r = await badNamesAndSizes();
  assert.deepEqual(r.problems, []);
});
