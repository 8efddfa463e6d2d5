/* Lists a page at a time (docs/api.md "Paging"): an exit ledger of a
 * program that made 2,500 threads, paged through in order without a gap
 * or a repeat, with the same total on every page; the filters a test farm
 * uses; and tlsctl printing pages as they come, up to --limit. */
import test from 'ava';
import { startDaemon, processEnd } from './helpers/daemon.js';
import { fixturePath } from './helpers/fixture.js';
import { tlsctl } from './helpers/tlsctl.js';

const ROUNDS = 2500;

/** The first page a pager gives. */
const firstPage = async <P>(pages: AsyncGenerator<P>): Promise<P> => (await pages.next()).value as P;

test('an exit ledger of 2,500 threads, page by page, and filtered', async (t) => {
  const { client, socket } = await startDaemon(t);
  // One creator makes and joins ROUNDS threads, one at a time: ROUNDS
  // threads end by exit, then the creator, then the process (exit_group).
  const p = await client.spawn({ argv: [fixturePath('churn'), '1', String(ROUNDS)] });
  await processEnd(client, p.pid);
  const all = ROUNDS + 2;

  const seen: number[] = [];
  const pages: number[] = [];
  let after: string | undefined;
  do {
    const page = await firstPage(client.exitPages(p.pid, { limit: 1000, ...(after ? { after } : {}) }));
    t.is(page.total, all);
    pages.push(page.exits.length);
    seen.push(...page.exits.map((x) => x.tid));
    after = page.next;
  } while (after);
  t.deepEqual(pages, [1000, 1000, all - 2000]);
  // Compared with the whole ledger in one page, not by counting distinct
  // tids: with pid_max at 32768 and other tests running, the kernel can
  // cycle through every tid while the program runs and give one twice.
  const whole = await firstPage(client.exitPages(p.pid, { limit: 10_000 }));
  t.is(whole.next, undefined);
  t.deepEqual(seen, whole.exits.map((x) => x.tid), 'the pages, end to end, are the ledger in order: no thread twice, none missing');

  const groupExit = await client.exits(p.pid, { how: 'exit_group' });
  t.deepEqual(groupExit.map((x) => x.tid), [p.pid]);
  t.is((await firstPage(client.exitPages(p.pid, { how: 'exit', limit: 1 }))).total, all - 1);
  t.is((await firstPage(client.exitPages(p.pid, { exitCode: 0, since: new Date(Date.now() + 3600_000).toISOString() }))).total, 0);

  const printed = await tlsctl(socket, 'exits', String(p.pid), '--limit', '5');
  t.is(printed.code, 0, printed.stderr);
  t.is(printed.stdout.trim().split('\n').length, 1 + 5, 'the header and five rows');
  const json = await tlsctl(socket, '--json', 'exits', String(p.pid), '--how', 'exit_group');
  t.deepEqual(JSON.parse(json.stdout), { exits: groupExit });
});

test('processes filtered by state, executable, command line and end, a page at a time', async (t) => {
  const { client, socket } = await startDaemon(t);
  const churn = await client.spawn({ argv: [fixturePath('churn'), '1', '3'] });
  const sleeper = await client.spawn({ argv: ['sleep', '60'] });
  t.teardown(() => client.detach(sleeper.pid, { kill: true }).catch(() => undefined));
  await processEnd(client, churn.pid);

  const pids = (q: Parameters<typeof client.processes>[0]) => client.processes(q).then((ps) => ps.map((x) => x.pid));
  t.deepEqual(await pids({}), [churn.pid, sleeper.pid], 'oldest first');
  t.deepEqual(await pids({ state: 'exited' }), [churn.pid]);
  t.deepEqual(await pids({ state: 'running', argv: 'sleep 60' }), [sleeper.pid]);
  t.deepEqual(await pids({ exe: 'churn', exitCode: 0 }), [churn.pid]);
  t.deepEqual(await pids({ signal: 9 }), []);
  const first = await firstPage(client.processPages({ limit: 1 }));
  t.like(first, { total: 2 });
  t.deepEqual(first.processes.map((x) => x.pid), [churn.pid]);
  const second = await firstPage(client.processPages({ limit: 1, after: first.next! }));
  t.deepEqual(second.processes.map((x) => x.pid), [sleeper.pid]);
  t.is(second.next, undefined);

  const ps = await tlsctl(socket, 'ps', '--state', 'running');
  t.is(ps.code, 0, ps.stderr);
  t.regex(ps.stdout, new RegExp(`^${sleeper.pid}\\s+running`, 'm'));
  t.notRegex(ps.stdout, new RegExp(`^${churn.pid}\\s`, 'm'));
});
