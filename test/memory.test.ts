/* Batched reads of another process's memory (process_vm_readv). */
import { existsSync, readFileSync } from 'node:fs';
import test from 'ava';
import { ReadFailure, readMany } from '../daemon/memory.js';
import { asAddress, asPid } from '../daemon/types.js';
import { Fixture, waitUntil } from './helpers/fixture.js';

test('more ranges than one call takes, with unreadable ones among them', async (t) => {
  const fixture = await Fixture.start(t, 'threads', ['0']);
  const maps = readFileSync(`/proc/${fixture.pid}/maps`, 'utf8').split('\n');
  const start = BigInt('0x' + maps[0]!.split('-')[0]);
  const n = 3000; // about three calls' worth (IOV_MAX is 1024)
  const bad = new Set([0, 1023, 1024, 1500, n - 1]);
  const requests = Array.from({ length: n }, (_, i) => ({ address: asAddress(bad.has(i) ? 16n : start + BigInt(i % 64) * 8n), length: 8 }));
  const results = readMany(asPid(fixture.pid), requests);
  t.is(results.length, n);
  const first = results[64] as Buffer; // offset 0 of the mapping
  t.is(first.readUInt32BE(0), 0x7f454c46, 'the first mapping is the ELF header');
  results.forEach((r, i) => {
    if (bad.has(i)) t.true(r instanceof ReadFailure && r.errno === 14, `range ${i} is unreadable (EFAULT)`);
    else t.true(r instanceof Buffer && r.length === 8, `range ${i} was read`);
  });
  fixture.kill();
  // SIGKILL is not the end yet: until the process is reaped its memory may
  // still be readable.
  await waitUntil('the fixture to be reaped', () => !existsSync(`/proc/${fixture.pid}`));
  const gone = readMany(asPid(fixture.pid), requests.slice(1, 3));
  t.true(gone.every((r) => r instanceof ReadFailure && r.gone), 'a process that is gone: ESRCH for every range');
});
