/* The daemon's memory does not depend on history (docs/records.md): a
 * program that makes 2,000,000 threads, supervised from its start to its
 * end, leaves the daemon under 300 MB, and its ledger pages through whole,
 * in order. */
import { readFileSync } from 'node:fs';
import test from 'ava';
import { startDaemon } from './helpers/daemon.js';
import { fixturePath, waitUntil } from './helpers/fixture.js';

const THREADS = 2_000_000;
const RSS_LIMIT_MB = 300;
const PAGE = 10_000;

const rssMb = (pid: number) => Number(/^VmRSS:\s*(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;

test('2,000,000 threads from start to end: the daemon stays under 300 MB, and the ledger pages through whole', async (t) => {
  t.timeout(30 * 60_000);
  const { client, child } = await startDaemon(t);
  // The creator and THREADS - 1 threads it makes and joins, one at a time.
  const p = await client.spawn({ argv: [fixturePath('churn'), '1', String(THREADS - 1)] });
  let peak = 0;
  const sampler = setInterval(() => { peak = Math.max(peak, rssMb(child.pid!)); }, 500);
  try {
    await waitUntil(`${THREADS} threads to come and go`, async () => (await client.process(p.pid)).state === 'exited', 30 * 60_000);
  } finally {
    clearInterval(sampler);
  }
  peak = Math.max(peak, rssMb(child.pid!));
  t.log(`daemon RSS, sampled every 500 ms: at most ${peak.toFixed(0)} MB`);
  t.true(peak <= RSS_LIMIT_MB, `${peak.toFixed(0)} MB`);

  const ended = await client.process(p.pid);
  t.is(ended.threadsExited, THREADS + 1, 'every thread, and the leader');
  let after: string | undefined;
  let pages = 0;
  let rows = 0;
  const started = performance.now();
  const first = await client.request<{ total: number }>('GET', `/v1/processes/${p.pid}/exits`);
  t.log(`first page: ${(performance.now() - started).toFixed(1)} ms`);
  t.is(first.total, THREADS + 1);
  do {
    const page = await client.request<{ exits: unknown[]; next?: string; total: number }>(
      'GET', `/v1/processes/${p.pid}/exits?limit=${PAGE}${after ? `&after=${after}` : ''}`);
    t.is(page.total, THREADS + 1);
    pages++;
    rows += page.exits.length;
    // A cursor is the last row's place in the ledger: each page starts
    // right after the one before, so no row is missed or given twice.
    if (page.next !== undefined && page.next !== String(pages * PAGE)) t.fail(`page ${pages} ends at ${page.next}, not ${pages * PAGE}`);
    after = page.next;
  } while (after);
  t.is(rows, THREADS + 1);
  t.is(pages, Math.ceil((THREADS + 1) / PAGE));
});
